"""Format registry: what every reader module provides, and how a file finds its reader.

Each format family module (``aedat``, ``prophesee``, ``nmnist``, ``hdf5``, ``arrays``, ``text``)
calls :func:`register` at import time with one :class:`FormatSpec` per format it reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from eventssm.events import Recording, SensorSize

SNIFF_BYTES = 4096

ReadFn = Callable[[Path, "SensorSize | None"], Recording]
IterFn = Callable[[Path, int, "SensorSize | None"], Iterator[Recording]]
EncodeFn = Callable[[Recording], bytes]


@dataclass(frozen=True)
class FormatSpec:
    """One readable format.

    Attributes:
        name: short id used by ``format=`` (``"aedat2"``, ``"evt3"``, ...).
        description: one line for ``eventssm info --formats`` and the README table.
        extensions: lower-case file suffixes with the dot, used when no magic matches.
        sniff: ``sniff(head) -> bool`` on the first :data:`SNIFF_BYTES` bytes; True only when
            the magic/header identifies this format unambiguously. ``None`` for formats
            without magic (they are found by extension only).
        read: ``read(path, sensor_size) -> Recording``. ``sensor_size`` is the user's
            override or ``None``.
        iter_chunks: ``iter_chunks(path, chunk_events, sensor_size)`` yields Recordings of at
            most ``chunk_events`` events while holding O(chunk) memory, or ``None`` when the
            format is read whole and sliced.
        validated: the reader itself guarantees the per-event part of the event contract for
            everything it returns (``read`` and ``iter_chunks``): ``EVENT_DTYPE`` and
            ``0 <= x < width``, ``0 <= y < height`` for every event, checked in its decode
            pass, with an :class:`~eventssm.events.EventFileError` naming the file and byte
            offset otherwise. ``read_events``/``iter_events`` then skip the generic O(N)
            bounds pass of :func:`~eventssm.events.validate_events` (the O(1) checks still
            run). False (the default): the caller validates every event.
        encode: ``encode(recording) -> bytes``, the whole file in this format (the inverse of
            ``read``, written beside it), or ``None`` when eventssm does not write the format.
            :func:`eventssm.io.write_events` looks encoders up here (the one dispatch).
    """

    name: str
    description: str
    extensions: tuple[str, ...]
    sniff: Callable[[bytes], bool] | None
    read: ReadFn
    iter_chunks: IterFn | None = None
    validated: bool = False
    encode: EncodeFn | None = None


_REGISTRY: dict[str, FormatSpec] = {}


def register(spec: FormatSpec) -> FormatSpec:
    if spec.name in _REGISTRY:
        raise RuntimeError(f"format {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def formats() -> dict[str, FormatSpec]:
    """All registered formats, in registration order."""
    return dict(_REGISTRY)


def head_bytes(path: str | os.PathLike, n: int = SNIFF_BYTES) -> bytes:
    """The first ``n`` bytes of ``path`` (fewer for a shorter file), read with plain system
    calls (a buffered file object costs more than the read itself on a small file)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        parts, got = [], 0
        while got < n:
            part = os.read(fd, n - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)

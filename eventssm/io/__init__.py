"""Readers and writers for raw event-camera recordings.

``read_events(path)`` detects the format from magic bytes / header first and the extension
second, decodes it (bit unpacking in numba kernels under ``eventssm.io.kernels``) and returns a
validated :class:`~eventssm.events.Recording`. Every failure is one
:class:`~eventssm.events.EventFileError` naming the file and, when known, the byte offset.

This package never imports JAX.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eventssm.events import EventFileError, Recording, SensorSize, validate_events
from eventssm.io import aedat, arrays, hdf5, nmnist, prophesee, text  # noqa: F401  (register)
from eventssm.io._base import FormatSpec, formats, head_bytes
from eventssm.io.stats import file_stats
from eventssm.io.writers import write_events

log = logging.getLogger(__name__)

__all__ = ["UnknownFormatError", "detect_format", "file_stats", "formats", "iter_events", "read_events", "write_events"]


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    try:
        mode = os.stat(p).st_mode  # one system call for both checks
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            raise EventFileError(p, "no such file") from None
        raise EventFileError(p, f"cannot open: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise EventFileError(p, "is a directory, not a recording")
    return p


class UnknownFormatError(EventFileError):
    """No reader recognises the file: no known magic/header and no unambiguous extension.

    ``str(err)`` is ``cannot tell the format of FILE; pass --format (one of ...)``, listing the
    formats that could apply (those sharing the file's extension, else every format).
    """

    def __init__(self, path: str | os.PathLike, candidates: list[str], why: str = ""):
        super().__init__(path, why or "cannot tell the format", 0)
        self.candidates = list(candidates)
        ValueError.__init__(
            self, f"cannot tell the format of {self.path}; {why + '; ' if why else ''}"
            f"pass --format (one of {', '.join(self.candidates)})"
        )


def detect_format(path: str | os.PathLike) -> FormatSpec:
    """Find the reader for ``path``; detection never guesses.

    1. magic bytes / header (``FormatSpec.sniff``) identify the format;
    2. otherwise the extension, but only when exactly one format claims it (``.bin`` ->
       nmnist, ``.csv``/``.txt`` -> csv). An extension shared by several formats (``.raw``:
       evt2/evt3; ``.aedat``: aedat2/aedat3) whose header is missing says which ``--format``
       values fit; an unknown extension lists them all.

    Raises:
        UnknownFormatError: neither rule gives exactly one format.
        EventFileError: the file is missing, a folder, empty or unreadable.
    """
    return _detect(_check_path(path))


def _detect(p: Path) -> FormatSpec:
    """:func:`detect_format` of a path :func:`_check_path` has checked."""
    try:
        head = head_bytes(p)
    except OSError as exc:
        raise EventFileError(p, f"cannot open: {exc.strerror or exc}") from None
    if not head:
        raise EventFileError(p, "file is empty", 0)
    specs = formats()
    for spec in specs.values():
        if spec.sniff is not None and spec.sniff(head):
            return spec
    suffix = p.suffix.lower()
    by_ext = [s for s in specs.values() if suffix in s.extensions]
    if len(by_ext) == 1:
        return by_ext[0]
    if by_ext:  # e.g. a .raw without its % header: EVT 2.0 and 3.0 cannot be told apart
        raise UnknownFormatError(
            p, [s.name for s in by_ext], f"no {'/'.join(s.name for s in by_ext)} header and "
            f"{suffix!r} is used by several formats"
        )
    raise UnknownFormatError(
        p, list(specs), f"no known header or magic, and extension {suffix or '(none)'!r} is not "
        f"one of {sorted({e for s in specs.values() for e in s.extensions})}"
    )


def _spec(path: Path, format: str | None) -> FormatSpec:
    if format is None:
        return _detect(path)
    specs = formats()
    if format not in specs:
        raise EventFileError(path, f"unknown format {format!r}; known: {', '.join(specs)}")
    return specs[format]


def _decode_guard(path: Path, spec: FormatSpec, fn, *args):
    """Run a reader; anything but EventFileError becomes one EventFileError (never a traceback)."""
    try:
        return fn(*args)
    except EventFileError:
        raise
    except MemoryError:
        raise EventFileError(path, f"not enough memory to decode as {spec.name}") from None
    except Exception as exc:  # a reader bug or a library error on hostile input
        log.debug("reader %s failed on %s", spec.name, path, exc_info=True)
        raise EventFileError(path, f"cannot decode as {spec.name}: {exc}") from None


def _finish(rec: Recording, spec: FormatSpec, p: Path, allow_empty: bool) -> Recording:
    """Check a reader's Recording against the event contract and name its format and path.

    ``meta["format"]`` is the reader's name and ``meta["path"]`` the file read; a different
    value stored in the file (e.g. by :func:`write_events`) is kept as ``source_format`` /
    ``source_path``.

    Readers registered with ``validated=True`` have checked every event in their decode
    pass, so only the O(1) checks run for them.
    """
    validate_events(rec.events, rec.sensor_size, path=p, allow_empty=allow_empty,
                    check_bounds=not spec.validated)
    # meta["format"] / meta["path"] always name the reader and the file actually read; values
    # stored in the file's own meta (a recording re-saved by write_events) move to source_*
    for key, value in (("format", spec.name), ("path", str(p))):
        if key in rec.meta and rec.meta[key] != value:  # a stored None is kept too
            rec.meta.setdefault(f"source_{key}", rec.meta[key])
        rec.meta[key] = value
    return rec


def read_events(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    sensor_size: SensorSize | None = None,
    allow_empty: bool = False,
) -> Recording:
    """Read a whole recording.

    Args:
        path: the file.
        format: a registered format name to skip detection (see :func:`formats`).
        sensor_size: ``(width, height, polarities)`` when the file does not say (or to
            override the header).
        allow_empty: return an empty Recording instead of raising for a file with no events.

    Returns:
        A validated Recording; ``meta`` holds at least ``format`` and ``path``. Readers
        registered with ``validated=True`` check every event against the sensor in their
        decode pass; for the others :func:`~eventssm.events.validate_events` checks them here.
    """
    p = _check_path(path)
    spec = _spec(p, format)
    if sensor_size is not None:
        sensor_size = tuple(int(v) for v in sensor_size)
    return _finish(_decode_guard(p, spec, spec.read, p, sensor_size), spec, p, allow_empty)


def iter_events(
    path: str | os.PathLike,
    *,
    chunk_events: int = 1 << 20,
    format: str | None = None,
    sensor_size: SensorSize | None = None,
) -> Iterator[Recording]:
    """Stream a recording in chunks of at most ``chunk_events`` events.

    Binary formats decode block by block with bounded memory; formats without a streaming
    reader are read whole and sliced. Concatenating the chunks equals :func:`read_events`.
    """
    if chunk_events < 1:
        raise ValueError("chunk_events must be >= 1")
    p = _check_path(path)
    spec = _spec(p, format)
    if sensor_size is not None:
        sensor_size = tuple(int(v) for v in sensor_size)
    if spec.iter_chunks is None:
        rec = read_events(p, format=spec.name, sensor_size=sensor_size, allow_empty=True)
        for i in range(0, len(rec.events), chunk_events):
            yield Recording(rec.events[i : i + chunk_events], rec.sensor_size, dict(rec.meta))
        return
    it = _decode_guard(p, spec, spec.iter_chunks, p, chunk_events, sensor_size)
    while True:
        chunk = _decode_guard(p, spec, next, it, None)
        if chunk is None:
            return
        yield _finish(chunk, spec, p, True)


def concat(chunks: list[Recording]) -> np.ndarray:
    """Concatenate chunk events (helper for tests and tools)."""
    from eventssm.events import concat_events

    return concat_events([c.events for c in chunks])

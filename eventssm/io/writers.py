"""Write a :class:`~eventssm.events.Recording` to HDF5 or ``.npz`` (read back exactly).

HDF5 (``.h5``/``.hdf5``, the layout (c) of :mod:`eventssm.io.hdf5`): group ``events`` with
chunked, compressed (gzip level 4 + shuffle by default) 1-D datasets ``x`` int16, ``y`` int16,
``t`` int64 µs, ``p`` uint8 0/1, and group attributes ``sensor_size``, ``meta`` (JSON),
``eventssm_format``, ``eventssm_version``. Written with ``libver="v110"`` so object headers
carry checksums (damaged files are detected instead of misread).

``.npz`` (layout of :mod:`eventssm.io.arrays`): ``numpy.savez_compressed`` members ``x``,
``y``, ``t``, ``p`` (the ``EVENT_DTYPE`` columns), ``sensor_size`` int64[3] and ``meta`` (a
0-d unicode array holding JSON).

Every other format a reader module registers with an ``encode`` on its
:class:`~eventssm.io.FormatSpec` (``evt2``, ``evt3``, ``dat``, ``aedat3``, ``aedat4``) is written
as the bytes that encoder returns: :func:`write_events` is the one place that dispatches on the
format (``eventssm simulate`` and :mod:`eventssm.sim.export` call it).

Every writer writes a temporary file in the destination folder and renames it over the target
only when complete, so an error never leaves a half-written file nor clobbers an existing one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from eventssm.events import EVENT_DTYPE, Recording, validate_events

#: Layout tag and version stored in HDF5 files (read by :mod:`eventssm.io.hdf5`).
EVENTSSM_FORMAT = "eventssm.events"
EVENTSSM_VERSION = 1
_EXT = {".h5": "hdf5", ".hdf5": "hdf5", ".npz": "npz"}


def _json_default(obj: Any):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"meta value {obj!r} of type {type(obj).__name__} is not JSON-serializable")


def meta_json(meta: dict[str, Any]) -> str:
    """The JSON text stored for ``meta`` (numpy scalars/arrays become numbers/lists)."""
    return json.dumps(meta, default=_json_default, allow_nan=True, sort_keys=False)


def _write_hdf5(tmp: Path, rec: Recording, compression: str | None) -> None:
    import h5py

    n = len(rec.events)
    opts: dict[str, Any] = {"maxshape": (None,), "chunks": (max(1, min(n, 1 << 16)),)}
    if compression is not None:
        opts["compression"] = compression
        opts["shuffle"] = True
        if compression == "gzip":
            opts["compression_opts"] = 4
    with h5py.File(tmp, "w", libver="v110") as f:  # tmp: atomic_output's empty file
        g = f.create_group("events")
        ev = rec.events
        g.create_dataset("x", data=ev["x"], dtype=np.int16, **opts)
        g.create_dataset("y", data=ev["y"], dtype=np.int16, **opts)
        g.create_dataset("t", data=ev["t"], dtype=np.int64, **opts)
        g.create_dataset("p", data=ev["p"].view(np.uint8), dtype=np.uint8, **opts)
        g.attrs["sensor_size"] = np.asarray(rec.sensor_size, dtype=np.int64)
        g.attrs["meta"] = meta_json(rec.meta)
        g.attrs["eventssm_format"] = EVENTSSM_FORMAT
        g.attrs["eventssm_version"] = EVENTSSM_VERSION


def _write_npz(tmp: Path, rec: Recording, compression: str | None) -> None:
    ev = rec.events
    arrays = {
        "x": np.ascontiguousarray(ev["x"]),
        "y": np.ascontiguousarray(ev["y"]),
        "t": np.ascontiguousarray(ev["t"]),
        "p": np.ascontiguousarray(ev["p"]),
        "sensor_size": np.asarray(rec.sensor_size, dtype=np.int64),
        "meta": np.array(meta_json(rec.meta)),
    }
    save = np.savez if compression is None else np.savez_compressed
    with open(tmp, "wb") as f:  # tmp: the empty temporary file of atomic_output
        save(f, **arrays)


def writable_formats() -> tuple[str, ...]:
    """The formats :func:`write_events` writes: ``hdf5``, ``npz`` and every registered format
    with an encoder, in registration order."""
    from eventssm.io._base import formats

    return ("hdf5", "npz", *(n for n, s in formats().items() if s.encode is not None))


def format_extension(fmt: str) -> str:
    """The file extension of a written ``fmt`` file: the first its FormatSpec lists
    (``hdf5`` → ``.h5``, ``evt2``/``evt3`` → ``.raw``, ``aedat3`` → ``.aedat``)."""
    from eventssm.io._base import formats

    spec = formats().get(fmt)
    if spec is None or fmt not in writable_formats():
        raise ValueError(f"eventssm does not write format {fmt!r}; it writes "
                         f"{', '.join(writable_formats())}")
    return spec.extensions[0]


def encode_events(recording: Recording, fmt: str) -> bytes:
    """``recording`` as the bytes of a whole ``fmt`` file, by the encoder registered beside
    the format's reader (``FormatSpec.encode``: ``evt2``, ``evt3``, ``dat``, ``aedat3``,
    ``aedat4``); ValueError for a format without one, or events the format cannot hold."""
    from eventssm.io._base import formats

    spec = formats().get(fmt)
    if spec is None or spec.encode is None:
        raise ValueError(f"no raw encoder for format {fmt!r}")
    return spec.encode(recording)


def _write_encoded(fmt: str):
    def write(tmp: Path, rec: Recording, compression: str | None) -> None:
        tmp.write_bytes(encode_events(rec, fmt))  # compression: the format's own, if any

    return write


def write_events(
    path: str | os.PathLike,
    recording: Recording,
    *,
    format: str | None = None,
    compression: str | None = "gzip",
) -> Path:
    """Write ``recording`` so that ``read_events(path)`` returns it exactly.

    Args:
        path: destination; the format follows the extension (``.h5``/``.hdf5`` → HDF5,
            ``.npz`` → npz) unless ``format`` is given.
        recording: events of ``EVENT_DTYPE`` (validated against its ``sensor_size`` first;
            empty recordings are allowed). ``meta`` must be JSON-compatible: numpy scalars and
            arrays are stored as numbers and lists, and tuples come back as lists (the raw
            formats keep no meta).
        format: ``"hdf5"``, ``"npz"`` or a format with a registered encoder (``evt2``,
            ``evt3``, ``dat``, ``aedat3``, ``aedat4``; :func:`writable_formats`).
        compression: HDF5 filter (``"gzip"``, ``"lzf"``) or ``None``; for npz any value other
            than ``None`` means ``numpy.savez_compressed``; the raw formats ignore it.

    Returns:
        The destination path.

    Raises:
        ValueError: unknown format or extension, meta that JSON cannot hold, or events the
            raw format cannot hold (e.g. a sensor too large for EVT 2.0).
        EventFileError: events that break the event contract.
        OSError: the destination folder is not writable (nothing is left behind).
    """
    dest = Path(path)
    fmt = format if format is not None else _EXT.get(dest.suffix.lower())
    writers = {"hdf5": _write_hdf5, "npz": _write_npz}
    if fmt is None or (fmt not in writers and fmt not in writable_formats()):
        raise ValueError(
            f"cannot write {dest.name!r}: use a .h5/.hdf5/.npz extension or format= one of "
            f"{', '.join(writable_formats())}"
        )
    write = writers.get(fmt) or _write_encoded(fmt)
    if recording.events.dtype != EVENT_DTYPE:
        raise ValueError(f"events have dtype {recording.events.dtype}, expected {EVENT_DTYPE}")
    validate_events(recording.events, recording.sensor_size, path=dest, allow_empty=True)
    if fmt in writers:  # the raw formats keep no meta
        try:
            meta_json(recording.meta)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cannot store meta: {exc}") from None
    from eventssm.outputs import atomic_output

    with atomic_output(dest) as tmp:  # renamed at the end; removed on any error or interrupt
        write(tmp, recording, compression)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    return dest


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed at the
    end (:func:`eventssm.outputs.atomic_output`: usual permissions, a rename that SIGINT/SIGTERM
    cannot cut): an interrupted write leaves ``path`` as it was and no temporary file."""
    from eventssm.outputs import atomic_output

    dest = Path(path)
    with atomic_output(dest) as tmp:
        tmp.write_bytes(data)
    return dest

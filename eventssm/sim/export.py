"""Write a Recording in any format eventssm can encode, atomically (temp file, then rename).

``h5`` / ``npz`` use :func:`eventssm.io.write_events`; the raw sensor formats use the pure-numpy
encoders that live beside each reader (``encode_evt2``, ``encode_evt3``, ``encode_dat``,
``encode_aedat3``), so a simulated dataset can exercise every decoder.
"""

from __future__ import annotations

import os
from pathlib import Path

from eventssm.events import Recording


def encode(rec: Recording, fmt: str) -> bytes:
    """Encode ``rec`` as raw bytes of ``fmt`` (``evt2``, ``evt3``, ``dat`` or ``aedat3``)."""
    from eventssm.io import aedat, prophesee

    w, h = int(rec.sensor_size[0]), int(rec.sensor_size[1])
    if fmt == "evt2":
        return prophesee.encode_evt2(rec.events, w, h)
    if fmt == "evt3":
        return prophesee.encode_evt3(rec.events, w, h)
    if fmt == "dat":
        return prophesee.encode_dat(rec.events, w, h)
    if fmt == "aedat3":
        return aedat.encode_aedat3(rec.events, (w, h, 2))
    raise ValueError(f"no raw encoder for format {fmt!r}")


def write_recording(path: str | os.PathLike, rec: Recording, fmt: str) -> Path:
    """Write ``rec`` to ``path`` as ``fmt`` (``h5``, ``npz``, ``evt2``, ``evt3``, ``dat``, ``aedat3``)."""
    path = Path(path)
    if fmt in ("h5", "npz"):
        from eventssm.io import write_events

        write_events(path, rec, format="hdf5" if fmt == "h5" else "npz")
        return path
    from eventssm.io.writers import write_bytes_atomic

    return write_bytes_atomic(path, encode(rec, fmt))

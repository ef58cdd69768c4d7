"""Write a Recording in any format eventssm can encode, atomically (temp file, then rename).

``h5`` / ``npz`` use :func:`eventssm.io.write_events`; the raw sensor formats use the pure-numpy
encoder registered beside each reader on its :class:`~eventssm.io.FormatSpec` (``encode``: evt2,
evt3, dat, aedat3), so a simulated dataset can exercise every decoder.
"""

from __future__ import annotations

import os
from pathlib import Path

from eventssm.events import Recording


def encode(rec: Recording, fmt: str) -> bytes:
    """Encode ``rec`` as raw bytes of ``fmt`` (a format whose FormatSpec has an ``encode``:
    ``evt2``, ``evt3``, ``dat`` or ``aedat3``)."""
    from eventssm.io import formats

    spec = formats().get(fmt)
    if spec is None or spec.encode is None:
        raise ValueError(f"no raw encoder for format {fmt!r}")
    return spec.encode(rec)


def write_recording(path: str | os.PathLike, rec: Recording, fmt: str) -> Path:
    """Write ``rec`` to ``path`` as ``fmt`` (``h5``, ``npz``, ``evt2``, ``evt3``, ``dat``, ``aedat3``)."""
    path = Path(path)
    if fmt in ("h5", "npz"):
        from eventssm.io import write_events

        write_events(path, rec, format="hdf5" if fmt == "h5" else "npz")
        return path
    from eventssm.io.writers import write_bytes_atomic

    return write_bytes_atomic(path, encode(rec, fmt))

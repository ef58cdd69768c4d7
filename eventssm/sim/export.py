"""Write a Recording in any format eventssm can encode, atomically (temp file, then rename).

A thin layer over :func:`eventssm.io.writers.write_events`, the one place that dispatches on
the format (``h5`` / ``npz`` containers, and the pure-numpy encoder registered beside each raw
reader on its :class:`~eventssm.io.FormatSpec`: evt2, evt3, dat, aedat3, aedat4), so a
simulated dataset can exercise every decoder. ``h5`` is the name ``eventssm simulate`` uses for
the ``hdf5`` format.
"""

from __future__ import annotations

import os
from pathlib import Path

from eventssm.events import Recording
from eventssm.io.writers import encode_events, write_events


def encode(rec: Recording, fmt: str) -> bytes:
    """Encode ``rec`` as raw bytes of ``fmt`` (:func:`eventssm.io.writers.encode_events`)."""
    return encode_events(rec, fmt)


def write_recording(path: str | os.PathLike, rec: Recording, fmt: str) -> Path:
    """Write ``rec`` to ``path`` as ``fmt`` (``h5``, ``npz``, ``evt2``, ``evt3``, ``dat``,
    ``aedat3``, ``aedat4``) through :func:`~eventssm.io.writers.write_events`."""
    return write_events(path, rec, format="hdf5" if fmt == "h5" else fmt)

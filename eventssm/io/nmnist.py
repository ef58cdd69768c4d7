"""N-MNIST / N-Caltech101 ``.bin`` reader (ATIS 5-byte records) and reference encoder.

Layout (Orchard et al., "Converting Static Image Datasets to Spiking Neuromorphic Datasets
Using Saccades", Front. Neurosci. 2015, dataset README; the same decoding as Garrick
Orchard's ``event-Python`` ``eventvision.py`` and tonic's ``tonic.io.read_mnist_file``,
which the tests compare against)::

    byte 0     x (uint8)
    byte 1     y (uint8)
    byte 2     bit 7: polarity (1 = ON); bits 6..0: timestamp bits 22..16
    byte 3     timestamp bits 15..8
    byte 4     timestamp bits 7..0           (timestamp in µs, 23 bits)

A record with ``y == 240`` is not an event but a timestamp-overflow marker: it adds
``2**13 = 8192`` µs to the timestamp of every following record. No header, no magic: the
format is found by its ``.bin`` extension only (``sniff=None``).

Geometry: N-MNIST is 34x34. N-Caltech101 uses the same records with larger coordinates
(sensor crops up to about 240x180); when ``sensor_size`` is not given and any x or y is 34
or more, the sensor size becomes ``(max x + 1, max y + 1, 2)`` and
``meta["sensor_size_inferred"] = True`` (pass ``sensor_size`` to fix it). A file whose
length is not a multiple of 5 is rejected with the offset of the partial record.

Every event is checked against the sensor in the decode kernel (the format is registered
``validated``). A file of 8 MiB or more is decoded on several threads (same result as one
thread; see :func:`read_nmnist`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, SensorSize
from eventssm.io import _blocks as B
from eventssm.io._base import FormatSpec, register
from eventssm.io.kernels import nmnist as KN

log = logging.getLogger(__name__)

__all__ = ["NMNIST_SENSOR_SIZE", "encode_nmnist", "iter_nmnist", "read_nmnist"]

NMNIST_SENSOR_SIZE: SensorSize = (34, 34, 2)
def _describe(raw: bytes) -> str:
    return f"N-MNIST record {raw.hex()} is invalid"


def _layout(width: int, height: int) -> B.BlockLayout:
    return B.BlockLayout("N-MNIST", KN.RECORD_BYTES, "u1", KN.decode_nmnist, KN.nmnist_state,
                         KN.nmnist_bound, (width, height), _describe)


def _check_length(path: Path, size: int) -> None:
    extra = size % KN.RECORD_BYTES
    if extra:
        raise EventFileError(
            path, f"truncated N-MNIST file: the last {extra} byte(s) do not form a whole "
            f"{KN.RECORD_BYTES}-byte record", size - extra,
        )


def _extent(path: Path, size: int) -> tuple[int, int, int]:
    """(events, max x, max y) over the whole file, streaming (used before chunked reads)."""
    state = KN.scan_state()
    n = 0
    for _, block in B.iter_blocks(path, 0, size, B.READ_BLOCK_BYTES, KN.RECORD_BYTES):
        n += int(KN.scan_nmnist(block, state))
    return n, int(state[1]), int(state[2])


def _geometry(path: Path, sensor_size: SensorSize | None, max_x: int, max_y: int):
    """(sensor, meta) for the given override or the observed extent."""
    meta: dict[str, Any] = {"format": "nmnist", "camera": "ATIS"}
    if sensor_size is not None:
        ss = tuple(int(v) for v in sensor_size)
        if len(ss) not in (2, 3) or min(ss) < 1:
            raise EventFileError(path, f"invalid sensor_size {ss}: expected (width, height, 2)")
        meta["sensor_size_source"] = "argument"
        return (ss[0], ss[1], ss[2] if len(ss) == 3 else 2), meta
    w, h = NMNIST_SENSOR_SIZE[:2]
    if max_x < w and max_y < h:
        meta["sensor_size_source"] = "N-MNIST 34x34"
        return NMNIST_SENSOR_SIZE, meta
    sensor = (max(max_x + 1, 1), max(max_y + 1, 1), 2)
    log.info("%s: coordinates up to (%d, %d) exceed N-MNIST's 34x34; using sensor %dx%d "
             "(N-Caltech101 layout?)", path, max_x, max_y, sensor[0], sensor[1])
    meta["sensor_size_source"] = "inferred from the largest coordinates"
    meta["sensor_size_inferred"] = True
    return sensor, meta


def _read_parallel(path: Path, size: int, sensor_size: SensorSize | None,
                   threads: int) -> Recording | None:
    """Decode on ``threads`` threads; None when an event lies outside a given sensor.

    Each segment of the file is first decoded as if no overflow marker came before it: at
    the output index of its first record, with an overflow count of 0. A segment that does
    have markers before it (the kernels count them) is decoded again at its true place with
    the true count; true places never overlap, so the second round may run in parallel too.
    Files without markers (N-MNIST's 0.3 s saccades have none) take one round. The result
    equals the one-thread decode; on a flag the caller decodes again on one thread, which
    names the offending record.
    """
    unit = KN.RECORD_BYTES
    segs = B.split(0, size, unit, threads * B.SEGMENTS_PER_THREAD)
    first = [a // unit for a, _ in segs]  # output index of each segment's first record
    if sensor_size is None:  # as the one-thread path: decode against 34x34 tolerating events
        lay, tolerate = _layout(*NMNIST_SENSOR_SIZE[:2]), KN.FLAG_OUTSIDE  # beyond it
    else:
        sensor, meta = _geometry(path, sensor_size, -1, -1)
        lay, tolerate = _layout(sensor[0], sensor[1]), 0
    out = np.empty(size // unit, EVENT_DTYPE)
    with B.open_fd(path) as fd:
        states = [KN.nmnist_state() for _ in segs]
        results = B.decode_segments(fd, path, lay, segs, out, first, states, threads)
        markers = np.array([int(st[0]) for st in states], dtype=np.int64)
        before = np.cumsum(markers) - markers
        redo = [k for k in range(len(segs)) if before[k]]
        if redo:
            again = B.decode_segments(
                fd, path, lay, [segs[k] for k in redo], out, [first[k] - before[k] for k in redo],
                [KN.nmnist_state() + before[k] for k in redo], threads)
            for k, res in zip(redo, again, strict=True):
                results[k] = res
    flags = 0
    for f, _ in results:
        flags |= f
    if flags & ~tolerate:
        return None
    n = len(out) - int(markers.sum())
    if n < len(out):
        out.resize(n, refcheck=False)
    if sensor_size is None:
        max_x = max_y = -1
        if flags and n:
            max_x, max_y = int(out["x"].max()), int(out["y"].max())
        sensor, meta = _geometry(path, None, max_x, max_y)
    return Recording(out, sensor, meta)


def read_nmnist(path: str | os.PathLike, sensor_size: SensorSize | None = None, *,
                threads: int | None = None) -> Recording:
    """Read an N-MNIST (or N-Caltech101) ``.bin`` file.

    Args:
        path: the file.
        sensor_size: ``(width, height, 2)``; default 34x34, or inferred from the coordinates
            when they exceed it (``meta["sensor_size_inferred"]``).
        threads: threads that decode the file (default: one below 8 MiB, else the available
            CPUs, see :func:`eventssm.io._blocks.read_threads`); the result does not depend
            on it.

    Returns:
        Recording of events (``EVENT_DTYPE``; t in µs including the overflow steps).
    """
    path = Path(path)
    size, head = B.read_head(path, B.HEAD_BYTES)  # a small file is read here once
    _check_length(path, size)
    n_threads = B.read_threads(threads, size)
    if n_threads > 1:
        rec = _read_parallel(path, size, sensor_size, n_threads)
        if rec is not None:
            return rec
    if sensor_size is not None:
        sensor, meta = _geometry(path, sensor_size, -1, -1)
        ev, _ = B.decode_all(path, _layout(sensor[0], sensor[1]), 0, size, sensor, "argument",
                             head=head)
        return Recording(ev, sensor, meta)
    # decode against 34x34; an event beyond it (N-Caltech101) only sets a flag, and then the
    # largest coordinates decide the sensor size
    w, h = NMNIST_SENSOR_SIZE[:2]
    ev, flags = B.decode_all(path, _layout(w, h), 0, size, NMNIST_SENSOR_SIZE, "N-MNIST 34x34",
                             tolerate=KN.FLAG_OUTSIDE, head=head)
    max_x = max_y = -1
    if flags and len(ev):
        max_x, max_y = int(ev["x"].max()), int(ev["y"].max())
    sensor, meta = _geometry(path, None, max_x, max_y)
    return Recording(ev, sensor, meta)


def iter_nmnist(path: str | os.PathLike, chunk_events: int,
                sensor_size: SensorSize | None = None, *,
                block_bytes: int = B.ITER_BLOCK_BYTES) -> Iterator[Recording]:
    """Stream an N-MNIST ``.bin`` file as Recordings of at most ``chunk_events`` events.

    Without ``sensor_size`` a first streaming pass finds the largest coordinates (for the
    N-Caltech101 inference); the overflow count is carried across blocks.
    """
    path = Path(path)
    size = path.stat().st_size
    _check_length(path, size)
    if sensor_size is None:
        _, max_x, max_y = _extent(path, size)
        sensor, meta = _geometry(path, None, max_x, max_y)
    else:
        sensor, meta = _geometry(path, sensor_size, -1, -1)
    lay = _layout(sensor[0], sensor[1])
    return B.chunks(path, lay, 0, size, sensor, meta["sensor_size_source"], chunk_events, meta,
                    block_bytes)


def encode_nmnist(events: np.ndarray) -> bytes:
    """Encode events as N-MNIST ``.bin`` bytes (5-byte records, overflow markers as needed).

    Args:
        events: structured array with x, y (0..255, y != 240, which marks overflows), t
            (µs, >= 0), p. Overflow markers (``x=0, y=240``) are inserted so that every
            stored 23-bit timestamp fits; a timestamp that would need fewer overflows than an
            earlier event already used (a large step back in time) raises ValueError.

    Returns:
        File bytes.
    """
    ev = np.asarray(events)
    if ev.dtype.names is None or not {"x", "y", "t", "p"} <= set(ev.dtype.names):
        raise ValueError("events must be a structured array with fields x, y, t, p")
    n = len(ev)
    if n == 0:
        return b""
    x = ev["x"].astype(np.int64)
    y = ev["y"].astype(np.int64)
    t = ev["t"].astype(np.int64)
    p = ev["p"].astype(bool).astype(np.int64)
    if (x < 0).any() or (x > 255).any() or (y < 0).any() or (y > 255).any():
        raise ValueError("N-MNIST coordinates must be 0..255")
    if (y == KN.OVERFLOW_Y).any():
        raise ValueError("y == 240 marks a timestamp overflow in N-MNIST and cannot be an event")
    if (t < 0).any():
        raise ValueError("negative timestamps cannot be encoded")
    step = KN.OVERFLOW_STEP_US
    lowest = np.maximum(0, -(-(t - ((1 << 23) - 1)) // step))  # overflows each event needs
    k = np.maximum.accumulate(lowest)
    if (k * step > t).any():
        raise ValueError("timestamps step back too far to encode with N-MNIST overflow markers")
    n_markers = np.diff(k, prepend=0)
    pos = np.arange(n) + np.cumsum(n_markers)
    rec = np.zeros((n + int(k[-1]), 5), dtype=np.uint8)
    rec[:, 1] = KN.OVERFLOW_Y  # every row not overwritten below is a marker (x=0, ts=0)
    ts = t - k * step
    rec[pos, 0] = x
    rec[pos, 1] = y
    rec[pos, 2] = (p << 7) | (ts >> 16)
    rec[pos, 3] = (ts >> 8) & 0xFF
    rec[pos, 4] = ts & 0xFF
    return rec.tobytes()


register(FormatSpec(
    "nmnist", "N-MNIST / N-Caltech101 .bin (ATIS 5-byte records, 34x34 for N-MNIST)", (".bin",),
    None, read_nmnist, iter_nmnist, validated=True,
))

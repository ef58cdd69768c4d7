"""Numba kernels for N-MNIST / N-Caltech101 ``.bin`` files (5-byte ATIS records).

Layout and sources are documented in :mod:`eventssm.io.nmnist`. Kernels follow the
conventions of :mod:`eventssm.io.kernels.prophesee`: one pass, preallocated ``EVENT_DTYPE``
output, state in a small ``int64`` array carried between blocks, ``(n_events, flags)`` result;
each ``.py_func`` is the readable reference the tests compare against.
"""

from __future__ import annotations

import numba
import numpy as np

from eventssm.io.kernels.common import FLAG_OUTSIDE, columns, new_state, store

RECORD_BYTES = 5
OVERFLOW_Y = 240  # a record with y == 240 marks a timestamp overflow
OVERFLOW_STEP_US = 1 << 13  # each overflow adds 8192 µs to the following timestamps

#: decode state: overflow markers seen so far.
NMNIST_STATE_SIZE = 1
#: scan state: overflow markers seen so far, largest x, largest y of real events (-1 if none).
SCAN_STATE_SIZE = 3


def nmnist_state() -> np.ndarray:
    """Fresh decoder state, ``int64[NMNIST_STATE_SIZE]``."""
    return new_state(0)


def scan_state() -> np.ndarray:
    """Fresh :func:`scan_nmnist` state, ``int64[SCAN_STATE_SIZE]``."""
    return new_state(0, -1, -1)


def nmnist_bound(n_records: int) -> int:
    """Output capacity for ``n_records`` records (at most one event each)."""
    return int(n_records)


@numba.njit(cache=True, nogil=True)
def decode_nmnist(raw, out, state, width, height):
    """Decode 5-byte N-MNIST records.

    Args:
        raw: ``uint8[5 n]``: per record ``x, y, b2, b3, b4``; polarity is bit 7 of ``b2`` and
            the timestamp ``(b2 & 0x7F) << 16 | b3 << 8 | b4`` (23 bits, µs).
        out: ``EVENT_DTYPE[>= n]`` output buffer.
        state: ``int64[1]`` overflow count (see :func:`nmnist_state`), updated in place.
        width, height: sensor size (events outside it raise FLAG_OUTSIDE).

    Returns:
        ``(n_events, flags)``. A record with ``y == 240`` is not an event: it adds 8192 µs to
        the timestamps of every following record.

    Markers are rare (one per 8.192 ms of recording), so they take a predictable branch
    (measured: with :func:`~eventssm.io.kernels.common.store`'s unsigned index, 20% faster
    than a branch-free candidate write per record).
    """
    cols = columns(out)
    step = state[0] * OVERFLOW_STEP_US
    outside = False
    n = 0
    for i in range(raw.shape[0] // 5):
        y = raw[5 * i + 1]
        if y == OVERFLOW_Y:
            step += OVERFLOW_STEP_US
            continue
        x = raw[5 * i]
        b2 = np.int64(raw[5 * i + 2])
        ts = ((b2 & 0x7F) << 16) | (np.int64(raw[5 * i + 3]) << 8) | np.int64(raw[5 * i + 4])
        store(cols, n, x, y, ts + step, b2 >> 7)
        outside |= (x >= width) | (y >= height)
        n += 1
    state[0] = step // OVERFLOW_STEP_US
    return n, FLAG_OUTSIDE * np.int64(outside)


@numba.njit(cache=True, nogil=True)
def scan_nmnist(raw, state):
    """Update ``state`` (overflow count, largest x, largest y) without writing events.

    Args:
        raw: ``uint8[5 n]`` records.
        state: ``int64[3]`` (see :func:`scan_state`), updated in place.

    Returns:
        The number of events (records that are not overflow markers).
    """
    n = 0
    for i in range(raw.shape[0] // 5):
        x = np.int64(raw[5 * i])
        y = np.int64(raw[5 * i + 1])
        if y == OVERFLOW_Y:
            state[0] += 1
        else:
            state[1] = max(state[1], x)
            state[2] = max(state[2], y)
            n += 1
    return n

"""Numba kernels that unpack AEDAT 2.0 / 3.1 / 4.0 event words (layouts: ``eventssm.io.aedat``).

Every kernel makes one pass over the raw data (32-bit words for AEDAT 2.0 and 3.1, bytes for
AEDAT 4.0) and writes into a caller-allocated ``EVENT_DTYPE`` array ``out`` sized by an upper
bound; the caller trims. Big-endian AEDAT 2.0 words are byte-swapped in the kernel, so no
swapped copy of the input is made.

The AEDAT 2.0 kernels follow the block-kernel convention of :mod:`eventssm.io.kernels.common`
(``kernel(words, out, state, *args) -> (n_events, flags)``, counters carried in ``state``,
:data:`FLAG_OUTSIDE` for an event outside the sensor, decoding goes on), so the AEDAT 2.0
reader shares the block reader of the Prophesee formats. The AEDAT 3.1 and 4.0 kernels decode
whole packets and stop at the first event whose coordinates fall outside ``width x height``,
reporting where (``bad``, ``-1`` when none), so the reader can name the byte offset of the
offending word. Every kernel checks every event it writes against the sensor.

``kernel.py_func`` is the readable reference; tests compare both on the same bytes.
"""

from __future__ import annotations

import numba
import numpy as np

from eventssm.io.kernels.common import FLAG_OUTSIDE, columns, new_state, store

#: AEDAT 2.0 state slots: APS/IMU words skipped, special / external-input words skipped.
AEDAT2_STATE_SIZE = 2


def aedat2_state() -> np.ndarray:
    """Fresh AEDAT 2.0 counters, ``int64[AEDAT2_STATE_SIZE]``."""
    return new_state(0, 0)


def aedat2_bound(n_records: int) -> int:
    """Output capacity for ``n_records`` AEDAT 2.0 records (at most one event each)."""
    return int(n_records)


@numba.njit(cache=True, nogil=True)
def _swap32(v):
    """``v`` (a 32-bit word, as int64) with its four bytes reversed: a big-endian word read as
    little-endian, or the reverse (LLVM turns this into one ``bswap`` instruction)."""
    return (((v & 0xFF) << 24) | (((v >> 8) & 0xFF) << 16) | (((v >> 16) & 0xFF) << 8)
            | ((v >> 24) & 0xFF))


@numba.njit(cache=True, nogil=True)
def aedat2_dvs128(words, out, state, width, height):
    """Decode AEDAT 2.0 records with jAER DVS128 addresses.

    Args:
        words: uint32, shape (2*R,): R records ``u32 address, u32 timestamp (µs)``, stored
            big-endian and read as native (little-endian) words: the kernel swaps the bytes.
        out: EVENT_DTYPE, shape (>= R,), written from index 0.
        state: int64[2] counters (see :func:`aedat2_state`); slot 1 counts the skipped
            special words, updated in place.
        width, height: sensor bounds the decoded coordinates must lie in.

    Address bits (jAER ``DVS128.Extractor``): bit 0 polarity (0 = ON), bits 1-7 raw x,
    bits 8-14 y, bit 15 sync/external event, bit 31 special event. ``x = 127 - raw x``,
    ``y = 127 - raw y`` (jAER counts y upwards; image rows count down, as libcaer writes
    DVS128 events), ``p = (bit 0 == 0)``. Words with bit 15 or bit 31 set are skipped.

    Returns:
        ``(n_events, flags)``; flags is :data:`FLAG_OUTSIDE` when an event lies outside the
        sensor.
    """
    cols = columns(out)
    n = 0
    n_special = state[1]
    outside = False
    for r in range(words.shape[0] // 2):
        a = _swap32(np.int64(words[2 * r]))
        if (a & 0x80008000) != 0:
            n_special += 1
            continue
        x = 127 - ((a >> 1) & 0x7F)
        y = 127 - ((a >> 8) & 0x7F)
        store(cols, n, x, y, _swap32(np.int64(words[2 * r + 1])), (a & 1) == 0)
        outside |= (x >= width) | (y >= height)
        n += 1
    state[1] = n_special
    return n, FLAG_OUTSIDE * np.int64(outside)


@numba.njit(cache=True, nogil=True)
def aedat2_davis(words, out, state, flip_width, flip_height, width, height):
    """Decode AEDAT 2.0 records with jAER DAVIS addresses.

    Args:
        words: uint32, shape (2*R,): R records ``u32 address, u32 timestamp (µs)``, stored
            big-endian and read as native (little-endian) words: the kernel swaps the bytes.
        out: EVENT_DTYPE, shape (>= R,), written from index 0.
        state: int64[2] counters (see :func:`aedat2_state`): APS/IMU words and external
            input events skipped, updated in place.
        flip_width, flip_height: the camera's native size, used to mirror the raw addresses.
        width, height: sensor bounds the decoded coordinates must lie in (at most 32768, the
            int16 range of ``EVENT_DTYPE``).

    Address bits (jAER ``DavisChip``): bit 31 set = APS sample or IMU word (skipped); bit 10
    set = external input event (skipped); bit 11 polarity (1 = ON); bits 12-21 raw x;
    bits 22-30 raw y. ``x = flip_width - 1 - raw x``, ``y = flip_height - 1 - raw y``.

    Returns:
        ``(n_events, flags)``; flags is :data:`FLAG_OUTSIDE` when an event lies outside the
        sensor.
    """
    cols = columns(out)
    n = 0
    n_aps_imu = state[0]
    n_external = state[1]
    outside = False
    for r in range(words.shape[0] // 2):
        a = _swap32(np.int64(words[2 * r]))
        if (a >> 31) != 0:
            n_aps_imu += 1
            continue
        if (a & 0x400) != 0:
            n_external += 1
            continue
        x = flip_width - 1 - ((a >> 12) & 0x3FF)
        y = flip_height - 1 - ((a >> 22) & 0x1FF)
        store(cols, n, x, y, _swap32(np.int64(words[2 * r + 1])), (a >> 11) & 1)
        outside |= (x < 0) | (x >= width) | (y < 0) | (y >= height)
        n += 1
    state[0] = n_aps_imu
    state[1] = n_external
    return n, FLAG_OUTSIDE * np.int64(outside)


@numba.njit(cache=True, nogil=True)
def aedat3_polarity(words, offsets, counts, overflows, out, width, height):
    """Decode the events of AEDAT 3.1 polarity packets (libcaer ``caer_polarity_event``).

    Args:
        words: uint32 (little-endian) words holding the packets.
        offsets: int64, shape (K,): index in ``words`` of each packet's first event.
        counts: int64, shape (K,): ``eventNumber`` of each packet (8-byte events).
        overflows: int64, shape (K,): ``eventTSOverflow`` of each packet.
        out: EVENT_DTYPE, shape (>= sum(counts),), written from index 0.
        width, height: sensor bounds.

    Event layout: ``u32 data`` with bit 0 valid, bit 1 polarity (1 = ON), bits 2-16 y,
    bits 17-31 x; then ``i32 timestamp`` (µs). ``t = (eventTSOverflow << 31) | timestamp``.
    Invalid events (bit 0 = 0) are skipped.

    Returns:
        ``(n_events, n_invalid, bad)``; ``bad`` is the index in ``words`` of the first valid
        event outside the sensor (``-1`` if none; decoding stops there).
    """
    cols = columns(out)
    n = 0
    n_invalid = 0
    for k in range(offsets.shape[0]):
        base = offsets[k]
        high = overflows[k] << 31
        for i in range(counts[k]):
            j = np.uint64(base + 2 * i)  # unsigned: no negative-index check in the loop
            d = np.int64(words[j])
            if (d & 1) == 0:
                n_invalid += 1
                continue
            x = (d >> 17) & 0x7FFF
            y = (d >> 2) & 0x7FFF
            if x >= width or y >= height:
                return n, n_invalid, np.int64(j)
            ts = np.int64(np.int32(words[j + np.uint64(1)]))  # i32, sign kept
            store(cols, n, x, y, high | ts, (d >> 1) & 1)
            n += 1
    return n, n_invalid, -1


@numba.njit(cache=True, nogil=True)
def aedat4_events(buf, out, width, height):
    """Decode AEDAT 4.0 ``Event`` structs (DV ``events.fbs``), 16 bytes each, little-endian.

    Args:
        buf: uint8, shape (16*N,): ``i64 t (µs), i16 x, i16 y, u8 on, 3 padding bytes``.
        out: EVENT_DTYPE, shape (>= N,), written from index 0.
        width, height: sensor bounds.

    Returns:
        ``(n_events, bad)``; ``bad`` is the index of the first struct outside the sensor
        (``-1`` if none; decoding stops there).
    """
    cols = columns(out)
    n_ev = buf.shape[0] // 16
    for i in range(n_ev):
        j = 16 * i
        x = np.int64(buf[j + 8]) | (np.int64(buf[j + 9]) << 8)
        y = np.int64(buf[j + 10]) | (np.int64(buf[j + 11]) << 8)
        if x >= 0x8000:
            x -= 0x10000
        if y >= 0x8000:
            y -= 0x10000
        if x < 0 or x >= width or y < 0 or y >= height:
            return i, i
        t = np.int64(0)
        for b in range(7, -1, -1):
            t = (t << 8) | np.int64(buf[j + b])
        store(cols, i, x, y, t, buf[j + 12] != 0)
    return n_ev, -1

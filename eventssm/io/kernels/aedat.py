"""Numba kernels that unpack AEDAT 2.0 / 3.1 / 4.0 event words (layouts: ``eventssm.io.aedat``).

Every kernel makes one pass over raw bytes (``uint8``), writes into a caller-allocated
``EVENT_DTYPE`` array ``out`` sized by an upper bound, and returns how many events it wrote
plus counters; the caller trims. Multi-byte words are assembled from bytes in the kernel, so
no byte-swapped copy of the input is made. Each kernel stops at the first event whose
coordinates fall outside ``width x height`` and reports where (``bad``, ``-1`` when none), so
the reader can name the byte offset of the offending word.

``kernel.py_func`` is the readable reference; tests compare both on the same bytes.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _be_u32(buf, i):
    """Big-endian unsigned 32-bit word at byte ``i``, as int64."""
    return (
        (np.int64(buf[i]) << 24)
        | (np.int64(buf[i + 1]) << 16)
        | (np.int64(buf[i + 2]) << 8)
        | np.int64(buf[i + 3])
    )


@numba.njit(cache=True)
def _le_u32(buf, i):
    """Little-endian unsigned 32-bit word at byte ``i``, as int64."""
    return (
        np.int64(buf[i])
        | (np.int64(buf[i + 1]) << 8)
        | (np.int64(buf[i + 2]) << 16)
        | (np.int64(buf[i + 3]) << 24)
    )


@numba.njit(cache=True)
def aedat2_dvs128(buf, out, width, height):
    """Decode AEDAT 2.0 records with jAER DVS128 addresses.

    Args:
        buf: uint8, shape (8*R,): R big-endian records ``u32 address, u32 timestamp (µs)``.
        out: EVENT_DTYPE, shape (>= R,), written from index 0.
        width, height: sensor bounds the decoded coordinates must lie in.

    Address bits (jAER ``DVS128.Extractor``): bit 0 polarity (0 = ON), bits 1-7 raw x,
    bits 8-14 y, bit 15 sync/external event, bit 31 special event. ``x = 127 - raw x``,
    ``y = raw y``, ``p = (bit 0 == 0)``. Words with bit 15 or bit 31 set are skipped.

    Returns:
        ``(n_events, n_special, bad)``: events written, words skipped, and the index of the
        first record whose coordinates are outside the sensor (``-1`` if none; decoding stops
        there).
    """
    n_rec = buf.shape[0] // 8
    n = 0
    n_special = 0
    for r in range(n_rec):
        j = 8 * r
        a = _be_u32(buf, j)
        if (a & 0x80008000) != 0:
            n_special += 1
            continue
        x = 127 - ((a >> 1) & 0x7F)
        y = (a >> 8) & 0x7F
        if x >= width or y >= height:
            return n, n_special, r
        out[n]["x"] = x
        out[n]["y"] = y
        out[n]["t"] = _be_u32(buf, j + 4)
        out[n]["p"] = (a & 1) == 0
        n += 1
    return n, n_special, -1


@numba.njit(cache=True)
def aedat2_davis(buf, out, flip_width, flip_height, width, height):
    """Decode AEDAT 2.0 records with jAER DAVIS addresses.

    Args:
        buf: uint8, shape (8*R,): R big-endian records ``u32 address, u32 timestamp (µs)``.
        out: EVENT_DTYPE, shape (>= R,), written from index 0.
        flip_width, flip_height: the camera's native size, used to mirror the raw addresses.
        width, height: sensor bounds the decoded coordinates must lie in.

    Address bits (jAER ``DavisChip``): bit 31 set = APS sample or IMU word (skipped); bit 10
    set = external input event (skipped); bit 11 polarity (1 = ON); bits 12-21 raw x;
    bits 22-30 raw y. ``x = flip_width - 1 - raw x``, ``y = flip_height - 1 - raw y``.

    Returns:
        ``(n_events, n_aps_imu, n_external, bad)``; ``bad`` is the index of the first record
        whose coordinates are outside the sensor (``-1`` if none; decoding stops there).
    """
    n_rec = buf.shape[0] // 8
    n = 0
    n_aps_imu = 0
    n_external = 0
    for r in range(n_rec):
        j = 8 * r
        a = _be_u32(buf, j)
        if (a >> 31) != 0:
            n_aps_imu += 1
            continue
        if (a & 0x400) != 0:
            n_external += 1
            continue
        x = flip_width - 1 - ((a >> 12) & 0x3FF)
        y = flip_height - 1 - ((a >> 22) & 0x1FF)
        if x < 0 or x >= width or y < 0 or y >= height:
            return n, n_aps_imu, n_external, r
        out[n]["x"] = x
        out[n]["y"] = y
        out[n]["t"] = _be_u32(buf, j + 4)
        out[n]["p"] = ((a >> 11) & 1) == 1
        n += 1
    return n, n_aps_imu, n_external, -1


@numba.njit(cache=True)
def aedat3_polarity(buf, offsets, counts, overflows, out, width, height):
    """Decode the events of AEDAT 3.1 polarity packets (libcaer ``caer_polarity_event``).

    Args:
        buf: uint8 bytes holding the packets.
        offsets: int64, shape (K,): byte offset in ``buf`` of each packet's first event.
        counts: int64, shape (K,): ``eventNumber`` of each packet (8-byte events).
        overflows: int64, shape (K,): ``eventTSOverflow`` of each packet.
        out: EVENT_DTYPE, shape (>= sum(counts),), written from index 0.
        width, height: sensor bounds.

    Event layout (little-endian): ``u32 data`` with bit 0 valid, bit 1 polarity (1 = ON),
    bits 2-16 y, bits 17-31 x; then ``i32 timestamp`` (µs).
    ``t = (eventTSOverflow << 31) | timestamp``. Invalid events (bit 0 = 0) are skipped.

    Returns:
        ``(n_events, n_invalid, bad)``; ``bad`` is the byte offset in ``buf`` of the first
        valid event outside the sensor (``-1`` if none; decoding stops there).
    """
    n = 0
    n_invalid = 0
    for k in range(offsets.shape[0]):
        base = offsets[k]
        high = overflows[k] << 31
        for i in range(counts[k]):
            j = base + 8 * i
            d = _le_u32(buf, j)
            if (d & 1) == 0:
                n_invalid += 1
                continue
            x = (d >> 17) & 0x7FFF
            y = (d >> 2) & 0x7FFF
            if x >= width or y >= height:
                return n, n_invalid, j
            ts = _le_u32(buf, j + 4)
            if ts >= 0x80000000:
                ts -= 0x100000000
            out[n]["x"] = x
            out[n]["y"] = y
            out[n]["t"] = high | ts
            out[n]["p"] = ((d >> 1) & 1) == 1
            n += 1
    return n, n_invalid, -1


@numba.njit(cache=True)
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
        out[i]["x"] = x
        out[i]["y"] = y
        out[i]["t"] = t
        out[i]["p"] = buf[j + 12] != 0
    return n_ev, -1

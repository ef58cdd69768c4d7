"""Numba kernels that unpack Prophesee EVT 2.0, EVT 3.0 and DAT words into ``EVENT_DTYPE``.

Each kernel makes a single pass over one block of little-endian words and writes decoded CD
events straight into a preallocated ``EVENT_DTYPE`` array (``x int16, y int16, t int64 µs,
p bool``). The caller sizes ``out`` by an upper bound computed from the byte count
(:func:`evt2_bound`, :func:`evt3_bound`, one event per DAT record) and trims it to the
returned count. Decoder state lives in a small ``int64`` array that the kernel reads at the
start and writes back at the end, so a file decoded block by block gives exactly the events
of a whole-file decode.

Every kernel follows the block-kernel convention of :mod:`eventssm.io.kernels.common`: it
returns ``(n_events, flags)`` with :data:`FLAG_OUTSIDE` for an event at ``x >= width`` or
``y >= height`` and :data:`FLAG_RESERVED` for a word whose type the format reserves, and keeps
decoding after a problem (the error path locates the first offending word by bisection with
the same kernel). Bit layouts and their sources are documented in
:mod:`eventssm.io.prophesee`; the ``.py_func`` of each kernel is the readable reference that
the tests compare against.
"""

from __future__ import annotations

import numba
import numpy as np

from eventssm.io.kernels.common import FLAG_OUTSIDE, FLAG_RESERVED, columns, new_state, store

__all__ = [
    "FLAG_OUTSIDE",
    "FLAG_RESERVED",
    "dat_bound",
    "dat_state",
    "decode_dat",
    "decode_evt2",
    "decode_evt3",
    "evt2_bound",
    "evt2_state",
    "evt3_bound",
    "evt3_state",
]


# ---------------------------------------------------------------------------------------------
# EVT 2.0
# ---------------------------------------------------------------------------------------------

#: EVT 2.0 state slots: started (a TIME_HIGH was seen), base time in µs (TIME_HIGH << 6 plus
#: the loop shift), loop shift in µs (multiples of 2**34).
EVT2_STATE_SIZE = 3
# OpenEB evt2_decoder.h: MaxTimestamp = ((1 << 28) - 1) << 6, LoopThreshold = 10000,
# TimeLoop = MaxTimestamp + (1 << 6) = 2**34.
EVT2_MAX_TIMESTAMP = ((1 << 28) - 1) << 6
EVT2_LOOP_THRESHOLD = 10000
EVT2_TIME_LOOP = 1 << 34


def evt2_state() -> np.ndarray:
    """Fresh EVT 2.0 decoder state, ``int64[EVT2_STATE_SIZE]``."""
    return new_state(0, 0, 0)


def evt2_bound(n_words: int) -> int:
    """Upper bound of CD events in ``n_words`` EVT 2.0 words (one event per word)."""
    return int(n_words)


@numba.njit(cache=True, nogil=True)
def decode_evt2(words, out, state, width, height):
    """Decode EVT 2.0 words into CD events.

    Args:
        words: ``uint32[n]`` little-endian EVT 2.0 words (type in bits 28-31).
        out: ``EVENT_DTYPE[>= n]`` output buffer.
        state: ``int64[3]`` decoder state (see :func:`evt2_state`), updated in place.
        width, height: sensor size (events outside it raise FLAG_OUTSIDE).

    Returns:
        ``(n_events, flags)``.

    Words before the first EVT_TIME_HIGH are skipped (OpenEB does the same: without a time
    base their timestamps are unknown). A TIME_HIGH that jumps back by at least
    ``MaxTimestamp - 10000`` µs is a wrap of the 34-bit time and adds 2**34 µs (OpenEB).
    """
    cols = columns(out)
    started = state[0]
    base = state[1]
    shift = state[2]
    n = 0
    flags = 0
    n_words = words.shape[0]
    i = 0
    if not started:  # skip to the first EVT_TIME_HIGH
        while i < n_words:
            typ = np.int64(words[i]) >> 28
            i += 1
            if typ == 0x8:
                started = 1
                base = (np.int64(words[i - 1]) & 0xFFFFFFF) << 6
                break
            if not (typ <= 0x1 or typ == 0xA or typ >= 0xE):
                flags |= FLAG_RESERVED
    while i < n_words:
        w = np.int64(words[i])
        typ = w >> 28
        i += 1
        if typ <= 0x1:  # CD_OFF (0x0) / CD_ON (0x1)
            x = (w >> 11) & 0x7FF
            y = w & 0x7FF
            store(cols, n, x, y, base + ((w >> 22) & 0x3F), typ)
            n += 1
            flags |= np.int64((x >= width) | (y >= height))
        elif typ == 0x8:  # EVT_TIME_HIGH
            new = ((w & 0xFFFFFFF) << 6) + shift
            if new < base and base - new >= EVT2_MAX_TIMESTAMP - EVT2_LOOP_THRESHOLD:
                shift += EVT2_TIME_LOOP
                new += EVT2_TIME_LOOP
            base = new
        elif not (typ == 0xA or typ >= 0xE):  # EXT_TRIGGER, OTHERS, CONTINUED are skipped
            flags |= FLAG_RESERVED
    state[0] = started
    state[1] = base
    state[2] = shift
    return n, flags


# ---------------------------------------------------------------------------------------------
# EVT 3.0
# ---------------------------------------------------------------------------------------------

#: EVT 3.0 state slots: started, time high (12 bits), time low (12 bits), loop count,
#: y (-1 before the first EVT_ADDR_Y), vector base x (-1 before the first VECT_BASE_X),
#: vector polarity.
EVT3_STATE_SIZE = 7


def evt3_state() -> np.ndarray:
    """Fresh EVT 3.0 decoder state, ``int64[EVT3_STATE_SIZE]``."""
    return new_state(0, 0, 0, 0, -1, -1, 0)


def evt3_bound(n_words: int) -> int:
    """Capacity the EVT 3.0 kernel needs for ``n_words`` words (a VECT_12 word holds 12).

    A VECT_12 word holds up to 12 events (one per set bit), hence the bound of 12 per word.
    """
    return 12 * int(n_words)


#: Trailing zero bits of every 12-bit value (index 0 unused): the x offset of a vector's
#: lowest set bit.
_CTZ12 = np.array([0] + [(v & -v).bit_length() - 1 for v in range(1, 1 << 12)], dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def decode_evt3(words, out, state, width, height):
    """Decode EVT 3.0 words into CD events (OpenEB time semantics).

    Args:
        words: ``uint16[n]`` little-endian EVT 3.0 words (type in bits 12-15).
        out: ``EVENT_DTYPE[>= evt3_bound(n)]`` output buffer.
        state: ``int64[7]`` decoder state (see :func:`evt3_state`), updated in place.
        width, height: sensor size (events outside it raise FLAG_OUTSIDE).

    Returns:
        ``(n_events, flags)``.

    Time: ``t = loop * 2**24 + time_high * 2**12 + time_low``. EVT_TIME_LOW only replaces
    the low 12 bits (a TIME_LOW that steps back is not an overflow); EVT_TIME_HIGH replaces
    the high 12 bits, resets time_low to 0 when its value changes, and counts a 24-bit wrap
    when it drops by at least 2048 (OpenEB evt3_decoder.h). Words before the first
    TIME_HIGH are skipped, as OpenEB does. Vector words before any VECT_BASE_X and CD words
    before any EVT_ADDR_Y carry no complete address and are skipped.
    """
    cols = columns(out)
    started = state[0]
    high = state[1]
    low = state[2]
    loop = state[3]
    y = state[4]
    base_x = state[5]
    vpol = state[6]
    n = 0
    flags = 0
    n_words = words.shape[0]
    i = 0
    if not started:  # skip to the first EVT_TIME_HIGH
        while i < n_words:
            typ = np.int64(words[i]) >> 12
            i += 1
            if typ == 0x8:
                started = 1
                high = np.int64(words[i - 1]) & 0xFFF
                low = 0
                break
            if typ == 0x1 or typ == 0x9:
                flags |= FLAG_RESERVED
    hi = (loop << 24) | (high << 12)
    # Branches ordered by frequency in camera data (ADDR_X, ADDR_Y, TIME_LOW, vectors). A
    # branch-free variant (state updates by bit masks, a candidate event written per word)
    # was measured: no faster on the real sample, three times slower on regular streams.
    while i < n_words:
        w = np.int64(words[i])
        i += 1
        typ = w >> 12
        payload = w & 0xFFF
        if typ == 0x2:  # EVT_ADDR_X: one event, polarity bit 11
            if y >= 0:
                x = payload & 0x7FF
                store(cols, n, x, y, hi | low, payload >> 11)
                flags |= np.int64((x >= width) | (y >= height))
                n += 1
        elif typ == 0x0:  # EVT_ADDR_Y (bit 11 is the master/slave system type)
            y = payload & 0x7FF
        elif typ == 0x6:  # EVT_TIME_LOW
            low = payload
        elif (typ == 0x4) | (typ == 0x5):  # VECT_12 / VECT_8: events at base_x + set bits
            nbits = 12 if typ == 0x4 else 8
            if base_x >= 0:
                valid = payload & (0xFFF if typ == 0x4 else 0xFF)
                if y >= 0 and valid != 0:
                    flags |= np.int64(y >= height)
                    if base_x + nbits > width:  # near the right edge: check the last set bit
                        top = nbits - 1
                        while (valid >> top) & 1 == 0:
                            top -= 1
                        flags |= np.int64(base_x + top >= width)
                    t = hi | low
                    # one store per set bit, lowest first (camera vectors are sparse: 0.8
                    # of 12 bits set on the real sample; measured 10% faster there than a
                    # branch-free store per slot)
                    while valid != 0:
                        store(cols, n, base_x + _CTZ12[valid], y, t, vpol)
                        n += 1
                        valid &= valid - 1
                base_x += nbits
        elif typ == 0x3:  # VECT_BASE_X: base x and polarity of the next vectors
            base_x = payload & 0x7FF
            vpol = payload >> 11
        elif typ == 0x8:  # EVT_TIME_HIGH
            if high >= 2048 + payload:
                loop += 1
            if payload != high:
                low = 0
            high = payload
            hi = (loop << 24) | (high << 12)
        elif (typ == 0x1) | (typ == 0x9):
            flags |= FLAG_RESERVED
        # 0x7 CONTINUED_4, 0xA EXT_TRIGGER, 0xB/0xC unused, 0xD IMU, 0xE OTHERS,
        # 0xF CONTINUED_12: not CD events, skipped.
    state[0] = started
    state[1] = high
    state[2] = low
    state[3] = loop
    state[4] = y
    state[5] = base_x
    state[6] = vpol
    return n, flags


# ---------------------------------------------------------------------------------------------
# DAT
# ---------------------------------------------------------------------------------------------

#: DAT state slots: previous raw 32-bit timestamp (-1 before the first record), wrap shift µs.
DAT_STATE_SIZE = 2


def dat_state() -> np.ndarray:
    """Fresh DAT decoder state, ``int64[DAT_STATE_SIZE]``."""
    return new_state(-1, 0)


def dat_bound(n_records: int) -> int:
    """Events in ``n_records`` DAT records (one each)."""
    return int(n_records)


@numba.njit(cache=True, nogil=True)
def decode_dat(words, out, state, width, height, version):
    """Decode DAT CD records (pairs of ``uint32``: timestamp, packed address).

    Args:
        words: ``uint32[2 n]``: ``t0, data0, t1, data1, ...`` (8-byte little-endian records).
        out: ``EVENT_DTYPE[>= n]`` output buffer.
        state: ``int64[2]`` decoder state (see :func:`dat_state`), updated in place.
        width, height: sensor size (events outside it raise FLAG_OUTSIDE).
        version: 2 (x bits 0-13, y bits 14-27, p bit 28) or 1 (x bits 0-8, y bits 9-16,
            p bit 17).

    Returns:
        ``(n_events, flags)``; the kernel consumes one record (two words) per event.

    The 32-bit timestamp wraps after 71.6 minutes: a drop of at least 2**31 µs from one
    record to the next is taken as a wrap and adds 2**32 µs; smaller drops are kept as they
    are (non-monotonic data is reported, not "repaired").
    """
    cols = columns(out)
    prev = state[0]
    shift = state[1]
    flags = 0
    n_rec = words.shape[0] // 2
    if version == 1:
        xmask, yshift, ymask, pshift = 0x1FF, 9, 0xFF, 17
    else:
        xmask, yshift, ymask, pshift = 0x3FFF, 14, 0x3FFF, 28
    for i in range(n_rec):
        traw = np.int64(words[2 * i])
        d = np.int64(words[2 * i + 1])
        x = d & xmask
        y = (d >> yshift) & ymask
        flags |= np.int64((x >= width) | (y >= height))
        if prev >= 0 and prev - traw >= (1 << 31):
            shift += 1 << 32
        prev = traw
        store(cols, i, x, y, traw + shift, (d >> pshift) & 1)
    state[0] = prev
    state[1] = shift
    return n_rec, flags


"""Reference encoders of the Prophesee formats (pure numpy): EVT 2.0 and EVT 3.0 RAW files and
DAT files, the inverses of the readers in :mod:`eventssm.io.prophesee` (layouts described
there). Used by tests, fuzzing, sample data and ``FormatSpec.encode``.
"""

from __future__ import annotations

import numpy as np

from eventssm.io.kernels import prophesee as K
from eventssm.io.prophesee import DAT_LIMITS, EVT_MAX_COORD

__all__ = ["encode_dat", "encode_evt2", "encode_evt3"]


def _encoder_input(events: np.ndarray, width: int, height: int, max_w: int, max_h: int):
    ev = np.asarray(events)
    if ev.dtype.names is None or not {"x", "y", "t", "p"} <= set(ev.dtype.names):
        raise ValueError("events must be a structured array with fields x, y, t, p")
    if not (1 <= width <= max_w and 1 <= height <= max_h):
        raise ValueError(f"sensor {width}x{height} outside 1..{max_w} x 1..{max_h}")
    x = ev["x"].astype(np.int64)
    y = ev["y"].astype(np.int64)
    t = ev["t"].astype(np.int64)
    p = ev["p"].astype(bool).astype(np.int64)
    if len(ev) and ((x < 0).any() or (x >= width).any() or (y < 0).any() or (y >= height).any()):
        raise ValueError(f"events lie outside the {width}x{height} sensor")
    if len(ev) and (t < 0).any():
        raise ValueError("negative timestamps cannot be encoded")
    return x, y, t, p


def _raw_header(encoding: str, width: int, height: int) -> bytes:
    evt = {"EVT2": "2.0", "EVT3": "3.0"}[encoding]
    return (f"% evt {evt}\n% format {encoding};height={height};width={width}\n"
            f"% geometry {width}x{height}\n% integrator_name eventssm\n% end\n").encode()


def encode_evt2(events: np.ndarray, width: int, height: int) -> bytes:
    """Encode CD events as a Prophesee RAW file in EVT 2.0 (header included).

    Args:
        events: structured array with x, y, t (µs, 0 <= t < 2**34), p; any order except a
            jump back in time so large that a decoder reads it as a 34-bit wrap.
        width, height: sensor size written to the header (<= 2048).

    Returns:
        File bytes: header, then one EVT_TIME_HIGH word whenever ``t >> 6`` changes and one
        CD word per event.
    """
    x, y, t, p = _encoder_input(events, width, height, EVT_MAX_COORD, EVT_MAX_COORD)
    head = _raw_header("EVT2", width, height)
    n = len(t)
    if n == 0:
        return head
    if (t >= 1 << 34).any():
        raise ValueError("EVT 2.0 timestamps must be below 2**34 µs")
    th = t >> 6
    back = (th[:-1] - th[1:]) << 6
    if (back >= K.EVT2_MAX_TIMESTAMP - K.EVT2_LOOP_THRESHOLD).any():
        raise ValueError("a jump back in time this large reads as a 34-bit wrap in EVT 2.0")
    need = np.ones(n, dtype=bool)
    need[1:] = th[1:] != th[:-1]
    pos_ev = np.arange(n) + np.cumsum(need)
    words = np.empty(n + int(need.sum()), dtype="<u4")
    words[pos_ev[need] - 1] = (0x8 << 28) | th[need]
    words[pos_ev] = (p << 28) | ((t & 0x3F) << 22) | (x << 11) | y
    return head + words.tobytes()


def encode_evt3(events: np.ndarray, width: int, height: int) -> bytes:
    """Encode CD events as a Prophesee RAW file in EVT 3.0 (header included).

    Only single-event and time words are written (EVT_TIME_HIGH, EVT_TIME_LOW, EVT_ADDR_Y,
    EVT_ADDR_X); no vectors. Timestamps must be non-decreasing; long gaps and times beyond
    the 24-bit range are encoded with intermediate EVT_TIME_HIGH words whose steps stay below
    2048, so a decoder following OpenEB's wrap rule recovers them exactly.

    Args:
        events: structured array with x, y, t (µs, >= 0, non-decreasing), p.
        width, height: sensor size written to the header (<= 2048).

    Returns:
        File bytes.
    """
    x, y, t, p = _encoder_input(events, width, height, EVT_MAX_COORD, EVT_MAX_COORD)
    head = _raw_header("EVT3", width, height)
    n = len(t)
    if n == 0:
        return head
    if (np.diff(t) < 0).any():
        raise ValueError("EVT 3.0 encoding needs non-decreasing timestamps")
    hf = t >> 12  # full time-high count (unbounded)
    prev = np.empty(n, dtype=np.int64)
    prev[1:] = hf[:-1]
    lead = 1  # event 0 gets a leading TIME_HIGH at its start value
    prev[0] = hf[0] if hf[0] < 4096 else 0
    gap = hf - prev
    steps = np.where(gap > 0, -(-gap // 2047), 0)  # ceil(gap / 2047) TIME_HIGH words
    steps[0] += lead
    new_t = np.ones(n, dtype=bool)
    new_t[1:] = t[1:] != t[:-1]
    new_y = np.ones(n, dtype=bool)
    new_y[1:] = y[1:] != y[:-1]
    per = steps + new_t + new_y + 1
    end = np.cumsum(per)
    begin = end - per
    words = np.empty(int(end[-1]), dtype="<u2")
    # TIME_HIGH words: for event i, values prev_i + 2047 j (j = 1..steps, last clipped to hf)
    ev_of = np.repeat(np.arange(n), steps)
    first = np.repeat(np.cumsum(steps) - steps, steps)
    j = np.arange(len(ev_of)) - first  # 0-based index within the event's TIME_HIGH words
    jj = j + 1 - (ev_of == 0) * lead  # event 0: j = 0 is the leading word at prev_0
    val = np.minimum(prev[ev_of] + 2047 * jj, hf[ev_of])
    words[begin[ev_of] + j] = (0x8 << 12) | (val & 0xFFF)
    k = begin + steps
    words[k[new_t]] = (0x6 << 12) | (t[new_t] & 0xFFF)
    k = k + new_t
    words[k[new_y]] = (0x0 << 12) | y[new_y]
    k = k + new_y
    words[k] = (0x2 << 12) | (p << 11) | x
    return head + words.tobytes()


def encode_dat(events: np.ndarray, width: int, height: int, version: int = 2) -> bytes:
    """Encode CD events as a Prophesee DAT file (header, type 0x0C, size 8, records).

    Args:
        events: structured array with x, y, t (µs, >= 0), p. Timestamps are stored modulo
            2**32; a sequence the reader would unwrap differently (a drop of 2**31 µs or
            more that is not a wrap) raises ValueError.
        width, height: sensor size for the ``% Width`` / ``% Height`` lines.
        version: 2 (x, y < 16384) or 1 (x < 512, y < 256).

    Returns:
        File bytes.
    """
    if version not in DAT_LIMITS:
        raise ValueError(f"DAT version must be 1 or 2, not {version}")
    lim = DAT_LIMITS[version]
    x, y, t, p = _encoder_input(events, width, height, lim[0], lim[1])
    head = (f"% Data file containing CD events\n% Version {version}\n% Width {width}\n"
            f"% Height {height}\n").encode() + bytes([0x0C, 8])
    n = len(t)
    if n == 0:
        return head
    traw = t & 0xFFFFFFFF
    wraps = np.zeros(n, dtype=np.int64)
    wraps[1:] = (traw[:-1] - traw[1:]) >= (1 << 31)
    if not np.array_equal(traw + (np.cumsum(wraps) << 32), t):
        raise ValueError("timestamps are not representable in DAT (32-bit time with wraps)")
    rec = np.empty((n, 2), dtype="<u4")
    rec[:, 0] = traw
    if version == 2:
        rec[:, 1] = x | (y << 14) | (p << 28)
    else:
        rec[:, 1] = x | (y << 9) | (p << 17)
    return head + rec.tobytes()

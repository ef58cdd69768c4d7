"""Numba kernels behind :mod:`eventssm.tokenizers.functional` and ``transforms``.

Every kernel is ``@numba.njit(cache=True)``; its ``.py_func`` is the readable reference and the
tests run both on the same input. Kernels take the ``EVENT_DTYPE`` structured array directly
(record access ``events[i]["x"]``) and write into caller-allocated outputs; the Python wrappers in
``functional.py`` / ``transforms.py`` do the argument checking.

Randomness: augmentation kernels never touch a global random state. The caller draws a 128-bit
seed from its explicit :class:`numpy.random.Generator` (``rng_state(rng)``) and the kernel runs
xoshiro128** on it, so a fixed Generator seed gives the same output every time. xoshiro128** is
the generator of Blackman & Vigna, "Scrambled linear pseudorandom number generators" (ACM TOMS
2021): ``result = rotl(s1 * 5, 7) * 9``, then the xor/shift state update with shift 9 and rotation
11. It is written here with 32-bit words held in int64 and masked, so that neither the compiled
kernel nor its ``.py_func`` overflows. Normal deviates use a 128-layer ziggurat.
"""

from __future__ import annotations

import numba
import numpy as np

_MASK32 = 0xFFFFFFFF
_INV_2_32 = 2.3283064365386963e-10  # 2**-32

# status codes of tokenize_kernel
TOKENIZE_OK = 0
TOKENIZE_OUT_OF_RANGE = 1
TOKENIZE_UNSORTED = 2


# --------------------------------------------------------------------------------------------
# random numbers


def rng_state(rng: np.random.Generator) -> np.ndarray:
    """Draw a fresh xoshiro128** state (int64 (4,), each word in [1, 2**32)) from ``rng``."""
    return rng.integers(1, 1 << 32, size=4, dtype=np.int64)


@numba.njit(cache=True, inline="always")
def _rotl32(x, k):
    return ((x << k) | (x >> (32 - k))) & _MASK32


@numba.njit(cache=True, inline="always")
def xoshiro_step(st):
    """One xoshiro128** step on the state tuple ``st = (s0, s1, s2, s3)`` (32-bit words as
    int64). Returns ``(r, st')`` with r a uint32 held in an int64. Kernels keep the state in a
    tuple of locals (registers) and load/store the (4,) array only at entry and exit."""
    s0, s1, s2, s3 = st
    result = (_rotl32((s1 * 5) & _MASK32, 7) * 9) & _MASK32
    t = (s1 << 9) & _MASK32
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl32(s3, 11)
    return result, (s0, s1, s2, s3)


@numba.njit(cache=True)
def load_state(s):
    return (s[0], s[1], s[2], s[3])


@numba.njit(cache=True)
def store_state(s, st):
    s[0], s[1], s[2], s[3] = st


@numba.njit(cache=True)
def rng_next(s):
    """Advance the state array ``s`` (int64 (4,), in place); return a uint32 as int64."""
    r, st = xoshiro_step(load_state(s))
    store_state(s, st)
    return r


@numba.njit(cache=True, inline="always")
def uniform(st):
    """``(u, st')`` with u a float64 uniform in [0, 1) (32 random bits)."""
    r, st = xoshiro_step(st)
    return r * _INV_2_32, st


def _ziggurat_tables(n: int = 128, r: float = 3.442619855899, v: float = 9.91256303526217e-3):
    """Tables of the 128-layer ziggurat for N(0, 1) (Marsaglia & Tsang, "The Ziggurat Method for
    Generating Random Variables", J. Stat. Softw. 5(8), 2000: r = 3.442619855899, layer area
    v = 9.91256303526217e-3), scaled for a 25-bit signed integer (``_ZIG_M = 2**24``)."""
    m = float(_ZIG_M)
    k = np.zeros(n, dtype=np.int64)
    w = np.zeros(n, dtype=np.float64)
    f = np.zeros(n, dtype=np.float64)
    d = t = r
    q = v / np.exp(-0.5 * d * d)
    k[0] = int(d / q * m)
    k[1] = 0
    w[0] = q / m
    w[n - 1] = d / m
    f[0] = 1.0
    f[n - 1] = np.exp(-0.5 * d * d)
    for i in range(n - 2, 0, -1):
        d = np.sqrt(-2.0 * np.log(v / d + np.exp(-0.5 * d * d)))
        k[i + 1] = int(d / t * m)
        t = d
        f[i] = np.exp(-0.5 * d * d)
        w[i] = d / m
    return k, w, f


_ZIG_M = 1 << 24
_ZIG_R = 3.442619855899
_ZIG_K, _ZIG_W, _ZIG_F = _ziggurat_tables()


@numba.njit(cache=True, inline="always")
def normal(st):
    """``(z, st')`` with z a standard normal float64 deviate (128-layer ziggurat).

    Each 32-bit draw gives the layer (low 7 bits) and a signed 25-bit abscissa (high 25 bits)
    from disjoint bits, avoiding the layer/value correlation of the original RNOR
    (Doornik, "An Improved Ziggurat Method to Generate Normal Random Samples", 2005).
    """
    while True:
        r, st = xoshiro_step(st)
        i = r & 127
        j = (r >> 7) - _ZIG_M
        x = j * _ZIG_W[i]
        if abs(j) < _ZIG_K[i]:
            return x, st  # inside the rectangle: ~99% of draws
        if i == 0:  # base layer: sample the tail beyond r (Marsaglia 1964)
            while True:
                r, st = xoshiro_step(st)
                xt = -np.log((r + 0.5) * _INV_2_32) / _ZIG_R
                r, st = xoshiro_step(st)
                yt = -np.log((r + 0.5) * _INV_2_32)
                if yt + yt >= xt * xt:
                    return (_ZIG_R + xt if j > 0 else -_ZIG_R - xt), st
        # wedge: accept under the density
        u, st = uniform(st)
        if _ZIG_F[i] + u * (_ZIG_F[i - 1] - _ZIG_F[i]) < np.exp(-0.5 * x * x):
            return x, st


@numba.njit(cache=True)
def fill_uniform(s, out):
    """Fill float64 ``out`` with uniforms from the state array ``s`` (advanced in place)."""
    st = load_state(s)
    for i in range(out.shape[0]):
        out[i], st = uniform(st)
    store_state(s, st)


@numba.njit(cache=True)
def fill_normal(s, out):
    """Fill float64 ``out`` with standard normals from the state array ``s``."""
    st = load_state(s)
    for i in range(out.shape[0]):
        out[i], st = normal(st)
    store_state(s, st)


# --------------------------------------------------------------------------------------------
# tokenization


@numba.njit(cache=True)
def tokenize_kernel(events, width, height, xn, xd, yn, yd, h2, p2, scale, tokens, dt):
    """Write ``tokens`` (int32) and ``dt`` (float32) for ``events``; return (status, index).

    Coordinates map to the grid as ``x2 = x * xn // xd``, ``y2 = y * yn // yd``; the token is
    ``p2 * (x2 * h2 + y2) + (p if p2 == 2 else 0)``; ``dt_k = (t_k - t_{k-1}) * scale``, dt_0 = 0.
    Stops at the first event outside ``width x height`` (status 1) or whose timestamp is smaller
    than the previous one (status 2); status 0 means every event was written.
    """
    n = events.shape[0]
    prev = np.int64(0)
    for i in range(n):
        e = events[i]
        x = np.int64(e["x"])
        y = np.int64(e["y"])
        t = np.int64(e["t"])
        if x < 0 or x >= width or y < 0 or y >= height:
            return TOKENIZE_OUT_OF_RANGE, i
        if i == 0:
            dt[i] = 0.0
        else:
            if t < prev:
                return TOKENIZE_UNSORTED, i
            dt[i] = np.float32((t - prev) * scale)
        prev = t
        x2 = (x * xn) // xd
        y2 = (y * yn) // yd
        tok = p2 * (x2 * h2 + y2)
        if p2 == 2 and e["p"]:
            tok += 1
        tokens[i] = tok
    return TOKENIZE_OK, n


@numba.njit(cache=True)
def downsample_kernel(events, xn, xd, yn, yd, out):
    """``out[i]`` = ``events[i]`` with ``x = x * xn // xd`` and ``y = y * yn // yd``."""
    for i in range(events.shape[0]):
        e = events[i]
        out[i]["x"] = (np.int64(e["x"]) * xn) // xd
        out[i]["y"] = (np.int64(e["y"]) * yn) // yd
        out[i]["t"] = e["t"]
        out[i]["p"] = e["p"]


# --------------------------------------------------------------------------------------------
# temporal filters (timestamps must be sorted)


@numba.njit(cache=True)
def refractory_kernel(events, width, height, refractory_us, out):
    """Keep an event iff no *kept* event fired at its pixel (any polarity) in the last
    ``refractory_us`` microseconds, i.e. ``t - t_last_kept >= refractory_us``. Returns the count
    written to ``out``."""
    last = np.empty((width, height), dtype=np.int64)
    seen = np.zeros((width, height), dtype=np.bool_)
    j = 0
    for i in range(events.shape[0]):
        e = events[i]
        x = np.int64(e["x"])
        y = np.int64(e["y"])
        t = np.int64(e["t"])
        if seen[x, y] and t - last[x, y] < refractory_us:
            continue
        seen[x, y] = True
        last[x, y] = t
        out[j] = e
        j += 1
    return j


@numba.njit(cache=True)
def denoise_kernel(events, width, height, window_us, out):
    """Background-activity filter: keep an event iff one of its 8 neighbour pixels (not the
    pixel itself; any polarity) had an input event at most ``window_us`` microseconds earlier.
    Returns the count written to ``out``."""
    last = np.empty((width, height), dtype=np.int64)
    seen = np.zeros((width, height), dtype=np.bool_)
    j = 0
    for i in range(events.shape[0]):
        e = events[i]
        x = np.int64(e["x"])
        y = np.int64(e["y"])
        t = np.int64(e["t"])
        keep = False
        for nx in range(max(x - 1, 0), min(x + 2, width)):
            for ny in range(max(y - 1, 0), min(y + 2, height)):
                if (nx != x or ny != y) and seen[nx, ny] and t - last[nx, ny] <= window_us:
                    keep = True
        seen[x, y] = True
        last[x, y] = t
        if keep:
            out[j] = e
            j += 1
    return j


# --------------------------------------------------------------------------------------------
# augmentations


@numba.njit(cache=True)
def drop_event_kernel(events, p, s, out):
    """Drop each event independently with probability ``p``; return the count kept."""
    st = load_state(s)
    j = 0
    for i in range(events.shape[0]):
        u, st = uniform(st)
        if u >= p:
            out[j] = events[i]
            j += 1
    store_state(s, st)
    return j


@numba.njit(cache=True)
def spatial_jitter_kernel(events, width, height, std_x, std_y, s, out):
    """``x += round(std_x * z1)``, ``y += round(std_y * z2)`` with z normal; events that land
    outside ``width x height`` are dropped. Returns the count kept."""
    st = load_state(s)
    j = 0
    for i in range(events.shape[0]):
        e = events[i]
        zx, st = normal(st)
        zy, st = normal(st)
        x = np.int64(e["x"]) + np.int64(np.floor(std_x * zx + 0.5))
        y = np.int64(e["y"]) + np.int64(np.floor(std_y * zy + 0.5))
        if x < 0 or x >= width or y < 0 or y >= height:
            continue
        out[j]["x"] = x
        out[j]["y"] = y
        out[j]["t"] = e["t"]
        out[j]["p"] = e["p"]
        j += 1
    store_state(s, st)
    return j


@numba.njit(cache=True)
def time_jitter_kernel(events, std, s, out):
    """``t += round(std * z)`` with z normal, clipped at 0 (timestamps stay non-negative).
    ``out`` (may be ``events`` itself) is not sorted afterwards; see
    :func:`sort_by_time_insertion` and :func:`radix_sort_by_time`."""
    st = load_state(s)
    for i in range(events.shape[0]):
        e = events[i]
        z, st = normal(st)
        t = np.int64(e["t"]) + np.int64(np.floor(std * z + 0.5))
        out[i] = e
        out[i]["t"] = max(t, 0)
    store_state(s, st)


@numba.njit(cache=True)
def sort_by_time_insertion(events, max_moves):
    """Stable in-place insertion sort of ``events`` by ``t``, giving up after ``max_moves``
    element moves. Returns True when sorted. Fast for nearly-sorted streams (time jitter much
    smaller than the event spacing times the budget); on False the array is still a permutation
    of the input in which equal timestamps keep their input order, so a stable sort finishes it.
    """
    moves = 0
    for i in range(1, events.shape[0]):
        e = events[i]
        t = e["t"]
        if events[i - 1]["t"] <= t:
            continue
        # copy the record out before shifting (events[i] is a view)
        ex, ey, ep = e["x"], e["y"], e["p"]
        k = i - 1
        while k >= 0 and events[k]["t"] > t:
            events[k + 1] = events[k]
            k -= 1
            moves += 1
        events[k + 1]["x"] = ex
        events[k + 1]["y"] = ey
        events[k + 1]["t"] = t
        events[k + 1]["p"] = ep
        if moves > max_moves:
            return False
    return True


@numba.njit(cache=True)
def radix_sort_by_time(events, tmp):
    """Stable LSD radix sort of ``events`` by ``t`` (11-bit digits of ``t − min t``), in
    place; ``tmp`` is scratch of the same length. O(N · passes) whatever the disorder, with
    ``passes = ceil(bits(max t − min t) / 11)`` (2 for a 4 s recording, 3 up to 2.4 h)."""
    n = events.shape[0]
    if n < 2:
        return
    t_min = events[0]["t"]
    t_max = events[0]["t"]
    for i in range(n):
        t = events[i]["t"]
        t_min = min(t_min, t)
        t_max = max(t_max, t)
    span = t_max - t_min
    src = events
    dst = tmp
    count = np.empty(2049, dtype=np.int64)
    shift = 0
    passes = 0
    while (span >> shift) > 0:
        count[:] = 0
        for i in range(n):
            count[(((src[i]["t"] - t_min) >> shift) & 2047) + 1] += 1
        for d in range(2048):
            count[d + 1] += count[d]
        for i in range(n):
            d = ((src[i]["t"] - t_min) >> shift) & 2047
            dst[count[d]] = src[i]
            count[d] += 1
        src, dst = dst, src
        shift += 11
        passes += 1
    if passes % 2 == 1:  # the result is in tmp
        for i in range(n):
            events[i] = tmp[i]


@numba.njit(cache=True)
def affine_kernel(events, width, height, a00, a01, a10, a11, bx, by, out):
    """Map coordinates by ``x' = round(a00 x + a01 y + bx)``, ``y' = round(a10 x + a11 y + by)``
    (round half up) and drop events that land outside ``width x height``. Returns the count."""
    j = 0
    for i in range(events.shape[0]):
        e = events[i]
        xf = np.float64(e["x"])
        yf = np.float64(e["y"])
        x = np.int64(np.floor(a00 * xf + a01 * yf + bx + 0.5))
        y = np.int64(np.floor(a10 * xf + a11 * yf + by + 0.5))
        if x < 0 or x >= width or y < 0 or y >= height:
            continue
        out[j]["x"] = x
        out[j]["y"] = y
        out[j]["t"] = e["t"]
        out[j]["p"] = e["p"]
        j += 1
    return j


@numba.njit(cache=True)
def roll_kernel(events, width, height, dx, dy, wrap, out):
    """Shift by integers ``(dx, dy)``; ``wrap`` takes coordinates modulo the sensor size,
    otherwise events shifted outside are dropped. Returns the count written."""
    j = 0
    for i in range(events.shape[0]):
        e = events[i]
        x = np.int64(e["x"]) + dx
        y = np.int64(e["y"]) + dy
        if wrap:
            x = x % width
            y = y % height
        elif x < 0 or x >= width or y < 0 or y >= height:
            continue
        out[j]["x"] = x
        out[j]["y"] = y
        out[j]["t"] = e["t"]
        out[j]["p"] = e["p"]
        j += 1
    return j


@numba.njit(cache=True)
def time_skew_kernel(events, coefficient, t0, out):
    """``t' = t0 + round(coefficient * (t - t0))`` (monotone for coefficient > 0)."""
    for i in range(events.shape[0]):
        e = events[i]
        out[i] = e
        out[i]["t"] = t0 + np.int64(np.floor(coefficient * np.float64(e["t"] - t0) + 0.5))


@numba.njit(cache=True)
def merge_by_time(a, b, out):
    """Merge two streams sorted by ``t`` into ``out`` (len(a) + len(b)); ties take ``a``
    first. Returns the number of events from ``b`` (always len(b))."""
    i = 0
    k = 0
    na = a.shape[0]
    nb = b.shape[0]
    for j in range(na + nb):
        if k >= nb or (i < na and a[i]["t"] <= b[k]["t"]):
            out[j] = a[i]
            i += 1
        else:
            out[j] = b[k]
            k += 1
    return k

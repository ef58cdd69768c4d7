"""Numba kernels behind :mod:`eventssm.tokenizers.functional` and ``transforms``.

Every kernel is ``@numba.njit(cache=True, nogil=True)`` (the GIL is released, so the training
prefetch thread runs them beside the step); its ``.py_func`` is the readable reference and the
tests run both on the same input. Kernels write into caller-allocated outputs; the Python
wrappers in ``functional.py`` / ``transforms.py`` do the argument checking.

Per-event augmentations (``op_*``) work on a block of events held in contiguous per-field
arrays (``bx, by, bt`` int64, ``bp`` bool; a block is :data:`BLOCK` events, small enough to
stay in the L1/L2 cache). :func:`run_ops` reads the ``EVENT_DTYPE`` records block by block,
applies a list of ops to each block and writes the survivors back as records, so a chain of
augmentations costs one pass over memory instead of one per augmentation.

Randomness: kernels never touch a global random state. Each op gets a 64-bit seed drawn from the
caller's explicit :class:`numpy.random.Generator` (:func:`rng_seed`); event ``c`` of the op's
input (0-based, counted over the whole stream, not per block) uses the 64-bit word
``word(seed, c) = mix64(seed + (c + 1) · γ)``, i.e. output ``c + 1`` of SplitMix64 seeded with
``seed`` (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014;
γ = 0x9E3779B97F4A7C15, the output function with shifts 30, 27, 31 and the multipliers
0xBF58476D1CE4E5B9, 0x94D049BB133111EB of Vigna's splitmix64.c). Words of different events are
independent computations (no serial state), so the compiler vectorises their generation; the
result does not depend on the block size. A fixed Generator seed gives the same output every
time. Uniforms are ``(word >> 11) · 2^-53``. The jitters need rounded normals ``round(std · z)``:
for std <= 127.875 they are drawn in one lookup from an alias table of their exact distribution
(:func:`offset_table`, fed with one 32-bit half of the word), otherwise as ``floor(std · z + ½)``
with z from a 128-layer ziggurat (its rare rejections continue on a sub-stream of that event).

The ``.py_func`` of the random kernels computes with ``numpy.uint64`` scalars, whose wrap-around
multiplication raises numpy's overflow warning: call them under ``np.errstate(over="ignore")``
(the ``np.uint64(…)`` around results of other kernels re-types the Python ints numba returns
there; compiled, it is a no-op).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_U11 = np.uint64(11)
_U32 = np.uint64(32)
_INV_2_53 = 1.1102230246251565e-16  # 2**-53

BLOCK = 1024  # events per block of run_ops

# status codes of tokenize_kernel
TOKENIZE_OK = 0
TOKENIZE_OUT_OF_RANGE = 1
TOKENIZE_UNSORTED = 2

# op codes of run_ops. A row of ``ops_i`` is (code, seed, i0, i1, …), the seed a uint64 stored
# as int64 bits; a row of ``ops_f`` is (f0, f1, …). Parameters per op:
OP_DOWNSAMPLE = 0  # i: xn, xd, yn, yd
OP_DROP = 1  # f: p
OP_SPATIAL_JITTER = 2  # i: w, h, table x (start, fb), table y (start, fb); f: std_x, std_y
OP_TIME_JITTER = 3  # i: table (start, fb); f: std
OP_AFFINE = 4  # i: w, h; f: a00, a01, a10, a11, bx, by
OP_ROLL = 5  # i: w, h, dx, dy, wrap
OP_TIME_SKEW = 6  # f: coefficient (t0 = first event reaching the op)
N_PARAMS = 6


# --------------------------------------------------------------------------------------------
# random numbers


def rng_seed(rng: np.random.Generator) -> int:
    """Draw a fresh 64-bit SplitMix64 seed (an int in [0, 2**64)) from ``rng``: two raw outputs
    of its bit generator, ``(a << 32) ^ b`` mod 2**64 (64 random bits also from 32-bit bit
    generators such as MT19937; cheaper than ``rng.integers``)."""
    a, b = rng.bit_generator.random_raw(2).tolist()
    return ((a << 32) ^ b) & 0xFFFFFFFFFFFFFFFF


@numba.njit(cache=True, inline="always")
def mix64(z):
    """SplitMix64 output function of a uint64 (bijective avalanche mix)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def random_word(seed, c):
    """``word(seed, c)``: uint64 of event ``c`` (int64 >= 0) of the stream of ``seed``."""
    return mix64(seed + np.uint64(c + 1) * _GAMMA)


@numba.njit(cache=True, inline="always")
def unit(word):
    """Uniform float64 in [0, 1) from the top 53 bits of a uint64."""
    return np.float64(word >> _U11) * _INV_2_53


@numba.njit(cache=True, nogil=True)
def fill_words(seed, c0, out):
    """``out[i] = word(seed, c0 + i)`` for uint64 ``out`` (vectorised: no serial state)."""
    base = seed + np.uint64(c0) * _GAMMA
    for i in range(out.shape[0]):
        out[i] = mix64(base + np.uint64(i + 1) * _GAMMA)


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
def normal_from(h, seed, c, half):
    """Standard normal float64 from ``h``, one 32-bit half (int64 in [0, 2**32)) of
    ``word(seed, c)``; ``half`` (0 low, 1 high) names it.

    Ziggurat step: the layer is ``h & 127``, a signed 25-bit abscissa ``(h >> 7) − 2**24`` comes
    from disjoint bits (avoiding the layer/value correlation of the original RNOR; Doornik, "An
    Improved Ziggurat Method to Generate Normal Random Samples", 2005). About 99 % of draws are
    inside their layer's rectangle and return here; the rest go to :func:`_normal_slow`.
    """
    i = h & 127
    j = (h >> 7) - _ZIG_M
    if abs(j) < _ZIG_K[i]:
        return j * _ZIG_W[i]
    key = seed + np.uint64(c + 1) * _GAMMA
    return _normal_slow(h, np.uint64(mix64(key ^ (_MIX2 if half else _MIX1))))


@numba.njit(cache=True, nogil=True)
def _normal_slow(h, key):
    """Ziggurat outside the rectangles: the base layer's tail beyond r (Marsaglia 1964) and the
    wedges (accept under the density); further randomness from the SplitMix64 sub-stream
    ``mix64(key + k · γ)``, k = 1, 2, …"""
    s = key
    while True:
        i = h & 127
        j = (h >> 7) - _ZIG_M
        x = j * _ZIG_W[i]
        if abs(j) < _ZIG_K[i]:
            return x
        if i == 0:
            while True:
                s += _GAMMA
                xt = -np.log((np.float64(mix64(s) >> _U11) + 0.5) * _INV_2_53) / _ZIG_R
                s += _GAMMA
                yt = -np.log((np.float64(mix64(s) >> _U11) + 0.5) * _INV_2_53)
                if yt + yt >= xt * xt:
                    return _ZIG_R + xt if j > 0 else -_ZIG_R - xt
        s += _GAMMA
        u = unit(np.uint64(mix64(s)))
        if _ZIG_F[i] + u * (_ZIG_F[i - 1] - _ZIG_F[i]) < np.exp(-0.5 * x * x):
            return x
        s += _GAMMA
        h = np.int64(mix64(s) & _LOW32)


@numba.njit(cache=True, nogil=True)
def fill_uniform(seed, c0, out):
    """``out[i] = unit(word(seed, c0 + i))`` (float64): the uniforms :func:`op_drop` uses."""
    for i in range(out.shape[0]):
        out[i] = unit(np.uint64(random_word(seed, c0 + i)))


@numba.njit(cache=True, nogil=True)
def fill_normal(seed, c0, half, out):
    """``out[i]`` = the normal of half ``half`` of ``word(seed, c0 + i)`` (float64): what
    :func:`op_spatial_jitter` (x: half 0, y: half 1) and :func:`op_time_jitter` (half 0) use."""
    for i in range(out.shape[0]):
        w = random_word(seed, c0 + i)
        h = np.int64(w >> _U32) if half else np.int64(w & _LOW32)
        out[i] = normal_from(h, seed, c0 + i, half)


MAX_TABLE = 2048  # largest alias table of offset_table (std <= 127.875)


@functools.lru_cache(maxsize=64)
def offset_table(std: float) -> tuple[np.ndarray, int]:
    """Alias table (Walker 1977; Vose 1991) of the rounded normal ``d = round(std · z)`` (round
    half up), clipped to ``[-L, L]`` with ``L = ceil(8 std)`` (|z| > 8: probability 1.2e-15).

    For a 32-bit uniform ``h``: the cell is ``h >> fb`` (K = 2**(32 − fb) cells), and
    ``d = v1 if (h mod 2**fb) < thr else v2`` with ``(thr, v1, v2)`` packed in the cell's int64
    as ``thr << 32 | v1 << 16 | v2`` (v as int16 bits). The probabilities ``P(d = k) =
    Φ((k + ½)/std) − Φ((k − ½)/std)`` (the clipped tails added to ±L) are rounded to integer
    multiples of 2**-32 summing exactly to 1, and the table realises those integers exactly
    (integer Vose construction). One table lookup replaces a ziggurat normal, a multiplication
    and a floor.

    Returns ``(table, fb)``, or ``(empty, -1)`` when more than :data:`MAX_TABLE` cells would be
    needed (then the kernels draw ``floor(std · z + 0.5)`` with the ziggurat).
    The table is cached per ``std`` and read-only.
    """
    if not std >= 0.0:
        raise ValueError(f"std must be >= 0, got {std}")
    half_width = math.ceil(8.0 * std)
    n_values = 2 * half_width + 1
    bits = max(1, (n_values - 1).bit_length())  # K >= 2 keeps thr < 2**31 (int64 packing)
    if (1 << bits) > MAX_TABLE:
        return np.empty(0, dtype=np.int64), -1
    n_cells, fb = 1 << bits, 32 - bits
    ks = np.arange(-half_width, half_width + 1)
    if std < 1e-3:  # P(|z| >= 0.5 / std) is 0 in double precision
        upper = (ks >= 0).astype(np.float64)  # P(d <= k)
    else:
        upper = np.array([0.5 * math.erfc(-(k + 0.5) / (std * math.sqrt(2.0))) for k in ks.tolist()])
    upper[-1] = 1.0
    pmf = np.diff(upper, prepend=0.0)
    mass = np.round(pmf * 2.0**32).astype(np.int64)
    mass[half_width] += (1 << 32) - int(mass.sum())  # exact total on the mode d = 0
    mass = np.concatenate([mass, np.zeros(n_cells - n_values, dtype=np.int64)])
    values = np.concatenate([ks, np.zeros(n_cells - n_values, dtype=np.int64)])
    cap = 1 << fb  # mass of one cell
    thr = np.zeros(n_cells, dtype=np.int64)
    alias = np.arange(n_cells)
    small = [i for i in range(n_cells) if mass[i] < cap]
    large = [i for i in range(n_cells) if mass[i] >= cap]
    rest = mass.copy()
    while small and large:
        s, g = small.pop(), large.pop()
        thr[s], alias[s] = rest[s], g
        rest[g] -= cap - rest[s]
        (small if rest[g] < cap else large).append(g)
    for i in small + large:  # exactly full cells (integer arithmetic leaves no residue)
        thr[i], alias[i] = 0, i
    table = (thr << 32) | ((values & 0xFFFF) << 16) | (values[alias] & 0xFFFF)
    table.setflags(write=False)
    return table, fb


@numba.njit(cache=True, inline="always")
def table_offset(h, table, fb):
    """``round(std · z)`` from the 32-bit half ``h`` by one lookup in :func:`offset_table`'s
    ``table`` (``fb >= 0``): cell ``h >> fb``, then the cell's value or its alias."""
    e = table[h >> fb]
    v = (e >> 16) if (h & ((np.int64(1) << fb) - 1)) < (e >> 32) else e
    return ((v & 0xFFFF) ^ 0x8000) - 0x8000


@numba.njit(cache=True, inline="always")
def rounded_normal(h, seed, c, half, std, table, fb):
    """``round(std · z)`` (int64; z the standard normal of half ``half`` of ``word(seed, c)``,
    ``h`` that half): :func:`table_offset` when ``fb >= 0``, else ``floor(std · z + 0.5)``
    with z from :func:`normal_from`."""
    if fb >= 0:
        return table_offset(h, table, fb)
    return np.int64(np.floor(std * normal_from(h, seed, c, half) + 0.5))


@numba.njit(cache=True, nogil=True)
def fill_offsets(seed, c0, half, std, table, fb, out):
    """``out[i]`` (int64) = :func:`rounded_normal` of half ``half`` of ``word(seed, c0 + i)``:
    the offsets :func:`op_spatial_jitter` (x: half 0, y: half 1) and :func:`op_time_jitter`
    (half 0) add."""
    for i in range(out.shape[0]):
        w = random_word(seed, c0 + i)
        h = np.int64(w >> _U32) if half else np.int64(w & _LOW32)
        out[i] = rounded_normal(h, seed, c0 + i, half, std, table, fb)


# --------------------------------------------------------------------------------------------
# tokenization


@numba.njit(cache=True, nogil=True)
def tokenize_kernel(events, width, height, xn, xd, yn, yd, h2, p2, scale, tokens, dt):
    """Write ``tokens`` (int32) and ``dt`` (float32) for ``events``; return (status, index).

    Coordinates map to the grid as ``x2 = x * xn // xd``, ``y2 = y * yn // yd``; the token is
    ``p2 * (x2 * h2 + y2) + (p if p2 == 2 else 0)``; ``dt_k = (t_k - t_{k-1}) * scale``, dt_0 = 0.
    Stops at the first event outside ``width x height`` (status 1) or whose timestamp is smaller
    than the previous one (status 2); status 0 means every event was written. The per-column and
    per-row terms ``p2 · h2 · x2`` and ``p2 · y2`` are tabulated first (W + H entries), so the
    loop does no division.
    """
    xtab = np.empty(width, dtype=np.int64)
    for x in range(width):
        xtab[x] = p2 * h2 * ((x * xn) // xd)
    ytab = np.empty(height, dtype=np.int64)
    for y in range(height):
        ytab[y] = p2 * ((y * yn) // yd)
    with_p = p2 == 2
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
        tok = xtab[x] + ytab[y]
        if with_p and e["p"]:
            tok += 1
        tokens[i] = tok
    return TOKENIZE_OK, n


@numba.njit(cache=True, inline="always")
def _log2_exact(d):
    """k with ``2**k == d`` for a power of two ``d >= 1``, else -1."""
    if d < 1 or d & (d - 1) != 0:
        return -1
    k = 0
    while (np.int64(1) << k) < d:
        k += 1
    return k


@numba.njit(cache=True, nogil=True)
def scale_coords(v, m, num, den):
    """``v[:m] = v[:m] * num // den`` (floor division, int64) in place; a no-op for
    ``num == den`` and an arithmetic shift (the same floor) for ``num == 1``, ``den = 2**k``."""
    if num == den:
        return
    k = _log2_exact(den) if num == 1 else -1
    if k >= 0:
        for i in range(m):
            v[i] = v[i] >> k
    else:
        for i in range(m):
            v[i] = (v[i] * num) // den


@numba.njit(cache=True, nogil=True)
def downsample_kernel(events, xn, xd, yn, yd, out):
    """``out[i]`` = ``events[i]`` with ``x = x * xn // xd`` and ``y = y * yn // yd``
    (block-wise through :func:`op_downsample`; ``out`` may be ``events``)."""
    n = events.shape[0]
    bx = np.empty(BLOCK, dtype=np.int64)
    by = np.empty(BLOCK, dtype=np.int64)
    for s0 in range(0, n, BLOCK):
        m = min(BLOCK, n - s0)
        for i in range(m):
            bx[i] = events[s0 + i]["x"]
            by[i] = events[s0 + i]["y"]
        op_downsample(bx, by, m, xn, xd, yn, yd)
        for i in range(m):
            e = events[s0 + i]
            o = out[s0 + i]
            o["t"] = e["t"]
            o["p"] = e["p"]
            o["x"] = bx[i]
            o["y"] = by[i]


# --------------------------------------------------------------------------------------------
# temporal filters (timestamps must be sorted)


@numba.njit(cache=True, inline="always")
def copy_event(dst, j, src, i):
    """``dst[j] = src[i]`` for ``EVENT_DTYPE`` arrays, field by field (numba's whole-record
    assignment of the packed 13-byte record is about twice as slow)."""
    e = src[i]
    o = dst[j]
    o["x"] = e["x"]
    o["y"] = e["y"]
    o["t"] = e["t"]
    o["p"] = e["p"]


@numba.njit(cache=True, nogil=True)
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
        copy_event(out, j, events, i)
        j += 1
    return j


@numba.njit(cache=True, nogil=True)
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
            copy_event(out, j, events, i)
            j += 1
    return j


# --------------------------------------------------------------------------------------------
# per-event ops on a block (bx, by, bt: int64; bp: bool; the first m entries are live).
# Filtering ops compact the survivors to the front and return their count; ``c0`` is the
# op's count of events before this block (the index of the block's first event in its stream);
# ``r`` is uint64 scratch of at least m words.


@numba.njit(cache=True, inline="always")
def _keep_inside(bx, by, bt, bp, i, k, x, y, width, height):
    """Compaction step of the coordinate ops: when ``(x, y)`` lies inside ``width x height``,
    write event i with those coordinates to slot k (k <= i) and return 1; else return 0."""
    if x < 0 or x >= width or y < 0 or y >= height:
        return 0
    bx[k] = x
    by[k] = y
    bt[k] = bt[i]
    bp[k] = bp[i]
    return 1


@numba.njit(cache=True, nogil=True)
def op_downsample(bx, by, m, xn, xd, yn, yd):
    """``x = x * xn // xd``, ``y = y * yn // yd`` (no event is dropped)."""
    scale_coords(bx, m, xn, xd)
    scale_coords(by, m, yn, yd)


@numba.njit(cache=True, nogil=True)
def op_drop(bx, by, bt, bp, m, p, seed, c0, r):
    """Keep event c iff ``unit(word(seed, c)) >= p`` (dropped with probability p)."""
    fill_words(seed, c0, r[:m])
    k = 0
    for i in range(m):  # branch-free compaction: a random keep/drop would mispredict
        bx[k] = bx[i]
        by[k] = by[i]
        bt[k] = bt[i]
        bp[k] = bp[i]
        k += unit(r[i]) >= p
    return k


@numba.njit(cache=True, nogil=True)
def op_spatial_jitter(bx, by, bt, bp, m, width, height, std_x, std_y, tab_x, fb_x, tab_y, fb_y,
                      seed, c0, r):
    """``x += round(std_x · z_x)``, ``y += round(std_y · z_y)`` (:func:`rounded_normal` of the
    low and high halves of ``word(seed, c)``; ``tab_*``, ``fb_*`` from :func:`offset_table`);
    events that land outside ``width x height`` are dropped."""
    fill_words(seed, c0, r[:m])
    k = 0
    if fb_x >= 0 and fb_y >= 0:  # both from tables: a loop free of the ziggurat's calls (5 %)
        for i in range(m):
            w = r[i]
            x = bx[i] + table_offset(np.int64(w & _LOW32), tab_x, fb_x)
            y = by[i] + table_offset(np.int64(w >> _U32), tab_y, fb_y)
            k += _keep_inside(bx, by, bt, bp, i, k, x, y, width, height)
        return k
    for i in range(m):
        w = r[i]
        x = bx[i] + rounded_normal(np.int64(w & _LOW32), seed, c0 + i, 0, std_x, tab_x, fb_x)
        y = by[i] + rounded_normal(np.int64(w >> _U32), seed, c0 + i, 1, std_y, tab_y, fb_y)
        k += _keep_inside(bx, by, bt, bp, i, k, x, y, width, height)
    return k


@numba.njit(cache=True, nogil=True)
def op_time_jitter(bt, m, std, table, fb, seed, c0, r):
    """``t = max(t + round(std · z), 0)`` (:func:`rounded_normal` of the low half of
    ``word(seed, c)``); the result is not sorted (see :func:`bucket_scatter`)."""
    fill_words(seed, c0, r[:m])
    if fb >= 0:
        for i in range(m):
            bt[i] = max(bt[i] + table_offset(np.int64(r[i] & _LOW32), table, fb), 0)
        return
    for i in range(m):
        d = rounded_normal(np.int64(r[i] & _LOW32), seed, c0 + i, 0, std, table, fb)
        bt[i] = max(bt[i] + d, 0)


@numba.njit(cache=True, nogil=True)
def op_affine(bx, by, bt, bp, m, width, height, a00, a01, a10, a11, ox, oy):
    """``x' = round(a00 x + a01 y + ox)``, ``y' = round(a10 x + a11 y + oy)`` (round half up);
    events that land outside ``width x height`` are dropped."""
    k = 0
    for i in range(m):
        xf = np.float64(bx[i])
        yf = np.float64(by[i])
        x = np.int64(np.floor(a00 * xf + a01 * yf + ox + 0.5))
        y = np.int64(np.floor(a10 * xf + a11 * yf + oy + 0.5))
        k += _keep_inside(bx, by, bt, bp, i, k, x, y, width, height)
    return k


@numba.njit(cache=True, nogil=True)
def op_roll(bx, by, bt, bp, m, width, height, dx, dy, wrap):
    """Shift by integers ``(dx, dy)``; ``wrap`` takes coordinates modulo the sensor size,
    otherwise events shifted outside are dropped."""
    k = 0
    for i in range(m):
        x = bx[i] + dx
        y = by[i] + dy
        if wrap:
            x = x % width
            y = y % height
        k += _keep_inside(bx, by, bt, bp, i, k, x, y, width, height)
    return k


@numba.njit(cache=True, nogil=True)
def op_time_skew(bt, m, coefficient, t0):
    """``t' = t0 + round(coefficient · (t − t0))`` (monotone for coefficient > 0)."""
    for i in range(m):
        bt[i] = t0 + np.int64(np.floor(coefficient * np.float64(bt[i] - t0) + 0.5))


@numba.njit(cache=True, inline="always")
def _table_slice(tables, start, fb):
    """The table at ``start`` of ``2**(32 − fb)`` cells (empty for fb = -1)."""
    if fb < 0:
        return tables[start:start]
    return tables[start:start + (np.int64(1) << (32 - fb))]


@numba.njit(cache=True, inline="always")
def time_bucket(t, t_base, shift, n_buckets):
    """Bucket of timestamp ``t``: ``(t − t_base) >> shift`` clamped to ``[0, n_buckets)``."""
    return min(max((t - t_base) >> shift, 0), n_buckets - 1)


@numba.njit(cache=True, inline="always")
def _load_event(bx, by, bt, bp, k, e):
    """Slot ``k`` of the block arrays := the fields of event record ``e``."""
    bx[k] = e["x"]
    by[k] = e["y"]
    bt[k] = e["t"]
    bp[k] = e["p"]


@numba.njit(cache=True, nogil=True)
def run_ops(events, ops_i, ops_f, tables, out, count, t_base, shift):
    """Apply the ops of the rows of ``ops_i``/``ops_f`` in order to every event; write the
    survivors to ``out`` (records, in input order; ``out`` may be ``events``: a block is read
    before it is written, and never past what was read). Returns ``(m, t_min, t_max)``: the
    count written and the smallest and largest timestamp written (0, 0 when m == 0).

    Args:
        events: (N,) ``EVENT_DTYPE``.
        ops_i: (K, 2 + N_PARAMS) int64 rows ``(OP_* code, seed as int64 bits, int params…)``.
        ops_f: (K, N_PARAMS) float64 parameters (see the ``OP_*`` comments).
        tables: int64, the :func:`offset_table` tables of the jitter ops concatenated; an op
            refers to one by (start, fb) int params (empty when fb = -1).
        out: (>= N,) ``EVENT_DTYPE``.
        count: int32 (B + 1,) zeros, or (0,): when given, ``count[1 + b]`` is incremented for
            each written event with ``b = time_bucket(t, t_base, shift, B)`` (the histogram of
            :func:`bucket_scatter`, built on the way).

    Each op counts the events it has seen (its ``c0``) across blocks; ``OP_TIME_SKEW`` takes
    its t0 from the first event that reaches it.
    """
    n = events.shape[0]
    n_buckets = count.shape[0] - 1
    bx = np.empty(BLOCK, dtype=np.int64)
    by = np.empty(BLOCK, dtype=np.int64)
    bt = np.empty(BLOCK, dtype=np.int64)
    bp = np.empty(BLOCK, dtype=np.bool_)
    r = np.empty(BLOCK, dtype=np.uint64)
    seeds = ops_i[:, 1].copy().view(np.uint64)
    state = np.zeros((ops_i.shape[0], 2), dtype=np.int64)
    j = 0
    t_min = np.int64(0)
    t_max = np.int64(0)
    # A DropEvent preceded only by Downsamples (or by nothing) sees every input event, in input
    # order, and Downsample neither drops nor draws: that drop is applied while the block is
    # read (input event c keeps iff unit(word(seed, c)) >= p, as op_drop decides), which saves
    # its compaction pass (15-20 % of the pass for Downsample -> DropEvent -> jitters).
    early = -1
    for k in range(ops_i.shape[0]):
        if ops_i[k, 0] == OP_DROP:
            early = k
            break
        if ops_i[k, 0] != OP_DOWNSAMPLE:
            break
    p_early = ops_f[early, 0] if early >= 0 else 0.0
    seed_early = seeds[early] if early >= 0 else np.uint64(0)
    for s0 in range(0, n, BLOCK):
        m = min(BLOCK, n - s0)
        if early >= 0:
            base = seed_early + np.uint64(s0) * _GAMMA  # word(seed, s0 + i) = mix64(base + (i+1)γ)
            kept = 0
            for i in range(m):
                _load_event(bx, by, bt, bp, kept, events[s0 + i])
                kept += unit(np.uint64(mix64(base + np.uint64(i + 1) * _GAMMA))) >= p_early
            m = kept
        else:
            for i in range(m):
                _load_event(bx, by, bt, bp, i, events[s0 + i])
        for k in range(ops_i.shape[0]):
            if m == 0:
                break
            if k == early:
                continue
            kind = ops_i[k, 0]
            ip = ops_i[k, 2:]
            fp = ops_f[k]
            c0 = state[k, 0]
            state[k, 0] = c0 + m
            if kind == OP_DOWNSAMPLE:
                op_downsample(bx, by, m, ip[0], ip[1], ip[2], ip[3])
            elif kind == OP_DROP:
                m = op_drop(bx, by, bt, bp, m, fp[0], seeds[k], c0, r)
            elif kind == OP_SPATIAL_JITTER:
                tx = _table_slice(tables, ip[2], ip[3])
                ty = _table_slice(tables, ip[4], ip[5])
                m = op_spatial_jitter(bx, by, bt, bp, m, ip[0], ip[1], fp[0], fp[1], tx, ip[3], ty,
                                      ip[5], seeds[k], c0, r)
            elif kind == OP_TIME_JITTER:
                tt = _table_slice(tables, ip[0], ip[1])
                op_time_jitter(bt, m, fp[0], tt, ip[1], seeds[k], c0, r)
            elif kind == OP_AFFINE:
                m = op_affine(bx, by, bt, bp, m, ip[0], ip[1], fp[0], fp[1], fp[2], fp[3], fp[4],
                              fp[5])
            elif kind == OP_ROLL:
                m = op_roll(bx, by, bt, bp, m, ip[0], ip[1], ip[2], ip[3], ip[4] != 0)
            elif kind == OP_TIME_SKEW:
                if c0 == 0:
                    state[k, 1] = bt[0]
                op_time_skew(bt, m, fp[0], state[k, 1])
            else:
                raise ValueError("run_ops: unknown op code")
        if m > 0 and j == 0:
            t_min = bt[0]
            t_max = bt[0]
        for i in range(m):
            o = out[j + i]
            o["x"] = bx[i]
            o["y"] = by[i]
            o["t"] = bt[i]
            o["p"] = bp[i]
            t_min = min(t_min, bt[i])
            t_max = max(t_max, bt[i])
        if n_buckets > 0:
            for i in range(m):
                count[1 + time_bucket(bt[i], t_base, shift, n_buckets)] += 1
        j += m
    return j, t_min, t_max


# --------------------------------------------------------------------------------------------
# sorting by time


@numba.njit(cache=True, nogil=True)
def bucket_scatter(src, dst, t_base, shift, count):
    """Stable counting sort of ``src`` into ``dst`` by :func:`time_bucket`, given the histogram
    ``count`` (``count[1 + b]`` = events in bucket b, as :func:`run_ops` builds it; it is
    overwritten).

    Events of one bucket keep their input order. With ``shift = 0`` and no clamped timestamp
    the result is sorted by ``t``; otherwise by bucket, and :func:`sort_by_time_insertion`
    finishes it with moves inside buckets only. O(N + buckets); nearly sorted input (time
    jitter) writes ``dst`` almost sequentially.
    """
    n_buckets = count.shape[0] - 1
    for b in range(n_buckets):
        count[b + 1] += count[b]
    for i in range(src.shape[0]):
        b = time_bucket(src[i]["t"], t_base, shift, n_buckets)
        j = count[b]
        copy_event(dst, j, src, i)
        count[b] = j + 1


@numba.njit(cache=True, nogil=True)
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
            copy_event(events, k + 1, events, k)
            k -= 1
            moves += 1
        events[k + 1]["x"] = ex
        events[k + 1]["y"] = ey
        events[k + 1]["t"] = t
        events[k + 1]["p"] = ep
        if moves > max_moves:
            return False
    return True


@numba.njit(cache=True, nogil=True)
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
            j = count[d]
            copy_event(dst, j, src, i)
            count[d] = j + 1
        src, dst = dst, src
        shift += 11
        passes += 1
    if passes % 2 == 1:  # the result is in tmp
        for i in range(n):
            copy_event(events, i, tmp, i)


@numba.njit(cache=True, nogil=True)
def merge_by_time(a, b, out):
    """Merge two streams sorted by ``t`` into ``out`` (len(a) + len(b)); ties take ``a``
    first. Returns the number of events from ``b`` (always len(b))."""
    i = 0
    k = 0
    na = a.shape[0]
    nb = b.shape[0]
    for j in range(na + nb):
        if k >= nb or (i < na and a[i]["t"] <= b[k]["t"]):
            copy_event(out, j, a, i)
            i += 1
        else:
            copy_event(out, j, b, k)
            k += 1
    return k

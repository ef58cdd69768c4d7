"""Counter-based random numbers for the numba kernels of :mod:`eventssm.tokenizers.kernels`.

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

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

Randomness: the counter-based generator and the rounded-normal tables live in
:mod:`eventssm.tokenizers.random_kernels` (re-exported here).
"""

from __future__ import annotations

import numba
import numpy as np

from eventssm.tokenizers.random_kernels import (  # re-exported: kernels.rng_seed etc.
    _GAMMA,
    _LOW32,
    _U32,
    _ZIG_K,  # noqa: F401
    _ZIG_M,  # noqa: F401
    _ZIG_R,  # noqa: F401
    MAX_TABLE,  # noqa: F401
    _normal_slow,  # noqa: F401
    fill_normal,  # noqa: F401
    fill_offsets,  # noqa: F401
    fill_uniform,  # noqa: F401
    fill_words,
    mix64,
    normal_from,  # noqa: F401
    offset_table,  # noqa: F401
    random_word,  # noqa: F401
    rng_seed,  # noqa: F401
    rounded_normal,
    table_offset,
    unit,
)

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

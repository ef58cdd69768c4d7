"""Augmentations: invariants, independent re-computations, kernels vs .py_func, tonic interop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventssm.events import EVENT_DTYPE, ArgumentError, EventFileError, make_events
from eventssm.tokenizers import functional as F
from eventssm.tokenizers import kernels as K
from eventssm.tokenizers import transforms as T

HYP = settings(max_examples=25, deadline=None)
SENSOR = (37, 23, 2)


def stream(seed: int, n: int = 400, w: int = SENSOR[0], h: int = SENSOR[1], unique_t=True):
    """Sorted events; with ``unique_t`` every timestamp is distinct (events are identifiable)."""
    rng = np.random.default_rng(seed)
    if unique_t:
        t = np.cumsum(rng.integers(1, 50, n)) + 10**9
    else:
        t = np.sort(rng.integers(0, 2000, n))
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.random(n) < 0.5)


def all_transforms(sensor=SENSOR):
    return [
        T.DropEvent(0.3),
        T.DropChunk(0.5, 0.1),
        T.TimeJitter(40.0),
        T.TimeSkew((0.5, 2.0)),
        T.SpatialJitter(sensor, 1.5),
        T.SpatialJitter(sensor, (0.5, 3.0)),
        T.Roll(sensor, 5, wrap=True),
        T.Roll(sensor, (3, 9), wrap=False),
        T.Rotate(sensor, 30.0),
        T.Scale(sensor, (0.5, 1.5)),
        T.FlipLR(sensor, 0.5),
        T.Compose((T.DropEvent(0.1), T.SpatialJitter(sensor, 1.0), T.TimeJitter(20.0))),
    ]


def assert_valid(out, sensor=SENSOR):
    assert out.dtype == EVENT_DTYPE and out.ndim == 1
    assert (np.diff(out["t"]) >= 0).all(), "timestamps not sorted"
    if len(out):
        assert out["x"].min() >= 0 and out["x"].max() < sensor[0]
        assert out["y"].min() >= 0 and out["y"].max() < sensor[1]


def assert_subsequence(out, ev):
    """``out`` is ``ev`` with some events removed (events identified by unique timestamps)."""
    idx = np.searchsorted(ev["t"], out["t"])
    assert (idx < len(ev)).all()
    np.testing.assert_array_equal(ev[idx], out)
    assert (np.diff(idx) > 0).all()


@HYP
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(all_transforms()) - 1))
def test_invariants_and_determinism(seed, which):
    tr = all_transforms()[which]
    ev = stream(seed % 1000, unique_t=seed % 2 == 0)
    before = ev.copy()
    out1 = tr(ev, np.random.default_rng(seed))
    out2 = tr(ev, np.random.default_rng(seed))
    np.testing.assert_array_equal(ev, before)  # input untouched
    assert_valid(out1)
    np.testing.assert_array_equal(out1, out2)  # same seed, same output
    outs = [tr(ev, np.random.default_rng(seed + k)) for k in range(1, 25)]  # FlipLR: 2^-23
    assert any(len(o) != len(out1) or not np.array_equal(o, out1) for o in outs)


@pytest.mark.parametrize("tr", all_transforms(), ids=lambda t: type(t).__name__)
def test_in_place_equals_fresh_output(tr):
    """``apply_into(buf, rng, buf)`` (what Compose does) equals ``__call__``."""
    ev = stream(8, unique_t=False)
    fresh = tr(ev, np.random.default_rng(5))
    if isinstance(tr, T.Compose):
        manual = ev
        rng = np.random.default_rng(5)
        for t in tr.transforms:
            manual = t(manual, rng)
        np.testing.assert_array_equal(fresh, manual)
        return
    buf = ev.copy()
    n = tr.apply_into(buf, np.random.default_rng(5), buf)
    np.testing.assert_array_equal(buf[:n], fresh)


def test_compose_mixes_plain_callables():
    ev = stream(9)
    half = T.Compose((T.DropEvent(0.5), lambda e, rng: e[::2], T.FlipLR(SENSOR, 1.0)))
    out = half(ev, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    ref = T.FlipLR(SENSOR, 1.0)(T.DropEvent(0.5)(ev, rng)[::2], rng)
    np.testing.assert_array_equal(out, ref)
    assert T.Compose(())(ev, np.random.default_rng(0)) is not ev


@pytest.mark.parametrize("tr", all_transforms(), ids=lambda t: type(t).__name__)
def test_empty_input(tr):
    out = tr(np.empty(0, EVENT_DTYPE), np.random.default_rng(0))
    assert len(out) == 0 and out.dtype == EVENT_DTYPE


# ------------------------------------------------------------------------ independent checks

_M64 = (1 << 64) - 1


def splitmix64_py(seed: int, count: int) -> list[int]:
    """SplitMix64 in plain Python integers (Vigna's splitmix64.c), independent of the kernels."""
    out, s = [], seed
    for _ in range(count):
        s = (s + 0x9E3779B97F4A7C15) & _M64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        out.append(z ^ (z >> 31))
    return out


def test_splitmix64_known_answer():
    # seed 1234567: the test vector of Rosetta Code's "Pseudo-random numbers/Splitmix64" task
    expected = [6457827717110365317, 3203168211198807973, 9817491932198370423,
                4593380528125082431, 16408922859458223821]
    assert splitmix64_py(1234567, 5) == expected
    seed = np.uint64(1234567)
    w = np.empty(5, np.uint64)
    K.fill_words(seed, 0, w)
    assert w.tolist() == expected
    with np.errstate(over="ignore"):
        assert [int(K.random_word.py_func(seed, c)) for c in range(5)] == expected
        w2 = np.empty(3, np.uint64)
        K.fill_words.py_func(seed, 2, w2)
    assert [int(K.random_word(seed, c)) for c in range(5)] == expected
    assert w2.tolist() == expected[2:]


def test_words_are_indexed_not_sequential():
    """word(seed, c) does not depend on how the stream is cut into blocks."""
    seed = np.uint64(987654321987654321)
    whole = np.empty(3000, np.uint64)
    K.fill_words(seed, 0, whole)
    parts = [np.empty(k, np.uint64) for k in (1, 1023, 1976)]
    c0 = 0
    for part in parts:
        K.fill_words(seed, c0, part)
        c0 += len(part)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert whole.tolist()[:50] == splitmix64_py(int(seed), 50)


def normal_cdf(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


@pytest.mark.parametrize("half", [0, 1])
def test_normal_matches_the_normal_distribution(half):
    """Kolmogorov-Smirnov distance of 200k ziggurat draws to N(0, 1), and the tail mass."""
    z = np.empty(200_000)
    K.fill_normal(np.uint64(3579), 0, half, z)
    z.sort()
    cdf = normal_cdf(z)
    n = len(z)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.63 / math.sqrt(n)  # the 1% critical value
    # the tail beyond r = 3.4426 (ziggurat base layer): expected mass 2 * (1 - Phi(r))
    tail = np.mean(np.abs(z) > K._ZIG_R)
    assert abs(tail - 2 * (1 - normal_cdf(K._ZIG_R))) < 2e-4
    assert np.abs(z).max() > K._ZIG_R


def test_generator_statistics():
    seed = np.uint64(71113)
    u, z0, z1 = np.empty(200_000), np.empty(200_000), np.empty(200_000)
    K.fill_uniform(seed, 0, u)
    K.fill_normal(seed, 0, 0, z0)
    K.fill_normal(seed, 0, 1, z1)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    for z in (z0, z1):
        assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
        assert abs(np.mean(np.abs(z) < 1.0) - 0.6827) < 0.005
        assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01  # neighbouring events
    assert abs(np.corrcoef(z0, z1)[0, 1]) < 0.01  # the two halves of one word
    other = np.empty(200_000)
    K.fill_normal(seed + np.uint64(1), 0, 0, other)  # a neighbouring seed
    assert abs(np.corrcoef(z0, other)[0, 1]) < 0.01


def rounded_normal_pmf(std: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets k in [-L, L], L = ceil(8 std), and P(round(std z) = k) with the tails clipped."""
    half = math.ceil(8 * std)
    ks = np.arange(-half, half + 1)
    if std < 1e-3:
        return ks, (ks == 0).astype(float)
    upper = np.array([0.5 * math.erfc(-(k + 0.5) / (std * math.sqrt(2))) for k in ks.tolist()])
    upper[-1] = 1.0
    return ks, np.diff(upper, prepend=0.0)


def table_pmf(table: np.ndarray, fb: int) -> dict[int, int]:
    """The exact distribution an alias table realises, in units of 2**-32."""
    mass: dict[int, int] = {}
    for e in table.tolist():
        thr = e >> 32
        v1, v2 = ((e >> 16) & 0xFFFF), e & 0xFFFF
        v1, v2 = (v1 ^ 0x8000) - 0x8000, (v2 ^ 0x8000) - 0x8000
        mass[v1] = mass.get(v1, 0) + thr
        mass[v2] = mass.get(v2, 0) + (1 << fb) - thr
    return mass


@pytest.mark.parametrize("std", [0.0, 1e-300, 0.2, 0.5, 1.0, 2.7, 10.0, 127.8])
def test_offset_table_realises_the_rounded_normal(std):
    table, fb = K.offset_table(std)
    assert fb >= 0 and len(table) == 1 << (32 - fb) <= K.MAX_TABLE
    mass = table_pmf(table, fb)
    assert sum(mass.values()) == 1 << 32
    ks, pmf = rounded_normal_pmf(std)
    for k, p in zip(ks.tolist(), pmf.tolist(), strict=True):
        tol = 2**-32 * (len(ks) if k == 0 else 1)  # rounding; the mode takes the residue
        assert abs(mass.get(k, 0) / 2**32 - p) <= tol, (k, p)
    assert set(mass) - set(ks.tolist()) <= {0}  # padding cells carry no mass
    assert K.offset_table(std)[0] is table  # cached
    assert not table.flags.writeable


def test_offset_table_falls_back_to_the_ziggurat_for_wide_jitter():
    table, fb = K.offset_table(128.0)
    assert fb == -1 and len(table) == 0
    with pytest.raises(ValueError):
        K.offset_table(-1.0)


def lookup(h: np.ndarray, table: np.ndarray, fb: int) -> np.ndarray:
    """Alias-table lookup in numpy (an independent implementation of the kernel's)."""
    e = table[h >> fb]
    v = np.where((h & ((1 << fb) - 1)) < (e >> 32), e >> 16, e) & 0xFFFF
    return (v ^ 0x8000) - 0x8000


def halves(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    w = np.empty(n, np.uint64)
    K.fill_words(np.uint64(seed), 0, w)
    return (w & np.uint64(0xFFFFFFFF)).astype(np.int64), (w >> np.uint64(32)).astype(np.int64)


def offsets_ref(seed: int, n: int, half: int, std: float) -> np.ndarray:
    """What the jitter ops add to the events of a stream: the table lookup (numpy) for small
    std, ``floor(std z + 0.5)`` of the ziggurat normal for wide jitter."""
    table, fb = K.offset_table(std)
    if fb >= 0:
        return lookup(halves(seed, n)[half], table, fb)
    z = np.empty(n)
    K.fill_normal(np.uint64(seed), 0, half, z)
    return np.floor(std * z + 0.5).astype(np.int64)


@pytest.mark.parametrize("std", [1.0, 10.0, 300.0])
def test_offsets_follow_the_rounded_normal(std):
    """Chi-square of 400k offsets against the exact pmf (table path and ziggurat path)."""
    n = 400_000
    d = offsets_ref(424242, n, 1, std)
    out = np.empty(n, np.int64)
    table, fb = K.offset_table(std)
    K.fill_offsets(np.uint64(424242), 0, 1, std, table, fb, out)
    np.testing.assert_array_equal(out, d)
    ks, pmf = rounded_normal_pmf(std)
    expected = pmf * n
    keep = expected >= 20  # pool the far tails
    assert np.abs(d).max() <= ks[-1] or table.size == 0  # the table path clips at 8 std
    observed = np.bincount(np.clip(d - ks[0], 0, len(ks) - 1), minlength=len(ks))[keep]
    chi2 = np.sum((observed - expected[keep]) ** 2 / expected[keep])
    tails = n - observed.sum()
    chi2 += (tails - (n - expected[keep].sum())) ** 2 / max(n - expected[keep].sum(), 1.0)
    dof = int(keep.sum())
    assert chi2 < dof + 5 * math.sqrt(2 * dof)  # about the 0.1 % critical value


def _seed(seed: int) -> int:
    """The seed a transform draws from ``np.random.default_rng(seed)``."""
    return K.rng_seed(np.random.default_rng(seed))


@HYP
@given(seed=st.integers(0, 2**32 - 1), p=st.floats(0.0, 1.0), n=st.sampled_from([400, 2500]))
def test_drop_event_reference(seed, p, n):
    ev = stream(seed % 500, n=n)
    out = T.DropEvent(p)(ev, np.random.default_rng(seed))
    u = np.array([(w >> 11) * 2.0**-53 for w in splitmix64_py(_seed(seed), n)])
    np.testing.assert_array_equal(out, ev[u >= p])
    assert_subsequence(out, ev)


@HYP
@given(seed=st.integers(0, 2**32 - 1), lo=st.floats(0.0, 0.5), hi=st.floats(0.5, 1.0))
def test_drop_event_range_draws_p_per_call(seed, lo, hi):
    """DropEvent((lo, hi)): p ~ U(lo, hi) from the generator, then the Bernoulli mask of
    DropEvent(p) with the generator's next seed (drawn in that order)."""
    ev = stream(seed % 500, n=600)
    out = T.DropEvent((lo, hi))(ev, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    p = rng.uniform(lo, hi) if lo != hi else lo
    assert lo <= p <= hi
    u = np.array([(w >> 11) * 2.0**-53 for w in splitmix64_py(K.rng_seed(rng), len(ev))])
    np.testing.assert_array_equal(out, ev[u >= p])


def test_drop_event_range_varies_density():
    ev = stream(2, n=4000)
    rng = np.random.default_rng(5)
    kept = np.array([len(T.DropEvent((0.0, 0.5))(ev, rng)) / len(ev) for _ in range(200)])
    assert kept.min() > 0.5 - 0.05 and kept.max() <= 1.0
    assert kept.max() - kept.min() > 0.35  # the density really varies from call to call
    with pytest.raises(ArgumentError):
        T.DropEvent((0.2, 1.5))
    with pytest.raises(ArgumentError):
        T.DropEvent((0.6, 0.2))


def test_drop_event_rate():
    ev = stream(1, n=20_000)
    out = T.DropEvent(0.25)(ev, np.random.default_rng(3))
    assert abs(len(out) / len(ev) - 0.75) < 0.02
    assert len(T.DropEvent(1.0)(ev, np.random.default_rng(3))) == 0
    np.testing.assert_array_equal(T.DropEvent(0.0)(ev, np.random.default_rng(3)), ev)
    with pytest.raises(ArgumentError) as err:  # an argument error, not a bad file
        T.DropEvent(1.5)
    assert isinstance(err.value, ValueError) and not isinstance(err.value, EventFileError)


@HYP
@given(seed=st.integers(0, 2**32 - 1), lo=st.floats(0, 0.5), hi=st.floats(0.5, 1.0))
def test_drop_chunk_removes_one_run(seed, lo, hi):
    ev = stream(seed % 500)
    out = T.DropChunk(hi, lo)(ev, np.random.default_rng(seed))
    assert_subsequence(out, ev)
    removed = np.setdiff1d(np.arange(len(ev)), np.searchsorted(ev["t"], out["t"]))
    assert math.floor(lo * len(ev)) <= len(removed) <= math.floor(hi * len(ev))
    if len(removed):
        assert removed[-1] - removed[0] + 1 == len(removed)  # contiguous


def dense_stream(seed: int, n: int, per_us: int) -> np.ndarray:
    """About ``per_us`` events per microsecond (many equal timestamps), sorted."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, max(n // per_us, 1), n)) + 5_000
    return make_events(rng.integers(0, 37, n), rng.integers(0, 23, n), t, rng.random(n) < 0.5)


@HYP
@given(seed=st.integers(0, 2**32 - 1), std=st.floats(0.0, 5000.0), near_zero=st.booleans(),
       kind=st.sampled_from(["sparse", "dense", "long"]))
def test_time_jitter_reference(seed, std, near_zero, kind):
    """Both re-sort paths (insertion for sparse streams, bucket sort for dense ones) and streams
    longer than a block."""
    ev = {"sparse": lambda: stream(seed % 500, unique_t=False),
          "dense": lambda: dense_stream(seed % 500, 3000, 8),
          "long": lambda: stream(seed % 500, n=2600)}[kind]()
    if near_zero:
        ev["t"] -= ev["t"][0]  # near zero: exercises the clip at 0
    out = T.TimeJitter(std)(ev, np.random.default_rng(seed))
    ref = ev.copy()
    ref["t"] = np.maximum(ev["t"] + offsets_ref(_seed(seed), len(ev), 0, std), 0)
    np.testing.assert_array_equal(out, ref[np.argsort(ref["t"], kind="stable")])
    assert_valid(out)
    assert (out["t"] >= 0).all()


def _unsorted_jittered(ev: np.ndarray, std: float, seed: int) -> np.ndarray:
    """The time-jittered events before the re-sort (run_ops with one jitter op)."""
    ops_i, ops_f, tables = T._pack([T.TimeJitter(std)._op(np.random.default_rng(seed))])
    out = np.empty_like(ev)
    m = K.run_ops(ev, ops_i, ops_f, tables, out, T._NO_COUNT, 0, 0)[0]
    return out[:m]


def histogram(events, t_base, shift, n_buckets):
    """``count[1 + b]`` = number of events in bucket b, b = clip((t − t_base) >> shift)."""
    b = np.clip((events["t"] - t_base) >> shift, 0, n_buckets - 1)
    return np.concatenate([[0], np.bincount(b, minlength=n_buckets)]).astype(np.int32)


@pytest.mark.parametrize("shift", [0, 1, 3, 7])
@pytest.mark.parametrize("base_offset", [-50, 0, 200])  # > 0: timestamps below the grid clamp
@pytest.mark.parametrize("n_buckets", [1, 64, 4000])
def test_bucket_sort_then_insertion_is_a_stable_sort(shift, base_offset, n_buckets):
    ev = dense_stream(4, 3000, 3)
    jit = _unsorted_jittered(ev, 80.0, 6)
    ref = jit[np.argsort(jit["t"], kind="stable")]
    t_base = int(jit["t"].min()) + base_offset
    for scatter in (K.bucket_scatter, K.bucket_scatter.py_func):
        dst = np.empty_like(jit)
        scatter(jit, dst, t_base, shift, histogram(jit, t_base, shift, n_buckets))
        b = np.clip((dst["t"] - t_base) >> shift, 0, n_buckets - 1)
        assert (np.diff(b) >= 0).all()  # ordered by bucket
        exact = shift == 0 and base_offset <= 0 and (jit["t"].max() - t_base) < n_buckets
        if exact:
            np.testing.assert_array_equal(dst, ref)
        assert K.sort_by_time_insertion(dst, 10**9)
        np.testing.assert_array_equal(dst, ref)


def test_run_ops_builds_the_histogram():
    ev = dense_stream(5, 2500, 4)
    ops = [T.DropEvent(0.3)._op(np.random.default_rng(1)),
           T.TimeJitter(25.0)._op(np.random.default_rng(2))]
    t_base = int(ev["t"][0]) + 17
    count = np.zeros(300, np.int32)
    out = np.empty_like(ev)
    m, t_min, t_max = K.run_ops(ev, *T._pack(ops), out, count, t_base, 2)
    np.testing.assert_array_equal(count, histogram(out[:m], t_base, 2, 299))
    assert (t_min, t_max) == (out[:m]["t"].min(), out[:m]["t"].max())


@pytest.mark.parametrize("budget", [0, 30, 10**9])
def test_sort_by_time_paths(budget):
    """Insertion sort within the budget, radix sort past it: a stable sort either way."""
    jit = _unsorted_jittered(stream(4, unique_t=False), 80.0, 6)
    ref = jit[np.argsort(jit["t"], kind="stable")]
    np.testing.assert_array_equal(T.sort_by_time(jit.copy(), budget), ref)


def test_time_jitter_zero_is_identity():
    for ev in (stream(3, unique_t=False), dense_stream(3, 3000, 10)):
        np.testing.assert_array_equal(T.TimeJitter(0.0)(ev, np.random.default_rng(0)), ev)


@HYP
@given(seed=st.integers(0, 2**32 - 1), budget=st.integers(0, 300))
def test_sort_by_time_fallback_equals_stable_sort(seed, budget):
    rng = np.random.default_rng(seed)
    ev = make_events(np.arange(300), np.zeros(300), rng.integers(0, 50, 300), np.zeros(300))
    ref = ev[np.argsort(ev["t"], kind="stable")]
    np.testing.assert_array_equal(T.sort_by_time(ev.copy(), budget), ref)


@HYP
@given(seed=st.integers(0, 2**32 - 1), span_bits=st.integers(0, 62), n=st.integers(0, 400))
def test_radix_sort_matches_stable_argsort(seed, span_bits, n):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2**span_bits, n, dtype=np.int64) + rng.integers(-(2**40), 2**40)
    t[: n // 3] = t[0] if n else 0  # ties
    ev = make_events(np.arange(n) % 100, np.arange(n) // 100, t, np.zeros(n))
    ref = ev[np.argsort(ev["t"], kind="stable")]
    for fn in (K.radix_sort_by_time, K.radix_sort_by_time.py_func):
        got = ev.copy()
        fn(got, np.empty_like(got))
        np.testing.assert_array_equal(got, ref)


@HYP
@given(seed=st.integers(0, 2**32 - 1))
def test_time_skew(seed):
    ev = stream(seed % 500)
    out = T.TimeSkew((0.5, 2.0))(ev, np.random.default_rng(seed))
    c = np.random.default_rng(seed).uniform(0.5, 2.0)
    t0 = ev["t"][0]
    np.testing.assert_array_equal(out["t"], t0 + np.floor(c * (ev["t"] - t0) + 0.5).astype(np.int64))
    np.testing.assert_array_equal(out[["x", "y", "p"]], ev[["x", "y", "p"]])
    with pytest.raises(ArgumentError):
        T.TimeSkew((-1.0, 2.0))


@HYP
@given(seed=st.integers(0, 2**32 - 1), sx=st.floats(0, 4), sy=st.floats(0, 200),
       n=st.sampled_from([400, 2500]))
def test_spatial_jitter_reference(seed, sx, sy, n):
    ev = stream(seed % 500, n=n)
    out = T.SpatialJitter(SENSOR, (sx, sy))(ev, np.random.default_rng(seed))
    x = ev["x"] + offsets_ref(_seed(seed), n, 0, sx)
    y = ev["y"] + offsets_ref(_seed(seed), n, 1, sy)
    inside = (x >= 0) & (x < SENSOR[0]) & (y >= 0) & (y < SENSOR[1])
    np.testing.assert_array_equal(out["x"], x[inside])
    np.testing.assert_array_equal(out["y"], y[inside])
    np.testing.assert_array_equal(out["t"], ev["t"][inside])
    np.testing.assert_array_equal(out["p"], ev["p"][inside])


@HYP
@given(seed=st.integers(0, 2**32 - 1), wrap=st.booleans())
def test_roll(seed, wrap):
    ev = stream(seed % 500)
    out = T.Roll(SENSOR, (4, 7), wrap=wrap)(ev, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    dx, dy = int(rng.integers(-4, 5)), int(rng.integers(-7, 8))
    x, y = ev["x"].astype(np.int64) + dx, ev["y"].astype(np.int64) + dy
    if wrap:
        np.testing.assert_array_equal(out["x"], x % SENSOR[0])
        np.testing.assert_array_equal(out["y"], y % SENSOR[1])
        np.testing.assert_array_equal(out["t"], ev["t"])
    else:
        inside = (x >= 0) & (x < SENSOR[0]) & (y >= 0) & (y < SENSOR[1])
        np.testing.assert_array_equal(out["x"], x[inside])
        np.testing.assert_array_equal(out["t"], ev["t"][inside])


@HYP
@given(seed=st.integers(0, 2**32 - 1))
def test_rotate_and_scale_reference(seed):
    ev = stream(seed % 500)
    w, h = SENSOR[:2]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    xf, yf = ev["x"] - cx, ev["y"] - cy
    a = math.radians(np.random.default_rng(seed).uniform(-40, 40))
    f = np.random.default_rng(seed).uniform(0.6, 1.4)
    for tr, (xr, yr) in [
        (T.Rotate(SENSOR, 40.0), (cx + math.cos(a) * xf - math.sin(a) * yf,
                                  cy + math.sin(a) * xf + math.cos(a) * yf)),
        (T.Scale(SENSOR, (0.6, 1.4)), (cx + f * xf, cy + f * yf)),
    ]:
        out = tr(ev, np.random.default_rng(seed))
        x, y = np.floor(xr + 0.5).astype(np.int64), np.floor(yr + 0.5).astype(np.int64)
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        # the kernel's operation order may differ from this formula in the last bit; allow a
        # handful of half-pixel ties to round differently
        assert abs(len(out) - inside.sum()) <= 2
        if len(out) == inside.sum():
            assert np.abs(out["x"] - x[inside]).max(initial=0) <= 1
            assert np.mean(out["x"] == x[inside]) > 0.97
            np.testing.assert_array_equal(out["t"], ev["t"][inside])


def test_rotate_quarter_turn_is_a_bijection():
    w = h = 9
    xx, yy = np.meshgrid(np.arange(w), np.arange(h), indexing="ij")
    ev = make_events(xx.ravel(), yy.ravel(), np.arange(w * h), np.zeros(w * h))
    args = T._affine_about_centre(w, h, 0.0, -1.0, 1.0, 0.0)  # exact 90 degrees
    bx, by = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    bt, bp = ev["t"].copy(), ev["p"].copy()
    n = K.op_affine(bx, by, bt, bp, w * h, w, h, *args)
    assert n == w * h
    np.testing.assert_array_equal(bx, (h - 1) - ev["y"])
    np.testing.assert_array_equal(by, ev["x"])


def test_flip_lr():
    ev = stream(5)
    flipped = T.FlipLR(SENSOR, 1.0)(ev, np.random.default_rng(0))
    np.testing.assert_array_equal(flipped["x"], SENSOR[0] - 1 - ev["x"])
    np.testing.assert_array_equal(flipped[["y", "t", "p"]], ev[["y", "t", "p"]])
    np.testing.assert_array_equal(T.FlipLR(SENSOR, 1.0)(flipped, np.random.default_rng(1)), ev)
    np.testing.assert_array_equal(T.FlipLR(SENSOR, 0.0)(ev, np.random.default_rng(0)), ev)
    buf = ev.copy()
    assert T.FlipLR(SENSOR, 0.0).apply_into(buf, np.random.default_rng(0), buf) == len(ev)
    flips = [T.FlipLR(SENSOR, 0.5)(ev, np.random.default_rng(s))["x"][0] != ev["x"][0]
             for s in range(40)]
    assert 5 < sum(flips) < 35


def test_downsample_transform():
    ev = stream(2)
    tr = T.Downsample(SENSOR, 4)
    out = tr(ev, np.random.default_rng(0))
    assert tr.output_size == (10, 6, 2)
    assert_valid(out, tr.output_size)
    np.testing.assert_array_equal(out["x"], ev["x"] // 4)


# ------------------------------------------------------------------------------------ cutmix


@HYP
@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["spatial", "temporal", "random"]))
def test_event_cutmix(seed, mode):
    a, b = stream(seed % 300, n=300), stream(seed % 300 + 1, n=200)
    a["p"], b["p"] = False, True  # mark the source of every event
    out, soft = T.event_cutmix(a, 2, b, 5, np.random.default_rng(seed), 7, sensor_size=SENSOR,
                               mode=mode)
    assert_valid(out)
    assert soft.dtype == np.float32 and soft.shape == (7,)
    w = out["p"].mean() if len(out) else 0.0
    np.testing.assert_allclose(soft[[2, 5]], [1 - w, w], rtol=1e-6)
    assert soft.sum() == pytest.approx(1.0) and (np.delete(soft, [2, 5]) == 0).all()
    from_a = out[~out["p"]]
    assert_subsequence(from_a, a)
    again, soft2 = T.event_cutmix(a, 2, b, 5, np.random.default_rng(seed), 7,
                                  sensor_size=SENSOR, mode=mode)
    np.testing.assert_array_equal(out, again)
    np.testing.assert_array_equal(soft, soft2)
    from_b = out[out["p"]]
    if mode == "spatial" and len(from_b):
        # b's events keep their times and come from one box that a's kept events avoid
        assert np.isin(from_b["t"], b["t"]).all()
        x0, x1, y0, y1 = from_b["x"].min(), from_b["x"].max(), from_b["y"].min(), from_b["y"].max()
        box_a = ((from_a["x"] >= x0) & (from_a["x"] <= x1) & (from_a["y"] >= y0)
                 & (from_a["y"] <= y1))
        assert not box_a.any()
    if mode == "temporal" and len(from_b):
        shifted = b["t"] - b["t"][0] + a["t"][0]
        assert np.isin(from_b["t"], shifted).all()
        inside_a = (from_a["t"] >= from_b["t"].min()) & (from_a["t"] <= from_b["t"].max())
        assert not inside_a.any()


def test_event_cutmix_same_label_and_errors():
    a, b = stream(1), stream(2)
    _, soft = T.event_cutmix(a, 1, b, 1, np.random.default_rng(0), 3)
    np.testing.assert_array_equal(soft, [0, 1, 0])
    with pytest.raises(ArgumentError, match="label"):
        T.event_cutmix(a, 3, b, 1, np.random.default_rng(0), 3)
    with pytest.raises(ArgumentError, match="mode"):
        T.event_cutmix(a, 0, b, 1, np.random.default_rng(0), 3, mode="diagonal")


# ----------------------------------------------------------------------- kernels vs .py_func


def _block(ev):
    return ev["x"].astype(np.int64), ev["y"].astype(np.int64), ev["t"].copy(), ev["p"].copy()


def test_op_kernels_match_py_func():
    ev = stream(11, n=300, w=40, h=30, unique_t=False)
    w, h = SENSOR[:2]
    seed = np.uint64(_seed(3))
    r = np.empty(K.BLOCK, np.uint64)
    tx, fx = K.offset_table(1.7)
    ty, fy = K.offset_table(300.0)  # ziggurat path
    tt, ft = K.offset_table(30.0)
    cases = [
        (K.op_drop, lambda b: (*b, 300, 0.4, seed, 5, r)),
        (K.op_spatial_jitter, lambda b: (*b, 300, w, h, 1.7, 300.0, tx, fx, ty, fy, seed, 7, r)),
        (K.op_time_jitter, lambda b: (b[2], 300, 30.0, tt, ft, seed, 0, r)),
        (K.op_time_jitter, lambda b: (b[2], 300, 900.0, ty[:0], -1, seed, 0, r)),
        (K.op_affine, lambda b: (*b, 300, w, h, 0.9, -0.3, 0.3, 0.9, 2.0, -1.0)),
        (K.op_roll, lambda b: (*b, 300, w, h, 5, -4, True)),
        (K.op_roll, lambda b: (*b, 300, w, h, 5, -4, False)),
        (K.op_time_skew, lambda b: (b[2], 300, 1.37, int(ev["t"][0]))),
        (K.op_downsample, lambda b: (b[0], b[1], 300, 1, 4, 3, 7)),
    ]
    for kernel, args in cases:
        results = []
        for fn in (kernel, kernel.py_func):
            blk = _block(ev)
            with np.errstate(over="ignore"):
                results.append((fn(*args(blk)), blk))
        assert results[0][0] == results[1][0], kernel
        for got, ref in zip(results[0][1], results[1][1], strict=True):
            np.testing.assert_array_equal(got, ref)


def test_scale_coords_shift_equals_floor_division():
    v = np.arange(-40, 40, dtype=np.int64)
    for num, den in [(1, 1), (1, 2), (1, 8), (3, 7), (5, 5), (2, 3), (1, 6)]:
        for fn in (K.scale_coords, K.scale_coords.py_func):
            got = v.copy()
            fn(got, len(v), num, den)
            np.testing.assert_array_equal(got, (v * num) // den)
    for d in (1, 2, 3, 64, 96):
        assert K._log2_exact(d) == K._log2_exact.py_func(d) == (d.bit_length() - 1 if d & (d - 1) == 0 else -1)


def test_run_ops_matches_py_func():
    ev = stream(12, n=2500, w=40, h=30, unique_t=False)
    rng = np.random.default_rng(4)
    ops = [T.Downsample((40, 30), (37, 23))._op(rng), T.DropEvent(0.2)._op(rng),
           T.SpatialJitter(SENSOR, (1.0, 0.5))._op(rng), T.TimeSkew((0.5, 2.0))._op(rng),
           T.Rotate(SENSOR, 10.0)._op(rng), T.Roll(SENSOR, 3, wrap=False)._op(rng),
           T.TimeJitter(40.0)._op(rng)]
    packed = T._pack(ops)
    outs = []
    for fn in (K.run_ops, K.run_ops.py_func):
        out = np.zeros_like(ev)
        count = np.zeros(101, np.int32)
        with np.errstate(over="ignore"):
            res = fn(ev, *packed, out, count, int(ev["t"][0]), 6)
        outs.append((tuple(res), out, count))
    assert outs[0][0] == outs[1][0]
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    np.testing.assert_array_equal(outs[0][2], outs[1][2])
    with pytest.raises(ValueError, match="unknown op"):
        bad = packed[0].copy()
        bad[0, 0] = 99
        K.run_ops(ev, bad, *packed[1:], np.empty_like(ev), T._NO_COUNT, 0, 0)


def test_random_kernels_match_py_func():
    seed = np.uint64(_seed(9))
    for fill, extra in ((K.fill_uniform, ()), (K.fill_normal, (1,))):
        r1, r2 = np.empty(101), np.empty(101)
        fill(seed, 3, *extra, r1)
        with np.errstate(over="ignore"):
            fill.py_func(seed, 3, *extra, r2)
        np.testing.assert_array_equal(r1, r2)
    for std in (0.0, 2.5, 500.0):
        table, fb = K.offset_table(std)
        o1, o2 = np.empty(101, np.int64), np.empty(101, np.int64)
        K.fill_offsets(seed, 3, 0, std, table, fb, o1)
        with np.errstate(over="ignore"):
            K.fill_offsets.py_func(seed, 3, 0, std, table, fb, o2)
        np.testing.assert_array_equal(o1, o2)
    # inline helpers, and both branches of the ziggurat (rejections are ~1 % of the halves)
    lo, hi = halves(int(seed), 4000)
    rejected = [(int(v), c, half) for half, hv in enumerate((lo, hi)) for c, v in enumerate(hv)
                if abs((int(v) >> 7) - K._ZIG_M) >= K._ZIG_K[int(v) & 127]]
    assert len(rejected) > 40 and any(v & 127 == 0 for v, _, _ in rejected)  # base layer too
    with np.errstate(over="ignore"):
        for v, c, half in [*rejected[:60], (int(lo[0]), 0, 0)]:
            assert K.normal_from(v, seed, c, half) == K.normal_from.py_func(v, seed, c, half)
            key = np.uint64(12345 + c)
            assert K._normal_slow(v, key) == K._normal_slow.py_func(v, key)
        table, fb = K.offset_table(3.0)
        for v in lo[:50].tolist():
            assert (K.rounded_normal(v, seed, 0, 0, 3.0, table, fb)
                    == K.rounded_normal.py_func(v, seed, 0, 0, 3.0, table, fb))
        for c in (0, 1, 2**40):
            assert K.random_word(seed, c) == K.random_word.py_func(seed, c)
        z = np.uint64(0xDEADBEEF12345678)
        assert K.mix64(z) == K.mix64.py_func(z)
        assert K.unit(z) == K.unit.py_func(z) == (int(z) >> 11) * 2.0**-53
    for t in (-5, 0, 17, 10**6):
        assert K.time_bucket(t, 3, 2, 10) == K.time_bucket.py_func(t, 3, 2, 10) == min(max((t - 3) >> 2, 0), 9)
    flat = np.arange(40, dtype=np.int64)
    for start, fb in ((3, 29), (0, -1)):
        np.testing.assert_array_equal(K._table_slice(flat, start, fb), K._table_slice.py_func(flat, start, fb))
    assert len(K._table_slice(flat, 3, 29)) == 8


def test_sort_and_merge_kernels_match_py_func():
    ev = stream(11, n=300, unique_t=False)
    jittered = _unsorted_jittered(ev, 500.0, 4)
    for budget in (10**9, 5):
        c, p = jittered.copy(), jittered.copy()
        assert K.sort_by_time_insertion(c, budget) == K.sort_by_time_insertion.py_func(p, budget)
        np.testing.assert_array_equal(c, p)
    a, b = stream(1, n=100, unique_t=False), stream(2, n=80, unique_t=False)
    outs = [np.zeros(180, EVENT_DTYPE) for _ in range(2)]
    assert K.merge_by_time(a, b, outs[0]) == K.merge_by_time.py_func(a, b, outs[1]) == 80
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0]["t"], np.sort(np.concatenate([a["t"], b["t"]])))


# ------------------------------------------------------------------------- fused pipelines


def _random_transform(draw, sensor):
    kind = draw(st.sampled_from(["drop", "chunk", "tjit", "skew", "sjit", "roll", "rot", "scale",
                                 "flip", "down", "lambda"]))
    return {
        "drop": lambda: T.DropEvent(draw(st.floats(0, 0.6))),
        "chunk": lambda: T.DropChunk(0.4, 0.1),
        "tjit": lambda: T.TimeJitter(draw(st.sampled_from([0.0, 3.0, 40.0, 700.0]))),
        "skew": lambda: T.TimeSkew((0.5, 2.0)),
        "sjit": lambda: T.SpatialJitter(sensor, draw(st.sampled_from([0.7, 2.0, 150.0]))),
        "roll": lambda: T.Roll(sensor, 4, wrap=draw(st.booleans())),
        "rot": lambda: T.Rotate(sensor, 20.0),
        "scale": lambda: T.Scale(sensor, (0.7, 1.3)),
        "flip": lambda: T.FlipLR(sensor, 0.5),
        "down": lambda: T.Downsample(sensor, 1),
        "lambda": lambda: (lambda e, rng: e[::2]),
    }[kind]()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["sparse", "dense", "long", "empty", "unsorted"]))
def test_compose_equals_one_by_one(data, seed, kind):
    """A fused Compose gives exactly the output of applying its transforms one at a time."""
    ev = {"sparse": lambda: stream(seed % 300, unique_t=False),
          "dense": lambda: dense_stream(seed % 300, 2000, 6),
          "long": lambda: stream(seed % 300, n=2600),
          "empty": lambda: np.empty(0, EVENT_DTYPE),
          "unsorted": lambda: np.random.default_rng(seed).permutation(
              dense_stream(seed % 300, 2000, 6))}[kind]()
    trs = tuple(_random_transform(data.draw, SENSOR) for _ in range(data.draw(st.integers(1, 6))))
    before = ev.copy()
    out = T.Compose(trs)(ev, np.random.default_rng(seed))
    np.testing.assert_array_equal(ev, before)
    rng = np.random.default_rng(seed)
    ref = ev
    for t in trs:
        ref = t(ref, rng)
    np.testing.assert_array_equal(out, ref)
    if any(isinstance(t, T.TimeJitter) for t in trs):
        assert (np.diff(out["t"]) >= 0).all()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1),
       kind=st.sampled_from(["sparse", "dense", "long", "empty"]),
       where=st.sampled_from(["buffer", "view", "in place"]))
def test_compose_apply_into_equals_call(data, seed, kind, where):
    """``apply_into`` writes exactly ``__call__``'s output (same draws) into the caller's
    buffer -- a larger reused one, a view into one, or the input itself -- and leaves a
    separate input untouched."""
    ev = {"sparse": lambda: stream(seed % 300, unique_t=False),
          "dense": lambda: dense_stream(seed % 300, 2000, 6),
          "long": lambda: stream(seed % 300, n=2600),
          "empty": lambda: np.empty(0, EVENT_DTYPE)}[kind]()
    trs = tuple(_random_transform(data.draw, SENSOR) for _ in range(data.draw(st.integers(1, 6))))
    comp = T.Compose(trs)
    ref = comp(ev, np.random.default_rng(seed))
    before = ev.copy()
    if where == "in place":
        buf = ev.copy()
        src = buf
    else:
        big = np.zeros(len(ev) + 50, EVENT_DTYPE)
        buf = big if where == "buffer" else big[7 : 7 + len(ev) + 3]
        src = ev
    n = comp.apply_into(src, np.random.default_rng(seed), buf)
    np.testing.assert_array_equal(buf[:n], ref)
    np.testing.assert_array_equal(ev, before)
    if where == "view":
        assert (big[:7] == np.zeros(7, EVENT_DTYPE)).all()  # nothing outside the view written


def test_compose_apply_into_reuses_one_buffer_and_checks_it():
    comp = T.Compose((T.Downsample(SENSOR, 2), T.DropEvent(0.2),
                      T.SpatialJitter(T.Downsample(SENSOR, 2).output_size, 1.0),
                      T.TimeJitter(30.0)))
    buf = np.empty(3000, EVENT_DTYPE)
    for k, n in enumerate((2600, 40, 1800)):
        ev = stream(k, n=n)
        m = comp.apply_into(ev, np.random.default_rng(k), buf)
        np.testing.assert_array_equal(buf[:m], comp(ev, np.random.default_rng(k)))
    ev = stream(3, n=100)
    with pytest.raises(ValueError, match="out holds 99 events, fewer than the 100"):
        comp.apply_into(ev, np.random.default_rng(0), buf[:99])
    with pytest.raises(ValueError, match="out must be a 1-D"):
        comp.apply_into(ev, np.random.default_rng(0), np.empty(200))
    grow = T.Compose((T.DropEvent(0.0), lambda e, rng: np.concatenate([e, e])))
    with pytest.raises(ValueError, match="a transform returned 200 events, more than out"):
        grow.apply_into(ev, np.random.default_rng(0), buf[:150])


def test_compose_of_the_benchmark_pipeline_on_a_long_stream():
    """Downsample -> DropEvent -> SpatialJitter -> TimeJitter (one fused pass + bucket sort) over
    many blocks equals the transforms one by one, and a stage-by-stage numpy recomputation."""
    rng = np.random.default_rng(0)
    n = 20_000
    ev = make_events(rng.integers(0, 128, n), rng.integers(0, 128, n),
                     np.cumsum(rng.integers(0, 3, n)) + 10**6, rng.random(n) < 0.5)
    ds = T.Downsample((128, 128, 2), 2)
    trs = (ds, T.DropEvent(0.1), T.SpatialJitter(ds.output_size, 1.0), T.TimeJitter(10.0))
    out = T.Compose(trs)(ev, np.random.default_rng(5))
    g = np.random.default_rng(5)
    one = ev
    for t in trs:
        one = t(one, g)
    np.testing.assert_array_equal(out, one)
    g = np.random.default_rng(5)
    s_drop, s_sj, s_tj = (K.rng_seed(g) for _ in range(3))
    ref = ev.copy()
    ref["x"] //= 2
    ref["y"] //= 2
    u = np.array([(w >> 11) * 2.0**-53 for w in splitmix64_py(s_drop, n)])
    ref = ref[u >= 0.1]
    x = ref["x"] + offsets_ref(s_sj, len(ref), 0, 1.0)
    y = ref["y"] + offsets_ref(s_sj, len(ref), 1, 1.0)
    inside = (x >= 0) & (x < 64) & (y >= 0) & (y < 64)
    ref = ref[inside]
    ref["x"], ref["y"] = x[inside], y[inside]
    ref["t"] = np.maximum(ref["t"] + offsets_ref(s_tj, len(ref), 0, 10.0), 0)
    np.testing.assert_array_equal(out, ref[np.argsort(ref["t"], kind="stable")])


# --------------------------------------------------------------------------- tonic interop

import tonic.transforms as tonic_transforms  # noqa: E402  (declared dependency: no skip)

# dtypes tonic's own datasets use (NCaltech101: native ints, x y t p; DVSGesture: p before t)
TONIC_DTYPES = [
    np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]),
    np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)]),
]


def _to(dtype, ev):
    out = np.empty(len(ev), dtype=dtype)
    for name in ("x", "y", "t", "p"):
        out[name] = ev[name]
    return out


def _same_events(ours, theirs):
    for name in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(ours[name].astype(np.int64), theirs[name].astype(np.int64))


@pytest.mark.parametrize("dtype", TONIC_DTYPES, ids=["int64", "dvsgesture"])
@pytest.mark.parametrize("factor", [2, 4])
def test_tonic_downsample_on_our_arrays(dtype, factor):
    ev = stream(21, n=2000, w=128, h=128)
    tr = tonic_transforms.Downsample(spatial_factor=1 / factor)
    ours = tr(ev)
    assert ours.dtype == EVENT_DTYPE
    _same_events(ours, tr(_to(dtype, ev)))
    # and tonic's result equals ours
    mine, size2 = F.downsample_events(ev, (128, 128, 2), factor)
    _same_events(ours, mine)
    assert size2 == (128 // factor, 128 // factor, 2)


@pytest.mark.parametrize("dtype", TONIC_DTYPES, ids=["int64", "dvsgesture"])
def test_tonic_drop_event_and_spatial_jitter_on_our_arrays(dtype):
    ev = stream(22, n=2000, w=64, h=48)
    saved = np.random.get_state()  # noqa: NPY002  tonic draws from the global state: restore it afterwards
    for tr in (
        tonic_transforms.DropEvent(p=0.3),
        tonic_transforms.SpatialJitter(sensor_size=(64, 48, 2), var_x=2.0, var_y=1.0,
                                       clip_outliers=True),
    ):
        np.random.seed(1234)  # noqa: NPY002  (tonic uses the global state; same seed for both)
        ours = tr(ev)
        np.random.seed(1234)  # noqa: NPY002
        theirs = tr(_to(dtype, ev))
        assert ours.dtype == EVENT_DTYPE
        _same_events(ours, theirs)
        # the result can be tokenized directly
        tokens, _ = F.tokenize(ours, (64, 48, 2))
        assert len(tokens) == len(ours)
    np.random.set_state(saved)  # noqa: NPY002
    # our transforms accept tonic's dtype too (converted field by field)
    out = T.DropEvent(0.3)(_to(dtype, ev), np.random.default_rng(0))
    np.testing.assert_array_equal(out, T.DropEvent(0.3)(ev, np.random.default_rng(0)))

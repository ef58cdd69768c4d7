"""Tokenization, slicing and filters against independent formulas and plain-python loops."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventssm.events import EVENT_DTYPE, ArgumentError, EventFileError, make_events
from eventssm.tokenizers import functional as F
from eventssm.tokenizers import kernels as K

SENSORS = [(128, 128), (346, 260), (640, 480), (1280, 720), (34, 34), (37, 11), (1, 1), (5, 3)]
HYP = settings(max_examples=40, deadline=None)


def random_events(rng: np.random.Generator, n: int, w: int, h: int, t_max: int = 10**6):
    t = np.sort(rng.integers(0, t_max, n))
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.random(n) < 0.5)


downsamples = st.one_of(
    st.sampled_from([1, 2, 3, 4, 7, 16]),
    st.tuples(st.integers(1, 300), st.integers(1, 300)),
)


# --------------------------------------------------------------------------------- grid/vocab


@pytest.mark.parametrize(
    ("sensor", "ds", "grid"),
    [
        ((128, 128, 2), 1, (128, 128, 2)),
        ((346, 260, 2), 4, (87, 65, 2)),  # ceil(346/4) = 87
        ((37, 11), 5, (8, 3, 2)),
        ((1, 1), 3, (1, 1, 2)),
        ((1280, 720, 2), (320, 180), (320, 180, 2)),
    ],
)
def test_grid_size_examples(sensor, ds, grid):
    assert F.grid_size(sensor, ds) == grid
    assert F.grid_size(sensor, ds, merge_polarity=True) == (*grid[:2], 1)
    assert F.vocab_size(sensor, ds) == 2 * grid[0] * grid[1]
    assert F.vocab_size(sensor, ds, merge_polarity=True) == grid[0] * grid[1]


@pytest.mark.parametrize("bad", [0, -2, 1.5, (0, 3), (3,), True])
def test_bad_downsample_raises(bad):
    with pytest.raises(ArgumentError, match="downsample"):
        F.grid_size((10, 10), bad)


# ------------------------------------------------------------------------------------ tokens


def expected_grid_coords(ev, sensor, ds):
    """Independent numpy formula for the downsampled coordinates."""
    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    if isinstance(ds, tuple):
        return x * ds[0] // sensor[0], y * ds[1] // sensor[1]
    return x // ds, y // ds


@HYP
@given(
    sensor=st.one_of(
        st.sampled_from(SENSORS), st.tuples(st.integers(1, 99), st.integers(1, 99))
    ),
    ds=downsamples,
    merge=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 400),
)
def test_tokenize_matches_formula_and_round_trips(sensor, ds, merge, seed, n):
    rng = np.random.default_rng(seed)
    ev = random_events(rng, n, *sensor)
    tokens, dt = F.tokenize(ev, sensor, downsample=ds, merge_polarity=merge)
    w2, h2, p2 = F.grid_size(sensor, ds, merge_polarity=merge)
    x2, y2 = expected_grid_coords(ev, sensor, ds)
    pol = ev["p"].astype(np.int64) if not merge else 0
    assert tokens.dtype == np.int32 and dt.dtype == np.float32
    np.testing.assert_array_equal(tokens, p2 * (x2 * h2 + y2) + pol)
    assert ((tokens >= 0) & (tokens < F.vocab_size(sensor, ds, merge_polarity=merge))).all()
    assert ((x2 < w2) & (y2 < h2)).all()
    x, y, p = F.detokenize(tokens, sensor, downsample=ds, merge_polarity=merge)
    assert x.dtype == np.int16 and y.dtype == np.int16 and p.dtype == np.bool_
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(p, ev["p"] if not merge else np.zeros(n, bool))
    # the grid form of detokenize gives the same
    xg, yg, pg = F.detokenize(tokens, (w2, h2), merge_polarity=merge)
    np.testing.assert_array_equal(xg, x)
    np.testing.assert_array_equal(yg, y)
    np.testing.assert_array_equal(pg, p)


@pytest.mark.parametrize("sensor", SENSORS)
@pytest.mark.parametrize("ds", [1, 2, 3])
def test_tokenize_is_a_bijection_of_the_full_grid(sensor, ds):
    """Every (x2, y2, p) cell of the grid gets a distinct token; together they are 0..vocab-1."""
    w2, h2, _ = F.grid_size(sensor, ds)
    xx, yy, pp = np.meshgrid(np.arange(w2), np.arange(h2), [False, True], indexing="ij")
    # pick the first sensor pixel of each cell
    ev = make_events(xx.ravel() * ds, yy.ravel() * ds, np.zeros(xx.size, np.int64), pp.ravel())
    tokens, _ = F.tokenize(ev, sensor, downsample=ds)
    assert np.array_equal(np.sort(tokens), np.arange(F.vocab_size(sensor, ds)))
    x, y, p = F.detokenize(tokens, sensor, downsample=ds)
    np.testing.assert_array_equal(x, xx.ravel())
    np.testing.assert_array_equal(y, yy.ravel())
    np.testing.assert_array_equal(p, pp.ravel())


def test_design_contract_example():
    # DESIGN.md §3: token = 2 * (x * H + y) + p with H the height
    ev = make_events([3], [5], [0], [True])
    tokens, _ = F.tokenize(ev, (346, 260, 2))
    assert int(tokens[0]) == 2 * (3 * 260 + 5) + 1


@pytest.mark.parametrize(("unit", "scale"), [("us", 1.0), ("ms", 1e-3), ("s", 1e-6)])
def test_dt_units(unit, scale):
    rng = np.random.default_rng(0)
    ev = random_events(rng, 500, 20, 20, t_max=10**9)
    _, dt = F.tokenize(ev, (20, 20), time_unit=unit)
    ref = np.concatenate([[0.0], np.diff(ev["t"]) * scale]).astype(np.float32)
    np.testing.assert_allclose(dt, ref, rtol=1e-6)
    assert dt[0] == 0.0 and (dt >= 0).all()


def test_tokenize_rejects_bad_input():
    ev = make_events([1, 2], [1, 1], [10, 5], [0, 1])
    with pytest.raises(EventFileError, match="timestamps decrease at event 1"):
        F.tokenize(ev, (4, 4))
    with pytest.raises(EventFileError, match=r"event 1 at \(x=9, y=1\) lies outside the 4x4"):
        F.tokenize(make_events([1, 9], [1, 1], [0, 1], [0, 1]), (4, 4))
    with pytest.raises(ArgumentError, match="time_unit"):
        F.tokenize(ev, (4, 4), time_unit="min")
    with pytest.raises(ArgumentError, match="outside"):
        F.detokenize(np.array([0, 32]), (4, 4))
    with pytest.raises(ArgumentError, match="fields x, y, t, p"):
        F.tokenize(np.zeros(3), (4, 4))


def test_tokenize_empty_and_foreign_dtype():
    tokens, dt = F.tokenize(np.empty(0, EVENT_DTYPE), (8, 8))
    assert tokens.shape == dt.shape == (0,)
    # tonic-style dtype with other integer widths and field order
    other = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i8"), ("y", "<i8"), ("p", "<i8")])
    other["x"], other["y"], other["t"], other["p"] = [1, 2, 3], [0, 1, 2], [0, 5, 9], [1, 0, 1]
    tokens, dt = F.tokenize(other, (4, 4), time_unit="us")
    np.testing.assert_array_equal(tokens, [2 * (1 * 4 + 0) + 1, 2 * (2 * 4 + 1), 2 * (3 * 4 + 2) + 1])
    np.testing.assert_array_equal(dt, [0, 5, 4])


def test_sort_events_is_stable():
    ev = make_events([0, 1, 2, 3], [0, 0, 0, 0], [5, 1, 5, 1], [0, 0, 0, 0])
    s = F.sort_events(ev)
    np.testing.assert_array_equal(s["x"], [1, 3, 0, 2])
    assert F.sort_events(s) is s


@HYP
@given(sensor=st.sampled_from(SENSORS), ds=downsamples, seed=st.integers(0, 2**32 - 1))
def test_downsample_events(sensor, ds, seed):
    rng = np.random.default_rng(seed)
    ev = random_events(rng, 300, *sensor)
    out, size2 = F.downsample_events(ev, (*sensor, 2), ds)
    x2, y2 = expected_grid_coords(ev, sensor, ds)
    np.testing.assert_array_equal(out["x"], x2)
    np.testing.assert_array_equal(out["y"], y2)
    np.testing.assert_array_equal(out["t"], ev["t"])
    np.testing.assert_array_equal(out["p"], ev["p"])
    assert size2 == (*F.grid_size(sensor, ds)[:2], 2)
    # tokenizing the downsampled events equals tokenizing with downsample
    t1, _ = F.tokenize(out, size2)
    t2, _ = F.tokenize(ev, sensor, downsample=ds)
    np.testing.assert_array_equal(t1, t2)


# ----------------------------------------------------------------------------------- slicing


@HYP
@given(n=st.integers(0, 3000), length=st.integers(1, 700), stride=st.integers(1, 900))
def test_slice_by_count_properties(n, length, stride):
    s = F.slice_by_count(n, length, stride)
    assert s.dtype == np.int64 and s.ndim == 2 and s.shape[1] == 2
    if n == 0:
        assert len(s) == 0
        return
    assert (s[:, 1] - s[:, 0] == min(n, length)).all()
    assert s[0, 0] == 0 and s[-1, 1] == n
    assert (np.diff(s[:, 0]) > 0).all()
    # regular stride except possibly the tail window
    regular = s[: len(s) - 1, 0] if len(s) > 1 else s[:1, 0]
    np.testing.assert_array_equal(regular, np.arange(len(regular)) * stride)
    if stride <= length:  # windows cover every event
        covered = np.zeros(n, bool)
        for a, b in s:
            covered[a:b] = True
        assert covered.all()


def test_slice_by_count_eventssm_recipe():
    s = F.slice_by_count(200_000, 65_536, 32_768)
    np.testing.assert_array_equal(s[:, 0], [0, 32768, 65536, 98304, 131072, 200_000 - 65_536])
    np.testing.assert_array_equal(F.slice_by_count(1000, 65_536, 32_768), [[0, 1000]])


def naive_slice_by_time(t, window, stride):
    rows = []
    start = int(t[0])
    while start <= int(t[-1]):
        idx = [i for i, v in enumerate(t) if start <= v < start + window]
        if idx:
            rows.append((idx[0], idx[-1] + 1))
        start += stride
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


@HYP
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 200),
    window=st.integers(1, 5000),
    stride=st.one_of(st.none(), st.integers(1, 5000)),
)
def test_slice_by_time_matches_naive(seed, n, window, stride):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 20_000, n)) + 10**12  # absolute, not rebased
    got = F.slice_by_time(t, window, stride)
    np.testing.assert_array_equal(got, naive_slice_by_time(t, window, stride or window))


def test_slice_by_time_rejects_unsorted():
    with pytest.raises(EventFileError, match="timestamps decrease"):
        F.slice_by_time(np.array([3, 2]), 10)
    assert F.slice_by_time(np.array([], np.int64), 10).shape == (0, 2)


@HYP
@given(n=st.integers(0, 10_000), length=st.integers(1, 5000), seed=st.integers(0, 2**32 - 1))
def test_random_crop(n, length, seed):
    a = F.random_crop(np.random.default_rng(seed), n, length)
    assert a == F.random_crop(np.random.default_rng(seed), n, length)
    start, stop = a
    assert 0 <= start <= stop <= n and stop - start == min(n, length)


def test_random_crop_varies_with_seed():
    starts = {F.random_crop(np.random.default_rng(s), 10_000, 100)[0] for s in range(20)}
    assert len(starts) > 10


# ----------------------------------------------------------------------------------- filters


def naive_refractory(ev, refractory):
    kept = []
    for i, e in enumerate(ev):
        clash = any(
            ev[j]["x"] == e["x"] and ev[j]["y"] == e["y"] and e["t"] - ev[j]["t"] < refractory
            for j in kept
        )
        if not clash:
            kept.append(i)
    return np.array(kept, dtype=np.int64)


def naive_denoise(ev, window):
    kept = []
    for k, e in enumerate(ev):
        for j in range(k):
            dx, dy = abs(int(ev[j]["x"]) - int(e["x"])), abs(int(ev[j]["y"]) - int(e["y"]))
            if max(dx, dy) == 1 and e["t"] - ev[j]["t"] <= window:
                kept.append(k)
                break
    return np.array(kept, dtype=np.int64)


filter_cases = dict(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 120),
    w=st.integers(1, 6),
    h=st.integers(1, 6),
    window=st.integers(0, 3000),
)


@settings(max_examples=30, deadline=None)
@given(**filter_cases)
def test_refractory_matches_naive(seed, n, w, h, window):
    ev = random_events(np.random.default_rng(seed), n, w, h, t_max=20_000)
    got = F.refractory_filter(ev, (w, h, 2), window)
    np.testing.assert_array_equal(got, ev[naive_refractory(ev, window)])


@settings(max_examples=30, deadline=None)
@given(**filter_cases)
def test_denoise_matches_naive(seed, n, w, h, window):
    ev = random_events(np.random.default_rng(seed), n, w, h, t_max=20_000)
    got = F.denoise_filter(ev, (w, h, 2), window)
    np.testing.assert_array_equal(got, ev[naive_denoise(ev, window)])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 200), rate=st.floats(1.0, 5e4))
def test_hot_pixel_filter_matches_naive(seed, n, rate):
    ev = random_events(np.random.default_rng(seed), n, 4, 3, t_max=100_000)
    got = F.hot_pixel_filter(ev, (4, 3), rate)
    if n == 0:
        assert len(got) == 0
        return
    duration_s = (int(ev["t"].max()) - int(ev["t"].min()) + 1) / 1e6
    counts = {}
    for e in ev:
        counts[(int(e["x"]), int(e["y"]))] = counts.get((int(e["x"]), int(e["y"])), 0) + 1
    keep = [i for i, e in enumerate(ev) if counts[(int(e["x"]), int(e["y"]))] <= rate * duration_s]
    np.testing.assert_array_equal(got, ev[keep])


def test_hot_pixel_filter_removes_a_stuck_pixel():
    rng = np.random.default_rng(0)
    ev = random_events(rng, 1000, 32, 32, t_max=10**6)  # ~1 Hz per pixel over 1 s
    ev["x"][::10], ev["y"][::10] = 5, 7  # 100 events at one pixel: 100 Hz
    got = F.hot_pixel_filter(ev, (32, 32), 20.0)
    assert not ((got["x"] == 5) & (got["y"] == 7)).any()
    assert len(got) >= 1000 - 100 - 5


def test_filter_edge_cases():
    ev = make_events([0, 0, 1, 5], [0, 0, 0, 5], [0, 10, 20, 30], [0, 1, 0, 0])
    np.testing.assert_array_equal(F.refractory_filter(ev, (6, 6), 0), ev)
    # second event at (0, 0) is 10 us after the first: inside a 11 us period, outside a 10 us one
    assert len(F.refractory_filter(ev, (6, 6), 11)) == 3
    assert len(F.refractory_filter(ev, (6, 6), 10)) == 4
    # only (1, 0) has a neighbour that fired before it ((0, 0) 10 us earlier)
    np.testing.assert_array_equal(F.denoise_filter(ev, (6, 6), 10), ev[2:3])
    assert len(F.denoise_filter(ev, (6, 6), 9)) == 0
    with pytest.raises(EventFileError, match="outside the 3x3"):
        F.denoise_filter(ev, (3, 3), 10)
    with pytest.raises(EventFileError, match="timestamps decrease"):
        F.refractory_filter(ev[::-1], (6, 6), 10)


# ---------------------------------------------------------------------- kernels vs .py_func


def test_functional_kernels_match_py_func():
    rng = np.random.default_rng(7)
    ev = random_events(rng, 300, 13, 9, t_max=50_000)
    for fn in (K.tokenize_kernel, K.tokenize_kernel.py_func):
        tok, dt = np.empty(300, np.int32), np.empty(300, np.float32)
        res = fn(ev, 13, 9, 1, 2, 1, 2, 5, 2, 1e-3, tok, dt)
        if fn is K.tokenize_kernel:
            ref = (res, tok, dt)
        else:
            assert tuple(res) == tuple(ref[0])
            np.testing.assert_array_equal(tok, ref[1])
            np.testing.assert_array_equal(dt, ref[2])
    for kernel, args in [
        (K.downsample_kernel, (3, 13, 2, 9)),
        (K.downsample_kernel, (1, 4, 1, 2)),  # shifts
        (K.downsample_kernel, (1, 1, 7, 7)),  # identity
        (K.refractory_kernel, (13, 9, 2000)),
        (K.denoise_kernel, (13, 9, 1500)),
    ]:
        out_c, out_p = np.zeros_like(ev), np.zeros_like(ev)
        rc = kernel(ev, *args, out_c)
        rp = kernel.py_func(ev, *args, out_p)
        assert rc == rp
        np.testing.assert_array_equal(out_c, out_p)


def test_tokenize_kernel_status_codes():
    ev = make_events([0, 1, 1], [0, 0, 0], [5, 6, 4], [0, 0, 0])
    tok, dt = np.empty(3, np.int32), np.empty(3, np.float32)
    for fn in (K.tokenize_kernel, K.tokenize_kernel.py_func):
        assert tuple(fn(ev, 2, 1, 1, 1, 1, 1, 1, 2, 1.0, tok, dt)) == (K.TOKENIZE_UNSORTED, 2)
        assert tuple(fn(ev, 1, 1, 1, 1, 1, 1, 1, 2, 1.0, tok, dt)) == (K.TOKENIZE_OUT_OF_RANGE, 1)


def test_large_sensor_token_fits():
    # 1280x720 full-resolution vocabulary is 1,843,200 < 2**31
    assert F.vocab_size((1280, 720)) == 1_843_200 == 2 * 1280 * 720
    assert math.prod(F.grid_size((1280, 720))) == 1_843_200


def test_package_never_imports_jax():
    code = (
        "import sys, eventssm.tokenizers, eventssm.tokenizers.batching;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr

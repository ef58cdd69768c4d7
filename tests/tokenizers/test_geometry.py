"""Flips and per-recording rescaling: FlipX/FlipY, TokenizerSettings.flip_x/flip_y and caches
that mix sensor sizes through target_size, all against numpy written out here."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from eventssm.events import ArgumentError, EventFileError, Recording, make_events
from eventssm.io import write_events
from eventssm.tokenizers import transforms as T
from eventssm.tokenizers.dataset import (
    TokenDataset,
    TokenizerSettings,
    build_cache,
    flip_events,
    tokenize_recording,
)


def _events(n, w, h, seed=0):
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(0, 10**6, n)),
                       rng.random(n) < 0.5)


@pytest.mark.parametrize("w,h", [(7, 5), (128, 128), (346, 260)])
def test_flips_against_numpy(w, h):
    ev = _events(2000, w, h, seed=w)
    fx = T.FlipX((w, h))(ev, np.random.default_rng(0))
    fy = T.FlipY((w, h, 2))(ev, np.random.default_rng(0))
    assert np.array_equal(fx["x"], w - 1 - ev["x"]) and np.array_equal(fx["y"], ev["y"])
    assert np.array_equal(fy["y"], h - 1 - ev["y"]) and np.array_equal(fy["x"], ev["x"])
    for out in (fx, fy):
        assert np.array_equal(out["t"], ev["t"]) and np.array_equal(out["p"], ev["p"])
    both = flip_events(ev, (w, h, 2), flip_x=True, flip_y=True)
    assert np.array_equal(both["x"], w - 1 - ev["x"]) and np.array_equal(both["y"], h - 1 - ev["y"])
    assert flip_events(ev, (w, h, 2)) is ev
    # in place, as the training loader uses transforms
    buf = ev.copy()
    assert T.FlipY((w, h)).apply_into(buf, np.random.default_rng(0), buf) == len(ev)
    assert np.array_equal(buf, fy)


def test_flip_probability_draws_like_fliplr():
    ev = _events(50, 9, 9)
    rng = np.random.default_rng(5)
    T.FlipX((9, 9))(ev, rng)  # p = 1: nothing drawn
    assert rng.random() == np.random.default_rng(5).random()
    flipped = [not np.array_equal(T.FlipY((9, 9), 0.5)(ev, np.random.default_rng(s)), ev) for s in range(40)]
    same = [not np.array_equal(T.FlipLR((9, 9), 0.5)(ev, np.random.default_rng(s)), ev) for s in range(40)]
    assert flipped == same and 5 < sum(flipped) < 35
    with pytest.raises(ArgumentError, match="p must be in"):
        T.FlipX((9, 9), 1.5)


def test_settings_flip_fields_and_old_caches():
    old = {"downsample": 1, "target_size": None, "merge_polarity": False, "time_unit": "ms",
           "slice_events": None, "overlap": 0, "sort_events": False}
    s = TokenizerSettings.from_dict(old)  # a cache written before the flip fields
    assert (s.flip_x, s.flip_y) == (False, False)
    f = TokenizerSettings(flip_y=True)
    assert not f.same_tokens(s) and TokenizerSettings.from_dict(json.loads(f.to_json())) == f


def test_tokenize_recording_flips_on_the_recordings_sensor():
    ev = _events(300, 12, 8)
    tokens, *_ = tokenize_recording(ev, (12, 8, 2), TokenizerSettings(flip_x=True, flip_y=True))
    x, y = 11 - ev["x"].astype(int), 7 - ev["y"].astype(int)
    assert np.array_equal(tokens, 2 * (x * 8 + y) + ev["p"])


def test_cache_mixes_sensors_rescaled_per_recording(tmp_path):
    """--target-size: each recording is rescaled from its own sensor, x' = x * W' // W."""
    sizes = [(20, 20), (10, 10), (64, 48)]
    files, evs = [], []
    for k, (w, h) in enumerate(sizes):
        ev = _events(400, w, h, seed=k)
        p = tmp_path / f"c{k % 2}" / f"r{k}.npz"
        p.parent.mkdir(exist_ok=True)
        write_events(p, Recording(ev, (w, h, 2), {}))
        files.append(p)
        evs.append(ev)
    settings = TokenizerSettings(target_size=(5, 4), flip_y=True)
    build_cache(tmp_path / "mixed.h5", files, ["c0", "c1", "c0"], settings=settings)
    ds = TokenDataset(tmp_path / "mixed.h5")
    assert ds.grid_size == (5, 4, 2) and len(ds) == 3
    with h5py.File(tmp_path / "mixed.h5") as f:
        assert f["sources/sensor_size"][:, :2].tolist() == [list(s) for s in sizes]
    for k, ((w, h), ev) in enumerate(zip(sizes, evs)):
        x2 = ev["x"].astype(int) * 5 // w
        y2 = (h - 1 - ev["y"].astype(int)) * 4 // h  # flipped on its own sensor, then rescaled
        assert np.array_equal(ds[k][0], 2 * (x2 * 4 + y2) + ev["p"])
    lazy = TokenDataset.from_files(files, ["c0", "c1", "c0"], settings=settings)  # tokens on access
    assert all(np.array_equal(lazy[k][0], ds[k][0]) for k in range(3))


def test_cache_without_target_size_still_refuses_mixed_sensors(tmp_path):
    for k, size in enumerate([(20, 20), (10, 10)]):
        write_events(tmp_path / f"r{k}.npz", Recording(_events(50, *size), (*size, 2), {}))
    with pytest.raises(EventFileError, match="sensor size 10x10"):
        build_cache(tmp_path / "c.h5", [tmp_path / "r0.npz", tmp_path / "r1.npz"], None)

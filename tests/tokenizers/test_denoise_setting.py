"""TokenizerSettings.denoise_us: the background-activity filter applied to every recording
before slicing, mirroring and rescaling, checked against events filtered by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eventssm.events import EventFileError, Recording, make_events
from eventssm.io import write_events
from eventssm.tokenizers.dataset import TokenDataset, TokenizerSettings, build_cache, tokenize_file, tokenize_recording


def _hand_events():
    """Five events on a 6x4 sensor; with a 100 µs window only #1 and #4 have a neighbour that
    fired at most 100 µs before them (#0 is first, #2 is alone, #3 is 150 µs after #2)."""
    x = np.array([1, 2, 5, 5, 1])
    y = np.array([1, 1, 3, 2, 0])
    t = np.array([0, 50, 300, 450, 500])
    p = np.array([1, 0, 1, 0, 1], bool)
    return make_events(x, y, t, p)


def test_denoise_keeps_events_with_a_recent_neighbour():
    ev = _hand_events()
    # #4 at (1,0) t=500: neighbours (2,1) fired at 50 (450 µs before) -> dropped at 100 µs
    tokens, dt, lengths, _ = tokenize_recording(ev, (6, 4, 2), TokenizerSettings(denoise_us=100, time_unit="us"))
    assert tokens.tolist() == [2 * (2 * 4 + 1) + 0]  # only #1 (x=2, y=1, OFF)
    assert lengths.tolist() == [1] and dt.tolist() == [0.0]
    tokens, *_ = tokenize_recording(ev, (6, 4, 2), TokenizerSettings(denoise_us=500, time_unit="us"))
    # 500 µs: #1 (after #0), #3 (150 µs after #2 at (5,3)) and #4 (450 µs after #1) pass
    assert tokens.tolist() == [2 * (2 * 4 + 1) + 0, 2 * (5 * 4 + 2) + 0, 2 * (1 * 4 + 0) + 1]


def test_denoise_comes_before_flips_and_slices():
    rng = np.random.default_rng(3)
    n = 600
    ev = make_events(rng.integers(0, 10, n), rng.integers(0, 8, n), np.sort(rng.integers(0, 60_000, n)),
                     rng.random(n) < 0.5)
    s = TokenizerSettings(denoise_us=300, flip_y=True, slice_events=50, time_unit="us")
    tokens, _, lengths, _ = tokenize_recording(ev, (10, 8, 2), s)
    # by hand: an event survives iff an 8-neighbour had any event at most 300 µs before it
    x, y, t = ev["x"].astype(int), ev["y"].astype(int), ev["t"].astype(int)
    keep = [i for i in range(n)
            if any(max(abs(x[j] - x[i]), abs(y[j] - y[i])) == 1 and t[i] - t[j] <= 300 for j in range(i))]
    kept = ev[keep]
    want = 2 * (kept["x"].astype(int) * 8 + (7 - kept["y"].astype(int))) + kept["p"]
    k = len(kept)  # slices [0, 50), [50, 100), ..., then [k - 50, k) covers the tail
    starts = [*range(0, k - 49, 50)] + ([k - 50] if k % 50 else [])
    assert 100 <= k < n / 2 and lengths.tolist() == [50] * len(starts)
    assert np.array_equal(tokens, np.concatenate([want[a:a + 50] for a in starts]))


def test_denoise_setting_round_trips_and_changes_tokens(tmp_path):
    old = TokenizerSettings.from_dict({"downsample": 1, "target_size": None, "merge_polarity": False,
                                       "time_unit": "ms", "slice_events": None, "overlap": 0,
                                       "sort_events": False, "flip_x": False, "flip_y": False})
    assert old.denoise_us is None  # a cache written before the field
    s = TokenizerSettings(denoise_us=10_000)
    assert not s.same_tokens(old) and TokenizerSettings.from_dict(json.loads(s.to_json())) == s
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="denoise_us"):
            TokenizerSettings(denoise_us=bad)
    write_events(tmp_path / "a.npz", Recording(_hand_events(), (6, 4, 2), {}))
    build_cache(tmp_path / "c.h5", [tmp_path / "a.npz"], ["x"], settings=TokenizerSettings(denoise_us=100))
    ds = TokenDataset(tmp_path / "c.h5")
    assert ds.settings.denoise_us == 100 and ds[0][0].tolist() == [2 * (2 * 4 + 1)]


def test_a_recording_with_only_isolated_events_is_an_error_naming_the_file(tmp_path):
    """Not an empty sample that the model would still give a class."""
    ev = make_events(np.array([0, 5]), np.array([0, 3]), np.array([0, 10]), np.array([True, False]))
    write_events(tmp_path / "noise.npz", Recording(ev, (6, 4, 2), {}))
    for s in (TokenizerSettings(denoise_us=1000), TokenizerSettings(denoise_us=1000, slice_events=1)):
        with pytest.raises(EventFileError, match=r"noise\.npz: all 2 events are isolated"):
            tokenize_file(tmp_path / "noise.npz", settings=s)
    assert tokenize_file(tmp_path / "noise.npz").lengths.tolist() == [2]  # without the filter

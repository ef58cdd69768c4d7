"""Learning that generalizes: `train` on one set of recordings of an order-only task, then
`evaluate` on recordings it never saw (a new seed), both through the commands a user runs.

The two classes hold the same kinds of events (every column of a 4x4 sensor, random rows and
polarities, the same gaps); only the order differs: a sweep left -> right or right -> left.
A model that ignores order (a bag of tokens) scores 0.5 on it.
"""

import json

import numpy as np
from click.testing import CliRunner

from eventssm.cli import main
from eventssm.events import Recording, make_events
from eventssm.io import write_events

SENSOR = (4, 4, 2)


def _sweep(rng: np.random.Generator, right_to_left: bool) -> Recording:
    """One recording: 6-10 events per column, columns in sweep order, exponential gaps (µs)."""
    cols = [3, 2, 1, 0] if right_to_left else [0, 1, 2, 3]
    x = np.concatenate([np.full(int(rng.integers(6, 11)), c) for c in cols])
    n = len(x)
    y = rng.integers(0, 4, n)
    p = rng.integers(0, 2, n)
    t = np.cumsum(rng.exponential(2000.0, n).astype(np.int64) + 1)
    return Recording(make_events(x, y, t, p), SENSOR, {})


def _write_set(root, n_per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, rtl in (("ltr", False), ("rtl", True)):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            write_events(root / name / f"{name}_{i:03d}.npz", _sweep(rng, rtl), compression=None)


def _invoke(*args: str) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_train_generalizes_to_held_out_recordings_of_an_order_task(tmp_path):
    _write_set(tmp_path / "train_raw", 24, seed=1)
    _write_set(tmp_path / "test_raw", 16, seed=2)
    for name in ("train", "test"):
        _invoke("preprocess", str(tmp_path / f"{name}_raw"), "-o", str(tmp_path / f"{name}.h5"),
                "--labels-from", "folder", "--workers", "1", "-q")
    # one stage of one S7 layer, whole samples (< 64 events: one padded length), no augmentation
    out = _invoke("train", str(tmp_path / "train.h5"), "-o", str(tmp_path / "run"), "--steps", "120",
                  "--batch-size", "16", "--crop-events", "64", "--lr", "1e-2", "--val-fraction", "0.25",
                  "--stages", "1", "--layers-per-stage", "1", "--scan-method", "sequential", "--dropout", "0",
                  "--augment", "none", "--cutmix", "0", "--label-smoothing", "0", "--seed", "0")
    assert "train 36 / val 12" in out
    res = json.loads(_invoke("evaluate", str(tmp_path / "run"), str(tmp_path / "test.h5"), "--json"))
    assert res["n"] == 32
    # measured 0.91, 0.94, 0.91 with seeds 0, 1, 2 (2026-12-06); a bag of tokens scores 0.5
    assert res["accuracy"] >= 0.85, res
    cal = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert cal["n"] == 12 and cal["nll_after"] <= cal["nll_before"] and cal["temperature"] > 0

"""Temperature scaling and the expected calibration error (numpy only, no model)."""

import json
import math

import numpy as np
import pytest

from eventssm.train.calibrate import (
    CALIBRATION_FILE,
    calibration_report,
    ece,
    fit_temperature,
    log_softmax,
    nll,
    write_calibration,
)


def _overconfident(seed=0, n=400, c=3, scale=8.0, flip=0.25):
    """Logits of a fixed task: the true class scores ``scale``, but a share ``flip`` of the
    samples put that score on a wrong class (a model that is 75 % right and says 'sure')."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    guess = np.where(rng.random(n) < flip, (y + rng.integers(1, c, n)) % c, y)
    z = rng.normal(0, 0.5, (n, c))
    z[np.arange(n), guess] += scale
    return z, y


def _nll_by_hand(z, y, t):
    total = 0.0
    for row, label in zip(z, y, strict=True):
        u = [v / t for v in row]
        total += math.log(sum(math.exp(v) for v in u)) - u[label]
    return total / len(y)


def test_nll_matches_a_hand_computation():
    z = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    y = np.array([0, 2])
    for t in (0.5, 1.0, 3.0):
        assert nll(z, y, t) == pytest.approx(_nll_by_hand(z, y, t), rel=1e-12)


def test_temperature_lowers_the_validation_nll_of_an_overconfident_model():
    z, y = _overconfident()
    t = fit_temperature(z, y)
    assert t > 1.5  # overconfident -> soften
    assert nll(z, y, t) < nll(z, y, 1.0) - 0.5
    # the minimum, checked against a dense independent grid over T
    grid = np.exp(np.linspace(-3, 3, 6001))
    best = min(_nll_by_hand(z[:60], y[:60], g) for g in grid[::20])
    assert nll(z[:60], y[:60], fit_temperature(z[:60], y[:60])) <= best + 1e-6
    assert nll(z, y, t) <= min(nll(z, y, g) for g in grid) + 1e-9
    # predictions never change
    assert np.array_equal(np.argmax(z / t, 1), np.argmax(z, 1))


def test_an_underconfident_model_is_sharpened_only_when_allowed():
    z, y = _overconfident(seed=1, scale=0.8, flip=0.0)
    assert not np.all(np.argmax(z, 1) == y)  # noise makes some errors: T is identifiable
    assert fit_temperature(z, y) == 1.0  # default: only soften
    t = fit_temperature(z, y, min_temperature=math.exp(-5))
    assert t < 1.0
    grid = np.exp(np.linspace(-3, 0, 3001))
    assert nll(z, y, t) <= min(nll(z, y, g) for g in grid) + 1e-9
    z2, y2 = _overconfident(seed=2, scale=0.8, flip=0.0)  # held-out draw of the same task
    assert nll(z2, y2, t) < nll(z2, y2, 1.0)


def test_temperature_edge_cases():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, np.int64)) == 1.0
    # every argmax right: the NLL falls towards T -> 0 without a minimum; T = 1 is kept
    z, y = _overconfident(seed=4, n=50, flip=0.0)
    assert np.all(np.argmax(z, 1) == y) and nll(z, y, 0.01) < nll(z, y, 1.0)
    assert fit_temperature(z, y) == 1.0
    # constant logits: every T gives log 3; T = 1 is kept
    assert fit_temperature(np.zeros((5, 3)), np.arange(5) % 3) == 1.0
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(np.zeros(3), np.array([0, 1, 2]))


def test_ece_against_a_hand_computed_example():
    # 15 bins of width 1/15, right-closed. Confidences and hits:
    #   0.95 yes, 0.95 no            -> bin 15 (14/15, 1]
    #   0.6 yes (= 9/15, the edge), 0.55 yes -> bin 9 (8/15, 9/15]
    #   0.5 no (argmax of a tie is class 0) -> bin 8 (7/15, 8/15]
    probs = np.array([[0.95, 0.05], [0.05, 0.95], [0.6, 0.4], [0.5, 0.5], [0.45, 0.55]])
    labels = np.array([0, 0, 0, 1, 1])
    bin15 = 2 / 5 * abs(0.5 - 0.95)
    bin9 = 2 / 5 * abs(1.0 - (0.6 + 0.55) / 2)
    bin8 = 1 / 5 * abs(0.0 - 0.5)
    assert ece(probs, labels) == pytest.approx(bin15 + bin9 + bin8, abs=1e-12)
    assert bin15 + bin9 + bin8 == pytest.approx(0.45)
    # a confidence on a bin edge (exactly 2/3 = 10/15) falls in the lower bin
    edge = np.array([[2 / 3, 1 / 3]])
    assert ece(edge, np.array([0])) == pytest.approx(1 / 3)
    # perfectly calibrated and certain: 0
    assert ece(np.eye(3), np.arange(3)) == 0.0
    assert ece(np.zeros((0, 2)), np.zeros(0)) == 0.0


def test_report_and_file(tmp_path):
    z, y = _overconfident(seed=3, n=200)
    rep = calibration_report(z, y)
    assert set(rep) == {"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "n", "ece_bins"}
    assert rep["n"] == 200 and rep["ece_bins"] == 15
    assert rep["nll_after"] < rep["nll_before"] and rep["ece_after"] < rep["ece_before"]
    assert rep["ece_before"] == pytest.approx(ece(np.exp(log_softmax(z)), y))
    path = write_calibration(tmp_path, rep)
    assert path == tmp_path / CALIBRATION_FILE
    assert json.loads(path.read_text()) == pytest.approx(rep)
    assert [p.name for p in tmp_path.iterdir()] == [CALIBRATION_FILE]  # no temporary left

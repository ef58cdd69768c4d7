"""Simulator: threshold crossings checked against hand-computed levels and times."""

import math

import numpy as np
import pytest

from eventssm.events import validate_events
from eventssm.sim import CLASSES, CameraParams, make_dataset, make_sample, simulate_frames
from eventssm.sim.camera import _crossings


def test_single_pixel_ramp_matches_hand_computed_crossings():
    # log intensity goes from log(0.1+eps) to log(0.9+eps) over 1000 us, C = 0.25
    eps = 1e-2
    frames = np.array([[[0.1]], [[0.9]]])
    ev = simulate_frames(frames, np.array([0, 1000]), params=CameraParams(contrast=0.25, eps=eps)).events
    a, b = math.log(0.1 + eps), math.log(0.9 + eps)
    n = int((b - a) // 0.25)
    assert len(ev) == n
    expected_t = [int((0.25 * (j + 1)) / (b - a) * 1000) for j in range(n)]
    assert ev["t"].tolist() == expected_t
    assert ev["p"].all() and (ev["x"] == 0).all() and (ev["y"] == 0).all()


def test_down_then_up_gives_off_then_on_and_reference_is_kept():
    eps, c = 1e-2, 0.3
    frames = np.array([[[0.8]], [[0.2]], [[0.9]]])
    ev = simulate_frames(frames, np.array([0, 100, 200]), params=CameraParams(contrast=c, eps=eps)).events
    la, lb, lc = (math.log(v + eps) for v in (0.8, 0.2, 0.9))
    n_off = int((la - lb) // c)
    ref = la - n_off * c  # the reference stays at the last crossed level
    n_on = int((lc - ref) // c)
    assert ev["p"].tolist() == [False] * n_off + [True] * n_on
    assert (ev["t"][:n_off] <= 100).all() and (ev["t"][n_off:] > 100).all()


def test_refractory_period_spaces_events_of_a_pixel():
    frames = np.array([[[0.05]], [[1.0]]])
    ev = simulate_frames(frames, np.array([0, 1000]), params=CameraParams(contrast=0.1, refractory_us=300)).events
    assert np.all(np.diff(ev["t"]) >= 300)


def test_kernel_equals_its_python_reference():
    rng = np.random.default_rng(3)
    a = np.log(rng.uniform(0.01, 1, (9, 7)))
    b = np.log(rng.uniform(0.01, 1, (9, 7)))
    outs = []
    for fn in (_crossings, _crossings.py_func):
        ref = a.copy()
        last = np.full(a.shape, -(10**9), np.int64)
        cols = (np.empty(4096, np.int16), np.empty(4096, np.int16), np.empty(4096, np.int64), np.empty(4096, bool))
        n = fn(a, b, ref, 10, 510, 0.1, 20, last, *cols)
        outs.append((n, ref, last, [c[:n].copy() for c in cols]))
    (n1, r1, l1, c1), (n2, r2, l2, c2) = outs
    assert n1 == n2 > 0
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(l1, l2)
    for u, v in zip(c1, c2):
        np.testing.assert_array_equal(u, v)


def test_kernel_reports_full_buffer():
    a = np.zeros((4, 4))
    b = np.full((4, 4), 3.0)
    cols = (np.empty(3, np.int16), np.empty(3, np.int16), np.empty(3, np.int64), np.empty(3, bool))
    n = _crossings(a, b, a.copy(), 0, 10, 0.1, 0, np.zeros((4, 4), np.int64), *cols)
    assert n == -1


@pytest.mark.parametrize("label", CLASSES)
def test_samples_are_valid_sorted_and_deterministic(label):
    r1 = make_sample(label, np.random.default_rng(7), size=(32, 24), n_frames=12)
    r2 = make_sample(label, np.random.default_rng(7), size=(32, 24), n_frames=12)
    r3 = make_sample(label, np.random.default_rng(8), size=(32, 24), n_frames=12)
    assert r1.sensor_size == (32, 24, 2)
    validate_events(r1.events, r1.sensor_size)
    assert np.all(np.diff(r1.events["t"]) >= 0)
    np.testing.assert_array_equal(r1.events, r2.events)
    assert len(r1.events) != len(r3.events) or not np.array_equal(r1.events, r3.events)
    assert r1.meta["label"] == label


def test_translation_direction_is_visible_in_event_order():
    """'right' moves the ON centroid to larger x over time; 'left' to smaller x."""
    for label, sign in (("right", 1), ("left", -1)):
        ev = make_sample(label, np.random.default_rng(0), params=CameraParams(contrast=0.15)).events
        on = ev[ev["p"]]
        half = len(on) // 2
        assert sign * (on["x"][half:].mean() - on["x"][:half].mean()) > 5


def test_dataset_labels_in_class_order():
    ds = make_dataset(1, np.random.default_rng(0), size=(16, 16), n_frames=6)
    assert [label for _, label in ds] == list(range(len(CLASSES)))


def test_noise_requires_rng_and_bad_frames_raise():
    frames = np.zeros((2, 2, 2))
    with pytest.raises(ValueError):
        simulate_frames(frames, np.array([0, 10]), params=CameraParams(noise_hz=1.0))
    with pytest.raises(ValueError):
        simulate_frames(frames, np.array([10, 0]))

"""Event pooling against a plain numpy loop reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventssm.models.pooling import (
    POOL_MODES,
    TIME_WEIGHT_EPS,
    event_pool,
    lengths_to_mask,
    pool_window_last,
    pooled_length,
)


def pool_reference(u, dt, mask, stride, mode, eps=TIME_WEIGHT_EPS):
    """Loop over rows and windows in float64 (independent of the vectorised code)."""
    b_sz, length, width = u.shape
    n_win = -(-length // stride)
    out_u = np.zeros((b_sz, n_win, width))
    out_dt = np.zeros((b_sz, n_win))
    out_m = np.zeros((b_sz, n_win), bool)
    for b in range(b_sz):
        for w in range(n_win):
            idx = [k for k in range(w * stride, min((w + 1) * stride, length)) if mask[b, k]]
            if not idx:
                continue
            out_m[b, w] = True
            out_dt[b, w] = sum(float(dt[b, k]) for k in idx)
            if mode == "last":
                out_u[b, w] = u[b, idx[-1]]
            elif mode == "mean":
                out_u[b, w] = np.mean([u[b, k] for k in idx], axis=0)
            else:
                wts = np.array([float(dt[b, k]) + eps for k in idx])
                out_u[b, w] = (wts[:, None] * np.array([u[b, k] for k in idx])).sum(0) / wts.sum()
    return out_u, out_dt, out_m


_pool_jit = jax.jit(event_pool, static_argnames=("stride", "mode"))


@pytest.mark.parametrize("mode", POOL_MODES)
@pytest.mark.parametrize("stride", [1, 4, 5])
def test_event_pool_matches_reference(stride, mode):
    # L = 23 is not a multiple of 4 or 5: the internal padding is exercised.
    rng = np.random.default_rng(1000 * stride + POOL_MODES.index(mode))
    b_sz, length = 3, 23
    for case in range(4):
        u = rng.normal(size=(b_sz, length, 3)).astype(np.float32)
        dt = rng.exponential(2.0, size=(b_sz, length)).astype(np.float32)
        dt[rng.random((b_sz, length)) < 0.2] = 0.0
        if case % 2 == 0:  # prefix masks, lengths 0 … L
            mask = np.arange(length)[None] < rng.integers(0, length + 1, size=(b_sz, 1))
        else:  # holes anywhere
            mask = rng.random((b_sz, length)) < 0.6
        got_u, got_dt, got_m = _pool_jit(u, dt, mask, stride=stride, mode=mode)
        ref_u, ref_dt, ref_m = pool_reference(u, dt, mask, stride, mode)
        assert got_u.shape == (b_sz, pooled_length(length, stride), 3)
        np.testing.assert_array_equal(np.asarray(got_m), ref_m)
        np.testing.assert_allclose(np.asarray(got_dt), ref_dt, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(got_u), ref_u, rtol=1e-4, atol=1e-5)


def test_trailing_partial_window_emits_at_last_valid_event():
    u = jnp.arange(10, dtype=jnp.float32).reshape(1, 10, 1)
    dt = jnp.ones((1, 10))
    mask = lengths_to_mask(jnp.array([7]), 10)
    pu, pdt, pm = event_pool(u, dt, mask, stride=4, mode="last")
    # windows [0..3], [4..7] -> valid 4,5,6 -> emits u[6]; [8..9] padded
    np.testing.assert_array_equal(np.asarray(pu)[0, :, 0], [3.0, 6.0, 0.0])
    np.testing.assert_array_equal(np.asarray(pdt)[0], [4.0, 3.0, 0.0])
    np.testing.assert_array_equal(np.asarray(pm)[0], [True, True, False])
    np.testing.assert_array_equal(np.asarray(pool_window_last(u, mask, 4))[0, :, 0], [3, 6, 0])


def test_all_zero_dt_window_is_finite_and_gradients_ignore_padding():
    u = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 2)), jnp.float32)
    dt = jnp.zeros((1, 6))
    mask = lengths_to_mask(jnp.array([3]), 6)

    def loss(u):
        pu, _, _ = event_pool(u, dt, mask, stride=2, mode="time_weighted")
        return jnp.sum(pu**2)

    pu, _, pm = event_pool(u, dt, mask, stride=2, mode="time_weighted")
    # dt = 0 everywhere: the eps weights make it a plain mean of the valid events.
    np.testing.assert_allclose(np.asarray(pu)[0, 0], np.asarray(u)[0, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(pu)[0, 1], np.asarray(u)[0, 2], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(pm)[0], [True, True, False])
    g = np.asarray(jax.jit(jax.grad(loss))(u))
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[0, 3:], 0.0)


def test_bad_arguments_raise():
    u = jnp.zeros((1, 4, 2))
    dt = jnp.zeros((1, 4))
    with pytest.raises(ValueError, match="stride"):
        event_pool(u, dt, stride=0)
    with pytest.raises(ValueError, match="mode"):
        event_pool(u, dt, stride=2, mode="max")


def test_lengths_to_mask_and_pooled_length():
    np.testing.assert_array_equal(
        np.asarray(lengths_to_mask(jnp.array([0, 2, 4]), 4)),
        [[False] * 4, [True, True, False, False], [True] * 4],
    )
    assert [pooled_length(n, 4) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]

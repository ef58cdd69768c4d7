"""linear_recurrence: every method against a float64 numpy loop, outputs and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventssm.models.scan import ScanMethod, linear_recurrence, linear_recurrence_numpy

METHODS = ["sequential", "associative", "chunked"]
RTOL = 1e-5


def rel_err(x, ref) -> float:
    x = np.asarray(x, np.complex128)
    ref = np.asarray(ref, np.complex128)
    return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-30))


def make_inputs(rng, length, feat, complex_):
    mag = rng.uniform(0.3, 0.99, (length, *feat))
    b = rng.normal(size=(length, *feat))
    h0 = rng.normal(size=feat)
    if complex_:
        a = mag * np.exp(1j * rng.uniform(-np.pi, np.pi, (length, *feat)))
        b = b + 1j * rng.normal(size=(length, *feat))
        h0 = h0 + 1j * rng.normal(size=feat)
        dt = np.complex64
    else:
        a = mag * rng.choice([-1.0, 1.0], size=(length, *feat))
        dt = np.float32
    return a.astype(dt), b.astype(dt), h0.astype(dt)


def numpy_grads(a, b, h0, c):
    """Adjoint of h_k = a_k h_{k-1} + b_k for the loss Re Σ_k Σ c_k ⊙ h_k (float64 loop).

    With λ_k = c_k + a_{k+1} λ_{k+1} (λ_{L} = 0): dL/db_k = λ_k, dL/da_k = λ_k h_{k-1},
    dL/dh0 = a_0 λ_0. For complex inputs these are the holomorphic derivatives, which is what
    jax.grad returns for a real loss of a holomorphic function (∂/∂x − i ∂/∂y).
    """
    a = np.asarray(a, np.complex128)
    b = np.asarray(b, np.complex128)
    h0 = np.asarray(h0, np.complex128)
    h, _ = linear_recurrence_numpy(a, b, h0)
    prev = np.concatenate([h0[None], h[:-1]], axis=0)
    lam = np.zeros_like(b)
    acc = np.zeros(b.shape[1:], np.complex128)
    for k in range(b.shape[0] - 1, -1, -1):
        acc = c[k] + (a[k + 1] * acc if k + 1 < b.shape[0] else 0.0)
        lam[k] = acc
    return lam * prev, lam, a[0] * lam[0]


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("length", [1, 7, 129])
def test_outputs_match_numpy(method, complex_, length):
    rng = np.random.default_rng(length)
    a, b, h0 = make_inputs(rng, length, (3, 5), complex_)
    ref, ref_last = linear_recurrence_numpy(a.astype(np.complex128), b, h0)
    h, h_last = linear_recurrence(a, b, h0, method=method, chunk_size=16)
    assert h.shape == b.shape and h.dtype == b.dtype
    assert rel_err(h, ref) < RTOL
    assert rel_err(h_last, ref_last) < RTOL
    # without h0
    ref0, _ = linear_recurrence_numpy(a, b)
    h_nozero, _ = linear_recurrence(a, b, method=method, chunk_size=16)
    assert rel_err(h_nozero, ref0) < RTOL


@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("method", METHODS)
def test_gradients_match_numpy_adjoint(method, complex_):
    rng = np.random.default_rng(3)
    length = 37
    a, b, h0 = make_inputs(rng, length, (4,), complex_)
    c = rng.normal(size=b.shape) + (1j * rng.normal(size=b.shape) if complex_ else 0.0)
    cj = jnp.asarray(c.astype(b.dtype))

    def loss(a_, b_, h0_):
        h, _ = linear_recurrence(a_, b_, h0_, method=method, chunk_size=8)
        return jnp.sum(jnp.real(cj * h))

    ga, gb, gh0 = jax.grad(loss, argnums=(0, 1, 2))(a, b, h0)
    ra, rb, rh0 = numpy_grads(a, b, h0, c)
    assert rel_err(ga, ra) < RTOL
    assert rel_err(gb, rb) < RTOL
    assert rel_err(gh0, rh0) < RTOL


def test_complex_gradient_convention_by_finite_difference():
    """The numpy adjoint's convention (∂L/∂x − i∂L/∂y) checked independently in float64."""
    rng = np.random.default_rng(5)
    a, b, h0 = make_inputs(rng, 6, (2,), True)
    a, b, h0 = (x.astype(np.complex128) for x in (a, b, h0))
    c = rng.normal(size=b.shape) + 1j * rng.normal(size=b.shape)

    def loss_np(b_):
        return float(np.sum(np.real(c * linear_recurrence_numpy(a, b_, h0)[0])))

    _, gb, _ = numpy_grads(a, b, h0, c)
    eps = 1e-6
    e = np.zeros_like(b)
    e[2, 1] = 1.0
    d_re = (loss_np(b + eps * e) - loss_np(b - eps * e)) / (2 * eps)
    d_im = (loss_np(b + 1j * eps * e) - loss_np(b - 1j * eps * e)) / (2 * eps)
    assert abs(gb[2, 1] - (d_re - 1j * d_im)) < 1e-6


@settings(max_examples=12, deadline=None)
@given(
    length=st.sampled_from([1, 5, 33, 90]),
    chunk=st.sampled_from([1, 4, 16, 40]),
    seed=st.integers(0, 2**31 - 1),
)
def test_chunked_any_length_and_chunk(length, chunk, seed):
    rng = np.random.default_rng(seed)
    a, b, h0 = make_inputs(rng, length, (2,), True)
    ref, ref_last = linear_recurrence_numpy(a, b, h0)
    h, h_last = linear_recurrence(a, b, h0, method=ScanMethod.CHUNKED, chunk_size=chunk)
    assert rel_err(h, ref) < RTOL
    assert rel_err(h_last, ref_last) < RTOL


@pytest.mark.parametrize("method", METHODS)
def test_broadcast_a_jit_vmap(method):
    rng = np.random.default_rng(11)
    a_t = rng.uniform(0.5, 0.95, (50, 1)).astype(np.float32)  # broadcasts over features
    b = rng.normal(size=(6, 50, 3)).astype(np.float32)  # batch of 6 sequences
    h0 = rng.normal(size=(6, 3)).astype(np.float32)
    f = jax.jit(
        jax.vmap(lambda b_, h_: linear_recurrence(a_t, b_, h_, method=method, chunk_size=7))
    )
    h, h_last = f(b, h0)
    for i in range(6):
        ref, ref_last = linear_recurrence_numpy(a_t, b[i], h0[i])
        assert rel_err(h[i], ref) < RTOL
        assert rel_err(h_last[i], ref_last) < RTOL


def test_empty_sequence_returns_h0():
    h0 = jnp.arange(3.0)
    for m in METHODS:
        h, h_last = linear_recurrence(jnp.ones((0, 3)), jnp.ones((0, 3)), h0, method=m)
        assert h.shape == (0, 3)
        np.testing.assert_array_equal(h_last, h0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        linear_recurrence(jnp.ones(3), jnp.ones(3), method="fft")
    with pytest.raises(ValueError, match="broadcast"):
        linear_recurrence(jnp.ones((4, 2)), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="h0"):
        linear_recurrence(jnp.ones((4, 3)), jnp.ones((4, 3)), jnp.ones(2))
    with pytest.raises(ValueError, match="chunk_size"):
        linear_recurrence(jnp.ones((4, 3)), jnp.ones((4, 3)), method="chunked", chunk_size=0)

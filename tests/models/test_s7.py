"""S7SSM: equations with explicitly formed B_k, C_k (float64 loop), stability, contracts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.models.s7 import S7SSM, s7_param_count

H, N, R = 5, 12, 3
ZERO_INIT = ("U_w", "U_B", "W_C", "W_D")


def make(seed=0, conj=True, scan="sequential", **kw) -> S7SSM:
    """An S7 layer whose zero-initialised low-rank factors are randomised (all paths active)."""
    m = S7SSM(H, N, rank=R, conj_sym=conj, scan_method=scan, dt_min=0.05, dt_max=0.5,
              rngs=nnx.Rngs(seed), **kw)
    rng = np.random.default_rng(seed + 100)
    for name in ZERO_INIT:
        v = getattr(m, name)
        v[...] = jnp.asarray(0.3 * rng.normal(size=v[...].shape), jnp.float32)
    return m


def jitted(m):
    graphdef, state = nnx.split(m)
    call = jax.jit(lambda u, dt, x0=None: nnx.merge(graphdef, state)(u, dt, x0))
    step = jax.jit(lambda x, u_k, dt_k: nnx.merge(graphdef, state).step(x, u_k, dt_k))
    return call, step


def inputs(seed=0, bsz=3, length=40):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(bsz, length, H)).astype(np.float32)
    dt = rng.exponential(1.0, size=(bsz, length)).astype(np.float32)
    dt[:, 0] = 0.0
    return u, dt


def cplx(p):
    return p[..., 0] + 1j * p[..., 1]


def s7_numpy(m: S7SSM, u: np.ndarray, dt: np.ndarray):
    """float64 loop that FORMS B_k (P×H) and C_k (H×P) explicitly for every event."""
    p = {k: np.asarray(v[...], np.float64) for k, v in nnx.state(m, nnx.Param).items()}
    B0, C0, U_B, U_C, W_C = cplx(p["B"]), cplx(p["C"]), cplx(p["U_B"]), cplx(p["U_C"]), cplx(p["W_C"])
    bsz, length, _ = u.shape
    x = np.zeros((bsz, m.state_size), np.complex128)
    ys = np.zeros(u.shape)
    for i in range(bsz):
        xi = x[i]
        for k in range(length):
            uk = u[i, k].astype(np.float64)
            z = p["V"] @ uk
            w = p["Lambda_w"] + p["U_w"] @ z
            lam = -1.0 / (m.a * w**2 + m.b) + 1j * p["Lambda_im"]
            delta = np.log1p(np.exp(p["U_step"] @ z + p["b_step"]))
            lam_bar = np.exp(lam * delta * dt[i, k])
            B_k = B0 + U_B @ np.diag(z) @ p["W_B"].T
            C_k = C0 + W_C @ np.diag(z) @ U_C.T
            D_k = p["D"] + p["W_D"] @ z
            xi = lam_bar * xi + ((np.exp(lam * delta) - 1) / lam) * (B_k @ uk)
            ys[i, k] = (2 if m.conj_sym else 1) * np.real(C_k @ xi) + D_k * uk
        x[i] = xi
    return ys, x


def rel(x, ref):
    x = np.asarray(x, np.complex128)
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


@pytest.mark.parametrize("conj", [True, False])
def test_matches_explicit_numpy_loop_and_step(conj):
    m = make(conj=conj)
    u, dt = inputs()
    call, step = jitted(m)
    y, x_last = call(u, dt)
    assert y.shape == u.shape and y.dtype == jnp.float32
    assert x_last.shape == (3, m.state_size) and x_last.dtype == jnp.complex64
    ref_y, ref_x = s7_numpy(m, u, dt)
    assert rel(y, ref_y) < 1e-5
    assert rel(x_last, ref_x) < 1e-5
    x = m.zero_state(3)
    ys = []
    for k in range(u.shape[1]):
        x, y_k = step(x, u[:, k], dt[:, k])
        ys.append(y_k)
    assert rel(jnp.stack(ys, 1), ref_y) < 1e-5
    assert rel(x, ref_x) < 1e-5


def test_right_padding_and_x0_continuation():
    m = make(seed=1)
    call, _ = jitted(m)
    u, dt = inputs(seed=2, length=30)
    y, x_last = call(u, dt)
    u_pad = np.concatenate([u, np.zeros((3, 13, H), np.float32)], axis=1)
    dt_pad = np.concatenate([dt, np.zeros((3, 13), np.float32)], axis=1)
    y_pad, x_last_pad = call(u_pad, dt_pad)
    np.testing.assert_allclose(y_pad[:, :30], y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x_last_pad, x_last, rtol=1e-5, atol=1e-6)
    y1, x1 = call(u[:, :12], dt[:, :12])
    y2, x2 = call(u[:, 12:], dt[:, 12:], x1)
    np.testing.assert_allclose(np.concatenate([y1, y2], 1), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x2, x_last, rtol=1e-5, atol=1e-5)


def test_decay_bounded_for_huge_inputs_and_blown_up_parameters():
    m = make(seed=3)
    u, dt = inputs(seed=4, length=25)
    # moderate inputs, dt > 0: strictly inside the unit circle
    lam_bar, _ = m.recurrence_terms(u[:, 1:], dt[:, 1:] + 0.1)
    assert np.all(np.abs(np.asarray(lam_bar, np.complex128)) < 1.0)

    graphdef, state = nnx.split(m)

    @jax.jit
    def probe(state, u):
        mod = nnx.merge(graphdef, state)
        lam, step = mod.continuous_params(mod.selection(u))
        lam_bar, bu = mod.recurrence_terms(u, dt)
        return lam, step, lam_bar, bu

    rng = np.random.default_rng(5)
    for scale in [1.0, 1e3, -1e3, 1e2]:  # random parameters, up to 1000× their usual size
        state = jax.tree_util.tree_map(
            lambda x, s=scale: jnp.asarray(s * rng.normal(size=x.shape), jnp.float32), state
        )
        for u_scale in [1.0, 1e6, -1e6]:
            lam, step, lam_bar, bu = probe(state, u * u_scale)
            assert np.all(np.real(lam) < 0)  # Re λ_k = −1/(a w² + b) < 0, any w
            assert np.all(np.real(lam) >= -1.0 / m.b)
            assert np.all(step >= 0)
            assert np.all(np.isfinite(lam_bar)) and np.all(np.isfinite(bu))
            # |exp(iθ)| may round to 1 + 1 ulp in float32; the real exponent itself is ≤ 0
            assert np.all(np.abs(lam_bar) <= 1.0 + 2.5e-7)
            assert np.all(np.real(lam * step) * dt[..., None] <= 0)


def test_scan_methods_agree_and_vmap():
    u, dt = inputs(seed=6, length=21)
    outs = []
    for method in ["sequential", "associative", "chunked"]:
        outs.append(jitted(make(seed=7, scan=method))[0](u, dt))
    for y, x in outs[1:]:
        np.testing.assert_allclose(y, outs[0][0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(x, outs[0][1], rtol=1e-5, atol=1e-5)
    m = make(seed=7)
    graphdef, state = nnx.split(m)
    apply = jax.jit(jax.vmap(lambda u, dt: nnx.merge(graphdef, state)(u, dt)[0]))
    y3 = apply(np.stack([u, -u, 2 * u]), np.stack([dt, dt, dt]))
    for i, uu in enumerate([u, -u, 2 * u]):
        np.testing.assert_allclose(y3[i], s7_numpy(m, uu, dt)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("conj,rank", [(True, 4), (False, 2)])
def test_parameter_names_and_count(conj, rank):
    m = nnx.eval_shape(lambda: S7SSM(7, 12, rank=rank, conj_sym=conj, rngs=nnx.Rngs(0)))
    p, h, r = (6 if conj else 12), 7, rank
    shapes = {k: v.get_value().shape for k, v in nnx.state(m, nnx.Param).items()}
    assert shapes == {
        "Lambda_w": (p,), "Lambda_im": (p,), "V": (r, h), "U_w": (p, r), "U_step": (p, r),
        "b_step": (p,), "B": (p, h, 2), "U_B": (p, r, 2), "W_B": (h, r), "C": (h, p, 2),
        "U_C": (p, r, 2), "W_C": (h, r, 2), "D": (h,), "W_D": (h, r),
    }
    total = sum(int(np.prod(s)) for s in shapes.values())
    assert total == s7_param_count(h, p, r) == 4 * p * h + 3 * p + h + r * (5 * h + 6 * p)


def test_init_reproduces_hippo_real_part_and_step_range():
    m = S7SSM(H, N, rank=R, dt_min=1e-3, dt_max=1e-1, rngs=nnx.Rngs(0))
    lam, step = m.continuous_params(jnp.zeros((R,)))
    np.testing.assert_allclose(np.real(lam), -0.5, rtol=1e-6)
    assert np.all(step >= 1e-3 * 0.999) and np.all(step <= 1e-1 * 1.001)
    # at init only δ depends on the input: zero-initialised corrections
    for name in ZERO_INIT:
        assert not np.any(np.asarray(getattr(m, name)[...]))


def test_long_sequence_finite_values_and_gradients():
    length = 131_072
    m = S7SSM(2, 4, rank=2, scan_method="chunked", rngs=nnx.Rngs(8))
    rng = np.random.default_rng(9)
    for name in ZERO_INIT:  # zero factors would give their partners a zero gradient
        v = getattr(m, name)
        v[...] = jnp.asarray(0.3 * rng.normal(size=v[...].shape), jnp.float32)
    u = rng.normal(size=(1, length, 2)).astype(np.float32)
    dt = rng.exponential(0.5, size=(1, length)).astype(np.float32)
    graphdef, state = nnx.split(m)

    @jax.jit
    def loss(state):
        y, x = nnx.merge(graphdef, state)(u, dt)
        return jnp.mean(y**2) + jnp.mean(jnp.abs(x) ** 2)

    val, grads = jax.value_and_grad(loss)(state)
    assert np.isfinite(float(val))
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert all(float(jnp.abs(g).max()) > 0 for g in leaves)  # every parameter is used


def test_bad_arguments():
    with pytest.raises(ValueError, match="a > 0"):
        S7SSM(H, N, a=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="rank"):
        S7SSM(H, N, rank=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="even"):
        S7SSM(H, 7, rngs=nnx.Rngs(0))
    m = S7SSM(H, N, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dt must"):
        m(jnp.zeros((2, 5, H)), jnp.zeros((5,)))

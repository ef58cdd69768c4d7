"""S5SSM: equations against a float64 numpy loop, interface contracts, init, stability."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.models.discretization import async_, dirac, discretize, phi1, zoh
from eventssm.models.init import block_hippo_n, hippo_legs, hippo_n
from eventssm.models.s5 import S5SSM

H, N = 5, 12


def params_np(m: S5SSM) -> dict[str, np.ndarray]:
    return {k: np.asarray(v[...], np.float64) for k, v in nnx.state(m, nnx.Param).items()}


def s5_numpy(m: S5SSM, u: np.ndarray, dt: np.ndarray, x0=None):
    """Independent float64 loop of the S5 equations, straight from the parameters."""
    p = params_np(m)
    lam = np.minimum(p["Lambda_re"], -1e-4) + 1j * p["Lambda_im"]
    B = p["B"][..., 0] + 1j * p["B"][..., 1]
    C = p["C"][..., 0] + 1j * p["C"][..., 1]
    delta = m.step_rescale * np.exp(p["log_step"])
    bsz, length, _ = u.shape
    x = np.zeros((bsz, lam.size), np.complex128) if x0 is None else np.asarray(x0, np.complex128)
    ys = np.zeros(u.shape)
    for k in range(length):
        d = dt[:, k, None]
        lam_bar = np.exp(lam * delta * d)
        if m.discretization == "async":
            gamma = (np.exp(lam * delta) - 1) / lam
        elif m.discretization == "zoh":
            gamma = (np.exp(lam * delta * d) - 1) / lam
        else:
            gamma = np.ones_like(lam_bar)
        x = lam_bar * x + gamma * (u[:, k] @ B.T)
        ys[:, k] = (2 if m.conj_sym else 1) * np.real(x @ C.T) + p["D"] * u[:, k]
    return ys, x


def jitted(m):
    """jit-compiled ``__call__`` and ``step`` of a module (eager op-by-op dispatch is slow)."""
    graphdef, state = nnx.split(m)
    call = jax.jit(lambda u, dt, x0=None: nnx.merge(graphdef, state)(u, dt, x0))
    step = jax.jit(lambda x, u_k, dt_k: nnx.merge(graphdef, state).step(x, u_k, dt_k))
    return call, step


def rel(x, ref):
    x = np.asarray(x, np.complex128)
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


def inputs(seed=0, bsz=3, length=40, h=H):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(bsz, length, h)).astype(np.float32)
    dt = rng.exponential(1.0, size=(bsz, length)).astype(np.float32)
    dt[:, 0] = 0.0
    return u, dt


@pytest.mark.parametrize(
    "disc,conj,blocks",
    [("async", True, 1), ("async", False, 3), ("zoh", True, 2), ("dirac", False, 1)],
)
def test_matches_numpy_loop_and_step(disc, conj, blocks):
    m = S5SSM(H, N, blocks=blocks, conj_sym=conj, discretization=disc, step_rescale=1.5,
              dt_min=0.01, dt_max=0.5, scan_method="sequential", rngs=nnx.Rngs(1))
    u, dt = inputs()
    call, step = jitted(m)
    y, x_last = call(u, dt)
    assert y.shape == u.shape and y.dtype == jnp.float32
    assert x_last.shape == (3, m.state_size) and x_last.dtype == jnp.complex64
    ref_y, ref_x = s5_numpy(m, u, dt)
    assert rel(y, ref_y) < 1e-5
    assert rel(x_last, ref_x) < 1e-5
    # event-by-event step gives the same outputs and state
    x = m.zero_state(3)
    ys = []
    for k in range(u.shape[1]):
        x, y_k = step(x, u[:, k], dt[:, k])
        ys.append(y_k)
    assert rel(jnp.stack(ys, 1), ref_y) < 1e-5
    assert rel(x, ref_x) < 1e-5


@pytest.mark.parametrize("disc", ["async", "zoh", "dirac"])
def test_right_padding_leaves_state_and_outputs_unchanged(disc):
    m = S5SSM(H, N, discretization=disc, scan_method="sequential", rngs=nnx.Rngs(2))
    call, _ = jitted(m)
    u, dt = inputs(seed=3, length=30)
    y, x_last = call(u, dt)
    u_pad = np.concatenate([u, np.zeros((3, 17, H), np.float32)], axis=1)
    dt_pad = np.concatenate([dt, np.zeros((3, 17), np.float32)], axis=1)
    y_pad, x_last_pad = call(u_pad, dt_pad)
    np.testing.assert_allclose(y_pad[:, :30], y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x_last_pad, x_last, rtol=1e-5, atol=1e-6)


def test_x0_continues_a_sequence():
    m = S5SSM(H, N, scan_method="sequential", rngs=nnx.Rngs(3))
    u, dt = inputs(seed=4, length=40)
    y, x_last = m(u, dt)  # eager (un-jitted) call path
    call, _ = jitted(m)
    y1, x1 = call(u[:, :20], dt[:, :20])
    y2, x2 = call(u[:, 20:], dt[:, 20:], x1)
    np.testing.assert_allclose(np.concatenate([y1, y2], 1), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x2, x_last, rtol=1e-5, atol=1e-5)


def test_scan_methods_agree_and_jit_vmap():
    u, dt = inputs(seed=5, length=21)
    outs = []
    for method in ["sequential", "associative", "chunked"]:
        m = S5SSM(H, N, scan_method=method, rngs=nnx.Rngs(4))
        outs.append(jitted(m)[0](u, dt)[0])
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=1e-5, atol=1e-5)

    graphdef, state = nnx.split(m)

    @jax.jit
    def apply(state, u, dt):
        return nnx.merge(graphdef, state)(u, dt)

    y_jit, _ = apply(state, u, dt)
    np.testing.assert_allclose(y_jit, outs[0], rtol=1e-5, atol=1e-5)
    # vmap over an extra leading axis of independent input sets
    u4 = np.stack([u, 2 * u, -u, 0 * u])
    dt4 = np.stack([dt] * 4)
    y4, _ = jax.vmap(apply, in_axes=(None, 0, 0))(state, u4, dt4)
    for i in range(4):
        np.testing.assert_allclose(y4[i], apply(state, u4[i], dt4[i])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("conj,blocks,n", [(True, 1, 12), (False, 1, 12), (True, 3, 18)])
def test_parameter_names_and_count(conj, blocks, n):
    # eval_shape: abstract init (also checks that construction is trace-safe), no compile
    m = nnx.eval_shape(lambda: S5SSM(7, n, blocks=blocks, conj_sym=conj, rngs=nnx.Rngs(0)))
    p_size = n // 2 if conj else n
    assert m.state_size == p_size
    shapes = {k: v.get_value().shape for k, v in nnx.state(m, nnx.Param).items()}
    assert shapes == {
        "Lambda_re": (p_size,), "Lambda_im": (p_size,), "B": (p_size, 7, 2),
        "C": (7, p_size, 2), "D": (7,), "log_step": (p_size,),
    }
    total = sum(int(np.prod(s)) for s in shapes.values())
    assert total == 4 * p_size * 7 + 3 * p_size + 7


def test_discretization_functions_against_numpy_formulas():
    rng = np.random.default_rng(8)
    lam = -rng.uniform(0.1, 2, 6) + 1j * rng.normal(size=6)
    b_t = rng.normal(size=(6, 3)) + 1j * rng.normal(size=(6, 3))
    step = rng.uniform(0.01, 0.5, 6)
    dt = rng.uniform(0, 3, (4,))
    lam32, b32 = lam.astype(np.complex64), b_t.astype(np.complex64)
    step32, dt32 = step.astype(np.float32), dt.astype(np.float32)
    delta = step * dt[:, None]  # (4, 6) per-event steps
    lb, bb = zoh(lam32, b32, step32 * dt32[:, None])
    np.testing.assert_allclose(lb, np.exp(lam * delta), rtol=1e-5)
    np.testing.assert_allclose(bb, ((np.exp(lam * delta) - 1) / lam)[..., None] * b_t, rtol=1e-4)
    lb, bb = dirac(lam32, b32, step32)
    np.testing.assert_allclose(lb, np.exp(lam * step), rtol=1e-5)
    np.testing.assert_allclose(bb, b_t, rtol=1e-6)
    lb, gamma = async_(lam32, step32, dt32)
    np.testing.assert_allclose(lb, np.exp(lam * step * dt[:, None]), rtol=1e-5)
    np.testing.assert_allclose(gamma, (np.exp(lam * step) - 1) / lam, rtol=1e-5)
    # discretize() returns the same Λ̄ and the gain γ with B̄ = γ B̃
    for name in ["zoh", "dirac", "async"]:
        lb_d, g_d = discretize(name, lam32, step32, dt32)
        np.testing.assert_allclose(lb_d, np.exp(lam * delta), rtol=1e-5)
        if name == "zoh":
            np.testing.assert_allclose(g_d, (np.exp(lam * delta) - 1) / lam, rtol=1e-4, atol=1e-7)
        elif name == "async":
            np.testing.assert_allclose(g_d, (np.exp(lam * step) - 1) / lam, rtol=1e-5)
        else:
            assert complex(g_d) == 1.0
    with pytest.raises(ValueError, match="discretization"):
        discretize("bilinear", lam32, step32, dt32)


def test_phi1_small_arguments_and_gradient():
    z = np.array([0.0, 1e-6, -3e-5 + 2e-5j, 0.3 - 2j, -40.0], np.complex128)
    ref = np.where(z == 0, 1.0, np.expm1(z) / np.where(z == 0, 1.0, z))
    np.testing.assert_allclose(phi1(z.astype(np.complex64)), ref, rtol=1e-6)
    g = jax.grad(lambda x: phi1(x))(0.0)
    assert np.isfinite(float(g)) and abs(float(g) - 0.5) < 1e-6  # φ'(0) = 1/2


def test_hippo_legs_by_hand_and_hippo_n_spectrum():
    s3 = np.sqrt(3.0)
    expected = np.array([[-1, 0, 0], [-s3, -2, 0], [-np.sqrt(5), -np.sqrt(15), -3]])
    np.testing.assert_allclose(hippo_legs(3), expected)
    n = 8
    lam, v = hippo_n(n)
    p = np.sqrt(np.arange(n) + 0.5)
    normal = hippo_legs(n) + np.outer(p, p)
    ref = np.linalg.eigvals(normal)
    np.testing.assert_allclose(np.sort(lam.imag), np.sort(ref.imag), atol=1e-9)
    np.testing.assert_allclose(ref.real, -0.5, atol=1e-9)
    np.testing.assert_allclose(v @ np.diag(lam) @ v.conj().T, normal, atol=1e-9)
    np.testing.assert_allclose(lam.real, -0.5)


def test_init_uses_blocked_hippo_and_log_step_range():
    m = S5SSM(H, 16, blocks=2, conj_sym=True, dt_min=1e-3, dt_max=1e-1, rngs=nnx.Rngs(0))
    lam, _, _ = block_hippo_n(16, 2, True)
    half, _ = hippo_n(8)
    np.testing.assert_allclose(lam, np.tile(half[:4], 2))
    np.testing.assert_allclose(m.Lambda_re[...], lam.real, rtol=1e-6)
    np.testing.assert_allclose(m.Lambda_im[...], lam.imag, rtol=1e-6)
    step = np.exp(np.asarray(m.log_step[...]))
    assert np.all(step >= 1e-3 * (1 - 1e-6)) and np.all(step <= 1e-1 * (1 + 1e-6))
    assert np.all(lam.imag[:4] < 0)  # one member of every conjugate pair


def test_decay_never_exceeds_one_even_with_positive_real_part():
    m = S5SSM(H, N, rngs=nnx.Rngs(5))
    m.Lambda_re[...] = jnp.full_like(m.Lambda_re[...], 3.0)  # unstable if not clipped
    u, dt = inputs(seed=6, length=20)
    lam_bar, _ = m.recurrence_terms(u * 1e6, dt * 1e3)
    assert np.all(np.isfinite(lam_bar))
    assert np.all(np.abs(lam_bar) <= 1.0)


def test_long_sequence_finite_values_and_gradients():
    length = 131_072
    m = S5SSM(2, 4, scan_method="chunked", rngs=nnx.Rngs(6))
    rng = np.random.default_rng(7)
    u = rng.normal(size=(1, length, 2)).astype(np.float32)
    dt = rng.exponential(0.5, size=(1, length)).astype(np.float32)
    graphdef, state = nnx.split(m)

    @jax.jit
    def loss(state):
        y, x = nnx.merge(graphdef, state)(u, dt)
        return jnp.mean(y**2) + jnp.mean(jnp.abs(x) ** 2)

    val, grads = jax.value_and_grad(loss)(state)
    assert np.isfinite(float(val))
    for g in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(np.asarray(g)))
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grads))


def test_bad_arguments():
    with pytest.raises(ValueError, match="discretization"):
        S5SSM(H, N, discretization="bilinear", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="blocks"):
        S5SSM(H, 10, blocks=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="even"):
        S5SSM(H, 6, blocks=2, conj_sym=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError):
        S5SSM(H, N, scan_method="fft", rngs=nnx.Rngs(0))
    m = S5SSM(H, N, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="u must"):
        m(jnp.zeros((2, 5, H + 1)), jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match="dt must"):
        m(jnp.zeros((2, 5, H)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="x0"):
        m(jnp.zeros((2, 5, H)), jnp.zeros((2, 5)), jnp.zeros((3, m.state_size), jnp.complex64))

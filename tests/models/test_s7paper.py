"""S7PaperSSM (``--layer s7paper``): fast path == float64 loop forming B_k, C_k; contracts."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.models import streaming
from eventssm.models.blocks import ssm_pooled
from eventssm.models.classifier import EventClassifier, head_pool
from eventssm.models.discretization import phi1
from eventssm.models.pooling import pool_window_last
from eventssm.models.presets import get_preset
from eventssm.models.s7paper import S7PaperSSM, dt_rank, s7paper_param_count, s7paper_reference
from tests.models.test_s5 import inputs as s5_inputs
from tests.models.test_s5 import jitted, rel

H, N = 5, 12


def make(seed=0, conj=True, scan="sequential", h=H, n=N) -> S7PaperSSM:
    """A layer whose zero-initialised biases B_0, C_0 are randomised (every term active)."""
    m = S7PaperSSM(h, n, conj_sym=conj, scan_method=scan, dt_min=0.05, dt_max=0.5, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed + 100)
    for name in ("B", "C"):
        v = getattr(m, name)
        v[...] = jnp.asarray(0.3 * rng.normal(size=v[...].shape), jnp.float32)
    return m


def inputs(seed=0, bsz=3, length=40, h=H):
    """u ~ N(0, 1) (B, L, h), dt ~ Exp(1) with dt_0 = 0 (test_s5's inputs at this H)."""
    return s5_inputs(seed, bsz, length, h)


@pytest.mark.parametrize("conj,scan", [(True, "sequential"), (False, "associative")])
def test_fast_path_and_step_match_the_explicit_loop(conj, scan):
    m = make(conj=conj, scan=scan)
    u, dt = inputs()
    call, step = jitted(m)
    y, x_last = call(u, dt)
    assert y.shape == u.shape and y.dtype == jnp.float32
    assert x_last.shape == (3, m.state_size) and x_last.dtype == jnp.complex64
    ref_y, ref_x = s7paper_reference(m, u, dt)
    assert rel(y, ref_y) < 1e-5 and rel(x_last, ref_x) < 1e-5
    x, ys = m.zero_state(3), []
    for k in range(u.shape[1]):
        x, y_k = step(x, u[:, k], dt[:, k])
        ys.append(y_k)
    assert rel(jnp.stack(ys, 1), ref_y) < 1e-5 and rel(x, ref_x) < 1e-5
    # continuation from a carried state, and right padding (u = 0, dt = 0) changes nothing
    _, x1 = call(u[:, :15], dt[:, :15])
    y2, x2 = call(u[:, 15:], dt[:, 15:], x1)
    ref2 = s7paper_reference(m, u[:, 15:], dt[:, 15:], x0=np.asarray(x1))
    assert rel(y2, ref2[0]) < 1e-5 and rel(x2, ref_x) < 1e-5
    y_pad, x_pad = call(np.pad(u, ((0, 0), (0, 9), (0, 0))), np.pad(dt, ((0, 0), (0, 9))))
    np.testing.assert_allclose(y_pad[:, :40], y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_pad, x_last, rtol=1e-5, atol=1e-5)


def test_input_term_is_quadratic_through_the_full_B_k():
    """B_k u_k − B_0 u_k = (W_B u_k) u_k: formed here from W_B, and 4× larger for 2·u_k."""
    m = make(seed=1)
    u = inputs(seed=2, bsz=1, length=1)[0][0, 0]

    def quad(v):
        rate, bu = m.token_terms(jnp.asarray(v))
        gamma = m.step_size(jnp.asarray(v)) * phi1(rate)
        return np.asarray(bu / gamma - m.B_u(jnp.asarray(v)), np.complex128)

    w_b = np.asarray(m.W_B[...], np.float64)
    expected = ((w_b[..., 0] + 1j * w_b[..., 1]) @ u) @ u
    assert rel(quad(u), expected) < 1e-5
    assert rel(quad(2 * u), 4 * expected) < 1e-5


def test_pooled_window_end_readout_equals_pooling_the_full_output():
    m = make(seed=3)
    u, dt = inputs(seed=4, length=37)
    mask = np.ones(dt.shape, bool)
    mask[1, 30:] = False
    u = np.where(mask[..., None], u, 0.0).astype(np.float32)
    dt = np.where(mask, dt, 0.0).astype(np.float32)
    call, _ = jitted(m)
    full = pool_window_last(call(u, dt)[0], jnp.asarray(mask), 8)
    valid = np.asarray(pool_window_last(jnp.asarray(mask)[..., None], jnp.asarray(mask), 8))[..., 0]
    assert not valid.all()  # row 1 ends with a window of padding only (its value is unused)
    graphdef, state = nnx.split(m)
    pooled = jax.jit(lambda u, dt, mask, e: ssm_pooled(nnx.merge(graphdef, state), u, dt, mask, 8, exp_form=e)[0],
                     static_argnums=3)
    for exp_form in (True, False):
        y = pooled(u, dt, mask, exp_form)
        np.testing.assert_allclose(np.asarray(y)[valid], np.asarray(full)[valid], rtol=1e-4, atol=1e-4)


def test_decay_bounded_for_huge_inputs_and_parameters():
    m = make(seed=5)
    u, dt = inputs(seed=6, length=10)
    graphdef, state = nnx.split(m)
    probe = jax.jit(lambda state, u: nnx.merge(graphdef, state).recurrence_terms(u, dt))
    rng = np.random.default_rng(7)
    for scale in [1.0, 1e3, -1e3]:
        state = jax.tree_util.tree_map(
            lambda x, s=scale: jnp.asarray(s * rng.normal(size=x.shape), jnp.float32), state)
        for u_scale in [1.0, 1e6]:
            lam_bar, _ = probe(state, u * u_scale)
            assert np.all(np.isfinite(np.asarray(lam_bar)))
            assert np.all(np.abs(lam_bar) <= 1.0 + 2.5e-7)


def test_gradients_are_finite_and_reach_every_parameter():
    m = make(seed=8, scan="chunked", h=4, n=4)
    u, dt = inputs(seed=9, bsz=1, length=1000, h=4)
    graphdef, state = nnx.split(m)

    @jax.jit
    def loss(state):
        y, x = nnx.merge(graphdef, state)(u, 0.1 * dt)
        return jnp.mean(y**2) + jnp.mean(jnp.abs(x) ** 2)

    val, grads = jax.value_and_grad(loss)(state)
    assert np.isfinite(float(val))
    for g in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).max()) > 0


@pytest.mark.parametrize("h,conj", [(7, True), (17, False)])
def test_parameter_names_shapes_and_count(h, conj):
    m = nnx.eval_shape(lambda: S7PaperSSM(h, 12, conj_sym=conj, rngs=nnx.Rngs(0)))
    p, r = (6 if conj else 12), math.ceil(h / 16)
    assert dt_rank(h) == r == (1 if h == 7 else 2)
    shapes = {k: v.get_value().shape for k, v in nnx.state(m, nnx.Param).items()}
    assert shapes == {
        "Lambda_w": (p,), "Lambda_im": (p,), "B": (p, h, 2), "W_B": (p, h, h, 2), "C": (h, p, 2),
        "W_C": (h, p, h, 2), "W_step_in": (r, h), "W_step": (p, r), "b_step": (p,), "D": (h,),
    }
    total = sum(int(np.prod(s)) for s in shapes.values())
    assert total == s7paper_param_count(h, p) == 4 * p * h * h + 4 * p * h + r * (h + p) + 3 * p + h


def test_init_as_the_papers_code():
    m = S7PaperSSM(32, 16, dt_min=1e-3, dt_max=1e-1, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(np.real(m.Lambda()), -0.5, rtol=1e-6)
    step = m.step_size(jnp.zeros((32,)))
    assert np.all(step >= 1e-3 * 0.999) and np.all(step <= 1e-1 * 1.001)
    assert not np.any(np.asarray(m.B[...])) and not np.any(np.asarray(m.C[...]))
    w_b = np.asarray(m.W_B[...])
    assert abs(w_b.std() * math.sqrt(32) - 1.0) < 0.05  # lecun normal, fan-in H
    assert np.abs(np.asarray(m.W_step[...])).max() <= 1 / math.sqrt(2)  # uniform ±R^-½, R = 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="a > 0"):
        S7PaperSSM(H, N, b=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dt_min"):
        S7PaperSSM(H, N, dt_min=0.2, dt_max=0.1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="even"):
        S7PaperSSM(H, 7, rngs=nnx.Rngs(0))


def test_classifier_fast_paths_and_streaming_equal_plain_blocks():
    """With s7paper layers, the classifier's fast paths (token table, chunked stem, window-end
    read-out) give the logits of running every block on the whole sequence, and streaming the
    events in two chunks ends with the same logits."""
    cfg = get_preset("tiny", "s7paper", vocab_size=32, n_classes=3, n_stages=1, layers_per_stage=1,
                     dropout=0.0, time_chunk=8, scan_method="sequential")
    model = EventClassifier(cfg, rngs=nnx.Rngs(2))
    model.eval()
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 32, (2, 45)).astype(np.int32)
    dt = rng.exponential(0.05, (2, 45)).astype(np.float32)
    dt[:, 0] = 0.0
    mask = np.arange(45)[None] < np.array([[45], [30]])
    graphdef, state = nnx.split(model)

    @jax.jit
    def both(state):
        mod = nnx.merge(graphdef, state)
        fast = mod(tokens, dt, mask)
        x = mod.embed(jnp.where(mask, tokens, 0))
        d, m = jnp.where(mask, dt, 0.0), jnp.asarray(mask)
        for block in mod.blocks:
            x, d, m = block(x, d, m)
        return fast, mod.head(head_pool(x, d, m, cfg.head))

    assert model._token_table(tokens.size) is not None  # 90 events >= 32 tokens: the table is used
    fast, plain = both(state)
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5)
    st = streaming.init_state(model, 2)
    for lo, hi in [(0, 20), (20, 45)]:
        st, last = streaming.step_chunk(model, st, tokens[:, lo:hi], dt[:, lo:hi], mask[:, lo:hi],
                                        last_only=True)
    np.testing.assert_allclose(last, fast, rtol=1e-4, atol=1e-5)

"""EventClassifier, SSMBlock fast paths, config/presets and parameter counts."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.models.blocks import window_states, window_states_exp
from eventssm.models.classifier import ClassifierConfig, EventClassifier, head_pool
from eventssm.models.presets import PRESETS, get_preset
from eventssm.models.scan import linear_recurrence_numpy


class StepOnlySSM(nnx.Module):
    """Wraps an SSM and exposes only the documented interface (no recurrence_terms/output)."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, u, dt, x0=None):
        return self.inner(u, dt, x0)

    def zero_state(self, batch):
        return self.inner.zero_state(batch)

    def step(self, x, u_k, dt_k):
        return self.inner.step(x, u_k, dt_k)


def _batch(vocab, b_sz=3, length=45, seed=0):
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(0, vocab, (b_sz, length)), jnp.int32)
    dt = jnp.asarray(rng.exponential(0.05, (b_sz, length)), jnp.float32)
    lengths = jnp.asarray([length, 30, 7][:b_sz])
    return tokens, dt, lengths


def _reference_features(model, tokens, dt, mask):
    """Embedding then every block's plain __call__ (no stem, no token table, no chunks)."""
    x = model.embed(jnp.where(mask, tokens, 0))
    dt = jnp.where(mask, dt, 0.0)
    for blk in model.blocks:
        x, dt, mask = blk(x, dt, mask)
    return x, dt, mask


def _split(model):
    return nnx.split(model, nnx.Param, ...)


def _lean(layer, **overrides):
    """tiny with one block per stage (both blocks pool): half the compile time of tiny."""
    return get_preset("tiny", layer=layer, layers_per_stage=1, **overrides)


# ----------------------------------------------------------------------------- config / presets


def test_config_json_roundtrip_and_validation():
    cfg = get_preset("eventssm-dvs-small", layer="s5", vocab_size=512, n_classes=7)
    assert cfg.stride == (16, 16)
    back = ClassifierConfig.from_json(cfg.to_json())
    assert back == cfg
    assert cfg.replace(dropout=0.0).dropout == 0.0
    bad = [
        dict(layer="lstm"),
        dict(head="max"),
        dict(pool_mode="sum"),
        dict(blocks=3),  # 128 % 3
        dict(stride=(16,)),  # one stride for two stages
        dict(scan_method="fft"),
        dict(dropout=1.0),
    ]
    for change in bad:
        with pytest.raises(ValueError):
            cfg.replace(**change)
    with pytest.raises(ValueError, match="unknown"):
        ClassifierConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


def test_stage_dims_follow_eventssm_expansion():
    # EventSSM StackedEncoderModel with state_expansion_factor 2, 2 stages: stage 0 keeps
    # H = 128, P = 128; stage 1 maps 128 -> 256 with P = 256 (block size 16 kept).
    stages = get_preset("eventssm-dvs-small", layer="s5").stages()
    assert [(s.d_in, s.d_model, s.d_state, s.blocks, s.stride) for s in stages] == [
        (128, 128, 128, 8, 16),
        (128, 256, 256, 16, 16),
    ]
    assert get_preset("s7-dvs").total_stride == 256


def _hand_count(p: dict, layer: str) -> int:
    """Parameter count written out from the preset's dims (not from the module tree).

    embedding V·H0; per block: LayerNorm 2·H_in, [W_in H_in·H], SSM, gate H·H + H,
    [skip H_in·H + H]; head H_last·C + C.  SSM with P complex states (P = N/2 if conj_sym):
    S5 = 4PH + 3P + H (Λ re/im, log_step; B̃, C̃ complex; D), S7 adds r(5H + 6P); S7 in the
    paper's form: 4PH² + 4PH + ⌈H/16⌉(H + P) + 3P + H.
    """
    total = p["vocab_size"] * p["d_model"]
    h_in = p["d_model"]
    for stage in range(p["n_stages"]):
        h = p["d_model"] * p["expansion"] ** stage
        n = p["d_state"] * p["expansion"] ** stage
        big_p = n // 2 if p["conj_sym"] else n
        for layer_idx in range(p["layers_per_stage"]):
            d_in = h_in if layer_idx == 0 else h
            total += 2 * d_in + h * h + h
            if d_in != h:
                total += d_in * h + (d_in * h + h)
            if layer == "s7paper":  # full complex W_B, W_C and biases; step rank ⌈H/16⌉
                total += 4 * big_p * h * h + 4 * big_p * h + -(-h // 16) * (h + big_p) + 3 * big_p + h
                continue
            total += 4 * big_p * h + 3 * big_p + h
            if layer == "s7":
                total += 4 * (5 * h + 6 * big_p)  # rank 4 (default)
        h_in = h
    return total + h_in * p["n_classes"] + p["n_classes"]


@pytest.mark.parametrize("layer", ["s5", "s7", "s7paper"])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_counts(name, layer):
    cfg = get_preset(name, layer=layer)
    model = nnx.eval_shape(lambda: EventClassifier(cfg, rngs=nnx.Rngs(0)))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    print(f"{name} [{layer}]: {count:,} parameters")
    assert count == _hand_count(dict(PRESETS[name]), layer)


# ----------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("stride", [4, 40])  # unrolled window reduction and the lax.scan one
def test_window_states_match_state_sequence(stride):
    rng = np.random.default_rng(stride)
    b_sz, length, p = 2, 83, 3
    a = (rng.uniform(0.3, 1.0, (b_sz, length, p)) * np.exp(1j * rng.normal(size=(b_sz, length, p))))
    b = rng.normal(size=(b_sz, length, p)) + 1j * rng.normal(size=(b_sz, length, p))
    x0 = rng.normal(size=(b_sz, p)) + 1j * rng.normal(size=(b_sz, p))
    xs, last = window_states(
        jnp.asarray(a, jnp.complex64), jnp.asarray(b, jnp.complex64), stride,
        jnp.asarray(x0, jnp.complex64), method="sequential",
    )
    for row in range(b_sz):
        ref, ref_last = linear_recurrence_numpy(a[row], b[row], x0[row])
        ends = [min((w + 1) * stride, length) - 1 for w in range(-(-length // stride))]
        np.testing.assert_allclose(np.asarray(xs[row]), ref[ends], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(last[row]), ref_last, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shared_rate", [True, False])  # S5: one rate (P,); S7: per event
@pytest.mark.parametrize("stride", [4, 40])
def test_window_states_exp_match_state_sequence(stride, shared_rate):
    """exp(r_k dt_k) form of the window states == the numpy recurrence (padding included)."""
    rng = np.random.default_rng(stride + shared_rate)
    b_sz, length, p = 2, 83, 3
    shape = (p,) if shared_rate else (b_sz, length, p)
    rate = -rng.uniform(0.1, 2.0, shape) + 1j * rng.normal(scale=3.0, size=shape)
    dt = rng.exponential(0.5, (b_sz, length))
    dt[1, 70:] = 0.0  # padded tail: dt = 0 and b = 0 leave the state unchanged
    b = rng.normal(size=(b_sz, length, p)) + 1j * rng.normal(size=(b_sz, length, p))
    b[1, 70:] = 0.0
    x0 = rng.normal(size=(b_sz, p)) + 1j * rng.normal(size=(b_sz, p))
    xs, last = window_states_exp(
        jnp.asarray(rate, jnp.complex64), jnp.asarray(dt, jnp.float32),
        jnp.asarray(b, jnp.complex64), stride, jnp.asarray(x0, jnp.complex64), method="sequential",
    )
    a = np.exp(np.broadcast_to(rate, b.shape) * dt[..., None])
    for row in range(b_sz):
        ref, ref_last = linear_recurrence_numpy(a[row], b[row], x0[row])
        ends = [min((w + 1) * stride, length) - 1 for w in range(-(-length // stride))]
        np.testing.assert_allclose(np.asarray(xs[row]), ref[ends], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(last[row]), ref_last, rtol=1e-4, atol=1e-4)


def test_head_pool_modes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    dt = rng.uniform(0, 1, (2, 5)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    w = (dt + 1e-6) * mask
    expect = {
        "mean": (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True),
        "time_weighted": (x * w[..., None]).sum(1) / w.sum(1, keepdims=True),
        "last": np.stack([x[0, 2], x[1, 4]]),
    }
    for mode, ref in expect.items():
        np.testing.assert_allclose(np.asarray(head_pool(x, dt, mask, mode)), ref, rtol=1e-5)


# ----------------------------------------------------------------------------- the model
# Every model call is jitted (eager op-by-op execution compiles hundreds of tiny programs).


@pytest.fixture(scope="module", params=["s5", "s7"])
def tiny(request):
    # (the four-block tiny model is exercised on padded prefixes by tests/models/test_streaming.py)
    # S7 without pooling in stage 0: exercises event-rate blocks (and their remat) and no stem
    stride = (4, 4) if request.param == "s5" else (1, 4)
    cfg = _lean(request.param, dropout=0.0, time_chunk=8, stride=stride)
    model = EventClassifier(cfg, rngs=nnx.Rngs(1))
    model.eval()
    graphdef, state = nnx.split(model)
    logits = jax.jit(lambda state, t, d, n: nnx.merge(graphdef, state)(t, d, lengths=n))
    return model, functools.partial(logits, state)


def test_fast_paths_match_plain_blocks_values_and_gradients(tiny):
    """Stem (time chunks, window-end read-out, token table) and remat == the blocks' __call__."""
    model, _ = tiny
    tokens, dt, lengths = _batch(model.config.vocab_size)
    mask = jnp.arange(tokens.shape[1])[None] < lengths[:, None]
    graphdef, params, rest = _split(model)
    # remat everywhere, with time chunks (of the stem and of the later blocks) that do not
    # divide the lengths: 45 events -> chunks of 12 (stride 4) and 12 elements -> chunks of 5
    remat_cfg = model.config.replace(remat=True, remat_blocks=True, time_chunk=12, block_chunk=5)
    remat_model = EventClassifier(remat_cfg, rngs=nnx.Rngs(1))
    graphdef_remat = nnx.split(remat_model, nnx.Param, ...)[0]
    # force the token table (tiny has B·L < V, so it is off by default); S5 and S7 both have one.
    ratio = 0.0

    def loss(params, mode):
        model = nnx.merge(graphdef_remat if mode == "remat" else graphdef, params, rest)
        model.token_table_ratio = ratio
        if mode == "reference":
            x, d, m = _reference_features(model, tokens, dt, mask)
        else:
            x, d, m = model.features(tokens, dt, mask)
        return jnp.sum(jnp.where(m[..., None], x, 0.0) ** 2) + jnp.sum(d), (x, d, m)

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (ref_loss, ref_out), ref_grad = grad(params, "reference")
    results = [grad(params, mode) for mode in ("fast", "remat")]
    for (got_loss, got_out), got_grad in results:
        np.testing.assert_array_equal(np.asarray(got_out[2]), np.asarray(ref_out[2]))
        valid = np.asarray(ref_out[2])[..., None]
        np.testing.assert_allclose(
            np.asarray(got_out[0]) * valid, np.asarray(ref_out[0]) * valid, rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(float(got_loss), float(ref_loss), rtol=1e-5)
        for g, r in zip(jax.tree.leaves(got_grad), jax.tree.leaves(ref_grad)):
            np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=2e-4, atol=2e-5)


def test_padding_never_changes_valid_logits_and_vmap(tiny):
    model, logits_fn = tiny
    tokens, dt, lengths = _batch(model.config.vocab_size)
    logits = np.asarray(logits_fn(tokens, dt, lengths))
    # different garbage in the padded slots (tokens out of range, huge/negative/NaN time steps)
    rng = np.random.default_rng(5)
    pad = np.arange(tokens.shape[1])[None] >= np.asarray(lengths)[:, None]
    tok2 = np.where(pad, rng.integers(-5, 10**6, tokens.shape), tokens).astype(np.int32)
    dt2 = np.where(pad, rng.normal(0, 1e3, dt.shape), dt).astype(np.float32)
    dt2[2, -1] = np.nan
    np.testing.assert_allclose(
        np.asarray(logits_fn(tok2, dt2, lengths)), logits, rtol=1e-5, atol=1e-6
    )
    # vmap over single sequences (the B = 1 model) == the batched call
    graphdef, state = nnx.split(model)

    def one(tok, d, n):
        return nnx.merge(graphdef, state)(tok[None], d[None], lengths=n[None])[0]

    np.testing.assert_allclose(
        np.asarray(jax.jit(jax.vmap(one))(tokens, dt, lengths)), logits, rtol=1e-5, atol=1e-6
    )
    if model.config.layer == "s5":  # a row alone, cut to its length (no padding at all)
        n = int(lengths[2])
        alone = np.asarray(logits_fn(tokens[2:3, :n], dt[2:3, :n], lengths[2:3]))
        np.testing.assert_allclose(alone[0], logits[2], rtol=1e-5, atol=1e-6)


def test_scan_methods_agree():
    tokens, dt, lengths = _batch(128)
    out = {}
    for method in ("chunked", "sequential"):
        cfg = _lean("s5", scan_method=method)
        model = EventClassifier(cfg, rngs=nnx.Rngs(1))
        model.eval()
        out[method] = np.asarray(nnx.jit(lambda m: m(tokens, dt, lengths=lengths))(model))
    np.testing.assert_allclose(out["sequential"], out["chunked"], rtol=1e-4, atol=1e-5)


def test_generic_ssm_interface_gives_same_logits():
    cfg = _lean("s5", dropout=0.0)
    model = EventClassifier(cfg, rngs=nnx.Rngs(1))
    model.eval()
    tokens, dt, lengths = _batch(cfg.vocab_size, seed=3)
    call = nnx.jit(lambda m: m(tokens, dt, lengths=lengths))
    fast = np.asarray(call(model))
    for blk in model.blocks:
        blk.ssm = StepOnlySSM(blk.ssm)
    np.testing.assert_allclose(np.asarray(call(model)), fast, rtol=1e-5, atol=1e-6)


def test_dropout_only_in_train_mode():
    cfg = _lean("s5", dropout=0.5)
    model = EventClassifier(cfg, rngs=nnx.Rngs(params=0, dropout=1))
    tokens, dt, lengths = _batch(cfg.vocab_size, seed=4)
    call = nnx.jit(lambda m: m(tokens, dt, lengths=lengths))
    model.eval()
    first = np.asarray(call(model))
    np.testing.assert_array_equal(np.asarray(call(model)), first)
    model.train()
    t1, t2 = np.asarray(call(model)), np.asarray(call(model))
    assert not np.allclose(t1, first) and not np.allclose(t1, t2)
    model.eval()
    np.testing.assert_array_equal(np.asarray(call(model)), first)

"""Streaming inference equals the full-sequence model on every prefix (pooling windows included)."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.models import streaming
from eventssm.models.classifier import EventClassifier
from eventssm.models.presets import get_preset
from tests.models.test_classifier import StepOnlySSM

# tiny: 2 stages of stride 4 -> a last-stage element covers 16 events; L = 41 crosses several
# windows of both levels and ends inside partial windows.
LENGTH = 41
CHUNK = 16  # compiled chunk size; shorter chunks are padded with skipped (masked) events
CASES = {
    "s5-timeweighted": dict(layer="s5"),
    "s7-mean-last-nopool-stage0": dict(layer="s7", stride=(1, 4), pool_mode="mean", head="last"),
    "s7-fourier-embedding": dict(layer="s7", embedding="fourier", grid=(8, 8, 2)),
}


def _model(case: str) -> EventClassifier:
    overrides = dict(CASES[case])
    layer = overrides.pop("layer")
    model = EventClassifier(get_preset("tiny", layer=layer, **overrides), rngs=nnx.Rngs(3))
    model.eval()
    return model


def _data(vocab: int, b_sz: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (b_sz, LENGTH)).astype(np.int32)
    dt = rng.exponential(0.05, (b_sz, LENGTH)).astype(np.float32)
    dt[:, 0] = 0.0
    dt[rng.random((b_sz, LENGTH)) < 0.1] = 0.0  # simultaneous events
    return tokens, dt


@functools.cache
def _expected(case: str) -> np.ndarray:
    """Full model on every prefix: logits[:, n] = model(events 0..n) — (B, L, C)."""
    model = _model(case)
    tokens, dt = _data(model.config.vocab_size)
    graphdef, state = nnx.split(model)
    positions = jnp.arange(LENGTH)

    @jax.jit
    def run(state, n):
        mask = jnp.broadcast_to(positions <= n, tokens.shape)
        return nnx.merge(graphdef, state)(tokens, dt, mask=mask)

    return np.stack([np.asarray(run(state, n)) for n in range(LENGTH)], axis=1)


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    model = _model(request.param)
    tokens, dt = _data(model.config.vocab_size)
    return model, tokens, dt, _expected(request.param)


def test_step_matches_full_model_on_every_prefix(case):
    model, tokens, dt, expected = case
    state = streaming.init_state(model, tokens.shape[0])
    got = []
    for k in range(tokens.shape[1]):
        state, logits = streaming.step(model, state, tokens[:, k], dt[:, k])
        got.append(np.asarray(logits))
    np.testing.assert_allclose(np.stack(got, 1), expected, rtol=1e-4, atol=1e-5)


def _run_chunks(chunk_fn, state, tokens, dt, bounds):
    """Feed [lo, hi) pieces padded to CHUNK events with a mask; returns (state, logits).

    A chunk_fn returning (B, C) logits (``last_only``) gives one column per piece.
    """
    got = []
    for lo, hi in itertools.pairwise(bounds):
        n = hi - lo
        tok = np.zeros((tokens.shape[0], CHUNK), np.int32)
        dts = np.full((tokens.shape[0], CHUNK), 123.0, np.float32)  # garbage in skipped slots
        tok[:, :n], dts[:, :n] = tokens[:, lo:hi], dt[:, lo:hi]
        mask = np.arange(CHUNK)[None] < n
        state, logits = chunk_fn(state, tok, dts, np.broadcast_to(mask, tok.shape))
        logits = np.asarray(logits)
        got.append(logits[:, :n] if logits.ndim == 3 else logits[:, None])
    return state, np.concatenate(got, 1)


@pytest.mark.parametrize("streamer", [False, True], ids=["step_chunk", "Streamer"])
def test_step_chunk_split_at_random_points_matches_full_model(case, streamer):
    """Module step_chunk (per-event SSM terms) and Streamer (token table, read-out only where
    needed) both equal the full model, with and without last_only."""
    model, tokens, dt, expected = case
    rng = np.random.default_rng(7)
    chunk_fn = streaming.Streamer(model).step_chunk if streamer else functools.partial(
        streaming.step_chunk, model
    )
    for last_only in (False, False, True, True):
        bounds = [0]
        while bounds[-1] < LENGTH:
            bounds.append(min(LENGTH, bounds[-1] + int(rng.integers(1, CHUNK + 1))))
        state = streaming.init_state(model, tokens.shape[0])
        state, got = _run_chunks(
            lambda *a, last_only=last_only: chunk_fn(*a, last_only=last_only),
            state, tokens, dt, bounds,
        )
        want = expected[:, np.asarray(bounds[1:]) - 1] if last_only else expected
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # window bookkeeping after 41 events: each pooling level holds its open window
    strides = [blk.stride for blk in model.blocks if blk.stride > 1]
    counts = [int(st.window.count[0]) for st in state.blocks if st.window is not None]
    n, expect = LENGTH, []
    for stride in strides:
        expect.append(n % stride)
        n //= stride
    assert counts == expect
    first_pool = next(st.window for st in state.blocks if st.window is not None)
    open_events = LENGTH % strides[0]
    np.testing.assert_allclose(
        np.asarray(first_pool.dt), dt[:, LENGTH - open_events :].sum(1), rtol=1e-5
    )


def test_mixing_step_chunk_step_and_streamer(case):
    model, tokens, dt, expected = case
    fast = streaming.Streamer(model)
    state = fast.init_state(tokens.shape[0])
    state, first = _run_chunks(fast.step_chunk, state, tokens, dt, [0, 13])
    got = [first]
    for k in range(13, 18):  # single events in the middle of windows of both levels
        state, logits = streaming.step(model, state, tokens[:, k], dt[:, k])
        got.append(np.asarray(logits)[:, None])
    state, rest = _run_chunks(
        lambda *a: streaming.step_chunk(model, *a), state, tokens, dt, [18, 34, LENGTH]
    )
    got.append(rest)
    np.testing.assert_allclose(np.concatenate(got, 1), expected, rtol=1e-4, atol=1e-5)


def test_step_chunk_with_step_only_ssm_interface():
    model = _model("s5-timeweighted")
    tokens, dt = _data(model.config.vocab_size)
    for blk in model.blocks:
        blk.ssm = StepOnlySSM(blk.ssm)
    state = streaming.init_state(model, tokens.shape[0])
    _, got = _run_chunks(
        lambda *a: streaming.step_chunk(model, *a), state, tokens, dt, [0, 16, 32, LENGTH]
    )
    np.testing.assert_allclose(got, _expected("s5-timeweighted"), rtol=1e-4, atol=1e-5)

"""Token embeddings: Fourier features decoded independently, the table form, configs, fast paths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.events import make_events
from eventssm.models.classifier import ClassifierConfig, EventClassifier
from eventssm.models.embedding import FOURIER_OCTAVES, FourierEmbed, fourier_features, token_coordinates
from eventssm.models.presets import get_preset
from eventssm.tokenizers.functional import tokenize
from tests.models.test_classifier import _batch, _reference_features


def _numpy_features(x, y, p, w2, h2, p2, octaves=FOURIER_OCTAVES):
    """φ written out from the formula, one feature at a time."""
    rows = []
    for xi, yi, pi in zip(x, y, p, strict=True):
        xh, yh = (xi + 0.5) / w2, (yi + 0.5) / h2
        row = [np.sin(np.pi * 2**j * xh) for j in range(octaves)]
        row += [np.cos(np.pi * 2**j * xh) for j in range(octaves)]
        row += [np.sin(np.pi * 2**j * yh) for j in range(octaves)]
        row += [np.cos(np.pi * 2**j * yh) for j in range(octaves)]
        row += [1.0 if pi == k else 0.0 for k in range(p2)]
        rows.append(row)
    return np.asarray(rows)


@pytest.mark.parametrize("merge", [False, True], ids=["polarity", "merged"])
def test_fourier_features_of_tokenized_events_match_the_formula(merge):
    """Events on a non-square 7×5 sensor go through the real tokenizer; the features of their
    tokens equal φ computed from the events' own x, y, p."""
    rng = np.random.default_rng(0)
    n = 60
    x, y = rng.integers(0, 7, n), rng.integers(0, 5, n)
    p = rng.integers(0, 2, n).astype(bool)
    ev = make_events(x, y, np.arange(n) * 10, p)
    tokens, _ = tokenize(ev, (7, 5), merge_polarity=merge)
    p2 = 1 if merge else 2
    got = np.asarray(fourier_features(jnp.asarray(tokens), (7, 5, p2)))
    want = _numpy_features(x, y, np.zeros(n, int) if merge else p.astype(int), 7, 5, p2)
    np.testing.assert_allclose(got, want, atol=2e-5)
    gx, gy, gp = (np.asarray(v) for v in token_coordinates(jnp.asarray(tokens), (7, 5, p2)))
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)
    np.testing.assert_array_equal(gp, np.zeros(n, int) if merge else p.astype(int))


def test_fourier_features_are_smooth_in_position():
    """A one-pixel step moves every feature by at most π·2^(J−1)/W (the finest octave's slope);
    the table form has no such bound (independent random vectors)."""
    grid = (128, 128, 2)
    tokens = jnp.arange(grid[0] * grid[1] * grid[2], dtype=jnp.int32)
    phi = np.asarray(fourier_features(tokens, grid)).reshape(128, 128, 2, -1)
    bound = np.pi * 2 ** (FOURIER_OCTAVES - 1) / 128
    assert np.abs(np.diff(phi, axis=0)).max() <= bound + 1e-5
    assert np.abs(np.diff(phi, axis=1)).max() <= bound + 1e-5


def test_fourier_embed_table_equals_calls():
    emb = FourierEmbed((6, 4, 2), 5, rngs=nnx.Rngs(0))
    tokens = jnp.asarray([[0, 7, 47], [13, 13, 2]], jnp.int32)
    table = np.asarray(emb.embedding)
    assert table.shape == (48, 5)
    np.testing.assert_allclose(np.asarray(emb(tokens)), table[np.asarray(tokens)], rtol=1e-6, atol=1e-6)
    # the MLP's own formula
    phi = np.asarray(fourier_features(tokens, (6, 4, 2)))
    h = jax.nn.gelu(phi @ np.asarray(emb.hidden.kernel[...]) + np.asarray(emb.hidden.bias[...]))
    want = np.asarray(h) @ np.asarray(emb.out.kernel[...]) + np.asarray(emb.out.bias[...])
    np.testing.assert_allclose(np.asarray(emb(tokens)), want, rtol=1e-5, atol=1e-5)


def test_config_embedding_validation_and_json():
    cfg = get_preset("tiny", "s7", embedding="fourier", grid=(8, 8, 2))
    assert ClassifierConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="needs grid"):
        get_preset("tiny", "s7", embedding="fourier")
    with pytest.raises(ValueError, match="W2·H2·P2"):
        get_preset("tiny", "s7", embedding="fourier", grid=(8, 4, 2))  # 64 != vocab 128
    with pytest.raises(ValueError, match="embedding must be"):
        get_preset("tiny", "s7", embedding="mlp", grid=(8, 8, 2))
    # a configuration saved before the field existed loads as the table form
    old = cfg.to_dict()
    del old["embedding"], old["grid"]
    assert ClassifierConfig.from_dict(old).embedding == "table"


def test_fourier_classifier_fast_paths_match_plain_blocks():
    """The token table (tabulated per-token SSM terms) and the stem give the plain blocks'
    features with the Fourier embedding too."""
    cfg = get_preset("tiny", "s7", layers_per_stage=1, dropout=0.0, time_chunk=8, embedding="fourier",
                     grid=(8, 8, 2))
    model = EventClassifier(cfg, rngs=nnx.Rngs(1))
    model.eval()
    tokens, dt, lengths = _batch(cfg.vocab_size)
    mask = jnp.arange(tokens.shape[1])[None] < lengths[:, None]
    ref = _reference_features(model, tokens, dt, mask)
    for ratio in (0.0, float("inf")):  # with and without the token table
        model.token_table_ratio = ratio
        got = model.features(tokens, dt, mask)
        valid = np.asarray(ref[2])[..., None]
        np.testing.assert_allclose(np.asarray(got[0]) * valid, np.asarray(ref[0]) * valid, rtol=1e-5, atol=1e-5)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(nnx.state(model.embed, nnx.Param)))
    assert n_params == (4 * FOURIER_OCTAVES + 2 + 1) * 32 + (32 + 1) * cfg.d_model

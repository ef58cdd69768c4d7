"""Mixed precision (ClassifierConfig.dtype = "bfloat16"): projections in bf16, SSM in float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.models.classifier import EventClassifier
from eventssm.models.presets import get_preset
from eventssm.train.steps import loss_fn

#: stated tolerance: |loss_bf16 - loss_f32| on this fixed task (bf16 keeps 8 bits of mantissa,
#: a relative rounding of 2^-8 = 0.4 % per operation)
LOSS_TOLERANCE = 0.02


@pytest.mark.parametrize("layer", ["s5", "s7"])
def test_bfloat16_is_finite_and_close_to_float32(layer):
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, 32, (4, 96)), jnp.int32)
    dt = jnp.asarray(rng.exponential(1.0, (4, 96)), jnp.float32)
    mask = jnp.asarray(np.arange(96)[None] < np.array([96, 40, 70, 12])[:, None])
    labels = jnp.asarray([0, 1, 1, 0], jnp.int32)
    out = {}
    for dtype in ("float32", "bfloat16"):
        cfg = get_preset("tiny", layer, vocab_size=32, n_classes=2, layers_per_stage=1, scan_method="sequential",
                         dropout=0.0, dtype=dtype)
        model = EventClassifier(cfg, rngs=nnx.Rngs(0))
        params = nnx.state(model, nnx.Param)
        assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}  # stored in f32

        @nnx.jit
        def f(model):
            (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, tokens, dt, mask, labels)
            return loss, logits, grads

        loss, logits, grads = f(model)
        assert logits.dtype == jnp.float32
        assert np.isfinite(float(loss)) and all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
        out[dtype] = float(loss)
    assert out["bfloat16"] != out["float32"]  # bf16 did run
    assert abs(out["bfloat16"] - out["float32"]) <= LOSS_TOLERANCE, out

"""Gradient accumulation: K micro-batches of B rows give the update of one K·B-row batch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from eventssm.models.classifier import EventClassifier
from eventssm.models.presets import get_preset
from eventssm.train import accumulated_step, train_step


def _model_and_optimizer():
    cfg = get_preset("tiny", "s7", vocab_size=32, n_classes=2, layers_per_stage=1, n_stages=1,
                     scan_method="sequential", dropout=0.0)
    model = EventClassifier(cfg, rngs=nnx.Rngs(0))
    # plain SGD with step 1: the parameter change is minus the gradient (Adam would magnify float
    # rounding in gradients near its epsilon)
    return model, nnx.Optimizer(model, optax.sgd(1.0), wrt=nnx.Param)


def test_two_micro_batches_equal_the_double_batch():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 32, (4, 64)).astype(np.int32)
    dt = rng.exponential(1.0, (4, 64)).astype(np.float32)
    mask = np.arange(64)[None] < np.array([64, 20, 50, 33])[:, None]
    labels = np.array([0, 1, 1, 0], np.int32)
    key = jax.random.key(0)
    big, big_opt = _model_and_optimizer()
    m_big = nnx.jit(train_step)(big, big_opt, tokens, dt, mask, labels, key)
    acc, acc_opt = _model_and_optimizer()
    split = [x.reshape(2, 2, *x.shape[1:]) for x in (tokens, dt, mask, labels)]
    m_acc = nnx.jit(accumulated_step)(acc, acc_opt, *split, key)
    for k in ("loss", "accuracy", "grad_norm"):
        np.testing.assert_allclose(float(m_acc[k]), float(m_big[k]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(nnx.state(acc, nnx.Param)), jax.tree.leaves(nnx.state(big, nnx.Param)),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # and the update did something: the parameters moved away from the initial ones
    fresh, _ = _model_and_optimizer()
    moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(nnx.state(acc, nnx.Param)),
                                                           jax.tree.leaves(nnx.state(fresh, nnx.Param)))]
    assert max(moved) > 1e-4

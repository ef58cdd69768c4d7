"""Loss and the jit-able train / eval steps.

``train_step(model, optimizer, batch, rng)`` updates ``model`` and ``optimizer`` in place (NNX
modules are mutable) and returns metrics; callers jit it once with ``nnx.jit``. The dropout key is
``fold_in(rng, step)`` so every step draws fresh masks from one root key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def loss_fn(model, tokens, dt, mask, labels, label_smoothing: float = 0.0):
    """Mean cross-entropy and logits.

    Args:
        tokens, dt, mask: (B, L) int32 / float32 / bool.
        labels: (B,) int32 class ids, or (B, C) float32 soft labels (e.g. from event CutMix).
    Returns:
        (loss scalar, logits (B, C)).
    """
    logits = model(tokens, dt, mask)
    n_classes = logits.shape[-1]
    target = jax.nn.one_hot(labels, n_classes) if labels.ndim == 1 else labels
    if label_smoothing:
        target = optax.smooth_labels(target, label_smoothing)
    loss = optax.softmax_cross_entropy(logits, target).mean()
    return loss, logits


def _accuracy(logits, labels):
    hard = labels if labels.ndim == 1 else jnp.argmax(labels, -1)
    return jnp.mean(jnp.argmax(logits, -1) == hard)


def train_step(model, optimizer: nnx.Optimizer, tokens, dt, mask, labels, rng, label_smoothing: float = 0.0):
    """One optimizer update; returns ``{"loss", "accuracy", "grad_norm"}``."""
    model.train()
    nnx.reseed(model, dropout=rng)
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(model, tokens, dt, mask, labels, label_smoothing)
    optimizer.update(model, grads)
    return {"loss": loss, "accuracy": _accuracy(logits, labels), "grad_norm": optax.tree.norm(grads)}


def eval_step(model, tokens, dt, mask, labels):
    """Loss, correct count and predictions on one batch, dropout off."""
    model.eval()
    loss, logits = loss_fn(model, tokens, dt, mask, labels)
    pred = jnp.argmax(logits, -1)
    return {"loss": loss, "correct": jnp.sum(pred == labels), "pred": pred, "logits": logits}

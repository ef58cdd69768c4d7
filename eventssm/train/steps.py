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

from eventssm.models.ensemble import combine_logits, member_logits, n_members


def _targets(labels, n_classes: int, label_smoothing: float = 0.0):
    target = jax.nn.one_hot(labels, n_classes) if labels.ndim == 1 else labels
    if label_smoothing:
        target = optax.smooth_labels(target, label_smoothing)
    return target


def loss_fn(model, tokens, dt, mask, labels, label_smoothing: float = 0.0):
    """Training loss and logits.

    For one classifier the loss is the mean cross-entropy over the batch. For an ensemble of K
    members (:mod:`eventssm.models.ensemble`) it is ``Σ_k mean CE(z_k, y)``: each member's
    gradient is the one it would get alone; the logits returned are the ensemble's.

    Args:
        tokens, dt, mask: (B, L) int32 / float32 / bool.
        labels: (B,) int32 class ids, or (B, C) float32 soft labels (e.g. from event CutMix).
    Returns:
        (loss scalar, logits (B, C)).
    """
    z = member_logits(model, tokens, dt, mask)  # (K, B, C)
    target = _targets(labels, z.shape[-1], label_smoothing)
    loss = optax.softmax_cross_entropy(z, target[None]).mean(axis=-1).sum()
    if z.shape[0] == 1:
        return loss, z[0]
    return loss, combine_logits(z, axis=0)


def _reseed(model, key) -> None:
    """Fresh dropout keys: ``key`` itself for one classifier, ``split(key, K)`` for K members."""
    nnx.reseed(model, dropout=key, policy="match_shape")


def _accuracy(logits, labels):
    hard = labels if labels.ndim == 1 else jnp.argmax(labels, -1)
    return jnp.mean(jnp.argmax(logits, -1) == hard)


def train_step(model, optimizer: nnx.Optimizer, tokens, dt, mask, labels, rng, label_smoothing: float = 0.0):
    """One optimizer update; returns ``{"loss", "accuracy", "grad_norm"}``."""
    model.train()
    _reseed(model, rng)
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(model, tokens, dt, mask, labels, label_smoothing)
    optimizer.update(model, grads)
    return {"loss": loss / n_members(model), "accuracy": _accuracy(logits, labels), "grad_norm": optax.tree.norm(grads)}


def accumulated_step(model, optimizer: nnx.Optimizer, tokens, dt, mask, labels, rng, label_smoothing: float = 0.0):
    """One optimizer update from K micro-batches (gradient accumulation).

    The gradient is the mean of the K micro-batch gradients, ``g = (1/K) Σ_k ∇ L_k``, which is
    the gradient of the mean loss over the K·B rows (every micro-batch has B rows), so the update
    equals :func:`train_step` on the K-times-larger batch; only one micro-batch's activations are
    alive at a time (``lax.scan``). Micro-batch k draws its dropout masks from ``fold_in(rng, k)``.

    Args:
        tokens, dt, mask: (K, B, L).  labels: (K, B) ids or (K, B, C) soft labels.
    Returns:
        ``{"loss", "accuracy", "grad_norm"}`` (means over the K·B rows).
    """
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def micro(total, xs):
        t, d, m, y, k = xs

        def f(p):
            mdl = nnx.merge(graphdef, p, rest, copy=True)
            _reseed(mdl, jax.random.fold_in(rng, k))
            return loss_fn(mdl, t, d, m, y, label_smoothing)

        (loss, logits), g = jax.value_and_grad(f, has_aux=True)(params)
        return jax.tree.map(jnp.add, total, g), (loss, _accuracy(logits, y))

    n_micro = tokens.shape[0]
    zeros = jax.tree.map(jnp.zeros_like, params)
    xs = (tokens, dt, mask, labels, jnp.arange(n_micro))
    total, (losses, accs) = jax.lax.scan(micro, zeros, xs)
    grads = jax.tree.map(lambda g: g / n_micro, total)
    optimizer.update(model, grads)
    return {"loss": jnp.mean(losses) / n_members(model), "accuracy": jnp.mean(accs),
            "grad_norm": optax.tree.norm(grads)}


def eval_step(model, tokens, dt, mask, labels):
    """Loss, correct count and predictions on one batch, dropout off."""
    model.eval()
    logits = model(tokens, dt, mask)  # an ensemble's: log of its mean probabilities
    loss = optax.softmax_cross_entropy(logits, _targets(labels, logits.shape[-1])).mean()
    pred = jnp.argmax(logits, -1)
    return {"loss": loss, "correct": jnp.sum(pred == labels), "pred": pred, "logits": logits}

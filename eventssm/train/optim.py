"""Optimizer: parameter groups declared by the layers, schedules from optax.schedules.

A parameter belongs to the SSM group when its layer made it an
:class:`~eventssm.models.params.SSMParam` (S5: ``Lambda_re``, ``Lambda_im``, ``B``,
``log_step``; S7: ``Lambda_w``, ``Lambda_im``, ``U_w``, ``U_step``, ``b_step``, ``B``); every
other ``nnx.Param`` is in the regular group. The groups are read from the model's variable
types once, as the set of their paths, because optax sees plain arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from eventssm.models.params import SSMParam
from eventssm.train.config import TrainConfig


def _path_key(path) -> tuple:
    """The module path of a leaf: its dict keys (NNX may add a trailing attribute entry)."""
    return tuple(p.key for p in path if isinstance(p, jax.tree_util.DictKey))


def param_labels(model) -> Callable:
    """``params -> pytree of "ssm" / "regular"`` for the parameters of ``model``, by the kind
    each layer declared (:class:`SSMParam` or not)."""
    ssm = {tuple(path) for path, _ in nnx.to_flat_state(nnx.state(model, SSMParam))}

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "ssm" if _path_key(path) in ssm else "regular", params)

    return labels


def schedule(peak: float, cfg: TrainConfig) -> optax.Schedule:
    """Linear warm-up to ``peak``, cosine decay to ``peak * final_lr_ratio`` at ``cfg.steps``."""
    warmup = min(cfg.warmup_steps, max(cfg.steps - 1, 0))
    return optax.schedules.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup, decay_steps=max(cfg.steps, warmup + 1),
        end_value=peak * cfg.final_lr_ratio,
    )


def _member_group(path) -> object:
    """The member group of a leaf of an ensemble's parameters: the key after ``groups``."""
    keys = _path_key(path)
    return keys[keys.index("groups") + 1] if "groups" in keys[:-1] else None


def clip_by_member_norm(max_norm: float) -> optax.GradientTransformation:
    """``optax.clip_by_global_norm`` applied to each member of an ensemble on its own.

    In every member group (:class:`~eventssm.models.ensemble.EnsembleClassifier`) each leaf has
    a leading member axis of size K; member k's updates ``g_k`` are scaled by
    ``min(1, max_norm / ‖g_k‖)`` with ``‖g_k‖`` the norm over all of its leaves, so each member
    is clipped exactly as if it were trained alone.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        flat, treedef = jax.tree_util.tree_flatten_with_path(updates)
        sq: dict = {}
        for path, u in flat:
            g = _member_group(path)
            sq[g] = sq.get(g, 0.0) + jnp.sum(jnp.abs(u) ** 2, axis=tuple(range(1, u.ndim)))  # (K,)
        scale = {}
        for g, total in sq.items():
            norm = jnp.sqrt(total)
            scale[g] = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1.0), 1.0)
        out = []
        for path, u in flat:
            c = scale[_member_group(path)]
            out.append(u * c.reshape((-1,) + (1,) * (u.ndim - 1)).astype(u.dtype))
        return jax.tree_util.tree_unflatten(treedef, out), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(cfg: TrainConfig, model) -> optax.GradientTransformation:
    """AdamW (regular group, weight decay) and Adam (SSM group, ``ssm_lr``), after clipping
    (per member for an ensemble: :func:`clip_by_member_norm`)."""
    groups = {
        "regular": optax.adamw(schedule(cfg.lr, cfg), weight_decay=cfg.weight_decay),
        "ssm": optax.adam(schedule(cfg.ssm_lr, cfg)),
    }
    tx = optax.transforms.partition(groups, param_labels(model))
    if cfg.grad_clip > 0:
        from eventssm.models.ensemble import n_members

        clip = clip_by_member_norm if n_members(model) > 1 else optax.clip_by_global_norm
        tx = optax.chain(clip(cfg.grad_clip), tx)
    return tx

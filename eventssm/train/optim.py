"""Optimizer: two parameter groups selected by parameter path, schedules from optax.schedules."""

from __future__ import annotations

import jax
import optax

from eventssm.train.config import TrainConfig

#: parameter names (last path element) of the SSM group: eigenvalues, input matrix, step size
SSM_PARAM_PREFIXES = ("Lambda", "log_step", "B")


def _name(path) -> str:
    """Name of the parameter: the last dict key of the path (NNX adds a trailing ``.value``)."""
    for entry in reversed(path):
        if isinstance(entry, jax.tree_util.DictKey):
            return str(entry.key)
    return ""


def param_labels(params) -> object:
    """Pytree of "ssm" / "regular" labels mirroring ``params``.

    A parameter belongs to the SSM group when its name starts with one of
    :data:`SSM_PARAM_PREFIXES` (``Lambda_re``, ``Lambda_im``, ``B``, ``log_step``, ...).
    """

    def label(path, _):
        name = _name(path)
        return "ssm" if name.startswith(SSM_PARAM_PREFIXES) else "regular"

    return jax.tree_util.tree_map_with_path(label, params)


def schedule(peak: float, cfg: TrainConfig) -> optax.Schedule:
    """Linear warm-up to ``peak``, cosine decay to ``peak * final_lr_ratio`` at ``cfg.steps``."""
    warmup = min(cfg.warmup_steps, max(cfg.steps - 1, 0))
    return optax.schedules.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup, decay_steps=max(cfg.steps, warmup + 1),
        end_value=peak * cfg.final_lr_ratio,
    )


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW (regular group, weight decay) and Adam (SSM group, ``ssm_lr``), after clipping."""
    groups = {
        "regular": optax.adamw(schedule(cfg.lr, cfg), weight_decay=cfg.weight_decay),
        "ssm": optax.adam(schedule(cfg.ssm_lr, cfg)),
    }
    tx = optax.transforms.partition(groups, param_labels)
    if cfg.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
    return tx

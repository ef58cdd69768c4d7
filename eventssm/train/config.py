"""Typed, immutable training configuration (saved as JSON beside every checkpoint)."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

from eventssm.train.augment import RECIPES

#: TrainConfig.sampling values
SAMPLING = ("uniform", "balanced")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe.

    The defaults are the recipe measured to hold on recordings the model never saw (real
    DVS128 takes left out one at a time, ``benchmarks/bench_learning.py``; docs/recipe.md):
    geometric event augmentation, event CutMix, label smoothing and class-balanced sampling.
    ``augment="none", cutmix=0, label_smoothing=0, sampling="uniform"`` is the recipe before.

    Attributes:
        steps: optimizer updates.
        batch_size: sequences per step.
        crop_events: training sequences are random crops of at most this many events
            (evaluation uses whole samples, padded to buckets).
        lr: peak learning rate of the regular group (AdamW with weight decay).
        ssm_lr: peak learning rate of the SSM group (Λ, B, log step; no weight decay), the
            split of the S5 recipe (Smith et al. 2023, §B.1).
        weight_decay: AdamW decay of the regular group.
        warmup_steps: linear warm-up, then cosine decay to ``lr * final_lr_ratio``.
        grad_clip: global-norm clipping (0 disables).
        label_smoothing: cross-entropy smoothing.
        seed: seeds parameter init, dropout and data order.
        eval_every: evaluate on the validation set every N steps (0: only at the end).
        buckets: padded lengths allowed (bounded number of compiled shapes).
        augment: event augmentation of the training crops, a recipe of
            :mod:`eventssm.train.augment` ("none", "basic", "geometric").
        cutmix: probability that a training sample is mixed with another one of its batch by
            event CutMix (soft labels).
        accumulate: micro-batches of ``batch_size`` rows per update (gradient accumulation: the
            update equals one on a ``accumulate × batch_size`` batch).
        val_fraction: share of each class's recordings held out for validation (the split
            is a function of ``seed``).
        val_group: which recordings are one take, held out together
            (:func:`~eventssm.train.data.validation_groups` on the paths the cache stores):
            "auto" (recordings named alike up to a trailing number, when some class then has
            several takes), a regular expression, or "none" / None (every recording on its own;
            runs saved before this field read as None).
        patience: stop after this many validations without a better one (0: never).
        checkpoint_every: save every N steps; 0 chooses by time so that saving costs < 2 %
            of the training time (:func:`eventssm.train.fit.fit`).
        keep: most recent checkpoints kept (the best by validation is kept besides).
        log_every: steps per record of the running means in ``metrics.jsonl``.
        sampling: "uniform" (every sample once per epoch) or "balanced" (classes drawn equally
            often, :func:`~eventssm.train.data.balanced_weights`).
    """

    steps: int = 1000
    batch_size: int = 16
    crop_events: int = 4096
    lr: float = 4e-3
    ssm_lr: float = 1e-3
    weight_decay: float = 0.02
    warmup_steps: int = 100
    final_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    seed: int = 0
    eval_every: int = 0
    buckets: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
    accumulate: int = 1
    val_fraction: float = 0.2
    val_group: str | None = "auto"
    patience: int = 0
    checkpoint_every: int = 0
    keep: int = 2
    log_every: int = 25
    augment: str = "geometric"
    cutmix: float = 0.5
    sampling: str = "balanced"

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.crop_events < 1:
            raise ValueError("steps, batch_size and crop_events must be >= 1")
        if not (self.lr > 0 and self.ssm_lr > 0):
            raise ValueError("learning rates must be > 0")
        if self.warmup_steps < 0 or not 0 <= self.label_smoothing < 1:
            raise ValueError("warmup_steps must be >= 0 and label_smoothing in [0, 1)")
        if self.augment not in RECIPES:
            raise ValueError(f"augment must be one of {', '.join(RECIPES)}, got {self.augment!r}")
        if not 0.0 <= self.cutmix <= 1.0:
            raise ValueError(f"cutmix must be a probability in [0, 1], got {self.cutmix}")
        if self.accumulate < 1 or self.keep < 1 or self.log_every < 1:
            raise ValueError("accumulate, keep and log_every must be >= 1")
        if self.patience < 0 or self.checkpoint_every < 0 or self.eval_every < 0:
            raise ValueError("patience, checkpoint_every and eval_every must be >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.val_group not in (None, "auto", "none"):
            try:
                re.compile(self.val_group)
            except re.error as exc:
                raise ValueError(f"val_group {self.val_group!r} is not a regular expression: {exc}") from None
        if self.sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}")
        object.__setattr__(self, "buckets", tuple(sorted(int(b) for b in self.buckets)))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        d = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        if "buckets" in d:
            d["buckets"] = tuple(d["buckets"])
        d.setdefault("val_group", None)  # saved before the field: the split by recording
        return cls(**d)

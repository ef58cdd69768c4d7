"""Checks that run before the first step compiles: each problem is one line naming the fix."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eventssm.train.config import TrainConfig


class PreflightError(ValueError):
    """A training set-up that would fail (or waste the run) later."""


def check_lengths(lengths: np.ndarray, indices: Sequence[int], buckets: Sequence[int], *, what: str,
                  where: str) -> None:
    """Every sample of ``indices`` fits the largest padded length (whole samples are evaluated).

    Raises:
        PreflightError: naming the longest sample and ``--slice-events``.
    """
    idx = np.asarray(indices, np.int64)
    if len(idx) == 0:
        return
    longest = int(np.max(np.asarray(lengths)[idx]))
    limit = int(max(buckets))
    if longest > limit:
        n_over = int(np.sum(np.asarray(lengths)[idx] > limit))
        raise PreflightError(
            f"{where}: {n_over} {what + ' ' if what else ''}sample(s) hold more events (up to {longest:,}) "
            f"than the largest padded length {limit:,}; cut them with "
            f"`eventssm preprocess --slice-events {limit}` (or fewer)")


def check_classes(labels: np.ndarray, train: Sequence[int], class_names: Sequence[str], *, where: str) -> list[str]:
    """Labels are valid class ids and the training split has at least two classes.

    Returns:
        notes (one line each) for classes without any training sample.
    Raises:
        PreflightError: unlabelled samples, ids outside the class list, or fewer than 2 classes.
    """
    labels = np.asarray(labels)
    n = len(class_names)
    if n < 2 or labels.size == 0 or labels.min() < 0 or labels.max() >= n:
        raise PreflightError(f"{where}: training needs a labelled cache with at least two classes")
    present = np.unique(labels[np.asarray(train, np.int64)])
    if len(present) < 2:
        raise PreflightError(f"{where}: the training split holds a single class; lower --val-fraction")
    missing = [class_names[c] for c in range(n) if c not in set(present.tolist())]
    return [f"class {name!r} has no training sample (all its recordings went to validation)" for name in missing]


def check_devices(cfg: TrainConfig, n_devices: int) -> None:
    if cfg.batch_size % n_devices:
        raise PreflightError(f"--batch-size {cfg.batch_size} is not divisible by the {n_devices} devices; "
                             f"use a multiple of {n_devices} or --devices")


def checkpoint_bytes(n_params: int) -> int:
    """Upper estimate of one checkpoint: parameters and Adam's two moments in float32, plus
    1 MiB of metadata (the run description, the data order)."""
    return 3 * 4 * int(n_params) + (1 << 20)


def check_disk(run: Path, n_params: int, cfg: TrainConfig) -> None:
    """Room for ``keep`` + 2 checkpoints (the best, and one being written)."""
    anc = Path(run).absolute()
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    need = (cfg.keep + 2) * checkpoint_bytes(n_params)
    free = shutil.disk_usage(anc).free
    if free < need:
        raise PreflightError(f"{run}: {free / 2**20:.1f} MiB free, checkpoints need about {need / 2**20:.1f} MiB "
                             "(lower --keep or choose another disk)")

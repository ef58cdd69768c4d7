"""Training loop and evaluation over a token dataset."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eventssm.train.augment import TokenAugment, recipe
from eventssm.train.config import TrainConfig
from eventssm.train.data import batches
from eventssm.train.optim import make_optimizer
from eventssm.train.steps import eval_step, train_step

log = logging.getLogger(__name__)

_eval_step = nnx.jit(eval_step)  # one compiled function per input shape, shared by every call


def evaluate(
    model,
    dataset,
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 16,
    buckets: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Accuracy, mean loss and confusion matrix on whole samples (no crops, dropout off).

    When the dataset says which recording each sample was cut from (``source_index``, as a
    sliced :class:`~eventssm.tokenizers.dataset.TokenDataset` does) and some recording gave
    several samples, the result also holds the accuracy by recording: each recording's class is
    the argmax of the mean of its samples' log-probabilities.

    Returns:
        ``{"accuracy", "loss", "n", "confusion"}``, plus ``"recordings": {"accuracy", "n",
        "confusion"}`` in the case above; ``confusion[i][j]`` counts samples (recordings) of
        true class i predicted as j.
    """
    n_classes = model.config.n_classes
    confusion = np.zeros((n_classes, n_classes), np.int64)
    total_loss, n = 0.0, 0
    rows, log_probs, true = [], [], []
    for b in batches(dataset, batch_size, indices=indices, buckets=buckets, shuffle=False):
        out = _eval_step(model, b.tokens, b.dt, b.mask, jnp.asarray(b.labels))
        pred = np.asarray(out["pred"])
        np.add.at(confusion, (np.asarray(b.labels), pred), 1)
        total_loss += float(out["loss"]) * len(pred)
        n += len(pred)
        rows.append(b.index)
        log_probs.append(np.asarray(jax.nn.log_softmax(out["logits"], -1)))
        true.append(np.asarray(b.labels))
    acc = float(np.trace(confusion) / max(n, 1))
    res = {"accuracy": acc, "loss": total_loss / max(n, 1), "n": n, "confusion": confusion.tolist()}
    sources = getattr(dataset, "source_index", None)
    if sources is not None and n:
        by_rec = recording_votes(np.asarray(sources)[np.concatenate(rows)], np.concatenate(log_probs),
                                 np.concatenate(true), n_classes)
        if by_rec is not None:
            res["recordings"] = by_rec
    return res


def recording_log_probs(source: np.ndarray, log_probs: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each recording's mean sample log-probability, the vote of :func:`recording_votes`
    (also used by :mod:`eventssm.predict` for the slices of one file).

    Args:
        source: (K,) recording of each sample.  log_probs: (K, C).
    Returns:
        ``(recordings (R,), inverse (K,) row of each sample, counts (R,), means (R, C))`` with
        ``means[r, c] = mean_{k: source_k = r} log_probs[k, c]``.
    """
    recs, inverse, counts = np.unique(source, return_inverse=True, return_counts=True)
    sums = np.zeros((len(recs), log_probs.shape[1]))
    np.add.at(sums, inverse, log_probs)
    return recs, inverse, counts, sums / np.maximum(counts, 1)[:, None]


def recording_votes(source: np.ndarray, log_probs: np.ndarray, labels: np.ndarray,
                    n_classes: int) -> dict[str, Any] | None:
    """Accuracy by recording from per-sample log-probabilities.

    Args:
        source: (K,) recording of each sample.  log_probs: (K, C).  labels: (K,) class ids.
    Returns:
        ``{"accuracy", "n", "confusion"}`` where recording r is predicted as
        ``argmax_c mean_{k: source_k = r} log_probs[k, c]`` (its label: that of its samples), or
        None when every recording gave a single sample (the sample accuracy says it all).
    """
    recs, inverse, counts, means = recording_log_probs(source, log_probs)
    if counts.max(initial=0) < 2:
        return None
    pred = np.argmax(means, axis=1)
    label = np.zeros(len(recs), np.int64)
    label[inverse] = labels
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (label, pred), 1)
    return {"accuracy": float(np.mean(pred == label)), "n": len(recs), "confusion": confusion.tolist()}


def _augmentation(dataset, cfg: TrainConfig, n_classes: int) -> TokenAugment | None:
    """The :class:`TokenAugment` of ``cfg`` on the dataset's grid and time unit (None: none)."""
    if cfg.augment == "none" and cfg.cutmix == 0:
        return None
    grid = getattr(dataset, "grid_size", None)
    settings = getattr(dataset, "settings", None)
    if grid is None or settings is None:
        raise ValueError("augment/cutmix need a TokenDataset (its grid_size and time unit)")
    return TokenAugment(grid, settings.time_unit, recipe(cfg.augment, grid), cfg.cutmix, n_classes)


def fit(
    model,
    dataset,
    cfg: TrainConfig,
    *,
    train_indices: Sequence[int] | None = None,
    val_indices: Sequence[int] | None = None,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    log_every: int = 10,
) -> dict[str, Any]:
    """Train ``model`` in place for ``cfg.steps`` updates.

    Args:
        model: an EventClassifier (its config's ``n_classes`` must cover the labels).
        dataset: TokenDataset-like, ``dataset[i] -> (tokens, dt, label)``.
        cfg: the recipe.
        train_indices / val_indices: sample subsets (default: all for training, none for validation).
        on_log: called every ``log_every`` steps with the running means.
        log_every: steps between logs (>= 1).
    Returns:
        ``{"train": [...per-log metrics...], "val": [...], "seconds": float}``.
    Raises:
        ValueError: ``log_every < 1``, no training samples, or ``cfg.augment``/``cfg.cutmix``
            with a dataset that is not a TokenDataset (no ``grid_size``/``settings``).
    """
    if int(log_every) < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every}")
    n_train = len(dataset) if train_indices is None else len(train_indices)
    if n_train == 0:
        raise ValueError("no training samples: the dataset (or train_indices) is empty")
    augment = _augmentation(dataset, cfg, model.config.n_classes)
    rng = np.random.default_rng(cfg.seed)
    root = jax.random.key(cfg.seed)
    optimizer = nnx.Optimizer(model, make_optimizer(cfg), wrt=nnx.Param)
    ls = float(cfg.label_smoothing)

    @nnx.jit
    def step_fn(model, optimizer, tokens, dt, mask, labels, key):
        return train_step(model, optimizer, tokens, dt, mask, labels, key, label_smoothing=ls)

    # full batches only (one compiled shape) unless the training set is smaller than a batch
    stream = batches(dataset, cfg.batch_size, rng, indices=train_indices, crop_events=cfg.crop_events,
                     buckets=cfg.buckets, shuffle=True, drop_last=n_train >= cfg.batch_size, epochs=None,
                     augment=augment, balance=cfg.sampling == "balanced")
    history: dict[str, Any] = {"train": [], "val": []}
    running: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        b = next(stream)
        metrics = step_fn(model, optimizer, b.tokens, b.dt, b.mask, jnp.asarray(b.labels),
                          jax.random.fold_in(root, step))
        for k, v in metrics.items():
            running.setdefault(k, []).append(float(v))
        if step % log_every == 0 or step == cfg.steps:
            means = {k: float(np.mean(v)) for k, v in running.items()}
            means["step"] = step
            history["train"].append(means)
            log.info("step %d loss %.4f acc %.3f", step, means["loss"], means["accuracy"])
            if on_log is not None:
                on_log(step, means)
            running = {}
        if val_indices is not None and len(val_indices) and (
            (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps
        ):
            res = evaluate(model, dataset, indices=val_indices, batch_size=cfg.batch_size, buckets=cfg.buckets)
            res["step"] = step
            history["val"].append(res)
            log.info("step %d val accuracy %.3f", step, res["accuracy"])
    history["seconds"] = time.perf_counter() - t0
    model.eval()
    return history

"""Training loop and evaluation over a token dataset."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from eventssm.tokenizers.batching import Batch
from eventssm.train.augment import TokenAugment, recipe
from eventssm.train.config import TrainConfig
from eventssm.train.data import batches
from eventssm.train.steps import eval_step

log = logging.getLogger(__name__)

_eval_step = nnx.jit(eval_step)  # one compiled function per input shape, shared by every call


def eval_batches(model, dataset, *, indices: Sequence[int] | None = None, batch_size: int = 16,
                 buckets: Sequence[int] | None = None) -> Iterator[tuple[Batch, dict[str, Any]]]:
    """``(batch, eval_step outputs)`` over whole samples (no crops, dropout off), grouped by
    length so little is padded; :func:`evaluate` and
    :func:`~eventssm.train.calibrate.collect_logits` read the model through it."""
    for b in batches(dataset, batch_size, indices=indices, buckets=buckets, shuffle=False):
        yield b, _eval_step(model, b.tokens, b.dt, b.mask, jnp.asarray(b.labels))


def evaluate(
    model,
    dataset,
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 16,
    buckets: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Accuracy, mean loss and confusion matrix on whole samples (no crops, dropout off).

    With ``temperature`` (the run's calibration, ``RUN/calibration.json``) the result also
    says how well calibrated the probabilities are on these samples: ``"calibration":
    {"temperature", "ece_before", "ece_after", "nll_before", "nll_after"}``, ECE with
    :data:`~eventssm.train.calibrate.ECE_BINS` bins of ``softmax(z)`` and ``softmax(z / T)``.

    ``progress``, when given, is called with the number of samples of every batch done.

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
    rows, true, logits = [], [], []
    for b, out in eval_batches(model, dataset, indices=indices, batch_size=batch_size, buckets=buckets):
        pred = np.asarray(out["pred"])
        np.add.at(confusion, (np.asarray(b.labels), pred), 1)
        total_loss += float(out["loss"]) * len(pred)
        n += len(pred)
        rows.append(b.index)
        logits.append(np.asarray(out["logits"], np.float64))
        true.append(np.asarray(b.labels))
        if progress is not None:
            progress(len(pred))
    acc = float(np.trace(confusion) / max(n, 1))
    res = {"accuracy": acc, "loss": total_loss / max(n, 1), "n": n, "confusion": confusion.tolist()}
    if not n:
        return res
    from eventssm.train.calibrate import ece, log_softmax, nll

    z, y = np.concatenate(logits), np.concatenate(true)
    if temperature is not None:
        res["calibration"] = {
            "temperature": float(temperature),
            "ece_before": ece(np.exp(log_softmax(z)), y), "ece_after": ece(np.exp(log_softmax(z / temperature)), y),
            "nll_before": nll(z, y), "nll_after": nll(z, y, temperature),
        }
    sources = getattr(dataset, "source_index", None)
    if sources is not None:
        by_rec = recording_votes(np.asarray(sources)[np.concatenate(rows)], log_softmax(z), y, n_classes)
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



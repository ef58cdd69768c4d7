"""Calibrated probabilities: temperature scaling fitted on validation logits, and the ECE.

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) divides
every logit vector by one scalar ``T > 0`` chosen to minimize the negative log-likelihood of
held-out samples:

    p_T(c | z) = softmax(z / T)_c,       T* = argmin_T  -(1/K) Σ_k log p_T(y_k | z_k)

It changes no prediction (the argmax of ``z / T`` is that of ``z``), only how sure the model
says it is. ``T`` is fitted over ``log T`` (the NLL is smooth in it and ``T`` stays positive) by a
coarse grid followed by Newton steps on the exact first and second derivatives.

When the model classifies every validation sample correctly, the NLL keeps falling as
``T → 0`` (every correct softmax tends to 1): the minimum does not exist, as the maximum
likelihood of a logistic regression on separable data does not. :func:`fit_temperature` then
keeps ``T = 1`` instead of returning the edge of its search range: a validation split without
a single error says nothing about how sure the model should be where it errs. (Measured on the
DVS128 activities, benchmarks/RESULTS.md: validation windows cut from the training takes were
all correct, the unbounded fit gave ``T = 0.01`` and raised the ECE on a new take.)

**Only softening (T ≥ 1) by default.** The validation split is no harder than the recordings
the model will meet, and often easier: 1-s files cut from the training takes are near copies of
training windows. There a model trained with label smoothing looks under-confident and the
unconstrained fit sharpens it (``T < 1``), undoing the smoothing exactly where new data needs
it. On the DVS128 activities (leave one take out) the unconstrained fit gave ``T = 0.38`` and
``0.01`` on the first two folds and raised the test ECE from 0.075 to 0.170 and from 0.198 to
0.278; over the six folds the mean test ECE was 0.173 with ``T = 1`` and 0.212 with the
fitted ``T`` (lower on two folds, where the model was under-confident on the new take), and
``T = 0.01`` turned every answer, right or wrong, into probability 1.
:func:`fit_temperature` therefore searches ``T ≥ 1`` unless told otherwise
(``min_temperature``): it softens a model that is over-confident on its validation split and
otherwise leaves the probabilities as trained.

The expected calibration error (Naeini et al. 2015; Guo et al. 2017) uses **15 equal-width
confidence bins** over (0, 1]: with ``conf_k = max_c p(c | z_k)`` and bin ``m`` holding
``conf ∈ ((m-1)/15, m/15]``,

    ECE = Σ_m (|B_m| / K) · |acc(B_m) − conf(B_m)|.

Numpy only: the functions take logits as arrays, so that both ``train`` (validation split) and
``benchmarks/bench_learning.py`` (test takes) use them. :func:`collect_logits` is the one piece
that runs the model.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: number of equal-width confidence bins of :func:`ece`
ECE_BINS = 15
#: file name of the fitted temperature in a checkpoint folder
CALIBRATION_FILE = "calibration.json"
# log T is searched in [-LOG_T_RANGE, LOG_T_RANGE] (T from 1/150 to 150)
_LOG_T_RANGE = 5.0
#: default lower bound of the fitted temperature: calibration only softens (module docstring)
MIN_TEMPERATURE = 1.0


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``z`` (K, C), float64, stable for large logits."""
    z = np.asarray(z, np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` (K,) under ``softmax(logits / T)``, logits (K, C)."""
    labels = np.asarray(labels, np.int64)
    lp = log_softmax(np.asarray(logits, np.float64) / float(temperature))
    return float(-np.mean(lp[np.arange(len(labels)), labels]))


def _nll_derivatives(z: np.ndarray, labels: np.ndarray, s: float) -> tuple[float, float, float]:
    """NLL and its first two derivatives in ``s = log T``.

    With ``u = z e^{-s}`` (K, C), ``p = softmax(u)``, ``ū = Σ_c p_c u_c`` and
    ``v = Σ_c p_c u_c² − ū²``: ``f = mean(logsumexp(u) − u_y)``,
    ``f' = mean(u_y − ū)`` and ``f'' = mean(v − u_y + ū)``.
    """
    u = z * math.exp(-s)
    lp = log_softmax(u)
    p = np.exp(lp)
    uy = u[np.arange(len(labels)), labels]
    ubar = np.sum(p * u, axis=1)
    var = np.sum(p * u * u, axis=1) - ubar * ubar
    f = float(-np.mean(lp[np.arange(len(labels)), labels]))
    return f, float(np.mean(uy - ubar)), float(np.mean(var - uy + ubar))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, min_temperature: float = MIN_TEMPERATURE,
                    newton_steps: int = 20) -> float:
    """Temperature ``T ≥ min_temperature`` minimizing :func:`nll` of ``labels`` under
    ``softmax(logits / T)``.

    Args:
        logits: (K, C) validation logits.  labels: (K,) class ids.
        min_temperature: lower bound of ``T`` (default 1: only soften, see the module
            docstring); ``math.exp(-5)`` gives the unconstrained fit of Guo et al.
        newton_steps: Newton iterations in ``log T`` after the grid search.
    Returns:
        ``T`` in ``[max(min_temperature, e^-5), e^5]``; 1.0 when there are no samples or when
        every sample's argmax is its label (no finite minimum, see the module docstring). Its
        NLL is never above that of the best grid point nor of ``T = 1`` (when allowed).
    Raises:
        ValueError: shapes that do not match, or labels outside ``[0, C)``.
    """
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)
    if z.ndim != 2 or y.shape != (len(z),):
        raise ValueError(f"need logits (K, C) and labels (K,), got {z.shape} and {y.shape}")
    if len(y) == 0:
        return 1.0
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in [0, {z.shape[1]})")
    if np.all(np.argmax(z, axis=1) == y):
        log.info("every validation sample is right: the temperature is not identifiable, kept at 1")
        return max(1.0, float(min_temperature))
    lo = max(math.log(min_temperature), -_LOG_T_RANGE) if min_temperature > 0 else -_LOG_T_RANGE
    grid = np.linspace(lo, _LOG_T_RANGE, 101)
    values = [nll(z, y, math.exp(s)) for s in grid]
    s = float(grid[int(np.argmin(values))])
    best_s, best_f = s, min(values)
    for _ in range(newton_steps):
        f, g, h = _nll_derivatives(z, y, s)
        if f < best_f:
            best_s, best_f = s, f
        if abs(g) < 1e-10:
            break
        # Newton where the NLL is convex in s, a small gradient step elsewhere
        step = -g / h if h > 1e-12 else -0.1 * math.copysign(1.0, g)
        s = float(np.clip(s + np.clip(step, -1.0, 1.0), lo, _LOG_T_RANGE))
    f = nll(z, y, math.exp(s))
    if f < best_f:
        best_s, best_f = s, f
    if lo <= 0.0 and nll(z, y, 1.0) <= best_f:  # never worse than leaving the logits alone
        return 1.0
    return math.exp(best_s)


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error with ``n_bins`` equal-width confidence bins over (0, 1].

    Args:
        probs: (K, C) class probabilities.  labels: (K,) class ids.
    Returns:
        ``Σ_m |B_m|/K · |acc(B_m) − conf(B_m)|`` (0.0 for no samples); a confidence of exactly
        ``m / n_bins`` falls in bin ``m`` (right-closed bins).
    """
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, np.int64)
    if len(y) == 0:
        return 0.0
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    total = 0.0
    for m in range(n_bins):
        sel = bins == m
        if sel.any():
            total += sel.sum() / len(y) * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def calibration_report(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Fit ``T`` on ``(logits, labels)`` and measure NLL and ECE before and after.

    Returns:
        ``{"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "n",
        "ece_bins"}`` (plain floats/ints, JSON-ready).
    """
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)
    t = fit_temperature(z, y)
    return {
        "temperature": t,
        "ece_before": ece(np.exp(log_softmax(z)), y),
        "ece_after": ece(np.exp(log_softmax(z / t)), y),
        "nll_before": nll(z, y),
        "nll_after": nll(z, y, t),
        "n": len(y),
        "ece_bins": ECE_BINS,
    }


def write_calibration(folder: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write ``report`` as ``folder/calibration.json`` (temporary file, then rename)."""
    from eventssm.io.writers import write_bytes_atomic

    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    return write_bytes_atomic(Path(folder) / CALIBRATION_FILE, text.encode())


def collect_logits(
    model,
    dataset,
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 16,
    buckets: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits of whole samples (no crops, dropout off), as :func:`~eventssm.train.loop.evaluate`
    computes them.

    Returns:
        ``(logits (K, C) float64, labels (K,) int64, index (K,) int64)``: ``index`` holds the
        dataset index of each row (rows are grouped by length, not in ``indices`` order).
    """
    from eventssm.train.loop import eval_batches

    out_z, out_y, out_i = [], [], []
    for b, res in eval_batches(model, dataset, indices=indices, batch_size=batch_size, buckets=buckets):
        out_z.append(np.asarray(res["logits"], np.float64))
        out_y.append(np.asarray(b.labels, np.int64))
        out_i.append(np.asarray(b.index, np.int64))
    if not out_z:
        n_classes = model.config.n_classes
        return np.zeros((0, n_classes)), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_z), np.concatenate(out_y), np.concatenate(out_i)

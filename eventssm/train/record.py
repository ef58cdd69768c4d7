"""The record of a run: ``RUN/metrics.jsonl`` (one JSON object per line, appended and flushed
while training, so ``tail -f`` works) and per-class statistics of a confusion matrix."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

METRICS = "metrics.jsonl"


def per_class(confusion) -> dict[str, list[float]]:
    """Per-class precision, recall and F1 of a confusion matrix.

    Args:
        confusion: (C, C) counts, ``confusion[i][j]`` = samples of true class i predicted as j.
    Returns:
        ``{"precision", "recall", "f1", "support"}``, lists of C values:
        ``precision_j = M_jj / Σ_i M_ij``, ``recall_i = M_ii / Σ_j M_ij``,
        ``F1 = 2 P R / (P + R)``; 0 where the denominator is 0 (no prediction / no sample).
    """
    m = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(m)
    predicted, actual = m.sum(0), m.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": actual.astype(np.int64).tolist()}


def _clean(v: Any) -> Any:
    """JSON-safe value: numpy scalars as Python numbers, non-finite floats as None."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLog:
    """Appends records to ``RUN/metrics.jsonl``; each record is one line, flushed at once."""

    def __init__(self, run: str | os.PathLike):
        self.path = Path(run) / METRICS

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_clean(record)) + "\n")
            f.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step`` (written after the checkpoint a resume starts
        from); the file is replaced atomically."""
        if not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= step]
        tmp = self.path.with_name(f".{METRICS}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.path)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics file (a torn last line, from a killed run, is ignored)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out

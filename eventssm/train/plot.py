"""Pictures of a run, drawn from ``RUN/metrics.jsonl`` alone (matplotlib, Agg backend):
training curves (loss, accuracy, learning rates, throughput) and a confusion matrix."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eventssm.train.record import METRICS, read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write atomically (temporary file, then rename)."""
    from eventssm.outputs import atomic_output

    with atomic_output(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def plot_curves(records: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Four panels: loss, accuracy (training running means and validation), learning rates,
    tokens/s with the data-wait share."""
    plt = _pyplot()
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]

    def series(rs, key):
        pts = [(r["step"], r[key]) for r in rs if r.get(key) is not None]
        return ([p[0] for p in pts], [p[1] for p in pts])

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    ax = axes[0, 0]
    ax.plot(*series(train, "loss"), label="training (running mean)")
    ax.plot(*series(val, "loss"), "o-", label="validation")
    ax.set(title="loss", xlabel="step")
    ax.legend()
    ax = axes[0, 1]
    ax.plot(*series(train, "accuracy"), label="training (running mean)")
    ax.plot(*series(val, "accuracy"), "o-", label="validation")
    best = [r for r in val if r.get("best_step") == r["step"]]
    if best:
        ax.axvline(best[-1]["step"], color="gray", ls="--", lw=1, label=f"best (step {best[-1]['step']})")
    ax.set(title="accuracy", xlabel="step", ylim=(-0.02, 1.02))
    ax.legend()
    ax = axes[1, 0]
    ax.plot(*series(train, "lr"), label="lr")
    ax.plot(*series(train, "ssm_lr"), label="ssm_lr")
    ax.set(title="learning rates", xlabel="step")
    ax.legend()
    ax = axes[1, 1]
    ax.plot(*series(train, "tokens_per_s"), color="C0")
    ax.set(title="throughput", xlabel="step")
    ax.set_ylabel("tokens/s", color="C0")
    ax2 = ax.twinx()
    steps, wait = series(train, "data_wait")
    ax2.plot(steps, [100 * w for w in wait], color="C3")
    ax2.set_ylabel("waiting for data (%)", color="C3")
    from matplotlib.ticker import MaxNLocator

    for a in axes.flat:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_confusion(confusion, class_names: Sequence[str], path: str | os.PathLike, title: str = "") -> Path:
    """Confusion matrix: rows true classes, columns predictions; counts in the cells, colour
    by the row's share (recall on the diagonal)."""
    plt = _pyplot()
    m = np.asarray(confusion, dtype=np.int64)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(class_names)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, label="share of the true class")
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_run(run: str | os.PathLike, class_names: Sequence[str] | None = None) -> list[Path]:
    """Draw ``RUN/curves.png`` and (when the run was validated) ``RUN/confusion.png`` (the
    validation confusion matrix of the best step) from ``RUN/metrics.jsonl``.

    Raises:
        FileNotFoundError: no ``metrics.jsonl`` in ``run``.
    """
    run = Path(run)
    records = read_metrics(run / METRICS)
    out = [plot_curves(records, run / "curves.png", title=run.name)]
    val = [r for r in records if r.get("kind") == "val" and r.get("confusion")]
    if val:
        best_step = val[-1].get("best_step")
        best = next((r for r in val if r["step"] == best_step), val[-1])
        names = list(class_names) if class_names else [str(i) for i in range(len(best["confusion"]))]
        out.append(plot_confusion(best["confusion"], names, run / "confusion.png",
                                  title=f"validation, step {best['step']}: accuracy {best['accuracy']:.3f}"))
    return out

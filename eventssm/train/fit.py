"""The training loop: ``fit`` runs the steps, validates, records, checkpoints and resumes.

One step (``accumulated_step``, K micro-batches of B rows) on a batch sharded over the ``data``
axis of the device mesh (:mod:`eventssm.train.parallel`), batches assembled ahead by a
background thread (:mod:`eventssm.train.stream`). With a run folder:

* every ``cfg.log_every`` steps a ``{"kind": "train", ...}`` record (running means of loss,
  accuracy, gradient norm; learning rates; tokens/s; the share of the time spent waiting for
  data) and after every validation a ``{"kind": "val", ...}`` record go to ``metrics.jsonl``;
* checkpoints (:class:`~eventssm.train.checkpoint.RunCheckpoints`) every
  ``cfg.checkpoint_every`` steps (0: whenever the time since the last save reaches
  ``max(60 × the last save's duration, 60 s)``, so saving costs < 2 % of the time), at every
  validation, at the end, and when SIGINT/SIGTERM asked to stop (then
  :class:`~eventssm.train.interrupt.Interrupted` is raised);
* ``resume=True`` restores the newest intact checkpoint: parameters, optimizer state, root key,
  data order and the running log window, so the continued run computes exactly what the
  uninterrupted one would have (same batches, same dropout keys ``fold_in(root, step)``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eventssm.train.checkpoint import RunCheckpoints, best_metric
from eventssm.train.config import TrainConfig
from eventssm.train.interrupt import Interrupted
from eventssm.train.loop import _augmentation, evaluate
from eventssm.train.optim import make_optimizer, schedule
from eventssm.train.parallel import make_mesh, replicate, shard_batch
from eventssm.train.record import MetricsLog, per_class, read_metrics
from eventssm.train.spec import CheckpointError
from eventssm.train.steps import accumulated_step, train_step
from eventssm.train.stream import Prefetcher, TrainOrder

log = logging.getLogger(__name__)

#: automatic checkpoints: at most one save per this many seconds of training, and per
#: ``SAVE_COST_FACTOR`` times the duration of the last save (cost <= 1/60, under 2 %)
MIN_SAVE_INTERVAL_S = 60.0
SAVE_COST_FACTOR = 60.0


class Callbacks:
    """What ``fit`` reports while it runs (the CLI prints it; every method is optional)."""

    def note(self, message: str) -> None: ...
    def compiling(self) -> None: ...
    def compiled(self, seconds: float) -> None: ...
    def started(self, first_step: int, last_step: int) -> None: ...
    def stepped(self, step: int, metrics: dict[str, float]) -> None: ...
    def logged(self, record: dict[str, Any]) -> None: ...
    def validated(self, record: dict[str, Any]) -> None: ...
    def saved(self, step: int, path: Path, seconds: float) -> None: ...


def _means(running: dict[str, list[float]]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in running.items() if v}


def fit(
    model,
    dataset,
    cfg: TrainConfig,
    *,
    train_indices: Sequence[int] | None = None,
    val_indices: Sequence[int] | None = None,
    run: str | Path | None = None,
    spec=None,
    resume: bool = False,
    devices: int | None = None,
    callbacks: Callbacks | None = None,
    stop=None,
) -> dict[str, Any]:
    """Train ``model`` in place for ``cfg.steps`` updates (fewer on early stopping).

    Args:
        model: an EventClassifier (its config's ``n_classes`` covers the labels).
        dataset: TokenDataset-like, ``dataset[i] -> (tokens, dt, label)``.
        cfg: the recipe (``batch_size`` rows per micro-batch, ``accumulate`` micro-batches per step).
        train_indices / val_indices: sample subsets (default: all for training, none for validation).
        run: run folder for checkpoints and ``metrics.jsonl`` (None: nothing is written).
        spec: the :class:`~eventssm.train.spec.RunSpec` stored in every checkpoint.
        resume: continue from the newest intact checkpoint of ``run``.
        devices: devices of the data-parallel mesh (default: all).
        callbacks: progress reports.
        stop: an object whose ``requested`` attribute is polled after every step
            (:class:`eventssm.cli.stop.StopRequest`: SIGINT/SIGTERM).
    Returns:
        ``{"train": [...], "val": [...], "seconds", "best_step", "last_step", "stopped_early"}``;
        with validation and a run folder the model ends holding the best checkpoint's
        parameters, otherwise the last ones.
    Raises:
        Interrupted: ``stop`` was requested (after saving when ``run`` is given).
        CheckpointError: ``resume`` without an intact checkpoint, or one of another split.
        ValueError: no training samples, batch not divisible by the devices.
    """
    cb = callbacks or Callbacks()
    train_idx = np.arange(len(dataset)) if train_indices is None else np.asarray(train_indices, np.int64)
    val_idx = np.asarray([] if val_indices is None else val_indices, np.int64)
    if len(train_idx) == 0:
        raise ValueError("no training samples: the dataset (or train_indices) is empty")
    mesh = make_mesh(devices)
    n_dev = mesh.devices.size
    if cfg.batch_size % n_dev:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by the {n_dev} devices")
    k_micro = cfg.accumulate
    augment = _augmentation(dataset, cfg, model.config.n_classes)
    labels = None
    if cfg.sampling == "balanced":
        all_labels = getattr(dataset, "labels", None)
        labels = (np.asarray(all_labels)[train_idx] if all_labels is not None
                  else np.asarray([dataset[int(i)][2] for i in train_idx]))
    order = TrainOrder(train_idx, cfg.batch_size * k_micro, cfg.seed, labels=labels)
    optimizer = nnx.Optimizer(model, make_optimizer(cfg, model), wrt=nnx.Param)
    root = jax.random.key(cfg.seed)
    lr_fns = {"lr": schedule(cfg.lr, cfg), "ssm_lr": schedule(cfg.ssm_lr, cfg)}
    history: dict[str, Any] = {"train": [], "val": []}
    running: dict[str, list[float]] = {}
    best = {"metric": None, "step": None, "since": 0}
    start = 0
    ckpt = RunCheckpoints(run, cfg.keep) if run is not None else None
    record = MetricsLog(run) if run is not None else None
    split = {"train": train_idx.tolist(), "val": val_idx.tolist()}
    try:
        if resume:
            start, running, best, root = _resume(ckpt, record, model, optimizer, order, split, cb, history)
        replicate(mesh, model, optimizer)

        def meta(step: int) -> dict[str, Any]:
            return {"spec": None if spec is None else spec.to_dict(), "step": step, "data": order.state(),
                    "running": running, "best": best, "split": split}

        last_save = {"t": time.perf_counter(), "cost": 0.0, "step": start}

        def save(step: int, val: dict[str, Any] | None = None) -> None:
            if ckpt is None:
                return
            t0 = time.perf_counter()
            path = ckpt.save(step, model, optimizer, root_key=root, meta=meta(step), val=val)
            cost = time.perf_counter() - t0
            last_save.update(t=time.perf_counter(), cost=cost, step=step)
            cb.saved(step, path, cost)

        ls = float(cfg.label_smoothing)

        @nnx.jit
        def step_fn(model, optimizer, tokens, dt, mask, labels, key):
            if k_micro == 1:  # the plain step compiles faster than a scan of one micro-batch
                return train_step(model, optimizer, tokens[0], dt[0], mask[0], labels[0], key, label_smoothing=ls)
            return accumulated_step(model, optimizer, tokens, dt, mask, labels, key, label_smoothing=ls)

        prefetch = Prefetcher(dataset, order, crop_events=cfg.crop_events, buckets=cfg.buckets, augment=augment)
        t_start = time.perf_counter()
        window = {"time": 0.0, "wait": 0.0, "tokens": 0}
        stopped_early = False
        step = start
        cb.started(start + 1, cfg.steps)
        model.train()  # outside the jit: the step's graph (and its compilation) stays the same
        try:
            while step < cfg.steps:
                t0 = time.perf_counter()
                b, waited = prefetch.next()
                step += 1
                micro = [x.reshape(k_micro, cfg.batch_size, *x.shape[1:])
                         for x in (b.tokens, b.dt, b.mask, np.asarray(b.labels))]
                arrays = shard_batch(mesh, *micro, axis=1)
                if step == start + 1:
                    cb.compiling()
                out = step_fn(model, optimizer, *arrays, jax.random.fold_in(root, step))
                metrics = {k: float(v) for k, v in out.items()}
                if step == start + 1:
                    cb.compiled(time.perf_counter() - t0)
                for k, v in metrics.items():
                    running.setdefault(k, []).append(v)
                dt_step = time.perf_counter() - t0
                if step > start + 1:  # the first step's time is mostly compilation
                    window["time"] += dt_step
                    window["wait"] += waited
                    window["tokens"] += int(b.mask.sum())
                cb.stepped(step, {**metrics, "tokens_per_s": int(b.mask.sum()) / max(dt_step, 1e-9)})
                if step % cfg.log_every == 0 or step == cfg.steps:
                    rec = {"kind": "train", "step": step, **_means(running),
                           **{k: float(f(step - 1)) for k, f in lr_fns.items()},
                           "tokens_per_s": window["tokens"] / window["time"] if window["time"] else None,
                           "data_wait": window["wait"] / window["time"] if window["time"] else None}
                    history["train"].append(rec)
                    if record is not None:
                        record.append(rec)
                    cb.logged(rec)
                    running = {}
                    window = {"time": 0.0, "wait": 0.0, "tokens": 0}
                val = None
                if len(val_idx) and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps):
                    val = _validate(model, dataset, val_idx, cfg, step, best)
                    model.train()
                    history["val"].append(val)
                    if record is not None:
                        record.append(val)
                    cb.validated(val)
                    if cfg.patience and best["since"] >= cfg.patience:
                        stopped_early = True
                        cb.note(f"no better validation in {cfg.patience} evaluations: stopping early at step {step}")
                due = (step % cfg.checkpoint_every == 0) if cfg.checkpoint_every else (
                    time.perf_counter() - last_save["t"] >= max(SAVE_COST_FACTOR * last_save["cost"],
                                                                MIN_SAVE_INTERVAL_S))
                final = step == cfg.steps or stopped_early
                interrupted = stop is not None and stop.requested
                if val is not None or due or final or interrupted:
                    save(step, val)
                if interrupted:
                    raise Interrupted(step, saved=ckpt is not None)
                if stopped_early:
                    break
        finally:
            prefetch.close()
        history["seconds"] = time.perf_counter() - t_start
        history.update(best_step=best["step"], last_step=step, stopped_early=stopped_early)
        if ckpt is not None and best["step"] is not None and best["step"] != step:
            ckpt.restore_params(best["step"], model)
    finally:
        if ckpt is not None:
            ckpt.close()
    model.eval()
    return history


def _validate(model, dataset, val_idx, cfg: TrainConfig, step: int, best: dict[str, Any]) -> dict[str, Any]:
    """Evaluate on the validation samples; updates ``best`` (metric, step, evaluations since)."""
    res = evaluate(model, dataset, indices=val_idx, batch_size=cfg.batch_size, buckets=cfg.buckets)
    rec = {"kind": "val", "step": step, "loss": res["loss"], "accuracy": res["accuracy"], "n": res["n"],
           "recall": per_class(res["confusion"])["recall"], "confusion": res["confusion"]}
    if "recordings" in res:
        rec["recordings_accuracy"] = res["recordings"]["accuracy"]
    metric = best_metric(res)
    if best["metric"] is None or metric > best["metric"]:
        best.update(metric=metric, step=step, since=0)
    else:
        best["since"] += 1
    rec["best_step"] = best["step"]
    return rec


def _resume(ckpt, record, model, optimizer, order: TrainOrder, split, cb: Callbacks, history):
    """Restore the newest intact checkpoint; returns ``(step, running window, best, root key)``."""
    if ckpt is None:
        raise ValueError("resume needs a run folder")
    step, notes = ckpt.latest_good()
    for n in notes:
        cb.note(n)
    if step is None:
        raise CheckpointError(f"{ckpt.run}: no intact checkpoint to resume from")
    restored = ckpt.restore(step, model, optimizer)
    ckpt.delete_after(step)  # damaged steps: the continued run writes them again
    meta = restored.meta
    if meta.get("split") != split:
        raise CheckpointError(f"{ckpt.step_dir(step)}: the run was trained on another train/validation split "
                              "(a different cache or --val-fraction)")
    order.load_state(meta["data"])
    record.truncate_after(step)
    if record.path.is_file():
        for r in read_metrics(record.path):
            history["val" if r.get("kind") == "val" else "train"].append(r)
    cb.note(f"resuming from step {step} ({ckpt.step_dir(step)})")
    root = jax.random.wrap_key_data(jnp.asarray(restored.root_key))
    return step, {k: list(v) for k, v in meta["running"].items()}, dict(meta["best"]), root

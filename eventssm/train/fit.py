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
    if cfg.batch_size % mesh.devices.size:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by the {mesh.devices.size} devices")
    order = TrainOrder(train_idx, cfg.batch_size * cfg.accumulate, cfg.seed,
                       labels=_sampling_labels(dataset, cfg, train_idx))
    augment = _augmentation(dataset, cfg, model.config.n_classes)
    optimizer = nnx.Optimizer(model, make_optimizer(cfg, model), wrt=nnx.Param)
    trainer = _Trainer(model, optimizer, dataset, cfg, mesh=mesh, order=order, val_idx=val_idx, run=run,
                       spec=spec, callbacks=cb, stop=stop,
                       split={"train": train_idx.tolist(), "val": val_idx.tolist()})
    try:
        if resume:
            trainer.resume()
        replicate(mesh, model, optimizer)
        history = trainer.train(augment)
    finally:
        trainer.close()
    model.eval()
    return history


def _sampling_labels(dataset, cfg: TrainConfig, train_idx: np.ndarray) -> np.ndarray | None:
    """The training samples' labels for balanced sampling (None: uniform sampling)."""
    if cfg.sampling != "balanced":
        return None
    all_labels = getattr(dataset, "labels", None)
    return (np.asarray(all_labels)[train_idx] if all_labels is not None
            else np.asarray([dataset[int(i)][2] for i in train_idx]))


def _step_function(k_micro: int, label_smoothing: float):
    """The jit-compiled update on ``k_micro`` micro-batches."""

    @nnx.jit
    def step_fn(model, optimizer, tokens, dt, mask, labels, key):
        if k_micro == 1:  # the plain step compiles faster than a scan of one micro-batch
            return train_step(model, optimizer, tokens[0], dt[0], mask[0], labels[0], key,
                              label_smoothing=label_smoothing)
        return accumulated_step(model, optimizer, tokens, dt, mask, labels, key, label_smoothing=label_smoothing)

    return step_fn


class _Trainer:
    """The state of one ``fit``: step, running means, best validation, checkpoints, records."""

    def __init__(self, model, optimizer, dataset, cfg: TrainConfig, *, mesh, order: TrainOrder, val_idx, run, spec,
                 callbacks: Callbacks, stop, split):
        self.model, self.optimizer, self.dataset, self.cfg = model, optimizer, dataset, cfg
        self.mesh, self.order, self.val_idx, self.spec, self.cb, self.stop = mesh, order, val_idx, spec, callbacks, stop
        self.split = split
        self.root = jax.random.key(cfg.seed)
        self.lr_fns = {"lr": schedule(cfg.lr, cfg), "ssm_lr": schedule(cfg.ssm_lr, cfg)}
        self.history: dict[str, Any] = {"train": [], "val": []}
        self.running: dict[str, list[float]] = {}
        self.best: dict[str, Any] = {"metric": None, "step": None, "since": 0}
        self.start = 0
        self.ckpt = RunCheckpoints(run, cfg.keep) if run is not None else None
        self.record = MetricsLog(run) if run is not None else None

    def resume(self) -> None:
        self.start, self.running, self.best, self.root = _resume(
            self.ckpt, self.record, self.model, self.optimizer, self.order, self.split, self.cb, self.history)

    def close(self) -> None:
        if self.ckpt is not None:
            self.ckpt.close()

    def meta(self, step: int) -> dict[str, Any]:
        return {"spec": None if self.spec is None else self.spec.to_dict(), "step": step, "data": self.order.state(),
                "running": self.running, "best": self.best, "split": self.split}

    def save(self, step: int, val: dict[str, Any] | None = None) -> None:
        if self.ckpt is None:
            return
        t0 = time.perf_counter()
        path = self.ckpt.save(step, self.model, self.optimizer, root_key=self.root, meta=self.meta(step), val=val)
        cost = time.perf_counter() - t0
        self.last_save.update(t=time.perf_counter(), cost=cost, step=step)
        self.cb.saved(step, path, cost)

    def train(self, augment) -> dict[str, Any]:
        """Steps ``start + 1 .. cfg.steps`` (or until early stopping); the history."""
        cfg = self.cfg
        self.last_save = {"t": time.perf_counter(), "cost": 0.0, "step": self.start}
        step_fn = _step_function(cfg.accumulate, float(cfg.label_smoothing))
        prefetch = Prefetcher(self.dataset, self.order, crop_events=cfg.crop_events, buckets=cfg.buckets,
                              augment=augment)
        t_start = time.perf_counter()
        self.window = {"time": 0.0, "wait": 0.0, "tokens": 0}
        stopped_early = False
        step = self.start
        self.cb.started(self.start + 1, cfg.steps)
        self.model.train()  # outside the jit: the step's graph (and its compilation) stays the same
        try:
            while step < cfg.steps:
                step += 1
                self._step(step, prefetch, step_fn)
                val = self._validate_if_due(step)
                stopped_early = val is not None and bool(cfg.patience) and self.best["since"] >= cfg.patience
                if stopped_early:
                    self.cb.note(f"no better validation in {cfg.patience} evaluations: stopping early at step {step}")
                self._checkpoint(step, val, final=step == cfg.steps or stopped_early)
                if stopped_early:
                    break
        finally:
            prefetch.close()
        self.history["seconds"] = time.perf_counter() - t_start
        self.history.update(best_step=self.best["step"], last_step=step, stopped_early=stopped_early)
        if self.ckpt is not None and self.best["step"] is not None and self.best["step"] != step:
            self.ckpt.restore_params(self.best["step"], self.model)
        return self.history

    def _step(self, step: int, prefetch: Prefetcher, step_fn) -> None:
        """One update on the next batch; running means, speed window and the log record."""
        cfg, first = self.cfg, step == self.start + 1
        t0 = time.perf_counter()
        b, waited = prefetch.next()
        micro = [x.reshape(cfg.accumulate, cfg.batch_size, *x.shape[1:])
                 for x in (b.tokens, b.dt, b.mask, np.asarray(b.labels))]
        arrays = shard_batch(self.mesh, *micro, axis=1)
        if first:
            self.cb.compiling()
        out = step_fn(self.model, self.optimizer, *arrays, jax.random.fold_in(self.root, step))
        metrics = {k: float(v) for k, v in out.items()}
        if first:
            self.cb.compiled(time.perf_counter() - t0)
        for k, v in metrics.items():
            self.running.setdefault(k, []).append(v)
        dt_step = time.perf_counter() - t0
        if not first:  # the first step's time is mostly compilation
            self.window["time"] += dt_step
            self.window["wait"] += waited
            self.window["tokens"] += int(b.mask.sum())
        self.cb.stepped(step, {**metrics, "tokens_per_s": int(b.mask.sum()) / max(dt_step, 1e-9)})
        if step % cfg.log_every == 0 or step == cfg.steps:
            self._log(step)

    def _log(self, step: int) -> None:
        w = self.window
        rec = {"kind": "train", "step": step, **_means(self.running),
               **{k: float(f(step - 1)) for k, f in self.lr_fns.items()},
               "tokens_per_s": w["tokens"] / w["time"] if w["time"] else None,
               "data_wait": w["wait"] / w["time"] if w["time"] else None}
        self.history["train"].append(rec)
        if self.record is not None:
            self.record.append(rec)
        self.cb.logged(rec)
        self.running = {}
        self.window = {"time": 0.0, "wait": 0.0, "tokens": 0}

    def _validate_if_due(self, step: int) -> dict[str, Any] | None:
        cfg = self.cfg
        if not len(self.val_idx) or not ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps):
            return None
        val = _validate(self.model, self.dataset, self.val_idx, cfg, step, self.best)
        self.model.train()
        self.history["val"].append(val)
        if self.record is not None:
            self.record.append(val)
        self.cb.validated(val)
        return val

    def _checkpoint(self, step: int, val: dict[str, Any] | None, *, final: bool) -> None:
        """Save when validated, due, final or interrupted; raise Interrupted after saving when asked to stop."""
        cfg, last = self.cfg, self.last_save
        due = (step % cfg.checkpoint_every == 0) if cfg.checkpoint_every else (
            time.perf_counter() - last["t"] >= max(SAVE_COST_FACTOR * last["cost"], MIN_SAVE_INTERVAL_S))
        interrupted = self.stop is not None and self.stop.requested
        if val is not None or due or final or interrupted:
            self.save(step, val)
        if interrupted:
            raise Interrupted(step, saved=self.ckpt is not None)


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

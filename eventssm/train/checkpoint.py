"""Checkpoints of a run folder, written by orbax's ``CheckpointManager``, and :func:`load_run`.

Layout of ``RUN/checkpoints/<step>/`` (one orbax step folder, finalized by orbax's atomic
rename of a temporary folder):

    params/           the model's parameters (pure dict of arrays by module path)
    opt/              optimizer state (``opt_state``, ``step``) and the JAX root key data
    meta/             JSON: the :class:`~eventssm.train.spec.RunSpec`, the data-order state
                      (epoch, position, epoch permutation, the numpy Generator state of the next
                      batch), the running log window, validation bookkeeping
    eventssm.sha256   SHA-256 of every file above (written atomically after orbax finalized
                      the step); a step without it, or whose files differ, is *damaged*

Kept: the last ``keep`` steps plus the best by validation (orbax ``LatestN`` + ``BestN``).
A damaged step is never loaded silently: :meth:`RunCheckpoints.latest_good` skips it (the
caller says so in one line), :func:`load_run` raises :class:`CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from eventssm.models.classifier import EventClassifier
from eventssm.models.ensemble import EnsembleClassifier, make_classifier
from eventssm.train.spec import CheckpointError, RunSpec

log = logging.getLogger(__name__)

CHECKSUMS = "eventssm.sha256"
CHECKPOINTS = "checkpoints"


def _ocp():
    import orbax.checkpoint as ocp  # imported on first use (about 2 s)

    return ocp


def best_metric(val: dict[str, Any]) -> float:
    """Ranking of a validation result: accuracy, ties broken by the lower loss."""
    return float(val["accuracy"]) - 1e-9 * float(val["loss"])


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(step_dir: Path) -> list[Path]:
    return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def write_checksums(step_dir: Path) -> None:
    """Write ``eventssm.sha256`` (``{relative path: sha256}``) into a finalized step folder."""
    sums = {p.relative_to(step_dir).as_posix(): _hash(p) for p in _files(step_dir)}
    tmp = step_dir / f".{CHECKSUMS}.tmp"
    tmp.write_text(json.dumps(sums, indent=1, sort_keys=True))
    os.replace(tmp, step_dir / CHECKSUMS)


def damage(step_dir: Path) -> str | None:
    """None for an intact step folder, else why it is damaged (one phrase)."""
    f = step_dir / CHECKSUMS
    if not f.is_file():
        return "incomplete (no checksums: the save was interrupted)"
    try:
        sums = json.loads(f.read_text())
    except (OSError, ValueError):
        return f"unreadable {CHECKSUMS}"
    present = {p.relative_to(step_dir).as_posix() for p in _files(step_dir)}
    for rel, digest in sums.items():
        p = step_dir / rel
        if not p.is_file():
            return f"{rel} is missing"
        if _hash(p) != digest:
            return f"{rel} differs from its checksum (damaged or truncated)"
    extra = present - set(sums)
    if extra:
        return f"unexpected file {sorted(extra)[0]}"
    return None


def pure(state) -> Any:
    """NNX state as a plain nested dict of arrays (the tree orbax writes)."""
    return nnx.to_pure_dict(state)


@dataclass
class Restored:
    """What :meth:`RunCheckpoints.restore` returns besides updating model and optimizer."""

    step: int
    meta: dict[str, Any]
    root_key: np.ndarray


class RunCheckpoints:
    """The ``RUN/checkpoints`` folder: save, list, verify and restore training states.

    Args:
        run: the run folder.
        keep: most recent checkpoints kept (the best by validation is kept besides).
        read_only: open for loading only (``evaluate``/``classify``).
    """

    def __init__(self, run: str | os.PathLike, keep: int = 2, *, read_only: bool = False):
        ocp = _ocp()
        from orbax.checkpoint import checkpoint_managers as cm

        self.run = Path(run)
        self.dir = self.run / CHECKPOINTS
        policy = cm.AnyPreservationPolicy([
            cm.LatestN(n=max(int(keep), 1)),
            cm.BestN(get_metric_fn=lambda m: m["best"], reverse=False, n=1, keep_checkpoints_without_metrics=False),
        ])
        absl = logging.getLogger("absl")  # orbax warns that a read-only manager does not save
        level = absl.level
        if read_only:
            absl.setLevel(logging.ERROR)
        try:
            options = ocp.CheckpointManagerOptions(
                enable_async_checkpointing=False, preservation_policy=policy, best_fn=lambda m: m["best"],
                best_mode="max", create=not read_only,
                read_only=read_only, cleanup_tmp_directories=not read_only)
            self._mngr = ocp.CheckpointManager(self.dir.absolute(), options=options,
                                               item_names=("params", "opt", "meta"))
        finally:
            absl.setLevel(level)

    def close(self) -> None:
        self._mngr.close()

    def steps(self) -> list[int]:
        return sorted(self._mngr.all_steps())

    def step_dir(self, step: int) -> Path:
        return self.dir / str(step)

    def save(self, step: int, model, optimizer, *, root_key: jax.Array, meta: dict[str, Any],
             val: dict[str, Any] | None = None) -> Path:
        """Write step ``step`` (blocking), then its checksums. ``val`` (a validation result) makes
        it a candidate for the best checkpoint."""
        ocp = _ocp()
        if step in self._mngr.all_steps():  # a damaged leftover of an interrupted run
            self._mngr.delete(step)
        opt = {"optimizer": pure(nnx.state(optimizer)), "root_key": np.asarray(jax.random.key_data(root_key))}
        args = ocp.args.Composite(params=ocp.args.StandardSave(pure(nnx.state(model, nnx.Param))),
                                  opt=ocp.args.StandardSave(opt), meta=ocp.args.JsonSave(meta))
        metrics = None if val is None else {"best": best_metric(val)}
        absl = logging.getLogger("absl")  # orbax warns about each save without validation metrics
        level = absl.level
        absl.setLevel(logging.ERROR)
        try:
            self._mngr.save(step, args=args, metrics=metrics, force=True)
        finally:
            absl.setLevel(level)
        self._mngr.wait_until_finished()
        write_checksums(self.step_dir(step))
        return self.step_dir(step)

    def latest_good(self) -> tuple[int | None, list[str]]:
        """``(step, notes)``: the newest intact step (None if none) and one note per damaged
        step skipped on the way."""
        notes = []
        for step in reversed(self.steps()):
            why = damage(self.step_dir(step))
            if why is None:
                return step, notes
            notes.append(f"{self.step_dir(step)}: {why}; skipped")
        return None, notes

    def delete_after(self, step: int) -> None:
        """Remove the (damaged) steps after ``step``, the one a resumed run continues from."""
        for s in self.steps():
            if s > step:
                self._mngr.delete(s)

    def best_step(self) -> int | None:
        return self._mngr.best_step()

    def read_meta(self, step: int) -> dict[str, Any]:
        ocp = _ocp()
        return dict(self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])

    def restore_params(self, step: int, model) -> None:
        ocp = _ocp()
        params = nnx.state(model, nnx.Param)
        out = self._mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(pure(params))))
        nnx.replace_by_pure_dict(params, out["params"])
        nnx.update(model, params)

    def restore(self, step: int, model, optimizer) -> Restored:
        """Load step ``step`` into ``model`` and ``optimizer`` (in place)."""
        ocp = _ocp()
        params = nnx.state(model, nnx.Param)
        opt_state = nnx.state(optimizer)
        target = {"optimizer": pure(opt_state), "root_key": np.zeros_like(jax.random.key_data(jax.random.key(0)))}
        out = self._mngr.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(pure(params)), opt=ocp.args.StandardRestore(target),
            meta=ocp.args.JsonRestore()))
        nnx.replace_by_pure_dict(params, out["params"])
        nnx.update(model, params)
        nnx.replace_by_pure_dict(opt_state, out["opt"]["optimizer"])
        nnx.update(optimizer, opt_state)
        return Restored(step=step, meta=dict(out["meta"]), root_key=np.asarray(out["opt"]["root_key"]))


def save_model_run(run: str | os.PathLike, model, spec: RunSpec, step: int = 0) -> Path:
    """Write ``model`` as a run folder of its own (``run.json`` and one checkpoint, with a fresh
    optimizer state): a model trained or built outside ``train`` becomes usable by ``evaluate``
    and ``classify``."""
    from eventssm.train.optim import make_optimizer

    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    tmp = run / ".run.json.tmp"
    tmp.write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True))
    os.replace(tmp, run / "run.json")
    optimizer = nnx.Optimizer(model, make_optimizer(spec.train, model), wrt=nnx.Param)
    ckpt = RunCheckpoints(run)
    try:
        ckpt.save(step, model, optimizer, root_key=jax.random.key(spec.train.seed),
                  meta={"spec": spec.to_dict(), "step": step})
    finally:
        ckpt.close()
    return run


@dataclass
class LoadedRun:
    """A model loaded by :func:`load_run`."""

    model: EventClassifier | EnsembleClassifier
    spec: RunSpec
    step: int
    which: str  # "best" or "last" (what was loaded; "last" when the run has no validation)
    path: Path


def is_run(folder: str | os.PathLike) -> bool:
    return (Path(folder) / CHECKPOINTS).is_dir()


def load_run(run: str | os.PathLike, which: str = "best") -> LoadedRun:
    """The model of a run folder: its best checkpoint by validation (``which="best"``; the last
    one when the run had no validation) or its last one (``which="last"``), in eval mode.

    Raises:
        CheckpointError: not a run folder, no checkpoint, or the chosen checkpoint is damaged.
    """
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    run = Path(run)
    if not is_run(run):
        if (run / "model.json").is_file():
            raise CheckpointError(f"{run}: a checkpoint of an older eventssm (model.json + params.npz); "
                                  "train it again with this version")
        raise CheckpointError(f"{run}: not a run folder of `eventssm train` (no {CHECKPOINTS}/ inside)")
    ckpt = RunCheckpoints(run, read_only=True)
    try:
        steps = ckpt.steps()
        if not steps:
            raise CheckpointError(f"{run}: no checkpoint saved yet")
        step = ckpt.best_step() if which == "best" else None
        loaded = "best" if step is not None else "last"
        step = steps[-1] if step is None else step
        why = damage(ckpt.step_dir(step))
        if why is not None:
            other = "--last" if loaded == "best" else "an earlier run"
            raise CheckpointError(f"{ckpt.step_dir(step)}: checkpoint {why}; try {other} or train again")
        spec = RunSpec.from_dict(ckpt.read_meta(step).get("spec") or {}, where=str(ckpt.step_dir(step)))
        model = make_classifier(spec.model, rngs=nnx.Rngs(0))
        try:
            ckpt.restore_params(step, model)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise CheckpointError(f"{ckpt.step_dir(step)}: cannot restore the parameters ({exc})") from None
    finally:
        ckpt.close()
    model.eval()
    return LoadedRun(model=model, spec=spec, step=step, which=loaded, path=ckpt.step_dir(step))

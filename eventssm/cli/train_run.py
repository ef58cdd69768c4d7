"""The body of ``eventssm train`` after the option checks: data, checks before compiling,
``fit`` with progress on the terminal, and the end-of-run report (imports JAX)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from eventssm.cli._common import describe_paths, fail, os_error_message


class _Progress:
    """``fit`` callbacks: a tqdm bar when stderr is a terminal, periodic lines otherwise."""

    def __init__(self, total: int):
        self.total = total
        self.bar = None
        self.tty = sys.stderr.isatty()

    def _echo(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line)

    def note(self, message: str) -> None:
        self._echo(message)

    def compiling(self) -> None:
        self._t = time.perf_counter()
        self._echo("compiling the training step (the first step includes it)...")

    def compiled(self, seconds: float) -> None:
        self._echo(f"compiled in {seconds:.1f} s")
        if self.tty:
            from tqdm import tqdm

            # a terminal that reports 0 columns (e.g. under `script`) would get an empty bar
            width = None if shutil.get_terminal_size((100, 24)).columns > 0 else 100
            self.bar = tqdm(total=self.total, initial=self._start, unit="step", file=sys.stderr, ncols=width,
                            dynamic_ncols=width is None)
            self.bar.update(1)

    def started(self, first_step: int, last_step: int) -> None:
        self._start = first_step - 1

    def stepped(self, step: int, m: dict) -> None:
        if self.bar is not None and step > self._start + 1:
            self.bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['accuracy']:.2f}",
                                 tok_s=f"{m['tokens_per_s']:,.0f}", refresh=False)
            self.bar.update(1)

    def logged(self, r: dict) -> None:
        if self.bar is None:
            speed = "" if r["tokens_per_s"] is None else (
                f"  {r['tokens_per_s']:,.0f} tok/s  data wait {100 * r['data_wait']:.0f} %")
            click.echo(f"step {r['step']:5d}  loss {r['loss']:.4f}  acc {r['accuracy']:.3f}  |g| {r['grad_norm']:.2f}"
                       + speed)

    def validated(self, r: dict) -> None:
        mark = "  (best)" if r["best_step"] == r["step"] else ""
        self._echo(f"step {r['step']:5d}  validation accuracy {r['accuracy']:.3f}  loss {r['loss']:.4f}"
                   f" on {r['n']} samples{mark}")

    def saved(self, step: int, path: Path, seconds: float) -> None:
        """Nothing on the terminal per save: the summary line names the saved run."""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _write_json(path: Path, data) -> None:
    from eventssm.io.writers import write_bytes_atomic

    write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())


@dataclass
class _Setup:
    """What ``run_training`` decided before building the model."""

    ds: object
    spec: object
    tr: np.ndarray
    va: np.ndarray
    notes: list[str]
    n_devices: int
    platform: str


def run_training(caches: list[Path], out: Path, *, resume: bool, overwrite: bool, clear, stop, given: list[str],
                 devices: int | None, model_args: dict, train_args: dict, config_text: str | None = None,
                 epochs: dict | None = None) -> None:
    """``eventssm train``: check, build, fit, calibrate and report (fails with one line).

    ``train_args["steps"]`` / ``["warmup_steps"]`` may be None when ``epochs["epochs"]`` /
    ``["warmup_epochs"]`` count them in passes over the training split (:func:`resolve_steps`).
    """
    where = describe_paths(caches)
    setup = _prepare(caches, where, out, resume=resume, given=given, devices=devices, model_args=model_args,
                     train_args=train_args, epochs=epochs or {})
    model, n_params = _build_model(setup.spec, out)
    if stop.requested:
        click.echo("interrupted before the first step; nothing saved", err=True)
        raise SystemExit(130) from None
    _start_run_folder(out, setup.spec, overwrite=overwrite, resume=resume, clear=clear, config_text=config_text)
    for n in setup.notes:
        click.echo(f"note: {n}")
    if not len(setup.va):
        click.echo("no validation split (--val-fraction 0 or one recording per class): the last checkpoint is "
                   "the model; nothing guards against overfitting")
    config, ds = setup.spec.model, setup.ds
    name = f"{model_args['preset']} {config.layer}" if not resume else f"{config.layer}"
    from eventssm.models.ensemble import n_config_members

    if n_config_members(config) > 1:
        name += f", an ensemble of {n_config_members(config)} ({config.members} × {config.embedding})"
    click.echo(f"{where}: {len(ds)} samples, {len(setup.spec.class_names)} classes, vocabulary {ds.vocab_size}; "
               f"train {len(setup.tr)} / val {len(setup.va)}; {name}, {n_params:,} parameters; "
               f"{setup.n_devices} {setup.platform} device(s)")
    history = _fit(model, setup, out, resume=resume, devices=devices, stop=stop)
    if len(setup.va):
        _calibrate(model, ds, setup.va, setup.spec.train, out)
    _report(history, out, setup.spec)


def resolve_steps(train_args: dict, epochs: dict, n_train: int) -> dict:
    """``train_args`` with ``steps`` and ``warmup_steps`` set.

    With ``epochs["epochs"] = E``: ``steps = max(1, E · ⌊n_train / batch_size⌋ // accumulate)``,
    the rule of the S7 and EventSSM code (``num_epochs · len(train_loader) //
    accumulation_steps`` with a loader that drops the last incomplete batch); likewise
    ``warmup_steps`` from ``epochs["warmup_epochs"]``. An unset warm-up is
    ``min(100, steps // 10)``.
    """
    args = dict(train_args)
    batches = n_train // args["batch_size"]
    if epochs.get("epochs") is not None:
        args["steps"] = max(1, epochs["epochs"] * batches // args["accumulate"])
    if epochs.get("warmup_epochs") is not None:
        args["warmup_steps"] = epochs["warmup_epochs"] * batches // args["accumulate"]
    if args.get("warmup_steps") is None:
        args["warmup_steps"] = min(100, args["steps"] // 10)
    return args


def _prepare(caches: list[Path], where: str, out: Path, *, resume: bool, given: list[str], devices: int | None,
             model_args: dict, train_args: dict, epochs: dict) -> _Setup:
    """Open the caches, make (or read back) the run's spec, split, and check everything that can
    be checked before the model exists."""
    from eventssm.tokenizers.cache import open_caches
    from eventssm.tokenizers.dataset import DatasetError
    from eventssm.train import CheckpointError
    from eventssm.train.parallel import make_mesh
    from eventssm.train.preflight import PreflightError, check_classes, check_devices, check_lengths

    try:
        ds = open_caches(caches)
        if resume:
            spec = _resumed_spec(out, given)
            spec.check_compatible(ds, where=where, run=str(out))
            tr, va, groups = _split(ds, spec.train.val_fraction, spec.train.seed, spec.train.val_group)
        else:
            tr, va, groups = _split(ds, train_args["val_fraction"], train_args["seed"], train_args["val_group"])
            spec = _new_spec(ds, where, model_args, resolve_steps(train_args, epochs, len(tr)))
        tcfg = spec.train
        if len(tr) == 0:
            fail(f"{where}: --val-fraction {tcfg.val_fraction:g} leaves no recording for training")
        notes = check_classes(ds.labels, tr, ds.class_names, where=where)
        n_takes = len(np.unique(groups))
        if n_takes < len(groups):  # some recordings are one take
            held = len(np.unique(groups[ds.source_index[va]]))
            how = ("recordings named alike up to a trailing number" if tcfg.val_group == "auto"
                   else f"--val-group '{tcfg.val_group}'")
            notes.append(f"validation holds out whole takes ({how}): {n_takes} takes, {held} held out; "
                         "--val-group none splits by recording")
        if tcfg.crop_events > max(tcfg.buckets):
            raise PreflightError(f"--crop-events {tcfg.crop_events} is above the largest padded length "
                                 f"{max(tcfg.buckets)}")
        check_lengths(ds.lengths, va, tcfg.buckets, what="validation", where=where)
        mesh = make_mesh(devices)
        check_devices(tcfg, mesh.devices.size)
    except (DatasetError, CheckpointError, PreflightError, ValueError) as exc:
        fail(str(exc))
    return _Setup(ds, spec, tr, va, notes, int(mesh.devices.size), mesh.devices.flat[0].platform)


def _split(ds, val_fraction: float, seed: int, val_group: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train/validation split by recording (or by ``val_group``'s takes) of a run with
    this ``val_fraction`` and ``seed``: ``(train, val, group of each recording)``."""
    from eventssm.train.data import split_by_source, validation_groups

    groups = validation_groups([s.path for s in ds.sources], np.array([s.label for s in ds.sources]), val_group)
    tr, va = split_by_source(ds.labels, ds.source_index, val_fraction, np.random.default_rng(seed), groups)
    return tr, va, groups


def _resumed_spec(out: Path, given: list[str]):
    """The RunSpec stored in the newest intact checkpoint of ``out``."""
    from eventssm.train import RunCheckpoints, RunSpec

    ckpt = RunCheckpoints(out, read_only=True)
    try:
        step, notes = ckpt.latest_good()
        if step is None:
            fail(f"{out}: no intact checkpoint to resume from ({'; '.join(notes) or 'none saved'})")
        spec = RunSpec.from_dict(ckpt.read_meta(step).get("spec") or {}, where=str(ckpt.step_dir(step)))
    finally:
        ckpt.close()
    if given:
        click.echo(f"--resume continues with the run's stored configuration; ignored: {', '.join(given)}")
    return spec


def _new_spec(ds, where: str, model_args: dict, train_args: dict):
    """The RunSpec of a new run: the preset with its overrides, sized to the dataset."""
    from eventssm.models.presets import get_preset
    from eventssm.train import RunSpec, TrainConfig

    n_classes = len(ds.class_names)
    if n_classes < 2 or np.any(np.asarray(ds.labels) < 0):
        fail(f"{where}: training needs a labelled cache with at least two classes")
    margs = {k: v for k, v in model_args.items() if v is not None}
    preset, layer = margs.pop("preset"), margs.pop("layer")
    config = get_preset(preset, layer, vocab_size=ds.vocab_size, n_classes=n_classes,
                        grid=ds.grid_size, **margs)
    return RunSpec.for_dataset(ds, config, TrainConfig(**train_args))


def _build_model(spec, out: Path):
    """The classifier of ``spec`` (initialised from its seed) and its parameter count, after
    checking that ``out``'s disk holds its checkpoints."""
    import jax
    from flax import nnx

    from eventssm.models.ensemble import make_classifier
    from eventssm.train.preflight import PreflightError, check_disk

    seed = spec.train.seed
    model = make_classifier(spec.model, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
    try:
        check_disk(out, n_params, spec.train)
    except PreflightError as exc:
        fail(str(exc))
    return model, n_params


def _start_run_folder(out: Path, spec, *, overwrite: bool, resume: bool, clear, config_text: str | None) -> None:
    """Clear (--overwrite) or create ``out``; a new run writes ``run.json`` and ``config.toml``."""
    from eventssm.io.writers import write_bytes_atomic

    try:
        if overwrite:
            clear(out)
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            _write_json(out / "run.json", spec.to_dict())
            if config_text is not None:
                write_bytes_atomic(out / "config.toml", config_text.encode())
    except OSError as exc:
        fail(f"{out}: {os_error_message(exc)}")


def _fit(model, setup: _Setup, out: Path, *, resume: bool, devices: int | None, stop) -> dict:
    """``fit`` with progress on the terminal; Ctrl-C and errors become one line and an exit code."""
    from eventssm.train import CheckpointError, fit
    from eventssm.train.interrupt import Interrupted
    from eventssm.train.preflight import PreflightError

    progress = _Progress(setup.spec.train.steps)
    try:
        return fit(model, setup.ds, setup.spec.train, train_indices=setup.tr,
                   val_indices=setup.va if len(setup.va) else None, run=out, spec=setup.spec, resume=resume,
                   devices=devices, callbacks=progress, stop=stop)
    except Interrupted as exc:
        progress.close()
        click.echo(f"interrupted at step {exc.step}; saved {out}, continue with --resume", err=True)
        sys.stdout.flush()
        raise SystemExit(130) from None
    except (CheckpointError, PreflightError, ValueError) as exc:
        progress.close()
        fail(str(exc))
    except OSError as exc:
        progress.close()
        fail(f"{out}: checkpoint not saved: {os_error_message(exc)}")
    finally:
        progress.close()


def _calibrate(model, ds, va, tcfg, out: Path) -> None:
    """Temperature scaling of the model ``fit`` ended with (the best by validation), fitted on
    the validation split and written to ``out/calibration.json`` (read by ``classify``)."""
    from eventssm.train.calibrate import calibration_report, collect_logits, write_calibration

    logits, labels, _ = collect_logits(model, ds, indices=va, batch_size=tcfg.batch_size, buckets=tcfg.buckets)
    calibration = calibration_report(logits, labels)
    try:
        write_calibration(out, calibration)
    except OSError as exc:
        fail(f"{out}: calibration not saved: {os_error_message(exc)}")
    click.echo(f"temperature {calibration['temperature']:.3f} fitted on the validation split: "
               f"ECE ({calibration['ece_bins']} bins) {calibration['ece_before']:.3f} -> "
               f"{calibration['ece_after']:.3f}, NLL {calibration['nll_before']:.3f} -> "
               f"{calibration['nll_after']:.3f}")


def _report(history: dict, out: Path, spec) -> None:
    from eventssm.train.plot import plot_run

    val = history["val"]
    if val:
        best = next(r for r in val if r["step"] == history["best_step"])
        click.echo(f"best validation accuracy {best['accuracy']:.3f} (loss {best['loss']:.4f}) at step "
                   f"{best['step']}: `evaluate`/`classify` load it (--last: step {history['last_step']})")
        if "recordings_accuracy" in best:
            click.echo(f"validation accuracy by recording {best['recordings_accuracy']:.3f}")
    try:
        pictures = plot_run(out, spec.class_names)
        click.echo("pictures: " + ", ".join(str(p) for p in pictures))
    except (OSError, ValueError) as exc:
        click.echo(f"note: pictures not drawn: {exc}", err=True)
    click.echo(f"saved {out} ({history['seconds']:.1f} s)")

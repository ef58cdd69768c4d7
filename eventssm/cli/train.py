"""``eventssm train`` and ``eventssm evaluate``: fit an S7/S5 classifier on a token cache."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from eventssm.cli._common import (
    FiniteFloatRange,
    check_new_folder,
    describe_paths,
    expand_caches,
    fail,
    os_error_message,
)
from eventssm.cli.recipe import config_option, given_options, resolved_recipe
from eventssm.cli.stop import StopRequest

#: ClassifierConfig.scan_method values (eventssm.models.classifier.SCAN_METHODS; listed here so
#: that ``--help`` does not import JAX)
SCAN_METHODS = ("auto", "associative", "sequential", "chunked")
#: eventssm.train.augment.RECIPES, listed here for the same reason
AUGMENT_RECIPES = ("none", "basic", "geometric")
#: eventssm.train.config.SAMPLING
SAMPLING = ("uniform", "balanced")
# jax.random.key takes the seed as a 32-bit integer
_SEED = click.IntRange(0, 2**31 - 1)
_POSITIVE = click.IntRange(min=1)


@click.command("train")
@click.argument("caches", nargs=-1, required=True, metavar="CACHE...")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: checkpoints, metrics.jsonl, pictures (docs/long_runs.md).")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its newest intact checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run in OUT (other files there are kept).")
@config_option
@click.option("--preset", default="tiny", show_default=True,
              help="Model dims: tiny, s7-dvs, eventssm-dvs-small.")
@click.option("--layer", type=click.Choice(["s7", "s5", "s7paper"]), default="s7", show_default=True,
              help="SSM layer: s7 (low-rank input dependence), s5, or s7paper (S7 as the paper's code: "
                   "full per-token B_k, C_k; docs/model.md).")
@click.option("--embedding", type=click.Choice(["table", "fourier", "table+fourier"]), default="table",
              show_default=True,
              help="Token embedding: table (a learned vector per token, as the EventSSM and S7 papers), "
                   "fourier (an MLP of Fourier features of the event's position and polarity, smooth "
                   "in position; docs/model.md §6), or table+fourier (an ensemble with members of "
                   "both kinds; measured in docs/recipe.md).")
@click.option("--members", type=_POSITIVE, default=1, show_default=True,
              help="Classifiers per embedding trained side by side from different initialisations, "
                   "their probabilities averaged (a deep ensemble; docs/model.md §7).")
@click.option("--d-model", type=_POSITIVE, default=None, help="Override the preset's feature size.")
@click.option("--d-state", type=_POSITIVE, default=None, help="Override the preset's state size.")
@click.option("--stages", type=_POSITIVE, default=None, help="Override the preset's number of stages.")
@click.option("--layers-per-stage", type=_POSITIVE, default=None, help="Override the preset's SSM layers per stage.")
@click.option("--scan-method", type=click.Choice(SCAN_METHODS), default=None,
              help="Override the preset's linear-recurrence scan (same results; speed and compile time differ).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default=None,
              help="Computation dtype of embeddings, projections and MLPs (the SSM stays float32). [default: float32]")
@click.option("--steps", type=_POSITIVE, default=300, show_default=True, help="Optimizer updates.")
@click.option("--epochs", type=_POSITIVE, default=None,
              help="Instead of --steps: passes over the training split, steps = epochs x floor(training "
                   "samples / batch-size) / accumulate (the rule of the S7 and EventSSM code).")
@click.option("--batch-size", type=_POSITIVE, default=16, show_default=True,
              help="Rows per micro-batch (split over the devices).")
@click.option("--accumulate", type=_POSITIVE, default=1, show_default=True,
              help="Micro-batches per update (gradient accumulation).")
@click.option("--crop-events", type=_POSITIVE, default=4096, show_default=True, help="Random training crops (events).")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=4e-3, show_default=True)
@click.option("--warmup-steps", type=click.IntRange(min=0), default=None,
              help="Linear learning-rate warm-up before the cosine decay. [default: min(100, steps / 10)]")
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=None,
              help="Instead of --warmup-steps: warm-up in passes over the training split (as --epochs).")
@click.option("--ssm-lr", type=FiniteFloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--val-fraction", type=FiniteFloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Share of each class's recordings held out for validation (0 <= f < 1).")
@click.option("--val-group", default="auto", show_default=True, metavar="auto|none|REGEX",
              help="Which recordings are one take, held out whole for validation: auto = files named alike "
                   "up to a trailing number (clips walk_000.npz, walk_001.npz, ... of one take) when some "
                   "class then has several takes; none = every recording on its own; or a REGEX whose "
                   "match (its first group, else the whole match) names the take.")
@click.option("--eval-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Validate every N steps (0: only at the end); each validation saves a checkpoint.")
@click.option("--patience", type=click.IntRange(min=0), default=0, show_default=True,
              help="Stop after P validations without improvement (0: never).")
@click.option("--augment", type=click.Choice(AUGMENT_RECIPES), default="geometric", show_default=True,
              help="Event augmentation of the training crops: basic = drop 10 %, time skew and jitter, "
                   "1 px spatial jitter; geometric drops 0-50 % (per sample), stretches time by 0.67-1.5 "
                   "and adds shift, rotation and zoom (docs/cli.md).")
@click.option("--cutmix", type=FiniteFloatRange(0, 1), default=0.5, show_default=True,
              help="Probability of mixing a training sample with another one by event CutMix (soft labels).")
@click.option("--label-smoothing", type=FiniteFloatRange(0, 1, max_open=True), default=0.1, show_default=True,
              help="Cross-entropy label smoothing (0 <= e < 1).")
@click.option("--weight-decay", type=FiniteFloatRange(min=0), default=0.02, show_default=True,
              help="AdamW weight decay of the regular parameter group.")
@click.option("--dropout", type=FiniteFloatRange(0, 1, max_open=True), default=None,
              help="Override the preset's dropout rate.")
@click.option("--sampling", type=click.Choice(SAMPLING), default="balanced", show_default=True,
              help="uniform: every training sample once per epoch; balanced: every class drawn equally often.")
@click.option("--seed", type=_SEED, default=0, show_default=True)
@click.option("--log-every", type=_POSITIVE, default=25, show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Save every N steps (0: by time, so that saving costs < 2 % of the run).")
@click.option("--keep", type=_POSITIVE, default=2, show_default=True,
              help="Most recent checkpoints kept (the best by validation is kept besides).")
@click.option("--devices", type=_POSITIVE, default=None, help="Devices for data parallelism (default: all).")
@click.pass_context
def train(ctx: click.Context, caches: tuple[str, ...], out: Path, resume: bool, overwrite: bool,
          config: Path | None, devices: int | None, **options) -> None:
    """Train a classifier on CACHE (made by `eventssm preprocess`) into the run folder OUT.

    Several caches (files or quoted globs such as 'shards/train-*.h5') are one dataset; they
    must share tokenizer settings, sensor, vocabulary and class names. --config FILE reads the
    options from a recipe (recipes/); flags given here override it. OUT receives checkpoints
    (the last --keep and the best by validation), metrics.jsonl, pictures and config.toml (the
    resolved options); `evaluate` and `classify` load its best checkpoint. Ctrl-C saves and
    stops; --resume continues.
    """
    from eventssm.cli.runfolder import check_run_folder, clear_run_folder

    check_new_folder(out, "run folder")
    problem = check_run_folder(out, resume=resume, overwrite=overwrite)
    if problem:
        fail(problem)
    paths = expand_caches(caches)
    dropped = [_either(ctx, "steps", "epochs"), _either(ctx, "warmup_steps", "warmup_epochs")]
    options.update({name: None for name in dropped if name})
    with StopRequest() as stop:
        from eventssm.cli.train_run import run_training

        model_args, train_args, epochs = train_arguments(options)
        run_training(paths, out, resume=resume, overwrite=overwrite, clear=clear_run_folder, stop=stop,
                     given=given_options(ctx, exclude=("devices",)),  # --devices applies to a resumed run too
                     config_text=resolved_recipe(ctx, [str(p) for p in paths], unset=[d for d in dropped if d]),
                     devices=devices, model_args=model_args, train_args=train_args, epochs=epochs)


def _either(ctx: click.Context, steps: str, epochs: str) -> str | None:
    """Which of two options that set the same thing (``steps`` / ``epochs``) is dropped: the one
    from the weaker source (command line > recipe > default); None when ``epochs`` is unset.
    Both from the same source is an error."""
    if ctx.params[epochs] is None:
        return None
    rank = {ParameterSource.DEFAULT: 0, ParameterSource.DEFAULT_MAP: 1, ParameterSource.COMMANDLINE: 2}
    a, b = (rank.get(ctx.get_parameter_source(n), 2) for n in (steps, epochs))
    if ctx.params[steps] is None or b > a:
        return steps
    if a > b:
        return epochs
    where = f"both set in {ctx.params['config']}" if a == 1 else "both given"
    fail(f"--{steps.replace('_', '-')} and --{epochs.replace('_', '-')} set the same thing ({where}); keep one")


#: train options named otherwise in the model's configuration (option -> ClassifierConfig field)
MODEL_FIELD_NAMES = {"stages": "n_stages"}


def train_arguments(options: dict) -> tuple[dict, dict, dict]:
    """``train``'s option values -> (``get_preset`` arguments, ``TrainConfig`` fields,
    ``{"epochs", "warmup_epochs"}``: steps counted in passes, resolved once the split is known).

    An option named like a :class:`~eventssm.train.config.TrainConfig` field goes to the
    training configuration; every other one (``preset``, ``layer`` and the model options) to
    the model's, so a new model option needs no change here when it is named like its
    ClassifierConfig field.
    """
    import dataclasses

    from eventssm.train.config import TrainConfig

    options = dict(options)
    epochs = {k: options.pop(k) for k in ("epochs", "warmup_epochs")}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train_args = {k: v for k, v in options.items() if k in fields}
    model_args = {MODEL_FIELD_NAMES.get(k, k): v for k, v in options.items() if k not in fields}
    return model_args, train_args, epochs


@click.command("evaluate")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.argument("caches", nargs=-1, required=True, metavar="CACHE...")
@click.option("--batch-size", type=_POSITIVE, default=16, show_default=True)
@click.option("--last", is_flag=True, help="Use the run's last checkpoint instead of its best by validation.")
@click.option("--confusion-png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw the confusion matrix into this PNG file (a new file).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate_cmd(run: Path, caches: tuple[str, ...], batch_size: int, last: bool, confusion_png: Path | None,
                 as_json: bool) -> None:
    """Accuracy, per-class precision/recall/F1 and confusion matrix of the run RUN on every
    sample of CACHE (its best checkpoint by validation, or --last). Several caches (files or
    quoted globs) are evaluated as one dataset."""
    if confusion_png is not None and confusion_png.exists():
        fail(f"{confusion_png}: exists; give a new file name")
    paths = expand_caches(caches)
    where = describe_paths(paths)
    ds, loaded, temperature = _load_for_evaluation(run, paths, where, last)
    import sys

    from tqdm import tqdm

    from eventssm.train import evaluate
    from eventssm.train.record import per_class

    # a bar on a terminal, for caches that take a while (it goes away when done)
    with tqdm(total=len(ds), unit="sample", file=sys.stderr, leave=False,
              disable=not sys.stderr.isatty() or len(ds) < 256) as bar:
        res = evaluate(loaded.model, ds, batch_size=batch_size, buckets=loaded.spec.train.buckets,
                       progress=bar.update, temperature=temperature)
    names = list(ds.class_names)
    res["per_class"] = dict(zip(names, _rows(per_class(res["confusion"])), strict=True))
    res["checkpoint"] = {"step": loaded.step, "which": loaded.which}
    if confusion_png is not None:
        from eventssm.train.plot import plot_confusion

        try:
            title = paths[0].name if len(paths) == 1 else f"{len(paths)} caches"
            plot_confusion(res["confusion"], names, confusion_png,
                           title=f"{title}: accuracy {res['accuracy']:.3f} (step {loaded.step})")
        except OSError as exc:
            fail(f"{confusion_png}: {os_error_message(exc)}")
    if as_json:
        click.echo(json.dumps(res))
        return
    _print_evaluation(res, names, loaded)
    if confusion_png is not None:
        click.echo(f"confusion matrix: {confusion_png}")


def _load_for_evaluation(run: Path, paths: list[Path], where: str, last: bool):
    """The caches as one dataset and the run's checkpoint, checked against each other (cheap
    checks first: no JAX until the run folder and the caches are known to match)."""
    from eventssm.predict import PredictError, check_cache, read_run_info
    from eventssm.tokenizers.cache import open_caches
    from eventssm.tokenizers.dataset import DatasetError

    try:
        info = read_run_info(run)
        ds = open_caches(paths)
        check_cache(info, ds, where)
    except (PredictError, DatasetError) as exc:
        fail(str(exc))
    from eventssm.train import CheckpointError, load_run
    from eventssm.train.preflight import PreflightError, check_lengths

    try:
        loaded = load_run(run, "last" if last else "best")
        loaded.spec.check_compatible(ds, where=where, run=str(run))
        check_lengths(ds.lengths, range(len(ds)), loaded.spec.train.buckets, what="", where=where)
    except (CheckpointError, PreflightError) as exc:
        fail(str(exc))
    return ds, loaded, info.temperature


def _print_evaluation(res: dict, names: list[str], loaded) -> None:
    click.echo(f"accuracy {res['accuracy']:.4f} on {res['n']} samples, mean loss {res['loss']:.4f} "
               f"({loaded.which} checkpoint, step {loaded.step})")
    _confusion(names, res["confusion"])
    width = max(len(n) for n in names)
    click.echo(f"{'':>{width}}  precision  recall     F1  support")
    for name, r in res["per_class"].items():
        click.echo(f"{name:>{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    if "calibration" in res:
        cal = res["calibration"]
        click.echo(f"calibration on these samples with the run's temperature {cal['temperature']:.3f}: "
                   f"ECE (15 bins) {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}, "
                   f"NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}")
    if "recordings" in res:
        rec = res["recordings"]
        click.echo(f"accuracy by recording {rec['accuracy']:.4f} on {rec['n']} recordings "
                   "(mean of each recording's sample log-probabilities)")
        _confusion(names, rec["confusion"])


def _rows(stats: dict[str, list]) -> list[dict]:
    """``{"precision": [...], ...}`` -> one ``{"precision", "recall", "f1", "support"}`` per class."""
    return [dict(zip(stats, vals, strict=True)) for vals in zip(*stats.values(), strict=True)]


def _confusion(names: list[str], confusion: list[list[int]]) -> None:
    width = max(len(n) for n in names)
    click.echo(" " * (width + 2) + " ".join(f"{n[:6]:>6}" for n in names))
    for name, row in zip(names, confusion, strict=True):
        click.echo(f"{name:>{width}}  " + " ".join(f"{v:6d}" for v in row))


evaluate_cmd.name = "evaluate"

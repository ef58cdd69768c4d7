"""``eventssm train`` and ``eventssm evaluate``: fit an S7/S5 classifier on a token cache."""

from __future__ import annotations

import json
from pathlib import Path

import click

from eventssm.cli._common import FiniteFloatRange, check_new_folder, fail, os_error_message
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


_TRAIN_OPTIONS = ("preset", "layer", "d_model", "d_state", "stages", "layers_per_stage", "scan_method", "dtype",
                  "steps", "batch_size", "crop_events", "lr", "ssm_lr", "val_fraction", "augment", "cutmix",
                  "label_smoothing", "weight_decay", "dropout", "sampling", "seed",
                  "log_every", "eval_every", "patience", "accumulate", "checkpoint_every", "keep")


@click.command("train")
@click.argument("cache", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: checkpoints, metrics.jsonl, pictures (docs/long_runs.md).")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its newest intact checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the run in OUT (other files there are kept).")
@click.option("--preset", default="tiny", show_default=True,
              help="Model dims: tiny, s7-dvs, eventssm-dvs-small.")
@click.option("--layer", type=click.Choice(["s7", "s5", "s7paper"]), default="s7", show_default=True,
              help="SSM layer: s7 (low-rank input dependence), s5, or s7paper (S7 as the paper's code: "
                   "full per-token B_k, C_k; docs/model.md).")
@click.option("--d-model", type=_POSITIVE, default=None, help="Override the preset's feature size.")
@click.option("--d-state", type=_POSITIVE, default=None, help="Override the preset's state size.")
@click.option("--stages", type=_POSITIVE, default=None, help="Override the preset's number of stages.")
@click.option("--layers-per-stage", type=_POSITIVE, default=None, help="Override the preset's SSM layers per stage.")
@click.option("--scan-method", type=click.Choice(SCAN_METHODS), default=None,
              help="Override the preset's linear-recurrence scan (same results; speed and compile time differ).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default=None,
              help="Computation dtype of embeddings, projections and MLPs (the SSM stays float32). [default: float32]")
@click.option("--steps", type=_POSITIVE, default=300, show_default=True, help="Optimizer updates.")
@click.option("--batch-size", type=_POSITIVE, default=16, show_default=True,
              help="Rows per micro-batch (split over the devices).")
@click.option("--accumulate", type=_POSITIVE, default=1, show_default=True,
              help="Micro-batches per update (gradient accumulation).")
@click.option("--crop-events", type=_POSITIVE, default=4096, show_default=True, help="Random training crops (events).")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=4e-3, show_default=True)
@click.option("--ssm-lr", type=FiniteFloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--val-fraction", type=FiniteFloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Share of each class's recordings held out for validation (0 <= f < 1).")
@click.option("--eval-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Validate every N steps (0: only at the end); each validation saves a checkpoint.")
@click.option("--patience", type=click.IntRange(min=0), default=0, show_default=True,
              help="Stop after P validations without improvement (0: never).")
@click.option("--augment", type=click.Choice(AUGMENT_RECIPES), default="geometric", show_default=True,
              help="Event augmentation of the training crops: basic = drop 10 %, time skew and jitter, "
                   "1 px spatial jitter; geometric adds shift, rotation and zoom (docs/cli.md).")
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
def train(ctx: click.Context, cache: Path, out: Path, resume: bool, overwrite: bool, preset: str, layer: str,
          d_model: int | None, d_state: int | None, stages: int | None, layers_per_stage: int | None,
          scan_method: str | None, dtype: str | None, steps: int, batch_size: int, accumulate: int,
          crop_events: int, lr: float, ssm_lr: float, val_fraction: float, eval_every: int, patience: int,
          augment: str, cutmix: float, label_smoothing: float, weight_decay: float, dropout: float | None,
          sampling: str, seed: int, log_every: int, checkpoint_every: int, keep: int, devices: int | None) -> None:
    """Train a classifier on CACHE (made by `eventssm preprocess`) into the run folder OUT.

    OUT receives checkpoints (the last --keep and the best by validation), metrics.jsonl and
    pictures; `evaluate` and `classify` load its best checkpoint. Ctrl-C saves and stops;
    --resume continues.
    """
    from eventssm.cli.runfolder import check_run_folder, clear_run_folder

    check_new_folder(out, "run folder")
    problem = check_run_folder(out, resume=resume, overwrite=overwrite)
    if problem:
        fail(problem)
    given = [f"--{name.replace('_', '-')}" for name in _TRAIN_OPTIONS
             if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    with StopRequest() as stop:
        from eventssm.cli.train_run import run_training

        run_training(cache, out, resume=resume, overwrite=overwrite, clear=clear_run_folder, stop=stop,
                     given=given, devices=devices, model_args=dict(
                         preset=preset, layer=layer, d_model=d_model, d_state=d_state, n_stages=stages,
                         layers_per_stage=layers_per_stage, scan_method=scan_method, dtype=dtype,
                         dropout=dropout),
                     train_args=dict(steps=steps, batch_size=batch_size, accumulate=accumulate,
                                     crop_events=crop_events, lr=lr, ssm_lr=ssm_lr, val_fraction=val_fraction,
                                     eval_every=eval_every, patience=patience, augment=augment, cutmix=cutmix,
                                     label_smoothing=label_smoothing, weight_decay=weight_decay, sampling=sampling,
                                     seed=seed, log_every=log_every, checkpoint_every=checkpoint_every, keep=keep,
                                     warmup_steps=min(100, steps // 10)))


@click.command("evaluate")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.argument("cache", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--batch-size", type=_POSITIVE, default=16, show_default=True)
@click.option("--last", is_flag=True, help="Use the run's last checkpoint instead of its best by validation.")
@click.option("--confusion-png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw the confusion matrix into this PNG file (a new file).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate_cmd(run: Path, cache: Path, batch_size: int, last: bool, confusion_png: Path | None,
                 as_json: bool) -> None:
    """Accuracy, per-class precision/recall/F1 and confusion matrix of the run RUN on every
    sample of CACHE (its best checkpoint by validation, or --last)."""
    if confusion_png is not None and confusion_png.exists():
        fail(f"{confusion_png}: exists; give a new file name")
    from eventssm.predict import PredictError, check_cache, read_run_info
    from eventssm.tokenizers.dataset import DatasetError, TokenDataset

    # cheap checks first: no JAX until the run folder and the cache are known to match
    try:
        info = read_run_info(run)
        ds = TokenDataset(cache)
        check_cache(info, ds, cache)
    except (PredictError, DatasetError) as exc:
        fail(str(exc))
    from eventssm.train import CheckpointError, evaluate, load_run
    from eventssm.train.preflight import PreflightError, check_lengths
    from eventssm.train.record import per_class

    try:
        loaded = load_run(run, "last" if last else "best")
        loaded.spec.check_compatible(ds, where=str(cache), run=str(run))
        check_lengths(ds.lengths, range(len(ds)), loaded.spec.train.buckets, what="", where=str(cache))
    except (CheckpointError, PreflightError) as exc:
        fail(str(exc))
    import sys

    from tqdm import tqdm

    # a bar on a terminal, for caches that take a while (it goes away when done)
    with tqdm(total=len(ds), unit="sample", file=sys.stderr, leave=False,
              disable=not sys.stderr.isatty() or len(ds) < 256) as bar:
        res = evaluate(loaded.model, ds, batch_size=batch_size, buckets=loaded.spec.train.buckets,
                       progress=bar.update)
    names = list(ds.class_names)
    res["per_class"] = dict(zip(names, _rows(per_class(res["confusion"])), strict=True))
    res["checkpoint"] = {"step": loaded.step, "which": loaded.which}
    if confusion_png is not None:
        from eventssm.train.plot import plot_confusion

        try:
            plot_confusion(res["confusion"], names, confusion_png,
                           title=f"{cache.name}: accuracy {res['accuracy']:.3f} (step {loaded.step})")
        except OSError as exc:
            fail(f"{confusion_png}: {os_error_message(exc)}")
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"accuracy {res['accuracy']:.4f} on {res['n']} samples, mean loss {res['loss']:.4f} "
               f"({loaded.which} checkpoint, step {loaded.step})")
    _confusion(names, res["confusion"])
    width = max(len(n) for n in names)
    click.echo(f"{'':>{width}}  precision  recall     F1  support")
    for name, r in res["per_class"].items():
        click.echo(f"{name:>{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  {r['support']:7d}")
    if "recordings" in res:
        rec = res["recordings"]
        click.echo(f"accuracy by recording {rec['accuracy']:.4f} on {rec['n']} recordings "
                   "(mean of each recording's sample log-probabilities)")
        _confusion(names, rec["confusion"])
    if confusion_png is not None:
        click.echo(f"confusion matrix: {confusion_png}")


def _rows(stats: dict[str, list]) -> list[dict]:
    """``{"precision": [...], ...}`` -> one ``{"precision", "recall", "f1", "support"}`` per class."""
    return [dict(zip(stats, vals, strict=True)) for vals in zip(*stats.values(), strict=True)]


def _confusion(names: list[str], confusion: list[list[int]]) -> None:
    width = max(len(n) for n in names)
    click.echo(" " * (width + 2) + " ".join(f"{n[:6]:>6}" for n in names))
    for name, row in zip(names, confusion, strict=True):
        click.echo(f"{name:>{width}}  " + " ".join(f"{v:6d}" for v in row))


evaluate_cmd.name = "evaluate"

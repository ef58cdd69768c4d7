"""``eventssm train`` and ``eventssm evaluate``: fit an S7/S5 classifier on a token cache."""

from __future__ import annotations

import json
from pathlib import Path

import click

from eventssm.cli._common import FiniteFloatRange, check_new_folder, fail, os_error_message

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
@click.argument("cache", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Checkpoint folder to write (replaced atomically at the end).")
@click.option("--preset", default="tiny", show_default=True,
              help="Model dims: tiny, s7-dvs, eventssm-dvs-small.")
@click.option("--layer", type=click.Choice(["s7", "s5"]), default="s7", show_default=True)
@click.option("--d-model", type=_POSITIVE, default=None, help="Override the preset's feature size.")
@click.option("--d-state", type=_POSITIVE, default=None, help="Override the preset's state size.")
@click.option("--stages", type=_POSITIVE, default=None, help="Override the preset's number of stages.")
@click.option("--layers-per-stage", type=_POSITIVE, default=None, help="Override the preset's SSM layers per stage.")
@click.option("--scan-method", type=click.Choice(SCAN_METHODS), default=None,
              help="Override the preset's linear-recurrence scan (same results; speed and compile time differ).")
@click.option("--steps", type=_POSITIVE, default=300, show_default=True)
@click.option("--batch-size", type=_POSITIVE, default=16, show_default=True)
@click.option("--crop-events", type=_POSITIVE, default=4096, show_default=True, help="Random training crops (events).")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=4e-3, show_default=True)
@click.option("--ssm-lr", type=FiniteFloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--val-fraction", type=FiniteFloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Share of each class's recordings held out for validation (0 <= f < 1).")
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
def train(cache: Path, out: Path, preset: str, layer: str, d_model: int | None, d_state: int | None,
          stages: int | None, layers_per_stage: int | None, scan_method: str | None, steps: int,
          batch_size: int, crop_events: int, lr: float, ssm_lr: float, val_fraction: float, augment: str,
          cutmix: float, label_smoothing: float, weight_decay: float, dropout: float | None,
          sampling: str, seed: int, log_every: int) -> None:
    """Train a classifier on CACHE (made by `eventssm preprocess`) and save it to OUT."""
    check_new_folder(out, "checkpoint folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "model.json").is_file():
        fail(f"{out}: exists and is not a checkpoint folder (it would be replaced); give a new folder name")
    import numpy as np
    from flax import nnx

    from eventssm.models.classifier import EventClassifier
    from eventssm.models.presets import get_preset
    from eventssm.tokenizers.dataset import DatasetError, TokenDataset
    from eventssm.train import TrainConfig, evaluate, fit, save_checkpoint
    from eventssm.train.data import split_by_source

    try:
        ds = TokenDataset(cache)
        n_classes = len(ds.class_names)
        if n_classes < 2 or np.any(np.asarray(ds.labels) < 0):
            fail(f"{cache}: training needs a labelled cache with at least two classes")
        overrides = {k: v for k, v in (("d_model", d_model), ("d_state", d_state), ("n_stages", stages),
                                       ("layers_per_stage", layers_per_stage), ("scan_method", scan_method),
                                       ("dropout", dropout))
                     if v is not None}
        config = get_preset(preset, layer, vocab_size=ds.vocab_size, n_classes=n_classes, **overrides)
        tcfg = TrainConfig(steps=steps, batch_size=batch_size, crop_events=crop_events, lr=lr, ssm_lr=ssm_lr,
                           seed=seed, warmup_steps=min(100, steps // 10), augment=augment, cutmix=cutmix,
                           label_smoothing=label_smoothing, weight_decay=weight_decay, sampling=sampling)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    tr, va = split_by_source(ds.labels, ds.source_index, val_fraction, np.random.default_rng(seed))
    if len(tr) == 0:
        fail(f"{cache}: --val-fraction {val_fraction:g} leaves no recording for training")
    model = EventClassifier(config, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    n_params = sum(int(np.prod(p.shape)) for p in __import__("jax").tree_util.tree_leaves(nnx.state(model, nnx.Param)))
    click.echo(f"{cache}: {len(ds)} samples, {n_classes} classes, vocabulary {ds.vocab_size}; "
               f"train {len(tr)} / val {len(va)}; {preset} {layer}, {n_params:,} parameters")

    def report(step, m):
        click.echo(f"step {step:5d}  loss {m['loss']:.4f}  acc {m['accuracy']:.3f}  |g| {m['grad_norm']:.2f}")

    history = fit(model, ds, tcfg, train_indices=tr, val_indices=va if len(va) else None, on_log=report,
                  log_every=log_every)
    metrics = {"train": history["train"][-1], "seconds": history["seconds"]}
    if len(va):
        metrics["val"] = history["val"][-1] if history["val"] else evaluate(model, ds, indices=va)
        click.echo(f"validation accuracy {metrics['val']['accuracy']:.3f} on {metrics['val']['n']} samples")
        if "recordings" in metrics["val"]:
            rec = metrics["val"]["recordings"]
            click.echo(f"validation accuracy by recording {rec['accuracy']:.3f} on {rec['n']} recordings")
    tokenizer = {"settings": ds.settings.to_dict(), "sensor_size": list(ds.sensor_size),
                 "class_names": list(ds.class_names), "vocab_size": ds.vocab_size}
    calibration = None
    if len(va):
        from eventssm.train.calibrate import calibration_report, collect_logits

        logits, labels, _ = collect_logits(model, ds, indices=va, batch_size=tcfg.batch_size, buckets=tcfg.buckets)
        calibration = calibration_report(logits, labels)
        metrics["calibration"] = calibration
    try:
        save_checkpoint(out, model, train_config=tcfg, tokenizer=tokenizer, metrics=metrics)
        if calibration is not None:
            from eventssm.train.calibrate import write_calibration

            write_calibration(out, calibration)
    except OSError as exc:
        fail(f"{out}: checkpoint not saved: {os_error_message(exc)}")
    if calibration is not None:
        click.echo(f"temperature {calibration['temperature']:.3f} fitted on the validation split: "
                   f"ECE ({calibration['ece_bins']} bins) {calibration['ece_before']:.3f} -> "
                   f"{calibration['ece_after']:.3f}, NLL {calibration['nll_before']:.3f} -> "
                   f"{calibration['nll_after']:.3f}")
    click.echo(f"saved {out} ({history['seconds']:.1f} s)")


@click.command("evaluate")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.argument("cache", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--batch-size", type=_POSITIVE, default=16, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def evaluate_cmd(run: Path, cache: Path, batch_size: int, as_json: bool) -> None:
    """Accuracy and confusion matrix of the checkpoint RUN on every sample of CACHE."""
    from eventssm.predict import PredictError, check_cache, read_run_info
    from eventssm.tokenizers.dataset import DatasetError, TokenDataset

    # cheap checks first: no JAX until the run folder and the cache are known to match
    try:
        info = read_run_info(run)
        ds = TokenDataset(cache)
        check_cache(info, ds, cache)
    except (PredictError, DatasetError) as exc:
        fail(str(exc))
    from eventssm.predict import load_model
    from eventssm.train import evaluate
    from eventssm.train.checkpoint import CheckpointError

    try:
        model = load_model(run)
    except CheckpointError as exc:
        fail(str(exc))
    res = evaluate(model, ds, batch_size=batch_size)
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(f"accuracy {res['accuracy']:.4f} on {res['n']} samples, mean loss {res['loss']:.4f}")
    names = list(ds.class_names)
    _confusion(names, res["confusion"])
    if "recordings" in res:
        rec = res["recordings"]
        click.echo(f"accuracy by recording {rec['accuracy']:.4f} on {rec['n']} recordings "
                   "(mean of each recording's sample log-probabilities)")
        _confusion(names, rec["confusion"])


def _confusion(names: list[str], confusion: list[list[int]]) -> None:
    width = max(len(n) for n in names)
    click.echo(" " * (width + 2) + " ".join(f"{n[:6]:>6}" for n in names))
    for name, row in zip(names, confusion, strict=True):
        click.echo(f"{name:>{width}}  " + " ".join(f"{v:6d}" for v in row))


evaluate_cmd.name = "evaluate"

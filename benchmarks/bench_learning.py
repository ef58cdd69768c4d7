"""Does a model trained with the CLI defaults recognise a take it has never seen?

Leave-one-take-out on the real DVS128 recordings of ``../shared/data/activities/`` (three
activities, two takes each, SOURCES.md there): every take is cut into 1-s windows written as
files (as a user who cut their recordings into 1-s clips would have them); for each fold the
five other takes' windows go through ``eventssm preprocess --labels-from folder`` and
``eventssm train`` (the commands themselves, in-process, with the given extra options; the
validation split of ``train`` therefore comes from the training takes only), and the held-out
take's windows through ``preprocess`` and the model's whole-sample logits (the computation of
``eventssm evaluate``). Reported per fold and on average:

* window accuracy (each 1-s window on its own) and take accuracy (the argmax of the mean of the
  take's window log-probabilities, as ``evaluate`` combines the slices of a recording);
* ECE (15 equal-width bins) and NLL of the test windows before and after dividing the logits by
  the temperature ``train`` fitted on its validation split (RUN/calibration.json);
* with ``--layers s7,s5``: the same folds with S5 layers whose state size is chosen so that the
  parameter count matches the S7 model's as closely as the state size allows;
* with ``--seeds 0,1,2``: every run once per training seed, and the mean over the seeds (one
  run of six folds says little: the seed alone moves it by up to ±0.08);
* the windows with and without activity: a window "holds activity" when at least
  ``ACTIVE_MIN`` of its events pass the background-activity filter of ``preprocess
  --denoise-us 10000`` (a neighbouring pixel fired within 10 ms: the person or the clamp moves;
  a still scene passes 0-39 times a second in these takes). Reported: the accuracy on the
  windows with activity, how many of the others were right, and the *ceiling at chance*: the
  mean window accuracy of a model right on every window with activity and at chance (1 / classes)
  on the others. A window without activity shows nothing of its class; it is right only by
  chance or by a trait of the take its class shares in training (here only the standing takes
  begin and end with a still scene).

    python benchmarks/bench_learning.py                       # CLI defaults, S7
    python benchmarks/bench_learning.py --layers s7,s5 --json out.json
    python benchmarks/bench_learning.py --train-args "--steps 150 --augment none"
    python benchmarks/bench_learning.py --train-args "--embedding fourier" --take-order name
    python benchmarks/bench_learning.py --seeds 0,1,2 --train-args "--members 3"

Time is wall-clock for everything (cutting, preprocessing, compiling, training, testing).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ACTIVE_MIN = 64  # correlated events (10 ms background-activity filter) for a window to hold activity
ACTIVE_WINDOW_US = 10_000
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "activities"


def cut_takes(data: Path, out: Path, window_us: int = 1_000_000) -> dict[str, tuple[str, int, list[int]]]:
    """Write every take of ``data/<class>/*`` as 1-s window files ``out/<take>/<class>/<take>_<k>.npz``.

    Only whole windows are kept (a take's last, shorter window is dropped). Returns
    ``{take: (class, n_windows, activity)}``, ``activity[k]``: events of window ``k`` that pass
    the ``ACTIVE_WINDOW_US`` background-activity filter (on the window alone).
    """
    from eventssm.events import Recording
    from eventssm.io import read_events, write_events
    from eventssm.tokenizers.functional import denoise_filter

    takes = {}
    for path in sorted(p for p in data.glob("*/*") if p.suffix.lower() in (".aedat", ".aedat2", ".dat")):
        cls, take = path.parent.name, path.stem
        rec = read_events(path)
        t = rec.events["t"].astype(np.int64)
        n_win = int((t[-1] - t[0]) // window_us)
        edges = np.searchsorted(t, t[0] + window_us * np.arange(n_win + 1))
        folder = out / take / cls
        folder.mkdir(parents=True)
        kept, activity = 0, []
        for k in range(n_win):
            ev = rec.events[edges[k] : edges[k + 1]]
            if len(ev):
                write_events(folder / f"{take}_{k:03d}.npz", Recording(ev, rec.sensor_size, {}), compression=None)
                activity.append(len(denoise_filter(ev, rec.sensor_size, ACTIVE_WINDOW_US)))
                kept += 1
        takes[take] = (cls, kept, activity)
    if len(takes) < 2:
        raise SystemExit(f"{data}: need at least two takes (<class>/<file>.aedat)")
    return takes


def cli(*args: str) -> str:
    """Run ``eventssm ARGS`` in this process; its output, or exit with it on failure."""
    from click.testing import CliRunner

    from eventssm.cli import main

    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if res.exit_code != 0:
        raise SystemExit(f"eventssm {shlex.join(args)} failed ({res.exit_code}):\n{res.output}")
    return res.output


def param_count(preset: str, layer: str, vocab: int, n_classes: int, **over) -> int:
    import jax
    from flax import nnx

    from eventssm.models.ensemble import make_classifier
    from eventssm.models.presets import get_preset

    model = make_classifier(get_preset(preset, layer, vocab_size=vocab, n_classes=n_classes, **over),
                            rngs=nnx.Rngs(0))
    return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))


def matched_s5_args(train_args: list[str], cache: Path) -> list[str]:
    """``--layer s5 --d-state N`` with N (a multiple of the preset's blocks) whose S5 parameter
    count is closest to the S7 model's that ``train_args`` builds."""
    from eventssm.models.presets import PRESETS
    from eventssm.tokenizers.dataset import TokenDataset

    ds = TokenDataset(cache)
    vocab, n_classes = ds.vocab_size, len(ds.class_names)
    opt = {a: train_args[i + 1] for i, a in enumerate(train_args[:-1]) if a.startswith("--")}
    from eventssm.cli.train import train as train_cmd

    defaults = {p.name: p.default for p in train_cmd.params}
    preset = opt.get("--preset", defaults["preset"])
    over = {"embedding": opt.get("--embedding", defaults["embedding"]),
            "members": int(opt.get("--members", defaults["members"])), "grid": tuple(ds.grid_size)}
    for flag, field in (("--d-model", "d_model"), ("--d-state", "d_state"), ("--stages", "n_stages"),
                        ("--layers-per-stage", "layers_per_stage")):
        if flag in opt:
            over[field] = int(opt[flag])
    target = param_count(preset, "s7", vocab, n_classes, **over)
    blocks = int(PRESETS[preset].get("blocks", 1))
    d7 = over.get("d_state", int(PRESETS[preset]["d_state"]))
    best = None
    for d in range(blocks, 8 * d7 + 1, blocks):
        n = param_count(preset, "s5", vocab, n_classes, **{**over, "d_state": d})
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (d, n)
        if n > target:
            break
    rest = [a for i, a in enumerate(train_args)
            if a not in ("--layer", "--d-state") and (i == 0 or train_args[i - 1] not in ("--layer", "--d-state"))]
    print(f"  S7 {target:,} parameters; S5 with --d-state {best[0]}: {best[1]:,}", flush=True)
    return [*rest, "--layer", "s5", "--d-state", str(best[0])]


def run_fold(work: Path, takes: dict, test: str, train_args: list[str], tag: str,
             prep_args: list[str], take_order: str = "class") -> dict:
    from eventssm.tokenizers.dataset import TokenDataset
    from eventssm.train.calibrate import collect_logits, ece, log_softmax, nll
    from eventssm.train.checkpoint import load_run

    fold = work / f"{tag}_{test}"
    fold.mkdir()
    # the order of the inputs is the order of the samples in the cache, hence of the validation
    # split and of the batches: "class" lists the takes class folder by class folder, "name"
    # by take name (the same data in another order, to see how much a run depends on it)
    names_in = [t for t in takes if t != test]
    if take_order == "name":
        names_in = sorted(names_in)
    train_in = [str(work / "windows" / t) for t in names_in]
    cli("preprocess", *train_in, "-o", str(fold / "train.h5"), "--labels-from", "folder", "--workers", "1",
        "--quiet", *prep_args)
    cli("preprocess", str(work / "windows" / test), "-o", str(fold / "test.h5"), "--labels-from", "folder",
        "--workers", "1", "--quiet", *prep_args)
    t0 = time.perf_counter()
    log = cli("train", str(fold / "train.h5"), "-o", str(fold / "run"), *train_args)
    train_s = time.perf_counter() - t0
    model = load_run(fold / "run").model
    cal_path = fold / "run" / "calibration.json"
    temperature = json.loads(cal_path.read_text())["temperature"] if cal_path.is_file() else 1.0
    train_ds = TokenDataset(fold / "train.h5")
    test_ds = TokenDataset(fold / "test.h5")
    # class ids follow the sorted class names; the test cache (one class) maps it by name
    names = list(train_ds.class_names)
    true = names.index(test_ds.class_names[0])
    logits, _, index = collect_logits(model, test_ds)
    labels = np.full(len(logits), true)
    n_events = test_ds.lengths[index]
    order = np.argsort(index)  # rows come grouped by length; back to the cache's order
    lp = log_softmax(logits)
    pred = lp.argmax(1)
    take_pred = int(np.argmax(lp.mean(0)))
    val_line = next((ln for ln in log.splitlines() if ln.startswith("best validation accuracy ")), "")
    active = np.asarray(takes[test][2]) >= ACTIVE_MIN  # window k is the cache's k-th sample
    right = pred[order] == true
    return {**activity_figures(active, right, len(names)),
        "test_take": test, "class": takes[test][0], "windows": len(labels),
        "window_accuracy": float(np.mean(pred == true)),
        "take_correct": take_pred == true, "take_pred": names[take_pred],
        "mean_confidence": float(np.exp(lp.max(1)).mean()),
        "ece_before": ece(np.exp(lp), labels), "ece_after": ece(np.exp(log_softmax(logits / temperature)), labels),
        "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, temperature),
        "temperature": temperature, "train_seconds": train_s, "val": val_line,
        # per window (in the cache's order): events in it, predicted class
        "window_events": [int(n) for n in n_events[order]],
        "window_pred": [names[int(k)] for k in pred[order]],
        "window_activity": [int(v) for v in takes[test][2]],
    }


def activity_figures(active: np.ndarray, right: np.ndarray, n_classes: int) -> dict:
    """The figures of one fold's windows split by activity (``active``, ``right``: (K,) bool)."""
    return {
        "active_windows": int(active.sum()),
        "active_accuracy": float(right[active].mean()) if active.any() else None,
        "inactive_right": int(right[~active].sum()),
        "ceiling_at_chance": float((active.sum() + (~active).sum() / n_classes) / len(active)),
    }


def rescore(path: Path, takes: dict) -> None:
    """Print the activity figures of the runs stored in an older ``--json`` file, from the
    per-window predictions it holds (runs made before these figures existed)."""
    old = json.loads(path.read_text())
    n_classes = len({c for c, *_ in takes.values()})
    for tag, run in old["layers"].items():
        folds = []
        for f in run["folds"]:
            active = np.asarray(takes[f["test_take"]][2]) >= ACTIVE_MIN
            right = np.asarray(f["window_pred"]) == f["class"]
            folds.append({**f, **activity_figures(active, right, n_classes)})
        print(f"{path.name}: {tag} ({' '.join(run['args']) or 'defaults'})", flush=True)
        summarize(tag, folds)


def summarize(tag: str, folds: list[dict]) -> dict:
    w = np.array([f["windows"] for f in folds])
    acc = np.array([f["window_accuracy"] for f in folds])
    out = {
        "mean_window_accuracy": float(acc.mean()),
        "pooled_window_accuracy": float((acc * w).sum() / w.sum()),
        "take_accuracy": float(np.mean([f["take_correct"] for f in folds])),
        "ece_before": float(np.mean([f["ece_before"] for f in folds])),
        "ece_after": float(np.mean([f["ece_after"] for f in folds])),
        "nll_before": float(np.mean([f["nll_before"] for f in folds])),
        "nll_after": float(np.mean([f["nll_after"] for f in folds])),
        "active_window_accuracy": float(np.mean([f["active_accuracy"] for f in folds
                                                 if f["active_accuracy"] is not None])),
        "inactive_windows": int(sum(f["windows"] - f["active_windows"] for f in folds)),
        "inactive_right": int(sum(f["inactive_right"] for f in folds)),
        "ceiling_at_chance": float(np.mean([f["ceiling_at_chance"] for f in folds])),
    }
    print(f"== {tag}: mean window accuracy {out['mean_window_accuracy']:.3f} (pooled "
          f"{out['pooled_window_accuracy']:.3f}), take accuracy {out['take_accuracy']:.3f}, "
          f"ECE {out['ece_before']:.3f} -> {out['ece_after']:.3f}, NLL {out['nll_before']:.3f} -> "
          f"{out['nll_after']:.3f}", flush=True)
    print(f"   {tag}: windows with activity {out['active_window_accuracy']:.3f} (mean over folds); "
          f"without activity {out['inactive_right']} of {out['inactive_windows']} right; a model right on "
          f"every window with activity and at chance on the others: {out['ceiling_at_chance']:.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of <class>/<take>.aedat")
    ap.add_argument("--train-args", default="", help="extra `eventssm train` options (default: none)")
    ap.add_argument("--preprocess-args", default="", help="extra `eventssm preprocess` options (default: none)")
    ap.add_argument("--layers", default="s7", help="s7, s5 or s7,s5 (S5 at the S7 parameter count)")
    ap.add_argument("--folds", default="", help="comma-separated test takes (default: every take)")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    ap.add_argument("--seeds", default="",
                    help="comma-separated training seeds: the folds once per seed (appended as --seed), "
                         "and the mean over seeds (default: one run with the train args as given)")
    ap.add_argument("--rescore", type=Path, nargs="+", default=None, metavar="JSON",
                    help="instead of training: the activity figures of the runs stored in older --json "
                         "files, from their per-window predictions")
    ap.add_argument("--take-order", choices=("class", "name"), default="class",
                    help="order of the training takes given to preprocess: class folder by class folder "
                         "(default) or by take name (same data, another sample order)")
    a = ap.parse_args()
    if not a.data.is_dir():
        sys.exit(f"{a.data}: no such folder (the shared activities recordings)")
    t_all = time.perf_counter()
    base_args = shlex.split(a.train_args)
    prep_args = shlex.split(a.preprocess_args)
    result = {"command": " ".join(map(shlex.quote, sys.argv)), "train_args": base_args, "take_order": a.take_order,
              "preprocess_args": prep_args, "layers": {}}
    with tempfile.TemporaryDirectory(prefix="bench_learning_") as tmp:
        work = Path(tmp)
        takes = cut_takes(a.data, work / "windows")
        if a.rescore:
            for path in a.rescore:
                rescore(path, takes)
            return
        print("takes: " + ", ".join(f"{t} ({c}, {n} windows, {sum(v >= ACTIVE_MIN for v in act)} with activity)"
                                    for t, (c, n, act) in takes.items()), flush=True)
        wanted = [f for f in a.folds.split(",") if f]
        unknown = sorted(set(wanted) - set(takes))
        if unknown:
            sys.exit(f"--folds: no take named {', '.join(unknown)} (takes: {', '.join(takes)})")
        tests = [t for t in takes if not wanted or t in wanted]
        seeds = [int(v) for v in a.seeds.split(",") if v] if a.seeds else [None]
        for layer in a.layers.split(","):
            args = list(base_args)
            if layer == "s5":
                cli("preprocess", *[str(work / "windows" / t) for t in takes], "-o", str(work / "all.h5"),
                    "--labels-from", "folder", "--workers", "1", "--quiet", "--overwrite", *prep_args)
                args = matched_s5_args(args, work / "all.h5")
            elif layer != "s7":
                sys.exit(f"--layers: unknown layer {layer!r}")
            per_seed = []
            for seed in seeds:
                t_layer = time.perf_counter()
                tag = layer if seed is None else f"{layer} seed {seed}"
                run_args = args if seed is None else [*args, "--seed", str(seed)]
                folds = []
                for test in tests:
                    f = run_fold(work, takes, test, run_args, tag.replace(" ", "_"), prep_args, a.take_order)
                    folds.append(f)
                    take = "ok" if f["take_correct"] else f"WRONG ({f['take_pred']})"
                    print(f"  {tag} test {test:32s} {f['class']:9s} windows {f['windows']:3d}  acc "
                          f"{f['window_accuracy']:.3f} ({f['active_accuracy'] or 0:.3f} of {f['active_windows']} "
                          f"with activity)  take {take}"
                          f"  conf {f['mean_confidence']:.2f}  ECE {f['ece_before']:.3f}->{f['ece_after']:.3f}"
                          f" (T={f['temperature']:.2f})  train {f['train_seconds']:.0f} s  [{f['val']}]", flush=True)
                summary = summarize(tag, folds)
                summary["seconds"] = time.perf_counter() - t_layer
                print(f"   {tag}: {len(folds)} folds in {summary['seconds']:.0f} s", flush=True)
                result["layers"][tag] = {"args": run_args, "folds": folds, "summary": summary}
                per_seed.append(summary["mean_window_accuracy"])
            if len(per_seed) > 1:
                # one run of six folds moves by up to ±0.08 with the seed alone (RESULTS.md): the
                # mean over seeds is the figure to compare recipes by
                spread = {"seeds": seeds, "mean_window_accuracy": float(np.mean(per_seed)),
                          "min": float(np.min(per_seed)), "max": float(np.max(per_seed))}
                result.setdefault("over_seeds", {})[layer] = spread
                print(f"== {layer} over seeds {','.join(map(str, seeds))}: mean window accuracy "
                      f"{spread['mean_window_accuracy']:.3f} (runs {spread['min']:.3f}-{spread['max']:.3f})",
                      flush=True)
    result["seconds"] = time.perf_counter() - t_all
    ru = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds of this process (all its threads): on a loaded machine the wall time says little,
    # the CPU time divided by the cores it could use bounds what a quiet machine would take
    result["cpu_seconds"] = ru.ru_utime + ru.ru_stime
    print(f"total {result['seconds']:.0f} s wall, {result['cpu_seconds']:.0f} s CPU", flush=True)
    if a.json is not None:
        a.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

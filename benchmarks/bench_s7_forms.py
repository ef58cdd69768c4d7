"""The two S7 forms side by side (and S5): parameters, training speed and accuracy.

Forms: ``s7`` (the project's S7: rank-r input-dependent corrections, eventssm.models.s7),
``s7paper`` (S7 as the paper's code: full per-token B_k, C_k, rank-⌈H/16⌉ step,
eventssm.models.s7paper) and ``s5``. Every form gets the same data, steps, seeds and options.

(a) synthetic: the demo's motion classes (``eventssm simulate``, 32x32 sensor, 24 frames, as
    examples/demo.py), trained with ``eventssm train`` (tiny preset, d_model = d_state = 16,
    no validation split) and evaluated on recordings of a new simulator seed
    (``eventssm evaluate``). Training tokens/s: the mean ``tokens_per_s`` of the train records
    in metrics.jsonl (the first, compiling, record excluded); the commands run in this process.
(b) selective: the "last marked value" task of tests/models/test_selective_task.py (L = 48,
    K = 8, H = N = 16, one SSM layer, Adam 1e-2, batch 64): test accuracy on 1000 sequences
    after ``--sel-steps`` steps, and the wall time of the whole run (compile included).

Parameters are counted on the models that are trained (embedding included, and without it).

    python benchmarks/bench_s7_forms.py                        # both tasks, seeds 0 and 1
    python benchmarks/bench_s7_forms.py --seeds 0 --sim-steps 40 --sel-steps 100 --json out.json
    python benchmarks/bench_s7_forms.py --tasks synthetic --lr 1e-3   # (a) at a lower learning rate
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_learning import cli, param_count  # noqa: E402  (same folder)

FORMS = ("s7", "s7paper", "s5")
SIM = ["--size", "32x32", "--frames", "24"]
MODEL = {"d_model": 16, "d_state": 16}


def train_args(steps: int, seed: int, layer: str, lr: float = 5e-3) -> list[str]:
    """The fixed `eventssm train` options of the synthetic task (the demo's recipe, smaller)."""
    return ["--preset", "tiny", "--layer", layer, "--d-model", str(MODEL["d_model"]), "--d-state",
            str(MODEL["d_state"]), "--steps", str(steps), "--batch-size", "8", "--crop-events", "1024",
            "--lr", str(lr), "--val-fraction", "0", "--augment", "none", "--cutmix", "0", "--label-smoothing",
            "0", "--sampling", "uniform", "--log-every", "5", "--seed", str(seed)]


def synthetic(work: Path, forms: list[str], seeds: list[int], steps: int, per_class: int, lr: float) -> dict:
    """Task (a): simulate once, then train and evaluate every form and seed."""
    from eventssm.tokenizers.dataset import TokenDataset

    cli("simulate", str(work / "raw"), "--per-class", str(per_class), *SIM, "--seed", "0")
    cli("simulate", str(work / "unseen"), "--per-class", "3", *SIM, "--seed", "99")
    for name in ("raw", "unseen"):
        cli("preprocess", str(work / name), "-o", str(work / f"{name}.h5"), "--labels-from", "folder",
            "--workers", "1", "--quiet")
    ds = TokenDataset(work / "raw.h5")
    vocab, n_classes = ds.vocab_size, len(ds.class_names)
    out = {"recordings": len(ds), "classes": n_classes, "steps": steps, "lr": lr, "forms": {}}
    for layer in forms:
        total = param_count("tiny", layer, vocab, n_classes, **MODEL)
        runs = []
        for seed in seeds:
            run = work / f"run_{layer}_{seed}"
            t0 = time.perf_counter()
            cli("train", str(work / "raw.h5"), "-o", str(run), *train_args(steps, seed, layer, lr))
            wall = time.perf_counter() - t0
            recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
            tps = [r["tokens_per_s"] for r in recs if r["kind"] == "train" and r.get("tokens_per_s")]
            res = json.loads(cli("evaluate", str(run), str(work / "unseen.h5"), "--json"))
            runs.append({"seed": seed, "accuracy": res["accuracy"], "n": res["n"], "train_wall_s": wall,
                         "tokens_per_s": float(np.mean(tps)), "final_loss": recs[-1].get("loss"),
                         "train_loss": [[r["step"], r["loss"]] for r in recs if r["kind"] == "train"]})
            print(f"  (a) {layer:8s} seed {seed}: accuracy {res['accuracy']:.3f} on {res['n']}, "
                  f"{np.mean(tps):,.0f} tokens/s, train {wall:.0f} s", flush=True)
        out["forms"][layer] = {"params": total, "params_wo_embedding": total - vocab * MODEL["d_model"],
                               "runs": runs}
    return out


def selective(forms: list[str], seeds: list[int], steps: int) -> dict:
    """Task (b): the selective test task, every form and seed."""
    import jax
    from flax import nnx

    from tests.models.test_selective_task import BATCH, L, TinyModel, train_and_evaluate

    out = {"steps": steps, "batch": BATCH, "length": L, "forms": {}}
    for layer in forms:
        model = TinyModel(layer, nnx.Rngs(0))
        total = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
        ssm = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(nnx.state(model.ssm, nnx.Param)))
        runs = []
        for seed in seeds:
            t0 = time.perf_counter()
            acc = train_and_evaluate(layer, seed=seed, steps=steps)
            wall = time.perf_counter() - t0
            runs.append({"seed": seed, "accuracy": acc, "wall_s": wall})
            print(f"  (b) {layer:8s} seed {seed}: accuracy {acc:.3f}, {wall:.0f} s", flush=True)
        out["forms"][layer] = {"params": total, "ssm_params": ssm, "runs": runs}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forms", default=",".join(FORMS), help="comma-separated, from s7, s7paper, s5")
    ap.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    ap.add_argument("--sim-steps", type=int, default=80, help="training steps of task (a)")
    ap.add_argument("--lr", type=float, default=5e-3, help="peak learning rate of task (a) (--ssm-lr stays 1e-3)")
    ap.add_argument("--per-class", type=int, default=8, help="training recordings per class of task (a)")
    ap.add_argument("--sel-steps", type=int, default=200, help="training steps of task (b)")
    ap.add_argument("--tasks", default="synthetic,selective", help="synthetic, selective or both")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    a = ap.parse_args()
    forms = [f for f in a.forms.split(",") if f]
    tasks = [t for t in a.tasks.split(",") if t]
    if bad := sorted(set(forms) - set(FORMS)):
        sys.exit(f"--forms: unknown {', '.join(bad)} (choose from {', '.join(FORMS)})")
    if bad := sorted(set(tasks) - {"synthetic", "selective"}):
        sys.exit(f"--tasks: unknown {', '.join(bad)}")
    if a.json is not None and a.json.exists():
        sys.exit(f"{a.json}: exists (choose another name)")
    seeds = [int(s) for s in a.seeds.split(",") if s]
    result = {"command": shlex.join(["python", *sys.argv])}
    t0 = time.perf_counter()
    if "synthetic" in tasks:
        with tempfile.TemporaryDirectory(prefix="bench_s7_forms_") as tmp:
            result["synthetic"] = synthetic(Path(tmp), forms, seeds, a.sim_steps, a.per_class, a.lr)
    if "selective" in tasks:
        result["selective"] = selective(forms, seeds, a.sel_steps)
    result["seconds"] = time.perf_counter() - t0
    print(f"total {result['seconds']:.0f} s", flush=True)
    if a.json is not None:
        tmp = a.json.with_name(a.json.name + ".part")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(a.json)


if __name__ == "__main__":
    main()

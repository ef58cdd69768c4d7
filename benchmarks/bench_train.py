"""Training-side costs: the full training step (data loading, crops, augmentation, padding in
the prefetch thread + the model step) against the model step alone, the cost of one checkpoint
save, and the model step on 1 vs 2 (fake) devices.

The data are synthetic token streams on a 128 × 128 × 2 grid (DVS128 Gesture's vocabulary,
32,768 tokens), samples of ``--sample-events`` events, so the benchmark needs no dataset.

* model step alone: the jitted training step (forward, backward, AdamW) on one fixed batch,
  mean of ``--steps`` calls after compilation;
* full step: :func:`eventssm.train.fit` for ``--steps`` + 1 steps (the first, compiling, step
  is left out of the window), with ``--augment`` and the background prefetcher; its
  ``data_wait`` is the share of the step time spent waiting for the next batch;
* checkpoint: :meth:`RunCheckpoints.save` of the model and optimizer (mean of 3 saves), also as
  a share of the model step time at the default ``--checkpoint-every 0`` policy (at most one
  save per max(60 s, 60 × save time));
* devices: the model step with the batch sharded over a mesh of 1 and of 2 devices, in a
  subprocess started with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (on a CPU the
  two fake devices share the same cores: this checks the sharded path, it cannot speed up).

Usage::

    python benchmarks/bench_train.py                         # s7-dvs, batch 16 x 4096, basic augmentation
    python benchmarks/bench_train.py --preset tiny --steps 5 # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = (128, 128, 2)


class SyntheticTokens:
    """``dataset[i] -> (tokens, dt, label)``: random DVS-like streams (TokenDataset interface
    as far as :func:`fit` and the augmentation need it)."""

    def __init__(self, n: int, events: int, n_classes: int, seed: int = 0):
        import numpy as np

        from eventssm.tokenizers.dataset import TokenizerSettings

        rng = np.random.default_rng(seed)
        self.items = []
        vocab = GRID[0] * GRID[1] * GRID[2]
        for i in range(n):
            tokens = rng.integers(0, vocab, events).astype(np.int32)
            dt = rng.exponential(0.05, events).astype(np.float32)
            dt[0] = 0
            self.items.append((tokens, dt, i % n_classes))
        self.lengths = np.full(n, events)
        self.grid_size = GRID
        self.settings = TokenizerSettings(time_unit="ms")

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _model(preset: str, n_classes: int):
    from flax import nnx

    from eventssm.models.classifier import EventClassifier
    from eventssm.models.presets import get_preset

    cfg = get_preset(preset, "s7", vocab_size=GRID[0] * GRID[1] * GRID[2], n_classes=n_classes)
    return EventClassifier(cfg, rngs=nnx.Rngs(0))


def model_step(preset: str, batch: int, length: int, steps: int, devices: int | None = None) -> dict:
    """Seconds per jitted training step on one fixed batch (after compiling)."""
    import jax
    import numpy as np
    from flax import nnx

    from eventssm.train import TrainConfig, make_optimizer, train_step
    from eventssm.train.parallel import make_mesh, replicate, shard_batch

    model = _model(preset, 11)
    opt = nnx.Optimizer(model, make_optimizer(TrainConfig(), model), wrt=nnx.Param)
    mesh = make_mesh(devices)
    replicate(mesh, model, opt)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, GRID[0] * GRID[1] * GRID[2], (batch, length)).astype(np.int32)
    dt = rng.exponential(0.05, (batch, length)).astype(np.float32)
    mask = np.ones((batch, length), bool)
    labels = (np.arange(batch) % 11).astype(np.int32)
    args = shard_batch(mesh, tokens, dt, mask, labels)
    step = nnx.jit(train_step)
    t0 = time.perf_counter()
    float(step(model, opt, *args, jax.random.key(0))["loss"])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(steps):
        float(step(model, opt, *args, jax.random.key(k + 1))["loss"])
    sec = (time.perf_counter() - t0) / steps
    return {"devices": mesh.devices.size, "step_s": sec, "tokens_per_s": batch * length / sec,
            "first_call_s": compile_s}


def full_step(preset: str, batch: int, length: int, steps: int, augment: str, sample_events: int) -> dict:
    """fit() with the prefetcher and augmentation; the window leaves out the compiling step."""
    from eventssm.train import TrainConfig, fit

    data = SyntheticTokens(64, sample_events, 11)
    cfg = TrainConfig(steps=steps + 1, batch_size=batch, crop_events=length, augment=augment, log_every=1,
                      warmup_steps=0)
    model = _model(preset, 11)
    hist = fit(model, data, cfg)
    recs = hist["train"][1:]  # per-step records after the first (compiling) one
    wait = sum(r["data_wait"] for r in recs) / len(recs)
    tps = sum(r["tokens_per_s"] for r in recs) / len(recs)
    return {"data_wait": wait, "tokens_per_s": tps, "step_s": batch * length / tps}


def checkpoint_cost(preset: str, saves: int = 3) -> dict:
    from flax import nnx

    from eventssm.train import RunCheckpoints, TrainConfig, make_optimizer

    model = _model(preset, 11)
    opt = nnx.Optimizer(model, make_optimizer(TrainConfig(), model), wrt=nnx.Param)
    import jax

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = RunCheckpoints(Path(tmp) / "run", keep=2)
        times = []
        for s in range(1, saves + 1):
            t0 = time.perf_counter()
            ckpt.save(s, model, opt, root_key=jax.random.key(0), meta={"step": s})
            times.append(time.perf_counter() - t0)
        size = sum(p.stat().st_size for p in ckpt.step_dir(saves).rglob("*") if p.is_file())
        ckpt.close()
    return {"save_s": sum(times) / len(times), "bytes": size}


def _devices_child(args) -> None:
    out = [model_step(args.preset, args.batch, args.length, args.steps, devices=n) for n in (1, 2)]
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="s7-dvs")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--augment", default="basic")
    ap.add_argument("--sample-events", type=int, default=20_000)
    ap.add_argument("--devices-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.devices_child:
        _devices_child(args)
        return
    print(f"{args.preset} s7, batch {args.batch} x {args.length}, augment {args.augment}, {os.cpu_count()} CPUs")
    alone = model_step(args.preset, args.batch, args.length, args.steps)
    print(f"model step alone: {alone['step_s']:.3f} s/step, {alone['tokens_per_s']:,.0f} tokens/s "
          f"(first call {alone['first_call_s']:.1f} s)")
    full = full_step(args.preset, args.batch, args.length, args.steps, args.augment, args.sample_events)
    print(f"full step (prefetch thread, crops, augmentation, padding): {full['step_s']:.3f} s/step, "
          f"{full['tokens_per_s']:,.0f} tokens/s, waiting for data {100 * full['data_wait']:.1f} % of the step time")
    ck = checkpoint_cost(args.preset)
    from eventssm.train.fit import MIN_SAVE_INTERVAL_S, SAVE_COST_FACTOR

    interval = max(MIN_SAVE_INTERVAL_S, SAVE_COST_FACTOR * ck["save_s"])
    print(f"checkpoint: {ck['save_s']:.3f} s per save, {ck['bytes'] / 2**20:.1f} MiB; default policy saves at most "
          f"every {interval:.0f} s = {100 * ck['save_s'] / interval:.2f} % of the time")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, __file__, "--devices-child", "--preset", args.preset, "--batch",
                        str(args.batch), "--length", str(args.length), "--steps", str(args.steps)],
                       env=env, capture_output=True, text=True)
    if r.returncode:
        print("devices: failed:", r.stderr[-2000:])
    else:
        for d in json.loads(r.stdout.strip().splitlines()[-1]):
            print(f"{d['devices']} fake device(s): {d['step_s']:.3f} s/step, {d['tokens_per_s']:,.0f} tokens/s")


if __name__ == "__main__":
    main()

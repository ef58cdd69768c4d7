"""Throughput, compile time and peak memory of EventClassifier (S5 vs S7 layers) on this machine.

Every configuration runs in a fresh subprocess (so the peak resident set size,
``resource.getrusage(RUSAGE_SELF).ru_maxrss``, belongs to that configuration alone) and reports:

* forward tokens/s (eval mode, jitted, batch B × L events),
* training tokens/s: forward + backward + optax AdamW update (train mode, dropout on),
* compile time (first call minus a steady call) of both,
* peak RSS of the process.

Streaming: events/s of :class:`eventssm.models.streaming.Streamer` at batch 1, per event
(``step``) and per chunk (``step_chunk``).

Usage::

    python benchmarks/bench_model.py            # full table (~10 min on a 2-core CPU)
    python benchmarks/bench_model.py --quick    # a few small configurations (~2 min)
    python benchmarks/bench_model.py --out benchmarks/results/model.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

# EventSSM's forward pass at the eventssm-dvs-small dims: 79.9 k tokens/s at batch 8 × 65,536
# on a 2-core machine (a figure given in the task issue, not measured here).
EVENTSSM_FORWARD_TOKENS_PER_S = 79.9e3

FULL = [
    # preset, layer, L, scan method, remat, remat_blocks (the DVS presets: auto, yes, yes;
    # "auto" is the sequential scan on CPU)
    ("eventssm-dvs-small", "s5", 1024, "auto", True, True),
    ("eventssm-dvs-small", "s5", 8192, "sequential", True, True),
    ("eventssm-dvs-small", "s5", 8192, "chunked", True, True),
    ("eventssm-dvs-small", "s5", 8192, "associative", True, True),
    ("eventssm-dvs-small", "s5", 65536, "auto", True, True),
    ("eventssm-dvs-small", "s5", 65536, "auto", True, False),
    ("eventssm-dvs-small", "s5", 65536, "chunked", True, True),
    ("eventssm-dvs-small", "s7", 8192, "auto", True, True),
    ("eventssm-dvs-small", "s7", 65536, "auto", True, True),
    ("eventssm-dvs-small", "s7", 65536, "auto", True, False),
    ("s7-dvs", "s5", 65536, "auto", True, True),
    ("s7-dvs", "s7", 65536, "auto", True, True),
]
QUICK = [
    ("eventssm-dvs-small", "s5", 1024, "auto", True, True),
    ("s7-dvs", "s7", 1024, "auto", True, True),
]
BATCH = 8


def _data(vocab: int, b_sz: int, length: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (b_sz, length)).astype(np.int32)
    dt = rng.exponential(1e-3, (b_sz, length)).astype(np.float32)  # ~1 kHz event rate, seconds
    dt[:, 0] = 0.0
    labels = rng.integers(0, 11, (b_sz,)).astype(np.int32)
    return tokens, dt, labels


def _timed(fn, repeats: int):
    """(first-call seconds, best steady seconds) of fn()."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first, best


def worker_model(
    preset: str, layer: str, length: int, method: str, remat: bool, remat_blocks: bool
) -> dict:
    import resource

    import jax
    import optax
    from flax import nnx

    from eventssm.models.classifier import EventClassifier
    from eventssm.models.presets import get_preset

    cfg = get_preset(
        preset, layer=layer, scan_method=method, remat=remat, remat_blocks=remat_blocks
    )
    model = EventClassifier(cfg, rngs=nnx.Rngs(params=0, dropout=1))
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    tokens, dt, labels = _data(cfg.vocab_size, BATCH, length)
    repeats = 5 if BATCH * length <= 65536 else 3

    @nnx.jit
    def forward(model, tokens, dt):
        return model(tokens, dt)

    optimizer = nnx.Optimizer(model, optax.adamw(1e-3, weight_decay=0.02), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, tokens, dt, labels):
        def loss_fn(model):
            logits = model(tokens, dt)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    model.eval()
    f_first, f_best = _timed(lambda: forward(model, tokens, dt), repeats)
    model.train()
    t_first, t_best = _timed(lambda: train_step(model, optimizer, tokens, dt, labels), repeats)
    n_tok = BATCH * length
    return {
        "preset": preset,
        "layer": layer,
        "length": length,
        "method": method,
        "remat": remat,
        "remat_blocks": remat_blocks,
        "params": int(n_params),
        "fwd_tok_s": n_tok / f_best,
        "train_tok_s": n_tok / t_best,
        "fwd_compile_s": f_first - f_best,
        "train_compile_s": t_first - t_best,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def worker_stream(preset: str, layer: str, n_step: int, chunks: list[int]) -> dict:
    import resource

    import numpy as np
    from flax import nnx

    from eventssm.models.classifier import EventClassifier
    from eventssm.models.presets import get_preset
    from eventssm.models.streaming import Streamer

    cfg = get_preset(preset, layer=layer)
    model = EventClassifier(cfg, rngs=nnx.Rngs(0))
    model.eval()
    streamer = Streamer(model)
    total = max(max(chunks), n_step)
    tokens, dt, _ = _data(cfg.vocab_size, 1, total)
    out = {"preset": preset, "layer": layer}
    state = streamer.init_state(1)
    state, logits = streamer.step(state, tokens[:, 0], dt[:, 0])  # compile
    logits.block_until_ready()
    t0 = time.perf_counter()
    for k in range(n_step):
        state, logits = streamer.step(state, tokens[:, k], dt[:, k])
    np.asarray(logits)
    out["step_ev_s"] = n_step / (time.perf_counter() - t0)
    st0 = streamer.init_state(1)
    for n in chunks:
        for last_only in (False, True):
            first, best = _timed(
                lambda n=n, lo=last_only: streamer.step_chunk(
                    st0, tokens[:, :n], dt[:, :n], last_only=lo
                ),
                2,
            )
            key = f"chunk{n}{'_last' if last_only else ''}"
            out[f"{key}_ev_s"] = n / best
            out[f"{key}_compile_s"] = first - best
    out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def _spawn(kind: str, args: list) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps([kind, *args])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail), "args": args}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t0
    return res


def _table(rows: list[dict], stream: list[dict]) -> str:
    lines = [
        "| preset | layer | B × L | scan | remat (stem / blocks) | params | forward tok/s "
        "| train tok/s | compile fwd / train (s) | peak RSS (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['args']} | failed: {r['error']} |||||||||")
            continue
        lines.append(
            f"| {r['preset']} | {r['layer']} | {BATCH} × {r['length']:,} | {r['method']} "
            f"| {'yes' if r['remat'] else 'no'} / {'yes' if r['remat_blocks'] else 'no'} "
            f"| {r['params']:,} | {r['fwd_tok_s'] / 1e3:,.1f} k "
            f"| {r['train_tok_s'] / 1e3:,.1f} k | {r['fwd_compile_s']:.1f} / "
            f"{r['train_compile_s']:.1f} | {r['peak_rss_gib']:.2f} |"
        )
    if stream:
        lines += [
            "",
            "| streaming, batch 1 | layer | step() events/s | step_chunk, logits after every "
            "event | step_chunk, last_only | compile all / last (s) | peak RSS (GiB) |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in stream:
            if "error" in s:
                lines.append(f"| {s['args']} | failed: {s['error']} ||||||")
                continue
            sizes = sorted(
                int(k[5:-5]) for k in s if k.startswith("chunk") and k.endswith("_ev_s")
                and "_last" not in k
            )
            every = ", ".join(f"{s[f'chunk{n}_ev_s'] / 1e6:.2f} M (N = {n:,})" for n in sizes)
            last = ", ".join(f"{s[f'chunk{n}_last_ev_s'] / 1e6:.2f} M (N = {n:,})" for n in sizes)
            comp = ", ".join(
                f"{s[f'chunk{n}_compile_s']:.1f} / {s[f'chunk{n}_last_compile_s']:.1f}"
                for n in sizes
            )
            lines.append(
                f"| {s['preset']} | {s['layer']} | {s['step_ev_s'] / 1e3:,.1f} k | {every} "
                f"| {last} | {comp} | {s['peak_rss_gib']:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small configurations only")
    parser.add_argument("--out", help="also write the markdown fragment to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *wargs = json.loads(args.worker)
        res = worker_model(*wargs) if kind == "model" else worker_stream(*wargs)
        print(json.dumps(res))
        return
    load = " / ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "n/a"
    configs = QUICK if args.quick else FULL
    rows = []
    for cfg in configs:
        res = _spawn("model", list(cfg))
        rows.append(res)
        print(json.dumps(res), flush=True)
    stream_args = (
        [["s7-dvs", "s7", 300, [4096]]]
        if args.quick
        else [["s7-dvs", "s7", 3000, [4096, 65536]], ["s7-dvs", "s5", 3000, [4096, 65536]]]
    )
    stream = []
    for sa in stream_args:
        res = _spawn("stream", sa)
        stream.append(res)
        print(json.dumps(res), flush=True)
    machine = platform.processor() or platform.machine()
    cmd = "python benchmarks/bench_model.py" + (" --quick" if args.quick else "")
    text = "\n".join(
        [
            "## Model throughput (eventssm.models)",
            "",
            f"Date: {datetime.date.today().isoformat()}. Machine: {os.cpu_count()}-core CPU "
            f"({machine}), load average before the run {load}. Command: `{cmd}`. Each "
            "throughput is the best of 5 steady calls (3 for B·L > 65,536) after the compiling "
            "call; streaming: best of 2.",
            "",
            _table(rows, stream),
            "",
            f"Reference: EventSSM's own model at the eventssm-dvs-small dims, forward only, "
            f"{EVENTSSM_FORWARD_TOKENS_PER_S / 1e3:.1f} k tokens/s at batch 8 × 65,536 on a 2-core "
            "machine (figure given in the task issue, not re-measured here).",
        ]
    )
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()

"""Throughput of eventssm's augment + tokenize pipeline against tonic's, on the same events.

Pipeline (both sides, same parameters):
    Downsample(2) -> DropEvent(0.1) -> SpatialJitter(std 1 px, drop outside)
    -> TimeJitter(std 10 us, re-sorted) -> tokens 2·(x·H2 + y) + p and dt in ms.
eventssm: eventssm.tokenizers (numba kernels, explicit Generator).
tonic: tonic.transforms.Downsample / DropEvent / SpatialJitter(clip_outliers) /
TimeJitter(sort_timestamps) + the token formula in numpy.
Also: tokenize alone (Downsample(2) + tokens) against tonic Downsample + numpy, whose outputs
must be identical (checked), and `eventssm preprocess` on the shared recordings.

Data: a synthetic stream (uniform pixels on 128x128, ~1 event/us, sorted) and every shared
recording in ../shared/data/recordings (relative to the repository) that reads.

Warm-up (numba compile or cache load) is timed separately and excluded from the figures; each
figure is the best of --repeats runs. Usage:

    python benchmarks/bench_tokens.py [--quick] [--events N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ROOT.parent / "shared" / "data" / "recordings"
sys.path.insert(0, str(ROOT))

from eventssm.events import make_events  # noqa: E402
from eventssm.tokenizers import functional as F  # noqa: E402
from eventssm.tokenizers import transforms as T  # noqa: E402

FACTOR = 2
DROP_P = 0.1
SPATIAL_STD = 1.0
TIME_STD_US = 10.0


def synthetic(n: int, seed: int = 0, w: int = 128, h: int = 128):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(0, 3, n)) + 1_000_000
    ev = make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.random(n) < 0.5)
    return ev, (w, h, 2)


def ours_pipeline(sensor):
    ds = T.Downsample(sensor, FACTOR)
    size2 = ds.output_size
    aug = T.Compose((ds, T.DropEvent(DROP_P), T.SpatialJitter(size2, SPATIAL_STD),
                     T.TimeJitter(TIME_STD_US)))

    def run(events, rng):
        return F.tokenize(aug(events, rng), size2, time_unit="ms")

    return run


def tonic_pipeline(sensor):
    import tonic.transforms as tt

    w2, h2 = -(-sensor[0] // FACTOR), -(-sensor[1] // FACTOR)  # tonic: x2 = trunc(x / f)
    aug = tt.Compose([
        tt.Downsample(spatial_factor=1 / FACTOR),
        tt.DropEvent(p=DROP_P),
        tt.SpatialJitter(sensor_size=(w2, h2, 2), var_x=SPATIAL_STD**2, var_y=SPATIAL_STD**2,
                         clip_outliers=True),
        tt.TimeJitter(std=TIME_STD_US, sort_timestamps=True),
    ])

    def run(events):
        ev = aug(events)
        tokens = (2 * (ev["x"].astype(np.int64) * h2 + ev["y"]) + ev["p"]).astype(np.int32)
        dt = np.zeros(len(ev), np.float32)
        dt[1:] = np.diff(ev["t"]) * 1e-3
        return tokens, dt

    return run


def tonic_tokenize_only(events, sensor):
    import tonic.transforms as tt

    h2 = -(-sensor[1] // FACTOR)
    ev = tt.Downsample(spatial_factor=1 / FACTOR)(events)
    tokens = (2 * (ev["x"].astype(np.int64) * h2 + ev["y"]) + ev["p"]).astype(np.int32)
    dt = np.zeros(len(ev), np.float32)
    dt[1:] = np.diff(ev["t"]) * 1e-3
    return tokens, dt


def best_of(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def cold_compile_seconds() -> float:
    """First pipeline call in a fresh process with an empty numba cache (pure compile time)."""
    code = (
        "import time, numpy as np;"
        "from benchmarks.bench_tokens import synthetic, ours_pipeline;"
        "ev, s = synthetic(1000); run = ours_pipeline(s);"
        "t0 = time.perf_counter(); run(ev, np.random.default_rng(0));"
        "print(time.perf_counter() - t0)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def time_preprocess(files: list[Path], repeats: int) -> tuple[float, int] | str:
    """Best wall time of `eventssm preprocess` on ``files`` (one worker), or a reason string."""
    if not (ROOT / "eventssm" / "cli" / "preprocess.py").exists():
        return "eventssm preprocess not present"
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "cache.h5"
            cmd = [sys.executable, "-m", "eventssm", "preprocess", *map(str, files), "-o", str(out),
                   "--no-labels", "--downsample", str(FACTOR), "--sort-events", "--skip-bad",
                   "--workers", "1", "-q"]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if res.returncode != 0:
                return f"preprocess failed: {(res.stderr or res.stdout).strip()[:200]}"
    return min(times), len(files)


def time_preprocess_synthetic(events, sensor, repeats: int) -> tuple[float, float] | str:
    """`eventssm preprocess` of the synthetic stream written as one uncompressed HDF5 file:
    (best wall time, time of an empty run on a 1-event file = process start + imports)."""
    from eventssm.events import Recording
    from eventssm.io import write_events

    with tempfile.TemporaryDirectory() as tmp:
        big, tiny = Path(tmp) / "synthetic.h5", Path(tmp) / "tiny.h5"
        write_events(big, Recording(events, sensor), compression=None)
        write_events(tiny, Recording(events[:1], sensor), compression=None)
        res = [time_preprocess([f], repeats) for f in (big, tiny)]
    if isinstance(res[0], str) or isinstance(res[1], str):
        return str(res[0] if isinstance(res[0], str) else res[1])
    return res[0][0], res[1][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M synthetic events, 1 repeat")
    ap.add_argument("--events", type=int, default=None, help="synthetic stream length (8M)")
    ap.add_argument("--repeats", type=int, default=None, help="best of R runs (3)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-compile subprocess")
    args = ap.parse_args()
    n = args.events or (1_000_000 if args.quick else 8_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    datasets = []
    ev, sensor = synthetic(n)
    datasets.append((f"synthetic 128x128, {n / 1e6:g}M events", ev, sensor))
    files = []
    if RECORDINGS.is_dir():
        from eventssm.io import read_events

        for p in sorted(RECORDINGS.iterdir()):
            if p.name == "SHA256SUMS" or p.name.endswith(".md"):
                continue
            try:
                rec = read_events(p)
            except Exception as exc:  # a reader still missing or a file without events
                print(f"skip {p.name}: {exc}", file=sys.stderr)
                continue
            files.append(p)
            datasets.append((p.name, F.sort_events(rec.events), rec.sensor_size))
    else:
        print(f"no shared recordings at {RECORDINGS}; synthetic stream only", file=sys.stderr)

    # warm-up: compile (or load from the numba cache) every kernel once, timed separately
    t0 = time.perf_counter()
    ours_pipeline(sensor)(ev[:1000], np.random.default_rng(0))
    warm = time.perf_counter() - t0
    cold = None if args.no_cold else cold_compile_seconds()

    rows = []
    tot = {"ours": 0.0, "tonic": 0.0, "tok_ours": 0.0, "tok_tonic": 0.0, "events": 0}
    for name, events, size in datasets:
        rng = np.random.default_rng(1)
        ours = ours_pipeline(size)
        theirs = tonic_pipeline(size)
        t_ours, (tok, _) = best_of(lambda ours=ours, events=events, rng=rng: ours(events, rng),
                                   repeats)
        # tonic.transforms.Downsample copies its input first, so tonic never mutates `events`
        t_tonic, _ = best_of(lambda theirs=theirs, events=events: theirs(events), repeats)
        t_tok, mine = best_of(
            lambda events=events, size=size: F.tokenize(events, size, downsample=FACTOR), repeats
        )
        t_tok_tonic, ref = best_of(lambda events=events, size=size: tonic_tokenize_only(events, size),
                                   repeats)
        assert np.array_equal(mine[0], ref[0]) and np.allclose(mine[1], ref[1]), name
        m = len(events)
        rows.append((name, m, len(tok), t_ours, t_tonic, t_tok, t_tok_tonic))
        tot["ours"] += t_ours
        tot["tonic"] += t_tonic
        tot["tok_ours"] += t_tok
        tot["tok_tonic"] += t_tok_tonic
        tot["events"] += m

    pre = time_preprocess(files, repeats) if files else "no recordings"
    pre_syn = time_preprocess_synthetic(ev, sensor, repeats)

    cpu = platform.processor() or platform.machine()
    print("date: 2026-11-22")
    print(f"machine: 2-core CPU, 24 GiB, shared with other jobs during this run; {cpu}")
    print(f"command: python benchmarks/bench_tokens.py{' --quick' if args.quick else ''}"
          f"{f' --events {args.events}' if args.events else ''}")
    print(f"warm-up (first call, numba cache load): {warm:.2f} s"
          + ("" if cold is None else f"; cold compile (empty cache, fresh process): {cold:.1f} s"))
    print()
    print("| data | events in | tokens out | pipeline eventssm Mev/s | pipeline tonic Mev/s | "
          "speed-up | tokenize eventssm Mev/s | tokenize tonic+numpy Mev/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m, k, a, b, c, d in rows:
        print(f"| {name} | {m:,} | {k:,} | {m / a / 1e6:.1f} | {m / b / 1e6:.2f} | {b / a:.1f}x | "
              f"{m / c / 1e6:.0f} | {m / d / 1e6:.1f} | {d / c:.1f}x |")
    m = tot["events"]
    print(f"| **all** | {m:,} | | {m / tot['ours'] / 1e6:.1f} | {m / tot['tonic'] / 1e6:.2f} | "
          f"{tot['tonic'] / tot['ours']:.1f}x | {m / tot['tok_ours'] / 1e6:.0f} | "
          f"{m / tot['tok_tonic'] / 1e6:.1f} | {tot['tok_tonic'] / tot['tok_ours']:.1f}x |")
    print()
    if isinstance(pre, tuple):
        secs, nfiles = pre
        print(f"eventssm preprocess ({nfiles} shared recordings, --downsample {FACTOR}, "
              f"--workers 1, process start included): {secs:.2f} s")
    else:
        print(f"eventssm preprocess: not timed ({pre})")
    if isinstance(pre_syn, tuple):
        secs, base = pre_syn
        print(f"eventssm preprocess of the synthetic stream ({n:,} events, one uncompressed HDF5 "
              f"file, --workers 1): {secs:.2f} s wall, {base:.2f} s of it process start and "
              f"imports (1-event file) -> {n / max(secs - base, 1e-9) / 1e6:.1f} Mev/s")
    else:
        print(f"eventssm preprocess (synthetic): not timed ({pre_syn})")


if __name__ == "__main__":
    main()

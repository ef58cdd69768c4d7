"""Throughput of eventssm's augment + tokenize pipeline against tonic's, on the same events.

Pipeline (both sides, same parameters):
    Downsample(2) -> DropEvent(0.1) -> SpatialJitter(std 1 px, drop outside)
    -> TimeJitter(std 10 us, re-sorted) -> tokens 2·(x·H2 + y) + p and dt in ms.
eventssm: eventssm.tokenizers (numba kernels, explicit Generator); the augmented events go to
one buffer reused across calls (`Compose.apply_into`, as a data loader would), then tokenize.
tonic: tonic.transforms.Downsample / DropEvent / SpatialJitter(clip_outliers) /
TimeJitter(sort_timestamps) + the token formula in numpy.
Also: tokenize alone (Downsample(2) + tokens) against tonic Downsample + numpy, whose outputs
must be identical (checked), and preprocessing (file -> tokens -> HDF5) against tonic's way
of doing it (below).

Preprocessing: eventssm's `build_cache` (what `eventssm preprocess` runs, in this process, one
worker) against the tonic pipeline that does the same job: read each recording (with eventssm's
reader: tonic has none for EVT 2.0/3.0 and its AEDAT 2.0 readers fail, see bench_io.py), tonic
Downsample(2), the token formula and dt in numpy, and tonic's `save_to_disk_cache` (the HDF5
writer of `tonic.DiskCachedDataset`, one file per recording) -- with the same filter on both
sides (none, and lzf, tonic's default); gzip (eventssm's default) has no tonic counterpart.
Inputs: the shared recordings, one cache per sensor size (a cache holds one sensor), and a
synthetic corpus of 64 recordings (the synthetic stream cut in 64, uncompressed .npz files)
in one cache. The tokens and dt written by both sides are read back and checked equal.
The CLI (`eventssm preprocess`, a new process per cache) is timed too.

Data: a synthetic stream (uniform pixels on 128x128, ~1 event/us, sorted) and every shared
recording in ../shared/data/recordings (relative to the repository) that reads.

Validity: on every input, eventssm's pipeline output (seed 7) must equal a stage-by-stage numpy
recomputation from the same random streams (integer division, Bernoulli mask, rounded-normal
offsets, drop outside, clip at 0, stable argsort, token formula, np.diff), and the tokens must
lie in [0, vocabulary) with dt >= 0.

Timing: warm-up (numba compile or cache load) is timed separately and excluded; the runs of
eventssm and tonic alternate (so both see the same machine load) and each figure is the best of
R runs, R = --repeats, raised for small inputs (up to 30 runs, about 3M events per figure).
Per-stage costs (ns per input event of the stage, each stage timed alone on the previous
stage's output) are printed for the synthetic stream and evt2_sample.raw. Usage:

    python benchmarks/bench_tokens.py [--quick] [--events N] [--repeats R] [--passes P]
                                      [--no-cold] [--no-preprocess]

With --passes P every input is measured in P passes over all inputs and each figure is the best
over the passes; the speed-up of each pass is printed too (the VMs this ran on drift between a
fast and a slow state over seconds, which moves single-pass figures by 10 %).
"""

from __future__ import annotations

import argparse
import datetime
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

from eventssm.events import EVENT_DTYPE, make_events  # noqa: E402
from eventssm.tokenizers import functional as F  # noqa: E402
from eventssm.tokenizers import kernels as K  # noqa: E402
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


def ours_pipeline(sensor, reuse: bool = True):
    """eventssm's side: Compose + tokenize. With ``reuse`` (what a data loader does, and what
    is timed) the augmented events go to one buffer reused across calls
    (``Compose.apply_into``); without, ``Compose.__call__`` returns a new array each call."""
    ds = T.Downsample(sensor, FACTOR)
    size2 = ds.output_size
    aug = T.Compose((ds, T.DropEvent(DROP_P), T.SpatialJitter(size2, SPATIAL_STD),
                     T.TimeJitter(TIME_STD_US)))
    buf = [np.empty(0, EVENT_DTYPE)]

    def run(events, rng):
        if not reuse:
            return F.tokenize(aug(events, rng), size2, time_unit="ms")
        if len(buf[0]) < len(events):
            buf[0] = np.empty(len(events), EVENT_DTYPE)
        n = aug.apply_into(events, rng, buf[0])
        return F.tokenize(buf[0][:n], size2, time_unit="ms")

    return run


def reference_pipeline(events, sensor, seed: int):
    """The pipeline stage by stage in numpy, from the random streams eventssm's transforms draw
    (a check of the fused kernels, the re-sort and the tokenizer; not timed)."""
    g = np.random.default_rng(seed)
    s_drop, s_sj, s_tj = (np.uint64(K.rng_seed(g)) for _ in range(3))  # Downsample draws none
    w2, h2, _ = T.Downsample(sensor, FACTOR).output_size
    x = events["x"].astype(np.int64) // FACTOR
    y = events["y"].astype(np.int64) // FACTOR
    t, p = events["t"].astype(np.int64), events["p"]
    u = np.empty(len(x))
    K.fill_uniform(s_drop, 0, u)
    keep = u >= DROP_P
    x, y, t, p = x[keep], y[keep], t[keep], p[keep]

    def offsets(seed, half, std, n):
        out = np.empty(n, np.int64)
        K.fill_offsets(seed, 0, half, std, *K.offset_table(std), out)
        return out

    x = x + offsets(s_sj, 0, SPATIAL_STD, len(x))
    y = y + offsets(s_sj, 1, SPATIAL_STD, len(y))
    inside = (x >= 0) & (x < w2) & (y >= 0) & (y < h2)
    x, y, t, p = x[inside], y[inside], t[inside], p[inside]
    t = np.maximum(t + offsets(s_tj, 0, TIME_STD_US, len(t)), 0)
    order = np.argsort(t, kind="stable")
    x, y, t, p = x[order], y[order], t[order], p[order]
    tokens = (2 * (x * h2 + y) + p).astype(np.int32)
    dt = np.zeros(len(t), np.float32)
    dt[1:] = (np.diff(t) * 1e-3).astype(np.float32)
    return tokens, dt


def check_ours(events, sensor) -> int:
    """Assert that eventssm's pipeline output is valid (with and without the reused buffer);
    return its token count."""
    tokens, dt = ours_pipeline(sensor)(events, np.random.default_rng(7))
    plain = ours_pipeline(sensor, reuse=False)(events, np.random.default_rng(7))
    assert np.array_equal(tokens, plain[0]) and np.array_equal(dt, plain[1])
    ref_tokens, ref_dt = reference_pipeline(events, sensor, 7)
    vocab = F.vocab_size(sensor, FACTOR)
    assert np.array_equal(tokens, ref_tokens), "tokens differ from the numpy recomputation"
    assert np.array_equal(dt, ref_dt), "dt differs from the numpy recomputation"
    assert tokens.dtype == np.int32 and dt.dtype == np.float32
    assert len(tokens) == 0 or (tokens.min() >= 0 and tokens.max() < vocab)
    assert (dt >= 0).all()
    assert 0.8 * len(events) - 100 <= len(tokens) <= len(events)  # DropEvent(0.1) + edge losses
    return len(tokens)


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
        return numpy_tokens(aug(events), h2)

    return run


def numpy_tokens(ev, h2: int):
    """tonic's side of the tokenizer: the token formula and dt (ms) in numpy."""
    tokens = (2 * (ev["x"].astype(np.int64) * h2 + ev["y"]) + ev["p"]).astype(np.int32)
    dt = np.zeros(len(ev), np.float32)
    dt[1:] = np.diff(ev["t"]) * 1e-3
    return tokens, dt


def tonic_tokenize_only(events, sensor):
    import tonic.transforms as tt

    h2 = -(-sensor[1] // FACTOR)
    return numpy_tokens(tt.Downsample(spatial_factor=1 / FACTOR)(events), h2)


def interleaved_best(fns: dict, repeats: int) -> dict:
    """Best wall time of each callable over ``repeats`` rounds, the callables alternating."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def stage_costs(events, sensor, repeats: int) -> tuple[list, list]:
    """ns per input event of each stage run alone (eventssm, tonic), best of ``repeats``."""
    import tonic.transforms as tt

    ds = T.Downsample(sensor, FACTOR)
    size2 = ds.output_size
    ours = [("Downsample", ds), ("DropEvent", T.DropEvent(DROP_P)),
            ("SpatialJitter", T.SpatialJitter(size2, SPATIAL_STD)),
            ("TimeJitter", T.TimeJitter(TIME_STD_US))]
    theirs = [tt.Downsample(spatial_factor=1 / FACTOR), tt.DropEvent(p=DROP_P),
              tt.SpatialJitter(sensor_size=size2, var_x=SPATIAL_STD**2, var_y=SPATIAL_STD**2,
                               clip_outliers=True),
              tt.TimeJitter(std=TIME_STD_US, sort_timestamps=True)]
    rng = np.random.default_rng(3)
    a = b = events
    rows = []
    for (name, mine), other in zip(ours, theirs, strict=True):
        res = interleaved_best({"ours": lambda m=mine, a=a: m(a, rng),
                                "tonic": lambda o=other, b=b: o(b.copy())}, repeats)
        rows.append((name, len(a), res["ours"] / len(a) * 1e9, res["tonic"] / len(b) * 1e9))
        a, b = mine(a, rng), other(b.copy())
    res = interleaved_best({"ours": lambda: F.tokenize(a, size2, time_unit="ms"),
                            "tonic": lambda: numpy_tokens(b, size2[1])}, repeats)
    rows.append(("tokens + dt", len(a), res["ours"] / len(a) * 1e9, res["tonic"] / len(b) * 1e9))
    return rows


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


def time_preprocess(groups: list[list[Path]], repeats: int) -> tuple[float, int] | str:
    """Best wall time (summed over ``groups``, one cache each) of `eventssm preprocess`
    (one worker, a new process per cache), or a reason string."""
    total = 0.0
    for files in groups:
        times = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "cache.h5"
                cmd = [sys.executable, "-m", "eventssm", "preprocess", *map(str, files), "-o",
                       str(out), "--no-labels", "--downsample", str(FACTOR), "--workers", "1",
                       "-q"]
                t0 = time.perf_counter()
                res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                if res.returncode != 0:
                    return f"preprocess failed: {(res.stderr or res.stdout).strip()[:200]}"
        total += min(times)
    return total, sum(len(g) for g in groups)


def tonic_preprocess(files: list[Path], out_dir: Path, compress: bool,
                     precomputed: list[tuple] | None = None) -> None:
    """tonic's side of preprocessing: read, tonic Downsample, numpy tokens + dt, and tonic's
    DiskCachedDataset writer, one HDF5 file per recording. With ``precomputed`` (tokens, dt)
    per file, the transforms are skipped: what is left is the reading and writing both sides
    share, a lower bound of any tokenizer's cost in this job (``tonic / that`` bounds the
    speed-up)."""
    import tonic.transforms as tt
    from tonic.cached_dataset import save_to_disk_cache

    from eventssm.io import read_events

    down = tt.Downsample(spatial_factor=1 / FACTOR)
    for i, path in enumerate(files):
        rec = read_events(path)
        if precomputed is None:
            tokens, dt = numpy_tokens(down(rec.events), -(-rec.sensor_size[1] // FACTOR))
        else:
            tokens, dt = precomputed[i]
        save_to_disk_cache((tokens, dt), -1, out_dir / f"{i}.hdf5", compress=compress)


def check_preprocess(caches: list[Path], groups: list[list[Path]], tonic_dir: Path) -> None:
    """The tokens and dt of every recording in eventssm's caches equal tonic's files."""
    import h5py

    i = 0
    for cache, files in zip(caches, groups, strict=True):
        with h5py.File(cache, "r") as f:
            tokens, dt, offsets = f["tokens"][()], f["dt"][()], f["offsets"][()]
        assert len(offsets) == len(files) + 1, cache
        for k in range(len(files)):
            with h5py.File(tonic_dir / f"{i}.hdf5", "r") as g:
                a, b = slice(offsets[k], offsets[k + 1]), (g["data/0"][()], g["data/1"][()])
            assert np.array_equal(tokens[a], b[0]) and np.array_equal(dt[a], b[1]), files[k]
            i += 1


def compare_preprocess(name: str, groups: list[list[Path]], repeats: int,
                       sensor=None) -> list[tuple]:
    """Rows (data, filter, events, eventssm s, tonic s or None, shared-work s or None) of best
    wall times over ``repeats`` alternating rounds; ``groups`` share a sensor size each (one
    cache each)."""
    from eventssm.tokenizers.dataset import TokenizerSettings, build_cache, tokenize_file

    settings = TokenizerSettings(downsample=FACTOR)
    flat = [f for g in groups for f in g]
    arrays = [(item.tokens, item.dt) for item in
              (tokenize_file(f, settings=settings, sensor_size=sensor) for f in flat)]
    n_events = sum(len(tokens) for tokens, _ in arrays)  # one token per event (no drop)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        caches = [tmp / f"cache{k}.h5" for k in range(len(groups))]
        tonic_dir = tmp / "tonic"
        tonic_dir.mkdir()

        def ours(comp):
            for cache, files in zip(caches, groups, strict=True):
                build_cache(cache, files, None, settings=settings, compression=comp,
                            sensor_size=sensor, overwrite=True)

        def theirs(compress):
            tonic_preprocess(flat, tonic_dir, compress)

        def shared(compress):
            tonic_preprocess(flat, tonic_dir, compress, precomputed=arrays)

        for comp, tonic_compress in ((None, False), ("lzf", True), ("gzip", None)):
            fns = {"ours": lambda c=comp: ours(c)}
            if tonic_compress is not None:
                fns["tonic"] = lambda c=tonic_compress: theirs(c)
                fns["shared"] = lambda c=tonic_compress: shared(c)
            best = interleaved_best(fns, repeats)
            if tonic_compress is not None:
                check_preprocess(caches, groups, tonic_dir)
            rows.append((name, comp or "none", n_events, best["ours"], best.get("tonic"),
                         best.get("shared")))
    return rows


def synthetic_corpus(events, sensor, folder: Path, n_files: int = 64) -> list[Path]:
    """The stream cut into ``n_files`` recordings, written as uncompressed .npz files."""
    from eventssm.events import Recording
    from eventssm.io import write_events

    files = []
    for k, part in enumerate(np.array_split(events, n_files)):
        files.append(write_events(folder / f"rec{k:03d}.npz", Recording(part, sensor),
                                  compression=None))
    return files


def time_preprocess_synthetic(events, sensor, repeats: int) -> tuple[float, float] | str:
    """`eventssm preprocess` of the synthetic stream written as one uncompressed HDF5 file:
    (best wall time, time of an empty run on a 1-event file = process start + imports)."""
    from eventssm.events import Recording
    from eventssm.io import write_events

    with tempfile.TemporaryDirectory() as tmp:
        big, tiny = Path(tmp) / "synthetic.h5", Path(tmp) / "tiny.h5"
        write_events(big, Recording(events, sensor), compression=None)
        write_events(tiny, Recording(events[:1], sensor), compression=None)
        res = [time_preprocess([[f]], repeats) for f in (big, tiny)]
    if isinstance(res[0], str) or isinstance(res[1], str):
        return str(res[0] if isinstance(res[0], str) else res[1])
    return res[0][0], res[1][0]


def _mem_gib() -> str:
    """Physical memory of this machine, from /proc/meminfo (Linux), as "N GiB"."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kib = int(fh.readline().split()[1])
        return f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "memory unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M synthetic events, 1 repeat")
    ap.add_argument("--events", type=int, default=None, help="synthetic stream length (8M)")
    ap.add_argument("--repeats", type=int, default=None, help="best of R runs (3)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-compile subprocess")
    ap.add_argument("--passes", type=int, default=1,
                    help="measure every input in P passes over all inputs; each figure is the "
                         "best over all passes (the host's speed drifts over seconds)")
    ap.add_argument("--no-preprocess", action="store_true",
                    help="skip the preprocessing comparison")
    args = ap.parse_args()
    n = args.events or (1_000_000 if args.quick else 8_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    passes = max(1, args.passes)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    load_start = os.getloadavg()[0]

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

    n_tokens = {}
    for name, events, size in datasets:
        n_tokens[name] = check_ours(events, size)
        mine = F.tokenize(events, size, downsample=FACTOR)
        ref = tonic_tokenize_only(events, size)
        assert np.array_equal(mine[0], ref[0]) and np.allclose(mine[1], ref[1]), name
    keys = ("ours", "tonic", "tok_ours", "tok_tonic")
    best_of: dict = {name: dict.fromkeys(keys, float("inf")) for name, _, _ in datasets}
    per_pass = []  # (pass, tonic / eventssm time summed over the real recordings, over all)
    for k_pass in range(passes):
        this_pass = {}
        for name, events, size in datasets:
            rng = np.random.default_rng(1)
            ours, theirs = ours_pipeline(size), tonic_pipeline(size)
            reps = max(repeats, min(30, 3_000_000 // max(len(events), 1)))
            # tonic.transforms.Downsample copies its input first: tonic never mutates `events`
            best = interleaved_best({
                "ours": lambda ours=ours, events=events, rng=rng: ours(events, rng),
                "tonic": lambda theirs=theirs, events=events: theirs(events),
                "tok_ours": lambda events=events, size=size: F.tokenize(events, size,
                                                                        downsample=FACTOR),
                "tok_tonic": lambda events=events, size=size: tonic_tokenize_only(events, size),
            }, reps)
            this_pass[name] = best
            for key in keys:
                best_of[name][key] = min(best_of[name][key], best[key])
        real_names = [name for name, _, _ in datasets if not name.startswith("synthetic")]
        per_pass.append((k_pass + 1,
                         sum(this_pass[n]["tonic"] for n in real_names)
                         / sum(this_pass[n]["ours"] for n in real_names) if real_names else None,
                         sum(b["tonic"] for b in this_pass.values())
                         / sum(b["ours"] for b in this_pass.values())))
    rows = [(name, len(events), n_tokens[name], *(best_of[name][key] for key in keys))
            for name, events, _ in datasets]
    stages = [(name, stage_costs(events, size, max(repeats, 5))) for name, events, size in
              datasets if name.startswith("synthetic") or name == "evt2_sample.raw"]

    groups: dict = {}
    for p, (_, _, size) in zip(files, datasets[1:], strict=True):
        groups.setdefault(tuple(size), []).append(p)
    groups = list(groups.values())
    pre, pre_syn, pre_rows = "not run (--no-preprocess)", "not run (--no-preprocess)", []
    if not args.no_preprocess:
        pre = time_preprocess(groups, repeats) if files else "no recordings"
        pre_syn = time_preprocess_synthetic(ev, sensor, repeats)
        pre_rows = compare_preprocess("shared recordings, one cache per sensor size", groups,
                                      repeats) if files else []
        with tempfile.TemporaryDirectory() as tmp:
            corpus = synthetic_corpus(ev, sensor, Path(tmp))
            pre_rows += compare_preprocess(f"synthetic corpus, {len(corpus)} files", [corpus],
                                           repeats)

    cpu = platform.processor() or platform.machine()
    print(f"date: {datetime.date.today().isoformat()}")
    print(f"machine: {os.cpu_count()}-core CPU, {_mem_gib()}; {cpu}; 1-minute load average "
          f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"command: python benchmarks/bench_tokens.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"warm-up (first call, numba cache load): {warm:.2f} s"
          + ("" if cold is None else f"; cold compile (empty cache, fresh process): {cold:.1f} s"))
    print("validity: eventssm's tokens and dt equal the stage-by-stage numpy recomputation on "
          "every input")
    print()
    print("| data | events in | tokens out | pipeline eventssm Mev/s | pipeline tonic Mev/s | "
          "speed-up | tokenize eventssm Mev/s | tokenize tonic+numpy Mev/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m, k, a, b, c, d in rows:
        print(f"| {name} | {m:,} | {k:,} | {m / a / 1e6:.1f} | {m / b / 1e6:.2f} | {b / a:.1f}x | "
              f"{m / c / 1e6:.0f} | {m / d / 1e6:.1f} | {d / c:.1f}x |")
    real = [r for r in rows if not r[0].startswith("synthetic")]
    for label, part in (("**real recordings**", real), ("**all**", rows)):
        if not part:
            continue
        m = sum(r[1] for r in part)
        a, b, c, d = (sum(r[j] for r in part) for j in (3, 4, 5, 6))
        print(f"| {label} | {m:,} | | {m / a / 1e6:.1f} | {m / b / 1e6:.2f} | {b / a:.1f}x | "
              f"{m / c / 1e6:.0f} | {m / d / 1e6:.1f} | {d / c:.1f}x |")
    if passes > 1:
        print()
        print("pipeline speed-up of each pass (best of that pass's runs): " + "; ".join(
            f"pass {k}: " + ("" if r is None else f"real recordings {r:.1f}x, ") + f"all {a:.1f}x"
            for k, r, a in per_pass))
    for name, srows in stages:
        print()
        print(f"per-stage cost on {name} (ns per input event of the stage):")
        print()
        print("| stage | events in | eventssm ns/event | tonic ns/event | ratio |")
        print("|---|---:|---:|---:|---:|")
        for stage, n_in, a, b in srows:
            print(f"| {stage} | {n_in:,} | {a:.1f} | {b:.1f} | {b / a:.1f}x |")
    print()
    if args.no_preprocess:
        print("preprocessing: not run (--no-preprocess)")
        return
    print("preprocessing, file -> tokens + dt -> HDF5, in this process (eventssm build_cache "
          "against tonic reading with eventssm's reader + Downsample + numpy + "
          "save_to_disk_cache; the same filter on both sides):")
    print()
    print("| data | filter | events | eventssm Mev/s | tonic Mev/s | speed-up | read + write "
          "only Mev/s | ceiling (tonic / read + write) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, comp, m, a, b, c in pre_rows:
        theirs = "—" if b is None else f"{m / b / 1e6:.2f}"
        ratio = "—" if b is None else f"{b / a:.1f}x"
        floor = "—" if c is None else f"{m / c / 1e6:.2f}"
        ceiling = "—" if b is None or c is None else f"{b / c:.1f}x"
        print(f"| {name} | {comp} | {m:,} | {m / a / 1e6:.2f} | {theirs} | {ratio} | {floor} | "
              f"{ceiling} |")
    print()
    if isinstance(pre, tuple):
        secs, nfiles = pre
        print(f"eventssm preprocess CLI ({nfiles} shared recordings in {len(groups)} caches, one "
              f"per sensor size, --downsample {FACTOR}, --workers 1, gzip, a process per "
              f"cache, process start included): {secs:.2f} s")
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

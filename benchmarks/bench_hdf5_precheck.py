"""Cost of the HDF5 reader's pre-checks (``eventssm/io/hdf5_heaps.py``) against the read itself.

Before h5py opens a file, the hdf5 reader scans it for global heap collections (one pass
through ``mmap``) and replays libhdf5's walk over each; SHD-style variable-length datasets also
have their element descriptors read. This script times, on synthetic files written to a temp
folder (page cache warm, best of ``--repeat``):

* ``check_global_heaps(path)`` alone;
* ``read_events(path)``, which includes it;

for an eventssm-layout file of ``--events`` events (uncompressed and gzip) and an SHD-style
file of ``--samples`` variable-length samples (``read_samples``, all of them).

Usage::

    python benchmarks/bench_hdf5_precheck.py [--events N] [--samples K] [--repeat R]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventssm.events import Recording, make_events
from eventssm.io import read_events, write_events
from eventssm.io.hdf5 import read_samples
from eventssm.io.hdf5_heaps import check_global_heaps


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def shd_file(path: Path, samples: int, rng) -> None:
    """SHD/SSC layout: spikes/times (float32 s) and spikes/units (uint16), one array each."""
    with h5py.File(path, "w") as f:
        sp = f.create_group("spikes")
        times = sp.create_dataset("times", (samples,), dtype=h5py.vlen_dtype(np.float32))
        units = sp.create_dataset("units", (samples,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(samples):
            n = int(rng.integers(2000, 8000))
            times[i] = np.sort(rng.random(n)).astype(np.float32)
            units[i] = rng.integers(0, 700, n).astype(np.uint16)
        f["labels"] = rng.integers(0, 20, samples).astype(np.int32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.events
    ev = make_events(rng.integers(0, 640, n), rng.integers(0, 480, n), np.sort(rng.integers(0, 10**8, n)),
                     rng.integers(0, 2, n).astype(bool))
    rec = Recording(ev, (640, 480, 2), {"camera": "bench"})
    print("| file | size (MB) | pre-check (ms) | read (ms) | pre-check / read |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        files = []
        for comp in (None, "gzip"):
            p = write_events(Path(d) / f"ev_{comp}.h5", rec, compression=comp)
            files.append((f"eventssm layout, {n:,} events, {comp or 'uncompressed'}", p,
                          lambda p=p: read_events(p)))
        p = Path(d) / "shd.h5"
        shd_file(p, args.samples, rng)
        files.append((f"SHD-style, {args.samples:,} samples", p, lambda p=p: sum(1 for _ in read_samples(p))))
        for name, path, read in files:
            assert check_global_heaps(path) is None
            read()  # warm: page cache, numba
            pre = best(lambda path=path: check_global_heaps(path), args.repeat)
            full = best(read, args.repeat)
            print(f"| {name} | {path.stat().st_size / 1e6:.1f} | {pre * 1e3:.1f} | {full * 1e3:.1f} | "
                  f"{pre / full:.3f} |")


if __name__ == "__main__":
    main()

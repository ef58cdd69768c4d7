"""Fuzz campaign: every format reader, called directly (beneath ``read_events``' guard).

For each reader, N mutated inputs are made from seeds (the shared real samples, cut at a record
boundary as in ``tests/io/test_fuzz_all.py``, and outputs of eventssm's own encoders) by bit
flips, byte sets, truncations, splices of two seeds, inserted/deleted/duplicated runs and header
numbers overwritten with edge values. Input ``i`` of a reader is a pure function of
``(--seed, reader, i)``, so any input is reproduced from its index alone.

Each input is written to a file and decoded by ``spec.read`` and by ``spec.iter_chunks`` (chunks
of 64 events) of the reader itself. Allowed outcomes: a Recording (for readers registered as
``validated``, one whose events keep the event contract) or an ``EventFileError``. Anything else
is a finding:

* ``crash``: any other exception type (the guard of ``read_events`` would have hidden it);
* ``contract``: a validated reader returned events outside the sensor or of the wrong dtype;
* ``warning``: the reader emitted a warning (the command line would print it);
* ``memory``: ``MemoryError`` under the worker's address-space cap (``--memory-gib``) on an input
  of a few KiB: a reader believed a header;
* ``memory-peak``: one input raised the worker's peak resident memory by more than
  ``--peak-mib`` (the inputs are a few KiB to 16 KiB);
* ``hang``: no answer within ``--time-limit`` seconds (the worker is killed);
* ``died``: the worker process died (a crash in C code, the kernel's OOM killer).

Inputs run in batches inside worker processes (:class:`eventssm.isolate.Worker`) with the time
limit per input and the memory cap; a hang or death costs only the worker, the rest of the batch
is resubmitted to a new one. Every finding's input is saved under ``--out`` as
``<reader>_<index>_<kind>.bin`` for reproduction (``--replay FILE --reader NAME``).

Usage::

    nice -n 10 python benchmarks/fuzz_readers.py --inputs 100000 --workers 1 \
        --out benchmarks/results/fuzz
    python benchmarks/fuzz_readers.py --inputs 200 --readers evt2,evt3   # a quick look

Prints one table (inputs, minutes, outcomes, exception types, peak RSS per reader) and writes it
as JSON to ``--out/summary.json``.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import functools
import io
import json
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
import warnings
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, make_events  # noqa: E402
from eventssm.io import formats, write_events  # noqa: E402
from eventssm.isolate import READY, Worker  # noqa: E402
from tests.io.test_fuzz_all import REAL, SENSOR, _aedat4_cut, _header_end, _own_sample  # noqa: E402

RECORDINGS = ROOT.parent / "shared" / "data" / "recordings"
EDGE = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 2**31 - 1, 2**31,
        2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1]
CHUNK = 64


# ---------------------------------------------------------------------------------- seeds


def _events(n: int, w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n),
                       np.sort(rng.integers(0, 2 * 10**6, n)), rng.integers(0, 2, n).astype(bool))


def _real(name: str) -> list[bytes]:
    if name not in REAL:
        return []
    fname, keep, _ext, comment, extra, record = REAL[name]
    path = RECORDINGS / fname
    if not path.exists():
        return []
    data = path.read_bytes()
    if name == "aedat4":
        return [data[: _aedat4_cut(data, keep)]]
    start = _header_end(data, comment) + extra if comment else 0
    return [data[: start + (keep - start) // record * record]]


def seeds() -> dict[str, list[bytes]]:
    """reader name -> seed files (real samples first, then eventssm's encoder outputs)."""
    from eventssm.io import aedat, nmnist, prophesee

    ev = _events(200, 128, 128, 1)
    small = _events(40, 34, 34, 2)
    own: dict[str, list[bytes]] = collections.defaultdict(list)
    own["aedat2"] += [aedat.encode_aedat2(ev, "DVS128")]
    own["aedat3"] += [aedat.encode_aedat3(ev, (128, 128, 2), packet_events=32, other_packets=True),
                      aedat.encode_aedat3(small, (34, 34, 2), packet_events=16, invalid_every=5)]
    own["aedat4"] += [aedat.encode_aedat4(ev, (128, 128, 2), compression=c, packet_events=64)
                      for c in ("lz4", "zstd", "none")]
    own["evt2"] += [prophesee.encode_evt2(ev, 128, 128)]
    own["evt3"] += [prophesee.encode_evt3(ev, 128, 128)]
    own["dat"] += [prophesee.encode_dat(ev, 128, 128)]
    own["nmnist"] += [nmnist.encode_nmnist(small)]
    with tempfile.TemporaryDirectory() as d:
        for sid, fmt in (("npy", "npy"), ("npy-tonic", "npy"), ("npz", "npz"), ("hdf5", "hdf5"),
                         ("hdf5-prophesee", "hdf5"), ("hdf5-shd", "hdf5"), ("csv", "csv"),
                         ("csv-header", "csv")):
            own[fmt].append(_own_sample(sid, Path(d))[0])
        rec = Recording(ev, (128, 128, 2), {"camera": "fuzz"})
        own["hdf5"].append(write_events(Path(d) / "z.h5", rec, compression="gzip").read_bytes())
        buf = io.BytesIO()
        np.savez_compressed(buf, x=ev["x"], y=ev["y"], t=ev["t"], p=ev["p"])
        own["npz"].append(buf.getvalue())
    return {name: _real(name) + own[name] for name in formats()}


# ------------------------------------------------------------------------------ mutations


def mutate(data: bytes, others: list[bytes], rng: np.random.Generator) -> bytes:
    """1-4 random operations on ``data`` (``others``: seeds of the same reader, for splices)."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        n = len(buf)
        if n == 0:
            break
        op = int(rng.integers(0, 8))
        if op == 0:  # flip 1-8 bits
            for _ in range(int(rng.integers(1, 9))):
                buf[int(rng.integers(0, n))] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:  # set a byte
            buf[int(rng.integers(0, n))] = int(rng.choice([0, 0xFF, 0x7F, 0x80, int(rng.integers(0, 256))]))
        elif op == 2:  # truncate
            del buf[int(rng.integers(0, n)):]
        elif op == 3:  # splice with a seed of the same format
            other = others[int(rng.integers(0, len(others)))]
            buf = buf[: int(rng.integers(0, n + 1))] + other[int(rng.integers(0, len(other) + 1)):]
        elif op == 4:  # a header number (the first KiB) set to an edge value
            pos = int(rng.integers(0, min(n, 1024)))
            width = int(rng.choice([1, 2, 4, 8]))
            raw = (EDGE[int(rng.integers(0, len(EDGE)))] % (1 << (8 * width))).to_bytes(
                width, "little" if rng.integers(0, 4) else "big")
            buf[pos : pos + width] = raw[: n - pos]
        elif op == 5:  # insert random bytes
            i = int(rng.integers(0, n + 1))
            buf[i:i] = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
        elif op == 6:  # delete a run
            i = int(rng.integers(0, n))
            del buf[i : i + int(rng.integers(1, 65))]
        else:  # duplicate a run
            i = int(rng.integers(0, n))
            buf[i:i] = buf[i : i + int(rng.integers(1, 257))]
    return bytes(buf)


def make_input(seed: int, reader: str, index: int, corpus: list[bytes]) -> bytes:
    rid = sorted(formats()).index(reader)
    rng = np.random.default_rng([seed, rid, index])
    return mutate(corpus[int(rng.integers(0, len(corpus)))], corpus, rng)


# --------------------------------------------------------------------------------- decoding


def decode(path: Path, reader: str) -> str | None:
    """Run the reader on ``path``: ``None`` (a Recording or EventFileError) or a finding. A
    warning (e.g. NumPy's RuntimeWarning) is a finding too: the CLI would print it."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = _decode(path, reader)
    if res is None and seen:
        w = seen[0]
        return f"warning: {w.category.__name__}: {str(w.message)[:150]} ({Path(w.filename).name}:{w.lineno})"
    return res


def _decode(path: Path, reader: str) -> str | None:
    spec = formats()[reader]
    size = SENSOR.get(reader)
    try:
        rec = spec.read(path, size)
        if spec.validated and len(rec.events):
            ev = rec.events
            w, h = rec.sensor_size[0], rec.sensor_size[1]
            if ev.dtype != EVENT_DTYPE or ev["x"].min() < 0 or ev["y"].min() < 0 \
                    or ev["x"].max() >= w or ev["y"].max() >= h:
                return "contract: events outside the sensor or of another dtype"
        if spec.iter_chunks is not None:
            for chunk in spec.iter_chunks(path, CHUNK, size):
                if len(chunk.events) > CHUNK:
                    return f"contract: a chunk of {len(chunk.events)} > {CHUNK} events"
    except EventFileError:
        return None
    except MemoryError:
        return "memory: MemoryError"
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        return f"crash: {type(exc).__name__}: {str(exc)[:200]} ({Path(tb.filename).name}:{tb.lineno})"
    return None


def run_batch(progress, job) -> dict:
    """Worker: inputs ``start .. start+count`` of one reader; ``progress`` (shared) holds the
    index in work and its start time so the parent can name a hung input."""
    import resource

    seed, reader, start, count, corpus, tmpdir, peak_mib = job
    path = Path(tmpdir) / f"in_{os.getpid()}{_ext(reader)}"
    out = {"n": 0, "ok": 0, "findings": [], "max_s": 0.0, "next": start + count}
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for i in range(start, start + count):
        data = make_input(seed, reader, i, corpus)
        path.write_bytes(data)
        progress[0] = i
        progress[1] = time.monotonic()
        t0 = time.perf_counter()
        res = decode(path, reader)
        out["max_s"] = max(out["max_s"], time.perf_counter() - t0)
        out["n"] += 1
        if res is None:
            out["ok"] += 1
        else:
            out["findings"].append((i, res))
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        if grew > peak_mib:  # this input made the reader hold far more than a few KiB file needs
            out["findings"].append((i, f"memory-peak: +{grew:.0f} MiB resident for {len(data):,} bytes"))
            out["next"] = i + 1  # a fresh worker goes on (ru_maxrss only grows)
            break
    progress[1] = 0.0
    return out


def _ext(reader: str) -> str:
    return formats()[reader].extensions[0] if formats()[reader].extensions else ".bin"


# ------------------------------------------------------------------------------- campaign


def campaign(args) -> dict:
    corpus = seeds()
    readers = args.readers.split(",") if args.readers else sorted(formats())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmpdir = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ctx = multiprocessing.get_context("fork")
    todo = collections.deque()
    for r in readers:
        for s in range(args.first, args.inputs, args.batch):
            todo.append((args.seed, r, s, min(args.batch, args.inputs - s), corpus[r], tmpdir,
                         args.peak_mib))
    stats = {r: {"inputs": 0, "findings": collections.Counter(), "peak_rss_mib": 0.0,
                 "max_input_s": 0.0, "seconds": 0.0, "seeds": len(corpus[r])} for r in readers}
    slots = []  # [worker, progress, job, t_submit]
    memory = int(args.memory_gib * 2**30)
    t_start = time.monotonic()
    last_print = t_start

    def record(reader, index, kind):
        key = kind.split(":")[0]
        if key in ("crash", "warning"):  # crash: <exception type>
            key = ": ".join(kind.split(": ")[:2])
        stats[reader]["findings"][key] += 1
        if stats[reader]["findings"][key] <= 5:  # keep a few inputs of each kind
            name = f"{reader}_{index}_{kind.split(':')[0]}.bin"
            (out / name).write_bytes(make_input(args.seed, reader, index, corpus[reader]))
            print(f"finding {reader}#{index}: {kind} -> {out / name}", flush=True)

    try:
        while todo or slots:
            while todo and len(slots) < args.workers:
                prog = ctx.RawArray(ctypes.c_double, 2)
                w = Worker(functools.partial(run_batch, prog), memory, ctx)
                job = todo.popleft()
                w.submit(0, job)
                slots.append([w, prog, job, time.monotonic()])
            ready = wait([s[0].conn for s in slots] + [s[0].proc.sentinel for s in slots], 1.0)
            now = time.monotonic()
            for slot in list(slots):
                w, prog, job, t_sub = slot
                _seed, reader, start, count, *_ = job
                st = stats[reader]
                if w.conn in ready:
                    try:
                        res = w.receive()
                    except (EOFError, OSError):
                        res = None
                    if res == READY:
                        continue
                    if res is not None:
                        st["seconds"] += now - t_sub
                        st["peak_rss_mib"] = max(st["peak_rss_mib"], res.peak_rss / 2**20)
                        if res.error is not None:  # the batch itself failed
                            st["findings"][f"batch: {res.error[:120]}"] += 1
                            st["inputs"] += count
                        else:
                            b = res.value
                            st["inputs"] += b["n"]
                            st["max_input_s"] = max(st["max_input_s"], b["max_s"])
                            for i, kind in b["findings"]:
                                record(reader, i, kind)
                            if b["next"] < start + count:
                                todo.appendleft((job[0], reader, b["next"], start + count - b["next"],
                                                 *job[4:]))
                        w.stop()
                        slots.remove(slot)
                        continue
                hung = prog[1] > 0 and now - prog[1] > args.time_limit
                if w.proc.sentinel in ready or not w.proc.is_alive() or hung:
                    i = int(prog[0]) if prog[1] > 0 else start
                    kind = f"hang: no answer after {args.time_limit:g} s" if hung else f"died: {w.death()}"
                    w.kill()
                    slots.remove(slot)
                    st["seconds"] += now - t_sub
                    st["inputs"] += i - start + 1
                    record(reader, i, kind)
                    if i + 1 < start + count:
                        todo.appendleft((job[0], reader, i + 1, start + count - i - 1, *job[4:]))
            if now - last_print > 30:
                last_print = now
                done = sum(s["inputs"] for s in stats.values())
                print(f"[{(now - t_start) / 60:.1f} min] {done:,} inputs", flush=True)
                write_summary(args, stats, t_start, out, complete=False)  # a stopped run keeps its figures
    except KeyboardInterrupt:
        write_summary(args, stats, t_start, out, complete=False)
        raise
    finally:
        for w, *_ in slots:
            w.kill()
        for f in Path(tmpdir).iterdir():
            f.unlink()
        os.rmdir(tmpdir)
    return write_summary(args, stats, t_start, out, complete=True)


def write_summary(args, stats: dict, t_start: float, out: Path, complete: bool) -> dict:
    summary = {"seed": args.seed, "first": args.first, "inputs_per_reader": args.inputs, "complete": complete,
               "minutes": (time.monotonic() - t_start) / 60, "workers": args.workers,
               "time_limit_s": args.time_limit, "memory_gib": args.memory_gib, "peak_mib": args.peak_mib,
               "readers": {r: {**s, "findings": dict(s["findings"])} for r, s in stats.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def table(summary: dict) -> str:
    lines = ["| reader | seeds | inputs | worker-minutes | slowest input (s) | peak RSS (MiB) | findings |",
             "|---|---|---|---|---|---|---|"]
    for r, s in summary["readers"].items():
        f = ", ".join(f"{k}: {v}" for k, v in sorted(s["findings"].items())) or "none"
        lines.append(f"| {r} | {s['seeds']} | {s['inputs']:,} | {s['seconds'] / 60:.1f} | "
                     f"{s['max_input_s']:.3f} | {s['peak_rss_mib']:.0f} | {f} |")
    return "\n".join(lines)


def replay(args) -> None:
    path = Path(args.replay)
    print(decode(path, args.reader) or "no finding (a Recording or one EventFileError)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=100_000, help="mutated inputs per reader")
    ap.add_argument("--readers", default="", help="comma-separated reader names (default: all)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2000, help="inputs per worker process")
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds per input")
    ap.add_argument("--memory-gib", type=float, default=2.0, help="address-space cap per worker")
    ap.add_argument("--peak-mib", type=float, default=256.0,
                    help="a finding when one input raises the worker's peak RSS by more than this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0,
                    help="first input index (continue an earlier run of the same --seed)")
    ap.add_argument("--out", default="benchmarks/results/fuzz")
    ap.add_argument("--replay", help="decode one saved input and print the outcome")
    ap.add_argument("--reader", help="with --replay: the reader")
    args = ap.parse_args()
    if args.replay:
        replay(args)
        return
    summary = campaign(args)
    print(f"\n{args.inputs:,} inputs per reader, {summary['minutes']:.1f} min, "
          f"{args.workers} worker(s), limits {args.time_limit:g} s / {args.memory_gib:g} GiB\n")
    print(table(summary))


if __name__ == "__main__":
    main()

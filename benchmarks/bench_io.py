"""Read speed of eventssm's raw-file readers against the fastest peer and tonic on the same file.

Per file, the time from a path to an in-memory event array:

* eventssm reader: the format's registered ``read`` (header parsing + numba kernel with the
  sensor bounds check), and ``eventssm.io.read_events`` (the public call; for the binary
  formats the kernels have checked every event, so it adds only O(1) checks). DAT and N-MNIST
  files of 8 MiB or more are decoded on several threads; the *1 thread* column times the same
  reader with ``threads=1``;
* every native peer that reads the format: iniVation's ``dv-processing`` (C++,
  ``dv.io.MonoCameraRecording``) and ``aedat`` (Rust) for AEDAT 4.0; ``evt3`` (Rust,
  ``evt3.decode_file``) and ``expelliarmus`` (C) for EVT 3.0; ``expelliarmus`` for EVT 2.0 and
  DAT; formats without a native reader (N-MNIST, AEDAT 2.0, AEDAT 3.1) have tonic as their
  peer. Each peer's events are compared with eventssm's (x, y, t, p); the *fastest correct
  peer* column takes the fastest peer whose events are equal, and the notes say where a peer
  decodes differently (expelliarmus's EVT 3.0 time drifts by 4,096 µs per TIME_LOW wrap);
* tonic's reader for every format tonic reads: ``read_aedat4`` (which calls the same Rust
  ``aedat`` decoder), ``read_mnist_file``, ``read_dvs_128`` and ``read_davis_346`` /
  ``read_dvs_346mini`` (AEDAT 2.0), ``read_dvs_ibm`` / ``read_dvs_red`` (AEDAT 3.1). tonic's
  result is compared with eventssm's in tonic's own coordinate convention, and the notes say
  where they differ;
* ``np.fromfile`` of the same bytes: the physical floor (one read into fresh memory).

The shared recordings are small, so every figure is the best of ``--repeat`` calls after a
warm-up call, the contenders of a file taking turns (so load from other jobs hits all alike);
the first call of each eventssm reader in this process (numba cache load) and a cold numba
compile (fresh cache directory, in a subprocess) are reported separately. Larger synthetic
files (``--events`` events, written with eventssm's encoders to a temp dir; EVT 3.0 also as the
real sample's words tiled, which keeps its vectorised word mix; AEDAT 4.0 re-written by
dv-processing's own ``MonoCameraWriter``) give per-event throughput.
Ratios are ``other time / eventssm time`` (> 1: eventssm is faster).

Usage::

    python benchmarks/bench_io.py [--quick] [--repeat N] [--events N] [--passes K] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ROOT.parent / "shared" / "data" / "recordings"
sys.path.insert(0, str(ROOT))

from eventssm.events import make_events  # noqa: E402
from eventssm.io import aedat as A  # noqa: E402
from eventssm.io import formats, iter_events, read_events  # noqa: E402
from eventssm.io import nmnist as N  # noqa: E402
from eventssm.io import prophesee as P  # noqa: E402

DATE = __import__("datetime").date.today().isoformat()
MACHINE = (f"{os.cpu_count()}-core CPU, "
           f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
STREAM_CHUNK = 65_536  # iter_events chunk size of the "iter_events" column
ONE_THREAD = {"dat": P.read_dat, "nmnist": N.read_nmnist}  # readers with a parallel path


@dataclass
class Row:
    label: str
    fmt: str
    path: Path
    sensor: tuple | None
    peers: dict = field(default_factory=dict)  # name -> callable returning the peer's events
    same: dict = field(default_factory=dict)  # name -> same(ours, result) -> None or a difference
    tonic_name: str | None = None
    tonic: _Tonic | None = None
    check: Callable | None = None  # check(ours, tonic_result) -> note about agreement
    note: str = ""
    figures: dict = field(default_factory=dict)
    rounds: dict = field(default_factory=dict)  # contender -> times of every round


def interleaved_best(fns: dict[str, Callable], repeat: int,
                     limits: dict[str, int] | None = None) -> tuple[dict, dict, dict]:
    """Best wall time (s) per callable over ``repeat`` rounds, after one warm-up call each.

    The callables run round-robin (A, B, C, A, B, C, ...) so that load from other jobs on a
    shared machine hits every contender alike. ``limits`` caps the rounds of slow ones.
    Returns (best times, every round's times, first results); a callable that raises is
    dropped (its error kept as the result).
    """
    limits = limits or {}
    times: dict[str, list[float]] = {}
    results: dict[str, object] = {}
    live = {}
    for name, fn in fns.items():
        try:
            results[name] = fn()
            live[name] = fn
            times[name] = []
        except Exception as exc:  # e.g. a peer that cannot read this file
            results[name] = exc
    for r in range(repeat):
        for name, fn in live.items():
            if r >= limits.get(name, repeat):
                continue
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items() if v}, times, results


def round_ratio(row: Row, other: str | None) -> float | None:
    """Median over rounds of ``other`` time / ``read_events`` time measured side by side.

    On a loaded machine the best times of two contenders may come from different moments;
    a ratio of times taken one right after the other is not.
    """
    pairs = [a / b for a, b in zip(row.rounds.get(other, []), row.rounds.get("public", []),
                                   strict=False)]
    return float(np.median(pairs)) if pairs else None


def fastest_peer(row: Row) -> str | None:
    """Contender key (``peer:<name>``) of the fastest peer whose events equal eventssm's."""
    ok = [k for k in row.figures.get("correct", []) if k in row.figures]
    return min(ok, key=lambda k: row.figures[k]) if ok else None


# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------


def _expelliarmus(enc: str, path: Path):
    from expelliarmus import Wizard

    wiz = Wizard(encoding=enc)
    return lambda: wiz.read(str(path))


def _aedat_rust(path: Path):
    import aedat

    def read():
        return np.concatenate([p["events"] for p in aedat.Decoder(str(path)) if "events" in p])
    return read


def _dv_processing(path: Path):
    """iniVation's reader: the whole event stream as one EventStore, then its numpy array
    (the fastest of the ways measured: time range, or batches added to one store)."""
    import dv_processing as dv

    def read():
        rec = dv.io.MonoCameraRecording(str(path))
        lo, hi = rec.getTimeRange()
        return rec.getEventsTimeRange(lo, hi + 1).numpy()
    return read


def _evt3_rust(path: Path):
    import evt3

    return lambda: evt3.decode_file(str(path))


def _columns(res) -> tuple:
    """``(x, y, t, p)`` of a peer's result, whatever its field names."""
    if hasattr(res, "timestamp") and hasattr(res, "polarity"):  # evt3.Events
        return res.x, res.y, res.timestamp, res.polarity
    names = res.dtype.names
    t = res["timestamp"] if "timestamp" in names else res["t"]
    p = res["polarity"] if "polarity" in names else res["on"] if "on" in names else res["p"]
    return res["x"], res["y"], t, p


def _same_fields(ours: np.ndarray, res) -> str | None:
    """None when the peer's events equal eventssm's, else what differs."""
    x, y, t, p = _columns(res)
    if len(t) != len(ours):
        return f"{len(t):,} events"
    diff = [k for k, a in (("x", x), ("y", y), ("t", t), ("p", p))
            if not np.array_equal(np.asarray(a).astype(np.int64), ours[k].astype(np.int64))]
    if diff == ["t"]:
        d = np.asarray(t).astype(np.int64) - ours["t"]
        if d.min() >= 0 and not np.any(d % 4096):
            return (f"t differs: + 4,096 µs per TIME_LOW wrap (up to +{d.max():,} µs); "
                    "x, y, p equal")
    return f"{', '.join(diff)} differ" if diff else None


def _native(fmt: str, path: Path) -> tuple[dict, dict]:
    """The native peers of a format and their equality checks."""
    peers = {
        "aedat4": {"dv-processing (C++)": _dv_processing(path), "aedat (Rust)": _aedat_rust(path)},
        "evt3": {"evt3 (Rust)": _evt3_rust(path), "expelliarmus (C)": _expelliarmus("evt3", path)},
        "evt2": {"expelliarmus (C)": _expelliarmus("evt2", path)},
        "dat": {"expelliarmus (C)": _expelliarmus("dat", path)},
    }[fmt]
    return peers, dict.fromkeys(peers, _same_fields)


def _tonic_peer(tn, check=None) -> tuple[dict, dict]:
    """tonic as the only peer (formats without a native reader); ``check`` compares in
    tonic's conventions and its note starts with "same events" when they agree."""
    check = check or _check_same

    def same(ours, res):
        note = check(ours, res)
        return None if note.startswith("same events") else note
    return {"tonic (numpy)": tn}, {"tonic (numpy)": same}


class _Tonic:
    """A call of ``tonic.io.<name>`` on one file, returning its event array.

    tonic 1.7.0's ``read_dvs_128``, ``read_dvs_ibm``, ``read_dvs_red`` and
    ``read_dvs_346mini`` unpack two values from ``read_aedat_header_from_file``, which returns
    three, so they raise ValueError on every file. When the first call fails that way, this
    and later calls run them with that one helper cut to its first two values (tonic's own
    code otherwise), and ``note`` says so.
    """

    def __init__(self, name: str, path: Path):
        import tonic.io as T

        self.T, self.name, self.path = T, name, str(path)
        self.fn = getattr(T, name)
        self.fixed = False
        self.note = "tonic calls the same Rust aedat decoder" if name == "read_aedat4" else ""

    def _plain(self):
        if self.name == "read_mnist_file":
            return self.fn(self.path, dtype=np.dtype(self.T.events_struct))
        out = self.fn(self.path)
        return out[-1] if isinstance(out, tuple) else out

    def __call__(self):
        if not self.fixed:
            try:
                return self._plain()
            except ValueError:
                if self.name in ("read_mnist_file", "read_aedat4"):
                    raise
                self.fixed = True
                self.note = (f"tonic's {self.name} fails (its header helper returns 3 values): "
                             "timed with that helper cut to 2")
        header = self.T.read_aedat_header_from_file
        self.T.read_aedat_header_from_file = lambda f: header(f)[:2]
        try:
            return self._plain()
        finally:
            self.T.read_aedat_header_from_file = header


# ---------------------------------------------------------------------------------------------
# Agreement with tonic (in tonic's coordinate conventions)
# ---------------------------------------------------------------------------------------------


def _agree(ours: np.ndarray, theirs, x, y, p) -> bool:
    return (len(ours) == len(theirs["t"]) and np.array_equal(theirs["x"], x)
            and np.array_equal(theirs["y"], y) and np.array_equal(theirs["p"], p)
            and np.array_equal(theirs["t"], ours["t"]))


def _check_same(ours, theirs) -> str:
    if "p" not in theirs.dtype.names:  # the Rust aedat decoder calls polarity "on"
        theirs = {"x": theirs["x"], "y": theirs["y"], "t": theirs["t"], "p": theirs["on"]}
    return ("same events" if _agree(ours, theirs, ours["x"], ours["y"], ours["p"])
            else "tonic's events differ")


def _aedat2_addresses(path: Path, start: int) -> np.ndarray:
    return np.fromfile(path, dtype=">u4", offset=start)[0::2].astype(np.int64)


def _check_dvs128(path: Path):
    def check(ours, theirs):
        # tonic: x = address bits 8-14 (jAER's raw y), y = bits 1-7 (jAER's raw x, not
        # mirrored), p = bit 0 (jAER: 0 = ON); ours: x = 127 - raw x, y = 127 - raw y
        if _agree(ours, theirs, 127 - ours["y"], 127 - ours["x"], ~ours["p"]):
            return "same events; tonic's x = 127 - our y, y = 127 - our x, p = not our p"
        return "tonic's events differ"
    return check


def _check_davis(path: Path, fw: int, fh: int, mini: bool):
    def check(ours, theirs):
        rec = read_events(path)
        addr = _aedat2_addresses(path, rec.meta["header_bytes"])
        keep = ((addr >> 31) == 0) & ((addr & 0x400) == 0)
        kept = theirs[keep]
        if mini:  # tonic: x = raw y (bits 22-30), y = raw x (bits 12-21), no mirroring
            x, y = fh - 1 - ours["y"], fw - 1 - ours["x"]
            how = f"tonic's x = {fh - 1} - our y, y = {fw - 1} - our x"
        else:  # tonic mirrors both for a 346x260 array
            x, y = ours["x"] + (346 - fw), ours["y"] + (260 - fh)
            how = "same coordinates" if (fw, fh) == (346, 260) else (
                f"tonic assumes 346x260: x + {346 - fw}, y + {260 - fh}")
        same = _agree(ours, kept, x, y, ours["p"])
        extra = int((~keep).sum())
        return (f"{'same events' if same else 'events differ'} ({how})"
                + (f"; tonic also returns the {extra:,} APS/IMU/external words as events"
                   if extra else ""))
    return check


def _check_aedat3(width_bits: int):
    def check(ours, theirs):
        # tonic reads every packet as 8-byte polarity events (eventCapacity of them), ignores
        # the valid bit and the timestamp overflow, and masks x and y to width_bits bits
        if _agree(ours, theirs, ours["x"], ours["y"], ours["p"]):
            return f"same events (only polarity packets, all valid, t < 2^31; {width_bits}-bit x/y)"
        return "tonic's events differ"
    return check


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def real_rows() -> list[Row]:
    rows = []
    if not RECORDINGS.is_dir():
        print(f"shared recordings not found at {RECORDINGS}: real-file rows skipped")
        return rows
    r = RECORDINGS
    p = r / "sample.aedat4"
    peers, same = _native("aedat4", p)
    rows.append(Row("sample.aedat4 (real)", "aedat4", p, None, peers, same,
                    "read_aedat4", _Tonic("read_aedat4", p), _check_same))
    for name, fmt in [("evt2_sample.raw", "evt2"), ("evt3_sample.raw", "evt3")]:
        rows.append(Row(f"{name} (real)", fmt, r / name, None, *_native(fmt, r / name)))
    p = r / "sample_ncars.dat"
    rows.append(Row("sample_ncars.dat (real)", "dat", p, (120, 100, 2), *_native("dat", p)))
    p = r / "sample_nmnist.bin"
    tn = _Tonic("read_mnist_file", p)  # no native N-MNIST reader exists: tonic is the peer
    rows.append(Row("sample_nmnist.bin (real)", "nmnist", p, None, *_tonic_peer(tn),
                    "read_mnist_file", tn, _check_same))
    for name in ("neal_walking.aedat", "alex_walking_again.aedat"):
        p = r / name
        tn = _Tonic("read_dvs_128", p)
        rows.append(Row(f"{name} (real)", "aedat2", p, None, *_tonic_peer(tn, _check_dvs128(p)),
                        "read_dvs_128", tn, _check_dvs128(p)))
    p = r / "IMU_translBoxes.aedat"
    tn = _Tonic("read_davis_346", p)
    check = _check_davis(p, 240, 180, False)
    rows.append(Row("IMU_translBoxes.aedat (real, DAVIS240C)", "aedat2", p, None,
                    *_tonic_peer(tn, check), "read_davis_346", tn, check))
    return rows


def _dv_rewrite(src: Path, dst: Path, sensor: tuple[int, int]) -> None:
    """Re-write an AEDAT 4.0 file with dv-processing's own writer (its packets, its header)."""
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(src))
    writer = dv.io.MonoCameraWriter(
        str(dst), dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer_synthetic", sensor))
    while (batch := rec.getNextEventBatch()) is not None:
        writer.writeEvents(batch)
    del writer  # closes the file


def _events(rng, n, w, h, t):
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t,
                       rng.integers(0, 2, n).astype(bool))


def synthetic_rows(n: int, tmp: Path) -> list[Row]:
    rng = np.random.default_rng(0)
    w, h = 1280, 720
    t = np.sort(rng.integers(0, 10 * 10**6, n))  # 10 s, ~n/10 events per ms
    ev = _events(rng, n, w, h, t)
    rows = []
    mev = f"{n / 1e6:.0f}M ev"
    files = {
        "evt2": (P.encode_evt2(ev, w, h), ".raw"),
        "evt3": (P.encode_evt3(ev, w, h), ".raw"),
        "dat": (P.encode_dat(ev, w, h), ".dat"),
    }
    for fmt, (data, ext) in files.items():
        path = tmp / f"synthetic_{fmt}{ext}"
        path.write_bytes(data)
        rows.append(Row(f"synthetic {fmt} ({mev})", fmt, path, None, *_native(fmt, path),
                        note="encoder output" + ("; single-event words" if fmt == "evt3" else "")))
    del files
    try:  # AEDAT 4.0 as iniVation's own writer lays it out (LZ4 packets, its header)
        ours = tmp / "eventssm.aedat4"
        ours.write_bytes(A.encode_aedat4(ev, (w, h, 2), imu_packets=False))
        path = tmp / "dv_processing.aedat4"
        _dv_rewrite(ours, path, (w, h))
        ours.unlink()
        rows.append(Row(f"synthetic aedat4 written by dv-processing ({mev})", "aedat4", path,
                        None, *_native("aedat4", path), "read_aedat4",
                        _Tonic("read_aedat4", path), _check_same, "LZ4 packets"))
    except ImportError as exc:
        print(f"dv-processing not installed ({exc}): no AEDAT 4.0 synthetic row")
    del ev
    real3 = RECORDINGS / "evt3_sample.raw"
    if real3.exists():
        raw = real3.read_bytes()
        start = P.parse_percent_header(raw).data_start
        words = raw[start:]
        reps = max(1, round(n / 219_596))
        path = tmp / "tiled_evt3.raw"
        path.write_bytes(raw[:start] + words * reps)
        rows.append(Row(f"evt3_sample tiled x{reps} ({reps * 219_596 / 1e6:.0f}M ev)", "evt3",
                        path, None, *_native("evt3", path), note="real vectorised word mix"))
    # N-MNIST: within one 23-bit time range (no overflow markers), and an N-Caltech101-like
    # duration with a marker every 8.192 ms, which tonic handles with a Python loop over the
    # markers (each one an O(n) array update)
    path = tmp / "synthetic.bin"
    path.write_bytes(N.encode_nmnist(_events(rng, n, 34, 34, np.sort(rng.integers(0, 1 << 23, n)))))
    tn = _Tonic("read_mnist_file", path)
    rows.append(Row(f"synthetic nmnist ({mev})", "nmnist", path, None, *_tonic_peer(tn),
                    "read_mnist_file", tn, _check_same, "t within 8.4 s: no overflow markers"))
    m = max(10_000, n // 50)
    path = tmp / "synthetic_overflow.bin"
    path.write_bytes(N.encode_nmnist(_events(rng, m, 34, 34, np.sort(rng.integers(0, 2 * 10**7, m)))))
    tn = _Tonic("read_mnist_file", path)
    rows.append(Row(f"synthetic nmnist, 20 s ({m / 1e3:.0f}k ev)", "nmnist", path, None,
                    *_tonic_peer(tn), "read_mnist_file", tn, _check_same,
                    "2,441 overflow markers"))
    # AEDAT 2.0: DVS128 addresses, and DAVIS346 addresses with 5% APS/IMU words mixed in
    t = np.sort(rng.integers(0, 1 << 31, n))
    path = tmp / "dvs128.aedat"
    path.write_bytes(A.encode_aedat2(_events(rng, n, 128, 128, t), "DVS128"))
    tn = _Tonic("read_dvs_128", path)
    rows.append(Row(f"synthetic aedat2 DVS128 ({mev})", "aedat2", path, None,
                    *_tonic_peer(tn, _check_dvs128(path)), "read_dvs_128", tn,
                    _check_dvs128(path)))
    ev = _events(rng, n, 346, 260, t)
    ev["y"][0] = 0  # tonic would read a first address byte of 0x23 ('#') as a header line
    k = n // 20
    aps = np.stack([(1 << 31) | rng.integers(0, 1 << 30, k), np.sort(rng.integers(0, 1 << 31, k))], 1)
    path = tmp / "davis346.aedat"
    path.write_bytes(A.encode_aedat2(ev, "DAVIS346B", extra_words=aps))
    del ev, aps
    for name, mini in (("read_davis_346", False), ("read_dvs_346mini", True)):
        tn = _Tonic(name, path)
        check = _check_davis(path, 346, 260, mini)
        rows.append(Row(f"synthetic aedat2 DAVIS346 + 5% APS/IMU ({mev})", "aedat2", path, None,
                        *_tonic_peer(tn, check), name, tn, check))
    # AEDAT 3.1: DVS128 Gesture-like (128x128) and a 346x260 sensor, polarity packets only
    for (sw, sh), name, camera, bits in (((128, 128), "read_dvs_ibm", "DVS128", 13),
                                         ((346, 260), "read_dvs_red", "Davis346red", 15)):
        path = tmp / f"aedat3_{sw}.aedat"
        path.write_bytes(A.encode_aedat3(_events(rng, n, sw, sh, t), (sw, sh, 2), camera=camera))
        tn = _Tonic(name, path)
        rows.append(Row(f"synthetic aedat3 {sw}x{sh} ({mev})", "aedat3", path, None,
                        *_tonic_peer(tn, _check_aedat3(bits)), name, tn, _check_aedat3(bits),
                        "4096-event packets"))
    return rows


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


def measure(row: Row, repeat: int, tonic_repeat: int) -> None:
    """Time one file's contenders; a later pass keeps each contender's best time."""
    spec = formats()[row.fmt]
    f = row.figures
    if f:  # a later pass: times only
        if "reader" in f:
            best, times, _ = interleaved_best(_contenders(row, spec), repeat,
                                              _limits(row, tonic_repeat))
            _keep(row, best, times)
        return
    try:
        t0 = time.perf_counter()
        rec = spec.read(row.path, row.sensor)
        f["first_ms"] = (time.perf_counter() - t0) * 1e3
    except Exception as exc:  # report, do not hide: e.g. a reader still being written
        row.note = f"skipped: eventssm reader failed ({type(exc).__name__}: {exc})"
        f["skipped"] = True
        print(f"{row.label}: {row.note}")
        return
    f["events"] = len(rec.events)
    best, times, results = interleaved_best(_contenders(row, spec), repeat,
                                            _limits(row, tonic_repeat))
    _keep(row, best, times)
    notes = [row.note] if row.note else []
    f["correct"] = []
    for name, fn in row.peers.items():
        res = results.get(f"peer:{name}")
        if isinstance(res, Exception):
            notes.append(f"{name} failed ({type(res).__name__}: {res})")
            continue
        if fn is row.tonic:
            continue  # compared in tonic's conventions below
        diff = row.same[name](rec.events, res)
        if diff is None:
            f["correct"].append(f"peer:{name}")
        else:
            notes.append(f"{name} decodes differently: {diff} (not counted as a correct peer)")
    res = results.get("tonic")
    if isinstance(res, Exception):
        notes.append(f"tonic failed ({type(res).__name__}: {res})")
    elif row.check is not None and res is not None:
        note = row.check(rec.events, res)
        notes.insert(0, note)
        if note.startswith("same events"):
            f["correct"] += [f"peer:{k}" for k, fn in row.peers.items() if fn is row.tonic]
    if row.tonic is not None and row.tonic.note:
        notes.insert(1 if len(notes) else 0, row.tonic.note)
    row.note = "; ".join(notes)
    print(f"{row.label}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in best.items()))


def _keep(row: Row, best: dict, times: dict) -> None:
    """Merge one pass's best and per-round times into the row (tonic as peer: both names)."""
    for name, fn in row.peers.items():
        if fn is row.tonic and "tonic" in best:
            best[f"peer:{name}"], times[f"peer:{name}"] = best["tonic"], times["tonic"]
    for k, v in best.items():
        row.figures[k] = min(row.figures.get(k, v), v)
    for k, v in times.items():
        row.rounds.setdefault(k, []).extend(v)


def _contenders(row: Row, spec) -> dict[str, Callable]:
    fns = {
        "reader": lambda: spec.read(row.path, row.sensor),
        "public": lambda: read_events(row.path, sensor_size=row.sensor, format=row.fmt),
        "floor": lambda: np.fromfile(row.path, dtype=np.uint8),
        "stream": lambda: sum(len(c.events) for c in iter_events(
            row.path, chunk_events=STREAM_CHUNK, sensor_size=row.sensor, format=row.fmt)),
    }
    if row.fmt in ONE_THREAD:
        one = ONE_THREAD[row.fmt]
        fns["one"] = lambda: one(row.path, row.sensor, threads=1)
    for name, fn in row.peers.items():
        if fn is not row.tonic:
            fns[f"peer:{name}"] = fn
    if row.tonic is not None:
        fns["tonic"] = row.tonic
    return fns


def _limits(row: Row, tonic_repeat: int) -> dict[str, int]:
    """Rounds for the slow contenders (tonic)."""
    return {} if row.tonic is None else {"tonic": tonic_repeat}


_COLD = """
import sys, time
sys.path.insert(0, {root!r})
from eventssm.io import formats
spec = formats()[{fmt!r}]
t0 = time.perf_counter()
spec.read({path!r}, {sensor!r})
print(time.perf_counter() - t0)
"""


def cold_compile_ms(fmt: str, path: Path, sensor) -> float | None:
    """First read in a fresh interpreter with an empty numba cache (numba JIT compile)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = _COLD.format(root=str(ROOT), fmt=fmt, path=str(path), sensor=sensor)
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=600)
    if res.returncode != 0:
        return None
    return float(res.stdout.strip().splitlines()[-1]) * 1e3


def _ms(s: float | None) -> str:
    return "—" if s is None else f"{s * 1e3:.2f}" if s < 0.1 else f"{s * 1e3:.1f}"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None else f"{a / b:.2f}×"


def _peer_times(r: Row) -> str:
    parts = []
    for name in r.peers:
        v = r.figures.get(f"peer:{name}")
        mark = "" if f"peer:{name}" in r.figures.get("correct", []) else " (differs)"
        parts.append(f"{name} {_ms(v)}{mark}")
    return "; ".join(parts) or "—"


def table(rows: list[Row]) -> str:
    head = ("| file | format | events | eventssm reader ms | Mev/s | read_events ms | 1 thread ms | "
            "iter_events ms | peers, ms | fastest correct peer | its ms | read_events × it | "
            "× it, rounds | tonic reader | tonic ms | × tonic | × tonic, rounds | np.fromfile ms | "
            "read_events / np.fromfile | first call ms | notes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        f = r.figures
        if "reader" not in f:
            lines.append(f"| {r.label} | {r.fmt} | — | — | — | — | — | — | {', '.join(r.peers) or '—'} "
                         f"| — | — | — | — | {r.tonic_name or '—'} | — | — | — | — | — | — | {r.note} |")
            continue
        fast = fastest_peer(r)
        lines.append(
            f"| {r.label} | {r.fmt} | {f['events']:,} | {_ms(f['reader'])} | "
            f"{f['events'] / f['reader'] / 1e6:.0f} | {_ms(f['public'])} | {_ms(f.get('one'))} | "
            f"{_ms(f.get('stream'))} | {_peer_times(r)} | "
            f"{fast.removeprefix('peer:') if fast else '—'} | {_ms(f.get(fast))} | "
            f"{_ratio(f.get(fast), f['public'])} | {_x(round_ratio(r, fast))} | "
            f"{r.tonic_name or '—'} | {_ms(f.get('tonic'))} | "
            f"{_ratio(f.get('tonic'), f['public'])} | {_x(round_ratio(r, 'tonic'))} | "
            f"{_ms(f['floor'])} | {_ratio(f['public'], f['floor'])} | {f['first_ms']:.1f} | "
            f"{r.note or ''} |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> list[str]:
    """Goal check lines: read_events >= 1.0x the fastest correct peer, >= 30x tonic.

    Each goal is counted twice: with the best times of the table, and with the median ratio
    of times taken side by side in one round (robust to load that comes and goes).
    """
    with_peer = [r for r in rows if "reader" in r.figures and fastest_peer(r)]
    out = []

    def count(ratios: dict[str, float], goal: float) -> str:
        hit = sum(v >= goal for v in ratios.values())
        return f"{hit} of {len(ratios)} rows (lowest {min(ratios.values()):.2f}x)"

    if with_peer:
        best = {r.label: r.figures[fastest_peer(r)] / r.figures["public"] for r in with_peer}
        med = {r.label: round_ratio(r, fastest_peer(r)) for r in with_peer}
        reader = {r.label: r.figures[fastest_peer(r)] / r.figures["reader"] for r in with_peer}
        met = all(v >= 1 for v in best.values())
        out.append(
            "Goal (a), `read_events` >= 1.0x the fastest correct peer: "
            f"**{'met' if met else 'missed'}**: best times {count(best, 1)}; median of "
            f"side-by-side rounds {count(med, 1)}; the format reader's best times "
            f"{count(reader, 1)}.")
        low = [f"{k} {v:.2f}x" for k, v in best.items() if v < 1]
        if low:
            out.append(f"Below 1.0x (best times): {', '.join(low)}.")
    with_tonic = [r for r in rows if "reader" in r.figures and "tonic" in r.figures]
    if with_tonic:
        best = {r.label: r.figures["tonic"] / r.figures["public"] for r in with_tonic}
        med = {r.label: round_ratio(r, "tonic") for r in with_tonic}
        hit = [k for k, v in best.items() if v >= 30]
        out.append(
            f"Goal (b), `read_events` >= 30x tonic: **{'met' if len(hit) == len(best) else 'missed'}"
            f"**: best times {count(best, 30)}, range {min(best.values()):.1f}x to "
            f"{max(best.values()):.1f}x ({', '.join(hit) or 'none'} at 30x or more); median of "
            f"side-by-side rounds {count(med, 30)}, up to {max(med.values()):.1f}x.")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1M-event synthetic files, 5 repeats")
    ap.add_argument("--repeat", type=int, default=None, help="best of N (default 20; quick 5)")
    ap.add_argument("--events", type=int, default=None,
                    help="events per synthetic file (default 10M; quick 1M)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "io.md")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-compile subprocesses")
    ap.add_argument("--passes", type=int, default=1,
                    help="measure every file this many times over the run, keeping the best")
    args = ap.parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 20)
    n = args.events or (1_000_000 if args.quick else 10_000_000)
    big_repeat = max(3, repeat // 3)
    started = time.perf_counter()
    loads = [os.getloadavg()[0]]

    rows = real_rows()
    cold = {}
    with tempfile.TemporaryDirectory() as tmp:
        synth = synthetic_rows(n, Path(tmp))
        for k in range(args.passes):  # passes spread each file's timings over the run
            print(f"pass {k + 1} of {args.passes}")
            for r in rows:
                measure(r, repeat, repeat)
            for r in synth:
                measure(r, big_repeat, 2)
                loads.append(os.getloadavg()[0])
        if not args.no_cold:
            for r in rows + synth:
                if "reader" in r.figures and r.fmt not in cold:
                    cold[r.fmt] = cold_compile_ms(r.fmt, r.path, r.sensor)
    rows += synth

    command = "python benchmarks/bench_io.py" + (" --quick" if args.quick else "") + (
        f" --repeat {args.repeat}" if args.repeat else "") + (
        f" --events {args.events}" if args.events else "") + (
        f" --passes {args.passes}" if args.passes != 1 else "") + (
        " --no-cold" if args.no_cold else "")
    cpu = platform.processor() or platform.machine()
    cold_line = ", ".join(f"{k} {v / 1e3:.1f} s" if v else f"{k} failed" for k, v in cold.items())
    out = [
        "## Raw-file read speed (`benchmarks/bench_io.py`)",
        "",
        f"Date: {DATE}. Machine: {MACHINE} ({cpu}, Python {platform.python_version()}, "
        f"numpy {np.__version__}); 1-minute load average {min(loads):.1f} to {max(loads):.1f} "
        f"during the run ({os.cpu_count()} CPUs).",
        f"Command: `{command}` ({time.perf_counter() - started:.0f} s). Each figure is the best "
        f"of {repeat} calls (synthetic files: {big_repeat}; tonic on synthetic files: 2) after "
        "one warm-up call, the contenders of a file taking turns"
        + (f", in each of {args.passes} passes over all files" if args.passes > 1 else "") + ".",
        "",
        table(rows),
        "",
        "Columns: *eventssm reader* = the format's registered reader (header + numba kernel, "
        "which checks every event against the sensor); *read_events* = the public call (for "
        "these formats it skips the generic bounds pass, see `FormatSpec.validated`); *1 thread* "
        "= the reader with `threads=1` (DAT and N-MNIST files of 8 MiB or more are otherwise "
        "decoded on all CPUs); *iter_events* = streaming the whole file "
        f"in chunks of {STREAM_CHUNK:,} events (bounded memory); *peers* = every other reader "
        "of the format, best time each, \"(differs)\" where its events are not eventssm's; "
        "*fastest correct peer* = the fastest peer whose x, y, t, p equal eventssm's (tonic: "
        "in its own coordinate convention); *× it* and *× tonic* = other time / `read_events` "
        "time (above 1: eventssm is faster); *rounds* = the median over "
        "rounds of the ratio of times taken one right after the other (robust to load that "
        "comes and goes); *np.fromfile* = reading the "
        "same bytes into fresh memory (the physical floor); *first call* = the first read of "
        "that file in this process (for a format's first row it includes loading the kernels "
        "from the numba cache); *notes* = whether tonic's events equal eventssm's (in tonic's "
        "coordinate convention), which peers decode differently and how.",
        f"Cold numba compile (first read in a fresh interpreter with an empty cache): "
        f"{cold_line or 'not measured'}.",
        "",
        *summary(rows),
        "",
    ]
    text = "\n".join(out) + "\n"
    print(text)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The vendors' own decoders as oracles: iniVation's dv-processing (C++) for AEDAT 4.0 and the
``evt3`` package (Rust) for EVT 3.0, on the shared recordings they read, and round trips of the
files eventssm's encoders write through every vendor reader that reads the format.

Where a peer decodes differently it is said, not hidden: expelliarmus's EVT 3.0 timestamps
drift by 4,096 µs per TIME_LOW wrap (the exact relation is tested in ``test_prophesee.py``),
so only its x, y and p are compared on EVT 3.0; ``evt3`` gives OpenEB's timestamps and is
compared on all four fields. ``evt3`` reads EVT 3.0 only (it does not check the header: an
EVT 2.0 file comes back as wrong events), so it is no oracle for EVT 2.0. The four peers are
declared test dependencies (pyproject's ``test`` extra) and imported plainly: a broken
install fails here instead of silently skipping.
"""

from __future__ import annotations

import aedat
import dv_processing as dv
import evt3
import expelliarmus
import numpy as np
import pytest

from eventssm.events import make_events
from eventssm.io import aedat as A
from eventssm.io import prophesee as P
from eventssm.io import read_events
from tests.conftest import recording


def _dv_events(path) -> np.ndarray:
    """Every event of the ``events`` stream through ``dv.io.MonoCameraRecording``."""
    rec = dv.io.MonoCameraRecording(str(path))
    parts = []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy())
    return np.concatenate(parts) if parts else np.empty(0, dtype=[("timestamp", "<i8")])


def _assert_same(ours: np.ndarray, x, y, t, p) -> None:
    assert len(ours) == len(x) == len(t)
    assert np.array_equal(ours["x"], np.asarray(x).astype(np.int16))
    assert np.array_equal(ours["y"], np.asarray(y).astype(np.int16))
    assert np.array_equal(ours["t"], np.asarray(t).astype(np.int64))
    assert np.array_equal(ours["p"], np.asarray(p).astype(bool))


def _events(n: int, w: int, h: int, span_us: int, seed: int = 0, t0: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n),
                       t0 + np.sort(rng.integers(0, span_us, n)),
                       rng.integers(0, 2, n).astype(bool))


# ---------------------------------------------------------------------------------------------
# Shared recordings
# ---------------------------------------------------------------------------------------------


def test_sample_aedat4_equals_dv_processing():
    path = recording("sample.aedat4")
    rec = read_events(path)
    theirs = _dv_events(path)
    assert len(theirs) == 111_954
    _assert_same(rec.events, theirs["x"], theirs["y"], theirs["timestamp"], theirs["polarity"])
    assert dv.io.MonoCameraRecording(str(path)).getEventResolution() == rec.sensor_size[:2]


def test_evt3_sample_equals_evt3_package():
    path = recording("evt3_sample.raw")
    rec = read_events(path)
    theirs = evt3.decode_file(str(path))
    assert len(theirs) == 219_596
    _assert_same(rec.events, theirs.x, theirs.y, theirs.timestamp, theirs.polarity)
    assert (theirs.sensor_width, theirs.sensor_height) == rec.sensor_size[:2]


# ---------------------------------------------------------------------------------------------
# Files eventssm writes, read by the vendors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
@pytest.mark.parametrize("imu", [True, False])
def test_encoded_aedat4_opens_in_dv_processing_and_aedat(tmp_path, compression, imu):
    ev = _events(10_000, 346, 260, 2 * 10**6, t0=1_700_000_000_000_000)
    path = tmp_path / "x.aedat4"
    path.write_bytes(A.encode_aedat4(ev, (346, 260, 2), compression=compression,
                                     packet_events=3000, imu_packets=imu, source="DAVIS346<&>"))
    theirs = _dv_events(path)
    _assert_same(ev, theirs["x"], theirs["y"], theirs["timestamp"], theirs["polarity"])
    rec = dv.io.MonoCameraRecording(str(path))
    assert rec.getEventResolution() == (346, 260)
    assert rec.getCameraName() == "DAVIS346<&>"
    assert rec.isImuStreamAvailable() == imu
    rust = np.concatenate([p["events"] for p in aedat.Decoder(str(path)) if "events" in p])
    _assert_same(ev, rust["x"], rust["y"], rust["t"], rust["on"])
    back = read_events(path)
    _assert_same(ev, back.events["x"], back.events["y"], back.events["t"], back.events["p"])
    assert back.meta["camera"] == "DAVIS346<&>"


def test_encoded_evt3_opens_in_evt3_and_expelliarmus(tmp_path):
    ev = _events(20_000, 1280, 720, 3 * 10**7)  # 30 s: many TIME_HIGH steps and wraps of it
    path = tmp_path / "x.raw"
    path.write_bytes(P.encode_evt3(ev, 1280, 720))
    theirs = evt3.decode_file(str(path))
    _assert_same(ev, theirs.x, theirs.y, theirs.timestamp, theirs.polarity)
    assert (theirs.sensor_width, theirs.sensor_height) == (1280, 720)
    ex = expelliarmus.Wizard(encoding="evt3").read(str(path))
    # x, y, p only: expelliarmus's time drifts by 4096 µs per TIME_LOW wrap (see module doc)
    assert len(ex) == len(ev)
    assert np.array_equal(ex["x"], ev["x"]) and np.array_equal(ex["y"], ev["y"])
    assert np.array_equal(ex["p"].astype(bool), ev["p"])
    assert np.all(ex["t"] >= ev["t"]) and np.all((ex["t"] - ev["t"]) % 4096 == 0)


@pytest.mark.parametrize("fmt", ["evt2", "dat"])
def test_encoded_evt2_and_dat_open_in_expelliarmus(tmp_path, fmt):
    ev = _events(20_000, 640, 480, 3 * 10**7, seed=1)
    path = tmp_path / ("x.raw" if fmt == "evt2" else "x.dat")
    enc = P.encode_evt2 if fmt == "evt2" else P.encode_dat
    path.write_bytes(enc(ev, 640, 480))
    ex = expelliarmus.Wizard(encoding=fmt).read(str(path))
    _assert_same(ev, ex["x"], ex["y"], ex["t"], ex["p"])


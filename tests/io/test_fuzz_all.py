"""Fuzz every registered reader: damaged bytes give a valid Recording or one EventFileError.

The readers are called directly (``FormatSpec.read`` / ``iter_chunks``), beneath the guard of
``read_events`` that turns any exception into an EventFileError: an IndexError in a decoder is a
failure here, not a clean error. Each format starts from a small valid sample: files this
project writes itself (npy, npz, hdf5, csv, and AEDAT 3.1 through
``eventssm.io.aedat.encode_aedat3``, as no real AEDAT 3.1 file exists) or the first 4-16 KB
of a shared real recording, cut at a record boundary (skipped when the shared folder is
absent). Hypothesis then flips bytes, truncates, inserts garbage and overwrites header
numbers. A guard alarm turns a hang into a failure instead of a stuck test run. The long
campaign (100,000 inputs per reader, in worker processes) is benchmarks/fuzz_readers.py.
"""

from __future__ import annotations

import importlib
import io
import signal
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, make_events, validate_events
from eventssm.io import formats, read_events, write_events
from tests.conftest import TEST_DATA, recording
from tests.io.mutations import mutate

HANG_GUARD_S = 120  # generous: a hang, not slowness, is what this catches

# format -> (shared recording, bytes kept at most, extension, header comment, header extra,
# record size): the cut keeps the text header whole and ends on a record boundary, so the
# sample itself is a valid (shorter) recording.
REAL = {
    "aedat2": ("neal_walking.aedat", 16384, ".aedat", b"#", 0, 8),
    "aedat4": ("sample.aedat4", 16384, ".aedat4", None, 0, 0),
    "evt2": ("evt2_sample.raw", 8192, ".raw", b"%", 0, 4),
    "evt3": ("evt3_sample.raw", 8192, ".raw", b"%", 0, 2),
    "dat": ("sample_ncars.dat", 8192, ".dat", b"%", 2, 8),  # + event type and size bytes
    "nmnist": ("sample_nmnist.bin", 4096, ".bin", None, 0, 5),
}
# formats whose sample header holds no geometry: the size to pass (N-CARS was recorded with an
# ATIS sensor, 304x240)
SENSOR = {"dat": (304, 240, 2)}

# sample id -> format; several samples exercise the different layouts of one format
OWN = {
    "npy": "npy",
    "npy-tonic": "npy",
    "npz": "npz",
    "hdf5": "hdf5",
    "hdf5-prophesee": "hdf5",
    "hdf5-shd": "hdf5",
    "csv": "csv",
    "csv-header": "csv",
}
ALL = (*OWN, "aedat2", "aedat3", "aedat4", "evt2", "evt3", "dat", "nmnist")


def _events(n=64):
    rng = np.random.default_rng(7)
    return make_events(rng.integers(0, 40, n), rng.integers(0, 30, n),
                       np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 2, n).astype(bool))


def _own_sample(sid: str, d: Path) -> tuple[bytes, str]:
    rec = Recording(_events(), (40, 30, 2), {"camera": "fuzz"})
    ev = rec.events
    buf = io.BytesIO()
    if sid == "npy":
        np.save(buf, ev)
        return buf.getvalue(), ".npy"
    if sid == "npy-tonic":
        np.save(buf, np.stack([ev["x"], ev["y"], ev["p"], ev["t"] / 1000.0], axis=1))
        return buf.getvalue(), ".npy"
    if sid == "npz":
        return write_events(d / "s.npz", rec).read_bytes(), ".npz"
    if sid == "hdf5":
        return write_events(d / "s.h5", rec, compression=None).read_bytes(), ".h5"
    if sid == "hdf5-prophesee":  # h5py defaults: no metadata checksums, gzip chunks
        cd = np.zeros(len(ev), [("x", "<u2"), ("y", "<u2"), ("p", "<i2"), ("t", "<i8")])
        for k in "xypt":
            cd[k] = ev[k]
        with h5py.File(d / "cd.hdf5", "w") as f:
            f.create_group("CD").create_dataset("events", data=cd, chunks=(16,),
                                                compression="gzip")
            f.attrs["geometry"] = b"40x30"
        return (d / "cd.hdf5").read_bytes(), ".hdf5"
    if sid == "hdf5-shd":
        with h5py.File(d / "shd.h5", "w") as f:
            g = f.create_group("spikes")
            g.create_dataset("times", (1,), dtype=h5py.vlen_dtype(np.float32))[0] = ev["t"] / 1e6
            g.create_dataset("units", (1,), dtype=h5py.vlen_dtype(np.uint16))[0] = ev["x"]
            f.create_dataset("labels", data=np.array([4], np.uint16))
        return (d / "shd.h5").read_bytes(), ".h5"
    if sid == "csv-header":
        lines = ["p,x,t,y"] + [f"{int(p)},{x},{t},{y}" for x, y, t, p in ev.tolist()]
    else:
        lines = [f"{t / 1e6:.6f} {x} {y} {int(p)}" for x, y, t, p in ev.tolist()]
    return ("\n".join(lines) + "\n").encode(), ".csv"


def _sample(sid: str, d: Path) -> tuple[str, bytes, str]:
    """(format name, sample bytes, extension) for a sample id."""
    name = OWN.get(sid, sid)
    if name not in formats():
        pytest.skip(f"format {name!r} is not registered (its reader is not written yet)")
    if sid in OWN:
        return (name, *_own_sample(sid, d))
    if name == "aedat3":  # no real AEDAT 3.1 file exists: the project's own encoder
        encode = getattr(importlib.import_module("eventssm.io.aedat"), "encode_aedat3", None)
        if encode is None:
            pytest.skip("no AEDAT 3.1 sample: no real file exists and no encoder is available")
        return name, encode(_events(), packet_events=16, other_packets=True), ".aedat"
    fname, keep, ext, comment, extra, record = REAL[name]
    data = recording(fname).read_bytes()
    if name == "aedat4":
        return name, data[: _aedat4_cut(data, keep)], ext
    start = _header_end(data, comment) + extra if comment else 0
    return name, data[: start + (keep - start) // record * record], ext


def _header_end(data: bytes, comment: bytes) -> int:
    """Offset just after the leading lines that start with ``comment``."""
    pos = 0
    while data.startswith(comment, pos):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return len(data)
        pos = nl + 1
    return pos


def _aedat4_cut(data: bytes, keep: int) -> int:
    """End of the last whole packet within ``keep`` bytes (iniVation AEDAT 4.0 docs: version
    line, int32 IOHeader size + IOHeader, then packets of int32 stream id, int32 size, data)."""
    pos = data.index(b"\n") + 1
    pos += 4 + int.from_bytes(data[pos : pos + 4], "little", signed=True)
    first = end = pos
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little", signed=True)
        if pos + 8 + size > keep and end > first:  # keep at least one packet
            break
        pos += 8 + size
        end = pos
    return end


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 2**31)),
    st.tuples(st.just("insert"), st.integers(0, 2**31), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("number"), st.integers(0, 511), st.sampled_from([1, 2, 4, 8]),
              st.sampled_from([0, 1, 2**7 - 1, 2**8 - 1, 2**15, 2**16 - 1, 2**31 - 1,
                               2**32 - 1, 2**63 - 1, 2**64 - 1])),
)


class _Hang(BaseException):  # escapes the readers' catch-all guard
    pass


def _alarm(signum, frame):
    raise _Hang(f"reader still running after {HANG_GUARD_S} s")


def _check_outcome(path: Path, name: str) -> None:
    """The reader itself, beneath ``read_events``' guard (which would turn any exception into an
    EventFileError): a Recording or one EventFileError; any other exception fails the test."""
    size = SENSOR.get(name)
    spec = formats()[name]
    try:
        rec = spec.read(path, size)
    except EventFileError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(rec, Recording)
        assert rec.events.dtype == EVENT_DTYPE
        if spec.validated:  # the reader promises the per-event contract itself
            validate_events(rec.events, rec.sensor_size, allow_empty=True)
    if spec.iter_chunks is None:
        return
    try:
        for chunk in spec.iter_chunks(path, 50, size):
            assert chunk.events.dtype == EVENT_DTYPE and len(chunk.events) <= 50
    except EventFileError as exc:
        assert "\n" not in str(exc)
    # and through the public functions: a valid Recording or one EventFileError
    try:
        rec = read_events(path, format=name, allow_empty=True, sensor_size=size)
        validate_events(rec.events, rec.sensor_size, allow_empty=True)
    except EventFileError as exc:
        assert "\n" not in str(exc)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@pytest.mark.parametrize("sid", ALL)
def test_sample_itself_reads(sid, workdir):
    name, data, ext = _sample(sid, workdir)
    path = workdir / f"whole_{sid}{ext}"
    path.write_bytes(data)
    rec = read_events(path, format=name, sensor_size=SENSOR.get(name))  # a valid recording
    assert len(rec) > 0
    _check_outcome(path, name)


@pytest.mark.parametrize("sid", ALL)
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_files_never_crash(sid, workdir, ops):
    name, data, ext = _sample(sid, workdir)
    path = workdir / f"fuzz_{sid}{ext}"
    path.write_bytes(mutate(data, ops))
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_GUARD_S)
    try:
        _check_outcome(path, name)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_mutate_helper():
    assert mutate(b"abcd", [("flip", 1, 1)]) == b"accd"
    assert mutate(b"abcd", [("truncate", 6)]) == b"ab"
    assert mutate(b"abcd", [("insert", 4, b"XY")]) == b"abcdXY"
    assert mutate(b"abcdef", [("number", 2, 2, 0x0102)]) == b"ab\x02\x01ef"
    assert mutate(b"abc", [("number", 2, 4, 2**32 - 1)]) == b"ab\xff"


@pytest.mark.parametrize("pos", [74, 111, 1961])
def test_damaged_hdf5_metadata_is_an_event_file_error_inside_the_reader(workdir, pos):
    """Regression (benchmarks/fuzz_readers.py): a damaged metadata checksum made h5py raise
    RuntimeError/OSError out of the hdf5 reader itself, which only read_events' guard caught."""
    data = bytearray(_own_sample("hdf5", workdir)[0])
    data[pos] ^= 0xFF
    path = workdir / f"damaged_{pos}.h5"
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match="damaged HDF5 file"):
        formats()["hdf5"].read(path, None)
    with pytest.raises(EventFileError, match="damaged HDF5 file"):
        list(formats()["hdf5"].iter_chunks(path, 50, None))


@pytest.mark.parametrize(("name", "needle"), [
    ("hdf5_keys_bytes_and_str.h5", "unknown HDF5 layout: top-level keys [\"b'spik\\\\xff\\\\xff'\", 'labels']"),
    ("hdf5_float_type_damaged.h5", "damaged HDF5 file: Insufficient precision in available types"),
])
def test_fuzz_campaign_findings_in_the_hdf5_reader(name, needle):
    """Regressions from benchmarks/fuzz_readers.py (inputs 14404 and 11032 of seed 0, SHD-style
    files): a damaged link name came back as bytes and sorting it with str names raised
    TypeError; a damaged float datatype made h5py raise ValueError. Both escaped the reader."""
    path = TEST_DATA / "fuzz" / name
    spec = formats()["hdf5"]
    for run in (lambda: spec.read(path, None), lambda: list(spec.iter_chunks(path, 50, None))):
        with pytest.raises(EventFileError) as err:
            run()
        assert needle in str(err.value)


def test_huge_float_timestamps_are_one_error_without_a_warning(tmp_path):
    """Regression (fuzz campaign, npy reader): a tonic-layout .npy whose t (ms) is 1e306
    overflowed float64 when scaled to µs and printed a RuntimeWarning before the error.
    pytest turns warnings into errors, so this test also fails if the warning comes back."""
    ev = _events(4)
    arr = np.stack([ev["x"], ev["y"], ev["p"], ev["t"] / 1000.0], axis=1)
    arr[2, 3] = 1e306
    path = tmp_path / "huge_t.npy"
    np.save(path, arr)
    with pytest.raises(EventFileError, match="overflow 64-bit microseconds"):
        formats()["npy"].read(path, None)


def test_encrypted_npz_member_is_one_error(workdir):
    """Regression (fuzz campaign, npz reader): a member whose 'encrypted' flag bit is set made
    zipfile raise RuntimeError ("password required") out of the reader."""
    data = bytearray(_own_sample("npz", workdir)[0])
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        pos = data.find(sig)
        while pos >= 0:
            data[pos + flag_at] |= 0x1
            pos = data.find(sig, pos + 4)
    path = workdir / "encrypted.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match="encrypted"):
        formats()["npz"].read(path, None)


def _npy_with_header(header: str, data: bytes) -> bytes:
    """A version 1.0 ``.npy`` file with the header text ``header`` (padded to 64 bytes, as the
    format asks) followed by ``data``."""
    text = header.encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


@pytest.mark.parametrize("header, data, needle", [
    # an invalid escape sequence in the header text: Python's parser warns while numpy
    # evaluates it (DeprecationWarning up to Python 3.11, SyntaxWarning from 3.12)
    ("{'descr': '<i\\d', 'fortran_order': False, 'shape': (3,), }", b"", "not a valid dtype"),
    # NumPy 2.0 deprecated the dtype alias 'a' (DeprecationWarning); it means 'S', not numbers
    ("{'descr': [('x', 'a4'), ('y', '<u2'), ('t', '<i8'), ('p', 'u1')], 'fortran_order': False, "
     "'shape': (1,), }", bytes(15), "non-numeric dtype|not a valid dtype"),
])
def test_damaged_npy_headers_are_one_error_without_a_warning(tmp_path, header, data, needle):
    """Regression (fuzz campaign run D, npy reader): numpy's header parser warned on these
    damaged headers before the reader's error. pytest turns warnings into errors, which would
    hide the warning inside the error, so the warnings are recorded here instead: there must be
    none, from the .npy reader and from the same header as an .npz member."""
    import warnings
    import zipfile

    npy = tmp_path / "damaged.npy"
    npy.write_bytes(_npy_with_header(header, data))
    npz = tmp_path / "damaged.npz"
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("events.npy", npy.read_bytes())
    for path in (npy, npz):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(EventFileError, match=needle):
                read_events(path)
        assert [str(w.message) for w in caught] == [], path

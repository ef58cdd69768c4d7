"""N-MNIST / N-Caltech101 .bin reader: tonic's read_mnist_file as oracle, hand-decoded bytes,
kernel vs .py_func, encoder round trips, streaming, bad input, fuzzing."""

from __future__ import annotations

import numpy as np
import pytest
import tonic.io as tonic_io  # a declared dependency: a missing install fails here
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventssm.events import EVENT_DTYPE, EventFileError, make_events, validate_events
from eventssm.io import detect_format, formats, iter_events, read_events
from eventssm.io import nmnist as N
from eventssm.io.kernels import nmnist as KN
from tests.conftest import recording
from tests.io.mutations import mutate_small

TONIC_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _tonic(path):
    return tonic_io.read_mnist_file(str(path), dtype=TONIC_DTYPE)


def _assert_equals_tonic(ours, theirs):
    assert len(ours) == len(theirs)
    for k in "xyt":
        assert np.array_equal(ours[k].astype(np.int64), theirs[k]), k
    assert np.array_equal(ours["p"], theirs["p"].astype(bool))


def _records(rows):
    """5-byte records from (x, y, p, ts) tuples, packed by hand."""
    out = bytearray()
    for x, y, p, ts in rows:
        out += bytes([x, y, (p << 7) | (ts >> 16), (ts >> 8) & 0xFF, ts & 0xFF])
    return bytes(out)


def test_sample_equals_tonic_and_hand_decoding():
    path = recording("sample_nmnist.bin")
    assert detect_format(path).name == "nmnist"
    rec = read_events(path)
    assert rec.sensor_size == (34, 34, 2) and rec.meta["camera"] == "ATIS"
    assert "sensor_size_inferred" not in rec.meta
    assert len(rec) == 4325 and 300_000 <= rec.duration_us <= 320_000
    _assert_equals_tonic(rec.events, _tonic(path))
    # first record by hand: 07 0f 80 02 8e -> x 7, y 15, p 1, ts (0x00 << 16) | 0x028e = 654
    assert path.read_bytes()[:5] == bytes.fromhex("070f80028e")
    assert rec.events[0].tolist() == (7, 15, 654, True)
    # the encoder reproduces the file byte for byte (no overflow markers in this sample)
    assert N.encode_nmnist(rec.events) == path.read_bytes()


def test_overflow_markers_match_tonic(tmp_path):
    rows = [(1, 2, 1, 100), (3, 240, 0, 0), (4, 5, 0, 50), (0, 240, 0, 0), (0, 240, 1, 7),
            (33, 33, 1, (1 << 23) - 1), (6, 7, 0, 0)]
    path = tmp_path / "ovf.bin"
    path.write_bytes(_records(rows))
    rec = read_events(path)
    expected = [(1, 2, 100, True), (4, 5, 8192 + 50, False),
                (33, 33, 3 * 8192 + (1 << 23) - 1, True), (6, 7, 3 * 8192, False)]
    assert rec.events.tolist() == expected
    _assert_equals_tonic(rec.events, _tonic(path))


@pytest.mark.parametrize("source", ["sample", "synthetic"])
def test_kernels_match_py_func(tmp_path, source):
    if source == "sample":
        raw = np.frombuffer(recording("sample_nmnist.bin").read_bytes(), np.uint8)
    else:
        rng = np.random.default_rng(2)
        rows = [(int(rng.integers(0, 256)), int(rng.choice([240, rng.integers(0, 240)])),
                 int(rng.integers(0, 2)), int(rng.integers(0, 1 << 23))) for _ in range(500)]
        raw = np.frombuffer(_records(rows), np.uint8)
    results = []
    for kernel, scan in ((KN.decode_nmnist, KN.scan_nmnist),
                         (KN.decode_nmnist.py_func, KN.scan_nmnist.py_func)):
        out = np.zeros(KN.nmnist_bound(len(raw) // 5), dtype=EVENT_DTYPE)
        state = KN.nmnist_state()
        n, flags = kernel(raw, out, state, 256, 256)
        s2 = KN.scan_state()
        m = scan(raw, s2)
        small_flags = kernel(raw, out.copy(), KN.nmnist_state(), 20, 20)[1]
        results.append((out[:n].copy(), int(flags), state.copy(), int(m), s2.copy(),
                        int(small_flags)))
    fast, slow = results
    assert np.array_equal(fast[0], slow[0]) and len(fast[0]) > 100
    assert fast[1] == slow[1] == 0 and fast[5] == slow[5] == KN.FLAG_OUTSIDE
    assert np.array_equal(fast[2], slow[2]) and np.array_equal(fast[4], slow[4])
    assert fast[3] == slow[3] == len(fast[0])
    assert fast[2][0] == fast[4][0] == (raw[1::5] == 240).sum()  # overflow markers
    assert fast[4][1] == fast[0]["x"].max() and fast[4][2] == fast[0]["y"].max()


def test_ncaltech_coordinates_infer_the_sensor(tmp_path):
    rows = [(10, 20, 1, 5), (0, 240, 0, 0), (120, 90, 0, 9), (34, 3, 1, 11)]
    path = tmp_path / "caltech.bin"
    path.write_bytes(_records(rows))
    rec = read_events(path)
    assert rec.sensor_size == (121, 91, 2) and rec.meta["sensor_size_inferred"] is True
    chunks = list(iter_events(path, chunk_events=1))
    assert chunks[0].sensor_size == (121, 91, 2) and chunks[0].meta["sensor_size_inferred"]
    assert np.array_equal(np.concatenate([c.events for c in chunks]), rec.events)
    given_size = read_events(path, sensor_size=(240, 180, 2))
    assert given_size.sensor_size == (240, 180, 2)
    assert "sensor_size_inferred" not in given_size.meta
    with pytest.raises(EventFileError, match=r"outside the 100x100 sensor.*at byte 10"):
        read_events(path, sensor_size=(100, 100, 2))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300),
       span=st.sampled_from([10, 10**5, 1 << 23, 10**9]), sort=st.booleans(),
       coords=st.sampled_from([34, 256]))
def test_roundtrip(tmp_path, seed, n, span, sort, coords):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, span, n)
    if sort or span > 1 << 23:
        t = np.sort(t)
    y = rng.integers(0, coords, n)
    y[y == 240] = 241
    ev = make_events(rng.integers(0, coords, n), y, t, rng.integers(0, 2, n).astype(bool))
    path = tmp_path / "rt.bin"
    path.write_bytes(N.encode_nmnist(ev))
    rec = read_events(path, format="nmnist", allow_empty=True)
    assert np.array_equal(rec.events, ev)
    if n and ev["x"].max() < 34 and ev["y"].max() < 34:
        assert rec.sensor_size == (34, 34, 2)
    if n and path.stat().st_size // 5 - n < 500:  # tonic loops in Python over each marker
        _assert_equals_tonic(rec.events, _tonic(path))


def test_encoder_rejects_unencodable():
    with pytest.raises(ValueError, match="240"):
        N.encode_nmnist(make_events([1], [240], [0], [True]))
    with pytest.raises(ValueError, match=r"0\.\.255"):
        N.encode_nmnist(make_events([256], [1], [0], [True]))
    with pytest.raises(ValueError, match="step back"):
        N.encode_nmnist(make_events([1, 1], [1, 1], [10**8, 0], [True, True]))
    assert N.encode_nmnist(np.zeros(0, EVENT_DTYPE)) == b""


def test_iter_chunks_concatenate_to_read():
    path = recording("sample_nmnist.bin")
    whole = read_events(path).events
    spec = formats()["nmnist"]
    for chunk in (1, 7, 4096):
        chunks = list(spec.iter_chunks(path, chunk, None))
        assert all(len(c) == chunk for c in chunks[:-1])
        assert np.array_equal(np.concatenate([c.events for c in chunks]), whole)
    for block in (5, 35):  # one or seven records per block
        chunks = list(spec.iter_chunks(path, 100, None, block_bytes=block))
        assert np.array_equal(np.concatenate([c.events for c in chunks]), whole)


def test_overflow_state_crosses_blocks(tmp_path):
    rows = [(1, 1, 0, 5), (0, 240, 0, 0), (2, 2, 1, 6), (0, 240, 0, 0), (0, 240, 0, 0),
            (3, 3, 0, 7)] * 20
    path = tmp_path / "blocks.bin"
    path.write_bytes(_records(rows))
    whole = read_events(path).events
    got = np.concatenate([c.events for c in N.iter_nmnist(path, 3, block_bytes=5)])
    assert np.array_equal(got, whole)
    _assert_equals_tonic(whole, _tonic(path))


def test_bad_input(tmp_path):
    data = recording("sample_nmnist.bin").read_bytes()
    path = tmp_path / "trunc.bin"
    path.write_bytes(data[:-2])
    with pytest.raises(EventFileError, match="truncated N-MNIST") as e:
        read_events(path)
    assert e.value.offset == len(data) - 5 and str(path) in str(e.value)
    with pytest.raises(EventFileError, match="truncated"):
        list(iter_events(path))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(_records([(0, 240, 0, 0)]))  # only an overflow marker: no events
    with pytest.raises(EventFileError, match="no events"):
        read_events(empty)
    rec = read_events(empty, allow_empty=True)
    assert len(rec) == 0 and rec.sensor_size == (34, 34, 2)
    with pytest.raises(EventFileError, match="invalid sensor_size"):
        read_events(recording("sample_nmnist.bin"), sensor_size=(0, 5, 2))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert"]),
                              st.integers(0, 10**6), st.integers(1, 255)), min_size=1,
                    max_size=4))
def test_mutated_sample_gives_recording_or_event_file_error(tmp_path, ops):
    buf = mutate_small(recording("sample_nmnist.bin").read_bytes()[:4000], ops)
    path = tmp_path / "fuzz.bin"
    path.write_bytes(bytes(buf))
    try:
        rec = N.read_nmnist(path)
    except EventFileError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        validate_events(rec.events, rec.sensor_size, allow_empty=True)
        chunks = list(N.iter_nmnist(path, 333))
        joined = np.concatenate([c.events for c in chunks]) if chunks else rec.events[:0]
        assert np.array_equal(joined, rec.events)
        if len(rec):
            _assert_equals_tonic(rec.events, _tonic(path))

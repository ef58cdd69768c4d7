"""The whole-file AEDAT 4.0 read path (packet walk, one kernel call per packet, growing output)
against its references: the kernels' ``.py_func``, the Python FlatBuffer parser ``_evts4``, the
packet-by-packet reader ``iter_aedat4`` and the byte-load kernel ``aedat4_events``."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from eventssm.events import EVENT_DTYPE, EventFileError, make_events
from eventssm.io import aedat as A
from eventssm.io import aedat4 as A4
from eventssm.io import aedat_encode as AE
from eventssm.io import read_events
from eventssm.io.kernels import aedat as K

STRUCT = [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")]


def _structs(rng, m, w=320, h=240) -> np.ndarray:
    rec = np.zeros(m, dtype=STRUCT)
    rec["t"] = rng.integers(-(2**62), 2**62, m)
    rec["x"], rec["y"] = rng.integers(0, w, m), rng.integers(0, h, m)
    rec["on"] = rng.integers(0, 3, m)  # any non-zero byte is ON
    return rec


def _packet(rec) -> np.ndarray:
    return np.frombuffer(AE._fb_events_packet(rec.tobytes(), len(rec)), dtype=np.uint8)


def _reference(path) -> np.ndarray:
    """Events of ``path`` through the packet-by-packet reader (python-lz4 / zstandard)."""
    return np.concatenate([c.events for c in A.iter_aedat4(path, 1 << 30)])


def test_aligned_kernel_equals_byte_kernel():
    rng = np.random.default_rng(0)
    rec = _structs(rng, 500)
    buf = np.frombuffer(rec.tobytes(), dtype=np.uint8)
    assert buf.ctypes.data % 8 == 0
    a, b, c = (np.zeros(500, EVENT_DTYPE) for _ in range(3))
    assert K.aedat4_events_aligned(buf, a, 320, 240) == (500, -1)
    assert K.aedat4_events_aligned.py_func(buf, b, 320, 240) == (500, -1)
    assert K.aedat4_events(buf, c, 320, 240) == (500, -1)
    assert a.tobytes() == b.tobytes() == c.tobytes()
    assert np.array_equal(a["t"], rec["t"]) and np.array_equal(a["p"], rec["on"] != 0)
    for field, value, at in (("x", -3, 77), ("y", 240, 12), ("x", 320, 499)):
        bad = rec.copy()
        bad[field][at] = value
        buf = np.frombuffer(bad.tobytes(), dtype=np.uint8)
        assert K.aedat4_events_aligned(buf, a, 320, 240) == (at, at) \
            == K.aedat4_events_aligned.py_func(buf, b, 320, 240) \
            == K.aedat4_events(buf, c, 320, 240)


@pytest.mark.parametrize("shift", [0, 1, 4])
def test_packet_kernel_equals_python_parser(shift):
    """``aedat4_packet`` (jit and .py_func) on aligned and unaligned copies of a packet."""
    rng = np.random.default_rng(1)
    rec = _structs(rng, 300)
    raw = AE._fb_events_packet(rec.tobytes(), len(rec))
    words = np.zeros(len(raw) // 8 + 2, dtype=np.int64)  # 8-byte aligned storage
    buf = words.view(np.uint8)[shift : shift + len(raw)]
    buf[:] = np.frombuffer(raw, dtype=np.uint8)
    assert (buf.ctypes.data % 8 == 0) == (shift == 0)
    start, count = A4._evts4("p", buf.tobytes(), 0)
    assert K.aedat4_vector(buf) == K.aedat4_vector.py_func(buf) == (start, count) == (32, 300)
    a, b = np.zeros(300, EVENT_DTYPE), np.zeros(300, EVENT_DTYPE)
    assert K.aedat4_packet(buf, a, 320, 240) == K.aedat4_packet.py_func(buf, b, 320, 240) \
        == (300, 0)
    ref = np.zeros(300, EVENT_DTYPE)
    K.aedat4_events(buf[32:], ref, 320, 240)
    assert a.tobytes() == b.tobytes() == ref.tobytes()
    small = np.zeros(299, EVENT_DTYPE)  # output too small: nothing written, count returned
    assert K.aedat4_packet(buf, small, 320, 240) == (300, 3)
    assert not small.tobytes().strip(b"\x00")
    assert K.aedat4_packet(buf, a, 100, 240)[1] == 2  # outside a smaller sensor


def test_vector_parser_agrees_on_damaged_packets():
    """On random damage, the kernel and ``_evts4`` agree: same vector, or both refuse."""
    rng = np.random.default_rng(2)
    good = _packet(_structs(rng, 20))
    for _ in range(400):
        buf = good.copy()
        for _ in range(rng.integers(1, 4)):
            buf[rng.integers(0, 32)] = rng.integers(0, 256)
        if rng.random() < 0.2:
            buf = buf[: rng.integers(0, len(buf))]
        got = K.aedat4_vector(buf)
        assert got == K.aedat4_vector.py_func(buf)
        try:
            want = A4._evts4("p", buf.tobytes(), 0)
        except EventFileError:
            want = (-1, 0)
        assert got == want, bytes(buf[:32]).hex()


def test_walk_equals_python_walk():
    rng = np.random.default_rng(3)
    ev = make_events(rng.integers(0, 320, 3000), rng.integers(0, 240, 3000),
                     np.sort(rng.integers(0, 10**9, 3000)), rng.integers(0, 2, 3000) > 0)
    data = A.encode_aedat4(ev, (320, 240, 2), packet_events=700)
    start = 18 + struct.unpack_from("<i", data, 14)[0]
    region = np.frombuffer(data[start:], dtype=np.uint8)
    declared = np.array([0, 1], dtype=np.int64)
    starts, sizes, total, bad = K.aedat4_walk(region, 0, declared)
    ref = K.aedat4_walk.py_func(region, 0, declared)
    assert [x.tolist() if hasattr(x, "tolist") else x for x in ref] == \
        [starts.tolist(), sizes.tolist(), total, bad]
    pos, want = 0, []
    while pos < len(region):  # plain struct walk
        sid, size = struct.unpack_from("<ii", region, pos)
        if sid == 0:
            want.append((pos + 8, size))
        pos += 8 + size
    assert list(zip(starts.tolist(), sizes.tolist(), strict=True)) == want
    assert total == 2 * len(want) == 10 and bad == -1
    assert K.aedat4_walk(region[:-3], 0, declared)[3] == want[-1][0] - 8 + 8 + want[-1][1]
    assert K.aedat4_walk(region, 0, np.array([0], dtype=np.int64))[3] == want[0][0] + want[0][1]


@pytest.mark.parametrize("compression", ["lz4", "zstd", "none"])
def test_read_equals_packet_reference_with_growth(tmp_path, compression, monkeypatch):
    """Highly compressible events (ratio far above 2) make the output grow; the result equals
    the packet-by-packet reference reader."""
    n = 20_000
    ev = make_events(np.arange(n) % 7, np.zeros(n, int), 10**15 + np.arange(n) // 3,
                     np.ones(n, bool))
    path = tmp_path / "g.aedat4"
    path.write_bytes(A.encode_aedat4(ev, (346, 260, 2), compression=compression,
                                     packet_events=1500))
    grown = []
    real = A4._grow
    monkeypatch.setattr(A4, "_grow", lambda *a: grown.append(a[1:]) or real(*a))
    rec = A.read_aedat4(path)
    assert rec.events.tobytes() == _reference(path).tobytes() == ev.tobytes()
    assert bool(grown) == (compression != "none")
    assert rec.meta["packets"] == 2 * 14 and rec.meta["skipped_packets"] == 14


def test_real_sample_equals_packet_reference():
    from tests.conftest import recording

    path = recording("sample.aedat4")
    rec = read_events(path)
    assert rec.events.tobytes() == _reference(path).tobytes()
    assert rec.meta["packets"] == 118 and rec.meta["skipped_packets"] == 59


def _repack_lz4(data: bytes, **frame_opts) -> bytes:
    """An uncompressed encoder file re-packed with LZ4 frames made with ``frame_opts``."""
    import lz4.frame

    data = bytearray(data)
    hlen = struct.unpack_from("<i", data, 14)[0]
    assert struct.unpack_from("<i", data, 18 + 24)[0] == 0  # IOHeader compression field
    struct.pack_into("<i", data, 18 + 24, 1)
    out, pos = [bytes(data[: 18 + hlen])], 18 + hlen
    stored = frame_opts.pop("stored", False)
    while pos < len(data):
        sid, size = struct.unpack_from("<ii", data, pos)
        body = lz4.frame.compress(bytes(data[pos + 8 : pos + 8 + size]), **frame_opts)
        if stored:  # the same frame header, one block stored uncompressed (bit 31 of its size)
            plain = bytes(data[pos + 8 : pos + 8 + size])
            body = body[:7] + struct.pack("<I", len(plain) | 1 << 31) + plain + bytes(4)
        out.append(struct.pack("<ii", sid, len(body)) + body)
        pos += 8 + size
    return b"".join(out)


MB = 6  # lz4.frame.BLOCKSIZE_MAX1MB: the 72 KiB packets below fit one block
FRAMES = {
    "one block": {"block_size": MB, "store_size": False},
    "content size": {"block_size": MB, "store_size": True},
    "stored uncompressed": {"block_size": MB, "store_size": False, "stored": True},
    "block checksum": {"block_size": MB, "block_checksum": True},
    "content checksum": {"block_size": MB, "content_checksum": True},
    "several linked blocks": {"block_size": 0, "block_linked": True},  # 64 KiB blocks
    "several independent blocks": {"block_size": 0, "block_linked": False},
}


@pytest.mark.parametrize("name", list(FRAMES))
def test_lz4_frame_variants_equal_the_frame_path(tmp_path, name):
    rng = np.random.default_rng(4)
    n = 9000
    t = np.sort(rng.integers(0, 10**9, n))
    ev = make_events(rng.integers(0, 320, n), rng.integers(0, 240, n), t,
                     rng.integers(0, 2, n) > 0)
    raw = A.encode_aedat4(ev, (320, 240, 2), compression="none", packet_events=4500,
                          imu_packets=False)
    path = tmp_path / "v.aedat4"
    path.write_bytes(_repack_lz4(raw, **dict(FRAMES[name])))
    rec = A.read_aedat4(path)
    assert rec.events.tobytes() == _reference(path).tobytes() == ev.tobytes()
    with open(path, "rb") as f:
        h = A4._Aedat4(f, path, None)
        data = A._read_span(f, path, h.start, h.end)
    starts, sizes, _, _ = K.aedat4_walk(data, 0, np.array([0], dtype=np.int64))
    got = K.lz4_single_blocks(data, starts, sizes)
    ref = K.lz4_single_blocks.py_func(data, starts, sizes)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))
    _, lengths, maxima = got
    single = name in ("one block", "stored uncompressed")
    assert (lengths > 0).all() == single and (lengths < 0).all() == (not single)
    if single:
        assert (maxima == 0).all() == (name == "stored uncompressed")


def test_corrupt_lz4_block_is_reported_by_the_checked_path(tmp_path):
    ev = make_events(np.arange(3000) % 300, np.arange(3000) % 200, np.arange(3000),
                     np.ones(3000, bool))
    path = tmp_path / "c.aedat4"
    data = bytearray(A.encode_aedat4(ev, (320, 240, 2), packet_events=1000))
    start = 18 + struct.unpack_from("<i", data, 14)[0]
    data[start + 8 + 30 : start + 8 + 60] = b"\xff" * 30  # inside the first LZ4 block
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=r"AEDAT 4\.0") as err:
        A.read_aedat4(path)
    assert err.value.offset == start
    with pytest.raises(EventFileError) as ref:
        _reference(path)
    assert str(ref.value) == str(err.value)


def test_lying_lz4_content_size_is_refused_by_read_and_stream(tmp_path):
    """A one-block frame announcing 2**40 bytes: refused before allocation, by the whole-file
    read and the packet-by-packet reader alike (one-block frames with a content size take
    the checked path)."""
    ev = make_events(np.arange(100) % 300, np.arange(100) % 200, np.arange(100),
                     np.ones(100, bool))
    raw = A.encode_aedat4(ev, (320, 240, 2), compression="none", imu_packets=False)
    data = bytearray(_repack_lz4(raw, block_size=MB, store_size=True))
    start = 18 + struct.unpack_from("<i", data, 14)[0]
    body = start + 8
    assert data[body + 4] & 8  # FLG: content size present, 8 bytes from body + 6
    struct.pack_into("<Q", data, body + 6, 1 << 40)
    path = tmp_path / "l.aedat4"
    path.write_bytes(bytes(data))
    for read in (A.read_aedat4, _reference):
        with pytest.raises(EventFileError, match="announces 1099511627776") as err:
            read(path)
        assert err.value.offset == start


@pytest.mark.parametrize("window", [100, 3000, 1 << 20])
def test_stream_windows_cut_between_packets(tmp_path, monkeypatch, window):
    """iter_aedat4 walks the file in windows of whole packets (the walk of read_aedat4): windows
    smaller than one packet, cutting between packets, or holding the whole file give the
    events of a plain struct walk; a corrupt header in a later window is the same error the
    whole-file read raises, after the events of the packets before it."""
    rng = np.random.default_rng(9)
    n = 4000
    ev = make_events(rng.integers(0, 320, n), rng.integers(0, 240, n),
                     np.sort(rng.integers(0, 10**9, n)), rng.integers(0, 2, n) > 0)
    data = bytearray(A.encode_aedat4(ev, (320, 240, 2), packet_events=500))
    path = tmp_path / "w.aedat4"
    path.write_bytes(bytes(data))
    monkeypatch.setattr(A4, "ITER_WINDOW_BYTES", window)
    seen = []
    real = A4._walk4
    monkeypatch.setattr(A4, "_walk4", lambda *a: (seen.append(w[1]) or w for w in real(*a)))
    got = [c.events for c in A.iter_aedat4(path, 777)]
    assert np.concatenate(got).tobytes() == ev.tobytes()
    assert all(len(c) == 777 for c in got[:-1])
    start = 18 + struct.unpack_from("<i", data, 14)[0]
    heads, pos = [], start  # plain struct walk: the packet headers
    while pos < len(data):
        heads.append(pos)
        pos += 8 + struct.unpack_from("<ii", data, pos)[1]
    assert seen[0] == start and set(seen) <= set(heads)
    assert (len(seen) == 1) == (window >= len(data))
    struct.pack_into("<i", data, heads[-3], 77)  # an undeclared stream, near the end
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match="undeclared stream 77") as whole:
        A.read_aedat4(path)
    with pytest.raises(EventFileError) as streamed:
        _reference(path)
    assert str(streamed.value) == str(whole.value) and whole.value.offset == heads[-3]

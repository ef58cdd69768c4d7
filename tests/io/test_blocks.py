"""The shared block reader: parallel decoding (DAT, N-MNIST) equals the one-thread decode,
header bytes reused as data, thread-count rules."""

from __future__ import annotations

import os
from itertools import pairwise

import numpy as np
import pytest

from eventssm.events import EventFileError, make_events
from eventssm.io import _blocks as B
from eventssm.io import nmnist as N
from eventssm.io import prophesee as P
from eventssm.io import read_events
from eventssm.io.kernels import nmnist as KN


def _events(rng, n, w, h, t):
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t,
                       rng.integers(0, 2, n).astype(bool))


def _same(a, b):
    assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.fixture
def parallel_calls(monkeypatch):
    """Count the parallel decode rounds (to know the parallel path ran)."""
    calls = []
    real = B.decode_segments

    def spy(fd, path, lay, segments, *args):
        calls.append(len(segments))
        return real(fd, path, lay, segments, *args)

    monkeypatch.setattr(B, "decode_segments", spy)
    return calls


def test_split_covers_the_range_in_whole_units():
    for start, end, unit, parts in [(3, 3 + 5 * 17, 5, 4), (0, 80, 8, 40), (7, 7 + 8, 8, 3)]:
        segs = B.split(start, end, unit, parts)
        assert segs[0][0] == start and segs[-1][1] == end
        assert all(b > a and (a - start) % unit == 0 for a, b in segs)
        assert all(s[1] == t[0] for s, t in pairwise(segs))
        assert len(segs) == min(parts, (end - start) // unit)


def test_read_threads_rules(monkeypatch):
    assert B.read_threads(3, 10) == 3
    assert B.read_threads(None, B.PARALLEL_MIN_BYTES - 1) == 1
    big = B.read_threads(None, B.PARALLEL_MIN_BYTES)
    assert 1 <= big <= B.MAX_READ_THREADS
    with pytest.raises(ValueError, match="threads"):
        B.read_threads(0, 10)
    monkeypatch.delattr(os, "preadv")  # no positioned reads: one thread
    assert B.read_threads(None, 1 << 40) == 1


def test_dat_parallel_equals_one_thread_across_time_wraps(tmp_path, parallel_calls):
    rng = np.random.default_rng(5)
    n = 3000
    t = np.sort(rng.integers(0, 3 * (1 << 32) + 12345, n))  # two or three 32-bit wraps
    t[n // 3] = (1 << 32) - 1  # a wrap right at a record boundary
    t = np.sort(t)
    ev = _events(rng, n, 640, 480, t)
    path = tmp_path / "w.dat"
    path.write_bytes(P.encode_dat(ev, 640, 480))
    one = P.read_dat(path, threads=1).events
    _same(one, ev)
    for threads in (2, 3, 7):
        _same(P.read_dat(path, threads=threads).events, one)
    assert parallel_calls == [8, 12, 28]


def test_dat_parallel_error_equals_one_thread(tmp_path, parallel_calls):
    rng = np.random.default_rng(6)
    ev = _events(rng, 400, 64, 48, np.arange(400))
    data = bytearray(P.encode_dat(ev, 64, 64))
    start = data.index(b"\x0c\x08") + 2
    data[start + 8 * 300 + 4 : start + 8 * 300 + 8] = (70 | (5 << 14)).to_bytes(4, "little")
    path = tmp_path / "bad.dat"
    path.write_bytes(bytes(data))
    msgs = []
    for threads in (1, 3):
        with pytest.raises(EventFileError) as err:
            P.read_dat(path, threads=threads)
        msgs.append((str(err.value), err.value.offset))
    assert msgs[0] == msgs[1] and msgs[0][1] == start + 8 * 300
    assert "event at (x=70, y=5) lies outside the 64x64 sensor" in msgs[0][0]
    assert parallel_calls == [12]


@pytest.mark.parametrize("span", [10**5, 20 * 10**6])  # no markers / markers throughout
def test_nmnist_parallel_equals_one_thread(tmp_path, parallel_calls, span):
    rng = np.random.default_rng(7)
    n = 2500
    ev = _events(rng, n, 34, 34, np.sort(rng.integers(0, span, n)))
    path = tmp_path / "m.bin"
    path.write_bytes(N.encode_nmnist(ev))
    markers = int((np.frombuffer(path.read_bytes(), np.uint8)[1::5] == KN.OVERFLOW_Y).sum())
    assert (markers > 100) == (span > 10**6)
    one = N.read_nmnist(path, threads=1)
    _same(one.events, ev)
    for threads in (2, 3, 5):
        rec = N.read_nmnist(path, threads=threads)
        _same(rec.events, one.events)
        assert rec.sensor_size == one.sensor_size == (34, 34, 2) and rec.meta == one.meta
    # one round without markers; with markers, a second round for the later segments
    rounds = len(parallel_calls)
    assert rounds == (3 if markers == 0 else 6)


def test_nmnist_parallel_infers_the_caltech_sensor_and_reports_like_one_thread(tmp_path):
    rng = np.random.default_rng(8)
    n = 1500
    ev = _events(rng, n, 34, 34, np.sort(rng.integers(0, 2 * 10**7, n)))
    ev["x"][1000], ev["y"][1200] = 150, 99  # beyond N-MNIST's 34x34, late in the file
    path = tmp_path / "c.bin"
    path.write_bytes(N.encode_nmnist(ev))
    one = N.read_nmnist(path, threads=1)
    par = N.read_nmnist(path, threads=4)
    _same(par.events, one.events)
    assert par.sensor_size == one.sensor_size == (151, 100, 2) and par.meta == one.meta
    msgs = set()
    for threads in (1, 4):
        with pytest.raises(EventFileError) as err:
            N.read_nmnist(path, (100, 100, 2), threads=threads)
        msgs.add((str(err.value), err.value.offset))
    assert len(msgs) == 1 and "event at (x=150," in msgs.pop()[0]


def test_nmnist_parallel_markers_only(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(bytes([0, KN.OVERFLOW_Y, 0, 0, 0]) * 40)
    for threads in (1, 3):
        rec = N.read_nmnist(path, threads=threads)
        assert len(rec.events) == 0 and rec.sensor_size == (34, 34, 2)


def test_auto_threads_take_the_parallel_path(tmp_path, monkeypatch, parallel_calls):
    monkeypatch.setattr(B, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    rng = np.random.default_rng(9)
    ev = _events(rng, 600, 34, 34, np.sort(rng.integers(0, 10**6, 600)))
    path = tmp_path / "a.bin"
    path.write_bytes(N.encode_nmnist(ev))
    _same(read_events(path).events, ev)
    dat = tmp_path / "a.dat"
    dat.write_bytes(P.encode_dat(ev, 34, 34))
    _same(read_events(dat).events, ev)
    assert parallel_calls == [12, 12]


@pytest.mark.parametrize("fmt", ["evt2", "evt3", "dat"])
def test_long_header_beyond_the_first_read(tmp_path, fmt):
    # a header longer than the first read (64 KiB) is read on; data after it decodes the same
    rng = np.random.default_rng(10)
    ev = _events(rng, 300, 64, 48, np.sort(rng.integers(0, 10**6, 300)))
    enc = {"evt2": P.encode_evt2, "evt3": P.encode_evt3, "dat": P.encode_dat}[fmt]
    data = enc(ev, 64, 48)
    filler = b"".join(b"%% note %06d %s\n" % (i, b"x" * 60) for i in range(1200))  # ~90 KiB
    assert len(filler) > P.HEAD_BYTES
    cut = data.index(b"% ", 1) if fmt == "dat" else 0  # keep DAT's first line first
    path = tmp_path / f"long.{fmt}"
    path.write_bytes(data[:cut] + filler + data[cut:])
    rec = read_events(path, format=fmt)
    _same(rec.events, ev)
    assert rec.meta["header"]["note"].startswith("000000")


def test_small_file_is_decoded_from_the_header_read(tmp_path, monkeypatch):
    # a file that fits the first read is never read again block by block
    rng = np.random.default_rng(11)
    ev = _events(rng, 50, 64, 48, np.arange(50))
    path = tmp_path / "s.raw"
    path.write_bytes(P.encode_evt2(ev, 64, 48))

    def no_blocks(*_args, **_kw):
        raise AssertionError("the data should come from the header read")

    monkeypatch.setattr(B, "iter_blocks", no_blocks)
    _same(read_events(path).events, ev)


def test_kernel_helpers_match_py_func():
    from eventssm.events import EVENT_DTYPE
    from eventssm.io.kernels import aedat as KA
    from eventssm.io.kernels.common import columns, locate_first_problem, new_state, store

    a, b = np.zeros(3, EVENT_DTYPE), np.zeros(3, EVENT_DTYPE)
    store(columns(a), 1, -5, 7, 1 << 40, 2)  # int16 x, bool p (non-zero is ON)
    store.py_func(columns.py_func(b), 1, -5, 7, 1 << 40, 2)
    assert a.tolist() == b.tolist() == [(0, 0, 0, False), (-5, 7, 1 << 40, True),
                                        (0, 0, 0, False)]
    for v in (0, 0x12345678, 0xFFFFFFFF, 0x80000001):
        swapped = int.from_bytes(v.to_bytes(4, "little"), "big")
        assert KA._swap32(v) == KA._swap32.py_func(v) == swapped
    assert new_state(1, -1).tolist() == [1, -1] and new_state(1, -1).dtype == np.int64
    # bisection finds the first N-MNIST record outside a 10x10 sensor
    raw = np.frombuffer(bytes([1, 1, 0, 0, 1] * 5 + [12, 3, 0, 0, 2] + [1, 1, 0, 0, 3] * 3),
                        np.uint8).copy()
    assert locate_first_problem(KN.decode_nmnist, raw, KN.nmnist_state(), KN.nmnist_bound,
                                10, 10, step=5) == (5, 1)
    assert locate_first_problem(KN.decode_nmnist, raw, KN.nmnist_state(), KN.nmnist_bound,
                                20, 20, step=5) == (-1, 0)


def test_block_reads_without_preadv(tmp_path, monkeypatch):
    # platforms without os.preadv read with seek + read, on one thread
    rng = np.random.default_rng(12)
    n = 40_000  # beyond the first 64 KiB read, so blocks are read too
    ev = _events(rng, n, 64, 48, np.sort(rng.integers(0, 10**7, n)))
    path = tmp_path / "p.raw"
    path.write_bytes(P.encode_evt2(ev, 64, 48))
    assert path.stat().st_size > 2 * B.HEAD_BYTES
    monkeypatch.setattr(B, "READ_BLOCK_BYTES", 1000)  # many blocks
    monkeypatch.delattr(os, "preadv")
    reads = []
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, k: reads.append(k) or real(fd, k))
    _same(read_events(path).events, ev)
    assert len(reads) > 50

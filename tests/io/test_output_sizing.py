"""Output sizing of whole-file block reads: ``decode_all`` decodes a block in pieces that fit
the output's room (``fit_units``) and grows only when nearly full; the results equal a decode
into a worst-case buffer, errors name the same byte, and the reused input buffer is never
shared by two reads at once."""

from __future__ import annotations

import numpy as np
import pytest

from eventssm.events import EventFileError, make_events
from eventssm.io import _blocks as B
from eventssm.io import prophesee as P
from eventssm.io.kernels import prophesee as K


def test_fit_units_is_the_largest_fitting_count():
    for bound in (lambda k: 12 * k, lambda k: k, lambda k: 3 * k + 7):
        for room in (0, 1, 11, 12, 13, 100, 5000):
            for units in (0, 1, 5, 400):
                got = B.fit_units(bound, room, units)
                want = max([k for k in range(units + 1) if bound(k) <= room], default=0)
                assert got == want, (room, units)


def _evt3_file(tmp_path, n=30_000, seed=0):
    rng = np.random.default_rng(seed)
    ev = make_events(rng.integers(0, 640, n), rng.integers(0, 480, n),
                     np.sort(rng.integers(0, 5 * 10**6, n)), rng.integers(0, 2, n) > 0)
    path = tmp_path / "x.raw"
    path.write_bytes(P.encode_evt3(ev, 640, 480))
    return path, ev


@pytest.mark.parametrize("capacity", [1, 5000, 60_000, None])
def test_decode_all_pieces_and_growth_equal_worst_case(tmp_path, capacity):
    path, ev = _evt3_file(tmp_path)
    plan = P._raw_setup(path, None, "evt3")
    ref, _ = B.decode_all(path, plan.lay, plan.start, plan.end, plan.sensor, plan.source)
    calls = []
    kernel = plan.lay.kernel

    def counted(words, out, state, *args):
        calls.append(len(words))
        assert len(out) >= plan.lay.bound(len(words))  # every piece fits its output
        return kernel(words, out, state, *args)

    lay = B.BlockLayout(**{**plan.lay.__dict__, "kernel": counted})
    got, _ = B.decode_all(path, lay, plan.start, plan.end, plan.sensor, plan.source,
                          capacity=capacity, head=plan.head)
    assert got.tobytes() == ref.tobytes() == ev.tobytes()
    assert sum(calls) == (plan.end - plan.start) // 2
    if capacity == 60_000:  # room for 5000 worst-case words: the first block in pieces
        assert calls[0] == 5000 and len(calls) > 3
    if capacity == 5000:  # room for fewer than FIT_MIN_UNITS words: grown first
        assert calls[0] == B.FIT_MIN_UNITS


def test_decode_all_error_in_a_piece_names_the_same_byte(tmp_path):
    path, _ = _evt3_file(tmp_path, seed=1)
    raw = bytearray(path.read_bytes())
    at = P._raw_setup(path, None, "evt3").start + 2 * 20_001
    raw[at : at + 2] = ((0x1 << 12) | 5).to_bytes(2, "little")  # a reserved word type
    path.write_bytes(bytes(raw))
    plan = P._raw_setup(path, None, "evt3")
    offsets = []
    for capacity in (None, 700):
        with pytest.raises(EventFileError) as err:
            B.decode_all(path, plan.lay, plan.start, plan.end, plan.sensor, plan.source,
                         capacity=capacity, head=plan.head)
        offsets.append(err.value.offset)
    assert offsets == [at, at]


def test_spare_buffer_is_not_shared_while_borrowed():
    with B.spare_buffer(1000) as a:
        with B.spare_buffer(1000) as b:
            assert not np.shares_memory(a, b)
        a[:] = 7
    with B.spare_buffer(500) as c:  # free again: the same memory is lent
        assert np.shares_memory(a, c) and len(c) == 500
    big = B.READ_BLOCK_BYTES + 1
    with B.spare_buffer(big) as d:
        assert len(d) == big and not np.shares_memory(a, d)


def test_evt3_sparse_vectors_kernel_matches_py_func():
    """Vector words with few set bits (the camera case the per-bit loop is for), at the
    right edge too: the kernel equals its .py_func and the bits by hand."""
    W = [(0x8 << 12) | 1, (0x0 << 12) | 7, (0x3 << 12) | (1 << 11) | 100,
         (0x4 << 12) | 0b100000000001, (0x5 << 12) | 0b10000000, (0x3 << 12) | 628,
         (0x4 << 12) | 0b100000000000]
    words = np.array(W, dtype="<u2")
    a = np.zeros(64, dtype=B.EVENT_DTYPE)
    b = a.copy()
    ra = K.decode_evt3(words, a, K.evt3_state(), 640, 480)
    rb = K.decode_evt3.py_func(words, b, K.evt3_state(), 640, 480)
    assert tuple(ra) == tuple(rb) and ra[1] == 0
    assert a[: ra[0]].tobytes() == b[: rb[0]].tobytes()
    assert a["x"][: ra[0]].tolist() == [100, 111, 119, 639]
    assert set(a["y"][: ra[0]].tolist()) == {7} and a["p"][:3].all() and not a["p"][3]
    assert K.decode_evt3(words, a, K.evt3_state(), 639, 480)[1] == K.FLAG_OUTSIDE


def test_head_block_uses_a_writable_head_in_place():
    data = bytes(range(64))
    copied = B._head_block(data, 8, 40, 4)
    shared = B._head_block(bytearray(data), 8, 40, 4)
    assert copied.tobytes() == shared.tobytes() == data[8:40]
    assert copied.flags.writeable and shared.flags.writeable
    head = bytearray(data)
    view = B._head_block(head, 8, 40, 4)
    head[8] = 255  # a view of the bytearray, not a copy
    assert view[0] == 255 and copied[0] == 8


def test_head_bytes_of_short_and_long_files(tmp_path):
    from eventssm.io._base import SNIFF_BYTES, head_bytes

    for size in (0, 1, SNIFF_BYTES - 1, SNIFF_BYTES, 3 * SNIFF_BYTES):
        path = tmp_path / f"f{size}"
        path.write_bytes(bytes(i % 251 for i in range(size)))
        assert head_bytes(path) == path.read_bytes()[:SNIFF_BYTES]

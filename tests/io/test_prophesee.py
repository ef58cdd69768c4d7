"""Prophesee EVT 2.0 / EVT 3.0 / DAT readers: real files against expelliarmus (C decoder) and
hand-decoded words, kernel vs .py_func, encoder round trips, streaming, bad input, fuzzing."""

from __future__ import annotations

import expelliarmus  # declared in the test extra: a missing install fails here
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, make_events, validate_events
from eventssm.io import detect_format, formats, iter_events, read_events
from eventssm.io import prophesee as P
from eventssm.io.kernels import prophesee as K
from tests.conftest import recording
from tests.io.mutations import mutate_small

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _data_words(path, dtype):
    """Words after the '% ' header (independent of the reader: plain byte search)."""
    raw = path.read_bytes()
    pos = 0
    while raw.startswith(b"% ", pos):
        pos = raw.index(b"\n", pos) + 1
    return np.frombuffer(raw[pos:], dtype=dtype), pos


def _wizard(encoding, path):
    return expelliarmus.Wizard(encoding=encoding).read(str(path))


def _same_xyp(ours, theirs):
    assert len(ours) == len(theirs)
    assert np.array_equal(ours["x"], theirs["x"].astype(np.int16))
    assert np.array_equal(ours["y"], theirs["y"].astype(np.int16))
    assert np.array_equal(ours["p"], theirs["p"].astype(bool))


def _events(rng, n, w, h, t):
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t,
                       rng.integers(0, 2, n).astype(bool))


# ---------------------------------------------------------------------------------------------
# Real recordings
# ---------------------------------------------------------------------------------------------


def test_evt2_sample_equals_expelliarmus_and_hand_decoding():
    path = recording("evt2_sample.raw")
    rec = read_events(path)
    assert detect_format(path).name == "evt2"
    assert rec.sensor_size == (640, 480, 2)
    assert rec.meta["format"] == "evt2" and rec.meta["camera"] == "hal_plugin_gen3_fx3"
    ev = rec.events
    assert len(ev) == 539_481
    assert 49_000 <= rec.duration_us <= 51_000
    theirs = _wizard("evt2", path)
    _same_xyp(ev, theirs)
    assert np.array_equal(ev["t"], theirs["t"])
    # first two words by hand: 0x80005070 = TIME_HIGH 0x5070 -> base 0x5070 << 6 = 1317888;
    # 0x10076879 = CD_ON, ts low (w >> 22) & 63 = 0, x = (w >> 11) & 0x7FF = 237, y = 0x079
    words, _ = _data_words(path, "<u4")
    assert words[0] == 0x80005070 and words[1] == 0x10076879
    assert ev[0].tolist() == (237, 121, 1317888, True)


def _expected_expelliarmus_excess(words):
    """expelliarmus adds 4096 µs per TIME_LOW smaller than the previous TIME_LOW: for each
    event, 4096 x (such decreases before the word that produced it). Pure numpy."""
    typ = (words >> 12).astype(np.int64)
    tl_idx = np.flatnonzero(typ == 0x6)
    tl = (words[tl_idx] & 0xFFF).astype(np.int64)
    dec = np.zeros(len(words), dtype=np.int64)
    dec[tl_idx[1:][np.diff(tl) < 0]] = 1
    dec_before = np.cumsum(dec)
    bits = np.unpackbits(words.astype(">u2").view(np.uint8).reshape(-1, 2), axis=1)
    bits = bits.astype(np.int64)
    counts = np.where(typ == 0x2, 1, 0)
    counts = np.where(typ == 0x4, bits[:, 4:].sum(1), counts)  # VECT_12: 12 valid bits
    counts = np.where(typ == 0x5, bits[:, 8:].sum(1), counts)  # VECT_8: 8 valid bits
    return 4096 * np.repeat(dec_before, counts)


def test_evt3_sample_openeb_semantics_and_expelliarmus_relation():
    path = recording("evt3_sample.raw")
    rec = read_events(path)
    assert detect_format(path).name == "evt3"
    assert rec.sensor_size == (1280, 720, 2)
    assert rec.meta["camera"] == "hal_plugin_gen41_evk3"
    ev = rec.events
    assert len(ev) == 219_596
    # OpenEB semantics: about 9 ms, monotonic; first words by hand: 0x8B2D TIME_HIGH 0xB2D,
    # 0x6000 TIME_LOW 0, 0x00C8 ADDR_Y 200, 0x236A ADDR_X x=0x36A=874 p=0
    assert 8_000 <= rec.duration_us <= 10_000
    assert (np.diff(ev["t"]) >= 0).all()
    words, _ = _data_words(path, "<u2")
    assert list(words[:4]) == [0x8B2D, 0x6000, 0x00C8, 0x236A]
    assert ev[0].tolist() == (874, 200, 0xB2D << 12, False)
    theirs = _wizard("evt3", path)
    _same_xyp(ev, theirs)  # x, y, p agree event for event
    excess = theirs["t"] - ev["t"]
    first_decrease = int(np.argmax(excess > 0))
    assert first_decrease > 0 and (excess[:first_decrease] == 0).all()  # agree until then
    assert np.array_equal(excess, _expected_expelliarmus_excess(words))  # exact relation
    assert excess[-1] == 11 * 4096  # 11 TIME_LOW decreases; expelliarmus spans 53.9 ms
    assert theirs["t"][-1] - theirs["t"][0] > 5 * rec.duration_us


def test_dat_sample_equals_expelliarmus():
    path = recording("sample_ncars.dat")
    assert detect_format(path).name == "dat"
    with pytest.raises(EventFileError, match="sensor-size"):
        read_events(path)
    rec = read_events(path, sensor_size=(120, 100, 2))
    ev = rec.events
    assert len(ev) == 2009 and ev["x"].max() <= 77 and ev["y"].max() <= 41
    assert rec.duration_us <= 100_000 and rec.meta["dat_version"] == 2
    assert rec.meta["dat_event_type"] == 0x00
    theirs = _wizard("dat", path)
    _same_xyp(ev, theirs)
    assert np.array_equal(ev["t"], theirs["t"])
    # first record by hand: t = 0, data 0x00020019: x = 0x19 = 25, y = 0x20019 >> 14 = 8, p 0
    raw = path.read_bytes()
    start = raw.index(b"\x00\x08", raw.rindex(b"% ")) + 2
    assert raw[start : start + 8] == bytes.fromhex("0000000019000200")
    assert ev[0].tolist() == (25, 8, 0, False)


def test_sniffers_are_mutually_exclusive():
    heads = {
        "evt2": recording("evt2_sample.raw").read_bytes()[:4096],
        "evt3": recording("evt3_sample.raw").read_bytes()[:4096],
        "dat": recording("sample_ncars.dat").read_bytes()[:4096],
        "nmnist": recording("sample_nmnist.bin").read_bytes()[:4096],
        "new_raw": b"% camera_integrator_name Prophesee\n% evt 3.0\n"
                   b"% format EVT3;height=720;width=1280\n% end\n\x00\x80",
        "new_dat": P.encode_dat(np.zeros(0, EVENT_DTYPE), 10, 10),
    }
    expect = {"evt2": "evt2", "evt3": "evt3", "dat": "dat", "nmnist": None,
              "new_raw": "evt3", "new_dat": "dat"}
    specs = formats()
    for name, head in heads.items():
        hits = [s.name for s in specs.values()
                if s.name in ("evt2", "evt3", "dat", "nmnist") and s.sniff and s.sniff(head)]
        assert hits == ([expect[name]] if expect[name] else []), name
    assert specs["nmnist"].sniff is None
    assert specs["evt2"].extensions == specs["evt3"].extensions == (".raw",)
    assert specs["dat"].extensions == (".dat",)


def test_raw_header_geometry_sources(tmp_path):
    ev = make_events([1], [2], [100], [True])
    body = P.encode_evt3(ev, 16, 8).split(b"% end\n", 1)[1]
    cases = {
        b"% format EVT3;height=8;width=16\n": ((16, 8, 2), "header format line"),
        b"% evt 3.0\n% geometry 16x8\n": ((16, 8, 2), "header geometry line"),
        b"% evt 3.0\n% width 16\n% height 8\n": ((16, 8, 2), "header width/height lines"),
        b"% evt 3.0\n% plugin_name hal_plugin_gen41_evk3\n": ((1280, 720, 2),
                                                             "camera plugin hal_plugin_gen41_evk3"),
    }
    for i, (head, (size, source)) in enumerate(cases.items()):
        p = tmp_path / f"g{i}.raw"
        p.write_bytes(head + body)
        rec = read_events(p)
        assert rec.sensor_size == size and rec.meta["sensor_size_source"] == source
        assert rec.events.tolist() == [(1, 2, 100, True)]
    # sensor_size overrides the header
    rec = read_events(tmp_path / "g0.raw", sensor_size=(20, 10, 2))
    assert rec.sensor_size == (20, 10, 2) and rec.meta["sensor_size_source"] == "argument"
    # no geometry at all: ask for it
    p = tmp_path / "nogeom.raw"
    p.write_bytes(b"% evt 3.0\n" + body)
    with pytest.raises(EventFileError, match=r"--sensor-size"):
        read_events(p)
    assert read_events(p, sensor_size=(4, 4, 2)).sensor_size == (4, 4, 2)


# ---------------------------------------------------------------------------------------------
# Kernels against their readable references (.py_func)
# ---------------------------------------------------------------------------------------------


def _run(kernel, words, state, bound, *args):
    out = np.zeros(bound(len(words)), dtype=EVENT_DTYPE)
    n, flags = kernel(words, out, state, *args)
    return out[:n].copy(), int(flags), state


@pytest.mark.parametrize("fmt", ["evt2", "evt3", "dat"])
def test_kernels_match_py_func_on_real_words(fmt):
    name = {"evt2": "evt2_sample.raw", "evt3": "evt3_sample.raw", "dat": "sample_ncars.dat"}[fmt]
    path = recording(name)
    if fmt == "dat":
        raw = path.read_bytes()
        start = raw.index(b"\x00\x08", raw.rindex(b"% ")) + 2
        words = np.frombuffer(raw[start:], "<u4")
        args = (K.decode_dat, words, K.dat_state, lambda n: n // 2, 120, 100, 2)
    elif fmt == "evt2":
        words = _data_words(path, "<u4")[0][:20000]
        args = (K.decode_evt2, words, K.evt2_state, K.evt2_bound, 640, 480)
    else:
        words = _data_words(path, "<u2")[0][:20000]
        args = (K.decode_evt3, words, K.evt3_state, K.evt3_bound, 1280, 720)
    kernel, words, new_state, bound, *rest = args
    fast = _run(kernel, words, new_state(), bound, *rest)
    slow = _run(kernel.py_func, words, new_state(), bound, *rest)
    assert len(fast[0]) > 1000
    assert np.array_equal(fast[0], slow[0]) and fast[1] == slow[1] == 0
    assert np.array_equal(fast[2], slow[2])
    # a too-small sensor raises the outside flag in both
    small = (10, 10, *rest[2:])
    assert _run(kernel, words, new_state(), bound, *small)[1] == K.FLAG_OUTSIDE
    assert _run(kernel.py_func, words, new_state(), bound, *small)[1] == K.FLAG_OUTSIDE


def _evt3_word(typ, payload):
    return (typ << 12) | payload


def test_evt3_vectors_time_rules_by_hand_and_py_func(tmp_path):
    W = _evt3_word
    words = np.array([
        W(0x2, 5),                 # before the first TIME_HIGH: skipped (OpenEB)
        W(0x8, 0x001),             # TIME_HIGH 1 -> t = 4096
        W(0x2, 7),                 # ADDR_X before any ADDR_Y: no address, skipped
        W(0x0, 3),                 # y = 3
        W(0x6, 0x010),             # TIME_LOW 16 -> t = 4112
        W(0x2, (1 << 11) | 9),     # event (9, 3, 4112, ON)
        W(0x4, 0x005),             # VECT_12 before any VECT_BASE_X: skipped
        W(0x3, 100),               # base x = 100, OFF
        W(0x4, 0b100000000011),    # events x = 100, 101, 111; base -> 112
        W(0x5, 0b10000001),        # VECT_8: x = 112, 119; base -> 120
        W(0x6, 0x008),             # TIME_LOW steps back: NOT an overflow -> t = 4104
        W(0x0, 4),
        W(0x2, 1),                 # event (1, 4, 4104, OFF)
        W(0x8, 0x002),             # new TIME_HIGH resets time low: t = 8192
        W(0x2, 2),                 # event (2, 4, 8192, OFF)
        W(0x8, 0xFFF),             # t = 0xFFF << 12
        W(0x6, 0x001),
        W(0x2, 3),                 # event (3, 4, 0xFFF001, OFF)
        W(0x8, 0x000),             # drop by >= 2048: 24-bit wrap -> loop 1
        W(0x2, 4),                 # event (4, 4, 1 << 24, OFF)
        W(0xA, 0x001), W(0xE, 0x014), W(0xF, 0x123), W(0x7, 0x1),  # trigger/others: skipped
        W(0x3, (1 << 11) | 8),     # base x = 8, ON
        W(0x5, 0b1),               # event (8, 4, 1 << 24, ON)
    ], dtype="<u2")
    expected = [(9, 3, 4112, True), (100, 3, 4112, False), (101, 3, 4112, False),
                (111, 3, 4112, False), (112, 3, 4112, False), (119, 3, 4112, False),
                (1, 4, 4104, False), (2, 4, 8192, False), (3, 4, 0xFFF001, False),
                (4, 4, 1 << 24, False), (8, 4, 1 << 24, True)]
    fast = _run(K.decode_evt3, words, K.evt3_state(), K.evt3_bound, 200, 10)
    slow = _run(K.decode_evt3.py_func, words, K.evt3_state(), K.evt3_bound, 200, 10)
    assert fast[0].tolist() == expected == slow[0].tolist()
    assert fast[1] == slow[1] == 0 and np.array_equal(fast[2], slow[2])
    # word by word (blocks of one word) gives the same events: the state carries everything
    state, got = K.evt3_state(), []
    for i in range(len(words)):
        got += _run(K.decode_evt3, words[i : i + 1], state, K.evt3_bound, 200, 10)[0].tolist()
    assert got == expected
    # the reader on a file holding these words, and expelliarmus on the vector part
    path = tmp_path / "hand.raw"
    path.write_bytes(b"% evt 3.0\n% geometry 200x10\n% end\n" + words.tobytes())
    assert read_events(path).events.tolist() == expected
    vec = words[1:10]  # no TIME_LOW decrease yet: expelliarmus must agree exactly
    path2 = tmp_path / "vec.raw"
    path2.write_bytes(b"% evt 3.0\n% geometry 200x10\n% end\n" + vec.tobytes())
    theirs = _wizard("evt3", path2)
    ours = read_events(path2).events
    # expelliarmus does not skip the ADDR_X that precedes every ADDR_Y or VECT_BASE_X
    keep = ~((theirs["x"] == 7) | (theirs["x"] == 0) | (theirs["x"] == 2))
    _same_xyp(ours, theirs[keep])
    assert np.array_equal(ours["t"], theirs["t"][keep])


def test_evt2_time_high_wrap_and_words_before_time_high():
    words = np.array([
        (1 << 28) | (3 << 11) | 4,                  # CD before any TIME_HIGH: skipped
        (0x8 << 28) | 0xFFFFFFF,                    # TIME_HIGH max
        (1 << 28) | (63 << 22) | (5 << 11) | 6,     # t = (2**28 - 1) * 64 + 63
        (0xA << 28) | 1, (0xE << 28), (0xF << 28),  # trigger / others / continued: skipped
        (0x8 << 28) | 0x0000002,                    # wraps: + 2**34
        (0 << 28) | (1 << 22) | (7 << 11) | 8,      # t = 2**34 + 129
        (0x8 << 28) | 0x0000001,                    # small step back: not a wrap
        (0 << 28) | (9 << 11) | 1,                  # t = 2**34 + 64
    ], dtype="<u4")
    expected = [(5, 6, ((1 << 28) - 1) * 64 + 63, True), (7, 8, (1 << 34) + 129, False),
                (9, 1, (1 << 34) + 64, False)]
    for kernel in (K.decode_evt2, K.decode_evt2.py_func):
        out, flags, _ = _run(kernel, words, K.evt2_state(), K.evt2_bound, 16, 16)
        assert out.tolist() == expected and flags == 0
    bad = np.array([(0x8 << 28) | 1, (0x3 << 28) | 5], dtype="<u4")
    for kernel in (K.decode_evt2, K.decode_evt2.py_func):
        assert _run(kernel, bad, K.evt2_state(), K.evt2_bound, 16, 16)[1] == K.FLAG_RESERVED


def test_dat_kernel_wrap_and_version1_layout():
    words = np.array([0xFFFFFF00, (1 << 28) | (2 << 14) | 3,   # v2: x 3, y 2, ON
                      0x00000010, (5 << 14) | 4,               # wrap: + 2**32
                      0x00000008, 1 | (1 << 29)], dtype="<u4")  # small drop kept; bit 29 ignored
    expected = [(3, 2, 0xFFFFFF00, True), (4, 5, (1 << 32) + 16, False),
                (1, 0, (1 << 32) + 8, False)]
    for kernel in (K.decode_dat, K.decode_dat.py_func):
        out, flags, _ = _run(kernel, words, K.dat_state(), lambda n: n // 2, 8, 8, 2)
        assert out.tolist() == expected and flags == 0
    v1 = np.array([7, 300 | (200 << 9) | (1 << 17)], dtype="<u4")
    for kernel in (K.decode_dat, K.decode_dat.py_func):
        out, _, _ = _run(kernel, v1, K.dat_state(), lambda n: n // 2, 512, 256, 1)
        assert out.tolist() == [(300, 200, 7, True)]


# ---------------------------------------------------------------------------------------------
# Encoders: round trips
# ---------------------------------------------------------------------------------------------


def _roundtrip(tmp_path, data: bytes, ext: str, sensor=None) -> Recording:
    path = tmp_path / f"rt{ext}"
    path.write_bytes(data)
    return read_events(path, sensor_size=sensor, allow_empty=True)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300),
       span=st.sampled_from([10, 5000, 10**6, 10**9, (1 << 34) - 1]),
       sort=st.booleans(), w=st.integers(1, 2048), h=st.integers(1, 2048))
def test_evt2_roundtrip(tmp_path, seed, n, span, sort, w, h):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, span, n)
    if sort or span > 10**9:
        t = np.sort(t)
    ev = _events(rng, n, w, h, t)
    rec = _roundtrip(tmp_path, P.encode_evt2(ev, w, h), ".raw")
    assert rec.sensor_size == (w, h, 2) and rec.meta["format"] == "evt2"
    assert np.array_equal(rec.events, ev)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300),
       span=st.sampled_from([3, 5000, 10**6, 3 * 10**7, 10**11]), w=st.integers(1, 2048),
       h=st.integers(1, 2048), offset=st.sampled_from([0, 1 << 24, 10**10]))
def test_evt3_roundtrip(tmp_path, seed, n, span, w, h, offset):
    rng = np.random.default_rng(seed)
    t = offset + np.sort(rng.integers(0, span, n))
    ev = _events(rng, n, w, h, t)
    rec = _roundtrip(tmp_path, P.encode_evt3(ev, w, h), ".raw")
    assert rec.meta["format"] == "evt3"
    assert np.array_equal(rec.events, ev)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), version=st.sampled_from([1, 2]),
       span=st.sampled_from([10, 10**6, 2**31 - 1]), sort=st.booleans(), long=st.booleans())
def test_dat_roundtrip(tmp_path, seed, n, version, span, sort, long):
    rng = np.random.default_rng(seed)
    w, h = P.DAT_LIMITS[version]
    w, h = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
    t = rng.integers(0, span, n)
    if long:  # sorted times past the 32-bit wrap, steps below 2**31 (unambiguous)
        t = np.cumsum(rng.integers(0, 2**31, n))
    elif sort:
        t = np.sort(t)
    ev = _events(rng, n, w, h, t)
    rec = _roundtrip(tmp_path, P.encode_dat(ev, w, h, version), ".dat")
    assert rec.meta["dat_version"] == version and rec.sensor_size == (w, h, 2)
    assert np.array_equal(rec.events, ev)


def test_encoders_reject_what_they_cannot_write():
    ev = make_events([1, 2], [1, 1], [10, 5], [True, False])
    with pytest.raises(ValueError, match="non-decreasing"):
        P.encode_evt3(ev, 4, 4)
    with pytest.raises(ValueError, match="outside"):
        P.encode_evt2(ev, 2, 2)
    with pytest.raises(ValueError, match="2\\*\\*34"):
        P.encode_evt2(make_events([0], [0], [1 << 34], [True]), 4, 4)
    with pytest.raises(ValueError, match="wrap"):
        P.encode_evt2(make_events([0, 0], [0, 0], [(1 << 34) - 1, 0], [True, True]), 4, 4)
    with pytest.raises(ValueError, match="not representable"):
        P.encode_dat(make_events([0, 0], [0, 0], [3 << 30, 1 << 20], [True, True]), 4, 4)
    with pytest.raises(ValueError, match="version"):
        P.encode_dat(ev, 4, 4, version=3)


def test_evt2_encoding_matches_expelliarmus(tmp_path):
    rng = np.random.default_rng(3)
    ev = _events(rng, 5000, 640, 480, np.sort(rng.integers(0, 10**7, 5000)))
    path = tmp_path / "enc.raw"
    path.write_bytes(P.encode_evt2(ev, 640, 480))
    theirs = _wizard("evt2", path)
    _same_xyp(ev, theirs)
    assert np.array_equal(ev["t"], theirs["t"])


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,sensor", [("evt2_sample.raw", None), ("evt3_sample.raw", None),
                                         ("sample_ncars.dat", (120, 100, 2))])
def test_iter_chunks_concatenate_to_read(name, sensor):
    path = recording(name)
    whole = read_events(path, sensor_size=sensor).events
    spec = detect_format(path)
    sizes = (1, 7, 4096) if len(whole) < 10_000 else (7, 4096)
    for chunk in sizes:
        chunks = list(spec.iter_chunks(path, chunk, sensor))
        assert all(len(c) == chunk for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk
        assert np.array_equal(np.concatenate([c.events for c in chunks]), whole)
    # tiny blocks: decoder state (time base, y, vector base) crosses every block boundary
    tiny = {"evt2": 4 * 3, "evt3": 2 * 5, "dat": 8}[spec.name]
    if spec.name != "dat":
        whole = whole[: 40_000]
    it = spec.iter_chunks(path, 1000, sensor, block_bytes=tiny)
    got = []
    for c in it:
        got.append(c.events)
        if sum(map(len, got)) >= len(whole):
            break
    assert np.array_equal(np.concatenate(got)[: len(whole)], whole)
    # and through the public API
    assert np.array_equal(
        np.concatenate([c.events for c in iter_events(path, chunk_events=1 << 20,
                                                      sensor_size=sensor)]),
        read_events(path, sensor_size=sensor).events)


@pytest.mark.parametrize("fmt", ["evt2", "evt3", "dat"])
def test_iter_chunks_small_synthetic_chunk_one(tmp_path, fmt):
    rng = np.random.default_rng(11)
    ev = _events(rng, 300, 50, 40, np.sort(rng.integers(0, 10**8, 300)))
    enc = {"evt2": P.encode_evt2, "evt3": P.encode_evt3, "dat": P.encode_dat}[fmt]
    path = tmp_path / ("s.dat" if fmt == "dat" else "s.raw")
    path.write_bytes(enc(ev, 50, 40))
    spec = formats()[fmt]
    for block in (spec.iter_chunks.__kwdefaults__["block_bytes"], 8, 24):
        chunks = list(spec.iter_chunks(path, 1, None, block_bytes=block))
        assert len(chunks) == 300
        assert np.array_equal(np.concatenate([c.events for c in chunks]), ev)
        assert chunks[0].meta["format"] == fmt and chunks[0].sensor_size == (50, 40, 2)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def _good_evt2(tmp_path):
    rng = np.random.default_rng(5)
    ev = _events(rng, 200, 64, 48, np.sort(rng.integers(0, 10**6, 200)))
    return ev, P.encode_evt2(ev, 64, 48)


def test_truncated_files_name_file_and_offset(tmp_path):
    ev, data = _good_evt2(tmp_path)
    p = tmp_path / "trunc.raw"
    p.write_bytes(data[:-1])
    with pytest.raises(EventFileError, match=r"truncated EVT 2\.0.*at byte") as e:
        read_events(p)
    assert str(p) in str(e.value) and e.value.offset == len(data) - 4
    with pytest.raises(EventFileError, match="truncated"):
        list(iter_events(p))
    p3 = tmp_path / "trunc3.raw"
    p3.write_bytes(P.encode_evt3(ev, 64, 48)[:-1])
    with pytest.raises(EventFileError, match=r"truncated EVT 3\.0"):
        read_events(p3)
    dat = P.encode_dat(ev, 64, 48)
    pd = tmp_path / "trunc.dat"
    pd.write_bytes(dat[:-3])
    with pytest.raises(EventFileError, match="truncated DAT") as e:
        read_events(pd)
    assert e.value.offset == len(dat) - 8
    head = dat[: dat.index(b"\x0c\x08")]
    pd.write_bytes(head + b"\x0c")
    with pytest.raises(EventFileError, match="type and size bytes are missing"):
        read_events(pd)


def test_wrong_magic_and_foreign_headers(tmp_path):
    _, data = _good_evt2(tmp_path)
    p = tmp_path / "x.dat"
    p.write_bytes(b"\x01\x02" * 40)
    with pytest.raises(EventFileError, match="no DAT header"):
        read_events(p)
    p = tmp_path / "raw_as_dat.dat"
    p.write_bytes(data)
    with pytest.raises(EventFileError, match="RAW file"):
        read_events(p, format="dat")
    p = tmp_path / "e2.raw"
    p.write_bytes(data)
    with pytest.raises(EventFileError, match=r"names the 'evt2' encoding, not EVT 3\.0"):
        read_events(p, format="evt3")
    p.write_bytes(data.replace(b"% evt 2.0", b"% evt 2.1"))
    with pytest.raises(EventFileError, match="two different encodings"):
        read_events(p, format="evt2")
    p.write_bytes(data.replace(b"% format EVT2", b"% format EVT21"))
    with pytest.raises(EventFileError, match="two different"):
        read_events(p, format="evt2")
    p.write_bytes(b"% format EVT21;height=4;width=4\n% end\n" + b"\0" * 16)
    with pytest.raises(EventFileError, match="'evt21' encoding"):
        read_events(p, format="evt2")


def test_garbage_after_header_reports_first_bad_word(tmp_path):
    _, data = _good_evt2(tmp_path)
    head, body = data.split(b"% end\n", 1)
    head += b"% end\n"
    words = np.frombuffer(body, "<u4").copy()
    words[57] = (0x3 << 28) | 77  # reserved EVT 2.0 type
    p = tmp_path / "g.raw"
    p.write_bytes(head + words.tobytes())
    with pytest.raises(EventFileError, match="reserved type 0x3") as e:
        read_events(p)
    assert e.value.offset == len(head) + 57 * 4
    rng = np.random.default_rng(1)
    p.write_bytes(head + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(EventFileError, match=r"at byte \d+"):
        read_events(p)
    p3 = tmp_path / "g3.raw"
    p3.write_bytes(b"% evt 3.0\n% geometry 64x48\n% end\n\x01\x80" + b"\x05\x90")  # 0x9 reserved
    with pytest.raises(EventFileError, match="reserved type 0x9") as e:
        read_events(p3)
    assert e.value.offset == len(b"% evt 3.0\n% geometry 64x48\n% end\n") + 2


def test_header_that_lies_about_geometry(tmp_path):
    ev, data = _good_evt2(tmp_path)
    lying = data.replace(b"height=48;width=64", b"height=48;width=20")
    p = tmp_path / "lie.raw"
    p.write_bytes(lying)
    head_len = lying.index(b"% end\n") + 6
    words = np.frombuffer(lying[head_len:], "<u4")
    cd = (words >> 28) <= 1
    first_bad_word = int(np.flatnonzero(cd & (((words >> 11) & 0x7FF) >= 20))[0])
    with pytest.raises(EventFileError, match="outside the 20x48 sensor") as e:
        read_events(p)
    assert e.value.offset == head_len + 4 * first_bad_word
    with pytest.raises(EventFileError, match="outside"):
        list(iter_events(p, chunk_events=10))
    for bad, msg in [(b"height=48;width=64", b"height=48;width=x4"),
                     (b"height=48;width=64", b"height=48;width=4096")]:
        p.write_bytes(data.replace(bad, msg))
        with pytest.raises(EventFileError, match="header format"):
            read_events(p)
    dat = P.encode_dat(ev, 64, 48).replace(b"% Width 64", b"% Width 30")
    pd = tmp_path / "lie.dat"
    pd.write_bytes(dat)
    with pytest.raises(EventFileError, match="outside the 30x48"):
        read_events(pd)
    e3 = P.encode_evt3(ev, 64, 48).replace(b"height=48", b"height=10")
    p3 = tmp_path / "lie3.raw"
    p3.write_bytes(e3)
    with pytest.raises(EventFileError, match="outside the 64x10"):
        read_events(p3)


def test_dat_header_problems(tmp_path):
    ev = make_events([1], [1], [5], [True])
    good = P.encode_dat(ev, 4, 4)
    cut = good.index(b"\x0c\x08")
    p = tmp_path / "d.dat"
    for data, msg in [
        (good[:cut] + b"\x0e\x08" + good[cut + 2 :], "external trigger"),
        (good[:cut] + b"\x07\x08" + good[cut + 2 :], "unsupported DAT event type 0x07"),
        (good[:cut] + b"\x0c\x10" + good[cut + 2 :], "event size is 16"),
        (good.replace(b"% Version 2", b"% Version 7"), "unsupported DAT version 7"),
        (good.replace(b"% Version 2", b"% Version two"), "not a whole number"),
        (good.replace(b"% Width 4", b"% Width 99999"), "outside 1..16384"),
    ]:
        p.write_bytes(data)
        with pytest.raises(EventFileError, match=msg):
            read_events(p)


def test_unterminated_long_header(tmp_path):
    p = tmp_path / "long.raw"
    p.write_bytes(b"% evt 2.0\n% junk " + b"a" * (P.HEADER_MAX_BYTES + 10))
    with pytest.raises(EventFileError, match="not terminated"):
        read_events(p)


# ---------------------------------------------------------------------------------------------
# Mutation fuzz of the real samples (readers called directly: only EventFileError may escape)
# ---------------------------------------------------------------------------------------------

_FUZZ = {"evt2": ("evt2_sample.raw", 8192, P.read_evt2, P.iter_evt2),
         "evt3": ("evt3_sample.raw", 8192, P.read_evt3, P.iter_evt3),
         "dat": ("sample_ncars.dat", 4096, P.read_dat, P.iter_dat)}


@pytest.mark.parametrize("fmt", sorted(_FUZZ))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert"]),
                              st.integers(0, 10**6), st.integers(1, 255)), min_size=1,
                    max_size=4))
def test_mutated_samples_give_recording_or_event_file_error(tmp_path, fmt, ops):
    name, keep, read, iterate = _FUZZ[fmt]
    buf = mutate_small(recording(name).read_bytes()[:keep], ops)
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(bytes(buf))
    sensor = (120, 100, 2) if fmt == "dat" else None
    try:
        rec = read(path, sensor)
    except EventFileError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert rec.events.dtype == EVENT_DTYPE
        validate_events(rec.events, rec.sensor_size, allow_empty=True)
        chunks = list(iterate(path, 333, sensor))
        joined = np.concatenate([c.events for c in chunks]) if chunks else rec.events[:0]
        assert np.array_equal(joined, rec.events)


def test_header_only_files_are_empty_recordings(tmp_path):
    empty = np.zeros(0, dtype=EVENT_DTYPE)
    for name, data in [("h.raw", P.encode_evt2(empty, 8, 8)), ("h3.raw", P.encode_evt3(empty, 8, 8)),
                       ("h.dat", P.encode_dat(empty, 8, 8))]:
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(EventFileError, match="no events"):
            read_events(p)
        rec = read_events(p, allow_empty=True)
        assert len(rec) == 0 and rec.sensor_size == (8, 8, 2)
        assert list(iter_events(p)) == []

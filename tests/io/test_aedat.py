"""AEDAT 2.0 / 3.1 / 4.0 readers.

Real recordings (skipped when ../shared is absent) are checked against published facts, against
records decoded here by hand with ``struct`` and the jAER bit formulas written out again, and
(AEDAT 4.0) against the independent ``aedat`` Rust decoder.

No real AEDAT 3.1 file could be found, so the AEDAT 3.1 tests build their bytes by hand in this
file with ``struct.pack`` from the libcaer format description (28-byte packet headers,
``caer_polarity_event``), and also use ``encode_aedat3`` for larger files.
"""

from __future__ import annotations

import struct
from pathlib import Path

import aedat  # declared in the test extra: a missing install fails here
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, make_events
from eventssm.io import concat, detect_format, iter_events, read_events
from eventssm.io.aedat import (
    camera_info,
    encode_aedat2,
    encode_aedat3,
    encode_aedat4,
)
from eventssm.io.kernels import aedat as K
from eventssm.io.kernels.common import FLAG_OUTSIDE
from tests.conftest import recording
from tests.io.mutations import mutate

# --------------------------------------------------------------------------------------------
# helpers


def _events(n, w, h, t_lo=0, t_hi=10**7, seed=0, sort=True):
    rng = np.random.default_rng(seed)
    t = rng.integers(t_lo, t_hi, n)
    if sort:
        t = np.sort(t)
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t,
                       rng.integers(0, 2, n).astype(bool))


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _chunks_equal_read(path, chunk, **kw):
    whole = read_events(path, allow_empty=True, **kw)
    chunks = list(iter_events(path, chunk_events=chunk, **kw))
    assert all(0 < len(c) <= chunk for c in chunks)
    assert all(c.sensor_size == whole.sensor_size for c in chunks)
    assert np.array_equal(concat(chunks), whole.events)
    return whole


def _aedat2_reference(path: Path, davis: bool, w: int, h: int) -> np.ndarray:
    """Independent numpy decoder of a whole AEDAT 2.0 file (jAER formulas, written again)."""
    data = path.read_bytes()
    pos = 0
    while data[pos : pos + 1] == b"#":
        pos = data.index(b"\n", pos) + 1
    rec = np.frombuffer(data[pos:], dtype=">u4").reshape(-1, 2).astype(np.int64)
    addr, ts = rec[:, 0], rec[:, 1]
    if davis:
        keep = ((addr >> 31) & 1 == 0) & ((addr >> 10) & 1 == 0)
        a = addr[keep]
        return make_events(w - 1 - ((a >> 12) & 1023), h - 1 - ((a >> 22) & 511), ts[keep],
                           (a >> 11) & 1 == 1)
    keep = (addr & 0x80008000) == 0
    a = addr[keep]
    # jAER counts y upwards from the bottom row; image rows count down from the top
    return make_events(127 - ((a >> 1) & 127), 127 - ((a >> 8) & 127), ts[keep], a & 1 == 0)


# --------------------------------------------------------------------------------------------
# real AEDAT 2.0 recordings


@pytest.mark.parametrize("name,count,seconds", [
    ("neal_walking.aedat", 70_304, 9.2),
    ("alex_walking_again.aedat", 19_182, 6.9),
])
def test_dvs128_recordings(name, count, seconds):
    path = recording(name)
    rec = read_events(path)
    assert detect_format(path).name == "aedat2"
    assert len(rec) == count
    assert abs(rec.duration_us / 1e6 - seconds) < 0.05
    assert rec.sensor_size == (128, 128, 2)
    assert rec.meta["camera"] == "DVS128" and rec.meta["skipped_words"] == 0
    assert np.array_equal(rec.events, _aedat2_reference(path, False, 128, 128))


def test_dvs128_first_records_by_hand():
    path = recording("neal_walking.aedat")
    data = path.read_bytes()
    start = data.index(b"#End of Preferences for this AEChip\r\n") + 37
    rec = read_events(path)
    for i in range(12):
        addr, ts = struct.unpack(">II", data[start + 8 * i : start + 8 * i + 8])
        # jAER DVS128: bit 0 polarity (raw 0 = ON), x = 127 - bits 1..7, bits 8..14 = rows
        # counted from the bottom, so the image row (from the top) is 127 - bits 8..14
        x, y, on = 127 - ((addr >> 1) & 0x7F), 127 - ((addr >> 8) & 0x7F), (addr & 1) == 0
        assert (int(rec.events["x"][i]), int(rec.events["y"][i])) == (x, y)
        assert int(rec.events["t"][i]) == ts and bool(rec.events["p"][i]) == on
    # the file starts with (x=106, raw y=37 -> row 90, ON) at t=135707767 µs (decoded above)
    assert rec.events[0].tolist() == (106, 90, 135_707_767, True)


def test_davis240_recording_skips_aps_imu():
    path = recording("IMU_translBoxes.aedat")
    rec = read_events(path)
    assert len(rec) == 162_771
    assert rec.meta["skipped_words"] == 33_837 and rec.meta["aps_imu_words"] == 33_837
    assert rec.sensor_size == (240, 180, 2) and rec.meta["camera"] == "DAVIS240C"
    assert abs(rec.duration_us / 1e6 - 2.07) < 0.01
    assert np.array_equal(rec.events, _aedat2_reference(path, True, 240, 180))
    # first polarity words decoded by hand with struct
    data = path.read_bytes()
    start = rec.meta["header_bytes"]
    k = 0
    for i in range(200):
        addr, ts = struct.unpack_from(">II", data, start + 8 * i)
        if addr & 0x80000000 or addr & 0x400:
            continue
        expect = (239 - ((addr >> 12) & 0x3FF), 179 - ((addr >> 22) & 0x1FF), ts,
                  bool(addr & 0x800))
        assert rec.events[k].tolist() == expect
        k += 1
    assert k > 0


def test_header_only_file():
    path = recording("sample_aedat_header.aedat")
    with pytest.raises(EventFileError, match="no events") as err:
        read_events(path)
    assert path.name in str(err.value)
    rec = read_events(path, allow_empty=True)
    assert len(rec) == 0 and rec.sensor_size == (346, 260, 2)
    assert rec.meta["camera"] == "Davis346red"


@pytest.mark.parametrize("name", ["neal_walking.aedat", "IMU_translBoxes.aedat",
                                  "sample.aedat4"])
def test_real_iter_chunks_equal_read(name):
    _chunks_equal_read(recording(name), 10_007)


# --------------------------------------------------------------------------------------------
# real AEDAT 4.0 recording vs the `aedat` package


def test_aedat4_sample_equals_aedat_package():
    path = recording("sample.aedat4")
    rec = read_events(path)
    assert detect_format(path).name == "aedat4"
    assert len(rec) == 111_954 and rec.sensor_size == (320, 240, 2)
    assert abs(rec.duration_us / 1e6 - 0.59) < 0.01
    assert rec.meta["compression"] == "lz4" and rec.meta["skipped_packets"] > 0
    ref = np.concatenate([p["events"] for p in aedat.Decoder(str(path)) if "events" in p])
    for mine, theirs in (("x", "x"), ("y", "y"), ("t", "t"), ("p", "on")):
        assert np.array_equal(rec.events[mine].astype(np.int64), ref[theirs].astype(np.int64))


# --------------------------------------------------------------------------------------------
# AEDAT 2.0 synthetic


@pytest.mark.parametrize("camera,size", [("DVS128", (128, 128)), ("DAVIS240C", (240, 180)),
                                         ("Davis346red", (346, 260)), ("DAVIS640", (640, 480))])
def test_aedat2_roundtrip(tmp_path, camera, size):
    ev = _events(3000, *size, t_hi=2**32)
    p = _write(tmp_path, "a.aedat", encode_aedat2(ev, camera))
    rec = _chunks_equal_read(p, 701)
    assert np.array_equal(rec.events, ev) and rec.sensor_size == (*size, 2)


def test_aedat2_skips_aps_imu_external_and_dvs128_special(tmp_path):
    ev = _events(500, 240, 180)
    extra = [(0x80000000 | 123, 10), (0x80000C00, 5_000_000), (0x400 | 3, 7_000_000),
             (0x400, 10**8)]
    rec = read_events(_write(tmp_path, "d.aedat", encode_aedat2(ev, "DAVIS240C",
                                                                extra_words=extra)))
    assert np.array_equal(rec.events, ev)
    assert (rec.meta["aps_imu_words"], rec.meta["special_words"]) == (2, 2)
    ev = _events(500, 128, 128)
    rec = read_events(_write(tmp_path, "s.aedat", encode_aedat2(
        ev, "DVS128", extra_words=[(0x8000, 1), (0x80000000, 2_000_000)])))
    assert np.array_equal(rec.events, ev) and rec.meta["special_words"] == 2


def test_aedat2_data_starting_with_hash_byte(tmp_path):
    # DAVIS240 y = 39 puts 0x23 ('#') in the first address byte; the header must still end
    ev = make_events([5, 6], [39, 40], [1, 2], [True, False])
    data = encode_aedat2(ev, "DAVIS240C")
    assert data[data.index(b"DAVIS240C\r\n") + 11] == ord("#")
    assert np.array_equal(read_events(_write(tmp_path, "h.aedat", data)).events, ev)


def test_aedat2_camera_and_sensor_size(tmp_path):
    ev = _events(100, 128, 128)
    data = encode_aedat2(ev, "DVS128").replace(b"ch.unizh.ini.jaer.chip.retina.DVS128",
                                               b"org.example.UnknownChip")
    p = _write(tmp_path, "u.aedat", data)
    with pytest.raises(EventFileError, match="sensor-size") as err:
        read_events(p)
    assert "UnknownChip" in str(err.value)
    rec = read_events(p, sensor_size=(128, 128, 2))  # 128x128 selects the DVS128 layout
    assert np.array_equal(rec.events, ev)
    # a smaller override than the data needs is caught with the record's offset
    with pytest.raises(EventFileError, match="outside the 64x64 sensor"):
        read_events(_write(tmp_path, "k.aedat", encode_aedat2(ev, "DVS128")),
                    sensor_size=(64, 64, 2))


def test_aedat2_header_variants(tmp_path):
    # camera from "# HardwareInterface:" when there is no AEChip line; LF line ends
    ev = _events(20, 128, 128)
    body = encode_aedat2(ev, "DVS128")
    records = body[len(body) - 8 * 20 :]
    data = b"#!AER-DAT2.0\n# HardwareInterface: DVS128-V1 0298\n" + records
    rec = read_events(_write(tmp_path, "hw.aedat", data))
    assert np.array_equal(rec.events, ev) and rec.meta["camera"] == "DVS128-V1 0298"
    # header only, last line without a newline
    p = _write(tmp_path, "e.aedat", b"#!AER-DAT2.0\r\n# AEChip: x.y.DAVIS240C")
    rec = read_events(p, allow_empty=True)
    assert len(rec) == 0 and rec.sensor_size == (240, 180, 2)
    assert list(iter_events(p)) == []


def test_camera_table():
    assert camera_info("ch.unizh.ini.jaer.chip.retina.DVS128")[1:] == ("dvs128", 128, 128)
    assert camera_info("DVS128-V1 0298")[1:] == ("dvs128", 128, 128)
    for name in ("DAVIS240A", "DAVIS240B", "eu.seebetter.ini.chips.davis.DAVIS240C"):
        assert camera_info(name)[1:] == ("davis", 240, 180)
    for name in ("Davis346red", "DAVIS346B", "Davis346blue", "davis346"):
        assert camera_info(name)[1:] == ("davis", 346, 260)
    assert camera_info("DAVIS640")[1:] == ("davis", 640, 480)
    assert camera_info("eventssm-64x48")[2:] == (64, 48)
    assert camera_info("DAVIS FX2 84010032") is None and camera_info(None) is None


# --------------------------------------------------------------------------------------------
# AEDAT 3.1 (hand-built bytes)


def _pkt(etype, size, number, overflow, payload, valid=None, source=1, tsoff=4):
    """A libcaer packet: 28-byte little-endian header + payload."""
    return struct.pack("<hhiiiiii", etype, source, size, tsoff, overflow, number, number,
                       number if valid is None else valid) + payload


def _pol(x, y, on, ts, valid=True):
    """A caer_polarity_event: u32 (x<<17 | y<<2 | on<<1 | valid), i32 timestamp."""
    return struct.pack("<Ii", (x << 17) | (y << 2) | (int(on) << 1) | int(valid), ts)


AEDAT3_HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
                 b"#Start-Time: 2017-04-29 15:34:48 (TZ+0200)\r\n#!END-HEADER\r\n")


def _hand_aedat3() -> tuple[bytes, list[tuple]]:
    p1 = _pkt(1, 8, 3, 0, _pol(1, 2, True, 100) + _pol(127, 127, False, 0, valid=False)
              + _pol(3, 4, False, 2**31 - 1), valid=2)
    special = _pkt(0, 8, 1, 0, struct.pack("<Ii", 1 | (5 << 1), 150))
    imu6 = _pkt(3, 36, 2, 0, bytes(72))
    p2 = _pkt(1, 8, 2, 2, _pol(0, 127, True, 5) + _pol(127, 0, True, 6))
    frame_like = _pkt(2, 100, 1, 2, bytes(100))
    data = AEDAT3_HEADER + p1 + special + imu6 + p2 + frame_like
    expect = [(1, 2, 100, True), (3, 4, 2**31 - 1, False),
              (0, 127, (2 << 31) | 5, True), (127, 0, (2 << 31) | 6, True)]
    return data, expect


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([b"#", b"a", b"\r", b"\n", b"\r\n", b"\x01", b"\t", b"\x1f",
                                 b"\x7f", b"\xff", b"#x\r\n", b"#!AER-DAT2.0\r\n"]),
                max_size=40))
def test_header2_line_scan_equals_the_regex(parts):
    from eventssm.io.aedat import _HEADER2, _header2_lines

    buf = b"".join(parts)
    assert _header2_lines(buf) == _HEADER2.match(buf).end()


def test_aedat3_hand_built(tmp_path):
    data, expect = _hand_aedat3()
    p = _write(tmp_path, "g.aedat", data)
    assert detect_format(p).name == "aedat3"
    rec = read_events(p)
    assert rec.events.tolist() == expect
    assert rec.sensor_size == (128, 128, 2) and rec.meta["camera"] == "DVS128"
    assert rec.meta["invalid_events"] == 1 and rec.meta["skipped_packets"] == 3
    for chunk in (1, 2, 3, 100):
        _chunks_equal_read(p, chunk)


def test_aedat3_packets_off_word_boundaries(tmp_path):
    # a packet of odd-sized events puts the next polarity events off 4-byte boundaries: the
    # reader gathers them first; results and error offsets stay those of the bytes
    odd = _pkt(7, 3, 1, 0, b"\x01\x02\x03")
    p1 = _pkt(1, 8, 2, 0, _pol(1, 2, True, 100) + _pol(5, 6, False, 101))
    p2 = _pkt(1, 8, 1, 1, _pol(7, 8, True, 102))
    data = AEDAT3_HEADER + odd + p1 + odd + p2
    p = _write(tmp_path, "odd.aedat", data)
    rec = read_events(p)
    assert rec.events.tolist() == [(1, 2, 100, True), (5, 6, 101, False),
                                   (7, 8, (1 << 31) | 102, True)]
    _chunks_equal_read(p, 2)
    bad = AEDAT3_HEADER + odd + p1 + odd + _pkt(1, 8, 1, 1, _pol(7, 200, True, 102))
    at = len(AEDAT3_HEADER + odd + p1 + odd) + 28
    _raises_at(_write(tmp_path, "bad.aedat", bad), at,
               r"AEDAT 3.1 polarity event \(x=7, y=200\) lies outside the 128x128 sensor")


def test_aedat3_encoder_roundtrip(tmp_path):
    ev = _events(6000, 128, 128, t_lo=2**31 - 10**6, t_hi=2**33, seed=3)
    data = encode_aedat3(ev, packet_events=500, other_packets=True, invalid_every=9)
    p = _write(tmp_path, "e.aedat", data)
    rec = _chunks_equal_read(p, 1234)
    assert np.array_equal(rec.events, ev)
    # one invalid event after every 9th event of each packet (packets: runs of equal t >> 31,
    # cut every 500 events)
    runs = np.split(np.arange(len(ev)), np.flatnonzero(np.diff(ev["t"] >> 31)) + 1)
    invalid = sum(len(r[i : i + 500]) // 9 for r in runs for i in range(0, len(r), 500))
    assert rec.meta["invalid_events"] == invalid > 0
    assert rec.meta["skipped_packets"] > 0 and rec.events["t"].max() > 2**32
    # a sensor that is not a known camera travels as "eventssm-WxH"
    ev = _events(500, 64, 48, sort=False)
    rec = read_events(_write(tmp_path, "s.aedat", encode_aedat3(ev, (64, 48, 2))))
    assert np.array_equal(rec.events, ev) and rec.sensor_size == (64, 48, 2)


def test_aedat3_unknown_source_needs_sensor_size(tmp_path):
    data, expect = _hand_aedat3()
    p = _write(tmp_path, "n.aedat", data.replace(b"Source 1: DVS128", b"Source 1: Mystery"))
    with pytest.raises(EventFileError, match="sensor-size"):
        read_events(p)
    assert read_events(p, sensor_size=(128, 128, 2)).events.tolist() == expect


# --------------------------------------------------------------------------------------------
# AEDAT 4.0 synthetic (checked by the `aedat` package too)


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_aedat4_encoder_roundtrip(tmp_path, compression):
    ev = _events(5000, 346, 260, t_lo=1_600_000_000_000_000, t_hi=1_600_000_010_000_000)
    p = _write(tmp_path, "f.aedat4", encode_aedat4(ev, (346, 260, 2), compression=compression,
                                                   packet_events=777))
    rec = _chunks_equal_read(p, 1000)
    assert np.array_equal(rec.events, ev) and rec.sensor_size == (346, 260, 2)
    assert rec.meta["compression"] == compression and rec.meta["camera"] == "eventssm"
    ref = np.concatenate([q["events"] for q in aedat.Decoder(str(p)) if "events" in q])
    assert np.array_equal(ref["t"].astype(np.int64), ev["t"])
    assert np.array_equal(ref["x"].astype(np.int64), ev["x"])
    assert np.array_equal(ref["on"], ev["p"])


def test_aedat4_zstd_without_content_size(tmp_path):
    ev = _events(3000, 320, 240)
    data = bytearray(encode_aedat4(ev, (320, 240, 2), compression="none", packet_events=1000))
    hlen = struct.unpack_from("<i", data, 14)[0]
    assert struct.unpack_from("<i", data, 18 + 24)[0] == 0  # IOHeader compression field
    struct.pack_into("<i", data, 18 + 24, 3)
    out, pos = [bytes(data[: 18 + hlen])], 18 + hlen
    cctx = zstandard.ZstdCompressor(write_content_size=False)
    while pos < len(data):
        sid, size = struct.unpack_from("<ii", data, pos)
        body = cctx.compress(bytes(data[pos + 8 : pos + 8 + size]))
        assert zstandard.frame_content_size(body) == -1
        out.append(struct.pack("<ii", sid, len(body)) + body)
        pos += 8 + size
    rec = read_events(_write(tmp_path, "z.aedat4", b"".join(out)))
    assert np.array_equal(rec.events, ev) and rec.meta["compression"] == "zstd"


# --------------------------------------------------------------------------------------------
# bad input: one EventFileError naming the file and a byte offset


def _raises_at(path, offset, match=None, **kw):
    with pytest.raises(EventFileError, match=match) as err:
        read_events(path, **kw)
    msg = str(err.value)
    assert path.name in msg and "\n" not in msg
    assert err.value.offset == offset and f"(at byte {offset})" in msg
    return err.value


def test_aedat2_bad_input(tmp_path):
    ev = _events(50, 240, 180)
    data = encode_aedat2(ev, "DAVIS240C")
    head = len(data) - 8 * 50
    _raises_at(_write(tmp_path, "t.aedat", data[:-3]), head + 8 * 49, "partial record")
    # raw x = 300 does not exist on a 240-wide DAVIS: record 7 is reported with its offset
    bad = bytearray(data)
    struct.pack_into(">I", bad, head + 8 * 7, (10 << 22) | (300 << 12))
    _raises_at(_write(tmp_path, "x.aedat", bytes(bad)), head + 8 * 7, "outside the 240x180")
    # garbage after the header: random big words decode outside the DAVIS240 array
    junk = np.random.default_rng(1).integers(0, 2**31, 64, dtype=np.uint32).astype(">u4")
    p = _write(tmp_path, "j.aedat", data[:head] + junk.tobytes())
    with pytest.raises(EventFileError, match="outside"):
        read_events(p)
    with pytest.raises(EventFileError, match=r"not an AEDAT 2\.0 file"):
        read_events(_write(tmp_path, "w.aedat", b"#!AER-DAT2.5\r\n" + data[14:]),
                    format="aedat2")


def test_aedat3_bad_input(tmp_path):
    data, _ = _hand_aedat3()
    h = len(AEDAT3_HEADER)
    # header promising 2**31-1 events: refused at once, no allocation of that size
    huge = bytearray(data)
    struct.pack_into("<i", huge, h + 20, 2**31 - 1)
    err = _raises_at(_write(tmp_path, "h.aedat", bytes(huge)), h, "promises 2147483647 events")
    assert "bytes follow" in str(err)
    _raises_at(_write(tmp_path, "t.aedat", data[: h + 10]), h, "truncated AEDAT 3.1 packet")
    _raises_at(_write(tmp_path, "c.aedat", data[: h + 28 + 5]), h, "promises")
    _raises_at(_write(tmp_path, "e.aedat", AEDAT3_HEADER.replace(b"#!END-HEADER\r\n", b"")
                      + b"\x01\x00garbage"), h - 14, "END-HEADER")
    garbage = np.random.default_rng(5).integers(0, 256, 300, dtype=np.uint8).tobytes()
    with pytest.raises(EventFileError):
        read_events(_write(tmp_path, "g.aedat", AEDAT3_HEADER + garbage))
    # coordinates outside the DVS128 array
    ev = make_events([1, 200], [1, 2], [1, 2], [True, True])
    enc = encode_aedat3(ev, (256, 256, 2), camera="DVS128")
    first_event = len(enc) - 16
    _raises_at(_write(tmp_path, "o.aedat", enc), first_event + 8, "outside the 128x128")


def test_aedat4_bad_input(tmp_path):
    ev = _events(2000, 320, 240)
    data = encode_aedat4(ev, (320, 240, 2), packet_events=500)
    start = 18 + struct.unpack_from("<i", data, 14)[0]
    # first packet claims more bytes than the file has
    lying = bytearray(data)
    struct.pack_into("<i", lying, start + 4, 10**9)
    _raises_at(_write(tmp_path, "s.aedat4", bytes(lying)), start, "runs past the end")
    _raises_at(_write(tmp_path, "t.aedat4", data[: start + 4]), start, "truncated AEDAT 4.0")
    _raises_at(_write(tmp_path, "h.aedat4", data[:30]), 14, "IOHeader length")
    garbage = np.random.default_rng(2).integers(0, 256, 400, dtype=np.uint8).tobytes()
    with pytest.raises(EventFileError):
        read_events(_write(tmp_path, "g.aedat4", data[:start] + garbage))
    # events outside a smaller sensor: the packet's offset is named
    p = _write(tmp_path, "o.aedat4", data)
    _raises_at(p, start, "outside the 100x100", sensor_size=(100, 100, 2))
    # an undeclared stream id
    bad_id = bytearray(data)
    struct.pack_into("<i", bad_id, start, 9)
    _raises_at(_write(tmp_path, "i.aedat4", bytes(bad_id)), start, "undeclared stream 9")


def test_iter_chunks_bad_input_raises(tmp_path):
    data, _ = _hand_aedat3()
    p = _write(tmp_path, "t.aedat", data[:-7])
    with pytest.raises(EventFileError):
        list(iter_events(p, chunk_events=2))


# --------------------------------------------------------------------------------------------
# fuzz: damaged bytes give a valid Recording or one EventFileError, never anything else


def _fuzz_samples() -> dict[str, tuple[bytes, str]]:
    return {
        "aedat2": (encode_aedat2(_events(60, 240, 180, seed=1), "DAVIS240C",
                                 extra_words=[(0x80000000, 10**6)]), ".aedat"),
        "aedat3": (_hand_aedat3()[0] + encode_aedat3(
            _events(40, 128, 128, seed=2), packet_events=16, other_packets=True,
            invalid_every=5)[len(AEDAT3_HEADER):], ".aedat"),
        "aedat4": (encode_aedat4(_events(80, 64, 48, seed=3), (64, 48, 2),
                                 packet_events=30), ".aedat4"),
    }


SAMPLES = _fuzz_samples()

_op = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=40)),
)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, min_size=1, max_size=4))
def test_fuzz_mutations(tmp_path, name, ops):
    data, ext = SAMPLES[name]
    p = tmp_path / f"f{ext}"
    p.write_bytes(mutate(data, ops))
    for fmt in (name, None):
        try:
            rec = read_events(p, format=fmt, allow_empty=True)
        except EventFileError as exc:
            assert "\n" not in str(exc)
        else:
            assert isinstance(rec, Recording) and rec.events.dtype == EVENT_DTYPE
            assert np.array_equal(concat(list(iter_events(p, chunk_events=17, format=fmt))),
                                  rec.events)


# --------------------------------------------------------------------------------------------
# kernels vs their .py_func references


def _compare(kernel, buf, out, *rest):
    """Run ``kernel(buf, out, *rest)`` and its ``.py_func`` on copies; outputs must agree."""
    a, b = out.copy(), out.copy()
    ra = kernel(buf, a, *rest)
    rb = kernel.py_func(buf, b, *rest)
    assert tuple(ra) == tuple(rb)
    assert np.array_equal(a[: ra[0]], b[: ra[0]])
    return ra


def _compare_block(kernel, buf, out, *rest):
    """Block kernel ``kernel(buf, out, state, *rest)`` vs its ``.py_func``: events, flags and
    counters must agree; returns ``(n, flags, state)``."""
    a, b = out.copy(), out.copy()
    sa, sb = K.aedat2_state(), K.aedat2_state()
    ra = kernel(buf, a, sa, *rest)
    rb = kernel.py_func(buf, b, sb, *rest)
    assert tuple(ra) == tuple(rb) and np.array_equal(sa, sb)
    assert np.array_equal(a[: ra[0]], b[: ra[0]])
    return int(ra[0]), int(ra[1]), sa


def test_kernel_aedat2_dvs128_matches_py_func():
    rng = np.random.default_rng(11)
    words = np.empty((400, 2), dtype=">u4")
    words[:, 0] = rng.integers(0, 2**16, 400) | (rng.integers(0, 2, 400) << 31)
    words[:, 1] = rng.integers(0, 2**32, 400, dtype=np.uint64)
    buf = np.frombuffer(words.tobytes(), dtype="<u4")  # big-endian bytes read as native words
    out = np.zeros(400, dtype=EVENT_DTYPE)
    n, flags, state = _compare_block(K.aedat2_dvs128, buf, out, 128, 128)
    special = (words[:, 0] & 0x80008000) != 0
    assert flags == 0 and n == (~special).sum() and state.tolist() == [0, special.sum()] > [0, 0]
    a = np.zeros(400, dtype=EVENT_DTYPE)
    K.aedat2_dvs128(buf, a, K.aedat2_state(), 128, 128)
    addr, ts = words[~special, 0].astype(np.int64), words[~special, 1].astype(np.int64)
    assert np.array_equal(a["x"][:n], 127 - ((addr >> 1) & 0x7F))  # jAER formulas again
    assert np.array_equal(a["y"][:n], 127 - ((addr >> 8) & 0x7F))
    assert np.array_equal(a["t"][:n], ts) and np.array_equal(a["p"][:n], (addr & 1) == 0)
    _, flags, _ = _compare_block(K.aedat2_dvs128, buf, out, 40, 128)
    assert flags == FLAG_OUTSIDE


def test_kernel_aedat2_davis_matches_py_func():
    rng = np.random.default_rng(12)
    words = np.empty((400, 2), dtype=">u4")
    x, y = rng.integers(0, 346, 400), rng.integers(0, 260, 400)
    kind = rng.integers(0, 6, 400)
    words[:, 0] = (y << 22) | (x << 12) | (rng.integers(0, 2, 400) << 11) \
        | np.where(kind == 0, 0x80000000, 0) | np.where(kind == 1, 0x400, 0)
    words[:, 1] = rng.integers(0, 2**32, 400, dtype=np.uint64)
    buf = np.frombuffer(words.tobytes(), dtype="<u4")
    out = np.zeros(400, dtype=EVENT_DTYPE)
    n, flags, state = _compare_block(K.aedat2_davis, buf, out, 346, 260, 346, 260)
    assert flags == 0 and n == (kind > 1).sum()
    assert state.tolist() == [(kind == 0).sum(), (kind == 1).sum()] and min(state) > 0
    _, flags, _ = _compare_block(K.aedat2_davis, buf, out, 240, 180, 240, 180)
    assert flags == FLAG_OUTSIDE  # mirrored with a smaller camera: negative coordinates


def test_kernel_aedat3_matches_py_func():
    rng = np.random.default_rng(13)
    m = 300
    d = ((rng.integers(0, 300, m) << 17) | (rng.integers(0, 200, m) << 2)
         | (rng.integers(0, 2, m) << 1) | rng.integers(0, 2, m))
    ev = np.empty((m, 2), dtype="<u4")
    ev[:, 0] = d
    ev[:, 1] = rng.integers(0, 2**32, m, dtype=np.uint64)  # includes "negative" i32 stamps
    buf = np.frombuffer(b"\x00" * 12 + ev.tobytes(), dtype="<u4")
    offsets = np.array([3, 3 + 2 * 100, 3 + 2 * 250], dtype=np.int64)  # word indices
    counts = np.array([100, 150, 50], dtype=np.int64)
    ovf = np.array([0, 3, 2**20], dtype=np.int64)
    out = np.zeros(m, dtype=EVENT_DTYPE)
    args = (offsets, counts, ovf)
    a, b = out.copy(), out.copy()
    ra = K.aedat3_polarity(buf, *args, a, 300, 200)
    rb = K.aedat3_polarity.py_func(buf, *args, b, 300, 200)
    assert ra == rb and ra[2] == -1 and ra[0] + ra[1] == m and ra[1] > 0
    assert np.array_equal(a[: ra[0]], b[: ra[0]])
    ra = K.aedat3_polarity(buf, *args, a, 100, 200)
    assert ra == K.aedat3_polarity.py_func(buf, *args, b, 100, 200) and ra[2] >= 3


def test_kernel_aedat4_matches_py_func():
    rng = np.random.default_rng(14)
    m = 300
    rec = np.zeros(m, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"),
                             ("pad", "V3")])
    rec["t"] = rng.integers(0, 2**62, m)
    rec["x"], rec["y"] = rng.integers(0, 320, m), rng.integers(0, 240, m)
    rec["on"] = rng.integers(0, 3, m)  # any non-zero byte is ON
    buf = np.frombuffer(rec.tobytes(), dtype=np.uint8)
    a, b = np.zeros(m, EVENT_DTYPE), np.zeros(m, EVENT_DTYPE)
    assert K.aedat4_events(buf, a, 320, 240) == K.aedat4_events.py_func(buf, b, 320, 240) \
        == (m, -1)
    assert np.array_equal(a, b) and np.array_equal(a["t"], rec["t"])
    assert np.array_equal(a["p"], rec["on"] != 0)
    rec["x"][77] = -3
    buf = np.frombuffer(rec.tobytes(), dtype=np.uint8)
    assert K.aedat4_events(buf, a, 320, 240) == K.aedat4_events.py_func(buf, b, 320, 240) \
        == (77, 77)

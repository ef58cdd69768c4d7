"""Readers registered with ``FormatSpec.validated``: their kernels establish the event contract.

``read_events`` / ``iter_events`` skip the generic bounds pass of ``validate_events`` for these
readers, so every format's own decode pass must reject an event outside the sensor. Each case
below is a file built byte by byte here (bit layouts written out again from the format
descriptions) with one event outside the sensor; the expected message and byte offset are
literals (the messages are those the readers gave before the generic pass was skipped).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

import eventssm.events as E
from eventssm.events import EventFileError, Recording, make_events
from eventssm.io import formats, iter_events, read_events, write_events
from eventssm.io.aedat import encode_aedat4

BINARY = {"evt2", "evt3", "dat", "nmnist", "aedat2", "aedat3", "aedat4"}


def _evt2() -> bytes:
    head = b"% evt 2.0\n% format EVT2;height=48;width=64\n% end\n"  # 49 bytes
    words = [0x80000001,  # TIME_HIGH 1 -> base 64 µs
             (1 << 28) | (3 << 22) | (10 << 11) | 5,  # CD_ON x 10, y 5
             (0 << 28) | (7 << 22) | (70 << 11) | 2]  # CD_OFF x 70 (outside 64), y 2
    return head + struct.pack("<3I", *words)


def _evt3(kind: str) -> bytes:
    head = b"% evt 3.0\n% format EVT3;height=48;width=64\n% end\n"  # 49 bytes
    if kind == "vector":  # TIME_HIGH, ADDR_Y 5, ADDR_X 10 ON, VECT_BASE_X 60, VECT_12 bit 4
        words = [0x8000, 0x0005, 0x2000 | 0x800 | 10, 0x3000 | 60, 0x4000 | 0x010]
    else:  # TIME_HIGH, ADDR_Y 5, ADDR_X 10, ADDR_Y 50 (outside 48), ADDR_X 11
        words = [0x8000, 0x0005, 0x2000 | 10, 0x0000 | 50, 0x2000 | 11]
    return head + struct.pack(f"<{len(words)}H", *words)


def _dat() -> bytes:
    head = b"% Data file containing CD events\n% Version 2\n% Width 64\n% Height 48\n"  # 68
    records = [(5, 3 | (4 << 14) | (1 << 28)),  # x 3, y 4, ON
               (6, 2 | (48 << 14))]  # x 2, y 48 (outside 48)
    return head + b"\x0c\x08" + b"".join(struct.pack("<II", *r) for r in records)


def _nmnist() -> bytes:
    rows = [(1, 2, 1, 100), (3, 240, 0, 0), (25, 3, 0, 50), (4, 4, 1, 60)]  # (x, y, p, ts)
    return b"".join(bytes([x, y, (p << 7) | (ts >> 16), (ts >> 8) & 0xFF, ts & 0xFF])
                    for x, y, p, ts in rows)


def _aedat2(camera: str) -> bytes:
    if camera == "DVS128":  # address: raw y << 8 | raw x << 1 | polarity bit; x = 127 - raw x
        chip = b"ch.unizh.ini.jaer.chip.retina.DVS128"
        records = [((5 << 8) | (100 << 1) | 1, 10), (0x8000, 11), ((7 << 8) | (20 << 1), 12)]
    else:  # DAVIS: raw y << 22 | raw x << 12 | polarity << 11; x = 239 - raw x (240C)
        chip = b"eu.seebetter.ini.chips.davis.DAVIS240C"
        records = [((3 << 22) | (5 << 12) | (1 << 11), 10), (1 << 31, 11),
                   ((3 << 22) | (300 << 12), 12)]  # raw x 300 -> x = -61
    head = b"#!AER-DAT2.0\r\n# AEChip: " + chip + b"\r\n"
    return head + b"".join(struct.pack(">II", *r) for r in records)


def _aedat3() -> bytes:
    head = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"  # 61
    events = [(10 << 17) | (3 << 2) | (1 << 1) | 1, 100,  # x 10, y 3, ON, valid
              (200 << 17) | (3 << 2) | 1, 101]  # x 200 (outside 128), y 3, valid
    packet = struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, 2, 2, 2) + struct.pack("<4I", *events)
    return head + packet


CASES = [
    ("evt2.raw", _evt2, None, 49 + 8,
     "event at (x=70, y=2) lies outside the 64x48 sensor (header format line)"),
    ("vec.raw", lambda: _evt3("vector"), None, 49 + 8,
     "event at (x=64, y=5) lies outside the 64x48 sensor (header format line)"),
    ("addr.raw", lambda: _evt3("addr"), None, 49 + 8,
     "event at (x=11, y=50) lies outside the 64x48 sensor (header format line)"),
    ("e.dat", _dat, None, 68 + 2 + 8,
     "event at (x=2, y=48) lies outside the 64x48 sensor (header width/height lines)"),
    ("n.bin", _nmnist, (20, 20, 2), 10,
     "event at (x=25, y=3) lies outside the 20x20 sensor (argument)"),
    ("dvs.aedat", lambda: _aedat2("DVS128"), (40, 128, 2), 62 + 16,
     "record 2 (address 0x00000728, t=12) decodes outside the 40x128 sensor (dvs128 layout)"),
    ("davis.aedat", lambda: _aedat2("DAVIS240C"), None, 64 + 16,
     "record 2 (address 0x00d2c000, t=12) decodes outside the 240x180 sensor (davis layout)"),
    ("g.aedat", _aedat3, None, 61 + 28 + 8,
     "AEDAT 3.1 polarity event (x=200, y=3) lies outside the 128x128 sensor"),
    ("g.aedat", _aedat3, (8, 8, 2), 61 + 28,
     "AEDAT 3.1 polarity event (x=10, y=3) lies outside the 8x8 sensor"),
]


@pytest.fixture
def no_generic_pass(monkeypatch):
    """Make the generic bounds pass count its calls (it must not run for validated formats)."""
    calls = []
    real = E.first_outside

    def spy(x, y, w, h):
        calls.append(len(x))
        return real(x, y, w, h)

    monkeypatch.setattr(E, "first_outside", spy)
    return calls


def test_registry_marks_the_kernel_readers_validated():
    specs = formats()
    assert {name for name, s in specs.items() if s.validated} == BINARY
    assert not any(specs[n].validated for n in ("csv", "npy", "npz", "hdf5"))


@pytest.mark.parametrize(("name", "build", "sensor", "offset", "message"), CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_kernel_checks_reject_outside_events(tmp_path, no_generic_pass, name, build, sensor,
                                             offset, message):
    path = tmp_path / name
    path.write_bytes(build())
    expected = f"{path}: {message} (at byte {offset})"
    with pytest.raises(EventFileError) as err:
        read_events(path, sensor_size=sensor)
    assert str(err.value) == expected and err.value.offset == offset
    with pytest.raises(EventFileError) as err:
        list(iter_events(path, sensor_size=sensor, chunk_events=1))
    assert str(err.value) == expected
    assert no_generic_pass == []


def test_aedat4_kernel_rejects_outside_events(tmp_path, no_generic_pass):
    ev = make_events([5, 300, 7], [6, 200, 8], [1, 2, 3], [True, False, True])
    data = encode_aedat4(ev, (320, 240, 2), compression="none", imu_packets=False)
    path = tmp_path / "a.aedat4"
    path.write_bytes(data)
    assert read_events(path).events.tolist() == ev.tolist()
    # the one packet starts right after the IOHeader; the event index within it is named
    start = data.index(b"\x00\x00\x00\x00", 18 + struct.unpack_from("<i", data, 14)[0])
    expected = (f"{path}: AEDAT 4.0 event 1 (x=300, y=200) of the packet at this offset lies "
                f"outside the 100x100 sensor (at byte {start})")
    with pytest.raises(EventFileError) as err:
        read_events(path, sensor_size=(100, 100, 2))
    assert str(err.value) == expected
    with pytest.raises(EventFileError) as err:
        list(iter_events(path, sensor_size=(100, 100, 2)))
    assert str(err.value) == expected
    assert no_generic_pass == []


def test_sensor_beyond_int16_is_checked_against_the_stored_range(tmp_path):
    # an unknown DAVIS camera with a sensor wider than int16: x = 39999 - raw x cannot be
    # stored in EVENT_DTYPE, so the kernel reports it instead of writing a wrapped value
    head = b"#!AER-DAT2.0\r\n# AEChip: some.unknown.Chip\r\n"
    path = tmp_path / "wide.aedat"
    path.write_bytes(head + struct.pack(">II", (3 << 22) | (5 << 12), 10))
    with pytest.raises(EventFileError, match=r"record 0 \(address 0x00c05000, t=10\) decodes "
                       r"outside the 40000x100 sensor \(davis layout\)"):
        read_events(path, sensor_size=(40000, 100, 2))
    rec = read_events(path, sensor_size=(300, 100, 2))
    assert rec.events.tolist() == [(294, 96, 10, False)]


def test_unvalidated_readers_still_get_the_generic_pass(tmp_path, no_generic_pass):
    path = tmp_path / "e.csv"
    path.write_text("x,y,t,p\n1,2,3,1\n5,1,4,0\n")
    assert len(read_events(path, sensor_size=(6, 3, 2))) == 2
    assert no_generic_pass == [2]
    with pytest.raises(EventFileError, match=r"event 1 at \(x=5, y=1\) lies outside the 5x3 "
                       r"sensor$"):
        read_events(path, sensor_size=(5, 3, 2))
    assert len(list(iter_events(path, sensor_size=(6, 3, 2)))) == 1
    ev = make_events([0, 1], [0, 1], [0, 1], [True, False])
    h5 = write_events(tmp_path / "e.h5", Recording(ev, (2, 2, 2), {}))
    read_events(h5)
    assert no_generic_pass[-1] == 2


def test_cheap_contract_checks_still_run_for_validated_readers(tmp_path):
    # empty recordings and impossible sensor sizes are checked for every reader
    path = tmp_path / "h.raw"
    path.write_bytes(b"% evt 2.0\n% format EVT2;height=48;width=64\n% end\n")
    with pytest.raises(EventFileError, match="no events"):
        read_events(path)
    assert len(read_events(path, allow_empty=True)) == 0
    g = tmp_path / "g.aedat"
    g.write_bytes(_aedat3()[: 61 + 28 + 8])
    g.write_bytes(g.read_bytes()[:61] + struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, 1, 1, 1)
                  + struct.pack("<2I", (10 << 17) | (3 << 2) | 1, 100))
    with pytest.raises(EventFileError, match=r"invalid sensor size \(20, 20, 0\)"):
        read_events(g, sensor_size=(20, 20, 0))
    assert read_events(g, sensor_size=(20, 20, 2)).events.tolist() == [(10, 3, 100, False)]


def test_validated_outputs_pass_the_generic_check(tmp_path):
    # the kernels' guarantee, checked independently on good files of every binary format
    rng = np.random.default_rng(3)
    n = 500
    ev = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n),
                     np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 2, n).astype(bool))
    from eventssm.io import aedat as A
    from eventssm.io import nmnist as N
    from eventssm.io import prophesee as P

    files = {"a.raw": P.encode_evt2(ev, 34, 34), "b.raw": P.encode_evt3(ev, 34, 34),
             "c.dat": P.encode_dat(ev, 34, 34), "d.bin": N.encode_nmnist(ev),
             "e.aedat": A.encode_aedat3(ev, (34, 34, 2)),
             "f.aedat4": A.encode_aedat4(ev, (34, 34, 2))}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        rec = read_events(path)
        assert formats()[rec.meta["format"]].validated
        E.validate_events(rec.events, rec.sensor_size)
        assert np.array_equal(rec.events, ev), name

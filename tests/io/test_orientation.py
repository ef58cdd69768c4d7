"""Every reader returns image coordinates: origin top-left, x to the right, y downwards.

The expected orientation is derived without the reader's formulas:

* physical content of real recordings: a person standing up moves head and torso, which lie
  above the hips, so most of the motion (events) of a standing-up take is in the upper half
  of the picture; the walking recordings' first record, decoded by hand from the jAER layout
  (bits 8-14 count rows from the bottom);
* the libcaer DVS128 driver's conversion (``x = 127 - raw x``, ``y = 127 - raw y``) applied to
  the raw jAER address: an AEDAT 2.0 file and the AEDAT 3.1 file libcaer would write for the
  same pixels must decode to the same coordinates;
* formats whose files store image coordinates already (AEDAT 3.1, AEDAT 4.0, EVT 2.0/3.0,
  DAT, N-MNIST) must return the stored x and y unchanged: bytes built by hand here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from eventssm.events import make_events
from eventssm.io import read_events
from eventssm.io.aedat import encode_aedat2, encode_aedat3, encode_aedat4
from tests.conftest import ROOT

ACTIVITIES = ROOT.parent / "shared" / "data" / "activities"


def _activity(rel: str) -> Path:
    p = ACTIVITIES / rel
    if not p.exists():
        pytest.skip(f"real recording {rel} not available ({ACTIVITIES} is absent in a user's clone)")
    return p


@pytest.mark.parametrize("rel", ["standing/cam255_alex_standing_up.aedat",
                                 "standing/cam255_neal_standing_up.aedat"])
def test_standing_up_moves_in_the_upper_half(rel):
    """Standing up moves the head and torso (above the hips): most events have small y.

    Measured: 0.825 and 0.776 of the events lie in rows 0..63 (an upside-down reader gives
    0.175 and 0.224)."""
    ev = read_events(_activity(rel)).events
    upper = float(np.mean(ev["y"] < 64))
    assert upper > 0.7, upper


def test_dvs128_aedat2_rows_count_from_the_top(tmp_path):
    """A raw jAER DVS128 address of the bottom-left pixel (raw y 0 = bottom row, raw x 127 =
    left after jAER's x mirror) decodes to (x=0, y=127); the top-right one to (127, 0)."""
    head = b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n"
    bottom_left = (0 << 8) | (127 << 1) | 0  # raw y 0, raw x 127, ON
    top_right = (127 << 8) | (0 << 1) | 1  # raw y 127, raw x 0, OFF
    p = tmp_path / "corners.aedat"
    p.write_bytes(head + struct.pack(">IIII", bottom_left, 5, top_right, 6))
    ev = read_events(p).events
    assert ev.tolist() == [(0, 127, 5, True), (127, 0, 6, False)]


def test_dvs128_aedat2_equals_libcaer_aedat31(tmp_path):
    """The same raw DVS128 addresses through jAER (AEDAT 2.0) and through libcaer's driver
    conversion written as AEDAT 3.1 decode to identical events."""
    rng = np.random.default_rng(3)
    n = 500
    raw_x, raw_y = rng.integers(0, 128, n), rng.integers(0, 128, n)
    off = rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 10**6, n))
    head = b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n"
    rec = np.empty((n, 2), ">u4")
    rec[:, 0] = (raw_y << 8) | (raw_x << 1) | off
    rec[:, 1] = t
    p2 = tmp_path / "jaer.aedat"
    p2.write_bytes(head + rec.tobytes())
    # libcaer dvs128.c: x = 127 - raw x ("to correct for flipped camera"), y = 127 - raw y
    # ("to convert to CG format"), polarity = (bit 0 == 0)
    libcaer = make_events(127 - raw_x, 127 - raw_y, t, off == 0)
    p3 = tmp_path / "caer.aedat"
    p3.write_bytes(encode_aedat3(libcaer, (128, 128, 2)))
    assert np.array_equal(read_events(p2).events, read_events(p3).events)
    assert np.array_equal(read_events(p2).events, libcaer)


def test_davis_aedat2_rows_count_from_the_top(tmp_path):
    """jAER DAVIS240: raw y 0 is the bottom row, raw x 0 the right column (jAER mirrors x)."""
    head = b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n"
    word = (0 << 22) | (0 << 12) | (1 << 11)  # raw (0, 0), ON
    p = tmp_path / "davis.aedat"
    p.write_bytes(head + struct.pack(">II", word, 7))
    assert read_events(p).events.tolist() == [(239, 179, 7, True)]


def test_image_coordinate_formats_keep_stored_xy(tmp_path):
    """AEDAT 3.1 and 4.0 (libcaer / DV), EVT 2.0 and DAT (OpenEB) store image coordinates:
    the readers return them unchanged. Bytes built by hand from the layouts."""
    ev = make_events([3, 60], [1, 40], [10, 20], [True, False])
    p3 = tmp_path / "a.aedat"
    p3.write_bytes(encode_aedat3(ev, (64, 48, 2)))
    p4 = tmp_path / "a.aedat4"
    p4.write_bytes(encode_aedat4(ev, (64, 48, 2), compression="none"))
    # EVT 2.0: TIME_HIGH 0, then CD_ON (type 1) / CD_OFF (type 0) with t low 6 bits, x, y
    words = [0x8 << 28, (1 << 28) | (10 << 22) | (3 << 11) | 1, (0 << 28) | (20 << 22) | (60 << 11) | 40]
    pe = tmp_path / "a.raw"
    pe.write_bytes(b"% evt 2.0\n% geometry 64x48\n% end\n" + struct.pack("<3I", *words))
    # DAT v2: t, then x bits 0-13, y bits 14-27, polarity bit 28
    pd = tmp_path / "a.dat"
    recs = [(10, 3 | (1 << 14) | (1 << 28)), (20, 60 | (40 << 14))]
    pd.write_bytes(b"% Data file containing CD events.\n% Version 2\n% Width 64\n% Height 48\n"
                   + bytes([0x0C, 8]) + b"".join(struct.pack("<II", *r) for r in recs))
    for p in (p3, p4, pe, pd):
        got = read_events(p).events
        assert got[["x", "y", "p"]].tolist() == ev[["x", "y", "p"]].tolist(), p.name


def test_nmnist_keeps_stored_xy(tmp_path):
    """N-MNIST (40-bit records: x, y, polarity bit 7 + 23-bit t): x and y as stored, which
    tonic also returns; the digits then show upright (docs/formats.md)."""
    rows = [(1, 2, 1, 100), (30, 33, 0, 200)]
    data = b"".join(bytes([x, y, (p << 7) | (ts >> 16), (ts >> 8) & 0xFF, ts & 0xFF])
                    for x, y, p, ts in rows)
    p = tmp_path / "d.bin"
    p.write_bytes(data)
    got = read_events(p).events
    assert got[["x", "y"]].tolist() == [(1, 2), (30, 33)]


def test_encode_aedat2_round_trip_keeps_image_rows(tmp_path):
    """encode_aedat2 writes jAER's upward rows: a top-row event is stored with raw y 127."""
    ev = make_events([5], [0], [1], [True])
    data = encode_aedat2(ev, "DVS128")
    addr = struct.unpack(">I", data[-8:-4])[0]
    assert (addr >> 8) & 0x7F == 127 and (addr >> 1) & 0x7F == 122
    p = tmp_path / "r.aedat"
    p.write_bytes(data)
    assert read_events(p).events.tolist() == ev.tolist()

"""Readers never allocate more than a file can hold, whatever its header claims.

Every format with a count, size or shape in its header gets a small file whose header lies (an
event count, packet size, array shape, dataset shape or sensor size of billions). The reader,
called directly, must answer with one EventFileError (or the few events really there) while
the Python-side allocations it makes stay those of the honest file: the peak traced by
``tracemalloc`` (NumPy arrays and bytes objects are traced) exceeds the honest file's by less
than 4 MiB (readers may keep fixed-size block buffers; a lie must not grow them).
Formats with no such field: AEDAT 2.0, N-MNIST and text hold no count or size (the data simply
runs to the end of the file); for them a lying sensor size is tried where a header has one.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from eventssm.events import EventFileError, make_events
from eventssm.io import formats
from eventssm.io.aedat import encode_aedat3, encode_aedat4
from eventssm.io.prophesee import encode_dat, encode_evt2, encode_evt3

SLACK = 4 << 20
BIG = 2**31 - 1


def _events(n=200, w=64, h=48):
    rng = np.random.default_rng(5)
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(0, 10**5, n)),
                       rng.integers(0, 2, n).astype(bool))


def _aedat3_count(d: Path) -> Path:
    data = bytearray(encode_aedat3(_events(), (64, 48, 2), packet_events=50))
    pos = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    struct.pack_into("<ii", data, pos + 20, BIG, BIG)  # eventCapacity, eventNumber of packet 1
    return _write(d / "count.aedat", data)


def _aedat4_packet(d: Path) -> Path:
    data = bytearray(encode_aedat4(_events(), (64, 48, 2), compression="none", packet_events=50))
    pos = data.index(b"\n") + 1
    pos += 4 + int.from_bytes(data[pos:pos + 4], "little")
    struct.pack_into("<i", data, pos + 4, BIG)  # size of the first packet
    return _write(d / "packet.aedat4", data)


def _aedat4_lz4(d: Path) -> Path:
    """An LZ4 frame whose content-size field claims 2**40 bytes."""
    import lz4.frame

    data = bytearray(encode_aedat4(_events(), (64, 48, 2), compression="lz4", packet_events=50))
    magic = lz4.frame.compress(b"x")[:4]
    i = data.index(magic)
    flg = data[i + 4]
    assert flg & 0x08 and not flg & 0x01  # content size present (8 bytes after FLG, BD), no dict id
    struct.pack_into("<Q", data, i + 6, 2**40)
    for hc in range(256):  # the header checksum byte that makes the lie well-formed
        data[i + 14] = hc
        try:
            lz4.frame.get_frame_info(bytes(data[i:]))
            break
        except RuntimeError:
            continue
    assert lz4.frame.get_frame_info(bytes(data[i:]))["content_size"] == 2**40
    return _write(d / "lz4.aedat4", data)


def _npy_shape(d: Path) -> Path:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "|b1")],
                                               "fortran_order": False, "shape": (10**12,)})
    return _write(d / "shape.npy", buf.getvalue() + b"\0" * 1300)


def _npz_member(d: Path) -> Path:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<i8", "fortran_order": False, "shape": (10**11,)})
    member = buf.getvalue() + b"\0" * 800
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for k in "xytp":
            z.writestr(f"{k}.npy", member)
    return _write(d / "member.npz", out.getvalue())


def _hdf5_shape(d: Path) -> Path:
    """Chunked datasets of 10**10 elements, never written: a few KiB on disk (fill values)."""
    p = d / "shape.h5"
    with h5py.File(p, "w") as f:
        g = f.create_group("events")
        for k, dt in (("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")):
            g.create_dataset(k, shape=(10**10,), dtype=dt, chunks=(1 << 16,), compression="gzip")
    return p


def _raw_geometry(enc, name):
    def make(d: Path) -> Path:
        data = enc(_events(), 64, 48).replace(b"64x48", b"999999999x999999999", 1)
        return _write(d / name, data.replace(b"height=48;width=64", b"height=999999999;width=999999999"))

    return make


def _dat_size(d: Path) -> Path:
    data = encode_dat(_events(), 64, 48).replace(b"% Width 64", b"% Width 999999999", 1)
    return _write(d / "size.dat", data)


def _write(p: Path, data) -> Path:
    p.write_bytes(bytes(data))
    return p


CASES = {
    "aedat3-event-count": ("aedat3", _aedat3_count),
    "aedat4-packet-size": ("aedat4", _aedat4_packet),
    "aedat4-lz4-content-size": ("aedat4", _aedat4_lz4),
    "npy-shape": ("npy", _npy_shape),
    "npz-member-shape": ("npz", _npz_member),
    "hdf5-dataset-shape": ("hdf5", _hdf5_shape),
    "evt2-geometry": ("evt2", _raw_geometry(encode_evt2, "geom2.raw")),
    "evt3-geometry": ("evt3", _raw_geometry(encode_evt3, "geom3.raw")),
    "dat-width": ("dat", _dat_size),
}


HONEST = {
    "aedat3": lambda d: _write(d / "ok.aedat", encode_aedat3(_events(), (64, 48, 2), packet_events=50)),
    "aedat4": lambda d: _write(d / "ok.aedat4", encode_aedat4(_events(), (64, 48, 2), packet_events=50)),
    "npy": lambda d: _write(d / "ok.npy", _npy_bytes()),
    "npz": lambda d: _write(d / "ok.npz", _npz_bytes()),
    "hdf5": lambda d: _write(d / "ok.h5", _npz_to_h5(d)),
    "evt2": lambda d: _write(d / "ok2.raw", encode_evt2(_events(), 64, 48)),
    "evt3": lambda d: _write(d / "ok3.raw", encode_evt3(_events(), 64, 48)),
    "dat": lambda d: _write(d / "ok.dat", encode_dat(_events(), 64, 48)),
}


def _npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, _events())
    return buf.getvalue()


def _npz_bytes() -> bytes:
    ev = _events()
    buf = io.BytesIO()
    np.savez_compressed(buf, x=ev["x"], y=ev["y"], t=ev["t"], p=ev["p"])
    return buf.getvalue()


def _npz_to_h5(d: Path) -> bytes:
    from eventssm.events import Recording
    from eventssm.io import write_events

    return write_events(d / "w.h5", Recording(_events(), (64, 48, 2), {})).read_bytes()


def _peak(spec, path: Path) -> int:
    """Peak traced bytes of read + iter_chunks; checks the outcome is clean and bounded."""
    tracemalloc.start()
    try:
        for run in (lambda: [spec.read(path, None)],
                    lambda: list(spec.iter_chunks(path, 64, None)) if spec.iter_chunks else []):
            try:
                out = run()
            except EventFileError as exc:
                assert str(exc).startswith(str(path))
            else:  # only what is really there: at most one event per byte
                assert sum(len(r.events) for r in out) <= path.stat().st_size
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_lying_header_costs_no_memory(tmp_path, case):
    name, make = CASES[case]
    path = make(tmp_path)
    assert path.stat().st_size < 64 << 10
    spec = formats()[name]
    with pytest.raises(EventFileError):  # every lie here is caught
        spec.read(path, None)
    honest = HONEST[name](tmp_path)
    _peak(spec, honest)  # warm-up: JIT caches, imports
    base = _peak(spec, honest)
    peak = _peak(spec, path)
    assert peak < base + SLACK, (f"{case}: {peak / 2**20:.1f} MiB for a {path.stat().st_size:,}-byte file "
                                 f"(the honest file: {base / 2**20:.1f} MiB)")

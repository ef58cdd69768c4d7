"""Format registry and detection: magic first, extension second, format= override, bad paths."""

from __future__ import annotations

import numpy as np
import pytest

from eventssm.events import EventFileError, Recording, make_events
from eventssm.io import detect_format, formats, iter_events, read_events, write_events
from eventssm.io._base import SNIFF_BYTES, FormatSpec, register


def _rec(n=20):
    rng = np.random.default_rng(0)
    ev = make_events(rng.integers(0, 32, n), rng.integers(0, 16, n),
                     np.arange(n) * 10, rng.integers(0, 2, n).astype(bool))
    return Recording(ev, (32, 16, 2), {})


def test_registry_holds_the_container_formats():
    specs = formats()
    assert {"npy", "npz", "hdf5", "csv"} <= set(specs)
    assert specs["hdf5"].extensions == (".h5", ".hdf5")
    assert specs["npy"].extensions == (".npy",)
    assert specs["npz"].extensions == (".npz",)
    assert set(specs["csv"].extensions) == {".csv", ".txt"}
    assert specs["csv"].sniff is None  # text has no magic: extension only
    for spec in specs.values():
        assert spec.description and spec.read is not None
        assert all(e.startswith(".") and e == e.lower() for e in spec.extensions)
    with pytest.raises(RuntimeError, match="twice"):
        register(FormatSpec("npy", "dup", (".npy",), None, specs["npy"].read))


def test_magic_beats_extension(tmp_path):
    # HDF5 bytes under a text extension, npy under .csv, npz under .txt: magic decides
    h5 = write_events(tmp_path / "a.h5", _rec())
    (tmp_path / "h5.csv").write_bytes(h5.read_bytes())
    assert detect_format(tmp_path / "h5.csv").name == "hdf5"
    np.save(tmp_path / "n.npy", _rec().events)
    (tmp_path / "n.csv").write_bytes((tmp_path / "n.npy").read_bytes())
    assert detect_format(tmp_path / "n.csv").name == "npy"
    npz = write_events(tmp_path / "z.npz", _rec())
    (tmp_path / "z.txt").write_bytes(npz.read_bytes())
    assert detect_format(tmp_path / "z.txt").name == "npz"
    assert np.array_equal(read_events(tmp_path / "z.txt").events, _rec().events)


def test_sniffers_on_heads():
    specs = formats()
    assert specs["hdf5"].sniff(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert specs["hdf5"].sniff(b"\0" * 512 + b"\x89HDF\r\n\x1a\n")
    assert not specs["hdf5"].sniff(b"\0" * 300 + b"\x89HDF\r\n\x1a\n")
    assert specs["npy"].sniff(b"\x93NUMPY\x01\x00")
    assert not specs["npy"].sniff(b"\x93NUMPX")
    # a ZIP whose first member is not .npy is not claimed as npz by magic
    head = b"PK\x03\x04" + b"\0" * 22 + (5).to_bytes(2, "little") + b"\0\0" + b"x.npy"
    assert specs["npz"].sniff(head)
    assert not specs["npz"].sniff(head.replace(b"x.npy", b"x.txt"))
    assert not specs["npz"].sniff(head[:31])  # name cut short by the head


def test_extension_fallback_and_case(tmp_path):
    p = tmp_path / "EVENTS.TXT"
    p.write_text("1 2 3 1\n")
    assert detect_format(p).name == "csv"
    q = tmp_path / "e.csv"
    q.write_text("t,x,y,p\n1,2,3,1\n")
    assert detect_format(q).name == "csv"


def test_format_override(tmp_path):
    p = tmp_path / "events.dump"  # unknown extension, no magic
    p.write_text("5 1 2 1\n7 3 4 0\n")
    with pytest.raises(EventFileError, match="unknown format"):
        read_events(p)
    rec = read_events(p, format="csv")
    assert rec.events.tolist() == [(1, 2, 5, True), (3, 4, 7, False)]
    assert rec.meta["format"] == "csv"
    assert len(list(iter_events(p, format="csv"))) == 1
    with pytest.raises(EventFileError, match="unknown format 'nope'"):
        read_events(p, format="nope")
    # the wrong reader forced on a file gives one EventFileError, never another exception
    with pytest.raises(EventFileError):
        read_events(p, format="hdf5")
    with pytest.raises(EventFileError):
        read_events(p, format="npy")
    with pytest.raises(EventFileError):
        read_events(p, format="npz")
    h5 = write_events(tmp_path / "a.h5", _rec())
    with pytest.raises(EventFileError):
        read_events(h5, format="csv")


def test_unknown_extension_error(tmp_path):
    p = tmp_path / "mystery.xyz"
    p.write_bytes(b"no magic here" * 10)
    with pytest.raises(EventFileError) as err:
        detect_format(p)
    msg = str(err.value)
    assert "'.xyz'" in msg and "'.npy'" in msg and msg.endswith("(at byte 0)")
    assert err.value.offset == 0 and err.value.path == str(p)
    q = tmp_path / "noext"
    q.write_bytes(b"abc")
    with pytest.raises(EventFileError, match="'\\(none\\)'"):
        detect_format(q)


def test_empty_file_directory_missing(tmp_path):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(EventFileError, match=r"empty \(at byte 0\)"):
        read_events(empty)
    with pytest.raises(EventFileError, match="directory"):
        read_events(tmp_path)
    with pytest.raises(EventFileError, match="directory"):
        list(iter_events(tmp_path))
    with pytest.raises(EventFileError, match="no such file"):
        read_events(tmp_path / "missing.npy")
    with pytest.raises(EventFileError, match="no such file"):
        detect_format(tmp_path / "missing.npy")
    # an empty file forced to a format: an error or an empty recording, never a crash
    for name in ("hdf5", "npy", "npz"):
        with pytest.raises(EventFileError):
            read_events(empty, format=name)
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_bytes(b"")
    assert len(read_events(empty_csv, format="csv", allow_empty=True)) == 0


def test_sniff_only_sees_the_head(tmp_path):
    p = tmp_path / "late.bin2"  # HDF5 signature beyond what detection reads
    p.write_bytes(b"\0" * SNIFF_BYTES * 2 + b"\x89HDF\r\n\x1a\n")
    with pytest.raises(EventFileError, match="unknown format"):
        detect_format(p)


def test_registered_encoders_read_back_by_their_own_reader(tmp_path):
    rec = _rec(50)
    encoders = {name: s for name, s in formats().items() if s.encode is not None}
    assert {"evt2", "evt3", "dat", "aedat3"} <= set(encoders)
    for name, spec in encoders.items():
        path = tmp_path / f"rec{spec.extensions[0]}"
        path.write_bytes(spec.encode(rec))
        assert detect_format(path).name == name
        back = read_events(path, format=name)
        assert tuple(back.sensor_size[:2]) == rec.sensor_size[:2], name
        for field in ("x", "y", "t", "p"):
            np.testing.assert_array_equal(back.events[field], rec.events[field], err_msg=name)

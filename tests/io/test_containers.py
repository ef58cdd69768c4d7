"""HDF5, npy, npz and text readers, and write_events (files written here by hand or numpy)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, make_events
from eventssm.io import concat, detect_format, iter_events, read_events, write_events, writers
from eventssm.io import hdf5 as h5mod
from eventssm.io.arrays import events_from_columns
from eventssm.io.text import read_text


def _events(n: int, seed: int = 0, w: int = 64, h: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(
        rng.integers(0, w, n),
        rng.integers(0, h, n),
        np.sort(rng.integers(0, 10**7, n)),
        rng.integers(0, 2, n).astype(bool),
    )


def _chunks_equal(path, events, sizes=(1, 7, 1000), **kw):
    for k in sizes:
        got = concat(list(iter_events(path, chunk_events=k, **kw)))
        assert np.array_equal(got, events), k


# ----------------------------------------------------------------------------- write_events
_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
_json = st.recursive(
    _json_leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8,
)


@st.composite
def recordings(draw):
    w = draw(st.integers(1, 32768))
    h = draw(st.integers(1, 32768))
    pol = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(0, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ev = make_events(
        rng.integers(0, w, n),
        rng.integers(0, h, n),
        rng.integers(-(2**62), 2**62, n),  # any int64, unsorted, negative too
        rng.integers(0, 2, n).astype(bool),
    )
    meta = draw(st.dictionaries(st.text(max_size=6), _json, max_size=4))
    return Recording(ev, (w, h, pol), meta)


@pytest.mark.parametrize("ext", [".h5", ".hdf5", ".npz"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=recordings())
def test_write_read_roundtrip_exact(ext, rec):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"rec{ext}"
        assert write_events(path, rec) == path
        back = read_events(path, allow_empty=True)
        assert back.events.dtype == EVENT_DTYPE
        assert np.array_equal(back.events, rec.events)
        assert back.sensor_size == rec.sensor_size
        fmt = "npz" if ext == ".npz" else "hdf5"
        assert back.meta == _expected_meta(rec.meta, fmt, path)
        assert sorted(p.name for p in Path(d).iterdir()) == [path.name]  # no temp file left
        got = concat(list(iter_events(path, chunk_events=97)))
        assert np.array_equal(got, rec.events)


def _expected_meta(stored: dict, fmt: str, path: Path) -> dict:
    """What read_events reports: the stored meta, with format/path naming the reader and file
    read and a different stored format/path kept as source_format/source_path."""
    out = dict(stored)
    for key, value in (("format", fmt), ("path", str(path))):
        if key in stored and stored[key] != value:
            out[f"source_{key}"] = stored[key]
        out[key] = value
    return out


def test_roundtrip_of_read_recording_keeps_meta_exactly(tmp_path):
    rec = Recording(_events(50), (64, 48, 2), {"format": "aedat4", "path": "/x/y.aedat4",
                                                "camera": "DVXplorer", "n": np.int64(3)})
    for name, fmt in (("a.h5", "hdf5"), ("a.npz", "npz")):
        back = read_events(write_events(tmp_path / name, rec))
        assert back.meta == {"format": fmt, "path": str(tmp_path / name), "camera": "DVXplorer",
                             "n": 3, "source_format": "aedat4", "source_path": "/x/y.aedat4"}
        assert back.sensor_size == (64, 48, 2)


def test_write_format_override_and_compression(tmp_path):
    rec = Recording(_events(5000), (64, 48, 2), {})
    p = write_events(tmp_path / "data.bin", rec, format="hdf5", compression="lzf")
    assert detect_format(p).name == "hdf5"
    with h5py.File(p) as f:
        for k in "xytp":
            assert f["events"][k].compression == "lzf"
            assert f["events"][k].chunks is not None
        assert f["events"]["p"].dtype == np.uint8
        assert tuple(f["events"].attrs["sensor_size"]) == (64, 48, 2)
    assert np.array_equal(read_events(p).events, rec.events)
    p2 = write_events(tmp_path / "g.h5", rec)
    with h5py.File(p2) as f:
        assert f["events"]["t"].compression == "gzip"
    p3 = write_events(tmp_path / "raw.npz", rec, compression=None)
    with zipfile.ZipFile(p3) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    assert np.array_equal(read_events(p3).events, rec.events)


def test_write_rejects_bad_input_without_touching_target(tmp_path):
    target = tmp_path / "keep.h5"
    target.write_bytes(b"precious")
    good = Recording(_events(10), (64, 48, 2), {})
    with pytest.raises(ValueError, match="extension"):
        write_events(tmp_path / "x.csv", good)
    outside = Recording(_events(10, w=100), (10, 48, 2), {})
    with pytest.raises(EventFileError, match="outside"):
        write_events(target, outside)
    with pytest.raises(ValueError, match="meta"):
        write_events(target, Recording(good.events, good.sensor_size, {"f": object()}))
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.h5"]


@pytest.mark.parametrize("name,writer", [("a.h5", "_write_hdf5"), ("a.npz", "_write_npz")])
def test_write_failure_midway_leaves_no_half_file(tmp_path, monkeypatch, name, writer):
    target = tmp_path / name
    target.write_bytes(b"old")
    real = getattr(writers, writer)

    def broken(tmp, rec, compression):
        real(tmp, rec, compression)  # the temp file is complete on disk ...
        raise OSError("disk full")  # ... and then the write fails

    monkeypatch.setattr(writers, writer, broken)
    with pytest.raises(OSError, match="disk full"):
        write_events(target, Recording(_events(10), (64, 48, 2), {}))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [name]


# ----------------------------------------------------------------------------- HDF5 layouts
def _shd_file(path, times, units, labels=None, vlen=True):
    with h5py.File(path, "w") as f:
        g = f.create_group("spikes")
        if vlen:
            tt = g.create_dataset("times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
            uu = g.create_dataset("units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
            for i, (t, u) in enumerate(zip(times, units)):
                tt[i] = np.asarray(t, np.float32)
                uu[i] = np.asarray(u, np.uint16)
        else:
            g.create_dataset("times", data=np.asarray(times, np.float32))
            g.create_dataset("units", data=np.asarray(units, np.uint16))
        if labels is not None:
            f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_group("extra").create_dataset("keys", data=[b"zero", b"one"])


def test_shd_many_samples_needs_read_samples(tmp_path):
    rng = np.random.default_rng(1)
    times = [np.sort(rng.random(n)).astype(np.float32) for n in (5, 0, 17)]
    units = [rng.integers(0, 700, len(t)) for t in times]
    p = tmp_path / "shd_test.h5"
    _shd_file(p, times, units, labels=[3, 1, 19])
    with pytest.raises(EventFileError, match="read_samples"):
        read_events(p)
    got = list(h5mod.read_samples(p))
    assert [label for _, label in got] == [3, 1, 19]
    for (rec, label), t, u in zip(got, times, units):
        assert rec.sensor_size == (700, 1, 1)
        assert rec.meta["label"] == label
        want_t = [round(float(v) * 1e6) for v in t.astype(np.float64)]
        assert rec.events["t"].tolist() == want_t
        assert rec.events["x"].tolist() == u.tolist()
        assert not rec.events["y"].any()
        assert rec.events["p"].all()


def test_shd_single_sample_and_wide_units(tmp_path):
    p = tmp_path / "one.h5"
    _shd_file(p, [np.array([0.5, 0.25e-3])], [np.array([699, 2])], labels=[7])
    rec = read_events(p)
    assert rec.sensor_size == (700, 1, 1)
    assert rec.events["t"].tolist() == [500000, 250]
    assert rec.meta["label"] == 7
    q = tmp_path / "wide.h5"
    _shd_file(q, [0.1, 0.2], [5, 900], vlen=False)  # plain 1-D datasets: one sample
    rec = read_events(q)
    assert rec.sensor_size == (901, 1, 1)
    assert rec.events["x"].tolist() == [5, 900]
    _chunks_equal(q, rec.events)
    assert [r.sensor_size for r, _ in h5mod.read_samples(q)] == [(901, 1, 1)]


def test_read_samples_refuses_other_layouts(tmp_path):
    p = write_events(tmp_path / "e.h5", Recording(_events(3), (64, 48, 2), {}))
    with pytest.raises(EventFileError, match="SHD"):
        list(h5mod.read_samples(p))


_CD = np.dtype({"names": ["x", "y", "p", "t"], "formats": ["<u2", "<u2", "<i2", "<i8"],
                "offsets": [0, 2, 4, 8], "itemsize": 16})


def test_prophesee_cd_events(tmp_path):
    cd = np.zeros(6, _CD)
    cd["x"] = [0, 639, 5, 6, 7, 8]
    cd["y"] = [479, 0, 1, 2, 3, 4]
    cd["p"] = [1, 0, -1, 1, 0, 1]
    cd["t"] = [10, 20, 30, 40, 50, 2**40]
    p = tmp_path / "rec.hdf5"
    with h5py.File(p, "w") as f:
        f.create_group("CD").create_dataset("events", data=cd, chunks=(4,), maxshape=(None,))
        f.attrs["geometry"] = b"640x480"
        f.attrs["generation"] = b"4.1"
    rec = read_events(p)
    assert rec.sensor_size == (640, 480, 2)
    assert rec.events["x"].tolist() == cd["x"].tolist()
    assert rec.events["y"].tolist() == cd["y"].tolist()
    assert rec.events["t"].tolist() == cd["t"].tolist()
    assert rec.events["p"].tolist() == [True, False, False, True, False, True]
    assert "4.1" in rec.meta["camera"]
    _chunks_equal(p, rec.events)
    # no geometry: inferred and flagged; the user's size wins over everything
    q = tmp_path / "nogeo.h5"
    with h5py.File(q, "w") as f:
        f.create_group("CD").create_dataset("events", data=cd)
    rec = read_events(q)
    assert rec.sensor_size == (640, 480, 2) and rec.meta["sensor_size_inferred"]
    assert read_events(p, sensor_size=(1000, 800, 2)).sensor_size == (1000, 800, 2)


def test_prophesee_ecf_without_plugin_is_one_clear_error(tmp_path):
    if h5py.h5z.filter_avail(h5mod.ECF_FILTER):
        pytest.skip("the ECF plugin is installed here")
    p = tmp_path / "ecf.hdf5"
    with h5py.File(p, "w") as f:
        f.create_group("CD").create_dataset(
            "events", shape=(32,), maxshape=(None,), dtype=_CD, chunks=(16,),
            compression=h5mod.ECF_FILTER, allow_unknown_filter=True,
        )
        f.attrs["geometry"] = b"640x480"
    with pytest.raises(EventFileError, match=r"0x8ecf.*hdf5_ecf"):
        read_events(p)


def test_dsec_style_events_group_with_t_offset(tmp_path):
    p = tmp_path / "events.h5"
    with h5py.File(p, "w") as f:
        g = f.create_group("events")
        g.create_dataset("x", data=np.array([1, 600], np.uint16))
        g.create_dataset("y", data=np.array([2, 400], np.uint16))
        g.create_dataset("t", data=np.array([0, 4_000_000_000], np.uint32))
        g.create_dataset("p", data=np.array([1, 0], np.uint8))
        f.create_dataset("t_offset", data=np.int64(10**12))
        f.create_dataset("ms_to_idx", data=np.zeros(3, np.uint64))
    rec = read_events(p)
    assert rec.events["t"].tolist() == [10**12, 10**12 + 4_000_000_000]
    assert rec.sensor_size == (601, 401, 2) and rec.meta["sensor_size_inferred"]
    _chunks_equal(p, rec.events)


def test_hdf5_unknown_layout_lists_keys(tmp_path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 2)))
        f.create_group("labels")
    with pytest.raises(EventFileError, match=r"\['images', 'labels'\]"):
        read_events(p)


def test_hdf5_lying_size_is_refused_before_reading(tmp_path):
    p = tmp_path / "huge.h5"
    with h5py.File(p, "w") as f:  # contiguous, never written: the file stays tiny
        g = f.create_group("events")
        for k in "xytp":
            g.create_dataset(k, shape=(10**11,), dtype=np.int64)
    assert p.stat().st_size < 10**5
    with pytest.raises(EventFileError, match="implausible"):
        read_events(p)


def test_hdf5_user_block_is_sniffed(tmp_path):
    p = tmp_path / "ub.data"
    with h5py.File(p, "w", userblock_size=1024) as f:
        g = f.create_group("events")
        ev = _events(4)
        for k in "xyt":
            g.create_dataset(k, data=ev[k])
        g.create_dataset("p", data=ev["p"].astype(np.uint8))
    assert p.read_bytes()[:8] != h5mod.HDF5_MAGIC
    assert detect_format(p).name == "hdf5"
    assert np.array_equal(read_events(p).events, ev)


def test_hdf5_newer_layout_version_is_refused(tmp_path):
    p = write_events(tmp_path / "v.h5", Recording(_events(3), (64, 48, 2), {}))
    with h5py.File(p, "a") as f:
        f["events"].attrs["eventssm_version"] = 99
    with pytest.raises(EventFileError, match="newer"):
        read_events(p)


# ----------------------------------------------------------------------------- npy
def test_npy_structured_any_dtypes(tmp_path):
    dt = np.dtype([("ts", ">f8"), ("x", "<u2"), ("y", "i8"), ("polarity", "i1"), ("z", "f4")])
    a = np.zeros(4, dt)
    a["ts"] = [0.4, 1.6, 2.5, 1e12]
    a["x"] = [0, 1, 2, 32767]
    a["y"] = [5, 6, 7, 8]
    a["polarity"] = [-1, 1, 0, 1]
    p = tmp_path / "s.npy"
    np.save(p, a)
    rec = read_events(p)
    assert rec.events["t"].tolist() == [0, 2, 2, 10**12]  # nearest, ties to even
    assert rec.events["x"].tolist() == [0, 1, 2, 32767]
    assert rec.events["p"].tolist() == [False, True, False, True]
    assert rec.sensor_size == (32768, 9, 2) and rec.meta["sensor_size_inferred"]
    _chunks_equal(p, rec.events)


def test_npy_tonic_dvsgesture_layout(tmp_path):
    rng = np.random.default_rng(3)
    n = 500
    a = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                  np.sort(rng.integers(0, 6_000_000, n)) / 1000.0], axis=1)  # t in ms
    p = tmp_path / "user01_fluorescent.npy"
    np.save(p, a)
    rec = read_events(p)
    assert rec.sensor_size == (128, 128, 2)
    assert rec.events["x"].tolist() == a[:, 0].astype(int).tolist()
    assert rec.events["p"].tolist() == (a[:, 2] == 1).tolist()
    assert rec.events["t"].tolist() == [round(v * 1000) for v in a[:, 3].tolist()]
    _chunks_equal(p, rec.events)
    f = tmp_path / "fortran.npy"
    np.save(f, np.asfortranarray(a))
    assert np.array_equal(read_events(f).events, rec.events)
    _chunks_equal(f, rec.events)
    a[0, 0] = 300  # not a DVS128 array any more: inferred geometry
    np.save(p, a)
    assert read_events(p).sensor_size == (301, 128, 2)


@pytest.mark.parametrize(
    "arr,match",
    [
        (np.zeros((3, 3)), "not an event array"),
        (np.zeros(3), "not an event array"),
        (np.array([1, "a"], dtype=object), "object"),
        (np.array([[-1, 0, 0, 0.0]]), "outside"),
        (np.array([[40000, 0, 0, 0.0]]), "outside"),
        (np.array([[1.5, 0, 0, 0.0]]), "non-integer"),
        (np.array([[1, 0, 0, np.nan]]), "NaN"),
        (np.zeros(2, [("x", "i2"), ("y", "i2"), ("t", "i8")]), "needs x, y, t"),
        (np.zeros(2, [("x", "U2"), ("y", "i2"), ("t", "i8"), ("p", "?")]), "non-numeric"),
    ],
)
def test_npy_rejects(tmp_path, arr, match):
    p = tmp_path / "bad.npy"
    np.save(p, arr, allow_pickle=True)
    with pytest.raises(EventFileError, match=match):
        read_events(p)
    with pytest.raises(EventFileError, match=match):
        list(iter_events(p))


def test_npy_truncated_reports_byte_offset(tmp_path):
    p = tmp_path / "t.npy"
    np.save(p, _events(100))
    data = p.read_bytes()
    p.write_bytes(data[:-10])
    with pytest.raises(EventFileError, match=f"truncated.*at byte {len(data) - 10}"):
        read_events(p)


def test_npy_empty_array(tmp_path):
    p = tmp_path / "e.npy"
    np.save(p, np.empty(0, EVENT_DTYPE))
    rec = read_events(p, allow_empty=True)
    assert len(rec) == 0
    assert list(iter_events(p)) == []
    with pytest.raises(EventFileError, match="no events"):
        read_events(p)


# ----------------------------------------------------------------------------- npz
def test_npz_structured_events_member_and_plain_columns(tmp_path):
    ev = _events(40)
    p = tmp_path / "s.npz"
    np.savez_compressed(p, events=ev)
    rec = read_events(p)
    assert np.array_equal(rec.events, ev)
    assert rec.sensor_size == (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1, 2)
    _chunks_equal(p, ev)
    q = tmp_path / "c.npz"
    np.savez(q, x=ev["x"].astype(np.uint16), y=ev["y"].astype(float), t=ev["t"],
             p=ev["p"].astype(np.int8), sensor_size=np.array([64, 48]))
    rec = read_events(q)
    assert np.array_equal(rec.events, ev) and rec.sensor_size == (64, 48, 2)
    assert rec.meta == {"format": "npz", "path": str(q)}
    _chunks_equal(q, ev)


def _npy_bytes(arr, count_override=None):
    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    if count_override is not None:
        data = data.replace(f"({len(arr)},)".encode(), f"({count_override},)".encode(), 1)
    return data


def test_npz_lying_member_header(tmp_path):
    p = tmp_path / "lie.npz"
    ev = _events(10)
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _npy_bytes(ev["x"], count_override=10**12))
        for k in "ytp":
            z.writestr(f"{k}.npy", _npy_bytes(ev[k]))
    with pytest.raises(EventFileError, match="member x"):
        read_events(p)
    with pytest.raises(EventFileError, match="member x"):
        list(iter_events(p))


def test_npz_bad_members(tmp_path):
    p = tmp_path / "m.npz"
    np.savez(p, a=np.zeros(3), b=np.zeros(3))
    with pytest.raises(EventFileError, match=r"\['a', 'b'\]"):
        read_events(p)
    ev = _events(3)
    np.savez(p, x=ev["x"], y=ev["y"], t=ev["t"][:2], p=ev["p"])
    with pytest.raises(EventFileError, match="unequal"):
        read_events(p)
    with pytest.raises(EventFileError, match="unequal"):
        list(iter_events(p))
    np.savez(p, x=ev["x"], y=ev["y"], t=ev["t"], p=ev["p"], meta=np.array("{not json"))
    with pytest.raises(EventFileError, match="JSON"):
        read_events(p)
    q = tmp_path / "notes.npz"
    with zipfile.ZipFile(q, "w") as z:
        z.writestr("readme.txt", "hello")
    assert detect_format(q).name == "npz"  # by extension: no .npy member to sniff
    with pytest.raises(EventFileError, match="not an event layout"):
        read_events(q)


# ----------------------------------------------------------------------------- text
def test_text_eth_layout_seconds(tmp_path):
    lines = ["0.000000000 33 39 1", "0.000011001 158 145 1", "1549.123456 239 61 0",
             "2147483647.999999 0 0 1"]
    p = tmp_path / "events.txt"
    p.write_text("\n".join(lines) + "\n")
    rec = read_events(p)
    assert rec.events["t"].tolist() == [0, 11, 1_549_123_456, 2_147_483_647_999_999]
    assert rec.events["x"].tolist() == [33, 158, 239, 0]
    assert rec.events["p"].tolist() == [True, True, False, True]
    assert rec.meta["time_unit_in_file"] == "s" and rec.sensor_size == (240, 146, 2)
    _chunks_equal(p, rec.events, sizes=(1, 3))


@pytest.mark.parametrize(
    "text",
    [
        "p,t,y,x\n1,5,2,1\n0,7,4,3\n",
        "\ufeff# made by hand\nX;Y;Timestamp;Polarity\r\n1;2;5;1\r\n\r\n3;4;7;0\r\n",
        "x\ty\tt\tp\n1\t2\t5\t1\n% comment\n3\t4\t7\t-1\n",
        "t x y p extra\n5 1 2 1 9.5\n7 3 4 0 8\n",
    ],
)
def test_text_headers_and_delimiters(tmp_path, text):
    p = tmp_path / "e.csv"
    p.write_bytes(text.encode("utf-8"))
    rec = read_events(p)
    assert rec.events.tolist() == [(1, 2, 5, True), (3, 4, 7, False)]
    assert rec.meta["time_unit_in_file"] == "us"
    _chunks_equal(p, rec.events, sizes=(1, 2))


def test_text_chunks_stay_bounded_across_other_line_breaks(tmp_path):
    """numpy breaks lines at \v and \f too (a fuzzed file found it): iter_events still never
    yields more than chunk_events events, and the chunks add up to read_events."""
    p = tmp_path / "e.csv"
    p.write_bytes(b"x,y,t,p\n1,2,5,1\x0b3,4,7,0\n5,6,9,1\x0c7,8,11,0\n9,1,13,1\n")
    rec = read_events(p)
    assert rec.events["t"].tolist() == [5, 7, 9, 11, 13]
    _chunks_equal(p, rec.events, sizes=(1, 2, 3))
    for k in (1, 2, 3):
        assert [len(c.events) for c in iter_events(p, chunk_events=k)] == [k] * (5 // k) + [5 % k] * (5 % k > 0)


def test_text_columns_and_units(tmp_path):
    p = tmp_path / "e.txt"
    p.write_text("1 2 1 5\n3 4 0 7\n")
    rec = read_text(p, columns="x,y,p,t", time_unit="ms")
    assert rec.events.tolist() == [(1, 2, 5000, True), (3, 4, 7000, False)]
    assert read_events(p, sensor_size=(10, 10, 2)).sensor_size == (10, 10, 2)
    with pytest.raises(ValueError, match="must name"):
        read_text(p, columns="x,y,t")


def test_text_errors_name_line_offset(tmp_path):
    good = "t,x,y,p\n1,2,3,1\n2,3,4,0\n"
    p = tmp_path / "bad.csv"
    p.write_text(good + "3,4,oops,1\n4,5,6,1\n")
    with pytest.raises(EventFileError, match=f"column y value 'oops'.*at byte {len(good)}"):
        read_events(p)
    with pytest.raises(EventFileError, match=f"at byte {len(good)}"):
        list(iter_events(p, chunk_events=2))
    p.write_text(good + "3,4\n")
    with pytest.raises(EventFileError, match=f"2 columns.*at byte {len(good)}"):
        read_events(p)
    p.write_text("1 2 3 1\n1.5 2 3 1\n")  # integer µs first, then a float
    with pytest.raises(EventFileError, match=r"not an integer.*at byte 8"):
        read_events(p)
    p.write_text("x,y,t\n1,2,3\n")
    with pytest.raises(EventFileError, match="lacks"):
        read_events(p)
    p.write_text("1 2.5 3 1\n")
    with pytest.raises(EventFileError, match="non-integer"):
        read_events(p)
    p.write_bytes(b"\x00\x01" * 5000)
    with pytest.raises(EventFileError, match="longer than"):
        read_events(p)
    p.write_bytes(b"1 2 3 \xff\n")
    with pytest.raises(EventFileError, match=r"UTF-8.*at byte 6"):
        read_events(p)


def test_text_header_only_is_empty(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("x,y,t,p\n")
    rec = read_events(p, allow_empty=True, sensor_size=(4, 4, 2))
    assert len(rec) == 0 and rec.sensor_size == (4, 4, 2)
    assert list(iter_events(p)) == []


def test_events_from_columns_checks_lengths():
    with pytest.raises(EventFileError, match="unequal"):
        events_from_columns([1, 2], [1], [1, 2], [0, 1])
    ev = events_from_columns(np.array([1], np.uint8), [2.0], np.array([3], np.uint64), [True])
    assert ev.tolist() == [(1, 2, 3, True)]
    with pytest.raises(EventFileError, match="overflows"):
        events_from_columns([1], [2], np.array([2**63], np.uint64), [1])


@pytest.mark.parametrize("t_name, p_name", [("time", "polarity"), ("Timestamp", "pol")])
def test_structured_npy_takes_the_text_readers_column_aliases(tmp_path, t_name, p_name):
    dtype = np.dtype([("x", np.int16), ("y", np.int16), (t_name, np.int64), (p_name, np.uint8)])
    arr = np.array([(1, 2, 10, 1), (3, 0, 25, 0)], dtype=dtype)
    np.save(tmp_path / "ev.npy", arr)
    (tmp_path / "ev.csv").write_text(f"x,y,{t_name},{p_name}\n1,2,10,1\n3,0,25,0\n")
    a = read_events(tmp_path / "ev.npy", sensor_size=(4, 4, 2)).events
    b = read_events(tmp_path / "ev.csv", sensor_size=(4, 4, 2)).events
    assert a["t"].tolist() == b["t"].tolist() == [10, 25]
    assert a["p"].tolist() == b["p"].tolist() == [True, False]


@pytest.mark.parametrize("fmt", ["evt2", "evt3", "dat", "aedat3", "aedat4"])
def test_write_events_raw_formats_through_the_registered_encoder(tmp_path, fmt):
    """write_events is the one format dispatch: a raw format's file is exactly the bytes of
    the encoder registered on its FormatSpec, and reads back to the same events."""
    from eventssm.io import formats

    rec = Recording(_events(500, seed=3), (64, 48, 2), {})
    ext = writers.format_extension(fmt)
    p = write_events(tmp_path / f"r{ext}", rec, format=fmt)
    assert p.read_bytes() == formats()[fmt].encode(rec) == writers.encode_events(rec, fmt)
    back = read_events(p, format=fmt)
    for field in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(back.events[field], rec.events[field])
    assert [q.name for q in tmp_path.iterdir()] == [p.name]
    assert set(writers.writable_formats()) >= {"hdf5", "npz", fmt}


def test_write_events_refuses_a_format_without_encoder(tmp_path):
    rec = Recording(_events(10), (64, 48, 2), {})
    for bad in ("aedat2", "nmnist", "nope"):
        with pytest.raises(ValueError, match="cannot write"):
            write_events(tmp_path / "x.bin", rec, format=bad)
    with pytest.raises(ValueError, match="does not write"):
        writers.format_extension("csv")
    assert not list(tmp_path.iterdir())

"""Token cache (HDF5) writer/reader, TokenDataset and labels, on small synthetic recordings.

The expected tokens are computed here independently from the token contract of DESIGN.md §3
(``token = P2 · (x2 · H2 + y2) + p2``, ``dt_k = t_k − t_{k−1}``), not with ``tokenize``.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventssm.events import EventFileError, make_events
from eventssm.tokenizers.dataset import (
    DatasetError,
    TokenDataset,
    TokenizerSettings,
    TokenSamples,
    build_cache,
    class_ids,
    find_recordings,
    is_token_cache,
    labels_from_csv,
    labels_from_folder,
    labels_from_name,
    read_cache_info,
    tokenize_file,
    tokenize_recording,
    write_cache,
)

SENSOR = (24, 16, 2)


def random_events(rng: np.random.Generator, n: int, sensor=SENSOR, sort=True) -> np.ndarray:
    t = rng.integers(0, 2_000_000, n)
    if sort:
        t = np.sort(t)
    return make_events(
        rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), t, rng.integers(0, 2, n)
    )


def save_npz(path: Path, events: np.ndarray, sensor=SENSOR) -> Path:
    """A recording as numpy writes it: members x, y, t, p, sensor_size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # np.savez would append .npz to a str path without it
        np.savez(fh, x=events["x"], y=events["y"], t=events["t"], p=events["p"],
                 sensor_size=np.asarray(sensor))
    return path


def expected_tokens(events, sensor, *, downsample=1, target=None, merge=False, unit="ms"):
    """Independent reference of the token contract (numpy integer arithmetic)."""
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    w, h = sensor[0], sensor[1]
    if target is not None:
        x2, y2 = x * target[0] // w, y * target[1] // h
        h2 = target[1]
    else:
        x2, y2 = x // downsample, y // downsample
        h2 = -(-h // downsample)
    p2 = 1 if merge else 2
    p = np.zeros_like(x) if merge else events["p"].astype(np.int64)
    tok = p2 * (x2 * h2 + y2) + p
    t = events["t"].astype(np.int64)
    dt_us = np.concatenate([[0], np.diff(t)]).astype(np.float64)
    scale = {"us": 1.0, "ms": 1e-3, "s": 1e-6}[unit]
    return tok.astype(np.int32), (dt_us * scale).astype(np.float32)


@pytest.fixture
def corpus(tmp_path):
    """Two classes x three recordings in class folders; returns (files, events, labels)."""
    rng = np.random.default_rng(7)
    files, events, labels = [], [], []
    for cls in ("walk", "jump"):
        for i, n in enumerate((37, 120, 301)):
            ev = random_events(rng, n + i)
            files.append(save_npz(tmp_path / "data" / cls / f"{cls}_{i}.npz", ev))
            events.append(ev)
            labels.append(cls)
    return files, events, labels


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
        out["attrs"] = {k: str(v) for k, v in f.attrs.items() if k != "root"}
    return out


# ---------------------------------------------------------------------------- settings


def test_settings_validation_and_json_round_trip():
    s = TokenizerSettings(downsample=2, merge_polarity=True, time_unit="us", slice_events=10,
                          overlap=3)
    assert s.stride == 7
    assert TokenizerSettings.from_dict(s.to_dict()) == s
    t = TokenizerSettings(target_size=[8, 4])
    assert t.target_size == (8, 4) and TokenizerSettings.from_dict(t.to_dict()) == t
    assert t.grid_size(SENSOR) == (8, 4, 2) and t.vocab_size(SENSOR) == 64
    assert s.grid_size((25, 17, 2)) == (13, 9, 1)
    assert s.differences(TokenizerSettings()) == [
        "downsample: 2 != 1", "merge_polarity: True != False", "time_unit: 'us' != 'ms'",
        "slice_events: 10 != None", "overlap: 3 != 0",
    ]
    for bad in (dict(downsample=0), dict(downsample=2, target_size=(4, 4)), dict(time_unit="h"),
                dict(slice_events=4, overlap=4), dict(overlap=2), dict(target_size=(0, 3)),
                dict(slice_events=0)):
        with pytest.raises(ValueError):
            TokenizerSettings(**bad)
    with pytest.raises(ValueError, match="unknown tokenizer settings"):
        TokenizerSettings.from_dict({"downsample": 1, "bogus": 3})


# ---------------------------------------------------------------------------- tokenizing


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 300), length=st.integers(1, 80), overlap_frac=st.floats(0, 0.95),
       seed=st.integers(0, 2**16))
def test_tokenize_recording_slices_are_event_ranges(n, length, overlap_frac, seed):
    rng = np.random.default_rng(seed)
    ev = random_events(rng, n)
    overlap = min(int(length * overlap_frac), length - 1)
    s = TokenizerSettings(slice_events=length, overlap=overlap, downsample=3)
    tokens, dt, lengths, ranges = tokenize_recording(ev, SENSOR, s)
    stride = length - overlap
    # the windows: fixed length (or the whole short recording), cover [0, n) in order
    if n == 0:
        assert len(ranges) == 0 and len(tokens) == 0
        return
    assert ranges[0, 0] == 0 and ranges[-1, 1] == n
    assert np.all(ranges[:, 1] - ranges[:, 0] == min(n, length))
    steps = np.diff(ranges[:, 0])
    assert np.all(steps[:-1] == stride) and np.all((steps > 0) & (steps <= stride))
    assert np.all(ranges[1:, 0] <= ranges[:-1, 1])  # no gap between windows
    assert np.array_equal(lengths, ranges[:, 1] - ranges[:, 0])
    off = np.concatenate([[0], np.cumsum(lengths)])
    for k, (a, b) in enumerate(ranges):
        et, ed = expected_tokens(ev[a:b], SENSOR, downsample=3)
        assert np.array_equal(tokens[off[k] : off[k + 1]], et)
        np.testing.assert_allclose(dt[off[k] : off[k + 1]], ed, rtol=1e-6)
        assert dt[off[k]] == 0.0


def test_tokenize_file_names_the_file_for_tokenizer_errors(tmp_path):
    rng = np.random.default_rng(1)
    ev = random_events(rng, 50, sort=False)
    ev["t"][10], ev["t"][11] = 500, 100  # a step back in time
    path = save_npz(tmp_path / "unsorted.npz", ev)
    with pytest.raises(EventFileError) as err:
        tokenize_file(path)
    assert str(path) in str(err.value) and "decrease" in str(err.value)
    # with sort_events the samples are the stably sorted events
    item = tokenize_file(path, settings=TokenizerSettings(sort_events=True))
    order = np.argsort(ev["t"], kind="stable")
    assert np.array_equal(item.tokens, expected_tokens(ev[order], SENSOR)[0])


# ---------------------------------------------------------------------------- cache contents


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(slice_events=50, overlap=20, downsample=2, time_unit="us"),
        dict(target_size=(7, 5), merge_polarity=True, time_unit="s", slice_events=64),
    ],
)
def test_cache_holds_every_sample(tmp_path, corpus, kw):
    files, events, labels = corpus
    s = TokenizerSettings(**kw)
    out = tmp_path / "cache.h5"
    report = build_cache(out, files, labels, settings=s, workers=1)
    ds = TokenDataset(out, settings=s)
    assert ds.class_names == ("jump", "walk")
    assert ds.sensor_size == SENSOR
    assert ds.settings == s
    if "target_size" in kw:
        grid = (*kw["target_size"], 1)
    else:
        d = s.downsample
        grid = (-(-SENSOR[0] // d), -(-SENSOR[1] // d), 2)
    assert ds.grid_size == grid and ds.vocab_size == int(np.prod(grid))
    # walk through the samples in order: every file's slices, in file order
    i = 0
    for f, ev, lab in zip(files, events, labels):
        n = len(ev)
        if s.slice_events is None:
            windows = [(0, n)]
        else:
            st_ = s.stride
            starts = list(range(0, max(n - s.slice_events, 0) + 1, st_))
            if starts[-1] + s.slice_events < n:
                starts.append(n - s.slice_events)
            windows = [(a, min(a + s.slice_events, n)) for a in starts]
        for a, b in windows:
            tok, dt, label = ds[i]
            et, ed = expected_tokens(ev[a:b], SENSOR, downsample=s.downsample,
                                     target=s.target_size, merge=s.merge_polarity,
                                     unit=s.time_unit)
            assert tok.dtype == np.int32 and dt.dtype == np.float32
            assert np.array_equal(tok, et)
            np.testing.assert_allclose(dt, ed, rtol=1e-6)
            assert label == ds.class_names.index(lab)
            assert tuple(ds.ranges[i]) == (a, b)
            assert ds.source_path(i) == str(f)
            i += 1
    assert i == len(ds) == report.samples_added
    assert report.sources_added == len(files)
    assert np.array_equal(ds.offsets, np.concatenate([[0], np.cumsum(ds.lengths)]))
    assert ds[-1][0].tolist() == ds[len(ds) - 1][0].tolist()
    with pytest.raises(IndexError):
        ds[len(ds)]
    # sources table: relative paths, size, mtime, event counts
    assert [src.path for src in ds.sources] == [
        f"{lab}/{lab}_{k % 3}.npz" for k, lab in enumerate(labels)
    ]
    for src, f, ev in zip(ds.sources, files, events):
        st_ = os.stat(f)
        assert (src.size, src.mtime_ns, src.n_events) == (st_.st_size, st_.st_mtime_ns, len(ev))
        assert src.sensor_size == SENSOR and src.format == "npz"
    ds.close()


def test_detokenized_cache_equals_downsampled_events(tmp_path, corpus):
    from eventssm.tokenizers.functional import detokenize

    files, events, _ = corpus
    out = tmp_path / "c.h5"
    build_cache(out, files, None, settings=TokenizerSettings(downsample=5))
    with TokenDataset(out) as ds:
        assert ds.class_names == () and np.all(ds.labels == -1)
        for i, ev in enumerate(events):
            tok, _, label = ds[i]
            x, y, p = detokenize(tok, ds.grid_size)
            assert label == -1
            assert np.array_equal(x, ev["x"] // 5) and np.array_equal(y, ev["y"] // 5)
            assert np.array_equal(p, ev["p"])


def test_mismatched_settings_raise(tmp_path, corpus):
    files, _, labels = corpus
    out = tmp_path / "c.h5"
    build_cache(out, files, labels, settings=TokenizerSettings(downsample=2))
    TokenDataset(out, settings={"downsample": 2})  # the same, as a dict
    with pytest.raises(DatasetError, match=r"downsample: 2 != 4"):
        TokenDataset(out, settings=TokenizerSettings(downsample=4))
    before = out.read_bytes()
    with pytest.raises(DatasetError, match="other tokenizer settings"):
        build_cache(out, files, labels, settings=TokenizerSettings(), append=True)
    assert out.read_bytes() == before


def test_append_equals_one_build_and_skips_cached_files(tmp_path, corpus):
    files, _, labels = corpus
    s = TokenizerSettings(slice_events=40, overlap=10)
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    build_cache(whole, files, labels, settings=s)
    build_cache(part, files[:2], labels[:2], settings=s, class_names=["jump", "walk"])
    rep = build_cache(part, files, labels, settings=s, append=True)
    assert rep.unchanged == [str(f) for f in files[:2]] and rep.sources_added == 4
    a, b = h5_arrays(whole), h5_arrays(part)
    assert a.keys() == b.keys()
    for k in a:
        if k not in ("attrs", "sources/path"):  # paths are relative to different roots
            assert np.array_equal(a[k], b[k]), k
    assert a["attrs"] == b["attrs"]
    ia, ib = read_cache_info(whole), read_cache_info(part)
    assert ib.root == str(files[0].parent) and ib.sources[3].path == "../jump/jump_0.npz"
    assert [ia.source_path(i) for i in range(6)] == [ib.source_path(i) for i in range(6)]
    # appending the same files again adds nothing and leaves the file as it was
    before = part.read_bytes()
    rep = build_cache(part, files, labels, settings=s, append=True)
    assert (rep.samples_added, len(rep.unchanged)) == (0, len(files))
    assert part.read_bytes() == before
    # a cached source that changed is an error
    os.utime(files[0], ns=(0, 1_000_000_000))
    with pytest.raises(DatasetError, match="changed since it was cached"):
        build_cache(part, files, labels, settings=s, append=True)
    assert part.read_bytes() == before


def test_append_checks_classes_and_sensor(tmp_path, corpus):
    files, events, labels = corpus
    out = tmp_path / "c.h5"
    build_cache(out, files[:3], labels[:3], settings=TokenizerSettings())  # only "walk"
    before = out.read_bytes()
    with pytest.raises(DatasetError, match=r"unknown class 'jump'"):
        build_cache(out, files, labels, append=True)
    with pytest.raises(DatasetError, match="cache is labelled"):
        build_cache(out, files[3:], None, append=True)
    other = save_npz(tmp_path / "data" / "walk" / "walk_9.npz", events[0], sensor=(40, 40, 2))
    with pytest.raises(EventFileError, match="sensor size 40x40x2 differs from 24x16x2"):
        build_cache(out, [other], ["walk"], append=True)
    assert out.read_bytes() == before


def test_workers_give_the_same_cache(tmp_path, corpus):
    files, _, labels = corpus
    s = TokenizerSettings(slice_events=33, overlap=5)
    build_cache(tmp_path / "one.h5", files, labels, settings=s, workers=1)
    build_cache(tmp_path / "two.h5", files, labels, settings=s, workers=2)
    a, b = h5_arrays(tmp_path / "one.h5"), h5_arrays(tmp_path / "two.h5")
    for k in a:
        if k != "attrs":
            assert np.array_equal(a[k], b[k]), k
    assert a["attrs"] == b["attrs"]


def test_buffered_writes_give_the_same_cache(tmp_path, corpus, monkeypatch):
    import eventssm.tokenizers.cache.writer as writer

    files, _, labels = corpus
    s = TokenizerSettings(slice_events=30, overlap=7)
    build_cache(tmp_path / "big.h5", files, labels, settings=s)
    monkeypatch.setattr(writer, "_FLUSH", 50)  # flush after nearly every file...
    monkeypatch.setattr(writer, "_FLUSH_SOURCES", 2)  # ...and every second source
    build_cache(tmp_path / "small.h5", files, labels, settings=s)
    a, b = h5_arrays(tmp_path / "big.h5"), h5_arrays(tmp_path / "small.h5")
    for k in a:
        if k != "attrs":
            assert np.array_equal(a[k], b[k]), k


def test_bad_files_fail_or_are_skipped(tmp_path, corpus):
    files, _, labels = corpus
    bad = tmp_path / "data" / "walk" / "walk_bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    all_files, all_labels = [*files[:2], bad, *files[2:]], [*labels[:2], "walk", *labels[2:]]
    out = tmp_path / "c.h5"
    with pytest.raises(EventFileError, match=r"walk_bad\.npz"):
        build_cache(out, all_files, all_labels)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary file left
    rep = build_cache(out, all_files, all_labels, skip_bad=True)
    assert len(rep.bad) == 1 and "walk_bad.npz" in rep.bad[0]
    assert len(TokenDataset(out)) == len(files)


def test_interrupted_write_leaves_old_output(tmp_path, corpus):
    files, _, labels = corpus
    out = tmp_path / "c.h5"
    build_cache(out, files[:1], labels[:1])
    before = out.read_bytes()

    def items():
        yield tokenize_file(files[0], label=0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_cache(out, items(), class_names=["walk"], overwrite=True)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "data"]
    with pytest.raises(DatasetError, match="exists"):
        write_cache(out, iter(()), class_names=["walk"])


def test_unknown_compression_is_refused_before_any_work(tmp_path, corpus):
    files, _, labels = corpus
    out = tmp_path / "c.h5"
    with pytest.raises(DatasetError, match="unknown cache compression 'zstd'"):
        build_cache(out, files, labels, compression="zstd")
    with pytest.raises(DatasetError, match="gzip level must be 0-9"):
        write_cache(out, iter(()), compression="gzip", compression_level=11)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    build_cache(out, files, labels, compression="lzf")  # lzf takes no level
    with h5py.File(out, "r") as f:
        assert f["tokens"].compression == "lzf" and f["dt"].compression == "lzf"


def test_not_a_cache(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DatasetError, match="not an eventssm token cache"):
        TokenDataset(tmp_path / "other.h5")
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        TokenDataset(tmp_path / "text.h5")
    with pytest.raises(DatasetError, match="no such cache"):
        TokenDataset(tmp_path / "missing.h5")
    assert not is_token_cache(tmp_path / "other.h5") and not is_token_cache(tmp_path / "text.h5")


def test_damaged_index_is_detected(tmp_path, corpus):
    files, _, labels = corpus
    out = tmp_path / "c.h5"
    build_cache(out, files, labels)
    with h5py.File(out, "r+") as f:
        f["offsets"][2] = 10**9
    with pytest.raises(DatasetError, match="damaged"):
        TokenDataset(out)


# ---------------------------------------------------------------------------- access


def test_handle_is_reopened_per_process_and_pickles(tmp_path, corpus, monkeypatch):
    files, _, labels = corpus
    out = tmp_path / "c.h5"
    build_cache(out, files, labels)
    ds = TokenDataset(out)
    first = ds[3]
    handle = ds._h5
    assert handle is not None and ds[4] is not None and ds._h5 is handle  # kept open
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # as seen in a forked child
    again = ds[3]
    assert ds._h5 is not handle and np.array_equal(again[0], first[0])
    monkeypatch.undo()
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._h5 is None
    assert np.array_equal(clone[3][0], first[0]) and clone[3][2] == first[2]
    clone.close()
    ds.close()
    assert ds._h5 is None
    assert np.array_equal(ds[3][1], first[1])  # reopens after close
    ds.close()


_FORK_CHILD = """
import json, multiprocessing, sys
from eventssm.tokenizers.dataset import TokenDataset

def read(ds):
    return [ds[i][0].tolist() for i in range(len(ds))]

ds = TokenDataset(sys.argv[1])
parent = read(ds)  # the parent opens the HDF5 handle before forking
with multiprocessing.get_context("fork").Pool(1) as pool:
    child = pool.apply(read, (ds,))
ds.close()
print(json.dumps({"jax": "jax" in sys.modules, "parent": parent, "child": child}))
"""


def test_forked_workers_read_the_cache(tmp_path, corpus):
    """A TokenDataset whose handle is open in the parent is read correctly in a forked child.

    Runs in a fresh interpreter: forking this test process is unsafe once another test has
    loaded JAX, and eventssm.tokenizers must not load it (checked too).
    """
    import json
    import subprocess

    files, events, labels = corpus
    out = tmp_path / "c.h5"
    build_cache(out, files, labels)
    proc = subprocess.run([sys.executable, "-W", "error", "-c", _FORK_CHILD, str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["jax"] is False
    expected = [expected_tokens(ev, SENSOR)[0].tolist() for ev in events]  # build order = file order
    assert res["parent"] == expected
    assert res["child"] == expected


def test_from_files_equals_cache(tmp_path, corpus):
    files, _, labels = corpus
    s = TokenizerSettings(slice_events=45, overlap=15, downsample=2, time_unit="us")
    out = tmp_path / "c.h5"
    build_cache(out, files, labels, settings=s)
    cached = TokenDataset(out)
    direct = TokenDataset.from_files(files, labels, s)
    assert isinstance(cached, TokenSamples) and isinstance(direct, TokenSamples)
    assert len(direct) == len(cached)
    for attr in ("class_names", "sensor_size", "grid_size", "vocab_size", "settings"):
        assert getattr(direct, attr) == getattr(cached, attr), attr
    for attr in ("labels", "lengths", "ranges", "source_index", "offsets"):
        assert np.array_equal(getattr(direct, attr), getattr(cached, attr)), attr
    for i in range(len(cached)):
        (t1, d1, l1), (t2, d2, l2) = cached[i], direct[i]
        assert np.array_equal(t1, t2) and np.array_equal(d1, d2) and l1 == l2
        assert direct.source_path(i) == cached.source_path(i)
    cached.close()
    direct.close()


def test_from_files_checks_sensor_and_order(tmp_path, corpus):
    files, events, _ = corpus
    other = save_npz(tmp_path / "big.npz", events[0], sensor=(30, 30, 2))
    with pytest.raises(EventFileError, match=r"big\.npz: sensor size 30x30x2 differs"):
        TokenDataset.from_files([files[0], other], ["a", "b"])
    ds = TokenDataset.from_files([files[0], other], ["a", "b"], sensor_size=(30, 30, 2))
    assert ds.sensor_size == (30, 30, 2) and ds.vocab_size == 1800
    ev = events[0].copy()
    ev["t"] = ev["t"][::-1]
    unsorted = save_npz(tmp_path / "rev.npz", ev)
    with pytest.raises(EventFileError, match=r"rev\.npz: timestamps decrease"):
        TokenDataset.from_files([unsorted])
    ds = TokenDataset.from_files([unsorted], settings=TokenizerSettings(sort_events=True))
    order = np.argsort(ev["t"], kind="stable")
    assert np.array_equal(ds[0][0], expected_tokens(ev[order], SENSOR)[0])


# ---------------------------------------------------------------------------- inputs, labels


def test_find_recordings(tmp_path, corpus):
    files, _, labels = corpus
    data = tmp_path / "data"
    (data / "notes.txtx").write_text("ignored: unknown extension")
    (data / ".hidden.npz").write_bytes(b"")
    build_cache(data / "old_cache.h5", files, labels)  # an earlier output is not an input
    found = find_recordings([data])
    assert found == sorted(files)  # sorted walk: jump/ before walk/
    assert find_recordings([files[3], data], exclude=[files[0]]) == [
        files[3], *[f for f in sorted(files) if f not in (files[0], files[3])]
    ]
    assert find_recordings([data], format="npy") == []
    with pytest.raises(DatasetError, match="no such file"):
        find_recordings([tmp_path / "nope"])
    with pytest.raises(DatasetError, match="unknown format"):
        find_recordings([data], format="nope")


def _text_files(folder: Path, events: np.ndarray) -> dict[str, bool]:
    """Text files beside recordings -> whether each holds event data (written by hand)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"{int(e['t'])},{int(e['x'])},{int(e['y'])},{int(e['p'])}" for e in events[:5]]
    files = {
        "events_header.csv": ("# exported\n\ufefft,x,y,p\n" + "\n".join(rows) + "\n", True),
        "events_named.csv": ('"Timestamp";"X";"Y";"Polarity";"extra"\n'
                             + "\n".join(r.replace(",", ";") + ";0" for r in rows) + "\n", True),
        "events_bare.txt": ("\n".join(r.replace(",", " ") for r in rows) + "\n", True),
        "labels.csv": ("file,label\nwalk/walk_0.npz,walk\n", False),
        "README.txt": ("These recordings were made on a sunny day.\n", False),
        "three_numbers.csv": ("1,2,3\n4,5,6\n", False),
        "comments_only.txt": ("# nothing here\n\n", False),
        "empty.csv": ("", False),
    }
    out = {}
    for name, (text, is_events) in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        out[name] = is_events
    (folder / "binary.txt").write_bytes(b"\xff\xfe\x00\x01" * 64)
    out["binary.txt"] = False
    return out


def test_is_event_text_agrees_with_the_csv_reader(tmp_path, corpus):
    from eventssm.io import read_events

    _, events, _ = corpus
    expected = _text_files(tmp_path / "txt", events[0])
    from eventssm.tokenizers.dataset import is_event_text

    for name, is_events in expected.items():
        f = tmp_path / "txt" / name
        assert is_event_text(f) == is_events, name
        # the reader is the oracle: the rule keeps exactly the files it decodes
        try:
            rec = read_events(f, sensor_size=SENSOR)
            decoded = True
        except EventFileError:
            decoded = False
        assert decoded == is_events, name
        if decoded:
            assert rec.events["t"].tolist() == events[0]["t"][:5].tolist(), name
    assert not is_event_text(tmp_path / "missing.csv")


def test_find_recordings_skips_labels_and_other_text_in_folders(tmp_path, corpus):
    files, events, _ = corpus
    data = tmp_path / "data"
    expected = _text_files(data, events[0])
    found = find_recordings([data])
    text_kept = sorted(data / n for n, ok in expected.items() if ok)
    assert found == sorted([*files, *text_kept])
    # named explicitly, a text file is read whatever its content
    assert find_recordings([data / "labels.csv", data / "README.txt"]) == [data / "labels.csv", data / "README.txt"]
    # an excluded path (the --labels CSV) is dropped, also when it is named through a symlink
    link = tmp_path / "link.csv"
    link.symlink_to(data / "events_header.csv")
    assert data / "events_header.csv" not in find_recordings([data], exclude=[link])


def test_sources_format_names_the_reader_not_the_stored_meta(tmp_path, corpus):
    """A file written by write_events keeps the recording's meta, e.g. format "simulated";
    the cache records the reader that decoded it."""
    from eventssm.events import Recording
    from eventssm.io import read_events, write_events

    _, events, _ = corpus
    rec = Recording(events[0], SENSOR, {"format": "simulated", "camera": "simulator"})
    (tmp_path / "in").mkdir()
    h5 = write_events(tmp_path / "in" / "a.h5", rec)
    npz = write_events(tmp_path / "in" / "b.npz", rec)
    csv_ = tmp_path / "in" / "c.csv"
    csv_.write_text("x,y,t,p\n" + "".join(f"{e['x']},{e['y']},{e['t']},{int(e['p'])}\n" for e in events[0]))
    meta = read_events(h5).meta
    assert meta["format"] == "hdf5" and meta["source_format"] == "simulated"
    files = [h5, npz, csv_]
    out = tmp_path / "c.h5"
    build_cache(out, files, None, sensor_size=SENSOR)
    with h5py.File(out, "r") as f:
        stored = [v.decode() if isinstance(v, bytes) else v for v in f["sources/format"][()]]
    assert stored == ["hdf5", "npz", "csv"]
    assert [s.format for s in read_cache_info(out).sources] == stored
    direct = TokenDataset.from_files(files, sensor_size=SENSOR)
    assert [s.format for s in direct.sources] == stored
    assert np.array_equal(direct[2][0], expected_tokens(events[0], SENSOR)[0])  # re-read via "csv"
    direct.close()
    # an explicit reader is recorded as given
    assert tokenize_file(h5, format="hdf5").source.format == "hdf5"


def test_labels_from_folder_and_name(corpus):
    files, _, labels = corpus
    assert labels_from_folder(files) == labels
    assert labels_from_name(files, r"^([a-z]+)_") == labels
    assert labels_from_name(files, r"_(\d)$") == ["0", "1", "2"] * 2
    with pytest.raises(DatasetError, match=r"walk_0.npz: no label"):
        labels_from_name(files, r"^(jump)")
    with pytest.raises(DatasetError, match="needs one group"):
        labels_from_name(files, r"^[a-z]+")
    with pytest.raises(DatasetError, match="invalid label pattern"):
        labels_from_name(files, r"^([a-z]+")


def test_labels_from_csv(tmp_path, corpus):
    files, _, labels = corpus
    csv = tmp_path / "data" / "labels.csv"
    rows = ["label,file"]  # column order does not matter
    rows += [f"{lab},{Path(f).relative_to(csv.parent).as_posix()}" for f, lab in zip(files, labels)]
    csv.write_text("\n".join(rows) + "\n\n")
    assert labels_from_csv(files, csv) == labels
    # bare names match by basename; a missing file is an error naming it
    csv.write_text("file,label\nwalk_0.npz,a\nwalk_1.npz,b\n")
    assert labels_from_csv(files[:2], csv) == ["a", "b"]
    with pytest.raises(DatasetError, match=r"walk_2.npz: no label in .*labels.csv \(not listed\)"):
        labels_from_csv(files[:3], csv)
    csv.write_text("file,label\nx/walk_0.npz,a\ny/walk_0.npz,b\n")
    with pytest.raises(DatasetError, match="ambiguous basename"):
        labels_from_csv(files[:1], csv)
    csv.write_text("walk_0.npz,a\n")
    with pytest.raises(DatasetError, match="header row"):
        labels_from_csv(files[:1], csv)
    csv.write_text("file,label\nwalk_0.npz,a\nwalk_0.npz,b\n")
    with pytest.raises(DatasetError, match="listed twice"):
        labels_from_csv(files[:1], csv)


def test_class_ids():
    ids, names = class_ids(["b", "a", "c", "a"])
    assert names == ("a", "b", "c") and ids.tolist() == [1, 0, 2, 0]
    ids, names = class_ids(["10", "2", "1"])  # integers sort numerically
    assert names == ("1", "2", "10") and ids.tolist() == [2, 1, 0]
    ids, names = class_ids(["x", "y"], class_names=["y", "x", "z"])
    assert names == ("y", "x", "z") and ids.tolist() == [1, 0]
    with pytest.raises(DatasetError, match=r"f2: unknown class 'q'"):
        class_ids(["x", "q"], ["f1", "f2"], class_names=["x"])


def test_cache_info_reports_sources(tmp_path, corpus):
    files, _, labels = corpus
    out = tmp_path / "c.h5"
    build_cache(out, files, labels)
    info = read_cache_info(out)
    assert info.root == str(tmp_path / "data")
    assert [info.source_path(i) for i in range(len(files))] == [str(f) for f in files]
    assert [s.label for s in info.sources] == [1, 1, 1, 0, 0, 0]


def _stop_the_first_heap_walk(path: Path) -> int:
    """Damage ``path`` as the fuzz inputs that hung libhdf5 are damaged: in its first global
    heap collection (HDF5 spec III.E: "GCOL", version, 3 reserved bytes, u64 size, then
    objects of a 16-byte header u16 index, u16 refcount, 4 reserved, u64 size and data padded
    to 8 bytes), give the free-space object (index 0) size 0. Returns the byte changed."""
    import struct

    data = bytearray(path.read_bytes())
    start = data.index(b"GCOL")
    (size,) = struct.unpack_from("<Q", data, start + 8)
    pos = start + 16
    while pos < start + size:
        index, _, _, n = struct.unpack_from("<HHIQ", data, pos)
        if index == 0:
            struct.pack_into("<Q", data, pos + 8, 0)
            path.write_bytes(bytes(data))
            return pos
        pos += 16 + n + (-n % 8)
    raise AssertionError("no free space in the first collection")


def _open_cache(path: str) -> str:
    """Worker: what opening the cache says."""
    try:
        TokenDataset(path)
    except DatasetError as exc:
        return str(exc)
    return "opened"


def test_a_cache_with_a_damaged_heap_is_one_error_not_a_hang(corpus, tmp_path):
    """libhdf5 loops for ever on a global heap whose free space has size 0 (the fuzz campaign's
    hangs, tests/io/test_hdf5_heaps.py); a cache so damaged is refused before h5py opens it.
    The open runs in a worker with a time limit, so a regression fails instead of hanging."""
    from eventssm.isolate import run_isolated

    files, _, labels = corpus
    out = tmp_path / "c.h5"
    build_cache(out, files, labels, settings=TokenizerSettings(), workers=1)
    [(_, ok)] = run_isolated(_open_cache, [str(out)], workers=1, timeout=60)
    assert ok.value == "opened"
    where = _stop_the_first_heap_walk(out)
    [(_, res)] = run_isolated(_open_cache, [str(out)], workers=1, timeout=60)
    assert res.error is None, res.error  # "gave up after 60 s": the hang is back
    assert res.value.startswith(f"{out}: damaged HDF5 file: global heap collection at byte ")
    assert f"free space of size 0 at byte {where:,}" in res.value and "eventssm preprocess" in res.value

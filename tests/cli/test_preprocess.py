"""``eventssm preprocess`` end to end with click's CliRunner: real recordings, synthetic
corpora, and every bad-input case (one error line naming the file, no output, no traceback)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from eventssm.cli import main
from eventssm.events import EventFileError, make_events
from eventssm.io import read_events
from eventssm.tokenizers.dataset import TokenDataset, TokenizerSettings, find_recordings
from eventssm.tokenizers.functional import detokenize

SENSOR = (20, 12, 2)


def run(*args: str):
    return CliRunner().invoke(main, ["preprocess", *map(str, args)])


def save_npz(path: Path, n: int, seed: int, sensor=SENSOR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = make_events(rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n),
                     np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 2, n))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, x=ev["x"], y=ev["y"], t=ev["t"], p=ev["p"], sensor_size=np.asarray(sensor))
    return ev


@pytest.fixture
def corpus(tmp_path) -> Path:
    """tmp/data/{left,right}/{cls}_{i}.npz, 3 per class."""
    for c, cls in enumerate(("left", "right")):
        for i in range(3):
            save_npz(tmp_path / "data" / cls / f"{cls}_{i}.npz", 60 + 25 * i, 10 * c + i)
    return tmp_path / "data"


def assert_one_error(result, *needles: str) -> None:
    """Non-zero exit, exactly one stderr line 'error: ...' containing the needles, no traceback."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "Traceback" not in result.output


def test_help():
    result = CliRunner().invoke(main, ["preprocess", "--help"])
    assert result.exit_code == 0
    for opt in ("--labels-from", "--slice-events", "--overlap", "--sensor-size", "--workers",
                "--skip-bad", "--append", "--overwrite", "--target-size", "--merge-polarity"):
        assert opt in result.output


# ---------------------------------------------------------------------------- real data


def test_real_recordings_equal_direct_tokenize(tmp_path, recordings_dir):
    """Every real recording that a reader decodes lands in the cache, token for token; the
    ones that cannot be read (e.g. the header-only AEDAT file) are listed as skipped."""
    sensor = (1280, 720, 2)  # the largest sensor among the recordings holds all of them
    out = tmp_path / "real.h5"
    result = run(recordings_dir, "-o", out, "--labels-from", "name", "--name-regex",
                 r"^([A-Za-z]+)", "--sensor-size", "1280x720", "--sort-events", "--skip-bad",
                 "--workers", "1", "--time-unit", "us")
    assert result.exit_code == 0, result.output
    readable, unreadable = [], []
    for f in find_recordings([recordings_dir]):
        try:
            readable.append((f, read_events(f, sensor_size=sensor)))
        except EventFileError:
            unreadable.append(f)
    assert readable, "no real recording could be read"
    skipped = result.stderr.strip().splitlines()
    assert len(skipped) == len(unreadable)
    for f in unreadable:
        assert sum(ln.startswith(f"skipped: {f}: ") for ln in skipped) == 1, (f, skipped)
    with TokenDataset(out) as ds:
        assert ds.sensor_size == sensor and ds.vocab_size == 2 * 1280 * 720
        assert len(ds) == len(readable)
        assert [ds.source_path(i) for i in range(len(ds))] == [str(f) for f, _ in readable]
        for i, (f, rec) in enumerate(readable):
            tok, dt, label = ds[i]
            ev = rec.events[np.argsort(rec.events["t"], kind="stable")]
            # independent of tokenize: the token contract and dt in microseconds
            expected = 2 * (ev["x"].astype(np.int64) * sensor[1] + ev["y"]) + ev["p"]
            assert np.array_equal(tok, expected), f
            assert np.array_equal(dt[1:], np.diff(ev["t"]).astype(np.float32)), f
            x, y, p = detokenize(tok, ds.grid_size)
            assert np.array_equal(x, ev["x"]) and np.array_equal(y, ev["y"])
            assert np.array_equal(p, ev["p"])
            assert ds.class_names[label] == re.match(r"^([A-Za-z]+)", f.stem).group(1)


def test_real_same_size_group_with_csv(tmp_path, recordings_dir):
    """The two DVS128 walks share a sensor: no --sensor-size needed; labels from a CSV."""
    names = ["alex_walking_again.aedat", "neal_walking.aedat"]
    files = [recordings_dir / n for n in names]
    for f in files:
        if not f.exists():
            pytest.skip(f"{f.name} not available")
    csv = tmp_path / "labels.csv"
    csv.write_text(f"file,label\n{files[0]},alex\n{files[1]},neal\n")
    out = tmp_path / "walk.h5"
    result = run(*files, "-o", out, "--labels", csv, "--slice-events", "8192", "--overlap",
                 "4096", "--downsample", "4", "--workers", "1", "-q")
    assert result.exit_code == 0, result.output
    s = TokenizerSettings(downsample=4, slice_events=8192, overlap=4096)
    with TokenDataset(out, settings=s) as ds:
        assert ds.class_names == ("alex", "neal") and ds.grid_size == (32, 32, 2)
        k = 0
        for label, f in enumerate(files):
            ev = read_events(f).events
            n = len(ev)
            starts = list(range(0, n - 8192 + 1, 4096))
            if starts[-1] + 8192 < n:
                starts.append(n - 8192)
            for a in starts:
                tok, dt, lab = ds[k]
                e = ev[a : a + 8192]
                expected = 2 * ((e["x"] // 4).astype(np.int64) * 32 + e["y"] // 4) + e["p"]
                assert lab == label and np.array_equal(tok, expected)
                assert dt[0] == 0 and np.allclose(dt[1:], np.diff(e["t"]) / 1000.0, rtol=1e-6)
                k += 1
        assert k == len(ds)


# ---------------------------------------------------------------------------- synthetic


def test_folder_labels_and_summary(tmp_path, corpus):
    out = tmp_path / "c.h5"
    result = run(corpus, "-o", out, "--labels-from", "folder", "--slice-events", "50",
                 "--overlap", "10", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "2 classes" in result.stdout
    with TokenDataset(out) as ds:
        assert ds.class_names == ("left", "right")
        assert ds.settings == TokenizerSettings(slice_events=50, overlap=10)
        assert sorted(set(ds.labels.tolist())) == [0, 1]


def test_folder_walk_skips_labels_csv_and_notes(tmp_path, corpus):
    """A labels CSV and a README beside the recordings are not recordings; an event CSV is."""
    ev = save_npz(tmp_path / "scratch.npz", 40, 99)
    rows = "".join(f"{e['x']},{e['y']},{e['t']},{int(e['p'])}\n" for e in ev)
    (corpus / "left" / "left_9.csv").write_text("x,y,t,p\n" + rows)
    listed = [*sorted(corpus.rglob("*.npz")), corpus / "left" / "left_9.csv"]
    (corpus / "labels.csv").write_text(
        "file,label\n" + "".join(f"{f.relative_to(corpus).as_posix()},{f.parent.name}\n" for f in listed))
    (corpus / "README.txt").write_text("Six recordings, two classes.\n")
    (corpus / "right" / "notes.csv").write_text("note,author\nrecorded indoors,me\n")
    expected = sorted(str(f) for f in listed)
    for k, labels in enumerate((["--labels-from", "folder"], ["--labels", corpus / "labels.csv"])):
        out = tmp_path / f"c{k}.h5"
        result = run(corpus, "-o", out, *labels, "--sensor-size", "20x12", "--workers", "1")
        assert result.exit_code == 0, result.output
        assert "7 samples from 7 recordings" in result.stdout
        with TokenDataset(out) as ds:
            assert sorted(ds.source_path(i) for i in range(len(ds))) == expected
            assert {s.format for s in ds.sources} == {"npz", "csv"}
            i = next(i for i in range(len(ds)) if ds.source_path(i).endswith("left_9.csv"))
            assert ds.class_names[ds.labels[i]] == "left"
            assert np.array_equal(detokenize(ds[i][0], (20, 12, 2))[0], ev["x"])
    # named explicitly, a non-event text file is still read, and fails with one line
    result = run(corpus / "right" / "notes.csv", "-o", tmp_path / "n.h5", "--no-labels")
    assert_one_error(result, "notes.csv", "header")


def test_sources_format_is_the_reader(tmp_path):
    """Simulated HDF5 files carry meta format "simulated"; the cache names the hdf5 reader."""
    raw = tmp_path / "raw"
    sim = CliRunner().invoke(main, ["simulate", str(raw), "--per-class", "1", "--classes", "up,down",
                                    "--size", "8x8", "--frames", "3"])
    assert sim.exit_code == 0, sim.output
    assert read_events(raw / "up" / "up_000.h5").meta["source_format"] == "simulated"
    out = tmp_path / "c.h5"
    assert run(raw, "-o", out, "--labels-from", "folder", "--workers", "1", "-q").exit_code == 0
    with h5py.File(out, "r") as f:
        assert [v.decode() for v in f["sources/format"][()]] == ["hdf5", "hdf5"]


def test_workers_two_equals_one(tmp_path, corpus):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert run(corpus, "-o", a, "--labels-from", "folder", "--workers", "1").exit_code == 0
    assert run(corpus, "-o", b, "--labels-from", "folder", "--workers", "2").exit_code == 0
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for key in ("tokens", "dt", "offsets", "labels", "ranges", "sources/path"):
            assert np.array_equal(fa[key][()], fb[key][()]), key


def test_compression_choices_store_the_same_tokens(tmp_path, corpus):
    """--compression lzf / none write the same arrays as the default gzip, with the filter
    asked for on tokens and dt (lzf used to fail: the gzip level was passed to it)."""
    paths = {}
    for comp in ("gzip", "lzf", "none"):
        paths[comp] = tmp_path / f"{comp}.h5"
        result = run(corpus, "-o", paths[comp], "--labels-from", "folder", "--workers", "1",
                     "--compression", comp)
        assert result.exit_code == 0, result.output
    with h5py.File(paths["gzip"], "r") as ref:
        for comp, want in (("gzip", "gzip"), ("lzf", "lzf"), ("none", None)):
            with h5py.File(paths[comp], "r") as f:
                for key in ("tokens", "dt"):
                    assert f[key].compression == want, (comp, key)
                for key in ("tokens", "dt", "offsets", "labels", "ranges"):
                    assert np.array_equal(f[key][()], ref[key][()]), (comp, key)
    assert_one_error(run(corpus, "-o", tmp_path / "x.h5", "--labels-from", "folder",
                         "--compression", "zip"), "--compression")
    assert not (tmp_path / "x.h5").exists()


def test_append_and_overwrite(tmp_path, corpus):
    out = tmp_path / "c.h5"
    left = sorted((corpus / "left").iterdir())
    assert run(*left, "-o", out, "--labels-from", "folder", "--classes", "left,right",
               "--workers", "1").exit_code == 0
    result = run(corpus, "-o", out, "--labels-from", "folder", "--append", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "3 already cached" in result.stdout
    with TokenDataset(out) as ds:
        assert len(ds) == 6 and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    result = run(corpus, "-o", out, "--no-labels", "--overwrite", "--workers", "1", "-q")
    assert result.exit_code == 0 and result.stdout == ""
    with TokenDataset(out) as ds:
        assert ds.class_names == () and len(ds) == 6


def test_skip_bad_lists_the_bad_file(tmp_path, corpus):
    bad = corpus / "left" / "left_9.npz"
    bad.write_bytes(b"\x93NUMPY garbage")
    out = tmp_path / "c.h5"
    result = run(corpus, "-o", out, "--labels-from", "folder", "--skip-bad", "--workers", "1")
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipped: ") and str(bad) in lines[0]
    with TokenDataset(out) as ds:
        assert len(ds) == 6 and all("left_9" not in s.path for s in ds.sources)


def test_interrupt_leaves_nothing(tmp_path, corpus, monkeypatch):
    import eventssm.tokenizers.cache.build as build

    out = tmp_path / "c.h5"
    out.write_bytes(b"old output")
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = build.tokenize_file
    monkeypatch.setattr(build, "tokenize_file", interrupted)
    result = run(corpus, "-o", out, "--labels-from", "folder", "--overwrite", "--workers", "1")
    assert_one_error(result, "interrupted")
    assert result.exit_code == 130
    assert out.read_bytes() == b"old output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "data"]


# ---------------------------------------------------------------------------- bad input


def test_error_file_without_label(tmp_path, corpus):
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\ndata/left/left_0.npz,left\ndata/left/left_1.npz,left\n")
    out = tmp_path / "c.h5"
    result = run(corpus / "left", "-o", out, "--labels", csv)
    assert_one_error(result, "left_2.npz", "no label")
    assert not out.exists()


def test_error_name_regex_does_not_match(tmp_path, corpus):
    out = tmp_path / "c.h5"
    result = run(corpus, "-o", out, "--labels-from", "name", "--name-regex", r"^(left)_")
    assert_one_error(result, "right_0.npz", "no label")
    assert not out.exists()


def test_error_unknown_class(tmp_path, corpus):
    out = tmp_path / "c.h5"
    result = run(corpus, "-o", out, "--labels-from", "folder", "--classes", "left,up")
    assert_one_error(result, "right_0.npz", "unknown class 'right'")
    assert not out.exists()


def test_error_mixed_sensor_sizes(tmp_path, corpus):
    odd = corpus / "right" / "right_5.npz"
    save_npz(odd, 40, 99, sensor=(64, 48, 2))
    out = tmp_path / "c.h5"
    result = run(corpus, "-o", out, "--labels-from", "folder", "--workers", "1")
    assert_one_error(result, "right_5.npz", "64x48x2", "--sensor-size")
    assert not out.exists()
    result = run(corpus, "-o", out, "--labels-from", "folder", "--sensor-size", "64x48",
                 "--workers", "1", "-q")
    assert result.exit_code == 0, result.output
    with TokenDataset(out) as ds:
        assert ds.sensor_size == (64, 48, 2) and len(ds) == 7


def test_error_unreadable_file_among_many(tmp_path, corpus):
    bad = corpus / "right" / "right_1.npz"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    out = tmp_path / "c.h5"
    result = run(corpus, "-o", out, "--labels-from", "folder", "--workers", "1")
    assert_one_error(result, str(bad))
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary file


def test_error_existing_output(tmp_path, corpus):
    out = tmp_path / "c.h5"
    out.write_bytes(b"keep me")
    result = run(corpus, "-o", out, "--labels-from", "folder")
    assert_one_error(result, "c.h5", "exists", "--overwrite")
    assert out.read_bytes() == b"keep me"


def test_error_append_with_other_settings(tmp_path, corpus):
    out = tmp_path / "c.h5"
    assert run(corpus / "left", "-o", out, "--labels-from", "folder", "--workers", "1",
               "--classes", "left,right").exit_code == 0
    before = out.read_bytes()
    result = run(corpus, "-o", out, "--labels-from", "folder", "--append", "--downsample", "2")
    assert_one_error(result, "c.h5", "downsample: 1 != 2")
    assert out.read_bytes() == before


def test_error_append_changed_source(tmp_path, corpus):
    out = tmp_path / "c.h5"
    assert run(corpus, "-o", out, "--labels-from", "folder", "--workers", "1").exit_code == 0
    before = out.read_bytes()
    changed = corpus / "left" / "left_1.npz"
    save_npz(changed, 77, 5)
    os.utime(changed, ns=(0, 10**9))
    result = run(corpus, "-o", out, "--labels-from", "folder", "--append")
    assert_one_error(result, "left_1.npz", "changed")
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "--labels-from"),  # no label source
        (["--no-labels", "--labels-from", "folder"], "exactly one"),
        (["--no-labels", "--overwrite", "--append"], "--overwrite or --append"),
        (["--no-labels", "--downsample", "2", "--target-size", "8x8"], "--target-size"),
        (["--no-labels", "--overlap", "5"], "--slice-events"),
        (["--no-labels", "--slice-events", "5", "--overlap", "5"], "overlap"),
        (["--no-labels", "--format", "nope"], "unknown format 'nope'"),
        (["--no-labels", "--slice-events", "5", "--overlap", "9"], "overlap"),
        (["--no-labels", "--downsample", "0"], "'--downsample'"),
        (["--no-labels", "--slice-events", "0"], "'--slice-events'"),
        (["--no-labels", "--overlap", "-1"], "'--overlap'"),
        (["--no-labels", "--workers", "-1"], "'--workers'"),
        (["--no-labels", "--target-size", "0x4"], "--target-size"),
        (["--no-labels", "--sensor-size", "12"], "--sensor-size"),
        (["--no-labels", "--time-unit", "h"], "'--time-unit'"),
    ],
)
def test_error_bad_options(tmp_path, corpus, args, needle):
    out = tmp_path / "c.h5"
    result = run(corpus, "-o", out, *args)
    assert_one_error(result, needle)
    assert not out.exists()


def test_error_output_location(tmp_path, corpus):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_error(run(corpus, "-o", afile / "c.h5", "--no-labels"), str(afile), "is not a folder")
    assert_one_error(run(corpus, "-o", tmp_path / "missing" / "c.h5", "--no-labels"),
                     str(tmp_path / "missing"), "no such folder")
    assert_one_error(run(corpus, "-o", tmp_path, "--no-labels"), "is a directory")
    assert afile.read_text() == "x" and not (tmp_path / "missing").exists()


def test_error_unwritable_output_folder(tmp_path, corpus, monkeypatch):
    """A read-only output folder (simulated: the tests may run as root, who may write anywhere)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    assert_one_error(run(corpus, "-o", tmp_path / "c.h5", "--no-labels"), "c.h5", "is not writable")
    assert not (tmp_path / "c.h5").exists()


def test_error_missing_input(tmp_path):
    result = run(tmp_path / "nothing", "-o", tmp_path / "c.h5", "--no-labels")
    assert_one_error(result, "nothing", "no such file")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(empty, "-o", tmp_path / "c.h5", "--no-labels")
    assert_one_error(result, "no recordings found")


def test_tonic_dvsgesture_layout_labels_from_file_names(tmp_path):
    """The folder tonic's DVSGesture download leaves (ibmGestureTrain/userNN_<lighting>/<class>.npy,
    float (N, 4) arrays [x, y, p, t_ms]) preprocesses with --labels-from name and the regex of
    docs/datasets/dvs_gesture.md: 11 classes ordered numerically, DVS128 geometry, times in µs."""
    root = tmp_path / "DVSGesture" / "ibmGestureTrain"
    rng = np.random.default_rng(0)
    written = {}
    for user in ("user01_fluorescent", "user02_led"):
        for label in range(11):
            n = int(rng.integers(50, 120))
            t_ms = np.sort(rng.integers(0, 6_000_000, n)) / 1000.0  # whole microseconds, in ms
            arr = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t_ms], 1)
            path = root / user / f"{label}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, arr.astype(np.float64))
            written[path] = arr
    out = tmp_path / "gesture.h5"
    result = run(root, "-o", out, "--labels-from", "name", "--name-regex", r"^(\d+)$", "--workers", "1",
                 "--time-unit", "us")
    assert result.exit_code == 0, result.output
    with TokenDataset(out) as ds:
        assert ds.class_names == tuple(str(c) for c in range(11))
        assert ds.sensor_size == (128, 128, 2) and len(ds) == 22
        for i in range(len(ds)):
            tokens, dt, label = ds[i]
            arr = written[Path(ds.source_path(i))]
            assert label == int(Path(ds.source_path(i)).stem)
            x, y, p = detokenize(tokens, (128, 128))
            np.testing.assert_array_equal(x, arr[:, 0])
            np.testing.assert_array_equal(y, arr[:, 1])
            np.testing.assert_array_equal(p, arr[:, 2] > 0)
            np.testing.assert_array_equal(dt[1:], np.diff(np.rint(arr[:, 3] * 1000)))

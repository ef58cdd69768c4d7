"""Public dataset layouts (eventssm.tokenizers.public_datasets) from small fixture trees.

Every tree is built here in the layout tonic (or the original release) leaves, with the
project's encoders or numpy; the expected tokens come from the token formula
``2·(x·H + y) + p`` and the events written, not from the tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from eventssm.events import make_events
from eventssm.io.aedat_encode import encode_aedat3
from eventssm.io.nmnist import encode_nmnist
from eventssm.io.prophesee_encode import encode_dat
from eventssm.tokenizers.dataset import DatasetError, TokenDataset, TokenizerSettings
from eventssm.tokenizers.public_datasets import (
    GESTURE_CLASSES,
    build_dataset_cache,
    gesture_windows,
    list_dataset,
    shard_slice,
)

US = TokenizerSettings(time_unit="us")


def rand_events(rng, n, w, h, t0=0):
    t = t0 + np.sort(rng.integers(0, 1_000_000, n))
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n))


def expected_tokens(ev, h):
    return 2 * (ev["x"].astype(np.int64) * h + ev["y"]) + ev["p"]


def cache_rows(path):
    with TokenDataset(path) as ds:
        return [(*(np.asarray(v) for v in ds[i][:2]), int(ds[i][2]), ds.source_path(i))
                for i in range(len(ds))], ds.class_names


def assert_same_rows(parts, whole):
    """Shard caches' rows, concatenated, equal the one-cache build's rows."""
    assert len(parts) == len(whole)
    for a, b in zip(parts, whole):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2:] == b[2:]


def check_sample(row, ev, h):
    tokens, dt, _, _ = row
    np.testing.assert_array_equal(tokens, expected_tokens(ev, h))
    np.testing.assert_array_equal(dt[1:], np.diff(ev["t"]))


# ---- DVS Gesture, tonic's .npy layout ---------------------------------------------------

def test_dvsgesture_tonic_npy(tmp_path):
    rng = np.random.default_rng(1)
    written = {}
    for split, folder, users in (("train", "ibmGestureTrain", ("user01_led", "user02_natural")),
                                 ("test", "ibmGestureTest", ("user24_led",))):
        for user in users:
            for k in (0, 4, 10):
                n = int(rng.integers(20, 60))
                arr = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n),
                                rng.integers(0, 2, n), np.sort(rng.integers(0, 10**6, n)) / 1000.0], 1)
                p = tmp_path / "DVSGesture" / folder / user / f"{k}.npy"
                p.parent.mkdir(parents=True, exist_ok=True)
                np.save(p, arr)
                written[os.path.abspath(p)] = (split, k, arr)
    for split, n in (("train", 6), ("test", 3)):
        items, classes = list_dataset("dvsgesture", tmp_path, split)
        assert classes == GESTURE_CLASSES and len(items) == n
        for it in items:
            assert written[it.source][0] == split
            assert it.label == GESTURE_CLASSES[written[it.source][1]]
    out = tmp_path / "g.h5"
    build_dataset_cache(out, "dvsgesture", tmp_path, "test", US)
    rows, _ = cache_rows(out)
    assert len(rows) == 3
    for row in rows:
        _, k, arr = written[row[3]]
        assert row[2] == k
        ev = make_events(arr[:, 0], arr[:, 1], np.rint(arr[:, 3] * 1000), arr[:, 2])
        check_sample(row, ev, 128)


# ---- DVS Gesture, the IBM release (AEDAT 3.1 + labels CSV) -----------------------------

def write_ibm(base: Path, rng):
    """Two recordings, three and two gestures; returns {name: (events, [(class, a, b)])}."""
    base.mkdir(parents=True, exist_ok=True)
    trials = {}
    for name, gestures in (("user01_fluorescent", [(1, 100_000, 300_000), (11, 300_000, 450_000),
                                                   (5, 600_000, 900_000)]),
                           ("user29_lab", [(3, 50_000, 400_000), (2, 500_000, 999_000)])):
        ev = rand_events(rng, 3000, 128, 128)
        (base / f"{name}.aedat").write_bytes(encode_aedat3(ev, (128, 128, 2)))
        lines = ["class,startTime_usec,endTime_usec"] + [f"{c},{a},{b}" for c, a, b in gestures]
        (base / f"{name}_labels.csv").write_text("\n".join(lines) + "\n")
        trials[name] = (ev, gestures)
    (base / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (base / "trials_to_test.txt").write_text("user29_lab.aedat\n")
    return trials


def test_dvsgesture_ibm_release_cut_by_labels_csv(tmp_path):
    trials = write_ibm(tmp_path / "DvsGesture", np.random.default_rng(2))
    assert gesture_windows(tmp_path / "DvsGesture" / "user29_lab_labels.csv") == [
        (2, 50_000, 400_000), (1, 500_000, 999_000)]
    for split, name in (("train", "user01_fluorescent"), ("test", "user29_lab")):
        ev, gestures = trials[name]
        out = tmp_path / f"{split}.h5"
        samples, sources = build_dataset_cache(out, "dvsgesture", tmp_path, split, US)
        assert samples == sources == len(gestures)
        rows, classes = cache_rows(out)
        assert classes == GESTURE_CLASSES
        for k, (row, (c, a, b)) in enumerate(zip(rows, gestures)):
            assert row[2] == c - 1
            assert row[3] == os.path.abspath(tmp_path / "DvsGesture" / f"{name}.aedat") + f"#{k}"
            inside = ev[[a <= t < b for t in ev["t"].tolist()]]  # the boundaries, by hand
            assert len(inside) > 0
            check_sample(row, inside, 128)


def test_ibm_labels_csv_errors(tmp_path):
    write_ibm(tmp_path, np.random.default_rng(3))
    (tmp_path / "user29_lab_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,1,2\n")
    with pytest.raises(DatasetError, match=r"user29_lab_labels\.csv: row 2"):
        list_dataset("dvsgesture", tmp_path, "test")
    (tmp_path / "trials_to_test.txt").write_text("user30_led.aedat\n")
    with pytest.raises(DatasetError, match=r"user30_led\.aedat"):
        list_dataset("dvsgesture", tmp_path, "test")


# ---- folder-per-class layouts: NMNIST, POKERDVS, NCARS ---------------------------------

def make_class_tree(base, split_dirs, classes, ext, write, rng, w, h):
    written = {}
    for split, d in split_dirs.items():
        for ci, c in enumerate(classes):
            for j in range(2 if split == "train" else 1):
                ev = rand_events(rng, int(rng.integers(10, 40)), w, h)
                p = base / d / c / f"s{j}{ext}"
                p.parent.mkdir(parents=True, exist_ok=True)
                write(p, ev)
                written[os.path.abspath(p)] = (split, ci, ev)
    return written


def pokerdvs_write(p, ev):
    np.save(p, np.stack([ev["t"], ev["x"], ev["y"], ev["p"]], 1).astype(np.int64))


@pytest.mark.parametrize("name,base,split_dirs,classes,ext,write,wh", [
    ("nmnist", "NMNIST", {"train": "Train", "test": "Test"}, [str(d) for d in range(10)], ".bin",
     lambda p, ev: p.write_bytes(encode_nmnist(ev)), (34, 34)),
    ("pokerdvs", "POKERDVS", {"train": "pips_train", "test": "pips_test"}, ["cl", "he", "di", "sp"],
     ".npy", pokerdvs_write, (35, 35)),
    ("ncars", "", {"train": "n-cars_train", "test": "n-cars_test"}, ["background", "cars"], ".dat",
     lambda p, ev: p.write_bytes(encode_dat(ev, 120, 100)), (120, 100)),
])
def test_class_folder_layouts(tmp_path, name, base, split_dirs, classes, ext, write, wh):
    written = make_class_tree(tmp_path / base, split_dirs, classes, ext, write,
                              np.random.default_rng(4), *wh)
    for split, per_class in (("train", 2), ("test", 1)):
        items, names = list_dataset(name, tmp_path, split)
        assert list(names) == classes and len(items) == per_class * len(classes)
        assert all(written[it.source][0] == split and names.index(it.label) == written[it.source][1]
                   for it in items)
    out = tmp_path / "c.h5"
    build_dataset_cache(out, name, tmp_path, "test", US)
    rows, _ = cache_rows(out)
    assert len(rows) == len(classes)
    for row in rows:
        _, ci, ev = written[row[3]]
        assert row[2] == ci
        check_sample(row, ev, wh[1])


# ---- SHD / SSC: HDF5 spike trains on a 700x1 sensor ------------------------------------

def write_heidelberg(path, rng, n_samples, n_classes):
    trains = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h:
        times = h.create_dataset("spikes/times", (n_samples,), dtype=h5py.vlen_dtype(np.float32))
        units = h.create_dataset("spikes/units", (n_samples,), dtype=h5py.vlen_dtype(np.uint16))
        labels = rng.integers(0, n_classes, n_samples)
        for k in range(n_samples):
            n = int(rng.integers(5, 50))
            t = np.sort(rng.integers(0, 1_000_000, n)).astype(np.float32) / np.float32(1e6)
            u = rng.integers(0, 700, n).astype(np.uint16)
            times[k], units[k] = t, u
            trains.append((t, u))
        h["labels"] = labels.astype(np.uint16)
        h["extra/keys"] = np.array([f"word{c}".encode() for c in range(n_classes)])
    return trains, labels


@pytest.mark.parametrize("name,n_classes", [("shd", 20), ("ssc", 35)])
def test_heidelberg_tokens_on_700x1(tmp_path, name, n_classes):
    rng = np.random.default_rng(5)
    write_heidelberg(tmp_path / name.upper() / f"{name}_train.h5", rng, 3, n_classes)
    trains, labels = write_heidelberg(tmp_path / name.upper() / f"{name}_test.h5", rng, 4, n_classes)
    items, classes = list_dataset(name, tmp_path, "test")
    assert len(items) == 4 and classes == tuple(f"word{c}" for c in range(n_classes))
    assert len(list_dataset(name, tmp_path, "train")[0]) == 3
    if name == "ssc":  # SSC's published validation split
        write_heidelberg(tmp_path / "SSC" / "ssc_valid.h5", rng, 2, n_classes)
        assert [it.split for it in list_dataset(name, tmp_path, "valid")[0]] == ["valid"] * 2
    out = tmp_path / "s.h5"
    assert build_dataset_cache(out, name, tmp_path, "test", US) == (4, 4)
    rows, _ = cache_rows(out)
    with TokenDataset(out) as ds:
        assert ds.grid_size == (700, 1, 2) and ds.sensor_size == (700, 1, 1)
    for k, row in enumerate(rows):
        t, u = trains[k]
        assert row[2] == labels[k] and row[3].endswith(f"{name}_test.h5#{k}")
        np.testing.assert_array_equal(row[0], 2 * u.astype(np.int64) + 1)  # x = unit, y = 0, p = 1
        np.testing.assert_array_equal(row[1][1:], np.diff(np.round(t.astype(np.float64) * 1e6)))


# ---- shards ------------------------------------------------------------------------------

def test_shard_slices_partition():
    for n in (0, 1, 5, 17):
        for count in (1, 2, 3, 7):
            got = [i for k in range(1, count + 1) for i in range(n)[shard_slice(n, k, count)]]
            assert got == list(range(n))
    with pytest.raises(DatasetError, match="1 <= I <= N"):
        shard_slice(5, 0, 3)


def test_shards_together_equal_one_cache(tmp_path):
    write_heidelberg(tmp_path / "shd_train.h5", np.random.default_rng(6), 7, 20)
    build_dataset_cache(tmp_path / "all.h5", "shd", tmp_path, "train", US)
    whole, classes = cache_rows(tmp_path / "all.h5")
    parts = []
    for k in (1, 2, 3):
        build_dataset_cache(tmp_path / f"part{k}.h5", "shd", tmp_path, "train", US, shard=(k, 3))
        rows, shard_classes = cache_rows(tmp_path / f"part{k}.h5")
        assert shard_classes == classes and 0 < len(rows) < len(whole)
        parts += rows
    assert_same_rows(parts, whole)


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        list_dataset("mnist", tmp_path)
    with pytest.raises(DatasetError, match="no split 'valid'"):
        list_dataset("shd", tmp_path, "valid")
    with pytest.raises(DatasetError, match=r"no shd_train\.h5"):
        list_dataset("shd", tmp_path, "train")
    (tmp_path / "shd_train.h5").write_bytes(b"")
    with pytest.raises(DatasetError, match="is a file; give the folder"):
        list_dataset("shd", tmp_path / "shd_train.h5")
    with pytest.raises(DatasetError, match="'Train'"):
        list_dataset("nmnist", tmp_path, "train")


@pytest.mark.parametrize("name,real,dest,sensor", [
    ("ncars", "sample_ncars.dat", "n-cars_test/cars/obj_000001_td.dat", (120, 100, 2)),
    ("nmnist", "sample_nmnist.bin", "NMNIST/Test/7/00001.bin", (34, 34, 2)),
])
def test_real_samples_in_their_layout(tmp_path, name, real, dest, sensor):
    """Real N-CARS / N-MNIST samples (tonic's test files, ../shared) placed in the dataset's
    layout: the cached tokens equal the formula on the events read_events decodes."""
    from eventssm.io import read_events
    from tests.conftest import recording

    src = recording(real)
    p = tmp_path / dest
    p.parent.mkdir(parents=True)
    p.symlink_to(src.resolve())
    for d in ("n-cars_test/background",) if name == "ncars" else [f"NMNIST/Test/{k}" for k in range(10)]:
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    out = tmp_path / "c.h5"
    assert build_dataset_cache(out, name, tmp_path, "test", US) == (1, 1)
    rows, classes = cache_rows(out)
    assert classes[rows[0][2]] == Path(dest).parent.name and rows[0][3] == str(p)
    check_sample(rows[0], read_events(src, sensor_size=sensor).events, sensor[1])

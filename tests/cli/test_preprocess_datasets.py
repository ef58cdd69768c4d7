"""``eventssm preprocess --dataset NAME ROOT`` and ``--shard I/N`` end to end (CliRunner)."""

from __future__ import annotations

import numpy as np
import pytest

from eventssm.tokenizers.dataset import TokenDataset
from tests.cli.errors import assert_one_error
from tests.cli.test_preprocess import run, save_npz
from tests.tokenizers.test_public_datasets import (
    assert_same_rows,
    cache_rows,
    write_heidelberg,
    write_ibm,
)


def test_dataset_shd_train_and_test(tmp_path):
    rng = np.random.default_rng(0)
    trains, labels = write_heidelberg(tmp_path / "data" / "SHD" / "shd_train.h5", rng, 5, 20)
    write_heidelberg(tmp_path / "data" / "SHD" / "shd_test.h5", rng, 2, 20)
    out = tmp_path / "shd.h5"
    r = run("--dataset", "shd", tmp_path / "data", "-o", out, "--merge-polarity", "--time-unit", "us")
    assert r.exit_code == 0, r.output
    assert "5 samples" in r.output
    with TokenDataset(out) as ds:
        assert len(ds) == 5 and ds.num_classes == 20 and ds.vocab_size == 700
        np.testing.assert_array_equal(ds.labels, labels)
        for k in range(5):
            np.testing.assert_array_equal(ds[k][0], trains[k][1])  # token = channel
    r = run("--dataset", "shd", tmp_path / "data", "-o", tmp_path / "t.h5", "--split", "test")
    assert r.exit_code == 0, r.output
    with TokenDataset(tmp_path / "t.h5") as ds:
        assert len(ds) == 2


def test_dataset_ibm_gesture(tmp_path):
    write_ibm(tmp_path / "DvsGesture", np.random.default_rng(1))
    r = run("--dataset", "dvsgesture", tmp_path, "-o", tmp_path / "g.h5", "--split", "test")
    assert r.exit_code == 0, r.output
    rows, classes = cache_rows(tmp_path / "g.h5")
    assert [row[2] for row in rows] == [2, 1] and len(classes) == 11
    assert [row[3].rsplit("#", 1)[1] for row in rows] == ["0", "1"]


@pytest.mark.parametrize("args,needle", [
    (["--labels-from", "folder"], "drop --labels-from"),
    (["--append"], "drop --append"),
    (["--split", "valid"], "shd has no split 'valid'"),
    (["--shard", "0/2"], "need 1 <= I <= N"),
    (["--shard", "two"], "expected I/N"),
])
def test_dataset_errors(tmp_path, args, needle):
    write_heidelberg(tmp_path / "shd_train.h5", np.random.default_rng(2), 2, 20)
    r = run("--dataset", "shd", tmp_path, "-o", tmp_path / "o.h5", *args)
    assert_one_error(r, needle)
    assert not (tmp_path / "o.h5").exists()


def test_dataset_missing_layout_and_split_without_dataset(tmp_path):
    assert_one_error(run("--dataset", "nmnist", tmp_path, "-o", tmp_path / "o.h5"), "'Train'")
    save_npz(tmp_path / "a" / "a_0.npz", 30, 0)
    assert_one_error(run(tmp_path / "a", "-o", tmp_path / "o.h5", "--labels-from", "folder",
                         "--split", "test"), "--split needs --dataset")


def test_shards_of_files_equal_one_cache(tmp_path):
    """--shard on the ordinary path: N caches hold the one-cache build's samples, in order,
    with the full class list even where a shard lacks a class."""
    for c, cls in enumerate(("a", "b", "c")):
        for i in range(2):
            save_npz(tmp_path / "data" / cls / f"{cls}_{i}.npz", 40 + 9 * i, 10 * c + i)
    common = ["--labels-from", "folder", "--slice-events", "20", "--workers", "1"]
    assert run(tmp_path / "data", "-o", tmp_path / "all.h5", *common).exit_code == 0
    whole, classes = cache_rows(tmp_path / "all.h5")
    parts = []
    for k in (1, 2, 3, 4):
        r = run(tmp_path / "data", "-o", tmp_path / f"p{k}.h5", "--shard", f"{k}/4", *common)
        assert r.exit_code == 0, r.output
        rows, shard_classes = cache_rows(tmp_path / f"p{k}.h5")
        assert shard_classes == classes == ("a", "b", "c")
        parts += rows
    assert_same_rows(parts, whole)
    assert_one_error(run(tmp_path / "data", "-o", tmp_path / "p9.h5", "--shard", "7/9", *common),
                     "empty")

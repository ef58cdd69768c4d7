"""Several caches as one dataset: the shards of ``preprocess --shard I/N`` equal the one-cache
build (samples, labels, recordings, split, sampling order), and caches that disagree are refused."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from eventssm.tokenizers.cache import ConcatTokenDataset, TokenDataset, TokenSamples, expand_cache_paths, open_caches
from eventssm.tokenizers.settings import DatasetError
from eventssm.train.data import split_by_source
from eventssm.train.stream import TrainOrder
from tests.cli.test_preprocess import run, save_npz

COMMON = ["--labels-from", "folder", "--slice-events", "20", "--workers", "1", "-q"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """data/{a,b,c}/*.npz (3 recordings per class, 2-3 slices each), one cache and 4 shards."""
    root = tmp_path_factory.mktemp("shards")
    for c, cls in enumerate(("a", "b", "c")):
        for i in range(3):
            save_npz(root / "data" / cls / f"{cls}_{i}.npz", 40 + 9 * i, 10 * c + i)
    assert run(root / "data", "-o", root / "all.h5", *COMMON).exit_code == 0
    (root / "part").mkdir()
    for k in (1, 2, 3, 4):
        r = run(root / "data", "-o", root / "part" / f"train-{k}.h5", "--shard", f"{k}/4", *COMMON)
        assert r.exit_code == 0, r.output
    return root


def test_shards_as_one_dataset_equal_the_one_cache_build(shards):
    paths = expand_cache_paths([str(shards / "part" / "train-*.h5")])
    assert [p.name for p in paths] == ["train-1.h5", "train-2.h5", "train-3.h5", "train-4.h5"]
    with TokenDataset(shards / "all.h5") as whole, ConcatTokenDataset(paths) as union:
        assert isinstance(union, TokenSamples)
        assert len(union) == len(whole) > len(whole.sources) == len(union.sources) == 9
        for name in ("labels", "source_index", "lengths", "ranges", "offsets"):
            np.testing.assert_array_equal(getattr(union, name), getattr(whole, name), err_msg=name)
        assert (union.class_names, union.settings, union.vocab_size) == (whole.class_names, whole.settings,
                                                                        whole.vocab_size)
        assert (union.sensor_size, union.grid_size) == (whole.sensor_size, whole.grid_size)
        for i in range(len(whole)):
            (t1, d1, y1), (t2, d2, y2) = union[i], whole[i]
            np.testing.assert_array_equal(t1, t2)
            np.testing.assert_array_equal(d1, d2)
            assert y1 == y2 == whole.labels[i]
            assert union.source_path(i) == whole.source_path(i)
        assert [s.path for s in union.sources] == [os.path.normpath(os.path.join(whole.root, s.path))
                                                   for s in whole.sources]
        assert union[-1][0].tolist() == whole[len(whole) - 1][0].tolist()
        with pytest.raises(IndexError):
            union[len(union)]
        # what training computes from them: the split by recording and the balanced sampling order
        for seed in (0, 1, 2):
            s1 = split_by_source(union.labels, union.source_index, 0.34, np.random.default_rng(seed))
            s2 = split_by_source(whole.labels, whole.source_index, 0.34, np.random.default_rng(seed))
            for a, b in zip(s1, s2, strict=True):
                np.testing.assert_array_equal(a, b)
        tr = s1[0]
        o1 = TrainOrder(tr, 4, 0, labels=union.labels[tr])
        o2 = TrainOrder(tr, 4, 0, labels=whole.labels[tr])
        assert [o1.rows(e, p).tolist() for e in (0, 1) for p in range(2)] == [o2.rows(e, p).tolist() for e in (0, 1)
                                                                              for p in range(2)]


def test_few_files_open_at_a_time(shards):
    paths = sorted((shards / "part").glob("train-*.h5"))
    with TokenDataset(shards / "all.h5") as whole, ConcatTokenDataset(paths, max_open=2) as union:
        for i in [*range(len(union)), *reversed(range(len(union)))]:
            np.testing.assert_array_equal(union[i][0], whole[i][0])
            assert sum(part._h5 is not None for part in union.parts) <= 2
        clone = pickle.loads(pickle.dumps(union))
        np.testing.assert_array_equal(clone[3][1], whole[3][1])
    assert all(part._h5 is None for part in union.parts)


def test_open_caches_and_patterns(shards, tmp_path):
    assert isinstance(open_caches([shards / "all.h5"]), TokenDataset)
    assert isinstance(open_caches(sorted((shards / "part").glob("*.h5"))), ConcatTokenDataset)
    # natural order: 2 before 10; an existing file is taken as it is, brackets and all
    for name in ("s-10.h5", "s-2.h5", "s-1.h5", "odd[1].h5"):
        (tmp_path / name).write_bytes(b"")
    got = expand_cache_paths([str(tmp_path / "s-*.h5"), str(tmp_path / "odd[1].h5")])
    assert [p.name for p in got] == ["s-1.h5", "s-2.h5", "s-10.h5", "odd[1].h5"]
    with pytest.raises(DatasetError, match="no cache file matches"):
        expand_cache_paths([str(tmp_path / "none-*.h5")])


def test_caches_that_disagree_are_refused(shards, tmp_path):
    one, two = shards / "part" / "train-1.h5", shards / "part" / "train-2.h5"
    with pytest.raises(DatasetError, match="given twice"):
        ConcatTokenDataset([one, two, one])
    with pytest.raises(DatasetError, match="is also in"):  # the same recordings in two caches
        ConcatTokenDataset([shards / "all.h5", one])
    # another downsampling: settings, named with both files
    other = tmp_path / "down.h5"
    assert run(shards / "data", "-o", other, "--downsample", "2", "--shard", "2/4", *COMMON).exit_code == 0
    with pytest.raises(DatasetError) as exc:
        ConcatTokenDataset([one, other])
    msg = str(exc.value)
    assert str(other) in msg and str(one) in msg and "downsample: 2 != 1" in msg and "\n" not in msg
    # other classes (recordings of a and b only)
    for cls in ("a", "b"):
        save_npz(tmp_path / "ab" / cls / f"{cls}_9.npz", 40, 99)
    assert run(tmp_path / "ab", "-o", tmp_path / "ab.h5", *COMMON).exit_code == 0
    with pytest.raises(DatasetError, match="class names"):
        ConcatTokenDataset([one, tmp_path / "ab.h5"])
    with pytest.raises(DatasetError, match="no such cache file"):
        ConcatTokenDataset([one, tmp_path / "missing.h5"])

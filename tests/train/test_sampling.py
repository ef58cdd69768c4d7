"""Class-balanced sampling and the CLI's training defaults."""

import dataclasses

import numpy as np
import pytest

from eventssm.train import TrainConfig, batches
from eventssm.train.data import balanced_weights


class Unequal:
    """30 samples of class 0, 5 of class 1, 1 of class 2 (tokens = the sample index)."""

    def __init__(self):
        self.labels = np.array([0] * 30 + [1] * 5 + [2] * 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return np.array([i, i], np.int32), np.zeros(2, np.float32), int(self.labels[i])


def test_balanced_weights_give_every_class_the_same_share():
    labels = np.array([0] * 30 + [1] * 5 + [2] * 1)
    w = balanced_weights(labels)
    assert w.sum() == pytest.approx(1.0)
    for c in range(3):
        assert w[labels == c].sum() == pytest.approx(1 / 3)
        assert np.all(w[labels == c] == w[labels == c][0])


def test_balanced_batches_draw_every_class_about_equally():
    ds = Unequal()
    stream = batches(ds, 12, np.random.default_rng(0), shuffle=True, drop_last=True, epochs=None, balance=True)
    drawn = np.concatenate([next(stream).labels for _ in range(300)])  # 3,600 draws
    share = np.bincount(drawn, minlength=3) / len(drawn)
    # binomial standard deviation sqrt(1/3 * 2/3 / 3600) ~ 0.008: 5 sigma
    assert np.all(np.abs(share - 1 / 3) < 0.04), share
    # uniform sampling keeps the data's shares
    stream = batches(ds, 12, np.random.default_rng(0), shuffle=True, drop_last=True, epochs=None)
    drawn = np.concatenate([next(stream).labels for _ in range(300)])
    assert np.bincount(drawn, minlength=3)[2] < 0.1 * len(drawn)


def test_balanced_batches_need_shuffle_and_respect_indices():
    ds = Unequal()
    with pytest.raises(ValueError, match="shuffle"):
        next(batches(ds, 4, np.random.default_rng(0), shuffle=False, balance=True))
    sub = [0, 1, 30, 31]
    rows = np.concatenate([b.index for b in batches(ds, 4, np.random.default_rng(1), indices=sub, epochs=25,
                                                    balance=True)])
    assert set(rows.tolist()) <= set(sub) and len(rows) == 100


def test_cli_train_defaults_are_the_train_config_defaults():
    from eventssm.cli.train import SAMPLING, train
    from eventssm.train.config import SAMPLING as LIB_SAMPLING

    assert SAMPLING == LIB_SAMPLING
    cli = {p.name: p.default for p in train.params}
    lib = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name in ("batch_size", "crop_events", "lr", "ssm_lr", "augment", "cutmix", "label_smoothing",
                 "weight_decay", "sampling", "seed"):
        assert cli[name] == lib[name], name

"""Training package: parameter groups, splits, batching, checkpoints, and that fitting learns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.models.classifier import EventClassifier
from eventssm.models.presets import get_preset
from eventssm.train import TrainConfig, batches, evaluate, fit, make_optimizer, param_labels
from eventssm.train.data import source_groups, split_by_source, take_key, validation_groups


def _model(layer="s5", **kw):
    cfg = get_preset("tiny", layer, vocab_size=2 * 4 * 4, n_classes=2, **kw)
    return EventClassifier(cfg, rngs=nnx.Rngs(0))


# One SSM layer per stage and the sequential scan: the cheapest graph to compile (JAX compile
# time dominates these tests). Two stages are kept where parameter paths matter (checkpoints).
SMALL = dict(layers_per_stage=1, scan_method="sequential")

_forward = nnx.jit(lambda model, tokens, dt: model(tokens, dt))  # one compile for equal graphs


class ToyDataset:
    """Class 0: tokens from the left half of a 4x4 grid, early dense; class 1: right half, sparse dt."""

    def __init__(self, n, rng):
        self.items = []
        for i in range(n):
            label = i % 2
            length = int(rng.integers(40, 120))
            x = rng.integers(0, 2, length) + 2 * label
            y = rng.integers(0, 4, length)
            p = rng.integers(0, 2, length)
            tokens = (2 * (x * 4 + y) + p).astype(np.int32)
            dt = rng.exponential(0.5 if label == 0 else 2.0, length).astype(np.float32)
            dt[0] = 0
            self.items.append((tokens, dt, label))
        self.lengths = np.array([len(t) for t, _, _ in self.items])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


#: what each layer declares for the SSM optimizer group (S5 §B.1; the S7 decay and step parameters)
SSM_GROUP = {"s5": {"Lambda_re", "Lambda_im", "B", "log_step"},
             "s7": {"Lambda_w", "Lambda_im", "U_w", "U_step", "b_step", "B"},
             "s7paper": {"Lambda_w", "Lambda_im", "W_step", "b_step"}}


@pytest.mark.parametrize("layer", ["s5", "s7", "s7paper"])
def test_every_parameter_lands_in_its_declared_group(layer):
    """Labels by name, and behaviour: with zero gradients one update leaves the SSM group
    untouched (Adam, no weight decay) and shrinks every other weight by AdamW's decay."""
    import optax

    model = _model(layer, **SMALL)
    params = nnx.state(model, nnx.Param)
    labels = param_labels(model)(nnx.as_pure(params))
    seen = {}
    for path, lab in jax.tree_util.tree_leaves_with_path(labels):
        keys = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        in_ssm_layer = "ssm" in keys
        seen.setdefault((in_ssm_layer, keys[-1]), set()).add(lab)
    ssm_layer = {name: labs for (inside, name), labs in seen.items() if inside}
    assert {n for n, labs in ssm_layer.items() if labs == {"ssm"}} == SSM_GROUP[layer]
    assert all(labs == {"regular"} for (inside, n), labs in seen.items() if not (inside and n in SSM_GROUP[layer]))
    cfg = TrainConfig(steps=10, warmup_steps=0, weight_decay=0.5, grad_clip=0)
    tx = make_optimizer(cfg, model)
    pure = nnx.as_pure(params)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, pure), tx.init(pure), pure)
    lr = float(optax.schedules.warmup_cosine_decay_schedule(0.0, cfg.lr, 0, 10, cfg.lr * cfg.final_lr_ratio)(0))
    for (path, u), (_, p), (_, lab) in zip(jax.tree_util.tree_leaves_with_path(updates),
                                           jax.tree_util.tree_leaves_with_path(pure),
                                           jax.tree_util.tree_leaves_with_path(labels), strict=True):
        expected = 0.0 if lab == "ssm" else -lr * 0.5 * np.asarray(p)
        np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-5, atol=1e-12, err_msg=str(path))


def test_split_by_source_keeps_recordings_together_and_stratifies():
    labels = np.repeat([0, 1, 2], 12)
    source = np.repeat(np.arange(12), 3)  # 4 recordings per class, 3 slices each
    tr, va = split_by_source(labels, source, 0.25, np.random.default_rng(0))
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(36))
    assert not set(source[tr]) & set(source[va])
    for c in range(3):
        assert len(set(source[va][labels[va] == c])) == 1
    tr0, va0 = split_by_source(labels, source, 0.0, np.random.default_rng(0))
    assert len(va0) == 0 and len(tr0) == 36


def test_source_groups_by_hand():
    paths = ["walking/neal_walking_003.npz", "walking/neal_walking_001.npz", "walking/alex_walking_000.npz",
             "standing/neal_standing_000.npz", "notes.txt"]
    assert source_groups(paths, None).tolist() == [0, 1, 2, 3, 4]  # every recording on its own
    # first group: the take; a path without a match stays alone
    assert source_groups(paths, r"(.+)_\d+").tolist() == [0, 0, 1, 2, 3]
    # no group: the whole match; "neal" names one group across the two classes' folders
    assert source_groups(paths, r"neal|alex").tolist() == [0, 0, 1, 0, 2]
    assert source_groups(["a\\t_1.npz", "a/t_2.npz"], r"(.+)_\d").tolist() == [0, 0]  # either separator


def test_takes_by_name():
    assert take_key("walking/neal_walking_003.npz") == "walking/neal_walking.npz"
    assert take_key("a/take-12.aedat") == take_key("a/take 7.aedat") == take_key("a/take7.aedat") == "a/take.aedat"
    assert take_key("0/00002.bin") is None and take_key("00002") is None  # a number only
    assert take_key("user01_fluorescent.aedat") is None and take_key("clip_3/rec.h5") is None
    paths = ["w/alex_000.npz", "w/alex_001.npz", "w/neal_000.npz", "s/alex_000.npz", "s/x.npz", "s/x.npz"]
    assert source_groups(paths, "auto").tolist() == [0, 0, 1, 2, 3, 3]
    assert source_groups(paths, "none").tolist() == [0, 1, 2, 3, 4, 5]
    # auto keeps the takes when a class has several of them, some cut into clips ...
    assert validation_groups(paths[:4], np.array([0, 0, 0, 1]), "auto").tolist() == [0, 0, 1, 2]
    # ... and splits by recording when every class is one name (numbered independent recordings)
    demo = [f"{c}/{c}_{k:03d}.h5" for c in ("up", "down") for k in range(3)]
    assert validation_groups(demo, np.repeat([0, 1], 3), "auto").tolist() == list(range(6))
    assert validation_groups(demo, np.repeat([0, 1], 3), r"(up|down)").tolist() == [0, 0, 0, 1, 1, 1]


def test_split_by_group_holds_out_whole_takes():
    # 3 classes x 3 takes x 2 clips (recordings) x 2 slices: 36 samples, 18 recordings, 9 takes
    labels = np.repeat([0, 1, 2], 12)
    source = np.repeat(np.arange(18), 2)
    take = np.repeat(np.arange(9), 2)  # recording -> take
    for seed in range(5):
        tr, va = split_by_source(labels, source, 0.34, np.random.default_rng(seed), take)
        assert sorted(np.concatenate([tr, va]).tolist()) == list(range(36))
        held, kept = set(take[source[va]]), set(take[source[tr]])
        assert not held & kept
        for c in range(3):  # one of each class's three takes, both its clips
            assert len(set(take[source[va]][labels[va] == c])) == 1 and (labels[va] == c).sum() == 4
    # recording ids as groups give the plain split exactly
    plain = split_by_source(labels, source, 0.34, np.random.default_rng(3))
    same = split_by_source(labels, source, 0.34, np.random.default_rng(3), np.arange(18))
    assert all(np.array_equal(a, b) for a, b in zip(plain, same))


def test_batches_crop_pad_and_cover_every_sample_once():
    ds = ToyDataset(10, np.random.default_rng(1))
    seen = []
    for b in batches(ds, 4, np.random.default_rng(0), crop_events=50, buckets=(64, 128)):
        assert b.tokens.shape[1] == 64
        assert (b.lengths <= 50).all()
        assert (b.dt[:, 0] == 0).all()
        seen.extend(b.labels.tolist())
    assert len(seen) == 10
    # evaluation order groups by length and keeps whole samples
    lengths = [int(b.lengths.max()) for b in batches(ds, 3, shuffle=False, buckets=(128,))]
    assert lengths == sorted(lengths)
    with pytest.raises(ValueError):
        next(batches(ds, 2, None))


def test_config_json_round_trip_and_validation():
    cfg = TrainConfig(steps=7, buckets=(512, 256))
    assert cfg.buckets == (256, 512)
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError):
        TrainConfig(steps=0)
    with pytest.raises(ValueError):
        TrainConfig.from_json('{"stepz": 3}')


def test_fit_rejects_bad_log_every_and_empty_training_set():
    data = ToyDataset(4, np.random.default_rng(0))
    cfg = TrainConfig(steps=1, batch_size=2)
    with pytest.raises(ValueError, match="log_every"):
        TrainConfig(log_every=0)
    with pytest.raises(ValueError, match="no training samples"):
        fit(_model(**SMALL), data, cfg, train_indices=[])


def test_fit_learns_a_separable_toy_task():
    ds = ToyDataset(32, np.random.default_rng(0))
    model = _model("s5", dropout=0.0, n_stages=1, **SMALL)
    before = evaluate(model, ds, batch_size=16, buckets=(128,))
    # the recipe before the generalization defaults (a plain dataset cannot be augmented)
    cfg = TrainConfig(steps=40, batch_size=16, crop_events=64, lr=1e-2, warmup_steps=4, buckets=(64, 128),
                      augment="none", cutmix=0.0, label_smoothing=0.0, sampling="uniform")
    hist = fit(model, ds, cfg.replace(log_every=10))
    after = evaluate(model, ds, batch_size=16, buckets=(128,))
    assert hist["train"][-1]["loss"] < hist["train"][0]["loss"]
    assert after["loss"] < before["loss"]
    assert after["accuracy"] >= 0.9
    assert np.sum(after["confusion"]) == 32


def test_recording_votes_average_log_probabilities():
    from eventssm.train.loop import recording_votes

    # recording 7: two samples lean to class 1 a little, one to class 0 strongly -> class 0 by
    # the mean of log-probabilities (a majority vote would say 1); recording 3: class 2
    log_p = np.log(np.array([[0.45, 0.55, 0.0 + 1e-9], [0.45, 0.55, 1e-9], [0.98, 0.01, 0.01],
                             [0.1, 0.1, 0.8], [0.2, 0.2, 0.6]]))
    res = recording_votes(np.array([7, 7, 7, 3, 3]), log_p, np.array([0, 0, 0, 1, 1]), 3)
    assert res["n"] == 2
    assert res["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert res["accuracy"] == 0.5
    assert recording_votes(np.array([1, 2, 3]), log_p[:3], np.array([0, 1, 0]), 3) is None

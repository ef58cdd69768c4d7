"""Deep ensembles: members equal stand-alone classifiers, the average is the formula, training
each member inside the ensemble equals training it alone, streaming and checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.models import streaming
from eventssm.models.classifier import ClassifierConfig, EventClassifier
from eventssm.models.ensemble import EnsembleClassifier, make_classifier, member, member_logits, n_members
from eventssm.models.presets import get_preset
from eventssm.train.config import TrainConfig
from eventssm.train.optim import make_optimizer
from eventssm.train.steps import eval_step, loss_fn, train_step
from tests.models.test_classifier import _batch

VOCAB = 2 * 6 * 5
#: one stage of one block: the ensemble's properties do not depend on depth, and this compiles fast
SMALL = dict(n_stages=1, layers_per_stage=1, scan_method="sequential")
_forward = nnx.jit(lambda m, t, d, k: m(t, d, k))
_members = nnx.jit(lambda m, t, d, k: m.member_logits(t, d, k))


def _config(members=3, **over) -> ClassifierConfig:
    return get_preset("tiny", "s7", vocab_size=VOCAB, n_classes=4, grid=(6, 5, 2),
                      **{**SMALL, **over}).replace(members=members)


def _numpy_log_mean_softmax(z):
    """log((1/K) Σ_k softmax(z_k)) written out in float64."""
    z = np.asarray(z, np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.log(p.mean(0))


@pytest.mark.parametrize(("embedding", "members"), [("table", 3), ("fourier+table", 1)])
def test_members_are_classifiers_and_the_ensemble_averages_their_probabilities(embedding, members):
    model = make_classifier(_config(members, embedding=embedding), rngs=nnx.Rngs(params=0, dropout=1))
    n = len(embedding.split("+")) * members
    assert isinstance(model, EnsembleClassifier) and n_members(model) == n
    model.eval()
    tokens, dt, lengths = _batch(VOCAB)
    mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
    alone = []
    for k in range(n):
        one = member(model, k)
        assert isinstance(one, EventClassifier) and one.config.members == 1
        assert one.config.embedding == embedding.split("+")[k // members]
        one.eval()
        alone.append(np.asarray(_forward(one, tokens, dt, mask)))
    alone = np.stack(alone)
    np.testing.assert_allclose(np.asarray(_members(model, tokens, dt, mask)), alone, rtol=1e-5, atol=1e-5)
    # independently initialised: the members disagree
    assert np.abs(alone[0] - alone[1]).max() > 1e-2
    got = np.asarray(_forward(model, tokens, dt, mask))
    np.testing.assert_allclose(got, _numpy_log_mean_softmax(alone), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, rtol=1e-5)
    # appending padding changes nothing, as for one classifier
    pad = jnp.pad(tokens, ((0, 0), (0, 20))), jnp.pad(dt, ((0, 0), (0, 20))), jnp.pad(mask, ((0, 0), (0, 20)))
    np.testing.assert_allclose(np.asarray(_forward(model, *pad)), got, rtol=1e-5, atol=1e-5)


def test_one_member_is_the_plain_classifier():
    cfg = _config(members=1)
    a = make_classifier(cfg, rngs=nnx.Rngs(params=0, dropout=1))
    b = EventClassifier(cfg, rngs=nnx.Rngs(params=0, dropout=1))
    assert type(a) is EventClassifier and n_members(a) == 1
    tokens, dt, lengths = _batch(VOCAB)
    mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
    a.eval(), b.eval()
    za = np.asarray(_forward(a, tokens, dt, mask))
    np.testing.assert_array_equal(za, np.asarray(_forward(b, tokens, dt, mask)))
    np.testing.assert_array_equal(np.asarray(nnx.jit(member_logits)(a, tokens, dt, mask))[0], za)


def test_config_validation_and_json():
    with pytest.raises(ValueError, match="members"):
        _config(members=0)
    with pytest.raises(ValueError, match="make_classifier"):
        EventClassifier(_config(members=2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="members >= 2"):
        EnsembleClassifier(_config(members=1), rngs=nnx.Rngs(0))
    for bad in ("table+table", "table+", "mlp"):
        with pytest.raises(ValueError, match="embedding must be"):
            _config(members=1, embedding=bad)
    assert _config(members=2, embedding="table+fourier").embeddings == ("table", "fourier")
    cfg = _config(members=4)
    assert ClassifierConfig.from_json(cfg.to_json()) == cfg
    old = cfg.to_dict()
    del old["members"]  # a checkpoint written before ensembles existed
    assert ClassifierConfig.from_dict(old).members == 1


def _train(model, cfg: TrainConfig, batches, rng):
    optimizer = nnx.Optimizer(model, make_optimizer(cfg, model), wrt=nnx.Param)
    step = nnx.jit(train_step)
    out = []
    for i, (tokens, dt, mask, labels) in enumerate(batches):
        out.append(step(model, optimizer, tokens, dt, mask, labels, jax.random.fold_in(rng, i)))
    return out


def test_training_a_member_inside_the_ensemble_equals_training_it_alone():
    """Same batches, dropout off, clipping active: after three AdamW updates every member's
    parameters equal those of a copy of its initial parameters trained alone (the loss is a sum
    over members, clipping is per member). Two members of each of two embeddings."""
    ens = make_classifier(_config(members=2, dropout=0.0, embedding="table+fourier"),
                          rngs=nnx.Rngs(params=3, dropout=4))
    alone = [member(ens, k) for k in range(4)]
    cfg = TrainConfig(steps=3, lr=3e-2, ssm_lr=1e-2, warmup_steps=0, grad_clip=0.05, weight_decay=0.1)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(3):
        tokens, dt, lengths = _batch(VOCAB, seed=int(rng.integers(1 << 30)))
        mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
        batches.append((tokens, dt, mask, jnp.asarray(rng.integers(0, 4, 3), jnp.int32)))
    m_ens = _train(ens, cfg, batches, jax.random.key(0))
    m_one = [_train(one, cfg, batches, jax.random.key(0)) for one in alone]
    assert float(m_one[0][0]["grad_norm"]) > cfg.grad_clip  # clipping did act
    for k in range(4):
        got = nnx.state(member(ens, k), nnx.Param)
        want = nnx.state(alone[k], nnx.Param)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            # float32 noise only (Adam divides small gradient entries by their own size); the
            # updates themselves are ~1e-2 per entry and step
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-3, atol=1e-4)
    # the logged loss is the members' mean cross-entropy
    for i in range(3):
        want = np.mean([float(m[i]["loss"]) for m in m_one])
        np.testing.assert_allclose(float(m_ens[i]["loss"]), want, rtol=1e-4)


def test_member_clipping_is_each_members_global_norm_clipping():
    """clip_by_member_norm on an ensemble's gradients equals optax.clip_by_global_norm applied to
    every member's own gradients (two groups of three members, some above the limit, some below)."""
    import optax

    from eventssm.train.optim import clip_by_member_norm

    ens = make_classifier(_config(members=3, embedding="table+fourier"), rngs=nnx.Rngs(0))
    params = nnx.state(ens, nnx.Param)
    rng = np.random.default_rng(1)
    scale = np.array([0.01, 1.0, 30.0])  # member norms well below, near and above the limit
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * scale.reshape((-1,) + (1,) * (p.ndim - 1)),
                                               p.dtype), params)
    clipped, _ = clip_by_member_norm(1.0).update(grads, clip_by_member_norm(1.0).init(params))
    ref = optax.clip_by_global_norm(1.0)
    for g in range(2):
        for k in range(3):
            got = jax.tree.map(lambda a, k=k: a[k], clipped["groups"][g])
            alone = jax.tree.map(lambda a, k=k: a[k], grads["groups"][g])
            want, _ = ref.update(alone, ref.init(alone))
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-8)
    def norm(tree, k):
        return float(optax.tree.norm(jax.tree.map(lambda a: a[k], tree["groups"][0])))

    assert norm(grads, 0) < 1.0 < norm(grads, 1) < norm(grads, 2)  # one member below the limit
    assert norm(clipped, 0) == pytest.approx(norm(grads, 0), rel=1e-5)
    assert norm(clipped, 1) == pytest.approx(1.0, rel=1e-4) and norm(clipped, 2) == pytest.approx(1.0, rel=1e-4)


def test_the_loss_is_the_sum_of_the_members_and_eval_uses_the_ensemble():
    ens = make_classifier(_config(members=2), rngs=nnx.Rngs(params=0, dropout=1))
    ens.eval()
    tokens, dt, lengths = _batch(VOCAB)
    mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
    labels = jnp.asarray([0, 3, 1], jnp.int32)
    loss, logits = nnx.jit(loss_fn)(ens, tokens, dt, mask, labels)
    z = np.asarray(_members(ens, tokens, dt, mask), np.float64)
    lp = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
    want = sum(-lp[k][np.arange(3), np.asarray(labels)].mean() for k in range(2))
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    ens_lp = _numpy_log_mean_softmax(z)
    np.testing.assert_allclose(np.asarray(logits), ens_lp, rtol=1e-5, atol=1e-5)
    out = nnx.jit(eval_step)(ens, tokens, dt, mask, labels)
    np.testing.assert_allclose(float(out["loss"]), -ens_lp[np.arange(3), np.asarray(labels)].mean(), rtol=1e-5)


def test_ensemble_streaming_equals_the_full_ensemble_on_every_prefix():
    model = make_classifier(_config(members=2), rngs=nnx.Rngs(params=5, dropout=6))
    model.eval()
    tokens, dt, _ = _batch(VOCAB, b_sz=1, length=37, seed=9)
    streamer = streaming.make_streamer(model)
    assert isinstance(streamer, streaming.EnsembleStreamer)
    state = streamer.init_state(1)
    n = tokens.shape[1]

    def prefix(k):  # the full ensemble on the first k events (padding masked: one compiled shape)
        return np.asarray(_forward(model, tokens, dt, jnp.arange(n)[None, :] < k))[0]

    state, z = streamer.step_chunk(state, tokens[:, :20], dt[:, :20])
    for k in (5, 20):
        np.testing.assert_allclose(np.asarray(z[0, k - 1]), prefix(k), rtol=1e-4, atol=1e-4)
    for k in range(20, 22):
        state, zk = streamer.step(state, tokens[:, k], dt[:, k])
        np.testing.assert_allclose(np.asarray(zk[0]), prefix(k + 1), rtol=1e-4, atol=1e-4)
    state, last = streamer.step_chunk(state, tokens[:, 22:], dt[:, 22:], last_only=True)
    np.testing.assert_allclose(np.asarray(last[0]), prefix(n), rtol=1e-4, atol=1e-4)
    assert isinstance(streaming.make_streamer(member(model, 0)), streaming.Streamer)


def test_an_ensemble_run_folder_round_trips(tmp_path):
    from eventssm.tokenizers.settings import TokenizerSettings
    from eventssm.train.checkpoint import load_run, save_model_run
    from eventssm.train.spec import RunSpec

    cfg = _config(members=2)
    model = make_classifier(cfg, rngs=nnx.Rngs(params=1, dropout=2))
    model.eval()
    spec = RunSpec(model=cfg, train=TrainConfig(steps=1), class_names=("a", "b", "c", "d"),
                   tokenizer=TokenizerSettings(time_unit="us"), vocab_size=VOCAB, sensor_size=(6, 5, 2))
    save_model_run(tmp_path / "run", model, spec)
    loaded = load_run(tmp_path / "run").model
    assert isinstance(loaded, EnsembleClassifier) and loaded.config.members == 2
    tokens, dt, lengths = _batch(VOCAB)
    mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
    np.testing.assert_allclose(np.asarray(_forward(loaded, tokens, dt, mask)),
                               np.asarray(_forward(model, tokens, dt, mask)), rtol=1e-6, atol=1e-6)

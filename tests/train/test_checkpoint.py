"""Run-folder checkpoints: round trip, the kept set, damage detection, the typed RunSpec."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eventssm.models.classifier import EventClassifier
from eventssm.models.presets import get_preset
from eventssm.tokenizers.dataset import TokenizerSettings
from eventssm.train import CheckpointError, RunCheckpoints, RunSpec, TrainConfig, load_run, make_optimizer
from eventssm.train.checkpoint import CHECKSUMS, damage

SMALL = dict(layers_per_stage=1, scan_method="sequential", n_stages=1)
_forward = nnx.jit(lambda model, tokens, dt: model(tokens, dt))


def _spec(**model_kw):
    cfg = get_preset("tiny", "s7", vocab_size=32, n_classes=2, **{**SMALL, **model_kw})
    return RunSpec(model=cfg, train=TrainConfig(steps=3), tokenizer=TokenizerSettings(time_unit="us"),
                   sensor_size=(4, 4, 2), vocab_size=32, class_names=("a", "b"))


def _save(ckpt, spec, step, seed=5, val=None):
    model = EventClassifier(spec.model, rngs=nnx.Rngs(seed))
    opt = nnx.Optimizer(model, make_optimizer(spec.train, model), wrt=nnx.Param)
    ckpt.save(step, model, opt, root_key=jax.random.key(seed), meta={"spec": spec.to_dict(), "step": step}, val=val)
    return model, opt


def _leaves(obj, *filters):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(nnx.state(obj, *filters))]


def test_save_then_load_run_and_restore_are_exact(tmp_path):
    spec = _spec()
    ckpt = RunCheckpoints(tmp_path / "run")
    model, opt = _save(ckpt, spec, 3)
    # a fresh model and optimizer (other seed) take every array back
    other = EventClassifier(spec.model, rngs=nnx.Rngs(0))
    other_opt = nnx.Optimizer(other, make_optimizer(spec.train, other), wrt=nnx.Param)
    restored = ckpt.restore(3, other, other_opt)
    ckpt.close()
    for a, b in zip(_leaves(model, nnx.Param), _leaves(other, nnx.Param), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_leaves(opt), _leaves(other_opt), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(restored.root_key, np.asarray(jax.random.key_data(jax.random.key(5))))
    loaded = load_run(tmp_path / "run")
    assert loaded.spec == spec and loaded.step == 3 and loaded.which == "last"  # no validation: the last
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 32, (2, 40)), jnp.int32)
    dt = jnp.full((2, 40), 0.5, jnp.float32)
    model.eval()
    np.testing.assert_array_equal(np.asarray(_forward(loaded.model, tokens, dt)),
                                  np.asarray(_forward(model, tokens, dt)))


def test_keeps_the_last_k_and_the_best(tmp_path):
    spec = _spec()
    ckpt = RunCheckpoints(tmp_path / "run", keep=2)
    vals = {2: 0.9, 4: 0.5}
    for step in range(1, 7):
        val = {"accuracy": vals[step], "loss": 1.0} if step in vals else None
        _save(ckpt, spec, step, val=val)
    assert ckpt.steps() == [2, 5, 6] and ckpt.best_step() == 2
    ckpt.close()
    assert load_run(tmp_path / "run").step == 2
    assert load_run(tmp_path / "run", "last").step == 6


def test_a_damaged_checkpoint_is_skipped_by_resume_and_refused_by_load_run(tmp_path):
    spec = _spec()
    ckpt = RunCheckpoints(tmp_path / "run", keep=3)
    for step in (1, 2, 3):
        _save(ckpt, spec, step)
    step3 = ckpt.step_dir(3)
    biggest = max((p for p in step3.rglob("*") if p.is_file() and p.name != CHECKSUMS), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])  # truncated
    (ckpt.step_dir(2) / CHECKSUMS).unlink()  # as if killed between orbax's commit and the checksums
    assert "differs from its checksum" in damage(step3)
    assert "incomplete" in damage(ckpt.step_dir(2))
    assert damage(ckpt.step_dir(1)) is None
    step, notes = ckpt.latest_good()
    ckpt.close()
    assert step == 1 and len(notes) == 2 and "skipped" in notes[0]
    with pytest.raises(CheckpointError, match=r"checkpoints/3: checkpoint .*differs from its checksum"):
        load_run(tmp_path / "run", "last")


def test_load_run_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a run folder"):
        load_run(tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.json").write_text("{}")
    with pytest.raises(CheckpointError, match="older eventssm"):
        load_run(tmp_path / "old")
    with pytest.raises(ValueError, match="which"):
        load_run(tmp_path, "first")


class _Cache:
    def __init__(self, settings, vocab, names):
        self.settings, self.vocab_size, self.class_names = settings, vocab, names


def test_spec_round_trip_and_check_compatible():
    spec = _spec()
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    sliced = TokenizerSettings(time_unit="us", slice_events=100)
    spec.check_compatible(_Cache(sliced, 32, ("a", "b")))  # slicing only chose the samples
    with pytest.raises(CheckpointError, match=r"c\.h5: tokenizer settings differ .*time_unit"):
        spec.check_compatible(_Cache(TokenizerSettings(time_unit="ms"), 32, ("a", "b")), where="c.h5")
    with pytest.raises(CheckpointError, match="vocabulary 64"):
        spec.check_compatible(_Cache(sliced, 64, ("a", "b")))
    with pytest.raises(CheckpointError, match="class names"):
        spec.check_compatible(_Cache(sliced, 32, ("b", "a")))
    bad = {**spec.to_dict(), "format": 99}
    with pytest.raises(CheckpointError, match="layout version 99"):
        RunSpec.from_dict(bad)
    with pytest.raises(CheckpointError, match="invalid run description"):
        RunSpec.from_dict({"format": 1, "model": {}})
    assert spec.inference_settings().slice_events is None

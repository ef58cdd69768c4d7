"""fit with a run folder: early stopping keeps the best, a damaged checkpoint is skipped on resume."""

import importlib
import json

import jax
import numpy as np
from flax import nnx

from eventssm.models.classifier import EventClassifier
from eventssm.models.presets import get_preset
from eventssm.train import RunCheckpoints, TrainConfig, fit
from eventssm.train.checkpoint import CHECKSUMS
from eventssm.train.fit import Callbacks
from eventssm.train.interrupt import Interrupted

fit_module = importlib.import_module("eventssm.train.fit")  # the package attribute `fit` is the function


class Data:
    def __init__(self, n=6):
        rng = np.random.default_rng(0)
        self.items = []
        for i in range(n):
            tokens = rng.integers(0, 32, 40).astype(np.int32)
            dt = rng.exponential(1.0, 40).astype(np.float32)
            self.items.append((tokens, dt, i % 2))
        self.lengths = np.full(n, 40)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _model():
    cfg = get_preset("tiny", "s7", vocab_size=32, n_classes=2, layers_per_stage=1, n_stages=1,
                     scan_method="sequential")
    return EventClassifier(cfg, rngs=nnx.Rngs(0))


CFG = TrainConfig(steps=8, batch_size=2, crop_events=40, buckets=(64,), warmup_steps=0, log_every=1, keep=1,
                  augment="none", cutmix=0.0, sampling="uniform")  # plain dataset: nothing to augment


class Notes(Callbacks):
    def __init__(self):
        self.lines = []

    def note(self, message):
        self.lines.append(message)


def _params(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_patience_stops_early_and_the_model_is_the_best(tmp_path, monkeypatch):
    """Validation results are scripted (accuracy 0.5, 0.75, 0.6, 0.6): with patience 2 the
    run stops at the 4th validation, keeps step 2 (the best) and ends holding its parameters."""
    accs = iter([0.5, 0.75, 0.6, 0.6, 0.9])
    monkeypatch.setattr(fit_module, "evaluate", lambda *a, **k: {"accuracy": next(accs), "loss": 1.0, "n": 2,
                                                                 "confusion": [[1, 0], [0, 1]]})
    notes = Notes()
    model = _model()
    hist = fit(model, Data(), CFG.replace(eval_every=1, patience=2), train_indices=[0, 1, 2, 3],
               val_indices=[4, 5], run=tmp_path / "run", callbacks=notes)
    assert hist["stopped_early"] and hist["last_step"] == 4 and hist["best_step"] == 2
    assert any("stopping early at step 4" in n for n in notes.lines)
    ckpt = RunCheckpoints(tmp_path / "run")
    assert ckpt.steps() == [2, 4] and ckpt.best_step() == 2  # keep 1 (the last) + the best
    best = _model()
    ckpt.restore_params(2, best)
    ckpt.close()
    for a, b in zip(_params(model), _params(best), strict=True):
        np.testing.assert_array_equal(a, b)
    vals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["best_step"] for r in vals if r["kind"] == "val"] == [1, 2, 2, 2]


class StopAt:
    def __init__(self, n):
        self.n, self.polls = n, 0

    @property
    def requested(self):
        self.polls += 1
        return self.polls >= self.n


def test_resume_skips_a_damaged_checkpoint_with_one_note(tmp_path):
    run = tmp_path / "run"
    cfg = CFG.replace(checkpoint_every=1, keep=3)
    try:
        fit(_model(), Data(), cfg, run=run, stop=StopAt(3))
        raise AssertionError("not interrupted")
    except Interrupted as exc:
        assert exc.step == 3 and exc.saved
    step3 = run / "checkpoints" / "3"
    f = next(p for p in sorted(step3.rglob("*")) if p.is_file() and p.name != CHECKSUMS and p.stat().st_size > 64)
    f.write_bytes(b"\0" * f.stat().st_size)  # same size, other bytes
    notes = Notes()
    hist = fit(_model(), Data(), cfg, run=run, resume=True, callbacks=notes)
    assert [n.split(": ", 1)[1] for n in notes.lines[:1]] == [
        f"{f.relative_to(step3).as_posix()} differs from its checksum (damaged or truncated); skipped"]
    assert notes.lines[1].startswith("resuming from step 2")
    assert hist["last_step"] == 8 and [r["step"] for r in hist["train"]] == list(range(1, 9))

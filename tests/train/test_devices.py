"""Data parallelism on two fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=2,
which must be set before JAX starts, hence a subprocess): the sharded step computes the loss
and gradients of one device, and a two-device run's checkpoint resumes on one device."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import sys
import jax, jax.numpy as jnp, numpy as np
from flax import nnx
from eventssm.models.classifier import EventClassifier
from eventssm.models.presets import get_preset
from eventssm.train import RunCheckpoints, TrainConfig, fit
from eventssm.train.parallel import make_mesh, replicate, shard_batch
from eventssm.train.steps import loss_fn
from eventssm.train.interrupt import Interrupted

assert len(jax.devices()) == 2, jax.devices()
cfg = get_preset("tiny", "s7", vocab_size=32, n_classes=2, layers_per_stage=1, n_stages=1,
                 scan_method="sequential", dropout=0.0)
rng = np.random.default_rng(0)
tokens = rng.integers(0, 32, (4, 64)).astype(np.int32)
dt = rng.exponential(1.0, (4, 64)).astype(np.float32)
mask = np.arange(64)[None] < np.array([64, 30, 50, 10])[:, None]
labels = np.array([0, 1, 1, 0], np.int32)

@nnx.jit
def grads_of(model, t, d, m, y):
    (loss, _), g = nnx.value_and_grad(loss_fn, has_aux=True)(model, t, d, m, y)
    return loss, g

out = {}
for n in (1, 2):
    model = EventClassifier(cfg, rngs=nnx.Rngs(0))
    mesh = make_mesh(n)
    replicate(mesh, model)
    args = shard_batch(mesh, tokens, dt, mask, labels)
    assert len(args[0].sharding.device_set) == n
    loss, g = grads_of(model, *args)
    out[n] = (float(loss), [np.asarray(x) for x in jax.tree.leaves(g)])
assert abs(out[1][0] - out[2][0]) <= 1e-5, (out[1][0], out[2][0])
for a, b in zip(out[1][1], out[2][1], strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)

class Data:
    def __init__(self):
        self.items = [(tokens[i, :mask[i].sum()], dt[i, :mask[i].sum()], int(labels[i])) for i in range(4)]
    def __len__(self):
        return 4
    def __getitem__(self, i):
        return self.items[i]

class StopAfter:
    def __init__(self, n):
        self.n, self.calls = n, 0
    @property
    def requested(self):
        self.calls += 1
        return self.calls >= self.n

run = sys.argv[1]
tcfg = TrainConfig(steps=3, batch_size=2, crop_events=64, buckets=(64,), warmup_steps=0, checkpoint_every=1,
                   augment="none", cutmix=0.0, sampling="uniform",
                   log_every=1)
model = EventClassifier(cfg, rngs=nnx.Rngs(0))
try:
    fit(model, Data(), tcfg, run=run, devices=2, stop=StopAfter(2))
    raise SystemExit("not interrupted")
except Interrupted as exc:
    assert exc.step == 2 and exc.saved
two_dev = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
ckpt = RunCheckpoints(run)
assert ckpt.steps() == [1, 2]
saved = EventClassifier(cfg, rngs=nnx.Rngs(1))
ckpt.restore_params(2, saved)  # on the default (one) device
ckpt.close()
for a, b in zip(two_dev, jax.tree.leaves(nnx.state(saved, nnx.Param)), strict=True):
    np.testing.assert_array_equal(a, np.asarray(b))
model = EventClassifier(cfg, rngs=nnx.Rngs(1))
hist = fit(model, Data(), tcfg, run=run, devices=1, resume=True)
assert hist["last_step"] == 3 and [r["step"] for r in hist["train"]] == [1, 2, 3], hist["train"]
'''


def test_two_fake_devices_match_one_and_resume_on_one(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

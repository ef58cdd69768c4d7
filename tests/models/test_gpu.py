"""GPU checks (mark ``gpu``): on the CUDA backend the scans and the classifier compute what the
float64 numpy reference and the CPU backend compute.

The suite pins JAX to the CPU (``tests/conftest.py``), so these tests are skipped unless JAX
sees a CUDA device; on a GPU machine with the ``cuda`` extra installed run them with
``make test-gpu`` (``JAX_PLATFORMS=cuda,cpu python -m pytest -m gpu tests``).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from eventssm.models.classifier import EventClassifier
from eventssm.models.presets import get_preset
from eventssm.models.scan import ScanMethod, linear_recurrence, linear_recurrence_numpy, resolve_method
from eventssm.train.steps import loss_fn


def _gpu():
    """The first CUDA device JAX sees, or None (JAX pinned to the CPU, no CUDA jaxlib, no GPU)."""
    try:
        devices = jax.devices("gpu")
    except RuntimeError:
        return None
    return devices[0] if devices else None


GPU = _gpu()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        GPU is None,
        reason="no CUDA device visible to JAX (install the [cuda] extra, run `make test-gpu`)",
    ),
]


def _rel_err(x, ref) -> float:
    x = np.asarray(x, np.complex128)
    ref = np.asarray(ref, np.complex128)
    return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-30))


def test_auto_scan_is_associative_on_gpu():
    if jax.default_backend() == "cpu":
        pytest.skip("the default backend is the CPU (JAX_PLATFORMS lists cpu first)")
    assert resolve_method("auto") is ScanMethod.ASSOCIATIVE


@pytest.mark.parametrize("method", ["sequential", "associative", "chunked"])
def test_scans_on_gpu_match_numpy(method):
    rng = np.random.default_rng(0)
    length, feat = 4096, (3, 16)
    a = rng.uniform(0.5, 0.999, (length, *feat)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (length, *feat)))
    b = rng.normal(size=(length, *feat)) + 1j * rng.normal(size=(length, *feat))
    h0 = rng.normal(size=feat) + 1j * rng.normal(size=feat)
    ref_h, ref_last = linear_recurrence_numpy(a, b, h0)
    a32, b32, h32 = (jax.device_put(np.asarray(v, np.complex64), GPU) for v in (a, b, h0))
    fn = jax.jit(lambda a, b, h: linear_recurrence(a, b, h, method=method))
    h, last = fn(a32, b32, h32)
    assert h.devices() == {GPU}
    assert _rel_err(h, ref_h) < 1e-5
    assert _rel_err(last, ref_last) < 1e-5


@pytest.mark.parametrize("layer", ["s5", "s7"])
def test_classifier_loss_and_grads_on_gpu_match_cpu(layer):
    """Same parameters and batch on both backends (float32 matmuls at full precision, no TF32):
    loss within 1e-4 relative, the whole gradient within 1e-3 relative (norm of the
    difference), in a padded batch."""
    cpu = jax.devices("cpu")[0]
    cfg = get_preset("tiny", layer=layer, layers_per_stage=1, dropout=0.0)
    with jax.default_device(cpu):
        model = EventClassifier(cfg, rngs=nnx.Rngs(0))
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    rng = np.random.default_rng(1)
    b_sz, length = 4, 300
    tokens = rng.integers(0, cfg.vocab_size, (b_sz, length)).astype(np.int32)
    dt = rng.exponential(0.05, (b_sz, length)).astype(np.float32)
    mask = np.arange(length)[None, :] < np.array([300, 211, 64, 5])[:, None]
    labels = rng.integers(0, cfg.n_classes, b_sz).astype(np.int32)

    def loss(params, rest, tokens, dt, mask, labels):
        return loss_fn(nnx.merge(graphdef, params, rest), tokens, dt, mask, labels)[0]

    grad_fn = jax.jit(jax.value_and_grad(loss))
    out = {}
    with jax.default_matmul_precision("highest"):
        for name, dev in (("cpu", cpu), ("gpu", GPU)):
            args = jax.device_put((params, rest, tokens, dt, mask, labels), dev)
            value, grads = grad_fn(*args)
            assert value.devices() == {dev}
            out[name] = (float(value), jax.tree.leaves(grads))
    (l_cpu, g_cpu), (l_gpu, g_gpu) = out["cpu"], out["gpu"]
    assert np.isfinite(l_gpu)
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-4)
    flat_cpu = np.concatenate([np.ravel(np.asarray(g, np.complex128)) for g in g_cpu])
    flat_gpu = np.concatenate([np.ravel(np.asarray(g, np.complex128)) for g in g_gpu])
    assert np.all(np.isfinite(flat_gpu))
    assert np.linalg.norm(flat_gpu - flat_cpu) <= 1e-3 * np.linalg.norm(flat_cpu)

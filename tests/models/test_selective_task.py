"""S7 learns an input-dependent task that the time-invariant S5 cannot: "last marked value".

A sequence of L = 48 tokens holds distractors (plain values 0…K−1) and a burst of 2–6 *marked*
values (tokens K…2K−1) separated by gaps of 1–3 steps, followed by a random-length tail of
distractors. The label is the value of the LAST marked token, read at the final position.

Why S5 fails: with one S5 layer the readout state is ``x_L = Σ_k Λ̄^{L−k} B̄ e(u_k)`` — a fixed
(time-invariant) kernel over lags. Telling the last mark from the one 1–3 steps before it
needs a kernel that falls steeply between neighbouring lags, while a tail of up to ~45
distractors needs the same kernel to stay large over long lags; no decaying kernel does both.
S7 solves it by selection: a large δ_k at marked tokens resets the state
(Λ̄_k = exp(λ_k δ_k) ≈ 0) and writes the value, a tiny δ_k at distractors keeps it
(Λ̄_k ≈ 1, B̄_k ≈ 0) — the input-dependent decay that S5 lacks.

Same width H, state N, optimiser, data, steps and seed for both; CPU, deterministic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from eventssm.models.ssm import SSMConfig, make_ssm

K, L, H, N = 8, 48, 16, 16
STEPS, BATCH = 200, 64


def make_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    toks = rng.integers(0, K, size=(n, L))
    labels = np.zeros(n, np.int32)
    for i in range(n):
        marks = int(rng.integers(2, 7))
        gaps = rng.integers(1, 4, size=marks - 1)
        tail = int(rng.integers(0, L - int(gaps.sum())))
        last = L - 1 - tail
        pos = last - np.concatenate([[0], np.cumsum(gaps[::-1])])[::-1]
        vals = rng.integers(0, K, size=marks)
        toks[i, pos] = K + vals
        labels[i] = vals[-1]
    return toks.astype(np.int32), labels


def test_batch_generator_labels_the_last_marked_token():
    toks, labels = make_batch(np.random.default_rng(1), 200)
    for row, lab in zip(toks, labels):
        marked = np.flatnonzero(row >= K)
        assert 2 <= marked.size <= 6
        assert row[marked[-1]] - K == lab
        assert np.all(np.diff(marked) <= 3)


class TinyModel(nnx.Module):
    """Embedding → one SSM layer (``kind``: "s5", "s7" or "s7paper") → GELU → linear head on the
    last position.  (benchmarks/bench_s7_forms.py runs the three kinds on this task.)"""

    def __init__(self, kind: str, rngs: nnx.Rngs):
        self.embed = nnx.Embed(2 * K, H, rngs=rngs)
        self.ssm = make_ssm(SSMConfig(kind, H, N, rank=4, scan_method="sequential"), rngs=rngs)
        self.head = nnx.Linear(H, K, rngs=rngs)

    def __call__(self, toks: jax.Array) -> jax.Array:
        u = self.embed(toks)
        y, _ = self.ssm(u, jnp.ones(toks.shape, jnp.float32))  # regular sequence: dt = 1
        return self.head(jax.nn.gelu(y[:, -1]))


def train_and_evaluate(kind: str, seed: int = 0, steps: int = STEPS) -> float:
    """Test accuracy (1000 fresh sequences) of a TinyModel after ``steps`` Adam steps."""
    model = TinyModel(kind, nnx.Rngs(seed))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, opt, toks, labels):
        def loss_fn(model):
            logits = model(toks)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    @nnx.jit
    def accuracy(model, toks, labels):
        return jnp.mean(jnp.argmax(model(toks), -1) == labels)

    rng = np.random.default_rng(seed)
    for _ in range(steps):
        train_step(model, opt, *make_batch(rng, BATCH))
    return float(accuracy(model, *make_batch(np.random.default_rng(12345), 1000)))


@pytest.mark.slow
def test_s7_learns_last_marked_value_and_s5_does_not():
    acc_s7 = train_and_evaluate("s7")
    acc_s5 = train_and_evaluate("s5")
    assert acc_s7 >= 0.95, acc_s7
    assert acc_s5 <= 0.6, acc_s5  # chance is 1/K = 0.125; S5 plateaus near 0.4

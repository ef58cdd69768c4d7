"""Token embeddings: the per-token table of EventSSM and a Fourier-feature embedding of the
event's position.

Tokens follow the contract of :mod:`eventssm.tokenizers.functional` (DESIGN.md §3)::

    token = P2 · (x · H2 + y) + p          grid (W2, H2, P2), vocabulary V = P2 · W2 · H2

``"table"`` (EventSSM, Schöne et al. 2024; S7)::

    u_k = E[token_k]                       E: (V, H) learned

``"fourier"``::

    x̂ = (x + ½) / W2,  ŷ = (y + ½) / H2                     ∈ (0, 1)
    φ(token) = [sin(π 2^j x̂), cos(π 2^j x̂), sin(π 2^j ŷ), cos(π 2^j ŷ)  (j = 0 … J−1),
                onehot_{P2}(p)]                                        (4J + P2,)
    u_k = W_2 · GELU(W_1 φ(token_k) + b_1) + b_2                        W_1: (F, 4J + P2), W_2: (H, F)

with J = :data:`FOURIER_OCTAVES` (the finest period is 2/2^(J−1) of the frame: 8 pixels on a
128-pixel axis) and F = :data:`FOURIER_HIDDEN`.

Why a second form: the table gives each pixel its own vector, learned only from the pixels where
training events fell. On a new take the subject stands elsewhere in the frame, is larger or is
filmed by another camera, and its events look up vectors trained in other contexts (or never
trained). The Fourier map gives neighbouring pixels neighbouring vectors (smooth in position at
the resolution of its finest octave), with ``F·(4J + P2 + 1) + H·(F + 1)`` parameters instead of
``V·H``. Measured on the leave-one-take-out benchmark of real DVS128 activities
(docs/recipe.md, benchmarks/RESULTS.md) it did not beat the table on average, so the table
stays the default and the form of the published recipes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["EMBEDDINGS", "FOURIER_HIDDEN", "FOURIER_OCTAVES", "FourierEmbed", "fourier_features",
           "make_embedding", "token_coordinates"]

#: Names of :class:`~eventssm.models.classifier.ClassifierConfig` ``embedding``.
EMBEDDINGS = ("table", "fourier")
#: J, octaves of the Fourier features per axis.
FOURIER_OCTAVES = 6
#: F, hidden width of the Fourier embedding's MLP.
FOURIER_HIDDEN = 32


def token_coordinates(tokens: jax.Array, grid: tuple[int, int, int]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(x, y, p)`` of tokens ``P2 · (x · H2 + y) + p`` on ``grid = (W2, H2, P2)`` (int arrays,
    the shape of ``tokens``)."""
    _, h2, p2 = grid
    tokens = jnp.asarray(tokens, jnp.int32)
    cell = tokens // p2
    return cell // h2, cell % h2, tokens % p2


def fourier_features(tokens: jax.Array, grid: tuple[int, int, int], octaves: int = FOURIER_OCTAVES) -> jax.Array:
    """φ(token) of the module docstring: (..., 4J + P2) float32."""
    w2, h2, p2 = grid
    x, y, p = token_coordinates(tokens, grid)
    freq = jnp.pi * 2.0 ** jnp.arange(octaves, dtype=jnp.float32)  # (J,)
    ax = ((x.astype(jnp.float32) + 0.5) / w2)[..., None] * freq
    ay = ((y.astype(jnp.float32) + 0.5) / h2)[..., None] * freq
    return jnp.concatenate(
        [jnp.sin(ax), jnp.cos(ax), jnp.sin(ay), jnp.cos(ay), jax.nn.one_hot(p, p2, dtype=jnp.float32)], axis=-1)


class FourierEmbed(nnx.Module):
    """``u = W_2 · GELU(W_1 φ(token) + b_1) + b_2`` (module docstring).

    Args:
        grid: the token grid ``(W2, H2, P2)``.
        features: H, the output width.
        dtype: computation dtype of the two linear layers (φ is computed in float32).
        rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    def __init__(self, grid: tuple[int, int, int], features: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.grid = tuple(int(v) for v in grid)
        n_in = 4 * FOURIER_OCTAVES + self.grid[2]
        self.hidden = nnx.Linear(n_in, FOURIER_HIDDEN, dtype=dtype, rngs=rngs)
        self.out = nnx.Linear(FOURIER_HIDDEN, features, dtype=dtype, rngs=rngs)

    @property
    def num_embeddings(self) -> int:
        """V = W2 · H2 · P2."""
        w2, h2, p2 = self.grid
        return w2 * h2 * p2

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """(...,) int tokens -> (..., H)."""
        return self.out(jax.nn.gelu(self.hidden(fourier_features(tokens, self.grid))))

    @property
    def embedding(self) -> jax.Array:
        """The (V, H) table of every token's vector (``table[t] == self(t)``), for code that
        tabulates per-token terms (:meth:`EventClassifier.token_table`)."""
        return self(jnp.arange(self.num_embeddings, dtype=jnp.int32))


def make_embedding(kind: str, vocab_size: int, features: int, grid: tuple[int, int, int] | None, *,
                   dtype=jnp.float32, rngs: nnx.Rngs) -> nnx.Module:
    """The token embedding ``kind`` ("table" or "fourier"; see the module docstring)."""
    if kind == "table":
        return nnx.Embed(vocab_size, features, dtype=dtype, rngs=rngs)
    if kind == "fourier":
        if grid is None:
            raise ValueError("the fourier embedding needs the token grid (W2, H2, P2)")
        return FourierEmbed(grid, features, dtype=dtype, rngs=rngs)
    raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {kind!r}")

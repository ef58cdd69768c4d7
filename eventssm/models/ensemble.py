"""Deep ensemble: K classifiers of one configuration, trained side by side, probabilities averaged.

A small model trained on a few takes lands, seed by seed, on different answers for the windows
its data leaves open (benchmarks/RESULTS.md: the same recipe gives 0.81–0.92 on unseen takes
with seeds 0, 1, 2). Averaging the predictive distributions of K independently initialised
members (Lakshminarayanan et al. 2017, "Simple and scalable predictive uncertainty estimation
using deep ensembles", arXiv 1612.01474) is the standard remedy for such spread; on the six
real takes of the project's benchmark it did not raise the mean (RESULTS.md, fourth session),
so it is an option, not the default:

    z_k = f_{θ_k}(x)                          (B, C) logits of member k = 0 … K−1
    p(c | x) = (1/K) Σ_k softmax(z_k)_c        (B, C)
    logits returned = log p(c | x)             (B, C)   (softmax(log p) = p: a valid logit vector)

Training keeps the members independent: the loss is Σ_k CE(z_k, y) on the same batch, and
gradients are clipped per member (:func:`eventssm.train.optim.clip_by_member_norm`), so member
k's update is exactly the one it would get trained alone on those batches (AdamW is
element-wise); they differ by their initialisation and dropout masks.

The members of one embedding are one :class:`EventClassifier` whose parameters carry a leading
axis of size K (``nnx.vmap`` over the module), so one compiled program runs them all; groups of
different embeddings run one after the other. Measured on the 2-core CPU (RESULTS.md): three
table members train in 2.2 times the time of one, a table and a Fourier member in 1.7 times.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from eventssm.models.classifier import ClassifierConfig, EventClassifier

__all__ = ["EnsembleClassifier", "combine_logits", "make_classifier", "member", "member_logits", "n_config_members",
           "n_members"]


class EnsembleClassifier(nnx.Module):
    """The members of ``config``: for each embedding of ``config.embedding`` (``"table"``,
    ``"fourier"`` or several joined by ``+``, e.g. ``"table+fourier"``), ``config.members``
    EventClassifiers of ``config`` with that embedding and ``members = 1``.

    Args:
        config: :class:`ClassifierConfig` with ``members >= 2`` or a mixed embedding.
        rngs: ``nnx.Rngs``; each member draws its own parameters and dropout stream from it.

    Attributes:
        config: the ensemble's config.
        groups: one EventClassifier per embedding, whose every variable has a leading axis of
            size ``config.members`` (the members of that embedding, stacked by ``nnx.vmap``).
    """

    def __init__(self, config: ClassifierConfig, *, rngs: nnx.Rngs):
        if n_config_members(config) < 2:
            raise ValueError(f"an ensemble needs members >= 2 or a mixed embedding, got {config.members} "
                             f"× {config.embedding!r}")
        self.config = config
        groups = []
        for emb in config.embeddings:
            groups.append(_stacked(config.replace(members=1, embedding=emb), config.members, rngs))
        self.groups = nnx.List(groups)

    def member_logits(self, tokens, dt, mask=None, *, lengths=None) -> jax.Array:
        """(M, B, C) float32 logits of every member, group after group (M = groups × members;
        arguments as :meth:`EventClassifier.__call__`)."""

        @nnx.vmap(in_axes=(0, None, None, None, None), out_axes=0)
        def run(m, t, d, k, n):
            return m(t, d, k, lengths=n)

        return jnp.concatenate([run(g, tokens, dt, mask, lengths) for g in self.groups], axis=0)

    def __call__(self, tokens, dt, mask=None, *, lengths=None) -> jax.Array:
        """(B, C) float32: log of the mean of the members' class probabilities."""
        z = self.member_logits(tokens, dt, mask, lengths=lengths)
        return combine_logits(z, axis=0)


def _stacked(one: ClassifierConfig, k: int, rngs: nnx.Rngs) -> EventClassifier:
    """K classifiers of config ``one`` as one module with a leading axis K on every variable."""

    @nnx.split_rngs(splits=k)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def create(r: nnx.Rngs) -> EventClassifier:
        return EventClassifier(one, rngs=r)

    return create(rngs)


def combine_logits(z: jax.Array, axis: int = 0) -> jax.Array:
    """``log((1/K) Σ_k softmax(z_k))`` over ``axis`` (size K) of logits ``z``."""
    k = z.shape[axis]
    return jax.nn.logsumexp(jax.nn.log_softmax(z, axis=-1), axis=axis) - jnp.log(k)


def n_config_members(config: ClassifierConfig) -> int:
    """Members of the model ``config`` describes: embeddings × ``members``."""
    return len(config.embeddings) * int(config.members)


def make_classifier(config: ClassifierConfig, *, rngs: nnx.Rngs) -> EventClassifier | EnsembleClassifier:
    """The model of ``config``: an :class:`EventClassifier`, or an :class:`EnsembleClassifier`
    when it has several members."""
    if n_config_members(config) > 1:
        return EnsembleClassifier(config, rngs=rngs)
    return EventClassifier(config, rngs=rngs)


def n_members(model) -> int:
    """Members of an ensemble, 1 for a single classifier."""
    return n_config_members(model.config) if isinstance(model, EnsembleClassifier) else 1


def member_logits(model, tokens, dt, mask=None) -> jax.Array:
    """(K, B, C) logits of every member; (1, B, C) for a single classifier."""
    if isinstance(model, EnsembleClassifier):
        return model.member_logits(tokens, dt, mask)
    return model(tokens, dt, mask)[None]


def member(model: EnsembleClassifier, k: int) -> EventClassifier:
    """Member ``k`` (in the order of :meth:`EnsembleClassifier.member_logits`) as a stand-alone
    :class:`EventClassifier` (a copy of its parameters)."""
    group, i = divmod(k, int(model.config.members))
    graphdef, state = nnx.split(model.groups[group])
    return nnx.merge(graphdef, jax.tree.map(lambda a: a[i], state))

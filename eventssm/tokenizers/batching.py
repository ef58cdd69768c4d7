"""Padding token streams into fixed-shape batches, with length buckets.

Bucketing keeps the number of distinct padded lengths small so that a jit-compiled model
compiles once per bucket, not once per batch. Pure numpy; never imports JAX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eventssm.events import ArgumentError

__all__ = ["DEFAULT_BUCKETS", "Batch", "bucket_length", "pad_batch"]

DEFAULT_BUCKETS: tuple[int, ...] = tuple(2**k for k in range(10, 18))  # 1024 … 131072


@dataclass(frozen=True)
class Batch:
    """A padded batch of token streams (B sequences, padded length L).

    Attributes:
        tokens: (B, L) int32 token ids; padding holds ``pad_token``.
        dt: (B, L) float32 inter-event times; padding holds 0.
        mask: (B, L) bool, True on real events (the first ``lengths[b]`` positions).
        lengths: (B,) int32 number of real events per row.
        labels: (B,) int32 class ids, or (B, C) float32 soft labels.
        index: (B,) int64 dataset indices of the rows, or None (set by
            :func:`eventssm.train.data.batches`).
    """

    tokens: np.ndarray
    dt: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    index: np.ndarray | None = None

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def length(self) -> int:
        return int(self.tokens.shape[1])


def bucket_length(n: int, buckets: Sequence[int] | None = None) -> int:
    """Smallest bucket >= ``n``.

    Args:
        n: sequence length (>= 0).
        buckets: allowed padded lengths (any order); default powers of two 1024 … 131072.
    Returns:
        the padded length.
    Raises:
        ArgumentError: ``n`` exceeds the largest bucket (slice the stream first).
    """
    bs = sorted(int(b) for b in (DEFAULT_BUCKETS if buckets is None else buckets))
    if not bs or bs[0] < 1:
        raise ArgumentError(f"buckets must be positive lengths, got {buckets}")
    i = int(np.searchsorted(bs, int(n), side="left"))
    if i == len(bs):
        raise ArgumentError(
            f"sequence of {n} events is longer than the largest bucket {bs[-1]}; "
            "slice it first (slice_by_count)"
        )
    return bs[i]


def pad_batch(
    seqs: Sequence[tuple[np.ndarray, np.ndarray]],
    labels: Sequence[int] | np.ndarray,
    *,
    buckets: Sequence[int] | None = None,
    pad_token: int = 0,
) -> Batch:
    """Pad ``(tokens, dt)`` pairs to the bucket of the longest one.

    Args:
        seqs: B pairs of (N_b,) tokens and (N_b,) dt.
        labels: (B,) class ids or (B, C) soft labels.
        buckets: allowed padded lengths (default :data:`DEFAULT_BUCKETS`).
        pad_token: token written into padding (masked out; dt is 0 there).
    Returns:
        a :class:`Batch`; ``tokens[b, :N_b]`` and ``dt[b, :N_b]`` equal the inputs exactly.
    """
    if len(seqs) == 0:
        raise ArgumentError("pad_batch needs at least one sequence")
    lengths = np.array([len(tok) for tok, _ in seqs], dtype=np.int32)
    for b, (tok, dt) in enumerate(seqs):
        if len(tok) != len(dt):
            raise ArgumentError(f"sequence {b}: {len(tok)} tokens but {len(dt)} dt values")
    labels = np.asarray(labels)
    if labels.shape[0] != len(seqs) or labels.ndim not in (1, 2):
        raise ArgumentError(
            f"labels of shape {labels.shape} do not match {len(seqs)} sequences"
        )
    labels = labels.astype(np.int32) if labels.ndim == 1 else labels.astype(np.float32)
    length = bucket_length(int(lengths.max()), buckets)
    bsz = len(seqs)
    tokens = np.full((bsz, length), pad_token, dtype=np.int32)
    dts = np.zeros((bsz, length), dtype=np.float32)
    for b, (tok, dt) in enumerate(seqs):
        tokens[b, : lengths[b]] = tok
        dts[b, : lengths[b]] = dt
    mask = np.arange(length)[None, :] < lengths[:, None]
    return Batch(tokens=tokens, dt=dts, mask=mask, lengths=lengths, labels=labels)

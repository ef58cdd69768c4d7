"""Padding and bucketing invariants."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventssm.events import ArgumentError
from eventssm.tokenizers import batching as B
from eventssm.tokenizers import functional as F


def test_default_buckets():
    assert B.DEFAULT_BUCKETS == (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
    assert B.bucket_length(0) == 1024
    assert B.bucket_length(1024) == 1024
    assert B.bucket_length(1025) == 2048
    assert B.bucket_length(131072) == 131072
    with pytest.raises(ArgumentError, match="largest bucket 131072"):
        B.bucket_length(131073)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 5000), buckets=st.lists(st.integers(1, 6000), min_size=1, max_size=6))
def test_bucket_length_is_smallest_fitting(n, buckets):
    fitting = [b for b in buckets if b >= n]
    if not fitting:
        with pytest.raises(ArgumentError):
            B.bucket_length(n, buckets)
    else:
        assert B.bucket_length(n, buckets) == min(fitting)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 300), min_size=1, max_size=6),
    pad=st.integers(-1, 50),
    soft=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_pad_batch_invariants(lengths, pad, soft, seed):
    rng = np.random.default_rng(seed)
    seqs = [
        (rng.integers(0, 100, n).astype(np.int32), rng.random(n).astype(np.float32))
        for n in lengths
    ]
    labels = rng.random((len(lengths), 4)) if soft else rng.integers(0, 10, len(lengths))
    batch = B.pad_batch(seqs, labels, buckets=(64, 128, 256, 512), pad_token=pad)
    L = B.bucket_length(max(lengths), (64, 128, 256, 512))
    assert batch.tokens.shape == batch.dt.shape == batch.mask.shape == (len(lengths), L)
    assert batch.tokens.dtype == np.int32 and batch.dt.dtype == np.float32
    assert batch.mask.dtype == np.bool_ and batch.lengths.dtype == np.int32
    np.testing.assert_array_equal(batch.lengths, lengths)
    np.testing.assert_array_equal(batch.mask.sum(1), lengths)
    for b, (tok, dt) in enumerate(seqs):
        n = lengths[b]
        np.testing.assert_array_equal(batch.tokens[b, :n], tok)  # valid part unchanged
        np.testing.assert_array_equal(batch.dt[b, :n], dt)
        assert batch.mask[b, :n].all() and not batch.mask[b, n:].any()
        assert (batch.tokens[b, n:] == pad).all() and (batch.dt[b, n:] == 0).all()
    if soft:
        assert batch.labels.dtype == np.float32 and batch.labels.shape == (len(lengths), 4)
        np.testing.assert_allclose(batch.labels, labels.astype(np.float32))
    else:
        assert batch.labels.dtype == np.int32
        np.testing.assert_array_equal(batch.labels, labels)
    assert batch.batch_size == len(lengths) and batch.length == L


def test_pad_batch_from_tokenized_events_and_frozen():
    rng = np.random.default_rng(0)
    seqs = []
    for n in (10, 700, 1500):
        t = np.sort(rng.integers(0, 10**6, n))
        ev = np.zeros(n, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
        ev["x"], ev["y"], ev["t"] = rng.integers(0, 34, n), rng.integers(0, 34, n), t
        seqs.append(F.tokenize(ev, (34, 34, 2)))
    batch = B.pad_batch(seqs, [0, 1, 2])
    assert batch.tokens.shape == (3, 2048)
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.tokens = None


def test_pad_batch_errors():
    tok = np.zeros(3, np.int32)
    with pytest.raises(ArgumentError, match="at least one"):
        B.pad_batch([], [])
    with pytest.raises(ArgumentError, match="3 tokens but 2 dt"):
        B.pad_batch([(tok, np.zeros(2, np.float32))], [0])
    with pytest.raises(ArgumentError, match="labels of shape"):
        B.pad_batch([(tok, np.zeros(3, np.float32))], [0, 1])
    with pytest.raises(ArgumentError, match="slice it first"):
        B.pad_batch([(tok, np.zeros(3, np.float32))], [0], buckets=(2,))

"""Batches from a token dataset: random crops for training, whole samples for evaluation."""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import re
from collections.abc import Iterator, Sequence

import numpy as np

from eventssm.tokenizers.batching import Batch, pad_batch
from eventssm.tokenizers.functional import random_crop

log = logging.getLogger(__name__)


def batches(
    dataset,
    batch_size: int,
    rng: np.random.Generator | None = None,
    *,
    indices: Sequence[int] | None = None,
    crop_events: int | None = None,
    buckets: Sequence[int] | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    epochs: int | None = 1,
    augment=None,
    balance: bool = False,
) -> Iterator[Batch]:
    """Yield padded :class:`Batch` es from ``dataset[i] -> (tokens, dt, label)`` (``Batch.index``
    holds the rows' dataset indices).

    Args:
        dataset: a TokenDataset (or any sequence of ``(tokens, dt, label)``).
        batch_size: sequences per batch.
        rng: generator for shuffling and crops (required when ``shuffle`` or ``crop_events``).
        indices: subset of sample indices (default: all).
        crop_events: take a random window of at most this many events per sample (training);
            ``None`` keeps whole samples (evaluation). A crop's first ``dt`` is set to 0, as if
            the stream started there.
        buckets: padded lengths allowed (see :func:`~eventssm.tokenizers.batching.pad_batch`).
        shuffle: shuffle the order each epoch; without it samples are grouped by length so
            evaluation pads little.
        drop_last: drop a final incomplete batch.
        epochs: passes over the data; ``None`` repeats forever.
        augment: a :class:`~eventssm.train.augment.TokenAugment` applied to each batch after
            the crops (event transforms, CutMix with soft labels), or None.
        balance: class-balanced sampling (needs ``shuffle`` and the dataset's ``labels``):
            each epoch draws ``len(indices)`` samples with replacement, sample ``i`` with
            probability ∝ ``1 / n_{label_i}`` (see :func:`balanced_weights`), so every class is
            drawn equally often whatever its share of the data.
    """
    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(idx) == 0:
        return
    augmenting = augment is not None and augment.active
    if (shuffle or crop_events or augmenting) and rng is None:
        raise ValueError("shuffle/crop_events/augment need an explicit np.random.Generator")
    if not shuffle:
        lengths = getattr(dataset, "lengths", None)
        if lengths is not None:
            idx = idx[np.argsort(np.asarray(lengths)[idx], kind="stable")]
    weights = None
    if balance:
        if not shuffle:
            raise ValueError("balance needs shuffle=True")
        labels = getattr(dataset, "labels", None)
        labels = (np.asarray(labels)[idx] if labels is not None
                  else np.asarray([dataset[int(i)][2] for i in idx]))
        weights = balanced_weights(labels)
    epoch = 0
    while epochs is None or epoch < epochs:
        if weights is not None:
            order = rng.choice(idx, size=len(idx), replace=True, p=weights)
        else:
            order = rng.permutation(idx) if shuffle else idx
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            if drop_last and len(chunk) < batch_size:
                break
            yield make_batch(dataset, chunk, rng, crop_events=crop_events, buckets=buckets,
                             augment=augment if augmenting else None)
        epoch += 1


def make_batch(dataset, chunk, rng: np.random.Generator | None, *, crop_events: int | None = None,
               buckets: Sequence[int] | None = None, augment=None) -> Batch:
    """One padded batch of the samples ``chunk`` (random crops and ``augment`` drawn from ``rng``)."""
    seqs, labels = [], []
    for i in chunk:
        tokens, dt, label = dataset[int(i)]
        if crop_events is not None and len(tokens) > crop_events:
            a, b = random_crop(rng, len(tokens), crop_events)
            tokens, dt = tokens[a:b], dt[a:b].copy()
            dt[0] = 0.0
        seqs.append((tokens, dt))
        labels.append(label)
    if augment is not None and augment.active:
        seqs, labels = augment.batch(seqs, labels, rng)
    batch = pad_batch(seqs, np.asarray(labels), buckets=buckets)
    return dataclasses.replace(batch, index=np.asarray(chunk, dtype=np.int64))
def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Sampling probabilities ``w_i = 1 / (C · n_{y_i})`` for labels (K,): each of the ``C``
    classes present gets total probability ``1 / C`` (sums to 1)."""
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / (len(classes) * counts[inverse].astype(np.float64))


def split_by_source(
    labels: np.ndarray, source_index: np.ndarray, val_fraction: float, rng: np.random.Generator,
    source_group: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation split that keeps all slices of one recording together
    (or, with ``source_group``, all recordings of one group: the takes a user cut into clips).

    Args:
        labels: (K,) class id of each sample.
        source_index: (K,) recording each sample was cut from.
        val_fraction: share of each class's recordings (groups) held out (at least one per
            class when the class has two or more, none when 0).
        source_group: (S,) group id of each recording (:func:`source_groups`), or None: every
            recording is its own group. A group chosen for one class is held out whole.
    Returns:
        (train_indices, val_indices) sorted sample indices.
    """
    labels = np.asarray(labels)
    source_index = np.asarray(source_index)
    unit = source_index if source_group is None else np.asarray(source_group)[source_index]
    val_units = []
    for c in np.unique(labels):
        units = np.unique(unit[labels == c])
        n_val = round(val_fraction * len(units))
        if val_fraction > 0 and len(units) >= 2:
            n_val = min(max(n_val, 1), len(units) - 1)
        val_units.extend(rng.permutation(units)[:n_val].tolist())
    is_val = np.isin(unit, np.asarray(val_units, dtype=unit.dtype))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


#: ``val_group`` values that are not regular expressions.
VAL_GROUP_AUTO, VAL_GROUP_NONE = "auto", "none"

# a file name that ends in a number: the take is the rest (``walk_003.npz`` -> ``walk`` + ``.npz``);
# the part before the number must hold a character that is neither a digit nor a separator
_TRAILING_NUMBER = re.compile(r"^(?P<stem>.*?[^\d/])[_\-. ]?\d+$")


def take_key(path: str) -> str | None:
    """The take a clip's path names: the path without the number its file name ends in
    (``walking/neal_3.npz`` -> ``walking/neal.npz``), or None when the name does not end in a
    number or is a number only (``0/00002.bin``)."""
    root, ext = posixpath.splitext(str(path))
    m = _TRAILING_NUMBER.match(root)
    return None if m is None else m.group("stem") + ext


def source_groups(paths: Sequence[str], pattern: str | None) -> np.ndarray:
    """(S,) int64 group id of each recording path.

    ``pattern`` a regular expression: recordings whose ``re.search(pattern, path)`` gives the
    same key share a group; the key is the first capture group when the pattern has one, else
    the matched text; a path the pattern does not match is a group of its own.
    ``"auto"``: recordings with the same :func:`take_key` share a group (clips ``walk_000.npz``,
    ``walk_001.npz`` of one take); a path without one is a group of its own.
    ``None`` or ``"none"``: every recording is its own group.
    Ids number the keys in order of first appearance; ``\\`` in paths counts as ``/``.

    Raises:
        ValueError: ``pattern`` is not a regular expression.
    """
    paths = [str(p).replace("\\", "/") for p in paths]
    if pattern is None or pattern == VAL_GROUP_NONE:
        return np.arange(len(paths), dtype=np.int64)
    if pattern == VAL_GROUP_AUTO:
        keys = [(k is not None, path if k is None else k) for path, k in ((p, take_key(p)) for p in paths)]
    else:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"--val-group {pattern!r} is not a regular expression: {exc}") from None
        keys = []
        for path in paths:
            m = rx.search(path)
            keys.append((False, path) if m is None else (True, m.group(1) if rx.groups else m.group(0)))
    ids: dict[tuple[bool, str], int] = {}
    return np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)


def validation_groups(paths: Sequence[str], source_labels: np.ndarray, val_group: str | None) -> np.ndarray:
    """The groups :func:`split_by_source` holds out whole, for ``TrainConfig.val_group``.

    As :func:`source_groups`, except that ``"auto"`` falls back to one group per recording when
    no class has two or more takes by name (recordings numbered ``left_000``, ``left_001``, ...
    in one folder per class are independent recordings, not clips of several takes).

    Args:
        paths: (S,) recording paths; source_labels: (S,) class id of each recording.
    """
    groups = source_groups(paths, val_group)
    if val_group != VAL_GROUP_AUTO:
        return groups
    labels = np.asarray(source_labels)
    for c in np.unique(labels):
        takes = len(np.unique(groups[labels == c]))
        if 2 <= takes < (labels == c).sum():  # a class with several takes, some cut into clips
            return groups
    return np.arange(len(paths), dtype=np.int64)

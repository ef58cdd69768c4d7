"""The training data order as a resumable state, and a background prefetcher.

:class:`TrainOrder` makes the batch sequence a pure function of ``(seed, epoch, position)``:

    permutation_e = Generator(PCG64([seed, 1, e])).permutation(train_indices)
                    (with class-balanced sampling: K draws with replacement from the K training
                    indices, index i with probability w_i of :func:`~eventssm.train.data.balanced_weights`)
    batch (e, j)  = rows permutation_e[j·B : (j+1)·B] (wrapping to the epoch's start for the
                    last, short batch, so every batch has exactly B rows), cropped and augmented
                    with Generator(PCG64([seed, 2, e, j]))

so a run resumed from ``(epoch, position)`` draws exactly the batches the uninterrupted run
would have drawn, whatever the prefetcher had produced ahead. :class:`Prefetcher` assembles
batches (crops, augmentation, padding: numpy and numba) in a thread a few batches ahead of the
training step, so the step does not wait for them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from eventssm.tokenizers.batching import Batch
from eventssm.train.data import balanced_weights, make_batch


class TrainOrder:
    """Resumable order of fixed-size training batches (see the module docstring).

    Args:
        indices: the training samples.
        batch_size: rows per batch (the global batch: per step, all devices and micro-batches).
        seed: the run's seed.
        labels: the training samples' labels (K,) for class-balanced sampling, or None for a
            permutation of the samples each epoch.
    """

    def __init__(self, indices: Sequence[int], batch_size: int, seed: int, labels: Sequence[int] | None = None):
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) == 0:
            raise ValueError("no training samples")
        self.weights = None if labels is None else balanced_weights(np.asarray(labels))
        if self.weights is not None and len(self.weights) != len(self.indices):
            raise ValueError("labels must give one label per training sample")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.per_epoch = -(-len(self.indices) // self.batch_size)
        self.epoch, self.position = 0, 0
        self._cache: tuple[int, np.ndarray] = (-1, self.indices)  # one tuple: swapped atomically across threads

    def permutation(self, epoch: int) -> np.ndarray:
        cached_epoch, perm = self._cache
        if epoch != cached_epoch:
            rng = np.random.default_rng([self.seed, 1, epoch])
            if self.weights is None:
                perm = rng.permutation(self.indices)
            else:
                perm = rng.choice(self.indices, size=len(self.indices), replace=True, p=self.weights)
            self._cache = (epoch, perm)
        return perm

    def batch_rng(self, epoch: int, position: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 2, epoch, position])

    def rows(self, epoch: int, position: int) -> np.ndarray:
        perm = self.permutation(epoch)
        return np.take(perm, np.arange(position * self.batch_size, (position + 1) * self.batch_size), mode="wrap")

    @staticmethod
    def advance(epoch: int, position: int, per_epoch: int) -> tuple[int, int]:
        position += 1
        return (epoch + 1, 0) if position == per_epoch else (epoch, position)

    def state(self) -> dict[str, Any]:
        """JSON-ready state of the next batch to draw (epoch, position, that epoch's permutation
        and the numpy Generator state its crops and augmentation start from)."""
        return {"epoch": self.epoch, "position": self.position,
                "permutation": self.permutation(self.epoch).tolist(),
                "next_batch_rng": self.batch_rng(self.epoch, self.position).bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (its permutation must be one of these training samples)."""
        perm = np.asarray(state["permutation"], dtype=np.int64)
        same = (sorted(perm.tolist()) == sorted(self.indices.tolist()) if self.weights is None
                else len(perm) == len(self.indices) and bool(np.isin(perm, self.indices).all()))
        if not same:
            raise ValueError("the stored epoch order does not match the training samples")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._cache = (self.epoch, perm)


class Prefetcher:
    """Assembles the batches of a :class:`TrainOrder` in a background thread, ``depth`` ahead.

    ``next()`` returns ``(batch, seconds waited)`` and advances the order's state (so
    ``order.state()`` is always the state after the last batch handed out).
    """

    def __init__(self, dataset, order: TrainOrder, *, crop_events: int | None, buckets: Sequence[int] | None,
                 augment=None, depth: int = 3):
        self.order = order
        self._q: queue.Queue = queue.Queue(maxsize=max(int(depth), 1))
        self._stop = threading.Event()
        args = (dataset, order, crop_events, buckets, augment, order.epoch, order.position)
        self._thread = threading.Thread(target=self._work, args=args, name="eventssm-prefetch", daemon=True)
        self._thread.start()

    def _work(self, dataset, order, crop_events, buckets, augment, epoch, position):
        try:
            while not self._stop.is_set():
                rows = order.rows(epoch, position)
                batch = make_batch(dataset, rows, order.batch_rng(epoch, position), crop_events=crop_events,
                                   buckets=buckets, augment=augment)
                epoch, position = TrainOrder.advance(epoch, position, order.per_epoch)
                item = (batch, epoch, position)
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the consumer, raised there
            self._q.put((exc, None, None))

    def next(self) -> tuple[Batch, float]:
        t0 = time.perf_counter()
        batch, epoch, position = self._q.get()
        waited = time.perf_counter() - t0
        if isinstance(batch, BaseException):
            raise batch
        self.order.epoch, self.order.position = epoch, position
        return batch, waited

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._q.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)

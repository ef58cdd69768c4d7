"""Training-time augmentation of cached token samples: event transforms and event CutMix.

A cache stores each sample as tokens on the grid ``(W2, H2, P2)`` and ``dt`` in the cache's time
unit, so augmenting a training crop takes three steps:

1. back to events: ``(x2, y2, p) = detokenize(tokens)`` and
   ``t_k = Σ_{j ≤ k} round(dt_j / s)`` microseconds (``s`` = microseconds → time unit); each
   gap is rounded on its own, so ``tokenize`` of the result gives back the same tokens and
   ``dt`` exactly while a gap stays below 2^24 µs (16.7 s) in float32 milliseconds;
2. the event transforms of a recipe (:data:`RECIPES`) with the training generator, then, with
   probability ``cutmix``, :func:`~eventssm.tokenizers.transforms.event_cutmix` with another
   sample of the same batch (soft labels weighted by the share of events taken);
3. ``tokenize`` on the same grid (``dt_0 = 0``).

Recipes (grid pixels, microseconds), in the spirit of the event-stream augmentations of
EventSSM (Schöne et al., 2024): ``basic`` drops 10 % of the events, jitters time by 100 µs and
space by 1 px, and stretches time by 0.9–1.1; ``geometric`` (the default of ``train``) drops a
share of the events drawn per sample from 0–50 % and stretches time by 0.67–1.5 (a sensor's
density and a person's speed vary between takes), jitters like ``basic``, and adds a shift of
up to 10 % of the grid (events leaving it are dropped), a rotation of up to 15° and a zoom of
0.9–1.1. Neither flips left-right: gesture classes such as "left"/"right" would swap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eventssm.events import make_events
from eventssm.tokenizers import transforms as T
from eventssm.tokenizers.functional import TIME_SCALE, detokenize, tokenize

#: Names accepted by :func:`recipe` (and ``eventssm train --augment``).
RECIPES = ("none", "basic", "geometric")
#: ``geometric``'s share of dropped events, drawn per sample: a camera's bias settings and a scene's
#: contrast change the event density several-fold between takes (the activities benchmark: 1,700-
#: 50,000 events per second for the same activity on two cameras), so the density must not identify a class.
GEOMETRIC_DROP = (0.0, 0.5)
#: ``geometric``'s time stretch: people perform the same activity faster or slower.
GEOMETRIC_SKEW = (0.67, 1.5)


def recipe(name: str, grid_size: Sequence[int]) -> T.Compose | None:
    """The event transforms of recipe ``name`` for a token grid ``(W2, H2[, P2])`` (None for
    ``"none"``)."""
    if name not in RECIPES:
        raise ValueError(f"augmentation must be one of {', '.join(RECIPES)}, got {name!r}")
    if name == "none":
        return None
    size = (int(grid_size[0]), int(grid_size[1]), 2)
    if name == "basic":
        ops: list = [T.DropEvent(0.1), T.TimeSkew((0.9, 1.1)), T.TimeJitter(100.0), T.SpatialJitter(size, 1.0)]
    else:  # geometric: the sensor's density and the motion's speed vary too (docs/recipe.md)
        shift = (max(size[0] // 10, 1), max(size[1] // 10, 1))
        ops = [T.DropEvent(GEOMETRIC_DROP), T.TimeSkew(GEOMETRIC_SKEW), T.TimeJitter(100.0),
               T.SpatialJitter(size, 1.0), T.Roll(size, shift, wrap=False), T.Rotate(size, 15.0),
               T.Scale(size, (0.9, 1.1))]
    return T.Compose(tuple(ops))


@dataclass(frozen=True)
class TokenAugment:
    """Augments a batch of token samples (see the module docstring).

    Attributes:
        grid_size: the cache's token grid ``(W2, H2, P2)`` (``P2 = 1``: polarity merged).
        time_unit: the cache's ``dt`` unit ("us", "ms" or "s").
        transform: ``f(events, rng) -> events`` (e.g. :func:`recipe`), or None.
        cutmix: probability that a sample is mixed with another sample of its batch.
        n_classes: number of classes (needed when ``cutmix > 0``: labels become soft).
    """

    grid_size: tuple[int, int, int]
    time_unit: str = "ms"
    transform: object = None
    cutmix: float = 0.0
    n_classes: int | None = None

    def __post_init__(self):
        if self.time_unit not in TIME_SCALE:
            raise ValueError(f"time_unit must be one of {list(TIME_SCALE)}, got {self.time_unit!r}")
        if not 0.0 <= self.cutmix <= 1.0:
            raise ValueError(f"cutmix must be a probability in [0, 1], got {self.cutmix}")
        if self.cutmix > 0 and (self.n_classes is None or self.n_classes < 1):
            raise ValueError("cutmix > 0 needs n_classes")
        object.__setattr__(self, "grid_size", tuple(int(v) for v in self.grid_size))

    @property
    def active(self) -> bool:
        """Whether :meth:`batch` changes anything."""
        return self.transform is not None or self.cutmix > 0

    def events(self, tokens: np.ndarray, dt: np.ndarray) -> np.ndarray:
        """Events of a token sample: grid coordinates, ``t`` in µs from ``t_0 = round(dt_0/s)``."""
        w2, h2, p2 = self.grid_size
        x, y, p = detokenize(tokens, (w2, h2), merge_polarity=p2 == 1)
        gaps = np.rint(np.asarray(dt, np.float64) / TIME_SCALE[self.time_unit]).astype(np.int64)
        return make_events(x, y, np.cumsum(gaps), p)

    def tokens(self, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens and ``dt`` of events on the grid (``dt_0 = 0``)."""
        w2, h2, p2 = self.grid_size
        return tokenize(events, (w2, h2), merge_polarity=p2 == 1, time_unit=self.time_unit)

    def batch(
        self,
        seqs: Sequence[tuple[np.ndarray, np.ndarray]],
        labels: Sequence[int] | np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """Augment ``B`` samples ``(tokens, dt)`` with class ids ``labels``.

        Returns:
            the augmented ``(tokens, dt)`` pairs and the labels: (B,) int32 ids, or (B, C)
            float32 soft labels when ``cutmix > 0``. A sample whose transforms leave no event
            is kept as it was.
        """
        labels = np.asarray(labels, np.int64)
        if not self.active:
            return list(seqs), labels.astype(np.int32)
        evs = []
        for tokens, dt in seqs:
            ev = self.events(tokens, dt)
            if self.transform is not None:
                out = self.transform(ev, rng)
                ev = out if len(out) else ev
            evs.append(ev)
        if self.cutmix > 0:
            n = len(evs)
            soft = np.zeros((n, self.n_classes), np.float32)
            soft[np.arange(n), labels] = 1.0
            mixed = list(evs)
            for i in range(n):
                if n < 2 or rng.random() >= self.cutmix:
                    continue
                j = int(rng.integers(0, n - 1))
                j += j >= i  # another sample
                ev, soft_i = T.event_cutmix(evs[i], int(labels[i]), evs[j], int(labels[j]), rng,
                                            self.n_classes, sensor_size=self.grid_size[:2])
                if len(ev):
                    mixed[i], soft[i] = ev, soft_i
            evs, out_labels = mixed, soft
        else:
            out_labels = labels.astype(np.int32)
        return [self.tokens(ev) for ev in evs], out_labels

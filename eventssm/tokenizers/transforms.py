"""Event augmentations as frozen dataclasses with an explicit random generator.

Every transform is called as ``transform(events, rng) -> events`` where ``events`` is an
``EVENT_DTYPE`` array sorted by time and ``rng`` a :class:`numpy.random.Generator`; the global
``np.random`` state is never used (tonic's transforms do use it). The same Generator state gives
the same output. Outputs are new arrays sorted by ``t`` with every coordinate inside
``sensor_size``; events moved outside the sensor are dropped (``Roll`` can wrap instead).
Transforms that move events in space carry ``sensor_size = (W, H[, P])`` as a field.

Per-event work runs in numba kernels (:mod:`eventssm.tokenizers.kernels`) fed with a seed drawn
from ``rng``. Each kernel transform also has ``apply_into(events, rng, out) -> n`` which may work
in place (``out is events``); :class:`Compose` uses it to run a whole pipeline in one buffer,
with exactly the output of applying the transforms one by one. :func:`event_cutmix` mixes two
labelled samples.

tonic's own transforms (``tonic.transforms.*``) also apply unchanged to these arrays because
the dtype uses tonic's field names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eventssm.events import EVENT_DTYPE, EventFileError
from eventssm.tokenizers import kernels
from eventssm.tokenizers.functional import Downsample as DownsampleSpec
from eventssm.tokenizers.functional import (
    _scale,
    _sensor_wh,
    as_events,
    grid_size,
)

__all__ = [
    "Compose",
    "Downsample",
    "DropChunk",
    "DropEvent",
    "FlipLR",
    "Roll",
    "Rotate",
    "Scale",
    "SpatialJitter",
    "TimeJitter",
    "TimeSkew",
    "event_cutmix",
    "sort_by_time",
]


def _range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    lo, hi = _pair(value)
    if lo > hi:
        raise EventFileError(None, f"{name} range must be (low, high) with low <= high, got {value}")
    return lo, hi


def _pair(value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value), float(value)
    if len(value) != 2:
        raise EventFileError(None, f"expected a number or a pair, got {value!r}")
    return float(value[0]), float(value[1])


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo if lo == hi else float(rng.uniform(lo, hi))


def _copy_into(events: np.ndarray, out: np.ndarray) -> int:
    if out is not events:
        out[: len(events)] = events
    return len(events)


def sort_by_time(events: np.ndarray, max_moves: int | None = None) -> np.ndarray:
    """Stable sort by ``t``, in place.

    Insertion sort first (fast for nearly sorted streams, e.g. after a small time jitter) with a
    budget of element moves; past the budget a stable LSD radix sort finishes the job
    (O(N) per 11 bits of the time span, whatever the disorder).

    Args:
        events: (N,) ``EVENT_DTYPE`` array; sorted in place.
        max_moves: insertion-sort budget (default ``8 N + 1024`` element moves; 0 goes
            straight to the radix sort).
    Returns:
        ``events``.
    """
    budget = 8 * len(events) + 1024 if max_moves is None else int(max_moves)
    if budget <= 0 or not kernels.sort_by_time_insertion(events, budget):
        kernels.radix_sort_by_time(events, np.empty_like(events))
    return events


class _KernelTransform:
    """Mixin: ``__call__`` runs ``apply_into`` on a fresh output array.

    ``apply_into(events, rng, out) -> n`` writes the result into ``out[:n]``; ``out`` is either
    a new array of at least ``len(events)`` events or ``events`` itself (every kernel reads
    event i before it writes position j <= i, so working in place is safe). :class:`Compose`
    uses the in-place form to run a whole pipeline in one buffer.
    """

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        events = as_events(events)
        out = np.empty_like(events)
        return out[: self.apply_into(events, rng, out)]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Compose:
    """Apply ``transforms`` in order, all drawing from the same ``rng``.

    Transforms of this module run in one private buffer (allocated once, then updated in
    place); any other callable ``f(events, rng) -> events`` may be mixed in. The input is
    never modified.
    """

    transforms: tuple

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        events = as_events(events)
        cur, buf = events, None
        for t in self.transforms:
            if isinstance(t, _KernelTransform):
                if buf is None:
                    buf = np.empty_like(cur)
                    n = t.apply_into(cur, rng, buf)
                else:
                    n = t.apply_into(cur, rng, cur)
                cur = buf[:n]
            else:
                cur, buf = as_events(t(cur, rng)), None
        return events.copy() if cur is events else cur


@dataclass(frozen=True)
class Downsample(_KernelTransform):
    """Spatial downsampling (no randomness): ``x2 = x // f`` or ``x2 = x · W2 // W``.

    Later spatial transforms must use :attr:`output_size` as their sensor size.
    """

    sensor_size: tuple[int, ...]
    downsample: DownsampleSpec = 1

    @property
    def output_size(self) -> tuple[int, int, int]:
        w2, h2, _ = grid_size(self.sensor_size, self.downsample)
        return w2, h2, int(self.sensor_size[2]) if len(self.sensor_size) == 3 else 2

    def apply_into(self, events, rng, out) -> int:
        kernels.downsample_kernel(events, *_scale(self.sensor_size, self.downsample), out)
        return len(events)


@dataclass(frozen=True)
class DropEvent(_KernelTransform):
    """Drop each event independently with probability ``p`` (a Bernoulli mask, so the number
    dropped is random, mean ``p · N``; tonic drops exactly ``round(p · N)``)."""

    p: float = 0.1

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise EventFileError(None, f"DropEvent p must be in [0, 1], got {self.p}")

    def apply_into(self, events, rng, out) -> int:
        return kernels.drop_event_kernel(events, float(self.p), kernels.rng_state(rng), out)


@dataclass(frozen=True)
class DropChunk(_KernelTransform):
    """Drop one contiguous run of events: its length is ``floor(f · N)`` with f uniform in
    ``[min_fraction, max_fraction]``, its start uniform over the valid positions."""

    max_fraction: float = 0.2
    min_fraction: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.min_fraction <= self.max_fraction <= 1.0:
            raise EventFileError(
                None, f"DropChunk needs 0 <= min_fraction <= max_fraction <= 1, got "
                f"{self.min_fraction}, {self.max_fraction}"
            )

    def apply_into(self, events, rng, out) -> int:
        n = len(events)
        k = math.floor(_uniform(rng, self.min_fraction, self.max_fraction) * n)
        start = int(rng.integers(0, n - k + 1))
        if out is not events:
            out[:start] = events[:start]
        out[start : n - k] = events[start + k : n]  # numpy buffers overlapping copies
        return n - k


@dataclass(frozen=True)
class TimeJitter(_KernelTransform):
    """``t += round(std_us · z)``, z ~ N(0, 1) per event, clipped at 0, then stably re-sorted."""

    std_us: float = 1.0

    def __post_init__(self):
        if self.std_us < 0:
            raise EventFileError(None, f"TimeJitter std must be >= 0, got {self.std_us}")

    def apply_into(self, events, rng, out) -> int:
        n = len(events)
        kernels.time_jitter_kernel(events, float(self.std_us), kernels.rng_state(rng), out)
        # Expected insertion-sort moves per event ~ event rate x E|jitter difference|
        # = rate x 1.13 std. A move costs about one record copy, the radix sort the equivalent
        # of ~20 moves per event (measured), so beyond 16 expected moves go straight to radix.
        span = int(events["t"][-1]) - int(events["t"][0]) + 1 if n else 1
        moves_per_event = 1.13 * self.std_us * n / span
        sort_by_time(out[:n], 32 * n + 1024 if moves_per_event < 16 else 0)
        return n


@dataclass(frozen=True)
class TimeSkew(_KernelTransform):
    """Stretch time about the first event: ``t' = t_0 + round(c · (t − t_0))`` with c uniform
    in ``coefficient`` (must be > 0, so the order is kept)."""

    coefficient: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self):
        lo, _ = _range(self.coefficient, "TimeSkew coefficient")
        if lo <= 0:
            raise EventFileError(None, f"TimeSkew coefficients must be > 0, got {self.coefficient}")

    def apply_into(self, events, rng, out) -> int:
        c = _uniform(rng, *_range(self.coefficient, "TimeSkew coefficient"))
        if len(events):
            kernels.time_skew_kernel(events, c, int(events["t"][0]), out)
        return len(events)


@dataclass(frozen=True)
class SpatialJitter(_KernelTransform):
    """``x += round(std_x · z1)``, ``y += round(std_y · z2)``, z ~ N(0, 1) independent per
    event; events jittered outside the sensor are dropped. ``std`` is a float or (std_x, std_y),
    in pixels."""

    sensor_size: tuple[int, ...]
    std: float | tuple[float, float] = 1.0

    def __post_init__(self):
        sx, sy = _pair(self.std)
        if sx < 0 or sy < 0:
            raise EventFileError(None, f"SpatialJitter std must be >= 0, got {self.std}")

    def apply_into(self, events, rng, out) -> int:
        w, h = _sensor_wh(self.sensor_size)
        sx, sy = _pair(self.std)
        return kernels.spatial_jitter_kernel(events, w, h, sx, sy, kernels.rng_state(rng), out)


@dataclass(frozen=True)
class Roll(_KernelTransform):
    """Shift all events by integers ``(dx, dy)`` uniform in ``[-max_shift, max_shift]``.

    ``wrap=True`` wraps around the sensor edges (torus, nothing dropped); ``wrap=False`` drops
    events shifted outside. ``max_shift`` is an int or ``(max_dx, max_dy)``.
    """

    sensor_size: tuple[int, ...]
    max_shift: int | tuple[int, int] = 4
    wrap: bool = True

    def apply_into(self, events, rng, out) -> int:
        w, h = _sensor_wh(self.sensor_size)
        mx, my = (abs(int(v)) for v in _pair(self.max_shift))
        dx = int(rng.integers(-mx, mx + 1))
        dy = int(rng.integers(-my, my + 1))
        return kernels.roll_kernel(events, w, h, dx, dy, bool(self.wrap), out)


def _affine_about_centre(w: int, h: int, m00: float, m01: float, m10: float, m11: float):
    """Affine map ``v' = c + M (v − c)`` with c the sensor centre, as kernel arguments."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    bx = cx - m00 * cx - m01 * cy
    by = cy - m10 * cx - m11 * cy
    return m00, m01, m10, m11, bx, by


@dataclass(frozen=True)
class Rotate(_KernelTransform):
    """Rotate by an angle uniform in ``[-max_degrees, max_degrees]`` about the sensor centre
    ``((W−1)/2, (H−1)/2)``; coordinates are rounded, events leaving the sensor are dropped."""

    sensor_size: tuple[int, ...]
    max_degrees: float = 15.0

    def apply_into(self, events, rng, out) -> int:
        w, h = _sensor_wh(self.sensor_size)
        a = math.radians(_uniform(rng, -self.max_degrees, self.max_degrees))
        c, s = math.cos(a), math.sin(a)
        return kernels.affine_kernel(events, w, h, *_affine_about_centre(w, h, c, -s, s, c), out)


@dataclass(frozen=True)
class Scale(_KernelTransform):
    """Zoom by a factor uniform in ``scale`` about the sensor centre (same factor for x and y);
    coordinates are rounded, events leaving the sensor are dropped."""

    sensor_size: tuple[int, ...]
    scale: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self):
        lo, _ = _range(self.scale, "Scale")
        if lo <= 0:
            raise EventFileError(None, f"Scale factors must be > 0, got {self.scale}")

    def apply_into(self, events, rng, out) -> int:
        w, h = _sensor_wh(self.sensor_size)
        f = _uniform(rng, *_range(self.scale, "Scale"))
        return kernels.affine_kernel(events, w, h, *_affine_about_centre(w, h, f, 0, 0, f), out)


@dataclass(frozen=True)
class FlipLR(_KernelTransform):
    """With probability ``p`` mirror left-right: ``x' = W − 1 − x``."""

    sensor_size: tuple[int, ...]
    p: float = 0.5

    def apply_into(self, events, rng, out) -> int:
        w, h = _sensor_wh(self.sensor_size)
        if rng.random() >= self.p:
            return _copy_into(events, out)
        return kernels.affine_kernel(events, w, h, -1.0, 0.0, 0.0, 1.0, w - 1.0, 0.0, out)


def event_cutmix(
    events_a: np.ndarray,
    label_a: int,
    events_b: np.ndarray,
    label_b: int,
    rng: np.random.Generator,
    n_classes: int,
    *,
    sensor_size: Sequence[int] | None = None,
    mode: str = "random",
    alpha: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """CutMix for event streams: a box of ``b`` replaces the same box of ``a``.

    A box fraction r ~ Beta(alpha, alpha) is drawn. ``mode="spatial"``: a rectangle of about
    ``r`` of the sensor area (sides ``√r · W`` by ``√r · H``, centre uniform, clipped to the
    sensor). ``mode="temporal"``: an interval of ``r`` of ``a``'s duration with a uniform
    start, ``b``'s timestamps shifted so that ``b`` starts when ``a`` starts. ``"random"``
    picks one of the two with equal probability. Events of ``a`` inside the box are removed
    and events of ``b`` inside it are inserted; the result is merged by time (stable, ``a``
    first on ties).

    Args:
        events_a, events_b: (Na,), (Nb,) sorted event arrays of the same sensor.
        label_a, label_b: class ids in ``[0, n_classes)``.
        rng: explicit generator.
        n_classes: C.
        sensor_size: ``(W, H[, P])``; default ``max(x) + 1, max(y) + 1`` over both streams.
        mode: "spatial", "temporal" or "random".
        alpha: Beta parameter of the box fraction.
    Returns:
        events: (M,) ``EVENT_DTYPE`` sorted by ``t``.
        soft_label: (C,) float32, ``(1 − w) · onehot(a) + w · onehot(b)`` where ``w`` is the
            fraction of output events taken from ``b`` (``w = 0`` for an empty output).
    """
    a, b = as_events(events_a), as_events(events_b)
    if mode not in ("spatial", "temporal", "random"):
        raise EventFileError(None, f"cutmix mode must be spatial, temporal or random, got {mode!r}")
    for lab in (label_a, label_b):
        if not 0 <= int(lab) < n_classes:
            raise EventFileError(None, f"label {lab} outside [0, {n_classes})")
    if sensor_size is None:
        both = np.concatenate([a, b])
        w = int(both["x"].max()) + 1 if len(both) else 1
        h = int(both["y"].max()) + 1 if len(both) else 1
    else:
        w, h = _sensor_wh(sensor_size)
    r = float(rng.beta(alpha, alpha))
    if mode == "random":
        mode = "spatial" if rng.random() < 0.5 else "temporal"
    if mode == "spatial":
        bw, bh = round(math.sqrt(r) * w), round(math.sqrt(r) * h)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        x0, x1 = max(cx - bw // 2, 0), min(cx - bw // 2 + bw, w)
        y0, y1 = max(cy - bh // 2, 0), min(cy - bh // 2 + bh, h)

        def inside(ev):
            return (ev["x"] >= x0) & (ev["x"] < x1) & (ev["y"] >= y0) & (ev["y"] < y1)

        keep_a, take_b = a[~inside(a)], b[inside(b)]
    else:
        if len(a) == 0:
            keep_a, take_b = a, b[:0]
        else:
            ta0, ta1 = int(a["t"][0]), int(a["t"][-1])
            span = ta1 - ta0 + 1
            dur = round(r * span)
            s0 = ta0 + int(rng.integers(0, span - dur + 1))
            keep_a = a[(a["t"] < s0) | (a["t"] >= s0 + dur)]
            if len(b):
                b = b.copy()
                b["t"] += ta0 - int(b["t"][0])
            take_b = b[(b["t"] >= s0) & (b["t"] < s0 + dur)]
    out = np.empty(len(keep_a) + len(take_b), dtype=EVENT_DTYPE)
    nb = kernels.merge_by_time(keep_a, take_b, out)
    weight = nb / len(out) if len(out) else 0.0
    soft = np.zeros(n_classes, dtype=np.float32)
    soft[int(label_a)] += np.float32(1.0 - weight)
    soft[int(label_b)] += np.float32(weight)
    return out, soft

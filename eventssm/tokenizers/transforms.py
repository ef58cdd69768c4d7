"""Event augmentations as frozen dataclasses with an explicit random generator.

Every transform is called as ``transform(events, rng) -> events`` where ``events`` is an
``EVENT_DTYPE`` array sorted by time and ``rng`` a :class:`numpy.random.Generator`; the global
``np.random`` state is never used (tonic's transforms do use it). The same Generator state gives
the same output. Outputs are new arrays sorted by ``t`` with every coordinate inside
``sensor_size``; events moved outside the sensor are dropped (``Roll`` can wrap instead).
Transforms that move events in space carry ``sensor_size = (W, H[, P])`` as a field.

Per-event work runs in numba kernels (:mod:`eventssm.tokenizers.kernels`) fed with seeds drawn
from ``rng``. The per-event transforms (everything but :class:`DropChunk`) are "ops" of
:func:`~eventssm.tokenizers.kernels.run_ops`; :class:`Compose` runs each run of consecutive ops
in one blocked pass over the events (one read and one write of the records for the whole run),
with exactly the output of applying the transforms one by one: every op draws its parameters
from ``rng`` in the same order, and its randomness is indexed by the position of the event in
the op's own input stream. :class:`TimeJitter` ends such a run (the re-sort is a barrier).
Each kernel transform also has ``apply_into(events, rng, out) -> n`` which may work in place
(``out is events``). :func:`event_cutmix` mixes two labelled samples.

tonic's own transforms (``tonic.transforms.*``) also apply unchanged to these arrays because
the dtype uses tonic's field names.
"""

from __future__ import annotations

import abc
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eventssm.events import EVENT_DTYPE, ArgumentError, concat_events, copy_events
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
    "FlipX",
    "FlipY",
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
        raise ArgumentError(f"{name} range must be (low, high) with low <= high, got {value}")
    return lo, hi


def _pair(value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value), float(value)
    if len(value) != 2:
        raise ArgumentError(f"expected a number or a pair, got {value!r}")
    return float(value[0]), float(value[1])


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo if lo == hi else float(rng.uniform(lo, hi))


def _copy_into(events: np.ndarray, out: np.ndarray) -> int:
    n = len(events)
    if out is not events:
        if events.flags.c_contiguous and out.flags.c_contiguous:  # as bytes: see copy_events
            out[:n].view(np.uint8)[:] = events.view(np.uint8)
        else:
            out[:n] = events
    return n


def sort_by_time(events: np.ndarray, max_moves: int | None = None) -> np.ndarray:
    """Stable sort by ``t``, in place.

    Insertion sort first (fast for nearly sorted streams) with a budget of element moves; past
    the budget a stable LSD radix sort finishes the job (O(N) per 11 bits of the time span,
    whatever the disorder).

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


class _Scratch(threading.local):
    """Per-thread scratch buffers of the time re-sort, reused across calls (they keep the size
    of the largest stream seen): fresh large arrays cost page faults on every call. Scratch
    never escapes: outputs are always new arrays."""

    def __init__(self):
        self._records = np.empty(0, dtype=EVENT_DTYPE)
        self._count = np.empty(0, dtype=np.int32)

    def records(self, n: int) -> np.ndarray:
        if len(self._records) < n:
            self._records = np.empty(n, dtype=EVENT_DTYPE)
        return self._records[:n]

    def count(self, n: int) -> np.ndarray:
        """(n,) int32 zeros."""
        if len(self._count) < n:
            self._count = np.empty(n, dtype=np.int32)
        c = self._count[:n]
        c[:] = 0
        return c


_SCRATCH = _Scratch()
_NO_COUNT = np.zeros(0, dtype=np.int32)
_NO_TABLE = np.zeros(0, dtype=np.int64)
_MAX_COUNTED = 2**31 - 2  # int32 bucket counts


def _time_range_guess(t_first: int, t_last: int, ops: list) -> tuple[int, int]:
    """Where the timestamps will lie after ``ops``: the input's first and last timestamp pushed
    through the time ops (6 std of margin for a jitter). Only a guess for the bucket grid:
    timestamps outside it are clamped to the edge buckets and sorted by the insertion pass."""
    lo, hi = min(t_first, t_last), max(t_first, t_last)
    for kind, _, floats, _, _ in ops:
        if kind == kernels.OP_TIME_SKEW:
            hi = lo + math.ceil(floats[0] * (hi - lo))
        elif kind == kernels.OP_TIME_JITTER:
            margin = math.ceil(6.0 * floats[0])
            lo, hi = max(lo - margin, 0), hi + margin
    return lo, hi


def _fused(events: np.ndarray, ops: list, sort: bool, out: np.ndarray | None = None,
           owned: bool = False) -> np.ndarray:
    """Run the op tuples ``ops`` over ``events`` in one pass (:func:`kernels.run_ops`); with
    ``sort``, stably re-sort the result by time. Writes into ``out`` (at least ``len(events)``
    long, may be ``events``) or, when None, into ``events`` if ``owned`` (ours to overwrite)
    or a new array; returns the written part.

    The re-sort picks by the expected number of insertion-sort moves per event,
    ``1.13 · std · rate`` (E|z1 − z2| = 1.13 for the jitters of two neighbours):

    * few (< 0.5, sparse streams): insertion sort in place (budgeted; the stable radix sort
      finishes past the budget);
    * otherwise O(N) bucket sort: the pass also builds a histogram of ``(t − lo) >> shift`` on
      a grid of at most 2 N buckets, a stable counting scatter orders the events by bucket
      (exactly sorted when ``shift = 0`` and no timestamp fell outside the grid), and the
      budgeted insertion pass finishes inside buckets otherwise. The unsorted events go to
      ``events`` if owned, else to per-thread scratch.
    """
    packed = _pack(ops)
    n = len(events)
    dst = out if out is not None else events if owned else None
    if sort and n and n <= _MAX_COUNTED:
        std = max(floats[0] for kind, _, floats, _, _ in ops if kind == kernels.OP_TIME_JITTER)
        t = events["t"]
        t_first, t_last = int(t[0]), int(t[-1])
        if 1.13 * std * n / (abs(t_last - t_first) + 1) >= 0.5:
            tmp = events if owned else _SCRATCH.records(n)
            lo, hi = _time_range_guess(t_first, t_last, ops)
            shift = 0
            while ((hi - lo) >> shift) >= 2 * n:
                shift += 1
            count = _SCRATCH.count(((hi - lo) >> shift) + 2)
            m, t_min, t_max = kernels.run_ops(events, *packed, tmp, count, lo, shift)
            dst = (np.empty(m, dtype=EVENT_DTYPE) if out is None else out)[:m]
            kernels.bucket_scatter(tmp[:m], dst, lo, shift, count)
            clamped = m and (t_min < lo or ((int(t_max) - lo) >> shift) >= len(count) - 1)
            if (shift or clamped) and not kernels.sort_by_time_insertion(dst, 4 * m + 1024):
                kernels.radix_sort_by_time(dst, tmp[:m])
            return dst
    if dst is None:
        dst = np.empty_like(events)
    m = kernels.run_ops(events, *packed, dst, _NO_COUNT, 0, 0)[0]
    dst = dst[:m]
    if sort:
        sort_by_time(dst, 8 * m + 1024)
    return dst


_FLAT_TABLES: dict = {}  # id() of the tables -> (tables, flat, starts); tables kept alive


def _flat_tables(tables: tuple) -> tuple[np.ndarray, list[int]]:
    """The :func:`kernels.offset_table` tables concatenated (cached: the tables are)."""
    key = tuple(id(t) for t in tables)
    hit = _FLAT_TABLES.get(key)
    if hit is None:
        starts = np.cumsum([0] + [len(t) for t in tables])[:-1].tolist()
        if len(_FLAT_TABLES) > 256:
            _FLAT_TABLES.clear()
        hit = _FLAT_TABLES[key] = (tables, np.concatenate(tables) if tables else _NO_TABLE, starts)
    return hit[1], hit[2]


def _pack(ops: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Op tuples ``(code, ints, floats, seed, tables)`` -> the ``ops_i``, ``ops_f``, ``tables``
    arguments of :func:`kernels.run_ops`: the uint64 seed is stored as int64 bits, and each
    ``(table, fb)`` of ``tables`` goes to the flat table array and to the op's ints as
    ``(start, fb)``."""
    width = kernels.N_PARAMS
    tables = tuple(table for op in ops for table, _ in op[4])
    flat, starts = _flat_tables(tables)
    row_i, row_f, j = [], [], 0
    for kind, ints, floats, seed, op_tables in ops:
        refs = []
        for _, fb in op_tables:
            refs += (starts[j], fb)
            j += 1
        row = [*ints, *refs]
        row_i += (kind, seed - (1 << 64) if seed >= 1 << 63 else seed, *row, *[0] * (width - len(row)))
        row_f += (*floats, *[0.0] * (width - len(floats)))
    k = len(ops)
    return (np.array(row_i, dtype=np.int64).reshape(k, 2 + width),
            np.array(row_f, dtype=np.float64).reshape(k, width), flat)


class _KernelTransform:
    """Mixin: ``__call__`` runs ``apply_into`` on a fresh output array.

    ``apply_into(events, rng, out) -> n`` writes the result into ``out[:n]``; ``out`` is either
    a new array of at least ``len(events)`` events or ``events`` itself (every kernel reads
    event i before it writes position j <= i, so working in place is safe).
    """

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        events = as_events(events)
        out = np.empty_like(events)
        return out[: self.apply_into(events, rng, out)]  # type: ignore[attr-defined]


class _EventOp(_KernelTransform, abc.ABC):
    """A per-event transform: ``_op(rng)`` draws its random parameters and returns the op tuple
    ``(kind, ints, floats, seed, tables)`` of :func:`_pack` (or None: nothing to do).
    ``sorts``: the op may reorder times, so a stable re-sort follows it."""

    sorts = False

    @abc.abstractmethod
    def _op(self, rng: np.random.Generator) -> tuple | None:
        """Draw this transform's parameters from ``rng``; return its op tuple or None."""

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        events = as_events(events)
        op = self._op(rng)
        if op is None:
            return copy_events(events)
        return _fused(events, [op], self.sorts, None)

    def apply_into(self, events, rng, out) -> int:
        op = self._op(rng)
        if op is None:
            return _copy_into(events, out)
        return len(_fused(events, [op], self.sorts, out))


@dataclass(frozen=True)
class Compose:
    """Apply ``transforms`` in order, all drawing from the same ``rng``.

    Consecutive per-event transforms of this module run fused, in one blocked pass over the
    events (see the module docstring); :class:`DropChunk` and any other callable
    ``f(events, rng) -> events`` may be mixed in. The output equals applying the transforms
    one by one; the input is never modified.

    :meth:`apply_into` writes the result into a caller's buffer instead of a new array: a
    data loader that reuses one buffer saves allocating, and faulting in, a fresh event array
    per sample (about 5 % of an augment + tokenize pipeline on the shared recordings, 8-12 %
    on the larger ones; measured 2026-12-06 with tonic running between the calls).
    """

    transforms: tuple

    def __call__(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        events = as_events(events)
        cur, _ = self._run(events, rng, None)
        return copy_events(events) if cur is events else cur

    def apply_into(self, events: np.ndarray, rng: np.random.Generator, out: np.ndarray) -> int:
        """Write ``self(events, rng)`` into ``out[:n]`` and return n (same values, same draws
        from ``rng``).

        Args:
            events: (N,) ``EVENT_DTYPE``; not modified unless it is ``out``.
            rng: the random generator, as for ``__call__``.
            out: ``EVENT_DTYPE`` buffer of at least N events (it may be ``events``). A
                transform inside that returns more events than ``len(out)`` is an error.
        """
        events = as_events(events)
        if out.dtype != EVENT_DTYPE or out.ndim != 1:
            raise ValueError(f"out must be a 1-D {EVENT_DTYPE} array, got {out.dtype} {out.shape}")
        if len(out) < len(events):
            raise ValueError(f"out holds {len(out)} events, fewer than the {len(events)} given")
        cur, in_out = self._run(events, rng, out)
        if not in_out:
            if len(cur) > len(out):
                raise ValueError(f"a transform returned {len(cur)} events, more than out "
                                 f"({len(out)}) holds")
            return _copy_into(cur, out)
        return len(cur)

    def _run(self, events: np.ndarray, rng: np.random.Generator,
             out: np.ndarray | None) -> tuple[np.ndarray, bool]:
        """The transforms applied in order; the fused passes after the last transform that is
        not a per-event op write into ``out`` when it is given. Returns the result and whether
        it is ``out[:n]``."""
        cur, owned, ops = events, False, []  # owned: cur is ours to overwrite
        in_out = False
        last_other = max((i for i, t in enumerate(self.transforms) if not isinstance(t, _EventOp)),
                         default=-1)
        tail = False  # in the run of ops after the last other transform

        def flush(sort: bool) -> None:
            nonlocal cur, owned, ops, in_out
            if not ops:
                return
            if tail and out is not None and len(cur) <= len(out):
                # reads cur (maybe a view of out) before writing; the re-sort's unsorted
                # events go to scratch, never to out itself (owned=False)
                cur, owned, ops = _fused(cur, ops, sort, out=out, owned=False), False, []
                in_out = True
            else:
                cur, owned, ops = _fused(cur, ops, sort, owned=owned), True, []

        for i, t in enumerate(self.transforms):
            tail = i > last_other
            if isinstance(t, _EventOp):
                op = t._op(rng)  # parameters drawn in transform order, as one by one
                if op is not None:
                    ops.append(op)
                if t.sorts:
                    flush(True)
                continue
            flush(False)
            if isinstance(t, _KernelTransform):
                buf = cur if owned else np.empty_like(cur)
                cur, owned = buf[: t.apply_into(cur, rng, buf)], True  # type: ignore[attr-defined]
            else:
                cur, owned = as_events(t(cur, rng)), False
        tail = True
        flush(False)
        return cur, in_out


@dataclass(frozen=True)
class Downsample(_EventOp):
    """Spatial downsampling (no randomness): ``x2 = x // f`` or ``x2 = x · W2 // W``.

    Later spatial transforms must use :attr:`output_size` as their sensor size.
    """

    sensor_size: tuple[int, ...]
    downsample: DownsampleSpec = 1

    @property
    def output_size(self) -> tuple[int, int, int]:
        w2, h2, _ = grid_size(self.sensor_size, self.downsample)
        return w2, h2, int(self.sensor_size[2]) if len(self.sensor_size) == 3 else 2

    def _op(self, rng):
        return kernels.OP_DOWNSAMPLE, _scale(self.sensor_size, self.downsample), (), 0, ()


@dataclass(frozen=True)
class DropEvent(_EventOp):
    """Drop each event independently with probability ``p`` (a Bernoulli mask, so the number
    dropped is random, mean ``p · N``; tonic drops exactly ``round(p · N)``). ``p`` may be a
    range ``(low, high)``: each call draws its probability uniformly from it, so the event
    density of the samples varies (a sensor's bias settings change it)."""

    p: float | tuple[float, float] = 0.1

    def __post_init__(self):
        lo, hi = _range(self.p, "DropEvent p")
        if not (0.0 <= lo and hi <= 1.0):
            raise ArgumentError(f"DropEvent p must be in [0, 1], got {self.p}")

    def _op(self, rng):
        p = _uniform(rng, *_range(self.p, "DropEvent p"))
        return kernels.OP_DROP, (), (p,), kernels.rng_seed(rng), ()


@dataclass(frozen=True)
class DropChunk(_KernelTransform):
    """Drop one contiguous run of events: its length is ``floor(f · N)`` with f uniform in
    ``[min_fraction, max_fraction]``, its start uniform over the valid positions."""

    max_fraction: float = 0.2
    min_fraction: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.min_fraction <= self.max_fraction <= 1.0:
            raise ArgumentError(
                f"DropChunk needs 0 <= min_fraction <= max_fraction <= 1, got "
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
class TimeJitter(_EventOp):
    """``t += round(std_us · z)``, z ~ N(0, 1) per event, clipped at 0, then stably re-sorted
    (equal timestamps keep their order). For ``std_us <= 127.875`` the rounded offset is drawn
    from an exact table of its distribution, limited to ±ceil(8 std) (:func:`kernels.offset_table`;
    the clipped tails have probability 1.2e-15)."""

    std_us: float = 1.0
    sorts = True

    def __post_init__(self):
        if self.std_us < 0:
            raise ArgumentError(f"TimeJitter std must be >= 0, got {self.std_us}")

    def _op(self, rng):
        std = float(self.std_us)
        return (kernels.OP_TIME_JITTER, (), (std,), kernels.rng_seed(rng),
                (kernels.offset_table(std),))


@dataclass(frozen=True)
class TimeSkew(_EventOp):
    """Stretch time about the first event: ``t' = t_0 + round(c · (t − t_0))`` with c uniform
    in ``coefficient`` (must be > 0, so the order is kept)."""

    coefficient: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self):
        lo, _ = _range(self.coefficient, "TimeSkew coefficient")
        if lo <= 0:
            raise ArgumentError(f"TimeSkew coefficients must be > 0, got {self.coefficient}")

    def _op(self, rng):
        c = _uniform(rng, *_range(self.coefficient, "TimeSkew coefficient"))
        return kernels.OP_TIME_SKEW, (), (c,), 0, ()


@dataclass(frozen=True)
class SpatialJitter(_EventOp):
    """``x += round(std_x · z1)``, ``y += round(std_y · z2)``, z ~ N(0, 1) independent per
    event; events jittered outside the sensor are dropped. ``std`` is a float or (std_x, std_y),
    in pixels. Offsets are limited to ±ceil(8 std) for std <= 127.875 (see :class:`TimeJitter`)."""

    sensor_size: tuple[int, ...]
    std: float | tuple[float, float] = 1.0

    def __post_init__(self):
        sx, sy = _pair(self.std)
        if sx < 0 or sy < 0:
            raise ArgumentError(f"SpatialJitter std must be >= 0, got {self.std}")

    def _op(self, rng):
        sx, sy = _pair(self.std)
        return (kernels.OP_SPATIAL_JITTER, _sensor_wh(self.sensor_size), (sx, sy),
                kernels.rng_seed(rng), (kernels.offset_table(sx), kernels.offset_table(sy)))


@dataclass(frozen=True)
class Roll(_EventOp):
    """Shift all events by integers ``(dx, dy)`` uniform in ``[-max_shift, max_shift]``.

    ``wrap=True`` wraps around the sensor edges (torus, nothing dropped); ``wrap=False`` drops
    events shifted outside. ``max_shift`` is an int or ``(max_dx, max_dy)``.
    """

    sensor_size: tuple[int, ...]
    max_shift: int | tuple[int, int] = 4
    wrap: bool = True

    def _op(self, rng):
        w, h = _sensor_wh(self.sensor_size)
        mx, my = (abs(int(v)) for v in _pair(self.max_shift))
        dx = int(rng.integers(-mx, mx + 1))
        dy = int(rng.integers(-my, my + 1))
        return kernels.OP_ROLL, (w, h, dx, dy, int(bool(self.wrap))), (), 0, ()


def _affine_about_centre(w: int, h: int, m00: float, m01: float, m10: float, m11: float):
    """Affine map ``v' = c + M (v − c)`` with c the sensor centre, as kernel arguments."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    bx = cx - m00 * cx - m01 * cy
    by = cy - m10 * cx - m11 * cy
    return m00, m01, m10, m11, bx, by


@dataclass(frozen=True)
class Rotate(_EventOp):
    """Rotate by an angle uniform in ``[-max_degrees, max_degrees]`` about the sensor centre
    ``((W−1)/2, (H−1)/2)``; coordinates are rounded, events leaving the sensor are dropped."""

    sensor_size: tuple[int, ...]
    max_degrees: float = 15.0

    def _op(self, rng):
        w, h = _sensor_wh(self.sensor_size)
        a = math.radians(_uniform(rng, -self.max_degrees, self.max_degrees))
        c, s = math.cos(a), math.sin(a)
        return kernels.OP_AFFINE, (w, h), _affine_about_centre(w, h, c, -s, s, c), 0, ()


@dataclass(frozen=True)
class Scale(_EventOp):
    """Zoom by a factor uniform in ``scale`` about the sensor centre (same factor for x and y);
    coordinates are rounded, events leaving the sensor are dropped."""

    sensor_size: tuple[int, ...]
    scale: tuple[float, float] = (0.8, 1.2)

    def __post_init__(self):
        lo, _ = _range(self.scale, "Scale")
        if lo <= 0:
            raise ArgumentError(f"Scale factors must be > 0, got {self.scale}")

    def _op(self, rng):
        w, h = _sensor_wh(self.sensor_size)
        f = _uniform(rng, *_range(self.scale, "Scale"))
        return kernels.OP_AFFINE, (w, h), _affine_about_centre(w, h, f, 0, 0, f), 0, ()


def _mirror_op(sensor_size, axis: int) -> tuple:
    """The affine op of a mirror: ``x' = W − 1 − x`` (axis 0) or ``y' = H − 1 − y`` (axis 1);
    exact, since the coefficients are integers."""
    w, h = _sensor_wh(sensor_size)
    if axis == 0:
        return kernels.OP_AFFINE, (w, h), (-1.0, 0.0, 0.0, 1.0, w - 1.0, 0.0), 0, ()
    return kernels.OP_AFFINE, (w, h), (1.0, 0.0, 0.0, -1.0, 0.0, h - 1.0), 0, ()


@dataclass(frozen=True)
class FlipLR(_EventOp):
    """With probability ``p`` mirror left-right: ``x' = W − 1 − x``."""

    sensor_size: tuple[int, ...]
    p: float = 0.5

    def _op(self, rng):
        if rng.random() >= self.p:
            return None
        return _mirror_op(self.sensor_size, 0)


@dataclass(frozen=True)
class FlipX(_EventOp):
    """Mirror the x axis, ``x' = W − 1 − x`` (y, t, p unchanged), with probability ``p``.

    The default ``p = 1`` is the deterministic geometry fix for a camera mounted mirrored
    (``--flip-x``); it draws nothing from ``rng``. With ``p < 1`` it draws one uniform number,
    as :class:`FlipLR` does.
    """

    sensor_size: tuple[int, ...]
    p: float = 1.0
    _axis = 0

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ArgumentError(f"{type(self).__name__} p must be in [0, 1], got {self.p}")

    def _op(self, rng):
        if self.p < 1.0 and rng.random() >= self.p:
            return None
        return _mirror_op(self.sensor_size, self._axis)


@dataclass(frozen=True)
class FlipY(FlipX):
    """Mirror the y axis, ``y' = H − 1 − y`` (x, t, p unchanged), with probability ``p``
    (default 1: a camera mounted upside down, ``--flip-y``). Rotating by 180° is
    ``Compose((FlipX(s), FlipY(s)))``."""

    _axis = 1


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
        raise ArgumentError(f"cutmix mode must be spatial, temporal or random, got {mode!r}")
    for lab in (label_a, label_b):
        if not 0 <= int(lab) < n_classes:
            raise ArgumentError(f"label {lab} outside [0, {n_classes})")
    if sensor_size is None:
        both = concat_events([a, b])
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
                b = copy_events(b)
                b["t"] += ta0 - int(b["t"][0])
            take_b = b[(b["t"] >= s0) & (b["t"] < s0 + dur)]
    out = np.empty(len(keep_a) + len(take_b), dtype=EVENT_DTYPE)
    nb = kernels.merge_by_time(keep_a, take_b, out)
    weight = nb / len(out) if len(out) else 0.0
    soft = np.zeros(n_classes, dtype=np.float32)
    soft[int(label_a)] += np.float32(1.0 - weight)
    soft[int(label_b)] += np.float32(weight)
    return out, soft

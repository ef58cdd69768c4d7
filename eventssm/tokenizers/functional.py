"""Pure numpy/numba operations on event arrays: tokens, slicing, filters, downsampling.

Events are ``EVENT_DTYPE`` structured arrays (``x int16, y int16, t int64 µs, p bool``); arrays
of another structured dtype with the fields ``x, y, t, p`` (e.g. tonic's) are converted first.

Token contract (DESIGN.md §3). With the grid ``(W2, H2, P2) = grid_size(...)``::

    token = P2 · (x2 · H2 + y2) + p2        vocabulary = P2 · W2 · H2

where ``(x2, y2)`` are the downsampled coordinates, ``P2 = 2`` and ``p2 = p`` normally, and
``P2 = 1``, ``p2 = 0`` with ``merge_polarity=True``. Without downsampling or merging this is
``2 · (x · H + y) + p`` with H the sensor height: the paper's ``2·(x·sx + y) + p`` with
``sx = H``, bijective for every W×H (identical to the paper for square DVS128).

Spatial downsampling, ``downsample`` argument:

* an int factor ``f >= 1``: ``x2 = x // f``, ``y2 = y // f``; ``W2 = ceil(W / f)``,
  ``H2 = ceil(H / f)`` (the last column/row of cells may be partial).
* a target ``(W2, H2)``: ``x2 = x · W2 // W``, ``y2 = y · H2 // H`` (integer arithmetic, so
  no float rounding; with ``W2 <= W`` every grid column receives pixels).

Timing: ``dt_k = t_k − t_{k−1}`` in ``time_unit`` ("us", "ms" or "s"), float32, ``dt_0 = 0``;
timestamps must be non-decreasing (:func:`sort_events` sorts them).

Nothing here imports JAX.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from eventssm.events import EVENT_DTYPE, US_PER_UNIT, ArgumentError, EventFileError, copy_events
from eventssm.tokenizers import kernels

log = logging.getLogger(__name__)

__all__ = [
    "as_events",
    "denoise_filter",
    "detokenize",
    "downsample_events",
    "grid_size",
    "hot_pixel_filter",
    "random_crop",
    "refractory_filter",
    "slice_by_count",
    "slice_by_time",
    "sort_events",
    "tokenize",
    "vocab_size",
]

Downsample = int | tuple[int, int]

#: time unit -> factor from microseconds (1 / ``US_PER_UNIT``: exactly 1.0, 1e-3, 1e-6)
TIME_SCALE = {unit: 1.0 / us for unit, us in US_PER_UNIT.items()}
_INT32_MAX = 2**31 - 1


# --------------------------------------------------------------------------------------------
# helpers


def as_events(events: np.ndarray) -> np.ndarray:
    """Return ``events`` as a C-contiguous ``EVENT_DTYPE`` array (no copy when it already is).

    Any structured array with fields ``x, y, t, p`` (e.g. tonic's dtypes) is converted by
    field; anything else raises :class:`ArgumentError`.
    """
    events = np.asarray(events)
    if events.dtype == EVENT_DTYPE:
        return np.ascontiguousarray(events)
    names = events.dtype.names or ()
    if events.ndim != 1 or not {"x", "y", "t", "p"} <= set(names):
        raise ArgumentError(
            f"expected a 1-D structured event array with fields x, y, t, p; got "
            f"dtype {events.dtype} with shape {events.shape}"
        )
    out = np.empty(len(events), dtype=EVENT_DTYPE)
    for name in ("x", "y", "t", "p"):
        out[name] = events[name]
    return out


def _sensor_wh(sensor_size: Sequence[int]) -> tuple[int, int]:
    if len(sensor_size) not in (2, 3):
        raise ArgumentError(f"sensor size must be (W, H) or (W, H, P), got {sensor_size}")
    w, h = int(sensor_size[0]), int(sensor_size[1])
    if w < 1 or h < 1:
        raise ArgumentError(f"invalid sensor size {tuple(sensor_size)}")
    return w, h


def _scale(sensor_size: Sequence[int], downsample: Downsample) -> tuple[int, int, int, int]:
    """(xn, xd, yn, yd) with ``x2 = x * xn // xd`` and ``y2 = y * yn // yd``."""
    w, h = _sensor_wh(sensor_size)
    if isinstance(downsample, (tuple, list, np.ndarray)):
        if len(downsample) != 2:
            raise ArgumentError(f"downsample target must be (W2, H2), got {downsample}")
        w2, h2 = int(downsample[0]), int(downsample[1])
        if w2 < 1 or h2 < 1:
            raise ArgumentError(f"downsample target must be positive, got {downsample}")
        return w2, w, h2, h
    f = int(downsample)
    if f != downsample or f < 1 or isinstance(downsample, bool):
        raise ArgumentError(f"downsample factor must be an integer >= 1, got {downsample!r}")
    return 1, f, 1, f


def _check_sorted(t: np.ndarray, what: str) -> None:
    if len(t) > 1:
        bad = np.flatnonzero(t[1:] < t[:-1])
        if len(bad):
            i = int(bad[0]) + 1
            raise EventFileError(
                None, f"{what}: timestamps decrease at event {i} ({int(t[i - 1])} -> "
                f"{int(t[i])} us); sort the events first (sort_events)"
            )


def sort_events(events: np.ndarray) -> np.ndarray:
    """Stable sort by timestamp. Returns ``events`` itself when already sorted, else a copy.

    Args:
        events: (N,) event array.
    Returns:
        (N,) ``EVENT_DTYPE`` array with non-decreasing ``t``; equal timestamps keep their order.
    """
    events = as_events(events)
    t = events["t"]
    if len(t) < 2 or bool(np.all(t[1:] >= t[:-1])):
        return events
    return events[np.argsort(t, kind="stable")]


# --------------------------------------------------------------------------------------------
# tokens


def grid_size(
    sensor_size: Sequence[int], downsample: Downsample = 1, *, merge_polarity: bool = False
) -> tuple[int, int, int]:
    """Token grid ``(W2, H2, P2)`` for a sensor and a downsampling.

    Args:
        sensor_size: ``(W, H)`` or ``(W, H, P)`` of the sensor (P is ignored).
        downsample: int factor f (``W2 = ceil(W / f)``) or target ``(W2, H2)``.
        merge_polarity: ``P2 = 1`` (polarity ignored) instead of 2.
    Returns:
        ``(W2, H2, P2)`` ints.
    """
    w, h = _sensor_wh(sensor_size)
    w2, h2 = _grid_wh(w, h, _scale(sensor_size, downsample))
    return w2, h2, 1 if merge_polarity else 2


def _grid_wh(w: int, h: int, scale: tuple[int, int, int, int]) -> tuple[int, int]:
    """``(W2, H2)`` of a ``W x H`` sensor for the :func:`_scale` tuple ``(xn, xd, yn, yd)``."""
    xn, xd, yn, yd = scale
    if xn == 1 and yn == 1:  # integer factor
        return -(-w // xd), -(-h // yd)
    return xn, yn


def vocab_size(
    sensor_size: Sequence[int], downsample: Downsample = 1, *, merge_polarity: bool = False
) -> int:
    """Number of distinct tokens, ``P2 · W2 · H2`` (tokens lie in ``[0, vocab_size)``)."""
    w2, h2, p2 = grid_size(sensor_size, downsample, merge_polarity=merge_polarity)
    return p2 * w2 * h2


def tokenize(
    events: np.ndarray,
    sensor_size: Sequence[int],
    *,
    downsample: Downsample = 1,
    merge_polarity: bool = False,
    time_unit: str = "ms",
) -> tuple[np.ndarray, np.ndarray]:
    """Events -> token ids and inter-event times.

    Args:
        events: (N,) event array, timestamps non-decreasing, coordinates inside ``sensor_size``.
        sensor_size: ``(W, H)`` or ``(W, H, P)``.
        downsample: int factor or target ``(W2, H2)`` (see module docstring).
        merge_polarity: drop polarity (``P2 = 1``).
        time_unit: unit of ``dt``: "us", "ms" or "s".
    Returns:
        tokens: (N,) int32, ``P2 · (x2 · H2 + y2) + p2`` in ``[0, vocab_size)``.
        dt: (N,) float32, ``dt_k = t_k − t_{k−1}`` in ``time_unit``, ``dt_0 = 0``.
    Raises:
        EventFileError: an event outside the sensor, decreasing timestamps.
        ArgumentError: bad arguments (unit, downsample, vocabulary too large).
    """
    if time_unit not in TIME_SCALE:
        raise ArgumentError(f"time_unit must be one of {list(TIME_SCALE)}, got {time_unit!r}")
    events = as_events(events)
    w, h = _sensor_wh(sensor_size)
    xn, xd, yn, yd = scale = _scale(sensor_size, downsample)
    w2, h2 = _grid_wh(w, h, scale)
    p2 = 1 if merge_polarity else 2
    if p2 * w2 * h2 > _INT32_MAX:
        raise ArgumentError(f"vocabulary {p2 * w2 * h2} does not fit int32 tokens")
    n = len(events)
    tokens = np.empty(n, dtype=np.int32)
    dt = np.empty(n, dtype=np.float32)
    status, i = kernels.tokenize_kernel(
        events, w, h, xn, xd, yn, yd, h2, p2, TIME_SCALE[time_unit], tokens, dt
    )
    if status == kernels.TOKENIZE_OUT_OF_RANGE:
        raise EventFileError(
            None, f"event {i} at (x={int(events['x'][i])}, y={int(events['y'][i])}) lies "
            f"outside the {w}x{h} sensor"
        )
    if status == kernels.TOKENIZE_UNSORTED:
        _check_sorted(events["t"], "tokenize")
    return tokens, dt


def detokenize(
    tokens: np.ndarray,
    sensor_size_or_grid: Sequence[int],
    *,
    downsample: Downsample = 1,
    merge_polarity: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact inverse of :func:`tokenize` on the token grid.

    Args:
        tokens: (N,) integer tokens in ``[0, vocab_size)``.
        sensor_size_or_grid: the sensor size with the same ``downsample``/``merge_polarity``
            as given to :func:`tokenize`, or the grid ``(W2, H2[, P2])`` with ``downsample=1``.
        downsample, merge_polarity: as for :func:`tokenize`.
    Returns:
        ``(x2 int16, y2 int16, p bool)`` each (N,), in grid coordinates (``p`` is all False
        when polarity was merged).
    Raises:
        ArgumentError: a token outside ``[0, vocab_size)``.
    """
    w2, h2, p2 = grid_size(sensor_size_or_grid, downsample, merge_polarity=merge_polarity)
    tok = np.asarray(tokens).astype(np.int64, copy=False)
    vocab = p2 * w2 * h2
    if tok.size and (tok.min() < 0 or tok.max() >= vocab):
        bad = int(np.flatnonzero((tok < 0) | (tok >= vocab))[0])
        raise ArgumentError(f"token {int(tok[bad])} at {bad} is outside [0, {vocab})")
    cell, pol = np.divmod(tok, p2)
    x, y = np.divmod(cell, h2)
    if w2 > np.iinfo(np.int16).max + 1 or h2 > np.iinfo(np.int16).max + 1:
        raise ArgumentError(f"grid {w2}x{h2} does not fit int16 coordinates")
    return x.astype(np.int16), y.astype(np.int16), pol.astype(np.bool_)


def downsample_events(
    events: np.ndarray, sensor_size: Sequence[int], downsample: Downsample
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Spatially downsample events (no event is dropped; timestamps and polarity unchanged).

    Args:
        events: (N,) event array inside ``sensor_size``.
        sensor_size: ``(W, H)`` or ``(W, H, P)``.
        downsample: int factor or target ``(W2, H2)`` (see module docstring).
    Returns:
        events2: (N,) ``EVENT_DTYPE`` with grid coordinates ``(x2, y2)``.
        sensor_size2: ``(W2, H2, P)`` (P from ``sensor_size``, default 2).
    """
    events = as_events(events)
    xn, xd, yn, yd = _scale(sensor_size, downsample)
    w2, h2, _ = grid_size(sensor_size, downsample)
    out = np.empty_like(events)
    kernels.downsample_kernel(events, xn, xd, yn, yd, out)
    p = int(sensor_size[2]) if len(sensor_size) == 3 else 2
    return out, (w2, h2, p)


# --------------------------------------------------------------------------------------------
# slicing


def slice_by_count(n_events: int, length: int, stride: int | None = None) -> np.ndarray:
    """Windows of ``length`` events every ``stride`` events.

    Windows start at ``0, stride, 2·stride, …`` while they fit; when the last of them stops
    before ``n_events``, one more window ``[n_events − length, n_events)`` covers the tail, so
    every window has exactly ``length`` events. With ``n_events <= length`` there is one window
    ``[0, n_events)``; with ``n_events == 0`` none. (EventSSM's DVS Gesture recipe: length
    65,536, stride 32,768.)

    Args:
        n_events: stream length N >= 0.
        length: window length >= 1.
        stride: step >= 1 (default ``length``: no overlap).
    Returns:
        (K, 2) int64 ``[start, stop)`` rows, starts increasing.
    """
    n, length = int(n_events), int(length)
    stride = length if stride is None else int(stride)
    if n < 0 or length < 1 or stride < 1:
        raise ArgumentError(
            f"slice_by_count needs n_events >= 0, length >= 1, stride >= 1; got "
            f"{n_events}, {length}, {stride}"
        )
    if n == 0:
        return np.empty((0, 2), dtype=np.int64)
    if n <= length:
        return np.array([[0, n]], dtype=np.int64)
    starts = np.arange(0, n - length + 1, stride, dtype=np.int64)
    if starts[-1] + length < n:
        starts = np.append(starts, n - length)
    return np.stack([starts, starts + length], axis=1)


def slice_by_time(t: np.ndarray, window_us: int, stride_us: int | None = None) -> np.ndarray:
    """Index windows of ``window_us`` microseconds every ``stride_us`` (default: the window).

    Window k covers times ``[t_0 + k·stride, t_0 + k·stride + window)``, k = 0, 1, … up to the
    window that contains the last event; empty windows are left out.

    Args:
        t: (N,) non-decreasing timestamps (µs).
        window_us, stride_us: positive durations in µs.
    Returns:
        (K, 2) int64 ``[start, stop)`` event-index rows.
    """
    t = np.asarray(t)
    window_us = int(window_us)
    stride_us = window_us if stride_us is None else int(stride_us)
    if window_us < 1 or stride_us < 1:
        raise ArgumentError(f"window and stride must be >= 1 us, got {window_us}, {stride_us}")
    if len(t) == 0:
        return np.empty((0, 2), dtype=np.int64)
    _check_sorted(t, "slice_by_time")
    t0, t1 = int(t[0]), int(t[-1])
    k = (t1 - t0) // stride_us + 1
    lo = t0 + np.arange(k, dtype=np.int64) * stride_us
    starts = np.searchsorted(t, lo, side="left")
    stops = np.searchsorted(t, lo + window_us, side="left")
    keep = stops > starts
    return np.stack([starts[keep], stops[keep]], axis=1).astype(np.int64)


def random_crop(rng: np.random.Generator, n_events: int, length: int) -> tuple[int, int]:
    """A random window of ``length`` consecutive events, ``(start, stop)``.

    The start is uniform over ``[0, n_events − length]``; a stream of at most ``length``
    events gives ``(0, n_events)``.
    """
    n, length = int(n_events), int(length)
    if n < 0 or length < 1:
        raise ArgumentError(f"random_crop needs n_events >= 0, length >= 1; got {n}, {length}")
    if n <= length:
        return 0, n
    start = int(rng.integers(0, n - length + 1))
    return start, start + length


# --------------------------------------------------------------------------------------------
# temporal filters


def _compact(kernel, events: np.ndarray, *args) -> np.ndarray:
    out = np.empty_like(events)
    j = kernel(events, *args, out)
    return copy_events(out[:j]) if j < len(events) // 2 else out[:j]


def refractory_filter(
    events: np.ndarray, sensor_size: Sequence[int], refractory_us: int
) -> np.ndarray:
    """Per-pixel refractory period (both polarities share a pixel).

    An event is kept iff no kept event at the same pixel happened less than ``refractory_us``
    earlier: ``t − t_last_kept >= refractory_us``. ``refractory_us = 0`` keeps everything.

    Args:
        events: (N,) sorted event array inside ``sensor_size``.
        sensor_size: ``(W, H[, P])``.
        refractory_us: period in µs (>= 0).
    Returns:
        (M,) ``EVENT_DTYPE`` subset of ``events`` in input order.
    """
    return _pixel_filter(kernels.refractory_kernel, events, sensor_size, refractory_us,
                         "refractory period", "refractory_filter")


def denoise_filter(events: np.ndarray, sensor_size: Sequence[int], window_us: int) -> np.ndarray:
    """Background-activity filter.

    An event is kept iff one of its 8 neighbouring pixels (the pixel itself does not count;
    any polarity) had an input event (kept or not) at most ``window_us`` earlier:
    ``t − t_last(neighbour) <= window_us``. Isolated events are noise.

    Args:
        events: (N,) sorted event array inside ``sensor_size``.
        sensor_size: ``(W, H[, P])``.
        window_us: correlation window in µs (>= 0).
    Returns:
        (M,) ``EVENT_DTYPE`` subset of ``events`` in input order.
    """
    return _pixel_filter(kernels.denoise_kernel, events, sensor_size, window_us,
                         "denoise window", "denoise_filter")


def _pixel_filter(kernel, events, sensor_size, period_us: int, what: str, name: str) -> np.ndarray:
    """Run a per-pixel time filter ``kernel(events, W, H, period_us, out)`` on sorted events
    inside the sensor (the checks of :func:`refractory_filter` and :func:`denoise_filter`)."""
    events = as_events(events)
    w, h = _sensor_wh(sensor_size)
    if period_us < 0:
        raise ArgumentError(f"{what} must be >= 0, got {period_us}")
    _check_inside(events, w, h)
    _check_sorted(events["t"], name)
    return _compact(kernel, events, w, h, int(period_us))


def hot_pixel_filter(
    events: np.ndarray, sensor_size: Sequence[int], max_rate_hz: float
) -> np.ndarray:
    """Drop every event of pixels that fire faster than ``max_rate_hz`` on average.

    A pixel's rate is its event count (both polarities) divided by the recording duration
    ``(t_last − t_first + 1) µs``. Hot pixels of a sensor fire regardless of the scene.

    Args:
        events: (N,) event array inside ``sensor_size``.
        sensor_size: ``(W, H[, P])``.
        max_rate_hz: highest allowed mean rate in events per second (> 0).
    Returns:
        (M,) ``EVENT_DTYPE`` subset of ``events`` in input order.
    """
    events = as_events(events)
    w, h = _sensor_wh(sensor_size)
    if not max_rate_hz > 0:
        raise ArgumentError(f"max_rate_hz must be > 0, got {max_rate_hz}")
    _check_inside(events, w, h)
    if len(events) == 0:
        return copy_events(events)
    t = events["t"]
    duration_s = (int(t.max()) - int(t.min()) + 1) * 1e-6
    pixel = events["x"].astype(np.int64) * h + events["y"]
    counts = np.bincount(pixel, minlength=w * h)
    hot = counts > max_rate_hz * duration_s
    return events[~hot[pixel]]


def _check_inside(events: np.ndarray, w: int, h: int) -> None:
    if len(events) == 0:
        return
    x, y = events["x"], events["y"]
    if x.min() < 0 or y.min() < 0 or x.max() >= w or y.max() >= h:
        bad = (x < 0) | (x >= w) | (y < 0) | (y >= h)
        i = int(np.argmax(bad))
        raise EventFileError(
            None, f"event {i} at (x={int(x[i])}, y={int(y[i])}) lies outside the {w}x{h} sensor"
        )

"""The one event array of the project, and the error every reader raises.

Events are a structured numpy array with tonic's field names and dtypes, so tonic transforms
apply unchanged::

    x int16, y int16, t int64 (microseconds, as stored in the file, not rebased), p bool

``sensor_size = (width, height, polarities)`` as in tonic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.bool_)])

SensorSize = tuple[int, int, int]


class EventFileError(ValueError):
    """A file that cannot be decoded into valid events.

    ``str(err)`` is one line naming the file, the problem and (when known) the byte offset,
    so the CLI can print it as is.
    """

    def __init__(self, path: str | os.PathLike | None, message: str, offset: int | None = None):
        self.path = None if path is None else os.fspath(path)
        self.message = message
        self.offset = offset
        where = f" (at byte {offset})" if offset is not None else ""
        prefix = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{prefix}{message}{where}")


@dataclass(frozen=True)
class Recording:
    """Decoded events of one recording.

    Attributes:
        events: structured array of ``EVENT_DTYPE``, shape (N,).
        sensor_size: ``(width, height, polarities)``.
        meta: small dict: ``format``, ``camera``, ``path`` and format-specific facts.
    """

    events: np.ndarray
    sensor_size: SensorSize
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events)

    @property
    def duration_us(self) -> int:
        """Last minus first timestamp in microseconds (0 for fewer than two events)."""
        if len(self.events) < 2:
            return 0
        t = self.events["t"]
        return int(t.max() - t.min())


def make_events(x, y, t, p) -> np.ndarray:
    """Build an ``EVENT_DTYPE`` array from four equal-length columns (copies, casts)."""
    n = len(t)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"] = x
    ev["y"] = y
    ev["t"] = t
    ev["p"] = p
    return ev


@numba.njit(cache=True)
def first_outside(x: np.ndarray, y: np.ndarray, width: int, height: int) -> int:
    """Index of the first event with x outside [0, width) or y outside [0, height), else -1.

    One pass over the two columns (the reference is ``.py_func``; numpy's four comparisons
    over a strided structured array cost as much as decoding a file).
    """
    for i in range(x.shape[0]):
        if x[i] < 0 or x[i] >= width or y[i] < 0 or y[i] >= height:
            return i
    return -1


def validate_events(
    events: np.ndarray,
    sensor_size: SensorSize,
    *,
    path: str | os.PathLike | None = None,
    allow_empty: bool = False,
) -> np.ndarray:
    """Check the event contract; return ``events`` unchanged or raise :class:`EventFileError`.

    Checks: dtype equals ``EVENT_DTYPE``; 0 <= x < width, 0 <= y < height; non-empty unless
    ``allow_empty``. Timestamps need not be monotonic (some files are not; ``info`` reports it).
    """
    if events.dtype != EVENT_DTYPE:
        raise EventFileError(path, f"events have dtype {events.dtype}, expected {EVENT_DTYPE}")
    if len(sensor_size) != 3 or min(sensor_size) < 1:
        raise EventFileError(path, f"invalid sensor size {tuple(sensor_size)}")
    if len(events) == 0:
        if allow_empty:
            return events
        raise EventFileError(path, "recording contains no events")
    w, h = int(sensor_size[0]), int(sensor_size[1])
    x, y = events["x"], events["y"]
    i = first_outside(x, y, w, h)
    if i >= 0:
        raise EventFileError(
            path,
            f"event {i} at (x={int(x[i])}, y={int(y[i])}) lies outside the {w}x{h} sensor",
        )
    return events

"""The one event array of the project, the error every reader raises and the argument error.

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

#: Column names accepted for the event fields in text, CSV and array files (compared in lower
#: case) -> the field they hold. The one list the readers and ``is_event_text`` use.
COLUMN_ALIASES: dict[str, str] = {
    "x": "x", "y": "y",
    "t": "t", "ts": "t", "timestamp": "t", "time": "t",
    "p": "p", "pol": "p", "polarity": "p",
}

#: Time units of the project -> microseconds per unit (``t`` is stored in microseconds; ``dt``
#: of a token stream and timestamps of text files may be in any of these units).
US_PER_UNIT: dict[str, int] = {"us": 1, "ms": 1_000, "s": 1_000_000}


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


class ArgumentError(ValueError):
    """A bad argument given to a library function (no file involved): a probability outside
    [0, 1], a negative length, an unknown unit.

    Distinct from :class:`EventFileError` so the CLI reports "invalid argument", not a bad file;
    a plain ``ValueError`` for callers that catch that.
    """


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


def concat_events(parts) -> np.ndarray:
    """``np.concatenate`` of ``EVENT_DTYPE`` arrays (a new array), copied as bytes: numpy copies
    the packed 13-byte record field by field, about ten times slower than its bytes."""
    if not len(parts):
        return np.empty(0, dtype=EVENT_DTYPE)
    raw = [np.ascontiguousarray(part, dtype=EVENT_DTYPE).view(np.uint8) for part in parts]
    return np.concatenate(raw).view(EVENT_DTYPE)


def copy_events(events: np.ndarray) -> np.ndarray:
    """``events.copy()`` for an ``EVENT_DTYPE`` array, copied as bytes (see :func:`concat_events`)."""
    return concat_events([events])


#: Events per group in :func:`first_outside`: each group is checked without a branch, and only
#: a group that holds an offending event is searched for it.
_GROUP = 1024


@numba.njit(cache=True, nogil=True)
def first_outside(x: np.ndarray, y: np.ndarray, width: int, height: int) -> int:
    """Index of the first event with x outside [0, width) or y outside [0, height), else -1.

    Args:
        x, y: integer coordinates, shape (N,) (any stride: fields of an ``EVENT_DTYPE`` array).
        width, height: the sensor size.

    One pass over the two columns (the reference is ``.py_func``; numpy's four comparisons
    over a strided structured array cost as much as decoding a file). A coordinate is read as
    an unsigned 64-bit number, so one comparison catches both a negative value and one at or
    beyond the limit; groups of events are checked without a branch.
    """
    n = x.shape[0]
    w = np.uint64(max(width, 0))
    h = np.uint64(max(height, 0))
    for start in range(0, n, _GROUP):
        stop = min(start + _GROUP, n)
        bad = False
        for i in range(start, stop):
            bad |= (np.uint64(np.int64(x[i])) >= w) | (np.uint64(np.int64(y[i])) >= h)
        if bad:
            for i in range(start, stop):
                if (np.uint64(np.int64(x[i])) >= w) | (np.uint64(np.int64(y[i])) >= h):
                    return i
    return -1


def validate_events(
    events: np.ndarray,
    sensor_size: SensorSize,
    *,
    path: str | os.PathLike | None = None,
    allow_empty: bool = False,
    check_bounds: bool = True,
) -> np.ndarray:
    """Check the event contract; return ``events`` unchanged or raise :class:`EventFileError`.

    Checks: dtype equals ``EVENT_DTYPE``; a valid sensor size; non-empty unless
    ``allow_empty``; 0 <= x < width, 0 <= y < height (one O(N) pass, skipped with
    ``check_bounds=False`` for events whose producer has checked every one of them, e.g. a
    reader registered with ``FormatSpec.validated``). Timestamps need not be monotonic (some
    files are not; ``info`` reports it).
    """
    if events.dtype != EVENT_DTYPE:
        raise EventFileError(path, f"events have dtype {events.dtype}, expected {EVENT_DTYPE}")
    if len(sensor_size) != 3 or min(sensor_size) < 1:
        raise EventFileError(path, f"invalid sensor size {tuple(sensor_size)}")
    if len(events) == 0:
        if allow_empty:
            return events
        raise EventFileError(path, "recording contains no events")
    if not check_bounds:
        return events
    w, h = int(sensor_size[0]), int(sensor_size[1])
    x, y = events["x"], events["y"]
    i = first_outside(x, y, w, h)
    if i >= 0:
        raise EventFileError(
            path,
            f"event {i} at (x={int(x[i])}, y={int(y[i])}) lies outside the {w}x{h} sensor",
        )
    return events

"""Statistics of a recording from one streaming pass (what ``eventssm info`` shows)."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from eventssm.events import EventFileError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def file_stats(path: str | os.PathLike, *, format: str | None = None, sensor_size=None) -> dict[str, Any]:
    """Statistics of one recording from a streaming pass.

    Returns a JSON-ready dict: ``file``, ``format``, ``camera``, ``sensor_size`` [W, H, P],
    ``events``, ``duration_s`` (max t − min t), ``event_rate_hz`` (events / duration, None when
    the duration is 0), ``on_fraction`` (None when empty), ``monotonic`` and ``steps_back``
    (count of i with t[i] < t[i−1]), ``t_first_us``, ``t_last_us``, ``t_min_us``, ``t_max_us``,
    ``x_max``, ``y_max``, ``bytes``.

    Raises:
        EventFileError: the file cannot be read.
    """
    from eventssm.io import detect_format, iter_events, read_events

    fmt = format if format is not None else detect_format(path).name
    n = on = back = 0
    t_first = t_last = t_min = t_max = None
    x_max = y_max = None
    sensor = None
    meta: dict[str, Any] = {}
    for chunk in iter_events(path, chunk_events=_CHUNK, format=fmt, sensor_size=sensor_size):
        ev = chunk.events
        if sensor is None:
            sensor, meta = chunk.sensor_size, chunk.meta
        if not len(ev):
            continue
        t = ev["t"]
        back += int(np.count_nonzero(t[1:] < t[:-1]))
        if t_last is not None and int(t[0]) < t_last:
            back += 1
        if t_first is None:
            t_first = int(t[0])
        t_last = int(t[-1])
        lo, hi = int(t.min()), int(t.max())
        t_min = lo if t_min is None else min(t_min, lo)
        t_max = hi if t_max is None else max(t_max, hi)
        xm, ym = int(ev["x"].max()), int(ev["y"].max())
        x_max = xm if x_max is None else max(x_max, xm)
        y_max = ym if y_max is None else max(y_max, ym)
        n += len(ev)
        on += int(np.count_nonzero(ev["p"]))
    if sensor is None:  # no chunk at all: an empty recording; its header still has geometry
        rec = read_events(path, format=fmt, sensor_size=sensor_size, allow_empty=True)
        sensor, meta = rec.sensor_size, rec.meta
    duration_us = (t_max - t_min) if n else 0
    duration_s = duration_us / 1e6
    return {
        "file": str(path),
        "format": fmt,
        "camera": meta.get("camera"),
        "sensor_size": [int(v) for v in sensor],
        "sensor_size_inferred": bool(meta.get("sensor_size_inferred", False)),
        "events": n,
        "duration_s": duration_s,
        "event_rate_hz": (n / duration_s) if duration_us > 0 else None,
        "on_fraction": (on / n) if n else None,
        "monotonic": back == 0,
        "steps_back": back,
        "t_first_us": t_first,
        "t_last_us": t_last,
        "t_min_us": t_min,
        "t_max_us": t_max,
        "x_max": x_max,
        "y_max": y_max,
        "bytes": os.path.getsize(path),
    }



def stats_job(job: tuple) -> tuple[dict[str, Any] | None, str | None]:
    """``(path, format, sensor_size)`` -> ``(file_stats(...), None)`` or ``(None, one-line
    error)``: the picklable job that ``eventssm info`` runs in a worker process."""
    path, fmt, size = job
    try:
        return file_stats(path, format=fmt, sensor_size=size), None
    except EventFileError as exc:
        return None, str(exc)
    except MemoryError:
        return None, f"{path}: not enough memory to read it"
    except Exception as exc:  # a reader bug: one line (the traceback with -vv)
        log.debug("statistics of %s failed", path, exc_info=True)
        return None, " ".join(f"{path}: {type(exc).__name__}: {exc}".split())

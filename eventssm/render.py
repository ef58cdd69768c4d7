"""Event frames for looking at a recording: per-window event counts, colour images, video.

A recording is cut into consecutive windows of ``window_us`` microseconds starting at
``t_start`` (by default its first timestamp): window ``k`` holds the events with
``t_start + k·window_us <= t < t_start + (k + 1)·window_us``. Its frame counts the events of
each polarity at each pixel, ``counts[k, y, x, p]`` (uint16, saturating at 65,535).

:func:`colorize` maps counts to an RGB image on a black background: a pixel with ``n_on`` ON
and ``n_off`` OFF events gets red ``255 · min(n_on, clip) / clip`` and blue
``255 · min(n_off, clip) / clip`` (rounded), green 0; ``clip`` events saturate a channel.
:func:`write_frames` streams the frames of a whole file (bounded memory) to a video file
(``.mp4``/``.avi``, OpenCV's writer) or to numbered PNG files in a folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numba
import numpy as np

from eventssm.events import ArgumentError, EventFileError

log = logging.getLogger(__name__)

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


@numba.njit(cache=True, nogil=True)
def _accumulate(x, y, p, counts):
    """``counts[y, x, p] += 1`` (saturating at 65,535) for every event; returns the index of the
    first event outside the frame, or -1."""
    h, w = counts.shape[0], counts.shape[1]
    for i in range(x.shape[0]):
        xi, yi = x[i], y[i]
        if xi < 0 or xi >= w or yi < 0 or yi >= h:
            return i
        pi = 1 if p[i] else 0
        if counts[yi, xi, pi] < 65535:
            counts[yi, xi, pi] += 1
    return -1


def frame_counts(events: np.ndarray, sensor_size, out: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel, per-polarity counts of ``events`` (any order): (H, W, 2) uint16.

    Raises:
        EventFileError: an event outside ``sensor_size`` (``(W, H[, P])``).
    """
    w, h = int(sensor_size[0]), int(sensor_size[1])
    counts = np.zeros((h, w, 2), np.uint16) if out is None else out
    bad = _accumulate(events["x"], events["y"], events["p"], counts)
    if bad >= 0:
        raise EventFileError(
            None, f"event {bad} at (x={int(events['x'][bad])}, y={int(events['y'][bad])}) lies outside "
            f"the {w}x{h} sensor"
        )
    return counts


def window_edges(t: np.ndarray, window_us: float, t_start: int | None = None,
                 t_stop: int | None = None) -> np.ndarray:
    """Event index bounds of consecutive windows over sorted ``t``: window k is
    ``[edges[k], edges[k + 1])``. ``t_start`` defaults to ``t[0]``, ``t_stop`` to ``t[-1] + 1``;
    the last window may be partial."""
    if not window_us > 0:
        raise ValueError(f"window must be > 0 µs, got {window_us}")
    if len(t) == 0:
        return np.zeros(1, np.int64)
    start = int(t[0]) if t_start is None else int(t_start)
    stop = int(t[-1]) + 1 if t_stop is None else int(t_stop)
    n_win = max(int(np.ceil((stop - start) / window_us)), 0)
    bounds = start + np.floor(np.arange(n_win + 1) * float(window_us)).astype(np.int64)
    bounds[-1] = min(bounds[-1], stop) if n_win else start
    return np.searchsorted(t, bounds, side="left").astype(np.int64)


def colorize(counts: np.ndarray, clip: int = 1) -> np.ndarray:
    """(..., H, W, 2) counts → (..., H, W, 3) uint8 RGB (see the module docstring)."""
    if clip < 1:
        raise ValueError(f"clip must be >= 1, got {clip}")
    scaled = np.minimum(counts, clip).astype(np.uint32) * 255
    level = ((scaled + clip // 2) // clip).astype(np.uint8)  # round half up
    rgb = np.zeros((*counts.shape[:-1], 3), np.uint8)
    rgb[..., 0] = level[..., 1]
    rgb[..., 2] = level[..., 0]
    return rgb


def iter_frames(events: np.ndarray, sensor_size, window_us: float, *, clip: int = 1,
                t_start: int | None = None, t_stop: int | None = None,
                scale: int = 1) -> Iterator[np.ndarray]:
    """RGB frames (H·scale, W·scale, 3) of consecutive windows of sorted ``events``."""
    if int(scale) < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    edges = window_edges(events["t"], window_us, t_start, t_stop)
    counts = np.zeros((int(sensor_size[1]), int(sensor_size[0]), 2), np.uint16)
    for a, b in pairwise(edges.tolist()):
        counts[:] = 0
        frame_counts(events[a:b], sensor_size, counts)
        rgb = colorize(counts, clip)
        if scale > 1:
            rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
        yield rgb


def write_frames(frames: Iterator[np.ndarray], out: str | os.PathLike, fps: float, *,
                 overwrite: bool = False) -> int:
    """Write RGB ``frames`` to ``out``: a video when it ends with .mp4/.avi, else a new folder
    of ``frame_00000.png``… Written under a temporary name and renamed at the end, so an
    interrupted or failed run leaves no half output (and an existing video is replaced only
    then, with ``overwrite``). Returns the number of frames.

    Raises:
        FileExistsError: ``out`` exists (a folder always; a video unless ``overwrite``).
        ArgumentError: no frame to write (no events in the time range).
        OSError: the output cannot be written (or OpenCV cannot open the video writer).
    """
    import cv2

    out = Path(out)
    suffix = out.suffix.lower()
    video = suffix in VIDEO_CODECS
    if out.exists() and (not video or not overwrite or out.is_dir()):
        raise FileExistsError(f"{out}: exists" + (" (use --overwrite)" if video else ""))
    tmp = out.with_name(f".{out.name}.partial{os.getpid()}{suffix if video else ''}")
    n = 0
    writer = None
    try:
        if video:
            for rgb in frames:
                if writer is None:
                    h, w = rgb.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*VIDEO_CODECS[suffix]),
                                             float(fps), (w, h))
                    if not writer.isOpened():
                        raise OSError(f"{out}: OpenCV cannot write {suffix} video here")
                writer.write(np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV wants BGR
                n += 1
            if writer is not None:
                writer.release()
                writer = None
        else:
            tmp.mkdir()
            for rgb in frames:
                name = tmp / f"frame_{n:05d}.png"
                if not cv2.imwrite(str(name), np.ascontiguousarray(rgb[..., ::-1])):
                    raise OSError(f"{name}: OpenCV could not write the PNG")
                n += 1
        if n == 0:
            raise ArgumentError(f"{out}: no frame to write (no events in the time range)")
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.release()
        if tmp.is_dir():
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        elif tmp.exists():
            tmp.unlink()
    log.info("wrote %d frames to %s", n, out)
    return n

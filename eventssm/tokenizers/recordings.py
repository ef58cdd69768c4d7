"""Tokenizing one recording: into its samples (:func:`tokenize_recording`), or read from a file
and described by a :class:`SourceInfo` (:func:`tokenize_file`).

Never imports JAX; logs, never prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from eventssm.events import EventFileError, SensorSize
from eventssm.tokenizers.settings import TokenizerSettings, coerce_settings

__all__ = ["SourceInfo", "TokenizedFile", "flip_events", "tokenize_file", "tokenize_recording"]


def prepare_events(events: np.ndarray, settings: TokenizerSettings, sensor_size: SensorSize) -> np.ndarray:
    """The events the slices index: sorted by time when ``settings.sort_events``, filtered by
    the background-activity filter when ``settings.denoise_us`` is set, and mirrored by
    ``settings.flip_x`` / ``flip_y`` on ``sensor_size``.

    Raises:
        EventFileError: (without the file's name) no event of a non-empty recording passes
            the background-activity filter.
    """
    if settings.sort_events:
        from eventssm.tokenizers.functional import sort_events

        events = sort_events(events)
    if settings.denoise_us is not None:
        from eventssm.tokenizers.functional import denoise_filter

        n_in = len(events)
        events = denoise_filter(events, sensor_size, settings.denoise_us)
        if n_in and not len(events):  # an empty sample would be classified as if it held something
            raise EventFileError(None, f"all {n_in} events are isolated: none passes the background-activity "
                                       f"filter (denoise_us {settings.denoise_us})")
    if settings.flip_x or settings.flip_y:
        events = flip_events(events, sensor_size, flip_x=settings.flip_x, flip_y=settings.flip_y)
    return events


def flip_events(events: np.ndarray, sensor_size: SensorSize, *, flip_x: bool = False,
                flip_y: bool = False) -> np.ndarray:
    """``events`` mirrored: ``x' = W - 1 - x`` when ``flip_x``, ``y' = H - 1 - y`` when
    ``flip_y`` (a new array; the input itself when neither is set). One numba pass
    (:class:`~eventssm.tokenizers.transforms.FlipX` / ``FlipY``)."""
    if not (flip_x or flip_y):
        return events
    from eventssm.tokenizers.transforms import Compose, FlipX, FlipY

    ops = ((FlipX(tuple(sensor_size)),) if flip_x else ()) + ((FlipY(tuple(sensor_size)),) if flip_y else ())
    return Compose(ops)(events, np.random.default_rng(0))  # deterministic: nothing is drawn


def slice_ranges(n_events: int, settings: TokenizerSettings) -> np.ndarray:
    """``(K, 2)`` int64 ``[start, stop)`` event ranges of the samples of one recording."""
    if settings.slice_events is None:
        return np.array([[0, n_events]], dtype=np.int64)
    from eventssm.tokenizers.functional import slice_by_count

    r = np.asarray(slice_by_count(n_events, settings.slice_events, settings.stride))
    return r.astype(np.int64, copy=False).reshape(-1, 2)


def tokenize_range(events: np.ndarray, sensor_size: SensorSize, settings: TokenizerSettings):
    """``tokenize`` of one sample's events with ``settings``: ``(tokens int32, dt float32)``."""
    from eventssm.tokenizers.functional import tokenize

    tokens, dt = tokenize(
        events,
        sensor_size,
        downsample=settings.tokenize_downsample,
        merge_polarity=settings.merge_polarity,
        time_unit=settings.time_unit,
    )
    return np.asarray(tokens, dtype=np.int32), np.asarray(dt, dtype=np.float32)


def tokenize_recording(
    events: np.ndarray, sensor_size: SensorSize, settings: TokenizerSettings | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokenize one recording into its samples (one, or slices by event count).

    Each slice ``[a, b)`` of ``slice_by_count(N, slice_events, stride)`` is tokenized on its
    own (``dt`` of its first token is 0), exactly as ``tokenize(events[a:b], ...)``; with
    ``settings.sort_events`` the ranges index the time-sorted events.

    Args:
        events: ``EVENT_DTYPE`` array, shape (N,).
        sensor_size: ``(width, height, polarities)`` of the recording.
        settings: tokenizer settings (default :class:`TokenizerSettings()`).

    Returns:
        ``(tokens, dt, lengths, ranges)``: all samples' tokens concatenated (int32, (T,)),
        their ``dt`` (float32, (T,), unit ``settings.time_unit``), tokens per sample
        (int64, (K,)) and each sample's event range in the recording (int64, (K, 2)).
    """
    settings = coerce_settings(settings)
    ev = prepare_events(events, settings, sensor_size)
    ranges = slice_ranges(len(ev), settings)
    toks, dts, lengths = [], [], np.empty(len(ranges), dtype=np.int64)
    for k, (a, b) in enumerate(ranges):
        t, d = tokenize_range(ev[a:b], sensor_size, settings)
        toks.append(t)
        dts.append(d)
        lengths[k] = len(t)
    if toks:
        return np.concatenate(toks), np.concatenate(dts), lengths, ranges
    return np.empty(0, np.int32), np.empty(0, np.float32), lengths, ranges


@dataclass(frozen=True)
class SourceInfo:
    """One input recording of a cache.

    Attributes:
        path: absolute path when built; relative to the cache root when read from a cache.
        size: file size in bytes; mtime_ns: modification time in ns (both when read).
        n_events: events in the recording; sensor_size: ``(width, height, polarities)``.
        label: class id (-1 unlabelled); format: name of the reader that decoded it.
    """

    path: str
    size: int
    mtime_ns: int
    n_events: int
    sensor_size: tuple[int, int, int]
    label: int
    format: str


@dataclass
class TokenizedFile:
    """A tokenized recording: the samples :func:`tokenize_recording` made of one file."""

    source: SourceInfo
    tokens: np.ndarray
    dt: np.ndarray
    lengths: np.ndarray
    ranges: np.ndarray


def tokenize_file(
    path: str | os.PathLike,
    *,
    label: int = -1,
    settings: TokenizerSettings | None = None,
    sensor_size: SensorSize | None = None,
    format: str | None = None,
) -> TokenizedFile:
    """Read one recording with :func:`eventssm.io.read_events` and tokenize it.

    Raises:
        EventFileError: the file cannot be read (names the file).
    """
    from eventssm.io import read_events

    settings = coerce_settings(settings)
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError as exc:
        raise EventFileError(p, f"cannot stat: {exc.strerror or exc}") from None
    reader = reader_name(p, format)
    rec = read_events(p, format=reader, sensor_size=sensor_size)
    try:
        tokens, dt, lengths, ranges = tokenize_recording(rec.events, rec.sensor_size, settings)
    except EventFileError as exc:  # tokenize's errors do not know the file
        raise EventFileError(p, exc.message, exc.offset) from None
    src = SourceInfo(
        path=p,
        size=int(st.st_size),
        mtime_ns=int(st.st_mtime_ns),
        n_events=len(rec.events),
        sensor_size=tuple(int(v) for v in rec.sensor_size),
        label=int(label),
        format=reader,
    )
    return TokenizedFile(src, tokens, dt, lengths, ranges)


def reader_name(path: str, format: str | None) -> str:
    """Name of the reader that decodes ``path``: ``format`` when given, else the detected one.

    This, not ``Recording.meta["format"]`` (which a file written by ``write_events`` carries
    over from the recording it stored, e.g. ``"simulated"``), is what ``/sources/format`` holds.
    """
    if format is not None:
        return format
    from eventssm.io import detect_format

    return detect_format(path).name

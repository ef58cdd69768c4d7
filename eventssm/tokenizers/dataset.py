"""Token caches: many recordings -> one HDF5 file of token streams, and datasets over them.

A *token cache* is one HDF5 file holding every sample of a dataset as a token stream
(``tokens`` int32, ``dt`` float32, see :func:`eventssm.tokenizers.functional.tokenize`),
concatenated, with ``offsets`` so that sample ``i`` is ``[offsets[i], offsets[i + 1])``
(O(1) random access). Layout (format version :data:`FORMAT_VERSION`)::

    /tokens            int32   (T,)     chunked, gzip + shuffle
    /dt                float32 (T,)     chunked, gzip + shuffle; unit = settings.time_unit
    /offsets           int64   (K + 1,) offsets[0] = 0, offsets[K] = T
    /labels            int32   (K,)     class id, -1 for an unlabelled cache
    /source_index      int32   (K,)     row of /sources the sample came from
    /ranges            int64   (K, 2)   [start, stop) event range of the sample in its source
    /class_names       str     (C,)     class id -> name (empty for an unlabelled cache)
    /sources/path      str     (S,)     path relative to the ``root`` attribute
    /sources/size      int64   (S,)     file size in bytes when read
    /sources/mtime_ns  int64   (S,)     modification time (ns) when read
    /sources/n_events  int64   (S,)     events in the recording
    /sources/sensor_size int32 (S, 3)   (width, height, polarities) of the recording
    /sources/label     int32   (S,)     class id of the recording (-1 unlabelled)
    /sources/format    str     (S,)     reader that decoded it
    attrs: format, format_version, settings (JSON of :class:`TokenizerSettings`),
           sensor_size, grid_size, vocab_size, root, eventssm_version

A cache is never silently reused with other tokenizer settings: :class:`TokenDataset` with
``settings=`` and :func:`build_cache` with ``append=True`` raise :class:`DatasetError` when the
stored settings differ. Caches are written to a temporary file next to the output and renamed
at the end, so an interrupted run leaves no half cache and an existing output untouched.

This module never imports JAX; it logs, never prints.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import operator
import os
import re
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from eventssm.events import EventFileError, SensorSize

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "BuildReport",
    "CacheInfo",
    "DatasetError",
    "SourceInfo",
    "TokenDataset",
    "TokenizedFile",
    "TokenizerSettings",
    "build_cache",
    "class_ids",
    "find_recordings",
    "flip_events",
    "is_event_text",
    "is_token_cache",
    "labels_from_csv",
    "labels_from_folder",
    "labels_from_name",
    "read_cache_info",
    "tokenize_file",
    "tokenize_recording",
    "write_cache",
]

FORMAT_NAME = "eventssm-token-cache"
FORMAT_VERSION = 1
TIME_UNITS = ("us", "ms", "s")

_CHUNK = 1 << 15  # elements per HDF5 chunk of tokens / dt (128 KiB)
_FLUSH = 1 << 22  # buffered tokens before a write to the HDF5 file
_FLUSH_SOURCES = 4096  # buffered recordings before a write
_STR = h5py.string_dtype("utf-8")


class DatasetError(ValueError):
    """A problem with a token cache, its labels or its settings (one line, names the file)."""


# --------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class TokenizerSettings:
    """How recordings become token streams; stored in every cache as JSON.

    Attributes:
        downsample: integer spatial pooling factor passed to ``tokenize`` (>= 1).
        target_size: ``(width, height)`` of the token grid, or ``None``: the sensor is
            rescaled to it (``x2 = x * width // W``, ``y2 = y * height // H``, the target form
            of ``tokenize``'s ``downsample``). Exclusive with ``downsample > 1``.
        merge_polarity: drop polarity (vocabulary halves).
        time_unit: unit of ``dt``: ``"us"``, ``"ms"`` or ``"s"``.
        slice_events: cut each recording into samples of this many events, or ``None`` for
            one sample per recording.
        overlap: events shared by consecutive slices (stride = ``slice_events - overlap``).
        sort_events: stable-sort a recording by timestamp when it is not in time order
            (otherwise such a recording is an error, as in ``tokenize``).
        flip_x, flip_y: mirror each recording on its own sensor before tokenizing
            (``x' = W - 1 - x``, ``y' = H - 1 - y``; :class:`~eventssm.tokenizers.transforms.FlipX`
            / ``FlipY``), for cameras mounted mirrored or upside down. Caches written before
            these fields existed read as ``False``.

    With ``target_size`` every recording is rescaled from its own sensor size, so one cache
    can hold recordings of several cameras (:func:`write_cache`).
    """

    downsample: int = 1
    target_size: tuple[int, int] | None = None
    merge_polarity: bool = False
    time_unit: str = "ms"
    slice_events: int | None = None
    overlap: int = 0
    sort_events: bool = False
    flip_x: bool = False
    flip_y: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.downsample, bool) or int(self.downsample) != self.downsample:
            raise ValueError(f"downsample must be an integer, got {self.downsample!r}")
        if self.downsample < 1:
            raise ValueError(f"downsample must be >= 1, got {self.downsample}")
        if self.target_size is not None:
            ts = tuple(int(v) for v in self.target_size)
            if len(ts) != 2 or min(ts) < 1:
                raise ValueError(f"target_size must be (width, height) >= 1, got {self.target_size}")
            object.__setattr__(self, "target_size", ts)
            if self.downsample != 1:
                raise ValueError("give either downsample or target_size, not both")
        if self.time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be one of {TIME_UNITS}, got {self.time_unit!r}")
        if self.slice_events is not None:
            if int(self.slice_events) < 1:
                raise ValueError(f"slice_events must be >= 1, got {self.slice_events}")
            if not 0 <= int(self.overlap) < int(self.slice_events):
                raise ValueError(
                    f"overlap must satisfy 0 <= overlap < slice_events ({self.slice_events}), "
                    f"got {self.overlap}"
                )
        elif self.overlap:
            raise ValueError("overlap needs slice_events")
        object.__setattr__(self, "downsample", int(self.downsample))
        object.__setattr__(self, "merge_polarity", bool(self.merge_polarity))
        object.__setattr__(self, "sort_events", bool(self.sort_events))
        object.__setattr__(self, "flip_x", bool(self.flip_x))
        object.__setattr__(self, "flip_y", bool(self.flip_y))
        object.__setattr__(self, "overlap", int(self.overlap))
        if self.slice_events is not None:
            object.__setattr__(self, "slice_events", int(self.slice_events))

    @property
    def stride(self) -> int | None:
        """Events between the starts of consecutive slices, or ``None`` without slicing."""
        return None if self.slice_events is None else self.slice_events - self.overlap

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``target_size`` as a list or ``None``)."""
        d = asdict(self)
        d["target_size"] = None if self.target_size is None else list(self.target_size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenizerSettings:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown tokenizer settings {sorted(unknown)}")
        d = dict(d)
        if d.get("target_size") is not None:
            d["target_size"] = tuple(d["target_size"])
        return cls(**d)

    #: Fields that change the tokens of a recording (slicing only picks samples, and
    #: ``sort_events`` only decides whether an unsorted recording is an error).
    TOKEN_FIELDS = ("downsample", "target_size", "merge_polarity", "time_unit", "flip_x", "flip_y")

    def same_tokens(self, other: TokenizerSettings) -> bool:
        """Whether ``other`` turns a recording into the same tokens and ``dt``."""
        a, b = self.to_dict(), other.to_dict()
        return all(a[k] == b[k] for k in self.TOKEN_FIELDS)

    def same_grid_for_any_sensor(self) -> bool:
        """Whether every recording gets the same token grid whatever its sensor size
        (``target_size`` set), so a cache may mix cameras."""
        return self.target_size is not None

    def differences(self, other: TokenizerSettings) -> list[str]:
        """``["downsample: 2 != 1", ...]`` for every field that differs (self first)."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} != {b[k]!r}" for k in a if a[k] != b[k]]

    @property
    def tokenize_downsample(self) -> int | tuple[int, int]:
        """The ``downsample`` argument of ``tokenize``: the target size when set, else the factor."""
        return self.downsample if self.target_size is None else self.target_size

    def grid_size(self, sensor_size: SensorSize) -> tuple[int, int, int]:
        """Token grid ``(W2, H2, P2)`` for a recording of ``sensor_size``."""
        from eventssm.tokenizers.functional import grid_size

        g = grid_size(sensor_size, self.tokenize_downsample, merge_polarity=self.merge_polarity)
        return tuple(int(v) for v in g)

    def vocab_size(self, sensor_size: SensorSize) -> int:
        """Number of distinct tokens, ``W2 * H2 * P2``."""
        w, h, p = self.grid_size(sensor_size)
        return int(w * h * p)


def _coerce_settings(settings: TokenizerSettings | dict | None) -> TokenizerSettings:
    if settings is None:
        return TokenizerSettings()
    if isinstance(settings, dict):
        return TokenizerSettings.from_dict(settings)
    if not isinstance(settings, TokenizerSettings):
        raise TypeError(f"settings must be TokenizerSettings or dict, got {type(settings).__name__}")
    return settings


def _check_settings(path: Path, stored: TokenizerSettings, wanted: TokenizerSettings) -> None:
    diff = stored.differences(wanted)
    if diff:
        raise DatasetError(
            f"{path}: cache was built with other tokenizer settings (cached != requested: "
            f"{'; '.join(diff)}); rebuild it with --overwrite"
        )


# --------------------------------------------------------------------------------------------
# tokenizing one recording


def _prepare(events: np.ndarray, settings: TokenizerSettings, sensor_size: SensorSize) -> np.ndarray:
    """The events the slices index: mirrored by ``settings.flip_x`` / ``flip_y`` on
    ``sensor_size``, and sorted by time when ``settings.sort_events``."""
    if settings.sort_events:
        from eventssm.tokenizers.functional import sort_events

        events = sort_events(events)
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


def _slice_ranges(n_events: int, settings: TokenizerSettings) -> np.ndarray:
    """``(K, 2)`` int64 ``[start, stop)`` event ranges of the samples of one recording."""
    if settings.slice_events is None:
        return np.array([[0, n_events]], dtype=np.int64)
    from eventssm.tokenizers.functional import slice_by_count

    r = np.asarray(slice_by_count(n_events, settings.slice_events, settings.stride))
    return r.astype(np.int64, copy=False).reshape(-1, 2)


def _tokenize_range(events: np.ndarray, sensor_size: SensorSize, settings: TokenizerSettings):
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
    settings = _coerce_settings(settings)
    ev = _prepare(events, settings, sensor_size)
    ranges = _slice_ranges(len(ev), settings)
    toks, dts, lengths = [], [], np.empty(len(ranges), dtype=np.int64)
    for k, (a, b) in enumerate(ranges):
        t, d = _tokenize_range(ev[a:b], sensor_size, settings)
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

    settings = _coerce_settings(settings)
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError as exc:
        raise EventFileError(p, f"cannot stat: {exc.strerror or exc}") from None
    reader = _reader_name(p, format)
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


def _reader_name(path: str, format: str | None) -> str:
    """Name of the reader that decodes ``path``: ``format`` when given, else the detected one.

    This, not ``Recording.meta["format"]`` (which a file written by ``write_events`` carries
    over from the recording it stored, e.g. ``"simulated"``), is what ``/sources/format`` holds.
    """
    if format is not None:
        return format
    from eventssm.io import detect_format

    return detect_format(path).name


# --------------------------------------------------------------------------------------------
# inputs and labels


def find_recordings(
    inputs: Iterable[str | os.PathLike],
    *,
    format: str | None = None,
    exclude: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """Expand files and folders into recording paths.

    Folders are walked recursively in sorted order, keeping files whose extension a registered
    reader knows (only ``format``'s extensions when given). Skipped inside folders: hidden
    files and folders, token caches (:func:`is_token_cache`, e.g. an earlier output in the same
    folder) and ``.csv`` / ``.txt`` files that do not hold event data (see
    :func:`is_event_text`: a labels CSV or a README beside the recordings). Files named
    explicitly are kept whatever their extension and content. Order: as given, folders
    expanded in place; duplicates (same absolute path) and ``exclude`` paths (e.g. the output
    and the labels CSV; compared after resolving symbolic links) are dropped everywhere.

    Returns:
        absolute paths.

    Raises:
        DatasetError: an input does not exist.
    """
    from eventssm.io import formats

    specs = formats()
    if format is not None:
        if format not in specs:
            raise DatasetError(f"unknown format {format!r}; known: {', '.join(specs)}")
        exts = set(specs[format].extensions)
    else:
        exts = {e for s in specs.values() for e in s.extensions}
    skip = {os.path.realpath(os.fspath(e)) for e in exclude}
    out: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        a = os.path.abspath(p)
        if a not in seen and os.path.realpath(a) not in skip:
            seen.add(a)
            out.append(Path(a))

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.startswith(".") or Path(name).suffix.lower() not in exts:
                        continue
                    fp = Path(dirpath) / name
                    if fp.suffix.lower() in (".h5", ".hdf5") and is_token_cache(fp):
                        log.info("skipping token cache %s", fp)
                        continue
                    if fp.suffix.lower() in _TEXT_EXTENSIONS and not is_event_text(fp):
                        log.info("skipping %s: its first line is not an event header or event", fp)
                        continue
                    add(fp)
        elif p.exists():
            add(p)
        else:
            raise DatasetError(f"{p}: no such file or folder")
    return out


_TEXT_EXTENSIONS = (".csv", ".txt")
#: column names of the csv reader (eventssm.io.text): x, y, t | ts | timestamp | time, p | pol | polarity
_EVENT_COLUMNS = {"x": "x", "y": "y", "t": "t", "ts": "t", "timestamp": "t", "time": "t",
                  "p": "p", "pol": "p", "polarity": "p"}
_SNIFF_BYTES = 1 << 16


def is_event_text(path: str | os.PathLike) -> bool:
    """Whether a text file looks like event data, judged by its first data line.

    The rule :func:`find_recordings` applies to ``.csv`` / ``.txt`` files found in folders:
    the first line that is neither blank nor a comment (``#``, ``%``), within the first 64 KiB,
    must be either

    * a header naming the columns x, y, t (or ts, timestamp, time) and p (or pol, polarity),
      in any order and case, other columns allowed; or
    * at least four numbers (a headerless event line, e.g. ``t x y p``),

    split on commas, else semicolons, else whitespace, as the csv reader splits them. A labels
    file (``file,label``), prose, a binary file or a file with no data line is not event data.
    Files that pass may still fail to decode later (a bad line further down).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    for raw in head.split(b"\n")[: -1 if len(head) == _SNIFF_BYTES else None]:
        try:
            line = raw.decode("utf-8").lstrip("\ufeff").strip()
        except UnicodeDecodeError:
            return False
        if not line or line.startswith(("#", "%")):
            continue
        delimiter = "," if "," in line else (";" if ";" in line else None)
        fields = [f.strip() for f in line.split(delimiter)]
        numbers = 0
        for f in fields:
            try:
                float(f)
            except ValueError:
                break
            numbers += 1
        if numbers == len(fields):
            return numbers >= 4
        names = {_EVENT_COLUMNS.get(f.strip("\"'").lower()) for f in fields}
        return {"x", "y", "t", "p"} <= names
    return False


def is_token_cache(path: str | os.PathLike) -> bool:
    """True when ``path`` is an HDF5 file written by :func:`write_cache`."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT_NAME
    except (OSError, ValueError):
        return False


def labels_from_folder(files: Sequence[str | os.PathLike]) -> list[str]:
    """Class of each file = the name of its parent folder."""
    return [Path(os.path.abspath(f)).parent.name for f in files]


def labels_from_name(files: Sequence[str | os.PathLike], pattern: str) -> list[str]:
    """Class of each file = group 1 of ``pattern`` searched in the file stem.

    Raises:
        DatasetError: the pattern is invalid or has no group, or a stem does not match.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"invalid label pattern {pattern!r}: {exc}") from None
    if rx.groups < 1:
        raise DatasetError(f"label pattern {pattern!r} needs one group, e.g. '^([a-z]+)_'")
    out = []
    for f in files:
        stem = Path(f).stem
        m = rx.search(stem)
        if m is None or not m.group(1):
            raise DatasetError(f"{f}: no label: file stem {stem!r} does not match {pattern!r}")
        out.append(m.group(1))
    return out


def labels_from_csv(files: Sequence[str | os.PathLike], csv_path: str | os.PathLike) -> list[str]:
    """Class of each file from a CSV with a header row holding ``file`` and ``label`` columns.

    ``file`` is a path relative to the CSV's folder (or absolute), or a bare file name matched
    by basename when it is unique in the CSV.

    Raises:
        DatasetError: the CSV is unreadable or malformed, or a file has no label.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read labels: {exc}") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "file" not in header or "label" not in header:
        raise DatasetError(f"{csv_path}: expected a header row with columns 'file,label'")
    fi, li = header.index("file"), header.index("label")
    by_path: dict[str, str] = {}
    by_name: dict[str, str | None] = {}
    base = csv_path.parent
    for n, row in enumerate(rows[1:], start=2):
        if len(row) <= max(fi, li):
            raise DatasetError(f"{csv_path}: row {n} has {len(row)} columns, expected 'file,label'")
        name, label = row[fi].strip(), row[li].strip()
        if not name or not label:
            raise DatasetError(f"{csv_path}: row {n} has an empty file or label")
        key = os.path.normpath(os.path.abspath(base / name))
        if by_path.get(key, label) != label:
            raise DatasetError(f"{csv_path}: row {n}: {name} listed twice with different labels")
        by_path[key] = label
        bn = Path(name).name
        by_name[bn] = label if by_name.get(bn, label) == label else None
    out = []
    for f in files:
        key = os.path.normpath(os.path.abspath(f))
        label = by_path.get(key)
        if label is None:
            label = by_name.get(Path(f).name)
        if label is None:
            why = "ambiguous basename" if Path(f).name in by_name else "not listed"
            raise DatasetError(f"{f}: no label in {csv_path} ({why})")
        out.append(label)
    return out


def _class_sort_key(name: str):
    return (0, int(name), "") if re.fullmatch(r"[+-]?\d+", name) else (1, 0, name)


def class_ids(
    labels: Sequence[str],
    files: Sequence[str | os.PathLike] | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map class names to ids.

    Without ``class_names`` the distinct labels are sorted (numerically when all are integers,
    else by string) and numbered from 0; with ``class_names`` their order gives the ids.

    Returns:
        ``(ids int32 (N,), class_names)``.

    Raises:
        DatasetError: a label is not one of ``class_names`` (names the file when given).
    """
    if class_names is None:
        names = tuple(sorted(set(labels), key=_class_sort_key))
    else:
        names = tuple(class_names)
        if len(set(names)) != len(names):
            raise DatasetError(f"class names repeat: {list(names)}")
    index = {c: i for i, c in enumerate(names)}
    ids = np.empty(len(labels), dtype=np.int32)
    for k, lab in enumerate(labels):
        if lab not in index:
            who = f"{files[k]}: " if files is not None else ""
            raise DatasetError(f"{who}unknown class {lab!r}; classes are {', '.join(names)}")
        ids[k] = index[lab]
    return ids, names


# --------------------------------------------------------------------------------------------
# reading a cache


@dataclass
class CacheInfo:
    """Everything small in a cache: metadata plus the per-sample index arrays."""

    path: Path
    settings: TokenizerSettings
    sensor_size: tuple[int, int, int]
    grid_size: tuple[int, int, int]
    vocab_size: int
    class_names: tuple[str, ...]
    root: str
    sources: tuple[SourceInfo, ...]
    offsets: np.ndarray
    labels: np.ndarray
    source_index: np.ndarray
    ranges: np.ndarray
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def source_path(self, s: int) -> str:
        """Absolute path of source ``s`` (``root`` joined with its stored relative path)."""
        return os.path.normpath(os.path.join(self.root, self.sources[s].path))


def _strs(ds) -> list[str]:
    return [str(v) for v in ds.asstr()[()]] if len(ds) else []


def read_cache_info(path: str | os.PathLike) -> CacheInfo:
    """Open a cache, check it is one this version reads, and load its metadata and index.

    Raises:
        DatasetError: missing, not HDF5, not a token cache, newer format, or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such cache file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        if f.attrs.get("format") != FORMAT_NAME:
            raise DatasetError(f"{path}: not an eventssm token cache")
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise DatasetError(
                f"{path}: token cache format version {version}; this eventssm reads "
                f"{FORMAT_VERSION}"
            )
        try:
            settings = TokenizerSettings.from_dict(json.loads(f.attrs["settings"]))
            g = f["sources"]
            sensors = g["sensor_size"][()].astype(int)
            sources = tuple(
                SourceInfo(p, int(sz), int(mt), int(ne), tuple(int(v) for v in ss), int(lb), fm)
                for p, sz, mt, ne, ss, lb, fm in zip(
                    _strs(g["path"]),
                    g["size"][()],
                    g["mtime_ns"][()],
                    g["n_events"][()],
                    sensors,
                    g["label"][()],
                    _strs(g["format"]),
                )
            )
            info = CacheInfo(
                path=path,
                settings=settings,
                sensor_size=tuple(int(v) for v in f.attrs["sensor_size"]),
                grid_size=tuple(int(v) for v in f.attrs["grid_size"]),
                vocab_size=int(f.attrs["vocab_size"]),
                class_names=tuple(_strs(f["class_names"])),
                root=str(f.attrs["root"]),
                sources=sources,
                offsets=f["offsets"][()].astype(np.int64),
                labels=f["labels"][()].astype(np.int32),
                source_index=f["source_index"][()].astype(np.int32),
                ranges=f["ranges"][()].astype(np.int64).reshape(-1, 2),
                format_version=version,
            )
            n_tokens = f["tokens"].shape[0]
            n_dt = f["dt"].shape[0]
        except (KeyError, ValueError, TypeError) as exc:
            raise DatasetError(f"{path}: damaged token cache ({exc})") from None
    k = len(info.labels)
    o = info.offsets
    if (
        len(o) != k + 1
        or o[0] != 0
        or o[-1] != n_tokens
        or n_dt != n_tokens
        or np.any(np.diff(o) < 0)
        or len(info.source_index) != k
        or len(info.ranges) != k
        or (k and (info.source_index.min() < 0 or info.source_index.max() >= len(sources)))
        or (k and info.class_names and (info.labels.min() < 0
                                        or info.labels.max() >= len(info.class_names)))
        or (k and not info.class_names and np.any(info.labels != -1))
    ):
        raise DatasetError(f"{path}: damaged token cache (index arrays disagree)")
    return info


# --------------------------------------------------------------------------------------------
# writing a cache


COMPRESSIONS = ("gzip", "lzf", None)  # HDF5 filters of a cache's tokens and dt


def _check_compression(compression: str | None, level: int | None = None) -> None:
    if compression not in COMPRESSIONS:
        raise DatasetError(
            f"unknown cache compression {compression!r}; use 'gzip', 'lzf' or None"
        )
    if compression == "gzip" and level is not None and not 0 <= level <= 9:
        raise DatasetError(f"gzip level must be 0-9, got {level}")


class _Writer:
    """Appends tokenized files to an open cache file, buffering small writes."""

    def __init__(self, f: h5py.File, compression: str | None, level: int | None):
        self.f = f
        self.comp: dict = {}
        if compression is not None:
            self.comp = dict(compression=compression, shuffle=True)
            if compression == "gzip" and level is not None:
                self.comp["compression_opts"] = level  # lzf takes no options
        self.n_samples_added = 0
        self.n_sources_added = 0

    # name -> (dtype, shape of one row, rows per chunk, True for tokens/dt: the cache's
    # filter; False for the small index arrays: gzip, they compress well)
    _LAYOUT: ClassVar[dict] = {
        "tokens": (np.int32, (), _CHUNK, True),
        "dt": (np.float32, (), _CHUNK, True),
        "offsets": (np.int64, (), 4096, False),
        "labels": (np.int32, (), 4096, False),
        "source_index": (np.int32, (), 4096, False),
        "ranges": (np.int64, (2,), 4096, False),
        "sources/size": (np.int64, (), 1024, False),
        "sources/mtime_ns": (np.int64, (), 1024, False),
        "sources/n_events": (np.int64, (), 1024, False),
        "sources/label": (np.int32, (), 1024, False),
        "sources/path": (_STR, (), 1024, False),
        "sources/format": (_STR, (), 1024, False),
        "sources/sensor_size": (np.int32, (3,), 1024, False),
    }

    def create(self, settings, sensor_size, grid, vocab, class_names, root) -> None:
        """Start a new cache: its attributes now, its datasets at the first :meth:`flush`
        (created with their first rows: about half the cost of creating them empty and
        growing them, which is most of the time of a small cache)."""
        f = self.f
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["settings"] = settings.to_json()
        f.attrs["sensor_size"] = np.asarray(sensor_size, dtype=np.int64)
        f.attrs["grid_size"] = np.asarray(grid, dtype=np.int64)
        f.attrs["vocab_size"] = int(vocab)
        f.attrs["root"] = str(root)
        from eventssm import __version__

        f.attrs["eventssm_version"] = __version__
        f.create_dataset("class_names", data=np.array(list(class_names), dtype=object), dtype=_STR)
        f.create_group("sources")
        self.made: set[str] = set()
        self.n_sources = 0
        self.end = 0
        self._clear()

    def begin(self) -> None:
        """Start appending to an existing cache (opened for append)."""
        self.made = set(self._LAYOUT)
        self.n_sources = self.f["sources/size"].shape[0]
        self.end = int(self.f["offsets"][-1])
        self._clear()

    def _extend(self, name: str, values) -> None:
        """Append rows to dataset ``name``, creating it (chunked, growable) on first use."""
        dtype, row, chunk, big = self._LAYOUT[name]
        if name not in self.made:
            filters = self.comp if big else dict(compression="gzip", shuffle=True)
            self.f.create_dataset(name, data=np.asarray(values, dtype=dtype).reshape(-1, *row),
                                  dtype=dtype, maxshape=(None, *row), chunks=(chunk, *row),
                                  **filters)
            self.made.add(name)
            return
        n = len(values)
        if n == 0:
            return
        ds = self.f[name]
        old = ds.shape[0]
        ds.resize(old + n, axis=0)
        ds[old : old + n] = values

    def _clear(self) -> None:
        self.src_rows: list[tuple] = []
        self.tok: list[np.ndarray] = []
        self.dt: list[np.ndarray] = []
        self.offs: list[np.ndarray] = []
        self.labs: list[np.ndarray] = []
        self.srcs: list[np.ndarray] = []
        self.rngs: list[np.ndarray] = []
        self.buf_n = 0

    def add(self, item: TokenizedFile, rel_path: str) -> None:
        """Buffer one tokenized file (its source row and its samples)."""
        s = item.source
        self.src_rows.append(
            (rel_path, s.format, s.size, s.mtime_ns, s.n_events, s.label, s.sensor_size)
        )
        k = len(item.lengths)
        if k:
            ends = self.end + np.cumsum(item.lengths, dtype=np.int64)
            self.end = int(ends[-1])
            self.offs.append(ends)
            self.labs.append(np.full(k, s.label, np.int32))
            self.srcs.append(np.full(k, self.n_sources, np.int32))
            self.rngs.append(np.asarray(item.ranges, np.int64).reshape(k, 2))
            self.tok.append(item.tokens)
            self.dt.append(item.dt)
            self.buf_n += len(item.tokens)
        self.n_sources += 1
        self.n_samples_added += k
        self.n_sources_added += 1
        if self.buf_n >= _FLUSH or len(self.src_rows) >= _FLUSH_SOURCES:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows to the file."""
        if self.src_rows:
            cols = list(zip(*self.src_rows))
            self._extend("sources/path", np.array(cols[0], dtype=object))
            self._extend("sources/format", np.array(cols[1], dtype=object))
            for name, col, dtype in (("size", 2, np.int64), ("mtime_ns", 3, np.int64),
                                     ("n_events", 4, np.int64), ("label", 5, np.int32)):
                self._extend(f"sources/{name}", np.asarray(cols[col], dtype=dtype))
            self._extend("sources/sensor_size",
                         np.asarray(cols[6], dtype=np.int32).reshape(-1, 3))
        if self.offs:
            ends = np.concatenate(self.offs)
            if "offsets" not in self.made:  # a new cache: the offsets start with 0
                ends = np.concatenate([np.zeros(1, np.int64), ends])
            self._extend("tokens", np.concatenate(self.tok))
            self._extend("dt", np.concatenate(self.dt))
            self._extend("offsets", ends)
            self._extend("labels", np.concatenate(self.labs))
            self._extend("source_index", np.concatenate(self.srcs))
            self._extend("ranges", np.concatenate(self.rngs))
        self._clear()


def _relpath(path: str, root: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _common_root(paths: Sequence[str]) -> str:
    parents = [os.path.dirname(os.path.abspath(p)) for p in paths]
    return os.path.commonpath(parents) if parents else os.getcwd()


def _tmp_next_to(path: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def _publish(tmp: Path, out: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, out)


def write_cache(
    path: str | os.PathLike,
    items: Iterable[TokenizedFile],
    *,
    settings: TokenizerSettings | None = None,
    class_names: Sequence[str] = (),
    sensor_size: SensorSize | None = None,
    root: str | os.PathLike | None = None,
    append: bool = False,
    overwrite: bool = False,
    compression: str | None = "gzip",
    compression_level: int | None = 4,
    on_bad: Callable[[str], None] | None = None,
) -> tuple[int, int]:
    """Write tokenized files as one cache, atomically (temporary file + rename).

    Args:
        path: the cache file.
        items: tokenized files in the order to store them (:func:`tokenize_file`); an
            exception raised while iterating aborts the write and leaves ``path`` untouched.
        settings: the settings the items were tokenized with.
        class_names: class id -> name (empty for an unlabelled cache).
        sensor_size: the cache's sensor size; ``None`` takes the first item's. Every item must
            have it, unless ``settings.target_size`` is set: then each recording was rescaled
            from its own sensor to the same grid and sensors may differ (each recording's own
            size stays in ``/sources/sensor_size``; the cache's is the first one's).
        root: folder that source paths are stored relative to (default: the first item's
            folder; on append, the cache's root). :func:`build_cache` passes the common parent
            folder of all its files.
        append: add to an existing cache (settings, sensor size and class names must match);
            the cache is copied, extended and renamed over, so a failed append leaves it as
            it was (at the cost of one copy).
        overwrite: replace an existing cache.
        compression, compression_level: HDF5 filter for ``tokens`` and ``dt``, one of
            :data:`COMPRESSIONS` (``"gzip"``: smallest; ``"lzf"``: about twice as fast to
            write, 1.3-1.6x larger; ``None``: no filter, 2-4x larger than gzip), and the
            gzip level (0-9).
        on_bad: when given, an item with another sensor size is passed here as a one-line
            message and skipped instead of raising.

    Returns:
        ``(samples added, sources added)``.

    Raises:
        DatasetError: the output exists (neither append nor overwrite), settings or class names
            differ from the cache being appended to, or nothing to write.
        EventFileError: an item has another sensor size (names the file).
    """
    out = Path(path)
    settings = _coerce_settings(settings)
    mixed = settings.same_grid_for_any_sensor()
    _check_compression(compression, compression_level)
    if append and overwrite:
        raise DatasetError("give either append or overwrite, not both")
    exists = out.exists()
    if exists and not (append or overwrite):
        raise DatasetError(f"{out}: exists; pass overwrite or append")
    if exists and out.is_dir():
        raise DatasetError(f"{out}: is a directory")
    if not out.parent.is_dir():
        raise DatasetError(f"{out.parent}: no such folder for the output")
    append = append and exists
    existing: CacheInfo | None = None
    if append:
        existing = read_cache_info(out)
        _check_settings(out, existing.settings, settings)
        if tuple(existing.class_names) != tuple(class_names):
            raise DatasetError(
                f"{out}: cache classes {list(existing.class_names)} differ from "
                f"{list(class_names)}"
            )
        if sensor_size is not None and tuple(sensor_size) != existing.sensor_size:
            raise DatasetError(
                f"{out}: cache sensor size {_fmt_size(existing.sensor_size)} differs from "
                f"{_fmt_size(sensor_size)}"
            )
        sensor_size = existing.sensor_size
        root = existing.root
    tmp = _tmp_next_to(out)
    try:
        if append:
            shutil.copyfile(out, tmp)
            f = h5py.File(tmp, "r+")
        else:
            f = h5py.File(tmp, "w")
        with f:
            w = _Writer(f, compression, compression_level)
            first_from: str | None = None
            it = iter(items)
            pending: list[TokenizedFile] = []
            if not append:
                # the root and sensor size may come from the first item
                first = next(it, None)
                if first is None:
                    raise DatasetError(f"{out}: no recordings to write")
                pending.append(first)
                if sensor_size is None:
                    sensor_size = first.source.sensor_size
                    first_from = first.source.path
                if root is None:
                    root = os.path.dirname(first.source.path)
                sensor_size = tuple(int(v) for v in sensor_size)
                w.create(
                    settings,
                    sensor_size,
                    settings.grid_size(sensor_size),
                    settings.vocab_size(sensor_size),
                    class_names,
                    os.path.abspath(root),
                )
            else:
                w.begin()
            root_s = str(f.attrs["root"])
            known = set()
            if existing is not None:
                known = {existing.source_path(i) for i in range(len(existing.sources))}
            for item in _chain(pending, it):
                s = item.source
                if tuple(s.sensor_size) != tuple(sensor_size) and not mixed:
                    ref = f" of {first_from}" if first_from else ""
                    err = EventFileError(
                        s.path,
                        f"sensor size {_fmt_size(s.sensor_size)} differs from "
                        f"{_fmt_size(sensor_size)}{ref}; give one sensor size for all "
                        "(--sensor-size)",
                    )
                    if on_bad is None:
                        raise err
                    on_bad(str(err))
                    continue
                if os.path.normpath(s.path) in known:
                    raise DatasetError(f"{s.path}: already in {out}")
                known.add(os.path.normpath(s.path))
                w.add(item, _relpath(s.path, root_s))
            w.flush()
            if not append and w.n_samples_added == 0:
                raise DatasetError(f"{out}: no samples to write (every recording was skipped)")
            added = (w.n_samples_added, w.n_sources_added)
        _publish(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s: %d samples from %d recordings", out, *added)
    return added


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest


def _fmt_size(s) -> str:
    return "x".join(str(int(v)) for v in s)


# --------------------------------------------------------------------------------------------
# building a cache from files (parallel, ordered)


def _work(job) -> tuple[TokenizedFile | None, str | None]:
    """Worker: tokenize one file; errors come back as one-line strings (pickle-safe)."""
    path, label, settings, sensor_size, fmt = job
    try:
        return tokenize_file(path, label=label, settings=settings, sensor_size=sensor_size,
                             format=fmt), None
    except EventFileError as exc:
        return None, str(exc)
    except MemoryError:
        return None, f"{path}: not enough memory to tokenize"
    except Exception as exc:  # a reader or tokenizer bug on odd input: one line, logged fully
        log.debug("tokenizing %s failed", path, exc_info=True)
        return None, f"{path}: {type(exc).__name__}: {exc}"


def _worker_init() -> None:
    # Ctrl-C goes to the whole process group; only the parent handles it (then cancels).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _mp_context():
    # fork is fast, but not once JAX (multithreaded) is loaded in this process
    if sys.platform.startswith("linux") and "jax" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _ordered_map(jobs: list, workers: int) -> Iterator[tuple[Any, tuple]]:
    """Yield ``(job, _work(job))`` in job order, at most ``2 * workers`` jobs in flight."""
    if workers <= 1 or len(jobs) <= 1:
        for j in jobs:
            yield j, _work(j)
        return
    ex = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=_mp_context(), initializer=_worker_init
    )
    pending: deque = deque()
    it = iter(jobs)
    try:
        for j in islice(it, 2 * workers):
            pending.append((j, ex.submit(_work, j)))
        while pending:
            j, fut = pending.popleft()
            try:
                res = fut.result()
            except BrokenProcessPool:
                raise DatasetError(
                    f"{j[0]}: a worker process died while reading it (out of memory?)"
                ) from None
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, ex.submit(_work, nxt)))
            yield j, res
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


@dataclass
class BuildReport:
    """What :func:`build_cache` did.

    Attributes:
        path: the cache; samples_added / sources_added: new samples / recordings;
        unchanged: files skipped because the cache already holds them (append);
        bad: one-line errors of files skipped with ``skip_bad``.
    """

    path: Path
    samples_added: int = 0
    sources_added: int = 0
    unchanged: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


def build_cache(
    path: str | os.PathLike,
    files: Sequence[str | os.PathLike],
    labels: Sequence[str] | None = None,
    *,
    settings: TokenizerSettings | None = None,
    class_names: Sequence[str] | None = None,
    sensor_size: SensorSize | None = None,
    format: str | None = None,
    workers: int = 1,
    skip_bad: bool = False,
    overwrite: bool = False,
    append: bool = False,
    compression: str | None = "gzip",
    progress: Callable[[int], None] | None = None,
) -> BuildReport:
    """Read, tokenize and write many recordings as one cache (see the module docstring).

    Files are decoded in ``workers`` processes (1: in this process); results are written in
    input order, so the cache does not depend on ``workers``.

    Args:
        path: output cache.
        files: recordings (e.g. from :func:`find_recordings`).
        labels: class name per file, or ``None`` for an unlabelled cache (labels -1).
        settings: tokenizer settings.
        class_names: fixed class list (ids in this order); default: sorted distinct labels,
            or the existing cache's classes on append.
        sensor_size: ``(width, height, polarities)`` for every file (overrides headers);
            without it every file must report the same size.
        format: reader name to skip format detection.
        workers: processes decoding files.
        skip_bad: skip unreadable files (and files of another sensor size), listing them in
            the report, instead of failing.
        overwrite, append: what to do with an existing output (see :func:`write_cache`);
            with ``append``, files already cached with the same size and mtime are skipped and
            a cached file that changed is an error.
        compression: filter of the tokens and dt of a new cache (see :func:`write_cache`; an
            appended cache keeps its own).
        progress: called with 1 after each file.

    Raises:
        DatasetError: labels, classes, settings or output problems (one line).
        EventFileError: an unreadable file (without ``skip_bad``).
    """
    out = Path(path)
    settings = _coerce_settings(settings)
    _check_compression(compression)
    files = [os.path.abspath(os.fspath(f)) for f in files]
    if not files:
        raise DatasetError("no input recordings")
    if labels is not None and len(labels) != len(files):
        raise DatasetError(f"{len(labels)} labels for {len(files)} files")
    if sensor_size is not None:
        sensor_size = tuple(int(v) for v in sensor_size)
    if out.exists() and not (append or overwrite):
        raise DatasetError(f"{out}: exists; pass overwrite or append")
    report = BuildReport(out)
    existing = read_cache_info(out) if (append and out.exists()) else None
    if existing is not None:
        _check_settings(out, existing.settings, settings)
        if (labels is None) != (not existing.class_names):
            have = "labelled" if existing.class_names else "unlabelled"
            raise DatasetError(f"{out}: cache is {have}; appended files must be too")
        if class_names is not None and tuple(class_names) != existing.class_names:
            raise DatasetError(
                f"{out}: cache classes {list(existing.class_names)} differ from "
                f"{list(class_names)}"
            )
        class_names = existing.class_names if existing.class_names else None
        if sensor_size is not None and sensor_size != existing.sensor_size:
            raise DatasetError(
                f"{out}: cache sensor size {_fmt_size(existing.sensor_size)} differs from "
                f"{_fmt_size(sensor_size)}"
            )
        cached = {existing.source_path(i): s for i, s in enumerate(existing.sources)}
        keep = []
        for k, fpath in enumerate(files):
            s = cached.get(os.path.normpath(fpath))
            if s is None:
                keep.append(k)
                continue
            st = os.stat(fpath)
            if st.st_size != s.size or st.st_mtime_ns != s.mtime_ns:
                raise DatasetError(
                    f"{fpath}: changed since it was cached in {out} (size or mtime differ); "
                    "rebuild with --overwrite"
                )
            report.unchanged.append(fpath)
            if progress is not None:
                progress(1)
        files = [files[k] for k in keep]
        if labels is not None:
            labels = [labels[k] for k in keep]
    if labels is not None:
        ids, names = class_ids(labels, files, class_names)
    else:
        ids, names = np.full(len(files), -1, np.int32), ()
    if existing is not None and not files:
        log.info("%s: nothing new to append", out)
        return report
    if existing is not None:
        names = existing.class_names

    jobs = [(f, int(i), settings, sensor_size, format) for f, i in zip(files, ids)]

    def items() -> Iterator[TokenizedFile]:
        results = _ordered_map(jobs, workers)
        try:
            for _job, (item, err) in results:
                if progress is not None:
                    progress(1)
                if err is not None:
                    if not skip_bad:
                        raise _OneLineError(err)
                    log.info("skipped %s", err)  # the caller reports report.bad
                    report.bad.append(err)
                    continue
                yield item
        finally:
            results.close()  # stops the worker pool now, also on errors and Ctrl-C

    stream = items()
    try:
        added = write_cache(
            out,
            stream,
            settings=settings,
            class_names=names,
            sensor_size=sensor_size,
            root=None if existing is not None else _common_root(files),
            append=existing is not None,
            overwrite=overwrite,
            compression=compression,
            on_bad=report.bad.append if skip_bad else None,
        )
    except _OneLineError as exc:
        raise EventFileError(None, str(exc)) from None
    finally:
        stream.close()
    report.samples_added, report.sources_added = added
    return report


class _OneLineError(Exception):
    """Carries a worker's one-line error message out of the item generator."""


# --------------------------------------------------------------------------------------------
# datasets


class TokenDataset:
    """Samples of a token cache: ``ds[i] -> (tokens int32 (L,), dt float32 (L,), label int)``.

    The HDF5 file is opened lazily, once per process (safe across ``fork`` and picklable for
    DataLoader-style workers); :meth:`close` or a ``with`` block releases it.

    Args:
        path: the cache file.
        settings: when given, the cache must have been built with exactly these settings.

    Raises:
        DatasetError: not a cache, or built with other settings.
    """

    def __init__(self, path: str | os.PathLike, *, settings: TokenizerSettings | dict | None = None):
        info = read_cache_info(path)
        if settings is not None:
            _check_settings(info.path, info.settings, _coerce_settings(settings))
        self._init_common(info.path, info)
        self._h5: h5py.File | None = None
        self._pid: int | None = None

    def _init_common(self, path: Path | None, info: CacheInfo) -> None:
        self.path = path
        self._info = info
        self._offsets = info.offsets
        self._labels = info.labels
        self._labels.setflags(write=False)

    # -- construction without a cache ----------------------------------------------------
    @classmethod
    def from_files(
        cls,
        files: Sequence[str | os.PathLike],
        labels: Sequence[str] | None = None,
        settings: TokenizerSettings | dict | None = None,
        *,
        class_names: Sequence[str] | None = None,
        sensor_size: SensorSize | None = None,
        format: str | None = None,
    ) -> TokenDataset:
        """A dataset over recordings directly, without a cache (tokenized on access).

        Every file is read once here to index it (event count and sensor size: needed for
        slicing and for the vocabulary); ``ds[i]`` reads the file again (the last decoded
        recording is kept, so consecutive slices of one file decode it once) and tokenizes
        exactly what a cache built with the same arguments would hold.

        Raises:
            EventFileError: an unreadable file or one of another sensor size.
            DatasetError: label problems.
        """
        return _FileTokenDataset(files, labels, settings, class_names=class_names,
                                 sensor_size=sensor_size, format=format)

    # -- sequence protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._labels)

    def _index(self, i) -> int:
        i = operator.index(i)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        return i

    def _file(self) -> h5py.File:
        pid = os.getpid()
        if self._h5 is None or self._pid != pid:
            # after fork, the parent's handle is abandoned (never closed from the child)
            self._h5 = h5py.File(self.path, "r")
            self._pid = pid
            self._ds = (self._h5["tokens"], self._h5["dt"])
        return self._h5

    def __getitem__(self, i) -> tuple[np.ndarray, np.ndarray, int]:
        i = self._index(i)
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        self._file()
        tok, dt = self._ds
        return tok[a:b], dt[a:b], int(self._labels[i])

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid = None, None

    def __enter__(self) -> TokenDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_h5"], state["_pid"] = None, None
        state.pop("_ds", None)
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, samples={len(self)}, "
            f"classes={len(self.class_names)}, vocab={self.vocab_size})"
        )

    # -- metadata ------------------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        """int32 (K,) class id of every sample (-1 unlabelled), read-only."""
        return self._labels

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._info.class_names

    @property
    def num_classes(self) -> int:
        return len(self._info.class_names)

    @property
    def sensor_size(self) -> tuple[int, int, int]:
        """``(width, height, polarities)`` of the recordings."""
        return self._info.sensor_size

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """Token grid ``(W2, H2, P2)``."""
        return self._info.grid_size

    @property
    def vocab_size(self) -> int:
        return self._info.vocab_size

    @property
    def settings(self) -> TokenizerSettings:
        return self._info.settings

    @property
    def lengths(self) -> np.ndarray:
        """int64 (K,) tokens per sample (for bucketing)."""
        return np.diff(self._offsets)

    @property
    def offsets(self) -> np.ndarray:
        """int64 (K + 1,) sample ``i`` is tokens ``[offsets[i], offsets[i + 1])``."""
        return self._offsets

    @property
    def source_index(self) -> np.ndarray:
        """int32 (K,) row of :attr:`sources` each sample came from."""
        return self._info.source_index

    @property
    def ranges(self) -> np.ndarray:
        """int64 (K, 2) ``[start, stop)`` event range of each sample in its recording."""
        return self._info.ranges

    @property
    def sources(self) -> tuple[SourceInfo, ...]:
        """The input recordings (paths relative to :attr:`root`)."""
        return self._info.sources

    @property
    def root(self) -> str:
        return self._info.root

    def source_path(self, i: int) -> str:
        """Absolute path of the recording sample ``i`` came from."""
        return self._info.source_path(int(self._info.source_index[self._index(i)]))


class _FileTokenDataset(TokenDataset):
    """:meth:`TokenDataset.from_files`: same interface, tokens computed on access."""

    def __init__(self, files, labels, settings, *, class_names, sensor_size, format):
        settings = _coerce_settings(settings)
        paths = [os.path.abspath(os.fspath(f)) for f in files]
        if not paths:
            raise DatasetError("no input recordings")
        if labels is not None:
            if len(labels) != len(paths):
                raise DatasetError(f"{len(labels)} labels for {len(paths)} files")
            ids, names = class_ids(labels, paths, class_names)
        else:
            ids, names = np.full(len(paths), -1, np.int32), ()
        from eventssm.io import read_events

        if sensor_size is not None:
            sensor_size = tuple(int(v) for v in sensor_size)
        self._user_sensor = sensor_size
        self._settings = settings
        sources, ranges, src_idx, lab, lengths = [], [], [], [], []
        common = sensor_size
        for s, p in enumerate(paths):
            st = os.stat(p)
            reader = _reader_name(p, format)
            rec = read_events(p, format=reader, sensor_size=sensor_size)
            size = tuple(int(v) for v in rec.sensor_size)
            if common is None:
                common = size
            elif size != common and not settings.same_grid_for_any_sensor():
                raise EventFileError(
                    p, f"sensor size {_fmt_size(size)} differs from {_fmt_size(common)} of "
                    f"{paths[0]}; give one sensor_size for all"
                )
            if not settings.sort_events:
                t = rec.events["t"]
                if len(t) > 1 and not bool(np.all(t[1:] >= t[:-1])):
                    i = int(np.flatnonzero(t[1:] < t[:-1])[0]) + 1
                    raise EventFileError(
                        p, f"timestamps decrease at event {i}; use sort_events=True"
                    )
            r = _slice_ranges(len(rec.events), settings)
            sources.append(SourceInfo(p, int(st.st_size), int(st.st_mtime_ns), len(rec.events),
                                      size, int(ids[s]), reader))
            ranges.append(r)
            src_idx.append(np.full(len(r), s, np.int32))
            lab.append(np.full(len(r), ids[s], np.int32))
            lengths.append(r[:, 1] - r[:, 0])
            log.debug("indexed %s: %d events, %d samples", p, len(rec.events), len(r))
        lengths_a = np.concatenate(lengths)
        info = CacheInfo(
            path=Path(_common_root(paths)),  # unused: there is no cache file
            settings=settings,
            sensor_size=common,
            grid_size=settings.grid_size(common),
            vocab_size=settings.vocab_size(common),
            class_names=tuple(names),
            root="",  # source paths stay absolute
            sources=tuple(sources),
            offsets=np.concatenate([[0], np.cumsum(lengths_a)]).astype(np.int64),
            labels=np.concatenate(lab),
            source_index=np.concatenate(src_idx),
            ranges=np.concatenate(ranges).reshape(-1, 2),
        )
        self._init_common(None, info)
        self._last: tuple[int, np.ndarray, SensorSize] | None = None

    def _load(self, s: int) -> tuple[np.ndarray, SensorSize]:
        if self._last is not None and self._last[0] == s:
            return self._last[1], self._last[2]
        from eventssm.io import read_events

        src = self._info.sources[s]
        st = os.stat(src.path)
        if st.st_size != src.size or st.st_mtime_ns != src.mtime_ns:
            raise DatasetError(f"{src.path}: changed since the dataset was indexed")
        rec = read_events(src.path, format=src.format, sensor_size=self._user_sensor)
        ev = _prepare(rec.events, self._settings, rec.sensor_size)
        self._last = (s, ev, rec.sensor_size)
        return ev, rec.sensor_size

    def __getitem__(self, i) -> tuple[np.ndarray, np.ndarray, int]:
        i = self._index(i)
        s = int(self._info.source_index[i])
        ev, sensor = self._load(s)
        a, b = (int(v) for v in self._info.ranges[i])
        try:
            tokens, dt = _tokenize_range(ev[a:b], sensor, self._settings)
        except EventFileError as exc:
            raise EventFileError(self._info.sources[s].path, exc.message, exc.offset) from None
        return tokens, dt, int(self._labels[i])

    @property
    def lengths(self) -> np.ndarray:
        """int64 (K,) tokens per sample (= events per sample: one token per event)."""
        return np.diff(self._offsets)

    def source_path(self, i: int) -> str:
        return self._info.sources[int(self._info.source_index[self._index(i)])].path

    def close(self) -> None:
        """Drop the last decoded recording."""
        self._last = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_last"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"TokenDataset.from_files(samples={len(self)}, sources={len(self.sources)}, "
            f"classes={len(self.class_names)}, vocab={self.vocab_size})"
        )

"""Writing a token cache: tokenized files appended to one HDF5 file, atomically.

The cache is written to a temporary file next to the output and renamed at the end
(:func:`eventssm.outputs.atomic_output`), so an interrupted run leaves no half cache and an
existing output untouched; an append copies the cache first. Never imports JAX; logs, never
prints.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np

from eventssm.events import EventFileError, SensorSize
from eventssm.outputs import atomic_output
from eventssm.tokenizers.cache.format import (
    CHUNK,
    FORMAT_NAME,
    FORMAT_VERSION,
    STR,
    CacheInfo,
    check_compression,
    read_cache_info,
)
from eventssm.tokenizers.inputs import is_token_cache
from eventssm.tokenizers.recordings import TokenizedFile
from eventssm.tokenizers.settings import (
    DatasetError,
    TokenizerSettings,
    check_settings,
    coerce_settings,
)

log = logging.getLogger(__name__)

__all__ = ["check_append", "write_cache"]

_FLUSH = 1 << 22  # buffered tokens before a write to the HDF5 file
_FLUSH_SOURCES = 4096  # buffered recordings before a write


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
        "tokens": (np.int32, (), CHUNK, True),
        "dt": (np.float32, (), CHUNK, True),
        "offsets": (np.int64, (), 4096, False),
        "labels": (np.int32, (), 4096, False),
        "source_index": (np.int32, (), 4096, False),
        "ranges": (np.int64, (2,), 4096, False),
        "sources/size": (np.int64, (), 1024, False),
        "sources/mtime_ns": (np.int64, (), 1024, False),
        "sources/n_events": (np.int64, (), 1024, False),
        "sources/label": (np.int32, (), 1024, False),
        "sources/path": (STR, (), 1024, False),
        "sources/format": (STR, (), 1024, False),
        "sources/sensor_size": (np.int32, (3,), 1024, False),
    }

    def create(self, settings, sensor_size, class_names, root) -> None:
        """Start a new cache: its attributes now, its datasets at the first :meth:`flush`
        (created with their first rows: about half the cost of creating them empty and
        growing them, which is most of the time of a small cache)."""
        f = self.f
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["settings"] = settings.to_json()
        f.attrs["sensor_size"] = np.asarray(sensor_size, dtype=np.int64)
        f.attrs["grid_size"] = np.asarray(settings.grid_size(sensor_size), dtype=np.int64)
        f.attrs["vocab_size"] = int(settings.vocab_size(sensor_size))
        f.attrs["root"] = str(root)
        from eventssm import __version__

        f.attrs["eventssm_version"] = __version__
        f.create_dataset("class_names", data=np.array(list(class_names), dtype=object), dtype=STR)
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
    """``path`` relative to ``root``, with forward slashes (as stored in /sources/path)."""
    return Path(os.path.relpath(path, root)).as_posix()


def common_root(paths: Sequence[str]) -> str:
    """The deepest folder holding every one of ``paths`` (the working folder when empty)."""
    parents = [os.path.dirname(os.path.abspath(p)) for p in paths]
    return os.path.commonpath(parents) if parents else os.getcwd()


def check_append(
    out: Path,
    existing: CacheInfo,
    settings: TokenizerSettings,
    *,
    labelled: bool | None = None,
    class_names: Sequence[str] | None = None,
    sensor_size: SensorSize | None = None,
) -> None:
    """The rules of adding to the cache ``out`` (whose metadata is ``existing``).

    Raises DatasetError (one line) when the tokenizer settings differ, when ``labelled`` is
    given and the cache is not (or is), and when ``class_names`` or ``sensor_size``, when
    given, differ from the cache's.
    """
    check_settings(out, existing.settings, settings)
    if labelled is not None and labelled != bool(existing.class_names):
        have = "labelled" if existing.class_names else "unlabelled"
        raise DatasetError(f"{out}: cache is {have}; appended files must be too")
    if class_names is not None and tuple(class_names) != tuple(existing.class_names):
        raise DatasetError(
            f"{out}: cache classes {list(existing.class_names)} differ from {list(class_names)}"
        )
    if sensor_size is not None and tuple(sensor_size) != existing.sensor_size:
        raise DatasetError(
            f"{out}: cache sensor size {fmt_size(existing.sensor_size)} differs from "
            f"{fmt_size(sensor_size)}"
        )


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
    settings = coerce_settings(settings)
    check_compression(compression, compression_level)
    exists = _check_target(out, append, overwrite)
    append = append and exists
    existing: CacheInfo | None = None
    if append:
        existing = read_cache_info(out)
        check_append(out, existing, settings, class_names=class_names, sensor_size=sensor_size)
        sensor_size = existing.sensor_size
        root = existing.root
    with atomic_output(out) as tmp:  # removed on any error or interrupt; renamed at the end
        if append:
            shutil.copyfile(out, tmp)
            f = h5py.File(tmp, "r+")
        else:
            f = h5py.File(tmp, "w")
        with f:
            w = _Writer(f, compression, compression_level)
            it, sensor_size, first_from = _start(w, out, items, append, settings, sensor_size,
                                                 class_names, root)
            known = set()
            if existing is not None:
                known = {existing.source_path(i) for i in range(len(existing.sources))}
            _add_items(w, it, out, tuple(sensor_size), known, first_from, on_bad,
                       mixed=settings.same_grid_for_any_sensor())
            if not append and w.n_samples_added == 0:
                raise DatasetError(f"{out}: no samples to write (every recording was skipped)")
            added = (w.n_samples_added, w.n_sources_added)
    log.info("wrote %s: %d samples from %d recordings", out, *added)
    return added


def _start(w: _Writer, out: Path, items: Iterable[TokenizedFile], append: bool,
           settings: TokenizerSettings, sensor_size, class_names, root):
    """Begin writing: on append, go on after the cache's rows; else create the cache, whose
    root and sensor size may come from the first item.

    Returns ``(every item to add, the cache's sensor size, the file it came from or None)``.
    """
    it = iter(items)
    if append:
        w.begin()
        return it, sensor_size, None
    first = next(it, None)
    if first is None:
        raise DatasetError(f"{out}: no recordings to write")
    first_from = None
    if sensor_size is None:
        sensor_size = first.source.sensor_size
        first_from = first.source.path
    sensor_size = tuple(int(v) for v in sensor_size)
    root = os.path.dirname(first.source.path) if root is None else root
    w.create(settings, sensor_size, class_names, os.path.abspath(root))
    return _chain([first], it), sensor_size, first_from


def _check_target(out: Path, append: bool, overwrite: bool) -> bool:
    """Whether the output ``out`` exists; DatasetError when it may not be written as asked."""
    if append and overwrite:
        raise DatasetError("give either append or overwrite, not both")
    exists = out.exists()
    if exists and not (append or overwrite):
        raise DatasetError(f"{out}: exists; pass overwrite or append")
    if exists and out.is_dir():
        raise DatasetError(f"{out}: is a directory")
    if exists and not is_token_cache(out):
        raise DatasetError(f"{out}: exists and is not an eventssm token cache; only a cache is replaced")
    if not out.parent.is_dir():
        raise DatasetError(f"{out.parent}: no such folder for the output")
    return exists


def _add_items(
    w: _Writer,
    items: Iterator[TokenizedFile],
    out: Path,
    sensor_size: tuple[int, ...],
    known: set[str],
    first_from: str | None,
    on_bad: Callable[[str], None] | None,
    *,
    mixed: bool = False,
) -> None:
    """Add every item of the cache's sensor size (any size when ``mixed``) to ``w`` and flush;
    one of another size raises (or goes to ``on_bad``); a source already in the cache
    (``known`` paths) raises."""
    root_s = str(w.f.attrs["root"])
    for item in items:
        s = item.source
        if tuple(s.sensor_size) != sensor_size and not mixed:
            ref = f" of {first_from}" if first_from else ""
            err = EventFileError(
                s.path,
                f"sensor size {fmt_size(s.sensor_size)} differs from "
                f"{fmt_size(sensor_size)}{ref}; give one sensor size for all "
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


def _chain(first: list, rest: Iterator) -> Iterator:
    yield from first
    yield from rest


def fmt_size(s) -> str:
    """``(w, h, p)`` as ``"wxhxp"``."""
    return "x".join(str(int(v)) for v in s)

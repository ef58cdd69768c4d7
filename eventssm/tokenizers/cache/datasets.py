"""Datasets of token samples: over a cache (:class:`TokenDataset`) or over recordings directly
(:meth:`TokenDataset.from_files`), both a :class:`TokenSamples`.

Never imports JAX; logs, never prints.
"""

from __future__ import annotations

import logging
import operator
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import h5py
import numpy as np

from eventssm.events import EventFileError, SensorSize
from eventssm.tokenizers.cache.format import CacheInfo, read_cache_info
from eventssm.tokenizers.cache.writer import common_root, fmt_size
from eventssm.tokenizers.inputs import class_ids
from eventssm.tokenizers.recordings import (
    SourceInfo,
    prepare_events,
    reader_name,
    slice_ranges,
    tokenize_range,
)
from eventssm.tokenizers.settings import (
    DatasetError,
    TokenizerSettings,
    check_settings,
    coerce_settings,
)

log = logging.getLogger(__name__)

__all__ = ["FileTokenDataset", "TokenDataset", "TokenSamples"]


@runtime_checkable
class TokenSamples(Protocol):
    """What training, evaluation and the CLI use of a dataset of token samples.

    ``ds[i] -> (tokens int32 (L,), dt float32 (L,), label int)``, plus the metadata of
    :class:`~eventssm.tokenizers.cache.format.CacheInfo`. :class:`TokenDataset` (a cache) and
    :class:`FileTokenDataset` (recordings, tokenized on access) both are one.
    """

    settings: TokenizerSettings
    labels: np.ndarray
    class_names: tuple[str, ...]
    sensor_size: tuple[int, int, int]
    grid_size: tuple[int, int, int]
    vocab_size: int
    lengths: np.ndarray
    sources: tuple[SourceInfo, ...]

    def __len__(self) -> int: ...

    def __getitem__(self, i) -> tuple[np.ndarray, np.ndarray, int]: ...

    def source_path(self, i: int) -> str: ...

    def close(self) -> None: ...


class _IndexedSamples:
    """Metadata and indexing from a :class:`CacheInfo` (``self._info``), shared by both datasets."""

    _info: CacheInfo

    def _init_common(self, path: Path | None, info: CacheInfo) -> None:
        self.path = path
        self._info = info
        self._offsets = info.offsets
        self._labels = info.labels
        self._labels.setflags(write=False)

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

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        for i in range(len(self)):
            yield self[i]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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
        """int64 (K,) tokens per sample (for bucketing; in a FileTokenDataset = events)."""
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


class TokenDataset(_IndexedSamples):
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
            check_settings(info.path, info.settings, coerce_settings(settings))
        self._init_common(info.path, info)
        self._h5: h5py.File | None = None
        self._pid: int | None = None

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
        return FileTokenDataset(files, labels, settings, class_names=class_names,
                                 sensor_size=sensor_size, format=format)

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

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid = None, None

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

    def source_path(self, i: int) -> str:
        """Absolute path of the recording sample ``i`` came from."""
        return self._info.source_path(int(self._info.source_index[self._index(i)]))


class FileTokenDataset(_IndexedSamples):
    """:meth:`TokenDataset.from_files`: same interface, tokens computed on access."""

    def __init__(self, files, labels, settings, *, class_names, sensor_size, format):
        settings = coerce_settings(settings)
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
            reader = reader_name(p, format)
            rec = read_events(p, format=reader, sensor_size=sensor_size)
            size = tuple(int(v) for v in rec.sensor_size)
            if common is None:
                common = size
            elif size != common and not settings.same_grid_for_any_sensor():
                raise EventFileError(
                    p, f"sensor size {fmt_size(size)} differs from {fmt_size(common)} of "
                    f"{paths[0]}; give one sensor_size for all"
                )
            if not settings.sort_events:
                t = rec.events["t"]
                if len(t) > 1 and not bool(np.all(t[1:] >= t[:-1])):
                    i = int(np.flatnonzero(t[1:] < t[:-1])[0]) + 1
                    raise EventFileError(
                        p, f"timestamps decrease at event {i}; use sort_events=True"
                    )
            r = slice_ranges(len(rec.events), settings)
            sources.append(SourceInfo(p, int(st.st_size), int(st.st_mtime_ns), len(rec.events),
                                      size, int(ids[s]), reader))
            ranges.append(r)
            src_idx.append(np.full(len(r), s, np.int32))
            lab.append(np.full(len(r), ids[s], np.int32))
            lengths.append(r[:, 1] - r[:, 0])
            log.debug("indexed %s: %d events, %d samples", p, len(rec.events), len(r))
        lengths_a = np.concatenate(lengths)
        info = CacheInfo(
            path=Path(common_root(paths)),  # unused: there is no cache file
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
        ev = prepare_events(rec.events, self._settings, rec.sensor_size)
        self._last = (s, ev, rec.sensor_size)
        return ev, rec.sensor_size

    def __getitem__(self, i) -> tuple[np.ndarray, np.ndarray, int]:
        i = self._index(i)
        s = int(self._info.source_index[i])
        ev, sensor = self._load(s)
        a, b = (int(v) for v in self._info.ranges[i])
        try:
            tokens, dt = tokenize_range(ev[a:b], sensor, self._settings)
        except EventFileError as exc:
            raise EventFileError(self._info.sources[s].path, exc.message, exc.offset) from None
        return tokens, dt, int(self._labels[i])

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

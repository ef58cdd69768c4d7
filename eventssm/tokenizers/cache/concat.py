"""Several token caches as one dataset (e.g. the N shards of ``preprocess --shard I/N``).

:class:`ConcatTokenDataset` is a :class:`~eventssm.tokenizers.cache.datasets.TokenSamples`:
sample ``i`` of the union is sample ``i - start_k`` of cache ``k``, where ``start_k`` is the
number of samples in the caches before it, so the caches' order is the samples' order. Sources
(recordings) are numbered the same way: cache ``k``'s source ``s`` is source ``S_k + s`` of the
union (``S_k``: sources in the caches before it). The N shards of one build, in shard order,
therefore give the samples, labels, ``source_index`` and lengths of the one-cache build, and
everything computed from them (the train/validation split by recording, balanced sampling,
evaluation by recording) is the same.

The caches must agree on everything that defines a token and a class: tokenizer settings, sensor
size, token grid, vocabulary and class names; no file may be given twice and no recording may
appear in two caches (its samples would fall on both sides of a train/validation split).

:func:`expand_cache_paths` turns command-line arguments (files and quoted glob patterns) into
the list of caches; :func:`open_caches` opens one or several. Never imports JAX; logs, never
prints.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eventssm.tokenizers.cache.datasets import TokenDataset, _IndexedSamples
from eventssm.tokenizers.cache.format import CacheInfo
from eventssm.tokenizers.settings import DatasetError

log = logging.getLogger(__name__)

__all__ = ["ConcatTokenDataset", "expand_cache_paths", "open_caches"]

_GLOB_CHARS = re.compile(r"[*?\[]")


def _natural_key(path: str) -> list:
    """Sort key that orders ``shard-2.h5`` before ``shard-10.h5`` (digit runs compared as numbers)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path)]


def expand_cache_paths(args: Sequence[str | os.PathLike]) -> list[Path]:
    """Command-line cache arguments -> cache files, in order.

    An argument naming an existing file is kept as it is. Otherwise, one holding ``*``, ``?``
    or ``[`` is a glob pattern (quoted, so that the shell left it alone, or one the shell could
    not match): its matches in natural order (``shard-2`` before ``shard-10``, so the shards of
    ``preprocess --shard I/N`` come in shard order). Anything else is kept and fails later as a
    missing cache.

    Raises:
        DatasetError: a pattern that matches no file.
    """
    paths: list[Path] = []
    for arg in args:
        text = os.fspath(arg)
        if not os.path.exists(text) and _GLOB_CHARS.search(text):
            matches = [m for m in glob.glob(text) if os.path.isfile(m)]
            if not matches:
                raise DatasetError(f"{text}: no cache file matches this pattern")
            paths.extend(Path(m) for m in sorted(matches, key=_natural_key))
        else:
            paths.append(Path(text))
    return paths


def _check_same(first: CacheInfo, other: CacheInfo) -> None:
    """Raise DatasetError (one line naming both files) unless ``other`` makes tokens and classes
    as ``first`` does."""
    where = f"{other.path}: differs from {first.path} in"
    diff = other.settings.differences(first.settings)  # the named file's value first
    if diff:
        raise DatasetError(f"{where} its tokenizer settings ({'; '.join(diff)}); caches used as one "
                           "dataset must be built with the same settings")
    for what, a, b in (("sensor size", first.sensor_size, other.sensor_size),
                       ("token grid", first.grid_size, other.grid_size),
                       ("vocabulary", first.vocab_size, other.vocab_size)):
        if tuple(np.atleast_1d(a)) != tuple(np.atleast_1d(b)):
            raise DatasetError(f"{where} its {what} ({b} != {a})")
    if first.class_names != other.class_names:
        raise DatasetError(f"{where} its class names ({list(other.class_names)} != {list(first.class_names)}); "
                           "build every part with the same class list")


class ConcatTokenDataset(_IndexedSamples):
    """Several token caches as one dataset: ``ds[i] -> (tokens int32 (L,), dt float32 (L,), label)``.

    At most ``max_open`` caches keep their HDF5 file open at a time (the least recently read one
    is closed, and reopened when read again), so thousands of shards stay under the limit of
    open files.

    Args:
        paths: the cache files, in the order their samples take (at least one).
        max_open: caches whose file stays open between reads (>= 1).

    Raises:
        DatasetError: a cache that cannot be read, caches that disagree (settings, sensor
            size, grid, vocabulary, class names), a file given twice, or a recording held by
            two caches.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], *, max_open: int = 64):
        if not paths:
            raise DatasetError("no cache files given")
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self.max_open = int(max_open)
        self._open: dict[int, None] = {}  # caches with an open file, least recently read first
        self.parts = tuple(TokenDataset(p) for p in paths)
        infos = [part._info for part in self.parts]
        seen: dict[Path, Path] = {}
        for info in infos:
            key = info.path.resolve()
            if key in seen:
                raise DatasetError(f"{info.path}: given twice (also as {seen[key]})")
            seen[key] = info.path
            _check_same(infos[0], info)
        self.paths = tuple(info.path for info in infos)
        self._starts = np.cumsum([0] + [len(part) for part in self.parts]).astype(np.int64)
        self._init_common(None, self._union(infos))

    @staticmethod
    def _union(infos: list[CacheInfo]) -> CacheInfo:
        """One CacheInfo over all caches (source paths made absolute: the caches' roots differ)."""
        owner: dict[str, Path] = {}
        sources, offsets, source_index = [], [np.zeros(1, np.int64)], []
        n_sources, n_tokens = 0, 0
        for info in infos:
            for s, src in enumerate(info.sources):
                path = info.source_path(s)
                if path in owner:
                    raise DatasetError(f"{info.path}: recording {path} is also in {owner[path]}; a recording "
                                       "must be in one cache only (else its samples could be both trained "
                                       "on and validated on)")
                owner[path] = info.path
                sources.append(dataclasses.replace(src, path=path))
            offsets.append(info.offsets[1:] + n_tokens)
            source_index.append(info.source_index.astype(np.int64) + n_sources)
            n_sources += len(info.sources)
            n_tokens += int(info.offsets[-1])
        first = infos[0]
        return CacheInfo(
            path=first.path, settings=first.settings, sensor_size=first.sensor_size, grid_size=first.grid_size,
            vocab_size=first.vocab_size, class_names=first.class_names, root="", sources=tuple(sources),
            offsets=np.concatenate(offsets), labels=np.concatenate([i.labels for i in infos]).astype(np.int32),
            source_index=np.concatenate(source_index).astype(np.int32),
            ranges=np.concatenate([i.ranges for i in infos]).reshape(-1, 2))

    def _locate(self, i) -> tuple[int, int]:
        """``(cache k, its sample j)`` of sample ``i`` of the union."""
        i = self._index(i)
        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        return k, i - int(self._starts[k])

    def __getitem__(self, i) -> tuple[np.ndarray, np.ndarray, int]:
        k, j = self._locate(i)
        self._open.pop(k, None)
        self._open[k] = None
        if len(self._open) > self.max_open:
            oldest = next(iter(self._open))
            del self._open[oldest]
            self.parts[oldest].close()
        return self.parts[k][j]

    def source_path(self, i: int) -> str:
        """Absolute path of the recording sample ``i`` came from."""
        k, j = self._locate(i)
        return self.parts[k].source_path(j)

    def close(self) -> None:
        """Close every cache's file handle in this process (reopened on the next access)."""
        for part in self.parts:
            part.close()
        self._open.clear()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"] = {}  # a new process opens its own files
        return state

    def __repr__(self) -> str:
        return (f"ConcatTokenDataset({len(self.parts)} caches, samples={len(self)}, "
                f"classes={len(self.class_names)}, vocab={self.vocab_size})")


def open_caches(paths: Sequence[str | os.PathLike]) -> TokenDataset | ConcatTokenDataset:
    """One cache as a :class:`TokenDataset`, several as a :class:`ConcatTokenDataset`."""
    if len(paths) == 1:
        return TokenDataset(paths[0])
    ds = ConcatTokenDataset(paths)
    log.info("%d caches as one dataset: %d samples", len(paths), len(ds))
    return ds

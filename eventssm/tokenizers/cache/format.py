"""The token cache file: its layout, its constants and reading its metadata.

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

The package never imports JAX; it logs, never prints.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from eventssm.tokenizers.recordings import SourceInfo
from eventssm.tokenizers.settings import DatasetError, TokenizerSettings

__all__ = [
    "COMPRESSIONS", "FORMAT_NAME", "FORMAT_VERSION", "CacheInfo", "check_compression",
    "read_cache_info",
]

FORMAT_NAME = "eventssm-token-cache"
FORMAT_VERSION = 1
COMPRESSIONS = ("gzip", "lzf", None)  # HDF5 filters of a cache's tokens and dt

CHUNK = 1 << 15  # elements per HDF5 chunk of tokens / dt (128 KiB)
STR = h5py.string_dtype("utf-8")


def check_compression(compression: str | None, level: int | None = None) -> None:
    """Raise DatasetError unless ``compression`` is one of :data:`COMPRESSIONS` (gzip level 0-9)."""
    if compression not in COMPRESSIONS:
        raise DatasetError(
            f"unknown cache compression {compression!r}; use 'gzip', 'lzf' or None"
        )
    if compression == "gzip" and level is not None and not 0 <= level <= 9:
        raise DatasetError(f"gzip level must be 0-9, got {level}")


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
        DatasetError: missing, not HDF5, a damaged HDF5 file that libhdf5 would loop on
            (:mod:`eventssm.io.hdf5_heaps`), not a token cache, newer format, or inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such cache file")
    from eventssm.io.hdf5_heaps import check_global_heaps

    # a damaged global heap collection (where the string attributes live) sends libhdf5 into
    # an endless loop that holds the GIL: refuse it before h5py opens the file
    try:
        damaged = check_global_heaps(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the cache ({exc.strerror or exc})") from None
    if damaged is not None:
        raise DatasetError(f"{path}: damaged HDF5 file: {damaged}; make the cache again with `eventssm preprocess`")
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

"""Token caches: many recordings -> one HDF5 file of token streams, and datasets over them.

- :mod:`.format`: the file layout, :data:`FORMAT_VERSION`, :func:`read_cache_info`;
- :mod:`.writer`: :func:`write_cache` (atomic; append and overwrite rules in :func:`check_append`);
- :mod:`.build`: :func:`build_cache`, files decoded in worker processes, written in order;
- :mod:`.datasets`: :class:`TokenDataset` over a cache, :class:`FileTokenDataset` over
  recordings, both a :class:`TokenSamples`;
- :mod:`.concat`: :class:`ConcatTokenDataset`, several caches (e.g. shards) as one dataset,
  :func:`open_caches`, :func:`expand_cache_paths` (glob patterns).

A cache is never silently reused with other tokenizer settings: :class:`TokenDataset` with
``settings=`` and :func:`build_cache` with ``append=True`` raise
:class:`~eventssm.tokenizers.settings.DatasetError` when the stored settings differ.
This package never imports JAX; it logs, never prints.
"""

from eventssm.tokenizers.cache.build import BuildReport, build_cache
from eventssm.tokenizers.cache.concat import ConcatTokenDataset, expand_cache_paths, open_caches
from eventssm.tokenizers.cache.datasets import FileTokenDataset, TokenDataset, TokenSamples
from eventssm.tokenizers.cache.format import (
    COMPRESSIONS,
    FORMAT_NAME,
    FORMAT_VERSION,
    CacheInfo,
    read_cache_info,
)
from eventssm.tokenizers.cache.writer import write_cache

__all__ = [
    "COMPRESSIONS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "BuildReport",
    "CacheInfo",
    "ConcatTokenDataset",
    "FileTokenDataset",
    "TokenDataset",
    "TokenSamples",
    "build_cache",
    "expand_cache_paths",
    "open_caches",
    "read_cache_info",
    "write_cache",
]

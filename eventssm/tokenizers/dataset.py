"""Compatibility module: the token-cache API under its former single-module name.

The code lives in :mod:`eventssm.tokenizers.settings` (:class:`TokenizerSettings`,
:class:`DatasetError`), :mod:`eventssm.tokenizers.recordings` (tokenizing one recording),
:mod:`eventssm.tokenizers.inputs` (finding recordings, labels) and the
:mod:`eventssm.tokenizers.cache` package (format, writer, build, datasets); every public name
is importable from here as before.
"""

from eventssm.tokenizers.cache import (
    COMPRESSIONS,
    FORMAT_NAME,
    FORMAT_VERSION,
    BuildReport,
    CacheInfo,
    FileTokenDataset,
    TokenDataset,
    TokenSamples,
    build_cache,
    read_cache_info,
    write_cache,
)
from eventssm.tokenizers.inputs import (
    class_ids,
    find_recordings,
    is_event_text,
    is_token_cache,
    labels_from_csv,
    labels_from_folder,
    labels_from_name,
)
from eventssm.tokenizers.recordings import (
    SourceInfo,
    TokenizedFile,
    flip_events,
    tokenize_file,
    tokenize_recording,
)
from eventssm.tokenizers.settings import TIME_UNITS, DatasetError, TokenizerSettings

__all__ = [
    "COMPRESSIONS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "TIME_UNITS",
    "BuildReport",
    "CacheInfo",
    "DatasetError",
    "FileTokenDataset",
    "SourceInfo",
    "TokenDataset",
    "TokenSamples",
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

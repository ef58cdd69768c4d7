"""Events -> token streams: tokenization, slicing, filters, augmentations, batching.

Pure numpy + numba; this package never imports JAX. See :mod:`.functional` for the token
contract ``token = P2 · (x2 · H2 + y2) + p2`` and the downsampling rules.
"""

from __future__ import annotations

from eventssm.tokenizers.batching import DEFAULT_BUCKETS, Batch, bucket_length, pad_batch
from eventssm.tokenizers.cache import ConcatTokenDataset, TokenDataset, build_cache, open_caches, write_cache
from eventssm.tokenizers.functional import (
    as_events,
    denoise_filter,
    detokenize,
    downsample_events,
    grid_size,
    hot_pixel_filter,
    random_crop,
    refractory_filter,
    slice_by_count,
    slice_by_time,
    sort_events,
    tokenize,
    vocab_size,
)
from eventssm.tokenizers.settings import TokenizerSettings
from eventssm.tokenizers.transforms import (
    Compose,
    Downsample,
    DropChunk,
    DropEvent,
    FlipLR,
    Roll,
    Rotate,
    Scale,
    SpatialJitter,
    TimeJitter,
    TimeSkew,
    event_cutmix,
)

__all__ = [
    "DEFAULT_BUCKETS",
    "Batch",
    "Compose",
    "ConcatTokenDataset",
    "Downsample",
    "DropChunk",
    "DropEvent",
    "FlipLR",
    "Roll",
    "Rotate",
    "Scale",
    "SpatialJitter",
    "TimeJitter",
    "TimeSkew",
    "TokenDataset",
    "TokenizerSettings",
    "as_events",
    "bucket_length",
    "build_cache",
    "denoise_filter",
    "detokenize",
    "downsample_events",
    "event_cutmix",
    "grid_size",
    "hot_pixel_filter",
    "open_caches",
    "pad_batch",
    "random_crop",
    "refractory_filter",
    "slice_by_count",
    "slice_by_time",
    "sort_events",
    "tokenize",
    "vocab_size",
    "write_cache",
]

"""How recordings become token streams (:class:`TokenizerSettings`, stored in every cache) and
:class:`DatasetError`, the error of caches, labels and settings.

Never imports JAX; logs, never prints.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eventssm.events import US_PER_UNIT, SensorSize

__all__ = ["TIME_UNITS", "DatasetError", "TokenizerSettings", "check_settings", "coerce_settings"]

TIME_UNITS = tuple(US_PER_UNIT)  # ("us", "ms", "s")


class DatasetError(ValueError):
    """A problem with a token cache, its labels or its settings (one line, names the file)."""


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
        denoise_us: background-activity filter before slicing, or ``None``: an event is kept
            iff one of its 8 neighbour pixels had an event at most this many µs earlier
            (:func:`~eventssm.tokenizers.functional.denoise_filter`, on the recording's own
            sensor, before mirroring and rescaling). Caches written before it read as ``None``.

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
    denoise_us: int | None = None

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
        if self.denoise_us is not None:
            if isinstance(self.denoise_us, bool) or int(self.denoise_us) != self.denoise_us or self.denoise_us < 0:
                raise ValueError(f"denoise_us must be an integer >= 0, got {self.denoise_us!r}")
            object.__setattr__(self, "denoise_us", int(self.denoise_us))
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
    TOKEN_FIELDS = ("downsample", "target_size", "merge_polarity", "time_unit", "flip_x", "flip_y",
                    "denoise_us")

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


def coerce_settings(settings: TokenizerSettings | dict | None) -> TokenizerSettings:
    """``settings`` as TokenizerSettings (None: the defaults; a dict: :meth:`from_dict`)."""
    if settings is None:
        return TokenizerSettings()
    if isinstance(settings, dict):
        return TokenizerSettings.from_dict(settings)
    if not isinstance(settings, TokenizerSettings):
        raise TypeError(f"settings must be TokenizerSettings or dict, got {type(settings).__name__}")
    return settings


def check_settings(path: Path, stored: TokenizerSettings, wanted: TokenizerSettings) -> None:
    """Raise DatasetError naming every field where the cache's ``stored`` settings differ."""
    diff = stored.differences(wanted)
    if diff:
        raise DatasetError(
            f"{path}: cache was built with other tokenizer settings (cached != requested: "
            f"{'; '.join(diff)}); rebuild it with --overwrite"
        )

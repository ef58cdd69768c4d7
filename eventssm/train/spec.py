"""The typed contract of a run: what a checkpoint needs besides its arrays to be used alone.

A :class:`RunSpec` is written into every checkpoint (and as ``RUN/run.json`` for people): the
model's :class:`~eventssm.models.classifier.ClassifierConfig`, the :class:`TrainConfig`, the
cache's :class:`~eventssm.tokenizers.dataset.TokenizerSettings`, sensor size, vocabulary and class
names. ``evaluate`` and ``classify`` read it through :func:`eventssm.train.checkpoint.load_run`
and call :meth:`RunSpec.check_compatible` instead of parsing dicts themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eventssm.models.classifier import ClassifierConfig
from eventssm.tokenizers.dataset import TokenizerSettings
from eventssm.train.config import TrainConfig

#: version of the checkpoint layout (``RunSpec.to_dict()["format"]``); bumped on breaking changes
FORMAT = 1


class CheckpointError(ValueError):
    """A run folder or checkpoint that is missing, damaged, or does not fit the data."""


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to rebuild and use a trained model, without the training cache.

    Attributes:
        model: the classifier's configuration.
        train: the optimisation recipe it was trained with.
        tokenizer: how recordings became tokens (slicing only picked training samples).
        sensor_size: ``(width, height)`` of the cache's sensor.
        vocab_size: token vocabulary of the cache (``2·W·H`` on the token grid).
        class_names: class id -> name.
    """

    model: ClassifierConfig
    train: TrainConfig
    tokenizer: TokenizerSettings
    sensor_size: tuple[int, int]
    vocab_size: int
    class_names: tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "sensor_size", tuple(int(v) for v in self.sensor_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.model.n_classes != len(self.class_names):
            raise CheckpointError(
                f"model has {self.model.n_classes} classes but {len(self.class_names)} class names are given")
        if self.model.vocab_size != self.vocab_size:
            raise CheckpointError(f"model vocabulary {self.model.vocab_size} != tokenizer vocabulary {self.vocab_size}")

    @classmethod
    def for_dataset(cls, dataset, model: ClassifierConfig, train: TrainConfig) -> RunSpec:
        """The spec of ``model`` trained with ``train`` on a TokenDataset."""
        return cls(model=model, train=train, tokenizer=dataset.settings, sensor_size=tuple(dataset.sensor_size),
                   vocab_size=int(dataset.vocab_size), class_names=tuple(dataset.class_names))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.model.to_dict(), "train": json.loads(self.train.to_json()),
                "tokenizer": self.tokenizer.to_dict(), "sensor_size": list(self.sensor_size),
                "vocab_size": self.vocab_size, "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "checkpoint") -> RunSpec:
        """Inverse of :meth:`to_dict`; any missing or invalid field raises :class:`CheckpointError`."""
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"layout version {d.get('format')!r}, this eventssm reads version {FORMAT}")
            return cls(model=ClassifierConfig.from_dict(d["model"]),
                       train=TrainConfig.from_json(json.dumps(d["train"])),
                       tokenizer=TokenizerSettings.from_dict(d["tokenizer"]), sensor_size=tuple(d["sensor_size"]),
                       vocab_size=int(d["vocab_size"]), class_names=tuple(d["class_names"]))
        except CheckpointError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{where}: invalid run description ({type(exc).__name__}: {exc})") from None

    def inference_settings(self) -> TokenizerSettings:
        """The tokenizer settings for whole recordings (the cache's slicing only chose samples)."""
        return TokenizerSettings.from_dict({**self.tokenizer.to_dict(), "slice_events": None, "overlap": 0})

    def check_compatible(self, dataset, *, where: str = "cache", run: str = "the run") -> None:
        """Raise :class:`CheckpointError` (one line naming both) unless ``dataset`` (a TokenDataset)
        tokenizes recordings as this run did and has the same classes in the same order."""
        settings = getattr(dataset, "settings", None)
        if settings is not None and not self.tokenizer.same_tokens(settings):
            diff = "; ".join(d for d in self.tokenizer.differences(settings)
                             if d.split(":")[0] in TokenizerSettings.TOKEN_FIELDS)
            raise CheckpointError(f"{where}: tokenizer settings differ from those {run} was trained with ({diff})")
        vocab = getattr(dataset, "vocab_size", None)
        if vocab is not None and int(vocab) != self.vocab_size:
            raise CheckpointError(f"{where}: vocabulary {vocab} differs from {run}'s {self.vocab_size} "
                                  "(another sensor size or downsampling)")
        names = tuple(getattr(dataset, "class_names", ()) or ())
        if names and names != self.class_names:
            raise CheckpointError(f"{where}: class names {list(names)} differ from {run}'s {list(self.class_names)}")

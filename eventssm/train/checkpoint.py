"""Checkpoints: a folder with ``model.json`` (ClassifierConfig), ``train.json`` (TrainConfig),
``tokenizer.json`` (the cache's tokenizer settings and sensor size), ``params.npz`` (every
parameter by its path) and ``metrics.json``. Written to a temporary folder and renamed, so an
interrupted save never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from eventssm.models.classifier import ClassifierConfig, EventClassifier
from eventssm.outputs import usual_mode


def _key(path) -> str:
    parts = []
    for p in path:
        for attr in ("key", "name", "idx"):
            if hasattr(p, attr):
                parts.append(str(getattr(p, attr)))
                break
        else:
            parts.append(str(p))
    return "/".join(parts)


def _flat(state) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_leaves_with_path(state)
    return {_key(path): np.asarray(leaf) for path, leaf in leaves}


def _replaceable(folder: Path) -> bool:
    """True for an empty folder or one that holds a checkpoint (``model.json``)."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    return (folder / "model.json").is_file() or not any(folder.iterdir())


def save_checkpoint(
    folder: str | os.PathLike,
    model: EventClassifier,
    *,
    train_config=None,
    tokenizer: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (parameters only) and its configs to ``folder`` (replaced atomically).

    An existing checkpoint folder (one holding ``model.json``) or an empty folder is replaced;
    any other existing path raises :class:`CheckpointError` and is left untouched, so a
    mistyped ``folder`` (e.g. ``.``) never deletes user files.
    """
    folder = Path(folder)
    if folder.exists() and not _replaceable(folder):
        raise CheckpointError(
            f"{folder}: exists and is not a checkpoint folder (no model.json); choose another path"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(tmp, usual_mode(folder=True))  # mkdtemp makes 0700; a run folder is 0777 - umask
    try:
        params = nnx.state(model, nnx.Param)
        np.savez(tmp / "params.npz", **_flat(params))
        (tmp / "model.json").write_text(model.config.to_json())
        if train_config is not None:
            (tmp / "train.json").write_text(train_config.to_json())
        if tokenizer is not None:
            (tmp / "tokenizer.json").write_text(json.dumps(tokenizer, indent=2, sort_keys=True))
        if metrics is not None:
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


class CheckpointError(ValueError):
    """A checkpoint folder that is missing files or does not match its model config."""


def load_checkpoint(folder: str | os.PathLike) -> tuple[EventClassifier, dict[str, Any]]:
    """Rebuild the model from ``folder``; returns ``(model, extras)`` with ``tokenizer``,
    ``train`` (TrainConfig JSON dict) and ``metrics`` when present."""
    folder = Path(folder)
    for name in ("model.json", "params.npz"):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: not a checkpoint (missing {name})")
    try:
        config = ClassifierConfig.from_json((folder / "model.json").read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{folder}/model.json: {exc}") from None
    model = EventClassifier(config, rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    with np.load(folder / "params.npz") as stored:
        flat = dict(stored)
    expected = jax.tree_util.tree_leaves_with_path(params)
    missing = [_key(p) for p, _ in expected if _key(p) not in flat]
    if missing or len(flat) != len(expected):
        raise CheckpointError(f"{folder}/params.npz does not match model.json (missing {missing[:3]})")
    new_leaves = []
    for path, leaf in expected:
        value = flat[_key(path)]
        if value.shape != leaf.shape:
            raise CheckpointError(f"{folder}/params.npz: {_key(path)} has shape {value.shape}, expected {leaf.shape}")
        new_leaves.append(jax.numpy.asarray(value, dtype=leaf.dtype))
    nnx.update(model, jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), new_leaves))
    extras: dict[str, Any] = {}
    for name in ("tokenizer", "train", "metrics"):
        f = folder / f"{name}.json"
        if f.is_file():
            extras[name] = json.loads(f.read_text())
    model.eval()
    return model, extras

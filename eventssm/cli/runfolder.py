"""The rules of a RUN folder of ``eventssm train`` (no heavy imports: checked before any work).

* A new or empty folder: a new run.
* An existing run: ``--resume`` continues it, ``--overwrite`` replaces what ``train`` wrote
  there (:data:`RUN_ENTRIES`) and keeps every other file; neither is an error.
* A folder holding other files and no run: an error with either flag (never deleted).
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: what ``eventssm train`` (and ``eventssm plot``) write into a run folder; an older layout's
#: files are listed too, so --overwrite replaces such a folder
RUN_ENTRIES = ("checkpoints", "run.json", "config.toml", "metrics.jsonl", "curves.png", "confusion.png",
               "calibration.json", "model.json", "params.npz", "train.json", "tokenizer.json", "metrics.json")


def is_run_folder(path: Path) -> bool:
    return (path / "checkpoints").is_dir() or (path / "run.json").is_file() or (path / "model.json").is_file()


def check_run_folder(path: Path, *, resume: bool, overwrite: bool) -> str | None:
    """None when ``train -o path`` may go ahead with these flags, else the one-line reason."""
    if resume and overwrite:
        return "--resume and --overwrite exclude each other"
    if path.exists() and not path.is_dir():
        return f"{path}: exists and is not a folder; give a new folder name"
    empty = not path.exists() or not any(path.iterdir())
    if resume:
        if not (path / "checkpoints").is_dir():
            return f"{path}: nothing to resume (no checkpoints/ inside); start it without --resume"
        return None
    if empty:
        return None
    if not is_run_folder(path):
        return (f"{path}: exists and holds files that `eventssm train` did not write; "
                "give a new folder name (nothing was changed)")
    if not overwrite:
        return f"{path}: a run already exists there; continue it with --resume or replace it with --overwrite"
    return None


def clear_run_folder(path: Path) -> None:
    """Remove what a previous run wrote (:data:`RUN_ENTRIES`); other files stay."""
    for name in RUN_ENTRIES:
        p = path / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()

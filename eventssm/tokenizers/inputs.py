"""Which files are recordings, and their class labels (folder, file name pattern or CSV).

Never imports JAX; logs, never prints.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from eventssm.events import COLUMN_ALIASES
from eventssm.io.hdf5 import HDF5_MAGIC
from eventssm.io.hdf5_heaps import damaged_collection
from eventssm.isolate import DEFAULT_TIMEOUT, run_isolated
from eventssm.tokenizers.cache.format import FORMAT_NAME
from eventssm.tokenizers.settings import DatasetError

log = logging.getLogger(__name__)

__all__ = [
    "class_ids", "find_recordings", "is_event_text", "is_token_cache", "labels_from_csv",
    "labels_from_folder", "labels_from_name",
]


def find_recordings(
    inputs: Iterable[str | os.PathLike],
    *,
    format: str | None = None,
    exclude: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """Expand files and folders into recording paths.

    Folders are walked recursively in sorted order, keeping files whose extension a registered
    reader knows (only ``format``'s extensions when given). Skipped inside folders: hidden
    files and folders, token caches (:func:`is_token_cache`, e.g. an earlier output in the same
    folder) and ``.csv`` / ``.txt`` files that do not hold event data (see
    :func:`is_event_text`: a labels CSV or a README beside the recordings). Files named
    explicitly are kept whatever their extension and content. Order: as given, folders
    expanded in place; duplicates (same absolute path) and ``exclude`` paths (e.g. the output
    and the labels CSV; compared after resolving symbolic links) are dropped everywhere.

    Returns:
        absolute paths.

    Raises:
        DatasetError: an input does not exist.
    """
    from eventssm.io import formats

    specs = formats()
    if format is not None:
        if format not in specs:
            raise DatasetError(f"unknown format {format!r}; known: {', '.join(specs)}")
        exts = set(specs[format].extensions)
    else:
        exts = {e for s in specs.values() for e in s.extensions}
    skip = {os.path.realpath(os.fspath(e)) for e in exclude}
    out: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        a = os.path.abspath(p)
        if a not in seen and os.path.realpath(a) not in skip:
            seen.add(a)
            out.append(Path(a))

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.startswith(".") or Path(name).suffix.lower() not in exts:
                        continue
                    fp = Path(dirpath) / name
                    if fp.suffix.lower() in (".h5", ".hdf5") and is_token_cache(fp):
                        log.info("skipping token cache %s", fp)
                        continue
                    if fp.suffix.lower() in _TEXT_EXTENSIONS and not is_event_text(fp):
                        log.info("skipping %s: its first line is not an event header or event", fp)
                        continue
                    add(fp)
        elif p.exists():
            add(p)
        else:
            raise DatasetError(f"{p}: no such file or folder")
    return out


_TEXT_EXTENSIONS = (".csv", ".txt")
_SNIFF_BYTES = 1 << 16


def is_event_text(path: str | os.PathLike) -> bool:
    """Whether a text file looks like event data, judged by its first data line.

    The rule :func:`find_recordings` applies to ``.csv`` / ``.txt`` files found in folders:
    the first line that is neither blank nor a comment (``#``, ``%``), within the first 64 KiB,
    must be either

    * a header naming the columns x, y, t (or ts, timestamp, time) and p (or pol, polarity),
      in any order and case, other columns allowed; or
    * at least four numbers (a headerless event line, e.g. ``t x y p``),

    split on commas, else semicolons, else whitespace, as the csv reader splits them. A labels
    file (``file,label``), prose, a binary file or a file with no data line is not event data.
    Files that pass may still fail to decode later (a bad line further down).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    for raw in head.split(b"\n")[: -1 if len(head) == _SNIFF_BYTES else None]:
        try:
            line = raw.decode("utf-8").lstrip("\ufeff").strip()
        except UnicodeDecodeError:
            return False
        if not line or line.startswith(("#", "%")):
            continue
        delimiter = "," if "," in line else (";" if ";" in line else None)
        fields = [f.strip() for f in line.split(delimiter)]
        numbers = 0
        for f in fields:
            try:
                float(f)
            except ValueError:
                break
            numbers += 1
        if numbers == len(fields):
            return numbers >= 4
        names = {COLUMN_ALIASES.get(f.strip("\"'").lower()) for f in fields}
        return {"x", "y", "t", "p"} <= names
    return False


#: bytes of a file searched for the cache's format name (the writer's root attributes and their
#: global heap come first: about 2 KiB in)
CACHE_HEAD = 1 << 16


def is_token_cache(path: str | os.PathLike, timeout: float | None = DEFAULT_TIMEOUT) -> bool:
    """True when ``path`` is an HDF5 file written by :func:`write_cache`.

    A damaged HDF5 file can send libhdf5 into an endless loop that holds the GIL
    (docs/formats.md, HDF5 limits), so this process never opens ``path`` with h5py. Cheap
    checks of the first :data:`CACHE_HEAD` bytes come first: the HDF5 signature at byte 0
    (where the writer puts it), :data:`FORMAT_NAME` (the attributes' global heap is about
    2 KiB in) and no damaged global heap collection there (:mod:`eventssm.io.hdf5_heaps`).
    Then the ``format`` attribute is read in a worker process
    (:func:`eventssm.isolate.run_isolated`) that is killed after ``timeout`` seconds. A file
    that fails a check, or does not answer in time, is not a cache (logged). The answer is
    kept for the same unchanged file (device, inode, size, modification time).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(CACHE_HEAD)
    except OSError:  # missing, a folder, unreadable
        return False
    if not head.startswith(HDF5_MAGIC) or FORMAT_NAME.encode() not in head:
        return False
    damaged = damaged_collection(head)  # the attributes' heap: one libhdf5 would loop on
    if damaged is not None:
        log.info("%s: taken as not a token cache: damaged HDF5 file: %s", path, damaged)
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)  # the same unchanged file
    if key not in _CHECKED:  # one worker per file, however many callers ask
        [(_, out)] = run_isolated(_cache_format_attr, [os.fspath(path)], workers=1, timeout=timeout)
        if out.error is not None:
            log.info("%s: taken as not a token cache: %s", path, out.error)
        _CHECKED[key] = out.error is None and out.value == FORMAT_NAME
    return _CHECKED[key]


_CHECKED: dict[tuple[int, int, int, int], bool] = {}  # is_token_cache's answers by file identity


def _cache_format_attr(path: str) -> str | None:
    """Worker of :func:`is_token_cache`: the root ``format`` attribute (None if unreadable)."""
    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("format")
    except (OSError, ValueError, TypeError, KeyError, RuntimeError):
        return None
    return value if isinstance(value, str) else None


def labels_from_folder(files: Sequence[str | os.PathLike]) -> list[str]:
    """Class of each file = the name of its parent folder."""
    return [Path(os.path.abspath(f)).parent.name for f in files]


def labels_from_name(files: Sequence[str | os.PathLike], pattern: str) -> list[str]:
    """Class of each file = group 1 of ``pattern`` searched in the file stem.

    Raises:
        DatasetError: the pattern is invalid or has no group, or a stem does not match.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise DatasetError(f"invalid label pattern {pattern!r}: {exc}") from None
    if rx.groups < 1:
        raise DatasetError(f"label pattern {pattern!r} needs one group, e.g. '^([a-z]+)_'")
    out = []
    for f in files:
        stem = Path(f).stem
        m = rx.search(stem)
        if m is None or not m.group(1):
            raise DatasetError(f"{f}: no label: file stem {stem!r} does not match {pattern!r}")
        out.append(m.group(1))
    return out


def labels_from_csv(files: Sequence[str | os.PathLike], csv_path: str | os.PathLike) -> list[str]:
    """Class of each file from a CSV with a header row holding ``file`` and ``label`` columns.

    ``file`` is a path relative to the CSV's folder (or absolute), or a bare file name matched
    by basename when it is unique in the CSV.

    Raises:
        DatasetError: the CSV is unreadable or malformed, or a file has no label.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read labels: {exc}") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "file" not in header or "label" not in header:
        raise DatasetError(f"{csv_path}: expected a header row with columns 'file,label'")
    fi, li = header.index("file"), header.index("label")
    by_path: dict[str, str] = {}
    by_name: dict[str, str | None] = {}
    base = csv_path.parent
    for n, row in enumerate(rows[1:], start=2):
        if len(row) <= max(fi, li):
            raise DatasetError(f"{csv_path}: row {n} has {len(row)} columns, expected 'file,label'")
        name, label = row[fi].strip(), row[li].strip()
        if not name or not label:
            raise DatasetError(f"{csv_path}: row {n} has an empty file or label")
        key = os.path.normpath(os.path.abspath(base / name))
        if by_path.get(key, label) != label:
            raise DatasetError(f"{csv_path}: row {n}: {name} listed twice with different labels")
        by_path[key] = label
        bn = Path(name).name
        by_name[bn] = label if by_name.get(bn, label) == label else None
    out = []
    for f in files:
        key = os.path.normpath(os.path.abspath(f))
        label = by_path.get(key)
        if label is None:
            label = by_name.get(Path(f).name)
        if label is None:
            why = "ambiguous basename" if Path(f).name in by_name else "not listed"
            raise DatasetError(f"{f}: no label in {csv_path} ({why})")
        out.append(label)
    return out


def _class_sort_key(name: str):
    return (0, int(name), "") if re.fullmatch(r"[+-]?\d+", name) else (1, 0, name)


def class_ids(
    labels: Sequence[str],
    files: Sequence[str | os.PathLike] | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map class names to ids.

    Without ``class_names`` the distinct labels are sorted (numerically when all are integers,
    else by string) and numbered from 0; with ``class_names`` their order gives the ids.

    Returns:
        ``(ids int32 (N,), class_names)``.

    Raises:
        DatasetError: a label is not one of ``class_names`` (names the file when given).
    """
    if class_names is None:
        names = tuple(sorted(set(labels), key=_class_sort_key))
    else:
        names = tuple(class_names)
        if len(set(names)) != len(names):
            raise DatasetError(f"class names repeat: {list(names)}")
    index = {c: i for i, c in enumerate(names)}
    ids = np.empty(len(labels), dtype=np.int32)
    for k, lab in enumerate(labels):
        if lab not in index:
            who = f"{files[k]}: " if files is not None else ""
            raise DatasetError(f"{who}unknown class {lab!r}; classes are {', '.join(names)}")
        ids[k] = index[lab]
    return ids, names

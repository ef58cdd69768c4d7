"""Public event datasets by name: their on-disk layouts, published splits and class names.

:func:`list_dataset` turns the folder a download left into :class:`DatasetItem` rows (one per
sample: a file, or a sample inside a file) with their labels; :func:`read_item` reads one
item's events; :func:`build_dataset_cache` writes them into a token cache with
:func:`~eventssm.tokenizers.cache.write_cache`, the writer ``eventssm preprocess`` uses.
Downloading is tonic's job (``docs/datasets/``). The layouts below are those that tonic 1.7
(``tonic/datasets/*.py``: folder and file names, ``classes``, ``sensor_size``) and the original
releases leave; ``ROOT`` may be tonic's ``save_to`` folder or the dataset folder itself.

============  ==============================================================  ===========
name          layout under ROOT (``<split>`` = train or test)                   sensor
============  ==============================================================  ===========
dvsgesture    tonic: ``DVSGesture/ibmGesture{Train,Test}/userNN_<light>/K.npy``  128x128
              (K = class id), or the IBM release: ``DvsGesture/userNN_<light>.aedat``
              (AEDAT 3.1) + ``userNN_<light>_labels.csv`` (``class,startTime_usec,
              endTime_usec``, class 1..11), split by ``trials_to_{train,test}.txt``;
              one sample per CSV row: the events with start <= t < end
nmnist        ``NMNIST/{Train,Test}/D/*.bin`` (D = digit)                          34x34
pokerdvs      ``POKERDVS/pips_{train,test}/{cl,he,di,sp}/*.npy``, (N, 4) columns  35x35
              ``t, x, y, p`` (tonic's ``PokerDVS.dtype``)
ncars         ``n-cars_{train,test}/{background,cars}/*.dat`` (Prophesee .dat;    120x100
              Sironi et al., CVPR 2018)
shd, ssc      ``SHD/shd_{train,test}.h5``, ``SSC/ssc_{train,test,valid}.h5``:      700x1
              ``spikes/times`` (s), ``spikes/units`` (channel 0..699), ``labels``,
              ``extra/keys`` (class names); one sample per spike train, read by
              :func:`eventssm.io.hdf5.read_samples` (x = channel, y = 0, p = 1, sensor
              700x1x1; tokens 2·x + 1, or x with ``merge_polarity``)
============  ==============================================================  ===========

An in-file sample's provenance (``/sources/path`` of the cache) is ``FILE#K``: the K-th spike
train of an HDF5 file, or the K-th row (from 0, header excluded) of an IBM labels CSV.

Never imports JAX; logs, never prints.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eventssm.events import EventFileError, SensorSize, make_events
from eventssm.tokenizers.settings import DatasetError, TokenizerSettings, coerce_settings

log = logging.getLogger(__name__)

__all__ = [
    "DATASETS", "DatasetItem", "build_dataset_cache", "list_dataset", "read_item", "shard_slice",
]

#: tonic's ``DVSGesture.classes``, in id order (the IBM CSV's class k is id k - 1).
GESTURE_CLASSES = (
    "hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
    "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise",
    "arm_roll", "air_drums", "air_guitar", "other_gestures",
)
POKER_CLASSES = ("cl", "he", "di", "sp")  # tonic's PokerDVS.classes (clubs, hearts, ...)
NCARS_CLASSES = ("background", "cars")
N_HEIDELBERG_CLASSES = {"shd": 20, "ssc": 35}  # Cramer et al., IEEE TNNLS 2020

#: sensor size of every dataset (width, height, polarities).
SENSORS: dict[str, SensorSize] = {
    "dvsgesture": (128, 128, 2), "nmnist": (34, 34, 2), "pokerdvs": (35, 35, 2),
    "ncars": (120, 100, 2), "shd": (700, 1, 1), "ssc": (700, 1, 1),
}
DATASETS = tuple(SENSORS)
SPLITS = {"ssc": ("train", "test", "valid")}


@dataclass(frozen=True)
class DatasetItem:
    """One sample of a public dataset.

    Attributes:
        source: provenance: the file, or ``FILE#K`` for the K-th sample inside it.
        file: the file on disk holding the sample (absolute).
        label: class name (one of the dataset's class names).
        split: ``train``, ``test`` (or ``valid`` for SSC).
        part: index of the sample inside ``file`` (None: the whole file).
        window: ``(start, end)`` µs of an IBM gesture (events with start <= t < end).
    """

    source: str
    file: str
    label: str
    split: str
    part: int | None = None
    window: tuple[int, int] | None = None


def _first_dir(root: Path, *candidates: str) -> Path:
    for c in candidates:
        if (root / c).is_dir():
            return root / c
    raise DatasetError(
        f"{root}: no {' or '.join(repr(c) for c in candidates)} folder (see docs/datasets/)"
    )


def _abs(path: Path) -> str:
    """Absolute, normalised, symbolic links kept (the provenance names the user's tree)."""
    return os.path.normpath(os.path.abspath(path))


def _files(folder: Path, ext: str) -> list[Path]:
    """Files ending in ``ext`` under ``folder``, recursively, in sorted path order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        out += [Path(dirpath) / f for f in sorted(filenames)
                if f.lower().endswith(ext) and not f.startswith(".")]
    return out


def _by_class_folder(folder: Path, ext: str, classes: Sequence[str], split: str) -> list[DatasetItem]:
    """One item per file of ``folder/<class>/``, classes in ``classes`` order."""
    items = []
    for name in classes:
        d = folder / name
        if not d.is_dir():
            raise DatasetError(f"{folder}: class folder {name!r} missing")
        items += [DatasetItem(_abs(f), _abs(f), name, split) for f in _files(d, ext)]
    return items


def _gesture_npy(root: Path, split: str) -> list[DatasetItem]:
    base = root / "DVSGesture" if (root / "DVSGesture").is_dir() else root
    folder = _first_dir(base, "ibmGestureTrain" if split == "train" else "ibmGestureTest")
    items = []
    for f in _files(folder, ".npy"):
        k = int(f.stem) if f.stem.isdigit() else -1
        if not 0 <= k < len(GESTURE_CLASSES):
            raise DatasetError(f"{f}: expected a class id 0..10 as the file name")
        p = _abs(f)
        items.append(DatasetItem(p, p, GESTURE_CLASSES[k], split))
    return items


def _ibm_root(root: Path) -> Path | None:
    for c in (root, root / "DvsGesture"):
        if (c / "trials_to_train.txt").is_file():
            return c
    return None


def gesture_windows(csv_path: str | os.PathLike) -> list[tuple[int, int, int]]:
    """``(class id 0..10, start µs, end µs)`` of each row of an IBM ``*_labels.csv``.

    The file has a header row (``class,startTime_usec,endTime_usec``) and one row per gesture
    with class 1..11 (IBM DVS Gesture README).

    Raises:
        DatasetError: a row is malformed, a class is out of range, or end <= start.
    """
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read gesture labels: {exc}") from None
    out = []
    for n, row in enumerate(rows[1:], start=2):
        try:
            c, a, b = (int(v) for v in row[:3])
        except ValueError:
            raise DatasetError(f"{csv_path}: row {n}: expected class,startTime_usec,endTime_usec") from None
        if not 1 <= c <= len(GESTURE_CLASSES) or b <= a:
            raise DatasetError(f"{csv_path}: row {n}: class {c} not in 1..11 or end <= start")
        out.append((c - 1, a, b))
    return out


def _gesture_ibm(base: Path, split: str) -> list[DatasetItem]:
    listing = base / f"trials_to_{split}.txt"
    try:
        names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise DatasetError(f"{listing}: cannot read: {exc.strerror or exc}") from None
    items = []
    for name in names:
        f = Path(_abs(base / name))
        labels = f.with_name(f.stem + "_labels.csv")
        if not f.is_file() or not labels.is_file():
            raise DatasetError(f"{listing}: {name}: the file or its {labels.name} is missing")
        for k, (c, a, b) in enumerate(gesture_windows(labels)):
            items.append(DatasetItem(f"{f}#{k}", str(f), GESTURE_CLASSES[c], split, k, (a, b)))
    return items


def _heidelberg(name: str, root: Path, split: str) -> tuple[list[DatasetItem], tuple[str, ...]]:
    import h5py

    fname = f"{name}_{split}.h5"
    f = next((p for p in (root / name.upper() / fname, root / fname) if p.is_file()), None)
    if f is None:
        raise DatasetError(f"{root}: no {fname} (nor {name.upper()}/{fname}); unzip tonic's download")
    f = Path(_abs(f))
    n_classes = N_HEIDELBERG_CLASSES[name]
    try:
        with h5py.File(f, "r") as h:
            labels = np.asarray(h["labels"][()]).astype(np.int64)
            keys = h["extra/keys"][()] if "extra/keys" in h else None
    except (OSError, KeyError) as exc:
        raise DatasetError(f"{f}: not a {name.upper()} spike file: {exc}") from None
    classes = tuple(str(i) for i in range(n_classes))
    if keys is not None and len(keys) == n_classes:
        classes = tuple(k.decode() if isinstance(k, bytes) else str(k) for k in keys)
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if len(bad):
        raise DatasetError(f"{f}: label {labels[bad[0]]} of sample {bad[0]} not in 0..{n_classes - 1}")
    items = [DatasetItem(f"{f}#{k}", str(f), classes[c], split, k) for k, c in enumerate(labels)]
    return items, classes


def list_dataset(name: str, root: str | os.PathLike, split: str = "train"
                 ) -> tuple[list[DatasetItem], tuple[str, ...]]:
    """The samples of one split of a public dataset, in a fixed order, and its class names.

    Args:
        name: one of :data:`DATASETS`.
        root: tonic's ``save_to`` folder or the dataset's own folder (see the module table).
        split: ``train`` or ``test`` (SSC also ``valid``): the published split.

    Returns:
        ``(items, class_names)``; class ids are positions in ``class_names``.

    Raises:
        DatasetError: unknown name or split, or the layout is not found (one line).
    """
    name = name.lower()
    if name not in SENSORS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if split not in SPLITS.get(name, ("train", "test")):
        raise DatasetError(f"{name} has no split {split!r}")
    root = Path(root)
    if not root.is_dir():
        what = "is a file; give the folder the download left" if root.exists() else "no such folder"
        raise DatasetError(f"{root}: {what}")
    if name == "dvsgesture":
        ibm = _ibm_root(root)
        items = _gesture_ibm(ibm, split) if ibm is not None else _gesture_npy(root, split)
        classes = GESTURE_CLASSES
    elif name == "nmnist":
        base = root / "NMNIST" if (root / "NMNIST").is_dir() else root
        classes = tuple(str(d) for d in range(10))
        items = _by_class_folder(_first_dir(base, split.capitalize()), ".bin", classes, split)
    elif name == "pokerdvs":
        base = root / "POKERDVS" if (root / "POKERDVS").is_dir() else root
        classes = POKER_CLASSES
        items = _by_class_folder(_first_dir(base, f"pips_{split}"), ".npy", classes, split)
    elif name == "ncars":
        classes = NCARS_CLASSES
        items = _by_class_folder(_first_dir(root, f"n-cars_{split}"), ".dat", classes, split)
    else:
        items, classes = _heidelberg(name, root, split)
    if not items:
        raise DatasetError(f"{root}: no {name} samples found for split {split!r}")
    return items, tuple(classes)


def shard_slice(n: int, index: int, count: int) -> slice:
    """Items of shard ``index`` (1..count) of ``n``: the contiguous block
    ``[floor((index-1)·n/count), floor(index·n/count))``; the blocks of shards 1..count, in
    order, are the ``n`` items in order, each exactly once."""
    if not 1 <= index <= count:
        raise DatasetError(f"shard {index}/{count}: need 1 <= I <= N")
    return slice((index - 1) * n // count, index * n // count)


def _heidelberg_events(items: Sequence[DatasetItem]) -> Iterator[np.ndarray]:
    """Events of each SHD/SSC item, in order, from one pass of
    :func:`eventssm.io.hdf5.read_samples` over their file (samples of other shards skipped)."""
    from eventssm.io.hdf5 import read_samples

    by_part = {it.part: k for k, it in enumerate(items)}
    got: dict[int, np.ndarray] = {}
    nxt = 0
    for rec, _ in read_samples(items[0].file, sensor_size=SENSORS["shd"]):
        k = by_part.get(rec.meta["sample"])
        if k is not None:
            got[k] = rec.events
        while nxt in got:
            yield got.pop(nxt)
            nxt += 1
        if nxt == len(items):
            return
    if nxt < len(items):
        raise EventFileError(items[nxt].file, f"has no sample {items[nxt].part}")


def read_item(name: str, item: DatasetItem, cache: dict | None = None) -> np.ndarray:
    """The events (``EVENT_DTYPE``) of one item, on the sensor ``SENSORS[name]``.

    ``cache`` (a dict kept by the caller) holds the last whole AEDAT recording read, so the
    gestures of one IBM file decode it once.

    Raises:
        EventFileError: the file cannot be decoded (names it).
    """
    from eventssm.io import read_events

    sensor = SENSORS[name]
    if name in ("shd", "ssc"):
        return next(_heidelberg_events([item]))
    if name == "pokerdvs":
        try:
            a = np.load(item.file)
        except (OSError, ValueError) as exc:
            raise EventFileError(item.file, f"cannot load: {exc}") from None
        if a.ndim != 2 or a.shape[1] != 4:
            raise EventFileError(item.file, f"array of shape {a.shape}, expected (N, 4) t,x,y,p")
        from eventssm.events import validate_events

        ev = make_events(a[:, 1], a[:, 2], a[:, 0], a[:, 3])
        return validate_events(ev, sensor, path=item.file, allow_empty=True)
    if item.window is None:
        return read_events(item.file, sensor_size=sensor).events
    if cache is None or cache.get("file") != item.file:
        ev = read_events(item.file, sensor_size=sensor).events
        if cache is not None:
            cache.update(file=item.file, events=ev)
    else:
        ev = cache["events"]
    a, b = item.window
    t = ev["t"]
    return ev[(t >= a) & (t < b)]  # a mask, not a search: correct when t is not monotonic


def _tokenized_items(name: str, items: Sequence[DatasetItem], ids: Sequence[int],
                     settings: TokenizerSettings, progress: Callable[[int], None] | None
                     ) -> Iterator:
    from eventssm.tokenizers.recordings import SourceInfo, TokenizedFile, tokenize_recording

    cache: dict = {}
    spikes = _heidelberg_events(items) if name in ("shd", "ssc") else None
    for item, cid in zip(items, ids):
        ev = next(spikes) if spikes is not None else read_item(name, item, cache)
        try:
            tokens, dt, lengths, ranges = tokenize_recording(ev, SENSORS[name], settings)
        except EventFileError as exc:
            raise EventFileError(item.source, exc.message, exc.offset) from None
        st = os.stat(item.file)
        src = SourceInfo(item.source, int(st.st_size), int(st.st_mtime_ns), len(ev),
                         tuple(SENSORS[name]), int(cid), f"{name}-dataset")
        if progress is not None:
            progress(1)
        yield TokenizedFile(src, tokens, dt, lengths, ranges)


def build_dataset_cache(
    out: str | os.PathLike,
    name: str,
    root: str | os.PathLike,
    split: str = "train",
    settings: TokenizerSettings | None = None,
    *,
    shard: tuple[int, int] | None = None,
    overwrite: bool = False,
    compression: str | None = "gzip",
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Write one split of a public dataset (or shard ``(I, N)`` of it) into a token cache.

    Items are read one after another in :func:`list_dataset` order and written by
    :func:`~eventssm.tokenizers.cache.write_cache` (atomic: an interrupted run leaves nothing).
    Every shard stores the dataset's full class list, so shards of one split share class ids.

    Returns:
        ``(samples, sources)`` written.

    Raises:
        DatasetError, EventFileError: layout, label, output or decoding problems (one line).
    """
    from eventssm.tokenizers.cache.writer import write_cache

    settings = coerce_settings(settings)
    items, classes = list_dataset(name, root, split)
    name = name.lower()
    if shard is not None:
        n = len(items)
        items = items[shard_slice(n, *shard)]
        if not items:
            raise DatasetError(f"shard {shard[0]}/{shard[1]} of {n} samples is empty")
    index = {c: i for i, c in enumerate(classes)}
    ids = [index[it.label] for it in items]
    root_dir = os.path.commonpath([os.path.dirname(it.file) for it in items])
    log.info("%s %s: %d samples, %d classes", name, split, len(items), len(classes))
    return write_cache(
        out, _tokenized_items(name, items, ids, settings, progress), settings=settings,
        class_names=classes, sensor_size=SENSORS[name], root=root_dir, overwrite=overwrite,
        compression=compression,
    )

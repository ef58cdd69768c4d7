"""HDF5 event files (format name ``"hdf5"``; magic ``\\x89HDF\\r\\n\\x1a\\n``, ``.h5`` ``.hdf5``).

The HDF5 superblock signature is at byte 0, or at 512, 1024, 2048, ... when the file has a
user block (HDF5 File Format Specification, "Format Signature"). The layout inside is chosen
by inspecting the keys; an unknown layout raises :class:`~eventssm.events.EventFileError`
listing the top-level keys.

(c) eventssm layout, written by :func:`eventssm.io.write_events` (also read: DSEC-style files)
    Group ``events`` with 1-D datasets ``x``, ``y``, ``t``, ``p`` of equal length (written as
    int16, int16, int64 µs, uint8 0/1; any integer or float dtype is read). Group attributes:
    ``sensor_size`` (3 ints), ``meta`` (a JSON object, returned unchanged as
    ``Recording.meta``), ``eventssm_format = "eventssm.events"``, ``eventssm_version = 1``.
    DSEC's event files (Gehrig et al., "DSEC: A Stereo Event Camera Dataset for Driving
    Scenarios", RA-L 2021, data format page) use the same ``events/{x,y,t,p}`` datasets plus a
    root ``t_offset`` (µs) that is added to ``t``; they store no geometry, so the sensor is
    inferred unless given.

(b) Prophesee / Metavision HDF5 event file
    Compound dataset ``CD/events`` with fields ``x`` u16, ``y`` u16, ``p`` i16, ``t`` i64 µs
    and root attribute ``geometry = "WIDTHxHEIGHT"`` (Prophesee docs, "HDF5 Event File
    Format"; field layout as in Prophesee's ECF writer). Metavision compresses the dataset
    with its ECF codec, HDF5 filter 0x8ECF: without that plugin installed the reader raises an
    EventFileError saying so. A root-level compound ``events`` dataset with the same fields is
    read the same way (``width``/``height`` attributes are used when present). ``p > 0`` is ON.

(a) Heidelberg spiking data sets, SHD and SSC (Cramer et al., "The Heidelberg Spiking Data
    Sets for the Systematic Evaluation of Spiking Neural Networks", IEEE TNNLS 2020; data set
    README): ``spikes/times`` (float seconds) and ``spikes/units`` (channel ids), each a
    variable-length dataset with one array per sample, ``labels`` (one int per sample) and
    ``extra/...``. Events: ``x = unit``, ``y = 0``, ``p = True`` (tonic's ``HSD`` adds the same
    artificial polarity of 1, ``tonic/datasets/hsd.py``), ``t_us = round(times * 1e6)``.
    Sensor ``(700, 1, 1)`` (700 cochlea channels) when every unit is below 700, else
    ``(max unit + 1, 1, 1)``. :func:`read_events` accepts such a file only when it holds a
    single sample (or plain 1-D ``times``/``units``); a file of many samples raises and
    points to :func:`read_samples`, which yields ``(Recording, label)`` per sample.

Safety: dataset sizes are checked against the file size before reading (contiguous data must
fit in the file; chunked data may be compressed, up to :data:`MAX_COMPRESSION_RATIO`), and
streaming reads slice the datasets, holding O(chunk) memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, SensorSize, validate_events
from eventssm.io._base import FormatSpec, register
from eventssm.io.arrays import (
    check_sensor_size,
    events_from_columns,
    parse_meta_json,
    resolve_sensor_size,
    structured_fields,
)
from eventssm.io.hdf5_heaps import check_global_heaps, check_vlen_descriptors
from eventssm.io.writers import EVENTSSM_VERSION

#: the ``format`` attribute of a token cache (eventssm.tokenizers.cache.format.FORMAT_NAME; the
#: readers do not import the tokenizers): such a file is recognised and named, not read
TOKEN_CACHE_FORMAT = "eventssm-token-cache"

log = logging.getLogger(__name__)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Filter id Prophesee registered for its ECF codec (Prophesee docs, HDF5 event file format).
ECF_FILTER = 0x8ECF
#: Largest decompressed/file size ratio accepted for chunked (compressed) datasets.
MAX_COMPRESSION_RATIO = 1000
#: Sensor of the SHD/SSC data sets: 700 channels, 1 row, 1 polarity (tonic ``HSD``).
SHD_CHANNELS = 700


def sniff_hdf5(head: bytes) -> bool:
    """True when the HDF5 signature is at byte 0 or at a user-block offset 512·2^k."""
    if head.startswith(HDF5_MAGIC):
        return True
    off = 512
    while off + len(HDF5_MAGIC) <= len(head):
        if head[off : off + len(HDF5_MAGIC)] == HDF5_MAGIC:
            return True
        off *= 2
    return False


def _h5py():
    import h5py

    return h5py


def _open(path: Path):
    try:  # libhdf5 loops for ever on some damaged global heaps: refuse those before it sees them
        problem = check_global_heaps(path)
    except OSError as exc:
        raise EventFileError(path, f"not a readable HDF5 file: {exc}") from None
    if problem is not None:
        raise EventFileError(path, f"damaged HDF5 file: {problem}")
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise EventFileError(path, f"not a readable HDF5 file: {exc}") from None


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _check_dataset(ds, path: Path, file_size: int) -> None:
    """Refuse datasets whose size is implausible for the file, or that need a missing filter."""
    h5py = _h5py()
    dcpl = ds.id.get_create_plist()
    for i in range(dcpl.get_nfilters()):
        code, _flags, _vals, name = dcpl.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            hint = ""
            if code == ECF_FILTER:
                hint = (" (Prophesee ECF codec: install Prophesee's hdf5_ecf plugin and set "
                        "HDF5_PLUGIN_PATH)")
            label = _text(name) or "unnamed"
            raise EventFileError(
                path, f"dataset {ds.name} needs HDF5 filter {code:#x} ({label}), which is not "
                f"installed{hint}"
            )
    base = h5py.check_vlen_dtype(ds.dtype)
    if base is not None:
        offset = ds.id.get_offset()  # None unless contiguous: the descriptors lie there
        sizes = ds.file.id.get_create_plist().get_sizes()  # the descriptor layout needs 8, 8
        problem = None if offset is None or sizes != (8, 8) else check_vlen_descriptors(
            path, offset, int(ds.size), base.itemsize, file_size)
        if problem is not None:
            raise EventFileError(path, f"damaged HDF5 file: dataset {ds.name}: {problem}")
        return
    nbytes = int(ds.size) * ds.dtype.itemsize
    limit = file_size if ds.chunks is None else MAX_COMPRESSION_RATIO * file_size + (1 << 24)
    if nbytes > limit:
        raise EventFileError(
            path, f"dataset {ds.name} claims {nbytes} bytes of data, implausible for a "
            f"{file_size}-byte file"
        )


def _ds(group, key: str, path: Path, file_size: int, *, ndim: int | None = 1):
    h5py = _h5py()
    obj = group.get(key)
    if not isinstance(obj, h5py.Dataset):
        raise EventFileError(path, f"{group.name.rstrip('/')}/{key} is not a dataset")
    if ndim is not None and obj.ndim != ndim:
        raise EventFileError(path, f"dataset {obj.name} has shape {obj.shape}, expected 1-D")
    _check_dataset(obj, path, file_size)
    return obj


def _layout(f, path: Path) -> str:
    h5py = _h5py()
    ev = f.get("events")
    if isinstance(ev, h5py.Group) and all(k in ev for k in ("x", "y", "t", "p")):
        return "columns"
    if isinstance(ev, h5py.Dataset) and ev.dtype.names:
        return "compound"
    cd = f.get("CD")
    if isinstance(cd, h5py.Group) and isinstance(cd.get("events"), h5py.Dataset):
        return "prophesee"
    sp = f.get("spikes")
    if isinstance(sp, h5py.Group) and "times" in sp and "units" in sp:
        return "spikes"
    if f.attrs.get("format") == TOKEN_CACHE_FORMAT:
        raise EventFileError(path, "a token cache made by `eventssm preprocess`, not a recording; "
                                   "score it with `eventssm evaluate RUN CACHE`")
    keys = sorted(k if isinstance(k, str) else repr(k) for k in f.keys())  # a damaged name: bytes
    raise EventFileError(
        path, f"unknown HDF5 layout: top-level keys {keys}; expected 'events' "
        "(x, y, t, p), 'CD/events' (Prophesee) or 'spikes/times' + 'spikes/units' (SHD/SSC)"
    )


class _Source:
    """One opened HDF5 event source: total length, a block reader and its geometry."""

    def __init__(self, path: Path, f, file_size: int):
        self.path = path
        self.stored: SensorSize | None = None
        self.meta: dict[str, Any] = {"format": "hdf5"}
        self.t_offset = 0
        kind = _layout(f, path)
        self.kind = kind
        if kind == "columns":
            g = f["events"]
            self.cols = [_ds(g, k, path, file_size) for k in ("x", "y", "t", "p")]
            lens = {len(d) for d in self.cols}
            if len(lens) != 1:
                raise EventFileError(
                    path, f"events/x, y, t, p have unequal lengths {[len(d) for d in self.cols]}"
                )
            self.n = lens.pop()
            version = g.attrs.get("eventssm_version")
            if version is not None and (
                np.asarray(version).dtype.kind not in "iu" or int(version) > EVENTSSM_VERSION
            ):
                raise EventFileError(
                    path, f"events layout version {version!r} is newer than this reader "
                    f"({EVENTSSM_VERSION}); upgrade eventssm"
                )
            if "sensor_size" in g.attrs:
                self.stored = check_sensor_size(g.attrs["sensor_size"], path)
            if "meta" in g.attrs:
                self.meta = parse_meta_json(_text(g.attrs["meta"]), path)
            else:
                self.meta["layout"] = "events group (x, y, t, p)"
            if "t_offset" in f:
                off = _ds(f, "t_offset", path, file_size, ndim=None)
                if off.dtype.kind not in "iu" or off.size != 1:
                    raise EventFileError(path, "t_offset is not one integer")
                self.t_offset = int(np.asarray(off[()]).reshape(-1)[0])
        elif kind in ("compound", "prophesee"):
            ds = f["events"] if kind == "compound" else f["CD/events"]
            if ds.ndim != 1 or not ds.dtype.names:
                raise EventFileError(path, f"{ds.name} is not a 1-D compound dataset")
            _check_dataset(ds, path, file_size)
            self.fields = structured_fields(ds.dtype, path)
            self.ds = ds
            self.n = len(ds)
            self.stored = _geometry(f, ds, path)
            if kind == "prophesee":
                gen = _text(f.attrs["generation"]) if "generation" in f.attrs else None
                self.meta["camera"] = "Prophesee" + (f" (sensor generation {gen})" if gen else "")
                self.meta["layout"] = "Prophesee CD/events"
            else:
                self.meta["layout"] = "compound events dataset"
        else:
            self.times, self.units, self.labels = _spike_datasets(f, path, file_size)
            vlen = _h5py().check_vlen_dtype(self.times.dtype) is not None
            if vlen and len(self.times) != 1:
                raise EventFileError(
                    path, f"SHD/SSC file holds {len(self.times)} samples; read_events reads "
                    "one recording: use eventssm.io.hdf5.read_samples(path) to iterate them"
                )
            self.spikes = _spike_events(path, self.times, self.units, 0 if vlen else None)
            self.n = len(self.spikes)
            self.meta = _spike_meta()
            if self.labels is not None and len(self.labels) == 1:
                self.meta["label"] = int(self.labels[0])

    def block(self, i: int, j: int) -> np.ndarray:
        """Events ``i:j`` as ``EVENT_DTYPE``."""
        if self.kind == "columns":
            x, y, t, p = (d[i:j] for d in self.cols)
            ev = events_from_columns(x, y, t, p, path=self.path)
            if self.t_offset:
                ev["t"] += self.t_offset
            return ev
        if self.kind == "spikes":
            return self.spikes[i:j]
        rows = self.ds[i:j]
        fx, fy, ft, fp = self.fields
        return events_from_columns(rows[fx], rows[fy], rows[ft], rows[fp], path=self.path)

    def max_xy(self, chunk: int) -> tuple[int, int]:
        mx = my = -1
        for i in range(0, self.n, chunk):
            ev = self.block(i, i + chunk)
            if len(ev):
                mx, my = max(mx, int(ev["x"].max())), max(my, int(ev["y"].max()))
        return mx, my

    def sensor(self, given: SensorSize | None, max_xy: Callable[[], tuple[int, int]]):
        if given is None and self.kind == "spikes":
            return _shd_sensor(self.spikes)
        return resolve_sensor_size(self.path, given, self.stored, max_xy, self.meta)


def _geometry(f, ds, path: Path) -> SensorSize | None:
    """Sensor size from Prophesee's ``geometry = "WxH"`` or ``width``/``height`` attributes."""
    for attrs in (f.attrs, ds.attrs, ds.parent.attrs):
        if "geometry" in attrs:
            text = _text(attrs["geometry"]).lower().replace(" ", "")
            parts = text.split("x")
            if len(parts) != 2 or not all(s.isdigit() for s in parts):
                raise EventFileError(path, f"geometry attribute {text!r} is not WIDTHxHEIGHT")
            return check_sensor_size(np.array([int(parts[0]), int(parts[1]), 2]), path)
        if "width" in attrs and "height" in attrs:
            try:
                w, h = int(np.asarray(attrs["width"])), int(np.asarray(attrs["height"]))
            except (TypeError, ValueError):
                raise EventFileError(path, "width/height attributes are not integers") from None
            return check_sensor_size(np.array([w, h, 2]), path)
    return None


def _spike_datasets(f, path: Path, file_size: int):
    sp = f["spikes"]
    times = _ds(sp, "times", path, file_size)
    units = _ds(sp, "units", path, file_size)
    if len(times) != len(units):
        raise EventFileError(
            path, f"spikes/times has {len(times)} entries but spikes/units {len(units)}"
        )
    labels = None
    if "labels" in f:
        labels = _ds(f, "labels", path, file_size)
        if labels.dtype.kind not in "iu":
            raise EventFileError(path, f"labels dataset has dtype {labels.dtype}, not integers")
    return times, units, labels


def _spike_events(path: Path, times_ds, units_ds, index: int | None) -> np.ndarray:
    """Events of sample ``index`` (or of the whole plain 1-D datasets when ``index`` is None)."""
    if index is None:
        times, units = times_ds[()], units_ds[()]
    else:
        times, units = np.asarray(times_ds[index]), np.asarray(units_ds[index])
    if times.shape != units.shape or times.ndim != 1:
        raise EventFileError(
            path, f"sample {index}: times {times.shape} and units {units.shape} differ"
        )
    if times.dtype.kind not in "iuf":
        raise EventFileError(path, f"spikes/times has dtype {times.dtype}, not numeric")
    if times.dtype.kind == "f":
        times = times.astype(np.float64)
    return events_from_columns(
        units, np.zeros(len(units), np.int16), times, np.ones(len(units), np.bool_),
        path=path, t_scale=1_000_000,
    )


def _shd_sensor(events: np.ndarray) -> SensorSize:
    top = int(events["x"].max()) + 1 if len(events) else 0
    return (max(SHD_CHANNELS, top), 1, 1)


def _spike_meta() -> dict[str, Any]:
    return {
        "format": "hdf5",
        "layout": "SHD/SSC spikes",
        "camera": "cochlea model (Heidelberg spiking data sets)",
    }


def _raised_in_h5py(exc: BaseException) -> bool:
    """The innermost frame of ``exc`` is h5py's (its Python or Cython code)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    name = tb.tb_frame.f_code.co_filename.replace(os.sep, "/") if tb is not None else ""
    return "h5py/" in name


@contextmanager
def _library_errors(path: Path) -> Iterator[None]:
    """Errors of the HDF5 library and h5py on damaged metadata become one EventFileError: h5py
    raises OSError or RuntimeError for libhdf5's errors (a bad checksum, an address past the end
    of the file, "not a group"), and ValueError/TypeError/KeyError when it cannot map a damaged
    datatype to NumPy ("Insufficient precision in available types"). Only exceptions raised
    inside h5py are translated, so a bug of this reader still surfaces. Found by
    ``benchmarks/fuzz_readers.py`` beneath the guard of read_events."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise EventFileError(path, f"damaged HDF5 file: {msg}") from None
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, EventFileError) or not _raised_in_h5py(exc):
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise EventFileError(path, f"damaged HDF5 file: {msg}") from None


def read_hdf5(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read one recording from an HDF5 event file (layouts in the module docstring).

    Returns:
        Recording with ``EVENT_DTYPE`` events (N,), ``t`` in microseconds.

    Raises:
        EventFileError: unknown layout, missing filter plugin, a multi-sample SHD/SSC file.
    """
    p = Path(path)
    size = os.path.getsize(p)
    with _library_errors(p), _open(p) as f:
        src = _Source(p, f, size)
        events = src.block(0, src.n) if src.n else np.empty(0, EVENT_DTYPE)

        def max_xy():
            if not len(events):
                return -1, -1
            return int(events["x"].max()), int(events["y"].max())

        sensor = src.sensor(sensor_size, max_xy)
    return Recording(events, sensor, src.meta)


def iter_hdf5(
    path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None
) -> Iterator[Recording]:
    """Stream an HDF5 event file by slicing its datasets, ``chunk_events`` events at a time.

    Without a stored or given sensor size, a first pass finds max x and y (O(chunk) memory).
    """
    p = Path(path)
    size = os.path.getsize(p)
    with _library_errors(p), _open(p) as f:
        src = _Source(p, f, size)
        sensor = src.sensor(sensor_size, lambda: src.max_xy(chunk_events))
        for i in range(0, src.n, chunk_events):
            yield Recording(src.block(i, i + chunk_events), sensor, dict(src.meta))


def read_samples(
    path: str | os.PathLike, *, sensor_size: SensorSize | None = None
) -> Iterator[tuple[Recording, int | None]]:
    """Iterate the samples of an SHD/SSC HDF5 file.

    Args:
        path: an SHD or SSC ``.h5`` file (``spikes/times``, ``spikes/units``, ``labels``).
        sensor_size: overrides the default ``(700, 1, 1)``.

    Yields:
        ``(recording, label)``: a validated Recording per sample (``meta["sample"]`` is its
        index, ``meta["label"]`` its label) and the integer label from ``labels``, or ``None``
        when the file has no ``labels`` dataset.

    Raises:
        EventFileError: not an SHD/SSC layout, or a sample that cannot be decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise EventFileError(p, "no such file")
    size = os.path.getsize(p)
    try:
        with _open(p) as f:
            if _layout(f, p) != "spikes":
                raise EventFileError(p, "read_samples reads SHD/SSC files (spikes/times, units)")
            times, units, labels = _spike_datasets(f, p, size)
            vlen = _h5py().check_vlen_dtype(times.dtype) is not None
            n = len(times) if vlen else 1
            if labels is not None and len(labels) != n:
                raise EventFileError(p, f"labels has {len(labels)} entries for {n} samples")
            for i in range(n):
                events = _spike_events(p, times, units, i if vlen else None)
                sensor = sensor_size if sensor_size is not None else _shd_sensor(events)
                validate_events(events, sensor, path=p, allow_empty=True)
                label = None if labels is None else int(labels[i])
                meta = _spike_meta()
                meta.update(path=str(p), sample=i)
                if label is not None:
                    meta["label"] = label
                yield Recording(events, sensor, meta), label
    except EventFileError:
        raise
    except Exception as exc:  # h5py/HDF5 errors on damaged files become one line
        log.debug("read_samples failed on %s", p, exc_info=True)
        raise EventFileError(p, f"cannot decode as hdf5: {exc}") from None


register(
    FormatSpec(
        name="hdf5",
        description="HDF5: eventssm/DSEC events/{x,y,t,p}, Prophesee CD/events, SHD/SSC spikes",
        extensions=(".h5", ".hdf5"),
        sniff=sniff_hdf5,
        read=read_hdf5,
        iter_chunks=iter_hdf5,
    )
)

"""NumPy containers: ``.npy`` and ``.npz`` event files.

Layouts read (the file format itself is NumPy's, "A Simple File Format for NumPy Arrays",
NEP 1 / ``numpy.lib.format`` docs: magic ``\\x93NUMPY``, a version pair, a little-endian header
length (u16 for 1.0, u32 for 2.0), a Python-literal dict ``{'descr', 'fortran_order', 'shape'}``,
then the raw data):

``npy`` (format name ``"npy"``)
    *Structured array*, shape ``(N,)``, with fields ``x``, ``y``, ``t`` (alias ``ts``,
    ``timestamp``) and ``p`` (alias ``pol``, ``polarity``) of any bool/int/float dtype, e.g.
    tonic's own event arrays. Integer ``t`` is microseconds. Float ``t`` is also taken as
    microseconds and rounded to the nearest integer. ``p > 0`` is ON. Extra fields are ignored.

    *Unstructured* ``(N, 4)`` numeric array: ambiguous in general, so it is accepted ONLY as
    the layout of tonic's DVSGesture download, columns ``[x, y, p, t]`` with ``t`` in
    milliseconds (tonic ``tonic/datasets/dvsgesture.py`` multiplies column 3 by 1000 to get
    microseconds). Here ``t_us = round(t_ms * 1000)``. The sensor defaults to DVS128
    ``(128, 128, 2)`` when every x and y is below 128.

``npz`` (format name ``"npz"``; a ZIP archive of ``.npy`` members, as ``numpy.savez`` writes)
    Members ``x``, ``y``, ``t``, ``p`` (1-D, equal length; same dtype rules as above),
    optional ``sensor_size`` (3 integers) and ``meta`` (0-d unicode array holding a JSON
    object): the layout :func:`eventssm.io.write_events` writes. Alternatively a single
    structured member ``events`` (or the only member) with the fields above.

Geometry: the ``sensor_size`` argument wins; then ``sensor_size`` stored in the file; then the
DVS128 default of the tonic layout; otherwise ``(max x + 1, max y + 1, 2)`` with
``meta["sensor_size_inferred"] = True`` (logged at info level).

Safety: headers are parsed and their sizes checked against the real file (or ZIP member)
size before any data is touched, so a lying header cannot drive a huge allocation; pickled
(object) arrays are refused. ``iter_chunks`` memory-maps ``.npy`` data and streams ``.npz``
members, holding O(chunk) memory.

The column helpers here (:func:`events_from_columns`, :func:`infer_sensor_size`) are shared by
the HDF5 and text readers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from eventssm.events import COLUMN_ALIASES, EVENT_DTYPE, EventFileError, Recording, SensorSize
from eventssm.io._base import FormatSpec, register

log = logging.getLogger(__name__)

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
INT16_MAX = int(np.iinfo(np.int16).max)
INT64_MAX = int(np.iinfo(np.int64).max)
#: DVS128 sensor of the DVSGesture data set (tonic ``DVSGesture.sensor_size``).
DVS128_SENSOR: SensorSize = (128, 128, 2)
#: Largest plausible DEFLATE expansion (the format's limit is about 1032:1), plus slack.
_MAX_DEFLATE_RATIO = 1100
_MAX_HEADER = 10_000

_T_NAMES = tuple(n for n, f in COLUMN_ALIASES.items() if f == "t")  # "t" first: it wins
_P_NAMES = tuple(n for n, f in COLUMN_ALIASES.items() if f == "p")


# --------------------------------------------------------------------------- column helpers
def _check_numeric(a: np.ndarray, name: str, path) -> None:
    if a.dtype.kind not in "biuf":
        raise EventFileError(path, f"column {name} has non-numeric dtype {a.dtype}")


def _coord(a: np.ndarray, name: str, path) -> np.ndarray:
    """Cast an x or y column to int16 after checking finiteness, integrality and range."""
    _check_numeric(a, name, path)
    if a.size == 0:
        return np.empty(0, np.int16)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise EventFileError(path, f"column {name} holds NaN or infinite values")
        if (a != np.floor(a)).any():
            i = int(np.argmax(a != np.floor(a)))
            raise EventFileError(path, f"column {name} holds a non-integer value {a[i].item()!r}")
    lo, hi = a.min(), a.max()
    if lo < 0 or hi > INT16_MAX:
        bad = lo if lo < 0 else hi
        raise EventFileError(path, f"column {name} value {bad} is outside 0..{INT16_MAX}")
    return a.astype(np.int16)


def _times(a: np.ndarray, scale: int, path) -> np.ndarray:
    """Microsecond int64 timestamps from ``a * scale`` (floats are rounded to nearest)."""
    _check_numeric(a, "t", path)
    if a.size == 0:
        return np.empty(0, np.int64)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise EventFileError(path, "timestamps hold NaN or infinite values")
        with np.errstate(over="ignore"):  # a huge value becomes inf, refused just below
            us = np.rint(a.astype(np.float64) * scale)
        if np.abs(us).max() >= 2.0**63:
            raise EventFileError(path, "timestamps overflow 64-bit microseconds")
        return us.astype(np.int64)
    if a.dtype.kind == "u" and a.max() > INT64_MAX:
        raise EventFileError(path, f"timestamp {a.max()} overflows int64")
    t = a.astype(np.int64)
    if scale != 1:
        if np.abs(t).max() > INT64_MAX // scale:
            raise EventFileError(path, "timestamps overflow 64-bit microseconds")
        t = t * scale
    return t


def _polarity(a: np.ndarray, path) -> np.ndarray:
    _check_numeric(a, "p", path)
    if a.dtype.kind == "b":
        return a.astype(np.bool_)
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        raise EventFileError(path, "column p holds NaN or infinite values")
    return a > 0


def events_from_columns(x, y, t, p, *, path=None, t_scale: int = 1) -> np.ndarray:
    """Build a checked ``EVENT_DTYPE`` array from four equal-length numeric columns.

    Args:
        x, y: pixel coordinates, shape (N,), any bool/int/float dtype; must be whole numbers in
            ``0..32767`` (checked before the int16 cast, so nothing wraps).
        t: timestamps, shape (N,); ``t_us = t * t_scale``, floats rounded to nearest.
        p: polarity, shape (N,); ``p > 0`` (or True) is ON.
        path: file name for error messages.
        t_scale: integer factor to microseconds (1 for µs, 1000 for ms, 10**6 for s).

    Returns:
        ``EVENT_DTYPE`` array, shape (N,).

    Raises:
        EventFileError: unequal lengths, non-numeric or non-finite values, out-of-range values.
    """
    cols = [np.asarray(c) for c in (x, y, t, p)]
    n = len(cols[2]) if cols[2].ndim else 0
    if any(c.ndim != 1 or len(c) != n for c in cols):
        raise EventFileError(path, f"event columns have unequal shapes {[c.shape for c in cols]}")
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["x"] = _coord(cols[0], "x", path)
    ev["y"] = _coord(cols[1], "y", path)
    ev["t"] = _times(cols[2], t_scale, path)
    ev["p"] = _polarity(cols[3], path)
    return ev


def infer_sensor_size(max_x: int, max_y: int, path=None) -> SensorSize:
    """``(max_x + 1, max_y + 1, 2)`` for files without geometry (logged at info level).

    ``max_x``/``max_y`` are -1 for an empty recording, which gives ``(1, 1, 2)``.
    """
    size = (max(int(max_x) + 1, 1), max(int(max_y) + 1, 1), 2)
    log.info("%s: no sensor size in the file; inferred %dx%d from the events", path, *size[:2])
    return size


def resolve_sensor_size(
    path, given: SensorSize | None, stored: SensorSize | None,
    extent: Callable[[], tuple[int, int]], meta: dict, *, tonic: bool = False,
) -> SensorSize:
    """The sensor-size rule of the container readers (npy, npz, HDF5, text), in this order:
    the ``given`` argument, the size ``stored`` in the file, DVS128 for tonic's DVSGesture
    arrays (``tonic``) whose coordinates fit 128x128, else inferred from the largest
    coordinates ``extent() -> (max_x, max_y)`` (called only then), with
    ``meta["sensor_size_inferred"] = True``."""
    if given is not None:
        return given
    if stored is not None:
        return stored
    mx, my = extent()
    if tonic and mx < 128 and my < 128:
        return DVS128_SENSOR
    meta["sensor_size_inferred"] = True
    return infer_sensor_size(mx, my, path)


def check_sensor_size(value, path) -> SensorSize:
    """Turn a stored sensor size (3 positive integers; 2 means 2 polarities) into a tuple."""
    a = np.asarray(value)
    if a.dtype.kind not in "iu" or a.ndim != 1 or a.shape[0] not in (2, 3):
        raise EventFileError(path, f"stored sensor_size {value!r} is not 2 or 3 integers")
    vals = [int(v) for v in a]
    if len(vals) == 2:
        vals.append(2)
    if min(vals) < 1 or max(vals[:2]) > INT16_MAX + 1:
        raise EventFileError(path, f"stored sensor_size {tuple(vals)} is out of range")
    return (vals[0], vals[1], vals[2])


def parse_meta_json(text: str, path) -> dict[str, Any]:
    """Decode the JSON object that :func:`eventssm.io.write_events` stores as ``meta``."""
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise EventFileError(path, f"stored meta is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise EventFileError(path, "stored meta is not a JSON object")
    return meta


def _field(names: tuple[str, ...], wanted: tuple[str, ...]) -> str | None:
    lower = {n.lower(): n for n in names}
    for w in wanted:
        if w in lower:
            return lower[w]
    return None


def structured_fields(dtype: np.dtype, path) -> tuple[str, str, str, str]:
    """Names of the x, y, t, p fields of a structured dtype (aliases allowed) or raise."""
    names = dtype.names or ()
    fx, fy = _field(names, ("x",)), _field(names, ("y",))
    ft, fp = _field(names, _T_NAMES), _field(names, _P_NAMES)
    if None in (fx, fy, ft, fp):
        raise EventFileError(
            path, f"structured array has fields {list(names)}; needs x, y, t (or ts, "
            "timestamp) and p (or pol, polarity)"
        )
    return fx, fy, ft, fp  # type: ignore[return-value]


# --------------------------------------------------------------------------- npy headers
class _Header:
    """A parsed ``.npy`` header: dtype, shape, order, and where the data starts."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...], fortran: bool, data_offset: int):
        self.dtype = dtype
        self.shape = shape
        self.fortran = fortran
        self.data_offset = data_offset
        self.count = math.prod(shape)
        self.nbytes = self.count * dtype.itemsize


def _parse_header(fp, path, base: int):
    major, minor = np.lib.format.read_magic(fp)
    if (major, minor) == (1, 0):
        read = np.lib.format.read_array_header_1_0
    elif (major, minor) == (2, 0):
        read = np.lib.format.read_array_header_2_0
    else:
        raise EventFileError(path, f"unsupported .npy format version {major}.{minor}", base)
    return read(fp, max_header_size=_MAX_HEADER)


def _read_header(fp, path, base: int = 0) -> _Header:
    """Parse a ``.npy`` header from ``fp`` (positioned at the magic).

    ``base`` is the byte offset of ``fp``'s start inside the file, for error messages.
    """
    try:
        with warnings.catch_warnings():
            # numpy's header parser warns on odd or damaged headers (UserWarning: Python-2 style
            # header; DeprecationWarning/SyntaxWarning: an invalid escape sequence in the header
            # text, a deprecated dtype alias such as 'a'): the checks below and the EventFileError
            # decide, so no warning escapes the reader (the fuzz campaign's run D findings)
            warnings.simplefilter("ignore")
            shape, fortran, dtype = _parse_header(fp, path, base)
    except EventFileError:
        raise
    except Exception as exc:  # numpy raises ValueError, SyntaxError, TokenError, ... here
        raise EventFileError(path, f"bad .npy header: {exc}", base) from None
    if dtype.hasobject:
        raise EventFileError(path, "object (pickled) arrays are not read", base)
    if dtype.itemsize == 0:
        raise EventFileError(path, f"zero-size dtype {dtype} holds no events", base)
    if any((not isinstance(s, int)) or s < 0 for s in shape):
        raise EventFileError(path, f"bad .npy shape {shape}", base)
    return _Header(dtype, tuple(shape), bool(fortran), base + fp.tell())


def _npy_header(path: Path) -> _Header:
    with open(path, "rb") as f:
        h = _read_header(f, path)
    size = os.path.getsize(path)
    have = size - h.data_offset
    if have < h.nbytes:
        raise EventFileError(
            path, f"truncated .npy: header announces {h.nbytes} data bytes, file holds {have}",
            size,
        )
    if have > h.nbytes:
        log.warning("%s: %d bytes after the .npy data ignored", path, have - h.nbytes)
    return h


def _npy_map(path: Path, h: _Header) -> np.ndarray:
    """Read-only memory map of the data (an empty array when there is none)."""
    if h.count == 0:
        return np.empty(h.shape, dtype=h.dtype)
    return np.memmap(
        path, dtype=h.dtype, mode="r", offset=h.data_offset, shape=h.shape,
        order="F" if h.fortran else "C",
    )


class _Layout:
    """How rows of an array become events (structured fields or tonic N×4 columns)."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...], path):
        self.path = path
        if dtype.names:
            if len(shape) != 1:
                raise EventFileError(path, f"structured event array has shape {shape}, not (N,)")
            self.fields: tuple[str, str, str, str] | None = structured_fields(dtype, path)
            self.tonic = False
            self.t_scale = 1
        elif len(shape) == 2 and shape[1] == 4 and dtype.kind in "biuf":
            self.fields = None
            self.tonic = True
            self.t_scale = 1000
        else:
            raise EventFileError(
                path, f"array of shape {shape} and dtype {dtype} is not an event array: "
                "expected a structured array with fields x, y, t, p, or tonic's DVSGesture "
                "(N, 4) array [x, y, p, t_ms]"
            )

    def columns(self, block: np.ndarray):
        if self.fields is not None:
            fx, fy, ft, fp = self.fields
            return block[fx], block[fy], block[ft], block[fp]
        return block[:, 0], block[:, 1], block[:, 3], block[:, 2]

    def events(self, block: np.ndarray) -> np.ndarray:
        x, y, t, p = self.columns(block)
        return events_from_columns(
            np.asarray(x), np.asarray(y), np.asarray(t), np.asarray(p),
            path=self.path, t_scale=self.t_scale,
        )

    def max_xy(self, block: np.ndarray) -> tuple[int, int]:
        x, y, _, _ = self.columns(block)
        if len(x) == 0:
            return -1, -1
        xs = _coord(np.asarray(x), "x", self.path)
        ys = _coord(np.asarray(y), "y", self.path)
        return int(xs.max()), int(ys.max())


def _block_max(layout: _Layout, arr: np.ndarray, chunk: int) -> tuple[int, int]:
    mx = my = -1
    for i in range(0, len(arr), chunk):
        bx, by = layout.max_xy(arr[i : i + chunk])
        mx, my = max(mx, bx), max(my, by)
    return mx, my


def _npy_meta(layout: _Layout) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": "npy"}
    if layout.tonic:
        meta["layout"] = "tonic DVSGesture [x, y, p, t_ms]"
        meta["camera"] = "DVS128 (tonic DVSGesture)"
    else:
        meta["layout"] = "structured"
    return meta


def read_npy(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read a ``.npy`` event array (layouts in the module docstring).

    Returns:
        Recording with ``EVENT_DTYPE`` events (N,), ``t`` in microseconds.
    """
    p = Path(path)
    h = _npy_header(p)
    layout = _Layout(h.dtype, h.shape, p)
    arr = _npy_map(p, h)
    events = layout.events(arr)
    meta = _npy_meta(layout)

    def max_xy():
        if len(events) == 0:
            return -1, -1
        return int(events["x"].max()), int(events["y"].max())

    sensor = resolve_sensor_size(layout.path, sensor_size, None, max_xy, meta, tonic=layout.tonic)
    del arr
    return Recording(events, sensor, meta)


def iter_npy(
    path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None
) -> Iterator[Recording]:
    """Stream a ``.npy`` event array through a memory map, ``chunk_events`` rows at a time.

    Without a sensor size argument (and outside the DVS128 case) a first pass over the map
    finds max x and y; memory stays O(chunk) in both passes.
    """
    p = Path(path)
    h = _npy_header(p)
    layout = _Layout(h.dtype, h.shape, p)
    arr = _npy_map(p, h)
    meta = _npy_meta(layout)
    sensor = resolve_sensor_size(
        layout.path, sensor_size, None, lambda: _block_max(layout, arr, chunk_events), meta,
        tonic=layout.tonic,
    )
    for i in range(0, len(arr), chunk_events):
        yield Recording(layout.events(arr[i : i + chunk_events]), sensor, dict(meta))


def sniff_npy(head: bytes) -> bool:
    """True when ``head`` starts with the ``.npy`` magic ``\\x93NUMPY``."""
    return head.startswith(NPY_MAGIC)


# --------------------------------------------------------------------------- npz
def sniff_npz(head: bytes) -> bool:
    """True for a ZIP whose first member name ends with ``.npy`` (what ``numpy.savez`` writes).

    ZIP local file header (PKWARE APPNOTE 4.3.7): name length u16 at offset 26, extra length
    u16 at 28, name at 30.
    """
    if not head.startswith(ZIP_MAGIC) or len(head) < 30:
        return False
    n = int.from_bytes(head[26:28], "little")
    name = head[30 : 30 + n]
    return len(name) == n and name.endswith(b".npy")


class _Npz:
    """An open ``.npz`` archive with size-checked member access."""

    def __init__(self, path: Path):
        self.path = path
        self.size = os.path.getsize(path)
        try:
            self.zf = zipfile.ZipFile(path)
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError,
                OverflowError, UnicodeDecodeError, NotImplementedError, OSError) as exc:
            raise EventFileError(path, f"not a readable .npz (ZIP) archive: {exc}") from None
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.filename.endswith(".npy"):
                self.members[info.filename[:-4]] = info

    def close(self) -> None:
        self.zf.close()

    def open(self, key: str):
        """Open member ``key``; return (header, stream positioned at the data)."""
        info = self.members[key]
        where = info.header_offset
        if info.compress_size > self.size:
            raise EventFileError(self.path, f"member {key}: compressed size exceeds file", where)
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise EventFileError(self.path, f"member {key}: stored sizes disagree", where)
        elif info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1) + 4096:
            raise EventFileError(
                self.path, f"member {key}: implausible size {info.file_size} for "
                f"{info.compress_size} compressed bytes", where,
            )
        if info.flag_bits & 0x1:  # zipfile raises RuntimeError for these (fuzz campaign finding)
            raise EventFileError(self.path, f"member {key}: encrypted (NumPy never writes that)", where)
        try:
            stream = self.zf.open(info)
        except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError, EOFError,
                zlib.error) as exc:
            raise EventFileError(self.path, f"member {key}: {exc}", where) from None
        h = _read_header(stream, self.path, where)
        # data_offset from _read_header is relative to the member: recompute the data size
        header_len = h.data_offset - where
        if info.file_size - header_len < h.nbytes:
            stream.close()
            raise EventFileError(
                self.path, f"member {key}: header announces {h.nbytes} data bytes, member "
                f"holds {info.file_size - header_len}", where,
            )
        return h, stream

    def read(self, key: str) -> tuple[_Header, np.ndarray]:
        h, stream = self.open(key)
        with stream:
            data = _read_exact(stream, h.nbytes, self.path, key)
        arr = np.frombuffer(data, dtype=h.dtype, count=h.count)
        arr = arr.reshape(h.shape, order="F" if h.fortran else "C")
        return h, arr


def _read_exact(stream, n: int, path, key: str) -> bytes:
    try:
        data = stream.read(n)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise EventFileError(path, f"member {key}: {exc}") from None
    if len(data) != n:
        raise EventFileError(path, f"member {key}: truncated ({len(data)} of {n} bytes)")
    return data


def _npz_extras(z: _Npz) -> tuple[SensorSize | None, dict[str, Any]]:
    stored = None
    meta: dict[str, Any] = {}
    if "sensor_size" in z.members:
        _, arr = z.read("sensor_size")
        stored = check_sensor_size(arr, z.path)
    if "meta" in z.members:
        h, arr = z.read("meta")
        if h.dtype.kind != "U" or h.shape != ():
            raise EventFileError(z.path, "member meta is not a 0-d unicode (JSON) array")
        meta = parse_meta_json(str(arr[()]), z.path)
    else:
        meta = {"format": "npz"}
    return stored, meta


def _npz_kind(z: _Npz) -> str:
    keys = set(z.members)
    if {"x", "y", "t", "p"} <= keys:
        return "columns"
    if "events" in keys:
        return "events"
    if len(keys) == 1:
        return next(iter(keys))
    raise EventFileError(
        z.path, f"npz members {sorted(keys)} are not an event layout: expected x, y, t, p "
        "(+ sensor_size, meta) or one structured array 'events'"
    )


def _check_column(p: Path, key: str, header) -> None:
    """A column member (x, y, t or p) of an archive must be one-dimensional."""
    if len(header.shape) != 1:
        raise EventFileError(p, f"member {key} has shape {header.shape}, not (N,)")


@contextmanager
def _open_npz(path: str | os.PathLike):
    """``(path, archive, stored sensor size, meta, layout kind)`` of an open archive."""
    p = Path(path)
    z = _Npz(p)
    try:
        stored, meta = _npz_extras(z)
        yield p, z, stored, meta, _npz_kind(z)
    finally:
        z.close()


def read_npz(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read a ``.npz`` event archive (layouts in the module docstring).

    Returns:
        Recording; ``meta`` is the stored JSON object when the archive has one (exact round
        trip of :func:`eventssm.io.write_events`), else ``{"format": "npz"}``.
    """
    with _open_npz(path) as (p, z, stored, meta, kind):
        if kind == "columns":
            cols = {}
            for k in "xytp":
                h, arr = z.read(k)
                _check_column(p, k, h)
                cols[k] = arr
            events = events_from_columns(cols["x"], cols["y"], cols["t"], cols["p"], path=p)
            tonic = False
        else:
            h, arr = z.read(kind)
            layout = _Layout(h.dtype, h.shape, p)
            events = layout.events(arr)
            tonic = layout.tonic

    def extent() -> tuple[int, int]:
        if not len(events):
            return -1, -1
        return int(events["x"].max()), int(events["y"].max())

    sensor = resolve_sensor_size(p, sensor_size, stored, extent, meta, tonic=tonic)
    return Recording(events, sensor, meta)


def _stream_blocks(z: _Npz, key: str, chunk: int) -> Iterator[np.ndarray]:
    """Yield blocks of at most ``chunk`` rows of member ``key`` (1-D or structured)."""
    h, stream = z.open(key)
    with stream:
        if h.fortran and len(h.shape) > 1:
            raise EventFileError(z.path, f"member {key} is Fortran-ordered; cannot stream")
        row = h.dtype.itemsize * math.prod(h.shape[1:])
        n = h.shape[0] if h.shape else 0
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            data = _read_exact(stream, k * row, z.path, key)
            yield np.frombuffer(data, dtype=h.dtype).reshape((k, *h.shape[1:]))


def iter_npz(
    path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None
) -> Iterator[Recording]:
    """Stream a ``.npz`` event archive member by member, ``chunk_events`` rows at a time.

    The four column members are decompressed side by side, so memory stays O(chunk).
    Without a stored or given sensor size a first pass finds max x and y.
    """
    with _open_npz(path) as (p, z, stored, meta, kind):
        if kind == "columns":
            heads = {}
            for k in "xytp":
                h, s = z.open(k)
                s.close()
                _check_column(p, k, h)
                heads[k] = h.shape[0]
            if len(set(heads.values())) != 1:
                raise EventFileError(p, f"members x, y, t, p have unequal lengths {heads}")

            def blocks():
                its = [_stream_blocks(z, k, chunk_events) for k in "xytp"]
                for x, y, t, pol in zip(*its):
                    yield events_from_columns(x, y, t, pol, path=p)

            tonic = False
        else:
            h, s = z.open(kind)
            s.close()
            layout = _Layout(h.dtype, h.shape, p)
            tonic = layout.tonic

            def blocks():
                for b in _stream_blocks(z, kind, chunk_events):
                    yield layout.events(b)

        def extent() -> tuple[int, int]:
            mx = my = -1
            for ev in blocks():
                if len(ev):
                    mx, my = max(mx, int(ev["x"].max())), max(my, int(ev["y"].max()))
            return mx, my

        sensor = resolve_sensor_size(p, sensor_size, stored, extent, meta, tonic=tonic)
        for ev in blocks():
            yield Recording(ev, sensor, dict(meta))


# FormatSpec(name, description, extensions, sniff, read, iter_chunks)
register(FormatSpec("npy", "NumPy .npy: structured x/y/t/p array, or tonic DVSGesture (N,4) "
                    "[x,y,p,t_ms]", (".npy",), sniff_npy, read_npy, iter_npy))
register(FormatSpec("npz", "NumPy .npz archive: members x, y, t, p (+ sensor_size, meta) or "
                    "'events'", (".npz",), sniff_npz, read_npz, iter_npz))

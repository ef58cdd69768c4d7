"""Text event files: ``.csv`` / ``.txt`` (format name ``"csv"``; no magic, found by extension).

One event per line, four (or more) columns, delimiter sniffed from the first data line:
comma, semicolon, else whitespace (spaces and/or tabs). Lines starting with ``#`` or ``%`` and
blank lines are skipped; a UTF-8 byte-order mark is ignored.

Column order:
    * a header row (any field that is not a number makes the first line a header) names the
      columns in any order: ``x``, ``y``, ``t`` | ``ts`` | ``timestamp`` | ``time``, ``p`` |
      ``pol`` | ``polarity`` (case-insensitive; other columns are ignored);
    * without a header the order is ``columns=``, default ``"t,x,y,p"``: the layout of the
      ETH event-camera data set's ``events.txt`` (Mueggler et al., "The Event-Camera Dataset
      and Simulator", IJRR 2017: one event per line, ``timestamp x y polarity``, timestamp in
      seconds).

Time unit (``time_unit=None`` detects it from the first data line): a timestamp written with a
decimal point or an exponent is seconds (``t_us = round(t * 1e6)``; exact for t < 2^31 s), an
integer timestamp is microseconds. ``time_unit="s" | "ms" | "us"`` forces it. ``p > 0`` is ON
(so both 0/1 and -1/1 polarity encodings work). x and y must be whole numbers.

Geometry: the ``sensor_size`` argument, else ``(max x + 1, max y + 1, 2)`` with
``meta["sensor_size_inferred"] = True`` (streaming makes a first pass to find the maxima).

Parsing streams the file in blocks of lines through ``numpy.loadtxt`` (O(chunk) memory); a
line that does not parse raises EventFileError with its line number and byte offset, and a
"line" longer than :data:`MAX_LINE` bytes (a binary file named ``.csv``) is refused early.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eventssm.events import (
    COLUMN_ALIASES,
    US_PER_UNIT,
    EventFileError,
    Recording,
    SensorSize,
    concat_events,
)
from eventssm.io._base import FormatSpec, register
from eventssm.io._blocks import rechunk
from eventssm.io.arrays import events_from_columns, resolve_sensor_size

log = logging.getLogger(__name__)

MAX_LINE = 4096
_BLOCK = 1 << 22
_COMMENTS = ("#", "%")
_ALIASES = COLUMN_ALIASES
_UNITS = US_PER_UNIT


@dataclass(frozen=True)
class _Plan:
    """How to parse the data lines of one file."""

    delimiter: str | None
    usecols: tuple[int, int, int, int]  # column index of x, y, t, p
    data_start: int  # byte offset of the first line after the header (or of the first line)
    time_unit: str
    header: bool

    @property
    def dtype(self) -> np.dtype:
        tt = np.float64 if self.time_unit != "us" else np.int64
        return np.dtype([("x", np.float64), ("y", np.float64), ("t", tt), ("p", np.float64)])


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _split(line: str, delimiter: str | None) -> list[str]:
    return [s.strip() for s in line.split(delimiter)] if delimiter else line.split()


def _lines(path: Path, start: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(byte offset, raw line without newline)`` from ``start``; bounded line length."""
    with open(path, "rb") as f:
        f.seek(start)
        offset = start
        tail = b""
        while True:
            block = f.read(_BLOCK)
            if not block:
                break
            data = tail + block
            parts = data.split(b"\n")
            tail = parts.pop()
            for part in parts:
                if len(part) > MAX_LINE:
                    raise EventFileError(path, f"line longer than {MAX_LINE} bytes", offset)
                yield offset, part
                offset += len(part) + 1
            if len(tail) > MAX_LINE:
                raise EventFileError(path, f"line longer than {MAX_LINE} bytes", offset)
        if tail:
            yield offset, tail


def _decode(raw: bytes, path: Path, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventFileError(path, "not a text file (invalid UTF-8)", offset + exc.start) from None


def _is_skipped(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith(_COMMENTS)


def _plan(path: Path, columns: str, time_unit: str | None) -> _Plan:
    """Find the delimiter, the header (or apply ``columns``) and the time unit."""
    if time_unit is not None and time_unit not in _UNITS:
        raise ValueError(f"time_unit must be one of {sorted(_UNITS)} or None, not {time_unit!r}")
    header_cols: dict[str, int] | None = None
    data_start = 0
    delimiter: str | None = None
    first_data: list[str] | None = None
    first_offset = 0
    seen_first = False
    for offset, raw in _lines(path, 0):
        line = _decode(raw, path, offset).lstrip("\ufeff").rstrip("\r")
        if _is_skipped(line):
            continue
        if not seen_first:
            seen_first = True
            delimiter = "," if "," in line else (";" if ";" in line else None)
            toks = _split(line, delimiter)
            if not all(_is_number(t) for t in toks):
                header_cols = _header(toks, path, offset)
                data_start = offset + len(raw) + 1
                continue
            data_start = offset
        first_data, first_offset = _split(line, delimiter), offset
        break
    if header_cols is not None:
        cols = header_cols
    else:
        names = [c.strip().lower() for c in columns.split(",")]
        cols = {_ALIASES.get(n, n): i for i, n in enumerate(names)}
        missing = [k for k in "xytp" if k not in cols]
        if missing:
            raise ValueError(f"columns={columns!r} must name x, y, t and p")
    usecols = (cols["x"], cols["y"], cols["t"], cols["p"])
    if time_unit is None:
        time_unit = "us"
        if first_data is not None:
            if len(first_data) <= max(usecols):
                raise EventFileError(
                    path, f"line has {len(first_data)} columns, expected at least "
                    f"{max(usecols) + 1}", first_offset,
                )
            tok = first_data[cols["t"]]
            if any(c in tok for c in ".eE"):
                time_unit = "s"
    return _Plan(delimiter, usecols, data_start, time_unit, header_cols is not None)


def _header(toks: list[str], path: Path, offset: int) -> dict[str, int]:
    cols: dict[str, int] = {}
    for i, tok in enumerate(toks):
        name = _ALIASES.get(tok.strip().strip("\"'").lower())
        if name is not None and name not in cols:
            cols[name] = i
    missing = [k for k in "xytp" if k not in cols]
    if missing:
        raise EventFileError(
            path, f"header {toks} lacks column(s) {missing} (x, y, t|timestamp, p|polarity)",
            offset,
        )
    return cols


def _batches(path: Path, plan: _Plan, lines_per_batch: int) -> Iterator[tuple[int, bytes]]:
    """Groups of at most ``lines_per_batch`` consecutive raw lines: (start offset, bytes)."""
    buf: list[bytes] = []
    start = plan.data_start
    for offset, raw in _lines(path, plan.data_start):
        if not buf:
            start = offset
        buf.append(raw)
        if len(buf) >= lines_per_batch:
            yield start, b"\n".join(buf)
            buf = []
    if buf:
        yield start, b"\n".join(buf)


def _locate_error(path: Path, plan: _Plan, start: int, raw: bytes, exc: Exception):
    """Find the first bad line of a batch that numpy refused; raise a precise error."""
    offset = start
    need = max(plan.usecols) + 1
    for part in raw.split(b"\n"):
        line = _decode(part, path, offset).rstrip("\r")
        if not _is_skipped(line):
            toks = _split(line, plan.delimiter)
            if len(toks) < need:
                raise EventFileError(
                    path, f"line has {len(toks)} columns, expected at least {need}: "
                    f"{line[:60]!r}", offset,
                )
            for name, col in zip("xytp", plan.usecols):
                tok = toks[col]
                try:
                    if name == "t" and plan.time_unit == "us":
                        int(tok)
                    else:
                        float(tok)
                except ValueError:
                    kind = "an integer" if name == "t" and plan.time_unit == "us" else "a number"
                    raise EventFileError(
                        path, f"column {name} value {tok[:30]!r} is not {kind}", offset
                    ) from None
        offset += len(part) + 1
    raise EventFileError(path, f"cannot parse text events: {exc}", start)


def _parse(path: Path, plan: _Plan, start: int, raw: bytes) -> np.ndarray:
    text = _decode(raw, path, start)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            rows = np.loadtxt(
                text.splitlines(), delimiter=plan.delimiter, usecols=plan.usecols,
                dtype=plan.dtype, comments=_COMMENTS, ndmin=1,
            )
    except (ValueError, TypeError, OverflowError) as exc:
        _locate_error(path, plan, start, raw, exc)
    return events_from_columns(
        rows["x"], rows["y"], rows["t"], rows["p"], path=path, t_scale=_UNITS[plan.time_unit]
    )


def _meta(plan: _Plan, sensor_given: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "format": "csv",
        "time_unit_in_file": plan.time_unit,
        "header": plan.header,
    }
    if not sensor_given:
        meta["sensor_size_inferred"] = True
    return meta


def _extent(events: np.ndarray) -> tuple[int, int]:
    """Largest x and y of ``events`` (-1, -1 when empty)."""
    if not len(events):
        return -1, -1
    return int(events["x"].max()), int(events["y"].max())


def read_text(
    path: str | os.PathLike,
    sensor_size: SensorSize | None = None,
    *,
    columns: str = "t,x,y,p",
    time_unit: str | None = None,
) -> Recording:
    """Read a text event file (layout rules in the module docstring).

    Args:
        path: the ``.csv``/``.txt`` file.
        sensor_size: ``(width, height, polarities)``; inferred from the events when ``None``.
        columns: column order when the file has no header row.
        time_unit: ``"s"``, ``"ms"``, ``"us"`` or ``None`` to detect.

    Returns:
        Recording with ``EVENT_DTYPE`` events (N,), ``t`` in microseconds.
    """
    p = Path(path)
    plan = _plan(p, columns, time_unit)
    parts = [_parse(p, plan, s, raw) for s, raw in _batches(p, plan, 1 << 18)]
    events = concat_events(parts)
    meta = _meta(plan, sensor_size is not None)
    sensor_size = resolve_sensor_size(p, sensor_size, None, lambda: _extent(events), meta)
    return Recording(events, sensor_size, meta)


def iter_text(
    path: str | os.PathLike,
    chunk_events: int,
    sensor_size: SensorSize | None = None,
    *,
    columns: str = "t,x,y,p",
    time_unit: str | None = None,
) -> Iterator[Recording]:
    """Stream a text event file in chunks of at most ``chunk_events`` events (O(chunk) memory).

    Without ``sensor_size`` the file is parsed twice: once for max x/y, once to yield.
    """
    p = Path(path)
    plan = _plan(p, columns, time_unit)
    meta = _meta(plan, sensor_size is not None)

    def extent() -> tuple[int, int]:  # a first pass over the file
        mx = my = -1
        for s, raw in _batches(p, plan, chunk_events):
            bx, by = _extent(_parse(p, plan, s, raw))
            mx, my = max(mx, bx), max(my, by)
        return mx, my

    sensor_size = resolve_sensor_size(p, sensor_size, None, extent, meta)
    # numpy also breaks lines at \v, \f and other separators that _batches does not count:
    # regroup so that no chunk exceeds chunk_events
    parsed = (_parse(p, plan, s, raw) for s, raw in _batches(p, plan, chunk_events))
    for ev in rechunk(parsed, chunk_events, reused=False):
        if len(ev):
            yield Recording(ev, sensor_size, dict(meta))


register(
    FormatSpec(
        name="csv",
        description="Text events, one per line: header x,y,t,p in any order, or 't x y p' "
        "(ETH event-camera data set; float t = seconds)",
        extensions=(".csv", ".txt"),
        sniff=None,
        read=read_text,
        iter_chunks=iter_text,
    )
)

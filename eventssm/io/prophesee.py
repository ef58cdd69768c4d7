"""Prophesee RAW (EVT 2.0, EVT 3.0) and DAT readers, and reference encoders.

The encoders live in :mod:`eventssm.io.prophesee_encode` (importable from here too).

All three formats store little-endian binary data after an ASCII header of lines that start
with ``"% "`` (0x25 0x20). Only CD (contrast detection) events are returned; timestamps are
the camera's microseconds as stored in the file (OpenEB's optional "time shifting" to the
first TIME_HIGH is not applied).

RAW header (Prophesee docs, "RAW File Format")
==============================================
``% <keyword> <value>\\n`` lines; an optional ``% end`` line closes the header, otherwise the
data begins at the first line that does not start with ``"% "``. The encoding is named by
``% evt 2.0`` / ``% evt 3.0`` (older files) or ``% format EVT2`` /
``% format EVT3;height=720;width=1280`` (newer files). Geometry, first match wins: the
``height=``/``width=`` pairs of the ``format`` line, ``% geometry WxH``, ``% width`` and
``% height`` lines, else the legacy ``% plugin_name`` of cameras whose files carry no geometry
(OpenEB ``raw_constants.h``, ``plugins_map``: ``hal_plugin_gen3_fx3``, ``hal_plugin_gen31_*``
640x480; ``hal_plugin_gen4_*``, ``hal_plugin_gen41_*`` 1280x720). Without any of these the
reader needs ``sensor_size`` and says so. ``meta["camera"]`` is the plugin name (or the
integrator and sensor generation). The two shared sample recordings have no ``% end`` line
and no geometry line: they rely on the plugin name.

EVT 2.0 (Prophesee docs, "EVT 2.0 Format"; OpenEB ``evt2_decoder.h``)
====================================================================
32-bit little-endian words, type in bits 31..28::

    CD_OFF 0x0 / CD_ON 0x1   bits 27..22 timestamp low 6 bits, 21..11 x, 10..0 y
                             polarity = type (0 OFF, 1 ON)
    EVT_TIME_HIGH 0x8        bits 27..0 = timestamp >> 6
    EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED 0xF   skipped
    any other type           reserved: EventFileError (a foreign or corrupt stream)

``t = (TIME_HIGH << 6) + low6``. As in OpenEB, words before the first TIME_HIGH are skipped
(their time is unknown), and a TIME_HIGH that jumps back by at least
``((2**28 - 1) << 6) - 10000`` µs is a wrap of the 34-bit time (about 4 h 46 min) that adds
2**34 µs.

EVT 3.0 (Prophesee docs, "EVT 3.0 Format"; OpenEB ``evt3_decoder.h``, ``evt3_event_types.h``)
==========================================================================================
16-bit little-endian words, type in bits 15..12; the decoder keeps a state::

    EVT_ADDR_Y    0x0  bits 10..0 y (bit 11: master/slave system type, ignored)
    EVT_ADDR_X    0x2  one CD event: bits 10..0 x, bit 11 polarity; y and t from the state
    VECT_BASE_X   0x3  bits 10..0 base x, bit 11 polarity of the following vectors
    VECT_12       0x4  bits 11..0 valid mask: event at base x + i for each set bit i;
                       then base x += 12
    VECT_8        0x5  bits 7..0 valid mask, same with 8; then base x += 8
    EVT_TIME_LOW  0x6  bits 11..0 = t bits 11..0
    CONTINUED_4   0x7, EXT_TRIGGER 0xA, 0xB, 0xC, IMU 0xD, OTHERS 0xE, CONTINUED_12 0xF
                       skipped (OTHERS/CONTINUED carry counters, triggers are not CD)
    EVT_TIME_HIGH 0x8  bits 11..0 = t bits 23..12
    0x1, 0x9           reserved: EventFileError

Time follows OpenEB (the reference; ``SOURCES.md`` notes that readers disagree):
``t = loop * 2**24 + time_high * 2**12 + time_low``. EVT_TIME_LOW only replaces the low 12
bits; a TIME_LOW smaller than the previous one is NOT an overflow (the docs: TIME_LOW "can be
non-monotonic when multiple event sources are considered"). EVT_TIME_HIGH replaces the high
12 bits, sets time_low to 0 when its value changes, and counts a wrap of the 24-bit time
(16.777 s) when it drops by at least 2048 (``loop += high_old >= 2048 + high_new``). Words
before the first TIME_HIGH are skipped, as OpenEB does. OpenEB decodes VECT_12 as the fixed
triple VECT_12, VECT_12, VECT_8 (32 columns); this reader applies each vector word on its
own as the format docs describe, which is the same on every stream that follows the
grammar. Vector words before any VECT_BASE_X and EVT_ADDR_X words before any EVT_ADDR_Y are
skipped (no complete address). OpenEB silently drops events with ``y >= height``; this
reader raises EventFileError for any event outside the sensor.

``expelliarmus`` (``src/evt3.c``) differs from OpenEB on timestamps: it adds 4096 µs every time
a TIME_LOW is smaller than the previous TIME_LOW (and its low-overflow count is never reset
by a new TIME_HIGH). Its x, y and p agree with this reader event for event; its t equals
ours until the first such decrease and then exceeds it by exactly 4096 µs times the number of
decreases so far (the tests check this relation). On ``evt3_sample.raw`` this reader gives
219,596 events over 8.8 ms (monotonic), expelliarmus 53.9 ms.

DAT (Prophesee docs, "DAT File Format"; OpenEB ``metavision_core/event_io/dat_tools.py``)
====================================================================================
``% `` header lines (``% Data file containing CD events``, ``% Version 2``, ``% Date ...``,
optional ``% Width W`` / ``% Height H``), then two bytes: event type (0x00 Event2D or 0x0C
EventCD; 0x0E is EventExtTrigger, rejected) and event size (8). Then 8-byte records::

    u32 timestamp (µs)
    u32 data   version 2 (OpenEB masks X_MASK = 2**14 - 1, Y_MASK = 2**28 - 2**14,
               P_MASK = 2**28): x bits 13..0, y bits 27..14, polarity bit 28
               version 1 (neuromorphic-paris ``command_line_tools`` ``source/dat.hpp``, which
               reads files whose ``% Version`` is below 2): x bits 8..0, y bits 16..9,
               polarity bit 17

A header without ``% Version`` is read as version 2 (OpenEB applies the version-2 masks to
every file). y is kept as stored (``dat.hpp`` flips it for its own display convention; OpenEB
does not). The 32-bit timestamp wraps after 71.6 min: a drop of at least 2**31 µs between
consecutive records adds 2**32 µs (expelliarmus adds 2**32 on any drop; the two agree on
monotonic files). expelliarmus returns bits 31..28 as the polarity; this reader, like
OpenEB, uses bit 28 only. The N-CARS sample has no geometry lines: pass ``sensor_size``.

Bad input raises :class:`~eventssm.events.EventFileError` with the byte offset: a trailing
partial word/record (truncated file), a missing or unterminated header, a header that names
another encoding or an impossible geometry, reserved word types, events outside the sensor.
The kernels check every event against the sensor while they decode, so the three formats are
registered ``validated`` (``read_events`` skips its generic bounds pass). Decoding goes
through the shared block reader :mod:`eventssm.io._blocks`; a DAT data region of 8 MiB or
more is decoded on several threads (same result as one thread).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, SensorSize
from eventssm.io import _blocks as B
from eventssm.io._base import FormatSpec, register
from eventssm.io.kernels import prophesee as K

log = logging.getLogger(__name__)

__all__ = [
    "PercentHeader",
    "encode_dat",
    "encode_evt2",
    "encode_evt3",
    "iter_dat",
    "iter_evt2",
    "iter_evt3",
    "parse_percent_header",
    "read_dat",
    "read_evt2",
    "read_evt3",
]

HEADER_MAX_BYTES = 1 << 20
HEAD_BYTES = B.HEAD_BYTES  # first read: the header and, for small files, all the data
EVT_MAX_COORD = 2048  # EVT 2.0 / 3.0 coordinates have 11 bits

# OpenEB raw_constants.h (plugins_map): legacy plugins whose RAW headers carry no geometry.
LEGACY_PLUGIN_GEOMETRY = {
    "hal_plugin_gen3_fx3": (640, 480),
    "hal_plugin_gen31_fx3": (640, 480),
    "hal_plugin_gen31_evk2": (640, 480),
    "hal_plugin_gen31_evk3": (640, 480),
    "hal_plugin_gen4_fx3": (1280, 720),
    "hal_plugin_gen4_evk2": (1280, 720),
    "hal_plugin_gen41_evk2": (1280, 720),
    "hal_plugin_gen41_evk3": (1280, 720),
}


# ---------------------------------------------------------------------------------------------
# "% " headers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PercentHeader:
    """A parsed ``% keyword value`` header.

    Attributes:
        lines: header lines without the leading ``"% "`` and the line end.
        fields: lower-case keyword -> ``(value, byte offset of the line)``; first one wins.
        data_start: byte offset of the first data byte.
        ended: whether a ``% end`` line closed the header.
    """

    lines: tuple[str, ...]
    fields: dict[str, tuple[str, int]]
    data_start: int
    ended: bool

    def get(self, key: str) -> str | None:
        """Value of keyword ``key`` (lower case), or None."""
        v = self.fields.get(key)
        return None if v is None else v[0]


def parse_percent_header(
    data: bytes, path: str | os.PathLike | None = None, *, complete: bool = True
) -> PercentHeader:
    """Parse the leading ``"% "`` lines of ``data``.

    Args:
        data: the file's first bytes.
        path: for error messages.
        complete: ``data`` is the whole file. When False, a header line still open at the
            end of ``data`` is an error (header too long) rather than the end of the file.

    Returns:
        The header; ``data_start`` is 0 when ``data`` does not start with ``"% "``.
    """
    pos = 0
    lines: list[str] = []
    fields: dict[str, tuple[str, int]] = {}
    ended = False
    while data.startswith(b"% ", pos):
        nl = data.find(b"\n", pos)
        if nl < 0:
            if not complete:
                raise EventFileError(
                    path, f"header line not terminated within {len(data)} bytes", pos
                )
            nl = len(data)
        line = data[pos + 2 : nl].decode("latin-1").rstrip("\r")
        start, pos = pos, min(nl + 1, len(data))
        lines.append(line)
        parts = line.split(None, 1)
        if parts:
            key = parts[0].lower()
            if key == "end" and len(parts) == 1:
                ended = True
                break
            fields.setdefault(key, (parts[1].strip() if len(parts) > 1 else "", start))
    return PercentHeader(tuple(lines), fields, pos, ended)


def _header_continues(head: bytes) -> bool:
    """Whether the ``"% "`` header may go on past ``head`` (a first part of a longer file)."""
    try:
        h = parse_percent_header(head, complete=False)
    except EventFileError:  # a header line runs past the end of head
        return True
    return not h.ended and h.data_start == len(head)


def _read_header(path: Path) -> tuple[PercentHeader, int, bytes]:
    """``(header, file size, head)``: ``head`` is the file's first bytes as read (at least the
    header; the whole file when it is small), so the data they hold need not be read again."""
    size, head = B.read_head(path, HEAD_BYTES)
    if HEAD_BYTES <= len(head) < size and _header_continues(head):
        size, head = B.read_head(path, HEADER_MAX_BYTES)
    eof = len(head) >= size or len(head) < min(size, HEAD_BYTES)
    return parse_percent_header(head, path, complete=eof), size, head


def _raw_encoding(h: PercentHeader) -> str | None:
    """Encoding named by a RAW header: 'evt2', 'evt3', another lower-case name, or None."""
    names = []
    fmt = h.get("format")
    if fmt:
        tag = fmt.split(";", 1)[0].strip().upper().replace(".", "")
        names.append({"EVT2": "evt2", "EVT3": "evt3", "EVT21": "evt21"}.get(tag, tag.lower()))
    evt = h.get("evt")
    if evt:
        names.append({"2.0": "evt2", "3.0": "evt3", "2.1": "evt21"}.get(evt, f"evt {evt}"))
    if not names:
        return None
    if len(set(names)) > 1:
        return "conflicting"
    return names[0]


def _head_header(head: bytes) -> PercentHeader | None:
    try:
        return parse_percent_header(head, complete=True)
    except EventFileError:
        return None


def _sniff_evt2(head: bytes) -> bool:
    h = _head_header(head)
    return h is not None and _raw_encoding(h) == "evt2"


def _sniff_evt3(head: bytes) -> bool:
    h = _head_header(head)
    return h is not None and _raw_encoding(h) == "evt3"


def _sniff_dat(head: bytes) -> bool:
    h = _head_header(head)
    if h is None or not h.lines or _raw_encoding(h) is not None:
        return False
    return "version" in h.fields or any(
        line.lower().startswith("data file containing") for line in h.lines
    )


def _header_int(path: Path, h: PercentHeader, key: str, value: str, lo: int, hi: int) -> int:
    off = h.fields[key][1] if key in h.fields else 0
    if not re.fullmatch(r"\d{1,9}", value.strip()):
        raise EventFileError(path, f"header {key} value {value!r} is not a whole number", off)
    v = int(value)
    if not lo <= v <= hi:
        raise EventFileError(path, f"header {key} {v} is outside {lo}..{hi}", off)
    return v


def _raw_geometry(path: Path, h: PercentHeader) -> tuple[int, int, str] | None:
    """(width, height, source) from a RAW header, or None."""
    fmt = h.get("format")
    if fmt and ";" in fmt:
        kv = {}
        for part in fmt.split(";")[1:]:
            if "=" in part:
                k, v = part.split("=", 1)
                kv[k.strip().lower()] = v.strip()
        if "width" in kv or "height" in kv:
            w = _header_int(path, h, "format", kv.get("width", ""), 1, EVT_MAX_COORD)
            ht = _header_int(path, h, "format", kv.get("height", ""), 1, EVT_MAX_COORD)
            return w, ht, "header format line"
    geom = h.get("geometry")
    if geom:
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", geom)
        if not m:
            raise EventFileError(path, f"header geometry {geom!r} is not WxH", h.fields["geometry"][1])
        w = _header_int(path, h, "geometry", m.group(1), 1, EVT_MAX_COORD)
        ht = _header_int(path, h, "geometry", m.group(2), 1, EVT_MAX_COORD)
        return w, ht, "header geometry line"
    if "width" in h.fields and "height" in h.fields:
        w = _header_int(path, h, "width", h.fields["width"][0], 1, EVT_MAX_COORD)
        ht = _header_int(path, h, "height", h.fields["height"][0], 1, EVT_MAX_COORD)
        return w, ht, "header width/height lines"
    plugin = h.get("plugin_name")
    if plugin in LEGACY_PLUGIN_GEOMETRY:
        w, ht = LEGACY_PLUGIN_GEOMETRY[plugin]
        return w, ht, f"camera plugin {plugin}"
    return None


def _raw_camera(h: PercentHeader) -> str | None:
    plugin = h.get("plugin_name")
    if plugin:
        return plugin
    integrator = h.get("camera_integrator_name") or h.get("integrator_name")
    gen = h.get("sensor_generation") or h.get("generation")
    if integrator and gen:
        return f"{integrator} sensor generation {gen}"
    return integrator


def _resolve_sensor(
    path: Path,
    header_geom: tuple[int, int, str] | None,
    sensor_size: SensorSize | None,
    what: str,
    limit: tuple[int, int],
) -> tuple[SensorSize, str]:
    """The sensor size to decode with: the caller's override, else the header's, else ask."""
    if sensor_size is not None:
        ss = tuple(int(v) for v in sensor_size)
        if len(ss) not in (2, 3) or min(ss) < 1:
            raise EventFileError(path, f"invalid sensor_size {ss}: expected (width, height, 2)")
        size = (ss[0], ss[1], ss[2] if len(ss) == 3 else 2)
        if header_geom is not None and header_geom[:2] != size[:2]:
            log.info("%s: sensor_size %s overrides the %s (%dx%d)", path, size[:2],
                     header_geom[2], header_geom[0], header_geom[1])
        return size, "argument"
    if header_geom is None:
        raise EventFileError(
            path,
            f"the {what} header gives no sensor geometry; pass sensor_size=(width, height, 2) "
            "(--sensor-size on the command line)",
        )
    w, h, source = header_geom
    if w > limit[0] or h > limit[1]:
        raise EventFileError(path, f"{source} gives {w}x{h}, beyond the format's {limit[0]}x{limit[1]}")
    return (w, h, 2), source


# ---------------------------------------------------------------------------------------------
# RAW (EVT 2.0 / EVT 3.0)
# ---------------------------------------------------------------------------------------------


def _describe_evt2(raw: bytes) -> str:
    w = int.from_bytes(raw, "little")
    return f"EVT 2.0 word 0x{w:08X} has reserved type 0x{w >> 28:X} (not an EVT 2.0 stream?)"


def _describe_evt3(raw: bytes) -> str:
    w = int.from_bytes(raw, "little")
    return f"EVT 3.0 word 0x{w:04X} has reserved type 0x{w >> 12:X} (not an EVT 3.0 stream?)"


class _Plan(NamedTuple):
    """What a reader found in a file's header: how to decode its data region."""

    lay: B.BlockLayout
    start: int  # first data byte
    end: int  # file size
    sensor: SensorSize
    source: str  # where the sensor size came from
    meta: dict[str, Any]
    head: bytes  # the file's first bytes, already read


def _raw_setup(path: Path, sensor_size: SensorSize | None, encoding: str) -> _Plan:
    h, size, head = _read_header(path)
    named = _raw_encoding(h)
    label = {"evt2": "EVT 2.0", "evt3": "EVT 3.0"}[encoding]
    if named == "conflicting":
        raise EventFileError(path, "RAW header names two different encodings "
                             f"({h.get('evt')!r} and {h.get('format')!r})", 0)
    if named is not None and named != encoding:
        raise EventFileError(path, f"RAW header names the {named!r} encoding, not {label}", 0)
    if named is None:
        log.debug("%s: RAW header names no encoding; decoding as %s", path, label)
    geom = _raw_geometry(path, h)
    sensor, source = _resolve_sensor(path, geom, sensor_size, f"{label} RAW",
                                     (EVT_MAX_COORD, EVT_MAX_COORD))
    if encoding == "evt2":
        lay = B.BlockLayout("EVT 2.0", 4, "<u4", K.decode_evt2, K.evt2_state, K.evt2_bound,
                            (sensor[0], sensor[1]), _describe_evt2)
    else:
        lay = B.BlockLayout("EVT 3.0", 2, "<u2", K.decode_evt3, K.evt3_state, K.evt3_bound,
                            (sensor[0], sensor[1]), _describe_evt3)
    meta: dict[str, Any] = {"format": encoding, "sensor_size_source": source,
                            "header": {k: v for k, (v, _) in h.fields.items()}}
    camera = _raw_camera(h)
    if camera:
        meta["camera"] = camera
    return _Plan(lay, h.data_start, size, sensor, source, meta, head)


def _read_raw(path, sensor_size, encoding) -> Recording:
    path = Path(path)
    plan = _raw_setup(path, sensor_size, encoding)
    capacity = None
    if encoding == "evt3":  # the 12-per-word bound is rarely approached: typical streams
        # hold < 2 events per word, so start there; decode_all decodes a block in pieces
        # that fit and grows the output only when it is nearly full (a worst-case buffer
        # for a 220k-event file was 3.7M events, ~0.5 ms of fresh-page faults)
        n_words = (plan.end - plan.start) // 2
        capacity = min(plan.lay.bound(n_words),
                       2 * n_words + plan.lay.bound(B.FIT_MIN_UNITS))
    ev, _ = B.decode_all(path, plan.lay, plan.start, plan.end, plan.sensor, plan.source,
                         capacity=capacity, head=plan.head)
    return Recording(ev, plan.sensor, plan.meta)


def read_evt2(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read a Prophesee RAW file in EVT 2.0 encoding.

    Args:
        path: the ``.raw`` file.
        sensor_size: ``(width, height, 2)``; overrides the header, required when the header
            gives no geometry.

    Returns:
        Recording of CD events (``EVENT_DTYPE``: x, y int16; t int64 µs as stored; p bool).
    """
    return _read_raw(path, sensor_size, "evt2")


def read_evt3(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read a Prophesee RAW file in EVT 3.0 encoding (OpenEB time semantics).

    Args and returns as :func:`read_evt2`.
    """
    return _read_raw(path, sensor_size, "evt3")


def _iter_plan(path: Path, plan: _Plan, chunk_events: int,
               block_bytes: int) -> Iterator[Recording]:
    return B.chunks(path, plan.lay, plan.start, plan.end, plan.sensor, plan.source,
                    chunk_events, plan.meta, block_bytes)


def _iter_raw(path, chunk_events, sensor_size, encoding, block_bytes) -> Iterator[Recording]:
    path = Path(path)
    yield from _iter_plan(path, _raw_setup(path, sensor_size, encoding), chunk_events,
                          block_bytes)


def iter_evt2(path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None,
              *, block_bytes: int = B.ITER_BLOCK_BYTES) -> Iterator[Recording]:
    """Stream an EVT 2.0 RAW file as Recordings of at most ``chunk_events`` events.

    Memory is O(block_bytes + chunk_events); the decoder state (time base, wrap count) is
    carried across blocks, so the concatenated chunks equal :func:`read_evt2`.
    """
    return _iter_raw(path, chunk_events, sensor_size, "evt2", block_bytes)


def iter_evt3(path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None,
              *, block_bytes: int = B.ITER_BLOCK_BYTES) -> Iterator[Recording]:
    """Stream an EVT 3.0 RAW file as Recordings of at most ``chunk_events`` events.

    The decoder state (time high/low, wrap count, y, vector base x and polarity) is carried
    across blocks, so the concatenated chunks equal :func:`read_evt3`.
    """
    return _iter_raw(path, chunk_events, sensor_size, "evt3", block_bytes)


# ---------------------------------------------------------------------------------------------
# DAT
# ---------------------------------------------------------------------------------------------

DAT_LIMITS = {1: (512, 256), 2: (1 << 14, 1 << 14)}


def _describe_dat(raw: bytes) -> str:
    return f"DAT record {raw.hex()} is invalid"


def _dat_setup(path: Path, sensor_size: SensorSize | None) -> _Plan:
    h, size, head = _read_header(path)
    if not h.lines:
        raise EventFileError(path, "no DAT header: the file does not start with '% ' lines", 0)
    named = _raw_encoding(h)
    if named is not None:
        raise EventFileError(path, f"this is a Prophesee RAW file ({named}), not DAT", 0)
    version = 2
    if "version" in h.fields:
        version = _header_int(path, h, "version", h.fields["version"][0], 0, 10**6)
        if version not in DAT_LIMITS:
            raise EventFileError(path, f"unsupported DAT version {version} (known: 1, 2)",
                                 h.fields["version"][1])
    limit = DAT_LIMITS[version]
    start = h.data_start
    if size < start + 2:
        raise EventFileError(path, "truncated DAT file: the event type and size bytes are "
                             "missing after the header", start)
    if len(head) >= start + 2:
        ev_type, ev_size = head[start : start + 2]
    else:
        with open(path, "rb") as f:
            f.seek(start)
            ev_type, ev_size = f.read(2)
    if ev_type == 0x0E:
        raise EventFileError(path, "DAT file holds external trigger events (type 0x0E), "
                             "not CD events", start)
    if ev_type not in (0x00, 0x0C):
        raise EventFileError(path, f"unsupported DAT event type 0x{ev_type:02X} "
                             "(CD events are 0x00 or 0x0C)", start)
    if ev_size != 8:
        raise EventFileError(path, f"DAT event size is {ev_size}, expected 8", start + 1)
    geom = None
    if "width" in h.fields or "height" in h.fields:
        w = _header_int(path, h, "width", h.get("width") or "", 1, limit[0])
        ht = _header_int(path, h, "height", h.get("height") or "", 1, limit[1])
        geom = (w, ht, "header width/height lines")
    sensor, source = _resolve_sensor(path, geom, sensor_size, "DAT", limit)
    lay = B.BlockLayout("DAT", 8, "<u4", K.decode_dat, K.dat_state, K.dat_bound,
                        (sensor[0], sensor[1], version), _describe_dat)
    meta: dict[str, Any] = {"format": "dat", "dat_version": version, "dat_event_type": ev_type,
                            "sensor_size_source": source,
                            "header": {k: v for k, (v, _) in h.fields.items()}}
    return _Plan(lay, start + 2, size, sensor, source, meta, head)


def _decode_dat_parallel(path: Path, plan: _Plan, threads: int) -> np.ndarray | None:
    """Decode a DAT data region on ``threads`` threads; None when a record raised a flag.

    Every record is one event, so segment ``k`` writes from its first record's index on. Its
    decoder state is the raw timestamp of the record before it, read directly, and no wrap
    shift; the wraps each segment finds are added to the later segments' timestamps
    afterwards (a wrap takes 71.6 minutes of recording, so that pass is rare). The result
    equals the one-thread decode; on a flag the caller decodes again on one thread, which
    names the offending record.
    """
    lay = plan.lay
    segs = B.split(plan.start, plan.end, lay.unit, threads * B.SEGMENTS_PER_THREAD)
    out = np.empty((plan.end - plan.start) // lay.unit, EVENT_DTYPE)
    positions = [(a - plan.start) // lay.unit for a, _ in segs]
    with B.open_fd(path) as fd:
        states = [K.dat_state()]
        for a, _ in segs[1:]:
            prev = os.pread(fd, 4, a - lay.unit)  # timestamp of the record before the segment
            if len(prev) != 4:
                raise EventFileError(path, "file shrank while it was being read", a - lay.unit)
            states.append(np.array([int.from_bytes(prev, "little"), 0], dtype=np.int64))
        results = B.decode_segments(fd, path, lay, segs, out, positions, states, threads)
    if any(flags for flags, _ in results):
        return None
    shift = 0
    for (a, b), state in zip(segs, states, strict=True):
        if shift:
            i, j = (a - plan.start) // lay.unit, (b - plan.start) // lay.unit
            out["t"][i:j] += shift
        shift += int(state[1])
    return out


def read_dat(path: str | os.PathLike, sensor_size: SensorSize | None = None, *,
             threads: int | None = None) -> Recording:
    """Read a Prophesee DAT file of CD events (version 1 or 2).

    Args:
        path: the ``.dat`` file.
        sensor_size: ``(width, height, 2)``; overrides the header, required when the header
            has no ``% Width`` / ``% Height`` lines (N-CARS files have none).
        threads: threads that decode the file (default: one below 8 MiB of data, else the
            available CPUs, see :func:`eventssm.io._blocks.read_threads`); the result does not
            depend on it.

    Returns:
        Recording of CD events (``EVENT_DTYPE``).
    """
    path = Path(path)
    plan = _dat_setup(path, sensor_size)
    B.check_whole_units(path, plan.lay, plan.start, plan.end)
    ev = None
    n_threads = B.read_threads(threads, plan.end - plan.start)
    if n_threads > 1:
        ev = _decode_dat_parallel(path, plan, n_threads)
    if ev is None:
        ev, _ = B.decode_all(path, plan.lay, plan.start, plan.end, plan.sensor, plan.source,
                             head=plan.head)
    return Recording(ev, plan.sensor, plan.meta)


def iter_dat(path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None,
             *, block_bytes: int = B.ITER_BLOCK_BYTES) -> Iterator[Recording]:
    """Stream a DAT file as Recordings of at most ``chunk_events`` events (O(block) memory)."""
    path = Path(path)
    return _iter_plan(path, _dat_setup(path, sensor_size), chunk_events, block_bytes)


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------

register(FormatSpec(
    "evt2", "Prophesee RAW, EVT 2.0 encoding (32-bit words; Gen3 default)", (".raw",),
    _sniff_evt2, read_evt2, iter_evt2, validated=True,
    encode=lambda rec: encode_evt2(rec.events, int(rec.sensor_size[0]), int(rec.sensor_size[1])),
))
register(FormatSpec(
    "evt3", "Prophesee RAW, EVT 3.0 encoding (16-bit vectorised words; Gen4/IMX636 default)",
    (".raw",), _sniff_evt3, read_evt3, iter_evt3, validated=True,
    encode=lambda rec: encode_evt3(rec.events, int(rec.sensor_size[0]), int(rec.sensor_size[1])),
))
register(FormatSpec(
    "dat", "Prophesee DAT, decoded CD events (8-byte records; N-CARS, ATIS datasets)", (".dat",),
    _sniff_dat, read_dat, iter_dat, validated=True,
    encode=lambda rec: encode_dat(rec.events, int(rec.sensor_size[0]), int(rec.sensor_size[1])),
))


# the encoders, importable from here as before (the registrations above call them by name)
from eventssm.io.prophesee_encode import encode_dat, encode_evt2, encode_evt3  # noqa: E402

"""AEDAT 2.0, 3.1 and 4.0 (iniVation / jAER / DV) readers, and reference encoders.

Bit layouts
===========

AEDAT 2.0 (jAER, ``#!AER-DAT2.0``)
----------------------------------
Text header: lines beginning with ``#`` (``\\r\\n`` or ``\\n``); the first line that does not
begin with ``#`` starts the data. This reader also ends the header at a ``#`` line holding
control bytes (a binary record whose first byte happens to be 0x23), which jAER itself would
misread. The camera comes from ``# AEChip: <java class>`` (last dotted component, e.g.
``ch.unizh.ini.jaer.chip.retina.DVS128``, ``eu.seebetter.ini.chips.davis.DAVIS240C``,
``...Davis346red``), else from ``# HardwareInterface: DVS128-V1 ...``.
Data: records of 8 bytes, big-endian ``u32 address, u32 timestamp`` (1 µs tick); a file whose
data length is not a multiple of 8 is rejected with the offset of the partial record.

DVS128 address (jAER ``ch.unizh.ini.jaer.chip.retina.DVS128.Extractor``)::

    bit  31      special event          -> skipped
    bit  15      sync / external input  -> skipped
    bits 14..8   y (counted upwards)    y = 127 - raw
    bits  7..1   x (mirrored)           x = 127 - raw
    bit   0      polarity, 0 = ON       p = (bit0 == 0)

DAVIS address (jAER ``eu.seebetter.ini.chips.DavisChip``: ``YSHIFT=22, YMASK=511<<22,
XSHIFT=12, XMASK=1023<<12, POLMASK=1<<11, EXTERNAL_INPUT_EVENT_ADDR=1<<10``; APS samples and
IMU words have bit 31 set)::

    bit  31      APS sample or IMU word -> skipped (counted in meta["aps_imu_words"])
    bits 30..22  y                      y = H - 1 - raw
    bits 21..12  x                      x = W - 1 - raw
    bit  11      polarity, 1 = ON       p = bit11
    bit  10      external input event   -> skipped (counted in meta["special_words"])

Every reader of this package returns image coordinates: origin at the top-left pixel, x to
the right, y downwards (rows count from the top), as DV, libcaer, OpenEB and the published
datasets show them. jAER stores y counting upwards from the bottom row for both cameras (it
draws with OpenGL), so this reader turns y round: ``y = H - 1 - raw``. It keeps jAER's mirror
of x. libcaer's DVS128 driver makes the same two flips (``x = 127 - raw``, "flip along X axis,
to correct for flipped camera"; ``y = 127 - raw``, "to convert to CG format"), so an AEDAT 2.0
DVS128 recording read here equals the same scene written by libcaer in AEDAT 3.1, and a person
standing up in front of a DVS128 moves mostly in rows of small y (tests/io/test_orientation.py).
Camera sizes: DVS128 128x128, DAVIS240A/B/C 240x180, DAVIS346* 346x260, DAVIS640 640x480.
Unknown camera: pass ``sensor_size`` (a 128x128 size selects the DVS128 layout, any other
size the DAVIS layout); otherwise :class:`EventFileError`.

AEDAT 3.1 (cAER / libcaer, ``#!AER-DAT3.1``)
--------------------------------------------
Text header of ``#`` lines ending with ``#!END-HEADER\\r\\n``; the camera is named by
``#Source <id>: <name>`` (e.g. ``DVS128``). Then packets, each a 28-byte little-endian header
(libcaer ``events/common.h``, ``struct caer_event_packet_header``)::

    i16 eventType  i16 eventSource  i32 eventSize  i32 eventTSOffset
    i32 eventTSOverflow  i32 eventCapacity  i32 eventNumber  i32 eventValid

followed by ``eventSize * eventNumber`` bytes. Only ``eventType == 1`` (``POLARITY_EVENT``)
packets hold polarity events (libcaer ``events/polarity.h``, ``struct caer_polarity_event``,
8 bytes)::

    u32 data:  bit 0 valid mark, bit 1 polarity (1 = ON), bits 16..2 y, bits 31..17 x
    i32 timestamp (µs);  t = (eventTSOverflow << 31) | timestamp   (TS_OVERFLOW_SHIFT = 31)

Invalid events (valid bit 0) are skipped; other packet types are skipped by their size.
Coordinates have their origin at the top left (libcaer). No public AEDAT 3.1 recording was
found, so the tests build files with :func:`encode_aedat3` from this description.
A source name not in the camera table may carry its size as ``WxH`` (e.g.
``eventssm-64x64``, what :func:`encode_aedat3` writes for such sensors).

AEDAT 4.0 (DV, ``#!AER-DAT4.0\\r\\n``)
-------------------------------------
``i32`` length, then a FlatBuffer ``IOHeader`` (file identifier ``IOHE``) with fields
``compression`` (enum i32: 0 NONE, 1 LZ4, 2 LZ4_HIGH, 3 ZSTD, 4 ZSTD_HIGH), ``dataTablePosition``
(i64, -1 = no table) and ``infoNode`` (string: XML ``<dv>`` tree whose ``outInfo`` node lists
each stream: ``typeIdentifier`` EVTS/IMUS/TRIG/FRME and, for events, ``info/sizeX``,
``info/sizeY``, ``info/source``). Then packets until ``dataTablePosition`` (or the end):
``i32 streamId, i32 size`` and ``size`` bytes of one compressed (LZ4 frame or Zstandard frame)
size-prefixed FlatBuffer. For ``EVTS`` packets the root table's field 0 is a vector of
16-byte ``Event`` structs ``i64 t (µs), i16 x, i16 y, bool on`` + 3 padding bytes.
Packets of other streams (IMU, triggers, frames) are skipped without decompression; the
data table (``FTAB``) after ``dataTablePosition`` is not read. FlatBuffer offsets are decoded
by hand with bounds checks (FlatBuffers binary format: a ``u32`` root offset, tables that
start with an ``i32`` offset back to their vtable of ``u16`` field offsets, vectors as ``u32``
length + elements).

Sources: jAER (SensorsINI/jaer) ``DVS128.java`` and ``DavisChip``/``Davis346BaseCamera``
constants; libcaer ``include/libcaer/events/common.h`` and ``polarity.h`` (docs.ros.org
libcaer API listing); DV FlatBuffer schemas ``ioheader.fbs`` and ``events.fbs`` (as shipped
with the ``aedat`` Rust decoder, neuromorphicsystems/aedat); the layout of the real
``sample.aedat4`` (tonic's test data).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, SensorSize, copy_events
from eventssm.io import _blocks as B
from eventssm.io._base import FormatSpec, register
from eventssm.io.kernels import aedat as _k

log = logging.getLogger(__name__)

__all__ = [
    "camera_info",
    "encode_aedat2",
    "encode_aedat3",
    "encode_aedat4",
    "iter_aedat2",
    "iter_aedat3",
    "iter_aedat4",
    "read_aedat2",
    "read_aedat3",
    "read_aedat4",
]

MAGIC2 = b"#!AER-DAT2.0"
MAGIC3 = b"#!AER-DAT3.1"
MAGIC4 = b"#!AER-DAT4.0\r\n"
END_HEADER3 = b"#!END-HEADER"

#: Largest decompressed AEDAT 4.0 packet accepted (bytes); a bigger one is reported as corrupt
#: instead of being allocated (DV writes packets of at most a few MiB).
MAX_PACKET_BYTES = 1 << 28

_AEDAT3_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes
_POLARITY_EVENT = 1
_COMPRESSION = {0: "none", 1: "lz4", 2: "lz4_high", 3: "zstd", 4: "zstd_high"}
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f]")
#: The header lines at the start of an AEDAT 2.0 file, as a regular expression (the readable
#: definition; :func:`_header2_lines` finds the same end with numpy, ~50x faster on the
#: hundreds of KB of jAER preferences some headers carry).
_HEADER2 = re.compile(rb"(?:#[^\x00-\x08\x0a-\x1f]*\r?\n)*")
_HEADER2_LAST = re.compile(rb"#[^\x00-\x08\x0a-\x1f]*\r?\Z")
_AECHIP = re.compile(rb"^#[ \t]*AEChip:([^\r\n]*)", re.M)
_HWIF = re.compile(rb"^#[ \t]*HardwareInterface:([^\r\n]*)", re.M)
_SIZE_IN_NAME = re.compile(r"(?<![0-9])([1-9][0-9]{0,4})x([1-9][0-9]{0,4})(?![0-9])")


# --------------------------------------------------------------------------------------------
# cameras


def camera_info(name: str | None) -> tuple[str, str, int, int] | None:
    """Look a camera name up: ``(canonical, layout, width, height)`` or ``None``.

    ``name`` may be a jAER class path (``eu.seebetter.ini.chips.davis.DAVIS240C``), a hardware
    interface string (``DVS128-V1 0298``) or a cAER source name (``DVS128``). ``layout`` is
    ``"dvs128"`` or ``"davis"`` (AEDAT 2.0 address layout). A name with no known model but an
    embedded ``WxH`` (``eventssm-64x64``) gives ``("WxH", "davis", W, H)``.
    """
    if not name:
        return None
    short = name.strip().rsplit(".", 1)[-1]
    key = re.sub(r"[\s_\-]", "", short).upper()
    if key.startswith(("DVS128", "TMPDIFF128")):
        return "DVS128", "dvs128", 128, 128
    for model, w, h in (("DAVIS240", 240, 180), ("DAVIS346", 346, 260), ("DAVIS640", 640, 480)):
        if key.startswith(model):
            return model, "davis", w, h
    m = _SIZE_IN_NAME.search(name)
    if m:
        w, h = int(m.group(1)), int(m.group(2))
        return f"{w}x{h}", "davis", w, h
    return None


def _sensor(path, camera: str | None, sensor_size, what: str) -> tuple[SensorSize, tuple | None]:
    """Resolve ``(sensor_size, camera_info)``: the argument wins, then the header's camera."""
    info = camera_info(camera)
    if sensor_size is not None:
        w, h = int(sensor_size[0]), int(sensor_size[1])
        p = int(sensor_size[2]) if len(sensor_size) > 2 else 2
        return (w, h, p), info
    if info is None:
        named = f"names camera {camera!r}, which is not a known model" if camera else (
            "names no camera")
        raise EventFileError(
            path, f"{what} header {named}; give the sensor size (--sensor-size WxH, or "
            "sensor_size=(W, H, 2))")
    return (info[2], info[3], 2), info


def _alloc(n: int) -> np.ndarray:
    return np.empty(max(int(n), 0), dtype=EVENT_DTYPE)


def _trim(out: np.ndarray, n: int) -> np.ndarray:
    """Shrink a kernel's upper-bound buffer to ``n`` events in place (no copy when possible)."""
    if n == len(out):
        return out
    try:
        out.resize(n, refcheck=False)
        return out
    except ValueError:
        return copy_events(out[:n])


def _file_size(f) -> int:
    return os.fstat(f.fileno()).st_size


def _read_rest(f, path, start: int) -> np.ndarray:
    """The rest of open file ``f`` from offset ``start`` as a fresh ``uint8`` array."""
    return _read_span(f, path, start, _file_size(f))


def _read_span(f, path, start: int, end: int) -> np.ndarray:
    """Bytes ``[start, end)`` of open file ``f`` as a fresh ``uint8`` array (one readinto).

    Read into a numpy buffer (large ones get huge pages) rather than a ``bytes`` object,
    which would cost a page fault per 4 KiB.
    """
    buf = np.empty(max(0, end - start), dtype=np.uint8)
    f.seek(start)
    mv = memoryview(buf)
    got = 0
    while got < len(buf):
        r = f.readinto(mv[got:])
        if not r:
            raise EventFileError(path, "file shrank while being read", start + got)
        got += r
    return buf


# --------------------------------------------------------------------------------------------
# AEDAT 2.0


def _sniff2(head: bytes) -> bool:
    return head.startswith((MAGIC2 + b"\r\n", MAGIC2 + b"\n"))


def _header2_end(path, buf: bytes, eof: bool) -> int | None:
    """End of the AEDAT 2.0 ``#`` header in ``buf`` (a file's first bytes), or ``None`` when
    more bytes are needed to tell.

    One regex pass (headers with jAER preferences reach hundreds of KB): header lines are
    ``#`` + bytes without control characters (tab allowed) + ``\r?\n``; a last line without
    a newline counts when the file ends there.
    """
    if len(buf) < len(MAGIC2) + 2 and not eof:
        return None
    if not buf.startswith(MAGIC2) or not re.match(rb"\r?\n", buf[len(MAGIC2):len(MAGIC2) + 2]):
        raise EventFileError(path, f"not an AEDAT 2.0 file: starts with {bytes(buf[:16])!r}", 0)
    end = _header2_lines(buf)
    if eof:
        return len(buf) if _HEADER2_LAST.match(buf, end) else end
    rest = buf[end : end + (1 << 20)]
    if not rest.startswith(b"#") or b"\n" in rest or _CONTROL.search(rest):
        return end
    return None


_FIRST_DATA_LINE = re.compile(rb"\n[^#]")


def _header2_lines(buf: bytes) -> int:
    """End of the run of complete header lines at the start of ``buf``.

    Equals ``_HEADER2.match(buf).end()``: lines ``#`` + bytes that are not control
    characters (tab allowed) + ``\r?\n``; the run ends at the start of the first line that
    breaks the rule (or of the last, unterminated line).
    """
    # only bytes up to the first line that does not start with '#' can matter: cut there
    # (one C scan) instead of running the array passes over a small file's records too
    first_data = _FIRST_DATA_LINE.search(buf)
    if first_data:
        buf = buf[: first_data.end()]
    a = np.frombuffer(buf, dtype=np.uint8)
    nl = np.flatnonzero(a == 0x0A)
    starts = np.concatenate(([0], nl + 1))  # the last start begins an unterminated line
    # a line breaks the rule when it does not start with '#' ...
    first = np.flatnonzero(a[starts[:-1]] != 0x23)
    bad_line = int(first[0]) if len(first) else len(nl)
    # ... or holds a control character other than tab, its newline, and one '\r' before it
    ctrl = (a < 0x20) & (a != 0x09)
    ctrl[nl] = False
    cr = nl[(nl > 0)] - 1
    ctrl[cr[a[cr] == 0x0D]] = False
    pos = np.flatnonzero(ctrl[: starts[bad_line]])
    if len(pos):
        bad_line = min(bad_line, int(np.searchsorted(nl, pos[0])))
    return int(starts[bad_line])


def _header2_facts(header: bytes) -> dict:
    facts = {"aechip": None, "hardware_interface": None}
    for key, pattern in (("aechip", _AECHIP), ("hardware_interface", _HWIF)):
        m = pattern.search(header)
        if m and m.group(1).strip():
            facts[key] = m.group(1).strip().decode("latin-1")
    return facts


def _header2(f, path) -> tuple[dict, int, bytearray]:
    """Parse the header at the start of file ``f``; leave ``f`` at the first record.

    Returns ``(facts, data offset, head)``; ``head`` holds the bytes read from the start of
    the file (the header and, for a small file, all its records).
    """
    buf = bytearray()  # writable: the block reader decodes a small file's records in place
    # a file of up to 1 MiB is read at once (no second open and read for its records)
    first = _file_size(f) if _file_size(f) <= 1 << 20 else 1 << 16
    while True:
        more = bytearray(first if not buf else len(buf))
        del more[f.readinto(more) or 0 :]
        if buf:
            buf += more
        else:
            buf = more
        end = _header2_end(path, buf, not more)
        if end is not None:
            f.seek(end)
            return _header2_facts(buf[:end]), end, buf


def _camera2(facts: dict) -> str | None:
    """The camera an AEDAT 2.0 header names: the AEChip class, else the hardware interface."""
    for name in (facts["aechip"], facts["hardware_interface"]):
        if name and camera_info(name) is not None:
            return name.rsplit(".", 1)[-1]
    chip = facts["aechip"] or facts["hardware_interface"]
    return chip.rsplit(".", 1)[-1] if chip else None


def _layout2(path, facts, sensor_size):
    camera = _camera2(facts)
    sensor, info = _sensor(path, camera, sensor_size, "AEDAT 2.0")
    if info is not None:
        layout, fw, fh = info[1], info[2], info[3]
    else:
        is_davis = camera is not None and "DAVIS" in camera.upper()
        layout = "dvs128" if (sensor[:2] == (128, 128) and not is_davis) else "davis"
        fw, fh = sensor[0], sensor[1]
    return camera, sensor, layout, fw, fh


def _plan2(path, f, sensor_size):
    """Header, layout and block decoder of the AEDAT 2.0 file open as ``f``."""
    facts, start, head = _header2(f, path)
    size = _file_size(f)
    camera, sensor, layout, fw, fh = _layout2(path, facts, sensor_size)
    rem = (size - start) % 8
    if rem:
        raise EventFileError(
            path, f"AEDAT 2.0 data ends with a partial record ({rem} of 8 bytes)", size - rem)
    # x and y are stored as int16: a sensor wider than that range is checked against it
    w, h = min(sensor[0], 1 << 15), min(sensor[1], 1 << 15)
    if layout == "dvs128":
        kernel, args = _k.aedat2_dvs128, (w, h)
    else:
        kernel, args = _k.aedat2_davis, (fw, fh, w, h)

    def outside(raw: bytes, index: int) -> str:
        addr, ts = struct.unpack(">II", raw)
        return (f"record {index} (address 0x{addr:08x}, t={ts}) decodes outside the "
                f"{sensor[0]}x{sensor[1]} sensor ({layout} layout)")

    lay = B.BlockLayout("AEDAT 2.0", 8, "<u4", kernel, _k.aedat2_state, _k.aedat2_bound, args,
                        lambda raw: f"AEDAT 2.0 record {raw.hex()} is invalid", outside)
    meta = {"format": "aedat2", "camera": camera, "layout": layout}
    return lay, start, size, sensor, meta, head


def read_aedat2(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read an AEDAT 2.0 (jAER) file.

    Args:
        path: the ``.aedat`` file.
        sensor_size: ``(W, H, 2)`` when the header names no known camera (overrides it).

    Returns:
        Recording: events ``EVENT_DTYPE`` (N,), t in µs as stored (u32 widened to int64);
        meta: ``format``, ``camera``, ``layout`` (``dvs128``/``davis``), ``aps_imu_words``,
        ``special_words``, ``skipped_words`` (their sum), ``header_bytes``.
    """
    path = Path(path)
    with open(path, "rb") as f:
        lay, start, size, sensor, meta, head = _plan2(path, f, sensor_size)
    state = lay.new_state()
    events, _ = B.decode_all(path, lay, start, size, sensor, meta["layout"], head=head,
                             state=state)
    n_aps, n_special = int(state[0]), int(state[1])
    meta.update(aps_imu_words=n_aps, special_words=n_special, skipped_words=n_aps + n_special,
                header_bytes=start)
    return Recording(events, sensor, meta)


def iter_aedat2(
    path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None
) -> Iterator[Recording]:
    """Stream an AEDAT 2.0 file in chunks of at most ``chunk_events`` events.

    Reads blocks of 256 KiB (32768 records), so memory stays O(block + chunk).
    Concatenated chunks equal :func:`read_aedat2`.
    """
    path = Path(path)
    with open(path, "rb") as f:
        lay, start, size, sensor, meta, _ = _plan2(path, f, sensor_size)
    yield from B.chunks(path, lay, start, size, sensor, meta["layout"], chunk_events, meta,
                        B.ITER_BLOCK_BYTES)


# --------------------------------------------------------------------------------------------
# AEDAT 3.1


def _sniff3(head: bytes) -> bool:
    return head.startswith((MAGIC3 + b"\r\n", MAGIC3 + b"\n"))


def _header3(f, path) -> tuple[dict[int, str], int]:
    """Parse the AEDAT 3.1 header; return ``({source_id: name}, data_offset)``."""
    first = f.readline(256)
    if not first.startswith(MAGIC3) or first[len(MAGIC3):].strip() != b"":
        raise EventFileError(path, f"not an AEDAT 3.1 file: first line {first[:40]!r}", 0)
    pos = len(first)
    sources: dict[int, str] = {}
    while True:
        line = f.readline(1 << 20)
        if not line.startswith(b"#"):
            raise EventFileError(path, "AEDAT 3.1 header has no '#!END-HEADER' line", pos)
        pos += len(line)
        if line.rstrip(b"\r\n") == END_HEADER3:
            return sources, pos
        m = re.match(rb"#\s*Source\s+(-?\d+)\s*:\s*(.*?)\s*$", line)
        if m:
            sources[int(m.group(1))] = m.group(2).decode("latin-1")


def _packet3(path, hdr: bytes, offset: int, remaining: int):
    """Validate one AEDAT 3.1 packet header; return its fields and payload size."""
    etype, source, esize, tsoff, ovf, _cap, number, valid = _AEDAT3_HEADER.unpack(hdr)
    if esize < 1 or number < 0 or ovf < 0 or not 0 <= valid <= number:
        raise EventFileError(
            path, f"corrupt AEDAT 3.1 packet header (eventType={etype}, eventSize={esize}, "
            f"eventNumber={number}, eventValid={valid}, eventTSOverflow={ovf})", offset)
    payload = esize * number
    if payload > remaining:
        raise EventFileError(
            path, f"AEDAT 3.1 packet promises {number} events of {esize} bytes ({payload} bytes) "
            f"but only {remaining} bytes follow", offset)
    if etype == _POLARITY_EVENT and (esize != 8 or tsoff != 4):
        raise EventFileError(
            path, f"AEDAT 3.1 polarity packet with eventSize={esize}, eventTSOffset={tsoff} "
            "(expected 8 and 4)", offset)
    return etype, source, ovf, number, payload


def _sensor3(path, sources, polarity_source, sensor_size):
    name = sources.get(polarity_source) if polarity_source is not None else None
    if name is None or camera_info(name) is None:
        known = [s for s in sources.values() if camera_info(s) is not None]
        name = known[0] if known else (name or next(iter(sources.values()), None))
    sensor, _ = _sensor(path, name, sensor_size, "AEDAT 3.1")
    return name, sensor


def _decode3(path, buf, offsets, counts, overflows, sensor, base_offset):
    """Decode polarity packets whose events start at byte ``offsets`` of ``buf`` (uint8).

    The kernel reads 32-bit words. Packet sizes are multiples of 4 in every file cAER writes,
    so the events lie at word boundaries of ``buf``; otherwise the polarity payloads are first
    gathered into one aligned array.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    data, starts = buf, offsets
    if (offsets % 4).any():
        data = np.concatenate([buf[o : o + 8 * c] for o, c in zip(offsets, counts, strict=True)])
        starts = np.cumsum(8 * counts) - 8 * counts
    words = data[: len(data) // 4 * 4].view("<u4")
    out = _alloc(int(counts.sum()))
    n, n_invalid, bad = _k.aedat3_polarity(
        words, starts // 4, counts, np.asarray(overflows, dtype=np.int64), out, sensor[0],
        sensor[1])
    if bad >= 0:
        at = 4 * int(bad)
        if data is not buf:  # back to the byte offset in buf
            k = int(np.searchsorted(starts, at, side="right")) - 1
            at = int(offsets[k]) + at - int(starts[k])
        d = struct.unpack_from("<I", buf, at)[0]
        raise EventFileError(
            path, f"AEDAT 3.1 polarity event (x={(d >> 17) & 0x7FFF}, y={(d >> 2) & 0x7FFF}) "
            f"lies outside the {sensor[0]}x{sensor[1]} sensor", base_offset + at)
    return _trim(out, n), n_invalid


def read_aedat3(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read an AEDAT 3.1 (cAER) file: polarity packets only.

    Args:
        path: the ``.aedat`` file.
        sensor_size: ``(W, H, 2)`` when the header's source is not a known camera (overrides).

    Returns:
        Recording: events ``EVENT_DTYPE`` (N,), t = (tsOverflow << 31) | timestamp in µs;
        meta: ``format``, ``camera``, ``packets``, ``skipped_packets`` (non-polarity),
        ``invalid_events``, ``header_bytes``.
    """
    path = Path(path)
    with open(path, "rb") as f:
        sources, start = _header3(f, path)
        buf = _read_rest(f, path, start)
    mv = memoryview(buf)
    offsets, counts, overflows = [], [], []
    pol_sources = set()
    pos, n_packets, skipped = 0, 0, 0
    hs = _AEDAT3_HEADER.size
    while pos < len(buf):
        if len(buf) - pos < hs:
            raise EventFileError(
                path, f"truncated AEDAT 3.1 packet header ({len(buf) - pos} of {hs} bytes)",
                start + pos)
        etype, source, ovf, number, payload = _packet3(
            path, mv[pos : pos + hs], start + pos, len(buf) - pos - hs)
        n_packets += 1
        if etype == _POLARITY_EVENT:
            offsets.append(pos + hs)
            counts.append(number)
            overflows.append(ovf)
            pol_sources.add(source)
        else:
            skipped += 1
        pos += hs + payload
    if len(pol_sources) > 1:
        log.warning("%s: polarity packets from several sources %s are merged", path,
                    sorted(pol_sources))
    camera, sensor = _sensor3(path, sources, min(pol_sources) if pol_sources else None,
                              sensor_size)
    events, n_invalid = _decode3(path, buf, offsets, counts, overflows, sensor, start)
    meta = {"format": "aedat3", "camera": camera, "packets": n_packets,
            "skipped_packets": skipped, "invalid_events": n_invalid, "header_bytes": start}
    return Recording(events, sensor, meta)


def iter_aedat3(
    path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None
) -> Iterator[Recording]:
    """Stream an AEDAT 3.1 file packet by packet in chunks of at most ``chunk_events`` events.

    Memory: one packet plus one chunk. Concatenated chunks equal :func:`read_aedat3`.
    """
    path = Path(path)
    with open(path, "rb") as f:
        sources, start = _header3(f, path)
        size = _file_size(f)
        hs = _AEDAT3_HEADER.size
        # the sensor is named by the first polarity packet's source: peek at packet headers
        pol_source = None
        pos = start
        while pos < size and pol_source is None:
            hdr = f.read(hs)
            if len(hdr) < hs:
                break
            etype, source, _ovf, _n, payload = _packet3(path, hdr, pos, size - pos - hs)
            if etype == _POLARITY_EVENT:
                pol_source = source
            pos += hs + payload
            f.seek(pos)
        camera, sensor = _sensor3(path, sources, pol_source, sensor_size)
        f.seek(start)
        meta = {"format": "aedat3", "camera": camera}

        def packets() -> Iterator[np.ndarray]:
            pos = start
            while pos < size:
                hdr = f.read(hs)
                if len(hdr) < hs:
                    raise EventFileError(
                        path, f"truncated AEDAT 3.1 packet header ({len(hdr)} of {hs} bytes)",
                        pos)
                etype, _src, ovf, number, payload = _packet3(path, hdr, pos, size - pos - hs)
                if etype == _POLARITY_EVENT:
                    buf = np.empty(payload, dtype=np.uint8)
                    if f.readinto(buf) != payload:
                        raise EventFileError(path, "file shrank while being read", pos)
                    yield _decode3(path, buf, [0], [number], [ovf], sensor, pos + hs)[0]
                else:
                    f.seek(payload, 1)
                pos += hs + payload

        for ev in B.rechunk(packets(), chunk_events, reused=False):
            yield Recording(ev, sensor, dict(meta))


# --------------------------------------------------------------------------------------------
# AEDAT 4.0


def _sniff4(head: bytes) -> bool:
    return head.startswith(MAGIC4)


class _FlatBuffer:
    """Bounds-checked reads of the few FlatBuffer shapes AEDAT 4.0 uses (little-endian)."""

    def __init__(self, buf, path, offset: int, what: str):
        self.buf = buf
        self.n = len(buf)
        self.path = path
        self.offset = offset  # file offset the errors point at
        self.what = what

    def fail(self, why: str):
        raise EventFileError(self.path, f"corrupt {self.what} FlatBuffer: {why}", self.offset)

    def scalar(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.n:
            self.fail(f"offset {pos} + {size} outside its {self.n} bytes")
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def table(self, pos: int) -> tuple[int, tuple[int, ...]]:
        """``(table_pos, field_offsets)`` of the table at ``pos``."""
        vt = pos - self.scalar("<i", pos)
        vt_size = self.scalar("<H", vt)
        if vt_size < 4 or vt_size % 2:
            self.fail(f"vtable size {vt_size}")
        n = (vt_size - 4) // 2
        if vt + vt_size > self.n:
            self.fail("vtable runs past the end")
        return pos, struct.unpack_from(f"<{n}H", self.buf, vt + 4)

    def field(self, table: tuple[int, tuple[int, ...]], i: int) -> int | None:
        pos, fields = table
        return pos + fields[i] if i < len(fields) and fields[i] else None

    def indirect(self, pos: int) -> int:
        return pos + self.scalar("<I", pos)

    def vector(self, pos: int, item: int) -> tuple[int, int]:
        """``(start, count)`` of the vector whose offset field is at ``pos``."""
        vec = self.indirect(pos)
        count = self.scalar("<I", vec)
        start = vec + 4
        if start + count * item > self.n:
            self.fail(f"vector of {count} x {item} bytes runs past the end")
        return start, count


def _ioheader(path, hbuf: bytes) -> tuple[int, int, str]:
    """``(compression, dataTablePosition, infoNode)`` from the IOHeader FlatBuffer."""
    fb = _FlatBuffer(hbuf, path, 18, "AEDAT 4.0 IOHeader")
    table = fb.table(fb.scalar("<I", 0))
    pos = fb.field(table, 0)
    compression = 0 if pos is None else fb.scalar("<i", pos)
    pos = fb.field(table, 1)
    table_pos = -1 if pos is None else fb.scalar("<q", pos)
    pos = fb.field(table, 2)
    if pos is None:
        fb.fail("no infoNode")
    start, count = fb.vector(pos, 1)
    try:
        info = bytes(hbuf[start : start + count]).decode("utf-8")
    except UnicodeDecodeError:
        fb.fail("infoNode is not UTF-8")
    return compression, table_pos, info


class _InfoError(ValueError):
    """An infoNode problem (message only; :func:`_streams4` adds the file and offset)."""


def _streams4(path, info: str) -> dict[int, dict]:
    """Parse the infoNode XML: ``{stream_id: {type, width, height, source}}``.

    The parse of a given infoNode text of up to 64 KiB is cached (a few KiB of XML take
    ~55 µs to parse, 4% of reading a 112k-event file); every call gets its own copy.
    """
    parse = _parse_streams4 if len(info) <= 1 << 16 else _parse_streams4.__wrapped__
    try:
        streams = parse(info)
    except _InfoError as exc:
        raise EventFileError(path, str(exc), 18) from None
    return {sid: dict(s) for sid, s in streams.items()}


@functools.lru_cache(maxsize=32)
def _parse_streams4(info: str) -> dict[int, dict]:
    if "<!ENTITY" in info:
        raise _InfoError("AEDAT 4.0 infoNode declares XML entities; refused")
    try:
        root = ET.fromstring(info)
    except ET.ParseError as exc:
        raise _InfoError(f"AEDAT 4.0 infoNode is not valid XML ({exc})") from None
    out_info = next((n for n in root.iter("node") if n.get("name") == "outInfo"), None)
    if out_info is None:
        raise _InfoError("AEDAT 4.0 infoNode has no 'outInfo' stream list")
    streams: dict[int, dict] = {}
    for node in out_info.findall("node"):
        try:
            sid = int(node.get("name", ""))
        except ValueError:
            continue
        attrs = {a.get("key"): (a.text or "").strip() for a in node.findall("attr")}
        info_node = next((n for n in node.findall("node") if n.get("name") == "info"), None)
        iattrs = {} if info_node is None else {
            a.get("key"): (a.text or "").strip() for a in info_node.findall("attr")}
        s = {"type": attrs.get("typeIdentifier", ""), "source": iattrs.get("source")}
        if s["type"] == "EVTS":
            try:
                s["width"], s["height"] = int(iattrs["sizeX"]), int(iattrs["sizeY"])
            except (KeyError, ValueError):
                s["width"] = s["height"] = None
        streams[sid] = s
    return streams


_LZ4_MAGIC = b"\x04\x22\x4d\x18"


def _decompress4(path, raw, compression: int, offset: int) -> bytes:
    """Decompress one packet body (LZ4 frame / Zstandard frame / none), size-limited.

    A frame header announcing more than :data:`MAX_PACKET_BYTES` (or, for LZ4, more than its
    format can expand the packet to) is refused before anything is allocated.
    """
    try:
        if compression == 0:
            out = raw
        elif compression in (1, 2):
            import lz4.frame

            # an LZ4 sequence expands at most ~255x, so without a (trusted) content size the
            # output is bounded by the packet size, which was checked against the file size
            # frame header: magic (4 bytes), FLG (bit 3: an 8-byte content size follows BD)
            announced = (int.from_bytes(raw[6:14], "little")
                         if len(raw) >= 14 and raw[:4] == _LZ4_MAGIC and raw[4] & 8 else 0)
            if announced > min(MAX_PACKET_BYTES, 255 * len(raw) + (1 << 16)):
                raise EventFileError(
                    path, f"AEDAT 4.0 LZ4 packet of {len(raw)} bytes announces {announced} "
                    "decompressed bytes", offset)
            out = lz4.frame.decompress(raw)
        elif compression in (3, 4):
            import zstandard

            announced = zstandard.frame_content_size(raw)
            if announced > MAX_PACKET_BYTES:
                raise EventFileError(
                    path, f"AEDAT 4.0 Zstd packet announces {announced} decompressed bytes",
                    offset)
            if announced >= 0:
                out = zstandard.ZstdDecompressor().decompress(raw)
            else:
                parts, have = [], 0
                with zstandard.ZstdDecompressor().stream_reader(bytes(raw)) as reader:
                    while have <= MAX_PACKET_BYTES:
                        part = reader.read(1 << 20)
                        if not part:
                            break
                        parts.append(part)
                        have += len(part)
                out = b"".join(parts)
        else:
            raise EventFileError(path, f"unknown AEDAT 4.0 compression {compression}", 18)
    except EventFileError:
        raise
    except Exception as exc:  # lz4 / zstandard raise their own types on corrupt data
        raise EventFileError(
            path, f"cannot decompress AEDAT 4.0 packet ({_COMPRESSION.get(compression)}): "
            f"{exc}", offset) from None
    if len(out) > MAX_PACKET_BYTES:
        raise EventFileError(
            path, f"AEDAT 4.0 packet decompresses to more than {MAX_PACKET_BYTES} bytes", offset)
    return out


def _evts4(path, buf: bytes, offset: int) -> tuple[int, int]:
    """``(start, count)`` of the Event vector in a size-prefixed ``EVTS`` FlatBuffer."""
    fb = _FlatBuffer(buf, path, offset, "AEDAT 4.0 EVTS packet")
    if len(buf) < 12:
        fb.fail(f"{len(buf)} bytes")
    if buf[8:12] != b"EVTS":
        fb.fail(f"identifier {bytes(buf[8:12])!r}, expected b'EVTS'")
    table = fb.table(4 + fb.scalar("<I", 4))
    pos = fb.field(table, 0)
    if pos is None:
        return 0, 0
    return fb.vector(pos, 16)


class _Aedat4:
    """The parsed AEDAT 4.0 header: streams, compression and where the packets end."""

    def __init__(self, f, path, sensor_size):
        self.path = path
        size = _file_size(f)
        magic = f.read(len(MAGIC4))
        if magic != MAGIC4:
            raise EventFileError(path, f"not an AEDAT 4.0 file: magic {magic!r}", 0)
        raw = f.read(4)
        if len(raw) < 4:
            raise EventFileError(path, "truncated AEDAT 4.0 header length", len(MAGIC4))
        hlen = struct.unpack("<i", raw)[0]
        if hlen < 8 or 18 + hlen > size:
            raise EventFileError(
                path, f"AEDAT 4.0 IOHeader length {hlen} does not fit the {size}-byte file", 14)
        self.compression, table_pos, info = _ioheader(path, f.read(hlen))
        if self.compression not in _COMPRESSION:
            raise EventFileError(path, f"unknown AEDAT 4.0 compression {self.compression}", 18)
        self.streams = _streams4(path, info)
        self.start = 18 + hlen
        if table_pos < 0:
            self.end = size
        elif self.start <= table_pos <= size:
            self.end = table_pos
        else:
            log.warning("%s: dataTablePosition %d outside the file; reading to the end",
                        path, table_pos)
            self.end = size
        evts = sorted(sid for sid, s in self.streams.items() if s["type"] == "EVTS")
        if len(evts) > 1:
            log.warning("%s: %d event streams; reading stream %d only", path, len(evts), evts[0])
        self.stream_id = evts[0] if evts else None
        s = self.streams.get(self.stream_id, {})
        self.camera = s.get("source")
        if sensor_size is not None:
            self.sensor = (int(sensor_size[0]), int(sensor_size[1]),
                           int(sensor_size[2]) if len(sensor_size) > 2 else 2)
        elif s.get("width") and s.get("height") and s["width"] > 0 and s["height"] > 0:
            self.sensor = (s["width"], s["height"], 2)
        else:
            why = "no event (EVTS) stream" if self.stream_id is None else (
                f"event stream {self.stream_id} without a valid sizeX/sizeY")
            raise EventFileError(
                path, f"AEDAT 4.0 header declares {why}; give the sensor size "
                "(--sensor-size WxH, or sensor_size=(W, H, 2))", 18)

    def packet(self, hdr: bytes, pos: int) -> tuple[int, int]:
        """Validate a packet header at file offset ``pos``; return ``(stream_id, size)``."""
        if len(hdr) < 8:
            raise EventFileError(
                self.path, f"truncated AEDAT 4.0 packet header ({len(hdr)} of 8 bytes)", pos)
        sid, size = struct.unpack("<ii", hdr)
        if size < 0 or pos + 8 + size > self.end:
            raise EventFileError(
                self.path, f"AEDAT 4.0 packet of {size} bytes (stream {sid}) runs past the "
                f"end of the packet data at byte {self.end}", pos)
        if sid not in self.streams:
            raise EventFileError(self.path, f"AEDAT 4.0 packet of undeclared stream {sid}", pos)
        return sid, size

    def meta(self) -> dict:
        return {"format": "aedat4", "camera": self.camera, "stream_id": self.stream_id,
                "compression": _COMPRESSION[self.compression]}

    def decode(self, packets: list[tuple[bytes, int, int, int]]) -> np.ndarray:
        """Decode ``(body, vector_start, count, file_offset)`` packets into one event array."""
        out = _alloc(sum(p[2] for p in packets))
        k = 0
        for body, vstart, count, offset in packets:
            buf = np.frombuffer(body, dtype=np.uint8, count=16 * count, offset=vstart)
            n, bad = _k.aedat4_events(buf, out[k:], self.sensor[0], self.sensor[1])
            if bad >= 0:
                self._outside(body, vstart, bad, offset)
            k += n
        return out

    def _outside(self, body, vstart: int, bad: int, offset: int):
        x, y = struct.unpack_from("<hh", body, vstart + 16 * bad + 8)
        raise EventFileError(
            self.path, f"AEDAT 4.0 event {bad} (x={x}, y={y}) of the packet at this "
            f"offset lies outside the {self.sensor[0]}x{self.sensor[1]} sensor", offset)

    def fail_packet(self, body, bad: int, offset: int):
        """Raise the error of a packet the kernel refused: a malformed FlatBuffer (re-parsed
        by :func:`_evts4` for the message) or event ``bad`` outside the sensor."""
        vstart, _ = _evts4(self.path, body, offset)
        self._outside(body, vstart, bad, offset)


def _grow(out: np.ndarray, k: int, need: int) -> np.ndarray:
    """A bigger output holding ``out[:k]``: at least ``need`` events, at least doubled."""
    new = _alloc(max(2 * len(out), need))
    new[:k] = out[:k]
    return new


def read_aedat4(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read the polarity events of an AEDAT 4.0 (DV) file.

    The data region is read with one ``readinto``; a numba pass walks the packet headers
    (:func:`kernels.aedat.aedat4_walk`); each event packet is decompressed and decoded by
    one kernel call (:func:`kernels.aedat.aedat4_packet`) into an output that starts at twice
    the compressed bytes / 16 events (LZ4 halves DV's event packets) and doubles when full.
    An LZ4 frame of exactly one block without checksums or content size (what DV writes for
    packets up to 64 KiB) has its block
    decompressed by ``lz4.block`` (located by :func:`kernels.aedat.lz4_single_blocks`;
    on ``sample.aedat4``: 0.79 against 0.84 ms for ``lz4.frame.decompress`` alone, and half
    the time of the whole read in one measurement interleaved with dv-processing, since
    ``lz4.frame`` allocates and grows its output per packet when the frame gives no content
    size); any other packet, or one that this path cannot decode, takes the checked path
    :func:`_decompress4` (python-lz4 frames / zstandard), whose errors are reported. The fast
    path does not verify the frame's header checksum byte. :func:`iter_aedat4` is the
    readable packet-by-packet reference (python-lz4 / zstandard); the tests check that both
    agree.

    Args:
        path: the ``.aedat4`` file.
        sensor_size: ``(W, H, 2)`` to override the event stream's ``sizeX``/``sizeY``.

    Returns:
        Recording: events ``EVENT_DTYPE`` (N,), t in µs as stored (absolute, int64);
        meta: ``format``, ``camera`` (the stream's ``source``), ``stream_id``, ``compression``,
        ``packets``, ``skipped_packets`` (other streams).
    """
    path = Path(path)
    with open(path, "rb") as f:
        h = _Aedat4(f, path, sensor_size)
        data = _read_span(f, path, h.start, h.end)
    declared = np.array(sorted(h.streams), dtype=np.int64)
    stream = -(1 << 40) if h.stream_id is None else h.stream_id
    starts, sizes, n_packets, bad = _k.aedat4_walk(data, stream, declared)
    if bad >= 0:  # the same checks in Python, for the message
        h.packet(bytes(data[bad : bad + 8]), h.start + bad)
        raise EventFileError(path, "corrupt AEDAT 4.0 packet header", h.start + bad)
    mv = memoryview(data)
    packed = int(sizes.sum())
    out = _alloc((packed if h.compression == 0 else 2 * packed) // 16)
    w, hh = h.sensor[0], h.sensor[1]
    if h.compression in (1, 2):  # one-block LZ4 frames: the block straight to liblz4
        import lz4.block

        block = lz4.block.decompress
        boffs, blens, bmaxs = (x.tolist() for x in _k.lz4_single_blocks(data, starts, sizes))
    else:
        block = None
        boffs = blens = bmaxs = [-1] * len(starts)
    k = 0

    def decode(body) -> tuple[int, int]:
        """Decode one decompressed packet at ``out[k:]`` (growing ``out`` if needed)."""
        nonlocal out
        buf = np.frombuffer(body, dtype=np.uint8)
        m, code = _k.aedat4_packet(buf, out[k:], w, hh)
        if code == 3:
            out = _grow(out, k, k + m)
            m, code = _k.aedat4_packet(buf, out[k:], w, hh)
        return m, code

    for a, size, bo, bl, bm in zip(starts.tolist(), sizes.tolist(), boffs, blens, bmaxs,
                                   strict=True):
        code = 1
        if bl > 0:
            try:
                body = block(mv[bo : bo + bl], uncompressed_size=bm) if bm else mv[bo : bo + bl]
            except Exception:  # lz4.block.LZ4BlockError: the checked path reports it
                pass
            else:
                m, code = decode(body)
        if code:  # the checked path: frame decompression, then the same kernel
            offset = h.start + a - 8
            body = _decompress4(path, mv[a : a + size], h.compression, offset)
            m, code = decode(body)
            if code:
                h.fail_packet(body, m, offset)
        k += m
    meta = h.meta()
    meta.update(packets=int(n_packets), skipped_packets=int(n_packets) - len(starts))
    return Recording(_trim(out, k), h.sensor, meta)


def iter_aedat4(
    path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None
) -> Iterator[Recording]:
    """Stream an AEDAT 4.0 file packet by packet in chunks of at most ``chunk_events`` events.

    Memory: one (decompressed) packet plus one chunk. Concatenated chunks equal
    :func:`read_aedat4`.
    """
    path = Path(path)
    with open(path, "rb") as f:
        h = _Aedat4(f, path, sensor_size)
        f.seek(h.start)

        def packets() -> Iterator[np.ndarray]:
            pos = h.start
            while pos < h.end:
                sid, size = h.packet(f.read(8), pos)
                if sid == h.stream_id:
                    raw = f.read(size)
                    if len(raw) != size:
                        raise EventFileError(path, "file shrank while being read", pos)
                    body = _decompress4(path, raw, h.compression, pos)
                    vstart, count = _evts4(path, body, pos)
                    yield h.decode([(body, vstart, count, pos)])
                else:
                    f.seek(size, 1)
                pos += 8 + size

        for ev in B.rechunk(packets(), chunk_events, reused=False):
            yield Recording(ev, h.sensor, h.meta())


# --------------------------------------------------------------------------------------------
# reference encoders (pure numpy): tests, fuzzing, sample data


_JAER_CLASS = {"dvs128": "ch.unizh.ini.jaer.chip.retina.{}", "davis": "eu.seebetter.ini.chips.davis.{}"}


def _check_events(events: np.ndarray, w: int, h: int, what: str) -> np.ndarray:
    ev = np.asarray(events)
    if ev.dtype != EVENT_DTYPE:
        raise ValueError(f"{what}: events must have dtype EVENT_DTYPE, got {ev.dtype}")
    if len(ev) and (ev["x"].min() < 0 or ev["x"].max() >= w or ev["y"].min() < 0
                    or ev["y"].max() >= h):
        raise ValueError(f"{what}: event coordinates outside the {w}x{h} sensor")
    return ev


def encode_aedat2(
    events: np.ndarray,
    camera: str = "DVS128",
    *,
    extra_words: Sequence[tuple[int, int]] = (),
) -> bytes:
    """Encode events as an AEDAT 2.0 (jAER) file, the inverse of :func:`read_aedat2`.

    Args:
        events: ``EVENT_DTYPE`` (N,), t in µs within ``[0, 2**32)``, x/y inside the camera.
        camera: a jAER chip name: ``"DVS128"``, ``"DAVIS240A/B/C"``, ``"DAVIS346B"``,
            ``"Davis346red"``, ``"DAVIS640"``, ... (written as the ``# AEChip:`` line).
        extra_words: ``(address, timestamp)`` raw words that are not polarity events (APS/IMU
            words with bit 31 set, external events with bit 10 set, DVS128 special words with
            bit 15 or 31 set), inserted by timestamp (``events`` must then be sorted by t;
            a word goes before the first event with a larger-or-equal t).

    Returns:
        The file's bytes: header lines, then big-endian ``u32 address, u32 timestamp``.
    """
    info = camera_info(camera)
    if info is None or "x" in info[0]:
        raise ValueError(f"encode_aedat2: unknown camera {camera!r}")
    _, layout, w, h = info
    ev = _check_events(events, w, h, "encode_aedat2")
    t = ev["t"].astype(np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 1 << 32):
        raise ValueError("encode_aedat2: timestamps must fit in u32 microseconds")
    x = ev["x"].astype(np.int64)
    y = ev["y"].astype(np.int64)
    p = ev["p"].astype(np.int64)
    if layout == "dvs128":
        addr = ((127 - y) << 8) | ((127 - x) << 1) | (1 - p)
    else:
        addr = ((h - 1 - y) << 22) | ((w - 1 - x) << 12) | (p << 11)
    rec = np.empty((len(ev), 2), dtype=">u4")
    rec[:, 0] = addr
    rec[:, 1] = t
    if len(extra_words):
        extra = np.asarray(extra_words, dtype=np.int64).reshape(-1, 2)
        if len(t) > 1 and np.any(np.diff(t) < 0):
            raise ValueError("encode_aedat2: events must be sorted by t to place extra_words")
        where = np.searchsorted(t, extra[:, 1], side="left")
        rec = np.insert(rec, where, extra.astype(">u4"), axis=0)
    header = (
        MAGIC2 + b"\r\n"
        b"# This is a raw AE data file created by eventssm.io.aedat.encode_aedat2\r\n"
        b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each "
        b"event\r\n"
        b"# Timestamps tick is 1 us\r\n"
        + f"# AEChip: {_JAER_CLASS[layout].format(camera)}\r\n".encode("ascii")
    )
    return header + rec.tobytes()


def encode_aedat3(
    events: np.ndarray,
    sensor_size: SensorSize | None = None,
    *,
    camera: str | None = None,
    packet_events: int = 4096,
    other_packets: bool = False,
    invalid_every: int = 0,
    source_id: int = 1,
) -> bytes:
    """Encode events as an AEDAT 3.1 (cAER) file, the inverse of :func:`read_aedat3`.

    Args:
        events: ``EVENT_DTYPE`` (N,), t >= 0 in µs (values >= 2**31 use eventTSOverflow).
        sensor_size: ``(W, H, 2)``; default: the camera's size (DVS128 when both are None).
        camera: the ``#Source`` name; default ``"DVS128"`` for 128x128, else
            ``"eventssm-WxH"`` (which :func:`camera_info` reads back).
        packet_events: polarity events per packet (packets also split where t >> 31 changes).
        other_packets: add a special-event packet (type 0) before and an IMU6 packet (type 3,
            36-byte events) after every polarity packet, which readers must skip.
        invalid_every: if > 0, after every ``invalid_every``-th event add an event whose valid
            bit is 0 and whose coordinates are (32767, 32767), which readers must skip.
        source_id: the eventSource of every packet.

    Returns:
        The file's bytes: header lines ending ``#!END-HEADER\\r\\n``, then packets.
    """
    if sensor_size is None:
        info = camera_info(camera or "DVS128")
        if info is None:
            raise ValueError(f"encode_aedat3: unknown camera {camera!r}; give sensor_size")
        w, h = info[2], info[3]
    else:
        w, h = int(sensor_size[0]), int(sensor_size[1])
    if camera is None:
        camera = "DVS128" if (w, h) == (128, 128) else f"eventssm-{w}x{h}"
    if max(w, h) > 0x7FFF:
        raise ValueError("encode_aedat3: AEDAT 3.1 addresses hold at most 15 bits")
    ev = _check_events(events, w, h, "encode_aedat3")
    t = ev["t"].astype(np.int64)
    if len(t) and t.min() < 0:
        raise ValueError("encode_aedat3: timestamps must be >= 0")
    data = ((ev["x"].astype(np.int64) << 17) | (ev["y"].astype(np.int64) << 2)
            | (ev["p"].astype(np.int64) << 1) | 1)
    words = np.empty((len(ev), 2), dtype="<u4")
    words[:, 0] = data
    words[:, 1] = t & 0x7FFFFFFF
    ovf = t >> 31
    bad_word = np.array([(0x7FFF << 17) | (0x7FFF << 2) | 0b10, 0], dtype="<u4")

    def header(etype, esize, number, overflow):
        return _AEDAT3_HEADER.pack(etype, source_id, esize, 4, overflow, number, number, number)

    out = [
        MAGIC3 + b"\r\n#Format: RAW\r\n"
        + f"#Source {source_id}: {camera}\r\n".encode("ascii")
        + b"#Start-Time: 1970-01-01 00:00:00 (TZ+0000)\r\n" + END_HEADER3 + b"\r\n"
    ]
    breaks = np.flatnonzero(np.diff(ovf)) + 1 if len(ovf) else np.empty(0, dtype=np.int64)
    runs = np.split(np.arange(len(ev)), breaks) if len(ev) else []
    for run in runs:
        for i in range(0, len(run), max(int(packet_events), 1)):
            idx = run[i : i + max(int(packet_events), 1)]
            o = int(ovf[idx[0]])
            block = words[idx]
            if invalid_every > 0:
                k = np.arange(invalid_every, len(block) + 1, invalid_every)
                bad = np.repeat(bad_word[None, :], len(k), axis=0)
                bad[:, 1] = block[k - 1, 1]
                block = np.insert(block, k, bad, axis=0)
            valid = len(idx)
            if other_packets:
                special = np.array([[(2 << 1) | 1, block[0, 1]]], dtype="<u4")  # type 2, valid
                out.append(header(0, 8, 1, o) + special.tobytes())
            hdr = bytearray(header(_POLARITY_EVENT, 8, len(block), o))
            struct.pack_into("<i", hdr, 24, valid)
            out.append(bytes(hdr) + block.tobytes())
            if other_packets:
                imu = np.zeros((2, 9), dtype="<u4")
                imu[:, 0] = 1
                imu[:, 1] = block[-1, 1]
                out.append(header(3, 36, 2, o) + imu.tobytes())
    return b"".join(out)


def _fb_events_packet(elements: bytes, count: int) -> bytes:
    """A size-prefixed ``EVTS`` FlatBuffer whose root field 0 is a vector of Event structs.

    Layout (as in DV's files): size | root offset | identifier | pad | vtable (6 bytes:
    vtable size 6, table size 8, field 0 at +4) | table (soffset to vtable, offset to vector)
    | vector (u32 count, 8-aligned elements).
    """
    body = (
        struct.pack("<I", 16) + b"EVTS" + b"\x00\x00"  # bytes 4..14 (root -> table at 20)
        + struct.pack("<HHH", 6, 8, 4)  # vtable at 14
        + struct.pack("<iI", 6, 4)  # table at 20: vtable at 20-6; vector at 24+4
        + struct.pack("<I", count) + elements  # vector at 28, elements at 32
    )
    return struct.pack("<I", len(body)) + body


def _fb_imu_packet(t: int) -> bytes:
    """A size-prefixed ``IMUS`` FlatBuffer holding one ``Imu`` table with only ``t`` set.

    ``ImuPacket.elements`` is a vector of tables (DV ``imus.fbs``): the vector holds a uoffset
    to an ``Imu`` table whose vtable lists field 0 (``t``, i64) at +8.
    """
    body = (
        struct.pack("<I", 16) + b"IMUS" + b"\x00\x00"  # root -> packet table at 20
        + struct.pack("<HHH", 6, 8, 4)  # packet vtable at 14
        + struct.pack("<iI", 6, 4)  # packet table at 20: vector at 28
        + struct.pack("<II", 1, 16)  # vector: 1 element, Imu table at 32 + 16
        + struct.pack("<HHH", 6, 16, 8) + bytes(6)  # Imu vtable at 36, pad to 48
        + struct.pack("<i", 12) + bytes(4) + struct.pack("<q", t)  # Imu table at 48, t at 56
    )
    return struct.pack("<I", len(body)) + body


def _fb_ioheader(compression: int, info: bytes) -> bytes:
    """An ``IOHE`` FlatBuffer: compression (i32), dataTablePosition = -1 (i64), infoNode."""
    text = info + b"\x00"
    text += b"\x00" * (-len(text) % 4)
    return (
        struct.pack("<I", 20) + b"IOHE"  # root table at 20
        + struct.pack("<HHHHH", 10, 20, 4, 12, 8) + b"\x00\x00"  # vtable at 8
        + struct.pack("<iiIq", 12, compression, 12, -1)  # table at 20; string at 28+12
        + struct.pack("<I", len(info)) + text
    )


def encode_aedat4(
    events: np.ndarray,
    sensor_size: SensorSize,
    *,
    compression: str = "lz4",
    packet_events: int = 4096,
    imu_packets: bool = True,
    source: str = "eventssm",
) -> bytes:
    """Encode events as an AEDAT 4.0 (DV) file, the inverse of :func:`read_aedat4`.

    Args:
        events: ``EVENT_DTYPE`` (N,), x/y inside ``sensor_size``.
        sensor_size: ``(W, H, 2)`` written as the event stream's sizeX/sizeY.
        compression: ``"none"``, ``"lz4"`` or ``"zstd"``.
        packet_events: events per EVTS packet.
        imu_packets: declare an IMUS stream and write one IMU packet (one zero sample) after
            each event packet, which readers must skip.
        source: the stream's ``source`` attribute (read back as ``meta["camera"]``).

    Returns:
        The file's bytes (no data table: dataTablePosition = -1).
    """
    w, h = int(sensor_size[0]), int(sensor_size[1])
    ev = _check_events(events, w, h, "encode_aedat4")
    codes = {"none": 0, "lz4": 1, "zstd": 3}
    if compression not in codes:
        raise ValueError(f"encode_aedat4: compression must be one of {sorted(codes)}")
    code = codes[compression]
    # dv-processing finds a stream by its originalOutputName ("events", "imu"): without it
    # MonoCameraRecording refuses the file ("Wrong type identifier for packet")
    streams = [(0, "EVTS", "events", "Array of events (polarity ON/OFF).",
                f'<attr key="sizeX" type="int">{w}</attr><attr key="sizeY" type="int">{h}</attr>')]
    if imu_packets:
        streams.append((1, "IMUS", "imu", "Inertial Measurement Unit data samples.", ""))
    nodes = "".join(
        f'<node name="{sid}" path="/mainloop/Recorder/outInfo/{sid}/">'
        f'<attr key="compression" type="string">{_COMPRESSION[code].upper()}</attr>'
        f'<attr key="originalModuleName" type="string">eventssm</attr>'
        f'<attr key="originalOutputName" type="string">{name}</attr>'
        f'<attr key="typeDescription" type="string">{what}</attr>'
        f'<attr key="typeIdentifier" type="string">{ident}</attr>'
        f'<node name="info" path="/mainloop/Recorder/outInfo/{sid}/info/">{extra}'
        f'<attr key="source" type="string">{escape(source)}</attr></node></node>'
        for sid, ident, name, what, extra in streams)
    info = (f'<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
            f"{nodes}</node></dv>").encode()
    head = _fb_ioheader(code, info)

    def pack(data: bytes) -> bytes:
        if code == 1:
            import lz4.frame

            return lz4.frame.compress(data)
        if code == 3:
            import zstandard

            return zstandard.ZstdCompressor().compress(data)
        return data

    rec = np.zeros(len(ev), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"),
                                   ("pad", "V3")])
    rec["t"], rec["x"], rec["y"], rec["on"] = ev["t"], ev["x"], ev["y"], ev["p"]
    out = [MAGIC4, struct.pack("<i", len(head)), head]
    step = max(int(packet_events), 1)
    for i in range(0, len(rec), step):
        chunk = rec[i : i + step]
        body = pack(_fb_events_packet(chunk.tobytes(), len(chunk)))
        out.append(struct.pack("<ii", 0, len(body)) + body)
        if imu_packets:
            body = pack(_fb_imu_packet(int(chunk["t"][-1])))
            out.append(struct.pack("<ii", 1, len(body)) + body)
    return b"".join(out)


register(FormatSpec(
    name="aedat2",
    description="AEDAT 2.0 (jAER): DVS128 and DAVIS240/346/640 addresses, APS/IMU skipped",
    extensions=(".aedat",),
    sniff=_sniff2,
    read=read_aedat2,
    iter_chunks=iter_aedat2,
    validated=True,  # every event passes the kernels' sensor check
))
register(FormatSpec(
    name="aedat3",
    description="AEDAT 3.1 (cAER, e.g. DVS128 Gesture): polarity packets",
    extensions=(".aedat",),
    sniff=_sniff3,
    read=read_aedat3,
    iter_chunks=iter_aedat3,
    validated=True,  # every event passes the kernels' sensor check
))
register(FormatSpec(
    name="aedat4",
    description="AEDAT 4.0 (DV): EVTS stream, LZ4/Zstd packets, IMU/trigger/frame skipped",
    extensions=(".aedat4",),
    sniff=_sniff4,
    read=read_aedat4,
    iter_chunks=iter_aedat4,
    validated=True,  # every event passes the kernels' sensor check
))

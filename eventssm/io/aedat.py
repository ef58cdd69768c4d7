"""AEDAT 2.0, 3.1 and 4.0 (iniVation / jAER / DV) readers, and reference encoders.

This module holds the shared helpers and the 2.0 and 3.1 readers; the 4.0 reader is in
:mod:`eventssm.io.aedat4`, the encoders in :mod:`eventssm.io.aedat_encode` (all importable from
here). The bit layouts of all three versions are described below.

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

import logging
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

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


def _walk3(path, header_at, start: int, end: int) -> Iterator[tuple]:
    """The packet walk of an AEDAT 3.1 file, shared by :func:`read_aedat3` and
    :func:`iter_aedat3`: yield ``(offset, eventType, eventSource, eventTSOverflow,
    eventNumber, payload bytes)`` of every packet in file order.

    Args:
        path: the file, for errors.
        header_at: ``header_at(offset)`` -> the (up to) 28 bytes of the packet header at that
            file offset (a slice of the bytes in memory, or a read of the open file).
        start, end: file offsets of the first packet and of the end of the data.

    A truncated or corrupt packet header is an :class:`EventFileError` at its offset
    (:func:`_packet3`).
    """
    hs = _AEDAT3_HEADER.size
    pos = start
    while pos < end:
        hdr = header_at(pos)
        if len(hdr) < hs:
            raise EventFileError(
                path, f"truncated AEDAT 3.1 packet header ({len(hdr)} of {hs} bytes)", pos)
        etype, source, ovf, number, payload = _packet3(path, hdr, pos, end - pos - hs)
        yield pos, etype, source, ovf, number, payload
        pos += hs + payload


def read_aedat3(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read an AEDAT 3.1 (cAER) file: polarity packets only.

    The data is read with one ``readinto``, the packets found by :func:`_walk3` and all
    polarity packets decoded by one kernel call (:func:`_decode3`).

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
    hs = _AEDAT3_HEADER.size
    offsets, counts, overflows = [], [], []
    pol_sources = set()
    n_packets = 0
    for pos, etype, source, ovf, number, _ in _walk3(
            path, lambda p: mv[p - start : p - start + hs], start, start + len(buf)):
        n_packets += 1
        if etype == _POLARITY_EVENT:
            offsets.append(pos - start + hs)
            counts.append(number)
            overflows.append(ovf)
            pol_sources.add(source)
    if len(pol_sources) > 1:
        log.warning("%s: polarity packets from several sources %s are merged", path,
                    sorted(pol_sources))
    camera, sensor = _sensor3(path, sources, min(pol_sources) if pol_sources else None,
                              sensor_size)
    events, n_invalid = _decode3(path, buf, offsets, counts, overflows, sensor, start)
    meta = {"format": "aedat3", "camera": camera, "packets": n_packets,
            "skipped_packets": n_packets - len(offsets), "invalid_events": n_invalid,
            "header_bytes": start}
    return Recording(events, sensor, meta)


def iter_aedat3(
    path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None
) -> Iterator[Recording]:
    """Stream an AEDAT 3.1 file packet by packet in chunks of at most ``chunk_events`` events.

    The packets are found by the same walk as :func:`read_aedat3` (:func:`_walk3`), reading
    each header from the file. Memory: one packet plus one chunk. Concatenated chunks equal
    :func:`read_aedat3`.
    """
    path = Path(path)
    with open(path, "rb") as f:
        sources, start = _header3(f, path)
        size = _file_size(f)
        hs = _AEDAT3_HEADER.size

        def header_at(pos: int) -> bytes:
            f.seek(pos)
            return f.read(hs)

        # the sensor is named by the first polarity packet's source: walk to it
        pol_source = next((p[2] for p in _walk3(path, header_at, start, size)
                           if p[1] == _POLARITY_EVENT), None)
        camera, sensor = _sensor3(path, sources, pol_source, sensor_size)
        meta = {"format": "aedat3", "camera": camera}

        def packets() -> Iterator[np.ndarray]:
            for pos, etype, _src, ovf, number, payload in _walk3(path, header_at, start, size):
                if etype != _POLARITY_EVENT:
                    continue
                buf = np.empty(payload, dtype=np.uint8)  # header_at left f at the payload
                if f.readinto(buf) != payload:
                    raise EventFileError(path, "file shrank while being read", pos)
                yield _decode3(path, buf, [0], [number], [ovf], sensor, pos + hs)[0]

        for ev in B.rechunk(packets(), chunk_events, reused=False):
            yield Recording(ev, sensor, dict(meta))


def register_aedat(name: str, description: str, extensions: tuple[str, ...], sniff, read,
                   iter_chunks, encode=None) -> None:
    """Register one AEDAT version; its readers are ``validated`` (every event passes the
    kernels' sensor check)."""
    register(FormatSpec(name, description, extensions, sniff, read, iter_chunks,
                        validated=True, encode=encode))


register_aedat("aedat2", "AEDAT 2.0 (jAER): DVS128 and DAVIS240/346/640 addresses, APS/IMU skipped",
               (".aedat",), _sniff2, read_aedat2, iter_aedat2)
register_aedat("aedat3", "AEDAT 3.1 (cAER, e.g. DVS128 Gesture): polarity packets", (".aedat",),
               _sniff3, read_aedat3, iter_aedat3,
               lambda rec: encode_aedat3(rec.events, (*map(int, rec.sensor_size[:2]), 2)))


# the AEDAT 4.0 reader (registered in its module, after aedat2/3) and the encoders, importable
# from here as before
from eventssm.io.aedat4 import iter_aedat4, read_aedat4  # noqa: E402
from eventssm.io.aedat_encode import encode_aedat2, encode_aedat3, encode_aedat4  # noqa: E402

"""AEDAT 4.0 (DV) reader: FlatBuffer packets, LZ4/Zstandard compressed.

The layout and its sources are described in :mod:`eventssm.io.aedat` (section "AEDAT 4.0");
the shared helpers (allocation, sensor resolution) live there. Registered as ``aedat4``.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eventssm.events import EventFileError, Recording, SensorSize
from eventssm.io import _blocks as B
from eventssm.io.aedat import (
    _COMPRESSION,
    MAGIC4,
    MAX_PACKET_BYTES,
    _alloc,
    _file_size,
    _read_span,
    _trim,
    register_aedat,
)
from eventssm.io.kernels import aedat as _k

log = logging.getLogger(__name__)

__all__ = ["iter_aedat4", "read_aedat4"]


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


#: compressed bytes one window of :func:`iter_aedat4` reads and walks (a bigger packet gets a
#: window of its own size)
ITER_WINDOW_BYTES = 1 << 20


def _walk4(f, h: _Aedat4, window: int | None = None) -> Iterator[tuple]:
    """The packet walk of an AEDAT 4.0 file, shared by :func:`read_aedat4` and
    :func:`iter_aedat4`: the packet data is read in windows of whole packets, each walked by
    one kernel call (:func:`kernels.aedat.aedat4_walk`, whose ``.py_func`` is the readable
    reference). Yields ``(data, base, starts, sizes, n_packets)`` per window: its bytes
    (uint8), their file offset, the body offsets (in ``data``) and sizes of its event-stream
    packets, and the number of packets of every stream in it.

    ``window=None``: one window, the whole data region (one ``readinto``). Otherwise windows
    of about ``window`` bytes, cut before the first packet that does not fit; a packet larger
    than ``window`` gets a window of its own. A corrupt packet header is an
    :class:`EventFileError` at its offset (the checks of :meth:`_Aedat4.packet`), raised when
    the walk reaches it.
    """
    declared = np.array(sorted(h.streams), dtype=np.int64)
    stream = -(1 << 40) if h.stream_id is None else h.stream_id
    pos, need = h.start, 0
    while pos < h.end:
        end = h.end if window is None else min(h.end, pos + max(window, need))
        data = _read_span(f, h.path, pos, end)
        starts, sizes, n_packets, bad = _k.aedat4_walk(data, stream, declared)
        if bad >= 0 and (end == h.end or bad == 0):
            # the same checks in Python: the message, or the size of a packet that only
            # runs past this window
            _, size = h.packet(bytes(data[bad : bad + 8]), pos + bad)
            if end == h.end:
                raise EventFileError(h.path, "corrupt AEDAT 4.0 packet header", pos + bad)
            need = 8 + size
            continue
        yield data, pos, starts, sizes, n_packets
        pos = end if bad < 0 else pos + bad
        need = 0


class _Events:
    """A growing event output that decompressed ``EVTS`` packets are decoded into, one kernel
    call each (:func:`kernels.aedat.aedat4_packet`); ``events()`` trims it."""

    def __init__(self, capacity: int, sensor: SensorSize):
        self.out = _alloc(capacity)
        self.k = 0
        self.width, self.height = sensor[0], sensor[1]

    def decode(self, body) -> tuple[int, int]:
        """Decode one packet body after the events so far (growing the output if needed):
        the kernel's ``(n, code)``; the events count only when ``code`` is 0."""
        buf = np.frombuffer(body, dtype=np.uint8)
        k = self.k
        m, code = _k.aedat4_packet(buf, self.out[k:], self.width, self.height)
        if code == 3:
            self.out = _grow(self.out, k, k + m)
            m, code = _k.aedat4_packet(buf, self.out[k:], self.width, self.height)
        if code == 0:
            self.k = k + m
        return m, code

    def events(self) -> np.ndarray:
        return _trim(self.out, self.k)


def _decode_window(h: _Aedat4, data, base: int, starts, sizes, out: _Events,
                   fast: bool) -> None:
    """Decompress and decode the event packets of one walked window (:func:`_walk4`) into
    ``out``.

    ``fast``: an LZ4 frame of exactly one block without checksums or content size (what DV
    writes for packets up to 64 KiB, located by :func:`kernels.aedat.lz4_single_blocks`) has
    its block decompressed by ``lz4.block``. Every other packet, one the fast path cannot
    decode, and every packet when not ``fast``, takes the checked path :func:`_decompress4`
    (python-lz4 frames / zstandard), whose errors are reported.
    """
    mv = memoryview(data)
    if fast and h.compression in (1, 2):  # one-block LZ4 frames: the block straight to liblz4
        import lz4.block

        block = lz4.block.decompress
        boffs, blens, bmaxs = (x.tolist() for x in _k.lz4_single_blocks(data, starts, sizes))
    else:
        block = None
        boffs = blens = bmaxs = [-1] * len(starts)
    for a, size, bo, bl, bm in zip(starts.tolist(), sizes.tolist(), boffs, blens, bmaxs,
                                   strict=True):
        code = 1
        if bl > 0:
            try:
                body = block(mv[bo : bo + bl], uncompressed_size=bm) if bm else mv[bo : bo + bl]
            except Exception:  # lz4.block.LZ4BlockError: the checked path reports it
                pass
            else:
                _, code = out.decode(body)
        if code:  # the checked path: frame decompression, then the same kernel
            offset = base + a - 8
            body = _decompress4(h.path, mv[a : a + size], h.compression, offset)
            m, code = out.decode(body)
            if code:
                h.fail_packet(body, m, offset)


def _grow(out: np.ndarray, k: int, need: int) -> np.ndarray:
    """A bigger output holding ``out[:k]``: at least ``need`` events, at least doubled."""
    new = _alloc(max(2 * len(out), need))
    new[:k] = out[:k]
    return new


def read_aedat4(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> Recording:
    """Read the polarity events of an AEDAT 4.0 (DV) file.

    The data region is read with one ``readinto`` and walked by one numba pass over the
    packet headers (:func:`_walk4`); each event packet is decompressed and decoded by one
    kernel call (:func:`kernels.aedat.aedat4_packet`) into an output that starts at twice the
    compressed bytes / 16 events (LZ4 halves DV's event packets) and doubles when full
    (:func:`_decode_window` with its fast path). An LZ4 frame of exactly one block without
    checksums or content size (what DV writes for packets up to 64 KiB) has its block
    decompressed by ``lz4.block`` (on ``sample.aedat4``: 0.79 against 0.84 ms for
    ``lz4.frame.decompress`` alone, and half the time of the whole read in one measurement
    interleaved with dv-processing, since ``lz4.frame`` allocates and grows its output per
    packet when the frame gives no content size); any other packet, or one that this path
    cannot decode, takes the checked path :func:`_decompress4`, whose errors are reported.
    The fast path does not verify the frame's header checksum byte. :func:`iter_aedat4`
    decompresses every packet by the checked path (python-lz4 / zstandard): it is the
    reference the tests compare this fast path with.

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
        # one window, the whole data region (none when the file holds no packet)
        data, base, starts, sizes, n_packets = next(
            _walk4(f, h), (None, h.start, np.empty(0, np.int64), np.empty(0, np.int64), 0))
    packed = int(sizes.sum())
    out = _Events((packed if h.compression == 0 else 2 * packed) // 16, h.sensor)
    if len(starts):
        _decode_window(h, data, base, starts, sizes, out, fast=True)
    meta = h.meta()
    meta.update(packets=int(n_packets), skipped_packets=int(n_packets) - len(starts))
    return Recording(out.events(), h.sensor, meta)


def iter_aedat4(
    path: str | os.PathLike, chunk_events: int, sensor_size: SensorSize | None = None
) -> Iterator[Recording]:
    """Stream an AEDAT 4.0 file in chunks of at most ``chunk_events`` events.

    The packet data is read and walked in windows of about :data:`ITER_WINDOW_BYTES`
    (:func:`_walk4`, the walk of :func:`read_aedat4`); every event packet is decompressed by
    the checked path (python-lz4 / zstandard) and decoded by the same kernel. Memory: one
    window, its decoded events and one chunk. Concatenated chunks equal :func:`read_aedat4`.
    """
    path = Path(path)
    with open(path, "rb") as f:
        h = _Aedat4(f, path, sensor_size)

        def windows() -> Iterator[np.ndarray]:
            for data, base, starts, sizes, _ in _walk4(f, h, ITER_WINDOW_BYTES):
                out = _Events(2 * int(sizes.sum()) // 16, h.sensor)
                _decode_window(h, data, base, starts, sizes, out, fast=False)
                yield out.events()

        for ev in B.rechunk(windows(), chunk_events, reused=False):
            yield Recording(ev, h.sensor, h.meta())


def _encode4(rec: Recording) -> bytes:
    from eventssm.io.aedat_encode import encode_aedat4

    return encode_aedat4(rec.events, rec.sensor_size)


register_aedat("aedat4", "AEDAT 4.0 (DV): EVTS stream, LZ4/Zstd packets, IMU/trigger/frame skipped",
               (".aedat4",), _sniff4, read_aedat4, iter_aedat4, _encode4)

"""Reference encoders of the AEDAT family (pure numpy), the inverses of the readers in
:mod:`eventssm.io.aedat` and :mod:`eventssm.io.aedat4`: used by tests, fuzzing, sample data and
``FormatSpec.encode``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from xml.sax.saxutils import escape

import numpy as np

from eventssm.events import EVENT_DTYPE, SensorSize
from eventssm.io.aedat import (
    _AEDAT3_HEADER,
    _COMPRESSION,
    _POLARITY_EVENT,
    END_HEADER3,
    MAGIC2,
    MAGIC3,
    MAGIC4,
    camera_info,
)

__all__ = ["encode_aedat2", "encode_aedat3", "encode_aedat4"]


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
    w, h, camera = _camera3(camera, sensor_size)
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
    out = [
        MAGIC3 + b"\r\n#Format: RAW\r\n"
        + f"#Source {source_id}: {camera}\r\n".encode("ascii")
        + b"#Start-Time: 1970-01-01 00:00:00 (TZ+0000)\r\n" + END_HEADER3 + b"\r\n"
    ]
    breaks = np.flatnonzero(np.diff(ovf)) + 1 if len(ovf) else np.empty(0, dtype=np.int64)
    runs = np.split(np.arange(len(ev)), breaks) if len(ev) else []
    step = max(int(packet_events), 1)
    for run in runs:  # packets never span a change of t >> 31 (one eventTSOverflow each)
        for i in range(0, len(run), step):
            idx = run[i : i + step]
            out.append(_packets3(words[idx], int(ovf[idx[0]]), source_id, other_packets,
                                 invalid_every))
    return b"".join(out)


def _camera3(camera: str | None, sensor_size: SensorSize | None) -> tuple[int, int, str]:
    """``(W, H, #Source name)`` of an encoded AEDAT 3.1 file (see :func:`encode_aedat3`)."""
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
    return w, h, camera


def _packets3(block: np.ndarray, overflow: int, source_id: int, other_packets: bool,
              invalid_every: int) -> bytes:
    """One polarity packet of the ``(n, 2)`` words ``block`` (data, timestamp) with
    eventTSOverflow ``overflow``, its invalid events inserted and, with ``other_packets``, a
    special-event packet before and an IMU6 packet after it (see :func:`encode_aedat3`)."""

    def header(etype, esize, number):
        return _AEDAT3_HEADER.pack(etype, source_id, esize, 4, overflow, number, number, number)

    valid = len(block)
    if invalid_every > 0:
        bad_word = np.array([(0x7FFF << 17) | (0x7FFF << 2) | 0b10, 0], dtype="<u4")
        k = np.arange(invalid_every, len(block) + 1, invalid_every)
        bad = np.repeat(bad_word[None, :], len(k), axis=0)
        bad[:, 1] = block[k - 1, 1]
        block = np.insert(block, k, bad, axis=0)
    out = []
    if other_packets:
        special = np.array([[(2 << 1) | 1, block[0, 1]]], dtype="<u4")  # type 2, valid
        out.append(header(0, 8, 1) + special.tobytes())
    hdr = bytearray(header(_POLARITY_EVENT, 8, len(block)))
    struct.pack_into("<i", hdr, 24, valid)
    out.append(bytes(hdr) + block.tobytes())
    if other_packets:
        imu = np.zeros((2, 9), dtype="<u4")
        imu[:, 0] = 1
        imu[:, 1] = block[-1, 1]
        out.append(header(3, 36, 2) + imu.tobytes())
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

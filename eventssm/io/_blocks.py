"""Block-wise decoding of binary files whose data region is a run of fixed-size units.

Shared by the Prophesee (EVT 2.0, EVT 3.0, DAT), N-MNIST and AEDAT 2.0 readers. A
:class:`BlockLayout` says how a block kernel (convention: :mod:`eventssm.io.kernels.common`)
consumes a file's data region. :func:`decode_all` reads the region in blocks into one reused
buffer and decodes each block straight into the output array (the bytes the header parser
already read are decoded from memory, so a small file is opened once); :func:`chunks` streams
with O(block + chunk) memory. Every flag a kernel raises (other than those a reader tolerates)
ends in :func:`raise_problem`, which locates the first offending unit and raises
:class:`~eventssm.events.EventFileError` with its byte offset: a reader built on this module has
checked every event against the sensor, so ``read_events`` need not check again
(``FormatSpec.validated``).

Readers whose decoder state at any byte offset can be computed cheaply (N-MNIST, DAT) may
decode large files on several threads: :func:`split`, :func:`iter_range` (``os.preadv`` into a
private buffer, safe to call from several threads) and :func:`parallel_map`; the kernels
release the GIL. :func:`read_threads` decides how many threads a read uses.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, SensorSize, concat_events, copy_events
from eventssm.io.kernels.common import FLAG_RESERVED, locate_first_problem

HEAD_BYTES = 1 << 16  # first read of a file: its header and, for small files, all the data
READ_BLOCK_BYTES = 1 << 20  # whole-file reads: input block (reused) per kernel call
ITER_BLOCK_BYTES = 1 << 18  # streaming: smaller blocks keep the EVT 3.0 worst case bounded
#: Whole-file reads of at least this many data bytes may use several threads.
PARALLEL_MIN_BYTES = 8 << 20
#: Most threads one read uses.
MAX_READ_THREADS = 8
#: Segments per thread in a parallel read (a busy core then holds back less of the work).
SEGMENTS_PER_THREAD = 4
_SPARE = threading.local()  # the reused input buffer of spare_buffer()


@dataclass(frozen=True)
class BlockLayout:
    """How a decode kernel consumes a file's data region.

    Attributes:
        name: format name for messages.
        unit: bytes per unit the kernel counts (a word, or a record).
        word_dtype: numpy dtype of the items the kernel reads.
        kernel: ``kernel(words, out, state, *args) -> (n_events, flags)``.
        new_state: fresh decoder state.
        bound: ``bound(n_units)`` output capacity the kernel needs.
        args: trailing kernel arguments.
        describe: ``describe(unit_bytes) -> message`` for a unit that raised FLAG_RESERVED.
        describe_outside: ``describe_outside(unit_bytes, unit_index) -> message`` for a unit
            that raised FLAG_OUTSIDE (``unit_index`` counts from the start of the data
            region); ``None`` for the default message, which names the decoded coordinates.
    """

    name: str
    unit: int
    word_dtype: str
    kernel: Callable
    new_state: Callable[[], np.ndarray]
    bound: Callable[[int], int]
    args: tuple
    describe: Callable[[bytes], str]
    describe_outside: Callable[[bytes, int], str] | None = None


def read_threads(threads: int | None, nbytes: int) -> int:
    """Threads a whole-file read of ``nbytes`` data bytes uses.

    ``threads`` given (>= 1): that many. ``None``: 1 below :data:`PARALLEL_MIN_BYTES` or where
    ``os.preadv`` is missing, else the CPUs this process may run on (at most
    :data:`MAX_READ_THREADS`).
    """
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, not {threads}")
        return int(threads)
    if nbytes < PARALLEL_MIN_BYTES or not hasattr(os, "preadv"):
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_READ_THREADS))


def read_head(path: Path, want: int) -> tuple[int, bytes]:
    """``(file size, the first min(size, want) bytes)`` with one open and plain system calls
    (no buffered file object: this is most of the cost of reading a small file)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fd).st_size
        want = min(size, want)
        parts = []
        got = 0
        while got < want:
            part = os.read(fd, want - got)
            if not part:  # the file shrank: the caller sees fewer bytes
                break
            parts.append(part)
            got += len(part)
    finally:
        os.close(fd)
    return size, parts[0] if len(parts) == 1 else b"".join(parts)


def check_whole_units(path: Path, lay: BlockLayout, start: int, end: int) -> None:
    """Raise EventFileError when ``[start, end)`` does not hold whole units."""
    extra = (end - start) % lay.unit
    if extra:
        raise EventFileError(
            path,
            f"truncated {lay.name} data: the last {extra} byte(s) do not form a whole "
            f"{lay.unit}-byte {'word' if lay.unit <= 4 else 'record'}",
            end - extra,
        )


def iter_blocks(path: Path, start: int, end: int, block_bytes: int, unit: int,
                buf: np.ndarray | None = None):
    """Yield ``(byte offset, uint8 view)`` over whole units of ``[start, end)`` of ``path``.

    The view is a reused buffer (``buf`` when given), valid until the next iteration.
    """
    with open_fd(path) as fd:
        yield from iter_range(fd, path, start, end, unit, block_bytes, buf)


def _head_block(head: bytes | bytearray, start: int, end: int, unit: int) -> np.ndarray | None:
    """The whole units of ``[start, end)`` that ``head`` (the file's first bytes) holds, as a
    writable array (the kernels are compiled for writable input: a ``bytearray`` head is
    used in place, a ``bytes`` one copied), or None."""
    have = (min(len(head), end) - start) // unit * unit
    if have <= 0:
        return None
    block = np.frombuffer(head, dtype=np.uint8, count=have, offset=start)
    return block if block.flags.writeable else block.copy()


def raise_problem(path: Path, lay: BlockLayout, off: int, words: np.ndarray, state0: np.ndarray,
                  sensor: SensorSize, source: str, first_unit: int = 0) -> None:
    """Raise the EventFileError for the first unit of a block that raised a flag.

    Args:
        off: byte offset of the block in the file.
        words: the block, as the kernel read it.
        state0: the decoder state before the block.
        first_unit: index of the block's first unit in the data region.
    """
    step = lay.unit // words.itemsize
    idx, flags = locate_first_problem(lay.kernel, words, state0, lay.bound, *lay.args, step=step)
    at = off + idx * lay.unit
    raw = words[idx * step : (idx + 1) * step].tobytes()
    if flags & FLAG_RESERVED:
        raise EventFileError(path, lay.describe(raw), at)
    if lay.describe_outside is not None:
        raise EventFileError(path, lay.describe_outside(raw, first_unit + idx), at)
    out = np.empty(max(1, lay.bound(idx + 1)), dtype=EVENT_DTYPE)
    n, _ = lay.kernel(words[: (idx + 1) * step], out, state0.copy(), *lay.args)
    ev = out[:n]
    bad = (ev["x"] < 0) | (ev["x"] >= sensor[0]) | (ev["y"] < 0) | (ev["y"] >= sensor[1])
    j = int(np.argmax(bad)) if bad.any() else n - 1
    raise EventFileError(
        path,
        f"event at (x={int(ev['x'][j])}, y={int(ev['y'][j])}) lies outside the "
        f"{sensor[0]}x{sensor[1]} sensor ({source})",
        at,
    )


#: Fewest units :func:`decode_all` hands a kernel before it grows the output instead.
FIT_MIN_UNITS = 4096


def fit_units(bound: Callable[[int], int], room: int, units: int) -> int:
    """The most units, at most ``units``, whose worst-case output ``bound`` fits ``room``."""
    if bound(units) <= room:
        return units
    lo, hi = 0, units  # bound(lo) <= room < bound(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bound(mid) <= room:
            lo = mid
        else:
            hi = mid
    return lo


def decode_all(path: Path, lay: BlockLayout, start: int, end: int, sensor: SensorSize,
               source: str, *, capacity: int | None = None, tolerate: int = 0,
               head: bytes = b"", state: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Decode ``[start, end)`` of ``path`` into one ``EVENT_DTYPE`` array (blockwise).

    Args:
        capacity: initial output capacity (default: ``lay.bound`` of the whole region). A
            block whose worst case does not fit the room left is decoded in pieces that do
            (:func:`fit_units`); the output grows (x1.5, by copying) only when less than
            :data:`FIT_MIN_UNITS` units would fit.
        tolerate: flags that do not raise (their union is returned).
        head: the file's first bytes, already read (the part of the region they hold is not
            read again).
        state: decoder state to start from (default ``lay.new_state()``); updated in place.

    Returns:
        ``(events, flags)``: the events (no spare capacity, no copy) and the union of the
        tolerated flags that were raised. Any other flag raises EventFileError at the
        offending byte.
    """
    check_whole_units(path, lay, start, end)
    n_units = (end - start) // lay.unit
    out = np.empty(max(1, capacity if capacity is not None else lay.bound(n_units)), EVENT_DTYPE)
    state = lay.new_state() if state is None else state
    n = 0
    seen = 0

    def blocks():
        first = _head_block(head, start, end, lay.unit)
        pos = start
        if first is not None:
            yield start, first
            pos += len(first)
        if pos < end:
            with spare_buffer(min(READ_BLOCK_BYTES, end - pos)) as buf:
                yield from iter_blocks(path, pos, end, READ_BLOCK_BYTES, lay.unit, buf)

    for off, block in blocks():
        words = block.view(lay.word_dtype)
        step = lay.unit // words.itemsize
        units = len(block) // lay.unit
        u = 0
        while u < units:  # the block, or pieces of it that fit the output's room
            take = fit_units(lay.bound, len(out) - n, units - u)
            if take < min(units - u, FIT_MIN_UNITS):  # grow by copying (ndarray.resize
                need = n + lay.bound(min(units - u, FIT_MIN_UNITS))  # would zero-fill)
                bigger = np.empty(max(need, len(out) + len(out) // 2), EVENT_DTYPE)
                bigger[:n] = out[:n]
                out = bigger
                continue
            piece = words[u * step : (u + take) * step]
            state0 = state.copy()
            m, flags = lay.kernel(piece, out[n:], state, *lay.args)
            if flags & ~tolerate:
                raise_problem(path, lay, off + u * lay.unit, piece, state0, sensor, source,
                              (off - start) // lay.unit + u)
            seen |= int(flags)
            n += int(m)
            u += take
    if n < len(out):
        out.resize(n, refcheck=False)  # shrinking keeps the data in place, no copy
    return out, seen


def iter_decoded(path: Path, lay: BlockLayout, start: int, end: int, sensor: SensorSize,
                 source: str, block_bytes: int) -> Iterator[np.ndarray]:
    """Yield decoded blocks (views of a reused buffer, valid until the next item)."""
    check_whole_units(path, lay, start, end)
    block_bytes = max(lay.unit, block_bytes // lay.unit * lay.unit)
    out = np.empty(max(1, lay.bound(block_bytes // lay.unit)), EVENT_DTYPE)
    state = lay.new_state()
    for off, block in iter_blocks(path, start, end, block_bytes, lay.unit):
        words = block.view(lay.word_dtype)
        state0 = state.copy()
        m, flags = lay.kernel(words, out, state, *lay.args)
        if flags:
            raise_problem(path, lay, off, words, state0, sensor, source, (off - start) // lay.unit)
        yield out[: int(m)]


def rechunk(arrays: Iterator[np.ndarray], chunk_events: int, *,
            reused: bool = True) -> Iterator[np.ndarray]:
    """Regroup a stream of event arrays into arrays of ``chunk_events`` events (last: fewer).

    ``reused``: the input arrays are views of a buffer the producer overwrites (every output
    is then a fresh array); otherwise whole input arrays may be passed on without a copy.
    """
    if chunk_events < 1:
        raise ValueError("chunk_events must be >= 1")
    pending: list[np.ndarray] = []
    count = 0
    for arr in arrays:
        start = 0
        while count + (len(arr) - start) >= chunk_events:
            take = chunk_events - count
            piece = arr[start : start + take]
            start += take
            if pending:
                pending.append(piece)
                yield concat_events(pending)
            else:
                yield copy_events(piece) if reused else piece
            pending, count = [], 0
        if start < len(arr):
            rest = arr[start:]
            pending.append(copy_events(rest) if reused else rest)
            count += len(arr) - start
    if count:
        yield pending[0] if len(pending) == 1 else concat_events(pending)


def chunks(path: Path, lay: BlockLayout, start: int, end: int, sensor: SensorSize, source: str,
           chunk_events: int, meta: dict[str, Any], block_bytes: int) -> Iterator[Recording]:
    """Stream ``[start, end)`` as Recordings of at most ``chunk_events`` events."""
    for ev in rechunk(iter_decoded(path, lay, start, end, sensor, source, block_bytes),
                      chunk_events):
        yield Recording(ev, sensor, dict(meta))


# ---------------------------------------------------------------------------------------------
# Parallel whole-file decoding
# ---------------------------------------------------------------------------------------------


def split(start: int, end: int, unit: int, parts: int) -> list[tuple[int, int]]:
    """Cut ``[start, end)`` (whole units) into at most ``parts`` non-empty unit-aligned ranges."""
    n_units = (end - start) // unit
    parts = max(1, min(parts, n_units))
    bounds = [start + (n_units * k // parts) * unit for k in range(parts + 1)]
    return [(a, b) for a, b in pairwise(bounds) if b > a]


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Read into ``view`` from byte ``offset`` of ``fd``; the number of bytes read."""
    if hasattr(os, "preadv"):  # positioned: safe while other threads read the same fd
        return os.preadv(fd, [view], offset)
    os.lseek(fd, offset, os.SEEK_SET)  # one thread only (read_threads gives 1 here)
    data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)


@contextmanager
def spare_buffer(nbytes: int) -> Iterator[np.ndarray]:
    """A uint8 buffer of ``nbytes`` for the duration of a ``with`` block: this thread's
    reused one when it is free and large enough, else a fresh one.

    A whole-file read borrows it for its input blocks, so repeated reads of small files do
    not pay fresh-page faults for a new block buffer each time. Streaming generators do not
    use it (two of them may be alive in one thread).
    """
    spare = getattr(_SPARE, "buf", None)
    if spare is None or getattr(_SPARE, "busy", False) or len(spare) < nbytes:
        if getattr(_SPARE, "busy", False) or nbytes > READ_BLOCK_BYTES:
            yield np.empty(nbytes, dtype=np.uint8)
            return
        spare = _SPARE.buf = np.empty(READ_BLOCK_BYTES, dtype=np.uint8)
    _SPARE.busy = True
    try:
        yield spare[:nbytes]
    finally:
        _SPARE.busy = False


def iter_range(fd: int, path: Path, start: int, end: int, unit: int,
               block_bytes: int = READ_BLOCK_BYTES,
               buf: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(byte offset, uint8 view)`` over whole units of ``[start, end)`` of file ``fd``.

    Positioned reads into a private buffer (``buf`` when given, else a new one), so several
    threads may read one descriptor at once. Views are valid until the next item. A file
    that ends early raises EventFileError.
    """
    block_bytes = max(unit, block_bytes // unit * unit)
    want_bytes = min(block_bytes, max(end - start, unit))
    if buf is None or len(buf) < want_bytes:
        buf = np.empty(want_bytes, dtype=np.uint8)
    buf = buf[:want_bytes]
    mv = memoryview(buf)
    off = start
    while off < end:
        want = min(len(buf), end - off)
        got = 0
        while got < want:
            r = _pread_into(fd, mv[got:want], off + got)
            if not r:
                raise EventFileError(path, "file shrank while it was being read", off + got)
            got += r
        yield off, buf[:want]
        off += want


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], threads: int) -> list[Any]:
    """``[fn(item) for item in items]`` on ``threads`` threads (in order; errors propagate)."""
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


@contextmanager
def open_fd(path: Path) -> Iterator[int]:
    """A read-only OS file descriptor for :func:`iter_range`, closed on exit."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        yield fd
    finally:
        os.close(fd)


def decode_segments(fd: int, path: Path, lay: BlockLayout, segments: Sequence[tuple[int, int]],
                    out: np.ndarray, positions: Sequence[int], states: Sequence[np.ndarray],
                    threads: int) -> list[tuple[int, int]]:
    """Decode byte ranges of one file on ``threads`` threads into one output array.

    Args:
        fd: descriptor of the file (:func:`open_fd`).
        segments: unit-aligned ``(start, end)`` byte ranges.
        out: the output; segment ``k`` writes from index ``positions[k]`` on (the caller
            knows how many events each segment holds, so the writes do not overlap).
        states: decoder state at the start of each segment, updated in place.

    Returns:
        ``(flags, end position)`` per segment.
    """
    def run(k: int) -> tuple[int, int]:
        a, b = segments[k]
        pos, flags, state = int(positions[k]), 0, states[k]
        for _, block in iter_range(fd, path, a, b, lay.unit):
            m, f = lay.kernel(block.view(lay.word_dtype), out[pos:], state, *lay.args)
            pos += int(m)
            flags |= int(f)
        return flags, pos

    return parallel_map(run, range(len(segments)), threads)

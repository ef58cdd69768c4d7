"""A structural pre-check of HDF5 files: global heap collections that would hang libhdf5.

Why: the fuzz campaign (``benchmarks/fuzz_readers.py``, benchmarks/RESULTS.md) found damaged
HDF5 files that send libhdf5 (2.0.0, the newest h5py wheel, 3.16.0) into an endless loop that
holds the GIL; a debugger showed every one inside ``H5HG__cache_heap_deserialize``, the
parsing of a *global heap collection* (where variable-length data lives: string attributes
such as ``meta`` or ``geometry``, the SHD/SSC spike arrays).

Layout (HDF5 File Format Specification version 3, section III.E "Global Heap"), offsets from
the collection's start, little-endian, 8-byte lengths (the sizes every writer we read uses)::

    0   "GCOL"                signature
    4   u8  version = 1
    5   3 reserved bytes
    8   u64 collection size   (bytes, header included)
    16  objects, each:  u16 heap object index, u16 reference count, 4 reserved bytes,
                        u64 object size, then the data padded to a multiple of 8 bytes.
        Index 0 is the free space: its size counts the whole rest of the collection,
        its own 16-byte header included.

libhdf5 walks the objects from offset 16 to the collection's end, advancing by
``16 + align8(size)`` for an object and by ``size`` for the free space, in 64-bit unsigned
arithmetic. A free-space object of size 0 therefore never advances: the endless loop. A size
near 2**64 wraps around: the walk stands still or moves back (the fuzz campaign found an
object of size 2**64 - 1). A size below 16 lands inside the free space and the walk goes on
from whatever bytes are there, which can lead to one of these later. A valid file's walk only
ever moves forward, so a step of 0 or backwards is refused.

:func:`check_global_heaps` finds every collection by its signature (one pass over the file,
through ``mmap``: C speed, no copy) and replays that walk; a walk that stops advancing is a
damaged file. A valid file never has one: its walk always ends at the collection's end. The
reference is libhdf5 itself (tests: every file the readers write still opens; the saved
hanging inputs are refused).
"""

from __future__ import annotations

import mmap
import os
import struct

import numpy as np

SIGNATURE = b"GCOL"
HEADER = 16  # collection header and object header, bytes (8-byte lengths)
_OBJECT = struct.Struct("<HHIQ")  # index, reference count, reserved, size
_WRAP = 1 << 64  # sizes are 64-bit unsigned numbers in libhdf5


def walk_collection(buf, start: int) -> str | None:
    """Replay libhdf5's walk over the objects of the collection at ``buf[start:]``.

    Returns:
        ``None`` when the walk ends (or libhdf5 would refuse the collection itself: another
        version, a size past the end of ``buf``), else the problem in words.
    """
    if start + HEADER > len(buf) or buf[start + 4] != 1:
        return None
    (size,) = struct.unpack_from("<Q", buf, start + 8)
    end = start + size
    if end > len(buf):
        return None  # libhdf5 cannot read the collection: its own error
    p = start + HEADER
    while p + HEADER <= end:
        index, _refs, _reserved, osize = _OBJECT.unpack_from(buf, p)
        if index == 0:
            step = osize
        else:  # 64-bit unsigned arithmetic, as in C: a size near 2**64 wraps around
            step = (HEADER + (osize + 7) % _WRAP // 8 * 8) % _WRAP
        where = f"global heap collection at byte {start:,}: "
        if step == 0:
            what = "free space" if index == 0 else f"object {index}"
            return where + f"{what} of size {osize:,} at byte {p:,} (the walk stands still)"
        if step >= _WRAP // 2:  # the C pointer moves back: the walk may never end
            return where + f"object {index} of size {osize:,} at byte {p:,} (the walk goes back)"
        p += step
    return None


def damaged_collection(buf) -> str | None:
    """The first collection of ``buf`` (bytes or mmap: a file or its head) whose walk does
    not end, or ``None``."""
    at = buf.find(SIGNATURE)
    while at >= 0:
        problem = walk_collection(buf, at)
        if problem is not None:
            return problem
        at = buf.find(SIGNATURE, at + 1)
    return None


def field_sizes(buf) -> tuple[int, int] | None:
    """(size of offsets, size of lengths) from the superblock of ``buf`` (an HDF5 file),
    found at byte 0 or a user-block offset 512 * 2**k; ``None`` when there is none.
    Superblock versions 0 and 1 keep them at bytes 13 and 14, versions 2 and 3 at 9 and 10
    (spec II.A)."""
    at = 0
    while at + 16 <= len(buf):
        if buf[at : at + 8] == b"\x89HDF\r\n\x1a\n":
            version = buf[at + 8]
            return (buf[at + 13], buf[at + 14]) if version < 2 else (buf[at + 9], buf[at + 10])
        at = 512 if at == 0 else 2 * at
    return None


def check_global_heaps(path: str | os.PathLike) -> str | None:
    """The first damaged global heap collection of the file ``path`` (see the module
    docstring), or ``None``; files whose superblock does not give 8-byte offsets and
    lengths (the layout replayed here) are left to libhdf5. OSError propagates (the caller
    reports unreadable files)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if field_sizes(buf) != (8, 8):
                return None
            return damaged_collection(buf)


#: one element of a variable-length dataset as stored in the file (spec III.E and IV.A.2.d:
#: the sequence length, then the global heap ID: collection address and object index)
VLEN_DESCRIPTOR = np.dtype([("length", "<u4"), ("collection", "<u8"), ("index", "<u4")])


def check_vlen_descriptors(path: str | os.PathLike, offset: int, count: int, itemsize: int,
                           file_size: int) -> str | None:
    """The first element of a contiguous variable-length dataset (``count`` elements stored at
    byte ``offset``, base type of ``itemsize`` bytes) that claims more than the file holds.

    Why: libhdf5 allocates ``length * itemsize`` bytes for an element before it looks at the
    heap object; a damaged length made it allocate up to 1.4 GiB for a 14 KiB file (fuzz
    campaign). The data of every element is a heap object inside the file, so a valid
    element's ``length * itemsize`` and its collection address are below the file size.
    """
    if count <= 0:
        return None
    if offset + count * VLEN_DESCRIPTOR.itemsize > file_size:
        return None  # libhdf5 cannot read the descriptors: its own error
    desc = np.fromfile(path, VLEN_DESCRIPTOR, count, offset=offset)
    nbytes = desc["length"].astype(np.uint64) * np.uint64(itemsize)
    bad = np.flatnonzero((nbytes > file_size) | ((desc["length"] > 0) & (desc["collection"] >= file_size)))
    if not len(bad):
        return None
    i = int(bad[0])
    return (f"element {i} claims {int(desc['length'][i]):,} values in a heap collection at byte "
            f"{int(desc['collection'][i]):,}, more than the {file_size:,}-byte file holds")

"""eventssm.io.hdf5_heaps: damaged global heap collections are refused before libhdf5 loops on
them, and no valid file is refused.

Collections are built here byte by byte from the HDF5 specification (section III.E); the
damaged files are inputs of benchmarks/fuzz_readers.py on which libhdf5 2.0.0 never returned.
The reads run in a worker process with a time limit, so a regression fails instead of hanging.
"""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest

from eventssm.events import EventFileError
from eventssm.io import formats
from eventssm.io.hdf5_heaps import check_global_heaps, check_vlen_descriptors, field_sizes, walk_collection
from eventssm.isolate import run_isolated
from tests.conftest import TEST_DATA


def _object(index: int, data: bytes) -> bytes:
    pad = b"\0" * (-len(data) % 8)
    return struct.pack("<HHIQ", index, 1, 0, len(data)) + data + pad


def _collection(objects: bytes, size: int = 4096, free: int | None = None) -> bytes:
    """A version-1 collection of ``size`` bytes: the objects, then the free-space object
    (index 0) whose size counts the rest of the collection (or ``free`` when given)."""
    rest = size - 16 - len(objects)
    free_space = struct.pack("<HHIQ", 0, 0, 0, rest if free is None else free)
    body = objects + free_space
    return b"GCOL\x01\0\0\0" + struct.pack("<Q", size) + body + b"\0" * (size - 16 - len(body))


def test_walk_of_hand_built_collections():
    objs = _object(1, b"geometry 640x480") + _object(2, b'{"camera": "x"}')
    assert walk_collection(_collection(objs), 0) is None
    # a free space of size 0 is where libhdf5's walk never advances (4 + 16 + 2 objects of 32 bytes)
    bad = b"pad!" + _collection(objs, free=0)
    assert walk_collection(bad, 4) == ("global heap collection at byte 4: free space of size 0 at byte 84 "
                                       "(the walk stands still)")
    # sizes near 2**64 wrap around in libhdf5's 64-bit arithmetic: still, or backwards
    still = _collection(_object(1, b"ok") + struct.pack("<HHIQ", 2, 1, 0, 2**64 - 16))
    assert walk_collection(still, 0) == ("global heap collection at byte 0: object 2 of size "
                                         "18,446,744,073,709,551,600 at byte 40 (the walk stands still)")
    back = _collection(struct.pack("<HHIQ", 3, 1, 0, 2**64 - 48))
    assert walk_collection(back, 0).endswith("object 3 of size 18,446,744,073,709,551,568 at byte 16 "
                                             "(the walk goes back)")
    # a free space of 3 bytes sends the walk into the zeros behind it: another index 0, size 0
    assert walk_collection(_collection(objs, free=3), 0) is not None
    # a collection that libhdf5 refuses itself (truncated, other version) is left to it
    assert walk_collection(_collection(objs, free=0)[:2000], 0) is None
    other = bytearray(_collection(objs, free=0))
    other[4] = 2
    assert walk_collection(bytes(other), 0) is None


def test_valid_files_with_many_variable_length_objects_pass(tmp_path):
    """Oracle: libhdf5 wrote these and reads them back; the pre-check must not refuse any."""
    rng = np.random.default_rng(5)
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        for i in range(60):  # strings of 0..700 bytes: several collections, odd paddings
            f.attrs[f"a{i}"] = "x" * int(rng.integers(0, 700))
        vlen = f.create_dataset("v", (40,), dtype=h5py.vlen_dtype(np.float32))
        for i in range(40):
            vlen[i] = rng.random(int(rng.integers(0, 300))).astype(np.float32)
    assert path.read_bytes().count(b"GCOL") >= 2
    assert check_global_heaps(path) is None
    with h5py.File(path) as f:
        assert len(f.attrs) == 60 and len(f["v"][39]) >= 0


def _read_both(path) -> list[str]:
    """Worker: the hdf5 reader's outcome for read and iter_chunks."""
    spec = formats()["hdf5"]
    out = []
    for run in (lambda: spec.read(path, None), lambda: list(spec.iter_chunks(path, 50, None))):
        try:
            run()
            out.append("a Recording")
        except EventFileError as exc:
            out.append(str(exc))
    return out


@pytest.mark.parametrize(("name", "where"), [
    ("hdf5_global_heap_free_space_0_eventssm.h5", "at byte 6,144: free space of size 0 at byte 6,200"),
    ("hdf5_global_heap_free_space_0_prophesee.h5", "at byte 8,712: free space of size 0 at byte 8,728"),
    ("hdf5_global_heap_size_wraps.h5", "at byte 8,712: free space of size 0 at byte 8,784"),
])
def test_fuzz_inputs_that_hung_libhdf5_are_one_error(name, where):
    """Inputs 4329, 5634 and 65829 of the hdf5 campaign (seed 0): libhdf5 looped for ever in
    H5HG__cache_heap_deserialize while reading a string attribute. In the last one an object
    of size 2**64 - 1 (aligned: 0 in 64 bits) leads the walk into its data, to a free space
    of size 0."""
    path = TEST_DATA / "fuzz" / name
    [(_, out)] = run_isolated(_read_both, [path], workers=1, timeout=60)
    assert out.error is None, out.error  # "gave up after 60 s": the hang is back
    assert out.value == [f"{path}: damaged HDF5 file: global heap collection {where} (the walk stands still)"] * 2


def test_vlen_descriptors_that_claim_more_than_the_file(tmp_path):
    """Hand-written descriptors (u32 length, u64 collection address, u32 index each)."""
    path = tmp_path / "desc.bin"
    good = struct.pack("<IQI", 64, 2448, 1) + struct.pack("<IQI", 0, 0, 0)
    path.write_bytes(b"\0" * 100 + good + struct.pack("<IQI", 700_000_000, 2448, 2) + b"\0" * 4000)
    size = path.stat().st_size
    assert check_vlen_descriptors(path, 100, 2, 4, size) is None  # 64 floats; an empty element
    assert check_vlen_descriptors(path, 100, 3, 2, size) == (
        f"element 2 claims 700,000,000 values in a heap collection at byte 2,448, more than the "
        f"{size:,}-byte file holds")
    path.write_bytes(b"\0" * 100 + struct.pack("<IQI", 3, 10**9, 1) + b"\0" * 100)
    assert "element 0 claims 3 values in a heap collection at byte 1,000,000,000" in check_vlen_descriptors(
        path, 100, 1, 4, 216)


def test_fuzz_input_whose_vlen_length_made_libhdf5_allocate_gigabytes_is_one_error():
    """Input 2796 of the hdf5 campaign (an SHD-style file of 14 KB): a damaged sequence length
    of spikes/units made libhdf5 allocate 1.4 GiB before it reported the bad heap address
    (in a worker with a memory cap here, should that come back)."""
    path = TEST_DATA / "fuzz" / "hdf5_vlen_length_huge.h5"
    [(_, out)] = run_isolated(_read_both, [path], workers=1, timeout=60)
    assert out.error is None, out.error
    assert out.value == [f"{path}: damaged HDF5 file: dataset /spikes/units: element 0 claims 734,478,199 "
                         "values in a heap collection at byte 13,488,350,669,435,584,376, more than the "
                         "14,480-byte file holds"] * 2


def test_files_with_4_byte_offsets_and_a_user_block_are_left_to_libhdf5(tmp_path):
    """The pre-checks replay the layout of 8-byte offsets and lengths: another layout (here
    4-byte ones and a 1 KiB user block, written by libhdf5) is not refused, and reads."""
    path = tmp_path / "small.h5"
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_sizes(4, 4)
    fcpl.set_userblock(1024)
    rng = np.random.default_rng(2)
    with h5py.File(h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl)) as f:
        g = f.create_group("events")
        g["x"], g["y"] = rng.integers(0, 20, 30).astype(np.int16), rng.integers(0, 10, 30).astype(np.int16)
        g["t"], g["p"] = np.arange(30, dtype=np.int64) * 7, rng.integers(0, 2, 30).astype(np.uint8)
        g.attrs["note"] = "a variable-length string in a global heap"
        f.create_dataset("v", (2,), dtype=h5py.vlen_dtype(np.float32))[0] = np.ones(3, np.float32)
    assert path.read_bytes()[1024:1032] == b"\x89HDF\r\n\x1a\n"
    assert field_sizes(path.read_bytes()) == (4, 4)
    assert check_global_heaps(path) is None
    rec = formats()["hdf5"].read(path, (20, 10, 2))
    assert len(rec.events) == 30 and rec.events["t"][-1] == 29 * 7

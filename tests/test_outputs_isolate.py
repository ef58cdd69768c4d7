"""eventssm.outputs (output rules, atomic writes), eventssm.interrupts and eventssm.isolate
(worker processes with time and memory limits), including a real hanging HDF5 file."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eventssm import interrupts
from eventssm.cli import main
from eventssm.events import Recording, make_events
from eventssm.io import write_events
from eventssm.isolate import run_isolated
from eventssm.outputs import OutputError, atomic_output, check_output, same_file, usual_mode
from eventssm.tokenizers.dataset import DatasetError, build_cache, write_cache
from tests.io.test_fuzz_all import _own_sample

FORK_OK = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX's at-fork warning

# ------------------------------------------------------------------------------- outputs


def test_same_file_sees_through_other_names(tmp_path):
    a = tmp_path / "a.raw"
    a.write_bytes(b"x")
    os.link(a, tmp_path / "hard.raw")
    (tmp_path / "soft.raw").symlink_to(a)
    assert same_file(a, tmp_path / "sub" / ".." / "a.raw") or not (tmp_path / "sub").exists()
    assert same_file(a, tmp_path / "hard.raw") and same_file(a, tmp_path / "soft.raw")
    assert not same_file(a, tmp_path / "missing.raw")
    (tmp_path / "b.raw").write_bytes(b"x")
    assert not same_file(a, tmp_path / "b.raw")


def test_check_output_rules(tmp_path):
    rec = tmp_path / "rec.raw"
    rec.write_bytes(b"recording")
    os.link(rec, tmp_path / "alias.h5")
    with pytest.raises(OutputError, match="is one of the inputs"):  # even with --overwrite
        check_output(tmp_path / "alias.h5", inputs=[rec], overwrite=True)
    with pytest.raises(OutputError, match="exists \\(use --overwrite"):
        check_output(rec)
    with pytest.raises(OutputError, match="is not a cache; --overwrite only replaces a cache"):
        check_output(rec, overwrite=True, replaceable=lambda p: False, what="a cache")
    assert check_output(rec, overwrite=True, replaceable=lambda p: True) == rec
    assert check_output(tmp_path / "new.h5") == tmp_path / "new.h5"
    with pytest.raises(OutputError, match="no such folder"):
        check_output(tmp_path / "nope" / "c.h5")
    with pytest.raises(OutputError, match="is not a folder"):
        check_output(rec / "c.h5")
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path)
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", folder=True)
    with pytest.raises(OutputError, match="not an empty folder"):
        check_output(tmp_path, folder=True)


@pytest.mark.parametrize("folder", [False, True])
def test_atomic_output_publishes_with_usual_permissions_or_leaves_nothing(tmp_path, folder):
    out = tmp_path / ("d" if folder else "f.bin")
    with atomic_output(out, folder=folder) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f".{out.name}.")
        (tmp / "a").write_text("1") if folder else tmp.write_text("1")
        assert not out.exists()
    assert out.stat().st_mode & 0o777 == usual_mode(folder)  # not mkstemp's 0600 / mkdtemp's 0700
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    # a failure (or Ctrl-C) inside the block: the old output stays, no temporary is left
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for exc in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), atomic_output(tmp_path / "g.bin", folder=folder) as tmp:
            (tmp / "a").write_text("2") if folder else tmp.write_text("2")
            raise exc
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_signal_during_the_publish_block_cancels_the_rename(tmp_path, monkeypatch):
    """Outside the CLI too: SIGINT arriving inside the deferred block (the hook fires there)
    cancels the rename; the previous disposition (KeyboardInterrupt) acts afterwards."""
    monkeypatch.setenv(interrupts.HOOK_ENV, "publish")
    out = tmp_path / "o.bin"
    out.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_output(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["o.bin"]


def _recordings(d: Path, n=2) -> list[Path]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        ev = make_events(rng.integers(0, 8, 50), rng.integers(0, 8, 50), np.arange(50) * 10,
                         rng.integers(0, 2, 50).astype(bool))
        out.append(write_events(d / f"r{i}.npz", Recording(ev, (8, 8, 2), {})))
    return out


def test_build_cache_never_replaces_an_input_or_a_non_cache(tmp_path):
    files = _recordings(tmp_path)
    before = files[0].read_bytes()
    with pytest.raises(DatasetError, match="is one of the inputs"):
        build_cache(files[0], files, overwrite=True, workers=0)
    other = tmp_path / "notes.h5"
    other.write_text("my notes")
    with pytest.raises(DatasetError, match="not an eventssm token cache"):
        build_cache(other, files, overwrite=True, workers=0)
    with pytest.raises(DatasetError, match="not an eventssm token cache"):
        write_cache(other, [], overwrite=True)
    assert files[0].read_bytes() == before and other.read_text() == "my notes"
    cache = tmp_path / "c.h5"
    build_cache(cache, files, workers=0)
    assert cache.stat().st_mode & 0o777 == usual_mode()
    build_cache(cache, files, overwrite=True, workers=1)  # a cache may be replaced


# ------------------------------------------------------------------------------- isolate


def _square(x):
    return x * x


def _sleepy(x):
    if x == 2:
        time.sleep(60)
    return x


def _die(x):
    if x == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def _allocate(n_bytes):
    return len(np.ones(n_bytes, np.uint8))


def test_run_isolated_keeps_order_and_matches_the_in_process_reference():
    jobs = list(range(9))
    ref = [(j, o.value) for j, o in run_isolated(_square, jobs, workers=0)]
    got = [(j, o.value) for j, o in run_isolated(_square, jobs, workers=2)]
    assert got == ref == [(j, j * j) for j in jobs]


@FORK_OK
def test_a_hanging_job_is_killed_and_the_others_go_on(forked_workers):
    t0 = time.monotonic()
    outs = list(run_isolated(_sleepy, [1, 2, 3], workers=1, timeout=1.0, describe=lambda j: f"job{j}"))
    assert time.monotonic() - t0 < 30
    assert [o.value for _, o in outs] == [1, None, 3]
    assert outs[1][1].kind == "timeout"
    assert outs[1][1].error == "job2: gave up after 1 s (--file-timeout); the decoder did not finish"


def test_a_dying_worker_costs_only_its_job():
    outs = list(run_isolated(_die, [0, 1, 2], workers=1, describe=lambda j: f"job{j}"))
    assert [o.value for _, o in outs] == [0, None, 2]
    assert outs[1][1].kind == "died" and "killed by SIGKILL" in outs[1][1].error


def test_the_memory_cap_turns_a_huge_allocation_into_an_error():
    outs = list(run_isolated(_allocate, [1000, 64 << 30, 1000], workers=1, memory=3 << 30,
                             describe=lambda j: f"{j} bytes"))
    assert [o.value for _, o in outs] == [1000, None, 1000]
    assert outs[1][1].kind == "memory" and outs[1][1].error == f"{64 << 30} bytes: not enough memory"


# ------------------------------------------------------------------- a real hanging file


@pytest.fixture
def forked_workers(monkeypatch):
    """The command line forks its workers (it never loads JAX). In a test process where another
    test loaded JAX, isolate would spawn them instead, and a spawned worker's first file pays
    for importing numpy/numba/h5py, longer than these tests' 2 s limit on a loaded machine.
    The forked children only read files (no JAX), so JAX's fork warning is ignored (FORK_OK)."""
    import multiprocessing

    import eventssm.isolate as isolate

    monkeypatch.setattr(isolate, "_mp_context", lambda: multiprocessing.get_context("fork"))


@pytest.fixture(scope="module")
def hanging_h5():
    """docs/formats.md's known limit: one byte of a Prophesee-style file's root attribute
    storage changed (offset 8,760: 0xd8 -> 0x9f) sends libhdf5 into an endless loop that holds
    the GIL."""
    with tempfile.TemporaryDirectory() as d:
        data = bytearray(_own_sample("hdf5-prophesee", Path(d))[0])
        if len(data) <= 8760 or data[8760] != 0xD8:
            pytest.skip("this h5py writes another layout: the documented hanging byte is elsewhere")
        data[8760] = 0x9F
        p = Path(d) / "hang.hdf5"
        p.write_bytes(bytes(data))
        yield p


@pytest.fixture
def no_precheck(monkeypatch):
    """libhdf5 itself sees the hanging file: the hdf5 reader's pre-check (which refuses it,
    eventssm.io.hdf5_heaps) is switched off, so the worker's time limit is what stops it."""
    import eventssm.io.hdf5 as hdf5

    monkeypatch.setattr(hdf5, "check_global_heaps", lambda path: None)


@FORK_OK
def test_the_reader_refuses_the_hanging_file_before_libhdf5_sees_it(tmp_path, hanging_h5, forked_workers):
    """The same file without the switch: one damaged-file line, no time-out (a regression
    would hang the worker until --file-timeout, and the line would say "gave up")."""
    good = _recordings(tmp_path, 1)[0]
    r = CliRunner().invoke(main, ["info", str(hanging_h5), str(good), "--file-timeout", "60"])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [f"error: {hanging_h5}: damaged HDF5 file: global heap collection at byte "
                                     "8,712: free space of size 0 at byte 12,751 (the walk stands still)"]


@FORK_OK
def test_info_gives_up_on_a_hanging_file_and_goes_on(tmp_path, hanging_h5, forked_workers, no_precheck):
    good = _recordings(tmp_path, 1)[0]
    r = CliRunner().invoke(main, ["info", str(hanging_h5), str(good), "--file-timeout", "2"])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [f"error: {hanging_h5}: gave up after 2 s (--file-timeout); the decoder "
                                     "did not finish"]
    assert r.stdout.startswith(f"{good}\n") and "events      : 50" in r.stdout


@FORK_OK
def test_preprocess_skips_a_hanging_file(tmp_path, hanging_h5, forked_workers, no_precheck):
    files = _recordings(tmp_path)
    r = CliRunner().invoke(main, ["preprocess", str(hanging_h5), *map(str, files), "-o", str(tmp_path / "c.h5"),
                                  "--no-labels", "--skip-bad", "--file-timeout", "2", "--sensor-size", "8x8"])
    assert r.exit_code == 0, r.output
    assert f"skipped: {hanging_h5}: gave up after 2 s (--file-timeout)" in r.stderr
    assert "2 samples from 2 recordings" in r.stdout, r.stderr


def test_interrupts_module_does_not_leak_handlers():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.unraisablehook
    r = CliRunner().invoke(main, ["info", "--formats"])
    assert r.exit_code == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.unraisablehook) == before


# ------------------------------------------- an existing output that would hang libhdf5


def _cache_with_a_looping_heap(cache: Path) -> Path:
    """A copy of the token cache ``cache`` whose attributes' global heap has a free-space
    object of size 0 (HDF5 spec III.E, walked by hand): libhdf5 loops for ever reading it."""
    data = bytearray(cache.read_bytes())
    at = data.find(b"GCOL")
    p = at + 16
    while int.from_bytes(data[p : p + 2], "little") != 0:  # object index 0 = the free space
        p += 16 + (int.from_bytes(data[p + 8 : p + 16], "little") + 7) // 8 * 8
    data[p + 8 : p + 16] = bytes(8)
    out = cache.with_name("damaged_" + cache.name)
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("existing", ["documented hanging file", "token cache with a looping heap"])
def test_preprocess_overwrite_never_opens_a_hanging_output_in_the_main_process(tmp_path, hanging_h5, existing):
    """`preprocess --overwrite` asks whether the existing output is a token cache. It used to
    open it with h5py in the main process, where a damaged file hung libhdf5 for ever. Now:
    the installed command refuses it at once, one line, exit 2, the file unchanged (a
    subprocess with a time limit, so a regression fails instead of hanging the test run)."""
    from tests.cli.test_installed import eventssm, one_error_line

    files = _recordings(tmp_path)
    if existing.startswith("documented"):
        out = tmp_path / "out.h5"
        out.write_bytes(hanging_h5.read_bytes())
    else:
        build_cache(tmp_path / "c.h5", files, workers=0)
        out = _cache_with_a_looping_heap(tmp_path / "c.h5")
    before = out.read_bytes()
    res = eventssm("preprocess", *files, "-o", out.name, "--no-labels", "--overwrite", "--sensor-size", "8x8",
                   cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stderr
    assert one_error_line(res) == (f"error: {out.name}: exists and is not an eventssm token cache; "
                                   "--overwrite only replaces an eventssm token cache")
    assert out.read_bytes() == before


@FORK_OK
def test_is_token_cache_reads_the_marker_in_a_worker_with_a_time_limit(tmp_path, monkeypatch, forked_workers):
    """The attribute read that passes the byte checks runs in a worker: when it does not
    answer (the test hook makes the worker sleep, as a libhdf5 loop would), the file is not
    taken as a cache after `timeout` seconds; the same cache answers True without the hook."""
    from eventssm.tokenizers.dataset import is_token_cache

    cache = tmp_path / "cache.h5"
    build_cache(cache, _recordings(tmp_path), workers=0)
    slow = tmp_path / "slowcache.h5"  # the same bytes (answers are kept per file)
    slow.write_bytes(cache.read_bytes())
    monkeypatch.setenv("EVENTSSM_TEST_HANG", "slowcache")
    assert is_token_cache(cache, timeout=60)
    assert not is_token_cache(slow, timeout=1)
    assert is_token_cache(_recordings(tmp_path)[0]) is False  # an npz: refused by the byte checks

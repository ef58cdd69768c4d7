"""The INSTALLED ``eventssm`` command in a subprocess: real signals, real exit codes.

docs/cli.md's exit-code table and its interrupt and overwrite rules, checked the way a user
meets them. Interrupts are made deterministic by the test hook of :mod:`eventssm.interrupts`:
``EVENTSSM_SIGNAL_AT=POINT[#K][:TERM]`` makes the command send itself SIGINT (or SIGTERM) the
K-th time it passes POINT; one test also sends a real SIGINT from outside while a worker hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eventssm.events import Recording, make_events
from eventssm.io import write_events
from eventssm.tokenizers.dataset import build_cache, find_recordings, labels_from_folder, read_cache_info

ROOT = Path(__file__).resolve().parents[2]
EVENTSSM = Path(sys.executable).parent / "eventssm"


def command_env() -> dict[str, str]:
    """The environment of the installed command: this tree on its path, no test hook set."""
    env = {k: v for k, v in os.environ.items() if k != "EVENTSSM_SIGNAL_AT"}
    env["PYTHONPATH"] = str(ROOT)  # the installed script imports this tree
    return env


def eventssm(*args, cwd: Path, signal_at: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    assert EVENTSSM.exists(), f"the console script {EVENTSSM} is not installed (pip install -e .)"
    env = command_env()
    if signal_at:
        env["EVENTSSM_SIGNAL_AT"] = signal_at
    return subprocess.run([str(EVENTSSM), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(res: subprocess.CompletedProcess) -> str:
    """stderr is exactly one ``error: ...`` line: no traceback, no "Exception ignored" noise."""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Six small recordings in three class folders, and a cache of the first class."""
    d = tmp_path_factory.mktemp("installed")
    rng = np.random.default_rng(3)
    for c in ("left", "right", "up"):
        (d / "rec" / c).mkdir(parents=True)
        for i in range(2):
            n = 300
            ev = make_events(rng.integers(0, 16, n), rng.integers(0, 16, n), np.sort(rng.integers(0, 10**5, n)),
                             rng.integers(0, 2, n).astype(bool))
            write_events(d / "rec" / c / f"{c}_{i}.npz", Recording(ev, (16, 16, 2), {}))
    files = find_recordings([d / "rec" / "left"])
    build_cache(d / "cache.h5", files, labels_from_folder(files), workers=0)
    return d


# ------------------------------------------------------------------------------ interrupts


@pytest.mark.parametrize("point", ["job-done#3", "worker-shutdown#2:TERM", "publish"])
def test_interrupted_preprocess_leaves_the_cache_as_it_was(work, point):
    """Ctrl-C (or SIGTERM) while files are read, while the worker pool shuts down, just before
    and during the final rename: exit 130, one line, the old cache byte for byte, no temporary.
    (The first job and worker shutdown are the check that the existing cache.h5 is a cache,
    run in a worker: hence job-done#3, the second file, and worker-shutdown#2.)"""
    before = (work / "cache.h5").read_bytes()
    names = listing(work)
    res = eventssm("preprocess", "rec", "-o", "cache.h5", "--labels-from", "folder", "--overwrite",
                   "--workers", "2", cwd=work, signal_at=point)
    assert res.returncode == 130, res.stderr
    assert one_error_line(res) == "error: interrupted; cache.h5 was not written"
    assert res.stdout == ""
    assert (work / "cache.h5").read_bytes() == before
    assert listing(work) == names


def test_interrupt_after_the_rename_reports_a_complete_output(tmp_path, work):
    """A signal that arrives once the rename is done: the new cache is whole, and the line says so."""
    res = eventssm("preprocess", work / "rec", "-o", "c.h5", "--labels-from", "folder", cwd=tmp_path,
                   signal_at="after-publish")
    assert res.returncode == 130
    assert one_error_line(res) == "error: interrupted; c.h5 was already complete"
    assert len(read_cache_info(tmp_path / "c.h5").labels) == 6
    assert listing(tmp_path) == ["c.h5"]


@pytest.mark.parametrize(("args", "out"), [
    (["simulate", "sim", "--per-class", "1", "--size", "8x8", "--frames", "3", "--classes", "up,down"], "sim"),
    (["render", "{rec}", "-o", "frames", "--window-ms", "20"], "frames"),
])
def test_interrupted_simulate_and_render_leave_nothing(tmp_path, work, args, out):
    args = [a.replace("{rec}", str(work / "rec" / "up" / "up_0.npz")) for a in args]
    res = eventssm(*args, cwd=tmp_path, signal_at="before-publish")
    assert res.returncode == 130, res.stderr
    assert one_error_line(res) == f"error: interrupted; {out} was not written"
    assert listing(tmp_path) == []


def test_ctrl_c_while_a_worker_hangs(tmp_path, work):
    """A real SIGINT from outside while `info` waits on a hung decoder (a test hook makes the
    worker sleep): exit 130 at once, one line, and the worker process is gone."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EVENTSSM_TEST_HANG": "up_1.npz"}
    proc = subprocess.Popen([str(EVENTSSM), "info", work / "rec" / "up" / "up_0.npz", work / "rec" / "up" / "up_1.npz"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # the first file is done: the worker now hangs on the second
    assert first.strip().endswith("up_0.npz")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert err.splitlines() == ["error: interrupted; nothing was written"]
    ps = subprocess.run(["ps", "-eo", "ppid="], capture_output=True, text=True).stdout.split()
    assert str(proc.pid) not in ps  # no orphaned worker


# ---------------------------------------------------------------------- outputs and exit codes


def test_preprocess_never_replaces_an_input(tmp_path, work):
    """The issue's case: `preprocess scratch -o scratch/walk.aedat --overwrite` replaced the user's
    recording with a cache. Now: exit 2, one line, the recording untouched."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    rec = scratch / "walk_1.npz"
    rec.write_bytes((work / "rec" / "up" / "up_0.npz").read_bytes())
    other = scratch / "walk_2.npz"
    other.write_bytes((work / "rec" / "up" / "up_1.npz").read_bytes())
    before = rec.read_bytes()
    res = eventssm("preprocess", "scratch", "-o", "scratch/walk_1.npz", "--labels-from", "name", "--overwrite",
                   cwd=tmp_path)
    assert res.returncode == 2
    assert one_error_line(res) == ("error: scratch/walk_1.npz: exists and is not an eventssm token cache; "
                                   "--overwrite only replaces an eventssm token cache")
    res = eventssm("preprocess", "scratch/walk_1.npz", "scratch/walk_2.npz", "-o", "scratch/../scratch/walk_1.npz",
                   "--labels-from", "name", "--overwrite", cwd=tmp_path)
    assert res.returncode == 2
    assert "is one of the inputs" in one_error_line(res)
    assert rec.read_bytes() == before and listing(scratch) == ["walk_1.npz", "walk_2.npz"]


def test_exit_codes_of_the_table(tmp_path, work):
    """0 success; 1 a FILE of `info` unreadable (the others still shown); 2 bad input."""
    ok = eventssm("info", work / "rec" / "up" / "up_0.npz", cwd=tmp_path)
    assert ok.returncode == 0 and ok.stderr == "" and "events      : 300" in ok.stdout
    bad = tmp_path / "bad.raw"
    bad.write_bytes(b"\x00\x01\x02")
    res = eventssm("info", "missing.raw", bad, work / "rec" / "up" / "up_0.npz", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        "error: missing.raw: no such file",
        f"error: cannot tell the format of {bad}; no evt2/evt3 header and '.raw' is used by several formats; "
        "pass --format (one of evt2, evt3)",
    ]
    assert "events      : 300" in res.stdout
    res = eventssm("preprocess", "rec", "-o", "x.h5", cwd=work)
    assert res.returncode == 2
    assert one_error_line(res) == "error: give exactly one of --labels CSV, --labels-from folder|name, --no-labels"
    res = eventssm("simulate", "s2", "--frames", "1", cwd=tmp_path)
    assert res.returncode == 2
    assert one_error_line(res) == ("error: Invalid value for '--frames': 1 is not in the range x>=2. "
                                   "(see 'eventssm simulate --help')")
    res = eventssm("preprocess", "rec", "-o", "cache.h5", "--labels-from", "folder", cwd=work)
    assert res.returncode == 2
    assert one_error_line(res) == "error: cache.h5: exists; pass --overwrite to replace it or --append to add files"
    assert listing(tmp_path) == ["bad.raw"]


def test_a_closed_pipe_on_stdout_ends_quietly(tmp_path, work):
    """`eventssm info FILE | head`: the reader has gone before the command writes. Exit 141 (as
    a process killed by SIGPIPE) with nothing on stderr; no "error: Broken pipe" line."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: no race
    try:
        res = subprocess.run([str(EVENTSSM), "info", str(work / "rec" / "up" / "up_0.npz")], cwd=tmp_path,
                             env=command_env(), stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (res.returncode, res.stderr) == (141, "")
    assert listing(tmp_path) == []


def test_ctrl_c_during_start_up(tmp_path, work):
    """Ctrl-C while the command is still importing numpy/numba (before its own handlers are
    installed): one line and 130, not an import traceback; the cache is untouched."""
    before = (work / "cache.h5").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EVENTSSM_SIGNAL_AT", None)
    proc = subprocess.Popen([str(EVENTSSM), "preprocess", "rec", "-o", "cache.h5", "--labels-from", "folder",
                             "--overwrite"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # wait until NumPy's extension is mapped: eventssm is importing (its start-up handler is in
    # place: it comes before any heavy import) or already running
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if "_multiarray_umath" in Path(f"/proc/{proc.pid}/maps").read_text():
                break
        except OSError:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert len(err.splitlines()) == 1 and err.startswith("error: interrupted; ") and out == ""
    assert (work / "cache.h5").read_bytes() == before


def _catches_sigterm(pid: int) -> bool:
    """The process has a handler for SIGTERM (``SigCgt`` of /proc/PID/status): Python itself
    installs none, so eventssm's first line (``eventssm/__init__.py``) has run."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.parametrize(("sig", "delays"), [
    (signal.SIGINT, [0.0, 0.005, 0.02, 0.06, 0.2, 0.6]),
    (signal.SIGTERM, [0.0, 0.03, 0.3]),
])
def test_a_signal_at_any_early_moment(tmp_path, work, sig, delays):
    """A real signal from outside at several moments after eventssm's first line runs:
    during the imports (numpy, numba, click), argument parsing, the command's own start and
    its work. Always exit 130 with one line and no output, or (a late signal on a fast
    machine) the whole normal output with exit 0; never a traceback or "Aborted!". The
    interpreter's own start-up before that first line is Python's (docs/cli.md)."""
    rec = work / "rec" / "up" / "up_0.npz"
    full = eventssm("info", rec, cwd=tmp_path)
    assert full.returncode == 0 and "events      : 300" in full.stdout
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EVENTSSM_SIGNAL_AT", None)
    for delay in delays:
        proc = subprocess.Popen([str(EVENTSSM), "info", str(rec)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not _catches_sigterm(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(delay)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        outcome = (proc.returncode, err, out)
        if delay <= 0.06:  # far earlier than the imports end: interrupted for sure
            assert outcome == (130, "error: interrupted; nothing was written\n", ""), (delay, outcome)
        else:
            assert outcome in [(130, "error: interrupted; nothing was written\n", ""),
                               (0, "", full.stdout)], (delay, outcome)


@pytest.mark.parametrize("sig", ["", ":TERM"])
def test_a_signal_while_click_parses_the_arguments(tmp_path, work, sig):
    """The signal arrives as click parses the group's arguments, before the command runs (test
    hook "parse"). It used to make click print "Aborted!" with exit status 1 (seen once in
    test_a_signal_at_any_early_moment on a loaded machine)."""
    rec = work / "rec" / "up" / "up_0.npz"
    res = eventssm("info", rec, cwd=tmp_path, signal_at=f"parse{sig}")
    assert (res.returncode, res.stderr, res.stdout) == (130, "error: interrupted; nothing was written\n", "")


@pytest.mark.parametrize("sig", ["", ":TERM"])
def test_a_signal_after_the_outcome_is_decided_changes_nothing(tmp_path, work, sig):
    """The command's result is printed and its exit status chosen; then the signal arrives
    (test hook "exit"). It used to kill Python during its shut-down (no line, status -2 or
    -15, whatever the command's outcome) or make click print "Aborted!"; now it is ignored."""
    rec = work / "rec" / "up" / "up_0.npz"
    ok = eventssm("info", rec, cwd=tmp_path, signal_at=f"exit{sig}")
    assert (ok.returncode, ok.stderr) == (0, "") and "events      : 300" in ok.stdout
    bad = eventssm("info", "missing.raw", cwd=tmp_path, signal_at=f"exit{sig}")
    assert (bad.returncode, bad.stderr) == (1, "error: missing.raw: no such file\n")

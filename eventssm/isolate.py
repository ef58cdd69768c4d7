"""Decode untrusted files in worker processes with a time limit and a memory cap.

A damaged file can send a decoder into an endless loop that holds the GIL (a one-byte-damaged
HDF5 file does this inside libhdf5), or make it allocate far more than the machine has. Neither
can be stopped from inside the process. :func:`run_isolated` therefore runs each job in a
worker process:

* the worker's address space is capped with ``resource.RLIMIT_AS`` (``memory`` bytes), so an
  allocation past the cap fails with ``MemoryError`` inside the worker instead of swapping the
  machine;
* a job that has not answered after ``timeout`` seconds has its worker killed (SIGKILL) and a
  new worker started; the job becomes one error line and the run goes on;
* a worker that dies (killed by the kernel, a crash in C code) costs only its job.

Results come back in job order. Workers ignore SIGINT (Ctrl-C reaches the whole process group;
the parent handles it and kills the workers). Test hook: with ``EVENTSSM_TEST_HANG=TEXT`` in
the environment, a worker given a job whose ``repr`` contains TEXT sleeps instead of running
it (a stand-in for a decoder stuck in C code). Reference behaviour: ``[fn(j) for j in jobs]``
with each exception turned into an error line; ``workers=0`` runs exactly that, in this process,
without limits.

No heavy imports.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from eventssm import interrupts

log = logging.getLogger(__name__)

HANG_ENV = "EVENTSSM_TEST_HANG"
READY = "ready"
#: seconds a new worker may take to start (a spawned one imports numpy, numba, h5py)
STARTUP_TIMEOUT = 300.0

#: default per-file time limit of ``info`` and ``preprocess`` (``--file-timeout``), seconds
DEFAULT_TIMEOUT = 600.0


def default_memory(workers: int = 1) -> int:
    """Default address-space cap of one worker: 3/4 of the physical memory shared by the
    workers, and at least 2 GiB (numba and h5py alone reserve a few hundred MiB)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 << 30
    return max(2 << 30, total * 3 // 4 // max(1, workers))


@dataclass
class Outcome:
    """What one job gave: ``value`` (when ``error`` is None) or a one-line ``error``;
    ``seconds`` of wall time and the worker's peak resident memory ``peak_rss`` (bytes, the
    largest so far in that worker process; 0 when run in-process)."""

    value: Any = None
    error: str | None = None
    kind: str = "ok"  # "ok", "error" (fn raised), "timeout", "died", "memory"
    seconds: float = 0.0
    peak_rss: int = 0


def _mp_context():
    # fork is fast, but not once JAX (multithreaded) is loaded in this process
    if sys.platform.startswith("linux") and "jax" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _call(fn: Callable[[Any], Any], job: Any) -> Outcome:
    t0 = time.perf_counter()
    try:
        value = fn(job)
    except MemoryError:
        return Outcome(error="not enough memory", kind="memory", seconds=time.perf_counter() - t0)
    except Exception as exc:  # one line; the job's own errors should already be values
        log.debug("job failed", exc_info=True)
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        return Outcome(error=msg, kind="error", seconds=time.perf_counter() - t0)
    return Outcome(value=value, seconds=time.perf_counter() - t0)


def _named(out: Outcome, name: str) -> Outcome:
    if out.kind in ("error", "memory"):
        out.error = f"{name}: {out.error}"
    return out


def _worker_main(conn, fn, memory: int | None) -> None:
    interrupts.reset_in_child()
    if memory:
        import resource

        try:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        except (ValueError, OSError):  # a hard limit below ours: keep the lower one
            pass
    conn.send(READY)  # the clock of the first job starts now, not while a spawned worker imports
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        hang = os.environ.get(HANG_ENV)
        if hang and hang in repr(msg):
            time.sleep(10**6)
        out = _call(fn, msg)
        out.peak_rss = _peak_rss()
        try:
            conn.send(out)
        except MemoryError:
            conn.send(Outcome(error="not enough memory to return the result", kind="memory",
                              seconds=out.seconds, peak_rss=out.peak_rss))
        except (BrokenPipeError, OSError):
            return


class Worker:
    """One worker process running ``fn(job)`` for jobs sent to it, one at a time."""

    def __init__(self, fn: Callable[[Any], Any], memory: int | None, ctx=None):
        ctx = ctx or _mp_context()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn, memory), daemon=True)
        with interrupts.deferred():  # never a half-started worker
            self.proc.start()
        child.close()
        self.job: int | None = None  # index of the job it is running
        self.started = 0.0
        self.ready = False  # it has sent READY: the job's clock runs

    def receive(self):
        """The next message; the READY greeting starts the clock of the job sent before it."""
        msg = self.conn.recv()
        if msg == READY:
            self.ready = True
            self.started = time.monotonic()
        return msg

    def submit(self, index: int, job: Any) -> None:
        self.job, self.started = index, time.monotonic()
        self.conn.send(job)

    def kill(self) -> None:
        with interrupts.deferred():
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
            self.conn.close()
            self.proc.close()

    def stop(self) -> None:
        with interrupts.deferred():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(timeout=5)
        self.kill()

    def death(self) -> str:
        self.proc.join(timeout=1)  # reap it, so its exit status is known
        code = self.proc.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"


def run_isolated(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    *,
    workers: int = 1,
    timeout: float | None = DEFAULT_TIMEOUT,
    memory: int | None = None,
    describe: Callable[[Any], str] = str,
) -> Iterator[tuple[Any, Outcome]]:
    """Yield ``(job, Outcome)`` for every job, in job order (see the module docstring).

    Args:
        fn: a picklable function of one job (a module-level function).
        jobs: the jobs.
        workers: worker processes (at most one per job); 0 runs in this process, without
            limits.
        timeout: seconds one job may take (``None`` or 0: no limit).
        memory: address-space cap of each worker in bytes (``None``: :func:`default_memory`;
            0: no cap).
        describe: names a job in the time-out and crash messages (e.g. its file).
    """
    if workers <= 0:
        for job in jobs:
            yield job, _named(_call(fn, job), describe(job))
        return
    n = len(jobs)
    workers = max(1, min(workers, n))
    pool = _Pool(fn, workers, timeout, default_memory(workers) if memory is None else memory,
                 lambda i: describe(jobs[i]))
    todo = deque(range(n))
    done: dict[int, Outcome] = {}
    nxt = 0  # next index to yield
    window = 2 * workers  # results held at most this far ahead of the one awaited
    try:
        while nxt < n:
            pool.give_work(todo, jobs, below=nxt + window)
            while nxt in done:
                out = done.pop(nxt)
                interrupts.hook("job-done")
                yield jobs[nxt], _named(out, describe(jobs[nxt]))
                nxt += 1
            pool.collect(done)
    finally:
        interrupts.hook("worker-shutdown")
        pool.close()


class _Pool:
    """The worker processes of one :func:`run_isolated` call (at most ``size``), started as
    work comes; ``name(i)`` names job ``i`` in the error lines."""

    def __init__(self, fn, size: int, timeout: float | None, memory: int | None, name):
        self.fn, self.size, self.timeout, self.memory, self.name = fn, size, timeout, memory, name
        self.ctx = _mp_context()
        self.workers: list[Worker] = []

    def give_work(self, todo: deque, jobs: Sequence[Any], below: int) -> None:
        """Send the next jobs (indices below ``below``) to idle workers, starting workers up
        to the pool's size."""
        while todo and todo[0] < below:
            idle = next((w for w in self.workers if w.job is None), None)
            if idle is None:
                if len(self.workers) >= self.size:
                    return
                idle = Worker(self.fn, self.memory, self.ctx)
                self.workers.append(idle)
            i = todo.popleft()
            idle.submit(i, jobs[i])

    def collect(self, done: dict[int, Outcome]) -> None:
        """Wait for the first busy worker to answer, die or pass its deadline (its start-up's,
        or its job's ``timeout``); put every job that ended into ``done``."""
        busy = [w for w in self.workers if w.job is not None]
        if not busy:
            return
        deadlines = [w.started + (self.timeout if w.ready else STARTUP_TIMEOUT)
                     for w in busy if self.timeout or not w.ready]
        limit = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], limit)
        now = time.monotonic()
        for w in busy:
            i = w.job
            if w.conn in ready:
                try:
                    msg = w.receive()
                    if msg != READY:
                        done[i], w.job = msg, None
                    continue
                except (EOFError, OSError):
                    pass  # the worker died while sending: handled below
            failed = self._failure(w, ready, now)
            if failed is not None:
                done[i] = failed
                w.kill()
                self.workers.remove(w)

    def _failure(self, w: Worker, ready: list, now: float) -> Outcome | None:
        """The outcome of the job of a worker that died or passed its deadline, else None."""
        what, took = self.name(w.job), now - w.started
        if w.proc.sentinel in ready or not w.proc.is_alive():
            return Outcome(error=f"{what}: the worker reading it died ({w.death()}; out of "
                           "memory?)", kind="died", seconds=took)
        if not w.ready and took >= STARTUP_TIMEOUT:
            return Outcome(error=f"{what}: the worker process did not start within "
                           f"{STARTUP_TIMEOUT:g} s", kind="died", seconds=took)
        if w.ready and self.timeout and took >= self.timeout:
            return Outcome(error=f"{what}: gave up after {self.timeout:g} s (--file-timeout); "
                           "the decoder did not finish", kind="timeout", seconds=took)
        return None

    def close(self) -> None:
        """Stop idle workers; kill busy ones (and every one after an interrupt)."""
        for w in self.workers:
            if w.job is None and interrupts.interrupted() is None:
                w.stop()
            else:
                w.kill()

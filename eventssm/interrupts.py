"""Clean interruption: SIGINT/SIGTERM become one KeyboardInterrupt, never a half-written output.

Three pieces, used by :mod:`eventssm.outputs` and the command line:

* :func:`deferred` — a block (the rename that publishes an output, the removal of a temporary
  file) that a signal cannot cut in half. A signal arriving inside it is recorded and acted on
  when the block ends, with the disposition that was in force before (Python's default SIGINT
  handler raises KeyboardInterrupt; a default SIGTERM ends the process).
* :func:`installed` — the command line's handlers: SIGINT and SIGTERM raise ``KeyboardInterrupt``
  once (a second signal during the clean-up does not interrupt the clean-up), the fact is kept
  in :func:`interrupted` even when the exception is swallowed (a KeyboardInterrupt raised
  inside a weakref callback is "ignored" by Python), and such "Exception ignored" reports of a
  KeyboardInterrupt are not printed.
* :func:`finish` — the installed command's last step: once its outcome is decided, signals
  are ignored until the process exits, so a late one cannot replace the exit status.
* :func:`hook` — a test hook: with ``EVENTSSM_SIGNAL_AT=NAME[#K][:TERM]`` in the environment,
  the K-th time (default 1st) the code passes the point ``NAME``, the command sends itself
  SIGINT (or SIGTERM). A point passed inside a worker process signals the command's main
  process. This makes "Ctrl-C at this exact moment" reproducible in tests of the installed
  command; without the variable :func:`hook` does nothing.

This module imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
HOOK_ENV = "EVENTSSM_SIGNAL_AT"


class _State:
    def __init__(self):
        self.hook_counts: dict[str, int] = {}

    installed = False
    interrupted: int | None = None  # the first signal received by the CLI handler
    raised = False
    depth = 0  # nesting of deferred() blocks
    pending: int | None = None  # a signal that arrived inside a deferred() block
    main_pid = os.getpid()


_state = _State()


def interrupted() -> int | None:
    """The signal number that interrupted this command (``None`` if none did)."""
    return _state.interrupted


def _cli_handler(signum, frame):
    _state.interrupted = _state.interrupted or signum
    if _state.depth:
        _state.pending = signum
        return
    if not _state.raised:
        _state.raised = True
        raise KeyboardInterrupt


def _unraisable(hook):
    def unraisable(args):
        if isinstance(args.exc_value, KeyboardInterrupt):
            _state.interrupted = _state.interrupted or signal.SIGINT
            return  # the interrupt is handled by the command (interrupted() is set)
        hook(args)

    return unraisable


@contextmanager
def installed(keep: bool = False) -> Iterator[None]:
    """The command line's SIGINT/SIGTERM handlers for the duration of one command (main thread
    only), starting with no interrupt seen; the previous handlers come back afterwards unless
    ``keep`` (the installed command keeps them until the interpreter has exited, so a signal
    during the shutdown of worker processes is handled too)."""
    _state.interrupted, _state.raised, _state.pending = None, False, None
    _state.hook_counts.clear()
    if _state.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.getsignal(sig) for sig in SIGNALS}
    old_hook = sys.unraisablehook
    for sig in SIGNALS:
        signal.signal(sig, _cli_handler)
    sys.unraisablehook = _unraisable(old_hook)
    _state.installed = True
    _state.main_pid = os.getpid()
    try:
        yield
    finally:
        if not keep:
            _state.installed = False
            sys.unraisablehook = old_hook
            for sig, h in old.items():
                signal.signal(sig, h if h is not None else signal.SIG_DFL)


def finish() -> None:
    """The installed command's outcome is decided (its output written or refused, its exit
    status and message chosen): SIGINT/SIGTERM are ignored from now until the process exits.
    Otherwise a late signal would replace the outcome: raised inside click it prints
    "Aborted!" (exit 1), and once Python shuts down (it restores the default handlers) it
    kills the process without a line. ``SIG_IGN`` is process-wide, so it also holds for a
    signal the kernel hands to another thread (JAX's)."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def reset_in_child() -> None:
    """In a worker process: Ctrl-C (sent to the whole process group) is the parent's to handle;
    SIGTERM ends the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _state.installed = False
    _state.depth = 0


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends (then they act as they would have).

    Inside the block :func:`pending` tells whether a signal is waiting, so a block can give up
    before its irreversible step (see :func:`eventssm.outputs.publish`).
    """
    main = threading.current_thread() is threading.main_thread()
    if not main:  # signals are only ever handled in the main thread
        yield
        return
    if _state.installed:
        _state.depth += 1
        try:
            yield
        finally:
            _state.depth -= 1
            if not _state.depth and _state.pending is not None:
                _state.pending = None
                if not _state.raised:
                    _state.raised = True
                    raise KeyboardInterrupt
        return
    old = {sig: signal.getsignal(sig) for sig in SIGNALS}
    def record(signum, frame):
        _state.pending = _state.pending or signum

    for sig in SIGNALS:
        signal.signal(sig, record)
    _state.depth += 1
    saved_pending, _state.pending = _state.pending, None
    try:
        yield
    finally:
        _state.depth -= 1
        got, _state.pending = _state.pending, saved_pending
        for sig, h in old.items():
            signal.signal(sig, h if h is not None else signal.SIG_DFL)
        if got is not None:
            signal.raise_signal(got)  # the previous disposition acts now


def pending() -> bool:
    """Inside :func:`deferred`: a signal has arrived (or the CLI was interrupted before)."""
    return _state.pending is not None or _state.interrupted is not None


def hook(name: str) -> None:
    """Test hook: send the signal named by ``$EVENTSSM_SIGNAL_AT`` when it names this point."""
    spec = os.environ.get(HOOK_ENV)
    if not spec:
        return
    where, _, signame = spec.partition(":")
    point, _, nth = where.partition("#")
    if point != name:
        return
    count = _state.hook_counts.get(name, 0) + 1
    _state.hook_counts[name] = count
    if count != int(nth or 1):
        return
    sig = signal.SIGTERM if signame.upper() in ("TERM", "SIGTERM") else signal.SIGINT
    target = os.getpid() if os.getpid() == _state.main_pid else os.getppid()
    os.kill(target, sig)

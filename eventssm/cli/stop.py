"""SIGINT/SIGTERM during a long command become a request to stop at the next safe point.

No heavy imports: the CLI enters :class:`StopRequest` before importing JAX, so a Ctrl-C while
the data loads or the step compiles is honoured too (``eventssm.train.fit`` polls it between
steps, saves, and raises ``Interrupted``).
"""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Context manager: while active, SIGINT and SIGTERM set :attr:`requested` instead of
    raising ``KeyboardInterrupt`` or killing the process. Outside the main thread (signals
    cannot be handled there) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def _handler(self, signum, frame):
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

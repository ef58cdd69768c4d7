"""eventssm: event-camera recordings to token streams to selective state-space classifiers.

Importing the package is cheap and never imports JAX: readers and tokenizers live in
``eventssm.io`` / ``eventssm.tokenizers``; models in ``eventssm.models`` (imports JAX).
"""

import os
import signal
import sys


def _quiet_start() -> None:
    """The ``eventssm`` command: Ctrl-C/SIGTERM during the imports before the command line's
    own handlers are installed (``eventssm.interrupts``; numpy and numba take a second to
    import) end it with one line and exit status 130, not an import traceback. Nothing has
    been written yet. Only the console script gets this; importing the library changes no
    signal handler."""
    if not sys.argv or os.path.basename(sys.argv[0]) != "eventssm":
        return

    def stop(signum, frame):
        os.write(2, b"error: interrupted; nothing was written\n")
        os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)


_quiet_start()

import logging  # noqa: E402

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, make_events, validate_events  # noqa: E402

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "EVENT_DTYPE",
    "EventFileError",
    "Recording",
    "__version__",
    "make_events",
    "validate_events",
]

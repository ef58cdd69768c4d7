"""eventssm: event-camera recordings to token streams to selective state-space classifiers.

Importing the package is cheap and never imports JAX: readers and tokenizers live in
``eventssm.io`` / ``eventssm.tokenizers``; models in ``eventssm.models`` (imports JAX).
"""

import logging

from eventssm.events import EVENT_DTYPE, EventFileError, Recording, make_events, validate_events

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

"""The exception ``fit`` raises when a stop was requested (SIGINT/SIGTERM, see
:class:`eventssm.cli.stop.StopRequest`): the current step finished and, with a run folder, was
saved."""

from __future__ import annotations


class Interrupted(Exception):
    """Training stopped on request; ``step`` is the last completed step, ``saved`` whether a
    checkpoint of it was written."""

    def __init__(self, step: int, saved: bool):
        super().__init__(f"interrupted at step {step}")
        self.step, self.saved = step, saved

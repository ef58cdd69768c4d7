"""Small parsing helpers shared by CLI commands (no heavy imports)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import NoReturn

import click

_SIZE = re.compile(r"^\s*(\d+)\s*[xX,]\s*(\d+)\s*$")


def parse_size(text: str, option: str) -> tuple[int, int]:
    """Parse ``"WxH"`` (or ``"W,H"``) into positive ints, or raise a click usage error."""
    m = _SIZE.match(text or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise click.BadParameter(f"expected WxH with positive integers, got {text!r}", param_hint=option)
    return int(m.group(1)), int(m.group(2))


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one ``error: ...`` line on stderr and exit with ``code`` (no traceback)."""
    click.echo(f"error: {one_line(message)}", err=True)
    raise SystemExit(code)


def one_line(message: str) -> str:
    """``message`` with line breaks folded into spaces (every error is a single line)."""
    return " ".join(str(message).split("\n")).strip()


def os_error_message(exc: OSError, default: str | os.PathLike | None = None) -> str:
    """``<file>: <strerror>`` for an OSError (the file it names, else ``default``)."""
    where = exc.filename if exc.filename is not None else default
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {what}" if where is not None else what


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (which compare as in range)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


def check_new_folder(path: Path, what: str) -> None:
    """Fail with one line unless the folder ``path`` could be created (or replaced) here.

    Walks up to the nearest existing ancestor: it must be a folder and writable. Nothing is
    created, so a later failure leaves no trace.
    """
    anc = path.absolute().parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        fail(f"{path}: cannot create the {what}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        fail(f"{path}: cannot create the {what}: {anc} is not writable")

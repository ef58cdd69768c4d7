"""Small parsing helpers shared by CLI commands (no heavy imports)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import NoReturn

import click

_SIZE_SEP = re.compile(r"[xX,\s]+")


def parse_size(text: str, option: str, *, polarities: bool = False) -> tuple[int, ...]:
    """The one size parser of the CLI: ``"WxH"`` (or ``"W,H"``, ``"W H"``) → ``(W, H)``.

    With ``polarities`` (a sensor size) ``"WxHxP"`` is accepted too and ``(W, H, P)`` returned,
    P = 2 when not given. Every number must be a positive integer; anything else raises a
    click usage error naming ``option``.
    """
    parts = [s for s in _SIZE_SEP.split((text or "").strip()) if s]
    counts = (2, 3) if polarities else (2,)
    if len(parts) not in counts or not all(s.isdigit() and int(s) >= 1 for s in parts):
        form = "WxH or WxHxP" if polarities else "WxH"
        raise click.BadParameter(f"expected {form} with positive integers, got {text!r}", param_hint=option)
    vals = tuple(int(s) for s in parts)
    return (*vals, 2) if polarities and len(vals) == 2 else vals


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


def describe_paths(paths: list[Path]) -> str:
    """How messages name one or several input files: ``a.h5``, or ``a.h5 (+3 more caches)``."""
    if len(paths) == 1:
        return str(paths[0])
    return f"{paths[0]} (+{len(paths) - 1} more caches)"


def expand_caches(args: tuple[str, ...]) -> list[Path]:
    """The cache arguments of ``train``/``evaluate`` (files and quoted glob patterns) -> files,
    failing with one line on a pattern that matches nothing."""
    from eventssm.tokenizers.cache.concat import expand_cache_paths
    from eventssm.tokenizers.settings import DatasetError

    try:
        return expand_cache_paths(args)
    except DatasetError as exc:
        fail(str(exc))

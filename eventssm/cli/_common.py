"""Small parsing helpers shared by CLI commands (no heavy imports)."""

from __future__ import annotations

import re

import click

_SIZE = re.compile(r"^\s*(\d+)\s*[xX,]\s*(\d+)\s*$")


def parse_size(text: str, option: str) -> tuple[int, int]:
    """Parse ``"WxH"`` (or ``"W,H"``) into positive ints, or raise a click usage error."""
    m = _SIZE.match(text or "")
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise click.BadParameter(f"expected WxH with positive integers, got {text!r}", param_hint=option)
    return int(m.group(1)), int(m.group(2))


def fail(message: str, code: int = 2):
    """Print one ``error: ...`` line on stderr and exit with ``code`` (no traceback)."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)

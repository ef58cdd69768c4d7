"""Command-line interface: a thin, lazy click group.

Each subcommand lives in its own module and is imported only when invoked, so ``eventssm info``
and ``eventssm preprocess`` start without importing JAX. Only this package prints.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from eventssm import __version__
from eventssm.events import EventFileError

# name -> "module:function"; help text is read from the command itself when listed.
COMMANDS: dict[str, str] = {
    "info": "eventssm.cli.info:info",
    "preprocess": "eventssm.cli.preprocess:preprocess",
    "simulate": "eventssm.cli.simulate:simulate",
    "train": "eventssm.cli.train:train",
    "evaluate": "eventssm.cli.train:evaluate_cmd",
    "classify": "eventssm.cli.classify:classify",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that command runs."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx, name):
        if name in self.lazy_commands:
            module, attr = self.lazy_commands[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


class FriendlyErrors(LazyGroup):
    """Turns the project's input errors into one line on stderr and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EventFileError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=FriendlyErrors, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventssm")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def main(verbose: int) -> None:
    """eventssm: read event-camera recordings, tokenize them, run S7/S5 classifiers."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

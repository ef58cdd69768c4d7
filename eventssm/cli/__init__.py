"""Command-line interface: a thin, lazy click group.

Each subcommand lives in its own module and is imported only when invoked, so ``eventssm info``
and ``eventssm preprocess`` start without importing JAX. Only this package prints.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import select
import sys

import click

from eventssm import __version__, interrupts
from eventssm.cli._common import fail, os_error_message
from eventssm.events import ArgumentError, EventFileError

# name -> "module:function"; help text is read from the command itself when listed.
COMMANDS: dict[str, str] = {
    "info": "eventssm.cli.info:info",
    "preprocess": "eventssm.cli.preprocess:preprocess",
    "simulate": "eventssm.cli.simulate:simulate",
    "train": "eventssm.cli.train:train",
    "evaluate": "eventssm.cli.train:evaluate_cmd",
    "classify": "eventssm.cli.classify:classify",
    "render": "eventssm.cli.render:render",
    "plot": "eventssm.cli.plot:plot",
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
    """Turns every error a command lets through into ONE ``error: ...`` line on stderr.

    * EventFileError (a bad recording), ArgumentError (a bad value reaching the library,
      printed as ``invalid argument: ...``), a click usage error (bad option value, missing
      argument; the line ends with a pointer to the command's ``--help``) and an OSError (a
      file or folder that cannot be created or written): exit status 2.
    * An output that breaks the rules of :mod:`eventssm.outputs`: exit status 2.
    * SIGINT (Ctrl-C) or SIGTERM at any moment: one ``error: interrupted; ...`` line saying
      which output was not written, exit status 130 (:mod:`eventssm.interrupts`). Once the
      command's outcome is decided (the installed command only), later signals are ignored
      until the process exits (:func:`eventssm.interrupts.finish`).
    * Anything else is a bug: one ``error: internal error: ...`` line and exit status 1, or the
      full traceback with ``-vv``.
    """

    console = False  # running as the installed command (not called from Python)

    def main(self, *args, **kwargs):
        # the console script calls main() without arguments: keep the handlers to the end;
        # a caller in Python (click's CliRunner in tests) gets its own handlers back
        self.console = not args and "args" not in kwargs
        with interrupts.installed(keep=self.console):
            return super().main(*args, **kwargs)

    def make_context(self, info_name, args, parent=None, **extra):
        # click parses the group's own arguments before invoke(): a signal there would be
        # click's "Aborted!" with exit status 1 instead of the interrupt line and 130
        try:
            interrupts.hook("parse")
            return super().make_context(info_name, args, parent=parent, **extra)
        except KeyboardInterrupt:
            from eventssm.outputs import interrupt_message

            if self.console:
                interrupts.finish()
            fail(interrupt_message(), 130)

    def invoke(self, ctx):
        from eventssm.outputs import interrupt_message

        try:
            return self._invoke(ctx)
        except KeyboardInterrupt:  # a signal after the command's own handling, before finish()
            fail(interrupt_message(), 130)
        finally:
            if self.console:  # the outcome is decided: a later signal cannot change it
                interrupts.finish()
                interrupts.hook("exit")

    def _invoke(self, ctx):
        from eventssm.outputs import OutputError, forget, interrupt_message

        forget()  # a new command (tests run several in one process)
        try:
            result = super().invoke(ctx)
        except KeyboardInterrupt:
            fail(interrupt_message(), 130)
        except click.exceptions.Exit as exc:
            if interrupts.interrupted() is not None and exc.exit_code == 0:
                fail(interrupt_message(), 130)
            raise  # --help, --version
        except click.exceptions.Abort:
            raise
        except SystemExit as exc:
            if interrupts.interrupted() is not None and exc.code != 130:
                fail(interrupt_message(), 130)
            raise
        except (EventFileError, OutputError) as exc:
            fail(str(exc), 2)
        except ArgumentError as exc:
            fail(f"invalid argument: {exc}", 2)
        except click.UsageError as exc:
            sub = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            fail(f"{exc.format_message()} (see '{sub} --help')", exc.exit_code)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except BrokenPipeError as exc:
            if not _stdout_reader_gone():
                fail(os_error_message(exc), 2)
            # `eventssm info FILE | head`: the reader of our output has gone; stop quietly, with
            # the status of a process killed by SIGPIPE, as Unix tools do (outputs are unchanged:
            # this is the same exit as any other error's)
            _silence_stdout()
            raise SystemExit(128 + 13) from None
        except OSError as exc:
            fail(os_error_message(exc), 2)
        except Exception as exc:
            if ctx.meta.get(_VERBOSE, 0) >= 2:
                raise
            fail(f"internal error: {type(exc).__name__}: {exc} (run with -vv for the traceback)", 1)
        if interrupts.interrupted() is not None:  # a KeyboardInterrupt that Python swallowed
            fail(interrupt_message(), 130)
        return result


_VERBOSE = "eventssm.verbose"  # ctx.meta key: the group's -v count


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports POLLERR on it), so
    that a BrokenPipeError of a worker's pipe is still reported as an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no fileno (CliRunner), no poll (Windows)
        return False


def _silence_stdout() -> None:
    """Point stdout at the null device, so flushing it at exit raises nothing more."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no file descriptor: nothing to do
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


@click.group(cls=FriendlyErrors, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="eventssm")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
def main(verbose: int) -> None:
    """eventssm: read event-camera recordings, tokenize them, run S7/S5 classifiers."""
    click.get_current_context().meta[_VERBOSE] = verbose
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

"""The group's last line of defence: whatever a command lets through is ONE error line."""

import errno

import click
import pytest
from click.testing import CliRunner

from eventssm.cli import main
from eventssm.events import ArgumentError, EventFileError
from tests.cli.errors import assert_one_error


@click.command("boom")
@click.option("--kind", default="runtime")
def boom(kind):
    """Raise the exception named by --kind."""
    if kind == "runtime":
        raise RuntimeError("boom\nsecond line")
    if kind == "oserror":
        raise PermissionError(errno.EACCES, "Permission denied", "/some/where.h5")
    if kind == "eventfile":
        raise EventFileError("rec.raw", "truncated word", 12)
    if kind == "argument":
        raise ArgumentError("DropEvent p must be in [0, 1], got 1.5")
    if kind == "usage":
        raise click.BadParameter("nope", param_hint="--kind")
    click.echo("fine")


@pytest.fixture
def with_boom(monkeypatch):
    monkeypatch.setitem(main.lazy_commands, "boom", "tests.cli.test_errors:boom")


def test_unexpected_exception_is_one_line_exit_1(with_boom):
    r = CliRunner().invoke(main, ["boom"])
    assert_one_error(r, "internal error: RuntimeError: boom second line", "-vv")
    assert r.exit_code == 1


def test_debug_verbosity_shows_the_traceback(with_boom):
    r = CliRunner().invoke(main, ["-vv", "boom"])
    assert isinstance(r.exception, RuntimeError)


@pytest.mark.parametrize("kind, needle", [
    ("oserror", "error: /some/where.h5: Permission denied"),
    ("eventfile", "rec.raw: truncated word (at byte 12)"),
    ("argument", "error: invalid argument: DropEvent p must be in [0, 1], got 1.5"),
    ("usage", "Invalid value for --kind: nope (see 'main boom --help')"),
])
def test_known_errors_exit_2(with_boom, kind, needle):
    r = CliRunner().invoke(main, ["boom", "--kind", kind])
    assert_one_error(r, needle)
    assert r.exit_code == 2


def test_success_and_help_untouched(with_boom):
    assert CliRunner().invoke(main, ["boom", "--kind", "none"]).output == "fine\n"
    r = CliRunner().invoke(main, ["boom", "--help"])
    assert r.exit_code == 0 and "Usage:" in r.output


def test_unknown_command_and_missing_argument():
    assert_one_error(CliRunner().invoke(main, ["nosuch"]), "No such command 'nosuch'")
    assert_one_error(CliRunner().invoke(main, ["simulate"]), "Missing argument 'OUT_DIR'", "simulate --help")

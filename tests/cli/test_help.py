"""Every subcommand answers --help, and the top-level group lists them all."""

import pytest
from click.testing import CliRunner

from eventssm.cli import COMMANDS, main


def test_group_help_lists_every_command():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for name in COMMANDS:
        assert name in r.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_subcommand_help(name):
    r = CliRunner().invoke(main, [name, "--help"])
    assert r.exit_code == 0, r.output
    assert f"Usage: main {name}" in r.output or f"Usage: eventssm {name}" in r.output


def test_version():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and "eventssm" in r.output

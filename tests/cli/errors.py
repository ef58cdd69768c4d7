"""Assertion shared by the CLI tests: a failing command printed exactly one error line."""

from __future__ import annotations


def assert_one_error(result, *needles: str) -> str:
    """Non-zero exit by SystemExit (no uncaught exception), and the whole output (stdout and
    stderr) is ONE ``error: ...`` line on stderr containing every needle. Returns the line."""
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    line = lines[0]
    assert line.startswith("error: "), line
    assert result.stderr.strip() == line and result.stdout == ""
    for n in needles:
        assert n in line, (n, line)
    return line

"""Recipe files: ``--config FILE`` gives a command's options from a TOML file.

A recipe is a TOML file of top-level keys named like the command's long options without the
leading dashes (``crop-events = 65536`` for ``--crop-events 65536``; flags are ``true`` /
``false``). Comments (``#``) carry everything else: sources, published figures, what the
project cannot express. The keys are read from the click command itself, so every option a
command has (today's and tomorrow's) can be set in a file; none is listed here.

Precedence: a flag given on the command line > the recipe > the option's default. Click's
``default_map`` gives exactly this order: the recipe's values become the defaults of this
invocation, and a flag typed on the command line (even at its default value) wins
(``ParameterSource.COMMANDLINE``).

A value must be what the flag would accept: its type (an integer for an integer option, a
number for a float option, a string for a choice or a path, ``true``/``false`` for a flag; a
float is never truncated to an integer) and then the option's own check (range, choices). A
key that is no option, a per-run option (:data:`PER_RUN`) or a bad value stops the command with
one line naming the file and the key, before any work.

:func:`resolved_recipe` writes the options a command ran with back as a recipe (the run
folder's ``config.toml``), so ``--config RUN/config.toml`` repeats a run.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import click

from eventssm.cli._common import fail, os_error_message

#: options that belong to one invocation, never to a recipe (the run folder and what to do with it)
PER_RUN = ("out", "resume", "overwrite", "config", "help")
_SOURCES = click.core.ParameterSource


def recipe_keys(command: click.Command) -> dict[str, click.Option]:
    """``{"crop-events": <the --crop-events option>, ...}``: every long option of ``command``
    that a recipe may set (not :data:`PER_RUN`)."""
    keys = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in PER_RUN:
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                keys[opt[2:]] = param
    return keys


def _per_run_keys(command: click.Command) -> dict[str, click.Option]:
    return {opt[2:]: p for p in command.params if isinstance(p, click.Option) and p.name in PER_RUN
            for opt in p.opts if opt.startswith("--")}


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), known, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _toml_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a table",
            list: "an array"}.get(type(value), type(value).__name__)


def _expected_type(param: click.Option) -> tuple[tuple[type, ...], str]:
    """The TOML value types ``param`` accepts, and how to name them."""
    t = param.type
    if param.is_flag or isinstance(t, click.types.BoolParamType):
        return (bool,), "true or false"
    if isinstance(t, click.types.IntParamType):
        return (int,), "an integer"
    if isinstance(t, click.types.FloatParamType):
        return (int, float), "a number"
    return (str,), "a string"


def _convert(path: Path, key: str, param: click.Option, value: Any, ctx: click.Context) -> Any:
    """``value`` checked and converted exactly as the flag ``--key`` would be."""
    types, expected = _expected_type(param)
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        fail(f"{path}: key '{key}': expected {expected}, got {_toml_type(value)} {value!r}")
    try:
        return param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        fail(f"{path}: key '{key}': {exc.format_message()}")


def read_recipe(path: Path) -> dict[str, Any]:
    """The TOML table of ``path`` (fails with one line when unreadable or not TOML)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        fail(os_error_message(exc, path))
    except UnicodeDecodeError:
        fail(f"{path}: not a TOML recipe (not UTF-8 text)")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        fail(f"{path}: not valid TOML: {exc}")


def load_recipe(path: Path, ctx: click.Context) -> dict[str, Any]:
    """The recipe ``path`` for ``ctx.command`` as ``{parameter name: converted value}``."""
    table = read_recipe(path)
    keys = recipe_keys(ctx.command)
    per_run = _per_run_keys(ctx.command)
    values = {}
    for key, value in table.items():
        if key in per_run:
            fail(f"{path}: key '{key}' is not read from a recipe; give --{key} on the command line")
        if key not in keys:
            fail(f"{path}: unknown key '{key}'{_suggest(key, sorted(keys))}; a recipe holds "
                 f"`{ctx.command.name}` options by their long names (see `eventssm {ctx.command.name} --help`)")
        param = keys[key]
        if param.name in values:
            fail(f"{path}: option --{key} is given twice (under two of its names)")
        values[param.name] = _convert(path, key, param, value, ctx)
    return values


def _apply(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **load_recipe(value, ctx)}
    return value


def config_option(f):
    """The ``--config FILE`` option: read first (eager), its values become the defaults."""
    return click.option(
        "--config", type=click.Path(dir_okay=False, path_type=Path), default=None, is_eager=True,
        callback=_apply, metavar="FILE",
        help="Recipe file (TOML) of options, keys = long option names (crop-events = 65536); "
             "flags given here override it (recipes/README.md).")(f)


def options_from(ctx: click.Context, *sources: click.core.ParameterSource,
                 exclude: tuple[str, ...] = ()) -> list[str]:
    """``--name`` of every recipe option whose value came from one of ``sources`` (parameter
    names in ``exclude`` left out)."""
    return [f"--{key}" for key, p in recipe_keys(ctx.command).items()
            if p.name not in exclude and ctx.get_parameter_source(p.name) in sources]


def given_options(ctx: click.Context, exclude: tuple[str, ...] = ()) -> list[str]:
    """What this invocation set: flags typed, and ``--config FILE (the options it set)``."""
    given = options_from(ctx, _SOURCES.COMMANDLINE, exclude=exclude)
    if ctx.params.get("config") is not None:
        from_file = options_from(ctx, _SOURCES.DEFAULT_MAP, exclude=exclude)
        given.append(f"--config {ctx.params['config']} ({', '.join(from_file) or 'nothing'})")
    return given


def toml_value(value: Any) -> str:
    """``value`` (bool, int, finite float, str or path) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no TOML form here")
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value)).replace("\x7f", "\\u007f")
    raise TypeError(f"no TOML form for {type(value).__name__}")


def resolved_recipe(ctx: click.Context, inputs: list[str], unset: list[str] = ()) -> str:
    """The options this invocation resolved to, as a recipe (with where each came from).

    Options left unset (None: e.g. "the preset's value"), and those named in ``unset`` (set
    but overridden by another option, e.g. ``steps`` by ``epochs``), are written as comments.
    """
    from eventssm import __version__

    recipe = ctx.params.get("config")
    lines = [f"# `eventssm {ctx.command.name}`: the options of this run, resolved "
             f"(eventssm {__version__}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC).",
             f"# Repeat it: eventssm {ctx.command.name} CACHE... -o NEW_FOLDER --config THIS_FILE",
             "# inputs: " + " ".join(inputs)]
    if recipe is not None:
        lines.append(f"# recipe: {recipe} (set {', '.join(options_from(ctx, _SOURCES.DEFAULT_MAP)) or 'nothing'})")
    lines.append("# flags: " + (", ".join(options_from(ctx, _SOURCES.COMMANDLINE)) or "none"))
    for key, param in recipe_keys(ctx.command).items():
        value = None if param.name in unset else ctx.params.get(param.name)
        lines.append(f"# {key}: not set" if value is None else f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"

"""``eventssm info FILE...``: what a recording holds, computed in one streaming pass.

Statistics come from :func:`eventssm.io.stats.file_stats`, one file at a time in a worker
process with a time limit and a memory cap (:mod:`eventssm.isolate`). A file that cannot be read
(or hangs its decoder) prints one line ``error: <file>: <problem> (at byte N)`` on stderr; the
other files are still reported and the exit status is 1 at the end.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from eventssm.cli._common import FiniteFloatRange, parse_size
from eventssm.isolate import DEFAULT_TIMEOUT


class _SensorSizeCommand(click.Command):
    """Lets ``--sensor-size W H`` (two words) mean ``--sensor-size WxH`` before click parses."""

    def parse_args(self, ctx, args):
        out = []
        i = 0
        while i < len(args):
            a = args[i]
            if (
                a == "--sensor-size"
                and i + 2 < len(args)
                and args[i + 1].isdigit()
                and args[i + 2].isdigit()
            ):
                out += [a, f"{args[i + 1]}x{args[i + 2]}"]
                i += 3
                continue
            if a == "--":
                out += args[i:]
                break
            out.append(a)
            i += 1
        return super().parse_args(ctx, out)


def _human(stats: dict[str, Any]) -> list[tuple[str, str]]:
    w, h, pol = stats["sensor_size"]
    sensor = f"{w} x {h}, {pol} polarit{'y' if pol == 1 else 'ies'}"
    if stats["sensor_size_inferred"]:
        sensor += " (inferred from the events)"
    rate = stats["event_rate_hz"]
    on = stats["on_fraction"]
    if stats["monotonic"]:
        mono = "yes"
    else:
        mono = f"no ({stats['steps_back']:,} step{'s' if stats['steps_back'] != 1 else ''} back)"
    trange = "-"
    if stats["t_min_us"] is not None:
        trange = f"{stats['t_min_us']} .. {stats['t_max_us']} us"
        if (stats["t_first_us"], stats["t_last_us"]) != (stats["t_min_us"], stats["t_max_us"]):
            trange += f" (first {stats['t_first_us']}, last {stats['t_last_us']})"
    return [
        ("format", stats["format"]),
        ("camera", stats["camera"] or "-"),
        ("sensor size", sensor),
        ("events", f"{stats['events']:,}"),
        ("duration", f"{stats['duration_s']:.6f} s"),
        ("event rate", "-" if rate is None else f"{rate:,.1f} ev/s"),
        ("ON fraction", "-" if on is None else f"{on:.4f}"),
        ("monotonic", mono),
        ("time range", trange),
        ("file size", f"{stats['bytes']:,} bytes"),
    ]


def _formats_table() -> None:
    from eventssm.io import formats

    specs = formats()
    width = max((len(s.name) for s in specs.values()), default=4)
    for spec in specs.values():
        exts = " ".join(spec.extensions) or "-"
        magic = "magic" if spec.sniff is not None else "extension only"
        click.echo(f"{spec.name:<{width}}  {spec.description}")
        click.echo(f"{'':<{width}}  extensions: {exts} ({magic})")


@click.command(cls=_SensorSizeCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("files", nargs=-1, type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per file.")
@click.option("--format", "fmt", metavar="NAME", help="Skip detection; read as this format.")
@click.option(
    "--sensor-size", metavar="WxH",
    help="Sensor size when the file has none (or to override): WxH, 'W H' or WxHxP.",
)
@click.option("--formats", "list_formats", is_flag=True, help="List the readable formats.")
@click.option("--file-timeout", type=FiniteFloatRange(min=0), default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS",
              help="Give up on a file whose decoding takes longer (0: no limit); it is then an "
                   "unreadable file.")
def info(files, as_json, fmt, sensor_size, list_formats, file_timeout):
    """Describe event recordings: format, camera, sensor size, events, duration, event rate,
    ON fraction, timestamp order and time range.

    Files are read in chunks, so recordings larger than memory work. A file that cannot be
    read prints one error line on stderr; the others are still shown and the exit status is
    1.
    """
    import json
    from contextlib import closing

    from eventssm.io.stats import stats_job
    from eventssm.isolate import run_isolated

    if list_formats:
        _formats_table()
        if not files:
            return
    if not files:
        raise click.UsageError("give at least one FILE (or --formats)")
    size = parse_size(sensor_size, "--sensor-size", polarities=True) if sensor_size else None
    results: list[dict[str, Any]] = []
    failed = 0
    shown = 0
    # each file is decoded in a worker process with a time limit and a memory cap, so a file
    # that hangs or explodes its decoder is one error line and the next file is still read
    jobs = [(path, fmt, size) for path in files]
    with closing(run_isolated(stats_job, jobs, workers=1, timeout=file_timeout or None,
                              describe=lambda j: j[0])) as outcomes:
        for (path, _, _), out in outcomes:
            stats, error = out.value if out.error is None else (None, out.error)
            if error is not None:
                failed += 1
                click.echo(f"error: {error}", err=True)
                results.append({"file": path, "error": error})
                continue
            results.append(stats)
            if not as_json:
                if shown:
                    click.echo("")
                shown += 1
                click.echo(path)
                rows = _human(stats)
                width = max(len(k) for k, _ in rows)
                for key, value in rows:
                    click.echo(f"  {key:<{width}} : {value}")
    if as_json:
        click.echo(json.dumps(results, indent=2))
    if failed:
        sys.exit(1)

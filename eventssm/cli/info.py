"""``eventssm info FILE...``: what a recording holds, computed in one streaming pass.

Statistics are accumulated chunk by chunk over :func:`eventssm.io.iter_events`, so files larger
than memory work. A file that cannot be read prints one line ``error: <file>: <problem> (at
byte N)`` on stderr; the other files are still reported and the exit status is 1 at the end.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from eventssm.cli._common import parse_size

_CHUNK = 1 << 20


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


def file_stats(path: str, *, format: str | None = None, sensor_size=None) -> dict[str, Any]:
    """Statistics of one recording from a streaming pass.

    Returns a JSON-ready dict: ``file``, ``format``, ``camera``, ``sensor_size`` [W, H, P],
    ``events``, ``duration_s`` (max t − min t), ``event_rate_hz`` (events / duration, None when
    the duration is 0), ``on_fraction`` (None when empty), ``monotonic`` and ``steps_back``
    (count of i with t[i] < t[i−1]), ``t_first_us``, ``t_last_us``, ``t_min_us``, ``t_max_us``,
    ``x_max``, ``y_max``, ``bytes``.

    Raises:
        EventFileError: the file cannot be read.
    """
    import os

    import numpy as np

    from eventssm.io import detect_format, iter_events, read_events

    fmt = format if format is not None else detect_format(path).name
    n = on = back = 0
    t_first = t_last = t_min = t_max = None
    x_max = y_max = None
    sensor = None
    meta: dict[str, Any] = {}
    for chunk in iter_events(path, chunk_events=_CHUNK, format=fmt, sensor_size=sensor_size):
        ev = chunk.events
        if sensor is None:
            sensor, meta = chunk.sensor_size, chunk.meta
        if not len(ev):
            continue
        t = ev["t"]
        back += int(np.count_nonzero(t[1:] < t[:-1]))
        if t_last is not None and int(t[0]) < t_last:
            back += 1
        if t_first is None:
            t_first = int(t[0])
        t_last = int(t[-1])
        lo, hi = int(t.min()), int(t.max())
        t_min = lo if t_min is None else min(t_min, lo)
        t_max = hi if t_max is None else max(t_max, hi)
        xm, ym = int(ev["x"].max()), int(ev["y"].max())
        x_max = xm if x_max is None else max(x_max, xm)
        y_max = ym if y_max is None else max(y_max, ym)
        n += len(ev)
        on += int(np.count_nonzero(ev["p"]))
    if sensor is None:  # no chunk at all: an empty recording; its header still has geometry
        rec = read_events(path, format=fmt, sensor_size=sensor_size, allow_empty=True)
        sensor, meta = rec.sensor_size, rec.meta
    duration_us = (t_max - t_min) if n else 0
    duration_s = duration_us / 1e6
    return {
        "file": str(path),
        "format": fmt,
        "camera": meta.get("camera"),
        "sensor_size": [int(v) for v in sensor],
        "sensor_size_inferred": bool(meta.get("sensor_size_inferred", False)),
        "events": n,
        "duration_s": duration_s,
        "event_rate_hz": (n / duration_s) if duration_us > 0 else None,
        "on_fraction": (on / n) if n else None,
        "monotonic": back == 0,
        "steps_back": back,
        "t_first_us": t_first,
        "t_last_us": t_last,
        "t_min_us": t_min,
        "t_max_us": t_max,
        "x_max": x_max,
        "y_max": y_max,
        "bytes": os.path.getsize(path),
    }


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
def info(files, as_json, fmt, sensor_size, list_formats):
    """Describe event recordings: format, camera, sensor size, events, duration, event rate,
    ON fraction, timestamp order and time range.

    Files are read in chunks, so recordings larger than memory work. A file that cannot be
    read prints one error line on stderr; the others are still shown and the exit status is
    1.
    """
    import json

    from eventssm.events import EventFileError

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
    for path in files:
        try:
            stats = file_stats(path, format=fmt, sensor_size=size)
        except EventFileError as exc:
            failed += 1
            click.echo(f"error: {exc}", err=True)
            results.append({"file": path, "error": str(exc)})
            continue
        except Exception as exc:  # never a traceback: one line, then the next file
            failed += 1
            msg = f"{path}: {type(exc).__name__}: {exc}".replace("\n", " ")
            click.echo(f"error: {msg}", err=True)
            results.append({"file": path, "error": msg})
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

"""``eventssm render FILE -o OUT``: look at a recording as colour frames (video or PNGs)."""

from __future__ import annotations

from pathlib import Path

import click

from eventssm.cli._common import FiniteFloatRange, fail, os_error_message, parse_size
from eventssm.cli.info import _SensorSizeCommand


@click.command("render", cls=_SensorSizeCommand)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="A .mp4 or .avi video, or a new folder for numbered PNG frames.")
@click.option("--window-ms", type=FiniteFloatRange(min=0, min_open=True), default=33.0, show_default=True,
              help="Events per frame: a time window of this length.")
@click.option("--fps", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Video frame rate (default: 1000 / window-ms, real time).")
@click.option("--start-ms", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help="Start this long after the first event.")
@click.option("--duration-ms", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Render only this much (default: to the last event).")
@click.option("--clip", type=click.IntRange(min=1), default=1, show_default=True,
              help="Events at a pixel that saturate its colour (1: any event shows at full colour).")
@click.option("--scale", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Enlarge each pixel to scale x scale.")
@click.option("--sensor-size", "sensor_text", default=None, metavar="WxH",
              help="Sensor size when the file does not say.")
@click.option("--format", "fmt", default=None, help="Reader to use instead of detection.")
@click.option("--flip-x", is_flag=True, help="Mirror left-right (x' = W-1-x), as preprocess --flip-x.")
@click.option("--flip-y", is_flag=True, help="Mirror upside down (y' = H-1-y), as preprocess --flip-y.")
@click.option("--target-size", "target_text", default=None, metavar="WxH",
              help="Rescale to a WxH grid as preprocess --target-size does (what the model sees).")
@click.option("--overwrite", is_flag=True, help="Replace an existing video file.")
def render(file: Path, out: Path, window_ms: float, fps: float | None, start_ms: float,
           duration_ms: float | None, clip: int, scale: int, sensor_text: str | None, fmt: str | None,
           flip_x: bool, flip_y: bool, target_text: str | None, overwrite: bool) -> None:
    """Render FILE as frames: ON events red, OFF events blue, on black (one frame per window).

    Example: eventssm render recording.raw -o recording.mp4 --window-ms 20 --scale 2
    """
    import numpy as np

    from eventssm.io import read_events
    from eventssm.render import VIDEO_CODECS, iter_frames, write_frames
    from eventssm.tokenizers.dataset import flip_events
    from eventssm.tokenizers.functional import downsample_events, sort_events

    video = out.suffix.lower() in VIDEO_CODECS
    if out.exists() and (not video or not overwrite or out.is_dir()):
        fail(f"{out}: exists" + (" (use --overwrite to replace it)" if video else " (give a new folder)"))
    if not video and out.suffix:
        fail(f"{out}: unknown output type {out.suffix!r}: give a .mp4 or .avi file, or a folder for PNG frames")
    parent = out.absolute().parent
    if not parent.is_dir():
        fail(f"{out}: folder {parent} does not exist")
    sensor = parse_size(sensor_text, "--sensor-size", polarities=True) if sensor_text else None
    target = parse_size(target_text, "--target-size") if target_text else None
    rec = read_events(file, format=fmt, sensor_size=sensor)  # EventFileError: one line (cli main)
    events = sort_events(rec.events)  # the array itself when already in time order
    size = tuple(rec.sensor_size)
    events = flip_events(events, size, flip_x=flip_x, flip_y=flip_y)
    if target is not None:
        events, size = downsample_events(events, size, target)  # x' = x * W' // W, as the tokenizer
    if len(events) == 0:
        fail(f"{file}: no events to render")
    t0 = int(events["t"][0]) + round(start_ms * 1000)
    t1 = int(events["t"][-1]) + 1 if duration_ms is None else t0 + round(duration_ms * 1000)
    if np.searchsorted(events["t"], t1) <= np.searchsorted(events["t"], t0):
        lasts = (int(events["t"][-1]) - int(events["t"][0])) / 1000
        fail(f"{file}: no events from {start_ms:g} ms" + ("" if duration_ms is None else f" for {duration_ms:g} ms")
             + f" after the first event (the recording lasts {lasts:g} ms)")
    frames = iter_frames(events, size, window_ms * 1000.0, clip=clip, t_start=t0, t_stop=t1,
                         scale=scale)
    try:
        n = write_frames(frames, out, fps or 1000.0 / window_ms, overwrite=overwrite)
    except OSError as exc:
        fail(os_error_message(exc, out) if exc.filename else str(exc))
    w, h = size[0] * scale, size[1] * scale
    click.echo(f"{out}: {n} frames of {w}x{h} ({window_ms:g} ms each) from {file}")

"""``eventssm simulate``: write the built-in synthetic motion dataset as raw recordings."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from eventssm.cli._common import FiniteFloatRange, fail, os_error_message, parse_size

# the --format values; eventssm.io.write_events writes each (h5: the hdf5 format), the file
# extension is its FormatSpec's first
FORMATS = ("aedat3", "dat", "evt2", "evt3", "h5", "npz")

#: x and y are int16 in EVENT_DTYPE
MAX_SIDE = 32767
#: frames x width x height of one rendered clip (float32 frames and float64 log intensities,
#: about 12 bytes each: 2**28 is about 3 GiB)
MAX_PIXEL_FRAMES = 1 << 28


@click.command("simulate")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--per-class", type=click.IntRange(min=1), default=4, show_default=True, help="Recordings per class.")
@click.option("--size", default="64x64", show_default=True, help="Sensor size WxH.")
@click.option("--classes", default=None, help="Comma-separated subset of the classes (default: all).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="h5", show_default=True,
              help="File format to write (several readers can then be tried on the same data).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the np.random.Generator.")
@click.option("--frames", type=click.IntRange(min=2), default=40, show_default=True,
              help="Rendered frames per clip (>= 2).")
@click.option("--duration-ms", type=FiniteFloatRange(min=0, min_open=True), default=400.0, show_default=True,
              help="Clip duration (> 0; at least 1 us per frame step).")
def simulate(out_dir: Path, per_class: int, size: str, classes: str | None, fmt: str, seed: int,
             frames: int, duration_ms: float) -> None:
    """Render moving shapes, simulate a DVS watching them, and write OUT_DIR/<class>/<class>_<i>.<ext>.

    Classes: right, left, up, down (a translating disc), cw, ccw (a rotating bar), grow, shrink
    (a ring). Use `eventssm preprocess OUT_DIR --labels-from folder` to build a training cache.
    """
    w, h = parse_size(size, "--size")
    if max(w, h) > MAX_SIDE:
        raise click.BadParameter(f"{w}x{h}: each side must be at most {MAX_SIDE}", param_hint="--size")
    if frames * w * h > MAX_PIXEL_FRAMES:
        fail(f"--frames {frames} at --size {w}x{h}: one clip would need about "
             f"{frames * w * h * 12 / 2**30:.1f} GiB; use fewer frames or a smaller size")
    duration_us = round(duration_ms * 1000)
    if duration_us < frames - 1:
        fail(f"--duration-ms {duration_ms:g} is too short for {frames} frames: each of the {frames - 1} "
             f"frame steps needs at least 1 us")

    from eventssm.sim import CLASSES

    if classes is None:
        names = tuple(CLASSES)
    else:
        names = tuple(dict.fromkeys(c.strip() for c in classes.split(",")))  # unique, in order
    unknown = [c for c in names if c not in CLASSES]
    if unknown:
        raise click.BadParameter(f"unknown class {unknown[0]!r}; known: {', '.join(CLASSES)}", param_hint="--classes")

    import numpy as np

    from eventssm.io import write_events
    from eventssm.io.writers import format_extension
    from eventssm.outputs import OutputError, atomic_output, check_output
    from eventssm.sim import make_sample

    if out_dir.exists() and not out_dir.is_dir():
        fail(f"{out_dir}: exists and is a file, not a folder; give a new folder")
    try:  # before any rendering: an OUT_DIR that cannot be created fails at once
        out_dir.absolute().parent.mkdir(parents=True, exist_ok=True)
        check_output(out_dir, folder=True)  # new or empty: existing recordings are never replaced
    except OutputError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{out_dir}: cannot create the output folder ({exc.strerror or exc})")
    io_fmt = "hdf5" if fmt == "h5" else fmt
    ext = format_extension(io_fmt)
    rng = np.random.default_rng(seed)
    n = 0
    # every file goes into a temporary folder beside OUT_DIR, renamed to OUT_DIR at the end:
    # an interrupted or failed run leaves no partial data set
    with atomic_output(out_dir, folder=True) as tmp:
        for name in names:
            for i in range(per_class):
                rec = make_sample(name, rng, size=(w, h), n_frames=frames, duration_us=duration_us)
                rel = Path(name) / f"{name}_{i:03d}{ext}"
                try:
                    (tmp / name).mkdir(exist_ok=True)
                    write_events(tmp / rel, rec, format=io_fmt)
                except OSError as exc:
                    fail(os_error_message(exc, out_dir / rel).replace(str(tmp), str(out_dir)))
                except ValueError as exc:  # an encoder's limit, e.g. the sensor is too large for EVT 2.0
                    fail(f"{out_dir / rel}: cannot write as {fmt}: {exc}")
                n += 1
    click.echo(f"wrote {n} recordings ({len(names)} classes, {w}x{h}, {fmt}) to {out_dir}", file=sys.stdout)

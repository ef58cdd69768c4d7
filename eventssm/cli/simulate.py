"""``eventssm simulate``: write the built-in synthetic motion dataset as raw recordings."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from eventssm.cli._common import parse_size

# format name -> file extension; the encoder is looked up in eventssm.sim.export
FORMATS = {"h5": ".h5", "npz": ".npz", "evt2": ".raw", "evt3": ".raw", "dat": ".dat", "aedat3": ".aedat"}


@click.command("simulate")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--per-class", default=4, show_default=True, help="Recordings per class.")
@click.option("--size", default="64x64", show_default=True, help="Sensor size WxH.")
@click.option("--classes", default=None, help="Comma-separated subset of the classes (default: all).")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default="h5", show_default=True,
              help="File format to write (several readers can then be tried on the same data).")
@click.option("--seed", default=0, show_default=True, help="Seed of the np.random.Generator.")
@click.option("--frames", default=40, show_default=True, help="Rendered frames per clip.")
@click.option("--duration-ms", default=400, show_default=True, help="Clip duration.")
def simulate(out_dir: Path, per_class: int, size: str, classes: str | None, fmt: str, seed: int,
             frames: int, duration_ms: int) -> None:
    """Render moving shapes, simulate a DVS watching them, and write OUT_DIR/<class>/<class>_<i>.<ext>.

    Classes: right, left, up, down (a translating disc), cw, ccw (a rotating bar), grow, shrink
    (a ring). Use `eventssm preprocess OUT_DIR --labels-from folder` to build a training cache.
    """
    import numpy as np

    from eventssm.sim import CLASSES, make_sample
    from eventssm.sim.export import write_recording

    w, h = parse_size(size, "--size")
    names = tuple(CLASSES) if classes is None else tuple(c.strip() for c in classes.split(","))
    unknown = [c for c in names if c not in CLASSES]
    if unknown:
        raise click.BadParameter(f"unknown class {unknown[0]!r}; known: {', '.join(CLASSES)}", param_hint="--classes")
    if per_class < 1:
        raise click.BadParameter("must be >= 1", param_hint="--per-class")
    rng = np.random.default_rng(seed)
    n = 0
    for name in names:
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rec = make_sample(name, rng, size=(w, h), n_frames=frames, duration_us=duration_ms * 1000)
            write_recording(folder / f"{name}_{i:03d}{FORMATS[fmt]}", rec, fmt)
            n += 1
    click.echo(f"wrote {n} recordings ({len(names)} classes, {w}x{h}, {fmt}) to {out_dir}", file=sys.stdout)

"""``eventssm plot``: redraw the pictures of a run folder from its metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import click

from eventssm.cli._common import fail, os_error_message


@click.command("plot")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
def plot(run: Path) -> None:
    """Draw RUN/curves.png (loss, accuracy, learning rates, throughput) and RUN/confusion.png
    (validation confusion matrix of the best step) from RUN/metrics.jsonl; `train` draws them
    at its end too. Works while the run is still going."""
    if not (run / "metrics.jsonl").is_file():
        fail(f"{run}: no metrics.jsonl (not a run folder of `eventssm train`, or no step logged yet)")
    names = None
    try:
        names = json.loads((run / "run.json").read_text()).get("class_names")
    except (OSError, ValueError):
        pass  # the pictures then number the classes
    from eventssm.train.plot import plot_run

    try:
        for path in plot_run(run, names):
            click.echo(str(path))
    except OSError as exc:
        fail(os_error_message(exc))

"""``eventssm classify``: predict the class of raw recordings with a trained checkpoint.

Parsing and printing only; the inference is :mod:`eventssm.predict`. The cheap checks (run
folder, inputs exist, are readable, have a detectable format, output path) run before JAX is
imported.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import click

from eventssm.cli._common import fail, parse_size

#: kept importable from here (the tests and older scripts use them)
from eventssm.predict import _MAX_CHUNK, LONG_CHUNK, chunk_width  # noqa: F401

_OUTPUT_TYPES = (".csv", ".json")


@click.command("classify")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True, help="Classes to show per file.")
@click.option("--stream", "stream_every", type=click.IntRange(min=0), default=0, metavar="N",
              help="Also run the streaming model and print its prediction every N events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results to FILE: .csv (file,label,probability,top) or .json (a list).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output file.")
@click.option("--flip-x", is_flag=True, help="Mirror the inputs left-right (on top of the training cache's flips).")
@click.option("--flip-y", is_flag=True, help="Mirror the inputs upside down (on top of the training cache's flips).")
@click.option("--stretch", is_flag=True,
              help="Rescale a sensor of another aspect ratio to the checkpoint's grid instead of refusing it.")
@click.option("--sensor-size", "sensor_text", default=None, metavar="WxH", help="Sensor size when a file does not say.")
@click.option("--format", "fmt", default=None, metavar="NAME", help="Reader for every file instead of detection.")
@click.option("--last", is_flag=True, help="Use the run's last checkpoint instead of its best by validation.")
def classify(run: Path, files: tuple[Path, ...], top: int, stream_every: int, as_json: bool, output: Path | None,
             overwrite: bool, flip_x: bool, flip_y: bool, stretch: bool, sensor_text: str | None,
             fmt: str | None, last: bool) -> None:
    """Classify FILES (recordings or folders of them) with the checkpoint RUN from `eventssm train`.

    Each file is tokenized as the training cache was (settings stored in RUN), cut into the
    cache's slices, and the slices' log-probabilities are averaged (as `evaluate` does by
    recording). A recording from another sensor is rescaled to the checkpoint's grid (a note
    says so) when the aspect ratio matches. With RUN/calibration.json the logits are divided
    by its temperature (output marked "calibrated").
    """
    from eventssm.events import EventFileError
    from eventssm.predict import PredictError, Predictor, check_inputs, read_run_info

    sensor = (*parse_size(sensor_text, "--sensor-size"), 2) if sensor_text else None
    if fmt is not None:
        from eventssm.io import formats

        if fmt not in formats():
            fail(f"unknown format {fmt!r}; known: {', '.join(formats())}")
    try:
        info = read_run_info(run)
    except PredictError as exc:
        fail(str(exc))
    if output is not None:
        _check_output(output, overwrite)
    good, errors = check_inputs(files, format=fmt, exclude=[output] if output is not None else [])
    for line in errors:
        click.echo(f"error: {line}", err=True)
    if output is not None and any(os.path.abspath(f) == os.path.abspath(output) for f in good):
        fail(f"{output}: is one of the inputs; give another --output")
    if not good:
        raise SystemExit(1 if errors else 2)
    predictor = Predictor(run, flip_x=flip_x, flip_y=flip_y, stretch=stretch, sensor_size=sensor, format=fmt,
                          which="last" if last else "best")
    cal = f" (calibrated, T={info.temperature:.3g})" if info.temperature is not None else ""
    failed = len(errors)
    results = []
    say = _Lines(len(good))
    for path in good:
        try:
            pred = predictor.predict_file(path, stream_every=stream_every)
        except KeyboardInterrupt:
            say.close()
            fail("interrupted" + (f"; {output} was not written" if output is not None else ""), code=130)
        except (EventFileError, PredictError) as exc:
            say(f"error: {exc}", err=True)
            failed += 1
            continue
        finally:
            say.advance()
        if pred.note:
            say(f"note: {pred.note}", err=True)
        row = {"file": str(path), "events": pred.n_events, "samples": pred.n_samples,
               "label": pred.label, "probability": round(pred.probability, 4), "calibrated": pred.calibrated,
               "top": [{"class": c, "p": round(p, 4)} for c, p in pred.top(top)]}
        if stream_every > 0:
            row["stream"] = [{"events": k, "class": c} for k, c in pred.stream]
        results.append(row)
        if as_json:
            say(json.dumps(row))
        else:
            tops = ", ".join(f"{t['class']} {t['p']:.3f}" for t in row["top"])
            sliced = f", {pred.n_samples} slices" if pred.n_samples > 1 else ""
            say(f"{path}: {tops}  ({pred.n_events:,} events{sliced}){cal}")
            for s in row.get("stream", []):
                say(f"    after {s['events']:>8,} events: {s['class']}")
    say.close()
    if output is not None and results:
        _write_results(output, results)
        click.echo(f"wrote {output} ({len(results)} recordings)", err=True)
    if failed:
        raise SystemExit(1)


def _progress_wanted(n_files: int) -> bool:
    """A progress bar for several files, only when stderr is a terminal (never in pipes or logs)."""
    return n_files > 1 and sys.stderr.isatty()


class _Lines:
    """Prints result lines; with several files on a terminal, a tqdm bar (files done, ETA) on
    stderr stays below them."""

    def __init__(self, n_files: int):
        self.bar = None
        if _progress_wanted(n_files):
            from tqdm import tqdm

            self.bar = tqdm(total=n_files, unit="file", file=sys.stderr, leave=False, dynamic_ncols=True, mininterval=0)

    def __call__(self, line: str, err: bool = False) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr if err else sys.stdout)
        else:
            click.echo(line, err=err)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _check_output(output: Path, overwrite: bool) -> None:
    if output.suffix.lower() not in _OUTPUT_TYPES:
        fail(f"{output}: unknown output type {output.suffix!r}; give a .csv or .json file")
    if output.exists() and not overwrite:
        fail(f"{output}: exists (use --overwrite to replace it)")
    parent = output.absolute().parent
    if not parent.is_dir():
        fail(f"{output}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{output}: cannot write the output: {parent} is not writable")


def _write_results(output: Path, rows: list[dict]) -> None:
    """CSV (``file,label,probability,calibrated,top``; top as ``class:p;class:p``) or a JSON
    list, written to a temporary file next to ``output`` and renamed (never half written)."""
    if output.suffix.lower() == ".json":
        text = json.dumps(rows, indent=1)
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["file", "label", "probability", "calibrated", "top"])
        for r in rows:
            w.writerow([r["file"], r["label"], f"{r['probability']:.4f}", int(r["calibrated"]),
                        ";".join(f"{t['class']}:{t['p']:.4f}" for t in r["top"])])
        text = buf.getvalue()
    from eventssm.io.writers import write_bytes_atomic

    write_bytes_atomic(output, text.encode())

"""``eventssm preprocess``: many recordings -> one HDF5 token cache for training."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from eventssm.cli._common import FiniteFloatRange, fail, os_error_message, parse_size
from eventssm.events import US_PER_UNIT
from eventssm.isolate import DEFAULT_TIMEOUT


@click.command("preprocess")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Cache file to write (HDF5, e.g. cache.h5).")
@click.option("--labels", "labels_csv", type=click.Path(path_type=Path), default=None,
              help="CSV with a header row 'file,label' (file relative to the CSV, or a basename).")
@click.option("--labels-from", type=click.Choice(["folder", "name"]), default=None,
              help="Class = parent folder name, or a regex group of the file name (--name-regex).")
@click.option("--name-regex", default=r"^([^_]+)", show_default=True,
              help="With --labels-from name: regex whose group 1, searched in the file stem, "
                   "is the class.")
@click.option("--no-labels", is_flag=True, help="Unlabelled cache (every label -1).")
@click.option("--classes", default=None,
              help="Comma-separated class names in id order; any other label is an error "
                   "(default: the distinct labels sorted, numerically when all are integers).")
@click.option("--downsample", type=click.IntRange(min=1), default=None,
              help="Integer spatial pooling factor (token grid ceil(W/N) x ceil(H/N)).")
@click.option("--target-size", default=None, metavar="WxH",
              help="Rescale each recording from its own sensor size to a WxH token grid "
                   "(x' = floor(x*W/Wsensor)) instead of --downsample; recordings of "
                   "different cameras may then share the cache.")
@click.option("--flip-x", is_flag=True, help="Mirror every recording left-right (x' = W-1-x) before tokenizing.")
@click.option("--flip-y", is_flag=True, help="Mirror every recording upside down (y' = H-1-y) before tokenizing.")
@click.option("--denoise-us", type=click.IntRange(min=0), default=None, metavar="US",
              help="Background-activity filter: keep an event only if a neighbouring pixel fired "
                   "at most US microseconds before it (isolated events are sensor noise).")
@click.option("--merge-polarity", is_flag=True, help="Ignore polarity (vocabulary halves).")
@click.option("--time-unit", type=click.Choice(list(US_PER_UNIT)), default="ms",
              show_default=True, help="Unit of the stored inter-event times dt.")
@click.option("--slice-events", type=click.IntRange(min=1), default=None, metavar="N",
              help="Cut every recording into samples of N events (default: one per recording).")
@click.option("--overlap", type=click.IntRange(min=0), default=0, show_default=True, metavar="M",
              help="Events shared by consecutive slices (stride N - M).")
@click.option("--sort-events", is_flag=True,
              help="Sort recordings that are not in time order (default: they are errors).")
@click.option("--sensor-size", default=None, metavar="WxH",
              help="Sensor size for every file (needed when files differ or do not say).")
@click.option("--format", "fmt", default=None, metavar="NAME",
              help="Reader to use for every file instead of detection (see `eventssm info "
                   "--formats`); folders then yield only its extensions.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes reading files (0: one per CPU). The cache does not depend on it.")
@click.option("--skip-bad", is_flag=True,
              help="Skip unreadable files and files of another sensor size (listed on "
                   "stderr) instead of failing.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--append", is_flag=True,
              help="Add new files to an existing cache built with the same settings "
                   "(files already in it are skipped).")
@click.option("--compression", type=click.Choice(["gzip", "lzf", "none"]), default="gzip",
              show_default=True,
              help="HDF5 filter of the tokens and dt of a new cache: gzip is the smallest, lzf about "
                   "twice as fast to write (tonic's cache filter), none the fastest and largest.")
@click.option("--file-timeout", type=FiniteFloatRange(min=0), default=DEFAULT_TIMEOUT, show_default=True,
              metavar="SECONDS",
              help="Give up on a file whose decoding takes longer (its worker process is killed; "
                   "0: no limit). A file past it is an unreadable file. Not with --dataset.")
@click.option("--dataset", type=click.Choice(["dvsgesture", "nmnist", "pokerdvs", "ncars", "shd", "ssc"],
                                           case_sensitive=False), default=None,
              help="INPUTS is ONE folder a public dataset's download left (see docs/datasets/); "
                   "labels, classes, sensor size and the published split come from its layout.")
@click.option("--split", type=click.Choice(["train", "test", "valid"]), default="train",
              show_default=True, help="With --dataset: the published split to write (valid: SSC only).")
@click.option("--shard", default=None, metavar="I/N",
              help="Write only the I-th (1..N) of N contiguous blocks of the inputs (in input "
                   "order) with the full class list; the N caches hold the one-cache build's "
                   "samples, for cluster array jobs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
def preprocess(
    inputs: tuple[Path, ...], output: Path, labels_csv: Path | None, labels_from: str | None,
    name_regex: str, no_labels: bool, classes: str | None, downsample: int | None,
    target_size: str | None, flip_x: bool, flip_y: bool, denoise_us: int | None, merge_polarity: bool, time_unit: str,
    slice_events: int | None, overlap: int, sort_events: bool, sensor_size: str | None,
    fmt: str | None, workers: int, skip_bad: bool, overwrite: bool, append: bool,
    compression: str, file_timeout: float, dataset: str | None, split: str, shard: str | None,
    quiet: bool,
) -> None:
    """Read INPUT files/folders, tokenize every recording, and write ONE HDF5 token cache.

    Folders are searched recursively for files whose extension a reader knows. Labels come
    from --labels CSV, --labels-from folder|name, or --no-labels. Files are read in parallel;
    the cache is written to a temporary file next to OUTPUT and renamed at the end, so an
    interrupted run leaves no half cache. Python reads it with
    eventssm.tokenizers.dataset.TokenDataset(OUTPUT).

    Example: eventssm preprocess recordings/ -o gesture.h5 --labels-from folder
    --downsample 4 --slice-events 65536 --overlap 32768
    """
    # options that do not need the files
    shard_in = _parse_shard(shard) if shard is not None else None
    _check_options(inputs, dataset=dataset, split=split, labels_csv=labels_csv,
                   labels_from=labels_from, no_labels=no_labels, classes=classes, append=append,
                   fmt=fmt, sensor_size=sensor_size, skip_bad=skip_bad, overwrite=overwrite,
                   downsample=downsample, target_size=target_size, overlap=overlap,
                   slice_events=slice_events)
    target = parse_size(target_size, "--target-size") if target_size is not None else None
    sensor = (*parse_size(sensor_size, "--sensor-size"), 2) if sensor_size is not None else None
    settings = _settings(
        downsample=downsample or 1, target_size=target,
        merge_polarity=merge_polarity, time_unit=time_unit, slice_events=slice_events,
        overlap=overlap, sort_events=sort_events, flip_x=flip_x, flip_y=flip_y, denoise_us=denoise_us,
    )
    _check_output_file(output, [*inputs, *([labels_csv] if labels_csv else [])], overwrite, append,
                       file_timeout)
    class_list = _parse_classes(classes)
    comp = None if compression == "none" else compression
    if dataset is not None:
        _write_dataset(dataset, inputs[0], output, split, settings, shard_in, overwrite, comp,
                       quiet)
        return
    # files and labels, then the run
    files, labels, class_list = _labelled_files(
        inputs, output, fmt, labels_csv, labels_from, name_regex, class_list, append, shard_in)
    build = dict(settings=settings, class_names=class_list, sensor_size=sensor, format=fmt,
                 workers=workers or min(os.cpu_count() or 1, len(files)), skip_bad=skip_bad,
                 overwrite=overwrite, append=append, compression=comp,
                 file_timeout=file_timeout or None)
    report = _build(output, files, labels, build, quiet)
    for line in report.bad:
        click.echo(f"skipped: {line}", err=True)
    if not quiet:
        click.echo(_summary(output, report, append))


def _check_options(inputs, *, dataset, split, labels_csv, labels_from, no_labels, classes,
                   append, fmt, sensor_size, skip_bad, overwrite, downsample, target_size,
                   overlap, slice_events) -> None:
    """The option combinations that are errors, each one ``error:`` line."""
    if dataset is not None:
        bad = [o for o, v in (("--labels", labels_csv), ("--labels-from", labels_from),
                              ("--no-labels", no_labels), ("--classes", classes), ("--append", append),
                              ("--format", fmt), ("--sensor-size", sensor_size),
                              ("--skip-bad", skip_bad)) if v]
        if bad:
            fail(f"--dataset sets labels, classes, format and sensor size; drop {', '.join(bad)}")
        if len(inputs) != 1:
            fail("--dataset takes exactly one input: the dataset's folder")
    elif split != "train":
        fail("--split needs --dataset")
    elif (labels_csv is not None) + (labels_from is not None) + no_labels != 1:
        fail("give exactly one of --labels CSV, --labels-from folder|name, --no-labels")
    if overwrite and append:
        fail("give either --overwrite or --append, not both")
    if downsample is not None and target_size is not None:
        fail("give either --downsample or --target-size, not both")
    if overlap and slice_events is None:
        fail("--overlap needs --slice-events")
    if classes is not None and no_labels:
        fail("--classes needs labels (not --no-labels)")


def _settings(**options):
    """``TokenizerSettings(**options)``; a value it refuses is one ``error:`` line."""
    from eventssm.tokenizers.dataset import TokenizerSettings

    try:
        return TokenizerSettings(**options)
    except ValueError as exc:
        fail(str(exc))


def _check_output_file(output: Path, inputs: list[Path], overwrite: bool, append: bool,
                       file_timeout: float) -> None:
    """OUTPUT is a file name that is never an input; an existing one only with
    --overwrite/--append, and only when it is an eventssm token cache."""
    if output.is_dir():
        fail(f"{output}: is a directory; give a file name such as {output / 'cache.h5'}")
    if output.exists() and not (overwrite or append):
        fail(f"{output}: exists; pass --overwrite to replace it or --append to add files")
    from eventssm.outputs import OutputError, check_output
    from eventssm.tokenizers.dataset import is_token_cache

    try:  # is_token_cache opens an existing output in a worker with the --file-timeout limit
        check_output(output, inputs=inputs, overwrite=overwrite or append,
                     replaceable=lambda p: is_token_cache(p, timeout=file_timeout or None),
                     what="an eventssm token cache")
    except OutputError as exc:
        fail(str(exc))


def _parse_classes(classes: str | None) -> list[str] | None:
    """``--classes a,b,c`` -> ``["a", "b", "c"]`` (None when not given)."""
    if classes is None:
        return None
    class_list = [c.strip() for c in classes.split(",") if c.strip()]
    if not class_list:
        fail("--classes is empty")
    return class_list


def _labelled_files(inputs, output, fmt, labels_csv, labels_from, name_regex, class_list,
                    append, shard_in):
    """``(files, labels or None, class list)``: the recordings found in INPUTS (this shard of
    them), each label checked before any file is read."""
    from eventssm.tokenizers.dataset import (
        DatasetError,
        class_ids,
        find_recordings,
        labels_from_csv,
        labels_from_folder,
        labels_from_name,
    )

    try:
        if fmt is not None:
            from eventssm.io import formats

            if fmt not in formats():
                fail(f"unknown format {fmt!r}; known: {', '.join(formats())}")
        exclude = [output] + ([labels_csv] if labels_csv is not None else [])
        files = find_recordings(inputs, format=fmt, exclude=exclude)
        if not files:
            fail(f"no recordings found in {', '.join(map(str, inputs))}")
        if labels_csv is not None:
            labels = labels_from_csv(files, labels_csv)
        elif labels_from is not None:
            labels = (labels_from_folder(files) if labels_from == "folder"
                      else labels_from_name(files, name_regex))
        else:
            labels = None
        if labels is not None and not append:
            # check every label before any file is read (the library checks again)
            _, names = class_ids(labels, files, class_list)
            class_list = list(names)  # every shard keeps the full class list
        if shard_in is not None:
            from eventssm.tokenizers.public_datasets import shard_slice

            part = shard_slice(len(files), *shard_in)
            if not files[part]:
                fail(f"--shard {shard_in[0]}/{shard_in[1]}: empty (only {len(files)} recordings)")
            files, labels = files[part], (labels[part] if labels is not None else None)
    except DatasetError as exc:
        fail(str(exc))
    return files, labels, class_list


def _build(output: Path, files, labels, build: dict, quiet: bool):
    """:func:`build_cache` with a progress bar of files on a terminal's stderr; its errors
    are one ``error:`` line."""
    from tqdm import tqdm

    from eventssm.tokenizers.dataset import build_cache

    bar = tqdm(total=len(files), unit="file", file=sys.stderr, desc="preprocess",
               disable=quiet or not sys.stderr.isatty(), leave=False)
    with _run_errors(output), bar:
        return build_cache(output, files, labels, progress=bar.update, **build)


def _summary(output: Path, report, append: bool) -> str:
    """The closing line: what was added, and what the cache now holds."""
    from eventssm.tokenizers.dataset import DatasetError, read_cache_info

    try:
        info = read_cache_info(output)
    except DatasetError as exc:
        fail(str(exc))
    parts = [f"{report.samples_added} samples from {report.sources_added} recordings"]
    if report.unchanged:
        parts.append(f"{len(report.unchanged)} already cached")
    if report.bad:
        parts.append(f"{len(report.bad)} skipped")
    grid = "x".join(map(str, info.grid_size))
    classes_txt = f"{len(info.class_names)} classes" if info.class_names else "unlabelled"
    return (f"{output}: {'appended' if append else 'wrote'} {', '.join(parts)}; now "
            f"{len(info.labels)} samples, {classes_txt}, grid {grid}, vocab {info.vocab_size}")


@contextmanager
def _run_errors(output: Path):
    """The run's errors as one ``error:`` line. Ctrl-C/SIGTERM go on to the group
    (:mod:`eventssm.interrupts`), which says whether the output was written."""
    from eventssm.events import EventFileError
    from eventssm.tokenizers.dataset import DatasetError

    try:
        yield
    except (EventFileError, DatasetError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error_message(exc, output))


def _parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with 1 <= I <= N, else a one-line error."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        fail(f"--shard {text!r}: expected I/N, e.g. 3/16")
    if not 1 <= i <= n:
        fail(f"--shard {text!r}: need 1 <= I <= N")
    return i, n


def _write_dataset(name, root, output, split, settings, shard, overwrite, compression, quiet) -> None:
    """``preprocess --dataset``: one split (or shard) of a public dataset -> one cache."""
    from eventssm.tokenizers.public_datasets import build_dataset_cache

    with _run_errors(output):
        samples, sources = build_dataset_cache(
            output, name, root, split, settings, shard=shard, overwrite=overwrite,
            compression=compression,
        )
    if not quiet:
        part = f" shard {shard[0]}/{shard[1]}" if shard else ""
        click.echo(f"{output}: wrote {samples} samples from {sources} {name} {split}{part} items")

"""Building a token cache from many files: decoded in worker processes, written in input order.

Never imports JAX; logs, never prints.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eventssm.events import EventFileError, SensorSize
from eventssm.isolate import DEFAULT_TIMEOUT, run_isolated
from eventssm.outputs import OutputError, check_output
from eventssm.tokenizers.cache.format import CacheInfo, check_compression, read_cache_info
from eventssm.tokenizers.cache.writer import check_append, common_root, write_cache
from eventssm.tokenizers.inputs import class_ids, is_token_cache
from eventssm.tokenizers.recordings import TokenizedFile, tokenize_file
from eventssm.tokenizers.settings import DatasetError, TokenizerSettings, coerce_settings

log = logging.getLogger(__name__)

__all__ = ["BuildReport", "build_cache"]


def _work(job) -> tuple[TokenizedFile | None, str | None]:
    """Worker: tokenize one file; errors come back as one-line strings (pickle-safe)."""
    path, label, settings, sensor_size, fmt = job
    try:
        return tokenize_file(path, label=label, settings=settings, sensor_size=sensor_size,
                             format=fmt), None
    except EventFileError as exc:
        return None, str(exc)
    except MemoryError:
        return None, f"{path}: not enough memory to tokenize"
    except Exception as exc:  # a reader or tokenizer bug on odd input: one line, logged fully
        log.debug("tokenizing %s failed", path, exc_info=True)
        return None, f"{path}: {type(exc).__name__}: {exc}"


def _ordered_map(jobs: list, workers: int, timeout: float | None = DEFAULT_TIMEOUT,
                 memory: int | None = None) -> Iterator[tuple[Any, tuple]]:
    """Yield ``(job, _work(job))`` in job order; each file is decoded in a worker process with
    a time limit and a memory cap (:func:`eventssm.isolate.run_isolated`; ``workers=0``: in
    this process, without limits). A file that hangs or kills its worker is one error line."""
    for job, out in run_isolated(_work, jobs, workers=workers, timeout=timeout, memory=memory,
                                 describe=lambda j: str(j[0])):
        yield job, (out.value if out.error is None else (None, out.error))


@dataclass
class BuildReport:
    """What :func:`build_cache` did.

    Attributes:
        path: the cache; samples_added / sources_added: new samples / recordings;
        unchanged: files skipped because the cache already holds them (append);
        bad: one-line errors of files skipped with ``skip_bad``.
    """

    path: Path
    samples_added: int = 0
    sources_added: int = 0
    unchanged: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


def build_cache(
    path: str | os.PathLike,
    files: Sequence[str | os.PathLike],
    labels: Sequence[str] | None = None,
    *,
    settings: TokenizerSettings | None = None,
    class_names: Sequence[str] | None = None,
    sensor_size: SensorSize | None = None,
    format: str | None = None,
    workers: int = 1,
    skip_bad: bool = False,
    overwrite: bool = False,
    append: bool = False,
    compression: str | None = "gzip",
    progress: Callable[[int], None] | None = None,
    file_timeout: float | None = DEFAULT_TIMEOUT,
    file_memory: int | None = None,
) -> BuildReport:
    """Read, tokenize and write many recordings as one cache (see the module docstring).

    Files are decoded in ``workers`` processes, each file with a time limit and a memory cap
    (:mod:`eventssm.isolate`; ``workers=0``: in this process, without limits); results are
    written in input order, so the cache does not depend on ``workers``.

    Args:
        path: output cache.
        files: recordings (e.g. from :func:`find_recordings`).
        labels: class name per file, or ``None`` for an unlabelled cache (labels -1).
        settings: tokenizer settings.
        class_names: fixed class list (ids in this order); default: sorted distinct labels,
            or the existing cache's classes on append.
        sensor_size: ``(width, height, polarities)`` for every file (overrides headers);
            without it every file must report the same size.
        format: reader name to skip format detection.
        workers: processes decoding files.
        skip_bad: skip unreadable files (and files of another sensor size), listing them in
            the report, instead of failing.
        overwrite, append: what to do with an existing output (see :func:`write_cache`);
            with ``append``, files already cached with the same size and mtime are skipped and
            a cached file that changed is an error.
        compression: filter of the tokens and dt of a new cache (see :func:`write_cache`; an
            appended cache keeps its own).
        progress: called with 1 after each file.
        file_timeout: seconds one file may take to decode and tokenize (``None``: no limit);
            a file past it is an unreadable file (its worker is killed).
        file_memory: address-space cap of each worker in bytes (``None``: the default of
            :func:`eventssm.isolate.default_memory`).

    Raises:
        DatasetError: labels, classes, settings or output problems (one line).
        EventFileError: an unreadable file (without ``skip_bad``).
    """
    out = Path(path)
    settings = coerce_settings(settings)
    check_compression(compression)
    files = [os.path.abspath(os.fspath(f)) for f in files]
    if not files:
        raise DatasetError("no input recordings")
    if labels is not None and len(labels) != len(files):
        raise DatasetError(f"{len(labels)} labels for {len(files)} files")
    if sensor_size is not None:
        sensor_size = tuple(int(v) for v in sensor_size)
    if out.exists() and not (append or overwrite):
        raise DatasetError(f"{out}: exists; pass overwrite or append")
    try:  # an input is never replaced, and only an eventssm token cache is
        check_output(out, inputs=files, overwrite=append or overwrite,
                     replaceable=functools.partial(is_token_cache, timeout=file_timeout),
                     what="an eventssm token cache")
    except OutputError as exc:
        raise DatasetError(str(exc)) from None
    report = BuildReport(out)
    existing = read_cache_info(out) if (append and out.exists()) else None
    if existing is not None:
        check_append(out, existing, settings, labelled=labels is not None,
                     class_names=class_names, sensor_size=sensor_size)
        class_names = existing.class_names if existing.class_names else None
        keep = _not_cached(out, existing, files, report, progress)
        files = [files[k] for k in keep]
        if labels is not None:
            labels = [labels[k] for k in keep]
    if labels is not None:
        ids, names = class_ids(labels, files, class_names)
    else:
        ids, names = np.full(len(files), -1, np.int32), ()
    if existing is not None and not files:
        log.info("%s: nothing new to append", out)
        return report
    if existing is not None:
        names = existing.class_names

    jobs = [(f, int(i), settings, sensor_size, format) for f, i in zip(files, ids)]

    stream = _tokenized(jobs, workers, skip_bad, report, progress, file_timeout, file_memory)
    try:
        added = write_cache(
            out, stream, settings=settings, class_names=names, sensor_size=sensor_size,
            root=None if existing is not None else common_root(files),
            append=existing is not None, overwrite=overwrite, compression=compression,
            on_bad=report.bad.append if skip_bad else None,
        )
    except _OneLineError as exc:
        raise EventFileError(None, str(exc)) from None
    finally:
        stream.close()
    report.samples_added, report.sources_added = added
    return report


def _tokenized(
    jobs: list, workers: int, skip_bad: bool, report: BuildReport,
    progress: Callable[[int], None] | None, timeout: float | None = DEFAULT_TIMEOUT,
    memory: int | None = None,
) -> Iterator[TokenizedFile]:
    """The tokenized files of ``jobs`` in order (each in a worker process with ``timeout`` and
    ``memory`` limits, :func:`_ordered_map`); a failed file raises :class:`_OneLineError`, or
    with ``skip_bad`` goes to ``report.bad``. Closing the generator stops the workers."""
    results = _ordered_map(jobs, workers, timeout, memory)
    try:
        for _job, (item, err) in results:
            if progress is not None:
                progress(1)
            if err is not None:
                if not skip_bad:
                    raise _OneLineError(err)
                log.info("skipped %s", err)  # the caller reports report.bad
                report.bad.append(err)
                continue
            yield item
    finally:
        results.close()  # stops the worker pool now, also on errors and Ctrl-C


def _not_cached(
    out: Path, existing: CacheInfo, files: list[str], report: BuildReport,
    progress: Callable[[int], None] | None,
) -> list[int]:
    """Indices of ``files`` the cache ``out`` does not hold yet; the others go to
    ``report.unchanged`` (one ``progress(1)`` each). DatasetError for a cached file that changed."""
    cached = {existing.source_path(i): s for i, s in enumerate(existing.sources)}
    keep = []
    for k, fpath in enumerate(files):
        s = cached.get(os.path.normpath(fpath))
        if s is None:
            keep.append(k)
            continue
        st = os.stat(fpath)
        if st.st_size != s.size or st.st_mtime_ns != s.mtime_ns:
            raise DatasetError(
                f"{fpath}: changed since it was cached in {out} (size or mtime differ); "
                "rebuild with --overwrite"
            )
        report.unchanged.append(fpath)
        if progress is not None:
            progress(1)
    return keep


class _OneLineError(Exception):
    """Carries a worker's one-line error message out of the item generator."""

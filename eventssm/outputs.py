"""Output-path safety: an output never destroys an input, and is never left half-written.

The rules every command that writes follows (``preprocess``, ``render``, ``simulate``):

1. An output that is one of the command's inputs (the same path once resolved, or the same
   file through another name: same device and inode) is refused, ``--overwrite`` or not.
2. An existing output is replaced only with ``--overwrite``, and only when it is something the
   command itself makes (``replaceable(path)``: an eventssm token cache for ``preprocess``, a
   video for ``render``); any other file is refused. A folder output must be new or empty.
3. The output is written under a temporary name in the same folder (``.NAME.XXXX.tmp``) and
   renamed over the destination at the end (:func:`atomic_output`), so an interrupted or failed
   run leaves the destination as it was and no temporary file behind. The rename cannot be cut
   in half by SIGINT/SIGTERM (:func:`eventssm.interrupts.deferred`): a signal that arrived
   before it cancels it.
4. New files and folders get the usual permissions (``0o666`` / ``0o777`` less the umask), not
   the ``0o600`` / ``0o700`` of :mod:`tempfile`.

No heavy imports: the checks run before any recording is read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from eventssm import interrupts

#: destinations being written by this process (their temporary files exist) and finished ones
IN_PROGRESS: list[Path] = []
ABANDONED: list[Path] = []
PUBLISHED: list[Path] = []
_TMP_FOLDERS: list[Path] = []  # temporary folders of outputs in progress


class OutputError(ValueError):
    """An output path that breaks a rule above; ``str(err)`` is one line naming the path."""


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """``a`` and ``b`` are the same file or folder: equal resolved paths, or the same inode."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
        return os.path.samefile(pa, pb)
    except OSError:  # one of them does not exist (or cannot be looked at): not the same file
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_mode(folder: bool = False) -> int:
    """Permissions of a new file (``0o666``) or folder (``0o777``) under the current umask."""
    return (0o777 if folder else 0o666) & ~_umask()


def check_output(
    out: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    replaceable: Callable[[Path], bool] | None = None,
    what: str = "an eventssm output",
    folder: bool = False,
) -> Path:
    """Apply rules 1-2 to the output ``out`` before any work is done.

    Args:
        out: the output path.
        inputs: the command's inputs (files; a folder input is compared as a path too).
        overwrite: the user asked to replace an existing output.
        replaceable: tells whether an existing file is one the command may replace (``None``:
            any file).
        what: how the refusal names a replaceable file (``"an eventssm token cache"``).
        folder: the output is a folder (it must not exist, or be empty).

    Returns:
        ``out`` as a Path.

    Raises:
        OutputError: one line naming ``out`` and the rule.
    """
    out = Path(out)
    for src in inputs:
        if same_file(out, src):
            raise OutputError(f"{out}: is one of the inputs ({src}); choose another output")
    parent = out.absolute().parent
    if not parent.is_dir():
        if parent.exists():
            raise OutputError(f"{out}: cannot write the output: {parent} is not a folder")
        raise OutputError(f"{out}: cannot write the output: no such folder {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: cannot write the output: {parent} is not writable")
    if folder:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise OutputError(f"{out}: exists and is not an empty folder; give a new folder")
        return out
    if out.is_dir():
        raise OutputError(f"{out}: is a folder; give a file name")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise OutputError(f"{out}: exists (use --overwrite to replace it)")
        if replaceable is not None and not replaceable(out):
            raise OutputError(f"{out}: exists and is not {what}; --overwrite only replaces {what}")
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def publish(tmp: Path, out: Path, *, folder: bool = False) -> None:
    """Rename the finished ``tmp`` to ``out`` with the usual permissions (rule 3-4).

    Runs with signals deferred: a SIGINT/SIGTERM that already arrived cancels the rename (the
    caller's clean-up removes ``tmp``), one arriving during it acts right after it.
    """
    with interrupts.deferred():
        interrupts.hook("publish")
        if interrupts.pending():
            raise KeyboardInterrupt
        os.chmod(tmp, usual_mode(folder))
        os.replace(tmp, out)
        if not any(t in out.absolute().parents for t in _TMP_FOLDERS):
            PUBLISHED.append(out)


@contextmanager
def atomic_output(out: str | os.PathLike, *, folder: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``out``; rename it to ``out`` when the block succeeds.

    On any exception (KeyboardInterrupt and SystemExit included) the temporary file or folder is
    removed and ``out`` is left as it was. ``folder=True`` makes a temporary folder (``out``
    must then be new or empty); ``suffix`` ends the temporary name (e.g. ``.mp4`` for a writer
    that picks the container by extension).
    """
    out = Path(out)
    # an output written inside another output's temporary folder (simulate's files) is part of
    # that output: only the outer one is named when a command is interrupted
    nested = any(t in out.absolute().parents for t in _TMP_FOLDERS)
    with interrupts.deferred():  # the temporary file is registered for clean-up atomically
        if folder:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=f".tmp{suffix}", dir=out.parent))
            _TMP_FOLDERS.append(tmp.absolute())
        else:
            fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".tmp{suffix}", dir=out.parent)
            os.close(fd)
            tmp = Path(name)
        if not nested:
            IN_PROGRESS.append(out)
    try:
        yield tmp
        interrupts.hook("before-publish")
        publish(tmp, out, folder=folder)
    except BaseException:
        with interrupts.deferred():
            _remove(tmp)
            if not nested:
                ABANDONED.append(out)
        raise
    finally:
        with interrupts.deferred():
            if not nested:
                IN_PROGRESS.remove(out)
            if folder:
                _TMP_FOLDERS.remove(tmp.absolute())
    interrupts.hook("after-publish")


def forget() -> None:
    """Start a new command: no output in progress, abandoned or published yet."""
    IN_PROGRESS.clear()
    ABANDONED.clear()
    PUBLISHED.clear()


def interrupt_message() -> str:
    """One line for an interrupted command: which outputs were not written (or were)."""
    parts = ["interrupted"]
    lost = list(dict.fromkeys(IN_PROGRESS + ABANDONED))
    if lost:
        parts.append(f"{', '.join(map(str, lost))} was not written")
    if PUBLISHED:
        parts.append(f"{', '.join(map(str, PUBLISHED))} was already complete")
    if len(parts) == 1:
        parts.append("nothing was written")
    return "; ".join(parts)

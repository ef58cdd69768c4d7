"""Inference as a library: class probabilities of recordings from a checkpoint of ``train``.

Per file (``Predictor.predict_file``):

1. *Cheap checks, no JAX* (:func:`check_inputs`, :func:`read_run_info`): every input exists, is
   readable and has a detectable format; the run folder holds ``checkpoints/`` and its run
   description ``run.json`` (the RunSpec of ``train``, read as plain JSON);
   ``calibration.json`` (when present) holds a finite ``temperature``
   T > 0. Importing this module imports neither JAX nor the model.
2. *Geometry* (:func:`file_settings`): the recording is tokenized with the checkpoint's
   tokenizer settings (the training cache's), including its slicing (``slice_events``,
   ``overlap``). A recording from a sensor other than the checkpoint's is rescaled to the
   checkpoint's token grid (``x' = floor(x · W2 / W)``, ``y' = floor(y · H2 / H)`` from the
   file's own ``W × H``) when both sensors have the same aspect ratio, or when ``stretch`` is
   set; otherwise :class:`PredictError` names both sizes. A smaller recording is never
   placed into a corner of a larger grid.
3. *Forward*: logits ``z_k`` (C,) of each slice ``k = 1..K`` (padded batches; a slice beyond
   the largest padded length goes through the streaming model, same logits).
4. *Combination* (``evaluate``'s vote, :func:`eventssm.train.loop.recording_log_probs`):
   ``ℓ_c = (1/K) Σ_k log softmax(z_k / T)_c``; the label is ``argmax_c ℓ_c`` and the reported
   probabilities are ``softmax(ℓ)`` (the normalised geometric mean of the slices'
   probabilities; for K = 1 exactly ``softmax(z / T)``). T = 1 without ``calibration.json``.

The model is loaded on the first forward pass through :func:`load_model`, the one place that
knows how a checkpoint is read.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eventssm.events import EventFileError, SensorSize
from eventssm.tokenizers.dataset import TokenizerSettings

log = logging.getLogger(__name__)

__all__ = [
    "LONG_CHUNK",
    "PredictError",
    "Prediction",
    "Predictor",
    "RunInfo",
    "check_cache",
    "check_inputs",
    "chunk_width",
    "file_settings",
    "load_model",
    "read_run_info",
]

_MAX_CHUNK = 1 << 20  # stream chunks up to this many events are padded to exactly N
#: samples longer than the largest padded length of the full model are classified by the
#: streaming model (the same logits: tests/models/test_streaming.py) in chunks of this size
LONG_CHUNK = 1 << 16


class PredictError(ValueError):
    """A run folder or an input that cannot be classified (one line, names the file)."""


# --------------------------------------------------------------------------------------------
# cheap checks (no JAX)


@dataclass(frozen=True)
class RunInfo:
    """What a run folder says about its inputs, read without JAX.

    Attributes:
        path: the run folder.  settings: the training cache's tokenizer settings.
        class_names: class id -> name.  sensor_size: the training cache's ``(W, H, P)``.
        vocab_size: tokens of the model.  temperature: T of ``calibration.json`` or None.
    """

    path: Path
    settings: TokenizerSettings
    class_names: tuple[str, ...]
    sensor_size: tuple[int, int, int]
    vocab_size: int
    temperature: float | None = None

    @property
    def grid(self) -> tuple[int, int]:
        """The checkpoint's token grid ``(W2, H2)``."""
        w, h, _ = self.settings.grid_size(self.sensor_size)
        return w, h


def read_run_info(run: str | os.PathLike) -> RunInfo:
    """Check a run folder's files and read its tokenizer and calibration (no JAX).

    Raises:
        PredictError: a missing or unreadable file (names it).
    """
    run = Path(run)
    if not run.is_dir():
        raise PredictError(f"{run}: no such run folder" if not run.exists() else f"{run}: not a folder")
    if not (run / "checkpoints").is_dir():
        if (run / "model.json").is_file():
            raise PredictError(f"{run}: a checkpoint of an older eventssm (model.json + params.npz); "
                               "train it again with this version")
        raise PredictError(f"{run}: not a run folder of `eventssm train` (no checkpoints/ inside)")
    spec_path = run / "run.json"
    if not spec_path.is_file():
        raise PredictError(f"{run}: no run.json (was it written by `eventssm train`?)")
    try:
        spec = json.loads(spec_path.read_text())
        settings = TokenizerSettings.from_dict(spec["tokenizer"])
        info = RunInfo(run, settings, tuple(spec["class_names"]), tuple(int(v) for v in spec["sensor_size"]),
                       int(spec["vocab_size"]))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise PredictError(f"{spec_path}: {type(exc).__name__ if isinstance(exc, KeyError) else ''}{exc}") from None
    cal = run / "calibration.json"
    if cal.is_file():
        try:
            t = float(json.loads(cal.read_text())["temperature"])
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise PredictError(f"{cal}: no usable temperature ({exc})") from None
        if not (math.isfinite(t) and t > 0):
            raise PredictError(f"{cal}: temperature must be a finite number > 0, got {t}")
        info = replace(info, temperature=t)
    return info


def check_inputs(inputs: Iterable[str | os.PathLike], *, format: str | None = None,
                 exclude: Iterable[str | os.PathLike] = ()) -> tuple[list[Path], list[str]]:
    """Expand files and folders into recordings and check each one cheaply (no JAX).

    A file must exist, be readable and have a detectable format (``format`` skips detection);
    a folder yields the recordings under it (:func:`~eventssm.tokenizers.dataset.find_recordings`).

    Returns:
        ``(good files in order, one-line error per bad input)``.
    """
    from eventssm.io import detect_format
    from eventssm.tokenizers.dataset import DatasetError, find_recordings

    good: list[Path] = []
    errors: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            try:
                found = find_recordings([p], format=format, exclude=exclude)
            except DatasetError as exc:
                errors.append(str(exc))
                continue
            if not found:
                errors.append(f"{p}: no recordings found in this folder")
            # shown as the user named the folder: relative stays relative
            good.extend(Path(f) if p.is_absolute() else Path(os.path.relpath(f)) for f in found)
            continue
        if not p.exists():
            errors.append(f"{p}: No such file")
            continue
        if not os.access(p, os.R_OK):
            errors.append(f"{p}: Permission denied")
            continue
        if format is None:
            try:
                detect_format(p)
            except EventFileError as exc:
                errors.append(str(exc))
                continue
        good.append(p)
    return good, errors


def _fmt(size: Sequence[int]) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def file_settings(info: RunInfo, sensor_size: SensorSize, *, flip_x: bool = False, flip_y: bool = False,
                  stretch: bool = False, path: str | os.PathLike | None = None
                  ) -> tuple[TokenizerSettings, str | None]:
    """Tokenizer settings that put a recording of ``sensor_size`` on the checkpoint's grid.

    ``flip_x`` / ``flip_y`` mirror the input on top of the checkpoint's own flips (a camera
    mounted otherwise than the training cameras).

    Returns:
        ``(settings, note)``: ``note`` is one line when the recording is rescaled from another
        sensor size, else None.
    Raises:
        PredictError: the sensor differs in aspect ratio and ``stretch`` is not set (the line
            names the file's and the checkpoint's sizes).
    """
    s = info.settings
    s = replace(s, flip_x=s.flip_x != bool(flip_x), flip_y=s.flip_y != bool(flip_y))
    w, h = int(sensor_size[0]), int(sensor_size[1])
    cw, ch = info.sensor_size[0], info.sensor_size[1]
    if (w, h) == (cw, ch):
        return s, None
    grid = info.grid
    where = f"{path}: " if path is not None else ""
    if s.target_size is None and w * ch != h * cw and not stretch:
        raise PredictError(
            f"{where}sensor {_fmt((w, h))} differs from the checkpoint's {_fmt((cw, ch))} in aspect ratio; "
            f"pass --stretch to rescale it to the checkpoint's {_fmt(grid)} token grid anyway, or use "
            "a checkpoint trained on this camera")
    settings = s if s.target_size is not None else replace(s, downsample=1, target_size=grid)
    note = (f"{where}sensor {_fmt((w, h))} differs from the checkpoint's {_fmt((cw, ch))}: "
            f"rescaled to its {_fmt(grid)} token grid")
    return settings, note


def check_cache(info: RunInfo, dataset, cache: str | os.PathLike) -> None:
    """Refuse, in one line, a token cache the checkpoint cannot be evaluated on (no JAX).

    The cache's slicing may differ (it only chooses samples); its token settings, grid and
    class names must be the checkpoint's. A cache from another sensor size names both sizes.
    """
    ds = dataset
    other_grid = tuple(ds.grid_size[:2]) != info.grid or ds.vocab_size != info.vocab_size
    if other_grid and tuple(ds.sensor_size[:2]) != tuple(info.sensor_size[:2]):
        raise PredictError(
            f"{cache}: token grid {_fmt(ds.grid_size)} (sensor {_fmt(ds.sensor_size)}) differs from the "
            f"checkpoint's {_fmt(info.grid)} (sensor {_fmt(info.sensor_size)}); rebuild the cache with "
            f"`preprocess --target-size {_fmt(info.grid)}` to rescale its recordings to the checkpoint's grid")
    if other_grid or not info.settings.same_tokens(ds.settings):
        diff = [d for d in info.settings.differences(ds.settings)
                if d.split(":")[0] in TokenizerSettings.TOKEN_FIELDS]
        raise PredictError(f"{cache}: tokenizer settings differ from those {info.path} was trained with "
                           f"(checkpoint != cache: {'; '.join(diff)})")
    if tuple(ds.class_names) != info.class_names:
        raise PredictError(f"{cache}: class names {list(ds.class_names)} differ from the checkpoint's "
                           f"{list(info.class_names)}")


# --------------------------------------------------------------------------------------------
# the model (JAX from here on, imported inside the functions)


def load_model(run: str | os.PathLike, which: str = "best"):
    """The model of a run folder (its best checkpoint by validation, or ``which="last"``), in
    eval mode, through :func:`eventssm.train.load_run`."""
    from eventssm.train import CheckpointError, load_run

    try:
        return load_run(run, which).model
    except CheckpointError as exc:
        raise PredictError(str(exc)) from None


def chunk_width(every: int, n_events: int) -> int:
    """Padded length of the stream chunks of a file of ``n_events`` events.

    Every chunk is padded (masked) to this length, so one compiled function serves all chunks
    of all files: N itself, unless N is beyond :data:`_MAX_CHUNK` and the file, when the
    smallest power of two >= ``n_events`` bounds the allocation instead.
    """
    if every <= _MAX_CHUNK:
        return every
    return min(every, 1 << max(n_events - 1, 0).bit_length())


_FORWARD: list = []  # the compiled forward pass, made on first use


def _forward_fn():
    """``(model, tokens, dt, mask) -> logits``, jit-compiled once per model graph and input
    shape for the whole process."""
    if not _FORWARD:
        from flax import nnx

        _FORWARD.append(nnx.jit(lambda model, t, d, m: model(t, d, m)))
    return _FORWARD[0]


def _streamed(streamer, tokens: np.ndarray, dt: np.ndarray, width: int) -> list:
    """``[(events so far, logits (C,) float64), …]`` after every chunk of ``width`` events of one
    token stream, from the streaming model (state carried; chunks padded to ``width`` and
    masked, so one compiled function serves them all)."""
    import jax.numpy as jnp

    state = streamer.init_state(1)
    out = []
    n_ev = len(tokens)
    for a in range(0, n_ev, width):
        k = min(width, n_ev - a)
        ct = np.zeros((1, width), np.int32)
        cd = np.zeros((1, width), np.float32)
        ct[0, :k], cd[0, :k] = tokens[a:a + k], dt[a:a + k]
        cm = np.arange(width)[None, :] < k
        state, logits = streamer.step_chunk(state, jnp.asarray(ct), jnp.asarray(cd), jnp.asarray(cm), last_only=True)
        out.append((a + k, np.asarray(logits[0], np.float64)))
    return out


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@dataclass
class Prediction:
    """The result for one recording.

    Attributes:
        file: the input path.  label: the predicted class.  probability: its probability.
        probabilities: (C,) float64, ``softmax`` of the mean slice log-probability.
        class_names: class id -> name.  n_events: events read.  n_samples: slices combined.
        calibrated: T of ``calibration.json`` applied.  note: one line when the recording
        was rescaled from another sensor.  stream: ``[(events so far, class), …]`` of the
        streaming model when asked.
    """

    file: str
    label: str
    probability: float
    probabilities: np.ndarray
    class_names: tuple[str, ...]
    n_events: int
    n_samples: int
    calibrated: bool
    note: str | None = None
    stream: list = field(default_factory=list)

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most probable classes, ``[(name, p), …]`` in decreasing p."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.class_names[i], float(self.probabilities[i])) for i in order]


class Predictor:
    """Classify recordings with the checkpoint in ``run`` (see the module docstring).

    Args:
        run: the run folder of ``eventssm train``.
        flip_x, flip_y: mirror inputs on top of the checkpoint's flips.
        stretch: rescale sensors of another aspect ratio instead of refusing them.
        sensor_size: ``(W, H, P)`` for files that do not say (as ``--sensor-size``).
        format: reader name for every file instead of detection.
        batch_size: slices per forward pass.
    """

    def __init__(self, run: str | os.PathLike, *, flip_x: bool = False, flip_y: bool = False,
                 stretch: bool = False, sensor_size: SensorSize | None = None, format: str | None = None,
                 batch_size: int = 16, which: str = "best"):
        self.info = read_run_info(run)
        self.which = which
        self.flip_x, self.flip_y, self.stretch = bool(flip_x), bool(flip_y), bool(stretch)
        self.sensor_size = None if sensor_size is None else tuple(int(v) for v in sensor_size)
        self.format = format
        self.batch_size = max(int(batch_size), 1)
        self._model = None
        self._streamer = None
        # padded lengths: the slice length itself too, so slices are not padded to 1024+
        sl = self.info.settings.slice_events
        from eventssm.tokenizers.batching import DEFAULT_BUCKETS

        self._buckets = tuple(sorted({*DEFAULT_BUCKETS, *((sl,) if sl and sl < DEFAULT_BUCKETS[-1] else ())}))

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.info.path, self.which)
            if self._model.config.vocab_size != self.info.vocab_size:
                raise PredictError(f"{self.info.path}: the checkpoint's vocabulary {self._model.config.vocab_size} "
                                   f"differs from run.json's {self.info.vocab_size}")
        return self._model

    def _streaming(self):
        if self._streamer is None:
            from eventssm.models.streaming import make_streamer

            self._streamer = make_streamer(self.model)  # compiled once, for every file
        return self._streamer

    def _read(self, path) -> tuple[Any, str | None]:
        """Read a file; a file that does not state its sensor size (a header without geometry,
        or a size inferred from the largest coordinates) is read on the checkpoint's sensor
        when its events fit, and a note says so. ``--sensor-size`` always wins."""
        from eventssm.io import read_events

        ckpt = tuple(self.info.sensor_size)
        note = f"{path}: the file does not state its sensor size; read as the checkpoint's {_fmt(ckpt)}"
        if self.sensor_size is not None:
            return read_events(path, format=self.format, sensor_size=self.sensor_size), None
        try:
            rec = read_events(path, format=self.format)
        except EventFileError as exc:
            if "--sensor-size" not in str(exc):
                raise
            return read_events(path, format=self.format, sensor_size=ckpt), note
        if rec.meta.get("sensor_size_inferred") and rec.sensor_size[0] <= ckpt[0] and rec.sensor_size[1] <= ckpt[1]:
            return replace(rec, sensor_size=ckpt), note
        return rec, None

    def tokenize(self, path: str | os.PathLike):
        """``(events read, tokens, dt, lengths, note)`` of one file with the checkpoint's
        settings (and slicing) on its grid. No JAX."""
        from eventssm.tokenizers.dataset import tokenize_recording

        rec, assumed = self._read(path)
        settings, note = file_settings(self.info, rec.sensor_size, flip_x=self.flip_x, flip_y=self.flip_y,
                                       stretch=self.stretch, path=path)
        note = note or assumed
        try:
            tokens, dt, lengths, _ = tokenize_recording(rec.events, rec.sensor_size, settings)
        except EventFileError as exc:  # tokenize's errors do not know the file
            raise EventFileError(path, exc.message, exc.offset) from None
        return rec, tokens, dt, lengths, note, settings

    def logits(self, tokens: np.ndarray, dt: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(K, C) float64 logits of the K samples concatenated in ``tokens``/``dt``."""
        import jax.numpy as jnp

        from eventssm.tokenizers.batching import DEFAULT_BUCKETS, pad_batch

        offsets = np.concatenate([[0], np.cumsum(lengths)])
        samples = [(tokens[a:b], dt[a:b]) for a, b in itertools.pairwise(offsets)]
        out = np.zeros((len(samples), len(self.info.class_names)))
        short = [k for k, (t, _) in enumerate(samples) if len(t) <= DEFAULT_BUCKETS[-1]]
        forward = _forward_fn()
        for i in range(0, len(short), self.batch_size):
            ks = short[i:i + self.batch_size]
            # rows padded to a power of two (repeating a sample, whose row is dropped): files
            # with any number of slices share a few compiled shapes
            rows = min(1 << (len(ks) - 1).bit_length(), self.batch_size)
            batch = [samples[k] for k in ks] + [samples[ks[0]]] * (rows - len(ks))
            b = pad_batch(batch, [0] * len(batch), buckets=self._buckets)
            z = forward(self.model, jnp.asarray(b.tokens), jnp.asarray(b.dt), jnp.asarray(b.mask))
            out[ks] = np.asarray(z, np.float64)[: len(ks)]
        for k in sorted(set(range(len(samples))) - set(short)):  # beyond the largest padded length
            out[k] = _streamed(self._streaming(), *samples[k], LONG_CHUNK)[-1][1]
        return out

    def predict_file(self, path: str | os.PathLike, *, stream_every: int = 0) -> Prediction:
        """Classify one recording (see the module docstring).

        Raises:
            EventFileError: the file cannot be read or has no events (names it).
            PredictError: its sensor cannot be put on the checkpoint's grid (names both sizes).
        """
        rec, tokens, dt, lengths, note, settings = self.tokenize(path)  # refusals come before JAX
        if len(lengths) == 0:
            raise EventFileError(path, "no events to classify")
        from eventssm.train.loop import recording_log_probs

        z = self.logits(tokens, dt, lengths)
        t = self.info.temperature or 1.0
        _, _, _, mean = recording_log_probs(np.zeros(len(z), np.int64), _log_softmax(z / t))
        probs = np.exp(_log_softmax(mean[0]))
        best = int(np.argmax(probs))
        pred = Prediction(str(path), self.info.class_names[best], float(probs[best]), probs, self.info.class_names,
                          len(rec.events), len(lengths), self.info.temperature is not None, note)
        if stream_every > 0:
            from eventssm.tokenizers.dataset import tokenize_recording

            whole = replace(settings, slice_events=None, overlap=0)
            wt, wd, _, _ = tokenize_recording(rec.events, rec.sensor_size, whole)
            pred.stream = [(k, self.info.class_names[int(lg.argmax())]) for k, lg in
                           _streamed(self._streaming(), wt, wd, chunk_width(stream_every, len(wt)))]
        return pred

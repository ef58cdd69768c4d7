"""``eventssm classify``: predict the class of raw recordings with a trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import click

from eventssm.cli._common import fail

_MAX_CHUNK = 1 << 20  # --stream chunks up to this many events are padded to exactly N
#: files longer than the largest padded length of the full model are classified by the
#: streaming model (the same logits: tests/models/test_streaming.py) in chunks of this size
LONG_CHUNK = 1 << 16
def chunk_width(every: int, n_events: int) -> int:
    """Padded length of the ``--stream`` chunks of a file of ``n_events`` events.

    Every chunk is padded (masked) to this length, so one compiled function serves all chunks
    of all files: N itself, unless N is beyond :data:`_MAX_CHUNK` and the file, when the
    smallest power of two >= ``n_events`` bounds the allocation instead.
    """
    if every <= _MAX_CHUNK:
        return every
    return min(every, 1 << max(n_events - 1, 0).bit_length())


_PREDICT = []  # the compiled predictor, made on first use (importing this module needs no JAX)


def _predict_fn():
    """``(model, tokens, dt, mask) -> class probabilities``, jit-compiled once per model graph and
    input shape for the whole process (several calls in one process reuse the compilation)."""
    if not _PREDICT:
        import jax
        from flax import nnx

        _PREDICT.append(nnx.jit(lambda model, t, d, m: jax.nn.softmax(model(t, d, m), -1)))
    return _PREDICT[0]


@click.command("classify")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True, help="Classes to show per file.")
@click.option("--stream", "stream_every", type=click.IntRange(min=0), default=0, metavar="N",
              help="Also run the streaming model and print its prediction every N events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option("--last", is_flag=True, help="Use the run's last checkpoint instead of its best by validation.")
def classify(run: Path, files: tuple[Path, ...], top: int, stream_every: int, as_json: bool, last: bool) -> None:
    """Classify FILES (any readable format) with the checkpoint RUN from `eventssm train`.

    Each file is tokenized exactly as the training cache was (settings stored in RUN).
    """
    import jax.numpy as jnp
    import numpy as np

    from eventssm.events import EventFileError
    from eventssm.tokenizers.dataset import DatasetError, tokenize_file
    from eventssm.train import CheckpointError, load_run

    try:
        loaded = load_run(run, "last" if last else "best")
    except CheckpointError as exc:
        fail(str(exc))
    model, spec = loaded.model, loaded.spec
    # whole recordings: the cache's slicing only chose training samples
    settings = spec.inference_settings()
    names = list(spec.class_names)
    sensor = spec.sensor_size
    from eventssm.tokenizers.batching import DEFAULT_BUCKETS, pad_batch

    # padded to a bucket length, so files of different lengths share a few compiled shapes
    forward = _predict_fn()
    failed = 0
    streamer = None
    for path in files:
        try:
            tf = tokenize_file(path, settings=settings, sensor_size=sensor)
        except (EventFileError, DatasetError) as exc:
            click.echo(f"error: {exc}", err=True)
            failed += 1
            continue
        n_ev = len(tf.tokens)
        if (stream_every > 0 or n_ev > DEFAULT_BUCKETS[-1]) and streamer is None:
            from eventssm.models.streaming import Streamer

            streamer = Streamer(model)  # compiled once, for every file
        if n_ev <= DEFAULT_BUCKETS[-1]:
            b = pad_batch([(tf.tokens, tf.dt)], [0])
            probs = np.asarray(forward(model, jnp.asarray(b.tokens), jnp.asarray(b.dt), jnp.asarray(b.mask)))[0]
        else:  # beyond the largest padded length: the streaming model, bounded memory
            logits = _streamed(streamer, tf.tokens, tf.dt, LONG_CHUNK)[-1][1]
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
        order = np.argsort(-probs)[:top]
        result = {"file": str(path), "events": n_ev,
                  "top": [{"class": names[i], "p": round(float(probs[i]), 4)} for i in order]}
        if stream_every > 0:
            result["stream"] = [{"events": k, "class": names[int(lg.argmax())]}
                                for k, lg in _streamed(streamer, tf.tokens, tf.dt, chunk_width(stream_every, n_ev))]
        if as_json:
            click.echo(json.dumps(result))
        else:
            tops = ", ".join(f"{t['class']} {t['p']:.3f}" for t in result["top"])
            click.echo(f"{path}: {tops}  ({result['events']:,} events)")
            for s in result.get("stream", []):
                click.echo(f"    after {s['events']:>8,} events: {s['class']}")
    if failed:
        raise SystemExit(1)


def _streamed(streamer, tokens, dt, width: int) -> list:
    """``[(events so far, logits (C,) float64), …]`` after every chunk of ``width`` events of one
    recording, from the streaming model (state carried; chunks padded to ``width`` and masked, so
    one compiled function serves them all)."""
    import jax.numpy as jnp
    import numpy as np

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

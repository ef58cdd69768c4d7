"""``eventssm classify``: predict the class of raw recordings with a trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import click

from eventssm.cli._common import fail


@click.command("classify")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", default=3, show_default=True, help="Classes to show per file.")
@click.option("--stream", "stream_every", type=int, default=0,
              help="Also run the streaming model and print its prediction every N events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
def classify(run: Path, files: tuple[Path, ...], top: int, stream_every: int, as_json: bool) -> None:
    """Classify FILES (any readable format) with the checkpoint RUN from `eventssm train`.

    Each file is tokenized exactly as the training cache was (settings stored in RUN).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from eventssm.events import EventFileError
    from eventssm.tokenizers.dataset import DatasetError, TokenizerSettings, tokenize_file
    from eventssm.train import load_checkpoint
    from eventssm.train.checkpoint import CheckpointError

    try:
        model, extras = load_checkpoint(run)
    except CheckpointError as exc:
        fail(str(exc))
    tok = extras.get("tokenizer")
    if not tok:
        fail(f"{run}: checkpoint has no tokenizer.json (was it written by `eventssm train`?)")
    # whole recordings: the cache's slicing only chose training samples
    settings = TokenizerSettings.from_dict({**tok["settings"], "slice_events": None, "overlap": 0})
    names = tok["class_names"]
    sensor = tuple(tok["sensor_size"])
    from eventssm.tokenizers.batching import pad_batch

    # padded to a bucket length, so files of different lengths share a few compiled shapes
    forward = jax.jit(lambda t, d, m: jax.nn.softmax(model(t, d, m), -1))
    failed = 0
    for path in files:
        try:
            tf = tokenize_file(path, settings=settings, sensor_size=sensor)
        except (EventFileError, DatasetError) as exc:
            click.echo(f"error: {exc}", err=True)
            failed += 1
            continue
        tokens, dt = tf.tokens[None, :], tf.dt[None, :]
        b = pad_batch([(tf.tokens, tf.dt)], [0])
        probs = np.asarray(forward(jnp.asarray(b.tokens), jnp.asarray(b.dt), jnp.asarray(b.mask)))[0]
        order = np.argsort(-probs)[:top]
        result = {"file": str(path), "events": int(tokens.shape[1]),
                  "top": [{"class": names[i], "p": round(float(probs[i]), 4)} for i in order]}
        if stream_every > 0:
            from eventssm.models.streaming import Streamer

            streamer = Streamer(model)
            state = streamer.init_state(1)
            trace = []
            for a in range(0, tokens.shape[1], stream_every):
                state, logits = streamer.step_chunk(state, jnp.asarray(tokens[:, a:a + stream_every]),
                                                    jnp.asarray(dt[:, a:a + stream_every]))
                last = np.asarray(logits[0, -1])
                trace.append({"events": min(a + stream_every, tokens.shape[1]), "class": names[int(last.argmax())]})
            result["stream"] = trace
        if as_json:
            click.echo(json.dumps(result))
        else:
            tops = ", ".join(f"{t['class']} {t['p']:.3f}" for t in result["top"])
            click.echo(f"{path}: {tops}  ({result['events']:,} events)")
            for s in result.get("stream", []):
                click.echo(f"    after {s['events']:>8,} events: {s['class']}")
    if failed:
        raise SystemExit(1)

"""A checkpoint of an ``s7paper`` model keeps the layer and reloads in ``evaluate`` and
``classify`` (randomly initialised tiny model saved as ``train`` saves it, as test_classify does;
``train --layer s7paper`` itself only passes the choice to the preset)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from eventssm.cli import main
from tests.cli.test_classify import SLICED, _events


def test_s7paper_checkpoint_reloads_in_evaluate_and_classify(tmp_path):
    from flax import nnx

    from eventssm.events import Recording
    from eventssm.io import write_events
    from eventssm.models.classifier import EventClassifier
    from eventssm.models.presets import get_preset
    from eventssm.models.s7paper import S7PaperSSM
    from eventssm.tokenizers.dataset import build_cache
    from eventssm.train import RunSpec, TrainConfig
    from eventssm.train.checkpoint import load_run, save_model_run

    files, labels = [], []
    for k, cls in enumerate(["left", "right"]):
        files.append(tmp_path / f"{cls}.npz")
        write_events(files[-1], Recording(_events(200, 10, 10, k), (10, 10, 2), {}))
        labels.append(cls)
    build_cache(tmp_path / "cache.h5", files, labels, settings=SLICED)
    vocab = SLICED.vocab_size((10, 10, 2))
    config = get_preset("tiny", "s7paper", vocab_size=vocab, n_classes=2, n_stages=1, layers_per_stage=1,
                        scan_method="sequential")
    spec = RunSpec(model=config, train=TrainConfig(), tokenizer=SLICED, sensor_size=(10, 10, 2), vocab_size=vocab,
                   class_names=("left", "right"))
    save_model_run(tmp_path / "run", EventClassifier(config, rngs=nnx.Rngs(0)), spec)

    loaded = load_run(tmp_path / "run")
    assert loaded.spec.model.layer == "s7paper" and isinstance(loaded.model.blocks[0].ssm, S7PaperSSM)
    r = CliRunner()
    ev = r.invoke(main, ["evaluate", str(tmp_path / "run"), str(tmp_path / "cache.h5"), "--json",
                         "--batch-size", "6"])
    assert ev.exit_code == 0, ev.output
    assert np.asarray(json.loads(ev.output)["confusion"]).sum() == 12  # 6 slices per recording
    cl = r.invoke(main, ["classify", str(tmp_path / "run"), str(files[0]), "--json", "--top", "2"])
    assert cl.exit_code == 0, cl.output
    top = json.loads(cl.output.splitlines()[0])["top"]
    assert {t["class"] for t in top} == {"left", "right"}
    assert sum(t["p"] for t in top) == pytest.approx(1, abs=1e-3)

"""classify on folders (slices combined per recording), CSV/JSON output, calibration, sensors
other than the checkpoint's, and the cheap checks that run before JAX is imported.

The checkpoint is a randomly initialised tiny model saved with ``save_model_run`` (equality
with ``evaluate`` does not need a trained model); recordings are random events on a 10x10
sensor, sliced by 64 events with an overlap of 32 as the training cache was.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from eventssm.cli import main
from eventssm.events import Recording, make_events
from eventssm.io import write_events
from eventssm.tokenizers.dataset import TokenDataset, TokenizerSettings, build_cache
from tests.cli.errors import assert_one_error
from tests.conftest import ROOT, recording

SLICED = TokenizerSettings(slice_events=64, overlap=32)


def _events(n, w, h, seed):
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), np.cumsum(rng.integers(1, 900, n)),
                       rng.random(n) < 0.5)


def _checkpoint(folder, settings, sensor, class_names, seed=0):
    from flax import nnx

    from eventssm.models.classifier import EventClassifier
    from eventssm.models.presets import get_preset
    from eventssm.train import RunSpec, TrainConfig
    from eventssm.train.checkpoint import save_model_run

    vocab = settings.vocab_size(sensor)
    config = get_preset("tiny", "s7", vocab_size=vocab, n_classes=len(class_names), n_stages=1,
                        layers_per_stage=1, scan_method="sequential")
    model = EventClassifier(config, rngs=nnx.Rngs(seed))
    spec = RunSpec(model=config, train=TrainConfig(), tokenizer=settings, sensor_size=sensor, vocab_size=vocab,
                   class_names=class_names)
    save_model_run(folder, model, spec)
    return folder


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    files, labels = [], []
    for k in range(6):
        cls = ("left", "right")[k % 2]
        p = root / "raw" / cls / f"{cls}_{k}.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        # 200 events: 6 slices each, so one compiled batch shape serves every file
        write_events(p, Recording(_events(200, 10, 10, k), (10, 10, 2), {}))
        files.append(p)
        labels.append(cls)
    build_cache(root / "cache.h5", files, labels, settings=SLICED)
    _checkpoint(root / "run", SLICED, (10, 10, 2), ("left", "right"))
    return root, files


def _padded_logits(model, ds):
    """(K, C) logits of every sample of ``ds`` in one forward pass padded to 64 (masked)."""
    import jax.numpy as jnp
    from flax import nnx

    from eventssm.tokenizers.batching import pad_batch

    b = pad_batch([ds[i][:2] for i in range(len(ds))], ds.labels, buckets=(64,))
    z = nnx.jit(lambda m, t, d, k: m(t, d, k))(model, jnp.asarray(b.tokens), jnp.asarray(b.dt), jnp.asarray(b.mask))
    return np.asarray(z, np.float64)


def _classify(*args):
    return CliRunner().invoke(main, ["classify", *map(str, args)])


def test_folder_slices_and_combines_like_evaluate(ws):
    """Each recording's label and probabilities are the mean of its slices' log-probabilities
    (computed here slice by slice, unpadded), and the labels give evaluate's by-recording
    confusion matrix."""
    import jax

    from eventssm.predict import load_model
    from eventssm.train import evaluate

    root, files = ws
    r = _classify(root / "run", root / "raw", "--json", "--top", "2")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(row["file"] for row in rows) == sorted(map(str, files))
    model = load_model(root / "run")
    ds = TokenDataset(root / "cache.h5")
    logp_all = np.asarray(jax.nn.log_softmax(_padded_logits(model, ds), -1))
    names = ["left", "right"]
    confusion = np.zeros((2, 2), int)
    by_file = {row["file"]: row for row in rows}
    for s, src in enumerate(ds.sources):
        idx = np.flatnonzero(ds.source_index == s)
        assert len(idx) > 2
        mean = logp_all[idx].mean(0)
        probs = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
        row = by_file[str(files[s])]
        assert row["samples"] == len(idx) and row["label"] == names[int(np.argmax(mean))]
        assert {t["class"]: t["p"] for t in row["top"]} == pytest.approx(dict(zip(names, probs)), abs=2e-4)
        confusion[src.label, names.index(row["label"])] += 1
    assert evaluate(model, ds, batch_size=64, buckets=(64,))["recordings"]["confusion"] == confusion.tolist()


def test_progress_bar_on_a_terminal_keeps_every_result_line(ws, monkeypatch):
    """With several files on a terminal, a bar counts files on stderr; stdout still has one
    JSON row per file (equal to the run without the bar)."""
    import eventssm.cli.classify as cli_classify

    root, files = ws
    plain = _classify(root / "run", root / "raw", "--json")
    monkeypatch.setattr(cli_classify, "_progress_wanted", lambda n: n > 1)
    r = _classify(root / "run", root / "raw", "--json")
    assert r.exit_code == 0, r.output
    assert r.stdout == plain.stdout and len(r.stdout.splitlines()) == len(files)
    assert f"{len(files)}/{len(files)}" in r.stderr and "file" in r.stderr
    assert f"{len(files)}/{len(files)}" not in plain.stderr


def test_output_csv_and_json(ws, tmp_path):
    root, files = ws
    out = tmp_path / "res.csv"
    r = _classify(root / "run", files[0], files[1], "-o", out, "--top", "2")
    assert r.exit_code == 0, r.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["file"] for row in rows] == [str(files[0]), str(files[1])]
    assert list(rows[0]) == ["file", "label", "probability", "calibrated", "top"]
    for row in rows:
        top = [t.split(":") for t in row["top"].split(";")]
        assert top[0][0] == row["label"] and float(top[0][1]) == pytest.approx(float(row["probability"]))
        assert sum(float(p) for _, p in top) == pytest.approx(1, abs=1e-3)
    again = _classify(root / "run", files[0], "-o", out)
    assert_one_error(again, str(out), "exists")
    js = tmp_path / "res.json"
    r = _classify(root / "run", root / "raw", "-o", js)
    assert r.exit_code == 0
    data = json.loads(js.read_text())
    assert len(data) == 6 and {d["label"] for d in data} <= {"left", "right"}
    assert_one_error(_classify(root / "run", files[0], "-o", tmp_path / "res.txt"), "give a .csv or .json")


def test_calibration_divides_logits(ws, tmp_path):
    """RUN/calibration.json {"temperature": T}: softmax(mean_k log softmax(z_k / T))."""
    import shutil

    from eventssm.predict import Predictor, load_model

    root, files = ws
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "calibration.json").write_text(json.dumps({"temperature": 3.0, "ece_before": 0.2}))
    pred = Predictor(run).predict_file(files[2])
    model = load_model(run)
    ds = TokenDataset(root / "cache.h5")
    idx = np.flatnonzero(ds.source_index == 2)
    z = _padded_logits(model, ds)[idx] / 3.0
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    mean = logp.mean(0)
    expect = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
    assert pred.calibrated and pred.probabilities == pytest.approx(expect, abs=1e-5)
    plain = Predictor(root / "run").predict_file(files[2])
    assert not plain.calibrated and abs(plain.probabilities[0] - 0.5) > abs(pred.probabilities[0] - 0.5)
    r = _classify(run, files[2])
    assert r.exit_code == 0 and "calibrated, T=3" in r.stdout
    (run / "calibration.json").write_text(json.dumps({"temperature": 0}))
    assert_one_error(_classify(run, files[2]), "calibration.json", "temperature must be a finite number > 0")


def test_other_sensor_rescaled_or_refused(ws, tmp_path):
    """A 20x20 recording goes onto the 10x10 checkpoint's grid (x' = x * 10 // 20) with a note;
    a 20x10 one is refused naming both sizes unless --stretch."""
    from eventssm.predict import Predictor

    root, _ = ws
    big = _events(300, 20, 20, 7)
    write_events(tmp_path / "big.npz", Recording(big, (20, 20, 2), {}))
    small = make_events(big["x"] // 2, big["y"] // 2, big["t"], big["p"])
    write_events(tmp_path / "small.npz", Recording(small, (10, 10, 2), {}))
    p = Predictor(root / "run")
    a, b = p.predict_file(tmp_path / "big.npz"), p.predict_file(tmp_path / "small.npz")
    assert "sensor 20x20 differs from the checkpoint's 10x10: rescaled" in a.note and b.note is None
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
    r = _classify(root / "run", tmp_path / "big.npz")
    assert r.exit_code == 0 and "note: " in r.stderr and "rescaled to its 10x10 token grid" in r.stderr
    write_events(tmp_path / "wide.npz", Recording(_events(200, 20, 10, 8), (20, 10, 2), {}))
    bad = _classify(root / "run", tmp_path / "wide.npz")
    assert bad.exit_code == 1 and "sensor 20x10 differs from the checkpoint's 10x10" in bad.stderr
    assert "--stretch" in bad.stderr and bad.stdout == ""
    assert _classify(root / "run", tmp_path / "wide.npz", "--stretch").exit_code == 0


def test_file_without_sensor_size_read_on_the_checkpoints(ws, tmp_path):
    """A DAT file without % Width/% Height is read on the checkpoint's 10x10 sensor (a note
    says so): the same result as the same events stored with their 10x10 sensor."""
    import struct

    from eventssm.predict import Predictor

    root, _ = ws
    ev = _events(150, 8, 7, 11)
    recs = [(int(t), int(x) | (int(y) << 14) | (int(p) << 28)) for x, y, t, p in ev.tolist()]
    (tmp_path / "nogeom.dat").write_bytes(b"% Data file containing CD events.\n% Version 2\n" + bytes([0x0C, 8])
                                          + b"".join(struct.pack("<II", *r) for r in recs))
    write_events(tmp_path / "same.npz", Recording(ev, (10, 10, 2), {}))
    p = Predictor(root / "run")
    a, b = p.predict_file(tmp_path / "nogeom.dat"), p.predict_file(tmp_path / "same.npz")
    assert "does not state its sensor size; read as the checkpoint's 10x10" in a.note
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


def test_flip_options_compose_with_the_checkpoint(ws, tmp_path):
    """--flip-y on an upside-down copy gives the original's probabilities."""
    from eventssm.predict import Predictor

    root, _ = ws
    ev = _events(200, 10, 10, 3)
    write_events(tmp_path / "up.npz", Recording(ev, (10, 10, 2), {}))
    down = make_events(ev["x"], 9 - ev["y"], ev["t"], ev["p"])
    write_events(tmp_path / "down.npz", Recording(down, (10, 10, 2), {}))
    a = Predictor(root / "run").predict_file(tmp_path / "up.npz")
    b = Predictor(root / "run", flip_y=True).predict_file(tmp_path / "down.npz")
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


_NO_JAX = """
import sys
from click.testing import CliRunner
from eventssm.cli import main
r = CliRunner().invoke(main, sys.argv[1:])
print(r.exit_code, "jax" in sys.modules, r.output.strip().replace("\\n", " | "))
"""


def _no_jax(*args):
    p = subprocess.run([sys.executable, "-c", _NO_JAX, *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    code, jax_loaded, output = p.stdout.strip().split(" ", 2)
    return int(code), jax_loaded == "True", output


def test_cheap_checks_run_before_jax(ws, tmp_path):
    """A missing file, a file of unknown format, a wrong-sensor recording and a cache that does
    not match the checkpoint are refused without importing JAX."""
    root, _ = ws
    (tmp_path / "x.xyz").write_bytes(b"hello")
    code, jax_loaded, out = _no_jax("classify", root / "run", tmp_path / "nothere.raw", tmp_path / "x.xyz")
    assert (code, jax_loaded) == (1, False)
    assert "nothere.raw: No such file" in out and f"cannot tell the format of {tmp_path / 'x.xyz'}" in out
    write_events(tmp_path / "wide.npz", Recording(_events(100, 20, 10, 1), (20, 10, 2), {}))
    code, jax_loaded, out = _no_jax("classify", root / "run", tmp_path / "wide.npz")
    assert (code, jax_loaded) == (1, False) and "20x10" in out and "10x10" in out
    build_cache(tmp_path / "coarse.h5", [tmp_path / "wide.npz"], ["left"], settings=TokenizerSettings(downsample=2),
                class_names=["left", "right"])
    code, jax_loaded, out = _no_jax("evaluate", root / "run", tmp_path / "coarse.h5")
    assert (code, jax_loaded) == (2, False)
    assert "token grid 10x5 (sensor 20x10) differs from the checkpoint's 10x10 (sensor 10x10)" in out


def test_real_evt3_on_a_dvs128_checkpoint_names_both_sizes(tmp_path):
    """The issue's case: a 1280x720 Prophesee recording and a 128x128 checkpoint."""
    path = recording("evt3_sample.raw")
    _checkpoint(tmp_path / "run", TokenizerSettings(downsample=16), (128, 128, 2), ("a", "b"))
    code, jax_loaded, out = _no_jax("classify", tmp_path / "run", path)
    assert code == 1 and not jax_loaded
    assert "sensor 1280x720 differs from the checkpoint's 128x128" in out and out.count("error:") == 1


@pytest.mark.parametrize("trained, sensor, expect", [
    (TokenizerSettings(downsample=4), (64, 64), "same"),  # the checkpoint's own sensor
    (TokenizerSettings(downsample=4), (128, 128), (16, 16)),  # same aspect: onto the 16x16 grid
    (TokenizerSettings(downsample=4), (32, 32), (16, 16)),  # smaller: stretched up, not a corner
    (TokenizerSettings(downsample=4), (64, 48), "refused"),
    (TokenizerSettings(target_size=(8, 8)), (640, 480), (8, 8)),  # trained on mixed sensors
])
def test_file_settings_geometry(trained, sensor, expect, tmp_path):
    """No JAX: which grid a recording of another sensor is tokenized on."""
    from eventssm.predict import PredictError, RunInfo, file_settings

    info = RunInfo(tmp_path, trained, ("a", "b"), (64, 64, 2), trained.vocab_size((64, 64, 2)))
    if expect == "refused":
        with pytest.raises(PredictError, match="sensor 64x48 differs from the checkpoint's 64x64"):
            file_settings(info, (*sensor, 2), path="f.raw")
        settings, note = file_settings(info, (*sensor, 2), stretch=True)
        assert settings.grid_size((*sensor, 2))[:2] == (16, 16) and "rescaled" in note
        return
    settings, note = file_settings(info, (*sensor, 2), flip_y=True)
    assert settings.flip_y and not settings.flip_x
    if expect == "same":
        assert note is None and settings == TokenizerSettings(downsample=4, flip_y=True)
    else:
        assert settings.grid_size((*sensor, 2))[:2] == expect == info.grid
        assert settings.vocab_size((*sensor, 2)) == info.vocab_size and "rescaled" in note

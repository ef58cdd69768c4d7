"""train -> evaluate -> classify on a tiny simulated cache, and their bad-input lines.

One checkpoint is trained once per module (the ``workspace`` fixture) and shared by every test:
from the recipe ``recipes/activities.toml`` with overriding flags, on three shards of the cache
given as a glob (the shards as one dataset equal the one cache, tests/tokenizers/test_concat.py).
JAX compilation dominates the time, so the model is the ``tiny`` preset cut to one stage of one
SSM layer with the sequential scan, every sample is shorter than 512 events (one padded length)
and train, validation and ``evaluate`` all use batches of two: the compiled evaluation step is
reused. The option checks run before any JAX import.
"""

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eventssm.cli import main
from tests.cli.errors import assert_one_error

TRAIN = ["--steps", "2", "--batch-size", "2", "--crop-events", "512", "--log-every", "1", "--val-fraction", "0.34",
         "--stages", "1", "--layers-per-stage", "1", "--scan-method", "sequential"]


RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "activities.toml"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    r = CliRunner()
    out = r.invoke(main, ["simulate", str(root / "raw"), "--per-class", "3", "--classes", "left,right",
                          "--size", "10x10", "--frames", "6", "--duration-ms", "100"])
    assert out.exit_code == 0, out.output
    out = r.invoke(main, ["preprocess", str(root / "raw"), "-o", str(root / "cache.h5"), "--labels-from",
                          "folder", "--workers", "1", "-q"])
    assert out.exit_code == 0, out.output
    for k in (1, 2, 3):
        out = r.invoke(main, ["preprocess", str(root / "raw"), "-o", str(root / f"shard-{k}.h5"), "--labels-from",
                              "folder", "--workers", "1", "-q", "--shard", f"{k}/3"])
        assert out.exit_code == 0, out.output
    # --epochs 1 (4 training samples, batches of 2) overrides the recipe's steps: 2 steps, as TRAIN's --steps 2
    assert TRAIN[:2] == ["--steps", "2"]
    out = r.invoke(main, ["train", str(root / "shard-*.h5"), "-o", str(root / "run"), "--config", str(RECIPE),
                          *TRAIN[2:], "--epochs", "1"])
    assert out.exit_code == 0, out.output
    return root, out.output


def test_train_reports_and_saves(workspace):
    root, output = workspace
    assert "step     2" in output and "validation accuracy" in output
    assert "train 4 / val 2" in output and "compiled in" in output
    run = root / "run"
    for name in ("run.json", "metrics.jsonl", "curves.png", "confusion.png", "calibration.json"):
        assert (run / name).is_file()
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["n"] == 2 and cal["temperature"] >= 1.0 and cal["nll_after"] <= cal["nll_before"]
    assert f"ECE (15 bins) {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}" in output
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir()) == [2]
    spec = json.loads((run / "run.json").read_text())
    assert spec["class_names"] == ["left", "right"]
    model = spec["model"]
    assert (model["n_stages"], model["layers_per_stage"], model["scan_method"]) == (1, 1, "sequential")
    assert (model["d_model"], model["layer"], model["vocab_size"]) == (8, "s7", 2 * 10 * 10)
    train = spec["train"]
    assert (train["steps"], train["batch_size"], train["crop_events"]) == (2, 2, 512)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in records] == [("train", 1), ("train", 2), ("val", 2)]
    assert records[0]["tokens_per_s"] is None  # the first step is mostly compilation
    assert records[1]["lr"] > 0 and 0 <= records[1]["data_wait"] <= 1
    assert sum(map(sum, records[2]["confusion"])) == records[2]["n"] == 2


def test_train_from_a_recipe_on_shards(workspace):
    root, output = workspace
    assert f"{root / 'shard-1.h5'} (+2 more caches): 6 samples, 2 classes" in output
    spec = json.loads((root / "run" / "run.json").read_text())
    recipe = tomllib.loads(RECIPE.read_text())
    assert spec["train"]["steps"] == 2 != recipe["steps"]  # --epochs 1 overrides the recipe's steps
    assert spec["train"]["label_smoothing"] == recipe["label-smoothing"] and spec["train"]["lr"] == recipe["lr"]
    saved = tomllib.loads((root / "run" / "config.toml").read_text())
    assert (saved["epochs"], saved["lr"], saved["scan-method"], saved["preset"]) == (1, recipe["lr"], "sequential",
                                                                                     "tiny")
    text = (root / "run" / "config.toml").read_text()
    assert f"# recipe: {RECIPE}" in text and "shard-3.h5" in text and "# steps: not set" in text


def test_evaluate_shards_as_one_cache(workspace):
    """The shards, by a pattern or listed, give the one cache's result; bad lists are one line."""
    root, _ = workspace
    results = []
    for caches in ([str(root / "shard-*.h5")], [str(root / f"shard-{k}.h5") for k in (1, 2, 3)],
                   [str(root / "cache.h5")]):
        r = CliRunner().invoke(main, ["evaluate", str(root / "run"), *caches, "--json", "--batch-size", "2"])
        assert r.exit_code == 0, r.output
        results.append(json.loads(r.output))
    assert results[0] == results[1] == results[2] and results[0]["n"] == 6
    shard = str(root / "shard-1.h5")
    assert_one_error(CliRunner().invoke(main, ["evaluate", str(root / "run"), shard, shard]), "given twice")
    assert_one_error(CliRunner().invoke(main, ["evaluate", str(root / "run"), shard, str(root / "cache.h5")]),
                     "is also in")
    assert_one_error(CliRunner().invoke(main, ["evaluate", str(root / "run"), str(root / "nothing-*.h5")]),
                     "nothing-*.h5: no cache file matches")


def test_evaluate_counts_every_sample(workspace):
    root, _ = workspace
    r = CliRunner().invoke(main, ["evaluate", str(root / "run"), str(root / "cache.h5"), "--json",
                                  "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["n"] == 6 and sum(map(sum, res["confusion"])) == 6
    assert res["accuracy"] == pytest.approx(sum(res["confusion"][i][i] for i in range(2)) / 6)
    # the human table shows the same confusion matrix
    r = CliRunner().invoke(main, ["evaluate", str(root / "run"), str(root / "cache.h5"), "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith(f"accuracy {res['accuracy']:.4f} on 6 samples")
    rows = [[int(v) for v in line.split()[1:]] for line in lines[2:4]]
    assert rows == res["confusion"]
    # per-class precision / recall / F1, from the confusion matrix by hand
    m = np.asarray(res["confusion"], float)
    for i, name in enumerate(["left", "right"]):
        got = res["per_class"][name]
        p = m[i, i] / m[:, i].sum() if m[:, i].sum() else 0.0
        rc = m[i, i] / m[i].sum()
        assert got["precision"] == pytest.approx(p) and got["recall"] == pytest.approx(rc)
        assert got["f1"] == pytest.approx(2 * p * rc / (p + rc) if p + rc else 0.0)
        assert got["support"] == int(m[i].sum())
        assert lines[5 + i].split() == [name, f"{p:.3f}", f"{rc:.3f}", f"{got['f1']:.3f}", str(int(m[i].sum()))]
    assert res["checkpoint"] == {"step": 2, "which": "best"}


def test_evaluate_reports_calibration_with_the_runs_temperature(workspace):
    """evaluate's ECE and NLL before and after the run's temperature equal the same figures
    computed here from the model's logits with numpy."""
    from eventssm.tokenizers.dataset import TokenDataset
    from eventssm.train.calibrate import collect_logits
    from eventssm.train.checkpoint import load_run

    root, _ = workspace
    t = json.loads((root / "run" / "calibration.json").read_text())["temperature"]
    r = CliRunner().invoke(main, ["evaluate", str(root / "run"), str(root / "cache.h5"), "--json",
                                  "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    cal = json.loads(r.output)["calibration"]
    z, y, _ = collect_logits(load_run(root / "run").model, TokenDataset(root / "cache.h5"), batch_size=2)
    z = np.asarray(z, np.float64)

    def figures(temp):
        lp = z / temp - np.log(np.exp(z / temp - (z / temp).max(1, keepdims=True)).sum(1, keepdims=True)) \
            - (z / temp).max(1, keepdims=True)
        p = np.exp(lp)
        conf, pred = p.max(1), p.argmax(1)
        bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)
        e = sum(abs(np.mean(pred[bins == b] == y[bins == b]) - conf[bins == b].mean()) * np.mean(bins == b)
                for b in range(15) if np.any(bins == b))
        return e, -lp[np.arange(len(y)), y].mean()

    assert cal["temperature"] == pytest.approx(t)
    for (e, n), when in ((figures(1.0), "before"), (figures(t), "after")):
        assert cal[f"ece_{when}"] == pytest.approx(e, abs=1e-6)
        assert cal[f"nll_{when}"] == pytest.approx(n, rel=1e-5)
    text = CliRunner().invoke(main, ["evaluate", str(root / "run"), str(root / "cache.h5"), "--batch-size", "2"])
    assert f"calibration on these samples with the run's temperature {t:.3f}: ECE (15 bins)" in text.output


def test_evaluate_draws_its_confusion_matrix(workspace, tmp_path):
    root, _ = workspace
    png = tmp_path / "confusion.png"
    args = ["evaluate", str(root / "run"), str(root / "cache.h5"), "--batch-size", "2", "--last",
            "--confusion-png", str(png)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "last checkpoint, step 2" in r.output
    again = CliRunner().invoke(main, args)
    assert_one_error(again, f"{png}: exists")


def test_classify_matches_evaluate_and_streams(workspace):
    root, _ = workspace
    files = [root / "raw" / "left" / "left_000.h5", root / "raw" / "right" / "right_001.h5"]
    r = CliRunner().invoke(main, ["classify", str(root / "run"), *map(str, files), "--json", "--stream", "100",
                                  "--top", "2"])
    assert r.exit_code == 0, r.output
    results = [json.loads(line) for line in r.output.splitlines()]
    assert [res["file"] for res in results] == [str(f) for f in files]
    from eventssm.io import read_events

    for res, f in zip(results, files):
        n = len(read_events(f).events)
        assert res["events"] == n
        assert [t["class"] for t in res["top"]] in (["left", "right"], ["right", "left"])
        p = [t["p"] for t in res["top"]]
        assert p[0] >= p[1] and sum(p) == pytest.approx(1, abs=1e-3)
        # one entry per chunk of 100 events (the last one shorter)
        assert [s["events"] for s in res["stream"]] == [*range(100, n, 100), n]
        # the streaming model's final prediction is the full model's
        assert res["stream"][-1]["class"] == res["top"][0]["class"]


def test_classify_probabilities_match_evaluate(workspace):
    """classify's top class on each whole recording is evaluate's prediction (the confusion
    matrix counts them), computed independently by the two commands."""
    root, _ = workspace
    raw = sorted((root / "raw").rglob("*.h5"))
    r = CliRunner().invoke(main, ["classify", str(root / "run"), *map(str, raw), "--json", "--top", "1"])
    assert r.exit_code == 0, r.output
    predicted = [json.loads(line)["top"][0]["class"] for line in r.output.splitlines()]
    truth = [f.parent.name for f in raw]
    names = ["left", "right"]
    confusion = np.zeros((2, 2), int)
    for t, p in zip(truth, predicted):
        confusion[names.index(t), names.index(p)] += 1
    ev = CliRunner().invoke(main, ["evaluate", str(root / "run"), str(root / "cache.h5"), "--json",
                                   "--batch-size", "2"])
    assert confusion.tolist() == json.loads(ev.output)["confusion"]


def test_evaluate_a_sliced_cache_by_recording(workspace):
    """A cache sliced differently from the training cache is accepted (slicing only picks
    samples); the accuracy by recording equals an independent aggregation of the slices'
    log-probabilities (one padded forward pass, numpy mean per recording). A cache with other
    token settings is refused."""
    import jax
    import jax.numpy as jnp

    from eventssm.tokenizers.batching import pad_batch
    from eventssm.tokenizers.dataset import TokenDataset
    from eventssm.train import load_run

    root, _ = workspace
    r = CliRunner()
    for name, extra in (("sliced.h5", ["--slice-events", "64"]), ("coarse.h5", ["--downsample", "2"])):
        out = r.invoke(main, ["preprocess", str(root / "raw"), "-o", str(root / name), "--labels-from", "folder",
                              "--workers", "1", "-q", *extra])
        assert out.exit_code == 0, out.output
    res = r.invoke(main, ["evaluate", str(root / "run"), str(root / "sliced.h5"), "--json", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    res = json.loads(res.output)
    ds = TokenDataset(root / "sliced.h5")
    assert res["n"] == len(ds) > 6 and res["recordings"]["n"] == 6

    model = load_run(root / "run").model
    model.eval()
    b = pad_batch([ds[i][:2] for i in range(len(ds))], ds.labels, buckets=(64,))
    log_p = np.asarray(jax.nn.log_softmax(model(jnp.asarray(b.tokens), jnp.asarray(b.dt), jnp.asarray(b.mask)), -1))
    confusion = np.zeros((2, 2), int)
    for src in np.unique(ds.source_index):
        rows = ds.source_index == src
        confusion[ds.labels[rows][0], np.argmax(log_p[rows].mean(0))] += 1
    assert res["recordings"]["confusion"] == confusion.tolist()
    assert res["recordings"]["accuracy"] == pytest.approx(np.trace(confusion) / 6)

    human = r.invoke(main, ["evaluate", str(root / "run"), str(root / "sliced.h5"), "--batch-size", "2"])
    assert f"accuracy by recording {res['recordings']['accuracy']:.4f} on 6 recordings" in human.output
    bad = r.invoke(main, ["evaluate", str(root / "run"), str(root / "coarse.h5")])
    assert_one_error(bad, "coarse.h5: tokenizer settings differ")


def test_classify_a_recording_longer_than_the_largest_bucket(workspace, tmp_path):
    """Beyond 131,072 events classify switches to the streaming model in chunks: the same
    probabilities as the full model on the whole unpadded sequence (computed here directly)."""
    import jax
    import jax.numpy as jnp

    from eventssm.events import Recording, make_events
    from eventssm.io import write_events
    from eventssm.tokenizers.functional import tokenize
    from eventssm.train import load_run

    root, _ = workspace
    rng = np.random.default_rng(3)
    n = 140_000
    ev = make_events(rng.integers(0, 10, n), rng.integers(0, 10, n), np.cumsum(rng.integers(0, 20, n)),
                     rng.random(n) < 0.5)
    path = tmp_path / "long.npz"
    write_events(path, Recording(ev, (10, 10, 2), {}))
    r = CliRunner().invoke(main, ["classify", str(root / "run"), str(path), "--json", "--top", "2"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["events"] == n
    model = load_run(root / "run").model
    model.eval()
    tokens, dt = tokenize(ev, (10, 10))
    probs = np.asarray(jax.nn.softmax(model(jnp.asarray(tokens[None]), jnp.asarray(dt[None])), -1))[0]
    names = ["left", "right"]
    for t in res["top"]:
        assert t["p"] == pytest.approx(float(probs[names.index(t["class"])]), abs=2e-4)


@pytest.mark.parametrize("args", [
    ["evaluate", "{root}/nope", "{root}/cache.h5"],
    ["classify", "{root}/nope", "{root}/raw/left/left_000.h5"],
    ["train", "{root}/missing.h5", "-o", "{root}/run2"],
    ["train", "{root}/cache.h5", "-o", "{root}/run2", "--preset", "huge"],
    ["train", "{root}/cache.h5", "-o", "{root}/run2", "--d-state", "7"],
    ["train", "{root}/cache.h5", "-o", "{root}/raw"],  # an existing folder that is not a checkpoint
    ["train", "{root}/cache.h5", "-o", "{root}/cache.h5/run2"],  # under a regular file
    ["train", "{root}/cache.h5", "-o", "{root}/cache.h5"],  # a regular file
    ["train", "{root}/cache.h5", "-o", "{root}/run2", "--val-group", "(left"],  # not a regular expression
])
def test_bad_input_is_one_line_and_nonzero(workspace, args):
    root, _ = workspace
    r = CliRunner().invoke(main, [a.format(root=root) for a in args])
    line = assert_one_error(r)
    assert str(root) in line or "huge" in line or "d_state 7" in line or "'(left' is not a regular" in line
    assert not (root / "run2").exists()
    assert (root / "raw" / "left" / "left_000.h5").is_file() and (root / "cache.h5").is_file()


def test_classify_bad_file_among_good_ones(workspace):
    root, _ = workspace
    good = root / "raw" / "left" / "left_000.h5"
    r = CliRunner().invoke(main, ["classify", str(root / "run"), str(root / "raw" / "nope.h5"), str(good)])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {root / 'raw' / 'nope.h5'}: ")
    assert "No such file" in lines[0] and "Traceback" not in r.output
    assert r.stdout.startswith(f"{good}: ")


def test_classify_names_a_token_cache_given_as_a_recording(workspace):
    from eventssm.io.hdf5 import TOKEN_CACHE_FORMAT
    from eventssm.tokenizers.cache.format import FORMAT_NAME

    assert TOKEN_CACHE_FORMAT == FORMAT_NAME  # the reader's copy of the cache's format name
    root, _ = workspace
    r = CliRunner().invoke(main, ["classify", str(root / "run"), str(root / "cache.h5")])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [
        f"error: {root / 'cache.h5'}: a token cache made by `eventssm preprocess`, not a recording; "
        "score it with `eventssm evaluate RUN CACHE`"]


def test_train_holds_out_whole_takes_with_val_group(workspace, tmp_path):
    """--val-group '(left|right)_00[01]': left_000 and left_001 are one take, left_002 another
    (unmatched: alone); one take per class goes to validation, with all its recordings."""
    from eventssm.tokenizers.dataset import TokenDataset

    root, _ = workspace
    pattern = r"(left|right)_00[01]"
    names = {s.path.split("/")[-1] for s in TokenDataset(root / "cache.h5").sources}
    assert names == {f"{c}_00{k}.h5" for c in ("left", "right") for k in range(3)}
    for seed in (0, 1):
        r = CliRunner().invoke(main, ["train", str(root / "cache.h5"), "-o", str(tmp_path / f"run{seed}"), *TRAIN,
                                      "--val-group", pattern, "--seed", str(seed)])
        assert r.exit_code == 0, r.output
        assert (f"note: validation holds out whole takes (--val-group '{pattern}'): 4 takes, 2 held out; "
                "--val-group none splits by recording") in r.output
        spec = json.loads((tmp_path / f"run{seed}" / "run.json").read_text())
        assert spec["train"]["val_group"] == pattern
        # validation is one take of each class: 2 clips (left_000 + left_001) or 1 (left_002)
        n_val = int(r.output.split(" / val ")[1].split(";")[0])
        assert n_val in (2, 3, 4) and f"train {6 - n_val} / val {n_val}" in r.output
    # the split is stored: --resume continues with the same one
    r = CliRunner().invoke(main, ["train", str(root / "cache.h5"), "-o", str(tmp_path / "run0"), "--resume",
                                  "--steps", "3"])
    assert r.exit_code == 0, r.output
    assert "4 takes, 2 held out;" in r.output


def test_train_finds_takes_by_name_by_default(workspace, tmp_path):
    """Clips a_000, a_001 (one take) and b_000 of each class: by default whole takes go to
    validation; numbered independent recordings (left_000, left_001, ... : one name per class)
    keep the split by recording (the workspace run has no such note)."""
    import shutil

    from eventssm.tokenizers.dataset import TokenDataset

    root, output = workspace
    assert "holds out whole takes" not in output
    for c in ("left", "right"):
        (tmp_path / "clips" / c).mkdir(parents=True)
        for k, name in enumerate(("a_000", "a_001", "b_000")):
            shutil.copy(root / "raw" / c / f"{c}_00{k}.h5", tmp_path / "clips" / c / f"{name}.h5")
    r = CliRunner()
    assert r.invoke(main, ["preprocess", str(tmp_path / "clips"), "-o", str(tmp_path / "c.h5"), "--labels-from",
                           "folder", "--workers", "1", "-q"]).exit_code == 0
    res = r.invoke(main, ["train", str(tmp_path / "c.h5"), "-o", str(tmp_path / "run"), *TRAIN])
    assert res.exit_code == 0, res.output
    assert ("note: validation holds out whole takes (recordings named alike up to a trailing number): "
            "4 takes, 2 held out") in res.output
    n_val = int(res.output.split(" / val ")[1].split(";")[0])
    assert n_val in (2, 3, 4)  # per class a (2 clips) or b (1)
    spec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert spec["train"]["val_group"] == "auto"
    paths = [s.path for s in TokenDataset(tmp_path / "c.h5").sources]
    assert sorted(p.split("/")[-1] for p in paths) == sorted(["a_000.h5", "a_001.h5", "b_000.h5"] * 2)
    res = r.invoke(main, ["train", str(tmp_path / "c.h5"), "-o", str(tmp_path / "run2"), *TRAIN,
                          "--val-group", "none"])
    assert res.exit_code == 0 and "holds out whole takes" not in res.output and "train 4 / val 2" in res.output


def test_train_leaves_nothing_to_train_on(tmp_path):
    """One recording per class and --val-fraction 0.9: every recording goes to validation."""
    r = CliRunner()
    assert r.invoke(main, ["simulate", str(tmp_path / "raw"), "--per-class", "1", "--classes", "up,down",
                           "--size", "8x8", "--frames", "3"]).exit_code == 0
    assert r.invoke(main, ["preprocess", str(tmp_path / "raw"), "-o", str(tmp_path / "c.h5"), "--labels-from",
                           "folder", "--workers", "1", "-q"]).exit_code == 0
    res = r.invoke(main, ["train", str(tmp_path / "c.h5"), "-o", str(tmp_path / "run"), "--val-fraction", "0.9"])
    assert_one_error(res, "c.h5", "--val-fraction 0.9 leaves no recording for training")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- option values
# checked by click before the command body runs (no cache needed, JAX not imported)


@pytest.mark.parametrize("args", [
    ["--steps", "0"], ["--batch-size", "0"], ["--crop-events", "0"], ["--log-every", "0"], ["--log-every", "-5"],
    ["--lr", "0"], ["--lr", "-1e-3"], ["--lr", "nan"], ["--ssm-lr", "inf"], ["--ssm-lr", "0"],
    ["--val-fraction", "1"], ["--val-fraction", "-0.1"], ["--seed", "-1"], ["--seed", str(2**31)],
    ["--d-model", "0"], ["--d-state", "0"], ["--stages", "0"], ["--layers-per-stage", "0"],
    ["--scan-method", "fast"], ["--layer", "s6"], ["--augment", "flip"], ["--cutmix", "1.5"],
    ["--cutmix", "-0.1"], ["--cutmix", "nan"], ["--label-smoothing", "1"], ["--label-smoothing", "-0.1"],
    ["--weight-decay", "-1"], ["--weight-decay", "inf"], ["--dropout", "1"], ["--sampling", "oversample"],
])
def test_train_option_values(tmp_path, args):
    r = CliRunner().invoke(main, ["train", str(tmp_path / "c.h5"), "-o", str(tmp_path / "run"), *args])
    assert_one_error(r, f"'{args[0]}'", "train --help")
    assert r.exit_code == 2 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("cmd, args", [
    (["evaluate", "{t}/run", "{t}/c.h5"], ["--batch-size", "0"]),
    (["classify", "{t}/run", "{t}/a.h5"], ["--top", "0"]),
    (["classify", "{t}/run", "{t}/a.h5"], ["--stream", "-1"]),
])
def test_evaluate_and_classify_option_values(tmp_path, cmd, args):
    r = CliRunner().invoke(main, [a.format(t=tmp_path) for a in cmd] + args)
    assert_one_error(r, f"'{args[0]}'", f"{cmd[0]} --help")


def test_train_unwritable_out_parent(tmp_path, monkeypatch):
    """A read-only parent folder (simulated: the tests may run as root); checked before any work."""
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    r = CliRunner().invoke(main, ["train", str(tmp_path / "c.h5"), "-o", str(tmp_path / "new" / "run")])
    assert_one_error(r, str(tmp_path / "new" / "run"), f"{tmp_path} is not writable")


def test_scan_methods_listed_by_the_cli_are_the_models():
    from eventssm.cli.train import SCAN_METHODS as CLI_METHODS
    from eventssm.models.classifier import SCAN_METHODS

    assert set(CLI_METHODS) == set(SCAN_METHODS)


def test_augment_recipes_listed_by_the_cli_are_the_trainers():
    from eventssm.cli.train import AUGMENT_RECIPES
    from eventssm.train.augment import RECIPES

    assert AUGMENT_RECIPES == RECIPES


def test_train_with_augmentation_and_cutmix(workspace):
    root, _ = workspace
    r = CliRunner().invoke(main, ["train", str(root / "cache.h5"), "-o", str(root / "run_aug"), *TRAIN,
                                  "--augment", "geometric", "--cutmix", "0.5"])
    assert r.exit_code == 0, r.output
    assert "step     2" in r.output and "validation accuracy" in r.output
    train = json.loads((root / "run_aug" / "run.json").read_text())["train"]
    assert (train["augment"], train["cutmix"]) == ("geometric", 0.5)
    losses = [float(line.split()[3]) for line in r.output.splitlines() if line.split()[2:3] == ["loss"]]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_an_ensemble_trains_evaluates_classifies_and_streams(workspace):
    """`--embedding table+fourier` trains one table and one Fourier member; evaluate and classify
    load the ensemble; its streamed final prediction is the whole-recording one."""
    root, _ = workspace
    r = CliRunner().invoke(main, ["train", str(root / "cache.h5"), "-o", str(root / "run_ens"), *TRAIN,
                                  "--embedding", "table+fourier"])
    assert r.exit_code == 0, r.output
    assert "an ensemble of 2 (1 × table+fourier)" in r.output
    model = json.loads((root / "run_ens" / "run.json").read_text())["model"]
    assert (model["embedding"], model["members"]) == ("table+fourier", 1)
    from eventssm.models.ensemble import EnsembleClassifier
    from eventssm.train.checkpoint import load_run

    assert isinstance(load_run(root / "run_ens").model, EnsembleClassifier)
    ev = CliRunner().invoke(main, ["evaluate", str(root / "run_ens"), str(root / "cache.h5"), "--json",
                                   "--batch-size", "2"])
    assert ev.exit_code == 0, ev.output
    assert sum(map(sum, json.loads(ev.output)["confusion"])) == 6
    f = root / "raw" / "left" / "left_000.h5"
    c = CliRunner().invoke(main, ["classify", str(root / "run_ens"), str(f), "--json", "--stream", "100"])
    assert c.exit_code == 0, c.output
    res = json.loads(c.output)
    assert res["stream"][-1]["class"] == res["top"][0]["class"]


def test_stream_chunk_width_is_n_unless_far_beyond_the_file():
    from eventssm.cli.classify import _MAX_CHUNK, chunk_width

    assert chunk_width(100, 37) == 100 and chunk_width(100, 10_000) == 100
    assert chunk_width(_MAX_CHUNK, 5) == _MAX_CHUNK
    assert chunk_width(10**12, 1000) == 1024 and chunk_width(10**12, 1024) == 1024
    assert chunk_width(10**12, 1) == 1
    assert chunk_width(_MAX_CHUNK + 1, 3 * _MAX_CHUNK) == _MAX_CHUNK + 1

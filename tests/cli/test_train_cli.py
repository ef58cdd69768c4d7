"""train -> evaluate -> classify on a tiny simulated cache, and their bad-input lines."""

import json

import pytest
from click.testing import CliRunner

from eventssm.cli import main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    r = CliRunner()
    out = r.invoke(main, ["simulate", str(root / "raw"), "--per-class", "3", "--classes", "left,right",
                          "--size", "16x16", "--frames", "8", "--duration-ms", "100"])
    assert out.exit_code == 0, out.output
    out = r.invoke(main, ["preprocess", str(root / "raw"), "-o", str(root / "cache.h5"), "--labels-from",
                          "folder", "--workers", "1", "-q"])
    assert out.exit_code == 0, out.output
    out = r.invoke(main, ["train", str(root / "cache.h5"), "-o", str(root / "run"), "--steps", "2",
                          "--batch-size", "4", "--crop-events", "256", "--log-every", "1", "--val-fraction", "0.34"])
    assert out.exit_code == 0, out.output
    return root, out.output


def test_train_reports_and_saves(workspace):
    root, output = workspace
    assert "step     2" in output and "validation accuracy" in output
    for name in ("model.json", "params.npz", "train.json", "tokenizer.json", "metrics.json"):
        assert (root / "run" / name).is_file()
    tok = json.loads((root / "run" / "tokenizer.json").read_text())
    assert tok["class_names"] == ["left", "right"]


def test_evaluate_counts_every_sample(workspace):
    root, _ = workspace
    r = CliRunner().invoke(main, ["evaluate", str(root / "run"), str(root / "cache.h5"), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["n"] == 6 and sum(map(sum, res["confusion"])) == 6
    assert res["accuracy"] == pytest.approx(sum(res["confusion"][i][i] for i in range(2)) / 6)


def test_classify_matches_evaluate_and_streams(workspace):
    root, _ = workspace
    f = root / "raw" / "left" / "left_000.h5"
    r = CliRunner().invoke(main, ["classify", str(root / "run"), str(f), "--json", "--stream", "100", "--top", "2"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["top"][0]["class"] in ("left", "right")
    assert res["stream"][-1]["events"] == res["events"]
    # the streaming model's final prediction is the full model's
    assert res["stream"][-1]["class"] == res["top"][0]["class"]


@pytest.mark.parametrize("args", [
    ["evaluate", "{root}/nope", "{root}/cache.h5"],
    ["classify", "{root}/nope", "{root}/raw/left/left_000.h5"],
    ["train", "{root}/missing.h5", "-o", "{root}/run2"],
    ["classify", "{root}/run", "{root}/raw/left/missing.h5"],
])
def test_bad_input_is_one_line_and_nonzero(workspace, args):
    root, _ = workspace
    r = CliRunner().invoke(main, [a.format(root=root) for a in args])
    assert r.exit_code != 0
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(root) in lines[0]
    assert not (root / "run2").exists()

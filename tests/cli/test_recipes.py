"""``train --config FILE``: recipes load and validate, flags override them, bad recipes are one
error line; the run folder's config.toml repeats a run. (The tiny run from a recipe with flags,
on shards, is the shared training of tests/cli/test_train_cli.py.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from eventssm.cli import main
from eventssm.cli.recipe import recipe_keys, resolved_recipe
from eventssm.cli.train import _either, train, train_arguments
from eventssm.cli.train_run import resolve_steps
from eventssm.models.presets import get_preset
from eventssm.train.config import TrainConfig
from tests.cli.errors import assert_one_error

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.toml"))
SOURCES = __import__("click").core.ParameterSource


def parse(*args: str):
    """The context ``eventssm train`` builds from ``args`` (options resolved, nothing run)."""
    return train.make_context("train", ["cache.h5", "-o", "run", *map(str, args)])


def option_values(ctx) -> dict:
    return {k: v for k, v in ctx.params.items() if k not in ("caches", "out", "resume", "overwrite", "config")}


def test_there_are_the_three_recipes():
    assert {p.name for p in RECIPES} >= {"dvsgesture_s7.toml", "dvsgesture_eventssm.toml", "activities.toml"}
    sources = (("dvsgesture_s7.toml", "github.com/TaylanSoydan/S7", "99.2 %"),
               ("dvsgesture_eventssm.toml", "github.com/Efficient-Scalable-Machine-Learning/event-ssm", "97.7 %"))
    for name, repo, accuracy in sources:
        text = (RECIPES[0].parent / name).read_text()
        assert repo in text and "configs/task/dvs-gesture.yaml" in text and accuracy in text
        assert "NOT RUN by this project" in text and "cannot express" in text


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(path):
    table = tomllib.loads(path.read_text())
    keys = recipe_keys(train)
    ctx = parse("--config", path)
    for key, value in table.items():
        assert ctx.params[keys[key].name] == value, key
        assert ctx.get_parameter_source(keys[key].name) is SOURCES.DEFAULT_MAP
    options = option_values(ctx)
    options.pop("devices")
    if _either(ctx, "steps", "epochs"):
        options["steps"] = None
    model_args, train_args, epochs = train_arguments(options)
    margs = {k: v for k, v in model_args.items() if v is not None}
    config = get_preset(margs.pop("preset"), margs.pop("layer"), vocab_size=2 * 128 * 128, n_classes=11,
                        grid=(128, 128, 2), **margs)
    tcfg = TrainConfig(**resolve_steps(train_args, epochs, n_train=1000))
    if "epochs" in table:
        steps = table["epochs"] * (1000 // table["batch-size"]) // table["accumulate"]
    else:
        steps = table["steps"]
    assert tcfg.steps == steps and tcfg.lr == table["lr"] and tcfg.crop_events <= max(tcfg.buckets)
    assert config.dropout == table.get("dropout", config.dropout) and config.layer == table["layer"]
    assert config.embedding == table["embedding"] and config.members == table["members"]


def test_dvs_recipes_follow_the_papers_learning_rate_rules():
    """ssm lr = 1.2e-5 x batch 16 x accumulation 4, lr = 6 x ssm lr, 100 epochs, 10 of warm-up."""
    for name in ("dvsgesture_s7.toml", "dvsgesture_eventssm.toml"):
        t = tomllib.loads((RECIPES[0].parent / name).read_text())
        assert t["ssm-lr"] == pytest.approx(1.2e-5 * t["batch-size"] * t["accumulate"])
        assert t["lr"] == pytest.approx(6 * t["ssm-lr"])
        assert (t["epochs"], t["warmup-epochs"], t["batch-size"], t["accumulate"]) == (100, 10, 16, 4)
        assert "steps" not in t and "warmup-steps" not in t


def test_epochs_count_updates_as_the_official_code():
    """Updates = epochs x len(loader) // accumulation, a loader of floor(n / batch) batches
    (it drops the last incomplete one): 1,077 slices, batch 16, 4 accumulated -> 67 batches."""
    base = {"steps": None, "warmup_steps": None, "batch_size": 16, "accumulate": 4}
    got = resolve_steps(base, {"epochs": 100, "warmup_epochs": 10}, n_train=1077)
    assert (got["steps"], got["warmup_steps"]) == (1675, 167)
    got = resolve_steps(base, {"epochs": 3, "warmup_epochs": None}, n_train=1077)
    assert (got["steps"], got["warmup_steps"]) == (50, 5)  # warm-up: min(100, steps // 10)
    assert resolve_steps(base, {"epochs": 1}, n_train=10)["steps"] == 1  # fewer samples than a batch
    got = resolve_steps({**base, "steps": 300}, {}, n_train=10)
    assert (got["steps"], got["warmup_steps"]) == (300, 30)


def test_steps_or_epochs_from_the_stronger_source(tmp_path):
    epochs = tmp_path / "e.toml"
    epochs.write_text("epochs = 5\nwarmup-epochs = 1\n")
    assert _either(parse("--config", epochs), "steps", "epochs") == "steps"  # recipe beats default
    assert _either(parse("--config", epochs, "--steps", "300"), "steps", "epochs") == "epochs"  # flag beats recipe
    assert _either(parse("--config", epochs, "--warmup-steps", "3"), "warmup_steps", "warmup_epochs") == "warmup_epochs"
    steps = tmp_path / "s.toml"
    steps.write_text("steps = 5\n")
    assert _either(parse("--config", steps, "--epochs", "2"), "steps", "epochs") == "steps"
    assert _either(parse("--config", steps), "steps", "epochs") is None
    ctx = parse("--config", epochs)
    text = resolved_recipe(ctx, ["a.h5"], unset=["steps"])
    assert "# steps: not set" in text and "epochs = 5" in text


@pytest.mark.parametrize("content,flags,needle", [
    ("steps = 5\nepochs = 2\n", [], "both set in"),
    ("", ["--steps", "5", "--epochs", "2"], "both given"),
    ("warmup-steps = 5\nwarmup-epochs = 2\n", [], "--warmup-steps and --warmup-epochs"),
])
def test_steps_and_epochs_from_one_source_are_refused(tmp_path, content, flags, needle):
    recipe = tmp_path / "r.toml"
    recipe.write_text(content)
    r = CliRunner().invoke(main, ["train", str(tmp_path / "c.h5"), "-o", str(tmp_path / "run"), "--config",
                                  str(recipe), *flags])
    assert_one_error(r, needle, "keep one")


def test_activities_recipe_is_the_train_defaults():
    path = RECIPES[0].parent / "activities.toml"
    assert option_values(parse("--config", path)) == option_values(parse())


def test_flags_override_the_recipe_even_at_their_default(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('steps = 7\nlr = 0.5\naugment = "none"\nscan-method = "sequential"\n')
    ctx = parse("--config", recipe, "--steps", "300", "--augment", "basic")  # 300 is the built-in default
    assert (ctx.params["steps"], ctx.params["augment"]) == (300, "basic")
    assert ctx.get_parameter_source("steps") is SOURCES.COMMANDLINE
    assert (ctx.params["lr"], ctx.params["scan_method"]) == (0.5, "sequential")
    assert ctx.params["batch_size"] == 16 and ctx.get_parameter_source("batch_size") is SOURCES.DEFAULT
    # the order of --config among the flags does not matter
    assert parse("--steps", "300", "--config", recipe).params["steps"] == 300


def test_resolved_recipe_repeats_the_options(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('steps = 7\nlr = 0.5\nlabel-smoothing = 0\nlayer = "s5"\n')
    ctx = parse("--config", recipe, "--crop-events", "100", "--dropout", "0.3")
    text = resolved_recipe(ctx, ["a.h5", "b.h5"])
    assert "# inputs: a.h5 b.h5" in text and "# flags: --crop-events, --dropout" in text
    assert "(set --layer, --steps, --lr, --label-smoothing)" in text
    assert "# d-model: not set" in text
    again = tmp_path / "config.toml"
    again.write_text(text)
    assert option_values(parse("--config", again)) == option_values(ctx)


@pytest.mark.parametrize("content,needles", [
    ("crop_events = 10\n", ["unknown key 'crop_events'", "did you mean 'crop-events'"]),
    ("stpes = 10\n", ["unknown key 'stpes'", "'steps'"]),
    ("[model]\nd-model = 8\n", ["unknown key 'model'"]),
    ("steps = 3.5\n", ["key 'steps'", "expected an integer, got a number 3.5"]),
    ("steps = true\n", ["key 'steps'", "expected an integer, got a boolean"]),
    ("steps = 0\n", ["key 'steps'", "0 is not in the range x>=1"]),
    ("lr = -1.0\n", ["key 'lr'", "not in the range"]),
    ("lr = nan\n", ["key 'lr'", "not a finite number"]),
    ("augment = 'wild'\n", ["key 'augment'", "'wild' is not one of"]),
    ("augment = 1\n", ["key 'augment'", "expected a string, got an integer"]),
    ("out = 'elsewhere'\n", ["key 'out' is not read from a recipe", "--out"]),
    ("overwrite = true\n", ["key 'overwrite' is not read from a recipe"]),
    ("steps = \n", ["not valid TOML", "line 1"]),
])
def test_bad_recipes_are_one_line_naming_file_and_key(tmp_path, content, needles):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(content)
    r = CliRunner().invoke(main, ["train", str(tmp_path / "none.h5"), "-o", str(tmp_path / "run"),
                                  "--config", str(recipe)])
    assert_one_error(r, str(recipe), *needles)
    assert not (tmp_path / "run").exists()


def test_missing_and_binary_recipes(tmp_path):
    r = CliRunner().invoke(main, ["train", "c.h5", "-o", str(tmp_path / "run"), "--config", str(tmp_path / "no.toml")])
    assert_one_error(r, "no.toml", "No such file")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    r = CliRunner().invoke(main, ["train", "c.h5", "-o", str(tmp_path / "run"), "--config", str(tmp_path / "bin.toml")])
    assert_one_error(r, "bin.toml", "not UTF-8")

"""The RUN folder rules of `eventssm train` (checked before any work) and the checks that run
before the training step compiles."""

import numpy as np
import pytest
from click.testing import CliRunner

from eventssm.cli import main
from eventssm.cli.runfolder import check_run_folder, clear_run_folder
from tests.cli.errors import assert_one_error


def test_rules(tmp_path):
    new, empty, run, user, file = (tmp_path / n for n in ("new", "empty", "run", "user", "file"))
    empty.mkdir()
    (run / "checkpoints" / "4").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "metrics.jsonl").write_text("")
    (run / "my_notes.txt").write_text("mine")
    user.mkdir()
    (user / "data.csv").write_text("x")
    file.write_text("x")
    for path in (new, empty):
        assert check_run_folder(path, resume=False, overwrite=False) is None
        assert "nothing to resume" in check_run_folder(path, resume=True, overwrite=False)
    assert "--resume or replace it with --overwrite" in check_run_folder(run, resume=False, overwrite=False)
    assert check_run_folder(run, resume=True, overwrite=False) is None
    assert check_run_folder(run, resume=False, overwrite=True) is None
    assert "exclude each other" in check_run_folder(run, resume=True, overwrite=True)
    for flags in ((False, False), (False, True)):
        assert "did not write" in check_run_folder(user, resume=flags[0], overwrite=flags[1])
    assert "not a folder" in check_run_folder(file, resume=False, overwrite=True)
    clear_run_folder(run)
    assert sorted(p.name for p in run.iterdir()) == ["my_notes.txt"]  # the user's file stays


def test_existing_folder_refused_before_any_import(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    r = CliRunner().invoke(main, ["train", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "run")])
    assert_one_error(r, "a run already exists there")


def test_samples_longer_than_the_largest_bucket_are_refused_before_compiling(tmp_path):
    """Validation evaluates whole samples: one over 131,072 events is an error naming
    --slice-events, before anything compiles or RUN is created."""
    from eventssm.events import Recording, make_events
    from eventssm.io import write_events

    rng = np.random.default_rng(0)
    n = 140_000
    for cls in ("a", "b"):
        (tmp_path / "raw" / cls).mkdir(parents=True)
        for k in range(2):
            ev = make_events(rng.integers(0, 4, n), rng.integers(0, 4, n), np.arange(n) * 3, rng.random(n) < 0.5)
            write_events(tmp_path / "raw" / cls / f"{k}.npz", Recording(ev, (4, 4, 2), {}))
    r = CliRunner()
    out = r.invoke(main, ["preprocess", str(tmp_path / "raw"), "-o", str(tmp_path / "c.h5"), "--labels-from", "folder",
                          "--workers", "1", "-q"])
    assert out.exit_code == 0, out.output
    res = r.invoke(main, ["train", str(tmp_path / "c.h5"), "-o", str(tmp_path / "run"), "--val-fraction", "0.5"])
    line = assert_one_error(res, "c.h5: 2 validation sample(s) hold more events (up to 140,000)",
                            "--slice-events 131072")
    assert "compiling" not in res.output and "Traceback" not in line
    assert not (tmp_path / "run").exists()
    ev = r.invoke(main, ["evaluate", str(tmp_path / "run"), str(tmp_path / "c.h5")])
    assert ev.exit_code == 2


@pytest.mark.parametrize("args, message", [
    (["--resume", "--overwrite"], "exclude each other"),
])
def test_flag_conflicts(tmp_path, args, message):
    r = CliRunner().invoke(main, ["train", str(tmp_path / "c.h5"), "-o", str(tmp_path / "run"), *args])
    assert_one_error(r, message)

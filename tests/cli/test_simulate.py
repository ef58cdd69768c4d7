"""`eventssm simulate` and sim.export: every written format reads back to the simulated events."""

import numpy as np
import pytest
from click.testing import CliRunner

from eventssm.cli import main
from eventssm.io import read_events
from eventssm.sim import make_sample
from eventssm.sim.export import write_recording


@pytest.mark.parametrize("fmt,ext", [("h5", ".h5"), ("npz", ".npz"), ("evt2", ".raw"), ("evt3", ".raw"),
                                     ("dat", ".dat"), ("aedat3", ".aedat")])
def test_export_round_trip(tmp_path, fmt, ext):
    rec = make_sample("ccw", np.random.default_rng(5), size=(40, 30), n_frames=8)
    path = write_recording(tmp_path / f"s{ext}", rec, fmt)
    back = read_events(path)
    assert back.sensor_size[:2] == (40, 30)
    for field in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(back.events[field], rec.events[field])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_simulate_cli_writes_class_folders_deterministically(tmp_path):
    runner = CliRunner()
    args = ["simulate", "--per-class", "2", "--classes", "left,grow", "--size", "24x20", "--frames", "6"]
    r1 = runner.invoke(main, [*args, str(tmp_path / "a")])
    r2 = runner.invoke(main, [*args, str(tmp_path / "b")])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output
    files = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.h5"))
    assert files == ["grow/grow_000.h5", "grow/grow_001.h5", "left/left_000.h5", "left/left_001.h5"]
    for f in files:
        np.testing.assert_array_equal(read_events(tmp_path / "a" / f).events, read_events(tmp_path / "b" / f).events)


@pytest.mark.parametrize("bad", [["--classes", "sideways"], ["--size", "12"], ["--per-class", "0"]])
def test_simulate_bad_options_one_line_no_traceback(tmp_path, bad):
    r = CliRunner().invoke(main, ["simulate", *bad, str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    assert not (tmp_path / "o").exists()

"""`eventssm simulate` and sim.export: every written format reads back to the simulated events;
every invalid option or output folder is one error line."""

import numpy as np
import pytest
from click.testing import CliRunner

from eventssm.cli import main
from eventssm.io import read_events
from eventssm.sim import make_sample, render_clip
from eventssm.sim.export import write_recording
from tests.cli.errors import assert_one_error


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


def test_simulate_shortest_valid_clip(tmp_path):
    """Two frames and (frames - 1) microseconds: the smallest values the checks accept."""
    r = CliRunner().invoke(main, ["simulate", str(tmp_path / "o"), "--per-class", "1", "--classes", "grow,grow",
                                  "--size", "8x8", "--frames", "2", "--duration-ms", "0.001"])
    assert r.exit_code == 0, r.output
    assert r.output == f"wrote 1 recordings (1 classes, 8x8, h5) to {tmp_path / 'o'}\n"  # duplicate class once
    t = read_events(tmp_path / "o" / "grow" / "grow_000.h5").events["t"]
    assert t.min() >= 0 and t.max() <= 1


@pytest.mark.parametrize("bad, needle", [
    (["--classes", "sideways"], "--classes"),
    (["--size", "12"], "--size"),
    (["--size", "40000x10"], "--size"),
    (["--size", "4000x4000"], "--frames 40 at --size 4000x4000"),
    (["--per-class", "0"], "--per-class"),
    (["--seed", "-1"], "--seed"),
    (["--frames", "0"], "--frames"),
    (["--frames", "1"], "--frames"),
    (["--frames", "x"], "--frames"),
    (["--duration-ms", "0"], "--duration-ms"),
    (["--duration-ms", "-3"], "--duration-ms"),
    (["--duration-ms", "nan"], "--duration-ms"),
    (["--duration-ms", "inf"], "--duration-ms"),
    (["--frames", "50", "--duration-ms", "0.01"], "--duration-ms 0.01 is too short for 50 frames"),
    (["--format", "png"], "--format"),
])
def test_simulate_bad_options_one_line_no_traceback(tmp_path, bad, needle):
    r = CliRunner().invoke(main, ["simulate", *bad, str(tmp_path / "o")])
    line = assert_one_error(r, needle)
    assert r.exit_code == 2
    assert "simulate --help" in line or "--frames 40" in line or "too short" in line
    assert not (tmp_path / "o").exists()


def test_simulate_output_folder_problems(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    r = CliRunner().invoke(main, ["simulate", str(afile / "sub" / "o"), "--per-class", "1", "--frames", "2"])
    assert_one_error(r, str(afile / "sub" / "o"), "cannot create the output folder", "Not a directory")
    r = CliRunner().invoke(main, ["simulate", str(afile), "--per-class", "1", "--frames", "2"])
    assert_one_error(r, "OUT_DIR", "afile", "is a file")
    assert afile.read_text() == "not a folder"


def test_simulate_format_limit_names_the_file(tmp_path):
    """EVT 2.0 holds 11-bit coordinates: a wider sensor is one line naming the file."""
    r = CliRunner().invoke(main, ["simulate", str(tmp_path / "o"), "--per-class", "1", "--classes", "up",
                                  "--size", "4096x8", "--frames", "2", "--format", "evt2"])
    assert_one_error(r, "up_000.raw", "cannot write as evt2", "4096")
    assert not list((tmp_path / "o").rglob("*.raw")) and not list((tmp_path / "o").rglob(".*"))


@pytest.mark.parametrize("kw, match", [
    (dict(n_frames=1), "n_frames"),
    (dict(n_frames=5, duration_us=3), "duration_us"),
    (dict(size=(0, 4)), "size"),
])
def test_render_clip_rejects_impossible_clips(kw, match):
    with pytest.raises(ValueError, match=match):
        render_clip("up", np.random.default_rng(0), **kw)


def test_render_clip_frame_times_increase_at_the_limit():
    _, times = render_clip("cw", np.random.default_rng(0), size=(8, 8), n_frames=7, duration_us=6)
    assert times.tolist() == list(range(7))
    _, times = render_clip("cw", np.random.default_rng(0), size=(8, 8), n_frames=40, duration_us=41)
    assert np.all(np.diff(times) > 0) and times[-1] == 41

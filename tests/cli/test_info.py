"""``eventssm info``: help, JSON numbers against read_events, errors, options."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from eventssm.cli import info as info_mod
from eventssm.cli import main
from eventssm.cli._common import parse_size
from eventssm.events import Recording, make_events
from eventssm.io import read_events, write_events


def _run(*args):
    return CliRunner().invoke(main, ["info", *map(str, args)])


def _recording(n=500, seed=0, monotonic=False):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(10**6, 5 * 10**6, n))
    if not monotonic:
        t[[50, 51, 200, 201, 499]] = t[[51, 50, 201, 200, 0]]  # a few steps back
    ev = make_events(rng.integers(0, 320, n), rng.integers(0, 240, n), t,
                     rng.random(n) < 0.3)
    return Recording(ev, (320, 240, 2), {"camera": "DVXplorer"})


def _expected(path):
    rec = read_events(path, allow_empty=True)
    t = rec.events["t"].astype(np.int64)
    n = len(t)
    dur = (int(t.max()) - int(t.min())) / 1e6 if n else 0.0
    return {
        "events": n,
        "duration_s": dur,
        "event_rate_hz": n / dur if dur else None,
        "on_fraction": float(rec.events["p"].mean()) if n else None,
        "steps_back": int((np.diff(t) < 0).sum()),
        "t_min_us": int(t.min()) if n else None,
        "t_max_us": int(t.max()) if n else None,
        "t_first_us": int(t[0]) if n else None,
        "t_last_us": int(t[-1]) if n else None,
        "sensor_size": list(rec.sensor_size),
    }


def test_help():
    res = _run("--help")
    assert res.exit_code == 0
    for opt in ("--json", "--format", "--sensor-size", "--formats"):
        assert opt in res.output
    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0 and "info" in top.output


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_json_numbers_match_read_events(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(info_mod, "_CHUNK", chunk)  # small chunks cross boundaries
    a = write_events(tmp_path / "a.h5", _recording())
    b = write_events(tmp_path / "b.npz", _recording(seed=1, monotonic=True))
    c = tmp_path / "c.csv"
    c.write_text("t,x,y,p\n5,1,2,1\n3,3,4,0\n9,0,0,1\n")
    res = _run("--json", a, b, c)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [o["file"] for o in out] == [str(a), str(b), str(c)]
    assert [o["format"] for o in out] == ["hdf5", "npz", "csv"]
    for o, path in zip(out, (a, b, c)):
        want = _expected(path)
        for key, value in want.items():
            if isinstance(value, float):
                assert o[key] == pytest.approx(value, rel=1e-12), key
            else:
                assert o[key] == value, key
        assert o["monotonic"] == (want["steps_back"] == 0)
        assert o["bytes"] == path.stat().st_size
    assert out[0]["steps_back"] == 3 and out[1]["monotonic"]
    assert out[0]["camera"] == "DVXplorer"
    assert out[2]["sensor_size_inferred"] is True


def test_human_output_is_aligned(tmp_path):
    a = write_events(tmp_path / "a.h5", _recording())
    res = _run(a)
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert lines[0] == str(a)
    body = lines[1:]
    keys = [line.split(" : ")[0].strip() for line in body]
    assert keys == ["format", "camera", "sensor size", "events", "duration", "event rate",
                    "ON fraction", "monotonic", "time range", "file size"]
    assert len({line.index(" : ") for line in body}) == 1  # one column of colons
    assert "events      : 500" in res.output
    assert "monotonic   : no (3 steps back)" in res.output
    assert "320 x 240, 2 polarities" in res.output


def test_bad_file_among_good_ones(tmp_path):
    good = write_events(tmp_path / "good.npz", _recording())
    bad = tmp_path / "bad.npy"
    np.save(bad, _recording().events)
    data = bad.read_bytes()
    bad.write_bytes(data[:-4])
    missing = tmp_path / "missing.h5"
    res = CliRunner().invoke(main, ["info", str(bad), str(good), str(missing)])
    assert res.exit_code == 1
    assert res.stdout.splitlines()[0] == str(good)
    err = res.stderr.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"error: {bad}: truncated") and err[0].endswith(
        f"(at byte {len(data) - 4})"
    )
    assert err[1] == f"error: {missing}: no such file"
    assert "Traceback" not in res.output
    res = _run("--json", bad, good)
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert "error" in out[0] and out[1]["events"] == 500


def test_empty_recording_is_not_an_error(tmp_path):
    empty = Recording(make_events([], [], [], []), (346, 260, 2), {})
    p = write_events(tmp_path / "empty.h5", empty)
    res = _run("--json", p)
    assert res.exit_code == 0, res.output
    (o,) = json.loads(res.output)
    assert o["events"] == 0 and o["duration_s"] == 0 and o["event_rate_hz"] is None
    assert o["sensor_size"] == [346, 260, 2] and o["monotonic"]
    assert _run(p).exit_code == 0


@pytest.mark.parametrize("form", [["640", "480"], ["640x480"], ["640X480x2"]])
def test_sensor_size_forms(tmp_path, form):
    c = tmp_path / "c.txt"
    c.write_text("1 2 3 1\n")
    res = CliRunner().invoke(main, ["info", "--json", "--sensor-size", *form, str(c)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["sensor_size"] == [640, 480, 2]


def test_bad_options(tmp_path):
    c = tmp_path / "c.txt"
    c.write_text("1 2 3 1\n")
    res = _run("--sensor-size", "big", c)
    assert res.exit_code == 2 and "WxH" in res.output
    assert _run().exit_code == 2
    res = _run("--format", "nope", c)
    assert res.exit_code == 1 and "unknown format 'nope'" in res.stderr


def test_format_option_and_formats_list(tmp_path):
    p = tmp_path / "events.dump"
    p.write_text("1 2 3 1\n2 2 3 0\n")
    assert _run(p).exit_code == 1
    res = _run("--json", "--format", "csv", p)
    assert res.exit_code == 0 and json.loads(res.output)[0]["events"] == 2
    res = _run("--formats")
    assert res.exit_code == 0
    for name in ("npy", "npz", "hdf5", "csv"):
        assert any(line.startswith(name + " ") for line in res.output.splitlines())
    assert ".h5 .hdf5" in res.output


def test_parse_sensor_size():
    assert parse_size("34x34", "--sensor-size", polarities=True) == (34, 34, 2)
    assert parse_size("700 1 1", "--sensor-size", polarities=True) == (700, 1, 1)
    assert parse_size("128,128", "--sensor-size", polarities=True) == (128, 128, 2)
    assert parse_size(" 64 x 48 ", "--target-size") == (64, 48)
    for bad in ("0x5", "5", "axb", "1x2x3x4", "-1x5"):
        with pytest.raises(click.BadParameter, match=bad):
            parse_size(bad, "--sensor-size", polarities=True)
    for bad in ("3x4x2", "10", "0,3"):
        with pytest.raises(click.BadParameter, match=bad):
            parse_size(bad, "--target-size")

"""Event frames (eventssm.render) and ``eventssm render``: counts against numpy, colours and
window bounds by hand, PNG and video files read back with OpenCV, and the error lines."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from eventssm.cli import main
from eventssm.events import EventFileError, Recording, make_events
from eventssm.io import write_events
from eventssm.render import _accumulate, colorize, frame_counts, iter_frames, window_edges, write_frames
from eventssm.video import video_codec
from tests.cli.errors import assert_one_error


def _random_events(seed, n, w, h, span_us):
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(0, span_us, n)),
                       rng.random(n) < 0.5)


def test_counts_equal_numpy_and_the_reference_kernel():
    ev = _random_events(0, 5000, 13, 7, 10**6)
    ref = np.zeros((7, 13, 2), np.int64)
    np.add.at(ref, (ev["y"], ev["x"], ev["p"].astype(int)), 1)
    got = frame_counts(ev, (13, 7, 2))
    assert got.dtype == np.uint16 and got.shape == (7, 13, 2)
    np.testing.assert_array_equal(got, ref)
    py = np.zeros((7, 13, 2), np.uint16)
    assert _accumulate.py_func(ev["x"], ev["y"], ev["p"], py) == -1
    np.testing.assert_array_equal(py, got)


def test_counts_saturate_and_reject_events_outside():
    many = make_events(np.full(70_000, 2), np.full(70_000, 1), np.arange(70_000), np.ones(70_000, bool))
    c = frame_counts(many, (4, 3))
    assert c[1, 2, 1] == 65535 and c.sum() == 65535
    bad = make_events([0, 1, 4], [0, 0, 0], [0, 1, 2], [True, False, True])
    with pytest.raises(EventFileError, match=r"event 2 at \(x=4, y=0\) lies outside the 4x3 sensor"):
        frame_counts(bad, (4, 3))


def test_window_edges_by_hand():
    t = np.array([10, 11, 19, 20, 35, 36, 60], np.int64)
    # windows of 10 µs from t = 10: [10, 20) [20, 30) [30, 40) [40, 50) [50, 60) [60, 61)
    np.testing.assert_array_equal(window_edges(t, 10), [0, 3, 4, 6, 6, 6, 7])
    # from 15 to 40 in windows of 12.5 µs: [15, 27) [27, 40)
    np.testing.assert_array_equal(window_edges(t, 12.5, 15, 40), [2, 4, 6])
    np.testing.assert_array_equal(window_edges(t[:0], 10), [0])
    with pytest.raises(ValueError):
        window_edges(t, 0)


def test_colorize_levels_by_hand():
    counts = np.zeros((1, 6, 2), np.uint16)
    counts[0, :, 1] = [0, 1, 2, 3, 4, 9]  # ON
    counts[0, 5, 0] = 2  # OFF at the last pixel
    rgb = colorize(counts, clip=4)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 6, 3)
    assert rgb[0, :, 0].tolist() == [0, 64, 128, 191, 255, 255]  # 255·n/4, rounded half up
    assert rgb[0, :, 1].tolist() == [0] * 6
    assert rgb[0, :, 2].tolist() == [0, 0, 0, 0, 0, 128]
    assert colorize(counts)[0, :, 0].tolist() == [0, 255, 255, 255, 255, 255]  # clip 1


def test_png_frames_hold_the_events(tmp_path):
    # 3 windows of 1 ms; an ON event at (1, 0) in the first, an OFF at (3, 2) in the third
    ev = make_events([1, 3], [0, 2], [1000, 3500], [True, False])
    frames = iter_frames(ev, (5, 4), 1000.0, scale=2)
    n = write_frames(frames, tmp_path / "frames", fps=10)
    assert n == 3
    files = sorted((tmp_path / "frames").iterdir())
    assert [f.name for f in files] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    imgs = [cv2.imread(str(f))[..., ::-1] for f in files]  # back to RGB
    assert imgs[0].shape == (8, 10, 3)
    expected = np.zeros((3, 8, 10, 3), np.uint8)
    expected[0, 0:2, 2:4] = (255, 0, 0)
    expected[2, 4:6, 6:8] = (0, 0, 255)
    np.testing.assert_array_equal(np.stack(imgs), expected)
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]  # no temporary left
    with pytest.raises(FileExistsError):
        write_frames(iter_frames(ev, (5, 4), 1000.0), tmp_path / "frames", fps=10)


def _sample(tmp_path, n=3000, span_us=100_000):
    ev = _random_events(1, n, 32, 24, span_us)
    path = tmp_path / "rec.npz"
    write_events(path, Recording(ev, (32, 24, 2), {}))
    return path


def test_cli_renders_a_video_with_one_frame_per_window(tmp_path):
    path = _sample(tmp_path)
    out = tmp_path / "rec.mp4"
    r = CliRunner().invoke(main, ["render", str(path), "-o", str(out), "--window-ms", "10", "--scale", "2"])
    assert r.exit_code == 0, r.output
    with np.load(path) as npz:
        t = np.sort(npz["t"])
    n_win = len(window_edges(t, 10_000)) - 1
    assert r.output.strip() == f"{out}: {n_win} frames of 64x48 (10 ms each) from {path}"
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == n_win and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 64
    assert video_codec(out) == ("h264", n_win, (64, 48))  # H.264: plays in every browser
    # a time range, and the errors
    r = CliRunner().invoke(main, ["render", str(path), "-o", str(tmp_path / "part"), "--window-ms", "10",
                                  "--start-ms", "20", "--duration-ms", "30"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "part").iterdir())) == 3
    assert_one_error(CliRunner().invoke(main, ["render", str(path), "-o", str(out)]), "exists", "--overwrite")
    r = CliRunner().invoke(main, ["render", str(path), "-o", str(out), "--overwrite", "--window-ms", "50"])
    assert r.exit_code == 0 and "2 frames" in r.output
    assert_one_error(CliRunner().invoke(main, ["render", str(path), "-o", str(tmp_path / "x.gif")]), "'.gif'")
    assert_one_error(CliRunner().invoke(main, ["render", str(path), "-o", str(tmp_path / "none"),
                                               "--start-ms", "5000"]), "no events from 5000 ms")
    assert_one_error(CliRunner().invoke(main, ["render", str(tmp_path / "nope.raw"), "-o", str(tmp_path / "n")]),
                     "nope.raw")
    assert_one_error(CliRunner().invoke(main, ["render", str(path), "-o", str(tmp_path / "q"), "--window-ms", "0"]),
                     "--window-ms")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part", "rec.mp4", "rec.npz"]


@pytest.mark.parametrize(("ext", "fourcc"), [(".mp4", "h264"), (".webm", "VP90"), (".avi", "MJPG")])
def test_video_types_decode_back_with_their_codec(tmp_path, ext, fourcc, capfd):
    """Each video type is decoded back by FFmpeg (through OpenCV): its codec, frame count and
    size (odd sides padded to even for 4:2:0 chroma), and the colours of a frame."""
    ev = make_events([0, 4], [0, 2], [0, 25_000], [True, False])  # 5x3 sensor: odd sides
    out = tmp_path / f"v{ext}"
    n = write_frames(iter_frames(ev, (5, 3), 10_000.0, scale=3), out, fps=10)  # 15x9
    assert n == 3
    assert video_codec(out) == (fourcc, 3, (16, 10))
    cap = cv2.VideoCapture(str(out))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    # first frame: a red (ON) 4x4 block at the top-left, black elsewhere (lossy codecs: near)
    assert bgr[1, 1, 2] > 200 and bgr[1, 1, 0] < 60
    assert bgr[8, 14].max() < 40
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left
    assert capfd.readouterr().err == ""  # no encoder chatter on stderr


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_render_never_replaces_its_input_or_a_non_video(tmp_path):
    path = _sample(tmp_path)
    same = tmp_path / "rec.mp4"
    same.write_bytes(path.read_bytes())  # a recording that happens to be named .mp4
    before = same.read_bytes()
    r = CliRunner().invoke(main, ["render", str(same), "-o", str(same), "--overwrite", "--format", "npz"])
    assert_one_error(r, "is one of the inputs")
    notes = tmp_path / "notes.webm"
    notes.write_text("my notes")
    r = CliRunner().invoke(main, ["render", str(path), "-o", str(notes), "--overwrite"])
    assert_one_error(r, "is not a video", "--overwrite only replaces a video")
    assert same.read_bytes() == before and notes.read_text() == "my notes"
    # PNG folders get the usual permissions, not mkdtemp's 0700
    r = CliRunner().invoke(main, ["render", str(path), "-o", str(tmp_path / "png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "png").stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.webm", "png", "rec.mp4", "rec.npz"]

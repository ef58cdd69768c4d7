"""Video files that play everywhere: H.264 MP4, VP9 WebM (and Motion-JPEG AVI).

* ``.mp4``: H.264 (``libx264``, ``yuv420p``, ``+faststart``), the codec every browser and
  player decodes. The pip wheels of OpenCV carry no H.264 encoder, so the frames are piped to
  the ``ffmpeg`` binary that the ``imageio-ffmpeg`` wheel ships (no system install needed).
* ``.webm``: VP9 (``libvpx-vp9``) through the same ``ffmpeg`` binary, playable in every browser
  (OpenCV can write VP9 too, but prints a tag warning on stderr for each file).
* ``.avi``: Motion-JPEG through OpenCV (fourcc ``MJPG``), for tools that want single frames.

H.264 and 4:2:0 chroma need even sides: an odd width or height is padded with one black column
or row. :func:`video_codec` reads the codec back (OpenCV's FFmpeg decoder), which the tests use
to check what was written.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: extension -> codec written (names as FFmpeg reports them)
VIDEO_CODECS = {".mp4": "h264", ".webm": "vp9", ".avi": "mjpeg"}
_FFMPEG_CODEC = {
    ".mp4": ["-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p",
             "-movflags", "+faststart", "-f", "mp4"],
    ".webm": ["-c:v", "libvpx-vp9", "-crf", "30", "-b:v", "0", "-pix_fmt", "yuv420p", "-f", "webm"],
}
_FOURCC = {".avi": "MJPG"}


def is_video(path: str | os.PathLike) -> bool:
    """``path`` starts like an MP4/MOV (``ftyp`` box), a WebM/Matroska (EBML) or an AVI (RIFF
    ``AVI ``) file: what ``render --overwrite`` may replace."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or (
        head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def _even(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)))
    return rgb


def _write_ffmpeg(frames: Iterator[np.ndarray], tmp: Path, fps: float, suffix: str) -> int:
    import imageio_ffmpeg

    n = 0
    proc = None
    err = tmp.with_name(tmp.name + ".log")
    try:
        with open(err, "wb") as log:
            for rgb in frames:
                rgb = _even(rgb)
                if proc is None:
                    h, w = rgb.shape[:2]
                    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                           "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                           "-r", f"{fps:.6g}", "-i", "-", *_FFMPEG_CODEC[suffix], str(tmp)]
                    # its own session: Ctrl-C is ours to handle (the finally below ends it)
                    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                            stderr=log, start_new_session=True)
                try:
                    proc.stdin.write(np.ascontiguousarray(rgb, np.uint8).tobytes())
                except BrokenPipeError:
                    break
                n += 1
            if proc is not None:
                proc.stdin.close()
                code = proc.wait()
                if code != 0:
                    msg = " ".join(err.read_text(errors="replace").split())[:300]
                    raise OSError(f"ffmpeg could not write the {suffix} video (status {code}): {msg}")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        err.unlink(missing_ok=True)
    return n


def _write_cv2(frames: Iterator[np.ndarray], tmp: Path, fps: float, suffix: str) -> int:
    import cv2

    n = 0
    writer = None
    try:
        for rgb in frames:
            rgb = _even(rgb)
            if writer is None:
                h, w = rgb.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*_FOURCC[suffix]), float(fps), (w, h))
                if not writer.isOpened():
                    raise OSError(f"OpenCV cannot write {suffix} ({_FOURCC[suffix]}) video here")
            writer.write(np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV wants BGR
            n += 1
    finally:
        if writer is not None:
            writer.release()
    return n


def write_video(frames: Iterator[np.ndarray], path: str | os.PathLike, fps: float, suffix: str) -> int:
    """Write RGB uint8 ``frames`` (H, W, 3) to ``path`` as the video type of ``suffix``
    (:data:`VIDEO_CODECS`); returns the number of frames. ``path`` is written in place: callers
    wanting an atomic file pass a temporary path (:func:`eventssm.outputs.atomic_output`).

    Raises:
        OSError: the encoder is missing or failed.
    """
    path = Path(path)
    if suffix in _FFMPEG_CODEC:
        return _write_ffmpeg(frames, path, fps, suffix)
    return _write_cv2(frames, path, fps, suffix)


def video_codec(path: str | os.PathLike) -> tuple[str, int, tuple[int, int]]:
    """``(fourcc, frames, (width, height))`` of a video as OpenCV's FFmpeg decodes it."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        four = int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
        n = 0
        while True:
            ok, _ = cap.read()
            if not ok:
                break
            n += 1
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()
    return four.to_bytes(4, "little").decode("latin-1"), n, size

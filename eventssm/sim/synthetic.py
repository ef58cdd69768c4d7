"""Synthetic labelled event recordings: moving shapes rendered with OpenCV, then simulated.

Eight motion classes whose difference lies in the ORDER of events, not in where they fall, so a
classifier has to model time (a translating disc leaves the same trail left-to-right as
right-to-left; only the sequence tells them apart):

    right, left, up, down       a disc translating across the field of view
    cw, ccw                     a bar rotating about the centre
    grow, shrink                a ring expanding / contracting

Every random choice (position, speed, size, contrast, start angle) comes from an explicit
``np.random.Generator``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from eventssm.events import Recording
from eventssm.sim.camera import CameraParams, simulate_frames

CLASSES: tuple[str, ...] = ("right", "left", "up", "down", "cw", "ccw", "grow", "shrink")

_SHIFT = 4  # OpenCV fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x * _ONE), round(y * _ONE)


def render_clip(
    label: str,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (64, 64),
    n_frames: int = 40,
    duration_us: int = 400_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one clip of class ``label``.

    Args:
        label: one of :data:`CLASSES`.
        rng: source of every random choice.
        size: (W, H) pixels, each >= 1.
        n_frames: T >= 2 frames.
        duration_us: time of the last frame; >= T - 1 so the frame times strictly increase.

    Returns:
        frames (T, H, W) float32 in [0, 1] and times (T,) int64 microseconds starting at 0.

    Raises:
        ValueError: unknown label, or a size, frame count or duration out of range.
    """
    if label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; known: {', '.join(CLASSES)}")
    w, h = size
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive, got {size}")
    if n_frames < 2:
        raise ValueError(f"n_frames must be >= 2, got {n_frames}")
    if duration_us < n_frames - 1:
        # frame times round(k / (T-1) * D) are strictly increasing exactly when D >= T - 1
        raise ValueError(f"duration_us {duration_us} is too short for {n_frames} frames (at least 1 us per step)")
    bg = rng.uniform(0.1, 0.3)
    fg = rng.uniform(0.7, 1.0)
    cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2 + rng.uniform(-0.1, 0.1) * h
    s = np.linspace(0.0, 1.0, n_frames)
    frames = np.empty((n_frames, h, w), np.float32)
    radius = rng.uniform(0.08, 0.14) * min(w, h)
    travel = rng.uniform(0.5, 0.7)
    angle0 = rng.uniform(0, 2 * math.pi)
    turn = rng.uniform(0.6, 1.0) * math.pi
    for i, u in enumerate(s):
        img = np.full((h, w), bg, np.float32)
        if label in ("right", "left", "up", "down"):
            d = (u - 0.5) * travel
            dx, dy = {"right": (d * w, 0), "left": (-d * w, 0), "up": (0, -d * h), "down": (0, d * h)}[label]
            cv2.circle(img, _pt(cx + dx, cy + dy), int(radius * _ONE), float(fg), -1, cv2.LINE_AA, _SHIFT)
        elif label in ("cw", "ccw"):
            a = angle0 + (turn * u if label == "cw" else -turn * u)
            r = 0.35 * min(w, h)
            p0 = _pt(cx - r * math.cos(a), cy - r * math.sin(a))
            p1 = _pt(cx + r * math.cos(a), cy + r * math.sin(a))
            cv2.line(img, p0, p1, float(fg), max(2, int(0.06 * min(w, h))), cv2.LINE_AA, _SHIFT)
        else:
            grow = u if label == "grow" else 1.0 - u
            r = (0.08 + 0.32 * grow) * min(w, h)
            cv2.circle(img, _pt(cx, cy), int(r * _ONE), float(fg), max(2, int(0.05 * min(w, h))),
                       cv2.LINE_AA, _SHIFT)
        frames[i] = img
    times = np.round(s * duration_us).astype(np.int64)
    return frames, times


def make_sample(
    label: str,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (64, 64),
    n_frames: int = 40,
    duration_us: int = 400_000,
    params: CameraParams = CameraParams(contrast=0.15, noise_hz=0.5),
    t0_us: int = 0,
) -> Recording:
    """Render and simulate one labelled recording; ``meta['label']`` holds the class name."""
    frames, times = render_clip(label, rng, size=size, n_frames=n_frames, duration_us=duration_us)
    rec = simulate_frames(frames, times + t0_us, params=params, rng=rng)
    rec.meta.update({"label": label, "camera": "eventssm simulator"})
    return rec


def make_dataset(
    n_per_class: int,
    rng: np.random.Generator,
    *,
    classes: tuple[str, ...] = CLASSES,
    **kwargs,
) -> list[tuple[Recording, int]]:
    """``n_per_class`` recordings per class, in class order: list of (Recording, class id)."""
    out = []
    for cid, name in enumerate(classes):
        for _ in range(n_per_class):
            out.append((make_sample(name, rng, **kwargs), cid))
    return out

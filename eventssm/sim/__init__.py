"""Event-camera simulator and synthetic labelled datasets.

``simulate_frames`` turns an intensity video into events with the standard contrast-threshold
model (an event each time log intensity moves by ``C`` from the pixel's reference level, with
timestamps interpolated linearly between frames); ``synthetic`` renders small moving-shape
clips per class with OpenCV and simulates them, giving built-in data for the demo and tests.
"""

from eventssm.sim.camera import CameraParams, simulate_frames
from eventssm.sim.synthetic import CLASSES, make_dataset, make_sample, render_clip

__all__ = ["CLASSES", "CameraParams", "make_dataset", "make_sample", "render_clip", "simulate_frames"]

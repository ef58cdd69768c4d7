"""Contrast-threshold event camera model (frames -> events).

For every pixel the model keeps a reference log intensity ``L_ref``. Between two frames at
``t_{k-1}`` and ``t_k`` the log intensity is taken to move linearly from ``L_{k-1}`` to ``L_k``;
each crossing of ``L_ref ± j·C`` emits one event of polarity ``sign(L_k − L_{k−1})`` at the
interpolated crossing time, and ``L_ref`` moves to the last crossed level. This is the idealised
DVS pixel of Lichtsteiner et al. (IEEE JSSC 2008) as used by event simulators (e.g. ESIM,
Rebecq et al., CoRL 2018). Optional refractory period and background-activity noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numba
import numpy as np

from eventssm.events import EVENT_DTYPE, Recording, concat_events

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraParams:
    """Pixel model settings.

    Attributes:
        contrast: threshold ``C`` on log intensity for ON and OFF events.
        refractory_us: minimum time between two events of one pixel (0 disables).
        noise_hz: background-activity rate per pixel (Poisson), random polarity.
        eps: offset inside ``log(I + eps)`` so black pixels stay finite.
    """

    contrast: float = 0.2
    refractory_us: int = 0
    noise_hz: float = 0.0
    eps: float = 1e-2


@numba.njit(cache=True)
def _crossings(log_prev, log_next, ref, t0, t1, contrast, refractory, last_t, out_x, out_y, out_t, out_p):
    """Emit the threshold crossings of one frame interval for every pixel.

    Args:
        log_prev, log_next: (H, W) float64 log intensities at ``t0`` and ``t1``.
        ref: (H, W) float64 reference levels, updated in place.
        last_t: (H, W) int64 time of each pixel's last event, updated in place.
        out_*: preallocated output columns; returns the number of events written, or -1
            when they are too small (the caller grows them and retries).
    """
    h, w = log_prev.shape
    n = 0
    cap = out_t.shape[0]
    span = t1 - t0
    for yy in range(h):
        for xx in range(w):
            a = log_prev[yy, xx]
            b = log_next[yy, xx]
            d = b - a
            if d == 0.0:
                continue
            r = ref[yy, xx]
            sign = 1.0 if d > 0 else -1.0
            level = r + sign * contrast
            while (sign > 0 and level <= b) or (sign < 0 and level >= b):
                frac = (level - a) / d
                if frac < 0.0:
                    frac = 0.0
                t = t0 + np.int64(frac * span)
                if refractory <= 0 or t - last_t[yy, xx] >= refractory:
                    if n >= cap:
                        return -1
                    out_x[n] = xx
                    out_y[n] = yy
                    out_t[n] = t
                    out_p[n] = sign > 0
                    n += 1
                    last_t[yy, xx] = t
                r = level
                level = r + sign * contrast
            ref[yy, xx] = r
    return n


def simulate_frames(
    frames: np.ndarray,
    times_us: np.ndarray,
    *,
    params: CameraParams = CameraParams(),
    rng: np.random.Generator | None = None,
) -> Recording:
    """Simulate the events a DVS would produce watching ``frames``.

    Args:
        frames: (T, H, W) intensities in [0, 1] (float) or uint8.
        times_us: (T,) increasing frame times in microseconds.
        params: pixel model.
        rng: generator for the noise events (required when ``params.noise_hz > 0``).

    Returns:
        Recording with events sorted by time, sensor size (W, H, 2).
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or len(frames) < 2:
        raise ValueError("frames must be (T, H, W) with T >= 2")
    times_us = np.asarray(times_us, dtype=np.int64)
    if times_us.shape != (len(frames),) or np.any(np.diff(times_us) <= 0):
        raise ValueError("times_us must be (T,) strictly increasing")
    scale = 255.0 if frames.dtype == np.uint8 else 1.0
    logs = np.log(frames.astype(np.float64) / scale + params.eps)
    _, h, w = frames.shape
    ref = logs[0].copy()
    last_t = np.full((h, w), np.iinfo(np.int64).min // 2, dtype=np.int64)
    cap = max(1024, 4 * h * w)
    chunks = []
    for k in range(1, len(frames)):
        while True:
            cols = (np.empty(cap, np.int16), np.empty(cap, np.int16), np.empty(cap, np.int64),
                    np.empty(cap, np.bool_))
            ref_try, last_try = ref.copy(), last_t.copy()
            n = _crossings(logs[k - 1], logs[k], ref_try, times_us[k - 1], times_us[k],
                           params.contrast, params.refractory_us, last_try, *cols)
            if n >= 0:
                break
            cap *= 2
        ref, last_t = ref_try, last_try
        ev = np.empty(n, EVENT_DTYPE)
        ev["x"], ev["y"], ev["t"], ev["p"] = (c[:n] for c in cols)
        chunks.append(ev[np.argsort(ev["t"], kind="stable")])
    events = concat_events(chunks)
    if params.noise_hz > 0:
        if rng is None:
            raise ValueError("noise_hz > 0 needs an explicit rng")
        duration_s = (times_us[-1] - times_us[0]) * 1e-6
        n_noise = rng.poisson(params.noise_hz * duration_s * h * w)
        noise = np.empty(n_noise, EVENT_DTYPE)
        noise["x"] = rng.integers(0, w, n_noise)
        noise["y"] = rng.integers(0, h, n_noise)
        noise["t"] = rng.integers(times_us[0], times_us[-1] + 1, n_noise)
        noise["p"] = rng.integers(0, 2, n_noise).astype(bool)
        events = concat_events([events, noise])
        events = events[np.argsort(events["t"], kind="stable")]
    log.debug("simulated %d events from %d frames", len(events), len(frames))
    return Recording(events, (w, h, 2), {"format": "simulated", "camera": "simulator"})

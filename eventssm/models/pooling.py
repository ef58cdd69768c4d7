"""Event pooling: subsample an event-rate feature sequence by windows of ``stride`` events.

EventSSM (Schöne et al. 2024, arXiv 2404.18508, §3 "event pooling"; official code
``event_ssm/layers.py`` ``EventPooling``) subsamples the sequence between stages: windows of
``stride`` consecutive events become one element whose integration time step is the SUM of the
window's time steps, so the downstream SSM still integrates real elapsed time.  EventSSM samples
the SSM state at the FIRST event of each window (``xs[::stride]``), which discards the rest of
the window; here (DESIGN.md §4) the pooled element sits at the LAST event of the window, so it
has seen every event of the window and the summed ``dt`` ends exactly at that event.

For window ``w`` holding valid events ``k ∈ W_w`` (mask true) the pooled element is

    dt'_w  = Σ_{k∈W_w} dt_k
    u'_w   = u_{max W_w}                                   mode "last"
    u'_w   = (1/|W_w|) Σ_{k∈W_w} u_k                        mode "mean"
    u'_w   = Σ_k (dt_k + ε) u_k / Σ_k (dt_k + ε)            mode "time_weighted"
    mask'_w = |W_w| > 0

(ε = 1e-6 as in EventSSM's ``timepool``; it keeps a window whose events all have dt = 0
well defined.)  A trailing partial window of valid events therefore emits at its last valid
event, and windows without valid events are masked out (their u', dt' are zero).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "POOL_MODES",
    "TIME_WEIGHT_EPS",
    "event_pool",
    "lengths_to_mask",
    "pool_window_last",
    "pooled_length",
]

POOL_MODES = ("last", "mean", "time_weighted")
#: ε added to dt for the time-weighted means (EventSSM ``EventPooling.eps`` / ``masked_timepool``).
TIME_WEIGHT_EPS = 1e-6


def pooled_length(length: int, stride: int) -> int:
    """Number of pooled elements for ``length`` events: ceil(length / stride)."""
    return -(-int(length) // int(stride))


def lengths_to_mask(lengths: jax.Array, max_len: int) -> jax.Array:
    """Prefix mask from lengths.

    Args:
        lengths: (B,) int, number of valid events per row.
        max_len: L, padded sequence length.
    Returns:
        (B, L) bool, ``mask[b, k] = k < lengths[b]``.
    """
    return jnp.arange(max_len)[None, :] < jnp.asarray(lengths)[:, None]


def _windows(x: jax.Array, stride: int, fill) -> jax.Array:
    """Pad axis 1 of ``x`` to a multiple of ``stride`` with ``fill`` and split it into windows.

    (B, L, ...) -> (B, ceil(L/stride), stride, ...).
    """
    b, length = x.shape[:2]
    n_win = pooled_length(length, stride)
    pad = n_win * stride - length
    if pad:
        widths = [(0, 0)] * x.ndim
        widths[1] = (0, pad)
        x = jnp.pad(x, widths, constant_values=fill)
    return x.reshape(b, n_win, stride, *x.shape[2:])


def _check(stride: int, mode: str) -> None:
    if int(stride) < 1:
        raise ValueError(f"pooling stride must be >= 1, got {stride}")
    if mode not in POOL_MODES:
        raise ValueError(f"pooling mode must be one of {POOL_MODES}, got {mode!r}")


def pool_window_last(u: jax.Array, mask: jax.Array, stride: int) -> jax.Array:
    """Value at the last valid event of each window.

    Args:
        u: (B, L, H) float.
        mask: (B, L) bool, valid events.
        stride: window length in events.
    Returns:
        (B, ceil(L/stride), H); zero for windows without valid events.
    """
    _check(stride, "last")
    uw = _windows(u, stride, 0)
    mw = _windows(mask, stride, False)
    pos = jnp.arange(stride, dtype=jnp.int32)
    last = jnp.max(jnp.where(mw, pos, -1), axis=-1)  # (B, W), -1 when the window is empty
    picked = jnp.take_along_axis(uw, jnp.maximum(last, 0)[:, :, None, None], axis=2)[:, :, 0]
    return jnp.where((last >= 0)[..., None], picked, jnp.zeros_like(picked))


def event_pool(
    u: jax.Array,
    dt: jax.Array,
    mask: jax.Array | None = None,
    *,
    stride: int,
    mode: str = "last",
    eps: float = TIME_WEIGHT_EPS,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Pool windows of ``stride`` consecutive events (see the module docstring for the math).

    Args:
        u: (B, L, H) float32 features at event rate.
        dt: (B, L) float32 integration time step of each event (time since the previous event).
        mask: (B, L) bool valid events, or None (all valid).  Padded positions may be anywhere.
        stride: window length in events (>= 1); L is padded internally to a multiple of it.
        mode: "last", "mean" or "time_weighted" (weights ∝ dt + eps within the window).
        eps: ε of the time weights.
    Returns:
        u' (B, ceil(L/stride), H) float32, dt' (B, ceil(L/stride)) float32 (sum of the valid
        dt of the window), mask' (B, ceil(L/stride)) bool (window holds a valid event).
    """
    _check(stride, mode)
    if mask is None:
        mask = jnp.ones(dt.shape, dtype=bool)
    mask = mask.astype(bool)
    dt = dt.astype(jnp.float32)
    dtw = _windows(jnp.where(mask, dt, 0.0), stride, 0.0)  # (B, W, S)
    mw = _windows(mask, stride, False)  # (B, W, S)
    dt_out = jnp.sum(dtw, axis=-1)
    count = jnp.sum(mw, axis=-1)
    mask_out = count > 0
    if mode == "last":
        u_out = pool_window_last(u, mask, stride)
    else:
        uw = _windows(u, stride, 0)  # (B, W, S, H)
        if mode == "mean":
            w = mw.astype(u.dtype)
        else:
            w = jnp.where(mw, dtw + eps, 0.0).astype(u.dtype)
        num = jnp.einsum("bws,bwsh->bwh", w, jnp.where(mw[..., None], uw, 0))
        den = jnp.sum(w, axis=-1)
        safe = jnp.where(den > 0, den, 1.0)
        u_out = jnp.where(mask_out[..., None], num / safe[..., None], 0.0)
    return u_out, dt_out, mask_out

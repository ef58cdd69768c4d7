"""Diagonal linear recurrences ``h_k = a_k ⊙ h_{k−1} + b_k`` along a leading time axis.

This is the pure core shared by the S5 and S7 layers (they only build the per-step
coefficients ``a_k = Λ̄_k`` and inputs ``b_k = B̄_k u_k``). One signature, several
evaluation strategies selected by :class:`ScanMethod` (the layout follows the "one function,
linear or associative scan by enum" idea of recurrentgemma's ``scan.py``; the code is ours):

``sequential``
    ``jax.lax.scan`` over time — the readable reference. O(L) work, O(L) depth.
``associative``
    ``jax.lax.associative_scan`` with the operator
    ``(a_i, b_i) • (a_j, b_j) = (a_j a_i, a_j b_i + b_j)`` (Blelloch 1990; used by S5,
    Smith et al. 2023, arXiv 2208.04933). O(L) work, O(log L) depth: the fast path on GPU/TPU.
``chunked``
    The sequence is cut into ``N = ceil(L / T)`` chunks of ``T = chunk_size`` steps (the tail
    is padded with the identity element ``a = 1, b = 0``, which leaves valid outputs unchanged).
    (1) Inside every chunk, all chunks at once, a sequential scan from a zero state computes the
    local prefix ``h̃_{n,t}`` and the running product ``A_{n,t} = a_{n,1} ⋯ a_{n,t}``;
    (2) a sequential scan over the N chunk summaries ``(A_{n,T}, h̃_{n,T})`` gives the state
    ``s_n`` entering every chunk; (3) ``h_{n,t} = A_{n,t} ⊙ s_{n−1} + h̃_{n,t}``.
    Both inner scans are short (T and N steps) and vectorised over the other axis, so on CPU
    it beats the associative scan (see docs/model.md for the measured table and why the
    "sequential inside, sequential across" variant was kept).

The three implementations are ``jax.jit``-compiled (so eager calls are fast too; inside an
outer ``jit`` they are simply inlined). All methods return the same values up to float
rounding and are differentiable (tests compare outputs and gradients with each other and with
:func:`linear_recurrence_numpy`).
"""

from __future__ import annotations

import enum
import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ScanMethod",
    "linear_recurrence",
    "linear_recurrence_numpy",
    "resolve_method",
    "window_states",
    "window_states_exp",
]


class ScanMethod(enum.StrEnum):
    """How :func:`linear_recurrence` evaluates the recurrence (values are the accepted strings)."""

    SEQUENTIAL = "sequential"
    ASSOCIATIVE = "associative"
    CHUNKED = "chunked"
    #: "sequential" on the CPU backend (fastest there, §4 of docs/model.md), "associative" on
    #: GPU/TPU; resolved when the function is traced.
    AUTO = "auto"


def resolve_method(method: ScanMethod | str) -> ScanMethod:
    """The concrete method for ``method`` ("auto" → by ``jax.default_backend()``)."""
    method = ScanMethod(method)
    if method is ScanMethod.AUTO:
        cpu = jax.default_backend() == "cpu"
        return ScanMethod.SEQUENTIAL if cpu else ScanMethod.ASSOCIATIVE
    return method


def _combine(left, right):
    """Associative operator of the diagonal linear recurrence.

    ``left = (a_i, b_i)`` is the earlier segment, ``right = (a_j, b_j)`` the later one; the
    composition "apply left, then right" is ``h ↦ a_j (a_i h + b_i) + b_j``.
    """
    a_i, b_i = left
    a_j, b_j = right
    return a_j * a_i, a_j * b_i + b_j


@jax.jit
def _sequential(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
    def step(h, ab):
        a_k, b_k = ab
        h = a_k * h + b_k
        return h, h

    _, h = jax.lax.scan(step, h0, (a, b))
    return h


@jax.jit
def _associative(a: jax.Array, b: jax.Array, h0: jax.Array) -> jax.Array:
    # Fold the initial state into the first input: h_0 = a_0 h0 + b_0.
    b = b.at[0].add(a[0] * h0)
    _, h = jax.lax.associative_scan(_combine, (a, b), axis=0)
    return h


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _chunked(a: jax.Array, b: jax.Array, h0: jax.Array, chunk_size: int) -> jax.Array:
    length = b.shape[0]
    t = max(1, min(int(chunk_size), length))
    n = -(-length // t)
    pad = n * t - length
    if pad:
        widths = [(0, pad)] + [(0, 0)] * (b.ndim - 1)
        a = jnp.pad(a, widths, constant_values=1)  # identity element: a = 1, b = 0
        b = jnp.pad(b, widths)
    feat = b.shape[1:]
    # (N*T, ...) -> (T, N, ...): the inner scan runs over T, vectorised over the N chunks.
    a_c = jnp.swapaxes(a.reshape((n, t, *feat)), 0, 1)
    b_c = jnp.swapaxes(b.reshape((n, t, *feat)), 0, 1)

    def inner(carry, ab):
        prod, h = carry
        a_k, b_k = ab
        prod = a_k * prod
        h = a_k * h + b_k
        return (prod, h), (prod, h)

    ones = jnp.ones((n, *feat), dtype=a.dtype)
    zeros = jnp.zeros((n, *feat), dtype=b.dtype)
    (a_sum, h_sum), (a_pre, h_loc) = jax.lax.scan(inner, (ones, zeros), (a_c, b_c))

    # State entering chunk n: s_{-1} = h0, s_n = A_n s_{n-1} + h̃_n (N steps).
    def across(s, ab):
        a_n, h_n = ab
        return a_n * s + h_n, s

    _, s_in = jax.lax.scan(across, h0, (a_sum, h_sum))  # s_in[n] = state before chunk n
    h = a_pre * s_in[None] + h_loc  # (T, N, ...)
    h = jnp.swapaxes(h, 0, 1).reshape((n * t, *feat))
    return h[:length]


def linear_recurrence(
    a: jax.Array,
    b: jax.Array,
    h0: jax.Array | None = None,
    *,
    method: ScanMethod | str = ScanMethod.ASSOCIATIVE,
    chunk_size: int = 64,
) -> tuple[jax.Array, jax.Array]:
    """Evaluate ``h_k = a_k ⊙ h_{k−1} + b_k`` for ``k = 0 … L−1`` with ``h_{−1} = h0``.

    Args:
        a: decay coefficients (Λ̄_k in the SSM layers), shape ``(L, ...)`` or anything that
            broadcasts to ``b.shape``; real or complex.
        b: inputs (B̄_k u_k), shape ``(L, ...)``; real or complex. Time is the leading axis.
        h0: initial state, shape ``b.shape[1:]``; zeros when ``None``.
        method: ``"sequential"`` (``lax.scan`` reference), ``"associative"``
            (``lax.associative_scan``) or ``"chunked"`` (sequential inside chunks of
            ``chunk_size`` steps, sequential across chunk summaries) or ``"auto"``
            (:func:`resolve_method`); a :class:`ScanMethod`
            or its string value.
        chunk_size: chunk length T for ``"chunked"`` (any L is accepted; the last chunk is
            padded with the identity element).

    Returns:
        ``(h, h_last)``: all states, shape ``b.shape`` (``(L, ...)``), and the final state
        ``h_{L−1}``, shape ``b.shape[1:]`` (``h0`` itself when ``L == 0``). The dtype is the
        promotion of the dtypes of ``a``, ``b`` and ``h0``.

    Raises:
        ValueError: unknown method, ``b`` without a time axis, non-broadcastable ``a``, wrong
            ``h0`` shape or non-positive ``chunk_size``.
    """
    method = resolve_method(method)
    b = jnp.asarray(b)
    a = jnp.asarray(a)
    if b.ndim < 1:
        raise ValueError(f"b needs a leading time axis, got shape {b.shape}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = jnp.result_type(a, b) if h0 is None else jnp.result_type(a, b, h0)
    try:
        a = jnp.broadcast_to(a, b.shape)
    except ValueError as exc:
        raise ValueError(f"a with shape {a.shape} does not broadcast to b {b.shape}") from exc
    a = a.astype(dtype)
    b = b.astype(dtype)
    if h0 is None:
        h0 = jnp.zeros(b.shape[1:], dtype)
    else:
        h0 = jnp.asarray(h0)
        if h0.shape != b.shape[1:]:
            raise ValueError(f"h0 must have shape {b.shape[1:]}, got {h0.shape}")
        h0 = h0.astype(dtype)
    if b.shape[0] == 0:
        return b, h0
    if method is ScanMethod.SEQUENTIAL:
        h = _sequential(a, b, h0)
    elif method is ScanMethod.ASSOCIATIVE:
        h = _associative(a, b, h0)
    else:
        h = _chunked(a, b, h0, chunk_size)
    return h, h[-1]


def linear_recurrence_numpy(
    a: np.ndarray, b: np.ndarray, h0: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy loop reference for :func:`linear_recurrence` (float64 / complex128).

    Args:
        a: shape broadcastable to ``b.shape``; b: shape ``(L, ...)``; h0: ``b.shape[1:]`` or None.

    Returns:
        ``(h, h_last)`` with ``h[k] = a[k] * h[k-1] + b[k]``, ``h[-1] = h0``.
    """
    b = np.asarray(b)
    a = np.broadcast_to(np.asarray(a), b.shape)
    dtype = np.result_type(a, b, np.float64) if h0 is None else np.result_type(a, b, h0, np.float64)
    h = np.zeros(b.shape, dtype)
    prev = np.zeros(b.shape[1:], dtype) if h0 is None else np.asarray(h0, dtype)
    for k in range(b.shape[0]):
        prev = a[k] * prev + b[k]
        h[k] = prev
    return h, prev


# ----------------------------------------------------------------------------- windows


#: strides up to this are reduced with an unrolled loop (one fused kernel), larger ones by lax.scan.
_UNROLL_MAX = 32


def window_states(
    a: jax.Array, b: jax.Array, stride: int, x0: jax.Array | None = None, *,
    method: str = "associative",
) -> tuple[jax.Array, jax.Array]:
    """States of ``x_k = a_k ⊙ x_{k−1} + b_k`` at the end of every window of ``stride`` events.

    Two levels, without ever forming the (B, L, P) state sequence: inside each window w (all
    windows at once) ``A_w = Π_k a_k`` and ``h̃_w = Σ_k (Π_{j>k} a_j) b_k`` from a zero state, then
    the window-rate recurrence ``x_w = A_w ⊙ x_{w−1} + h̃_w`` (``linear_recurrence``).  The tail
    is padded with the identity element (a = 1, b = 0); padded events inside the sequence must
    carry a = 1, b = 0 too (dt = 0, u = 0), so the state at a window's end equals the state at
    its last valid event.

    Args:
        a: (B, L, P) complex Λ̄_k.  b: (B, L, P) complex B̄_k u_k.
        stride: window length.  x0: (B, P) state before the first event, or None (zeros).
        method: scan method of the window-rate recurrence.
    Returns:
        (B, ceil(L/stride), P) states at the window ends and the final state (B, P).
    """
    b_sz, length, p = b.shape
    n_win, pad = _windows(length, stride)
    if pad:
        a = jnp.pad(a, ((0, 0), (0, pad), (0, 0)), constant_values=1)
        b = jnp.pad(b, ((0, 0), (0, pad), (0, 0)))
    a = a.reshape(b_sz, n_win, stride, p)
    b = b.reshape(b_sz, n_win, stride, p)
    if stride <= _UNROLL_MAX:
        # jnp.split (not indexing): its gradient is one concatenate instead of `stride` pads.
        a_k = [x[:, :, 0] for x in jnp.split(a, stride, axis=2)]
        b_k = [x[:, :, 0] for x in jnp.split(b, stride, axis=2)]
        big_a, h = a_k[0], b_k[0]
        for k in range(1, stride):
            h = a_k[k] * h + b_k[k]
            big_a = a_k[k] * big_a
    else:

        def inner(carry, ab):
            prod, h = carry
            return (ab[0] * prod, ab[0] * h + ab[1]), None

        init = (jnp.ones_like(a[:, :, 0]), jnp.zeros_like(b[:, :, 0]))
        (big_a, h), _ = jax.lax.scan(inner, init, (jnp.moveaxis(a, 2, 0), jnp.moveaxis(b, 2, 0)))
    return _across_windows(big_a, h, x0, b.dtype, method)


def window_states_exp(
    rate: jax.Array, dt: jax.Array, b: jax.Array, stride: int, x0: jax.Array | None = None, *,
    method: str = "associative",
) -> tuple[jax.Array, jax.Array]:
    """:func:`window_states` for ``a_k = exp(r_k·dt_k)``, without the in-window product chain.

    With ``τ_k = Σ_{j>k} r_j dt_j`` (sum over the later events of the same window), the window
    terms are ``A_w = exp(Σ_k r_k dt_k)`` and ``h̃_w = Σ_k exp(τ_k) ⊙ b_k``: one exponential per
    event and state as before, but a weighted sum instead of ``stride`` dependent steps, whose
    backward pass is about twice as cheap.  For a rate shared by all events (S5, ``rate``
    ``(P,)``) ``τ_k = r·Σ_{j>k} dt_j`` needs only a scalar cumulative sum per event.

    Args:
        rate: (P,) or (B, L, P) complex ``r_k`` (Re ≤ 0).  dt: (B, L) float32 (0 at padded
            events).  b: (B, L, P) complex ``B̄_k u_k`` (0 at padded events).
        stride, x0, method: as :func:`window_states`.
    Returns:
        as :func:`window_states`: window-end states (B, ceil(L/stride), P), final state (B, P).
    """
    b_sz, length, p = b.shape
    n_win, pad = _windows(length, stride)
    dt = jnp.asarray(dt, jnp.float32)
    if pad:
        dt = jnp.pad(dt, ((0, 0), (0, pad)))
        b = jnp.pad(b, ((0, 0), (0, pad), (0, 0)))
        if rate.ndim == 3:
            rate = jnp.pad(rate, ((0, 0), (0, pad), (0, 0)))
    dt = dt.reshape(b_sz, n_win, stride)
    b = b.reshape(b_sz, n_win, stride, p)
    if rate.ndim == 1:
        later = jax.lax.cumsum(dt, axis=2, reverse=True) - dt  # Σ_{j>k} dt_j, (B, W, S)
        weights = jnp.exp(rate * later[..., None])
        big_a = jnp.exp(rate * jnp.sum(dt, axis=2)[..., None])
    else:
        z = rate.reshape(b_sz, n_win, stride, p) * dt[..., None]
        weights = jnp.exp(jax.lax.cumsum(z, axis=2, reverse=True) - z)
        big_a = jnp.exp(jnp.sum(z, axis=2))
    h = jnp.sum(weights * b, axis=2)
    return _across_windows(big_a.astype(b.dtype), h, x0, b.dtype, method)


def _windows(length: int, stride: int) -> tuple[int, int]:
    """Number of windows of ``stride`` events covering ``length``, and the tail padding."""
    n_win = -(-length // stride)
    return n_win, n_win * stride - length


def _across_windows(big_a, h, x0, dtype, method: str) -> tuple[jax.Array, jax.Array]:
    """The window-rate recurrence ``x_w = A_w ⊙ x_{w−1} + h̃_w`` over (B, W, P) terms from ``x0``
    (B, P) or zeros of ``dtype``: the window-end states (B, W, P) and the last state (B, P)."""
    if x0 is None:
        x0 = jnp.zeros((h.shape[0], h.shape[2]), dtype)
    xs, x_last = linear_recurrence(
        jnp.swapaxes(big_a, 0, 1), jnp.swapaxes(h, 0, 1), x0, method=method
    )
    return jnp.swapaxes(xs, 0, 1), x_last

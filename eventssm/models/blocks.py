"""One residual SSM layer of the event classifier (``SSMBlock``).

The block follows the layer of EventSSM (Schöne et al. 2024, arXiv 2404.18508; official code
``event_ssm/layers.py`` ``SequenceLayer`` with ``prenorm: true``, the DVS configs' setting), which
is also the layer of S7 (Soydan et al. 2024, arXiv 2410.03464, Figure 1; official code
``event_ssm/layers.py`` of the S7 repository, same structure).  For input ``u`` (B, L, H_in):

    h = LayerNorm(u)                                  prenorm, no batch statistics (streams)
    h = W_in h                  only when H_in ≠ H    (see "width change" below)
    y = SSM(h, dt)                                    S5 or S7 layer, y (B, L, H)
    g = W_g Dropout(GELU(y)) + b_g                    gated output of S5/EventSSM/S7:
    y = Dropout(y ⊙ σ(g))                             ``x * sigmoid(Dense(gelu(x)))``
    out = skip(u) + y,  skip(u) = u  or  W_s u + b_s when H_in ≠ H

Dropout masks are shared over time (EventSSM: ``broadcast_dims=[0]`` on the per-sequence (L, H)
array, i.e. axis 1 of (B, L, H) here).

Pooling block (``stride > 1``, the first layer of every stage in EventSSM): the SSM runs at the
incoming event rate; its output is kept at the LAST event of each window of ``stride`` events
(the state has integrated the whole window; EventSSM keeps the window's first event instead,
DESIGN.md §4) while the residual path is pooled with ``pool_mode`` (EventSSM's
``pooling_mode``: "last", "mean" (their "avgpool") or "time_weighted" (their "timepool")), and
``dt`` is summed over the window.

Width change ("expansion"): EventSSM's ``state_expansion_factor`` multiplies the SSM state size
P by the factor at every stage and the feature width H at the first layer of every stage after
the first (their SSM there maps H_in → H_out with B ∈ C^{P×H_in}, C ∈ C^{H_out×P} and a full
D ∈ R^{H_out×H_in}; the skip path gets a Dense layer).  Our SSM layers keep H_in = H_out, so a
bias-free ``W_in`` ∈ R^{H×H_in} precedes the SSM: B·W_in and diag(D)·W_in span exactly the same
maps as EventSSM's B and D, so the function class is the same (with H·H_in extra weights).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from eventssm.models.pooling import POOL_MODES, event_pool, pool_window_last
from eventssm.models.scan import window_states, window_states_exp
from eventssm.models.ssm import (  # LAYER_KINDS, make_ssm: also importable from here
    LAYER_KINDS,
    DiagonalSSM,
    RateTerms,
    RecurrenceTerms,
    SSMConfig,
    make_ssm,
)

__all__ = [
    "LAYER_KINDS", "SSMBlock", "make_ssm", "scan_time_chunks", "ssm_pooled", "table_terms",
    "window_states", "window_states_exp",
]


def ssm_pooled(
    ssm: nnx.Module,
    h: jax.Array | None,
    dt: jax.Array,
    mask: jax.Array,
    stride: int,
    x0: jax.Array | None = None,
    *,
    terms: RecurrenceTerms | RateTerms | None = None,
    h_last: jax.Array | None = None,
    exp_form: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """SSM output kept at the last valid event of every window of ``stride`` events.

    Equals ``pool_window_last(ssm(h, dt, x0)[0], mask, stride)``.  For a
    :class:`~eventssm.models.ssm.DiagonalSSM` (S5, S7), only the window-end states are formed
    (:func:`window_states`) and the read-out ``y = Re(C̃ x) + D ⊙ u`` is applied at the window
    ends only.

    Args:
        ssm: S5SSM / S7SSM (any module with ``ssm(h, dt, x0) -> (y, x_last)`` takes the plain
            path: the whole output, then pooling).
        h: (B, L, H) SSM input (zero at padded events); may be None when ``terms`` and
            ``h_last`` are given.
        dt: (B, L) time steps (zero at padded events).
        mask: (B, L) bool valid events.
        stride: window length.
        x0: (B, P) initial state or None.
        terms: precomputed :class:`~eventssm.models.ssm.RecurrenceTerms` ``(Λ̄_k, B̄_k u_k)``
            (B, L, P), or :class:`~eventssm.models.ssm.RateTerms` ``(rate, dt, B̄_k u_k)`` with
            ``Λ̄_k = exp(rate_k·dt_k)`` (:func:`window_states_exp`; e.g. from a token table).
            When None, SSMs with ``token_terms`` give RateTerms, the others RecurrenceTerms.
        h_last: precomputed ``pool_window_last(h, mask, stride)`` (B, W, H), optional.
        exp_form: with RateTerms, use :func:`window_states_exp` (cheaper backward pass) rather
            than ``Λ̄_k = exp(rate_k dt_k)`` and the product chain of :func:`window_states`
            (cheaper forward pass: 1.3× for the whole eventssm-dvs-small S5 forward).  The two
            are the same function; the blocks pick the chain in eval mode.
    Returns:
        y (B, ceil(L/stride), H) and the state after the last event (B, P).
    """
    if not isinstance(ssm, DiagonalSSM):
        y, x_last = ssm(h, dt, x0)
        return pool_window_last(y, mask, stride), x_last
    if terms is None and ssm.has_token_terms:
        rate, b = ssm.token_terms(h)
        terms = RateTerms(rate, dt, b)
    elif terms is None:
        terms = ssm.recurrence_terms(h, dt)
    if isinstance(terms, RateTerms) and exp_form:
        xs, x_last = window_states_exp(
            terms.rate, terms.dt, terms.Bu_bar, stride, x0, method=ssm.scan_method
        )
    else:
        a, b = terms.decayed() if isinstance(terms, RateTerms) else terms
        xs, x_last = window_states(a, b, stride, x0, method=ssm.scan_method)
    if h_last is None:
        h_last = pool_window_last(h, mask, stride)
    return ssm.output(xs, h_last), x_last


def table_terms(
    table: tuple[jax.Array, jax.Array, jax.Array],
    tokens: jax.Array,
    dt: jax.Array,
    mask: jax.Array,
    stride: int,
) -> tuple[jax.Array, RateTerms]:
    """Recurrence terms of a first block from its token table (``EventClassifier.token_table``).

    Per event: the rate of ``Λ̄_k = exp(rate[token_k]·dt_k)`` and ``B̄_k u_k = b_tab[token_k]``
    (0 at padded events, whose dt is 0, so ``Λ̄_k = 1``); the SSM input is gathered only at the
    last valid event of every window, the one place :func:`ssm_pooled` reads it.

    Args:
        table: ``(pre_tab (V, H), rate (P,) or (V, P), b_tab (V, P))``.
        tokens: (B, L) int32.  dt: (B, L) float32 (0 at padded events).  mask: (B, L) bool.
        stride: pooling window.
    Returns:
        ``h_last`` (B, ceil(L/stride), H) and the ``terms`` of :func:`ssm_pooled`:
        RateTerms ``(rate (P,) or (B, L, P), dt (B, L), B̄u (B, L, P))``.
    """
    pre_tab, rate, b_tab = table
    b = jnp.where(mask[..., None], b_tab[tokens], 0.0)
    tok_last = pool_window_last(tokens[..., None], mask, stride)[..., 0]
    has_valid = pool_window_last(mask[..., None], mask, stride)
    h_last = jnp.where(has_valid, pre_tab[tok_last], 0.0)
    return h_last, RateTerms(rate[tokens] if rate.ndim == 2 else rate, dt, b)


class SSMBlock(nnx.Module):
    """Prenorm residual block: LayerNorm → [W_in] → S5/S7 SSM → [event pooling] → gate → residual.

    Args:
        d_in: H_in, width of the block input.
        ssm: the SSM layer (:class:`~eventssm.models.ssm.SSMConfig`); its ``d_model`` H is the
            width of the SSM and of the block output.
        stride: pooling window in events; 1 = no pooling.
        pool_mode: residual-path pooling, one of ``POOL_MODES``.
        dropout: dropout rate (broadcast over time).
        dtype: computation dtype of the LayerNorm and the projections (None: float32); the
            SSM always computes in float32 / complex64.
        rngs: parameter and dropout RNG streams.
    """

    def __init__(
        self,
        d_in: int,
        ssm: SSMConfig,
        *,
        stride: int = 1,
        pool_mode: str = "last",
        dropout: float = 0.0,
        dtype=None,
        rngs: nnx.Rngs,
    ):
        d_model = ssm.d_model
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {POOL_MODES}, got {pool_mode!r}")
        self.d_in = int(d_in)
        self.d_model = int(d_model)
        self.stride = int(stride)
        self.pool_mode = pool_mode
        self.norm = nnx.LayerNorm(d_in, dtype=dtype, rngs=rngs)
        self.in_proj = (
            nnx.Linear(d_in, d_model, use_bias=False, dtype=dtype, rngs=rngs) if d_in != d_model else None
        )
        self.ssm = make_ssm(ssm, rngs=rngs)
        self.gate = nnx.Linear(d_model, d_model, dtype=dtype, rngs=rngs)
        self.skip_proj = nnx.Linear(d_in, d_model, dtype=dtype, rngs=rngs) if d_in != d_model else None
        self.dropout = nnx.Dropout(dropout, broadcast_dims=(1,), rngs=rngs)

    @property
    def training(self) -> bool:
        """True in train mode (``model.train()``: dropout active), False after ``model.eval()``."""
        return not bool(self.dropout.deterministic)

    def pre(self, u: jax.Array) -> jax.Array:
        """SSM input: LayerNorm then (if H_in ≠ H) ``W_in``.  (..., H_in) -> (..., H)."""
        h = self.norm(u)
        if self.in_proj is not None:
            h = self.in_proj(h)
        return h

    def post(self, y: jax.Array, skip: jax.Array, *, deterministic: bool | None = None):
        """Gated output plus residual: ``skip(u) + Dropout(y ⊙ σ(W_g Dropout(GELU(y)) + b_g))``.

        Args:
            y: (B, L, H) or (B, H) SSM output (already pooled in a pooling block).
            skip: (B, L, H_in) or (B, H_in) residual input (pooled likewise).
            deterministic: True disables dropout; None uses the module's train/eval mode.
        Returns:
            same leading shape as ``y``, width H.
        """
        g = self.dropout(jax.nn.gelu(y), deterministic=deterministic)
        y = y * jax.nn.sigmoid(self.gate(g))
        y = self.dropout(y, deterministic=deterministic)
        if self.skip_proj is not None:
            skip = self.skip_proj(skip)
        return skip + y

    def core(
        self, u: jax.Array, dt: jax.Array, mask: jax.Array, x0: jax.Array | None = None
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array, jax.Array]]:
        """Everything before the gate: norm, SSM, pooling (no dropout, no RNG use).

        Args: u (B, L, H_in), dt (B, L), mask (B, L), x0 (B, P) SSM state before the first
        event or None (zeros).
        Returns the SSM state after the last event (B, P) and (y (B, L', H) SSM output,
        skip (B, L', H_in) residual input, dt' (B, L'), mask' (B, L')), pooled when
        ``stride > 1``.
        """
        h = jnp.where(mask[..., None], self.pre(u), 0.0)
        dt_ssm = jnp.where(mask, dt, 0.0)
        if self.stride > 1:
            y, x_last = ssm_pooled(
                self.ssm, h, dt_ssm, mask, self.stride, x0, exp_form=self.training
            )
            u, dt, mask = event_pool(u, dt, mask, stride=self.stride, mode=self.pool_mode)
        else:
            y, x_last = self.ssm(h, dt_ssm, x0)
        return x_last, (y, u, dt, mask)

    def __call__(
        self,
        u: jax.Array,
        dt: jax.Array,
        mask: jax.Array,
        *,
        remat: bool = False,
        time_chunk: int | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Apply the block to a padded batch.

        Args:
            u: (B, L, H_in) float32.
            dt: (B, L) float32 time steps.
            mask: (B, L) bool valid events.  Padded positions feed u = 0, dt = 0 to the SSM,
                which leaves its state unchanged, so padding never changes valid outputs.
            remat: recompute :meth:`core` (the SSM) in the backward pass instead of storing
                its activations (``jax.checkpoint``).
            time_chunk: when given and shorter than L, run :meth:`core` over time chunks of
                about this many events (a multiple of the stride) in a ``lax.scan`` carrying
                the SSM state (:func:`scan_time_chunks`).  The results are the same; with
                ``remat`` only one chunk's activations are ever live in the backward pass
                (XLA:CPU does not reduce memory for a ``jax.checkpoint`` outside a loop).
        Returns:
            (out (B, L', H), dt' (B, L'), mask' (B, L')) with L' = ceil(L / stride).
        """
        if time_chunk is not None and u.shape[1] > time_chunk:
            x0 = self.ssm.zero_state(u.shape[0])
            y, skip, dt, mask = scan_time_chunks(
                self.core, x0, (u, dt, mask), self.stride, time_chunk, remat=remat
            )
        else:
            core = jax.checkpoint(self.core) if remat else self.core
            _, (y, skip, dt, mask) = core(u, dt, mask)
        return self.post(y, skip), dt, mask


def scan_time_chunks(body, carry0, xs: tuple[jax.Array, ...], stride: int, time_chunk: int,
                     *, remat: bool = False) -> tuple[jax.Array, ...]:
    """Run ``body`` over time chunks of (B, L, ...) inputs, carrying a state (``lax.scan``).

    The chunk length is ``t = stride·ceil(min(L, time_chunk)/stride)`` so pooling windows never
    straddle two chunks; the inputs are zero-padded to a multiple of ``t`` (padding must be
    neutral: mask False, dt 0).  ``body(*chunk_inputs, carry) -> (carry, outputs)`` gets
    (B, t, ...) arrays and returns (B, t/stride, ...) outputs, which are joined and cut to
    ceil(L/stride).  With ``remat`` the body is recomputed chunk by chunk in the backward
    pass, so no (B, L, ·) intermediate of the body is stored.
    The body is called as ``body(*chunk_inputs, carry)`` (as :meth:`SSMBlock.core`).

    Args:
        body: the per-chunk function.  carry0: initial carry (e.g. the SSM state (B, P)).
        xs: inputs, each (B, L, ...).  stride: window length of the body's pooling (1: none).
        time_chunk: requested chunk length in events.  remat: ``jax.checkpoint`` the body.
    Returns:
        the tuple of outputs, each (B, ceil(L/stride), ...).
    """
    b_sz, length = xs[0].shape[:2]
    t = stride * max(1, -(-min(length, time_chunk) // stride))
    n = -(-length // t)
    pad = n * t - length

    def chunks(a):  # (B, n·t, ...) -> (n, B, t, ...)
        if pad:
            a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2))
        return jnp.swapaxes(a.reshape(b_sz, n, t, *a.shape[2:]), 0, 1)

    def body_call(carry, inp):
        return body(*inp, carry)

    fn = jax.checkpoint(body_call) if remat else body_call
    _, outs = jax.lax.scan(fn, carry0, tuple(chunks(a) for a in xs))
    keep = -(-length // stride)

    def unchunk(a):  # (n, B, t/stride, ...) -> (B, ceil(L/stride), ...)
        a = jnp.swapaxes(a, 0, 1)
        return a.reshape(b_sz, n * (t // stride), *a.shape[3:])[:, :keep]

    return tuple(unchunk(a) for a in outs)

"""Online inference: feed events one at a time (``step``) or in chunks (``step_chunk``).

After every event the streaming logits equal the logits of the full-sequence model
(:class:`~eventssm.models.classifier.EventClassifier` in eval mode) on the prefix of events seen
so far, pooling windows included: the full model closes a trailing partial window at its last
valid event, so after each event every pooling level holds a *provisional* element for its
current partial window, and every layer below it sees that element without committing it.

State carried between calls (:class:`StreamState`, a pytree of arrays, batch B):

* ``blocks[i]`` (:class:`BlockState`): ``x``, the committed SSM state of block i, (B, P)
  complex64; pooling blocks also carry their window (:class:`WindowState`): ``count`` (B,)
  int32 committed elements, ``dt`` (B,) the summed dt and ``pool`` the residual pooling's
  :class:`WeightedSum` (``total`` (B, H_in) Σ w_k u_k, ``weight`` (B,) Σ w_k; w_k = 1 for
  "mean"/"last", dt_k + ε for "time_weighted"); ``window`` is None for the other blocks.
* ``head`` (:class:`WeightedSum`): ``total`` (B, H) Σ w_k x_k and ``weight`` (B,) Σ w_k over the
  committed last-stage elements (w as in the head mode).

Per element a layer computes the candidate ``x' = Λ̄_k ⊙ x + B̄_k u_k`` (the SSM's ``step``)
and keeps it only when the element is final (its window closed); provisional elements are seen
by later layers and by the head but leave every state unchanged.

``step`` is the per-event reference; ``step_chunk`` is the parallel path: a layer fed only
final elements (the first block) runs the SSM's parallel scan from the carried state; deeper
layers get the committed states of all positions from one :func:`~eventssm.models.scan.
linear_recurrence` with carried initial state over ``(a_k, b_k) = (Λ̄_k, B̄_k u_k)`` for final
elements and the identity ``(1, 0)`` for provisional ones, then read every (final or
provisional) output at once from the committed state before it: ``y_k = output(a_k ⊙ x_{k−1} +
b_k, u_k)``.  The coefficients come from the SSM's ``recurrence_terms`` (every
:class:`~eventssm.models.ssm.DiagonalSSM`: S5SSM and S7SSM); for another SSM with only ``step``,
they are read off the step, which is affine in the state with a diagonal coefficient:
``b_k = step(0)``, ``a_k = (step(c·1) − step(0))/c``.  Window counters and sums use integer
modular counts and a resetting linear recurrence (coefficient 0 at window starts).

``step_chunk(..., last_only=True)`` returns only the logits after the chunk's last event; then
the layers after a pooling block process only the elements that close a window plus the last
(provisional) one, so a chunk costs about one full-model forward pass over it.  ``mask`` marks
skipped events, so chunks can be padded to one compiled size.

Streaming always runs without dropout (eval semantics).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from eventssm.models.classifier import EventClassifier
from eventssm.models.pooling import TIME_WEIGHT_EPS
from eventssm.models.scan import linear_recurrence
from eventssm.models.ssm import DiagonalSSM, decay

__all__ = [
    "BlockState", "EnsembleStreamer", "StreamState", "Streamer", "WeightedSum", "WindowState", "init_state",
    "make_streamer", "step", "step_chunk",
]


class WeightedSum(NamedTuple):
    """Running weighted sum of committed elements: ``total`` Σ w_k v_k (B, F), ``weight`` Σ w_k (B,)."""

    total: jax.Array
    weight: jax.Array


class WindowState(NamedTuple):
    """The open pooling window of a pooling block: ``count`` (B,) int32 committed elements,
    ``dt`` (B,) their summed dt, ``pool`` the residual path's :class:`WeightedSum` (B, H_in)."""

    count: jax.Array
    dt: jax.Array
    pool: WeightedSum


class BlockState(NamedTuple):
    """One block: ``x`` committed SSM state (B, P) complex64, ``window`` (pooling blocks) or None."""

    x: jax.Array
    window: WindowState | None = None


class StreamState(NamedTuple):
    """Everything carried between streaming calls (see the module docstring)."""

    blocks: tuple[BlockState, ...]
    head: WeightedSum

#: power-of-two probe state used to read a_k off the SSM's step (exact scaling in float).
_PROBE = 1024.0


def _weight(mode: str, dt: jax.Array) -> jax.Array:
    """Pooling/head weight of each element: dt + ε for "time_weighted", else 1."""
    if mode == "time_weighted":
        return dt + TIME_WEIGHT_EPS
    return jnp.ones_like(dt)


def init_state(model: EventClassifier, batch: int) -> StreamState:
    """Empty stream state (no event seen yet).

    Args:
        model: the classifier.
        batch: B, number of independent streams.
    Returns:
        StreamState pytree (see the module docstring).
    """
    def zero_sum(width: int) -> WeightedSum:
        return WeightedSum(jnp.zeros((batch, width), jnp.float32), jnp.zeros((batch,), jnp.float32))

    blocks = []
    for blk in model.blocks:
        window = None
        if blk.stride > 1:
            window = WindowState(
                jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), jnp.float32), zero_sum(blk.d_in)
            )
        blocks.append(BlockState(blk.ssm.zero_state(batch), window))
    return StreamState(tuple(blocks), zero_sum(model.head.in_features))


# ----------------------------------------------------------------------------- per event


def _step_impl(model: EventClassifier, state: StreamState, token, dt):
    token = jnp.asarray(token, jnp.int32)
    dt = jnp.asarray(dt, jnp.float32)
    x = model.embed(token)
    final = jnp.ones(token.shape, dtype=bool)
    new_blocks = []
    for blk, st in zip(model.blocks, state.blocks):
        h = blk.pre(x)
        x_new, y = blk.ssm.step(st.x, h, dt)
        x_kept = jnp.where(final[:, None], x_new, st.x)
        window = None
        if blk.stride > 1:
            win = st.window
            w = _weight(blk.pool_mode, dt)
            count = win.count + 1
            s_sum = win.pool.total + w[:, None] * x
            s_w = win.pool.weight + w
            s_dt = win.dt + dt
            skip = x if blk.pool_mode == "last" else s_sum / s_w[:, None]
            close = count == blk.stride
            grow = final & ~close
            reset = final & close

            def commit(new, old, grow=grow, reset=reset):
                g = grow.reshape(grow.shape + (1,) * (new.ndim - 1))
                r = reset.reshape(reset.shape + (1,) * (new.ndim - 1))
                return jnp.where(g, new, jnp.where(r, jnp.zeros_like(new), old))

            window = WindowState(
                commit(count, win.count),
                commit(s_dt, win.dt),
                WeightedSum(commit(s_sum, win.pool.total), commit(s_w, win.pool.weight)),
            )
            x = blk.post(y, skip, deterministic=True)
            dt = s_dt
            final = final & close
        else:
            x = blk.post(y, x, deterministic=True)
        new_blocks.append(BlockState(x_kept, window))
    head = state.head
    mode = model.config.head
    w = _weight(mode, dt)
    c_sum = head.total + w[:, None] * x
    c_w = head.weight + w
    pooled = x if mode == "last" else c_sum / c_w[:, None]
    logits = model.head(pooled)
    new_head = WeightedSum(
        jnp.where(final[:, None], c_sum, head.total), jnp.where(final, c_w, head.weight)
    )
    return StreamState(tuple(new_blocks), new_head), logits


# ----------------------------------------------------------------------------- chunks


def _shift_in(first: jax.Array, seq: jax.Array) -> jax.Array:
    """(B, ...) and (B, N, ...) -> (B, N, ...) holding [first, seq[:, 0], …, seq[:, N−2]]."""
    return jnp.concatenate([first[:, None], seq[:, :-1]], axis=1)


def _segmented_cumsum(v: jax.Array, reset: jax.Array, init: jax.Array, method: str) -> jax.Array:
    """Inclusive ``T_n = (0 if reset_n else T_{n−1}) + v_n`` with ``T_{−1} = init``.

    A linear recurrence with coefficient 0 at resets and 1 elsewhere (so it reuses
    :func:`~eventssm.models.scan.linear_recurrence` and its scan methods).

    Args: v (B, N, F); reset (B, N) bool; init (B, F); method: scan method.
    Returns: T (B, N, F).
    """
    coef = jnp.where(reset, 0.0, 1.0).astype(v.dtype)[..., None]
    out, _ = linear_recurrence(
        jnp.swapaxes(jnp.broadcast_to(coef, v.shape), 0, 1), jnp.swapaxes(v, 0, 1), init,
        method=method,
    )
    return jnp.swapaxes(out, 0, 1)


def _ssm_committed(ssm, x0, h, dt, final, method):
    """SSM outputs for elements that may be provisional.

    Args:
        ssm: S5SSM/S7SSM; x0 (B, P) committed state; h (B, N, H) inputs; dt (B, N);
        final (B, N) bool (only final elements update the state); method: scan method.
    Returns:
        y (B, N, H) output of each element from the committed state before it, and the
        committed state after the chunk (B, P).
    """
    b_sz, n, width = h.shape
    if isinstance(ssm, DiagonalSSM):
        a, b = ssm.recurrence_terms(h, dt)
    else:  # read a_k, b_k off the affine step x ↦ a_k ⊙ x + b_k
        hf = h.reshape(b_sz * n, width)
        dtf = dt.reshape(b_sz * n)
        zeros = jnp.zeros((b_sz * n, x0.shape[-1]), x0.dtype)
        b, _ = ssm.step(zeros, hf, dtf)
        ab, _ = ssm.step(zeros + _PROBE, hf, dtf)
        a = ((ab - b) / _PROBE).reshape(b_sz, n, -1)
        b = b.reshape(b_sz, n, -1)
    fm = final[..., None]
    xs, x_last = linear_recurrence(
        jnp.swapaxes(jnp.where(fm, a, jnp.ones_like(a)), 0, 1),
        jnp.swapaxes(jnp.where(fm, b, jnp.zeros_like(b)), 0, 1),
        x0,
        method=method,
    )
    x_prev = _shift_in(x0, jnp.swapaxes(xs, 0, 1))
    if isinstance(ssm, DiagonalSSM):
        return ssm.output(a * x_prev + b, h), x_last
    _, y = ssm.step(x_prev.reshape(b_sz * n, -1), h.reshape(b_sz * n, width), dt.reshape(-1))
    return y.reshape(b_sz, n, -1), x_last


def _compact(close: jax.Array, last_pos: jax.Array, stride: int):
    """Slots to keep when only the last position's logits are needed.

    Keeps, in order, every position < last_pos whose element is final (closes a window) and then
    ``last_pos`` itself.  At most ``N // stride + 1`` finals precede ``last_pos``.

    Args: close (B, N) bool; last_pos (B,) int; stride: the pooling stride that produced close.
    Returns: idx (B, M + 1) int32 positions and valid (B, M + 1) bool (False for fill slots).
    """
    b_sz, n = close.shape
    slots = n // stride + 1
    pos = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[None], (b_sz, n))
    keep = close & (pos < last_pos[:, None])
    slot = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, slots)
    rows = jnp.arange(b_sz)[:, None]
    idx = jnp.zeros((b_sz, slots), jnp.int32).at[rows, slot].set(pos, mode="drop")
    valid = jnp.arange(slots)[None] < jnp.sum(keep, axis=1, keepdims=True)
    idx = jnp.concatenate([idx, last_pos[:, None].astype(jnp.int32)], axis=1)
    valid = jnp.concatenate([valid, jnp.ones((b_sz, 1), bool)], axis=1)
    return idx, valid


def _take(a: jax.Array, idx: jax.Array) -> jax.Array:
    """a (B, N, ...) gathered along axis 1 at idx (B, M) -> (B, M, ...)."""
    return jnp.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=1)


def _table_layer(table, st: BlockState, ssm, tokens, dt, final, method):
    """The first layer from the token table (:meth:`EventClassifier.token_table`): per event
    only a gather and ``Λ̄_k = exp(rate[token_k]·dt_k)``; the read-out waits until the
    positions it is needed at are known (with ``last_only``, the window ends and the last
    event).

    Returns: the committed states after each position (B, N, P), the state after the chunk
    (B, P), and ``read_out(pos=None)``: the outputs y (B, N, H), or at positions ``pos`` (B, M).
    """
    pre_tab, rate, b_tab = table
    a = decay(rate[tokens] if rate.ndim == 2 else rate, dt)
    b = jnp.where(final[..., None], b_tab[tokens], 0.0)
    xs, x_last = linear_recurrence(jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1), st.x,
                                   method=method)
    states = jnp.swapaxes(xs, 0, 1)

    def read_out(pos=None):
        tok, fin, xs = tokens, final, states
        if pos is not None:
            tok, fin, xs = _take(tok, pos), _take(fin, pos), _take(xs, pos)
        return ssm.output(xs, jnp.where(fin[..., None], pre_tab[tok], 0.0))

    return x_last, read_out


def _window_chunk(blk, win: WindowState, x, dt, final, method):
    """A pooling block's window over a chunk: which elements close a window, the residual
    path's pooled input, and the window carried on.

    Args: blk (stride s, pool_mode); win the carried window; x (B, N, H_in) the block's input;
    dt (B, N); final (B, N) bool; method: scan method.
    Returns: ``(close (B, N) bool, skip (B, N, H_in), dt of the pooled elements (B, N),
    WindowState after the chunk)``.
    """
    s = blk.stride
    width = x.shape[-1]
    f_int = final.astype(jnp.int32)
    cum = jnp.cumsum(f_int, axis=1)
    before = (win.count[:, None] + cum - f_int) % s  # committed count before n
    close = final & (before + 1 == s)
    reset = _shift_in(jnp.zeros((x.shape[0],), bool), close)
    w = _weight(blk.pool_mode, dt)
    feats = jnp.concatenate([w[..., None] * x, w[..., None], dt[..., None]], axis=-1)
    init = jnp.concatenate([win.pool.total, win.pool.weight[:, None], win.dt[:, None]], axis=-1)
    committed = _segmented_cumsum(
        jnp.where(final[..., None], feats, 0.0), reset, init, method
    )  # committed sums after each position
    before_sums = jnp.where(reset[..., None], 0.0, _shift_in(init, committed))
    cand = before_sums + feats
    skip = x if blk.pool_mode == "last" else cand[..., :width] / cand[..., width, None]
    last = jnp.where(close[:, -1, None], 0.0, committed[:, -1])
    window = WindowState(
        (win.count + cum[:, -1]) % s, last[:, width + 1],
        WeightedSum(last[:, :width], last[:, width]),
    )
    return close, skip, cand[..., width + 1], window


def _head_chunk(model: EventClassifier, head: WeightedSum, x, dt, final, last_pos, last_only):
    """The head pooling over a chunk: ``(logits, WeightedSum after the chunk)``."""
    mode = model.config.head
    width = x.shape[-1]
    w = _weight(mode, dt)
    feats = jnp.concatenate([w[..., None] * x, w[..., None]], axis=-1)
    contrib = jnp.where(final[..., None], feats, 0.0)
    init = jnp.concatenate([head.total, head.weight[:, None]], axis=-1)
    cum = init[:, None] + jnp.cumsum(contrib, axis=1)  # committed sums after each position
    cand = _shift_in(init, cum) + feats
    pooled = x if mode == "last" else cand[..., :width] / cand[..., width, None]
    if last_only:
        pooled = _take(pooled, last_pos[:, None])[:, 0]
    return model.head(pooled), WeightedSum(cum[:, -1, :width], cum[:, -1, width])


def _chunk_impl(
    model: EventClassifier,
    state: StreamState,
    tokens,
    dt,
    mask=None,
    last_only: bool = False,
    table=None,
    method: str | None = None,
):
    tokens = jnp.asarray(tokens, jnp.int32)
    dt = jnp.asarray(dt, jnp.float32)
    b_sz, n = tokens.shape
    method = method or model.config.scan_method
    if mask is None:
        final = jnp.ones((b_sz, n), dtype=bool)
    else:
        final = jnp.broadcast_to(jnp.asarray(mask, bool), (b_sz, n))
        tokens = jnp.where(final, tokens, 0)
        dt = jnp.where(final, dt, 0.0)
    # position of the last non-skipped event (0 when there is none)
    last_pos = jnp.max(jnp.where(final, jnp.arange(n)[None], 0), axis=1)
    x = model.embed(tokens)
    all_final = True  # every element final, up to skipped (masked) events
    new_blocks = []
    for i, (blk, st) in enumerate(zip(model.blocks, state.blocks)):
        if i == 0 and table is not None:
            x_last, read_out = _table_layer(table, st, blk.ssm, tokens, dt, final, method)
            y = read_out() if blk.stride == 1 or not last_only else None
        elif all_final:
            # skipped events feed u = 0, dt = 0: the parallel scan leaves the state unchanged
            h = blk.pre(x)
            y, x_last = blk.ssm(jnp.where(final[..., None], h, 0.0), dt, st.x)
        else:
            y, x_last = _ssm_committed(blk.ssm, st.x, blk.pre(x), dt, final, method)
        window = None
        if blk.stride > 1:
            close, skip, dt, window = _window_chunk(blk, st.window, x, dt, final, method)
            final = close
            if last_only:  # deeper layers only need the final elements and the last one
                idx, valid = _compact(close, last_pos, blk.stride)
                y = read_out(idx) if y is None else _take(y, idx)
                skip, dt = _take(skip, idx), _take(dt, idx)
                final = _take(close, idx) & valid
                last_pos = jnp.full((b_sz,), idx.shape[1] - 1)
            x = blk.post(y, skip, deterministic=True)
            all_final = False
        else:
            x = blk.post(y, x, deterministic=True)
        new_blocks.append(BlockState(x_last, window))
    logits, new_head = _head_chunk(model, state.head, x, dt, final, last_pos, last_only)
    return StreamState(tuple(new_blocks), new_head), logits


# ----------------------------------------------------------------------------- public API


@nnx.jit
def step(
    model: EventClassifier, state: StreamState, token: jax.Array, dt: jax.Array
) -> tuple[StreamState, jax.Array]:
    """Consume one event per stream.

    Args:
        model: the classifier (dropout is not applied).
        state: StreamState from :func:`init_state` or a previous call.
        token: (B,) int32 token ids.
        dt: (B,) float32 time since the previous event of the stream (0 for the first).
    Returns:
        (new state, logits (B, n_classes)) — the full model's logits on the prefix so far.
    """
    return _step_impl(model, state, token, dt)


@functools.partial(nnx.jit, static_argnames=("last_only",))
def step_chunk(
    model: EventClassifier,
    state: StreamState,
    tokens: jax.Array,
    dt: jax.Array,
    mask: jax.Array | None = None,
    *,
    last_only: bool = False,
) -> tuple[StreamState, jax.Array]:
    """Consume N events per stream with parallel scans from the carried state.

    Args:
        model: the classifier (dropout is not applied).
        state: StreamState.
        tokens: (B, N) int32 token ids.
        dt: (B, N) float32 time steps.
        mask: optional (B, N) bool; False events are skipped entirely (no state change, their
            dt is not accumulated).  Meant for padding chunks to a fixed N so one compiled
            function serves chunks of any size.
        last_only: return only the logits after the chunk's last non-skipped event, (B, C).
            Layers after a pooling block then process only the elements that close a window
            plus the last one (about N/stride instead of N), so this mode costs about as much
            as the full model's forward pass over the chunk.
    Returns:
        (new state, logits (B, N, n_classes)): logits[:, n] equal the full model's logits on
        the prefix ending with event n of this chunk (undefined at skipped events); with
        ``last_only`` logits (B, n_classes) for the prefix ending with the last non-skipped
        event (undefined for a row without one).
    """
    return _chunk_impl(model, state, tokens, dt, mask, last_only)


def _has_table(model: EventClassifier) -> bool:
    """True when the first block's SSM has per-token terms (see EventClassifier.token_table)."""
    ssm = model.blocks[0].ssm
    return isinstance(ssm, DiagonalSSM) and ssm.has_token_terms


class Streamer:
    """Compiled streaming for a fixed snapshot of a model's parameters (lower call overhead).

    ``Streamer(model)`` splits the model once (``nnx.split``) and jits pure functions, so calls
    skip NNX's per-call graph traversal: ``step`` bakes the parameters into the compiled program
    as constants (no per-call argument handling for them: the lowest latency per event), and
    ``step_chunk`` passes them as one flat list of arrays.  Parameter updates made to ``model``
    afterwards are not seen; build a new Streamer.

    ``scan_method`` sets the linear-recurrence method of ``step_chunk`` (default: "sequential"
    on CPU, the model's own method elsewhere); it does not change the results.

    Methods mirror the module functions: ``init_state(batch)``, ``step(state, token, dt)``,
    ``step_chunk(state, tokens, dt, mask=None, *, last_only=False)``.
    """

    def __init__(self, model: EventClassifier, *, scan_method: str | None = None):
        if scan_method is None:
            # one stream of a small model: lax.scan beats the chunked and associative scans
            # on CPU (docs/model.md §4); on accelerators keep the model's own method
            cpu = jax.default_backend() == "cpu"
            scan_method = "sequential" if cpu else model.config.scan_method
        graphdef, params = nnx.split(model)
        leaves, treedef = jax.tree.flatten(params)
        self._leaves = leaves
        self._model = model

        def _step(state, token, dt):
            return _step_impl(nnx.merge(graphdef, params), state, token, dt)

        def _chunk(leaves, table, state, tokens, dt, mask, last_only):
            model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
            return _chunk_impl(model, state, tokens, dt, mask, last_only, table, scan_method)

        # the first block's per-token terms, computed once for this parameter snapshot
        self._table = model.token_table() if _has_table(model) else None
        self._step = jax.jit(_step)
        self._chunk = jax.jit(_chunk, static_argnums=6)

    def init_state(self, batch: int) -> StreamState:
        """Empty state for ``batch`` streams (see :func:`init_state`)."""
        return init_state(self._model, batch)

    def step(self, state: StreamState, token: jax.Array, dt: jax.Array):
        """One event per stream: token (B,) int32, dt (B,) float32 -> (state, logits (B, C))."""
        return self._step(state, token, dt)

    def step_chunk(
        self,
        state: StreamState,
        tokens: jax.Array,
        dt: jax.Array,
        mask: jax.Array | None = None,
        *,
        last_only: bool = False,
    ):
        """N events per stream (see :func:`step_chunk`): tokens, dt (B, N), mask (B, N) | None
        -> (state, logits (B, N, C)), or (B, C) with ``last_only``."""
        return self._chunk(self._leaves, self._table, state, tokens, dt, mask, last_only)


class EnsembleStreamer:
    """Streaming for an :class:`~eventssm.models.ensemble.EnsembleClassifier`: one
    :class:`Streamer` per member, their logits combined as the ensemble combines them
    (log of the mean of the members' probabilities), so after every event the result equals
    the ensemble's logits on the prefix. The state is the tuple of the members' states."""

    def __init__(self, model, *, scan_method: str | None = None):
        from eventssm.models.ensemble import member, n_members

        self._members = []
        for k in range(n_members(model)):
            one = member(model, k)
            one.eval()
            self._members.append(Streamer(one, scan_method=scan_method))

    def init_state(self, batch: int) -> tuple[StreamState, ...]:
        return tuple(m.init_state(batch) for m in self._members)

    def step(self, state, token: jax.Array, dt: jax.Array):
        """As :meth:`Streamer.step`; logits (B, C) of the ensemble."""
        return _combined([m.step(s, token, dt) for m, s in zip(self._members, state, strict=True)])

    def step_chunk(self, state, tokens: jax.Array, dt: jax.Array, mask: jax.Array | None = None, *,
                   last_only: bool = False):
        """As :meth:`Streamer.step_chunk`; logits of the ensemble."""
        return _combined([m.step_chunk(s, tokens, dt, mask, last_only=last_only)
                          for m, s in zip(self._members, state, strict=True)])


def _combined(outs: list) -> tuple:
    """The members' ``(state, logits)`` -> ``(tuple of states, the ensemble's logits)``."""
    from eventssm.models.ensemble import combine_logits

    return tuple(o[0] for o in outs), combine_logits(jnp.stack([o[1] for o in outs]), axis=0)


def make_streamer(model, *, scan_method: str | None = None) -> Streamer | EnsembleStreamer:
    """The compiled streamer of ``model``: :class:`Streamer` for one classifier,
    :class:`EnsembleStreamer` for an ensemble."""
    from eventssm.models.ensemble import n_members

    if n_members(model) > 1:
        return EnsembleStreamer(model, scan_method=scan_method)
    return Streamer(model, scan_method=scan_method)

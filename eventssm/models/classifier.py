"""Event-stream classifier: token embedding → stages of SSM blocks with event pooling → head.

Architecture of EventSSM (Schöne et al. 2024, arXiv 2404.18508; official code
``event_ssm/seq_model.py`` ``StackedEncoderModel`` / ``ClassificationModel``), used with S5 or
S7 (Soydan et al. 2024, arXiv 2410.03464) layers:

    u_k   = E[token_k]                          nnx.Embed, vocabulary 2·W·H (DESIGN.md §3), or
            MLP(Fourier features of the token's x, y, p)  (``embedding="fourier"``,
                                                           eventssm.models.embedding)
    stage s = 0 … S−1 (``layers_per_stage`` SSMBlocks each):
        block 0 pools windows of ``stride_s`` events (SSM at the incoming rate, output at the
        window's last event, dt summed) and widens H_{s−1} → H_s;
        blocks 1 … run at the pooled rate with width H_s.
        H_s = d_model·e^s, P_s = d_state·e^s, HiPPO blocks_s = blocks·e^s (block size fixed),
        e = ``expansion`` (EventSSM ``state_expansion_factor``; their code widens H only from
        the second stage on, which is what H_0 = d_model gives; for more than two stages their
        code keeps H_2 = H_1, here the rule continues geometrically).
    head: masked pooling over the last stage's valid elements (EventSSM
        ``classification_mode``: "mean" = their "pool", "time_weighted" = their "timepool" with
        weights (dt + ε), "last" = the last valid element), then a Dense layer → logits.

Padding: ``mask`` (or ``lengths``) marks valid events; padded events feed u = 0, dt = 0 to every
SSM (state unchanged) and are excluded from pooling and the head, so appending padding never
changes the logits.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from eventssm.models.blocks import SSMBlock, scan_time_chunks, ssm_pooled, table_terms
from eventssm.models.embedding import EMBEDDINGS, make_embedding
from eventssm.models.pooling import (
    POOL_MODES,
    TIME_WEIGHT_EPS,
    event_pool,
    lengths_to_mask,
)
from eventssm.models.ssm import LAYER_KINDS, DiagonalSSM, SSMConfig

__all__ = ["HEAD_MODES", "ClassifierConfig", "EventClassifier", "StageDims", "head_pool"]

HEAD_MODES = ("mean", "time_weighted", "last")
SCAN_METHODS = ("auto", "associative", "sequential", "chunked")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class StageDims:
    """Resolved sizes of one stage: input width, width H, state P, S5 blocks, pooling stride."""

    d_in: int
    d_model: int
    d_state: int
    blocks: int
    stride: int


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Typed, immutable configuration of :class:`EventClassifier` (saved as JSON with checkpoints).

    Defaults are EventSSM's DVS128 Gesture "small" model (``configs/model/dvs/small.yaml`` of
    the official EventSSM repository) with S5 layers.

    Fields:
        vocab_size: number of token ids (2·W·H).
        n_classes: number of output classes.
        d_model: H_0, feature width of the first stage.
        d_state: P_0, SSM state size of the first stage.
        blocks: S5 HiPPO blocks in the first stage (block size d_state / blocks is kept).
        n_stages, layers_per_stage: network depth.
        stride: pooling stride per stage (an int applies to every stage, 1 = no pooling).
        expansion: e, width/state growth per stage.
        layer: "s5", "s7" (the project's S7) or "s7paper" (S7 as the paper's code:
            :mod:`eventssm.models.s7paper`).
        rank: low rank of the input-dependent projections of "s7" ("s7paper" uses ⌈H/16⌉).
        dropout: dropout rate (train mode only).
        head: "mean", "time_weighted" or "last".
        pool_mode: residual-path pooling mode ("last", "mean", "time_weighted").
        scan_method: "auto" (sequential on CPU, associative on GPU/TPU), "associative",
            "sequential" or "chunked" (see eventssm.models.scan).
        conj_sym: keep only one of each conjugate eigenvalue pair (P/2 complex states).
        dt_min, dt_max: range of the initial SSM step sizes δ.
        discretization: S5 discretization ("async" for event streams).
        step_rescale: S5 step rescale factor.
        remat: recompute the event-rate activations in the backward pass instead of storing
            them (memory for time): the first pooling block's time chunks and every block that
            runs before the first pooling (pooled stages are L/stride shorter and stored).
        remat_blocks: in train mode, also recompute every later block's SSM and pooling
            (``SSMBlock.core``) in the backward pass, in time chunks of ``block_chunk``
            elements (eval mode runs them whole, which is faster): less memory for
            the input-dependent S7 layers, whose per-element terms are many (B, L/stride, P)
            arrays.  Does not change the results.
        block_chunk: time chunk (elements) of the blocks recomputed under ``remat_blocks``.
        time_chunk: events per time chunk of the first pooling block (embedding + first
            block run chunk by chunk with the state carried, so no (B, L, ·) event-rate
            array larger than one chunk is ever live; with ``remat`` every chunk is
            recomputed in the backward pass).  Does not change the results.
        embedding: "table" (a learned vector per token, EventSSM's form) or "fourier" (an MLP
            of Fourier features of the token's position and polarity, smooth in position;
            :mod:`eventssm.models.embedding`); several joined by "+" ("table+fourier") make an
            ensemble with ``members`` classifiers of each.
        grid: the token grid ``(W2, H2, P2)`` with ``W2·H2·P2 = vocab_size`` (needed by
            "fourier"; None with "table" is allowed).
        dtype: computation dtype of the embedding, LayerNorms, projections, gates and head:
            "float32" or "bfloat16" (mixed precision: parameters are stored in float32; the
            SSM parameters, discretization and scan state stay float32 whatever ``dtype``, since
            the SSM promotes its bf16 input to float32/complex64; logits are float32).
        members: K, the number of independently initialised classifiers of this configuration
            (per embedding, when ``embedding`` names several) whose class probabilities are
            averaged (a deep ensemble, :mod:`eventssm.models.ensemble`; 1 = one classifier).
    """

    vocab_size: int
    n_classes: int
    d_model: int = 128
    d_state: int = 128
    blocks: int = 8
    n_stages: int = 2
    layers_per_stage: int = 3
    stride: int | tuple[int, ...] = 16
    expansion: int = 2
    layer: str = "s5"
    rank: int = 4
    dropout: float = 0.25
    head: str = "time_weighted"
    pool_mode: str = "time_weighted"
    scan_method: str = "associative"
    conj_sym: bool = False
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    discretization: str = "async"
    step_rescale: float = 1.0
    remat: bool = False
    remat_blocks: bool = False
    time_chunk: int = 8192
    block_chunk: int = 1024
    dtype: str = "float32"
    embedding: str = "table"
    grid: tuple[int, int, int] | None = None
    members: int = 1

    def __post_init__(self):
        stride = self.stride
        if isinstance(stride, int):
            stride = (stride,) * self.n_stages
        stride = tuple(int(s) for s in stride)
        object.__setattr__(self, "stride", stride)
        if self.grid is not None:
            grid = tuple(int(v) for v in self.grid)
            object.__setattr__(self, "grid", grid)
            if len(grid) != 3 or min(grid) < 1 or grid[0] * grid[1] * grid[2] != self.vocab_size:
                raise ValueError(f"grid must be (W2, H2, P2) with W2·H2·P2 = vocab_size {self.vocab_size}, "
                                 f"got {self.grid}")
        embeddings = self.embeddings
        if not embeddings or any(e not in EMBEDDINGS for e in embeddings) or len(set(embeddings)) < len(embeddings):
            raise ValueError(f"embedding must be one of {EMBEDDINGS} or several of them joined by '+', "
                             f"got {self.embedding!r}")
        if "fourier" in embeddings and self.grid is None:
            raise ValueError("embedding 'fourier' needs grid (W2, H2, P2)")
        positive = ("vocab_size", "n_classes", "d_model", "d_state", "blocks", "n_stages",
                    "layers_per_stage", "expansion", "rank", "time_chunk", "block_chunk", "members")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ClassifierConfig.{name} must be >= 1, got {getattr(self, name)}")
        if len(stride) != self.n_stages or min(stride) < 1:
            raise ValueError(f"stride must be >= 1 for each of {self.n_stages} stages, got {stride}")
        if self.d_state % self.blocks:
            raise ValueError(f"d_state {self.d_state} is not a multiple of blocks {self.blocks}")
        if self.layer not in LAYER_KINDS:
            raise ValueError(f"layer must be one of {LAYER_KINDS}, got {self.layer!r}")
        if self.head not in HEAD_MODES:
            raise ValueError(f"head must be one of {HEAD_MODES}, got {self.head!r}")
        if self.pool_mode not in POOL_MODES:
            raise ValueError(f"pool_mode must be one of {POOL_MODES}, got {self.pool_mode!r}")
        if self.scan_method not in SCAN_METHODS:
            raise ValueError(f"scan_method must be one of {SCAN_METHODS}, got {self.scan_method!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")

    @property
    def embeddings(self) -> tuple[str, ...]:
        """The embeddings of ``embedding`` ("table+fourier" -> ("table", "fourier"))."""
        return tuple(self.embedding.split("+"))

    def stages(self) -> list[StageDims]:
        """Resolved per-stage sizes (see the module docstring for the expansion rule)."""
        out = []
        d_prev = self.d_model
        for s in range(self.n_stages):
            grow = self.expansion**s
            d = self.d_model * grow
            out.append(StageDims(d_prev, d, self.d_state * grow, self.blocks * grow, self.stride[s]))
            d_prev = d
        return out

    def ssm_config(self, stage: StageDims) -> SSMConfig:
        """The SSM layer of every block of ``stage`` (one of :meth:`stages`)."""
        return SSMConfig(
            layer=self.layer, d_model=stage.d_model, d_state=stage.d_state, blocks=stage.blocks,
            rank=self.rank, conj_sym=self.conj_sym, discretization=self.discretization,
            dt_min=self.dt_min, dt_max=self.dt_max, step_rescale=self.step_rescale,
            scan_method=self.scan_method,
        )

    @property
    def total_stride(self) -> int:
        """Events per element of the last stage (product of the strides)."""
        total = 1
        for s in self.stride:
            total *= s
        return total

    def replace(self, **changes: Any) -> ClassifierConfig:
        """Copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (stride as a list)."""
        d = dataclasses.asdict(self)
        d["stride"] = list(self.stride)
        if self.grid is not None:
            d["grid"] = list(self.grid)
        return d

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict` (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown ClassifierConfig fields: {sorted(unknown)}")
        d = dict(d)
        for key in ("stride", "grid"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> ClassifierConfig:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def head_pool(x: jax.Array, dt: jax.Array, mask: jax.Array, mode: str) -> jax.Array:
    """Masked pooling over time of the last stage's output.

    Args:
        x: (B, L, H) float32.
        dt: (B, L) float32 time steps of the elements (summed by event pooling).
        mask: (B, L) bool valid elements.
        mode: "mean" (Σ_k m_k x_k / Σ_k m_k), "time_weighted" (weights w_k = m_k (dt_k + ε),
            ε = 1e-6 as EventSSM ``masked_timepool``) or "last" (x at the last valid k).
    Returns:
        (B, H); rows without valid elements give zeros.
    """
    if mode == "last":
        pos = jnp.arange(x.shape[1])
        last = jnp.max(jnp.where(mask, pos, -1), axis=1)
        picked = jnp.take_along_axis(x, jnp.maximum(last, 0)[:, None, None], axis=1)[:, 0]
        return jnp.where((last >= 0)[:, None], picked, 0.0)
    if mode == "mean":
        w = mask.astype(x.dtype)
    elif mode == "time_weighted":
        w = jnp.where(mask, dt + TIME_WEIGHT_EPS, 0.0).astype(x.dtype)
    else:
        raise ValueError(f"head mode must be one of {HEAD_MODES}, got {mode!r}")
    num = jnp.einsum("bl,blh->bh", w, jnp.where(mask[..., None], x, 0.0))
    den = jnp.sum(w, axis=1)
    return num / jnp.where(den > 0, den, 1.0)[:, None]


class EventClassifier(nnx.Module):
    """EventSSM-style classifier over token streams (see the module docstring).

    Args:
        config: :class:`ClassifierConfig`.
        rngs: ``nnx.Rngs`` with ``params`` (and ``dropout`` for training) streams.

    Attributes:
        embed: nnx.Embed (vocab_size, d_model) or FourierEmbed (``config.embedding``); both
            map (...,) tokens to (..., d_model) and expose the (vocab_size, d_model) table as
            ``embedding``.
        blocks: nnx.List of SSMBlock, stage after stage (first block of a stage pools).
        head: nnx.Linear (H_{S−1}, n_classes).
    """

    def __init__(self, config: ClassifierConfig, *, rngs: nnx.Rngs):
        if config.members != 1 or len(config.embeddings) != 1:
            raise ValueError(f"members = {config.members}, embedding {config.embedding!r}: an ensemble; "
                             "build it with eventssm.models.ensemble.make_classifier")
        self.config = config
        dtype = jnp.dtype(config.dtype)
        self.embed = make_embedding(config.embedding, config.vocab_size, config.d_model, config.grid,
                                    dtype=dtype, rngs=rngs)
        blocks = []
        for st in config.stages():
            ssm = config.ssm_config(st)
            for i in range(config.layers_per_stage):
                blocks.append(
                    SSMBlock(
                        st.d_in if i == 0 else st.d_model,
                        ssm,
                        stride=st.stride if i == 0 else 1,
                        pool_mode=config.pool_mode,
                        dropout=config.dropout,
                        dtype=dtype,
                        rngs=rngs,
                    )
                )
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(config.stages()[-1].d_model, config.n_classes, dtype=dtype, rngs=rngs)

    def features(
        self,
        tokens: jax.Array,
        dt: jax.Array,
        mask: jax.Array | None = None,
        *,
        lengths: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Run embedding and all stages.

        Args:
            tokens: (B, L) int32 token ids in [0, vocab_size) (padded positions may hold anything).
            dt: (B, L) float32 time step of each event (time since the previous event).
            mask: (B, L) bool valid events; or give ``lengths`` (B,) int instead; neither = all valid.
        Returns:
            x (B, L', H_{S−1}) float32, dt' (B, L') float32, mask' (B, L') bool with
            L' = L pooled by every stage's stride (ceil at each stage).
        """
        tokens = jnp.asarray(tokens)
        if mask is None:
            if lengths is None:
                mask = jnp.ones(tokens.shape, dtype=bool)
            else:
                mask = lengths_to_mask(lengths, tokens.shape[1])
        mask = jnp.broadcast_to(jnp.asarray(mask, dtype=bool), tokens.shape)
        tokens = jnp.where(mask, tokens, 0).astype(jnp.int32)
        dt = jnp.where(mask, jnp.asarray(dt, jnp.float32), 0.0)
        blocks = list(self.blocks)
        event_rate = blocks[0].stride == 1  # blocks before the first pooling see every event
        if blocks[0].stride > 1:
            x, dt, mask = self._stem(tokens, dt, mask)
            blocks = blocks[1:]
        else:
            x = self.embed(tokens)
        for block in blocks:
            event_rate = event_rate and block.stride == 1
            if event_rate or not (self.config.remat_blocks and block.training):
                x, dt, mask = block(x, dt, mask, remat=self.config.remat and event_rate)
            else:
                x, dt, mask = block(x, dt, mask, remat=True, time_chunk=self.config.block_chunk)
        return x, dt, mask

    #: use the token table when (events in the batch) >= ratio × vocab_size (see token_table).
    token_table_ratio: float = 1.0

    def token_table(self) -> tuple[jax.Array, jax.Array, jax.Array] | None:
        """Per-token terms of the first block's SSM, or None when they depend on dt.

        The first block's SSM input ``h_k = pre(E[token_k])`` (LayerNorm, [W_in]) depends on the
        token only, and so do the SSM's dt-free terms (``token_terms``: S5 with "async"/"dirac",
        and S7, whose λ_k, δ_k, B_k depend on h_k alone).  Tabulating them over the vocabulary
        replaces per-event products ((H × P) complex, S7's selection) by gathers; per event
        only ``Λ̄_k = exp(rate[token_k]·dt_k)`` remains.

        Returns:
            ``(pre_tab (V, H), rate (P,) or (V, P) complex64, b_tab (V, P) complex64)`` or None.
        """
        blk = self.blocks[0]
        if not (isinstance(blk.ssm, DiagonalSSM) and blk.ssm.has_token_terms):
            return None
        pre_tab = blk.pre(self.embed.embedding[...])
        rate, b_tab = blk.ssm.token_terms(pre_tab)
        return pre_tab, rate, b_tab

    def _token_table(self, n_events: int):
        """:meth:`token_table` when the batch has ≥ ``token_table_ratio``·V events, else None
        (the table costs a pass over the vocabulary)."""
        if n_events < self.token_table_ratio * self.config.vocab_size:
            return None
        return self.token_table()

    def _stem(self, tokens, dt, mask):
        """Embedding + first (pooling) block, time chunk by time chunk.

        Same result as ``self.blocks[0](self.embed(tokens), dt, mask)``; the event-rate part
        (embedding, LayerNorm, SSM states) runs in a ``lax.scan`` over chunks of
        ``time_chunk`` events carrying the SSM state, and only pooled (L/stride) arrays leave
        it.  With ``remat`` each chunk is recomputed in the backward pass.
        """
        blk = self.blocks[0]
        s = blk.stride
        b_sz, length = tokens.shape
        table = self._token_table(b_sz * length)

        def body(tok, d, m, x):
            u = self.embed(tok)
            if table is None:
                h = jnp.where(m[..., None], blk.pre(u), 0.0)
                y, x = ssm_pooled(blk.ssm, h, d, m, s, x0=x, exp_form=blk.training)
            else:
                h_last, terms = table_terms(table, tok, d, m, s)
                y, x = ssm_pooled(
                    blk.ssm, None, d, m, s, x0=x, terms=terms, h_last=h_last, exp_form=blk.training
                )
            return x, (y, *event_pool(u, d, m, stride=s, mode=blk.pool_mode))

        y, skip, d_p, m_p = scan_time_chunks(
            body, blk.ssm.zero_state(b_sz), (tokens, dt, mask), s, self.config.time_chunk,
            remat=self.config.remat,
        )
        return blk.post(y, skip), d_p, m_p

    def __call__(
        self,
        tokens: jax.Array,
        dt: jax.Array,
        mask: jax.Array | None = None,
        *,
        lengths: jax.Array | None = None,
    ) -> jax.Array:
        """Class logits.

        Args: as :meth:`features`.
        Returns:
            (B, n_classes) float32 logits.
        """
        x, dt, mask = self.features(tokens, dt, mask, lengths=lengths)
        return self.head(head_pool(x, dt, mask, self.config.head)).astype(jnp.float32)

"""The shared base of the SSM layers: :class:`DiagonalSSM`, its configuration and helpers.

S5 (:mod:`eventssm.models.s5`) and S7 (:mod:`eventssm.models.s7`) are both a diagonal complex
recurrence over events, for one sequence with L events, H features, P states:

    x_k = Λ̄_k ⊙ x_{k−1} + B̄_k u_k                x_k ∈ ℂ^P,  u_k ∈ ℝ^H
    y_k = output(x_k, u_k)                        y_k ∈ ℝ^H

A layer only says how it builds the terms (:meth:`DiagonalSSM.recurrence_terms`, as a
:class:`RecurrenceTerms`) and its read-out (:meth:`DiagonalSSM.output`); this base runs them over
whole sequences (:func:`~eventssm.models.scan.linear_recurrence`, where the recurrences live) or
one event at a time (:meth:`DiagonalSSM.step`). Layers whose ``B̄_k u_k`` does not depend on
``dt_k`` also give :meth:`DiagonalSSM.token_terms` (a :class:`TokenTerms`), which the classifier
tabulates over the token vocabulary.

:class:`SSMConfig` holds the arguments of both layers, so a block or a classifier passes one
value instead of repeating them; :func:`make_ssm` builds the layer it names.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eventssm.models.scan import linear_recurrence

__all__ = [
    "LAYER_KINDS", "DiagonalSSM", "RateTerms", "RecurrenceTerms", "SSMConfig", "TokenTerms",
    "decay", "make_ssm",
]

#: "s7" is the project's S7 (low-rank input dependence), "s7paper" the form of the S7 paper's code
#: (full per-token B_k, C_k; :mod:`eventssm.models.s7paper`).
LAYER_KINDS = ("s5", "s7", "s7paper")


class RecurrenceTerms(NamedTuple):
    """The terms of ``x_k = Λ̄_k ⊙ x_{k−1} + B̄_k u_k``: ``Lambda_bar`` Λ̄_k and ``Bu_bar``
    B̄_k u_k, both ``(..., P)`` complex64."""

    Lambda_bar: jax.Array
    Bu_bar: jax.Array


class TokenTerms(NamedTuple):
    """The dt-free terms: ``rate`` with ``Λ̄_k = exp(rate_k · dt_k)`` (``(P,)`` when shared by
    every input, else ``(..., P)``) and ``Bu_bar`` B̄_k u_k ``(..., P)``, complex64."""

    rate: jax.Array
    Bu_bar: jax.Array


class RateTerms(NamedTuple):
    """:class:`TokenTerms` with the time steps they go with: ``rate`` ``(P,)`` or ``(B, L, P)``,
    ``dt`` ``(B, L)`` float32, ``Bu_bar`` ``(B, L, P)``; ``Λ̄_k = exp(rate_k · dt_k)``."""

    rate: jax.Array
    dt: jax.Array
    Bu_bar: jax.Array

    def decayed(self) -> RecurrenceTerms:
        """The same terms with ``Λ̄_k`` formed (:func:`decay`)."""
        return RecurrenceTerms(decay(self.rate, self.dt), self.Bu_bar)


# -- parameter initialisation helpers (S5 and S7) ----------------------------------------


def complex_param(z: jax.Array) -> jax.Array:
    """Store a complex array as float32 ``(..., 2)`` (real, imag) — optimisers see real leaves."""
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1).astype(jnp.float32)


def as_complex(p: jax.Array) -> jax.Array:
    """Inverse of :func:`complex_param`: ``(..., 2)`` float32 → ``(...)`` complex64."""
    return jax.lax.complex(p[..., 0], p[..., 1])


def random_fields(
    key: jax.Array, shapes: dict[str, tuple[int, ...]], uniform: frozenset[str] = frozenset()
) -> dict[str, jax.Array]:
    """Independent float32 random arrays from ONE ``jax.random.uniform`` draw.

    Names in ``uniform`` get U(0, 1) entries, all others standard normal ones (through the
    inverse CDF ``√2·erfinv(2v − 1)``, which is how ``jax.random.normal`` samples too). A single
    threefry call keeps the compiled initialiser small (each extra call costs ~1 s of XLA
    compile time on a small CPU).
    """
    sizes = {k: math.prod(s) for k, s in shapes.items()}
    v = jax.random.uniform(key, (sum(sizes.values()),), jnp.float32, 1e-7, 1.0 - 1e-7)
    out, start = {}, 0
    for name, shape in shapes.items():
        part = v[start : start + sizes[name]].reshape(shape)
        start += sizes[name]
        out[name] = part if name in uniform else math.sqrt(2.0) * jax.scipy.special.erfinv(
            2.0 * part - 1.0
        )
    return out


def init_B_C(
    b: jax.Array, c: jax.Array, d_model: int, d_state: int, V: np.ndarray, V_inv: np.ndarray
) -> tuple[jax.Array, jax.Array]:
    """S5's B/C initialisation in the HiPPO eigenbasis (S5, Smith et al. 2023).

    ``b`` ``(N, H)`` and ``c`` ``(2, H, N)`` are standard normal draws. ``B = b/√H`` (lecun
    normal, variance ``1/H``) is mapped to ``B̃ = V⁻¹ B`` ``(P, H)``; ``C`` ``(H, N)`` complex
    with variance ``1/N`` per real and imaginary part is mapped to ``C̃ = C V`` ``(H, P)``.
    Returns ``(B̃, C̃)`` complex64; ``V`` ``(N, P)`` and ``V_inv`` ``(P, N)`` are constants.
    """
    b = b / math.sqrt(d_model)
    c = c / math.sqrt(d_state)
    b_tilde = jnp.asarray(V_inv, jnp.complex64) @ b.astype(jnp.complex64)
    c_tilde = jax.lax.complex(c[0], c[1]) @ jnp.asarray(V, jnp.complex64)
    return b_tilde, c_tilde


def log_uniform(v: jax.Array, lo: float, hi: float) -> jax.Array:
    """Map U(0, 1) draws ``v`` to ``log x`` with ``log x ~ U[log lo, log hi]`` (float32)."""
    return math.log(lo) + v * (math.log(hi) - math.log(lo))


# -- running the recurrence ------------------------------------------------------------


def check_inputs(u: jax.Array, dt: jax.Array, d_model: int) -> None:
    """Validate ``u`` ``(B, L, H)`` and ``dt`` ``(B, L)`` shapes (ValueError otherwise)."""
    if u.ndim != 3 or u.shape[-1] != d_model:
        raise ValueError(f"u must have shape (B, L, {d_model}), got {u.shape}")
    if dt.shape != u.shape[:2]:
        raise ValueError(f"dt must have shape {u.shape[:2]} (B, L), got {dt.shape}")


def decay(rate: jax.Array, dt: jax.Array) -> jax.Array:
    """``Λ̄_k = exp(rate_k · dt_k)``: ``rate`` ``(P,)`` or ``(..., P)`` complex, ``dt`` ``(...)``
    → ``(..., P)`` complex64 (``dt_k = 0`` gives 1: the state is kept)."""
    return jnp.exp(rate * jnp.asarray(dt, jnp.float32)[..., None]).astype(jnp.complex64)


def run_recurrence(
    Lambda_bar: jax.Array, Bu_bar: jax.Array, x0: jax.Array | None, method: str
) -> tuple[jax.Array, jax.Array]:
    """Scan batched ``(B, L, P)`` terms along L; returns ``x`` ``(B, L, P)``, ``x_last`` ``(B, P)``."""
    batch, _, p = Bu_bar.shape
    if x0 is None:
        x0 = jnp.zeros((batch, p), jnp.complex64)
    elif x0.shape != (batch, p):
        raise ValueError(f"x0 must have shape {(batch, p)}, got {x0.shape}")
    h, h_last = linear_recurrence(
        jnp.swapaxes(Lambda_bar, 0, 1), jnp.swapaxes(Bu_bar, 0, 1), x0.astype(jnp.complex64),
        method=method,
    )
    return jnp.swapaxes(h, 0, 1), h_last


class DiagonalSSM(nnx.Module):
    """What S5SSM and S7SSM share: a diagonal complex recurrence run over sequences or events.

    Subclasses set ``d_model`` (H), ``state_size`` (P), ``scan_method``, the parameters ``B``
    ``(P, H, 2)`` and ``C`` ``(H, P, 2)`` (B̃, C̃ as real/imag pairs) and define
    :meth:`recurrence_terms` and :meth:`output`; this class provides the sequence call, the
    zero state and the per-event step from them. A subclass whose ``B̄_k u_k`` does not depend
    on ``dt_k`` sets ``has_token_terms`` and defines :meth:`token_terms`.
    """

    d_model: int
    state_size: int
    scan_method: str
    #: True when :meth:`token_terms` is available (``B̄_k u_k`` does not depend on ``dt_k``).
    has_token_terms: bool = False

    # -- what a layer defines ------------------------------------------------------------
    def recurrence_terms(self, u: jax.Array, dt: jax.Array) -> RecurrenceTerms:
        """``(Λ̄_k, B̄_k u_k)`` for inputs ``u`` ``(..., H)`` and ``dt`` ``(...)``: ``(..., P)``."""
        raise NotImplementedError

    def output(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """Read-out ``y`` ``(..., H)`` of states ``x`` ``(..., P)`` and inputs ``u`` ``(..., H)``."""
        raise NotImplementedError

    def token_terms(self, u: jax.Array) -> TokenTerms:
        """The dt-free terms ``(rate, B̄ u)`` for inputs ``u`` ``(..., H)`` (see :class:`TokenTerms`)."""
        raise ValueError(f"{type(self).__name__} has no dt-free token terms")

    # -- the static products of B̃ (P, H, 2) and C̃ (H, P, 2), stored as real/imag pairs ----
    def B_u(self, u: jax.Array) -> jax.Array:
        """``B̃ u``: ``u`` ``(..., H)`` float32 → ``(..., P)`` complex64."""
        B = self.B[...]
        return jax.lax.complex(u @ B[..., 0].T, u @ B[..., 1].T)

    def re_C_x(self, x: jax.Array) -> jax.Array:
        """``Re(C̃ x)``: ``x`` ``(..., P)`` complex → ``(..., H)`` float32."""
        C = self.C[...]
        return jnp.real(x) @ C[..., 0].T - jnp.imag(x) @ C[..., 1].T

    # -- public interface ----------------------------------------------------------------
    def __call__(
        self, u: jax.Array, dt: jax.Array, x0: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Run the layer over whole sequences.

        Args:
            u: ``(B, L, H)`` float32 inputs. dt: ``(B, L)`` float32 elapsed time per event
                (0 on right padding, together with ``u = 0``). x0: ``(B, P)`` complex64 or None.

        Returns:
            ``y`` ``(B, L, H)`` float32 and ``x_last`` ``(B, P)`` complex64 (state after the
            last position — padded positions with ``dt = 0, u = 0`` leave it unchanged).
        """
        u = jnp.asarray(u, jnp.float32)
        dt = jnp.asarray(dt, jnp.float32)
        check_inputs(u, dt, self.d_model)
        Lambda_bar, Bu_bar = self.recurrence_terms(u, dt)
        x, x_last = run_recurrence(Lambda_bar, Bu_bar, x0, self.scan_method)
        return self.output(x, u), x_last

    def zero_state(self, batch: int) -> jax.Array:
        """Zero state ``(batch, P)`` complex64 (before the first event)."""
        return jnp.zeros((batch, self.state_size), jnp.complex64)

    def step(self, x: jax.Array, u_k: jax.Array, dt_k: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One event: ``x`` ``(B, P)``, ``u_k`` ``(B, H)``, ``dt_k`` ``(B,)`` → ``(x_k, y_k (B, H))``."""
        Lambda_bar, Bu_bar = self.recurrence_terms(u_k, jnp.asarray(dt_k, jnp.float32))
        x = Lambda_bar * x + Bu_bar
        return x, self.output(x, u_k)


@dataclasses.dataclass(frozen=True)
class SSMConfig:
    """The arguments of one SSM layer (:class:`~eventssm.models.s5.S5SSM` or
    :class:`~eventssm.models.s7.S7SSM`), passed as one value by blocks and the classifier.

    Fields:
        layer: "s5", "s7" or "s7paper". d_model: H. d_state: N before conjugate-symmetry halving.
        blocks: S5 HiPPO-N blocks (S5 only). rank: r of the input-dependent terms ("s7" only;
            "s7paper" uses the rank ⌈H/16⌉ of the paper's code for its step).
        conj_sym: keep one eigenvalue per conjugate pair.
        discretization: "async", "zoh" or "dirac" (S5 only; both S7 forms are always "async").
        dt_min, dt_max: range of the initial step δ.
        step_rescale: multiplies δ (S5 only).
        scan_method: :class:`~eventssm.models.scan.ScanMethod` value of the sequence call.
    """

    layer: str
    d_model: int
    d_state: int
    blocks: int = 1
    rank: int = 4
    conj_sym: bool = True
    discretization: str = "async"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    step_rescale: float = 1.0
    scan_method: str = "associative"

    def __post_init__(self):
        if self.layer not in LAYER_KINDS:
            raise ValueError(f"layer must be one of {LAYER_KINDS}, got {self.layer!r}")


def make_ssm(config: SSMConfig, *, rngs: nnx.Rngs) -> DiagonalSSM:
    """Build the S5 (``"s5"``), S7 (``"s7"``) or paper-form S7 (``"s7paper"``) layer of ``config``."""
    if config.layer == "s5":
        from eventssm.models.s5 import S5SSM

        return S5SSM(
            config.d_model, config.d_state, blocks=config.blocks, conj_sym=config.conj_sym,
            discretization=config.discretization, dt_min=config.dt_min, dt_max=config.dt_max,
            step_rescale=config.step_rescale, scan_method=config.scan_method, rngs=rngs,
        )
    if config.layer == "s7paper":
        from eventssm.models.s7paper import S7PaperSSM

        return S7PaperSSM(
            config.d_model, config.d_state, conj_sym=config.conj_sym, dt_min=config.dt_min,
            dt_max=config.dt_max, scan_method=config.scan_method, rngs=rngs,
        )
    from eventssm.models.s7 import S7SSM

    return S7SSM(
        config.d_model, config.d_state, rank=config.rank, conj_sym=config.conj_sym,
        dt_min=config.dt_min, dt_max=config.dt_max, scan_method=config.scan_method, rngs=rngs,
    )

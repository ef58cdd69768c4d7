"""S7 layer in the form of the paper's released code (``--layer s7paper``), for event streams.

The S7 paper (Soydan et al. 2024, arXiv 2410.03464) makes the SSM input-dependent; its
released code (github.com/TaylanSoydan/S7, ``event_ssm/ssm.py``, class ``S7SSM`` with
``input_dependent=True``, ``separate_dbc`` false, ``bidirectional`` false) does it with ONE
dense projection of every token ``x_proj: ℝ^H → ℝ^{R + 2PH + 2PH}`` (with bias) split into a
rank-R step code and the real/imaginary parts of full matrices ``B_k`` and ``C_k``, and a second
dense ``step_proj: ℝ^R → ℝ^P``, with ``R = dt_rank = ⌈H/16⌉``. Per event k, ``u_k ∈ ℝ^H``,
``x_k ∈ ℂ^P``:

    B_k = B_0 + W_B u_k              W_B ∈ ℂ^{P×H×H} (B_k[p, h] = Σ_j W_B[p, h, j] u_k[j]),
                                     B_0 ∈ ℂ^{P×H} (the bias of x_proj)
    C_k = C_0 + W_C u_k              W_C ∈ ℂ^{H×P×H}, C_0 ∈ ℂ^{H×P}
    Δ_k = softplus(W_Δ↑ (W_Δ↓ u_k) + b_Δ)
                                     W_Δ↓ ∈ ℝ^{R×H}, W_Δ↑ ∈ ℝ^{P×R}, b_Δ ∈ ℝ^P
    λ   = −1/(a w² + b) + i·Lambda_im   w, Lambda_im ∈ ℝ^P   (input-independent, as the code)

    Λ̄_k = exp(λ Δ_k dt_k),   B̄_k = ((exp(λ Δ_k) − 1)/λ) B_k     (EventSSM "async", the
                                                                      project's event time)
    x_k = Λ̄_k ⊙ x_{k−1} + B̄_k u_k
    y_k = Re(C_k x_k)  (×2 with conjugate symmetry)  + D ⊙ u_k      D ∈ ℝ^H

So ``B̄_k u_k`` is quadratic in ``u_k`` and ``y_k`` bilinear in ``(x_k, u_k)``: O(P·H²) work per
event (the project's :class:`~eventssm.models.s7.S7SSM` replaces the full projections by
rank-r corrections, O(PH + (P + H) r)). The fast path never forms ``B_k`` or ``C_k``:

    B_k u_k = B_0 u_k + W_B : (u_k ⊗ u_k)            (one (H²) × (P) complex product)
    Re(C_k x_k) = Re(C_0 x_k) + W_C^re : (Re x_k ⊗ u_k) − W_C^im : (Im x_k ⊗ u_k)

and :func:`s7paper_reference` is the plain float64 loop over k that forms them.

Where this layer differs from the released code, on purpose:

* Λ: the stable reparameterization of the project's S7 (``Re λ = −1/(a w² + b)``, a = 1,
  b = 0.5, the code's defaults; |Λ̄_k| ≤ 1 for every input and parameter, see
  :mod:`eventssm.models.s7`). The code's ``stablessm_a`` applies a complex square-root formula to
  complex parameters, and its DVS Gesture config (``configs/model/dvs/small.yaml``) actually sets
  ``stablessm_a: false, clip_eigs: true`` (S5's clip).
* the bias of the step code in ``x_proj`` is left out: ``W_Δ↑ (W_Δ↓ u + c) + b_Δ`` is the same
  function family as ``W_Δ↑ W_Δ↓ u + b_Δ`` (R parameters fewer).
* with pooling, ``C_k`` is read at the window's LAST event (the project's read-out, DESIGN.md §4);
  the code reads it at the first (``C_projected[::stride]``).
* the optimizer groups: ``w``, ``Lambda_im`` and the step (``W_step``, ``b_step``) are
  :class:`~eventssm.models.params.SSMParam` (ssm_lr, no weight decay), the projections ordinary
  parameters; the code trains its projections at the regular learning rate without weight decay.

Initialisation (as the code): ``W_B``, ``W_C``, ``W_Δ↓`` lecun-normal (std ``H^{-½}``, fan-in H),
the biases ``B_0``, ``C_0`` zero (flax ``Dense``), ``W_Δ↑`` uniform in ``±R^{-½}``,
``b_Δ = softplus⁻¹(δ_0)`` with ``δ_0`` log-uniform in ``[dt_min, dt_max]``, ``D ~ N(0, 1)``;
``w`` and ``Lambda_im`` reproduce S5's HiPPO-N eigenvalues (``Re λ = −½``) as the project's S7.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eventssm.models.discretization import phi1
from eventssm.models.init import block_hippo_n
from eventssm.models.params import SSMParam
from eventssm.models.s7 import StableSelectiveSSM, hippo_w0, stable_lambda
from eventssm.models.ssm import (
    RecurrenceTerms,
    TokenTerms,
    decay,
    log_uniform,
    random_fields,
)

__all__ = ["S7PaperSSM", "dt_rank", "s7paper_param_count", "s7paper_reference"]


def dt_rank(d_model: int) -> int:
    """Rank R of the step projection: ``⌈H/16⌉`` (the S7 code's ``dt_rank``)."""
    return math.ceil(d_model / 16)


def s7paper_param_count(d_model: int, state_size: int) -> int:
    """Scalars of an :class:`S7PaperSSM` with H = d_model, P = state_size (R = ⌈H/16⌉).

    ``4PH²`` (complex ``W_B``, ``W_C``) + ``4PH`` (complex ``B_0``, ``C_0``) + ``R(H + P)``
    (``W_Δ↓``, ``W_Δ↑``) + ``3P`` (``w``, ``Lambda_im``, ``b_Δ``) + ``H`` (``D``).
    """
    h, p, r = d_model, state_size, dt_rank(d_model)
    return 4 * p * h * h + 4 * p * h + r * (h + p) + 3 * p + h


@functools.partial(jax.jit, static_argnums=tuple(range(1, 8)))
def _init_params(
    key: jax.Array, d_model: int, d_state: int, conj_sym: bool,
    dt_min: float, dt_max: float, a: float, b: float,
) -> dict[str, jax.Array]:
    """All parameters from one key (see :class:`S7PaperSSM` for the initialisation)."""
    lam, _, _ = block_hippo_n(d_state, 1, conj_sym)
    p, h, r = lam.shape[0], d_model, dt_rank(d_model)
    f = random_fields(
        key,
        {"W_B": (p, h, h, 2), "W_C": (h, p, h, 2), "W_step_in": (r, h), "W_step": (p, r),
         "D": (h,), "step": (p,)},
        uniform=frozenset({"W_step", "step"}),
    )
    step0 = jnp.exp(log_uniform(f["step"], dt_min, dt_max))
    return {
        "Lambda_w": jnp.full((p,), hippo_w0(float(lam.real.mean()), a, b), jnp.float32),
        "Lambda_im": jnp.asarray(lam.imag, jnp.float32),
        "B": jnp.zeros((p, h, 2), jnp.float32),
        "W_B": f["W_B"] / math.sqrt(h),
        "C": jnp.zeros((h, p, 2), jnp.float32),
        "W_C": f["W_C"] / math.sqrt(h),
        "W_step_in": f["W_step_in"] / math.sqrt(h),
        "W_step": (2.0 * f["W_step"] - 1.0) / math.sqrt(r),
        "b_step": step0 + jnp.log(-jnp.expm1(-step0)),
        "D": f["D"],
    }


class S7PaperSSM(StableSelectiveSSM):
    """S7 as the paper's code defines it: full per-token ``B_k``, ``C_k``; rank-⌈H/16⌉ step Δ_k.

    Args (those of :class:`~eventssm.models.s7.StableSelectiveSSM`):
        d_model: H. d_state: N before conjugate-symmetry halving (``P = N/2`` if conj_sym).
        conj_sym, dt_min, dt_max (range of the initial step ``softplus(b_Δ)``), a, b,
        scan_method, rngs: see the base class.

    Parameters: ``Lambda_w`` (w) ``(P,)``, ``Lambda_im`` ``(P,)``, ``B`` (B_0) ``(P, H, 2)``,
    ``W_B`` ``(P, H, H, 2)``, ``C`` (C_0) ``(H, P, 2)``, ``W_C`` ``(H, P, H, 2)``,
    ``W_step_in`` (W_Δ↓) ``(R, H)``, ``W_step`` (W_Δ↑) ``(P, R)``, ``b_step`` (b_Δ) ``(P,)``,
    ``D`` ``(H,)`` — count :func:`s7paper_param_count`. Complex tensors are (real, imag) pairs.
    """

    def _init_parameters(self, key: jax.Array, dt_min: float, dt_max: float) -> None:
        self.rank = dt_rank(self.d_model)
        p = _init_params(key, self.d_model, self.d_state, self.conj_sym, dt_min, dt_max, self.a, self.b)
        self.Lambda_w = SSMParam(p["Lambda_w"])
        self.Lambda_im = SSMParam(p["Lambda_im"])
        self.B = nnx.Param(p["B"])
        self.W_B = nnx.Param(p["W_B"])
        self.C = nnx.Param(p["C"])
        self.W_C = nnx.Param(p["W_C"])
        self.W_step_in = nnx.Param(p["W_step_in"])
        self.W_step = SSMParam(p["W_step"])
        self.b_step = SSMParam(p["b_step"])
        self.D = nnx.Param(p["D"])

    def Lambda(self) -> jax.Array:
        """``λ = −1/(a w² + b) + i·Lambda_im`` ``(P,)`` complex64 (the same for every event)."""
        return stable_lambda(self.Lambda_w[...], self.Lambda_im[...], self.a, self.b)

    def step_size(self, u: jax.Array) -> jax.Array:
        """``Δ_k = softplus(W_Δ↑ W_Δ↓ u_k + b_Δ)``: ``(..., H)`` → ``(..., P)`` float32, ≥ 0."""
        z = jnp.asarray(u, jnp.float32) @ self.W_step_in[...].T
        return jax.nn.softplus(z @ self.W_step[...].T + self.b_step[...])

    has_token_terms = True  # B̄_k u_k depends on u_k only

    def token_terms(self, u: jax.Array) -> TokenTerms:
        """``(λ Δ_k, B̄_k u_k)``, both ``(..., P)`` complex64, for inputs ``u`` ``(..., H)``.

        ``B̄_k u_k = γ_k ⊙ (B_k u_k)`` with ``γ_k = (exp(λΔ_k) − 1)/λ`` and
        ``B_k u_k = B_0 u_k + W_B : (u_k ⊗ u_k)``.
        """
        u = jnp.asarray(u, jnp.float32)
        step = self.step_size(u)
        rate = self.Lambda() * step
        uu = (u[..., :, None] * u[..., None, :]).reshape(*u.shape[:-1], -1)  # (..., H²)
        W = self.W_B[...].reshape(self.state_size, -1, 2)  # (P, H², 2)
        Bu = self.B_u(u) + jax.lax.complex(uu @ W[..., 0].T, uu @ W[..., 1].T)
        return TokenTerms(rate.astype(jnp.complex64), (step * phi1(rate) * Bu).astype(jnp.complex64))

    def recurrence_terms(self, u: jax.Array, dt: jax.Array) -> RecurrenceTerms:
        """``(Λ̄_k, B̄_k u_k)`` for ``u`` ``(..., H)`` and ``dt`` ``(...)``: complex64 ``(..., P)``."""
        rate, Bu = self.token_terms(u)
        return RecurrenceTerms(decay(rate, dt), Bu)

    def output(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """``y_k = Re(C_k x_k) (×2 if conj_sym) + D ⊙ u_k``; ``x`` ``(..., P)``, ``u`` ``(..., H)``."""
        u = jnp.asarray(u, jnp.float32)
        lead = u.shape[:-1]
        xu_re = (jnp.real(x)[..., :, None] * u[..., None, :]).reshape(*lead, -1)  # (..., P·H)
        xu_im = (jnp.imag(x)[..., :, None] * u[..., None, :]).reshape(*lead, -1)
        W = self.W_C[...].reshape(self.d_model, -1, 2)  # (H, P·H, 2)
        y = self.re_C_x(x) + xu_re @ W[..., 0].T - xu_im @ W[..., 1].T
        if self.conj_sym:
            y = 2.0 * y
        return y + self.D[...] * u


def s7paper_reference(
    layer: S7PaperSSM, u: np.ndarray, dt: np.ndarray, x0: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Plain float64 loop over events that FORMS ``B_k`` (P×H) and ``C_k`` (H×P) for every k.

    Args:
        layer: the layer whose parameters are used. u: ``(B, L, H)``. dt: ``(B, L)``.
        x0: ``(B, P)`` state before the first event, or None (zeros).
    Returns:
        ``y`` ``(B, L, H)`` float64 and the last state ``(B, P)`` complex128.
    """
    p = {k: np.asarray(v[...], np.float64) for k, v in nnx.state(layer, nnx.Param).items()}
    cplx = lambda t: t[..., 0] + 1j * t[..., 1]  # noqa: E731
    B0, W_B, C0, W_C = cplx(p["B"]), cplx(p["W_B"]), cplx(p["C"]), cplx(p["W_C"])
    lam = -1.0 / (layer.a * p["Lambda_w"] ** 2 + layer.b) + 1j * p["Lambda_im"]
    u = np.asarray(u, np.float64)
    n_batch, length, _ = u.shape
    x = np.zeros((n_batch, layer.state_size), np.complex128)
    if x0 is not None:
        x[:] = np.asarray(x0, np.complex128)
    ys = np.zeros(u.shape)
    for i in range(n_batch):
        for k in range(length):
            uk = u[i, k]
            B_k = B0 + W_B @ uk  # (P, H)
            C_k = C0 + W_C @ uk  # (H, P)
            delta = np.logaddexp(0.0, p["W_step"] @ (p["W_step_in"] @ uk) + p["b_step"])
            gamma = (np.exp(lam * delta) - 1.0) / lam
            x[i] = np.exp(lam * delta * dt[i, k]) * x[i] + gamma * (B_k @ uk)
            ys[i, k] = (2.0 if layer.conj_sym else 1.0) * np.real(C_k @ x[i]) + p["D"] * uk
    return ys, x

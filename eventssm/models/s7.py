"""S7 selective state-space layer for event streams (Flax NNX).

S7 (Soydan et al. 2024, arXiv 2410.03464) makes every S5 matrix depend on the current input
and keeps the recurrence stable through a reparameterization of the decay. Per event k, with
inputs ``u_k ∈ ℝ^H``, state ``x_k ∈ ℂ^P`` and a small rank ``r``:

    z_k = V u_k                                           V ∈ ℝ^{r×H}   (shared selection code)
    w_k = w_0 + U_w z_k                                   w_0 ∈ ℝ^P, U_w ∈ ℝ^{P×r}
    λ_k = −1/(a w_k² + b) + i·Lambda_im                   (stable reparameterization)
    δ_k = softplus(U_δ z_k + b_δ)                         U_δ ∈ ℝ^{P×r}, b_δ ∈ ℝ^P
    B_k = B_0 + U_B diag(z_k) W_Bᵀ                        B_0 ∈ ℂ^{P×H}, U_B ∈ ℂ^{P×r}, W_B ∈ ℝ^{H×r}
    C_k = C_0 + W_C diag(z_k) U_Cᵀ                        C_0 ∈ ℂ^{H×P}, W_C ∈ ℂ^{H×r}, U_C ∈ ℂ^{P×r}
    D_k = D_0 + W_D z_k                                   D_0 ∈ ℝ^H, W_D ∈ ℝ^{H×r}

    Λ̄_k = exp(λ_k δ_k dt_k),   B̄_k = ((exp(λ_k δ_k) − 1)/λ_k) B_k      (EventSSM "async")
    x_k = Λ̄_k ⊙ x_{k−1} + B̄_k u_k
    y_k = Re(C_k x_k) (×2 with conjugate symmetry) + D_k ⊙ u_k

The selective step is ``δ_k = softplus(W_δ u_k + b_δ)`` with the rank-r factorisation
``W_δ = U_δ V`` (as Mamba's ``dt_rank`` projection). The matrices ``B_k``, ``C_k`` are never
formed:

    B_k u_k = B_0 u_k + U_B (z_k ⊙ (W_Bᵀ u_k)),     C_k x_k = C_0 x_k + W_C (z_k ⊙ (U_Cᵀ x_k)),

so the input dependence costs O((P + H)·r) per event on top of the static ``B_0 u_k`` and
``C_0 x_k`` (O(P·H)): ``V u`` (rH), ``U_w z``, ``U_δ z`` (Pr each), ``W_Bᵀ u`` (Hr), ``U_B(·)``
(Pr), ``U_Cᵀ x`` (Pr), ``W_C(·)`` (Hr), ``W_D z`` (Hr).

Stability: ``a, b > 0`` give ``Re λ_k = −1/(a w_k² + b) ∈ [−1/b, 0)`` for every real ``w_k``,
and ``δ_k ≥ 0``, ``dt_k ≥ 0``, so ``|Λ̄_k| = exp(Re λ_k δ_k dt_k) ≤ 1`` for every input and
every parameter value, with ``< 1`` whenever ``δ_k dt_k > 0``. This is the continuous-time
form of the paper's discrete reparameterization ``f(w) = 1 − 1/(a w² + b)`` (S7 paper; StableSSM,
Wang & Li 2024, arXiv 2311.14495, whose "best" choice is ``1 − 1/(w² + 0.5)``). The defaults
``a = 1.0``, ``b = 0.5`` are those of the official S7 code (``S7SSM.a``, ``S7SSM.b``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from eventssm.models.discretization import phi1
from eventssm.models.init import block_hippo_n
from eventssm.models.params import SSMParam
from eventssm.models.scan import ScanMethod
from eventssm.models.ssm import (
    DiagonalSSM,
    RecurrenceTerms,
    TokenTerms,
    as_complex,
    complex_param,
    decay,
    init_B_C,
    log_uniform,
    random_fields,
)

__all__ = ["S7SSM", "check_s7_args", "hippo_w0", "s7_param_count", "stable_lambda"]


def check_s7_args(a: float, b: float, dt_min: float, dt_max: float) -> None:
    """ValueError unless ``a, b > 0`` (stable reparameterization) and ``0 < dt_min <= dt_max``."""
    if not (a > 0 and b > 0):
        raise ValueError(f"stable reparameterization needs a > 0 and b > 0, got {a}, {b}")
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")


def hippo_w0(lam_re: float, a: float, b: float) -> float:
    """``w_0`` with ``−1/(a w_0² + b) = lam_re`` (HiPPO-N: −½), clamped at ``w_0 = 0`` (−1/b)."""
    return math.sqrt(max((-1.0 / lam_re - b) / a, 0.0))


def stable_lambda(w: jax.Array, lambda_im: jax.Array, a: float, b: float) -> jax.Array:
    """``λ = −1/(a w² + b) + i·lambda_im`` (complex64, ``Re λ ∈ [−1/b, 0)`` for every real w).

    ``w`` ``(..., P)`` and ``lambda_im`` ``(P,)`` broadcast together.
    """
    re = -1.0 / (a * jnp.square(w) + b)
    return jax.lax.complex(re, jnp.broadcast_to(lambda_im, re.shape))


def s7_param_count(d_model: int, state_size: int, rank: int) -> int:
    """Number of scalars in an :class:`S7SSM` with H = d_model, P = state_size, r = rank.

    ``4PH + 3P + H`` (``w_0``, ``Lambda_im``, ``b_δ``, complex ``B_0``/``C_0``, ``D_0``) plus
    ``r(5H + 6P)`` (``V``: rH, ``U_w``: Pr, ``U_δ``: Pr, ``U_B``: 2Pr, ``W_B``: Hr, ``U_C``: 2Pr,
    ``W_C``: 2Hr, ``W_D``: Hr).
    """
    h, p, r = d_model, state_size, rank
    return 4 * p * h + 3 * p + h + r * (5 * h + 6 * p)


@functools.partial(jax.jit, static_argnums=tuple(range(1, 9)))
def _init_s7_params(
    key: jax.Array, d_model: int, d_state: int, rank: int, conj_sym: bool,
    dt_min: float, dt_max: float, a: float, b: float,
) -> dict[str, jax.Array]:
    """All S7 parameters from one key (see :class:`S7SSM` for the initialisation)."""
    lam, v, v_inv = block_hippo_n(d_state, 1, conj_sym)
    p = lam.shape[0]
    r = random_fields(
        key,
        {
            "B": (d_state, d_model), "C": (2, d_model, d_state), "D": (d_model,),
            "V": (rank, d_model), "U_step": (p, rank), "W_B": (d_model, rank),
            "U_C": (p, rank, 2), "step": (p,),
        },
        uniform=frozenset({"U_step", "step"}),
    )
    b_tilde, c_tilde = init_B_C(r["B"], r["C"], d_model, d_state, v, v_inv)
    # w_0 such that −1/(a w_0² + b) = Re Λ_HiPPO (= −1/2), clamped at w_0 = 0 (Re λ = −1/b).
    w0 = hippo_w0(float(lam.real.mean()), a, b)
    # Mamba / official S7 step init: b_δ = softplus⁻¹(δ_0), δ_0 log-uniform in [dt_min, dt_max];
    # U_δ uniform in ±r^{-1/2}.
    step0 = jnp.exp(log_uniform(r["step"], dt_min, dt_max))
    zeros = functools.partial(jnp.zeros, dtype=jnp.float32)
    return {
        "Lambda_w": jnp.full((p,), w0, jnp.float32),
        "Lambda_im": jnp.asarray(lam.imag, jnp.float32),
        "V": r["V"] / math.sqrt(d_model),
        "U_w": zeros((p, rank)),
        "U_step": (2.0 * r["U_step"] - 1.0) / math.sqrt(rank),
        "b_step": step0 + jnp.log(-jnp.expm1(-step0)),
        "B": complex_param(b_tilde),
        "U_B": zeros((p, rank, 2)),
        "W_B": r["W_B"] / math.sqrt(d_model),
        "C": complex_param(c_tilde),
        "U_C": r["U_C"] / math.sqrt(2.0 * p),
        "W_C": zeros((d_model, rank, 2)),
        "D": r["D"],
        "W_D": zeros((d_model, rank)),
    }


class StableSelectiveSSM(DiagonalSSM):
    """The constructor both S7 forms share (:class:`S7SSM` and
    :class:`~eventssm.models.s7paper.S7PaperSSM`): it checks and stores the options of the stable
    reparameterization, then the subclass creates its parameters in
    ``_init_parameters(key, dt_min, dt_max)``.

    Args:
        d_model: H. d_state: N before conjugate-symmetry halving (``P = N/2`` if conj_sym).
        conj_sym: keep one eigenvalue per conjugate pair; output ``2·Re(C_k x_k)``.
        dt_min, dt_max: range of the initial step ``softplus(b)`` of the layer's step projection.
        a, b: stable reparameterization constants (> 0), ``Re λ = −1/(a w² + b)``.
        scan_method: :class:`~eventssm.models.scan.ScanMethod` value used by ``__call__``.
        rngs: ``nnx.Rngs`` (``params`` stream).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int,
        *,
        conj_sym: bool = True,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        a: float = 1.0,
        b: float = 0.5,
        scan_method: str = "associative",
        rngs: nnx.Rngs,
    ):
        check_s7_args(a, b, dt_min, dt_max)
        self.d_model = int(d_model)
        self.d_state = int(d_state)
        self.conj_sym = bool(conj_sym)
        self.a = float(a)
        self.b = float(b)
        self.scan_method = ScanMethod(scan_method).value
        self.state_size = int(block_hippo_n(self.d_state, 1, self.conj_sym)[0].shape[0])
        self._init_parameters(rngs.params(), float(dt_min), float(dt_max))

    def _init_parameters(self, key: jax.Array, dt_min: float, dt_max: float) -> None:
        """Create the layer's parameters (each form has its own)."""
        raise NotImplementedError(f"{type(self).__name__} must define _init_parameters")


class S7SSM(StableSelectiveSSM):
    """S7 selective SSM (input-dependent Λ_k, B_k, C_k, D_k, δ_k), batched over a leading axis.

    Args:
        d_model: H. d_state: N before conjugate-symmetry halving (``P = N/2`` if conj_sym).
        rank: r, rank of the input-dependent corrections (cost O((P + H)·r) per event).
        **options: conj_sym, dt_min, dt_max (range of the initial selective step
            ``softplus(b_δ)``), a, b, scan_method, rngs: see :class:`StableSelectiveSSM`.

    Parameters: ``Lambda_w`` (w_0, ``(P,)``), ``Lambda_im`` ``(P,)``, ``V`` ``(r, H)``,
    ``U_w`` ``(P, r)``, ``U_step`` ``(P, r)``, ``b_step`` ``(P,)``, ``B`` ``(P, H, 2)``,
    ``U_B`` ``(P, r, 2)``, ``W_B`` ``(H, r)``, ``C`` ``(H, P, 2)``, ``U_C`` ``(P, r, 2)``,
    ``W_C`` ``(H, r, 2)``, ``D`` ``(H,)``, ``W_D`` ``(H, r)`` — count :func:`s7_param_count`.

    Initialisation: ``w_0`` reproduces S5's HiPPO-N real part ``−½``, ``Lambda_im`` its
    imaginary parts, ``B_0``/``C_0``/``D_0`` as S5; ``U_w``, ``U_B``, ``W_C``, ``W_D`` start at 0
    (their partners ``W_B``, ``U_C``, ``V`` are random, so all receive gradients), so at
    initialisation only the selective step δ_k depends on the input.
    """

    def __init__(self, d_model: int, d_state: int, *, rank: int = 4, **options):
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.rank = int(rank)
        super().__init__(d_model, d_state, **options)

    def _init_parameters(self, key: jax.Array, dt_min: float, dt_max: float) -> None:
        p = _init_s7_params(
            key, self.d_model, self.d_state, self.rank, self.conj_sym, dt_min, dt_max, self.a, self.b,
        )
        self.Lambda_w = SSMParam(p["Lambda_w"])
        self.Lambda_im = SSMParam(p["Lambda_im"])
        self.V = nnx.Param(p["V"])
        self.U_w = SSMParam(p["U_w"])
        self.U_step = SSMParam(p["U_step"])
        self.b_step = SSMParam(p["b_step"])
        self.B = SSMParam(p["B"])
        self.U_B = nnx.Param(p["U_B"])
        self.W_B = nnx.Param(p["W_B"])
        self.C = nnx.Param(p["C"])
        self.U_C = nnx.Param(p["U_C"])
        self.W_C = nnx.Param(p["W_C"])
        self.D = nnx.Param(p["D"])
        self.W_D = nnx.Param(p["W_D"])

    # -- pieces shared by __call__ and step ---------------------------------------------
    def selection(self, u: jax.Array) -> jax.Array:
        """Selection code ``z_k = V u_k``: ``(..., H)`` → ``(..., r)`` float32."""
        return jnp.asarray(u, jnp.float32) @ self.V[...].T

    def continuous_params(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(λ_k, δ_k)`` from the selection code ``z`` ``(..., r)``: both ``(..., P)``.

        ``λ_k = −1/(a w_k² + b) + i·Lambda_im`` (complex64, ``Re λ_k < 0``),
        ``δ_k = softplus(U_δ z_k + b_δ) ≥ 0`` (float32).
        """
        w = self.Lambda_w[...] + z @ self.U_w[...].T
        lam = stable_lambda(w, self.Lambda_im[...], self.a, self.b)
        step = jax.nn.softplus(z @ self.U_step[...].T + self.b_step[...])
        return lam, step

    has_token_terms = True  # B̄_k u_k depends on u_k only (see token_terms)

    def token_terms(self, u: jax.Array) -> TokenTerms:
        """The dt-free parts of the recurrence: ``(λ_k δ_k, B̄_k u_k)``, ``Λ̄_k = exp(λ_k δ_k dt_k)``.

        Both depend on ``u_k`` alone, so for the first layer (``u_k`` a function of the token)
        they can be tabulated over the vocabulary once per call.

        Args:
            u: ``(..., H)`` float32 inputs.
        Returns:
            rate ``λ_k δ_k`` and ``B̄_k u_k = γ_k ⊙ (B_k u_k)``, both ``(..., P)`` complex64, with
            ``γ_k = (exp(λ_k δ_k) − 1)/λ_k``.
        """
        u = jnp.asarray(u, jnp.float32)
        z = self.selection(u)
        lam, step = self.continuous_params(z)
        rate = lam * step
        gamma = step * phi1(rate)  # (exp(λ δ) − 1)/λ
        Bu = self.B_u(u)
        Bu = Bu + (z * (u @ self.W_B[...])).astype(jnp.complex64) @ as_complex(self.U_B[...]).T
        return TokenTerms(rate.astype(jnp.complex64), (gamma * Bu).astype(jnp.complex64))

    def recurrence_terms(self, u: jax.Array, dt: jax.Array) -> RecurrenceTerms:
        """``(Λ̄_k, B̄_k u_k)`` for ``u`` ``(..., H)`` and ``dt`` ``(...)``: complex64 ``(..., P)``."""
        rate, Bu = self.token_terms(u)
        return RecurrenceTerms(decay(rate, dt), Bu)

    def output(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """``y_k = Re(C_k x_k) (×2 if conj_sym) + D_k ⊙ u_k``; ``x`` ``(..., P)``, ``u`` ``(..., H)``."""
        u = jnp.asarray(u, jnp.float32)
        z = self.selection(u)
        y = self.re_C_x(x)
        s = z * (x @ as_complex(self.U_C[...]))  # (..., r) complex
        W_C = self.W_C[...]
        y = y + jnp.real(s) @ W_C[..., 0].T - jnp.imag(s) @ W_C[..., 1].T
        if self.conj_sym:
            y = 2.0 * y
        return y + (self.D[...] + z @ self.W_D[...].T) * u

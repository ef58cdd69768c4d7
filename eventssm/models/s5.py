"""S5 state-space layer with event-time discretizations (Flax NNX).

Equations (S5: Smith et al. 2023, arXiv 2208.04933; asynchronous discretization: EventSSM,
Schöne et al. 2024, arXiv 2404.18508), for one sequence with L events, H features, P states:

    x_k = Λ̄_k ⊙ x_{k−1} + B̄ u_k                 x_k ∈ ℂ^P,  u_k ∈ ℝ^H
    y_k = Re(C̃ x_k) + D ⊙ u_k                    (2·Re(C̃ x_k) with conjugate symmetry)
    Λ̄_k = exp(Λ δ dt_k),   B̄ = ((exp(Λ δ) − 1)/Λ) B̃,   δ = step_rescale · exp(log_step)

with ``Λ = Lambda_re + i·Lambda_im`` (``(P,)``, real part clipped to ≤ −1e-4 as S5's
``clip_eigs`` so the recurrence can never grow), ``B̃`` ``(P, H)`` complex, ``C̃`` ``(H, P)``
complex, ``D`` ``(H,)`` real, ``log_step`` ``(P,)``. ``"zoh"`` and ``"dirac"`` replace the input
gain as listed in :mod:`eventssm.models.discretization`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from eventssm.models.discretization import DISCRETIZATIONS, discretize, phi1
from eventssm.models.init import block_hippo_n
from eventssm.models.params import SSMParam
from eventssm.models.scan import ScanMethod
from eventssm.models.ssm import (  # DiagonalSSM, decay: also importable from here
    DiagonalSSM,
    RecurrenceTerms,
    TokenTerms,
    complex_param,
    decay,
    init_B_C,
    log_uniform,
    random_fields,
)

__all__ = ["S5SSM", "DiagonalSSM", "decay"]

_MAX_RE_LAMBDA = -1e-4  # S5's clip_eigs bound on Re Λ


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6))
def _init_s5_params(
    key: jax.Array, d_model: int, d_state: int, blocks: int, conj_sym: bool,
    dt_min: float, dt_max: float,
) -> dict[str, jax.Array]:
    """All S5 parameters from one key (one compiled function, one random draw)."""
    lam, v, v_inv = block_hippo_n(d_state, blocks, conj_sym)
    p = lam.shape[0]
    r = random_fields(
        key,
        {"B": (d_state, d_model), "C": (2, d_model, d_state), "D": (d_model,), "step": (p,)},
        uniform=frozenset({"step"}),
    )
    b_tilde, c_tilde = init_B_C(r["B"], r["C"], d_model, d_state, v, v_inv)
    return {
        "Lambda_re": jnp.asarray(lam.real, jnp.float32),
        "Lambda_im": jnp.asarray(lam.imag, jnp.float32),
        "B": complex_param(b_tilde),
        "C": complex_param(c_tilde),
        "D": r["D"],
        "log_step": log_uniform(r["step"], dt_min, dt_max),
    }


class S5SSM(DiagonalSSM):
    """S5 SSM (MIMO, diagonal, complex) for event streams, batched over a leading axis.

    Args:
        d_model: H, input/output features.
        d_state: N, state size before conjugate-symmetry halving; the stored state has
            ``P = N/2`` complex entries when ``conj_sym`` else ``P = N``.
        blocks: J, number of HiPPO-N blocks on the diagonal (N divisible by J).
        conj_sym: keep one eigenvalue of every conjugate pair; output ``2·Re(C̃ x)``.
        discretization: ``"async"`` (default, EventSSM), ``"zoh"`` or ``"dirac"``.
        dt_min, dt_max: range of the log-uniform initial step ``δ = exp(log_step)``.
        step_rescale: multiplies δ (e.g. for pooled stages).
        scan_method: :class:`~eventssm.models.scan.ScanMethod` value for ``__call__``.
        rngs: ``nnx.Rngs`` (uses the ``params`` stream).

    Parameters (paper names): ``Lambda_re``, ``Lambda_im`` ``(P,)``; ``B`` ``(P, H, 2)`` and
    ``C`` ``(H, P, 2)`` (complex stored as real/imag pairs); ``D`` ``(H,)``; ``log_step`` ``(P,)``.
    Parameter count ``4·P·H + 3·P + H``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int,
        *,
        blocks: int = 1,
        conj_sym: bool = True,
        discretization: str = "async",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        step_rescale: float = 1.0,
        scan_method: str = "associative",
        rngs: nnx.Rngs,
    ):
        if discretization not in DISCRETIZATIONS:
            raise ValueError(
                f"unknown discretization {discretization!r}; expected one of {DISCRETIZATIONS}"
            )
        self.d_model = int(d_model)
        self.d_state = int(d_state)
        self.conj_sym = bool(conj_sym)
        self.discretization = str(discretization)
        self.step_rescale = float(step_rescale)
        self.scan_method = ScanMethod(scan_method).value
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        # validates d_state / blocks / conj_sym before any tracing
        self.state_size = int(block_hippo_n(self.d_state, blocks, self.conj_sym)[0].shape[0])
        p = _init_s5_params(
            rngs.params(), self.d_model, self.d_state, int(blocks), self.conj_sym,
            float(dt_min), float(dt_max),
        )
        self.Lambda_re = SSMParam(p["Lambda_re"])
        self.Lambda_im = SSMParam(p["Lambda_im"])
        self.B = SSMParam(p["B"])
        self.C = nnx.Param(p["C"])
        self.D = nnx.Param(p["D"])
        self.log_step = SSMParam(p["log_step"])

    # -- pieces shared by __call__ and step ---------------------------------------------
    def Lambda(self) -> jax.Array:
        """Continuous-time eigenvalues ``Λ`` ``(P,)`` complex64, ``Re Λ ≤ −1e-4``."""
        re = jnp.minimum(self.Lambda_re[...], _MAX_RE_LAMBDA)
        return jax.lax.complex(re, self.Lambda_im[...])

    @property
    def has_token_terms(self) -> bool:
        """True when ``B̄ u_k`` does not depend on ``dt_k`` ("async", "dirac"): see :meth:`token_terms`."""
        return self.discretization in ("async", "dirac")

    def token_terms(self, u: jax.Array) -> TokenTerms:
        """The dt-free parts of the recurrence: ``(Λδ, B̄ u)`` with ``Λ̄_k = exp(Λδ·dt_k)``.

        For "async" and "dirac" ``B̄ u_k`` depends on ``u_k`` only, so a table over the token
        vocabulary (``u`` = one row per token) can replace per-event products; :func:`decay`
        then gives ``Λ̄_k`` from the rate.

        Args:
            u: ``(..., H)`` float32 inputs.
        Returns:
            rate ``(P,)`` complex64 (the same for every input) and ``B̄ u`` ``(..., P)`` complex64.
        Raises:
            ValueError: for "zoh", whose ``B̄`` depends on ``dt_k``.
        """
        if not self.has_token_terms:
            raise ValueError(f"token_terms needs 'async' or 'dirac', not {self.discretization!r}")
        u = jnp.asarray(u, jnp.float32)
        step = self.step_rescale * jnp.exp(self.log_step[...])
        rate = self.Lambda() * step
        Bu = self.B_u(u)
        if self.discretization == "async":
            Bu = step * phi1(rate) * Bu
        return TokenTerms(rate.astype(jnp.complex64), Bu.astype(jnp.complex64))

    def recurrence_terms(self, u: jax.Array, dt: jax.Array) -> RecurrenceTerms:
        """``(Λ̄_k, B̄_k u_k)`` for inputs ``u`` ``(..., H)`` and ``dt`` ``(...)``.

        Returns two complex64 arrays of shape ``(..., P)``.
        """
        if self.has_token_terms:
            rate, Bu = self.token_terms(u)
            return RecurrenceTerms(decay(rate, dt), Bu)
        u = jnp.asarray(u, jnp.float32)
        step = self.step_rescale * jnp.exp(self.log_step[...])
        Lambda_bar, gamma = discretize(self.discretization, self.Lambda(), step, dt)
        Bu = self.B_u(u)
        return RecurrenceTerms(
            Lambda_bar.astype(jnp.complex64), (gamma * Bu).astype(jnp.complex64)
        )

    def output(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """``y = Re(C̃ x) (×2 if conj_sym) + D ⊙ u``; ``x`` ``(..., P)``, ``u`` ``(..., H)`` → ``(..., H)``."""
        y = self.re_C_x(x)
        if self.conj_sym:
            y = 2.0 * y
        return y + self.D[...] * jnp.asarray(u, jnp.float32)

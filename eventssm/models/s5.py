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
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eventssm.models.discretization import DISCRETIZATIONS, discretize, phi1
from eventssm.models.init import block_hippo_n
from eventssm.models.params import SSMParam
from eventssm.models.scan import ScanMethod, linear_recurrence

__all__ = ["S5SSM", "DiagonalSSM", "decay"]

_MAX_RE_LAMBDA = -1e-4  # S5's clip_eigs bound on Re Λ


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

    Subclasses set ``d_model`` (H), ``state_size`` (P), ``scan_method`` and define
    ``recurrence_terms(u, dt) -> (Λ̄_k, B̄_k u_k)`` and ``output(x, u) -> y``; this class
    provides the sequence call, the zero state and the per-event step from them.
    """

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

    def init_state(self, batch: int) -> jax.Array:
        """Zero state ``(batch, P)`` complex64."""
        return jnp.zeros((batch, self.state_size), jnp.complex64)

    def step(self, x: jax.Array, u_k: jax.Array, dt_k: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One event: ``x`` ``(B, P)``, ``u_k`` ``(B, H)``, ``dt_k`` ``(B,)`` → ``(x_k, y_k (B, H))``."""
        Lambda_bar, Bu_bar = self.recurrence_terms(u_k, jnp.asarray(dt_k, jnp.float32))
        x = Lambda_bar * x + Bu_bar
        return x, self.output(x, u_k)


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

    def token_terms(self, u: jax.Array) -> tuple[jax.Array, jax.Array]:
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
        B = self.B[...]
        Bu = jax.lax.complex(u @ B[..., 0].T, u @ B[..., 1].T)
        if self.discretization == "async":
            Bu = step * phi1(rate) * Bu
        return rate.astype(jnp.complex64), Bu.astype(jnp.complex64)

    def recurrence_terms(self, u: jax.Array, dt: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(Λ̄_k, B̄_k u_k)`` for inputs ``u`` ``(..., H)`` and ``dt`` ``(...)``.

        Returns two complex64 arrays of shape ``(..., P)``.
        """
        if self.has_token_terms:
            rate, Bu = self.token_terms(u)
            return decay(rate, dt), Bu
        u = jnp.asarray(u, jnp.float32)
        step = self.step_rescale * jnp.exp(self.log_step[...])
        Lambda_bar, gamma = discretize(self.discretization, self.Lambda(), step, dt)
        B = self.B[...]
        Bu = jax.lax.complex(u @ B[..., 0].T, u @ B[..., 1].T)
        return Lambda_bar.astype(jnp.complex64), (gamma * Bu).astype(jnp.complex64)

    def output(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """``y = Re(C̃ x) (×2 if conj_sym) + D ⊙ u``; ``x`` ``(..., P)``, ``u`` ``(..., H)`` → ``(..., H)``."""
        C = self.C[...]
        y = jnp.real(x) @ C[..., 0].T - jnp.imag(x) @ C[..., 1].T
        if self.conj_sym:
            y = 2.0 * y
        return y + self.D[...] * jnp.asarray(u, jnp.float32)

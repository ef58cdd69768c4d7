"""Discretizations of the diagonal continuous-time SSM ``x'(t) = Λ x(t) + B̃ u(t)``.

Symbols (paper notation): ``Λ`` complex diagonal state matrix, shape ``(P,)``; ``B̃`` complex
input matrix, shape ``(P, H)``; ``δ`` the learnable step ("step", shape ``(P,)`` or
broadcastable), ``dt_k`` the time since the previous event (EventSSM, Schöne et al. 2024,
arXiv 2404.18508). The discrete recurrence is ``x_k = Λ̄_k ⊙ x_{k−1} + B̄_k u_k``.

Every rule can be written with a per-state input gain ``γ`` so that ``B̄ u = γ ⊙ (B̃ u)``; the
layers use :func:`discretize` (which returns ``(Λ̄, γ)``) to avoid ever forming ``B̄``:

=========  =============================  ===================================
rule       ``Λ̄_k``                        ``γ_k``
=========  =============================  ===================================
zoh        ``exp(Λ δ dt_k)``              ``(exp(Λ δ dt_k) − 1) / Λ``
dirac      ``exp(Λ δ dt_k)``              ``1``
async      ``exp(Λ δ dt_k)``              ``(exp(Λ δ) − 1) / Λ`` (time-invariant)
=========  =============================  ===================================

ZOH is S5's rule (Smith et al. 2023, arXiv 2208.04933) with step ``δ dt_k``; "dirac"
treats each event as a Dirac impulse; "async" is EventSSM's asynchronous discretization: the
state decays over the real elapsed time ``dt_k`` but every event is injected with the same
ZOH normalisation ``(exp(Λ δ) − 1)/Λ`` of a unit-length step (EventSSM paper,
``discretize_async`` in the official event-ssm code). With ``dt_k = 0`` every rule gives
``Λ̄_k = 1``, and ``u_k = 0`` gives ``B̄_k u_k = 0``: padded positions leave the state unchanged.

``(exp(z) − 1)/Λ`` is evaluated as ``δ · φ(Λ δ)`` with ``φ(z) = expm1(z)/z`` (``φ(0) = 1``),
which is exact for tiny ``|Λ δ|`` and never divides by zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["DISCRETIZATIONS", "async_", "dirac", "discretize", "phi1", "zoh"]

DISCRETIZATIONS = ("async", "zoh", "dirac")


def phi1(z: jax.Array) -> jax.Array:
    """``φ(z) = (exp(z) − 1) / z`` with ``φ(0) = 1``, elementwise, real or complex, any shape.

    Uses ``expm1`` and a second-order Taylor series ``1 + z/2 + z²/6`` for ``|z| < 1e-4``
    (relative error < 1e-12 there); the ``where`` is written so that gradients stay finite.
    """
    z = jnp.asarray(z)
    small = jnp.abs(z) < 1e-4
    z_safe = jnp.where(small, jnp.ones_like(z), z)
    return jnp.where(small, 1 + z / 2 + z * z / 6, jnp.expm1(z_safe) / z_safe)


def zoh(Lambda: jax.Array, B_tilde: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Zero-order hold (S5): ``Λ̄ = exp(Λ Δ)``, ``B̄ = ((Λ̄ − 1)/Λ) B̃``.

    Args:
        Lambda: ``(P,)`` complex eigenvalues.
        B_tilde: ``(P, H)`` complex input matrix.
        step: ``Δ``, broadcastable to ``(..., P)`` (e.g. ``(P,)`` or per-token ``(L, P)``).

    Returns:
        ``Lambda_bar`` ``(..., P)`` complex and ``B_bar`` ``(..., P, H)`` complex.
    """
    z = Lambda * step
    return jnp.exp(z), (step * phi1(z))[..., None] * B_tilde


def dirac(Lambda: jax.Array, B_tilde: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Dirac-impulse input: ``Λ̄ = exp(Λ Δ)``, ``B̄ = B̃`` (broadcast to ``Λ̄``'s leading axes).

    Args and returns as :func:`zoh`: ``Lambda`` ``(P,)``, ``B_tilde`` ``(P, H)``, ``step``
    broadcastable to ``(..., P)`` → ``(..., P)``, ``(..., P, H)``.
    """
    Lambda_bar = jnp.exp(Lambda * step)
    return Lambda_bar, jnp.broadcast_to(B_tilde, (*Lambda_bar.shape, B_tilde.shape[-1]))


def async_(Lambda: jax.Array, step: jax.Array, dt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """EventSSM's asynchronous discretization.

    ``Λ̄_k = exp(Λ δ dt_k)`` and the time-invariant input normalisation
    ``γ = (exp(Λ δ) − 1)/Λ`` so that ``B̄ = γ[:, None] ⊙ B̃`` (the same for every event).

    Args:
        Lambda: ``(P,)`` complex (or ``(..., P)`` for input-dependent Λ_k).
        step: ``δ``, broadcastable to ``Lambda`` (``(P,)`` or ``(..., P)``), > 0.
        dt: elapsed time per event, shape ``(...)`` (e.g. ``(L,)`` or ``(B, L)``), ≥ 0, in the
            model's time unit; a trailing state axis is added internally.

    Returns:
        ``Lambda_bar`` of shape ``broadcast(dt[..., None], Lambda)`` and ``gamma`` of shape
        ``broadcast(Lambda, step)``, both complex.
    """
    z = Lambda * step
    return jnp.exp(z * jnp.asarray(dt)[..., None]), step * phi1(z)


def discretize(
    method: str, Lambda: jax.Array, step: jax.Array, dt: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per-event ``(Λ̄_k, γ_k)`` for any rule, so that ``x_k = Λ̄_k x_{k−1} + γ_k ⊙ (B̃ u_k)``.

    Args:
        method: ``"async"``, ``"zoh"`` or ``"dirac"``.
        Lambda: ``(P,)`` or ``(..., P)`` complex. step: ``δ`` broadcastable to ``Lambda``.
        dt: ``(...)`` elapsed times (a state axis is appended).

    Returns:
        ``Lambda_bar`` ``(..., P)`` and ``gamma`` (``(P,)`` for async, ``(..., P)`` for zoh,
        a scalar ``1`` for dirac), complex.
    """
    dt = jnp.asarray(dt)[..., None]
    if method == "async":
        z = Lambda * step
        return jnp.exp(z * dt), step * phi1(z)
    if method == "zoh":
        z = Lambda * step * dt
        return jnp.exp(z), step * dt * phi1(z)
    if method == "dirac":
        return jnp.exp(Lambda * step * dt), jnp.ones((), jnp.result_type(Lambda, 1j))
    raise ValueError(f"unknown discretization {method!r}; expected one of {DISCRETIZATIONS}")

"""HiPPO-based initialisation of diagonal SSMs (S5 style), in numpy float64.

HiPPO-LegS (Gu et al. 2020, "HiPPO: Recurrent Memory with Optimal Polynomial Projections",
arXiv 2008.07669) is the ``N × N`` matrix

    A_nk = −sqrt(2n+1) sqrt(2k+1)   (n > k),    A_nn = −(n+1),    A_nk = 0   (n < k).

It is normal plus low rank, ``A = S − p pᵀ`` with ``p_n = sqrt(n + 1/2)``, and its normal part
``S = A + p pᵀ = −½ I + skew-symmetric`` ("HiPPO-N"). S5 (Smith et al. 2023, arXiv 2208.04933,
parameterization and initialisation sections) initialises ``Λ`` with the eigenvalues of HiPPO-N: real parts ``−½`` and
imaginary parts from the skew-symmetric part, ``S = V diag(Λ) V*`` with ``V`` unitary; ``B`` and
``C`` are drawn in the original basis and mapped by ``V* B`` and ``C V``. With ``J`` blocks
(as S5 does), the HiPPO-N spectrum of size ``N/J`` is repeated on every diagonal block.
"""

from __future__ import annotations

import numpy as np

__all__ = ["block_hippo_n", "hippo_legs", "hippo_n"]


def hippo_legs(n: int) -> np.ndarray:
    """HiPPO-LegS matrix ``A``, shape ``(n, n)`` float64 (formula in the module docstring)."""
    q = np.sqrt(2 * np.arange(n) + 1.0)
    a = -np.tril(np.outer(q, q), k=-1)
    return a - np.diag(np.arange(n) + 1.0)


def hippo_n(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of the normal part of HiPPO-LegS.

    Returns:
        ``Lambda`` ``(n,)`` complex128 with ``Re Λ = −½`` and imaginary parts in ascending
        order (conjugate pairs ``±iω`` sit at mirrored positions, so the first ``n // 2``
        entries hold one member of every pair when ``n`` is even), and ``V`` ``(n, n)``
        complex128 unitary with ``S = V diag(Λ) V*``.
    """
    if n < 1:
        raise ValueError(f"HiPPO size must be >= 1, got {n}")
    p = np.sqrt(np.arange(n) + 0.5)
    s = hippo_legs(n) + np.outer(p, p)
    diag = np.diagonal(s).copy()
    skew = s - np.diag(diag)
    # −i·skew is Hermitian: skew = V diag(i ω) V* with real ω from eigh.
    omega, v = np.linalg.eigh(-1j * skew)
    return diag.mean() + 1j * omega, v


def block_hippo_n(
    state_size: int, blocks: int, conj_sym: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block-diagonal HiPPO-N initialisation (as in S5).

    Args:
        state_size: full state size ``N`` (before conjugate-symmetry halving).
        blocks: number ``J`` of diagonal blocks; ``N`` must be divisible by ``J``.
        conj_sym: keep one eigenvalue of every conjugate pair (block size must then be even).

    Returns:
        ``(Lambda, V, V_inv)``: ``Lambda`` ``(P,)`` complex128 with ``P = N/2`` if conj_sym
        else ``N``; ``V`` ``(N, P)`` the matching eigenvector columns (block diagonal) and
        ``V_inv = V*`` ``(P, N)``, so that ``B̃ = V_inv B`` and ``C̃ = C V``.
    """
    if blocks < 1 or state_size % blocks:
        raise ValueError(f"d_state={state_size} must be a positive multiple of blocks={blocks}")
    size = state_size // blocks
    if conj_sym and size % 2:
        raise ValueError(f"conj_sym needs an even block size, got d_state/blocks = {size}")
    lam, v = hippo_n(size)
    keep = size // 2 if conj_sym else size
    lam, v = lam[:keep], v[:, :keep]
    big_v = np.zeros((state_size, blocks * keep), np.complex128)
    for j in range(blocks):
        big_v[j * size : (j + 1) * size, j * keep : (j + 1) * keep] = v
    return np.tile(lam, blocks), big_v, big_v.conj().T

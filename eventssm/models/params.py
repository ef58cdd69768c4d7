"""Parameter kinds a layer declares, which the optimizer reads (no matching by name).

:class:`SSMParam` marks the parameters of the state-space dynamics: eigenvalues, the input
matrix, step sizes and whatever makes them input-dependent. The S5 recipe trains them with
their own (lower) learning rate and no weight decay (Smith et al. 2023, arXiv 2208.04933,
§B.1: "Λ, B̃ and Δ ... no weight decay"); the S7 code does the same for its decay and
step parameters. Every other parameter is an ordinary ``nnx.Param`` (AdamW, weight decay).
"""

from __future__ import annotations

from flax import nnx


class SSMParam(nnx.Param):
    """A parameter of the SSM dynamics (SSM optimizer group: ``ssm_lr``, no weight decay)."""

"""State-space sequence models for event streams (JAX + Flax NNX).

Core pieces owned here: :mod:`~eventssm.models.scan` (linear recurrences),
:mod:`~eventssm.models.discretization`, :mod:`~eventssm.models.init` (HiPPO),
:class:`S5SSM` and :class:`S7SSM` (the SSM cores with the shared interface
``__call__(u, dt, x0) -> (y, x_last)``, ``init_state(batch)``, ``step(x, u_k, dt_k)``).
Equations: docs/model.md.
"""

from eventssm.models.s5 import S5SSM
from eventssm.models.s7 import S7SSM, s7_param_count
from eventssm.models.scan import ScanMethod, linear_recurrence, linear_recurrence_numpy

__all__ = [
    "S5SSM",
    "S7SSM",
    "ScanMethod",
    "linear_recurrence",
    "linear_recurrence_numpy",
    "s7_param_count",
]

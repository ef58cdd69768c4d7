"""State-space sequence models for event streams (JAX + Flax NNX).

- :mod:`~eventssm.models.scan` (linear recurrences), :mod:`~eventssm.models.discretization`,
  :mod:`~eventssm.models.init` (HiPPO);
- :class:`S5SSM`, :class:`S7SSM` and :class:`S7PaperSSM` (S7 as the paper's code), the SSM cores
  with the shared interface
  ``__call__(u, dt, x0) -> (y, x_last)``, ``init_state(batch)``, ``step(x, u_k, dt_k)``;
- :class:`EventClassifier` with :class:`ClassifierConfig` and the named presets
  (:func:`get_preset`, ``PRESETS``);
- :mod:`~eventssm.models.streaming`: :class:`Streamer` for online inference.

Equations: docs/model.md.
"""

from eventssm.models.classifier import ClassifierConfig, EventClassifier
from eventssm.models.presets import PRESETS, get_preset
from eventssm.models.s5 import S5SSM
from eventssm.models.s7 import S7SSM, s7_param_count
from eventssm.models.s7paper import S7PaperSSM, s7paper_param_count
from eventssm.models.scan import ScanMethod, linear_recurrence, linear_recurrence_numpy
from eventssm.models.streaming import Streamer

__all__ = [
    "PRESETS",
    "S5SSM",
    "S7SSM",
    "ClassifierConfig",
    "EventClassifier",
    "S7PaperSSM",
    "ScanMethod",
    "Streamer",
    "get_preset",
    "linear_recurrence",
    "linear_recurrence_numpy",
    "s7_param_count",
    "s7paper_param_count",
]

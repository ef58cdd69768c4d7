"""Training and evaluation of EventClassifier on token caches (optax + Flax NNX).

``TrainConfig`` (frozen, JSON) -> ``make_optimizer`` (parameter groups the layers declare) ->
``train_step`` / ``accumulated_step`` / ``eval_step`` (jit'd at the call site) -> ``fit`` over a
:class:`~eventssm.tokenizers.dataset.TokenDataset`, writing a run folder (orbax checkpoints with a
:class:`RunSpec`, ``metrics.jsonl``) that :func:`load_run` reads back.
"""

from eventssm.train.checkpoint import LoadedRun, RunCheckpoints, load_run
from eventssm.train.config import TrainConfig
from eventssm.train.data import batches
from eventssm.train.fit import fit
from eventssm.train.loop import evaluate
from eventssm.train.optim import make_optimizer, param_labels
from eventssm.train.spec import CheckpointError, RunSpec
from eventssm.train.steps import accumulated_step, eval_step, loss_fn, train_step

__all__ = [
    "CheckpointError",
    "LoadedRun",
    "RunCheckpoints",
    "RunSpec",
    "TrainConfig",
    "accumulated_step",
    "batches",
    "eval_step",
    "evaluate",
    "fit",
    "load_run",
    "loss_fn",
    "make_optimizer",
    "param_labels",
    "train_step",
]

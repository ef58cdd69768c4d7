"""Training and evaluation of EventClassifier on token caches (optax + Flax NNX).

``TrainConfig`` (frozen, JSON) -> ``make_optimizer`` (two parameter groups) -> ``train_step`` /
``eval_step`` (jit'd at the call site) -> ``fit`` over a :class:`~eventssm.tokenizers.dataset.TokenDataset`,
with ``save_checkpoint`` / ``load_checkpoint`` writing the resolved configs beside the weights.
"""

from eventssm.train.checkpoint import load_checkpoint, save_checkpoint
from eventssm.train.config import TrainConfig
from eventssm.train.data import batches
from eventssm.train.loop import evaluate, fit
from eventssm.train.optim import make_optimizer, param_labels
from eventssm.train.steps import eval_step, loss_fn, train_step

__all__ = [
    "TrainConfig",
    "batches",
    "eval_step",
    "evaluate",
    "fit",
    "load_checkpoint",
    "loss_fn",
    "make_optimizer",
    "param_labels",
    "save_checkpoint",
    "train_step",
]

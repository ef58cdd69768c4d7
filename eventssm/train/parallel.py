"""Data parallelism with ``jax.sharding``: one ``Mesh`` over the devices, batches sharded on
its ``data`` axis, parameters and optimizer state replicated. The same code path serves one
CPU, several GPUs, and several hosts after ``jax.distributed.initialize()`` (docs/long_runs.md):
XLA inserts the gradient all-reduce where the sharded batch meets the replicated parameters.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


def make_mesh(n_devices: int | None = None) -> Mesh:
    """A 1-D mesh named ``data`` over the first ``n_devices`` devices (default: all, over every
    host after ``jax.distributed.initialize()``)."""
    devices = jax.devices()
    n = len(devices) if n_devices is None else int(n_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"--devices {n}: this machine has {len(devices)} {devices[0].platform} device(s)")
    return Mesh(np.asarray(devices[:n]), (AXIS,))


def replicate(mesh: Mesh, *objs) -> None:
    """Place every array of the NNX objects ``objs`` (model, optimizer) on all mesh devices."""
    rep = NamedSharding(mesh, PartitionSpec())
    for obj in objs:
        state = nnx.state(obj)
        nnx.update(obj, jax.device_put(state, rep))


def shard_batch(mesh: Mesh, *arrays, axis: int = 0):
    """Put ``arrays`` on the mesh, split along ``axis`` (the batch rows) over the ``data`` axis."""
    out = []
    for a in arrays:
        spec = [None] * np.ndim(a)
        spec[axis] = AXIS
        out.append(jax.device_put(a, NamedSharding(mesh, PartitionSpec(*spec))))
    return out

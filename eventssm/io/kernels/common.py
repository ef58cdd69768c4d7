"""Conventions and helpers shared by the decode kernels of every format family.

A block decode kernel has the signature ``kernel(words, out, state, *args) -> (n_events, flags)``:
it makes one pass over ``words`` (the items of one block of the file), writes decoded events
into the preallocated ``EVENT_DTYPE`` array ``out`` from index 0, and carries its decoder state
in a small ``int64`` array that it reads at the start and writes back at the end, so a file
decoded block by block gives exactly the events of a whole-file decode. ``flags`` is 0 for a
clean block, otherwise a bit mask of :data:`FLAG_OUTSIDE` (an event outside the sensor) and
:data:`FLAG_RESERVED` (a word whose type the format reserves). Kernels keep decoding after a
problem (an early exit in the hot loop costs more than the check itself); the error path calls
:func:`locate_first_problem`, which finds the first offending unit by bisection with the same
kernel.

Because every decoded event goes through the kernel's bounds check, a reader built on these
kernels establishes the event contract (``0 <= x < width``, ``0 <= y < height``) itself; see
``FormatSpec.validated``.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from eventssm.events import EVENT_DTYPE

FLAG_OUTSIDE = 1
FLAG_RESERVED = 2


def new_state(*values: int) -> np.ndarray:
    """A decoder state array, ``int64[len(values)]``, holding ``values``."""
    return np.array(values, dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def columns(out):
    """The four field views ``(x, y, t, p)`` of an ``EVENT_DTYPE`` array (strided, no copy).

    Kernels write each event through these views with :func:`store`: one store per field,
    no record objects.
    """
    return out["x"], out["y"], out["t"], out["p"]


@numba.njit(cache=True, nogil=True)
def store(cols, i, x, y, t, p):
    """Write event ``i`` (x, y, t µs, p) through the field views ``cols`` of :func:`columns`.

    ``x`` and ``y`` are stored as int16 and ``p`` as bool (non-zero is ON). The index is
    used as an unsigned number, which spares the kernels' loops numba's handling of negative
    indices (measured: about 20% of the N-MNIST kernel's time).
    """
    k = np.uint64(i)
    cols[0][k] = x
    cols[1][k] = y
    cols[2][k] = t
    cols[3][k] = p


def locate_first_problem(
    kernel: Callable,
    words: np.ndarray,
    state: np.ndarray,
    bound: Callable[[int], int],
    *args,
    step: int = 1,
) -> tuple[int, int]:
    """Index of the first unit of ``words`` whose decoding raises a flag, and that flag.

    Args:
        kernel: a block decode kernel (see the module docstring).
        words: the block that produced non-zero flags.
        state: the decoder state as it was BEFORE the block (not modified).
        bound: ``bound(n_units) -> capacity`` of the output buffer the kernel needs.
        *args: the kernel's trailing arguments (width, height, ...).
        step: items of ``words`` per unit the kernel consumes (2 for DAT records, 5 for
            N-MNIST records read as bytes).

    Returns:
        ``(index, flags)``: the index of the first offending unit (word or record) and the
        flags it raises; ``(-1, 0)`` when the block is clean.
    """
    n_units = len(words) // step
    out = np.empty(max(1, bound(n_units)), dtype=EVENT_DTYPE)

    def flags_of(k: int) -> int:
        return int(kernel(words[: k * step], out, state.copy(), *args)[1])

    if flags_of(n_units) == 0:
        return -1, 0
    lo, hi = 0, n_units  # flags(lo) == 0, flags(hi) != 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if flags_of(mid):
            hi = mid
        else:
            lo = mid
    return hi - 1, flags_of(hi)

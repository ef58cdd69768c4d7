"""Numba kernels for bit unpacking, one module per format family.

Every kernel is an ``@numba.njit`` function whose ``.py_func`` is the readable reference;
tests compare both on the same bytes. :mod:`eventssm.io.kernels.common` holds the block-kernel
convention (state array, ``(n_events, flags)`` result, bounds flags) and the helpers every
kernel writes events with.
"""

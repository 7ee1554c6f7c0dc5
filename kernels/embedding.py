"""Embedding-table kernel for training: the row-sparse scatter-add of an embedding backward.

Twin: ``pfd_ref.sparse.coalesce_rows`` (stable argsort + ``np.add.reduceat``).

The gather ``table[ids]`` has no kernel: NumPy's fancy indexing was as fast as a serial
Numba loop for clustered ids and twice as fast for uniform ids, and a parallel loop paid
only for large batches and only while the second core was free (docs/performance.md).

The kernel only adds values: a NaN or infinity in ``row_grads`` reaches the output exactly
as in the twin, so it does not scan for them (the layers validate at their own boundary).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._common import check_float_layout
from pfd_ref.validation import check_ids


@njit(cache=True)
def _sum_rows_in_order(ids, order, row_grads):
    """Coalesce rows visited in ``order`` (a stable argsort of ``ids``).

    Returns ``rows`` (unique ids, ascending) and ``values`` with ``values[u]`` the sum of
    ``row_grads[i]`` over ``ids[i] == rows[u]``, added one row after another in input
    order (the first row is copied, the next ones are added to it).
    """
    n = order.shape[0]
    unique = 0
    for p in range(n):
        unique += p == 0 or ids[order[p]] != ids[order[p - 1]]
    rows = np.empty(unique, np.int64)
    values = np.empty((unique, row_grads.shape[1]), row_grads.dtype)
    u = -1
    for p in range(n):
        i = order[p]
        if p == 0 or ids[i] != rows[u]:
            u += 1
            rows[u] = ids[i]
            for j in range(row_grads.shape[1]):
                values[u, j] = row_grads[i, j]
        else:
            for j in range(row_grads.shape[1]):
                values[u, j] += row_grads[i, j]
    return rows, values


def coalesce_rows(ids, row_grads: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum gradient rows that share an id (the scatter-add of an embedding backward pass).

    ids : integer ``(n,)`` in ``[0, num_rows)``; row_grads : float32/float64 ``(n, d)``
    (copied if not C-contiguous). Returns ``(rows, values)``: ``rows`` int64 ``(m,)``
    unique ascending, ``values`` ``(m, d)`` in the input dtype with
    ``values[u] = sum_{i : ids[i] == rows[u]} row_grads[i]``, summed strictly in input
    order (left to right). ``pfd_ref.sparse.coalesce_rows`` gives the same sums up to
    rounding: ``np.add.reduceat`` adds long runs pairwise, not left to right. Wrap the
    result as ``RowSparseGrad(rows, values, num_rows)``.
    """
    row_grads = check_float_layout("row_grads", row_grads, ndims=(2,), copy=True)
    ids = np.ascontiguousarray(check_ids("ids", ids, num_rows))
    if ids.shape[0] != row_grads.shape[0]:
        raise ValueError(f"ids: expected {row_grads.shape[0]} ids, one per row of row_grads, got {ids.shape[0]}")
    order = np.argsort(ids, kind="stable")
    return _sum_rows_in_order(ids, order, row_grads)


def warm_up(dtype) -> None:
    """Run the kernel of this module once on tiny inputs of ``dtype`` (compiles it)."""
    ids = np.array([1, 0, 1], np.int64)
    _sum_rows_in_order(ids, np.argsort(ids, kind="stable"), np.ones((3, 2), dtype))

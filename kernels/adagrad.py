"""Adagrad kernel for training: torch.optim.Adagrad's update on the touched rows of a table
(its sparse-gradient path).

Twin: ``pfd_ref.twins.sparse_adagrad_rows_update_``, which gathers the rows ``param[rows]``
and ``accumulator[rows]``, updates them with NumPy (the L2 term included) and scatters them
back. The kernel runs the twin's operations in the twin's order in one pass, in place,
gathering and scattering in the same pass, so kernel and twin give the same bits in float32
and float64 (tests/test_twins.py).
The twin needs a gather, six NumPy calls on the gathered rows and a scatter per table and
step; the kernel reads and writes each touched entry once.

Rounding and compilation follow kernels/adam.py: the scalars are rounded to the arrays'
dtype in the Python layer (as NumPy rounds a Python float next to an array) and passed as
an array of that dtype; no ``fastmath`` (no fused multiply-add, no reordering);
``error_model="numpy"`` (IEEE results instead of exceptions). The kernel reads the gradient
as given: ``pfd_ref.optim.Adagrad.step`` checks gradients first. Derivation:
docs/derivations.md, "Lazy Adagrad row update".
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._common import check_row_update, raise_bad_rows

# positions in the ``scalars`` array of the kernel
_LR, _EPS, _L2 = range(3)


@njit(cache=True, error_model="numpy")
def _sparse_adagrad_rows(param, accumulator, rows, row_grads, scalars, use_l2):
    """In place on rows ``rows[u]`` of ``param`` and ``accumulator``, element by element:

        g = row_grads[u, j] (+ l2 * p when use_l2)
        a <- a + g * g
        p <- p - lr * (g / (sqrt(a) + eps))

    ``scalars`` holds ``(lr, eps, l2)`` in the arrays' dtype. Returns False, having written
    nothing, unless ``rows`` is strictly increasing and inside ``[0, len(param))``; True
    after the update.
    """
    for u in range(rows.shape[0]):
        if rows[u] < 0 or rows[u] >= param.shape[0] or (u > 0 and rows[u] <= rows[u - 1]):
            return False
    lr = scalars[_LR]
    eps = scalars[_EPS]
    l2 = scalars[_L2]
    for u in range(rows.shape[0]):
        r = rows[u]
        for j in range(param.shape[1]):
            p = param[r, j]
            g = row_grads[u, j]
            if use_l2:
                g = g + l2 * p
            a = accumulator[r, j] + g * g
            accumulator[r, j] = a
            param[r, j] = p - lr * (g / (np.sqrt(a) + eps))
    return True


def sparse_adagrad_rows_update_(param: np.ndarray, accumulator: np.ndarray, rows, row_grads: np.ndarray,
                         lr: float, eps: float, l2: float = 0.0) -> None:
    """torch.optim.Adagrad's sparse-gradient update of the rows ``rows`` of a table, in place.

    For each touched row ``r = rows[u]`` (every other row of ``param`` and ``accumulator`` is
    left as it is), elementwise and in this order:

        g = row_grads[u] + l2 * param[r]          (the L2 term only when l2 > 0)
        accumulator[r] <- accumulator[r] + g * g
        param[r] <- param[r] - lr * (g / (sqrt(accumulator[r]) + eps))

    param, accumulator : float32/float64 ``(V, d)`` of one dtype, updated in place (any
    layout); rows : integer ``(k,)``, strictly increasing, inside ``[0, V)``; row_grads :
    ``(k, d)`` in the same dtype (copied if not C-contiguous); lr : this step's learning
    rate. The scalars are rounded to that dtype.
    """
    rows, row_grads = check_row_update(param, {"accumulator": accumulator}, rows, row_grads)
    scalars = np.array([lr, eps, l2], dtype=param.dtype)
    if not _sparse_adagrad_rows(param, accumulator, rows, row_grads, scalars, bool(l2 > 0)):
        raise_bad_rows(param.shape[0])


def warm_up(dtype) -> None:
    """Run the kernel of this module once on tiny inputs of ``dtype`` (compiles it)."""
    table = np.zeros((3, 2), dtype)
    sparse_adagrad_rows_update_(table, np.full_like(table, 0.1), np.array([0, 2]), np.ones((2, 2), dtype), 0.1, 0.0)

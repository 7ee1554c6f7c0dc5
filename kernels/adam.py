"""Lazy Adam kernel for training: torch.optim.SparseAdam's update on the touched rows of a table.

Twin: ``pfd_ref.optim._sparse_adam_rows_update_`` applied to the gathered rows
``param[rows]``, ``m[rows]``, ``v[rows]`` (with the L2 term of
``pfd_ref.optim._touched_row_grad``) and scattered back. The kernel does the gather, the
update and the scatter in one pass, in place, with the twin's operations in the twin's
order, so both give the same bits in float32 and float64 (tests/test_kernels.py).

Rounding: NumPy rounds a Python-float scalar to the array's dtype before each operation
(NEP 50), while Numba would promote a float32 value times a float64 scalar to float64. The
scalars are therefore rounded to the arrays' dtype once, in the Python layer, and passed as
an array of that dtype; every operation inside the kernel is then in that dtype. No
``fastmath`` (it would allow fused multiply-adds and reordering).

The kernel reads the gradient as given: a NaN or infinity in ``row_grads`` reaches the
parameters exactly as in the twin (``pfd_ref.optim.Adam.step`` checks gradients first).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels._common import check_float_layout
from pfd_ref.validation import check_float_dtype

# positions in the ``scalars`` array of the kernel
_ONE_MINUS_BETA1, _ONE_MINUS_BETA2, _EPS, _STEP_SIZE, _L2 = range(5)


@njit(cache=True)
def _rows_are_valid(rows, num_rows):
    """True when ``rows`` is strictly increasing and inside ``[0, num_rows)``."""
    for u in range(rows.shape[0]):
        if rows[u] < 0 or rows[u] >= num_rows or (u > 0 and rows[u] <= rows[u - 1]):
            return False
    return True


@njit(cache=True)
def _sparse_adam_rows(param, m, v, rows, row_grads, scalars, use_l2):
    """In place on rows ``rows[u]`` of ``param``, ``m``, ``v``, element by element:

        g = row_grads[u, j] (+ l2 * p when use_l2)
        m <- m + (g - m) * (1 - beta1);  v <- v + (g * g - v) * (1 - beta2)
        p <- p - step_size * (m / (sqrt(v) + eps))

    ``scalars`` holds ``(1 - beta1, 1 - beta2, eps, step_size, l2)`` in the arrays' dtype.
    """
    one_minus_beta1 = scalars[_ONE_MINUS_BETA1]
    one_minus_beta2 = scalars[_ONE_MINUS_BETA2]
    eps = scalars[_EPS]
    step_size = scalars[_STEP_SIZE]
    l2 = scalars[_L2]
    for u in range(rows.shape[0]):
        r = rows[u]
        for j in range(param.shape[1]):
            p = param[r, j]
            g = row_grads[u, j]
            if use_l2:
                g = g + l2 * p
            m_new = m[r, j] + (g - m[r, j]) * one_minus_beta1
            v_new = v[r, j] + (g * g - v[r, j]) * one_minus_beta2
            m[r, j] = m_new
            v[r, j] = v_new
            param[r, j] = p - step_size * (m_new / (np.sqrt(v_new) + eps))


def sparse_adam_rows_(param: np.ndarray, m: np.ndarray, v: np.ndarray, rows, row_grads: np.ndarray,
                      step_size: float, beta1: float, beta2: float, eps: float, l2: float = 0.0) -> None:
    """torch.optim.SparseAdam's update of the rows ``rows`` of a table, in place.

    For each touched row ``r = rows[u]`` (every other row of ``param``, ``m``, ``v`` is left
    as it is), elementwise and in this order:

        g    = row_grads[u] + l2 * param[r]          (the L2 term only when l2 > 0)
        m[r] <- m[r] + (g - m[r]) * (1 - beta1)
        v[r] <- v[r] + (g * g - v[r]) * (1 - beta2)
        param[r] <- param[r] - step_size * (m[r] / (sqrt(v[r]) + eps))

    with ``step_size = lr sqrt(1 - beta2^t) / (1 - beta1^t)`` computed by the caller.

    param, m, v : float32/float64 ``(V, d)`` of one dtype, updated in place (any layout);
    rows : integer ``(k,)``, strictly increasing, inside ``[0, V)``; row_grads : ``(k, d)``
    in the same dtype (copied if not C-contiguous). The scalars are rounded to that dtype.
    """
    check_float_dtype("param", param)
    if param.ndim != 2:
        raise ValueError(f"param: expected 2 dimension(s), got shape {param.shape}")
    for name, state in (("m", m), ("v", v)):
        check_float_dtype(name, state, param.dtype)
        if state.shape != param.shape:
            raise ValueError(f"{name}: expected shape {param.shape} (the parameter's), got {state.shape}")
    row_grads = check_float_layout("row_grads", row_grads, ndims=(2,), dtype=param.dtype, copy=True)
    rows = np.asarray(rows)
    if rows.dtype.kind not in "iu" or rows.shape != (row_grads.shape[0],):
        raise ValueError(f"rows: expected one integer row id per row of row_grads, got {rows.dtype} {rows.shape}")
    if row_grads.shape[1] != param.shape[1]:
        raise ValueError(f"row_grads: expected {param.shape[1]} columns (the parameter's), got {row_grads.shape[1]}")
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if not _rows_are_valid(rows, param.shape[0]):
        raise ValueError(f"rows: must be unique, sorted ascending and inside [0, {param.shape[0]})")
    scalars = np.array([1 - beta1, 1 - beta2, eps, step_size, l2], dtype=param.dtype)
    _sparse_adam_rows(param, m, v, rows, row_grads, scalars, bool(l2 > 0))


def warm_up(dtype) -> None:
    """Run the kernels of this module once on tiny inputs of ``dtype`` (compiles them)."""
    table = np.zeros((3, 2), dtype)
    sparse_adam_rows_(table, np.zeros_like(table), np.zeros_like(table), np.array([0, 2]),
                      np.ones((2, 2), dtype), 0.1, 0.9, 0.999, 1e-8)

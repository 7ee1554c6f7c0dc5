"""Adam kernels for training: torch.optim.Adam's update of a dense parameter and
torch.optim.SparseAdam's update on the touched rows of a table.

Twins: ``pfd_ref.twins.adam_update_`` and ``pfd_ref.twins.sparse_adam_rows_update_`` (which
gathers the rows, updates them with NumPy and scatters them back). The kernels run the twins'
operations in the twins' order in one pass, in place (the sparse one gathers and scatters
in the same pass), so kernel and twin give the same bits in float32 and float64
(tests/test_twins.py). Derivations: docs/derivations.md, "Adam update" and "Lazy Adam row
update". One pass instead of the twin's
dozen NumPy calls matters for the small MLP parameters, where each call's fixed cost
dominates.

Rounding: NumPy rounds a Python-float scalar to the array's dtype before each operation
(NEP 50), while Numba would promote a float32 value times a float64 scalar to float64. The
scalars are therefore rounded to the arrays' dtype once, in the Python layer, and passed as
an array of that dtype; every operation inside the kernel is then in that dtype. No
``fastmath`` (it would allow fused multiply-adds and reordering). ``error_model="numpy"``:
a division by zero gives NumPy's IEEE result instead of raising, which also lets LLVM
vectorise the loops (Python's error model puts a zero test before every division).

The kernel reads the gradient as given: a NaN or infinity in ``row_grads`` reaches the
parameters exactly as in the twin (``pfd_ref.optim.Adam.step`` checks gradients first).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._common import check_row_update, raise_bad_rows
from .checks import check_float_dtype

# positions in the ``scalars`` array of the sparse kernel
_ONE_MINUS_BETA1, _ONE_MINUS_BETA2, _EPS, _STEP_SIZE, _L2 = range(5)
# and of the dense kernel
_D_ONE_MINUS_BETA1, _D_BETA2, _D_ONE_MINUS_BETA2, _D_BIAS_CORRECTION2_SQRT, _D_EPS, _D_STEP_SIZE = range(6)


@njit(cache=True, error_model="numpy")
def _adam_dense(param, grad, m, v, scalars):
    """In place over flat arrays of one dtype, element by element (``pfd_ref.twins.adam_update_``):

        m <- m + (1 - beta1) * (g - m);  v <- v * beta2;  v <- v + ((1 - beta2) * g) * g
        p <- p - (step_size * m) / (sqrt(v) / bias_correction2_sqrt + eps)

    ``scalars`` holds ``(1 - beta1, beta2, 1 - beta2, bias_correction2_sqrt, eps, step_size)``
    in the arrays' dtype.
    """
    one_minus_beta1 = scalars[_D_ONE_MINUS_BETA1]
    beta2 = scalars[_D_BETA2]
    one_minus_beta2 = scalars[_D_ONE_MINUS_BETA2]
    bias_correction2_sqrt = scalars[_D_BIAS_CORRECTION2_SQRT]
    eps = scalars[_D_EPS]
    step_size = scalars[_D_STEP_SIZE]
    for i in range(param.shape[0]):
        g = grad[i]
        m_new = m[i] + one_minus_beta1 * (g - m[i])
        v_new = v[i] * beta2
        v_new = v_new + one_minus_beta2 * g * g
        m[i] = m_new
        v[i] = v_new
        param[i] = param[i] - step_size * m_new / (np.sqrt(v_new) / bias_correction2_sqrt + eps)


@njit(cache=True, error_model="numpy")
def _sparse_adam_rows(param, m, v, rows, row_grads, scalars, use_l2):
    """In place on rows ``rows[u]`` of ``param``, ``m``, ``v``, element by element:

        g = row_grads[u, j] (+ l2 * p when use_l2)
        m <- m + (g - m) * (1 - beta1);  v <- v + (g * g - v) * (1 - beta2)
        p <- p - step_size * (m / (sqrt(v) + eps))

    ``scalars`` holds ``(1 - beta1, 1 - beta2, eps, step_size, l2)`` in the arrays' dtype.
    Returns False, having written nothing, unless ``rows`` is strictly increasing and
    inside ``[0, len(param))``; True after the update.
    """
    for u in range(rows.shape[0]):
        if rows[u] < 0 or rows[u] >= param.shape[0] or (u > 0 and rows[u] <= rows[u - 1]):
            return False
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
    return True


def adam_update_(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, step_size: float,
                 bias_correction2_sqrt: float, beta1: float, beta2: float, eps: float) -> None:
    """torch.optim.Adam's update of a whole parameter, in place, elementwise and in this order:

        m <- m + (1 - beta1) (g - m)
        v <- v beta2 + ((1 - beta2) g) g
        p <- p - (step_size m) / (sqrt(v) / bias_correction2_sqrt + eps)

    with ``step_size = lr / (1 - beta1^t)`` and ``bias_correction2_sqrt = sqrt(1 - beta2^t)``
    computed by the caller. param, m, v : float32/float64 arrays of one shape and dtype,
    updated in place (the kernel runs on flat views; an array that is not C-contiguous is
    updated on a contiguous copy that is written back); grad : the same shape and dtype
    (copied if not C-contiguous). The scalars are rounded to that dtype, as NumPy rounds a
    Python float next to an array.
    """
    check_float_dtype("param", param)
    for name, array in (("grad", grad), ("m", m), ("v", v)):
        check_float_dtype(name, array, param.dtype)
        if array.shape != param.shape:
            raise ValueError(f"{name}: expected shape {param.shape} (the parameter's), got {array.shape}")
    updated = [np.ascontiguousarray(array) for array in (param, m, v)]
    scalars = np.array([1 - beta1, beta2, 1 - beta2, bias_correction2_sqrt, eps, step_size], dtype=param.dtype)
    _adam_dense(*(a.reshape(-1) for a in (updated[0], np.ascontiguousarray(grad), updated[1], updated[2])), scalars)
    for array, contiguous in zip((param, m, v), updated):
        if array is not contiguous:
            array[...] = contiguous


def sparse_adam_rows_update_(param: np.ndarray, m: np.ndarray, v: np.ndarray, rows, row_grads: np.ndarray,
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
    rows, row_grads = check_row_update(param, {"m": m, "v": v}, rows, row_grads)
    scalars = np.array([1 - beta1, 1 - beta2, eps, step_size, l2], dtype=param.dtype)
    if not _sparse_adam_rows(param, m, v, rows, row_grads, scalars, bool(l2 > 0)):
        raise_bad_rows(param.shape[0])


def warm_up(dtype) -> None:
    """Run the kernels of this module once on tiny inputs of ``dtype`` (compiles them)."""
    table = np.zeros((3, 2), dtype)
    adam_update_(table, np.ones_like(table), np.zeros_like(table), np.zeros_like(table), 0.1, 0.5, 0.9, 0.999, 1e-8)
    sparse_adam_rows_update_(table, np.zeros_like(table), np.zeros_like(table), np.array([0, 2]),
                      np.ones((2, 2), dtype), 0.1, 0.9, 0.999, 1e-8)

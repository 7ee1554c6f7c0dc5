"""Optimizers over a dict of named parameters: SGD and Adam, dense and row-sparse.

``params`` maps a dotted name to a float32 or float64 array; ``grads`` maps some of those
names to a dense ndarray of the parameter's shape and dtype, or (embedding tables) to a
``pfd_ref.sparse.RowSparseGrad`` with unique sorted rows. ``step(params, grads)`` updates
the arrays of ``params`` in place, keeps their dtype, and leaves names absent from
``grads`` untouched. Update rules, the arithmetic order and its relation to PyTorch:
docs/optim.md.
"""

from __future__ import annotations

import math

import numpy as np

from pfd_ref import kernels
from pfd_ref.sparse import RowSparseGrad
from pfd_ref.validation import FLOAT_DTYPES, check_float_array, check_non_negative, check_positive, check_shape

ADAM_SPARSE_MODES = ("lazy", "dense")


def _check_step_inputs(params: dict, grads: dict) -> None:
    """Raise ValueError naming the entry when a gradient has no parameter, or its shape or
    dtype differs from the parameter's, or a row-sparse gradient's rows are not unique,
    sorted and inside the table."""
    for name, grad in grads.items():
        if name not in params:
            raise ValueError(f"grads[{name!r}]: no parameter of that name in params")
        param = params[name]
        if not isinstance(param, np.ndarray) or param.dtype not in FLOAT_DTYPES:
            raise ValueError(f"params[{name!r}]: expected a float32 or float64 numpy array")
        label = f"grads[{name!r}]"
        if isinstance(grad, RowSparseGrad):
            check_float_array(label + ".values", grad.values, ndim=2, dtype=param.dtype)
            if grad.shape != param.shape:
                raise ValueError(f"{label}: row-sparse gradient of a table of shape {grad.shape}, "
                                 f"parameter has shape {param.shape}")
            rows = grad.rows
            if rows.dtype.kind not in "iu" or rows.shape != (grad.values.shape[0],):
                raise ValueError(f"{label}.rows: expected one integer row id per gradient row, "
                                 f"got {rows.dtype} {rows.shape}")
            if rows.size and (rows[0] < 0 or rows[-1] >= grad.num_rows or np.any(rows[1:] <= rows[:-1])):
                raise ValueError(f"{label}.rows: must be unique, sorted ascending and inside [0, {grad.num_rows})")
        else:
            check_float_array(label, grad, dtype=param.dtype)
            check_shape(label, grad, param.shape)


def _touched_row_grad(grad: RowSparseGrad, param_rows: np.ndarray, l2: float) -> np.ndarray:
    """Gradient of the touched rows with the embedding L2 term: ``g_r + l2 * p[r]``, shape ``(m, d)``."""
    return grad.values + l2 * param_rows if l2 > 0 else grad.values


class SGD:
    """Plain stochastic gradient descent.

    Dense gradient:       ``p <- p - lr * g``
    RowSparseGrad rows r: ``p[r] <- p[r] - lr * (g_r + l2_embeddings * p[r])``; other rows untouched.
    """

    def __init__(self, lr: float, l2_embeddings: float = 0.0):
        self.lr = check_positive("lr", lr)
        self.l2_embeddings = check_non_negative("l2_embeddings", l2_embeddings)

    def step(self, params: dict, grads: dict) -> None:
        """Update ``params`` in place for every name in ``grads`` (see the class docstring)."""
        _check_step_inputs(params, grads)
        for name, grad in grads.items():
            param = params[name]
            if isinstance(grad, RowSparseGrad):
                param_rows = param[grad.rows]
                param[grad.rows] = param_rows - self.lr * _touched_row_grad(grad, param_rows, self.l2_embeddings)
            else:
                param -= self.lr * grad


def _adam_update_(param, grad, m, v, step: int, lr: float, beta1: float, beta2: float, eps: float) -> None:
    """One Adam update in place on ``param``, ``m``, ``v`` (arrays of one shape and dtype);
    ``step`` is the step count t after this update's increment.

        m <- beta1 m + (1 - beta1) g            (as m + (1 - beta1) (g - m))
        v <- beta2 v + (1 - beta2) g g
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """
    m += (1 - beta1) * (grad - m)
    v *= beta2
    v += (1 - beta2) * grad * grad
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    denom = np.sqrt(v)
    denom /= bias_correction2_sqrt
    denom += eps
    param -= step_size * m / denom


def _dense_adam_update_(param, grad, m, v, step: int, lr: float, beta1: float, beta2: float, eps: float) -> None:
    """``_adam_update_``'s update, the same bits: in the Numba kernel ``kernels.adam_update_``
    (one pass instead of a dozen NumPy calls) when ``param`` is C-contiguous, as the
    parameters pfd_ref creates and loads are, else in ``_adam_update_`` itself."""
    if not param.flags.c_contiguous:
        _adam_update_(param, grad, m, v, step, lr, beta1, beta2, eps)
        return
    kernels.adam_update_(param, grad, m, v, lr / (1 - beta1**step), (1 - beta2**step) ** 0.5, beta1, beta2, eps)


def _sparse_adam_step_size(step: int, lr: float, beta1: float, beta2: float) -> float:
    """SparseAdam's step size ``lr sqrt(1 - beta2^t) / (1 - beta1^t)`` in Python floats."""
    return lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)


def _sparse_adam_rows_update_(param, grad, m, v, step: int, lr: float, beta1: float, beta2: float, eps: float) -> None:
    """torch.optim.SparseAdam's update, in place on the gathered rows ``param``, ``m``, ``v``
    (arrays of one shape ``(m_rows, d)`` and dtype); ``step`` is the table's step count t.

        m <- m + (1 - beta1) (g - m)
        v <- v + (1 - beta2) (g g - v)
        p <- p - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)

    eps is added to the uncorrected root (Adam's dense rule adds it to the corrected one).
    This is the readable twin of the Numba kernel ``kernels.sparse_adam_rows_``, which
    ``Adam`` runs (gather, this update and scatter in one pass, the same bits).
    """
    m += (grad - m) * (1 - beta1)
    v += (grad * grad - v) * (1 - beta2)
    step_size = _sparse_adam_step_size(step, lr, beta1, beta2)
    denom = np.sqrt(v)
    denom += eps
    param -= step_size * (m / denom)


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction: torch.optim.Adam's rule and arithmetic
    order for dense gradients, torch.optim.SparseAdam's for lazy row-sparse ones.

    Per parameter, each step it receives a gradient g (t counts those steps, from 1):

        m <- beta1 m + (1 - beta1) g ;  v <- beta2 v + (1 - beta2) g^2
        dense:  p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        lazy:   p <- p - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)

    Dense gradients get no L2 term; their update runs in the Numba kernel
    ``kernels.adam_update_`` (bit-identical to its twin ``_adam_update_``). For a
    RowSparseGrad with rows r the gradient of the touched rows is ``g_r + l2_embeddings * p[r]``,
    then

    - ``sparse="lazy"``: m, v and p change only on rows r, by SparseAdam's rule (t still
      advances once per step for the whole table), in the Numba kernel
      ``kernels.sparse_adam_rows_`` (bit-identical to its twin ``_sparse_adam_rows_update_``);
    - ``sparse="dense"``: the gradient is densified (zeros off r) and the whole table takes
      the dense update, so rows with non-zero m keep moving when absent from the batch.

    ``state[name] = {"step": t, "m": (shape of p), "v": (shape of p)}`` in the parameter's dtype.
    """

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 l2_embeddings: float = 0.0, sparse: str = "lazy"):
        self.lr = check_positive("lr", lr)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name}: must satisfy 0 <= {name} < 1, got {beta!r}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = check_positive("eps", eps)
        self.l2_embeddings = check_non_negative("l2_embeddings", l2_embeddings)
        if sparse not in ADAM_SPARSE_MODES:
            raise ValueError(f"sparse: expected one of {ADAM_SPARSE_MODES}, got {sparse!r}")
        self.sparse = sparse
        self.state: dict[str, dict] = {}

    def step(self, params: dict, grads: dict) -> None:
        """Update ``params`` and ``state`` in place for every name in ``grads`` (see the class docstring)."""
        _check_step_inputs(params, grads)
        hyper = dict(lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps)
        for name, grad in grads.items():
            param = params[name]
            if name not in self.state:  # allocate the moments once, on a parameter's first step
                self.state[name] = {"step": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
            state = self.state[name]
            state["step"] += 1
            m, v = state["m"], state["v"]
            if not isinstance(grad, RowSparseGrad):
                _dense_adam_update_(param, grad, m, v, state["step"], **hyper)
                continue
            if self.sparse == "lazy":
                step_size = _sparse_adam_step_size(state["step"], self.lr, self.beta1, self.beta2)
                kernels.sparse_adam_rows_(param, m, v, grad.rows, grad.values, step_size,
                                          self.beta1, self.beta2, self.eps, self.l2_embeddings)
                continue
            dense_grad = np.zeros_like(param)
            dense_grad[grad.rows] = _touched_row_grad(grad, param[grad.rows], self.l2_embeddings)
            _dense_adam_update_(param, dense_grad, m, v, state["step"], **hyper)

"""Optimizers over a dict of named parameters: SGD, Adam and Adagrad, dense and row-sparse,
each with an optional linear learning-rate warm-up.

``params`` maps a dotted name to a float32 or float64 array; ``grads`` maps some of those
names to a dense ndarray of the parameter's shape and dtype, or (embedding tables) to a
``pfd_ref.sparse.RowSparseGrad`` with unique sorted rows. ``step(params, grads)`` updates
the arrays of ``params`` in place, keeps their dtype, and leaves names absent from
``grads`` untouched. Update rules, the arithmetic order and their relation to PyTorch and
TensorFlow: docs/optim.md; derivations: docs/derivations.md.
"""

from __future__ import annotations

import math

import numpy as np

from pfd_ref import kernels
from pfd_ref.sparse import RowSparseGrad
from pfd_ref.validation import FLOAT_DTYPES, check_choice, check_float_array, check_scalar, check_shape

SPARSE_MODES = ("lazy", "dense")  # how a row-sparse gradient updates its table: touched rows only, or all rows


def warmup_lr(lr: float, step: int, warmup_steps: int) -> float:
    """The learning rate of the 0-based optimizer step ``step`` under a linear warm-up over
    ``warmup_steps`` = N steps, in Python floats:

        lr_t = lr * min(1, (t + 1) / N)        (N = 0: no warm-up, lr_t = lr)

    so step 0 uses lr / N, step N - 1 and every later step use lr.
    ``torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: min(1.0, (t + 1) / N))``, stepped
    once after every optimizer step, gives the same floats (docs/optim.md).
    """
    if warmup_steps == 0:
        return lr
    return lr * min(1.0, (step + 1) / warmup_steps)


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


def _densified(grad: RowSparseGrad, param: np.ndarray, l2: float) -> np.ndarray:
    """The table's dense gradient: ``g_r + l2 * p[r]`` on the touched rows r, zeros elsewhere."""
    dense_grad = np.zeros_like(param)
    dense_grad[grad.rows] = _touched_row_grad(grad, param[grad.rows], l2)
    return dense_grad


class _Optimizer:
    """What every optimizer shares: the learning rate and its warm-up, the embedding L2
    term, the step count, and ``step`` (check every gradient, then update at this step's
    learning rate, then count the step).

    lr : the learning rate after the warm-up (> 0). l2_embeddings : >= 0, added as
    ``l2_embeddings * p[r]`` to the gradient of the touched rows r of an embedding table
    (row-sparse gradients only). lr_warmup_steps : N >= 0, the linear warm-up of
    ``warmup_lr`` (0: none). start_step : the 0-based index of the first call of ``step``
    in the warm-up schedule (default 0; an oracle case that starts inside a longer run
    sets it). ``steps_taken`` counts the calls of ``step`` from ``start_step`` on.
    """

    def __init__(self, lr: float, l2_embeddings: float, lr_warmup_steps: int, start_step: int):
        self.lr = check_scalar("lr", lr, float, low=0, low_open=True)
        self.l2_embeddings = check_scalar("l2_embeddings", l2_embeddings, float, low=0)
        self.lr_warmup_steps = check_scalar("lr_warmup_steps", lr_warmup_steps, int, low=0)
        self.steps_taken = check_scalar("start_step", start_step, int, low=0)

    def current_lr(self) -> float:
        """The learning rate the next ``step`` uses: ``warmup_lr(lr, steps_taken, lr_warmup_steps)``."""
        return warmup_lr(self.lr, self.steps_taken, self.lr_warmup_steps)

    def step(self, params: dict, grads: dict) -> None:
        """Update ``params`` (and the optimizer's state) in place for every name in
        ``grads``, at the learning rate ``current_lr()``; then advance ``steps_taken``.
        Every gradient is checked before anything is updated (ValueError naming it)."""
        _check_step_inputs(params, grads)
        self._update(params, grads, self.current_lr())
        self.steps_taken += 1

    def _update(self, params: dict, grads: dict, lr: float) -> None:
        raise NotImplementedError


class SGD(_Optimizer):
    """Plain stochastic gradient descent, at this step's learning rate ``lr_t`` (``warmup_lr``).

    Dense gradient:       ``p <- p - lr_t * g``
    RowSparseGrad rows r: ``p[r] <- p[r] - lr_t * (g_r + l2_embeddings * p[r])``; other rows untouched.
    """

    def __init__(self, lr: float, l2_embeddings: float = 0.0, lr_warmup_steps: int = 0, start_step: int = 0):
        super().__init__(lr, l2_embeddings, lr_warmup_steps, start_step)

    def _update(self, params: dict, grads: dict, lr: float) -> None:
        for name, grad in grads.items():
            param = params[name]
            if isinstance(grad, RowSparseGrad):
                param_rows = param[grad.rows]
                param[grad.rows] = param_rows - lr * _touched_row_grad(grad, param_rows, self.l2_embeddings)
            else:
                param -= lr * grad


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


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction: torch.optim.Adam's rule and arithmetic
    order for dense gradients, torch.optim.SparseAdam's for lazy row-sparse ones.

    Per parameter, each step it receives a gradient g (t counts those steps, from 1), with
    ``lr_t`` this step's learning rate (``warmup_lr``; ``lr`` without a warm-up):

        m <- beta1 m + (1 - beta1) g ;  v <- beta2 v + (1 - beta2) g^2
        dense:  p <- p - lr_t / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        lazy:   p <- p - lr_t sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)

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
                 l2_embeddings: float = 0.0, sparse: str = "lazy", lr_warmup_steps: int = 0, start_step: int = 0):
        super().__init__(lr, l2_embeddings, lr_warmup_steps, start_step)
        self.beta1 = check_scalar("beta1", beta1, float, low=0, high=1, high_open=True)
        self.beta2 = check_scalar("beta2", beta2, float, low=0, high=1, high_open=True)
        self.eps = check_scalar("eps", eps, float, low=0, low_open=True)
        self.sparse = check_choice("sparse", sparse, SPARSE_MODES)
        self.state: dict[str, dict] = {}

    def _update(self, params: dict, grads: dict, lr: float) -> None:
        hyper = dict(lr=lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps)
        for name, grad in grads.items():
            param = params[name]
            if name not in self.state:  # allocate the moments once, on a parameter's first step
                self.state[name] = {"step": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
            state = self.state[name]
            state["step"] += 1
            m, v = state["m"], state["v"]
            if not isinstance(grad, RowSparseGrad):
                _dense_adam_update_(param, grad, m, v, state["step"], **hyper)
            elif self.sparse == "lazy":
                step_size = _sparse_adam_step_size(state["step"], lr, self.beta1, self.beta2)
                kernels.sparse_adam_rows_(param, m, v, grad.rows, grad.values, step_size,
                                          self.beta1, self.beta2, self.eps, self.l2_embeddings)
            else:
                _dense_adam_update_(param, _densified(grad, param, self.l2_embeddings), m, v, state["step"], **hyper)


def _adagrad_update_(param, grad, accumulator, lr: float, eps: float) -> None:
    """One Adagrad update in place on ``param`` and ``accumulator`` (arrays of one shape and
    dtype), in torch.optim.Adagrad's order for a dense gradient (``_single_tensor_adagrad``):

        a <- a + g g
        p <- p - (lr g) / (sqrt(a) + eps)
    """
    accumulator += grad * grad
    denom = np.sqrt(accumulator)
    denom += eps
    param -= lr * grad / denom


def _sparse_adagrad_rows_update_(param, grad, accumulator, lr: float, eps: float) -> None:
    """One Adagrad update in place on the gathered rows ``param`` and ``accumulator``
    (arrays of one shape ``(m_rows, d)`` and dtype), in torch.optim.Adagrad's order for a
    sparse gradient (the ``grad.is_sparse`` branch of ``_single_tensor_adagrad``):

        a <- a + g g
        p <- p - lr (g / (sqrt(a) + eps))

    The same rule as ``_adagrad_update_``; only the last product is grouped differently
    (``lr (g / d)`` instead of ``(lr g) / d``), as in torch. This is the readable twin of the
    Numba kernel ``kernels.sparse_adagrad_rows_``, which ``Adagrad`` runs (gather, this
    update and scatter in one pass, the same bits).
    """
    accumulator += grad * grad
    denom = np.sqrt(accumulator)
    denom += eps
    param -= lr * (grad / denom)


class Adagrad(_Optimizer):
    """Adagrad (Duchi, Hazan & Singer 2011): torch.optim.Adagrad's rule and arithmetic order
    with ``lr_decay = 0`` and ``weight_decay = 0``, for dense and for lazy row-sparse gradients.

    Per parameter an accumulator ``a`` of its shape and dtype starts at
    ``initial_accumulator_value`` (>= 0); with ``lr_t`` this step's learning rate
    (``warmup_lr``; ``lr`` without a warm-up), each step it receives a gradient g:

        a <- a + g^2
        p <- p - lr_t g / (sqrt(a) + eps)            (eps >= 0, outside the root)

    ``initial_accumulator_value`` and ``eps`` may not both be 0 (a zero gradient entry would
    give 0 / 0 before its first non-zero one). Defaults 0.1 and 0: TensorFlow 1's
    ``tf.train.AdagradOptimizer`` (docs/optim.md compares TensorFlow's and PyTorch's).

    Dense gradients get no L2 term; their update is ``_adagrad_update_``. For a
    RowSparseGrad with rows r the gradient of the touched rows is
    ``g_r + l2_embeddings * p[r]``, then

    - ``sparse="lazy"``: a and p change only on rows r, in the Numba kernel
      ``kernels.sparse_adagrad_rows_`` (bit-identical to its twin ``_sparse_adagrad_rows_update_``);
    - ``sparse="dense"``: the gradient is densified (zeros off r) and the whole table takes
      ``_adagrad_update_``. A zero gradient leaves a and p as they are, so the two modes give
      the same numbers up to the rounding of the last product (Adam's modes differ).

    ``state[name] = {"accumulator": (shape of p)}`` in the parameter's dtype.
    """

    def __init__(self, lr: float, initial_accumulator_value: float = 0.1, eps: float = 0.0,
                 l2_embeddings: float = 0.0, sparse: str = "lazy", lr_warmup_steps: int = 0, start_step: int = 0):
        super().__init__(lr, l2_embeddings, lr_warmup_steps, start_step)
        self.initial_accumulator_value = check_scalar("initial_accumulator_value", initial_accumulator_value, float, low=0)
        self.eps = check_scalar("eps", eps, float, low=0)
        if self.initial_accumulator_value == 0 and self.eps == 0:
            raise ValueError("eps: must be > 0 when initial_accumulator_value is 0 (a zero gradient would "
                             "divide 0 by 0); TensorFlow 1 uses initial_accumulator_value 0.1, PyTorch eps 1e-10")
        self.sparse = check_choice("sparse", sparse, SPARSE_MODES)
        self.state: dict[str, dict] = {}

    def _update(self, params: dict, grads: dict, lr: float) -> None:
        for name, grad in grads.items():
            param = params[name]
            if name not in self.state:  # allocate the accumulator once, on a parameter's first step
                self.state[name] = {"accumulator": np.full_like(param, self.initial_accumulator_value)}
            accumulator = self.state[name]["accumulator"]
            if not isinstance(grad, RowSparseGrad):
                _adagrad_update_(param, grad, accumulator, lr, self.eps)
            elif self.sparse == "lazy":
                kernels.sparse_adagrad_rows_(param, accumulator, grad.rows, grad.values, lr, self.eps, self.l2_embeddings)
            else:
                _adagrad_update_(param, _densified(grad, param, self.l2_embeddings), accumulator, lr, self.eps)


OPTIMIZERS = {"adam": Adam, "adagrad": Adagrad, "sgd": SGD}


def check_optimizer(name: str) -> str:
    """Return ``name``; raise ValueError naming ``optimizer`` unless it is a key of ``OPTIMIZERS``."""
    return check_choice("optimizer", name, tuple(OPTIMIZERS))


def make_optimizer(name: str, lr: float, **options):
    """``OPTIMIZERS[name](lr, **options)``, after ``check_optimizer(name)``."""
    return OPTIMIZERS[check_optimizer(name)](lr, **options)


# The settings fields (of a TrainConfig, an oracle CaseSpec) that only one optimizer reads.
OPTIMIZER_FIELDS = {"adam_sparse": "adam", "beta1": "adam", "beta2": "adam", "eps": "adam",
                    "adagrad_initial_accumulator": "adagrad", "adagrad_eps": "adagrad", "adagrad_sparse": "adagrad"}


def check_optimizer_fields(settings) -> None:
    """Raise ValueError naming the first field of the dataclass instance ``settings`` that is
    set away from its default although it belongs to another optimizer than
    ``settings.optimizer`` (``OPTIMIZER_FIELDS``; fields ``settings`` lacks are skipped), so
    that no option is silently ignored. Checks ``settings.optimizer`` first."""
    check_optimizer(settings.optimizer)
    fields = type(settings).__dataclass_fields__
    for name, owner in OPTIMIZER_FIELDS.items():
        if name in fields and settings.optimizer != owner and getattr(settings, name) != fields[name].default:
            raise ValueError(f"{name}: an option of optimizer {owner!r}, but the optimizer is {settings.optimizer!r}")


def optimizer_from(settings, **common):
    """A fresh optimizer ``settings.optimizer`` with learning rate ``settings.lr``, its own
    options read from the fields of ``settings`` (a TrainConfig or an oracle CaseSpec) named
    in ``OPTIMIZER_FIELDS`` (those ``settings`` lacks keep the optimizer's defaults), and
    ``common`` (``lr_warmup_steps``, ``l2_embeddings``, ``start_step``) for every optimizer."""
    options = dict(common)
    if settings.optimizer == "adam":
        options.update(sparse=settings.adam_sparse,
                       **{name: getattr(settings, name) for name in ("beta1", "beta2", "eps") if hasattr(settings, name)})
    elif settings.optimizer == "adagrad":
        options.update(initial_accumulator_value=settings.adagrad_initial_accumulator, eps=settings.adagrad_eps,
                       sparse=settings.adagrad_sparse)
    return make_optimizer(settings.optimizer, settings.lr, **options)

"""Optimizers over a dict of named parameters: SGD, Adam and Adagrad, dense and row-sparse,
each with an optional linear learning-rate warm-up.

``params`` maps a dotted name to a float32 or float64 array; ``grads`` maps some of those
names to a dense ndarray of the parameter's shape and dtype, or (embedding tables) to a
``pfd_ref.sparse.RowSparseGrad`` with unique sorted rows. ``step(params, grads)`` updates
the arrays of ``params`` in place, keeps their dtype, and leaves names absent from
``grads`` untouched. The update rules are the functions ``sgd_update_``,
``sgd_rows_update_``, ``adagrad_update_`` (below), ``adam_update_``,
``sparse_adam_rows_update_`` and ``sparse_adagrad_rows_update_`` (kernels, run through
``pfd_ref.backend``), each derived in docs/derivations.md under its name; the arithmetic
order and its relation to PyTorch and TensorFlow: docs/optim.md.
"""

from __future__ import annotations

import math

import numpy as np

from pfd_ref import backend
from pfd_ref.sparse import RowSparseGrad
from pfd_ref.validation import FLOAT_DTYPES, check_choice, check_float_array, check_float_dtype, check_scalar, check_shape

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
    dtype differs from the parameter's, or it holds a NaN or an infinity, or a row-sparse
    gradient's rows are not unique, sorted and inside the table.

    The structure is checked gradient by gradient, first by one test of the common case
    (``_fits``: an array of the parameter's dtype and shape, or a row-sparse gradient of its
    table), and only a gradient that fails it by the checks that name what is wrong
    (``_check_gradient``); the values and the rows of all gradients are checked together
    (``_first_nonfinite``, ``_first_unsorted``), two NumPy passes in all instead of a few per
    gradient (a step has 15-30 of them), and only a failure looks for the gradient to name."""
    values, sparse = [], []
    for name, grad in grads.items():
        param = params.get(name)
        if not _fits(param, grad):
            _check_gradient(name, name in params, param, grad)
        if isinstance(grad, RowSparseGrad):
            values.append((name, ".values", grad.values))
            sparse.append((name, grad))
        else:
            values.append((name, "", grad))
    _first_nonfinite(values)
    _first_unsorted(sparse)


def _fits(param, grad) -> bool:
    """Whether ``grad`` is, without doubt, a gradient ``Optimizer.step`` takes for ``param``: a
    float32/float64 array of ``param``'s dtype and shape, or a ``RowSparseGrad`` of its
    table (values ``(m, d)`` of its dtype, one integer row per value row, the first and last
    inside the table). The cheap test of every gradient; anything else goes to ``_check_gradient``."""
    if not isinstance(param, np.ndarray) or param.dtype not in FLOAT_DTYPES:
        return False
    if not isinstance(grad, RowSparseGrad):
        return isinstance(grad, np.ndarray) and grad.dtype == param.dtype and grad.shape == param.shape
    values, rows = grad.values, grad.rows
    return (isinstance(values, np.ndarray) and values.dtype == param.dtype and values.ndim == 2
            and (grad.num_rows, values.shape[1]) == param.shape and isinstance(rows, np.ndarray)
            and rows.dtype.kind in "iu" and rows.shape == (values.shape[0],)
            and (rows.size == 0 or (rows[0] >= 0 and rows[-1] < grad.num_rows)))


def _check_gradient(name: str, present: bool, param, grad) -> None:
    """Raise ValueError naming the entry when ``grad`` has no parameter (``present`` False),
    the parameter ``param`` is not a float array, or ``grad``'s structure does not fit it
    (``_check_step_inputs``'s list, values and row order aside)."""
    if not present:
        raise ValueError(f"grads[{name!r}]: no parameter of that name in params")
    if not isinstance(param, np.ndarray) or param.dtype not in FLOAT_DTYPES:
        raise ValueError(f"params[{name!r}]: expected a float32 or float64 numpy array")
    label = f"grads[{name!r}]"
    if not isinstance(grad, RowSparseGrad):
        check_float_dtype(label, grad, param.dtype)
        check_shape(label, grad, param.shape)
        return
    check_float_dtype(label + ".values", grad.values, param.dtype)
    if grad.values.ndim != 2:
        raise ValueError(f"{label}.values: expected 2 dimension(s), got shape {grad.values.shape}")
    if grad.shape != param.shape:
        raise ValueError(f"{label}: row-sparse gradient of a table of shape {grad.shape}, "
                         f"parameter has shape {param.shape}")
    rows = grad.rows
    if not isinstance(rows, np.ndarray) or rows.dtype.kind not in "iu" or rows.shape != (grad.values.shape[0],):
        raise ValueError(f"{label}.rows: expected one integer row id per gradient row, "
                         f"got {getattr(rows, 'dtype', type(rows).__name__)} {np.shape(rows)}")
    if rows.size and (rows[0] < 0 or rows[-1] >= grad.num_rows):
        raise _bad_rows(label, grad.num_rows)


def _bad_rows(label: str, num_rows: int) -> ValueError:
    return ValueError(f"{label}.rows: must be unique, sorted ascending and inside [0, {num_rows})")


def _first_nonfinite(arrays: list) -> None:
    """Raise ValueError naming the first ``(name, suffix, array)`` of ``arrays`` (a dense
    gradient, suffix "", or a row-sparse one's values, ".values") that holds a NaN or an
    infinity, as ``grads['<name>']<suffix>``: one pass over all of them concatenated (a NaN or
    an infinity stays one in the common dtype), then, only on a failure, a pass per array to
    find it."""
    if not arrays or np.isfinite(np.concatenate([array.reshape(-1) for _, _, array in arrays])).all():
        return
    for name, suffix, array in arrays:
        check_float_array(f"grads[{name!r}]{suffix}", array)


def _first_unsorted(sparse: list) -> None:
    """Raise ValueError naming the first ``(name, RowSparseGrad)`` of ``sparse`` whose rows
    do not strictly increase: one comparison of neighbours over all rows concatenated, the
    pairs across two gradients' rows ignored (a comparison, not a difference, which unsigned
    rows would wrap around)."""
    lengths = [grad.rows.shape[0] for _, grad in sparse]
    if sum(lengths) < 2:
        return
    rows = np.concatenate([grad.rows for _, grad in sparse])
    increasing = rows[1:] > rows[:-1]
    boundaries = np.cumsum(lengths)[:-1]
    increasing[boundaries[(boundaries > 0) & (boundaries <= increasing.shape[0])] - 1] = True  # one gradient to the next
    if increasing.all():
        return
    for name, grad in sparse:
        if np.any(grad.rows[1:] <= grad.rows[:-1]):
            raise _bad_rows(f"grads[{name!r}]", grad.num_rows)


def _touched_row_grad(grad: RowSparseGrad, param_rows: np.ndarray, l2: float) -> np.ndarray:
    """Gradient of the touched rows with the embedding L2 term: ``g_r + l2 * p[r]``, shape ``(m, d)``."""
    return grad.values + l2 * param_rows if l2 > 0 else grad.values


def _densified(grad: RowSparseGrad, param: np.ndarray, l2: float) -> np.ndarray:
    """The table's dense gradient: ``g_r + l2 * p[r]`` on the touched rows r, zeros elsewhere."""
    dense_grad = np.zeros_like(param)
    dense_grad[grad.rows] = _touched_row_grad(grad, param[grad.rows], l2)
    return dense_grad


def sgd_update_(param: np.ndarray, grad: np.ndarray, lr: float) -> None:
    """``p <- p - lr * g`` in place; param, grad : one shape and float dtype."""
    param -= lr * grad


def sgd_rows_update_(param: np.ndarray, rows: np.ndarray, row_grads: np.ndarray, lr: float, l2: float = 0.0) -> None:
    """``p[r] <- p[r] - lr * (g_r + l2 * p[r])`` in place on the rows ``r = rows`` of the table
    ``param (V, d)`` (the L2 term only when ``l2 > 0``); every other row is left as it is.
    rows : int64 ``(k,)`` unique; row_grads : ``(k, d)`` in the table's dtype."""
    param_rows = param[rows]
    param[rows] = param_rows - lr * (row_grads + l2 * param_rows if l2 > 0 else row_grads)


def adagrad_update_(param: np.ndarray, grad: np.ndarray, accumulator: np.ndarray, lr: float, eps: float) -> None:
    """One Adagrad update in place on ``param`` and ``accumulator`` (arrays of one shape and
    dtype), in torch.optim.Adagrad's order for a dense gradient (``_single_tensor_adagrad``):

        a <- a + g g
        p <- p - (lr g) / (sqrt(a) + eps)

    No kernel: it is about 1% of a training step (docs/performance.md). The lazy row update
    is the kernel ``sparse_adagrad_rows_update_``, which groups the last product as
    ``lr (g / d)``, as torch's sparse path does.
    """
    accumulator += grad * grad
    denom = np.sqrt(accumulator)
    denom += eps
    param -= lr * grad / denom


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
    """Plain stochastic gradient descent at this step's learning rate ``lr_t`` (``warmup_lr``):
    ``sgd_update_`` for a dense gradient, ``sgd_rows_update_`` (with ``l2_embeddings``) on the
    touched rows of a RowSparseGrad; other rows untouched.
    """

    def __init__(self, lr: float, l2_embeddings: float = 0.0, lr_warmup_steps: int = 0, start_step: int = 0):
        super().__init__(lr, l2_embeddings, lr_warmup_steps, start_step)

    def _update(self, params: dict, grads: dict, lr: float) -> None:
        for name, grad in grads.items():
            if isinstance(grad, RowSparseGrad):
                sgd_rows_update_(params[name], grad.rows, grad.values, lr, self.l2_embeddings)
            else:
                sgd_update_(params[name], grad, lr)


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction: torch.optim.Adam's rule and arithmetic
    order for dense gradients, torch.optim.SparseAdam's for lazy row-sparse ones.

    Per parameter, each step it receives a gradient g (t counts those steps, from 1), with
    ``lr_t`` this step's learning rate (``warmup_lr``; ``lr`` without a warm-up):

        m <- beta1 m + (1 - beta1) g ;  v <- beta2 v + (1 - beta2) g^2
        dense:  p <- p - lr_t / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
        lazy:   p <- p - lr_t sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)

    Dense gradients get no L2 term and take ``adam_update_``. For a RowSparseGrad with rows
    r the gradient of the touched rows is ``g_r + l2_embeddings * p[r]``, then

    - ``sparse="lazy"``: m, v and p change only on rows r, by SparseAdam's rule
      (``sparse_adam_rows_update_``; t still advances once per step for the whole table);
    - ``sparse="dense"``: the gradient is densified (zeros off r) and the whole table takes
      ``adam_update_``, so rows with non-zero m keep moving when absent from the batch.

    Both update functions are kernels, run through ``pfd_ref.backend`` (the Numba kernel or
    its NumPy twin, the same bits).

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
        beta1, beta2, eps, l2, lazy = self.beta1, self.beta2, self.eps, self.l2_embeddings, self.sparse == "lazy"
        sizes = {}  # step count t -> its step sizes (the parameters of a step mostly share one t)
        for name, grad in grads.items():
            param = params[name]
            state = self.state.get(name)
            if state is None:  # allocate the moments once, on a parameter's first step
                state = self.state[name] = {"step": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
            state["step"] += 1
            t, m, v = state["step"], state["m"], state["v"]
            if t not in sizes:  # in Python floats: SparseAdam's step size, then Adam's two
                sizes[t] = (lr * math.sqrt(1 - beta2**t) / (1 - beta1**t), lr / (1 - beta1**t), (1 - beta2**t) ** 0.5)
            lazy_step_size, step_size, bias_correction2_sqrt = sizes[t]
            if isinstance(grad, RowSparseGrad):
                if lazy:
                    backend.sparse_adam_rows_update_(param, m, v, grad.rows, grad.values, lazy_step_size, beta1, beta2,
                                                     eps, l2)
                    continue
                grad = _densified(grad, param, l2)
            backend.adam_update_(param, grad, m, v, step_size, bias_correction2_sqrt, beta1, beta2, eps)


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

    Dense gradients get no L2 term; their update is ``adagrad_update_``. For a
    RowSparseGrad with rows r the gradient of the touched rows is
    ``g_r + l2_embeddings * p[r]``, then

    - ``sparse="lazy"``: a and p change only on rows r, by the kernel
      ``sparse_adagrad_rows_update_`` (run through ``pfd_ref.backend``; its twin gives the same bits);
    - ``sparse="dense"``: the gradient is densified (zeros off r) and the whole table takes
      ``adagrad_update_``. A zero gradient leaves a and p as they are, so the two modes give
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
                adagrad_update_(param, grad, accumulator, lr, self.eps)
            elif self.sparse == "lazy":
                backend.sparse_adagrad_rows_update_(param, accumulator, grad.rows, grad.values, lr, self.eps,
                                                    self.l2_embeddings)
            else:
                adagrad_update_(param, _densified(grad, param, self.l2_embeddings), accumulator, lr, self.eps)


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

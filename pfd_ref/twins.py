"""Every kernel's readable NumPy twin, under the kernel's own name.

``pfd_ref.kernels.<name>`` (Numba, ``kernels/``) and ``pfd_ref.twins.<name>`` (this module,
plain NumPy) take the same arguments, check them the same way and compute the same
formula; each twin is the plainest way to write it, to be read and run.
``pfd_ref.set_backend("numpy")`` (or ``PFD_REF_BACKEND=numpy``, or ``pfd-ref ... --backend
numpy``) makes the whole pipeline, training and serving, run on these functions
(``pfd_ref.backend``). What each twin gives compared with its kernel (tests/test_twins.py
checks every line):

=========================  ===================================================================
adam_update_               the same bits: the same operations in the same order
sparse_adam_rows_update_   the same bits: the same operations in the same order
sparse_adagrad_rows_update_  the same bits: the same operations in the same order
relu_backward              the same bits (``+0`` wherever ``x > 0`` is false)
leaky_relu_backward        the same bits (the slope rounded to the arrays' dtype in both)
gather_rows                the same bits (a copy: ``table[ids]``)
pool_rows                  the same bits: ``np.add.reduceat``, whose summation order the kernel follows
coalesce_rows              the same bits: ``np.add.at`` adds each id's rows left to right from -0.0
coalesce_pooled_rows       the same bits (the same division, then ``coalesce_rows``)
top_k_scores               the same result (ranking order below; the scores are selected, not computed)
score_items                within ``4 eps (d + 1) sum_j |items_ij users_j|``: the kernel reassociates
                           one user's dot product (a batch: both use GEMM, in BLAS's order)
top_k_items                the ids of the same ranking on the twin's scores, which are within
                           ``score_items``'s bound of the kernel's (ids can differ only where two
                           scores lie within that bound); with ``candidates`` too
top_k_item_blocks          as ``top_k_items`` on the catalogue the blocks make up
mlp_scores                 within ``1e-5`` (float32) / ``1e-12`` (float64) relative: the kernel's
                           row path sums in its own order, and its ``exp`` is libm's (ReLU or
                           LeakyReLU hidden layers alike)
mlp_scores_split           as ``mlp_scores``: the twin runs the plain forward pass over the user
                           block repeated, the kernel adds the user block's share once
split_fields               the same result: offsets, status, field count and next position
                           (the log readers' tokenizer, ``pfd_ref.data.text``)
parse_int64                the same values and the same first bad cell
match_tokens               the same codes and the same first bad cell
=========================  ===================================================================

Training uses only the first nine, so a training run gives the same bits on either backend;
the log readers give the same arrays on either.
Ranking order for top-k: higher score first; among equal scores, lower index first.

**Adding a kernel.** Write it in ``kernels/`` and list it in ``kernels/__init__.py``'s
``__all__``; write its twin here under the same name and list it in ``__all__`` below;
call it as ``backend.<name>(...)``. tests/test_twins.py fails until the two lists agree
and until the twin has a parity test, and from then on the backend switch covers it.
"""

from __future__ import annotations

import re

import numpy as np

from pfd_ref.kernels.checks import (SPLIT_FIELD_COUNT, SPLIT_OK, SPLIT_TEXT_AFTER_QUOTE, SPLIT_UNTERMINATED_QUOTE,
                                    check_cell_inside, check_cells, check_columns, check_float_array, check_float_dtype,
                                    check_ids, check_offsets, check_out_block, check_pooling, check_same_dtype,
                                    check_scalar, check_split_arguments, check_tokens)
from pfd_ref import losses

__all__ = [
    "adam_update_", "coalesce_pooled_rows", "coalesce_rows", "gather_rows", "leaky_relu_backward", "match_tokens",
    "mlp_scores", "mlp_scores_split", "parse_int64", "pool_rows", "relu_backward", "score_items",
    "sparse_adagrad_rows_update_", "sparse_adam_rows_update_", "split_fields", "top_k_item_blocks", "top_k_items",
    "top_k_scores",
]


# --------------------------------------------------------------------------- training


def _check_like(param: np.ndarray, **arrays) -> None:
    check_float_dtype("param", param)
    for name, array in arrays.items():
        check_float_dtype(name, array, param.dtype)
        if array.shape != param.shape:
            raise ValueError(f"{name}: expected shape {param.shape} (the parameter's), got {array.shape}")


def adam_update_(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, step_size: float,
                 bias_correction2_sqrt: float, beta1: float, beta2: float, eps: float) -> None:
    """torch.optim.Adam's update of a whole parameter, in place, in this order:

        m <- m + (1 - beta1) (g - m)
        v <- v beta2 + ((1 - beta2) g) g
        p <- p - (step_size m) / (sqrt(v) / bias_correction2_sqrt + eps)

    with ``step_size = lr / (1 - beta1^t)`` and ``bias_correction2_sqrt = sqrt(1 - beta2^t)``.
    param, grad, m, v : float32/float64 arrays of one shape and dtype. The scalars are taken
    as Python floats, which NumPy rounds to that dtype before each use, as the kernel does.
    Derivation: docs/derivations.md, "Adam update".
    """
    _check_like(param, grad=grad, m=m, v=v)
    step_size, bias_correction2_sqrt, beta1, beta2, eps = map(float, (step_size, bias_correction2_sqrt, beta1, beta2, eps))
    m += (1 - beta1) * (grad - m)
    v *= beta2
    v += (1 - beta2) * grad * grad
    denom = np.sqrt(v)
    denom /= bias_correction2_sqrt
    denom += eps
    param -= step_size * m / denom


def sparse_adam_rows_update_(param: np.ndarray, m: np.ndarray, v: np.ndarray, rows, row_grads: np.ndarray,
                             step_size: float, beta1: float, beta2: float, eps: float, l2: float = 0.0) -> None:
    """torch.optim.SparseAdam's update of the rows ``rows`` of a table, in place; every other
    row of ``param``, ``m``, ``v`` is left as it is. On the touched rows, in this order:

        g    = row_grads + l2 * param[rows]          (the L2 term only when l2 > 0)
        m[r] <- m[r] + (g - m[r]) (1 - beta1)
        v[r] <- v[r] + (g g - v[r]) (1 - beta2)
        param[r] <- param[r] - step_size (m[r] / (sqrt(v[r]) + eps))

    with ``step_size = lr sqrt(1 - beta2^t) / (1 - beta1^t)``. param, m, v : float32/float64
    ``(V, d)`` of one dtype; rows : integer ``(k,)``, strictly increasing, inside ``[0, V)``;
    row_grads : ``(k, d)`` in that dtype. Derivation: docs/derivations.md, "Lazy Adam row update".
    """
    rows = _check_row_update(param, {"m": m, "v": v}, rows, row_grads)
    step_size, beta1, beta2, eps, l2 = map(float, (step_size, beta1, beta2, eps, l2))
    p, m_rows, v_rows = param[rows], m[rows], v[rows]
    g = row_grads + l2 * p if l2 > 0 else row_grads
    m_rows += (g - m_rows) * (1 - beta1)
    v_rows += (g * g - v_rows) * (1 - beta2)
    denom = np.sqrt(v_rows)
    denom += eps
    param[rows] = p - step_size * (m_rows / denom)
    m[rows], v[rows] = m_rows, v_rows


def sparse_adagrad_rows_update_(param: np.ndarray, accumulator: np.ndarray, rows, row_grads: np.ndarray, lr: float,
                                eps: float, l2: float = 0.0) -> None:
    """torch.optim.Adagrad's sparse-gradient update of the rows ``rows`` of a table, in place;
    every other row of ``param`` and ``accumulator`` is left as it is. On the touched rows, in
    this order:

        g = row_grads + l2 * param[rows]          (the L2 term only when l2 > 0)
        accumulator[r] <- accumulator[r] + g g
        param[r] <- param[r] - lr (g / (sqrt(accumulator[r]) + eps))

    param, accumulator : float32/float64 ``(V, d)`` of one dtype; rows : integer ``(k,)``,
    strictly increasing, inside ``[0, V)``; row_grads : ``(k, d)`` in that dtype; lr : this
    step's learning rate. Derivation: docs/derivations.md, "Lazy Adagrad row update".
    """
    rows = _check_row_update(param, {"accumulator": accumulator}, rows, row_grads)
    lr, eps, l2 = map(float, (lr, eps, l2))
    p, a = param[rows], accumulator[rows]
    g = row_grads + l2 * p if l2 > 0 else row_grads
    a += g * g
    denom = np.sqrt(a)
    denom += eps
    param[rows] = p - lr * (g / denom)
    accumulator[rows] = a


def _check_row_update(param: np.ndarray, states: dict, rows, row_grads: np.ndarray) -> np.ndarray:
    """The checks of the lazy row-update kernels: states and row gradients of the table's
    dtype and shape, one row id per gradient row, rows increasing and inside the table."""
    _check_like(param, **states)
    check_float_dtype("row_grads", row_grads, param.dtype)
    rows = np.asarray(rows)
    if rows.dtype.kind not in "iu" or rows.shape != (row_grads.shape[0],) or row_grads.shape[1:] != param.shape[1:]:
        raise ValueError(f"rows: expected one integer row id per row of row_grads, got {rows.dtype} {rows.shape}")
    if rows.size and (rows[0] < 0 or rows[-1] >= param.shape[0] or np.any(rows[1:] <= rows[:-1])):
        raise ValueError(f"rows: must be unique, sorted ascending and inside [0, {param.shape[0]})")
    return rows


def relu_backward(d_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of ``y = max(x, 0)``: ``d_x = d_y`` where ``x > 0``, else ``+0`` (also at ``x = 0``
    and where ``x`` is NaN). d_y, x : float32/float64 arrays of one shape and dtype."""
    check_float_dtype("x", x)
    check_float_dtype("d_y", d_y, x.dtype)
    if d_y.shape != x.shape:
        raise ValueError(f"d_y: expected shape {x.shape} (the shape of x), got {d_y.shape}")
    return np.where(x > 0, d_y, 0)


def leaky_relu_backward(d_y: np.ndarray, x: np.ndarray, negative_slope: float) -> np.ndarray:
    """Gradient of LeakyReLU ``y = x if x > 0 else negative_slope * x``: ``d_x = d_y`` where
    ``x > 0``, else ``negative_slope * d_y`` (also at ``x = 0`` and where ``x`` is NaN), the
    slope rounded to the arrays' dtype. d_y, x : float32/float64 of one shape and dtype."""
    check_float_dtype("x", x)
    check_float_dtype("d_y", d_y, x.dtype)
    if d_y.shape != x.shape:
        raise ValueError(f"d_y: expected shape {x.shape} (the shape of x), got {d_y.shape}")
    negative_slope = check_scalar("negative_slope", negative_slope, float)
    return np.where(x > 0, d_y, d_y * x.dtype.type(negative_slope))


def _out_block(out, n: int, start, width: int, dtype) -> np.ndarray:
    """The block ``out[:, start:start + width]`` that a lookup writes (a new ``(n, width)``
    array when ``out`` is None), after the kernels' checks of ``out``."""
    if out is None:
        return np.empty((n, width), dtype)
    start = check_out_block(out, n, start, width, dtype)
    return out[:, start:start + width]


def gather_rows(table: np.ndarray, ids, out: np.ndarray | None = None, start: int = 0) -> np.ndarray:
    """Lookup of a single-id field: ``out[:, start:start + d] = table[ids]``.

    table : float32/float64 ``(V, d)``; ids : integer ``(n,)`` in ``[0, V)``; out : None (a
    new ``(n, d)`` array is returned) or a C-contiguous ``(n, D)`` array of the table's dtype,
    written in the columns ``[start, start + d)`` and returned.
    """
    check_float_dtype("table", table)
    ids = check_ids("ids", ids, table.shape[0])
    block = _out_block(out, ids.shape[0], start, table.shape[1], table.dtype)
    block[...] = table[ids]
    return block if out is None else out


def pool_rows(table: np.ndarray, values, offsets, pooling: str, out: np.ndarray | None = None,
              start: int = 0) -> np.ndarray:
    """Pooled lookup: ``out[i, start:start + d] = sum_{k in R_i} table[k]`` (``"sum"``) or that
    sum divided by ``c_i = |R_i|`` (``"mean"``), ``R_i = values[offsets[i]:offsets[i+1]]``;
    empty rows pool to zeros.

    table : float32/float64 ``(V, d)``; values : integer ``(nnz,)`` in ``[0, V)``; offsets :
    integer ``(n + 1,)``; out, start : as in ``gather_rows`` (None: a new ``(n, d)`` array in
    the table's dtype is returned). Each row's sum is one ``np.add.reduceat`` segment.
    """
    check_float_dtype("table", table)
    mean = check_pooling(pooling) == "mean"
    values = check_ids("values", values, table.shape[0])
    offsets = check_offsets("offsets", offsets, values.shape[0])
    counts = np.diff(offsets)
    block = _out_block(out, counts.shape[0], start, table.shape[1], table.dtype)
    block[...] = 0
    nonempty = counts > 0
    if values.shape[0]:
        # np.add.reduceat would return a single element (not zero) for an empty segment, so
        # only the starts of non-empty rows are passed; each such segment then runs exactly
        # to the start of the next non-empty row (empty rows in between hold no values).
        block[nonempty] = np.add.reduceat(table[values], offsets[:-1][nonempty], axis=0)
    if mean:
        block[nonempty] /= counts[nonempty, None].astype(table.dtype)
    return block if out is None else out


def coalesce_rows(ids, row_grads: np.ndarray, num_rows: int, start: int = 0,
                  width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sum gradient rows that share an id (the scatter-add of an embedding backward pass).

    ids : integer ``(n,)`` in ``[0, num_rows)``; row_grads : float32/float64 ``(n, D)``, of
    which the columns ``[start, start + width)`` are read (``width`` None: to the last).
    Returns ``(rows, values)``: ``rows`` int64 ``(m,)`` unique ascending, ``values`` ``(m, d)``
    with ``values[u] = sum_{i : ids[i] == rows[u]} row_grads[i, start:start + d]``, added
    left to right in input order starting from -0.0 (``np.add.at`` applies the rows one by
    one, in order).
    """
    check_float_dtype("row_grads", row_grads)
    if row_grads.ndim != 2:
        raise ValueError(f"row_grads: expected 2 dimension(s), got shape {row_grads.shape}")
    start, width = check_columns("row_grads", row_grads, start, width)
    row_grads = row_grads[:, start:start + width]
    ids = check_ids("ids", ids, num_rows)
    if ids.shape[0] != row_grads.shape[0]:
        raise ValueError(f"ids: expected {row_grads.shape[0]} ids, one per row of row_grads, got {ids.shape[0]}")
    rows, slot = np.unique(ids, return_inverse=True)  # ids == rows[slot]
    d = row_grads.shape[1]
    values = np.full(rows.shape[0] * d, -0.0, row_grads.dtype)
    # entry (i, j) of row_grads is added to values[slot[i], j], for i = 0, 1, ... in order (on
    # the flat table: NumPy's fast path of np.add.at is one-dimensional)
    np.add.at(values, (slot.reshape(-1, 1) * d + np.arange(d)).reshape(-1), row_grads.reshape(-1))
    return rows.astype(np.int64, copy=False), values.reshape(-1, d)


def coalesce_pooled_rows(d_out: np.ndarray, values, offsets, num_rows: int, pooling: str, start: int = 0,
                         width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Table gradient of ``pool_rows``: ``d_table[k] = sum_i m_ik d_out[i]`` (``/ c_i`` for
    ``"mean"``), with ``m_ik`` the number of times id ``k`` occurs in row ``i``.

    Each row's gradient is repeated once per id in it (divided by the row's length for
    ``"mean"``) and the copies are summed per id by ``coalesce_rows``. d_out : float
    ``(n, D)``, of which the columns ``[start, start + width)`` are read, as in
    ``coalesce_rows``; values, offsets : as in ``pool_rows``; num_rows : ``V``. Returns
    ``(rows, grad_rows)``: the touched ids ascending and their gradient rows.
    """
    check_float_dtype("d_out", d_out)
    mean = check_pooling(pooling) == "mean"
    values = check_ids("values", values, num_rows)
    counts = np.diff(check_offsets("offsets", offsets, values.shape[0]))
    if d_out.ndim != 2 or d_out.shape[0] != counts.shape[0]:
        raise ValueError(f"d_out: expected {counts.shape[0]} rows, one per CSR row, got shape {d_out.shape}")
    start, width = check_columns("d_out", d_out, start, width)
    d_out = d_out[:, start:start + width]
    value_grads = np.repeat(d_out, counts, axis=0)  # (nnz, d): row i's gradient, once per id in it
    if mean:
        value_grads /= np.repeat(counts, counts)[:, None].astype(d_out.dtype)
    return coalesce_rows(values, value_grads, num_rows)


# --------------------------------------------------------------------------- serving


def score_items(items: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Inner-product scores ``users @ items.T``.

    items : float ``(N, d)``; users : same dtype, ``(d,)`` -> scores ``(N,)`` with
    ``scores[i] = sum_j items[i, j] users[j]``, or ``(m, d)`` -> ``(m, N)``. Raises
    ``ValueError`` naming the argument that holds a NaN or infinity.
    """
    items = check_float_array("items", items, ndim=2)
    users = check_float_array("users", users)
    check_same_dtype(items=items, users=users)
    if users.ndim not in (1, 2) or users.shape[-1] != items.shape[1]:
        raise ValueError(f"users: expected shape (d,) or (m, d) with d = {items.shape[1]}, got {users.shape}")
    return users @ items.T


def top_k_scores(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``min(k, N)`` best entries of each row of ``scores``, best first.

    scores : float ``(N,)`` or ``(m, N)``. Returns ``(top_scores, top_ids)`` with ``top_ids``
    int64: the first entries of the order "score descending, then index ascending".
    """
    scores = check_float_array("scores", scores)
    if scores.ndim not in (1, 2):
        raise ValueError(f"scores: expected 1 or 2 dimension(s), got shape {scores.shape}")
    k = check_scalar("k", k, int, low=0)
    rows = np.atleast_2d(scores)
    n = rows.shape[1]
    top_ids = np.empty((rows.shape[0], min(k, n)), np.int64)
    for r, row in enumerate(rows):
        # lexsort sorts by the last key first: -row (score descending), then the index
        top_ids[r] = np.lexsort((np.arange(n), -row))[:top_ids.shape[1]]
    top_scores = np.take_along_axis(rows, top_ids, axis=1)
    if scores.ndim == 1:
        return top_scores[0], top_ids[0]
    return top_scores, top_ids


def top_k_items(items: np.ndarray, users: np.ndarray, k: int, candidates=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``min(k, N)`` best items per user: ``top_k_scores(score_items(items, users), k)``.

    With ``candidates`` (integer item ids, ``(c,)`` for users ``(d,)``, ``(m, c)`` for users
    ``(m, d)``): each user's candidate rows are gathered and scored, and the ``min(k, c)``
    best are returned with their item ids, ordered by score descending, then item id
    ascending; an id listed twice is ranked twice.
    """
    if candidates is None:
        return top_k_scores(score_items(items, users), k)
    items = check_float_array("items", items, ndim=2)
    users = check_float_array("users", users)
    check_same_dtype(items=items, users=users)
    k = check_scalar("k", k, int, low=0)
    candidates = np.asarray(candidates)
    candidates = check_ids("candidates", candidates.astype(np.int64) if candidates.size == 0 else candidates,
                           items.shape[0], ndim=users.ndim)
    user_rows, candidate_rows = np.atleast_2d(users), np.atleast_2d(candidates)
    if candidate_rows.shape[0] != user_rows.shape[0]:
        raise ValueError(f"candidates: expected one row per user ({user_rows.shape[0]} rows), got shape {candidates.shape}")
    kk = min(k, candidate_rows.shape[1])
    top_scores = np.empty((user_rows.shape[0], kk), items.dtype)
    top_ids = np.empty((user_rows.shape[0], kk), np.int64)
    for r, (user, ids) in enumerate(zip(user_rows, candidate_rows)):
        scores = items[ids] @ user
        order = np.lexsort((ids, -scores))[:kk]  # score descending, then item id ascending
        top_scores[r], top_ids[r] = scores[order], ids[order]
    return (top_scores, top_ids) if users.ndim == 2 else (top_scores[0], top_ids[0])


def top_k_item_blocks(blocks, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_k_items`` of a catalogue given as blocks ``(first_id, items_block)`` (ascending,
    not overlapping): every block's rows scored with their catalogue ids
    ``first_id, first_id + 1, ...``, then the ``min(k, rows)`` best per user, ordered by
    score descending, then id ascending."""
    users = check_float_array("users", users)
    k = check_scalar("k", k, int, low=0)
    scores, ids, next_id = [], [], 0
    for first_id, block in blocks:
        block = check_float_array("blocks", block, ndim=2, dtype=users.dtype)
        if isinstance(first_id, (bool, np.bool_)) or not isinstance(first_id, (int, np.integer)) or first_id < next_id:
            raise ValueError(f"blocks: a block starts at row {first_id!r}; expected an integer >= {next_id} "
                             "(blocks ascending, not overlapping)")
        scores.append(np.atleast_2d(users) @ block.T)
        ids.append(first_id + np.arange(block.shape[0]))
        next_id = int(first_id) + block.shape[0]
    rows = np.atleast_2d(users).shape[0]
    scores = np.concatenate(scores, axis=1) if scores else np.empty((rows, 0), users.dtype)
    ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
    kk = min(k, ids.shape[0])
    order = np.array([np.lexsort((ids, -row))[:kk] for row in scores], dtype=np.int64).reshape(rows, kk)
    top_scores, top_ids = np.take_along_axis(scores, order, axis=1), ids[order]
    return (top_scores, top_ids) if users.ndim == 2 else (top_scores[0], top_ids[0])


def mlp_scores(x: np.ndarray, weights, biases, sigmoid: bool = False, negative_slope: float = 0.0) -> np.ndarray:
    """MLP forward pass for scoring: ``h_{l+1} = act(h_l @ W_l + b_l)`` for hidden layers, a
    linear output ``z = h @ W_last + b_last``, and ``s(z) = 1 / (1 + exp(-z))``
    (``pfd_ref.losses.sigmoid``) when ``sigmoid``. ``act(z) = max(z, 0)`` (ReLU) when
    ``negative_slope`` is 0, else ``z if z > 0 else negative_slope * z`` (LeakyReLU, the slope
    in ``(0, 1)``, rounded to x's dtype).

    x : float ``(n, i)``; weights : list of ``(in_l, out_l)``; biases : list of ``(out_l,)``,
    all of x's dtype. Returns ``(n, out_last)``. Raises ``ValueError`` naming the argument
    that holds a NaN or infinity, or ``x`` when a pre-activation overflows.
    """
    x = check_float_array("x", x, ndim=2)
    if negative_slope != 0:
        check_scalar("negative_slope", negative_slope, float, low=0, high=1, low_open=True, high_open=True)
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(f"weights: expected one or more layers and as many biases, got {len(weights)} and {len(biases)}")
    h = x
    for layer, (w, b) in enumerate(zip(weights, biases)):
        w = check_float_array(f"weights[{layer}]", w, ndim=2, dtype=x.dtype)
        b = check_float_array(f"biases[{layer}]", b, ndim=1, dtype=x.dtype)
        if w.shape[0] != h.shape[1] or b.shape != (w.shape[1],):
            raise ValueError(f"weights[{layer}]: expected {h.shape[1]} input rows and a bias of {w.shape[1]}, "
                             f"got shapes {w.shape} and {b.shape}")
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            z = h @ w + b
        if not np.all(np.isfinite(z)):
            raise ValueError("x: a pre-activation overflowed to infinity (inputs are finite but too large for their dtype)")
        if layer == len(weights) - 1:
            h = z
        elif negative_slope == 0:
            h = np.maximum(z, 0)
        else:
            h = np.where(z > 0, z, z * x.dtype.type(negative_slope))
    return losses.sigmoid(h) if sigmoid else h


def mlp_scores_split(user_x: np.ndarray, x: np.ndarray, user_weight: np.ndarray, weights, biases,
                     sigmoid: bool = False, negative_slope: float = 0.0) -> np.ndarray:
    """The plain forward pass over ``[u, x_c]``: the user's block ``user_x (i_u,)`` repeated
    on each of the ``n`` candidate rows of ``x (n, i_c)``, the first weight matrix
    ``[user_weight; weights[0]]`` (rows ``i_u + i_c``), then ``mlp_scores``. Returns
    ``(n, out_last)``."""
    user_x = check_float_array("user_x", user_x, ndim=1)
    x = check_float_array("x", x, ndim=2, dtype=user_x.dtype)
    user_weight = check_float_array("user_weight", user_weight, ndim=2, dtype=user_x.dtype)
    repeated = np.broadcast_to(user_x, (x.shape[0], user_x.shape[0]))
    first = np.concatenate([user_weight, weights[0]], axis=0)
    return mlp_scores(np.concatenate([repeated, x], axis=1), [first, *weights[1:]], biases, sigmoid, negative_slope)


# --------------------------------------------------------------------------- text (the log readers)
# The dialect is stated in kernels/text.py. These twins take a chunk of whole lines the same
# way and go through it one line and one cell at a time with Python's bytes and re.

_INTEGER = re.compile(rb"[+-]?[0-9]{1,19}")


def split_fields(buf: np.ndarray, pos: int, delimiter: int, starts: np.ndarray, ends: np.ndarray):
    """From byte ``pos`` on, write the offsets of every field of up to ``len(starts)`` rows
    into ``starts`` / ``ends`` (quotes and a final ``\\r`` left out) and return ``(rows,
    status, fields, next_pos)``. At the first malformed row, ``rows`` is its index and the
    status ``SPLIT_FIELD_COUNT`` means a wrong field count (``fields`` = its count),
    ``SPLIT_UNTERMINATED_QUOTE`` a line end inside quotes, ``SPLIT_TEXT_AFTER_QUOTE`` text
    after a closing quote (``fields`` = the field's 0-based index)."""
    pos, delimiter = check_split_arguments(buf, pos, delimiter, starts, ends)
    data = buf.tobytes()
    unquoted = re.compile(b"[^" + re.escape(bytes([delimiter])) + b"\n]*")
    quoted = re.compile(rb'"((?:[^"\n]|"")*)"(?!")')  # the lookahead: no backtracking into a ""
    row = 0
    while pos < len(data) and row < len(starts):
        line_end = data.index(b"\n", pos)  # offset of this row's "\n"
        spans = []
        while True:
            if data[pos:pos + 1] == b'"':
                match = quoted.match(data, pos, line_end)
                if match is None:
                    return row, SPLIT_UNTERMINATED_QUOTE, len(spans), pos
                span, end = match.span(1), match.end()
                if end == line_end - 1 and data[end:end + 1] == b"\r":
                    end += 1
                if end < line_end and data[end] != delimiter:
                    return row, SPLIT_TEXT_AFTER_QUOTE, len(spans), pos
            else:
                match = unquoted.match(data, pos, line_end)
                span, end = match.span(), match.end()
                if end == line_end and data[span[0]:span[1]].endswith(b"\r"):
                    span = (span[0], span[1] - 1)
            spans.append(span)
            pos = end + 1  # past the delimiter or the line's "\n"
            if end >= line_end:
                break
        if len(spans) != starts.shape[1]:
            return row, SPLIT_FIELD_COUNT, len(spans), pos
        starts[row], ends[row] = zip(*spans)
        row += 1
    return row, SPLIT_OK, 0, pos


def _cells(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray):
    """``(r, cell bytes)`` of each cell, after checking that it lies inside ``buf``."""
    data = buf.tobytes()
    for r, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
        check_cell_inside(r, start, end, len(data))
        yield r, data[start:end]


def parse_int64(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """``int(cell)`` for each cell ``buf[s:e]`` that is an optional sign and 1-19 digits with
    ``|value| < 2**63``; ``(values, first bad or -1)``, written into ``out`` when given."""
    values = check_cells(buf, starts, ends, out, np.int64)
    for r, cell in _cells(buf, starts, ends):
        if not _INTEGER.fullmatch(cell) or abs(int(cell)) > np.iinfo(np.int64).max:
            return values, r
        values[r] = int(cell)
    return values, -1


def match_tokens(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, tokens: tuple[bytes, ...],
                 out: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """``tokens.index(cell)`` for each cell; ``(codes int8, first cell that is no token or
    -1)``, written into ``out`` when given."""
    codes = check_cells(buf, starts, ends, out, np.int8)
    check_tokens(tokens)
    for r, cell in _cells(buf, starts, ends):
        if cell not in tokens:
            return codes, r
        codes[r] = tokens.index(cell)
    return codes, -1

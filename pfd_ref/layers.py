"""Layers with hand-written gradients: each ``*_forward`` sits next to its ``*_backward``.

Layout (docs/conventions.md): a linear layer computes ``y = x @ W + b`` with ``W`` of shape
``(in, out)`` and ``b`` of shape ``(out,)``. Every function works in float32 or float64 and
returns the dtype it was given; mixing the two among its float arguments is a ``ValueError``.
The derivation of every backward formula is in docs/derivations.md under the function's name.

Public functions validate their inputs (shapes, dtypes, id ranges, NaN/infinity) with
``pfd_ref.validation`` and then call an unchecked core of the same name with a leading
underscore (``embedding_forward`` -> ``_embedding_forward``), which computes the formula of
the public docstring on arrays known to be valid. ``mlp_forward``/``mlp_backward`` validate
once and run ``_linear_*``/``_relu_*`` layer by layer; ``pfd_ref.models`` calls the cores
directly on batches of a validated ``Dataset`` and its own checked parameters (docs/conventions.md:
inner loops do not re-validate).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pfd_ref import kernels
from pfd_ref.sparse import RowSparseGrad
from pfd_ref.validation import FLOAT_DTYPES, check_float_array, check_ids, check_offsets, check_pooling, check_shape


# --------------------------------------------------------------------------- checks


def _check_table(table) -> np.ndarray:
    """Dtype and shape of an embedding table, without scanning all ``V * d`` entries.

    Finiteness is checked on the rows a batch reads (``_check_rows_finite``), which is
    ``O(n d)`` per step instead of ``O(V d)``.
    """
    if not isinstance(table, np.ndarray) or table.dtype not in FLOAT_DTYPES or table.ndim != 2:
        check_float_array("table", table, ndim=2)  # raises the precise message
    return table


def _check_rows_finite(rows: np.ndarray) -> None:
    if not np.all(np.isfinite(rows)):
        raise ValueError("table: a row looked up by this batch contains NaN or infinity")


def _check_num_rows(num_rows) -> int:
    if isinstance(num_rows, bool) or not isinstance(num_rows, (int, np.integer)) or num_rows < 1:
        raise ValueError(f"num_rows: expected an integer >= 1 (the table's number of rows), got {num_rows!r}")
    return int(num_rows)


def _check_pooled_ids(values, offsets, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    values = check_ids("values", values, num_rows)
    offsets = check_offsets("offsets", offsets, values.shape[0])
    return values, offsets


# --------------------------------------------------------------------------- embedding


def _coalesce(ids: np.ndarray, row_grads: np.ndarray, num_rows: int) -> RowSparseGrad:
    """Scatter-add of gradient rows by id through the Numba kernel ``kernels.coalesce_rows``
    (its readable twin is ``pfd_ref.sparse.coalesce_rows``; both give unique sorted rows and
    per-id sums, the kernel adding strictly left to right)."""
    return RowSparseGrad(*kernels.coalesce_rows(ids, row_grads, num_rows), num_rows)


def embedding_forward(table: np.ndarray, ids) -> np.ndarray:
    """Look up one row per example: ``out[i] = table[ids[i]]``.

    table : float32/float64 ``(V, d)``; ids : integer ``(n,)`` in ``[0, V)``.
    Returns ``(n, d)`` in the table's dtype.
    """
    table = _check_table(table)
    ids = check_ids("ids", ids, table.shape[0])
    out = _embedding_forward(table, ids)
    _check_rows_finite(out)
    return out


def _embedding_forward(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return table[ids]


def embedding_backward(d_out: np.ndarray, ids, num_rows: int) -> RowSparseGrad:
    """Gradient wrt the table of ``embedding_forward``: ``d_table[v] = sum_{i : ids[i] = v} d_out[i]``.

    d_out : float32/float64 ``(n, d)``, the gradient wrt the output; ids : integer ``(n,)``
    in ``[0, num_rows)``. Returns a ``RowSparseGrad`` of the ``(num_rows, d)`` table whose
    rows are the unique ids of the batch, values in the dtype of ``d_out``.
    """
    d_out = check_float_array("d_out", d_out, ndim=2)
    num_rows = _check_num_rows(num_rows)
    ids = check_ids("ids", ids, num_rows)
    check_shape("ids", ids, (d_out.shape[0],))
    return _embedding_backward(d_out, ids, num_rows)


def _embedding_backward(d_out: np.ndarray, ids: np.ndarray, num_rows: int) -> RowSparseGrad:
    return _coalesce(ids, d_out, num_rows)


def pooled_embedding_forward(table: np.ndarray, values, offsets, pooling: str) -> np.ndarray:
    """Pool the rows of a multi-id field, one CSR row per example.

    With ``R_i = values[offsets[i]:offsets[i+1]]`` and ``c_i = |R_i|``:
    ``out[i] = sum_{k in R_i} table[k]`` (``pooling="sum"``) or that sum divided by ``c_i``
    (``pooling="mean"``); an empty row (``c_i = 0``) pools to zeros. Repeated ids in a row
    count once per occurrence.

    table : float32/float64 ``(V, d)``, C-contiguous (the Numba kernel reads it in place; a
    strided table is rejected with a message, not copied on every call); values : integer
    ``(nnz,)`` in ``[0, V)``; offsets : integer ``(n + 1,)``, ``offsets[0] = 0``,
    non-decreasing, ``offsets[n] = nnz``. Returns ``(n, d)`` in the table's dtype.
    """
    table = _check_table(table)
    pooling = check_pooling(pooling)
    values, offsets = _check_pooled_ids(values, offsets, table.shape[0])
    _check_rows_finite(table[values])
    return _pooled_embedding_forward(table, values, offsets, pooling)


def _pooled_embedding_forward(table: np.ndarray, values: np.ndarray, offsets: np.ndarray, pooling: str) -> np.ndarray:
    """The Numba kernel ``kernels.pool_rows``, which adds a row's embeddings in
    ``np.add.reduceat``'s order: the same bits as its NumPy twin
    ``pfd_ref.reference_kernels.pool_rows`` (gather + ``np.add.reduceat``)."""
    return kernels.pool_rows(table, values, offsets, pooling)


def pooled_embedding_backward(d_out: np.ndarray, values, offsets, num_rows: int, pooling: str) -> RowSparseGrad:
    """Gradient wrt the table of ``pooled_embedding_forward``.

    Each occurrence of id ``k`` in row ``i`` receives ``d_out[i]`` (sum) or ``d_out[i] / c_i``
    (mean), and occurrences of the same id add up:
    ``d_table[k] = sum_i m_ik d_out[i] * (1 or 1 / c_i)`` with ``m_ik`` the number of times
    ``k`` occurs in row ``i``. Empty rows contribute nothing.

    d_out : float32/float64 ``(n, d)``; values, offsets : the CSR ids as in the forward;
    num_rows : ``V``. Returns a ``RowSparseGrad`` of the ``(V, d)`` table, values in the dtype
    of ``d_out``.
    """
    d_out = check_float_array("d_out", d_out, ndim=2)
    num_rows = _check_num_rows(num_rows)
    pooling = check_pooling(pooling)
    values, offsets = _check_pooled_ids(values, offsets, num_rows)
    check_shape("d_out", d_out, (offsets.shape[0] - 1, None))
    return _pooled_embedding_backward(d_out, values, offsets, num_rows, pooling)


def _pooled_embedding_backward(d_out: np.ndarray, values: np.ndarray, offsets: np.ndarray, num_rows: int,
                               pooling: str) -> RowSparseGrad:
    """The Numba kernel ``kernels.coalesce_pooled_rows`` (each id's terms added left to
    right); its NumPy twin ``pfd_ref.reference_kernels.coalesce_pooled_rows`` repeats each
    row's gradient to its ids and coalesces them."""
    return RowSparseGrad(*kernels.coalesce_pooled_rows(d_out, values, offsets, num_rows, pooling), num_rows)


# --------------------------------------------------------------------------- linear and relu


def _linear_forward(x, weight, bias):
    y = x @ weight
    y += bias  # in place: the same sums as ``x @ weight + bias``, one temporary less
    return y


def _linear_backward(d_y, x, weight):
    return d_y @ weight.T, x.T @ d_y, d_y.sum(axis=0)


def _relu_backward(d_y, x):
    """``np.where(x > 0, d_y, 0)`` computed by the Numba kernel ``kernels.relu_backward`` (the
    same bits; NumPy's ``where`` mispredicts a branch on about half of the elements)."""
    return kernels.relu_backward(d_y, x)


def _check_linear(x, weight, bias) -> None:
    """``x (n, i)``, ``weight (i, o)``, ``bias (o,)``, all finite and of one float dtype."""
    x = check_float_array("x", x, ndim=2)
    weight = check_float_array("weight", weight, ndim=2, dtype=x.dtype)
    check_shape("weight", weight, (x.shape[1], None))
    bias = check_float_array("bias", bias, ndim=1, dtype=x.dtype)
    check_shape("bias", bias, (weight.shape[1],))


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``y = x @ W + b``.

    x : ``(n, i)``; weight ``W`` : ``(i, o)``; bias ``b`` : ``(o,)``; one float dtype.
    Returns ``y`` of shape ``(n, o)`` in that dtype.
    """
    _check_linear(x, weight, bias)
    return _linear_forward(x, weight, bias)


def linear_backward(d_y: np.ndarray, x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``y = x @ W + b`` given ``d_y = dL/dy``:
    ``d_x = d_y @ W^T``, ``d_W = x^T @ d_y``, ``d_b = sum_n d_y[n, :]``.

    d_y : ``(n, o)``; x : ``(n, i)``; weight : ``(i, o)``; one float dtype.
    Returns ``(d_x (n, i), d_weight (i, o), d_bias (o,))`` in that dtype.
    """
    x = check_float_array("x", x, ndim=2)
    weight = check_float_array("weight", weight, ndim=2, dtype=x.dtype)
    check_shape("weight", weight, (x.shape[1], None))
    d_y = check_float_array("d_y", d_y, ndim=2, dtype=x.dtype)
    check_shape("d_y", d_y, (x.shape[0], weight.shape[1]))
    return _linear_backward(d_y, x, weight)


def relu_forward(x: np.ndarray) -> np.ndarray:
    """``y = max(x, 0)`` elementwise; any shape, same dtype."""
    x = check_float_array("x", x)
    return np.maximum(x, 0)


def relu_backward(d_y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``d_x = d_y * 1[x > 0]`` (the derivative at ``x = 0`` is taken as 0).

    d_y, x : the same shape and float dtype; returns ``d_x`` of that shape and dtype.
    """
    x = check_float_array("x", x)
    d_y = check_float_array("d_y", d_y, dtype=x.dtype)
    check_shape("d_y", d_y, x.shape)
    return _relu_backward(d_y, x)


# --------------------------------------------------------------------------- mlp


class MLPCache(NamedTuple):
    """What ``mlp_backward`` needs from ``mlp_forward``.

    inputs[j] : ``h_j``, the input of layer ``j`` (``h_0 = x``), shape ``(n, in_j)``.
    pre_activations[j] : ``z_j = h_j @ W_j + b_j``, shape ``(n, out_j)``.
    weights[j] : ``W_j``, shape ``(in_j, out_j)``.
    """

    inputs: list
    pre_activations: list
    weights: list


def _check_mlp_params(x, weights, biases) -> None:
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(f"weights: expected one or more layers and as many biases, "
                         f"got {len(weights)} weights and {len(biases)} biases")
    x = check_float_array("x", x, ndim=2)
    width = x.shape[1]
    for j, (weight, bias) in enumerate(zip(weights, biases)):
        weight = check_float_array(f"weights[{j}]", weight, ndim=2, dtype=x.dtype)
        check_shape(f"weights[{j}]", weight, (width, None))
        bias = check_float_array(f"biases[{j}]", bias, ndim=1, dtype=x.dtype)
        check_shape(f"biases[{j}]", bias, (weight.shape[1],))
        width = weight.shape[1]


def mlp_forward(x: np.ndarray, weights: list, biases: list) -> tuple[np.ndarray, MLPCache]:
    """A multi-layer perceptron with ReLU after every layer but the last (a linear output):

        h_0 = x;  z_j = h_j @ W_j + b_j;  h_{j+1} = relu(z_j) for j < L;  out = z_L

    x : ``(n, in)``; weights : ``[W_0 (in, h_1), ..., W_L (h_L, out)]``; biases :
    ``[b_0 (h_1,), ..., b_L (out,)]``; all of one float dtype.
    Returns ``(out (n, out), cache)`` with ``cache`` an ``MLPCache`` for ``mlp_backward``.
    """
    _check_mlp_params(x, weights, biases)
    return _mlp_forward(x, weights, biases)


def _mlp_forward(x: np.ndarray, weights: list, biases: list) -> tuple[np.ndarray, MLPCache]:
    h, inputs, pre_activations = x, [], []
    last = len(weights) - 1
    for j, (weight, bias) in enumerate(zip(weights, biases)):
        inputs.append(h)
        z = _linear_forward(h, weight, bias)
        pre_activations.append(z)
        h = z if j == last else np.maximum(z, 0)
    return h, MLPCache(inputs, pre_activations, list(weights))


def mlp_backward(d_out: np.ndarray, cache: MLPCache) -> tuple[np.ndarray, list, list]:
    """Backward recursion of ``mlp_forward`` given ``d_out = dL/dout``:

        d_z_L = d_out
        d_W_j = h_j^T @ d_z_j;  d_b_j = sum_n d_z_j[n, :];  d_h_j = d_z_j @ W_j^T
        d_z_{j-1} = d_h_j * 1[z_{j-1} > 0]            (j = L, ..., 1);   d_x = d_h_0

    d_out : ``(n, out)`` in the dtype of the forward pass.
    Returns ``(d_x (n, in), [d_W_0, ..., d_W_L], [d_b_0, ..., d_b_L])`` in that dtype.
    """
    if not isinstance(cache, MLPCache):
        raise ValueError(f"cache: expected the MLPCache returned by mlp_forward, got {type(cache).__name__}")
    last_z = cache.pre_activations[-1]
    d_out = check_float_array("d_out", d_out, ndim=2, dtype=last_z.dtype)
    check_shape("d_out", d_out, last_z.shape)
    return _mlp_backward(d_out, cache)


def _mlp_backward(d_out: np.ndarray, cache: MLPCache) -> tuple[np.ndarray, list, list]:
    num_layers = len(cache.weights)
    d_weights, d_biases = [None] * num_layers, [None] * num_layers
    d_z = d_out
    for j in reversed(range(num_layers)):
        d_h, d_weights[j], d_biases[j] = _linear_backward(d_z, cache.inputs[j], cache.weights[j])
        if j > 0:
            d_z = _relu_backward(d_h, cache.pre_activations[j - 1])
    return d_h, d_weights, d_biases


# --------------------------------------------------------------------------- inner product


def _check_pair(u, v) -> None:
    u = check_float_array("u", u, ndim=2)
    v = check_float_array("v", v, ndim=2, dtype=u.dtype)
    check_shape("v", v, u.shape)


def inner_product_forward(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``logits[i] = <u_i, v_i> = sum_k u[i, k] v[i, k]``.

    u, v : ``(n, k)`` of one float dtype. Returns ``(n,)`` in that dtype.
    """
    _check_pair(u, v)
    return _inner_product_forward(u, v)


def _inner_product_forward(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.einsum("ik,ik->i", u, v)


def inner_product_backward(d_logits: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``logits[i] = <u_i, v_i>`` given ``d_logits = dL/dlogits``:
    ``d_u[i] = d_logits[i] * v[i]``, ``d_v[i] = d_logits[i] * u[i]``.

    d_logits : ``(n,)``; u, v : ``(n, k)``; one float dtype. Returns ``(d_u, d_v)``, ``(n, k)`` each.
    """
    _check_pair(u, v)
    d_logits = check_float_array("d_logits", d_logits, ndim=1, dtype=u.dtype)
    check_shape("d_logits", d_logits, (u.shape[0],))
    return _inner_product_backward(d_logits, u, v)


def _inner_product_backward(d_logits: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return d_logits[:, None] * v, d_logits[:, None] * u

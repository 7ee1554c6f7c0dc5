"""Readable NumPy twins of the Numba kernels in ``kernels/``.

Each function states the same contract as its kernel and computes it the plainest way,
so that tests/test_kernels.py can check the kernel against it. They are references, not
fast paths: they validate every element and sort where the kernels select. The twin of
``kernels.coalesce_rows`` is ``pfd_ref.sparse.coalesce_rows``.

Ranking order for top-k: higher score first; among equal scores, lower index first.
"""

from __future__ import annotations

import numpy as np

from pfd_ref.sparse import coalesce_rows
from pfd_ref.validation import check_float_array, check_float_dtype, check_ids, check_offsets, check_same_dtype, check_scalar


def score_items(items: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Inner-product scores ``users @ items.T``.

    items : float ``(N, d)``; users : same dtype, ``(d,)`` -> scores ``(N,)`` with
    ``scores[i] = sum_j items[i, j] users[j]``, or ``(m, d)`` -> ``(m, N)``.
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
    kk = min(k, n)
    top_ids = np.empty((rows.shape[0], kk), np.int64)
    for r, row in enumerate(rows):
        # lexsort sorts by the last key first: -row (score descending), then the index
        top_ids[r] = np.lexsort((np.arange(n), -row))[:kk]
    top_scores = np.take_along_axis(rows, top_ids, axis=1)
    if scores.ndim == 1:
        return top_scores[0], top_ids[0]
    return top_scores, top_ids


def top_k_items(items: np.ndarray, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``min(k, N)`` best items per user: ``top_k_scores(score_items(items, users), k)``."""
    return top_k_scores(score_items(items, users), k)


def mlp_scores(x: np.ndarray, weights, biases, sigmoid: bool = False, negative_slope: float = 0.0) -> np.ndarray:
    """MLP forward pass: ``h_{l+1} = act(h_l @ W_l + b_l)`` for hidden layers, a linear
    output ``z = h @ W_last + b_last``, and ``1 / (1 + exp(-z))`` when ``sigmoid``;
    ``act(z) = max(z, 0)`` (ReLU) when ``negative_slope`` is 0, else
    ``z if z > 0 else negative_slope * z`` (LeakyReLU, the slope rounded to x's dtype).

    x : float ``(n, i)``; weights : list of ``(in_l, out_l)``; biases : list of
    ``(out_l,)``, all of x's dtype. Returns ``(n, out_last)``.
    """
    x = check_float_array("x", x, ndim=2)
    if len(weights) == 0 or len(weights) != len(biases):
        raise ValueError(f"weights: expected one or more layers and as many biases, got {len(weights)} and {len(biases)}")
    h = x
    for layer, (w, b) in enumerate(zip(weights, biases)):
        w = check_float_array(f"weights[{layer}]", w, ndim=2, dtype=x.dtype)
        b = check_float_array(f"biases[{layer}]", b, ndim=1, dtype=x.dtype)
        z = h @ w + b
        if layer == len(weights) - 1:
            h = z
        elif negative_slope == 0:
            h = np.maximum(z, 0)
        else:
            h = np.where(z > 0, z, z * x.dtype.type(negative_slope))
    if sigmoid:
        # exp of a non-positive number only: no overflow for either sign of h
        e = np.exp(-np.abs(h))
        h = np.where(h >= 0, 1 / (1 + e), e / (1 + e))
    return h


def leaky_relu_backward(d_y: np.ndarray, x: np.ndarray, negative_slope: float) -> np.ndarray:
    """Gradient of LeakyReLU: ``d_x = d_y`` where ``x > 0``, else ``negative_slope * d_y``
    (the slope rounded to the arrays' dtype; NaN or infinity pass through as in the kernel).
    d_y, x : one shape and float dtype."""
    x = check_float_dtype("x", x)
    d_y = check_float_dtype("d_y", d_y, x.dtype)
    return np.where(x > 0, d_y, d_y * x.dtype.type(negative_slope))


def pool_rows(table: np.ndarray, values, offsets, pooling: str) -> np.ndarray:
    """Pooled lookup: ``out[i] = sum_{k in R_i} table[k]`` (``"sum"``) or that sum divided by
    ``c_i = |R_i|`` (``"mean"``), ``R_i = values[offsets[i]:offsets[i+1]]``; empty rows pool
    to zeros.

    table : float ``(V, d)``; values : integer ``(nnz,)``; offsets : integer ``(n + 1,)``.
    Returns ``(n, d)`` in the table's dtype. Each row's sum is one ``np.add.reduceat`` segment.
    """
    table = check_float_array("table", table, ndim=2)
    values = check_ids("values", values, table.shape[0])
    offsets = check_offsets("offsets", offsets, values.shape[0])
    counts = np.diff(offsets)
    out = np.zeros((counts.shape[0], table.shape[1]), dtype=table.dtype)
    nonempty = counts > 0
    if values.shape[0]:
        # np.add.reduceat would return a single element (not zero) for an empty segment, so
        # only the starts of non-empty rows are passed; each such segment then runs exactly
        # to the start of the next non-empty row (empty rows in between hold no values).
        out[nonempty] = np.add.reduceat(table[values], offsets[:-1][nonempty], axis=0)
    if pooling == "mean":
        out[nonempty] /= counts[nonempty, None].astype(table.dtype)
    return out


def coalesce_pooled_rows(d_out: np.ndarray, values, offsets, num_rows: int, pooling: str) -> tuple[np.ndarray, np.ndarray]:
    """Table gradient of ``pool_rows``: ``d_table[k] = sum_i m_ik d_out[i] (/ c_i for "mean")``
    with ``m_ik`` the number of times id ``k`` occurs in row ``i``.

    d_out : float ``(n, d)``; values, offsets : as in ``pool_rows``; num_rows : ``V``.
    Returns ``(rows, grad_rows)``: the touched ids ascending and their gradient rows.
    """
    d_out = check_float_array("d_out", d_out, ndim=2)
    values = check_ids("values", values, num_rows)
    counts = np.diff(check_offsets("offsets", offsets, values.shape[0]))
    value_grads = np.repeat(d_out, counts, axis=0)  # (nnz, d): row i's gradient, once per id in it
    if pooling == "mean":
        value_grads /= np.repeat(counts, counts)[:, None].astype(d_out.dtype)
    grad = coalesce_rows(values, value_grads, num_rows)
    return grad.rows, grad.values

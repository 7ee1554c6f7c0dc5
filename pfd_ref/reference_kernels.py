"""Readable NumPy twins of the Numba kernels in ``kernels/``.

Each function states the same contract as its kernel and computes it the plainest way,
so that tests/test_kernels.py can check the kernel against it. They are references, not
fast paths: they validate every element and sort where the kernels select. The twin of
``kernels.coalesce_rows`` is ``pfd_ref.sparse.coalesce_rows``.

Ranking order for top-k: higher score first; among equal scores, lower index first.
"""

from __future__ import annotations

import numpy as np

from pfd_ref.validation import check_float_array, check_same_dtype


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
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k: expected an integer >= 0, got {k!r}")
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


def mlp_scores(x: np.ndarray, weights, biases, sigmoid: bool = False) -> np.ndarray:
    """MLP forward pass: ``h_{l+1} = relu(h_l @ W_l + b_l)`` for hidden layers, a linear
    output ``z = h @ W_last + b_last``, and ``1 / (1 + exp(-z))`` when ``sigmoid``.

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
        h = np.maximum(z, 0) if layer < len(weights) - 1 else z
    if sigmoid:
        # exp of a non-positive number only: no overflow for either sign of h
        e = np.exp(-np.abs(h))
        h = np.where(h >= 0, 1 / (1 + e), e / (1 + e))
    return h

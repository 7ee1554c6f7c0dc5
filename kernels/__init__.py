"""Numba kernels for the hot loops of pfd_ref: scoring, top-k, MLP scoring, pooled embedding
lookup, scatter-adds, ReLU and LeakyReLU backward, dense and lazy Adam, lazy Adagrad; and the
tokenizer of the log readers (``text``: split fields, parse integers, match tokens).

Every kernel has a readable NumPy twin under its own name in ``pfd_ref.twins``, and a parity
test (tests/test_twins.py); ``pfd_ref.set_backend("numpy")`` runs pfd_ref on the twins
(``pfd_ref.backend``). This package depends on nothing else in ``pfd_ref`` (its argument
checks are its own, ``kernels/checks.py``).
The public functions below validate their arguments (float32 or float64, one dtype across
arguments, C-contiguous reusable arrays, shapes, ``k >= 0``, finiteness) and choose between
the serial and the parallel kernel; the ``@njit`` functions they call take plain arrays
only. ``adam_update_``, ``sparse_adam_rows_update_`` and ``sparse_adagrad_rows_update_``
update a parameter and its optimizer state in place, in any layout.
Numba's thread count follows ``NUMBA_NUM_THREADS`` / ``numba.set_num_threads``; BLAS
(used for batched GEMM) follows its own ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``.
Kernels are compiled on first use and cached on disk (``cache=True``);
``compile_all()`` compiles them up front (docs/performance.md gives the times).
"""

from __future__ import annotations

import numpy as np

from . import activation, adagrad, adam, embedding, mlp, scoring, text
from .activation import leaky_relu_backward, relu_backward
from .adagrad import sparse_adagrad_rows_update_
from .adam import adam_update_, sparse_adam_rows_update_
from .embedding import coalesce_pooled_rows, coalesce_rows, pool_rows
from .mlp import mlp_scores
from .scoring import score_items, top_k_items, top_k_scores
from .text import match_tokens, parse_int64, split_fields

__all__ = [
    "adam_update_", "coalesce_pooled_rows", "coalesce_rows", "compile_all", "leaky_relu_backward", "match_tokens",
    "mlp_scores", "parse_int64", "pool_rows", "relu_backward", "score_items", "sparse_adagrad_rows_update_",
    "sparse_adam_rows_update_", "split_fields", "top_k_items", "top_k_scores",
]


def compile_all(mlp_depths: tuple[int, ...] = (3,)) -> None:
    """Compile (or load from Numba's cache) every kernel for float32 and float64, the
    serial and the parallel variants, and the row-path MLP for each depth in
    ``mlp_depths`` (the number of weight matrices; each depth is its own signature), and the
    tokenizer."""
    for dtype in (np.float32, np.float64):
        scoring.warm_up(dtype)
        mlp.warm_up(dtype, mlp_depths)
        embedding.warm_up(dtype)
        adam.warm_up(dtype)
        adagrad.warm_up(dtype)
        activation.warm_up(dtype)
    text.warm_up()

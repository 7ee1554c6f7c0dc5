"""Numba kernels for the hot loops of pfd_ref: scoring, top-k, MLP scoring, embedding lookups
(single-id and pooled, written into the MLP input in place), scatter-adds, ReLU and LeakyReLU
backward, dense and lazy Adam, lazy Adagrad; and the tokenizer of the log readers (``text``: split fields, parse integers, match tokens).

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
``compile_all()`` compiles the float32 ones up front, ``compile_all(dtypes=("float32",
"float64"))`` both dtypes (docs/performance.md, "Cold start", gives the times).
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Iterable

import numpy as np

from . import activation, adagrad, adam, compiling, embedding, mlp, scoring, text
from .activation import leaky_relu_backward, relu_backward
from .checks import float_dtype
from .adagrad import sparse_adagrad_rows_update_
from .adam import adam_update_, sparse_adam_rows_update_
from .embedding import coalesce_pooled_rows, coalesce_rows, gather_rows, pool_rows
from .mlp import mlp_scores, mlp_scores_split
from .scoring import score_items, top_k_item_blocks, top_k_items, top_k_scores
from .text import match_tokens, parse_int64, split_fields

__all__ = [
    "adam_update_", "coalesce_pooled_rows", "coalesce_rows", "compile_all", "gather_rows", "leaky_relu_backward",
    "match_tokens", "mlp_scores", "mlp_scores_split", "parse_int64", "pool_rows", "relu_backward", "score_items",
    "sparse_adagrad_rows_update_", "sparse_adam_rows_update_", "split_fields", "top_k_item_blocks", "top_k_items",
    "top_k_scores",
]


# The kernels each use needs: `pfd-ref run` compiles the training kernels of its dtype only.
# The log readers' tokenizer ("readers") works on bytes and has one signature, whatever the dtypes.
KERNEL_MODULES = {"serving": (scoring, mlp), "training": (activation, embedding, adam, adagrad), "readers": (text,)}


# What compile_all() compiles unless told otherwise: the speed dtype. The float64 kernels (the
# oracle, `--dtype float64` runs) compile on first use, or up front with dtypes=.
DEFAULT_DTYPES = (np.float32,)

# The order compile_all takes the kernel modules in: the cheapest first (it tells whether the
# cache is cold, so whether to start a worker), then the costliest first, so that the last
# modules, taken by whichever process is free, are short (compile seconds per module and
# dtype, float32, from the per-function table of docs/performance.md, "Cold start": scoring
# 1.9, embedding 1.5, text 1.3 with Numba's start-up, mlp 0.65, adam 0.4, activation 0.4,
# adagrad 0.2).
COMPILE_ORDER = (adagrad, scoring, embedding, text, mlp, adam, activation)
_COMPILING = threading.Lock()  # one compile_all at a time in this process


def compile_all(dtypes=DEFAULT_DTYPES, uses=tuple(KERNEL_MODULES), workers=None) -> None:
    """Compile (or load from Numba's cache) the kernels of every use in ``uses``
    (``KERNEL_MODULES``: "serving", the scoring, top-k and MLP kernels; "training", the
    embedding, Adam, Adagrad and ReLU/LeakyReLU-backward kernels; "readers", the log
    readers' tokenizer) for every dtype in ``dtypes`` (float32 and/or float64, as types or
    names). By default every kernel for float32 only, the dtype of speed; the float64
    kernels (the oracle's, ``--dtype float64`` runs') compile on their first call, or up
    front with ``compile_all(dtypes=("float32", "float64"))``. Each kernel has one compiled
    signature per dtype (the tokenizer one in all).

    ``workers``: how many processes compile, this one included, when the cache is cold
    (``compiling.compile_units``: the others compile whole modules into Numba's cache, and
    this process loads them); None for 2 where this process may use 2 CPUs or more, else 1.
    1 compiles everything here; from a warm cache no process is started whatever it is."""
    for name, value in (("dtypes", dtypes), ("uses", uses)):
        if isinstance(value, (str, bytes)):
            raise ValueError(f"{name}: expected a sequence of names, got the single string {value!r}")
        if isinstance(value, type) or not isinstance(value, Iterable):
            raise ValueError(f"{name}: expected a sequence, got {value!r}")
    dtypes, uses = tuple(dtypes), tuple(uses)  # an iterator is read once, by the checks
    for use in uses:
        if use not in KERNEL_MODULES:
            raise ValueError(f"uses: expected names from {', '.join(KERNEL_MODULES)}, got {use!r}")
    types = list(dict.fromkeys(float_dtype("dtypes", dtype).type for dtype in dtypes))
    if workers is None:
        workers = min(2, compiling.available_cpus())
    elif isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers: expected an integer >= 1 or None, got {workers!r}")
    wanted = {module for use in uses for module in KERNEL_MODULES[use]}
    with _COMPILING:  # two threads' workers could add different signatures of one function to its cache index at once
        compiling.compile_units([module for module in COMPILE_ORDER if module in wanted], types, int(workers))

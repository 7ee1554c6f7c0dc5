"""Shared pieces of the kernels' Python layer: argument checks and the serial/parallel choice.

Parallelism: the kernels are serial ``@njit(nogil=True)`` functions over a range of rows;
for large inputs the Python layer splits the rows into ``numba.get_num_threads()`` chunks
and runs them on a small thread pool (``run_chunks``), the calling thread taking the
first chunk. Releasing the GIL lets the chunks run at once. Compared with ``prange``
kernels this halves the compile time (no second, parallel variant of every kernel), and
idle workers sleep instead of spinning, so they do not compete with BLAS's threads for
the cores. The thread count follows ``NUMBA_NUM_THREADS`` / ``numba.set_num_threads``.

Layout rule (the same in every kernel module):

* arrays that are prepared once and reused across calls (the item matrix, MLP weights and
  biases, an embedding table) must already be C-contiguous; a non-contiguous one is
  rejected, because a silent per-call copy would cost a full pass over the largest array;
* per-call inputs (user vectors, MLP inputs, score vectors, ids, gradient rows) are copied
  to C-contiguous when they are not (``np.ascontiguousarray``), which costs no more than
  reading them once.

Finiteness (no NaN, no infinity) is not checked element by element up front on large
arrays: the kernels count non-finite values in what they compute anyway (scores,
pre-activations), which is complete (a NaN or infinity in any input always makes the
result it feeds non-finite) and costs one comparison per result instead of a pass over
the inputs. Only when that count is non-zero does :func:`raise_nonfinite` look for the
culprit, so the error still names the argument.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .checks import check_float_array, check_float_dtype

# Below this many multiply-adds (or compared scores), about 2 ms of serial work, splitting
# the work among threads does not pay on the 2-core benchmark machine: a chunk handed to a
# pool thread starts after about 50 us when calls come back to back and 100-400 us when the
# other (virtual) core has been idle. Measured by `python -m benchmarks.scoring` (section
# "parallel threshold"), see docs/performance.md.
PARALLEL_MIN_WORK = 1 << 23

_pool: ThreadPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def parallel_chunks(work: int) -> int:
    """How many chunks to split ``work`` into: Numba's thread count when the work is large
    enough to pay for the hand-off, else 1 (serial)."""
    threads = numba.get_num_threads()
    return threads if threads > 1 and work >= PARALLEL_MIN_WORK else 1


def run_chunks(kernel, chunk_args: list[tuple]) -> list:
    """``[kernel(*args) for args in chunk_args]``, the chunks run concurrently.

    ``kernel`` must be ``@njit(nogil=True)`` and the chunks must write disjoint outputs.
    The calling thread runs the first chunk; a process-wide pool runs the others.
    """
    global _pool, _pool_workers
    if len(chunk_args) == 1:
        return [kernel(*chunk_args[0])]
    with _pool_lock:
        if _pool_workers < len(chunk_args) - 1:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool_workers = len(chunk_args) - 1
            _pool = ThreadPoolExecutor(max_workers=_pool_workers, thread_name_prefix="pfd-kernels")
        pool = _pool
    futures = [pool.submit(kernel, *args) for args in chunk_args[1:]]
    first = kernel(*chunk_args[0])
    return [first] + [future.result() for future in futures]


def chunk_bounds(n: int, chunks: int) -> list[tuple[int, int]]:
    """``chunks`` contiguous ranges covering ``[0, n)``, sizes differing by at most one."""
    return [(c * n // chunks, (c + 1) * n // chunks) for c in range(chunks)]


def check_float_layout(name: str, x, ndims: tuple[int, ...], dtype=None, copy: bool = False) -> np.ndarray:
    """Return ``x`` after checking type, float dtype (``dtype`` when given), that ``x.ndim``
    is in ``ndims``, and C-contiguity.

    A non-contiguous ``x`` is copied when ``copy`` (per-call inputs) and rejected otherwise
    (reusable arrays). Finiteness is left to the kernel (see the module docstring).
    """
    check_float_dtype(name, x, dtype)
    if x.ndim not in ndims:
        raise ValueError(f"{name}: expected {' or '.join(map(str, ndims))} dimension(s), got shape {x.shape}")
    if x.flags.c_contiguous:
        return x
    if copy:
        return np.ascontiguousarray(x)
    raise ValueError(
        f"{name}: must be C-contiguous; call np.ascontiguousarray({name}) once and reuse "
        "the result (a copy on every call would cost a full pass over the array)"
    )


def check_row_update(param: np.ndarray, states: dict, rows, row_grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Checks of a lazy row update (``sparse_adam_rows_``, ``sparse_adagrad_rows_``): ``param``
    a float32/float64 ``(V, d)`` table, every array of ``states`` (name -> optimizer state)
    of its shape and dtype, ``row_grads`` ``(k, d)`` of its dtype (copied if not
    C-contiguous), ``rows`` one integer id per gradient row. Returns ``(rows as int64,
    row_grads)``. That the rows are increasing and inside the table is checked by the kernel
    itself before it writes anything (a separate jitted check would cost one more compiled
    function: docs/performance.md, "Cold start"); it then calls ``raise_bad_rows``."""
    check_float_dtype("param", param)
    if param.ndim != 2:
        raise ValueError(f"param: expected 2 dimension(s), got shape {param.shape}")
    for name, state in states.items():
        check_float_dtype(name, state, param.dtype)
        if state.shape != param.shape:
            raise ValueError(f"{name}: expected shape {param.shape} (the parameter's), got {state.shape}")
    row_grads = check_float_layout("row_grads", row_grads, ndims=(2,), dtype=param.dtype, copy=True)
    rows = np.asarray(rows)
    if rows.dtype.kind not in "iu" or rows.shape != (row_grads.shape[0],):
        raise ValueError(f"rows: expected one integer row id per row of row_grads, got {rows.dtype} {rows.shape}")
    if row_grads.shape[1] != param.shape[1]:
        raise ValueError(f"row_grads: expected {param.shape[1]} columns (the parameter's), got {row_grads.shape[1]}")
    return np.ascontiguousarray(rows, dtype=np.int64), row_grads


def raise_bad_rows(num_rows: int) -> None:
    """The error of a lazy row update whose kernel found ``rows`` not increasing or outside the table."""
    raise ValueError(f"rows: must be unique, sorted ascending and inside [0, {num_rows})")


def raise_nonfinite(suspects: dict, what: str) -> None:
    """Raise the ``ValueError`` for a kernel that met a non-finite result.

    ``suspects`` maps argument names to arrays in the order they are blamed; the first
    that holds a NaN or infinity is named. If none does, the finite inputs overflowed
    and the first name is blamed for that, with ``what`` saying where.
    """
    for name, array in suspects.items():
        check_float_array(name, array)
    first = next(iter(suspects))
    raise ValueError(f"{first}: {what} overflowed to infinity (inputs are finite but too large for their dtype)")

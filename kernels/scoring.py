"""Inner-product scoring and top-k selection of items for one user or a batch of users.

Twins (readable NumPy references): ``pfd_ref.reference_kernels.score_items``,
``top_k_items`` and ``top_k_scores``.

Ranking order, used by every top-k here: a higher score ranks first, and among equal scores
the lower item index ranks first. ``k > N`` returns all ``N`` items; ``k = 0`` or ``N = 0``
returns empty arrays (scores in the input dtype, indices int64).

How the kernels reach the memory limit
--------------------------------------
One user against ``N`` items is a matrix-vector product: each item row is read once and
used for ``d`` multiply-adds, so the time is the time to stream the ``N x d`` matrix from
memory. On one core a single sequential stream does not reach the memory bandwidth that
several concurrent streams reach (the STREAM triad reads two and writes one), so
``_score_rows`` walks four distant parts of its row range at once, four rows per step.
The sum over ``d`` is reassociated (Numba ``fastmath={'reassoc', 'contract'}``, no
assumption about NaN or infinity) so that it vectorises. Each row's score comes from the
same code whatever its position, so scores are bit-identical between ``score_items`` and
``top_k_items``, between serial and parallel runs, and between calls; they may differ in
the last bits from NumPy's BLAS, which sums in another order.

The fused top-k scores a block of ``SCAN_BLOCK_ROWS`` rows into a small buffer that stays
in cache and offers each score to a bounded heap (``kernels.heap``): the ``N`` scores are
never materialised or sorted. For a batch of users the scores of an item block come from
BLAS GEMM (``np.matmul``), which is compute-bound and which BLAS does best, and the kernel's
work is the selection over each row of the block.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from kernels._common import (
    check_float_layout,
    check_k,
    raise_nonfinite,
    use_parallel,
)
from kernels.heap import offer, sort_best_first
from pfd_ref.validation import check_float_array, check_same_dtype

FASTMATH = {"reassoc", "contract"}
SCAN_BLOCK_ROWS = 4096
SELECT_CHUNK = 32
GEMM_BLOCK_BYTES = 1 << 20  # score block of a user batch: about 1 MiB, fits in L2


# ----------------------------------------------------------------------------- kernels


@njit(cache=True, fastmath=FASTMATH)
def _dot4(items, r0, r1, r2, r3, user):
    """(<items[r0], user>, ..., <items[r3], user>), one pass over ``user``."""
    s0 = s1 = s2 = s3 = items.dtype.type(0)
    for j in range(user.shape[0]):
        u = user[j]
        s0 += items[r0, j] * u
        s1 += items[r1, j] * u
        s2 += items[r2, j] * u
        s3 += items[r3, j] * u
    return s0, s1, s2, s3


@njit(cache=True)
def _score_rows(items, user, start, stop, out):
    """out[r - start] = <items[r], user> for r in [start, stop); return the non-finite count.

    Four streams: rows start + t, start + q + t, start + 2q + t, start + 3q + t for
    t < q = (stop - start) // 4, then the last rows one at a time (through the same
    ``_dot4``, so every row's rounding is the same wherever it sits).
    """
    q = (stop - start) // 4
    for t in range(q):
        r0 = start + t
        s0, s1, s2, s3 = _dot4(items, r0, r0 + q, r0 + 2 * q, r0 + 3 * q, user)
        out[t] = s0
        out[t + q] = s1
        out[t + 2 * q] = s2
        out[t + 3 * q] = s3
    for r in range(start + 4 * q, stop):
        out[r - start] = _dot4(items, r, r, r, r, user)[0]
    nonfinite = 0
    for t in range(stop - start):
        nonfinite += not np.isfinite(out[t])
    return nonfinite


@njit(cache=True, parallel=True)
def _score_rows_parallel(items, user, out, num_chunks):
    """``_score_rows`` over ``num_chunks`` contiguous chunks of rows in parallel."""
    n = items.shape[0]
    nonfinite = 0
    for c in prange(num_chunks):
        start, stop = c * n // num_chunks, (c + 1) * n // num_chunks
        nonfinite += _score_rows(items, user, start, stop, out[start:stop])
    return nonfinite


@njit(cache=True)
def _select_row(scores, first_id, heap_scores, heap_ids, size):
    """Offer (scores[t], first_id + t) for every t to a heap of capacity >= 1 holding
    ``size`` entries; return (new heap size, count of non-finite scores).

    Once the heap is full, a candidate can only enter if its score is >= the root's, so
    the scores are scanned ``SELECT_CHUNK`` at a time with a branch-free count of such
    hits (vectorised), and only chunks with a hit are offered one by one.
    """
    n = scores.shape[0]
    capacity = heap_scores.shape[0]
    nonfinite = 0
    t = 0
    while t < n and size < capacity:
        if np.isfinite(scores[t]):
            size = offer(heap_scores, heap_ids, size, scores[t], first_id + t)
        else:
            nonfinite += 1
        t += 1
    while t < n:
        stop = min(t + SELECT_CHUNK, n)
        threshold = heap_scores[0]
        hits = 0
        for j in range(t, stop):
            hits += scores[j] >= threshold
            nonfinite += not np.isfinite(scores[j])
        if hits:
            for j in range(t, stop):
                if scores[j] >= heap_scores[0] and np.isfinite(scores[j]):
                    size = offer(heap_scores, heap_ids, size, scores[j], first_id + j)
        t = stop
    return size, nonfinite


@njit(cache=True)
def _top_k_rows(items, user, start, stop, heap_scores, heap_ids, buffer):
    """Top-``len(heap_scores)`` of rows [start, stop) against ``user`` into an empty heap.

    Scores ``len(buffer)`` rows at a time into ``buffer`` and selects from it.
    Returns (heap size, non-finite count).
    """
    size = np.int64(0)  # not a literal 0: that would compile a second specialization of callees
    nonfinite = 0
    block = buffer.shape[0]
    for b0 in range(start, stop, block):
        b1 = min(b0 + block, stop)
        scores = buffer[: b1 - b0]
        _score_rows(items, user, b0, b1, scores)
        size, bad = _select_row(scores, b0, heap_scores, heap_ids, size)
        nonfinite += bad
    return size, nonfinite


@njit(cache=True, parallel=True)
def _top_k_rows_parallel(items, user, heap_scores, heap_ids, buffers):
    """``_top_k_rows`` on ``len(heap_scores)`` chunks in parallel, one heap per chunk,
    then the chunks' heaps merged into row 0. Returns (size of heap 0, non-finite count)."""
    n = items.shape[0]
    num_chunks = heap_scores.shape[0]
    sizes = np.zeros(num_chunks, np.int64)
    nonfinite = 0
    for c in prange(num_chunks):
        start, stop = c * n // num_chunks, (c + 1) * n // num_chunks
        size, bad = _top_k_rows(items, user, start, stop, heap_scores[c], heap_ids[c], buffers[c])
        sizes[c] = size
        nonfinite += bad
    size = sizes[0]
    for c in range(1, num_chunks):
        for t in range(sizes[c]):
            size = offer(heap_scores[0], heap_ids[0], size, heap_scores[c, t], heap_ids[c, t])
    return size, nonfinite


@njit(cache=True)
def _select_rows(scores, first_id, heap_scores, heap_ids, sizes):
    """For every row r, offer scores[r] (ids first_id, first_id + 1, ...) to heap r."""
    nonfinite = 0
    for r in range(scores.shape[0]):
        sizes[r], bad = _select_row(scores[r], first_id, heap_scores[r], heap_ids[r], sizes[r])
        nonfinite += bad
    return nonfinite


@njit(cache=True, parallel=True)
def _select_rows_parallel(scores, first_id, heap_scores, heap_ids, sizes):
    """``_select_rows`` with the rows shared among threads."""
    nonfinite = 0
    for r in prange(scores.shape[0]):
        sizes[r], bad = _select_row(scores[r], first_id, heap_scores[r], heap_ids[r], sizes[r])
        nonfinite += bad
    return nonfinite


@njit(cache=True)
def _sort_rows_best_first(heap_scores, heap_ids, sizes):
    for r in range(heap_scores.shape[0]):
        sort_best_first(heap_scores[r], heap_ids[r], sizes[r])


@njit(cache=True, parallel=True)
def _count_nonfinite(flat):
    count = 0
    for t in prange(flat.shape[0]):
        count += not np.isfinite(flat[t])
    return count


# ----------------------------------------------------------------------------- Python layer


def _check_items_and_users(items, users):
    items = check_float_layout("items", items, ndims=(2,))
    users = check_float_layout("users", users, ndims=(1, 2), copy=True)
    check_same_dtype(items=items, users=users)
    if users.shape[-1] != items.shape[1]:
        raise ValueError(f"users: expected last dimension d = {items.shape[1]} (items is {items.shape}), got shape {users.shape}")
    return items, users


def _gemm_block_rows(num_users: int, itemsize: int) -> int:
    return max(64, GEMM_BLOCK_BYTES // (max(num_users, 1) * itemsize))


def score_items(items: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Inner-product scores of items for one user or a batch of users.

    ``scores[i] = sum_j items[i, j] * users[j]`` for users of shape ``(d,)`` -> ``(N,)``;
    ``scores[b, i] = sum_j items[i, j] * users[b, j]`` for users ``(m, d)`` -> ``(m, N)``.

    items : float32/float64 ``(N, d)``, C-contiguous (else rejected);
    users : same dtype, ``(d,)`` or ``(m, d)`` (copied if not C-contiguous).
    The result has the input dtype. One user: the four-stream Numba kernel (parallel over
    row chunks for large inputs when Numba has several threads). A batch: BLAS GEMM
    (``users @ items.T``). Raises ``ValueError`` if a score is not finite, naming the
    argument that holds the NaN or infinity (or ``items`` on overflow).
    """
    items, users = _check_items_and_users(items, users)
    n, d = items.shape
    if users.ndim == 2:
        scores = np.matmul(users, items.T)
        nonfinite = _count_nonfinite(scores.ravel()) if scores.size else 0
    else:
        scores = np.empty(n, items.dtype)
        if use_parallel(n * d):
            nonfinite = _score_rows_parallel(items, users, scores, numba.get_num_threads())
        else:
            nonfinite = _score_rows(items, users, 0, n, scores)
    if nonfinite:
        raise_nonfinite({"items": items, "users": users}, "a score")
    return scores


def top_k_items(items: np.ndarray, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best items by inner-product score, best first, without sorting all scores.

    For users ``(d,)``: returns ``(top_scores (k',), top_ids (k',) int64)`` with
    ``k' = min(k, N)``, ``top_scores[t] = <items[top_ids[t]], users>``, ordered by score
    descending and, among equal scores, by item index ascending (the k' first items of
    that order). For users ``(m, d)``: ``(m, k')`` arrays, one row per user.

    items : float32/float64 ``(N, d)`` C-contiguous (else rejected); users : same dtype
    (copied if not C-contiguous); k : integer >= 0. Scores of one user are those of
    ``score_items`` bit for bit; for a batch they come from BLAS GEMM in item blocks.
    Raises ``ValueError`` on a non-finite score, naming the argument at fault.
    """
    items, users = _check_items_and_users(items, users)
    k = check_k(k)
    n, d = items.shape
    kk = min(k, n)
    batch = users.ndim == 2
    m = users.shape[0] if batch else 1
    heap_scores = np.empty((m, kk), items.dtype)
    heap_ids = np.empty((m, kk), np.int64)
    if kk == 0 or m == 0:
        return (heap_scores, heap_ids) if batch else (heap_scores[0], heap_ids[0])
    sizes = np.zeros(m, np.int64)
    if batch:
        nonfinite = _top_k_batch(items, users, heap_scores, heap_ids, sizes)
    else:
        nonfinite = _top_k_one(items, users, heap_scores, heap_ids, sizes)
    if nonfinite:
        raise_nonfinite({"items": items, "users": users}, "a score")
    _sort_rows_best_first(heap_scores, heap_ids, sizes)
    return (heap_scores, heap_ids) if batch else (heap_scores[0], heap_ids[0])


def _top_k_one(items, user, heap_scores, heap_ids, sizes) -> int:
    n, d = items.shape
    if use_parallel(n * d):
        chunks = numba.get_num_threads()
        chunk_scores = np.empty((chunks, heap_scores.shape[1]), items.dtype)
        chunk_ids = np.empty((chunks, heap_scores.shape[1]), np.int64)
        buffers = np.empty((chunks, SCAN_BLOCK_ROWS), items.dtype)
        size, nonfinite = _top_k_rows_parallel(items, user, chunk_scores, chunk_ids, buffers)
        heap_scores[0], heap_ids[0] = chunk_scores[0], chunk_ids[0]
    else:
        buffer = np.empty(SCAN_BLOCK_ROWS, items.dtype)
        size, nonfinite = _top_k_rows(items, user, 0, n, heap_scores[0], heap_ids[0], buffer)
    sizes[0] = size
    return nonfinite


def _top_k_batch(items, users, heap_scores, heap_ids, sizes) -> int:
    n, d = items.shape
    m = users.shape[0]
    block = _gemm_block_rows(m, items.itemsize)
    buffer = np.empty(m * min(block, n), items.dtype)
    select = _select_rows_parallel if use_parallel(m * min(block, n)) else _select_rows
    nonfinite = 0
    for b0 in range(0, n, block):
        b1 = min(b0 + block, n)
        scores = buffer[: m * (b1 - b0)].reshape(m, b1 - b0)
        np.matmul(users, items[b0:b1].T, out=scores)
        nonfinite += select(scores, b0, heap_scores, heap_ids, sizes)
    return nonfinite


def top_k_scores(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest of precomputed scores, best first, ties to the lower index.

    scores : float32/float64 ``(N,)`` or ``(m, N)`` (copied if not C-contiguous);
    k : integer >= 0. Returns ``(top_scores, top_ids)`` of shape ``(k',)`` or ``(m, k')``,
    ``k' = min(k, N)``, ``top_scores = scores[..., top_ids]`` in the input dtype, ids
    int64. One bounded heap per row (rows in parallel for large inputs); the scores are
    never sorted. Raises ``ValueError`` if ``scores`` holds NaN or infinity.
    """
    rows = check_float_layout("scores", scores, ndims=(1, 2), copy=True)
    k = check_k(k)
    batch = rows.ndim == 2
    rows = rows if batch else rows[None, :]
    m, n = rows.shape
    kk = min(k, n)
    heap_scores = np.empty((m, kk), rows.dtype)
    heap_ids = np.empty((m, kk), np.int64)
    if kk and m:
        sizes = np.zeros(m, np.int64)
        select = _select_rows_parallel if use_parallel(m * n) and m > 1 else _select_rows
        if select(rows, 0, heap_scores, heap_ids, sizes):
            check_float_array("scores", rows)
        _sort_rows_best_first(heap_scores, heap_ids, sizes)
    return (heap_scores, heap_ids) if batch else (heap_scores[0], heap_ids[0])


def warm_up(dtype) -> None:
    """Run every kernel of this module once on tiny inputs of ``dtype`` (compiles them)."""
    items = np.ones((8, 2), dtype)
    user = np.ones(2, dtype)
    scores = np.empty(8, dtype)
    heap_scores = np.empty((2, 3), dtype)
    heap_ids = np.empty((2, 3), np.int64)
    _score_rows(items, user, 0, 8, scores)
    _score_rows_parallel(items, user, scores, 2)
    _top_k_rows(items, user, 0, 8, heap_scores[0], heap_ids[0], np.empty(4, dtype))
    _top_k_rows_parallel(items, user, heap_scores, heap_ids, np.empty((2, 4), dtype))
    block = np.ones((2, 8), dtype)
    sizes = np.zeros(2, np.int64)
    _select_rows(block, 0, heap_scores, heap_ids, sizes)
    _select_rows_parallel(block, 0, heap_scores, heap_ids, sizes)
    _sort_rows_best_first(heap_scores, heap_ids, sizes)
    _count_nonfinite(scores)

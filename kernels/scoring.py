"""Inner-product scoring and top-k selection of items for one user or a batch of users.

Twins (readable NumPy references, the same names): ``pfd_ref.twins.score_items``,
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
work is the selection over each row of the block. That selection stays serial: BLAS runs
its own thread pool (``OPENBLAS_NUM_THREADS``), whose threads keep spinning for a while
after each GEMM, and selection threads started between two GEMMs would compete with them for
the same cores.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._common import check_float_layout, chunk_bounds, parallel_chunks, raise_nonfinite, run_chunks
from .checks import check_float_array, check_same_dtype, check_scalar
from .heap import offer, sort_best_first

FASTMATH = {"reassoc", "contract"}
SCAN_BLOCK_ROWS = 4096
SELECT_CHUNK = 128
GEMM_BLOCK_BYTES = 1 << 20  # score block of a user batch: about 1 MiB, fits in L2


# ----------------------------------------------------------------------------- kernels


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _score_rows(items, user, start, stop, out):
    """out[r - start] = <items[r], user> for r in [start, stop); return the non-finite count.

    Four streams: step t < q = (stop - start) // 4 scores rows start + t, start + q + t,
    start + 2q + t and start + 3q + t; the last (stop - start) % 4 rows take one step each
    (the row in all four slots). Every row goes through the same inner loop, so its
    rounding does not depend on where it sits or how the range was split.
    """
    q = (stop - start) // 4
    nonfinite = 0
    for t in range(q + (stop - start - 4 * q)):
        if t < q:
            r0, r1, r2, r3 = start + t, start + q + t, start + 2 * q + t, start + 3 * q + t
        else:
            r0 = r1 = r2 = r3 = start + 3 * q + t
        s0 = s1 = s2 = s3 = items.dtype.type(0)
        for j in range(user.shape[0]):
            u = user[j]
            s0 += items[r0, j] * u
            s1 += items[r1, j] * u
            s2 += items[r2, j] * u
            s3 += items[r3, j] * u
        out[r0 - start] = s0
        nonfinite += not np.isfinite(s0)
        if t < q:
            out[r1 - start] = s1
            out[r2 - start] = s2
            out[r3 - start] = s3
            nonfinite += (not np.isfinite(s1)) + (not np.isfinite(s2)) + (not np.isfinite(s3))
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
        # a slice indexed from 0: Numba then drops its negative-index checks and vectorises
        chunk = scores[t : min(t + SELECT_CHUNK, n)]
        threshold = heap_scores[0]
        hits = 0
        for j in range(chunk.shape[0]):
            hits += chunk[j] >= threshold
            nonfinite += not np.isfinite(chunk[j])
        if hits:
            for j in range(chunk.shape[0]):
                if chunk[j] >= heap_scores[0] and np.isfinite(chunk[j]):
                    size = offer(heap_scores, heap_ids, size, chunk[j], first_id + t + j)
        t += chunk.shape[0]
    return size, nonfinite


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def _select_rows(scores, first_id, heap_scores, heap_ids, sizes):
    """For every row r, offer scores[r] (ids first_id, first_id + 1, ...) to heap r."""
    nonfinite = 0
    for r in range(scores.shape[0]):
        sizes[r], bad = _select_row(scores[r], first_id, heap_scores[r], heap_ids[r], sizes[r])
        nonfinite += bad
    return nonfinite


@njit(cache=True)
def _offer_all(scores, ids, heap_scores, heap_ids, sizes):
    """Offer every (scores[t], ids[t]) to the heap whose size is ``sizes[0]``."""
    for t in range(scores.shape[0]):
        sizes[0] = offer(heap_scores, heap_ids, sizes[0], scores[t], ids[t])


@njit(cache=True)
def _sort_rows_best_first(heap_scores, heap_ids, sizes):
    for r in range(heap_scores.shape[0]):
        sort_best_first(heap_scores[r], heap_ids[r], sizes[r])


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
        with np.errstate(invalid="ignore", over="ignore"):  # checked just below
            scores = np.matmul(users, items.T)
        nonfinite = not np.isfinite(scores).all()
    else:
        scores = np.empty(n, items.dtype)
        bounds = chunk_bounds(n, parallel_chunks(n * d))
        nonfinite = sum(run_chunks(_score_rows, [(items, users, a, b, scores[a:b]) for a, b in bounds]))
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
    Raises ``ValueError`` on a non-finite score, naming the argument at fault (``k = 0``,
    ``N = 0`` or no users return at once, without reading the items).
    """
    items, users = _check_items_and_users(items, users)
    k = check_scalar("k", k, int, low=0)
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
    """Fill heap 0 with the top of all rows: one heap per chunk of rows, then merged."""
    n, d = items.shape
    bounds = chunk_bounds(n, parallel_chunks(n * d))
    if len(bounds) == 1:
        sizes[0], nonfinite = _top_k_rows(items, user, 0, n, heap_scores[0], heap_ids[0], np.empty(SCAN_BLOCK_ROWS, items.dtype))
        return nonfinite
    chunk_scores = np.empty((len(bounds), heap_scores.shape[1]), items.dtype)
    chunk_ids = np.empty((len(bounds), heap_scores.shape[1]), np.int64)
    buffers = np.empty((len(bounds), SCAN_BLOCK_ROWS), items.dtype)
    args = [(items, user, a, b, chunk_scores[c], chunk_ids[c], buffers[c]) for c, (a, b) in enumerate(bounds)]
    results = run_chunks(_top_k_rows, args)
    chunk_sizes = np.array([size for size, _ in results], np.int64)
    # the chunks' heaps are offered, as rows of precomputed scores, into heap 0
    sizes[0] = 0
    for c in range(len(bounds)):
        _offer_all(chunk_scores[c, : chunk_sizes[c]], chunk_ids[c, : chunk_sizes[c]], heap_scores[0], heap_ids[0], sizes)
    return sum(bad for _, bad in results)


def _top_k_batch(items, users, heap_scores, heap_ids, sizes) -> int:
    n, d = items.shape
    m = users.shape[0]
    block = _gemm_block_rows(m, items.itemsize)
    buffer = np.empty(m * min(block, n), items.dtype)
    nonfinite = 0
    for b0 in range(0, n, block):
        b1 = min(b0 + block, n)
        scores = buffer[: m * (b1 - b0)].reshape(m, b1 - b0)
        with np.errstate(invalid="ignore", over="ignore"):  # counted by the selection
            np.matmul(users, items[b0:b1].T, out=scores)
        nonfinite += _select_rows(scores, b0, heap_scores, heap_ids, sizes)
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
    k = check_scalar("k", k, int, low=0)
    batch = rows.ndim == 2
    rows = rows if batch else rows[None, :]
    m, n = rows.shape
    kk = min(k, n)
    heap_scores = np.empty((m, kk), rows.dtype)
    heap_ids = np.empty((m, kk), np.int64)
    if kk and m:
        sizes = np.zeros(m, np.int64)
        bounds = chunk_bounds(m, min(m, parallel_chunks(m * n)))
        args = [(rows[a:b], 0, heap_scores[a:b], heap_ids[a:b], sizes[a:b]) for a, b in bounds]
        if sum(run_chunks(_select_rows, args)):
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
    _top_k_rows(items, user, 0, 8, heap_scores[0], heap_ids[0], np.empty(4, dtype))
    block = np.ones((2, 8), dtype)
    sizes = np.zeros(2, np.int64)
    _select_rows(block, 0, heap_scores, heap_ids, sizes)
    _offer_all(scores[:2], np.arange(2), heap_scores[0], heap_ids[0], sizes)
    _sort_rows_best_first(heap_scores, heap_ids, sizes)

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
never materialised or sorted.

Coarse ranking of a request scores a *subset* of the catalogue, its candidates: the same
scan with the rows taken from the candidate ids (``top_k_items(..., candidates=ids)``),
four random rows at a time so that four rows are fetched from memory at once. The rows are
never copied out (NumPy's ``take`` and PyTorch's ``index_select`` write them to a buffer
and read them again), and the heap receives the item ids, so ties go to the lower item id
as in a full scan. A batch of requests is divided among the threads request by request.
A catalogue that does not fit in memory is scanned block by block with one heap carried
from block to block (``top_k_item_blocks``).

For a batch of users the scores of an item block come from
BLAS GEMM (``np.matmul``), which is compute-bound and which BLAS does best, and the kernel's
work is the selection over each row of the block. That selection stays serial: BLAS runs
its own thread pool (``OPENBLAS_NUM_THREADS``), whose threads keep spinning for a while
after each GEMM, and selection threads started between two GEMMs would compete with them for
the same cores.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._common import check_float_layout, chunk_bounds, parallel_chunks, raise_nonfinite, run_chunks
from .checks import check_float_array, check_ids, check_same_dtype, check_scalar
from .heap import offer, sort_best_first

FASTMATH = {"reassoc", "contract"}
SCAN_BLOCK_ROWS = 4096
SELECT_CHUNK = 128
GEMM_BLOCK_BYTES = 1 << 20  # score block of a user batch: about 1 MiB, fits in L2
# Candidate rows are requested from memory this many steps (of four rows) before they are
# scored; 2 to 8 measured alike (docs/performance.md, "Coarse ranking of a request").
PREFETCH_STEPS = 2
CACHE_LINE_BYTES = 64


# ----------------------------------------------------------------------------- kernels


@intrinsic
def _prefetch(typingctx, array, row, column):
    """Ask the CPU to start loading the cache line that holds ``array[row, column]`` into
    its L2 cache (LLVM's ``llvm.prefetch``, read, locality 2: x86 ``prefetcht1``, which
    leaves L1 to the heap and the score buffer; measured faster than ``prefetcht0``). A
    hint: it returns nothing, cannot fault, and the caller's loop goes on while the line
    comes."""
    signature = types.void(array, row, column)

    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        data = context.make_array(array_type)(context, builder, args[0])
        address = cgutils.get_item_pointer(context, builder, array_type, data, [args[1], args[2]], wraparound=False)
        i32, byte_pointer = ir.IntType(32), ir.IntType(8).as_pointer()
        hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
                                             "llvm.prefetch.p0i8")
        builder.call(hint, [builder.bitcast(address, byte_pointer), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return signature, codegen


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


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _score_candidates(items, user, ids, start, stop, out):
    """out[t - start] = <items[ids[t]], user> for t in [start, stop), the ids inside
    ``[0, len(items))`` (checked by the caller).

    ``_score_rows``'s four streams over positions of ``ids``: four random rows at once, and
    each cache line of the rows of step ``t + PREFETCH_STEPS`` requested (``_prefetch``)
    before step t is scored, so that memory fetches later rows while these are multiplied.
    The inner loop is ``_score_rows``'s, so a candidate's score is its ``score_items``
    score bit for bit. (A separate function: one loop for both, choosing the row by a test
    at every step, measured 1 ms slower on 10^5 candidates.)
    """
    q = (stop - start) // 4
    line = CACHE_LINE_BYTES // items.itemsize
    for t in range(q + (stop - start - 4 * q)):
        if t < q:
            p0, p1, p2, p3 = start + t, start + q + t, start + 2 * q + t, start + 3 * q + t
        else:
            p0 = p1 = p2 = p3 = start + 3 * q + t
        r0, r1, r2, r3 = ids[p0], ids[p1], ids[p2], ids[p3]
        if t + PREFETCH_STEPS < q:
            a0, a1 = ids[p0 + PREFETCH_STEPS], ids[p1 + PREFETCH_STEPS]
            a2, a3 = ids[p2 + PREFETCH_STEPS], ids[p3 + PREFETCH_STEPS]
            for column in range(0, items.shape[1], line):
                _prefetch(items, a0, column)
                _prefetch(items, a1, column)
                _prefetch(items, a2, column)
                _prefetch(items, a3, column)
        s0 = s1 = s2 = s3 = items.dtype.type(0)
        for j in range(user.shape[0]):
            u = user[j]
            s0 += items[r0, j] * u
            s1 += items[r1, j] * u
            s2 += items[r2, j] * u
            s3 += items[r3, j] * u
        out[p0 - start] = s0
        if t < q:
            out[p1 - start] = s1
            out[p2 - start] = s2
            out[p3 - start] = s3


@njit(cache=True)
def _select_row(scores, ids, first_id, heap_scores, heap_ids, size):
    """Offer every candidate t, with score ``scores[t]`` and id ``ids[t]`` (or
    ``first_id + t`` when ``ids`` is empty), to a heap of capacity >= 1 holding ``size``
    entries; return (new heap size, count of non-finite scores).

    Once the heap is full, a candidate can only enter if its score is >= the root's, so
    the scores are scanned ``SELECT_CHUNK`` at a time with a branch-free count of such
    hits (vectorised), and only chunks with a hit are offered one by one.
    """
    n = scores.shape[0]
    capacity = heap_scores.shape[0]
    explicit = ids.shape[0] > 0
    nonfinite = 0
    t = 0
    while t < n and size < capacity:
        if np.isfinite(scores[t]):
            size = offer(heap_scores, heap_ids, size, scores[t], ids[t] if explicit else first_id + t)
        else:
            nonfinite += 1
        t += 1
    while t < n:
        # a slice indexed from 0: Numba then drops its negative-index checks and vectorises
        chunk = scores[t : t + SELECT_CHUNK if t + SELECT_CHUNK < n else n]
        threshold = heap_scores[0]
        hits = 0
        for j in range(chunk.shape[0]):
            hits += chunk[j] >= threshold
            nonfinite += not np.isfinite(chunk[j])
        if hits:
            for j in range(chunk.shape[0]):
                if chunk[j] >= heap_scores[0] and np.isfinite(chunk[j]):
                    size = offer(heap_scores, heap_ids, size, chunk[j], ids[t + j] if explicit else first_id + t + j)
        t += chunk.shape[0]
    return size, nonfinite


@njit(cache=True, nogil=True)
def _top_k_rows(items, user, ids, start, stop, id_offset, heap_scores, heap_ids, size, buffer):
    """Offer the scores of some rows against ``user`` to a heap holding ``size`` entries;
    return (heap size, non-finite count).

    The rows: ``ids[start:stop]`` when ``ids`` is not empty (candidates: the heap gets the
    ids themselves), else the rows ``start .. stop - 1`` of ``items`` (the heap gets
    ``id_offset + row``: a catalogue scanned in chunks carries one heap across them).
    Scores ``len(buffer)`` rows at a time into ``buffer`` and selects from it.
    """
    block = buffer.shape[0]
    nonfinite = 0
    for b0 in range(start, stop, block):
        b1 = b0 + block if b0 + block < stop else stop
        scores = buffer[: b1 - b0]
        if ids.shape[0] > 0:
            _score_candidates(items, user, ids, b0, b1, scores)
        else:
            _score_rows(items, user, b0, b1, scores)  # its non-finite count: _select_row counts them too
        size, bad = _select_row(scores, ids[b0:b1], id_offset + b0, heap_scores, heap_ids, size)
        nonfinite += bad
    return size, nonfinite


@njit(cache=True, nogil=True)
def _select_rows(scores, first_id, heap_scores, heap_ids, sizes, no_ids):
    """For every row r, offer scores[r] (ids first_id, first_id + 1, ...) to heap r;
    ``no_ids`` is an empty int64 array (``_select_row``'s "ids in order")."""
    nonfinite = 0
    for r in range(scores.shape[0]):
        sizes[r], bad = _select_row(scores[r], no_ids, first_id, heap_scores[r], heap_ids[r], sizes[r])
        nonfinite += bad
    return nonfinite


# ----------------------------------------------------------------------------- Python layer

NO_IDS = np.empty(0, np.int64)  # for the kernels' "rows in order" (an empty ids array)


def _check_items_and_users(items, users):
    items = check_float_layout("items", items, ndims=(2,))
    users = check_float_layout("users", users, ndims=(1, 2), copy=True)
    check_same_dtype(items=items, users=users)
    if users.shape[-1] != items.shape[1]:
        raise ValueError(f"users: expected last dimension d = {items.shape[1]} (items is {items.shape}), got shape {users.shape}")
    return items, users


def _check_candidates(candidates, users: np.ndarray, num_items: int) -> np.ndarray:
    """Candidate ids as a C-contiguous int64 ``(m, c)`` array, one row per user: ``(c,)``
    for one user ``(d,)``, ``(m, c)`` for users ``(m, d)``; every id an integer in
    ``[0, num_items)`` (an empty list is taken as no candidates)."""
    candidates = np.asarray(candidates)
    if candidates.size == 0:  # an empty list (float64 to NumPy): no candidates
        candidates = candidates.astype(np.int64)
    candidates = check_ids("candidates", candidates, num_items, ndim=users.ndim)
    if users.ndim == 2 and candidates.shape[0] != users.shape[0]:
        raise ValueError(f"candidates: expected one row per user ({users.shape[0]} rows), got shape {candidates.shape}")
    return np.ascontiguousarray(candidates.reshape(users.shape[0] if users.ndim == 2 else 1, candidates.shape[-1]))


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


def top_k_items(items: np.ndarray, users: np.ndarray, k: int, candidates=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best items by inner-product score, best first, without sorting all scores.

    For users ``(d,)``: returns ``(top_scores (k',), top_ids (k',) int64)`` with
    ``k' = min(k, N)``, ``top_scores[t] = <items[top_ids[t]], users>``, ordered by score
    descending and, among equal scores, by item index ascending (the k' first items of
    that order). For users ``(m, d)``: ``(m, k')`` arrays, one row per user.

    ``candidates`` (coarse ranking of a request): integer item ids, ``(c,)`` for one user or
    ``(m, c)`` for users ``(m, d)`` (row b: user b's candidates), each in ``[0, N)``. Only
    those rows are gathered, scored and selected, in one pass; ``k' = min(k, c)``, the ids
    returned are item ids and ties go to the lower item id as above. An id listed twice is
    scored twice and can be kept twice: the result is the top k of the list as it is given
    (``np.unique`` it first to rank each item once). ``c = 0`` returns empty arrays.

    items : float32/float64 ``(N, d)`` C-contiguous (else rejected; a memory-mapped array
    is read where it lies); users : same dtype (copied if not C-contiguous); k : integer
    >= 0. Scores of one user are those of ``score_items`` bit for bit; for a batch without
    candidates they come from BLAS GEMM in item blocks. Raises ``ValueError`` on a
    non-finite score, naming the argument at fault (``k = 0``, ``N = 0``, ``c = 0`` or no
    users return at once, without reading the items), and on candidate ids that are not
    integers, out of range or of the wrong shape.
    """
    items, users = _check_items_and_users(items, users)
    k = check_scalar("k", k, int, low=0)
    batch = users.ndim == 2
    if candidates is not None:
        candidates = _check_candidates(candidates, users, items.shape[0])
    m = users.shape[0] if batch else 1
    kk = min(k, items.shape[0] if candidates is None else candidates.shape[1])
    heap_scores = np.empty((m, kk), items.dtype)
    heap_ids = np.empty((m, kk), np.int64)
    if kk and m:
        sizes = np.zeros(m, np.int64)
        if candidates is not None:
            nonfinite = _top_k_requests(items, users.reshape(m, -1), candidates, heap_scores, heap_ids, sizes)
        elif batch:
            nonfinite = _top_k_batch(items, users, 0, heap_scores, heap_ids, sizes)
        else:
            nonfinite = _top_k_one(items, users, NO_IDS, heap_scores, heap_ids, sizes, 0)
        if nonfinite:
            raise_nonfinite({"items": items if candidates is None else items[candidates], "users": users}, "a score")
        heap_scores, heap_ids = sort_best_first(heap_scores, heap_ids)
    return (heap_scores, heap_ids) if batch else (heap_scores[0], heap_ids[0])


def _top_k_one(items, user, ids, heap_scores, heap_ids, sizes, r) -> int:
    """Fill heap ``r`` (empty) with the top of all rows (``ids`` empty) or of the candidate
    rows ``ids``: one heap per chunk of rows when the work is split among threads, then
    the chunks' heaps are offered, as candidates with their ids, to heap ``r``."""
    n = ids.shape[0] if ids.shape[0] else items.shape[0]
    bounds = chunk_bounds(n, parallel_chunks(n * items.shape[1]))
    buffers = np.empty((len(bounds), min(SCAN_BLOCK_ROWS, n)), items.dtype)
    if len(bounds) == 1:
        sizes[r], nonfinite = _top_k_rows(items, user, ids, 0, n, 0, heap_scores[r], heap_ids[r], 0, buffers[0])
        return nonfinite
    chunk_scores = np.empty((len(bounds), heap_scores.shape[1]), items.dtype)
    chunk_ids = np.empty((len(bounds), heap_scores.shape[1]), np.int64)
    args = [(items, user, ids, a, b, 0, chunk_scores[c], chunk_ids[c], 0, buffers[c]) for c, (a, b) in enumerate(bounds)]
    results = run_chunks(_top_k_rows, args)
    sizes[r] = 0
    for c, (size, _) in enumerate(results):
        sizes[r], _ = _select_row(chunk_scores[c, :size], chunk_ids[c, :size], 0, heap_scores[r], heap_ids[r], sizes[r])
    return sum(bad for _, bad in results)


def _top_k_requests(items, users, candidates, heap_scores, heap_ids, sizes) -> int:
    """Heap r <- the top of candidates[r] against users[r], for every request r. One
    request may be split among threads (``_top_k_one``); several are divided among them,
    each thread taking whole requests."""
    m, c = candidates.shape
    if m == 1:
        return _top_k_one(items, users[0], candidates[0], heap_scores, heap_ids, sizes, 0)

    def requests(a, b, buffer):
        nonfinite = 0
        for r in range(a, b):  # each call releases the GIL: the threads' requests run at once
            sizes[r], bad = _top_k_rows(items, users[r], candidates[r], 0, c, 0, heap_scores[r], heap_ids[r], 0, buffer)
            nonfinite += bad
        return nonfinite

    bounds = chunk_bounds(m, min(m, parallel_chunks(m * c * items.shape[1])))
    return sum(run_chunks(requests, [(a, b, np.empty(min(SCAN_BLOCK_ROWS, c), items.dtype)) for a, b in bounds]))


def _top_k_batch(items, users, first_id, heap_scores, heap_ids, sizes) -> int:
    """Offer the rows of ``items`` (ids ``first_id, first_id + 1, ...``) to every user's
    heap: BLAS GEMM on item blocks of about ``GEMM_BLOCK_BYTES`` of scores, each selected
    while in cache."""
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
        nonfinite += _select_rows(scores, first_id + b0, heap_scores, heap_ids, sizes, NO_IDS)
    return nonfinite


def top_k_item_blocks(blocks, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_k_items(items, users, k)`` for a catalogue that arrives in blocks of rows (one
    that does not fit in memory: ``pfd_ref.catalogue`` reads a memory-mapped file this way).

    blocks : iterable of ``(first_id, items_block)`` pairs, ``items_block`` a float32/float64
    ``(n_b, d)`` C-contiguous array holding the rows ``first_id .. first_id + n_b - 1`` of the
    catalogue, the blocks in ascending, non-overlapping order; users : ``(d,)`` or ``(m, d)``.
    One heap per user is carried from block to block, so the result equals
    ``top_k_items`` on the whole catalogue (the same ranking order and tie rule, ids are
    catalogue ids); ``k' = min(k, rows seen)``. A single user's scores are those of
    ``score_items`` bit for bit; a batch's come from BLAS GEMM by block. Each block is
    scored serially (the reading of the next one is the caller's affair).
    """
    users = check_float_layout("users", users, ndims=(1, 2), copy=True)
    k = check_scalar("k", k, int, low=0)
    batch = users.ndim == 2
    m = users.shape[0] if batch else 1
    heap_scores = np.empty((m, k), users.dtype)
    heap_ids = np.empty((m, k), np.int64)
    sizes = np.zeros(m, np.int64)
    buffer = np.empty(SCAN_BLOCK_ROWS, users.dtype)
    next_id = 0
    for first_id, block in blocks:
        block, _ = _check_items_and_users(block, users)
        if isinstance(first_id, (bool, np.bool_)) or not isinstance(first_id, (int, np.integer)) or first_id < next_id:
            raise ValueError(f"blocks: a block starts at row {first_id!r}; expected an integer >= {next_id} (blocks ascending, not overlapping)")
        if k and m and block.shape[0]:
            if batch:
                nonfinite = _top_k_batch(block, users, int(first_id), heap_scores, heap_ids, sizes)
            else:
                sizes[0], nonfinite = _top_k_rows(block, users, NO_IDS, 0, block.shape[0], int(first_id),
                                                  heap_scores[0], heap_ids[0], sizes[0], buffer)
            if nonfinite:
                raise_nonfinite({f"blocks (rows from {first_id})": block, "users": users}, "a score")
        next_id = int(first_id) + block.shape[0]
    kk = min(k, next_id)  # every heap holds that many: each user was offered every row
    heap_scores, heap_ids = sort_best_first(heap_scores[:, :kk], heap_ids[:, :kk])
    return (heap_scores, heap_ids) if batch else (heap_scores[0], heap_ids[0])


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
        args = [(rows[a:b], 0, heap_scores[a:b], heap_ids[a:b], sizes[a:b], NO_IDS) for a, b in bounds]
        if sum(run_chunks(_select_rows, args)):
            check_float_array("scores", rows)
        heap_scores, heap_ids = sort_best_first(heap_scores, heap_ids)
    return (heap_scores, heap_ids) if batch else (heap_scores[0], heap_ids[0])


def warm_up(dtype) -> None:
    """Run every kernel of this module once on tiny inputs of ``dtype`` (compiles them)."""
    items = np.ones((8, 2), dtype)
    heap_scores = np.empty((2, 3), dtype)
    heap_ids = np.empty((2, 3), np.int64)
    _score_rows(items, items[0], 0, 8, np.empty(8, dtype))
    _top_k_rows(items, items[0], NO_IDS, 0, 8, 0, heap_scores[0], heap_ids[0], 0, np.empty(4, dtype))
    _select_rows(items.T.copy(), 0, heap_scores, heap_ids, np.zeros(2, np.int64), NO_IDS)
    _select_row(np.ones(8, dtype), np.arange(8), 0, heap_scores[0], heap_ids[0], 0)

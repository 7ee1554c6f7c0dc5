"""Embedding-table kernels for training: the pooled lookup of a multi-id field and the
row-sparse scatter-adds of the embedding backward passes.

Twins (``pfd_ref.twins``, the same names): ``pool_rows`` (gather + ``np.add.reduceat``),
``coalesce_rows`` (``np.unique`` + ``np.add.at``, each id's rows added left to right from
-0.0) and ``coalesce_pooled_rows`` (``np.repeat`` of each row's gradient to its ids, then
the coalesce). All three give the kernels' bits.

Summation orders, and so the bits:

* ``pool_rows`` gives the bits of ``np.add.reduceat(rows, starts, axis=0)``, which sums a
  segment as its first row plus NumPy's pairwise sum of the others (``pairwise_sum`` in
  NumPy's ``loops_utils.h.src``). Below 8 terms that pairwise sum adds one term after
  another, so the kernel does the same for rows of up to ``SHORT_ROW_IDS`` = 8 ids; the
  longer rows (8 interleaved accumulators and a tree in NumPy) are gathered and passed to
  ``np.add.reduceat`` itself, in one call. With about 5 ids per row that is a few percent
  of the rows, and it keeps the kernel small (it compiles in under half the time of one
  that also mirrors the accumulators). tests/test_kernels.py checks the bits, and fails if
  a future NumPy changes its order.
* The scatter-adds sum each id's rows strictly left to right in input order, from -0.0
  (which gives the bits of starting from the first row: -0.0 + x is x for every x): the
  order of a stable sort by id, and of the twin's ``np.add.at``: the same bits.

Grouping by id: for a table of at most ``COUNTING_ROWS_PER_ID`` rows per input row (plus a
constant), a counting pass over a scratch array of the table's size finds the ids present
in ``O(n + num_rows)``; for larger tables ``np.unique`` first renumbers the ids ``0 .. m-1``
(``O(n log n)``, no pass over the table) and the same kernel counts over those. Both give
the same rows and add the same terms in the same order, so the same bits.

The gather ``table[ids]`` of a single-id field has no kernel: NumPy's fancy indexing was as
fast as a serial Numba loop for clustered ids and twice as fast for uniform ids
(docs/performance.md).

``error_model="numpy"``: divisions follow IEEE as in NumPy, with no zero test before each
(the test would also keep LLVM from vectorising the loops). The kernels only add, divide
and copy values: a NaN or infinity in an input reaches the output exactly as in the twins,
so they do not scan for them (pfd_ref validates at its boundary: Model.forward).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._common import check_float_layout
from .checks import check_ids, check_offsets, check_pooling

# NumPy's pairwise summation adds fewer than 8 terms one by one (from -0.0 in NumPy >= 2);
# a row of up to 8 ids has at most 7 terms after its first id.
SHORT_ROW_IDS = 8

# Counting pass when num_rows <= COUNTING_ROWS_PER_ID * n + COUNTING_MIN_ROWS, np.unique
# otherwise; at n = 1024, d = 16 the two paths cross between 30k and 60k table rows
# (docs/performance.md, "Embedding kernels for training").
COUNTING_ROWS_PER_ID = 32
COUNTING_MIN_ROWS = 4096


@njit(cache=True, error_model="numpy")
def _pool_short_rows(table, values, offsets, mean, out, rest, count):
    """Rows of at most ``SHORT_ROW_IDS`` ids: ``out[i] = (table[values[a]] + R) / c`` over the
    CSR row ``[a, b)`` of example ``i``, with ``R`` the other rows ``table[values[a+1:b]]``
    added one by one from -0.0 (NumPy's pairwise sum below 8 terms) and ``c = b - a`` when
    ``mean``, else 1 (``x / 1`` is ``x``). ``out`` arrives zeroed: empty rows and longer
    rows (left to the caller) stay zero. ``rest`` (d,) and ``count`` (1,) are scratch arrays
    of the table's dtype (``count`` rounds the divisor to the dtype as NumPy's astype does).
    Returns the number of those longer rows."""
    d = table.shape[1]
    long_rows = 0
    for i in range(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        if b - a > SHORT_ROW_IDS:
            long_rows += 1
            continue
        if b == a:
            continue
        for j in range(d):
            rest[j] = -0.0
        for p in range(a + 1, b):
            for j in range(d):
                rest[j] += table[values[p], j]
        count[0] = b - a if mean else 1
        c = count[0]
        first = values[a]
        for j in range(d):
            out[i, j] = (table[first, j] + rest[j]) / c
    return long_rows


def _pool_long_rows(table: np.ndarray, values: np.ndarray, offsets: np.ndarray, mean: bool, out: np.ndarray) -> None:
    """``out[i]`` for the rows of more than ``SHORT_ROW_IDS`` ids, by ``np.add.reduceat`` over
    those rows' ids gathered into one CSR array (one call for all of them)."""
    lengths = np.diff(offsets)
    rows = np.flatnonzero(lengths > SHORT_ROW_IDS)
    row_lengths = lengths[rows]
    starts = np.concatenate([[0], np.cumsum(row_lengths)[:-1]])
    positions = np.repeat(offsets[rows] - starts, row_lengths) + np.arange(row_lengths.sum())
    sums = np.add.reduceat(table[values[positions]], starts, axis=0)
    if mean:
        sums /= row_lengths[:, None].astype(out.dtype)
    out[rows] = sums


@njit(cache=True, error_model="numpy")
def _coalesce_by_counting(ids, offsets, grads, mean, slot_of_id, present, values, row, count):
    """Return ``unique``, the number of ids present; ``present[:unique]`` are those ids,
    ascending, found with one scratch entry per table row (``slot_of_id``, ``num_rows``
    entries; ``ids`` in ``[0, num_rows)``); ``values[u]`` (for ``u < unique``) the sum over
    the positions ``p`` with ``ids[p] == present[u]``, left to right in ``p``, of
    ``grads[i] / c_i`` where ``p`` lies in the CSR row ``[offsets[i], offsets[i + 1])`` and
    ``c_i`` is that row's length when ``mean``, else 1. Each sum starts from -0.0; neither
    that nor dividing by 1 changes a bit. ``present`` has ``min(len(ids), num_rows)``
    entries and ``values`` as many rows; ``row`` (d,) and ``count`` (1,) are scratch arrays
    of the gradients' dtype (the Python layer allocates every array: an allocation inside a
    kernel compiles NumPy's ``empty`` for each signature)."""
    num_rows = slot_of_id.shape[0]
    for r in range(num_rows):
        slot_of_id[r] = 0
    for p in range(ids.shape[0]):
        slot_of_id[ids[p]] = 1
    unique = 0
    for r in range(num_rows):
        if slot_of_id[r]:
            slot_of_id[r] = unique
            present[unique] = r
            unique += 1
    d = grads.shape[1]
    for u in range(unique):
        for j in range(d):
            values[u, j] = -0.0
    for i in range(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        if b == a:
            continue
        count[0] = b - a if mean else 1
        c = count[0]
        for j in range(d):
            row[j] = grads[i, j] / c
        for p in range(a, b):
            u = slot_of_id[ids[p]]
            for j in range(d):
                values[u, j] += row[j]
    return unique


def _coalesce_counted(ids: np.ndarray, offsets: np.ndarray, grads: np.ndarray, mean: bool, num_rows: int):
    """``(rows, values)`` of ``_coalesce_by_counting``, its arrays allocated here."""
    size = min(ids.shape[0], num_rows)
    present = np.empty(size, np.int64)
    values = np.empty((size, grads.shape[1]), grads.dtype)
    unique = _coalesce_by_counting(ids, offsets, grads, mean, np.empty(num_rows, np.int64), present, values,
                                   np.empty(grads.shape[1], grads.dtype), np.empty(1, grads.dtype))
    return present[:unique], values[:unique]


def _coalesce(ids: np.ndarray, offsets: np.ndarray, grads: np.ndarray, mean: bool, num_rows: int):
    """``_coalesce_by_counting`` on the table itself when it is small enough, else on the
    ids renumbered by ``np.unique`` (``0 .. m-1``, in the order of the ids), which gives the
    same rows and the same sums without a pass over the table; see the module docstring."""
    if num_rows <= COUNTING_ROWS_PER_ID * ids.shape[0] + COUNTING_MIN_ROWS:
        return _coalesce_counted(ids, offsets, grads, mean, num_rows)
    rows, renumbered = np.unique(ids, return_inverse=True)
    return rows, _coalesce_counted(renumbered.reshape(-1), offsets, grads, mean, rows.shape[0])[1]


def pool_rows(table: np.ndarray, values, offsets, pooling: str) -> np.ndarray:
    """Pooled lookup of a multi-id field: with ``R_i = values[offsets[i]:offsets[i+1]]`` and
    ``c_i = |R_i|``, ``out[i] = sum_{k in R_i} table[k]`` (``pooling="sum"``) or that sum
    divided by ``c_i`` (``"mean"``); an empty row pools to zeros. The sum is taken in
    ``np.add.reduceat``'s order (module docstring), so the twin gives the same bits.

    table : float32/float64 ``(V, d)``, C-contiguous; values : integer ``(nnz,)`` in
    ``[0, V)``; offsets : integer ``(n + 1,)`` from 0, non-decreasing, to ``nnz``.
    Returns ``(n, d)`` in the table's dtype.
    """
    table = check_float_layout("table", table, ndims=(2,))
    mean = check_pooling(pooling) == "mean"
    values = np.ascontiguousarray(check_ids("values", values, table.shape[0]))
    offsets = np.ascontiguousarray(check_offsets("offsets", offsets, values.shape[0]))
    out = np.zeros((offsets.shape[0] - 1, table.shape[1]), table.dtype)
    if _pool_short_rows(table, values, offsets, mean, out, np.empty(table.shape[1], table.dtype), np.empty(1, table.dtype)):
        _pool_long_rows(table, values, offsets, mean, out)
    return out


def coalesce_rows(ids, row_grads: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum gradient rows that share an id (the scatter-add of an embedding backward pass).

    ids : integer ``(n,)`` in ``[0, num_rows)``; row_grads : float32/float64 ``(n, d)``
    (copied if not C-contiguous). Returns ``(rows, values)``: ``rows`` int64 ``(m,)``
    unique ascending, ``values`` ``(m, d)`` in the input dtype with
    ``values[u] = sum_{i : ids[i] == rows[u]} row_grads[i]``, summed strictly in input
    order (left to right), as the twin ``pfd_ref.twins.coalesce_rows`` does. Wrap the
    result as ``RowSparseGrad(rows, values, num_rows)``.
    """
    row_grads = check_float_layout("row_grads", row_grads, ndims=(2,), copy=True)
    ids = np.ascontiguousarray(check_ids("ids", ids, num_rows))
    if ids.shape[0] != row_grads.shape[0]:
        raise ValueError(f"ids: expected {row_grads.shape[0]} ids, one per row of row_grads, got {ids.shape[0]}")
    return _coalesce(ids, np.arange(ids.shape[0] + 1, dtype=np.int64), row_grads, False, num_rows)


def coalesce_pooled_rows(d_out: np.ndarray, values, offsets, num_rows: int, pooling: str) -> tuple[np.ndarray, np.ndarray]:
    """Table gradient of ``pool_rows``: each id ``k`` of row ``i`` receives ``d_out[i]``
    (sum) or ``d_out[i] / c_i`` (mean), and the occurrences of an id add up, left to right
    in the order of ``values``: ``d_table[k] = sum_{p : values[p] == k} d_out[i(p)] (/ c_i(p))``.

    d_out : float32/float64 ``(n, d)`` (copied if not C-contiguous); values, offsets : the
    CSR ids of ``pool_rows``; num_rows : ``V``. Returns ``(rows, grad_rows)`` as
    ``coalesce_rows`` does; empty rows contribute nothing. The same bits as
    ``coalesce_rows(values, np.repeat(d_out, c, axis=0) (/ c per row), num_rows)``.
    """
    d_out = check_float_layout("d_out", d_out, ndims=(2,), copy=True)
    mean = check_pooling(pooling) == "mean"
    values = np.ascontiguousarray(check_ids("values", values, num_rows))
    offsets = np.ascontiguousarray(check_offsets("offsets", offsets, values.shape[0]))
    if offsets.shape[0] - 1 != d_out.shape[0]:
        raise ValueError(f"d_out: expected {offsets.shape[0] - 1} rows, one per CSR row, got {d_out.shape[0]}")
    return _coalesce(values, offsets, d_out, mean, num_rows)


def warm_up(dtype) -> None:
    """Run the kernels of this module once on tiny inputs of ``dtype`` (compiles them)."""
    table = np.ones((3, 2), dtype)
    values, offsets = np.array([1, 0, 1], np.int64), np.array([0, 2, 3], np.int64)
    pool_rows(table, values, offsets, "mean")
    coalesce_rows(values, table, 3)
    coalesce_pooled_rows(table[:2], values, offsets, 3, "mean")

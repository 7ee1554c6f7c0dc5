"""Embedding-table kernels for training: the lookup of a single-id field, the pooled lookup
of a multi-id field and the row-sparse scatter-adds of the embedding backward passes.

Twins (``pfd_ref.twins``, the same names): ``gather_rows`` (``table[ids]``), ``pool_rows``
(gather + ``np.add.reduceat``), ``coalesce_rows`` (``np.unique`` + ``np.add.at``, each id's
rows added left to right from -0.0) and ``coalesce_pooled_rows`` (``np.repeat`` of each
row's gradient to its ids, then the coalesce). All four give the kernels' bits.

The MLP input in place: a model's input row is the concatenation of its fields' embeddings
(``pfd_ref.models.FieldEncoder``). The lookups write each field's rows straight into its
column block of that input (``out``, ``start``), and the scatter-adds read each field's
block of the input's gradient in place (``start``, ``width``), so neither a concatenation
nor a copy of a strided block is made (docs/performance.md, "Training step"). ``gather_rows``
and the counting scatter-add check the ids they index with as they read them (one pass, no
NumPy reduction) and write nothing when one lies outside the table; ``pool_rows`` and the
``np.unique`` scatter-add of large tables check them first with ``check_ids`` (a min and a
max).

Summation orders, and so the bits:

* ``pool_rows`` gives the bits of ``np.add.reduceat(rows, starts, axis=0)``, which sums a
  segment as its first row plus NumPy's pairwise sum of the others (``pairwise_sum`` in
  NumPy's ``loops_utils.h.src``). Below 8 terms that pairwise sum adds one term after
  another; up to ``PAIRWISE_BLOCK`` = 128 terms it keeps 8 interleaved accumulators, adds
  them as a tree and then the remaining terms one by one. The kernel does the same for rows
  of up to ``SHORT_ROW_IDS`` = 129 ids; longer rows (where NumPy halves the range
  recursively) are gathered and passed to ``np.add.reduceat`` itself, in one call. (The
  kernel once stopped at 8 ids: with about 5 ids per row, the 8 % of longer rows took the
  NumPy path, which cost more than the kernel: 43 against 15 us for the benchmark's field.)
  tests/test_twins.py checks the bits, and fails if a future NumPy changes its order.
* The scatter-adds sum each id's rows strictly left to right in input order, from -0.0
  (which gives the bits of starting from the first row: -0.0 + x is x for every x): the
  order of a stable sort by id, and of the twin's ``np.add.at``: the same bits.

Grouping by id: for a table of at most ``COUNTING_ROWS_PER_ID`` rows per input row (plus a
constant), a counting pass over a scratch array of the table's size finds the ids present
in ``O(n + num_rows)``; for larger tables ``np.unique`` first renumbers the ids ``0 .. m-1``
(``O(n log n)``, no pass over the table) and the same kernel counts over those. Both give
the same rows and add the same terms in the same order, so the same bits.

``gather_rows`` is a plain copy loop: on its own, NumPy's fancy indexing ``table[ids]`` is
as fast, but it returns a new array that then has to be concatenated with the other
fields'; written into the input in place, the kernel halves the encoder's forward pass
(docs/performance.md, "Training step").

``error_model="numpy"``: divisions follow IEEE as in NumPy, with no zero test before each
(the test would also keep LLVM from vectorising the loops). The kernels only add, divide
and copy values: a NaN or infinity in an input reaches the output exactly as in the twins,
so they do not scan for them (pfd_ref validates at its boundary: Model.forward).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._common import check_float_layout
from .checks import (check_columns, check_id_array, check_ids, check_offsets, check_out_block, check_pooling,
                     raise_id_outside)

# NumPy's pairwise summation (pairwise_sum in loops_utils.h.src) adds fewer than 8 terms one
# by one (from -0.0 in NumPy >= 2), and up to PAIRWISE_BLOCK terms in 8 interleaved
# accumulators added as a tree, then the rest one by one; beyond that it halves the range.
# A row of up to SHORT_ROW_IDS ids has at most PAIRWISE_BLOCK terms after its first id.
PAIRWISE_BLOCK = 128
SHORT_ROW_IDS = PAIRWISE_BLOCK + 1

# Counting pass when num_rows <= COUNTING_ROWS_PER_ID * n + COUNTING_MIN_ROWS, np.unique
# otherwise; at n = 1024, d = 16 the two paths cross between 30k and 60k table rows
# (docs/performance.md, "Embedding kernels for training").
COUNTING_ROWS_PER_ID = 32
COUNTING_MIN_ROWS = 4096


@njit(cache=True)
def _gather_rows(table, ids, out, start):
    """``out[i, start + j] = table[ids[i], j]``. Returns the position of the first id outside
    ``[0, len(table))``, having written nothing, or -1 after the copy."""
    num_rows, d = table.shape
    for i in range(ids.shape[0]):
        if ids[i] < 0 or ids[i] >= num_rows:
            return i
    for i in range(ids.shape[0]):
        target, source = out[i, start:start + d], table[ids[i]]  # row views: see _coalesce_by_counting
        for j in range(d):
            target[j] = source[j]
    return -1


@njit(cache=True, error_model="numpy")
def _pool_short_rows(table, values, offsets, mean, out, start, rest, accumulators, count):
    """Rows of at most ``SHORT_ROW_IDS`` ids: ``out[i, start:start + d] = (table[values[a]] +
    R) / c`` over the CSR row ``[a, b)`` of example ``i``, with ``R`` NumPy's pairwise sum of
    the other rows ``table[values[a+1:b]]`` (fewer than 8: added one by one from -0.0; else 8
    interleaved accumulators, summed as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``,
    then the last ``(b - a - 1) % 8`` one by one) and ``c = b - a`` when ``mean``, else 1
    (``x / 1`` is ``x``). Empty rows get zeros; longer rows are left to the caller.
    ``rest`` (d,), ``accumulators`` (8, d) and ``count`` (1,) are scratch arrays of the
    table's dtype (``count`` rounds the divisor to the dtype as NumPy's astype does). Returns
    the number of those longer rows."""
    d = table.shape[1]
    long_rows = 0
    for i in range(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        if b - a > SHORT_ROW_IDS:
            long_rows += 1
            continue
        target = out[i, start:start + d]  # row views: see _coalesce_by_counting
        if b == a:
            for j in range(d):
                target[j] = 0.0
            continue
        terms = b - a - 1
        p = a + 1
        if terms < 8:
            for j in range(d):
                rest[j] = -0.0
        else:
            for q in range(8):
                source, accumulator = table[values[p + q]], accumulators[q]
                for j in range(d):
                    accumulator[j] = source[j]
            for block in range(p + 8, p + terms - terms % 8, 8):
                for q in range(8):
                    source, accumulator = table[values[block + q]], accumulators[q]
                    for j in range(d):
                        accumulator[j] += source[j]
            r = accumulators
            for j in range(d):
                rest[j] = ((r[0, j] + r[1, j]) + (r[2, j] + r[3, j])) + ((r[4, j] + r[5, j]) + (r[6, j] + r[7, j]))
            p += terms - terms % 8
        for k in range(p, b):
            source = table[values[k]]
            for j in range(d):
                rest[j] += source[j]
        count[0] = b - a if mean else 1
        c = count[0]
        first = table[values[a]]
        for j in range(d):
            target[j] = (first[j] + rest[j]) / c
    return long_rows


def _pool_long_rows(table: np.ndarray, values: np.ndarray, offsets: np.ndarray, mean: bool, out: np.ndarray) -> None:
    """``out[i]`` (``out`` the field's column block) for the rows of more than
    ``SHORT_ROW_IDS`` ids, by ``np.add.reduceat`` over those rows' ids gathered into one CSR
    array (one call for all of them)."""
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
def _coalesce_by_counting(ids, offsets, grads, start, width, mean, slot_of_id, present, values, row, count):
    """Return ``unique``, the number of ids present; ``present[:unique]`` are those ids,
    ascending, found with one scratch entry per table row (``slot_of_id``, ``num_rows``
    entries); ``values[u]`` (for ``u < unique``) the sum over the positions ``p`` with
    ``ids[p] == present[u]``, left to right in ``p``, of ``grads[i, start:start + width] /
    c_i`` where ``p`` lies in the CSR row ``[offsets[i], offsets[i + 1])`` (an empty
    ``offsets``: row ``i`` is the one id ``ids[i]``) and ``c_i`` is that row's length when
    ``mean``, else 1. Each sum starts from -0.0; neither that nor dividing by 1 changes a
    bit. Returns ``-1 - p`` instead, having summed nothing, when ``ids[p]`` is the first id
    outside ``[0, num_rows)``. ``present`` has ``min(len(ids), num_rows)`` entries and
    ``values`` as many rows; ``row`` (width,) and ``count`` (1,) are scratch arrays of the
    gradients' dtype (the Python layer allocates every array: an allocation inside a kernel
    compiles NumPy's ``empty`` for each signature)."""
    num_rows = slot_of_id.shape[0]
    for p in range(ids.shape[0]):
        if ids[p] < 0 or ids[p] >= num_rows:
            return -1 - p
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
    for u in range(unique):
        for j in range(width):
            values[u, j] = -0.0
    # The loops index row views (values[u], grads[i, start:...]) so that no index computed
    # from data needs Numba's negative-index wrap-around, which keeps LLVM from vectorising.
    if offsets.shape[0] == 0:  # one id per row, no division (x / 1 is x)
        for i in range(ids.shape[0]):
            target, source = values[slot_of_id[ids[i]]], grads[i, start:start + width]
            for j in range(width):
                target[j] += source[j]
        return unique
    for i in range(offsets.shape[0] - 1):
        a, b = offsets[i], offsets[i + 1]
        if b == a:
            continue
        count[0] = b - a if mean else 1
        c = count[0]
        source = grads[i, start:start + width]
        for j in range(width):
            row[j] = source[j] / c
        for p in range(a, b):
            target = values[slot_of_id[ids[p]]]
            for j in range(width):
                target[j] += row[j]
    return unique


def _coalesce(name: str, ids: np.ndarray, offsets: np.ndarray, grads: np.ndarray, start: int, width: int, mean: bool,
              num_rows: int):
    """``_coalesce_by_counting`` on the table itself when it is small enough, else on the
    ids renumbered by ``np.unique`` (``0 .. m-1``, in the order of the ids), which gives the
    same rows and the same sums without a pass over the table; see the module docstring.
    An id outside the table raises (``ValueError`` naming ``name``)."""
    if num_rows <= COUNTING_ROWS_PER_ID * ids.shape[0] + COUNTING_MIN_ROWS:
        return _coalesce_counted(name, ids, offsets, grads, start, width, mean, num_rows)
    check_ids(name, ids, num_rows)
    rows, renumbered = np.unique(ids, return_inverse=True)
    return rows, _coalesce_counted(name, renumbered.reshape(-1), offsets, grads, start, width, mean, rows.shape[0])[1]


def _coalesce_counted(name: str, ids: np.ndarray, offsets: np.ndarray, grads: np.ndarray, start: int, width: int,
                      mean: bool, num_rows: int):
    """``(rows, values)`` of ``_coalesce_by_counting``, its arrays allocated here; an id outside
    the table raises (``ValueError`` naming ``name``)."""
    size = min(ids.shape[0], num_rows)
    present = np.empty(size, np.int64)
    values = np.empty((size, width), grads.dtype)
    unique = _coalesce_by_counting(ids, offsets, grads, start, width, mean, np.empty(num_rows, np.int64), present,
                                   values, np.empty(width, grads.dtype), np.empty(1, grads.dtype))
    if unique < 0:
        raise_id_outside(name, ids[-1 - unique], num_rows)
    return present[:unique], values[:unique]


def _out_block(out, n: int, start, width: int, dtype) -> tuple[np.ndarray, int]:
    """``(out, start)`` after ``check_out_block``; a new ``(n, width)`` array and 0 when
    ``out`` is None."""
    if out is None:
        return np.empty((n, width), dtype), 0
    return out, check_out_block(out, n, start, width, dtype)


def gather_rows(table: np.ndarray, ids, out: np.ndarray | None = None, start: int = 0) -> np.ndarray:
    """Lookup of a single-id field: ``out[i, start:start + d] = table[ids[i]]``.

    table : float32/float64 ``(V, d)``, C-contiguous; ids : integer ``(n,)`` in ``[0, V)``;
    out : None (a new ``(n, d)`` array is returned) or a C-contiguous ``(n, D)`` array of the
    table's dtype, written in the columns ``[start, start + d)`` only and returned. An id
    outside the table raises before anything is written.
    """
    table = check_float_layout("table", table, ndims=(2,))
    ids = check_id_array("ids", ids)
    out, start = _out_block(out, ids.shape[0], start, table.shape[1], table.dtype)
    bad = _gather_rows(table, ids, out, start)
    if bad >= 0:
        raise_id_outside("ids", ids[bad], table.shape[0])
    return out


def pool_rows(table: np.ndarray, values, offsets, pooling: str, out: np.ndarray | None = None,
              start: int = 0) -> np.ndarray:
    """Pooled lookup of a multi-id field: with ``R_i = values[offsets[i]:offsets[i+1]]`` and
    ``c_i = |R_i|``, ``out[i, start:start + d] = sum_{k in R_i} table[k]`` (``pooling="sum"``)
    or that sum divided by ``c_i`` (``"mean"``); an empty row pools to zeros. The sum is
    taken in ``np.add.reduceat``'s order (module docstring), so the twin gives the same bits.

    table : float32/float64 ``(V, d)``, C-contiguous; values : integer ``(nnz,)`` in
    ``[0, V)``; offsets : integer ``(n + 1,)`` from 0, non-decreasing, to ``nnz``; out, start :
    as in ``gather_rows`` (None: a new ``(n, d)`` array in the table's dtype is returned).
    """
    table = check_float_layout("table", table, ndims=(2,))
    mean = check_pooling(pooling) == "mean"
    values = check_ids("values", values, table.shape[0])
    offsets = np.ascontiguousarray(check_offsets("offsets", offsets, values.shape[0]))
    out, start = _out_block(out, offsets.shape[0] - 1, start, table.shape[1], table.dtype)
    d = table.shape[1]
    if _pool_short_rows(table, values, offsets, mean, out, start, np.empty(d, table.dtype), np.empty((8, d), table.dtype),
                        np.empty(1, table.dtype)):
        _pool_long_rows(table, values, offsets, mean, out[:, start:start + table.shape[1]])
    return out


def coalesce_rows(ids, row_grads: np.ndarray, num_rows: int, start: int = 0,
                  width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sum gradient rows that share an id (the scatter-add of an embedding backward pass).

    ids : integer ``(n,)`` in ``[0, num_rows)``; row_grads : float32/float64 ``(n, D)``
    (copied if not C-contiguous), of which the columns ``[start, start + width)`` are read
    in place (``width`` None: to the last column; ``d`` below is that width). Returns
    ``(rows, values)``: ``rows`` int64 ``(m,)`` unique ascending, ``values`` ``(m, d)`` in
    the input dtype with ``values[u] = sum_{i : ids[i] == rows[u]} row_grads[i, start:start
    + d]``, summed strictly in input order (left to right), as the twin
    ``pfd_ref.twins.coalesce_rows`` does. Wrap the result as
    ``RowSparseGrad(rows, values, num_rows)``.
    """
    row_grads = check_float_layout("row_grads", row_grads, ndims=(2,), copy=True)
    start, width = check_columns("row_grads", row_grads, start, width)
    ids = check_id_array("ids", ids)
    if ids.shape[0] != row_grads.shape[0]:
        raise ValueError(f"ids: expected {row_grads.shape[0]} ids, one per row of row_grads, got {ids.shape[0]}")
    return _coalesce("ids", ids, np.empty(0, np.int64), row_grads, start, width, False, num_rows)


def coalesce_pooled_rows(d_out: np.ndarray, values, offsets, num_rows: int, pooling: str, start: int = 0,
                         width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Table gradient of ``pool_rows``: each id ``k`` of row ``i`` receives ``d_out[i]``
    (sum) or ``d_out[i] / c_i`` (mean), and the occurrences of an id add up, left to right
    in the order of ``values``: ``d_table[k] = sum_{p : values[p] == k} d_out[i(p)] (/ c_i(p))``.

    d_out : float32/float64 ``(n, D)`` (copied if not C-contiguous), of which the columns
    ``[start, start + width)`` are read in place, as in ``coalesce_rows``; values, offsets :
    the CSR ids of ``pool_rows``; num_rows : ``V``. Returns ``(rows, grad_rows)`` as
    ``coalesce_rows`` does; empty rows contribute nothing. The same bits as
    ``coalesce_rows(values, np.repeat(d_out, c, axis=0) (/ c per row), num_rows)``.
    """
    d_out = check_float_layout("d_out", d_out, ndims=(2,), copy=True)
    start, width = check_columns("d_out", d_out, start, width)
    mean = check_pooling(pooling) == "mean"
    values = check_id_array("values", values)
    offsets = np.ascontiguousarray(check_offsets("offsets", offsets, values.shape[0]))
    if offsets.shape[0] - 1 != d_out.shape[0]:
        raise ValueError(f"d_out: expected {offsets.shape[0] - 1} rows, one per CSR row, got {d_out.shape[0]}")
    return _coalesce("values", values, offsets, d_out, start, width, mean, num_rows)


def warm_up(dtype) -> None:
    """Run the kernels of this module once on tiny inputs of ``dtype`` (compiles them)."""
    table = np.ones((3, 2), dtype)
    values, offsets = np.array([1, 0, 1], np.int64), np.array([0, 2, 3], np.int64)
    gather_rows(table, values)
    pool_rows(table, values, offsets, "mean")
    coalesce_rows(values, table, 3)
    coalesce_pooled_rows(table[:2], values, offsets, 3, "mean")

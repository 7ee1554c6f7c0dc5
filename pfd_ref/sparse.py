"""Row-sparse gradients of embedding tables.

An embedding lookup touches only the rows whose ids appear in the batch, so its
gradient is stored as the touched row ids and one gradient row per id. ``rows`` is
always unique and sorted ascending (the gradient is *coalesced*), which makes the
optimizers' lazy updates and the comparison with a dense gradient straightforward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RowSparseGrad:
    """Gradient of a ``(num_rows, dim)`` table that is zero outside ``rows``.

    rows : int64 array of shape ``(m,)``, unique, sorted ascending.
    values : float array of shape ``(m, dim)``; ``values[j]`` is the gradient of row ``rows[j]``.
    num_rows : number of rows of the full table.
    """

    rows: np.ndarray
    values: np.ndarray
    num_rows: int

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of the dense table this gradient belongs to."""
        return (self.num_rows, self.values.shape[1])

    def to_dense(self) -> np.ndarray:
        """The full ``(num_rows, dim)`` gradient, zeros outside ``rows`` (for checking)."""
        dense = np.zeros(self.shape, dtype=self.values.dtype)
        dense[self.rows] = self.values
        return dense

    def __add__(self, other: "RowSparseGrad") -> "RowSparseGrad":
        """Sum of two gradients of the same table (used when teacher and student share it)."""
        if not isinstance(other, RowSparseGrad) or other.shape != self.shape:
            raise ValueError("can only add RowSparseGrad of the same table shape")
        return coalesce_rows(
            np.concatenate([self.rows, other.rows]),
            np.concatenate([self.values, other.values]),
            self.num_rows,
        )


def coalesce_rows(ids: np.ndarray, row_grads: np.ndarray, num_rows: int) -> RowSparseGrad:
    """Sum gradient rows that share an id.

    ids : int64 ``(n,)``; row_grads : float ``(n, dim)``.
    Returns ``RowSparseGrad`` with ``values[j] = sum_{i : ids[i] == rows[j]} row_grads[i]``.
    Rows are grouped by a stable sort of ``ids`` and each group is summed by
    ``np.add.reduceat`` (which adds long runs pairwise, not strictly left to right); the result
    is deterministic. This is the readable twin of the Numba kernel ``kernels.coalesce_rows``
    (strictly left to right), which the layers use; the two agree up to rounding.
    """
    if ids.size == 0:
        return RowSparseGrad(np.zeros(0, np.int64), np.zeros((0, row_grads.shape[1]), row_grads.dtype), num_rows)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    values = np.add.reduceat(row_grads[order], starts, axis=0)
    return RowSparseGrad(sorted_ids[starts].astype(np.int64, copy=False), values, num_rows)


def to_dense(grad) -> np.ndarray:
    """Dense view of a gradient that may be a ``RowSparseGrad`` or already an ndarray."""
    return grad.to_dense() if isinstance(grad, RowSparseGrad) else grad

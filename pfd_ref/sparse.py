"""Row-sparse gradients of embedding tables.

An embedding lookup touches only the rows whose ids appear in the batch, so its
gradient is stored as the touched row ids and one gradient row per id. ``rows`` is
always unique and sorted ascending (the gradient is *coalesced*), which makes the
optimizers' lazy updates and the comparison with a dense gradient straightforward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfd_ref import backend


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
        """Sum of two gradients of the same table (used when teacher and student share it): the
        rows of both, coalesced by the ``coalesce_rows`` kernel (``self``'s term first)."""
        if not isinstance(other, RowSparseGrad) or other.shape != self.shape:
            raise ValueError("can only add RowSparseGrad of the same table shape")
        rows, values = backend.coalesce_rows(np.concatenate([self.rows, other.rows]),
                                             np.concatenate([self.values, other.values]), self.num_rows)
        return RowSparseGrad(rows, values, self.num_rows)


def to_dense(grad) -> np.ndarray:
    """Dense view of a gradient that may be a ``RowSparseGrad`` or already an ndarray."""
    return grad.to_dense() if isinstance(grad, RowSparseGrad) else grad

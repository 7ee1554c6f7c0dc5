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


def to_dense(grad) -> np.ndarray:
    """Dense view of a gradient that may be a ``RowSparseGrad`` or already an ndarray."""
    return grad.to_dense() if isinstance(grad, RowSparseGrad) else grad

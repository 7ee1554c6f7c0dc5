"""pfd_ref.sparse: dense views of row-sparse gradients (the scatter-add itself: tests/test_twins.py;
the sum of two models' gradients of a shared table: tests/test_models.py, ``SharedTables``)."""

from __future__ import annotations

import numpy as np

from pfd_ref.sparse import RowSparseGrad, to_dense


def test_to_dense_places_rows_and_zeros_elsewhere():
    grad = RowSparseGrad(np.array([1, 3]), np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), 5)
    np.testing.assert_array_equal(grad.to_dense(), [[0, 0], [1, 2], [0, 0], [3, 4], [0, 0]])
    assert grad.to_dense().dtype == np.float32
    assert to_dense(grad).tolist() == grad.to_dense().tolist()
    dense = np.ones((2, 2))
    assert to_dense(dense) is dense



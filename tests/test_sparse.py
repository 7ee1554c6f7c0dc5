"""pfd_ref.sparse: dense views and the sum of two row-sparse gradients (the scatter-add itself:
tests/test_twins.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref import twins
from pfd_ref.sparse import RowSparseGrad, to_dense

seeds = st.integers(0, 2**32 - 1)


def coalesced(ids, row_grads, num_rows) -> RowSparseGrad:
    return RowSparseGrad(*twins.coalesce_rows(ids, row_grads, num_rows), num_rows)


def test_to_dense_places_rows_and_zeros_elsewhere():
    grad = RowSparseGrad(np.array([1, 3]), np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), 5)
    np.testing.assert_array_equal(grad.to_dense(), [[0, 0], [1, 2], [0, 0], [3, 4], [0, 0]])
    assert grad.to_dense().dtype == np.float32
    assert to_dense(grad).tolist() == grad.to_dense().tolist()
    dense = np.ones((2, 2))
    assert to_dense(dense) is dense


@settings(max_examples=20, deadline=None)
@given(n_a=st.integers(0, 8), n_b=st.integers(0, 8), seed=seeds)
def test_add_is_the_sum_of_the_dense_gradients(n_a, n_b, seed):
    rng = np.random.default_rng(seed)
    a = coalesced(rng.integers(0, 6, n_a), rng.standard_normal((n_a, 3)), 6)
    b = coalesced(rng.integers(0, 6, n_b), rng.standard_normal((n_b, 3)), 6)
    total = a + b
    np.testing.assert_array_equal(total.rows, np.union1d(a.rows, b.rows))
    np.testing.assert_allclose(total.to_dense(), a.to_dense() + b.to_dense(), rtol=1e-14)


def test_add_rejects_other_tables_and_types():
    a = RowSparseGrad(np.array([0]), np.ones((1, 2)), 4)
    with pytest.raises(ValueError, match="same table shape"):
        a + RowSparseGrad(np.array([0]), np.ones((1, 2)), 5)
    with pytest.raises(ValueError, match="same table shape"):
        a + RowSparseGrad(np.array([0]), np.ones((1, 3)), 4)
    with pytest.raises(ValueError, match="same table shape"):
        a + np.ones((4, 2))

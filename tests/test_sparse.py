"""pfd_ref.sparse: coalescing row gradients (sums, order, determinism), dense views, addition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref.sparse import RowSparseGrad, coalesce_rows, to_dense

seeds = st.integers(0, 2**32 - 1)


def dense_reference(ids, row_grads, num_rows):
    dense = np.zeros((num_rows, row_grads.shape[1]), dtype=np.float64)
    np.add.at(dense, ids, row_grads)
    return dense


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 30), num_rows=st.integers(1, 8), d=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds)
def test_coalesce_sums_rows_per_id_into_unique_sorted_rows(n, num_rows, d, dtype, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num_rows, n)
    row_grads = rng.standard_normal((n, d)).astype(dtype)
    grad = coalesce_rows(ids, row_grads, num_rows)
    np.testing.assert_array_equal(grad.rows, np.unique(ids))
    assert grad.rows.dtype == np.int64 and grad.dtype == dtype and grad.values.shape == (grad.rows.size, d)
    assert grad.shape == (num_rows, d)
    dense = grad.to_dense()
    assert dense.dtype == dtype
    np.testing.assert_allclose(dense, dense_reference(ids, row_grads, num_rows), rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), seed=seeds)
def test_coalesce_is_deterministic_and_each_sum_depends_only_on_its_own_rows(n, seed):
    """Bit-identical on repeated calls; the sum of one id's rows is unchanged when rows of other
    ids (smaller and larger) are interleaved, as long as that id's rows keep their order."""
    rng = np.random.default_rng(seed)
    row_grads = (rng.standard_normal((n, 2)) * 10.0 ** rng.integers(-8, 8, (n, 1))).astype(np.float32)
    alone = coalesce_rows(np.full(n, 2), row_grads, 5)
    again = coalesce_rows(np.full(n, 2), row_grads.copy(), 5)
    np.testing.assert_array_equal(alone.values, again.values)
    positions = np.sort(rng.choice(3 * n, n, replace=False))
    mixed_ids = rng.choice([0, 1, 3, 4], 3 * n)
    mixed_grads = rng.standard_normal((3 * n, 2)).astype(np.float32)
    mixed_ids[positions], mixed_grads[positions] = 2, row_grads
    mixed = coalesce_rows(mixed_ids, mixed_grads, 5)
    np.testing.assert_array_equal(mixed.values[mixed.rows == 2], alone.values)


def test_coalesce_adds_a_short_run_of_one_id_in_input_order():
    # 1e16 + 1 rounds to 1e16 in float64, so the result tells the order of the additions
    # (np.add.reduceat adds runs longer than 8 rows in pairwise blocks, still deterministically)
    ids = np.array([2, 0, 2, 2])
    row_grads = np.array([[1e16], [5.0], [1.0], [-1e16]])
    grad = coalesce_rows(ids, row_grads, 3)
    np.testing.assert_array_equal(grad.rows, [0, 2])
    np.testing.assert_array_equal(grad.values, [[5.0], [0.0]])  # (1e16 + 1) - 1e16, left to right


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_coalesce_of_no_ids_is_an_empty_gradient(dtype):
    grad = coalesce_rows(np.zeros(0, np.int64), np.zeros((0, 4), dtype), 6)
    assert grad.rows.shape == (0,) and grad.rows.dtype == np.int64
    assert grad.values.shape == (0, 4) and grad.dtype == dtype
    np.testing.assert_array_equal(grad.to_dense(), np.zeros((6, 4)))


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
    a = coalesce_rows(rng.integers(0, 6, n_a), rng.standard_normal((n_a, 3)), 6)
    b = coalesce_rows(rng.integers(0, 6, n_b), rng.standard_normal((n_b, 3)), 6)
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

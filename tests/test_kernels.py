"""Parity of the Numba kernels with their NumPy twins, and the kernels' argument checks.

Integer-valued inputs make every sum exact in both implementations (and produce many tied
scores), so top-k results can be compared for exact equality, tie order included;
real-valued inputs are compared with a tolerance scaled to the sum.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref import kernels
import pfd_ref.kernels._common  # noqa: F401 (kernels._common below)
from pfd_ref import reference_kernels as ref
import pfd_ref.kernels.embedding  # noqa: F401
from pfd_ref.optim import (Adam, _adam_update_, _sparse_adagrad_rows_update_, _sparse_adam_rows_update_,
                           _sparse_adam_step_size, _touched_row_grad)
from pfd_ref.sparse import RowSparseGrad
from pfd_ref.sparse import coalesce_rows as reference_coalesce_rows

DTYPES = (np.float32, np.float64)
PROPERTY = settings(max_examples=30, deadline=None)


def integer_valued(rng, shape, dtype, low=-3, high=4):
    return rng.integers(low, high, size=shape).astype(dtype)


def real_valued(rng, shape, dtype):
    return rng.uniform(-1, 1, size=shape).astype(dtype)


def strided(x):
    """The same values as a view that is not C-contiguous (every other column of a wider array)."""
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    wide[..., ::2] = x
    return wide[..., ::2]


def rtol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12


def assert_scores_close(actual, expected, items, users):
    """|actual - expected| <= c eps sum_j |items_ij users_j| (the error bound of a dot product)."""
    eps = np.finfo(items.dtype).eps
    scale = np.abs(users) @ np.abs(items).T
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert np.all(np.abs(actual - expected) <= 4 * eps * (items.shape[1] + 1) * scale + np.finfo(items.dtype).tiny)


@pytest.fixture
def parallel_kernels(monkeypatch):
    """Route every call to the parallel kernels (two Numba threads, threshold 0)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread here")
    monkeypatch.setattr(kernels._common, "PARALLEL_MIN_WORK", 0)
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    yield
    numba.set_num_threads(previous)


# --------------------------------------------------------------------------- scoring


@st.composite
def scoring_case(draw, integer):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 40))
    d = draw(st.integers(1, 6))
    batch = draw(st.sampled_from([None, 0, 1, 3]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    make = integer_valued if integer else real_valued
    items = make(rng, (n, d), dtype)
    users = make(rng, (d,) if batch is None else (batch, d), dtype)
    if draw(st.booleans()):
        users = strided(users)  # per-call input: copied by the kernel
    return items, users


@PROPERTY
@given(scoring_case(integer=False))
def test_score_items_matches_twin(case):
    items, users = case
    assert_scores_close(kernels.score_items(items, users), ref.score_items(items, users), items, users)


@PROPERTY
@given(scoring_case(integer=True), st.integers(0, 45))
def test_top_k_items_matches_twin_exactly_with_ties(case, k):
    items, users = case
    top_scores, top_ids = kernels.top_k_items(items, users, k)
    expected_scores, expected_ids = ref.top_k_items(items, users, k)
    assert top_ids.dtype == np.int64 and top_scores.dtype == items.dtype
    np.testing.assert_array_equal(top_ids, expected_ids)
    np.testing.assert_array_equal(top_scores, expected_scores)


@PROPERTY
@given(scoring_case(integer=False), st.integers(0, 45))
def test_top_k_items_returns_its_own_scores_in_ranking_order(case, k):
    items, users = case
    top_scores, top_ids = kernels.top_k_items(items, users, k)
    scores = kernels.score_items(items, users)
    if users.ndim == 1:
        # one user: the fused scan computes each score exactly as score_items does
        np.testing.assert_array_equal(top_scores, scores[top_ids])
        np.testing.assert_array_equal(top_ids, ref.top_k_scores(scores, k)[1])
    else:
        # a batch: BLAS scores by item block; the ranking of those scores is exact
        tol = 10 * rtol(items.dtype)
        np.testing.assert_allclose(top_scores, np.take_along_axis(scores, top_ids, axis=1), rtol=tol, atol=tol)


@PROPERTY
@given(
    st.sampled_from(DTYPES),
    st.sampled_from([None, 1, 4]),
    st.integers(0, 60),
    st.integers(0, 70),
    st.integers(0, 2**32 - 1),
)
def test_top_k_scores_matches_twin_exactly(dtype, batch, n, k, seed):
    rng = np.random.default_rng(seed)
    shape = (n,) if batch is None else (batch, n)
    scores = integer_valued(rng, shape, dtype, -2, 3)  # five values: many ties
    if n and seed % 2:
        scores = strided(scores)
    got = kernels.top_k_scores(scores, k)
    expected = ref.top_k_scores(scores, k)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_top_k_edge_shapes_and_dtypes():
    items = np.ones((5, 3), np.float32)
    user = np.ones(3, np.float32)
    for k, expected_len in [(0, 0), (2, 2), (5, 5), (9, 5)]:
        top_scores, top_ids = kernels.top_k_items(items, user, k)
        assert top_scores.shape == top_ids.shape == (expected_len,)
        np.testing.assert_array_equal(top_ids, np.arange(expected_len))  # all tied: lower index first
    empty_scores, empty_ids = kernels.top_k_items(np.zeros((0, 3), np.float64), np.ones(3), 4)
    assert empty_scores.dtype == np.float64 and empty_ids.dtype == np.int64 and empty_scores.shape == (0,)
    batch_scores, batch_ids = kernels.top_k_items(items, np.ones((2, 3), np.float32), 7)
    assert batch_scores.shape == batch_ids.shape == (2, 5)
    assert kernels.score_items(np.zeros((0, 3), np.float32), np.ones((2, 3), np.float32)).shape == (2, 0)


def test_top_k_orders_negative_zero_and_zero_as_a_tie():
    scores = np.array([-0.0, 0.0, -1.0, 0.0], np.float64)
    np.testing.assert_array_equal(kernels.top_k_scores(scores, 3)[1], [0, 1, 3])


def test_score_of_a_row_does_not_depend_on_its_position():
    rng = np.random.default_rng(0)
    for dtype in DTYPES:
        items = real_valued(rng, (1003, 37), dtype)
        user = real_valued(rng, 37, dtype)
        scores = kernels.score_items(items, user)
        alone = np.concatenate([kernels.score_items(items[i : i + 1], user) for i in range(0, 1003, 97)])
        np.testing.assert_array_equal(alone, scores[::97])


def test_large_top_k_crosses_scan_blocks():
    rng = np.random.default_rng(1)
    items = integer_valued(rng, (3 * kernels.scoring.SCAN_BLOCK_ROWS + 5, 4), np.float32)
    user = integer_valued(rng, 4, np.float32)
    users = integer_valued(rng, (3, 4), np.float32)
    for u in (user, users):
        for a, b in zip(kernels.top_k_items(items, u, 300), ref.top_k_items(items, u, 300)):
            np.testing.assert_array_equal(a, b)


def test_parallel_kernels_agree_with_serial_bit_for_bit(parallel_kernels):
    rng = np.random.default_rng(2)
    for dtype in DTYPES:
        items = real_valued(rng, (2 * kernels.scoring.SCAN_BLOCK_ROWS + 7, 9), dtype)
        user = real_valued(rng, 9, dtype)
        users = integer_valued(rng, (5, 9), dtype)
        parallel = [kernels.score_items(items, user), *kernels.top_k_items(items, user, 50)]
        parallel_batch = kernels.top_k_items(items, users, 50)
        parallel_select = kernels.top_k_scores(items.T.copy(), 20)
        numba.set_num_threads(1)
        serial = [kernels.score_items(items, user), *kernels.top_k_items(items, user, 50)]
        numba.set_num_threads(2)
        for a, b in zip(parallel, serial):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(parallel_batch, ref.top_k_items(items, users, 50)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(parallel_select, ref.top_k_scores(items.T.copy(), 20)):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- MLP


@st.composite
def mlp_case(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.sampled_from([0, 1, 2, 5, kernels.mlp.BLAS_MIN_ROWS, 23]))
    widths = draw(st.lists(st.integers(1, 9), min_size=2, max_size=4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = real_valued(rng, (n, widths[0]), dtype)
    if draw(st.booleans()):
        x = strided(x)  # per-call input: copied by the kernel
    weights = [real_valued(rng, (a, b), dtype) for a, b in zip(widths[:-1], widths[1:])]
    biases = [real_valued(rng, b, dtype) for b in widths[1:]]
    return x, weights, biases, draw(st.booleans()), draw(st.sampled_from([0.0, 0.01, 0.3]))


@PROPERTY
@given(mlp_case())
def test_mlp_scores_matches_twin(case):
    x, weights, biases, sigmoid, slope = case
    got = kernels.mlp_scores(x, weights, biases, sigmoid=sigmoid, negative_slope=slope)
    expected = ref.mlp_scores(x, weights, biases, sigmoid=sigmoid, negative_slope=slope)
    assert got.dtype == x.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=100 * rtol(x.dtype), atol=100 * rtol(x.dtype))


@pytest.mark.parametrize("slope", [0.0, 0.01])
def test_mlp_row_path_and_blas_path_agree(slope):
    rng = np.random.default_rng(3)
    widths = [13, 17, 11, 1]
    for dtype in DTYPES:
        weights = [real_valued(rng, (a, b), dtype) for a, b in zip(widths[:-1], widths[1:])]
        biases = [real_valued(rng, b, dtype) for b in widths[1:]]
        x = real_valued(rng, (2 * kernels.mlp.ROW_BLOCK + 3, 13), dtype)
        batch = kernels.mlp_scores(x, weights, biases, negative_slope=slope)  # BLAS path, several row blocks
        rows = np.concatenate([kernels.mlp_scores(x[i : i + 1], weights, biases, negative_slope=slope)
                               for i in range(0, len(x), 101)])
        np.testing.assert_allclose(rows, batch[::101], rtol=100 * rtol(dtype), atol=100 * rtol(dtype))


@pytest.mark.parametrize("n", [1, kernels.mlp.BLAS_MIN_ROWS])
def test_mlp_leaky_hidden_layer_passes_the_slope_times_a_negative_pre_activation(n):
    """One hidden unit with pre-activation -2 (both paths): ReLU gives 0, LeakyReLU -2 * slope."""
    x = np.ones((n, 1))
    weights, biases = [np.array([[-2.0]]), np.array([[1.0]])], [np.zeros(1), np.zeros(1)]
    np.testing.assert_array_equal(kernels.mlp_scores(x, weights, biases), np.zeros((n, 1)))
    np.testing.assert_array_equal(kernels.mlp_scores(x, weights, biases, negative_slope=0.01), np.full((n, 1), -0.02))
    with pytest.raises(ValueError, match=r"^negative_slope"):
        kernels.mlp_scores(x, weights, biases, negative_slope=1.0)


def test_mlp_sigmoid_saturates_without_overflow():
    x = np.array([[10.0], [-10.0], [-1.0]], np.float32)  # z = 1000, -1000, -100: exp(1000) would overflow
    weights, biases = [np.array([[100.0]], np.float32)], [np.zeros(1, np.float32)]
    with np.errstate(over="raise"):
        out = kernels.mlp_scores(x, weights, biases, sigmoid=True)
        np.testing.assert_array_equal(out, ref.mlp_scores(x, weights, biases, sigmoid=True))
    assert out[0, 0] == 1 and out[1, 0] == 0 and 0 < out[2, 0] < 1e-40


# --------------------------------------------------------------------------- scatter-add


@PROPERTY
@given(
    st.sampled_from(DTYPES),
    st.integers(0, 50),
    st.integers(1, 5),
    st.integers(1, 12),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_coalesce_rows_matches_sparse_twin(dtype, n, d, num_rows, integer, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num_rows, n)
    row_grads = (integer_valued if integer else real_valued)(rng, (n, d), dtype)
    if seed % 2:
        row_grads = strided(row_grads)
    rows, values = kernels.coalesce_rows(ids, row_grads, num_rows)
    expected = reference_coalesce_rows(ids, row_grads, num_rows)
    np.testing.assert_array_equal(rows, expected.rows)
    assert rows.dtype == np.int64 and values.dtype == dtype and values.shape == expected.values.shape
    if integer:
        np.testing.assert_array_equal(values, expected.values)
    else:
        np.testing.assert_allclose(values, expected.values, rtol=100 * rtol(dtype), atol=100 * rtol(dtype))


def test_coalesce_rows_sums_left_to_right_in_input_order():
    grads = np.array([[1.0], [1e-8], [1e-8], [-1.0]], np.float32)
    rows, values = kernels.coalesce_rows(np.zeros(4, np.int64), grads, 1)
    assert values[0, 0] == np.float32(((np.float32(1.0) + np.float32(1e-8)) + np.float32(1e-8)) - np.float32(1.0))


def test_coalesce_rows_counting_and_sorting_paths_agree_bit_for_bit(monkeypatch):
    rng = np.random.default_rng(8)
    ids = np.concatenate([rng.integers(0, 50, 300), rng.integers(9_990, 10_000, 40)])
    row_grads = real_valued(rng, (ids.size, 3), np.float32)
    counted = kernels.coalesce_rows(ids, row_grads, 10_000)  # 10 000 <= 32 * 340 + 4096: counting pass
    monkeypatch.setattr(kernels.embedding, "COUNTING_ROWS_PER_ID", 0)
    monkeypatch.setattr(kernels.embedding, "COUNTING_MIN_ROWS", 0)  # now np.unique
    sorted_ = kernels.coalesce_rows(ids, row_grads, 10_000)
    for a, b in zip(counted, sorted_):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# --------------------------------------------------------------------------- pooled embedding


@st.composite
def pooled_case(draw):
    """A table, CSR ids with empty rows, rows of 1-8 ids (summed by the kernel as NumPy's
    plain loop does), 9 and more (NumPy's accumulators, 129 and more its halving: passed to
    np.add.reduceat), and signed zeros among the entries."""
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    num_rows, d = draw(st.integers(1, 30)), draw(st.integers(1, 5))
    counts = np.array(draw(st.lists(st.sampled_from([0, 1, 2, 3, 7, 8, 9, 16, 17, 129, 300]), max_size=6)), np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    values = rng.integers(0, num_rows, offsets[-1])
    table = (real_valued(rng, (num_rows, d), dtype) * 10.0 ** rng.integers(-4, 4, (num_rows, 1))).astype(dtype)
    table[rng.random((num_rows, d)) < 0.2] = -0.0
    return table, values, offsets


@PROPERTY
@given(pooled_case(), st.sampled_from(["sum", "mean"]))
def test_pool_rows_matches_reduceat_twin(case, pooling):
    table, values, offsets = case
    out = kernels.pool_rows(table, values, offsets, pooling)
    expected = ref.pool_rows(table, values, offsets, pooling)
    assert out.dtype == table.dtype and out.shape == expected.shape
    # the same values, rounding included (reduceat's order); the signs of zeros follow NumPy >= 2
    np.testing.assert_array_equal(out, expected)
    if int(np.__version__.split(".")[0]) >= 2:
        np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))


@PROPERTY
@given(pooled_case(), st.sampled_from(["sum", "mean"]), st.booleans())
def test_coalesce_pooled_rows_matches_repeat_then_coalesce(case, pooling, non_contiguous):
    table, values, offsets = case
    n, d = offsets.size - 1, table.shape[1]
    rng = np.random.default_rng(values.size)
    d_out = real_valued(rng, (n, d), table.dtype)
    rows, grad_rows = kernels.coalesce_pooled_rows(strided(d_out) if non_contiguous else d_out, values, offsets,
                                                   table.shape[0], pooling)
    # bit for bit against the kernel scatter-add of the repeated gradient rows
    counts = np.diff(offsets)
    repeated = np.repeat(d_out, counts, axis=0)
    if pooling == "mean":
        repeated /= np.repeat(counts, counts)[:, None].astype(table.dtype)
    expected_rows, expected_values = kernels.coalesce_rows(values, repeated, table.shape[0])
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(grad_rows.view(np.uint8), expected_values.view(np.uint8))
    # and to rounding against the NumPy twin (np.add.reduceat adds long runs pairwise)
    twin_rows, twin_values = ref.coalesce_pooled_rows(d_out, values, offsets, table.shape[0], pooling)
    np.testing.assert_array_equal(rows, twin_rows)
    np.testing.assert_allclose(grad_rows, twin_values, rtol=1000 * rtol(table.dtype), atol=1000 * rtol(table.dtype))


def test_pool_rows_on_no_examples_and_on_empty_rows_only():
    table = np.ones((3, 2), np.float32)
    assert kernels.pool_rows(table, np.zeros(0, np.int64), np.zeros(1, np.int64), "mean").shape == (0, 2)
    np.testing.assert_array_equal(kernels.pool_rows(table, np.zeros(0, np.int64), np.zeros(3, np.int64), "mean"), 0.0)
    rows, grad_rows = kernels.coalesce_pooled_rows(np.ones((2, 2)), np.zeros(0, np.int64), np.zeros(3, np.int64), 3, "sum")
    assert rows.shape == (0,) and grad_rows.shape == (0, 2)


# --------------------------------------------------------------------------- ReLU backward


def activation_inputs(dtype, n, d, non_contiguous, seed):
    """``(d_y, x)`` of shape ``(n, d)``: real values with 30% specials (signed zeros, NaN,
    infinities, subnormals), strided when ``non_contiguous``."""
    rng = np.random.default_rng(seed)
    specials = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45], dtype)
    x = np.where(rng.random((n, d)) < 0.3, rng.choice(specials, (n, d)), real_valued(rng, (n, d), dtype))
    d_y = np.where(rng.random((n, d)) < 0.3, rng.choice(specials, (n, d)), real_valued(rng, (n, d), dtype))
    return (strided(d_y), strided(x)) if non_contiguous else (d_y, x)


@PROPERTY
@given(st.sampled_from(DTYPES), st.integers(0, 40), st.integers(1, 6), st.booleans(), st.integers(0, 2**32 - 1))
def test_relu_backward_matches_numpy_where_bit_for_bit(dtype, n, d, non_contiguous, seed):
    d_y, x = activation_inputs(dtype, n, d, non_contiguous, seed)
    d_x = kernels.relu_backward(d_y, x)
    expected = np.where(x > 0, d_y, 0)
    assert d_x.dtype == dtype and d_x.shape == x.shape
    np.testing.assert_array_equal(d_x.view(np.uint8), expected.view(np.uint8))


@PROPERTY
@given(st.sampled_from(DTYPES), st.integers(0, 40), st.integers(1, 6), st.booleans(), st.sampled_from([0.01, 0.2, 1 / 3]),
       st.integers(0, 2**32 - 1))
def test_leaky_relu_backward_matches_numpy_twin_bit_for_bit(dtype, n, d, non_contiguous, slope, seed):
    d_y, x = activation_inputs(dtype, n, d, non_contiguous, seed)
    d_x = kernels.leaky_relu_backward(d_y, x, slope)
    expected = ref.leaky_relu_backward(d_y, x, slope)
    assert d_x.dtype == dtype and d_x.shape == x.shape
    np.testing.assert_array_equal(d_x.view(np.uint8), expected.view(np.uint8))


def test_leaky_relu_backward_rejects_mixed_dtypes_shapes_and_a_non_finite_slope():
    with pytest.raises(ValueError, match=r"^d_y: expected dtype float64"):
        kernels.leaky_relu_backward(np.ones(3, np.float32), np.ones(3), 0.01)
    with pytest.raises(ValueError, match=r"^d_y: expected shape \(3,\)"):
        kernels.leaky_relu_backward(np.ones(4), np.ones(3), 0.01)
    with pytest.raises(ValueError, match=r"^negative_slope"):
        kernels.leaky_relu_backward(np.ones(3), np.ones(3), np.nan)


def test_relu_backward_rejects_mixed_dtypes_and_shapes():
    with pytest.raises(ValueError, match=r"^d_y: expected dtype float64"):
        kernels.relu_backward(np.ones(3, np.float32), np.ones(3))
    with pytest.raises(ValueError, match=r"^d_y: expected shape \(3,\)"):
        kernels.relu_backward(np.ones(4), np.ones(3))


# --------------------------------------------------------------------------- lazy Adam


def twin_sparse_adam_rows_(param, m, v, rows, row_grads, step, l2, hyper):
    """The NumPy twin with its gather and scatter, as ``Adam`` ran it before the kernel."""
    param_rows = param[rows]
    row_grad = _touched_row_grad(RowSparseGrad(rows, row_grads, param.shape[0]), param_rows, l2)
    m_rows, v_rows = m[rows], v[rows]
    _sparse_adam_rows_update_(param_rows, row_grad, m_rows, v_rows, step, **hyper)
    param[rows], m[rows], v[rows] = param_rows, m_rows, v_rows


@PROPERTY
@given(
    st.sampled_from(DTYPES),
    st.integers(1, 12),
    st.integers(1, 5),
    st.sampled_from([0.0, 1e-3, 0.7]),
    st.sampled_from([(0.9, 0.999, 1e-8), (0.5, 0.9, 1e-3), (0.0, 0.0, 1e-6)]),
    st.integers(0, 2**32 - 1),
)
def test_sparse_adam_rows_matches_numpy_twin_bit_for_bit(dtype, num_rows, d, l2, betas_eps, seed):
    rng = np.random.default_rng(seed)
    beta1, beta2, eps = betas_eps
    hyper = dict(lr=0.05, beta1=beta1, beta2=beta2, eps=eps)
    table = real_valued(rng, (num_rows, d), dtype)
    kernel_state = [table.copy(), np.zeros_like(table), np.zeros_like(table)]
    twin_state = [table.copy(), np.zeros_like(table), np.zeros_like(table)]
    for step in range(1, 6):
        rows = np.flatnonzero(rng.random(num_rows) < 0.5)  # empty in some steps
        row_grads = (real_valued(rng, (rows.size, d), dtype) * 10.0 ** rng.integers(-6, 3, (rows.size, 1))).astype(dtype)
        step_size = _sparse_adam_step_size(step, 0.05, beta1, beta2)
        kernels.sparse_adam_rows_(*kernel_state, rows, row_grads, step_size, beta1, beta2, eps, l2)
        twin_sparse_adam_rows_(*twin_state, rows, row_grads, step, l2, hyper)
        for kernel_array, twin_array in zip(kernel_state, twin_state):
            assert kernel_array.dtype == dtype
            np.testing.assert_array_equal(kernel_array.view(np.uint8), twin_array.view(np.uint8))


@PROPERTY
@given(
    st.sampled_from(DTYPES),
    st.sampled_from([(), (1,), (7,), (3, 4)]),
    st.sampled_from([(0.9, 0.999, 1e-8), (0.5, 0.9, 1e-3), (0.0, 0.0, 1e-6)]),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_adam_update_matches_numpy_twin_bit_for_bit(dtype, shape, betas_eps, non_contiguous_grad, seed):
    rng = np.random.default_rng(seed)
    beta1, beta2, eps = betas_eps
    param = np.asarray(real_valued(rng, shape, dtype))
    kernel_state = [param.copy(), np.zeros_like(param), np.zeros_like(param)]
    twin_state = [param.copy(), np.zeros_like(param), np.zeros_like(param)]
    for step in range(1, 6):
        grad = np.asarray(real_valued(rng, shape, dtype) * 10.0 ** rng.integers(-6, 3, shape), dtype)
        if non_contiguous_grad and grad.ndim:
            grad = strided(grad)
        step_size, correction = 0.05 / (1 - beta1**step), (1 - beta2**step) ** 0.5
        kernels.adam_update_(kernel_state[0], grad, *kernel_state[1:], step_size, correction, beta1, beta2, eps)
        _adam_update_(twin_state[0], grad, *twin_state[1:], step, 0.05, beta1, beta2, eps)
        for kernel_array, twin_array in zip(kernel_state, twin_state):
            assert kernel_array.dtype == dtype
            np.testing.assert_array_equal(kernel_array.reshape(-1).view(np.uint8), twin_array.reshape(-1).view(np.uint8))


def test_adam_runs_the_numpy_twin_on_a_parameter_that_is_not_contiguous():
    rng = np.random.default_rng(3)
    weight = real_valued(rng, (4, 6), np.float32)
    grad = real_valued(rng, (4, 3), np.float32)
    view_params = {"w": weight.copy()[:, ::2]}
    copy_params = {"w": np.ascontiguousarray(weight[:, ::2])}
    for params in (view_params, copy_params):
        optimizer = Adam(0.1)
        for _ in range(3):
            optimizer.step(params, {"w": grad})
    assert not view_params["w"].flags.c_contiguous
    np.testing.assert_array_equal(view_params["w"], copy_params["w"])
    with pytest.raises(ValueError, match=r"^param: must be C-contiguous"):
        kernels.adam_update_(view_params["w"], grad, np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32),
                             0.1, 1.0, 0.9, 0.999, 1e-8)


def test_sparse_adam_rows_rejects_bad_rows_before_writing():
    table = np.ones((4, 2))
    m, v = np.zeros_like(table), np.zeros_like(table)
    for rows in ([1, 1], [2, 1], [0, 4], [-1, 0]):
        with pytest.raises(ValueError, match=r"^rows: must be unique, sorted ascending and inside \[0, 4\)"):
            kernels.sparse_adam_rows_(table, m, v, np.array(rows), np.ones((2, 2)), 0.1, 0.9, 0.999, 1e-8)
    np.testing.assert_array_equal(table, 1.0)
    np.testing.assert_array_equal(m, 0.0)


# --------------------------------------------------------------------------- lazy Adagrad


def twin_sparse_adagrad_rows_(param, accumulator, rows, row_grads, lr, eps, l2):
    """The NumPy twin with its gather and scatter (``Adagrad`` with ``sparse="lazy"`` runs the kernel)."""
    param_rows = param[rows]
    row_grad = _touched_row_grad(RowSparseGrad(rows, row_grads, param.shape[0]), param_rows, l2)
    accumulator_rows = accumulator[rows]
    _sparse_adagrad_rows_update_(param_rows, row_grad, accumulator_rows, lr, eps)
    param[rows], accumulator[rows] = param_rows, accumulator_rows


@PROPERTY
@given(
    st.sampled_from(DTYPES),
    st.integers(1, 12),
    st.integers(1, 5),
    st.sampled_from([0.0, 1e-3, 0.7]),
    st.sampled_from([(0.1, 0.0), (0.0, 1e-10), (1e-6, 1e-3)]),
    st.integers(0, 2**32 - 1),
)
def test_sparse_adagrad_rows_matches_numpy_twin_bit_for_bit(dtype, num_rows, d, l2, init_eps, seed):
    rng = np.random.default_rng(seed)
    initial_accumulator, eps = init_eps
    table = real_valued(rng, (num_rows, d), dtype)
    kernel_state = [table.copy(), np.full_like(table, initial_accumulator)]
    twin_state = [table.copy(), np.full_like(table, initial_accumulator)]
    for step in range(6):
        rows = np.flatnonzero(rng.random(num_rows) < 0.5)  # empty in some steps
        row_grads = (real_valued(rng, (rows.size, d), dtype) * 10.0 ** rng.integers(-6, 3, (rows.size, 1))).astype(dtype)
        lr = 0.05 * min(1.0, (step + 1) / 4)  # a warm-up's learning rates
        kernels.sparse_adagrad_rows_(*kernel_state, rows, row_grads, lr, eps, l2)
        twin_sparse_adagrad_rows_(*twin_state, rows, row_grads, lr, eps, l2)
        for kernel_array, twin_array in zip(kernel_state, twin_state):
            assert kernel_array.dtype == dtype
            np.testing.assert_array_equal(kernel_array.view(np.uint8), twin_array.view(np.uint8))


def test_sparse_adagrad_rows_takes_a_table_that_is_not_contiguous():
    rng = np.random.default_rng(6)
    wide = real_valued(rng, (5, 6), np.float32)
    view, copy = wide.copy()[:, ::2], np.ascontiguousarray(wide[:, ::2])
    view_acc, copy_acc = np.full((5, 6), 0.1, np.float32)[:, ::2], np.full((5, 3), 0.1, np.float32)
    grads = real_valued(rng, (2, 3), np.float32)
    kernels.sparse_adagrad_rows_(view, view_acc, np.array([1, 3]), grads, 0.1, 0.0)
    kernels.sparse_adagrad_rows_(copy, copy_acc, np.array([1, 3]), grads, 0.1, 0.0)
    np.testing.assert_array_equal(view, copy)
    np.testing.assert_array_equal(view_acc, copy_acc)


def test_sparse_adagrad_rows_rejects_bad_rows_before_writing():
    table = np.ones((4, 2))
    accumulator = np.full_like(table, 0.1)
    for rows in ([1, 1], [2, 1], [0, 4], [-1, 0]):
        with pytest.raises(ValueError, match=r"^rows: must be unique, sorted ascending and inside \[0, 4\)"):
            kernels.sparse_adagrad_rows_(table, accumulator, np.array(rows), np.ones((2, 2)), 0.1, 0.0)
    np.testing.assert_array_equal(table, 1.0)
    np.testing.assert_array_equal(accumulator, 0.1)


# --------------------------------------------------------------------------- layouts and checks


def test_per_call_inputs_are_copied_when_not_contiguous():
    rng = np.random.default_rng(4)
    items = real_valued(rng, (30, 4), np.float64)
    users = real_valued(rng, (3, 8), np.float64)[:, ::2]
    assert not users.flags.c_contiguous
    np.testing.assert_allclose(kernels.score_items(items, users), ref.score_items(items, users))
    np.testing.assert_array_equal(kernels.top_k_items(items, users[0], 5)[1], ref.top_k_items(items, users[0], 5)[1])
    scores = real_valued(rng, (40, 2), np.float32)[:, 0]
    np.testing.assert_array_equal(kernels.top_k_scores(scores, 6)[1], ref.top_k_scores(scores, 6)[1])
    x = real_valued(rng, (12, 6), np.float64)[:, ::2]
    weights, biases = [real_valued(rng, (3, 2), np.float64)], [real_valued(rng, 2, np.float64)]
    np.testing.assert_allclose(kernels.mlp_scores(x, weights, biases), ref.mlp_scores(x, weights, biases))
    grads = real_valued(rng, (5, 4), np.float32)[:, ::2]
    rows, values = kernels.coalesce_rows(np.array([1, 0, 1, 2, 0]), grads, 3)
    np.testing.assert_allclose(values, reference_coalesce_rows(np.array([1, 0, 1, 2, 0]), grads, 3).values)


def test_reusable_arrays_are_rejected_when_not_contiguous():
    items = np.ones((6, 4), np.float32)[:, ::2]
    with pytest.raises(ValueError, match=r"^items: must be C-contiguous"):
        kernels.top_k_items(items, np.ones(2, np.float32), 3)
    weights = [np.ones((4, 6), np.float32)[:, ::2]]
    with pytest.raises(ValueError, match=r"^weights\[0\]: must be C-contiguous"):
        kernels.mlp_scores(np.ones((1, 4), np.float32), weights, [np.ones(3, np.float32)])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: kernels.score_items(np.ones((3, 2), np.float32), np.ones(2)), r"^dtype mismatch"),
        (lambda: kernels.score_items(np.ones((3, 2), np.int64), np.ones(2)), r"^items: expected float32 or float64"),
        (lambda: kernels.score_items(np.ones((3, 2)), np.ones(3)), r"^users: expected last dimension d = 2"),
        (lambda: kernels.score_items(np.ones(3), np.ones(3)), r"^items: expected 2 dimension"),
        (lambda: kernels.top_k_items(np.ones((3, 2)), np.ones(2), -1), r"^k: expected an integer >= 0"),
        (lambda: kernels.top_k_items(np.ones((3, 2)), np.ones(2), 1.5), r"^k: expected an integer >= 0"),
        (lambda: kernels.top_k_scores(np.ones(3), True), r"^k: expected an integer >= 0"),
        (lambda: kernels.top_k_scores([1.0, 2.0], 1), r"^scores: expected a numpy array"),
        (lambda: kernels.mlp_scores(np.ones((1, 2)), [], []), r"^weights: expected one or more layers"),
        (lambda: kernels.mlp_scores(np.ones((1, 2)), [np.ones((3, 1))], [np.ones(1)]), r"^weights\[0\]: expected 2 input rows"),
        (lambda: kernels.mlp_scores(np.ones((1, 2)), [np.ones((2, 1))], [np.ones(2)]), r"^biases\[0\]: expected shape \(1,\)"),
        (lambda: kernels.mlp_scores(np.ones((1, 2)), [np.ones((2, 1), np.float32)], [np.ones(1)]), r"^weights\[0\]: expected dtype float64"),
        (lambda: kernels.coalesce_rows(np.array([0, 5]), np.ones((2, 1)), 3), r"^ids: id 5 is outside"),
        (lambda: kernels.coalesce_rows(np.array([0]), np.ones((2, 1)), 3), r"^ids: expected 2 ids"),
        (lambda: kernels.pool_rows(np.ones((3, 2)), np.array([0, 3]), np.array([0, 2]), "sum"), r"^values: id 3 is outside"),
        (lambda: kernels.pool_rows(np.ones((3, 2)), np.array([0, 1]), np.array([0, 3]), "sum"), r"^offsets: must start at 0"),
        (lambda: kernels.pool_rows(np.ones((3, 2)), np.array([0]), np.array([0, 1]), "max"), r"^pooling: expected one of 'sum', 'mean'"),
        (lambda: kernels.pool_rows(np.ones((3, 4))[:, ::2], np.array([0]), np.array([0, 1]), "sum"), r"^table: must be C-contiguous"),
        (lambda: kernels.coalesce_pooled_rows(np.ones((3, 2)), np.array([0]), np.array([0, 1]), 3, "sum"), r"^d_out: expected 1 rows"),
        (lambda: kernels.adam_update_(np.ones(2), np.ones(3), np.ones(2), np.ones(2), 0.1, 1.0, 0.9, 0.999, 1e-8), r"^grad: expected shape \(2,\)"),
        (lambda: kernels.adam_update_(np.ones(2), np.ones(2, np.float32), np.ones(2), np.ones(2), 0.1, 1.0, 0.9, 0.999, 1e-8), r"^grad: expected dtype float64"),
        (lambda: kernels.sparse_adagrad_rows_(np.ones((3, 2)), np.ones((3, 2), np.float32), [0], np.ones((1, 2)), 0.1, 0.0), r"^accumulator: expected dtype float64"),
        (lambda: kernels.sparse_adagrad_rows_(np.ones((3, 2)), np.ones((3, 1)), [0], np.ones((1, 2)), 0.1, 0.0), r"^accumulator: expected shape \(3, 2\)"),
        (lambda: kernels.sparse_adagrad_rows_(np.ones(3), np.ones(3), [0], np.ones((1, 1)), 0.1, 0.0), r"^param: expected 2 dimension"),
        (lambda: kernels.sparse_adagrad_rows_(np.ones((3, 2)), np.ones((3, 2)), [0, 1], np.ones((1, 2)), 0.1, 0.0), r"^rows: expected one integer row id per row"),
        (lambda: kernels.sparse_adagrad_rows_(np.ones((3, 2)), np.ones((3, 2)), [0], np.ones((1, 3)), 0.1, 0.0), r"^row_grads: expected 2 columns"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_inputs_are_rejected_and_named(bad, dtype):
    items = np.ones((9, 3), dtype)
    user = np.ones(3, dtype)
    bad_items = items.copy()
    bad_items[4, 1] = bad
    bad_user = user.copy()
    bad_user[2] = bad
    for call in (kernels.score_items, lambda a, b: kernels.top_k_items(a, b, 3)):
        with pytest.raises(ValueError, match=r"^items: contains NaN or infinity"):
            call(bad_items, user)
        with pytest.raises(ValueError, match=r"^users: contains NaN or infinity"):
            call(items, bad_user)
        with pytest.raises(ValueError, match=r"^items: contains NaN or infinity"):
            call(bad_items, np.ones((2, 3), dtype))
    with pytest.raises(ValueError, match=r"^scores: contains NaN or infinity"):
        kernels.top_k_scores(bad_user, 2)


@pytest.mark.parametrize("n", [1, kernels.mlp.BLAS_MIN_ROWS])  # row path and BLAS path
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_mlp_non_finite_is_caught_even_where_relu_or_a_zero_would_hide_it(n, bad):
    x = np.zeros((n, 2), np.float64)  # zero inputs: bad * 0 is NaN, still caught
    weights = [np.ones((2, 3)), np.ones((3, 1))]
    biases = [np.zeros(3), np.zeros(1)]
    bad_weights = [weights[0].copy(), weights[1]]
    bad_weights[0][1, 2] = bad
    with pytest.raises(ValueError, match=r"^weights\[0\]: contains NaN or infinity"):
        kernels.mlp_scores(x, bad_weights, biases)
    bad_biases = [np.array([0.0, bad, 0.0]), biases[1]]  # -inf would become 0 after the ReLU
    with pytest.raises(ValueError, match=r"^biases\[0\]: contains NaN or infinity"):
        kernels.mlp_scores(x, weights, bad_biases)
    bad_x = x.copy()
    bad_x[0, 0] = bad
    with pytest.raises(ValueError, match=r"^x: contains NaN or infinity"):
        kernels.mlp_scores(bad_x, weights, biases)


def test_overflow_is_reported_as_overflow():
    big = np.full((4, 2), 1e30, np.float32)
    with pytest.raises(ValueError, match=r"^items: a score overflowed"):
        kernels.top_k_items(big, np.full(2, 1e30, np.float32), 2)
    with pytest.raises(ValueError, match=r"^x: a pre-activation overflowed"):
        kernels.mlp_scores(big, [np.full((2, 1), 1e30, np.float32)], [np.zeros(1, np.float32)])


def test_compile_all_runs():
    kernels.compile_all(mlp_depths=(1, 2))


def test_kernels_import_nothing_from_pfd_ref():
    """kernels/ is installed as pfd_ref.kernels but depends on nothing else in pfd_ref: every
    import in its files is relative, or of the standard library, NumPy or Numba."""
    import ast
    from pathlib import Path
    allowed = {"__future__", "numbers", "threading", "concurrent", "numpy", "numba"}
    folder = Path(kernels.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [] if node.level else [node.module.split(".")[0]]
            else:
                continue
            assert set(roots) <= allowed, f"{path.name}: imports {roots}"

"""pfd_ref.twins against pfd_ref.kernels (the switch between them: tests/test_backend.py).

Each kernel's twin is checked for what pfd_ref.twins promises: the same bits, the same
result, or a stated tolerance. Integer-valued inputs make every sum exact in both
implementations (and produce many tied scores), so top-k results can be compared exactly,
tie order included. The properties of the scatter-add are checked on both implementations.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref import kernels, twins
from pfd_ref.losses import sigmoid
from arrays import DTYPES, integer_valued, real_valued, rtol, same_bits, scoring_case, strided

PROPERTY = settings(max_examples=30, deadline=None)
IMPLEMENTATIONS = pytest.mark.parametrize("impl", [kernels, twins], ids=["kernel", "twin"])


# --------------------------------------------------------------------------- the registry


def test_every_kernel_has_a_twin_under_its_name_and_a_parity_test_here():
    assert sorted(set(kernels.__all__) - {"compile_all"}) == sorted(twins.__all__)
    tests = [name for name in globals() if name.startswith("test_")]
    for name in twins.__all__:
        assert callable(getattr(twins, name)) and callable(getattr(kernels, name))
        assert any(test.startswith(f"test_{name.rstrip('_')}_") for test in tests), f"no parity test for {name}"


# --------------------------------------------------------------------------- scoring


@PROPERTY
@given(scoring_case(integer=False))
def test_score_items_within_the_dot_product_bound(case):
    """|kernel - twin| <= 4 eps (d + 1) sum_j |items_ij users_j| (a dot product's error bound):
    the kernel reassociates one user's sum; for a batch both call GEMM, but on a copied or
    a strided input, which BLAS may sum in another order."""
    items, users = case
    got, expected = kernels.score_items(items, users), twins.score_items(items, users)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    eps = np.finfo(items.dtype).eps
    scale = np.abs(users) @ np.abs(items).T
    assert np.all(np.abs(got - expected) <= 4 * eps * (items.shape[1] + 1) * scale + np.finfo(items.dtype).tiny)


@PROPERTY
@given(scoring_case(integer=True), st.integers(0, 45))
def test_top_k_items_same_ids_and_scores_on_exact_data_with_ties(case, k):
    items, users = case
    top_scores, top_ids = kernels.top_k_items(items, users, k)
    expected_scores, expected_ids = twins.top_k_items(items, users, k)
    assert top_ids.dtype == np.int64 and top_scores.dtype == items.dtype
    np.testing.assert_array_equal(top_ids, expected_ids)
    np.testing.assert_array_equal(top_scores, expected_scores)


def test_top_k_items_across_scan_blocks():
    rng = np.random.default_rng(1)
    items = integer_valued(rng, (3 * kernels.scoring.SCAN_BLOCK_ROWS + 5, 4), np.float32)
    for users in (integer_valued(rng, 4, np.float32), integer_valued(rng, (3, 4), np.float32)):
        for a, b in zip(kernels.top_k_items(items, users, 300), twins.top_k_items(items, users, 300)):
            np.testing.assert_array_equal(a, b)


@st.composite
def candidate_case(draw):
    """A catalogue of integer-valued rows (many tied scores), one user or a batch, and each
    user's candidate ids, drawn with repeats allowed."""
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 5))
    batch = draw(st.sampled_from([None, 1, 3]))
    c = draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    items = integer_valued(rng, (n, d), dtype)
    users = integer_valued(rng, (d,) if batch is None else (batch, d), dtype)
    candidates = rng.integers(0, n, size=(c,) if batch is None else (batch, c))
    return items, users, candidates


@PROPERTY
@given(candidate_case(), st.integers(0, 35))
def test_top_k_items_of_candidates_same_ids_and_scores_with_ties_and_repeats(case, k):
    items, users, candidates = case
    got = kernels.top_k_items(items, users, k, candidates=candidates)
    expected = twins.top_k_items(items, users, k, candidates=candidates)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@PROPERTY
@given(scoring_case(integer=True), st.integers(1, 9), st.integers(0, 50))
def test_top_k_item_blocks_same_result_as_the_twin(case, block_rows, k):
    items, users = case
    blocks = [(a, items[a:a + block_rows]) for a in range(0, items.shape[0], block_rows)]
    for a, b in zip(kernels.top_k_item_blocks(blocks, users, k), twins.top_k_item_blocks(blocks, users, k)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@PROPERTY
@given(st.sampled_from(DTYPES), st.sampled_from([None, 1, 4]), st.integers(0, 60), st.integers(0, 70),
       st.integers(0, 2**32 - 1))
def test_top_k_scores_same_result(dtype, batch, n, k, seed):
    rng = np.random.default_rng(seed)
    shape = (n,) if batch is None else (batch, n)
    scores = integer_valued(rng, shape, dtype, -2, 3)  # five values: many ties
    if n and seed % 2:
        scores = strided(scores)
    for a, b in zip(kernels.top_k_scores(scores, k), twins.top_k_scores(scores, k)):
        same_bits(a, b)


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
def test_mlp_scores_within_the_stated_tolerance(case):
    """Within 1e-5 (float32) / 1e-12 (float64), relative and absolute (pfd_ref.twins)."""
    x, weights, biases, sigmoid, slope = case
    got = kernels.mlp_scores(x, weights, biases, sigmoid=sigmoid, negative_slope=slope)
    expected = twins.mlp_scores(x, weights, biases, sigmoid=sigmoid, negative_slope=slope)
    assert got.dtype == x.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=rtol(x.dtype), atol=rtol(x.dtype))


@PROPERTY
@given(mlp_case(), st.integers(0, 6))
def test_mlp_scores_split_within_the_stated_tolerance_of_the_plain_pass(case, user_width):
    """The kernel adds the user block's share once; the twin runs the plain pass over the
    user block repeated: within mlp_scores's tolerance (pfd_ref.twins)."""
    x, weights, biases, sigmoid, slope = case
    rng = np.random.default_rng(user_width)
    user_x = real_valued(rng, user_width, x.dtype)
    user_weight = real_valued(rng, (user_width, weights[0].shape[1]), x.dtype)
    got = kernels.mlp_scores_split(user_x, x, user_weight, weights, biases, sigmoid=sigmoid, negative_slope=slope)
    expected = twins.mlp_scores_split(user_x, x, user_weight, weights, biases, sigmoid=sigmoid, negative_slope=slope)
    assert got.dtype == x.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=10 * rtol(x.dtype), atol=10 * rtol(x.dtype))


def test_mlp_scores_sigmoid_saturates_without_overflow_in_both():
    x = np.array([[10.0], [-10.0], [-1.0]], np.float32)  # z = 1000, -1000, -100: exp(1000) would overflow
    weights, biases = [np.array([[100.0]], np.float32)], [np.zeros(1, np.float32)]
    with np.errstate(over="raise"):
        out = kernels.mlp_scores(x, weights, biases, sigmoid=True)
        np.testing.assert_array_equal(out, twins.mlp_scores(x, weights, biases, sigmoid=True))
    assert out[0, 0] == 1 and out[1, 0] == 0 and 0 < out[2, 0] < 1e-40


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_of_the_scoring_kernel_within_4_ulp_of_losses_sigmoid(dtype):
    """kernels.mlp.sigmoid (a scalar Numba function inside mlp_scores) against its twin, the
    one array sigmoid pfd_ref.losses.sigmoid: the same formula, libm's exp against NumPy's."""
    rng = np.random.default_rng(0)
    x = np.concatenate([[0.0, -0.0, 1e4, -1e4, 88.0, -88.0],
                        rng.standard_normal(20000) * 10.0 ** rng.integers(-3, 3, 20000)]).astype(dtype)
    one = dtype(1)
    kernel = np.array([kernels.mlp.sigmoid(v, one) for v in x], dtype)
    ulps = np.abs(kernel.view(f"i{kernel.itemsize}").astype(np.int64) - sigmoid(x).view(f"i{kernel.itemsize}").astype(np.int64))
    assert ulps.max() <= 4


# --------------------------------------------------------------------------- training kernels


@PROPERTY
@given(st.sampled_from(DTYPES), st.integers(0, 50), st.integers(1, 5), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_coalesce_rows_same_bits(dtype, n, d, num_rows, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num_rows, n)
    row_grads = (real_valued(rng, (n, d), dtype) * 10.0 ** rng.integers(-6, 6, (n, d))).astype(dtype)
    row_grads[rng.random((n, d)) < 0.1] = -0.0
    if seed % 2:
        row_grads = strided(row_grads)
    for a, b in zip(kernels.coalesce_rows(ids, row_grads, num_rows), twins.coalesce_rows(ids, row_grads, num_rows)):
        same_bits(a, b)


@PROPERTY
@given(st.sampled_from(DTYPES), st.integers(0, 50), st.integers(1, 5), st.integers(1, 12), st.integers(0, 4),
       st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_coalesce_rows_of_a_column_block_same_bits(dtype, n, d, num_rows, before, after, seed):
    # a field's block of the MLP input's gradient, read in place: the bits of coalescing a copy of it
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num_rows, n)
    d_x = (real_valued(rng, (n, before + d + after), dtype) * 10.0 ** rng.integers(-6, 6, (n, 1))).astype(dtype)
    d_x[rng.random(d_x.shape) < 0.1] = -0.0
    expected = twins.coalesce_rows(ids, np.ascontiguousarray(d_x[:, before:before + d]), num_rows)
    for impl in (kernels, twins):
        for a, b in zip(impl.coalesce_rows(ids, d_x, num_rows, before, d), expected):
            same_bits(a, b)


@PROPERTY
@given(st.sampled_from(DTYPES), st.integers(0, 40), st.integers(1, 5), st.integers(1, 12), st.integers(0, 4),
       st.integers(0, 3), st.booleans(), st.integers(0, 2**32 - 1))
def test_gather_rows_same_bits(dtype, n, d, num_rows, before, after, into, seed):
    rng = np.random.default_rng(seed)
    table = real_valued(rng, (num_rows, d), dtype)
    table[rng.random(table.shape) < 0.2] = rng.choice(np.array([-0.0, np.nan, np.inf, 1e-45], dtype))
    ids = rng.integers(0, num_rows, n)
    if not into:
        for impl in (kernels, twins):
            same_bits(impl.gather_rows(table, ids), table[ids])
        return
    # written into its column block of a wider array; the other columns are left as they were
    x = real_valued(rng, (n, before + d + after), dtype)
    expected = x.copy()
    expected[:, before:before + d] = table[ids]
    for impl in (kernels, twins):
        out = x.copy()
        assert impl.gather_rows(table, ids, out, before) is out
        same_bits(out, expected)


@IMPLEMENTATIONS
@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 30), num_rows=st.integers(1, 8), d=st.integers(1, 3),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_coalesce_sums_rows_per_id_into_unique_sorted_rows(impl, n, num_rows, d, dtype, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num_rows, n)
    row_grads = rng.standard_normal((n, d)).astype(dtype)
    rows, values = impl.coalesce_rows(ids, row_grads, num_rows)
    np.testing.assert_array_equal(rows, np.unique(ids))
    assert rows.dtype == np.int64 and values.dtype == dtype and values.shape == (rows.size, d)
    dense = np.zeros((num_rows, d))
    np.add.at(dense, ids, row_grads.astype(np.float64))
    np.testing.assert_allclose(values, dense[rows], rtol=rtol(dtype), atol=1e-5)


@IMPLEMENTATIONS
def test_coalesce_adds_each_ids_rows_left_to_right_in_input_order(impl):
    # 1e16 + 1 rounds to 1e16 in float64, so the result tells the order of the additions
    ids = np.array([2, 0, 2, 2])
    rows, values = impl.coalesce_rows(ids, np.array([[1e16], [5.0], [1.0], [-1e16]]), 3)
    np.testing.assert_array_equal(rows, [0, 2])
    np.testing.assert_array_equal(values, [[5.0], [0.0]])  # (1e16 + 1) - 1e16, left to right
    grads = np.array([[1.0], [1e-8], [1e-8], [-1.0]], np.float32)
    values = impl.coalesce_rows(np.zeros(4, np.int64), grads, 1)[1]
    assert values[0, 0] == np.float32(((np.float32(1.0) + np.float32(1e-8)) + np.float32(1e-8)) - np.float32(1.0))


@IMPLEMENTATIONS
@pytest.mark.parametrize("dtype", DTYPES)
def test_coalesce_of_no_ids_is_empty(impl, dtype):
    rows, values = impl.coalesce_rows(np.zeros(0, np.int64), np.zeros((0, 4), dtype), 6)
    assert rows.shape == (0,) and rows.dtype == np.int64 and values.shape == (0, 4) and values.dtype == dtype


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
def test_pool_rows_same_bits(case, pooling):
    table, values, offsets = case
    out = kernels.pool_rows(table, values, offsets, pooling)
    expected = twins.pool_rows(table, values, offsets, pooling)
    # the same values, rounding included (reduceat's order); the signs of zeros follow NumPy >= 2
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    if int(np.__version__.split(".")[0]) >= 2:
        np.testing.assert_array_equal(np.signbit(out), np.signbit(expected))


@PROPERTY
@given(pooled_case(), st.sampled_from(["sum", "mean"]), st.booleans())
def test_coalesce_pooled_rows_same_bits(case, pooling, non_contiguous):
    table, values, offsets = case
    rng = np.random.default_rng(values.size)
    d_out = real_valued(rng, (offsets.size - 1, table.shape[1]), table.dtype)
    if non_contiguous:
        d_out = strided(d_out)
    got = kernels.coalesce_pooled_rows(d_out, values, offsets, table.shape[0], pooling)
    expected = twins.coalesce_pooled_rows(d_out, values, offsets, table.shape[0], pooling)
    for a, b in zip(got, expected):
        same_bits(a, b)


@PROPERTY
@given(pooled_case(), st.sampled_from(["sum", "mean"]), st.integers(0, 4), st.integers(0, 3))
def test_pool_rows_into_a_column_block_same_bits(case, pooling, before, after):
    # the block gets pool_rows's own result (empty rows zeroed), the other columns stay as they were
    table, values, offsets = case
    n, d = offsets.size - 1, table.shape[1]
    x = np.full((n, before + d + after), 7.0, table.dtype)
    expected = x.copy()
    expected[:, before:before + d] = twins.pool_rows(table, values, offsets, pooling)
    for impl in (kernels, twins):
        out = x.copy()
        assert impl.pool_rows(table, values, offsets, pooling, out, before) is out
        same_bits(out, expected)


@PROPERTY
@given(pooled_case(), st.sampled_from(["sum", "mean"]), st.integers(0, 4), st.integers(0, 3))
def test_coalesce_pooled_rows_of_a_column_block_same_bits(case, pooling, before, after):
    table, values, offsets = case
    n, d = offsets.size - 1, table.shape[1]
    d_x = real_valued(np.random.default_rng(values.size), (n, before + d + after), table.dtype)
    expected = twins.coalesce_pooled_rows(np.ascontiguousarray(d_x[:, before:before + d]), values, offsets,
                                          table.shape[0], pooling)
    for impl in (kernels, twins):
        for a, b in zip(impl.coalesce_pooled_rows(d_x, values, offsets, table.shape[0], pooling, before, d), expected):
            same_bits(a, b)


def activation_inputs(dtype, n: int, d: int, non_contiguous: bool, seed: int):
    """``(d_y, x)`` of shape ``(n, d)`` with 30% special values (signed zeros, NaN, infinities,
    subnormals), strided views when ``non_contiguous``."""
    rng = np.random.default_rng(seed)
    specials = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45], dtype)
    x, d_y = (np.where(rng.random((n, d)) < 0.3, rng.choice(specials, (n, d)), real_valued(rng, (n, d), dtype))
              for _ in range(2))
    return (strided(d_y), strided(x)) if non_contiguous else (d_y, x)


@PROPERTY
@given(st.sampled_from(DTYPES), st.integers(0, 40), st.integers(1, 6), st.booleans(), st.integers(0, 2**32 - 1))
def test_relu_backward_same_bits(dtype, n, d, non_contiguous, seed):
    d_y, x = activation_inputs(dtype, n, d, non_contiguous, seed)
    same_bits(kernels.relu_backward(d_y, x), twins.relu_backward(d_y, x))


@PROPERTY
@given(st.sampled_from(DTYPES), st.integers(0, 40), st.integers(1, 6), st.booleans(), st.sampled_from([0.01, 0.2, 1 / 3]),
       st.integers(0, 2**32 - 1))
def test_leaky_relu_backward_same_bits(dtype, n, d, non_contiguous, slope, seed):
    d_y, x = activation_inputs(dtype, n, d, non_contiguous, seed)
    same_bits(kernels.leaky_relu_backward(d_y, x, slope), twins.leaky_relu_backward(d_y, x, slope))


BETAS_EPS = st.sampled_from([(0.9, 0.999, 1e-8), (0.5, 0.9, 1e-3), (0.0, 0.0, 1e-6)])


@PROPERTY
@given(st.sampled_from(DTYPES), st.integers(1, 12), st.integers(1, 5), st.sampled_from([0.0, 1e-3, 0.7]), BETAS_EPS,
       st.integers(0, 2**32 - 1))
def test_sparse_adam_rows_update_same_bits(dtype, num_rows, d, l2, betas_eps, seed):
    rng = np.random.default_rng(seed)
    beta1, beta2, eps = betas_eps
    table = real_valued(rng, (num_rows, d), dtype)
    states = {impl: [table.copy(), np.zeros_like(table), np.zeros_like(table)] for impl in (kernels, twins)}
    for step in range(1, 6):
        rows = np.flatnonzero(rng.random(num_rows) < 0.5)  # empty in some steps
        row_grads = (real_valued(rng, (rows.size, d), dtype) * 10.0 ** rng.integers(-6, 3, (rows.size, 1))).astype(dtype)
        step_size = 0.05 * np.sqrt(1 - beta2**step) / (1 - beta1**step)
        for impl, state in states.items():
            impl.sparse_adam_rows_update_(*state, rows, row_grads, step_size, beta1, beta2, eps, l2)
        for a, b in zip(states[kernels], states[twins]):
            same_bits(a, b)


@PROPERTY
@given(st.sampled_from(DTYPES), st.integers(1, 12), st.integers(1, 5), st.sampled_from([0.0, 1e-3, 0.7]),
       st.sampled_from([(0.1, 0.0), (0.0, 1e-10), (1e-6, 1e-3)]), st.integers(0, 2**32 - 1))
def test_sparse_adagrad_rows_update_same_bits(dtype, num_rows, d, l2, init_eps, seed):
    rng = np.random.default_rng(seed)
    initial_accumulator, eps = init_eps
    table = real_valued(rng, (num_rows, d), dtype)
    states = {impl: [table.copy(), np.full_like(table, initial_accumulator)] for impl in (kernels, twins)}
    for step in range(6):
        rows = np.flatnonzero(rng.random(num_rows) < 0.5)  # empty in some steps
        row_grads = (real_valued(rng, (rows.size, d), dtype) * 10.0 ** rng.integers(-6, 3, (rows.size, 1))).astype(dtype)
        lr = 0.05 * min(1.0, (step + 1) / 4)  # a warm-up's learning rates
        for impl, state in states.items():
            impl.sparse_adagrad_rows_update_(*state, rows, row_grads, lr, eps, l2)
        for a, b in zip(states[kernels], states[twins]):
            same_bits(a, b)


@PROPERTY
@given(st.sampled_from(DTYPES), st.sampled_from([(), (1,), (7,), (3, 4)]), BETAS_EPS, st.booleans(),
       st.integers(0, 2**32 - 1))
def test_adam_update_same_bits(dtype, shape, betas_eps, non_contiguous, seed):
    rng = np.random.default_rng(seed)
    beta1, beta2, eps = betas_eps
    param = np.asarray(real_valued(rng, shape, dtype))
    if non_contiguous and param.ndim:
        param = strided(param)  # updated in place through a contiguous copy by the kernel
    states = {impl: [param.copy(), np.zeros_like(param), np.zeros_like(param)] for impl in (kernels, twins)}
    for step in range(1, 6):
        grad = np.asarray(real_valued(rng, shape, dtype) * 10.0 ** rng.integers(-6, 3, shape), dtype)
        if non_contiguous and grad.ndim:
            grad = strided(grad)
        for impl, (p, m, v) in states.items():
            impl.adam_update_(p, grad, m, v, 0.05 / (1 - beta1**step), (1 - beta2**step) ** 0.5, beta1, beta2, eps)
        for a, b in zip(states[kernels], states[twins]):
            same_bits(a, b)


def test_adam_update_of_a_strided_parameter_updates_the_view_in_place():
    rng = np.random.default_rng(3)
    wide = real_valued(rng, (4, 6), np.float32)
    view, copy = wide[:, ::2], np.ascontiguousarray(wide[:, ::2])
    grad = real_valued(rng, (4, 3), np.float32)
    for p in (view, copy):
        kernels.adam_update_(p, grad, np.zeros_like(copy), np.zeros_like(copy), 0.1, 0.5, 0.9, 0.999, 1e-8)
    assert not view.flags.c_contiguous
    same_bits(wide[:, ::2], copy)


# --------------------------------------------------------------------------- text (the log readers' tokenizer)

# cells made of bytes that matter to the dialect, and plain ones
TEXT_CELL = st.text(alphabet=st.sampled_from(list('ab1-+,\t"\r ')), max_size=6)
TEXT_ROW = st.lists(TEXT_CELL, min_size=1, max_size=5)


def _chunk(lines, ending=b"\n") -> np.ndarray:
    return np.frombuffer(b"".join(line.encode() + ending for line in lines), dtype=np.uint8)


def _split(impl, buf, delimiter, n_fields, max_rows, pos=0):
    starts = np.full((max_rows, n_fields), -1, dtype=np.int64)
    ends = np.full((max_rows, n_fields), -1, dtype=np.int64)
    rows, status, fields, next_pos = impl.split_fields(buf, pos, delimiter, starts, ends)
    return starts[:rows], ends[:rows], rows, status, fields, next_pos


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT_ROW, min_size=1, max_size=8), st.sampled_from([",", "\t"]), st.integers(1, 5),
       st.sampled_from([b"\n", b"\r\n"]))
def test_split_fields_same_result_on_any_text(rows, delimiter, n_fields, ending):
    buf = _chunk([delimiter.join(row) for row in rows], ending)
    got = _split(kernels, buf, ord(delimiter), n_fields, len(rows))
    want = _split(twins, buf, ord(delimiter), n_fields, len(rows))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


INTEGER_CELL = st.one_of(st.integers(-2 ** 63 + 1, 2 ** 63 - 1).map(str),
                         st.integers(2 ** 63 - 10, 2 ** 64).map(str),  # across the int64 limit
                         st.text(alphabet=st.sampled_from(list("0123456789+- .a_")), max_size=21))


def _cells(cells, suffix=b""):
    buf = np.frombuffer("".join(cells).encode() + suffix, dtype=np.uint8)
    ends = np.cumsum([len(c) for c in cells]).astype(np.int64)
    return buf, ends - np.array([len(c) for c in cells], dtype=np.int64), ends


@settings(max_examples=300, deadline=None)
@given(st.lists(INTEGER_CELL, min_size=1, max_size=10))
def test_parse_int64_same_values_as_the_twin_and_int(cells):
    buf, starts, ends = _cells(cells)
    values, bad = kernels.parse_int64(buf, starts, ends)
    twin_values, twin_bad = twins.parse_int64(buf, starts, ends, out=np.zeros(len(cells), np.int64))
    assert bad == twin_bad
    good = len(cells) if bad < 0 else bad
    np.testing.assert_array_equal(values[:good], twin_values[:good])
    assert [int(c) for c in cells[:good]] == values[:good].tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["pv", "buy", "cart", "fav", "p", "pvv", "", "Pv"]), min_size=1, max_size=10))
def test_match_tokens_same_codes_as_the_twin(cells):
    tokens = (b"pv", b"buy", b"cart", b"fav")
    buf, starts, ends = _cells(cells, b"\n")
    codes, bad = kernels.match_tokens(buf, starts, ends, tokens)
    twin_codes, twin_bad = twins.match_tokens(buf, starts, ends, tokens, out=np.zeros(len(cells), np.int8))
    assert bad == twin_bad
    good = len(cells) if bad < 0 else bad
    np.testing.assert_array_equal(codes[:good], twin_codes[:good])
    assert [tokens[k].decode() for k in codes[:good]] == cells[:good]


# --------------------------------------------------------------------------- the same checks


TEXT_BUF = np.frombuffer(b"1,2\n", np.uint8)
BAD_CALLS = [
    ("score_items", (np.ones((3, 2), np.float32), np.ones(2)), r"^dtype mismatch"),
    ("score_items", (np.ones((3, 2), np.int64), np.ones(2)), r"^items: expected float32 or float64"),
    ("top_k_items", (np.ones((3, 2)), np.ones(2), -1), r"^k: expected an integer >= 0"),
    ("top_k_scores", (np.ones(3), True), r"^k: expected an integer >= 0"),
    ("top_k_scores", ([1.0, 2.0], 1), r"^scores: expected a numpy array"),
    ("mlp_scores", (np.ones((1, 2)), [], []), r"^weights: expected one or more layers"),
    ("top_k_items", (np.ones((4, 2)), np.ones(2), 3, [0, 4]), r"^candidates: id 4 is outside the table \[0, 4\)"),
    ("top_k_items", (np.ones((4, 2)), np.ones(2), 3, [0.0, 1.0]), r"^candidates: expected integer ids"),
    ("top_k_items", (np.ones((4, 2)), np.ones((2, 2)), 3, [[0, 1]]), r"^candidates: expected one row per user"),
    ("top_k_item_blocks", ([(0, np.ones((3, 2))), (2, np.ones((3, 2)))], np.ones(2), 2),
     r"^blocks: a block starts at row 2; expected an integer >= 3"),
    ("mlp_scores_split", (np.array([1.0, np.nan, 0.0]), np.ones((1, 2)), np.ones((3, 4)), [np.ones((2, 4)), np.ones((4, 1))],
                          [np.ones(4), np.ones(1)]), r"^user_x: contains NaN or infinity"),
    ("coalesce_rows", (np.array([0, 5]), np.ones((2, 1)), 3), r"^ids: id 5 is outside"),
    ("coalesce_rows", (np.array([-1, 0]), np.ones((2, 1)), 3), r"^ids: id -1 is outside"),
    ("coalesce_rows", (np.array([0]), np.ones((2, 1)), 3), r"^ids: expected 2 ids"),
    ("coalesce_rows", (np.array([0, 1]), np.ones((2, 3)), 3, 2, 2), r"^row_grads: columns \[2, 4\) lie outside"),
    ("coalesce_pooled_rows", (np.ones((1, 2)), np.array([0]), np.array([0, 1]), 3, "sum", -1, 1), r"^start: expected an integer >= 0"),
    ("gather_rows", (np.ones((3, 2)), np.array([0, 3])), r"^ids: id 3 is outside the table \[0, 3\)"),
    ("gather_rows", (np.ones((3, 2)), np.array([0.0])), r"^ids: expected integer ids"),
    ("gather_rows", (np.ones((3, 2)), np.array([0]), np.ones((1, 3)), 2), r"^out: columns \[2, 4\) lie outside"),
    ("gather_rows", (np.ones((3, 2)), np.array([0]), np.ones((1, 4), np.float32)), r"^out: expected dtype float64"),
    ("gather_rows", (np.ones((3, 2)), np.array([0]), np.ones((2, 4))), r"^out: expected a C-contiguous 2-d array of 1 rows"),
    ("gather_rows", (np.ones((3, 2)), np.array([0]), np.ones((1, 8))[:, ::2]), r"^out: expected a C-contiguous"),
    ("pool_rows", (np.ones((3, 2)), np.array([0, 3]), np.array([0, 2]), "sum"), r"^values: id 3 is outside"),
    ("pool_rows", (np.ones((3, 2)), np.array([0, 1]), np.array([0, 3]), "sum"), r"^offsets: must start at 0"),
    ("pool_rows", (np.ones((3, 2)), np.array([0]), np.array([0, 1]), "max"), r"^pooling: expected one of"),
    ("coalesce_pooled_rows", (np.ones((3, 2)), np.array([0]), np.array([0, 1]), 3, "sum"), r"^d_out: expected 1 rows"),
    ("relu_backward", (np.ones(3, np.float32), np.ones(3)), r"^d_y: expected dtype float64"),
    ("relu_backward", (np.ones(4), np.ones(3)), r"^d_y: expected shape \(3,\)"),
    ("leaky_relu_backward", (np.ones(3, np.float32), np.ones(3), 0.01), r"^d_y: expected dtype float64"),
    ("leaky_relu_backward", (np.ones(4), np.ones(3), 0.01), r"^d_y: expected shape \(3,\)"),
    ("leaky_relu_backward", (np.ones(3), np.ones(3), np.nan), r"^negative_slope: expected a finite number"),
    ("mlp_scores", (np.ones((1, 2)), [np.ones((2, 1))], [np.ones(1)], False, 1.0), r"^negative_slope: "),
    ("sparse_adagrad_rows_update_", (np.ones((3, 2)), np.ones((3, 2), np.float32), [0], np.ones((1, 2)), 0.1, 0.0),
     r"^accumulator: expected dtype float64"),
    ("sparse_adagrad_rows_update_", (np.ones((3, 2)), np.ones((3, 1)), [0], np.ones((1, 2)), 0.1, 0.0),
     r"^accumulator: expected shape \(3, 2\)"),
    ("sparse_adagrad_rows_update_", (np.ones((3, 2)), np.ones((3, 2)), [0, 1], np.ones((1, 2)), 0.1, 0.0),
     r"^rows: expected one integer row id per row"),
    ("sparse_adagrad_rows_update_", (np.ones((4, 2)), np.ones((4, 2)), np.array([2, 1]), np.ones((2, 2)), 0.1, 0.0),
     r"^rows: must be unique, sorted ascending and inside \[0, 4\)"),
    ("adam_update_", (np.ones(2), np.ones(3), np.ones(2), np.ones(2), 0.1, 1.0, 0.9, 0.999, 1e-8),
     r"^grad: expected shape \(2,\)"),
    ("adam_update_", (np.ones(2), np.ones(2, np.float32), np.ones(2), np.ones(2), 0.1, 1.0, 0.9, 0.999, 1e-8),
     r"^grad: expected dtype float64"),
    ("sparse_adam_rows_update_", (np.ones((4, 2)), np.zeros((4, 2)), np.zeros((4, 2)), np.array([2, 1]), np.ones((2, 2)),
                                  0.1, 0.9, 0.999, 1e-8), r"^rows: must be unique, sorted ascending and inside \[0, 4\)"),
    ("split_fields", (np.frombuffer(b"1,2", np.uint8), 0, 44, np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64)),
     r"^buf: expected whole lines"),
    ("split_fields", (TEXT_BUF, 5, 44, np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64)),
     r"^pos: expected an integer in \[0, 4\]"),
    ("split_fields", (TEXT_BUF, 0, 34, np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64)), r"^delimiter: "),
    ("split_fields", (TEXT_BUF, 0, 44, np.zeros((1, 2), np.int64), np.zeros((2, 2), np.int64)),
     r"^ends: expected shape \(1, 2\)"),
    ("split_fields", (TEXT_BUF, 0, 44, np.zeros((1, 2), np.int32), np.zeros((1, 2), np.int64)),
     r"^starts: expected a writeable 2-d int64 array"),
    ("parse_int64", (TEXT_BUF, np.array([0, 2]), np.array([1, 5])), r"^starts, ends: cell 1 spans bytes 2\.\.5, outside"),
    # cells that run past buf into readable memory beyond it (buf a view of a longer array)
    ("parse_int64", (np.frombuffer(b"1234", np.uint8)[:2], np.array([0]), np.array([4])),
     r"^starts, ends: cell 0 spans bytes 0\.\.4, outside buf \(0\.\.2\)"),
    ("match_tokens", (np.frombuffer(b"pvv", np.uint8)[:2], np.array([0]), np.array([3]), (b"pvv",)),
     r"^starts, ends: cell 0 spans bytes 0\.\.3, outside buf \(0\.\.2\)"),
    ("parse_int64", (TEXT_BUF, np.array([0]), np.array([1]), np.zeros(1, np.int32)), r"^out: expected a writeable int64"),
    ("match_tokens", (TEXT_BUF, np.array([2, 0]), np.array([1, 1]), (b"1",)), r"^starts, ends: cell 0 spans bytes 2\.\.1"),
    ("match_tokens", (TEXT_BUF, np.array([0]), np.array([1]), (b"1", b"1")), r"^tokens: expected a tuple"),
]


@IMPLEMENTATIONS
@pytest.mark.parametrize("name, args, message", BAD_CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_CALLS)])
def test_kernel_and_twin_reject_the_same_bad_arguments(impl, name, args, message):
    with pytest.raises(ValueError, match=message):
        getattr(impl, name)(*args)


def test_no_test_imports_a_private_name_of_pfd_ref():
    """A readable reference belongs in pfd_ref.twins (or is a public function), not in a private
    name that tests reach into."""
    import ast
    from pathlib import Path
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pfd_ref"):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"

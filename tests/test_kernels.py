"""The Numba kernels' own properties (paths, threads, layouts) and argument checks; their
parity with the NumPy twins is tests/test_twins.py.
"""

from __future__ import annotations

import csv
import io
import re

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref import kernels, twins
from pfd_ref.kernels.checks import SPLIT_FIELD_COUNT, SPLIT_OK, SPLIT_TEXT_AFTER_QUOTE, SPLIT_UNTERMINATED_QUOTE
import pfd_ref.kernels._common  # noqa: F401 (kernels._common below)
import pfd_ref.kernels.embedding  # noqa: F401
from arrays import DTYPES, integer_valued, real_valued, rtol, scoring_case, strided

PROPERTY = settings(max_examples=30, deadline=None)


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


@PROPERTY
@given(scoring_case(integer=False), st.integers(0, 45))
def test_top_k_items_returns_its_own_scores_in_ranking_order(case, k):
    items, users = case
    top_scores, top_ids = kernels.top_k_items(items, users, k)
    scores = kernels.score_items(items, users)
    if users.ndim == 1:
        # one user: the fused scan computes each score exactly as score_items does
        np.testing.assert_array_equal(top_scores, scores[top_ids])
        np.testing.assert_array_equal(top_ids, twins.top_k_scores(scores, k)[1])
    else:
        # a batch: BLAS scores by item block; the ranking of those scores is exact
        tol = 10 * rtol(items.dtype)
        np.testing.assert_allclose(top_scores, np.take_along_axis(scores, top_ids, axis=1), rtol=tol, atol=tol)


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
        for a, b in zip(parallel_batch, twins.top_k_items(items, users, 50)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(parallel_select, twins.top_k_scores(items.T.copy(), 20)):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- candidates and blocks


def test_a_candidate_listed_twice_is_ranked_twice():
    items = np.array([[1.0], [5.0], [3.0]])
    top_scores, top_ids = kernels.top_k_items(items, np.ones(1), 3, candidates=[2, 1, 0, 1])
    np.testing.assert_array_equal(top_ids, [1, 1, 2])
    np.testing.assert_array_equal(top_scores, [5.0, 5.0, 3.0])


def test_candidate_scores_are_score_items_bit_for_bit_across_scan_blocks():
    rng = np.random.default_rng(6)
    for dtype in DTYPES:
        items = real_valued(rng, (3 * kernels.scoring.SCAN_BLOCK_ROWS, 37), dtype)
        user = real_valued(rng, 37, dtype)
        candidates = rng.permutation(items.shape[0])[: 2 * kernels.scoring.SCAN_BLOCK_ROWS + 5]
        top_scores, top_ids = kernels.top_k_items(items, user, 700, candidates=candidates)
        scores = kernels.score_items(items, user)
        np.testing.assert_array_equal(top_scores, scores[top_ids])
        order = np.lexsort((candidates, -scores[candidates]))[:700]
        np.testing.assert_array_equal(top_ids, candidates[order])


def test_rows_that_are_not_candidates_are_never_read():
    items = np.ones((6, 2), np.float32)
    items[[0, 4]] = np.nan
    top_scores, top_ids = kernels.top_k_items(items, np.ones(2, np.float32), 2, candidates=[5, 1, 3])
    np.testing.assert_array_equal(top_ids, [1, 3])
    with pytest.raises(ValueError, match=r"^items: contains NaN or infinity"):
        kernels.top_k_items(items, np.ones(2, np.float32), 2, candidates=[5, 4])


def test_candidates_in_parallel_agree_with_serial_and_twin(parallel_kernels):
    rng = np.random.default_rng(7)
    for dtype in DTYPES:
        items = integer_valued(rng, (3000, 5), dtype)
        users = integer_valued(rng, (5, 5), dtype)
        one = rng.integers(0, 3000, 2 * kernels.scoring.SCAN_BLOCK_ROWS + 3)  # one request, split in two
        several = rng.integers(0, 3000, (5, 700))  # five requests, divided among the threads
        for u, candidates in ((users[0], one), (users, several)):
            parallel = kernels.top_k_items(items, u, 60, candidates=candidates)
            numba.set_num_threads(1)
            serial = kernels.top_k_items(items, u, 60, candidates=candidates)
            numba.set_num_threads(2)
            for a, b, c in zip(parallel, serial, twins.top_k_items(items, u, 60, candidates=candidates)):
                np.testing.assert_array_equal(a, b)
                np.testing.assert_array_equal(a, c)


def test_no_candidates_return_empty_arrays():
    items = np.ones((4, 2))
    for users, candidates, shape in ((np.ones(2), [], (0,)), (np.ones((3, 2)), np.zeros((3, 0), np.int64), (3, 0))):
        top_scores, top_ids = kernels.top_k_items(items, users, 5, candidates=candidates)
        assert top_scores.shape == top_ids.shape == shape
        assert top_scores.dtype == np.float64 and top_ids.dtype == np.int64


@pytest.mark.parametrize(
    "users, candidates, message",
    [
        (np.ones(2), [0, 4], r"^candidates: id 4 is outside the table \[0, 4\)"),
        (np.ones(2), [-1, 2], r"^candidates: id -1 is outside the table"),
        (np.ones(2), [0.0, 1.0], r"^candidates: expected integer ids, got dtype float64"),
        (np.ones(2), [True, False], r"^candidates: expected integer ids, got dtype bool"),
        (np.ones(2), [[0, 1]], r"^candidates: expected 1 dimension\(s\)"),
        (np.ones((2, 2)), [0, 1], r"^candidates: expected 2 dimension\(s\)"),
        (np.ones((2, 2)), [[0, 1]], r"^candidates: expected one row per user \(2 rows\)"),
    ],
)
def test_bad_candidates_are_named(users, candidates, message):
    with pytest.raises(ValueError, match=message):
        kernels.top_k_items(np.ones((4, 2)), users, 3, candidates=candidates)


@pytest.mark.parametrize("batch", [None, 4])
def test_top_k_over_blocks_equals_top_k_over_the_whole_catalogue(batch):
    rng = np.random.default_rng(8)
    for dtype in DTYPES:
        items = integer_valued(rng, (2 * kernels.scoring.SCAN_BLOCK_ROWS + 11, 3), dtype)  # many ties
        users = integer_valued(rng, (3,) if batch is None else (batch, 3), dtype)
        blocks = [(a, items[a : a + 997]) for a in range(0, items.shape[0], 997)]
        for k in (0, 5, 1500, items.shape[0] + 3):
            got = kernels.top_k_item_blocks(iter(blocks), users, k)
            for a, b in zip(got, kernels.top_k_items(items, users, k)):
                np.testing.assert_array_equal(a, b)


def test_blocks_out_of_order_are_rejected():
    items = np.ones((6, 2))
    with pytest.raises(ValueError, match=r"^blocks: a block starts at row 2; expected an integer >= 3"):
        kernels.top_k_item_blocks([(0, items[:3]), (2, items[3:])], np.ones(2), 2)


# --------------------------------------------------------------------------- MLP


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


@pytest.mark.parametrize("n", [1, kernels.mlp.BLAS_MIN_ROWS])  # row path and BLAS path
def test_mlp_scores_split_names_the_user_arrays(n):
    x, user_x = np.zeros((n, 2)), np.zeros(3)
    weights, biases = [np.ones((2, 4)), np.ones((4, 1))], [np.zeros(4), np.zeros(1)]
    user_weight = np.ones((3, 4))
    bad_user_x, bad_user_weight = user_x.copy(), user_weight.copy()
    bad_user_x[1], bad_user_weight[2, 3] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"^user_x: contains NaN or infinity"):
        kernels.mlp_scores_split(bad_user_x, x, user_weight, weights, biases)
    with pytest.raises(ValueError, match=r"^user_weight: contains NaN or infinity"):
        kernels.mlp_scores_split(user_x, x, bad_user_weight, weights, biases)
    with pytest.raises(ValueError, match=r"^user_weight: expected shape \(3, 4\)"):
        kernels.mlp_scores_split(user_x, x, np.ones((2, 4)), weights, biases)
    with pytest.raises(ValueError, match=r"^user_x: expected dtype float64"):
        kernels.mlp_scores_split(user_x.astype(np.float32), x, user_weight, weights, biases)
    bad_x = x.copy()
    bad_x[0, 1] = -np.inf
    with pytest.raises(ValueError, match=r"^x: contains NaN or infinity"):
        kernels.mlp_scores_split(user_x, bad_x, user_weight, weights, biases)


# --------------------------------------------------------------------------- scatter-add


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


def test_pool_rows_on_no_examples_and_on_empty_rows_only():
    table = np.ones((3, 2), np.float32)
    assert kernels.pool_rows(table, np.zeros(0, np.int64), np.zeros(1, np.int64), "mean").shape == (0, 2)
    np.testing.assert_array_equal(kernels.pool_rows(table, np.zeros(0, np.int64), np.zeros(3, np.int64), "mean"), 0.0)
    rows, grad_rows = kernels.coalesce_pooled_rows(np.ones((2, 2)), np.zeros(0, np.int64), np.zeros(3, np.int64), 3, "sum")
    assert rows.shape == (0,) and grad_rows.shape == (0, 2)


# --------------------------------------------------------------------------- lazy Adam


def test_sparse_adam_rows_rejects_bad_rows_before_writing():
    table = np.ones((4, 2))
    m, v = np.zeros_like(table), np.zeros_like(table)
    for rows in ([1, 1], [2, 1], [0, 4], [-1, 0]):
        with pytest.raises(ValueError, match=r"^rows: must be unique, sorted ascending and inside \[0, 4\)"):
            kernels.sparse_adam_rows_update_(table, m, v, np.array(rows), np.ones((2, 2)), 0.1, 0.9, 0.999, 1e-8)
    np.testing.assert_array_equal(table, 1.0)
    np.testing.assert_array_equal(m, 0.0)


# --------------------------------------------------------------------------- lazy Adagrad


def test_sparse_adagrad_rows_takes_a_table_that_is_not_contiguous():
    rng = np.random.default_rng(6)
    wide = real_valued(rng, (5, 6), np.float32)
    view, copy = wide.copy()[:, ::2], np.ascontiguousarray(wide[:, ::2])
    view_acc, copy_acc = np.full((5, 6), 0.1, np.float32)[:, ::2], np.full((5, 3), 0.1, np.float32)
    grads = real_valued(rng, (2, 3), np.float32)
    kernels.sparse_adagrad_rows_update_(view, view_acc, np.array([1, 3]), grads, 0.1, 0.0)
    kernels.sparse_adagrad_rows_update_(copy, copy_acc, np.array([1, 3]), grads, 0.1, 0.0)
    np.testing.assert_array_equal(view, copy)
    np.testing.assert_array_equal(view_acc, copy_acc)


def test_sparse_adagrad_rows_rejects_bad_rows_before_writing():
    table = np.ones((4, 2))
    accumulator = np.full_like(table, 0.1)
    for rows in ([1, 1], [2, 1], [0, 4], [-1, 0]):
        with pytest.raises(ValueError, match=r"^rows: must be unique, sorted ascending and inside \[0, 4\)"):
            kernels.sparse_adagrad_rows_update_(table, accumulator, np.array(rows), np.ones((2, 2)), 0.1, 0.0)
    np.testing.assert_array_equal(table, 1.0)
    np.testing.assert_array_equal(accumulator, 0.1)


# --------------------------------------------------------------------------- layouts and checks


def test_per_call_inputs_are_copied_when_not_contiguous():
    rng = np.random.default_rng(4)
    items = real_valued(rng, (30, 4), np.float64)
    users = real_valued(rng, (3, 8), np.float64)[:, ::2]
    assert not users.flags.c_contiguous
    np.testing.assert_allclose(kernels.score_items(items, users), twins.score_items(items, users))
    np.testing.assert_array_equal(kernels.top_k_items(items, users[0], 5)[1], twins.top_k_items(items, users[0], 5)[1])
    scores = real_valued(rng, (40, 2), np.float32)[:, 0]
    np.testing.assert_array_equal(kernels.top_k_scores(scores, 6)[1], twins.top_k_scores(scores, 6)[1])
    x = real_valued(rng, (12, 6), np.float64)[:, ::2]
    weights, biases = [real_valued(rng, (3, 2), np.float64)], [real_valued(rng, 2, np.float64)]
    np.testing.assert_allclose(kernels.mlp_scores(x, weights, biases), twins.mlp_scores(x, weights, biases))
    grads = real_valued(rng, (5, 4), np.float32)[:, ::2]
    rows, values = kernels.coalesce_rows(np.array([1, 0, 1, 2, 0]), grads, 3)
    np.testing.assert_allclose(values, twins.coalesce_rows(np.array([1, 0, 1, 2, 0]), grads, 3)[1])


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
        (lambda: kernels.sparse_adagrad_rows_update_(np.ones((3, 2)), np.ones((3, 2), np.float32), [0], np.ones((1, 2)), 0.1, 0.0), r"^accumulator: expected dtype float64"),
        (lambda: kernels.sparse_adagrad_rows_update_(np.ones((3, 2)), np.ones((3, 1)), [0], np.ones((1, 2)), 0.1, 0.0), r"^accumulator: expected shape \(3, 2\)"),
        (lambda: kernels.sparse_adagrad_rows_update_(np.ones(3), np.ones(3), [0], np.ones((1, 1)), 0.1, 0.0), r"^param: expected 2 dimension"),
        (lambda: kernels.sparse_adagrad_rows_update_(np.ones((3, 2)), np.ones((3, 2)), [0, 1], np.ones((1, 2)), 0.1, 0.0), r"^rows: expected one integer row id per row"),
        (lambda: kernels.sparse_adagrad_rows_update_(np.ones((3, 2)), np.ones((3, 2)), [0], np.ones((1, 3)), 0.1, 0.0), r"^row_grads: expected 2 columns"),
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


# --------------------------------------------------------------------------- text (the log readers' tokenizer)


def _chunk(lines, ending=b"\n") -> np.ndarray:
    return np.frombuffer(b"".join(line.encode() + ending for line in lines), dtype=np.uint8)


def _split(buf, delimiter, n_fields, max_rows, pos=0):
    starts = np.full((max_rows, n_fields), -1, dtype=np.int64)
    ends = np.full((max_rows, n_fields), -1, dtype=np.int64)
    rows, status, fields, next_pos = kernels.split_fields(buf, pos, delimiter, starts, ends)
    return starts[:rows], ends[:rows], rows, status, fields, next_pos


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(alphabet=st.sampled_from(list('ab1,"\t ')), max_size=5), min_size=3, max_size=3),
                min_size=1, max_size=6), st.sampled_from([",", "\t"]))
def test_split_fields_reads_what_the_csv_module_writes(rows, delimiter):
    """An independent referee: csv.writer's quoting, read back through the kernel's offsets."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    buf = np.frombuffer(out.getvalue().encode(), dtype=np.uint8)
    starts, ends, n, status, _, next_pos = _split(buf, ord(delimiter), 3, len(rows))
    assert (n, status, next_pos) == (len(rows), SPLIT_OK, buf.size)
    cells = [[bytes(buf[s:e]).decode().replace('""', '"') for s, e in zip(srow, erow)] for srow, erow in zip(starts, ends)]
    assert cells == rows


def test_split_fields_statuses_and_resuming():
    buf = _chunk(['1,"a,b",3', '4,,6', '"x""y",8,9'])
    starts, ends, rows, status, _, next_pos = _split(buf, ord(","), 3, 2)  # two rows per call
    assert (rows, status) == (2, SPLIT_OK)
    assert bytes(buf[starts[0, 1]:ends[0, 1]]) == b"a,b" and ends[1, 1] == starts[1, 1]  # empty field
    rest = _split(buf, ord(","), 3, 2, pos=next_pos)
    assert rest[2:4] == (1, SPLIT_OK) and rest[5] == buf.size
    assert bytes(buf[rest[0][0, 0]:rest[1][0, 0]]) == b'x""y'  # the caller undoes the doubled quote
    assert _split(_chunk(["1,2", "3"]), ord(","), 2, 2)[2:5] == (1, SPLIT_FIELD_COUNT, 1)
    assert _split(_chunk(['1,"ab']), ord(","), 2, 1)[2:5] == (0, SPLIT_UNTERMINATED_QUOTE, 1)
    assert _split(_chunk(['"a"b,1']), ord(","), 2, 1)[2:5] == (0, SPLIT_TEXT_AFTER_QUOTE, 0)
    crlf = _split(_chunk(["1,22"], b"\r\n"), ord(","), 2, 1)
    assert crlf[1][0, 1] - crlf[0][0, 1] == 2  # the "\r" is not part of the last field


def test_parse_int64_limits():
    cells = [str(2 ** 63 - 1), "-" + str(2 ** 63 - 1), "0000000000000000007", str(2 ** 63), "", "+", "1 ", "1_0"]
    for i, cell in enumerate(cells):
        buf = np.frombuffer(cell.encode() or b"", dtype=np.uint8)
        values, bad = kernels.parse_int64(buf, np.array([0]), np.array([len(cell)]))
        assert (bad == -1) == (i < 3), cell
        if i < 3:
            assert values[0] == int(cell)


COMPILED_SIGNATURES = """
import json
from numba.core.registry import CPUDispatcher
from pfd_ref import kernels
from pfd_ref.kernels import activation, adagrad, adam, embedding, mlp, scoring, text
modules = (activation, adagrad, adam, embedding, mlp, scoring, text)
def float_dtype(signature):  # of the first float argument, array or scalar; None for the tokenizer's
    return next((str(getattr(t, "dtype", t)) for t in signature if str(getattr(t, "dtype", t)) in ("float32", "float64")),
                None)
def compiled():
    return {f"{m.__name__.rsplit('.', 1)[1]}.{name}": sorted({float_dtype(signature) for signature in kernel.signatures}
                                                               - {None})
            for m in modules for name, kernel in vars(m).items() if isinstance(kernel, CPUDispatcher) and kernel.signatures}
before = compiled()
kernels.compile_all()
default = compiled()
kernels.compile_all(dtypes=("float32", "float64"))
print(json.dumps({"before": before, "default": default, "both": compiled()}))
"""
KERNEL_MODULE_NAMES = {"activation", "adagrad", "adam", "embedding", "mlp", "scoring", "text"}


def test_compile_all_compiles_every_kernel_module_for_float32_and_for_both_dtypes_when_asked(tmp_path):
    """In a fresh process with its own empty Numba cache (nothing compiled or cached yet, and
    no other process writing into that cache, which made the shared-cache version flaky):
    ``compile_all()`` compiles every kernel module, each compiled kernel but the tokenizer's
    (bytes and integers) for float32 only (a signature's dtype is that of its first float
    argument: a later scalar such as the LeakyReLU slope is a Python float, float64, in every
    signature); then ``compile_all(dtypes=("float32", "float64"))`` gives each a float32 and
    a float64 signature. ``NUMBA_OPT=0``: which signatures compile does not depend on LLVM's
    optimisation level, and the compile takes about half the time."""
    import json
    import os
    import subprocess
    import sys
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_OPT": "0"}
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", COMPILED_SIGNATURES], capture_output=True, text=True,
                            check=True, env=env)
    compiled = json.loads(result.stdout)
    assert compiled["before"] == {}
    for stage, dtypes in (("default", ["float32"]), ("both", ["float32", "float64"])):
        after = compiled[stage]
        assert {name.split(".")[0] for name in after} == KERNEL_MODULE_NAMES, stage
        assert all(found == dtypes for name, found in after.items() if not name.startswith("text.")), (stage, after)


@pytest.mark.parametrize("dtypes, expected", [(("float16",), "got 'float16'"), ((np.int64,), "got <class 'numpy.int64'>"),
                                              (("float32", "no such dtype"), "got 'no such dtype'"),
                                              ("float32", "the single string 'float32'"),
                                              ((None,), "got None"), (np.float32, "expected a sequence")])
def test_compile_all_refuses_a_dtype_other_than_float32_or_float64(dtypes, expected):
    with pytest.raises(ValueError, match=f"dtypes: .*{re.escape(expected)}"):
        kernels.compile_all(dtypes, uses=("serving",))


def test_compile_all_reads_an_iterator_of_uses_once(monkeypatch):
    """The checks read ``uses``; an iterator read by them compiled nothing, silently."""
    warmed = []
    monkeypatch.setattr(kernels.text, "warm_up", lambda: warmed.append("text"))
    for module in kernels.KERNEL_MODULES["serving"]:
        monkeypatch.setattr(module, "warm_up", lambda dtype, name=module.__name__: warmed.append(name))
    kernels.compile_all(iter(["float32"]), uses=iter(["readers", "serving"]))
    assert "text" in warmed and len(warmed) == 1 + len(kernels.KERNEL_MODULES["serving"])


def test_kernels_import_nothing_from_pfd_ref():
    """kernels/ is installed as pfd_ref.kernels but depends on nothing else in pfd_ref: every
    import in its files is relative, or of the standard library, NumPy or Numba (llvmlite is
    Numba's own LLVM binding: the prefetch hint of the candidates' loop)."""
    import ast
    from pathlib import Path
    allowed = {"__future__", "collections", "numbers", "threading", "concurrent", "glob", "importlib", "os", "subprocess",
               "sys", "tempfile", "warnings", "numpy", "numba", "llvmlite"}
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

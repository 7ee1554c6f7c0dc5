"""pfd_ref.layers: backward against float64 central differences, pooling layout edge cases,
dtype behaviour and input validation. Also checks the gradient-check helper itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import gradcheck
from gradcheck import numerical_gradient, relative_error
from pfd_ref import layers
from pfd_ref.sparse import RowSparseGrad
from pfd_ref.validation import POOLINGS

DTYPES = [np.float32, np.float64]
GRAD_TOLERANCE = 1e-6
seeds = st.integers(0, 2**32 - 1)


def csr_rows(rng: np.random.Generator, lengths, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(values, offsets)`` with the given row lengths and random ids in ``[0, num_rows)``."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return rng.integers(0, num_rows, offsets[-1]).astype(np.int64), offsets


def pooled_reference(table, values, offsets, pooling):
    """Row by row, the definition: sum (or mean) of the rows of ``table`` named in each CSR row."""
    out = np.zeros((len(offsets) - 1, table.shape[1]), dtype=np.float64)
    for i in range(len(offsets) - 1):
        ids = values[offsets[i]:offsets[i + 1]]
        if len(ids):
            out[i] = table[ids].sum(axis=0) / (len(ids) if pooling == "mean" else 1)
    return out


# --------------------------------------------------------------------------- the helper itself


def test_numerical_gradient_of_a_known_function_and_x_is_restored():
    x = np.array([[0.5, -1.25], [2.0, 3.0]])
    before = x.copy()
    numeric = numerical_gradient(lambda: np.sum(x**3), x)
    np.testing.assert_allclose(numeric, 3 * before**2, rtol=1e-8)
    np.testing.assert_array_equal(x, before)


def test_numerical_gradient_restores_x_when_f_raises():
    x = np.array([1.0, 2.0])

    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        numerical_gradient(failing, x)
    np.testing.assert_array_equal(x, [1.0, 2.0])


def test_numerical_gradient_rejects_float32():
    with pytest.raises(ValueError, match="x"):
        numerical_gradient(lambda: 0.0, np.zeros(2, np.float32))


def test_relative_error_is_norm_based_and_records_the_largest(monkeypatch):
    monkeypatch.setattr(gradcheck, "_largest", {"error": -1.0, "test": None})  # keep the run's record clean
    assert gradcheck.largest_error() is None
    assert relative_error(np.array([1.0, 0.0]), np.array([1.0, 1e-9])) == pytest.approx(1e-9)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([2.0, -4.0]), np.array([2.0, -3.0])) == pytest.approx(0.25)
    largest, test = gradcheck.largest_error()
    assert largest == pytest.approx(0.25) and test.endswith("test_layers.py::test_relative_error_is_norm_based_and_records_the_largest")
    with pytest.raises(ValueError, match="analytic"):
        relative_error(np.zeros(2), np.zeros(3))


# --------------------------------------------------------------------------- embedding


@settings(max_examples=20, deadline=None)
@given(num_rows=st.integers(1, 6), d=st.integers(1, 4), n=st.integers(0, 8), seed=seeds)
def test_embedding_backward_matches_finite_differences(num_rows, d, n, seed):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((num_rows, d))
    ids = rng.integers(0, num_rows, n)
    coefficients = rng.standard_normal((n, d))
    grad = layers.embedding_backward(coefficients, ids, num_rows)
    numeric = numerical_gradient(lambda: np.sum(coefficients * layers.embedding_forward(table, ids)), table)
    assert relative_error(grad.to_dense(), numeric) < GRAD_TOLERANCE
    np.testing.assert_array_equal(grad.rows, np.unique(ids))


def test_embedding_forward_gathers_rows_and_backward_sums_repeated_ids():
    table = np.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(layers.embedding_forward(table, [3, 0, 3]), [[6, 7], [0, 1], [6, 7]])
    grad = layers.embedding_backward(np.array([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]]), [3, 0, 3], 4)
    assert isinstance(grad, RowSparseGrad)
    np.testing.assert_array_equal(grad.rows, [0, 3])
    np.testing.assert_array_equal(grad.values, [[10, 20], [101, 202]])


# --------------------------------------------------------------------------- pooled embedding


def test_pooled_embedding_rejects_a_strided_table_instead_of_copying_it():
    table = np.arange(12.0).reshape(3, 4)
    with pytest.raises(ValueError, match=r"^table: must be C-contiguous"):
        layers.pooled_embedding_forward(table[:, ::2], [0, 2], [0, 2], "sum")
    np.testing.assert_array_equal(layers.pooled_embedding_forward(np.ascontiguousarray(table[:, ::2]), [0, 2], [0, 2], "sum"),
                                  [[8.0, 12.0]])


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(0, 4), min_size=0, max_size=6), num_rows=st.integers(1, 4),
       d=st.integers(1, 3), pooling=st.sampled_from(POOLINGS), seed=seeds)
def test_pooled_embedding_backward_matches_finite_differences(lengths, num_rows, d, pooling, seed):
    # few table rows and rows of up to 4 ids: repeated ids within a row and empty rows are common
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((num_rows, d))
    values, offsets = csr_rows(rng, lengths, num_rows)
    coefficients = rng.standard_normal((len(lengths), d))
    out = layers.pooled_embedding_forward(table, values, offsets, pooling)
    np.testing.assert_allclose(out, pooled_reference(table, values, offsets, pooling), rtol=1e-13, atol=1e-15)
    grad = layers.pooled_embedding_backward(coefficients, values, offsets, num_rows, pooling)
    numeric = numerical_gradient(
        lambda: np.sum(coefficients * layers.pooled_embedding_forward(table, values, offsets, pooling)), table)
    assert relative_error(grad.to_dense(), numeric) < GRAD_TOLERANCE
    np.testing.assert_array_equal(grad.rows, np.unique(values))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooled_embedding_with_empty_rows_at_start_middle_end_and_repeated_ids(pooling):
    rng = np.random.default_rng(0)
    table = rng.standard_normal((5, 3))
    # rows: [], [4, 4, 1], [], [], [2], [0, 0], []
    values = np.array([4, 4, 1, 2, 0, 0])
    offsets = np.array([0, 0, 3, 3, 3, 4, 6, 6])
    out = layers.pooled_embedding_forward(table, values, offsets, pooling)
    np.testing.assert_allclose(out, pooled_reference(table, values, offsets, pooling), rtol=1e-14)
    assert not out[[0, 2, 3, 6]].any()
    scale = 1 / 3 if pooling == "mean" else 1.0
    np.testing.assert_allclose(out[1], (2 * table[4] + table[1]) * scale, rtol=1e-14)

    d_out = rng.standard_normal((7, 3))
    grad = layers.pooled_embedding_backward(d_out, values, offsets, 5, pooling)
    np.testing.assert_array_equal(grad.rows, [0, 1, 2, 4])
    half = 0.5 if pooling == "mean" else 1.0
    expected = np.stack([2 * half * d_out[5], scale * d_out[1], d_out[4], 2 * scale * d_out[1]])
    np.testing.assert_allclose(grad.values, expected, rtol=1e-14)
    numeric = numerical_gradient(lambda: np.sum(d_out * layers.pooled_embedding_forward(table, values, offsets, pooling)), table)
    assert relative_error(grad.to_dense(), numeric) < GRAD_TOLERANCE


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("n", [0, 3])
def test_pooled_embedding_with_no_ids_at_all(pooling, n):
    table = np.ones((4, 2), np.float32)
    values, offsets = np.zeros(0, np.int64), np.zeros(n + 1, np.int64)
    out = layers.pooled_embedding_forward(table, values, offsets, pooling)
    assert out.shape == (n, 2) and out.dtype == np.float32 and not out.any()
    grad = layers.pooled_embedding_backward(np.ones((n, 2), np.float32), values, offsets, 4, pooling)
    assert grad.rows.size == 0 and grad.values.shape == (0, 2) and grad.dtype == np.float32


# --------------------------------------------------------------------------- linear, relu


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5), fan_in=st.integers(1, 4), fan_out=st.integers(1, 4), seed=seeds)
def test_linear_backward_matches_finite_differences(n, fan_in, fan_out, seed):
    rng = np.random.default_rng(seed)
    x, weight, bias = rng.standard_normal((n, fan_in)), rng.standard_normal((fan_in, fan_out)), rng.standard_normal(fan_out)
    d_y = rng.standard_normal((n, fan_out))
    d_x, d_weight, d_bias = layers.linear_backward(d_y, x, weight)
    np.testing.assert_allclose(layers.linear_forward(x, weight, bias), x @ weight + bias, rtol=1e-14)
    for analytic, variable in [(d_x, x), (d_weight, weight), (d_bias, bias)]:
        numeric = numerical_gradient(lambda: np.sum(d_y * layers.linear_forward(x, weight, bias)), variable)
        assert relative_error(analytic, numeric) < GRAD_TOLERANCE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_backward_of_one_output_gives_blas_bits(dtype):
    # one output: d_x is an outer product, broadcast instead of BLAS's GEMM; the same bits,
    # signed zeros included (BLAS returns +0.0 where the product is -0.0)
    rng = np.random.default_rng(0)
    d_y, weight = rng.standard_normal((300, 1)).astype(dtype), rng.standard_normal((7, 1)).astype(dtype)
    d_y[::5], d_y[1::5], weight[2], weight[3] = 0.0, -0.0, -0.0, 1e-30
    d_x = layers.linear_backward(d_y, np.ones((300, 7), dtype), weight)[0]
    assert d_x.dtype == dtype and np.signbit(d_y * weight.T).any()
    np.testing.assert_array_equal(d_x.view(np.uint8), (d_y @ weight.T).view(np.uint8))


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=seeds)
def test_relu_backward_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.01, 2.0, shape)  # away from the kink at 0
    x = magnitude * rng.choice([-1.0, 1.0], shape)
    d_y = rng.standard_normal(shape)
    numeric = numerical_gradient(lambda: np.sum(d_y * layers.relu_forward(x)), x)
    assert relative_error(layers.relu_backward(d_y, x), numeric) < GRAD_TOLERANCE


def test_relu_values_and_zero_derivative_at_zero():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(layers.relu_forward(x), [0.0, 0.0, 3.0])
    np.testing.assert_array_equal(layers.relu_backward(np.array([5.0, 5.0, 5.0]), x), [0.0, 0.0, 5.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1024, 64), (5, 33), (7,), ()])
def test_relu_forward_gives_the_bits_of_maximum_against_a_scalar_zero(dtype, shape):
    # relu_forward broadcasts a row of zeros (a faster NumPy loop); the bits must be those of
    # np.maximum(x, 0), signed zeros and NaNs (their signs and payloads) included
    bits = np.uint32 if dtype == np.float32 else np.uint64
    nans = np.array([0x7FC00001, 0xFFC00123] if dtype == np.float32 else [0x7FF8000000000001, 0xFFF8000000000123],
                    bits).view(dtype)
    specials = np.concatenate([np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-40, -1e-40, 1.5, -1.5], dtype),
                               nans])
    x = np.random.default_rng(0).choice(specials, size=shape).astype(dtype)
    assert layers.relu_forward(x).dtype == dtype
    assert layers.relu_forward(x).tobytes() == np.maximum(x, 0).tobytes()


# --------------------------------------------------------------------------- leaky relu


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), slope=st.sampled_from([layers.LEAKY_RELU_SLOPE, 0.2, 0.3]),
       seed=seeds)
def test_leaky_relu_backward_matches_finite_differences(shape, slope, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.01, 2.0, shape) * rng.choice([-1.0, 1.0], shape)  # away from the kink at 0
    d_y = rng.standard_normal(shape)
    numeric = numerical_gradient(lambda: np.sum(d_y * layers.leaky_relu_forward(x, slope)), x)
    assert relative_error(layers.leaky_relu_backward(d_y, x, slope), numeric) < GRAD_TOLERANCE


def test_leaky_relu_values_and_slope_at_zero():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(layers.leaky_relu_forward(x), [-0.02, 0.0, 3.0])
    np.testing.assert_array_equal(layers.leaky_relu_backward(np.array([5.0, 5.0, 5.0]), x), [0.05, 0.05, 5.0])
    assert layers.LEAKY_RELU_SLOPE == 0.01 and layers.negative_slope("leaky_relu") == 0.01
    assert layers.negative_slope("relu") == 0.0


# --------------------------------------------------------------------------- batch norm


def batch_norm_by_definition(z, gamma, beta, eps=layers.BATCH_NORM_EPS):
    """Column by column, the definition with the biased batch variance."""
    out = np.empty_like(z)
    for c in range(z.shape[1]):
        mean = sum(z[:, c]) / len(z)
        var = sum((z[:, c] - mean) ** 2) / len(z)
        out[:, c] = gamma[c] * (z[:, c] - mean) / np.sqrt(var + eps) + beta[c]
    return out


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 6), m=st.integers(1, 4), eps=st.sampled_from([layers.BATCH_NORM_EPS, 0.5]), seed=seeds)
def test_batch_norm_backward_matches_finite_differences(n, m, eps, seed):
    # two rows normalise to -1 and +1 whatever z is, up to eps: d_z is then of order eps / var
    # and central differences cannot resolve it relative to itself; eps = 0.5 tests n = 2
    assume(n > 2 or eps == 0.5)
    rng = np.random.default_rng(seed)
    z, gamma, beta = rng.standard_normal((n, m)), 1 + 0.3 * rng.standard_normal(m), rng.standard_normal(m)
    d_y = rng.standard_normal((n, m))
    y, cache = layers.batch_norm_forward(z, gamma, beta, eps)
    np.testing.assert_allclose(y, batch_norm_by_definition(z, gamma, beta, eps), rtol=1e-12, atol=1e-12)
    d_z, d_gamma, d_beta = layers.batch_norm_backward(d_y, cache)
    for analytic, variable in [(d_z, z), (d_gamma, gamma), (d_beta, beta)]:
        numeric = numerical_gradient(lambda: np.sum(d_y * layers.batch_norm_forward(z, gamma, beta, eps)[0]), variable)
        assert relative_error(analytic, numeric) < GRAD_TOLERANCE


def test_batch_norm_gradient_is_blind_to_a_shift_of_its_input():
    """Adding a constant to a column (a Linear bias before BN) changes nothing: the gradient
    wrt z sums to 0 over the rows (why a layer before batch norm has no bias)."""
    rng = np.random.default_rng(3)
    z, gamma, beta, d_y = rng.standard_normal((7, 3)), rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal((7, 3))
    y, cache = layers.batch_norm_forward(z, gamma, beta)
    np.testing.assert_allclose(layers.batch_norm_forward(z + [5.0, -2.0, 0.5], gamma, beta)[0], y, atol=1e-12)
    np.testing.assert_allclose(layers.batch_norm_backward(d_y, cache)[0].sum(axis=0), 0, atol=1e-13)


def test_batch_norm_running_average_is_torch_rule_with_unbiased_variance():
    z = np.array([[1.0, 2.0], [3.0, 2.0], [8.0, 2.0]])  # column 1 constant: variance 0
    _, cache = layers.batch_norm_forward(z, np.ones(2), np.zeros(2))
    np.testing.assert_allclose(cache.mean, [4.0, 2.0])
    np.testing.assert_allclose(cache.var, [26 / 3, 0.0])  # biased: (9 + 1 + 16) / 3
    mean, var = layers.batch_norm_running_average(np.array([1.0, 1.0]), np.array([2.0, 2.0]), cache)
    np.testing.assert_allclose(mean, [0.9 * 1 + 0.1 * 4, 0.9 * 1 + 0.1 * 2])
    np.testing.assert_allclose(var, [0.9 * 2 + 0.1 * 13.0, 0.9 * 2])  # unbiased: 26 / 2


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5), fan_in=st.integers(1, 4), m=st.integers(1, 4), with_bias=st.booleans(), seed=seeds)
def test_fold_batch_norm_is_the_evaluation_mode_layer(n, fan_in, m, with_bias, seed):
    rng = np.random.default_rng(seed)
    x, weight = rng.standard_normal((n, fan_in)), rng.standard_normal((fan_in, m))
    bias = rng.standard_normal(m) if with_bias else None
    gamma, beta, running_mean = rng.standard_normal(m), rng.standard_normal(m), rng.standard_normal(m)
    running_var = rng.uniform(0, 2, m)
    folded_weight, folded_bias = layers.fold_batch_norm(weight, bias, gamma, beta, running_mean, running_var)
    z = x @ weight + (0 if bias is None else bias)
    expected = (z - running_mean) / np.sqrt(running_var + layers.BATCH_NORM_EPS) * gamma + beta
    np.testing.assert_allclose(x @ folded_weight + folded_bias, expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- l2 normalisation


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), k=st.integers(1, 4), seed=seeds)
def test_l2_normalize_backward_matches_finite_differences_on_both_sides_of_the_clamp(n, k, seed):
    """eps = 1 puts rows of norm ~0.3 in the clamped region (u / eps) and rows of norm ~3 in
    the unclamped one (u / ||u||), each far enough from the boundary for the differences."""
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal((n, k))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    u = direction * rng.choice([0.3, 3.0], (n, 1))
    d_y = rng.standard_normal((n, k))
    for eps in (1.0, layers.L2_NORM_EPS):
        u_hat, norms = layers.l2_normalize_forward(u, eps)
        np.testing.assert_allclose(u_hat, u / np.maximum(np.linalg.norm(u, axis=1), eps)[:, None], rtol=1e-14)
        numeric = numerical_gradient(lambda: np.sum(d_y * layers.l2_normalize_forward(u, eps)[0]), u)
        assert relative_error(layers.l2_normalize_backward(d_y, u_hat, norms, eps), numeric) < GRAD_TOLERANCE


def test_l2_normalize_clamped_rows_are_divided_by_eps_and_zero_rows_stay_zero():
    u = np.array([[3.0, 4.0], [0.0, 0.0], [3e-13, 4e-13]])
    u_hat, norms = layers.l2_normalize_forward(u)
    np.testing.assert_allclose(u_hat, [[0.6, 0.8], [0, 0], [0.3, 0.4]], rtol=1e-14)
    np.testing.assert_allclose(norms, [5.0, 0.0, 5e-13], rtol=1e-14)
    d_u = layers.l2_normalize_backward(np.array([[1.0, 0.0], [1.0, 2.0], [1.0, 2.0]]), u_hat, norms)
    np.testing.assert_allclose(d_u[1:], [[1e12, 2e12], [1e12, 2e12]], rtol=1e-14)  # d_y / eps
    np.testing.assert_allclose(d_u[0], [0.64 / 5, -0.48 / 5], rtol=1e-14)  # (e1 - u_hat u_hat_1) / ||u||
    assert layers.L2_NORM_EPS == 1e-12


# --------------------------------------------------------------------------- mlp


def random_mlp(rng, sizes):
    weights = [rng.standard_normal((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.standard_normal(b) for b in sizes[1:]]
    return weights, biases


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=2, max_size=4), n=st.integers(1, 5), seed=seeds)
def test_mlp_backward_matches_finite_differences(sizes, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, sizes[0]))
    weights, biases = random_mlp(rng, sizes)
    d_out = rng.standard_normal((n, sizes[-1]))
    out, cache = layers.mlp_forward(x, weights, biases)
    d_x, d_weights, d_biases, d_norms = layers.mlp_backward(d_out, cache)
    assert out.shape == (n, sizes[-1]) and len(d_weights) == len(d_biases) == len(sizes) - 1 and d_norms == []

    def objective():
        return np.sum(d_out * layers.mlp_forward(x, weights, biases)[0])

    for analytic, variable in [(d_x, x), *zip(d_weights, weights), *zip(d_biases, biases)]:
        assert analytic.shape == variable.shape
        assert relative_error(analytic, numerical_gradient(objective, variable)) < GRAD_TOLERANCE


def random_norms(rng, sizes):
    return [layers.BatchNormParams(1 + 0.3 * rng.standard_normal(b), rng.standard_normal(b), rng.standard_normal(b),
                                   rng.uniform(0.5, 2.0, b)) for b in sizes[1:-1]]


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(2, 4), min_size=2, max_size=4), out=st.integers(1, 3), n=st.integers(6, 10),
       activation=st.sampled_from(layers.ACTIVATIONS), seed=seeds)
def test_mlp_with_batch_norm_backward_matches_finite_differences(sizes, out, n, activation, seed):
    # Batch norm makes the output blind to the scale of each column of the weight before it,
    # so that column's gradient is orthogonal to it; with a single input (width 1) it is of
    # order eps and central differences cannot resolve it: inputs of batch norm have width >= 2.
    sizes = sizes + [out]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, sizes[0]))
    weights, biases = random_mlp(rng, sizes)
    biases[:-1] = [None] * (len(sizes) - 2)
    norms = random_norms(rng, sizes)
    d_out = rng.standard_normal((n, sizes[-1]))
    out, cache = layers.mlp_forward(x, weights, biases, activation, norms, training=True)
    d_x, d_weights, d_biases, d_norms = layers.mlp_backward(d_out, cache)
    assert d_biases[:-1] == [None] * (len(sizes) - 2) and len(d_norms) == len(sizes) - 2

    def objective():
        return np.sum(d_out * layers.mlp_forward(x, weights, biases, activation, norms, training=True)[0])

    pairs = [(d_x, x), *zip(d_weights, weights), (d_biases[-1], biases[-1])]
    pairs += [(d, p) for d_norm, norm in zip(d_norms, norms) for d, p in zip(d_norm, norm[:2])]
    scale = max(np.abs(analytic).max() for analytic, _ in pairs)  # a unit switched off for every row has gradient 0
    for analytic, variable in pairs:
        assert analytic.shape == variable.shape
        assert relative_error(analytic, numerical_gradient(objective, variable), scale) < GRAD_TOLERANCE


def test_mlp_batch_norm_training_uses_the_batch_and_evaluation_the_running_averages():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3))
    weights, biases = random_mlp(rng, [3, 4, 2])
    biases[0] = None
    norms = random_norms(rng, [3, 4, 2])
    slope = layers.LEAKY_RELU_SLOPE
    z = x @ weights[0]
    train_hidden = layers.leaky_relu_forward(batch_norm_by_definition(z, norms[0].gamma, norms[0].beta), slope)
    eval_hidden = layers.leaky_relu_forward(
        (z - norms[0].running_mean) / np.sqrt(norms[0].running_var + layers.BATCH_NORM_EPS) * norms[0].gamma + norms[0].beta)
    trained, cache = layers.mlp_forward(x, weights, biases, "leaky_relu", norms, training=True)
    evaluated, eval_cache = layers.mlp_forward(x, weights, biases, "leaky_relu", norms)
    np.testing.assert_allclose(trained, train_hidden @ weights[1] + biases[1], rtol=1e-12)
    np.testing.assert_allclose(evaluated, eval_hidden @ weights[1] + biases[1], rtol=1e-12)
    np.testing.assert_allclose(cache.norm_caches[0].mean, z.mean(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="^cache: backward needs a forward with training=True"):
        layers.mlp_backward(np.ones((6, 2)), eval_cache)


def test_mlp_forward_is_linear_relu_chain_with_linear_output():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3))
    weights, biases = random_mlp(rng, [3, 4, 5, 2])
    hidden = layers.relu_forward(layers.linear_forward(x, weights[0], biases[0]))
    hidden = layers.relu_forward(layers.linear_forward(hidden, weights[1], biases[1]))
    expected = layers.linear_forward(hidden, weights[2], biases[2])
    out, _ = layers.mlp_forward(x, weights, biases)
    np.testing.assert_array_equal(out, expected)
    assert (out < 0).any()  # the output layer has no ReLU
    single, _ = layers.mlp_forward(x, weights[:1], biases[:1])
    np.testing.assert_array_equal(single, layers.linear_forward(x, weights[0], biases[0]))


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_mlp_backward_reads_the_derivative_from_the_hidden_outputs_with_the_bits_of_the_pre_activations(activation):
    # mlp_forward overwrites each pre-activation a_j with act(a_j) and mlp_backward reads act'
    # from h_{j+1} = act(a_j): the gradients must be, bit for bit, those of the recursion that
    # keeps a_j, on pre-activations with exact zeros (-0.0 too), negatives and ties
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 3))
    weights, biases = random_mlp(rng, [3, 4, 5, 1])
    weights[0][:, 0] = 0.0  # a_0[:, 0] = b_0[0]: set to -0.0, then +0.0 on every row
    biases[0][0], biases[0][1] = -0.0, 0.0
    weights[0][:, 1] = 0.0
    slope = 0.0 if activation == "relu" else layers.LEAKY_RELU_SLOPE
    act = layers.relu_forward if activation == "relu" else layers.leaky_relu_forward
    backward = layers.relu_backward if activation == "relu" else (lambda d, a: layers.leaky_relu_backward(d, a, slope))
    pre, hidden, h = [], [x], x
    for j, (w, b) in enumerate(zip(weights, biases)):
        a = layers.linear_forward(h, w, b)
        pre.append(a)
        h = a if j == len(weights) - 1 else act(a)
        hidden.append(h)
    assert (pre[0][:, 0] == 0).all() and (pre[0] < 0).any()
    d_out = rng.standard_normal((16, 1))
    d_a, expected = d_out, {}
    for j in reversed(range(len(weights))):
        d_h, expected[f"W{j}"], expected[f"b{j}"] = layers.linear_backward(d_a, hidden[j], weights[j])
        if j > 0:
            d_a = backward(d_h, pre[j - 1])
    out, cache = layers.mlp_forward(x, weights, biases, activation)
    assert out.tobytes() == h.tobytes()
    assert all(cache.inputs[j].tobytes() == hidden[j].tobytes() for j in range(len(weights)))
    d_x, d_weights, d_biases, _ = layers.mlp_backward(d_out, cache)
    assert d_x.tobytes() == d_h.tobytes()
    for j in range(len(weights)):
        assert d_weights[j].tobytes() == expected[f"W{j}"].tobytes()
        assert d_biases[j].tobytes() == expected[f"b{j}"].tobytes()


@pytest.mark.parametrize("forward", [layers.relu_forward, layers.leaky_relu_forward])
def test_activation_forward_in_place_gives_the_bits_of_a_new_array(forward):
    x = np.random.default_rng(5).standard_normal((9, 7)).astype(np.float32)
    x[0, :3] = [0.0, -0.0, np.nan]
    expected = forward(x)
    assert forward(x, out=x) is x
    assert x.tobytes() == expected.tobytes()


# --------------------------------------------------------------------------- inner product


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 6), k=st.integers(1, 5), scale=st.sampled_from([1.0, 5.0, 0.3]), with_bias=st.booleans(),
       seed=seeds)
@example(n=4, k=5, scale=1.0, with_bias=False, seed=894482437)  # row 0's products cancel to 2e-5 of their sum
def test_inner_product_backward_matches_finite_differences(n, k, scale, with_bias, seed):
    rng = np.random.default_rng(seed)
    u, v, d_logits = rng.standard_normal((n, k)), rng.standard_normal((n, k)), rng.standard_normal(n)
    bias = rng.standard_normal(1) if with_bias else None
    expected = scale * np.sum(u * v, axis=1) + (bias[0] if with_bias else 0.0)
    # Two summation orders of k products differ by up to k ulps of the sum of their magnitudes,
    # which is large relative to the result where the products nearly cancel: the bound is
    # on that sum (a relative bound alone failed on the example above, and on ~0.6% of runs).
    magnitude = scale * np.sum(np.abs(u * v), axis=1) + (abs(bias[0]) if with_bias else 0.0)
    forward = layers.inner_product_forward(u, v, scale, bias)
    assert np.all(np.abs(forward - expected) <= 4 * k * np.finfo(np.float64).eps * magnitude)
    d_u, d_v, d_bias = layers.inner_product_backward(d_logits, u, v, scale, bias)
    assert (d_bias is None) == (not with_bias)
    for analytic, variable in [(d_u, u), (d_v, v)] + ([(d_bias, bias)] if with_bias else []):
        numeric = numerical_gradient(lambda: d_logits @ layers.inner_product_forward(u, v, scale, bias), variable)
        assert relative_error(analytic, numeric) < GRAD_TOLERANCE


def test_inner_product_with_scale_one_is_the_plain_inner_product_bit_for_bit():
    rng = np.random.default_rng(3)
    u, v, d_logits = rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    assert np.array_equal(layers.inner_product_forward(u, v), np.einsum("ik,ik->i", u, v))
    d_u, d_v, _ = layers.inner_product_backward(d_logits, u, v)
    assert np.array_equal(d_u, d_logits[:, None] * v) and np.array_equal(d_v, d_logits[:, None] * u)


# --------------------------------------------------------------------------- dtypes


def every_layer_output(dtype) -> dict[str, np.ndarray]:
    """Every array each public layer function returns, for inputs of ``dtype`` (one seed)."""
    rng = np.random.default_rng(7)

    def draw(*shape):
        return rng.standard_normal(shape).astype(dtype)

    table, ids = draw(5, 3), np.array([4, 0, 4, 2])
    values, offsets = np.array([1, 1, 3, 0]), np.array([0, 3, 3, 4, 4])
    x, weight, bias, d_y = draw(4, 3), draw(3, 2), draw(2), draw(4, 2)
    weights, biases = [draw(3, 4), draw(4, 2)], [draw(4), draw(2)]
    out, cache = layers.mlp_forward(x, weights, biases)
    d_x, d_ws, d_bs, _ = layers.mlp_backward(d_y, cache)
    u, v, d_logits = draw(4, 3), draw(4, 3), draw(4)
    gamma, beta, running_mean, running_var = draw(2), draw(2), draw(2), np.abs(draw(2))
    bn_out, bn_cache = layers.batch_norm_forward(d_y, gamma, beta)
    norms = [layers.BatchNormParams(draw(4), draw(4), draw(4), np.abs(draw(4)))]
    bn_mlp_out, bn_mlp_cache = layers.mlp_forward(x, weights, [None, biases[1]], "leaky_relu", norms, training=True)
    outputs = {
        "embedding_forward": layers.embedding_forward(table, ids),
        "embedding_backward": layers.embedding_backward(draw(4, 3), ids, 5).to_dense(),
        "linear_forward": layers.linear_forward(x, weight, bias),
        "relu_forward": layers.relu_forward(x),
        "relu_backward": layers.relu_backward(draw(4, 3), x),
        "mlp_forward": out, "mlp_backward.d_x": d_x,
        "inner_product_forward": layers.inner_product_forward(u, v),
        "leaky_relu_forward": layers.leaky_relu_forward(x), "leaky_relu_backward": layers.leaky_relu_backward(draw(4, 3), x),
        "batch_norm_forward": bn_out, "mlp_forward.batch_norm": bn_mlp_out,
        "mlp_forward.batch_norm.eval": layers.mlp_forward(x, weights, [None, biases[1]], "leaky_relu", norms)[0],
        "l2_normalize_forward": layers.l2_normalize_forward(u)[0], "l2_normalize_backward": layers.l2_normalize_backward(v, *layers.l2_normalize_forward(u)),
    }
    outputs.update(zip(["batch_norm_backward.d_z", "batch_norm_backward.d_gamma", "batch_norm_backward.d_beta"],
                       layers.batch_norm_backward(draw(4, 2), bn_cache)))
    outputs.update(zip(["running_average.mean", "running_average.var"],
                       layers.batch_norm_running_average(running_mean, running_var, bn_cache)))
    outputs.update(zip(["fold.weight", "fold.bias"], layers.fold_batch_norm(weight, bias, gamma, beta, running_mean, running_var)))
    d_x_bn, d_ws_bn, _, d_norms_bn = layers.mlp_backward(draw(4, 2), bn_mlp_cache)
    outputs.update({"mlp_backward.batch_norm.d_x": d_x_bn, "mlp_backward.batch_norm.d_weight0": d_ws_bn[0],
                    "mlp_backward.batch_norm.d_gamma0": d_norms_bn[0][0], "mlp_backward.batch_norm.d_beta0": d_norms_bn[0][1]})
    for pooling in POOLINGS:
        outputs[f"pooled_forward.{pooling}"] = layers.pooled_embedding_forward(table, values, offsets, pooling)
        grad = layers.pooled_embedding_backward(draw(4, 3), values, offsets, 5, pooling)
        outputs[f"pooled_backward.{pooling}"] = grad.to_dense()
    outputs.update(zip(["linear_backward.d_x", "linear_backward.d_weight", "linear_backward.d_bias"],
                       layers.linear_backward(d_y, x, weight)))
    outputs.update({f"mlp_backward.d_weight{j}": g for j, g in enumerate(d_ws)})
    outputs.update({f"mlp_backward.d_bias{j}": g for j, g in enumerate(d_bs)})
    outputs.update(zip(["inner_product_backward.d_u", "inner_product_backward.d_v", "inner_product_backward.d_bias"],
                       layers.inner_product_backward(d_logits, u, v, 5.0, draw(1))))
    return outputs


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_layer_function_returns_the_dtype_it_was_given(dtype):
    for name, array in every_layer_output(dtype).items():
        assert array.dtype == dtype, name


def test_float32_and_float64_paths_agree():
    single, double = every_layer_output(np.float32), every_layer_output(np.float64)
    for name in double:
        np.testing.assert_allclose(single[name], double[name], rtol=2e-5, atol=2e-6, err_msg=name)

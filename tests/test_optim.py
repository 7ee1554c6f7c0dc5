"""Tests of pfd_ref.optim: hand-computed steps, torch's arithmetic order restated, lazy vs
dense row-sparse updates, L2, the learning-rate warm-up, dtypes, errors. The comparison with
torch itself is tests/test_optim_torch.py."""

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref import optim
from pfd_ref.optim import SGD, Adagrad, Adam, warmup_lr
from pfd_ref.sparse import RowSparseGrad


def _sparse(rows, values, num_rows, dtype=np.float64):
    return RowSparseGrad(np.array(rows, np.int64), np.array(values, dtype), num_rows)


# ---------------------------------------------------------------- SGD

def test_sgd_two_steps_by_hand():
    w = np.array([1.0, -2.0])
    opt = SGD(lr=0.1)
    opt.step({"w": w}, {"w": np.array([0.5, -1.0])})
    np.testing.assert_allclose(w, [1.0 - 0.05, -2.0 + 0.1], rtol=1e-15)
    opt.step({"w": w}, {"w": np.array([0.25, 0.5])})
    np.testing.assert_allclose(w, [0.95 - 0.025, -1.9 - 0.05], rtol=1e-15)


def test_sgd_sparse_rows_with_l2_by_hand():
    table = np.array([[1.0], [2.0], [3.0]])
    SGD(lr=0.1, l2_embeddings=0.5).step({"e": table}, {"e": _sparse([0, 2], [[1.0], [-1.0]], 3)})
    # row 0: 1 - 0.1 (1 + 0.5 * 1);  row 1 untouched;  row 2: 3 - 0.1 (-1 + 0.5 * 3)
    np.testing.assert_allclose(table, [[0.85], [2.0], [2.95]], rtol=1e-15)
    assert table[1, 0] == 2.0


def test_sgd_l2_is_not_applied_to_dense_parameters():
    w, w_plain = np.array([1.0, 2.0]), np.array([1.0, 2.0])
    SGD(lr=0.1, l2_embeddings=0.5).step({"w": w}, {"w": np.array([1.0, 1.0])})
    SGD(lr=0.1).step({"w": w_plain}, {"w": np.array([1.0, 1.0])})
    np.testing.assert_array_equal(w, w_plain)


# ---------------------------------------------------------------- Adam, hand-computed

def test_adam_two_steps_by_hand():
    """lr 0.1, betas (0.9, 0.999), eps 1e-8; the numbers of docs/optim.md."""
    w = np.array([1.0, -1.0])
    opt = Adam(lr=0.1)
    opt.step({"w": w}, {"w": np.array([0.5, -2.0])})
    # m1 = 0.1 g1, v1 = 0.001 g1^2, bias corrections 0.1 and 0.001 give m_hat = g1, sqrt(v_hat) = |g1|
    m1, v1 = np.array([0.05, -0.2]), np.array([0.00025, 0.004])
    w1 = np.array([1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -1.0 + 0.1 * 2.0 / (2.0 + 1e-8)])
    np.testing.assert_allclose(opt.state["w"]["m"], m1, rtol=1e-14)
    np.testing.assert_allclose(opt.state["w"]["v"], v1, rtol=1e-14)
    np.testing.assert_allclose(w, w1, rtol=1e-14)
    opt.step({"w": w}, {"w": np.array([0.1, 1.0])})
    # m2 = 0.9 m1 + 0.1 g2;  v2 = 0.999 v1 + 0.001 g2^2;  1 - 0.9^2 = 0.19;  1 - 0.999^2 = 0.001999
    m2 = np.array([0.045 + 0.01, -0.18 + 0.1])
    v2 = np.array([0.00024975 + 0.00001, 0.003996 + 0.001])
    w2 = w1 - 0.1 / 0.19 * m2 / (np.sqrt(v2) / np.sqrt(0.001999) + 1e-8)
    assert opt.state["w"]["step"] == 2
    np.testing.assert_allclose(opt.state["w"]["m"], [0.055, -0.08], rtol=1e-14)
    np.testing.assert_allclose(opt.state["w"]["v"], [0.00025975, 0.004996], rtol=1e-14)
    np.testing.assert_allclose(w, w2, rtol=1e-14)
    np.testing.assert_allclose(w, [0.8196959, -0.8733663], atol=1e-7)


def _textbook_adam(w, grads, lr, beta1, beta2, eps):
    """Kingma & Ba's Algorithm 1 written independently of pfd_ref.optim."""
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w, m, v


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), beta1=st.sampled_from([0.0, 0.3, 0.5, 0.9]),
       beta2=st.sampled_from([0.0, 0.9, 0.999]), lr=st.sampled_from([1e-3, 0.1]))
def test_adam_matches_textbook_formula(seed, beta1, beta2, lr):
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(4)]
    w = w0.copy()
    opt = Adam(lr, beta1=beta1, beta2=beta2, eps=1e-8)
    for g in grads:
        opt.step({"w": w}, {"w": g})
    w_ref, m_ref, v_ref = _textbook_adam(w0, grads, lr, beta1, beta2, 1e-8)
    np.testing.assert_allclose(w, w_ref, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(opt.state["w"]["m"], m_ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(opt.state["w"]["v"], v_ref, rtol=1e-10, atol=1e-14)


def test_adam_follows_the_documented_arithmetic_order_bitwise():
    """The operation order of docs/optim.md (torch.optim.Adam's), checked to the last bit."""
    rng = np.random.default_rng(9)
    lr, beta1, beta2, eps = 0.01, 0.8, 0.99, 1e-6
    w = rng.normal(size=50)
    m, v, w_ref = np.zeros(50), np.zeros(50), w.copy()
    opt = Adam(lr, beta1=beta1, beta2=beta2, eps=eps)
    for t in (1, 2, 3):
        g = rng.normal(size=50) * 10.0 ** rng.integers(-6, 3, size=50)
        opt.step({"w": w}, {"w": g})
        m = m + (1 - beta1) * (g - m)
        v = v * beta2 + (1 - beta2) * g * g
        denom = np.sqrt(v) / (1 - beta2**t) ** 0.5 + eps
        w_ref = w_ref - (lr / (1 - beta1**t)) * m / denom
    np.testing.assert_array_equal(opt.state["w"]["m"], m)
    np.testing.assert_array_equal(opt.state["w"]["v"], v)
    np.testing.assert_array_equal(w, w_ref)


def test_adam_step_counts_are_per_parameter():
    params = {"a": np.zeros(2), "b": np.zeros(2), "c": np.ones(2)}
    opt = Adam(0.1)
    opt.step(params, {"a": np.ones(2)})
    opt.step(params, {"a": np.ones(2), "b": np.ones(2)})
    assert opt.state["a"]["step"] == 2 and opt.state["b"]["step"] == 1
    assert "c" not in opt.state
    np.testing.assert_array_equal(params["c"], [1.0, 1.0])
    # b's first update is a first Adam step: it moves by lr * g / (|g| + eps)
    np.testing.assert_allclose(params["b"], -0.1 / (1.0 + 1e-8), rtol=1e-14)


# ---------------------------------------------------------------- Adam, row-sparse

V, D = 6, 2


def _two_sparse_steps(mode):
    """Step 1 touches rows 1 and 3, step 2 rows 3 and 4. Returns (table, m, v) before and after each step."""
    rng = np.random.default_rng(7)
    table = rng.normal(size=(V, D))
    opt = Adam(0.1, sparse=mode)
    snapshots = [(table.copy(), None, None)]
    for rows in ([1, 3], [3, 4]):
        opt.step({"e": table}, {"e": _sparse(rows, rng.normal(size=(2, D)), V)})
        snapshots.append((table.copy(), opt.state["e"]["m"].copy(), opt.state["e"]["v"].copy()))
    return snapshots


def test_lazy_adam_touches_only_the_rows_in_the_batch():
    (p0, _, _), (p1, m1, v1), (p2, m2, v2) = _two_sparse_steps("lazy")
    for never in (0, 2, 5):
        assert np.array_equal(p2[never], p0[never])
        assert not m2[never].any() and not v2[never].any()
    # row 1 had momentum after step 1 but is absent from step 2: bit-identical
    assert np.array_equal(p2[1], p1[1]) and np.array_equal(m2[1], m1[1]) and np.array_equal(v2[1], v1[1])
    assert not np.array_equal(p2[3], p1[3]) and not np.array_equal(p2[4], p1[4])


def test_lazy_adam_bias_correction_uses_the_table_step_count():
    """Row 4 gets its first gradient at the table's step 2: bias corrections 1 - 0.9^2 and 1 - 0.999^2."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(V, D))
    g1, g2 = rng.normal(size=(1, D)), rng.normal(size=(1, D))
    row4 = table[4].copy()
    opt = Adam(0.1)
    opt.step({"e": table}, {"e": _sparse([0], g1, V)})
    opt.step({"e": table}, {"e": _sparse([4], g2, V)})
    m, v = 0.1 * g2[0], 0.001 * g2[0] ** 2
    expected = row4 - 0.1 * np.sqrt(0.001999) / 0.19 * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(table[4], expected, rtol=1e-14)
    assert opt.state["e"]["step"] == 2


def test_dense_mode_moves_rows_that_once_had_momentum():
    (p0, _, _), (p1, m1, _), (p2, m2, _) = _two_sparse_steps("dense")
    # row 1 is absent from step 2 but its m decays and the row keeps moving
    assert not np.array_equal(p2[1], p1[1])
    np.testing.assert_allclose(m2[1], 0.9 * m1[1], rtol=1e-15)
    # rows that never had a gradient have m = 0 and do not move
    for never in (0, 2, 5):
        assert np.array_equal(p2[never], p0[never])


def test_dense_mode_equals_adam_on_the_densified_gradient():
    rng = np.random.default_rng(3)
    table = rng.normal(size=(V, D))
    dense_table = table.copy()
    sparse_opt, dense_opt = Adam(0.05, sparse="dense"), Adam(0.05)
    for rows in ([0, 5], [2], [0, 1, 2]):
        grad = _sparse(rows, rng.normal(size=(len(rows), D)), V)
        sparse_opt.step({"e": table}, {"e": grad})
        dense_opt.step({"e": dense_table}, {"e": grad.to_dense()})
    np.testing.assert_array_equal(table, dense_table)


def test_lazy_and_dense_differ_only_by_eps_placement_while_every_row_is_touched():
    """With every row in every batch the two modes see the same gradients; lazy adds eps to
    the uncorrected root (SparseAdam), dense to the corrected one (Adam). With eps = 0 they
    agree to rounding; with the default eps they differ by about eps / sqrt(v_hat)."""
    rng = np.random.default_rng(4)
    grads = [_sparse(range(V), rng.normal(size=(V, D)), V) for _ in range(3)]
    start = rng.normal(size=(V, D))
    tables = {}
    for eps in (1e-300, 1e-8):
        for mode in ("lazy", "dense"):
            table, opt = start.copy(), Adam(0.05, eps=eps, sparse=mode)
            for grad in grads:
                opt.step({"e": table}, {"e": grad})
            tables[eps, mode] = table
    np.testing.assert_allclose(tables[1e-300, "lazy"], tables[1e-300, "dense"], rtol=1e-13)
    assert not np.array_equal(tables[1e-8, "lazy"], tables[1e-8, "dense"])
    np.testing.assert_allclose(tables[1e-8, "lazy"], tables[1e-8, "dense"], rtol=0, atol=1e-5)  # 3 steps of lr 0.05


def test_lazy_adam_follows_sparse_adams_arithmetic_order_bitwise():
    """The order of torch/optim/_functional.py:sparse_adam, operation by operation."""
    rng = np.random.default_rng(5)
    table = rng.normal(size=(V, D))
    m, v, expected = np.zeros((V, D)), np.zeros((V, D)), table.copy()
    opt = Adam(0.03, beta1=0.8, beta2=0.99, eps=1e-6)
    for t, rows in enumerate(([0, 3], [3, 4], [1]), start=1):
        values = rng.normal(size=(len(rows), D)) * 10.0 ** rng.integers(-4, 2, size=(len(rows), 1))
        opt.step({"e": table}, {"e": _sparse(rows, values, V)})
        old_m, old_v = m[rows], v[rows]
        m_update = (values - old_m) * (1 - 0.8)
        v_update = (values**2 - old_v) * (1 - 0.99)
        m[rows], v[rows] = old_m + m_update, old_v + v_update
        step_size = 0.03 * math.sqrt(1 - 0.99**t) / (1 - 0.8**t)
        expected[rows] = expected[rows] + (-step_size * ((m_update + old_m) / (np.sqrt(v_update + old_v) + 1e-6)))
    np.testing.assert_array_equal(table, expected)
    np.testing.assert_array_equal(opt.state["e"]["m"], m)
    np.testing.assert_array_equal(opt.state["e"]["v"], v)


def test_empty_sparse_gradient_advances_the_step_count_only():
    table = np.ones((V, D))
    opt = Adam(0.1)
    opt.step({"e": table}, {"e": RowSparseGrad(np.zeros(0, np.int64), np.zeros((0, D)), V)})
    assert opt.state["e"]["step"] == 1
    np.testing.assert_array_equal(table, 1.0)


@pytest.mark.parametrize("optimizer", [Adam, Adagrad])
@pytest.mark.parametrize("mode", ["lazy", "dense"])
def test_l2_is_added_to_touched_rows_only(optimizer, mode):
    rng = np.random.default_rng(11)
    table = rng.normal(size=(V, D))
    explicit = table.copy()
    rows, values = np.array([1, 4]), rng.normal(size=(2, D))
    optimizer(0.1, sparse=mode, l2_embeddings=0.3).step({"e": table}, {"e": _sparse(rows, values, V)})
    optimizer(0.1, sparse=mode).step({"e": explicit}, {"e": _sparse(rows, values + 0.3 * explicit[rows], V)})
    np.testing.assert_array_equal(table, explicit)


@pytest.mark.parametrize("optimizer", [Adam, Adagrad])
def test_l2_is_not_applied_to_dense_parameters(optimizer):
    w, w_plain = np.array([1.0, 2.0]), np.array([1.0, 2.0])
    for _ in range(2):
        optimizer(0.1, l2_embeddings=0.5).step({"w": w}, {"w": np.array([0.3, -0.2])})
        optimizer(0.1).step({"w": w_plain}, {"w": np.array([0.3, -0.2])})
    np.testing.assert_array_equal(w, w_plain)


# ---------------------------------------------------------------- dtypes, in place

@pytest.mark.parametrize("make_opt", [lambda: SGD(0.1, l2_embeddings=0.1),
                                      lambda: Adam(0.1, l2_embeddings=0.1, sparse="lazy"),
                                      lambda: Adam(0.1, l2_embeddings=0.1, sparse="dense"),
                                      lambda: Adagrad(0.1, l2_embeddings=0.1, sparse="lazy"),
                                      lambda: Adagrad(0.1, l2_embeddings=0.1, sparse="dense", lr_warmup_steps=3)])
def test_float32_stays_float32_and_updates_in_place(make_opt):
    rng = np.random.default_rng(2)
    params = {"w": rng.normal(size=(3, 2)).astype(np.float32), "e": rng.normal(size=(V, D)).astype(np.float32)}
    originals = dict(params)
    grads = {"w": rng.normal(size=(3, 2)).astype(np.float32),
             "e": _sparse([0, 3], rng.normal(size=(2, D)), V, dtype=np.float32)}
    opt = make_opt()
    before = {k: v.copy() for k, v in params.items()}
    for _ in range(2):
        opt.step(params, grads)
    for name in params:
        assert params[name] is originals[name]
        assert params[name].dtype == np.float32
        assert not np.array_equal(params[name], before[name])
    for state in getattr(opt, "state", {}).values():
        assert all(array.dtype == np.float32 for key, array in state.items() if key != "step")


def test_float32_adam_stays_close_to_float64():
    rng = np.random.default_rng(5)
    w64 = rng.normal(size=10)
    w32 = w64.astype(np.float32)
    opt64, opt32 = Adam(0.01), Adam(0.01)
    for _ in range(5):
        g = rng.normal(size=10)
        opt64.step({"w": w64}, {"w": g})
        opt32.step({"w": w32}, {"w": g.astype(np.float32)})
    np.testing.assert_allclose(w32, w64, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("make_opt", [lambda: SGD(0.1), lambda: Adam(0.1), lambda: Adagrad(0.1)])
@pytest.mark.parametrize("grads, message", [
    ({"missing": np.zeros(2)}, r"^grads\['missing'\]"),
    ({"w": np.zeros(3)}, r"^grads\['w'\]: expected shape"),
    ({"w": np.zeros(2, np.float32)}, r"^grads\['w'\]: expected dtype"),
    ({"w": np.array([np.nan, 0.0])}, r"^grads\['w'\]: contains NaN"),
    ({"e": _sparse([0], [[1.0, 1.0, 1.0]], V)}, r"^grads\['e'\]: row-sparse gradient of a table of shape"),
    ({"e": _sparse([0], [[1.0, 1.0]], V + 1)}, r"^grads\['e'\]: row-sparse gradient of a table of shape"),
    ({"e": _sparse([3, 1], np.ones((2, D)), V)}, r"^grads\['e'\]\.rows: must be unique, sorted"),
    ({"e": _sparse([1, 1], np.ones((2, D)), V)}, r"^grads\['e'\]\.rows: must be unique, sorted"),
    ({"e": RowSparseGrad(np.array([V]), np.ones((1, D)), V)}, r"^grads\['e'\]\.rows: must be unique, sorted"),
    ({"e": _sparse([0], np.ones((1, D)), V, dtype=np.float32)}, r"^grads\['e'\]\.values: expected dtype"),
    ({"e": RowSparseGrad(np.array([0, 1]), np.ones((1, D)), V)}, r"^grads\['e'\]\.rows: expected one integer"),
])
def test_step_rejects_bad_gradients(make_opt, grads, message):
    params = {"w": np.zeros(2), "e": np.zeros((V, D))}
    with pytest.raises(ValueError, match=message):
        make_opt().step(params, grads)


def test_step_checks_the_values_and_rows_of_all_gradients_together_and_names_the_bad_one():
    # the rows of several tables are checked in one pass: a decrease from one table's rows to
    # the next is no error, a repeat inside one (after an empty gradient) is, and is named
    params = {"a": np.zeros((V, D)), "b": np.zeros((V, D)), "c": np.zeros((V, D)), "w": np.zeros(2)}
    good = {"a": _sparse([3, 4], np.ones((2, D)), V), "b": _sparse([], np.ones((0, D)), V),
            "c": _sparse([0, 1], np.ones((2, D)), V), "w": np.ones(2)}
    Adam(0.1).step(params, good)
    with pytest.raises(ValueError, match=r"^grads\['c'\]\.rows: must be unique, sorted"):
        Adam(0.1).step(params, {**good, "c": _sparse([2, 2], np.ones((2, D)), V)})
    with pytest.raises(ValueError, match=r"^grads\['c'\]\.values: contains NaN"):
        Adam(0.1).step(params, {**good, "c": _sparse([0, 1], [[1.0] * D, [np.inf] * D], V)})
    with pytest.raises(ValueError, match=r"^grads\['w'\]: contains NaN"):
        Adam(0.1).step(params, {**good, "w": np.array([1.0, np.nan])})


def test_step_refuses_decreasing_unsigned_rows_before_updating_any_table():
    # with unsigned rows a difference of neighbours wraps around (1 - 2 is 2**64 - 1 > 0): the
    # row-order pass must compare them, name the gradient and leave every table as it was
    params = {"a": np.zeros((V, D)), "b": np.zeros((V, D))}
    grads = {"a": RowSparseGrad(np.array([0, 1], np.uint64), np.ones((2, D)), V),
             "b": RowSparseGrad(np.array([2, 1], np.uint64), np.ones((2, D)), V)}
    with pytest.raises(ValueError, match=r"^grads\['b'\]\.rows: must be unique, sorted"):
        Adam(0.1).step(params, grads)
    np.testing.assert_array_equal(params["a"], 0.0)


def test_step_validates_every_gradient_before_updating_any():
    params = {"w": np.zeros(2), "e": np.zeros((V, D))}
    with pytest.raises(ValueError, match=r"^grads\['missing'\]"):
        Adam(0.1).step(params, {"w": np.ones(2), "missing": np.ones(2)})
    np.testing.assert_array_equal(params["w"], 0.0)


def test_step_rejects_integer_parameters():
    with pytest.raises(ValueError, match=r"^params\['w'\]"):
        SGD(0.1).step({"w": np.zeros(2, np.int64)}, {"w": np.zeros(2)})


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(lr=0.1, beta1=1.0), "beta1"), (dict(lr=0.1, beta1=-0.1), "beta1"),
    (dict(lr=0.1, beta2=1.0), "beta2"), (dict(lr=0.1, beta2=float("nan")), "beta2"),
    (dict(lr=0.1, eps=0.0), "eps"), (dict(lr=0.1, l2_embeddings=-1e-3), "l2_embeddings"),
    (dict(lr=0.1, sparse="rowwise"), "sparse"),
])
def test_adam_rejects_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        Adam(**kwargs)


@pytest.mark.parametrize("kwargs, name", [(dict(lr=0.0), "lr"), (dict(lr=0.1, l2_embeddings=-1.0), "l2_embeddings")])
def test_sgd_rejects_bad_hyperparameters(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        SGD(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=0.0), "^lr:"), (dict(lr=float("inf")), "^lr:"),
    (dict(lr=0.1, initial_accumulator_value=-0.1), "^initial_accumulator_value:"),
    (dict(lr=0.1, initial_accumulator_value=float("nan")), "^initial_accumulator_value:"),
    (dict(lr=0.1, initial_accumulator_value=float("inf")), "^initial_accumulator_value:"),
    (dict(lr=0.1, eps=-1e-10), "^eps:"), (dict(lr=0.1, eps=float("nan")), "^eps:"),
    (dict(lr=0.1, initial_accumulator_value=0.0, eps=0.0), r"^eps: must be > 0 when initial_accumulator_value is 0"),
    (dict(lr=0.1, l2_embeddings=-1e-3), "^l2_embeddings:"), (dict(lr=0.1, sparse="rowwise"), "^sparse:"),
])
def test_adagrad_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adagrad(**kwargs)


@pytest.mark.parametrize("optimizer", [SGD, Adam, Adagrad])
@pytest.mark.parametrize("kwargs, name", [
    (dict(lr_warmup_steps=-1), "lr_warmup_steps"), (dict(lr_warmup_steps=2.5), "lr_warmup_steps"),
    (dict(lr_warmup_steps=True), "lr_warmup_steps"), (dict(lr_warmup_steps="10"), "lr_warmup_steps"),
    (dict(lr_warmup_steps=float("inf")), "lr_warmup_steps"), (dict(start_step=-2), "start_step"),
])
def test_every_optimizer_rejects_a_bad_warmup(optimizer, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: expected an integer >= 0"):
        optimizer(0.1, **kwargs)


def test_make_optimizer_names_an_unknown_optimizer():
    assert isinstance(optim.make_optimizer("adagrad", 0.1, eps=1e-10), Adagrad)
    with pytest.raises(ValueError, match=r"^optimizer: expected one of 'adam', 'adagrad', 'sgd'; got 'rmsprop'"):
        optim.make_optimizer("rmsprop", 0.1)


# ---------------------------------------------------------------- Adagrad, hand-computed

def test_adagrad_two_steps_by_hand():
    """lr 0.1, initial accumulator 0.1, eps 0; the numbers of docs/optim.md."""
    w = np.array([1.0, -1.0])
    opt = Adagrad(lr=0.1)
    opt.step({"w": w}, {"w": np.array([0.3, -0.4])})
    # a1 = 0.1 + g1^2 = [0.19, 0.26];  w1 = w0 - 0.1 g1 / sqrt(a1)
    np.testing.assert_allclose(opt.state["w"]["accumulator"], [0.19, 0.26], rtol=1e-15)
    np.testing.assert_allclose(w, [1.0 - 0.03 / math.sqrt(0.19), -1.0 + 0.04 / math.sqrt(0.26)], rtol=1e-15)
    np.testing.assert_allclose(w, [0.931175279839, -0.921553545945], atol=1e-12)
    opt.step({"w": w}, {"w": np.array([0.1, 0.2])})
    # a2 = a1 + g2^2 = [0.2, 0.3];  w2 = w1 - 0.1 g2 / sqrt(a2)
    np.testing.assert_allclose(opt.state["w"]["accumulator"], [0.2, 0.3], rtol=1e-15)
    np.testing.assert_allclose(w, [0.908814600064, -0.958068383112], atol=1e-12)


def test_adagrad_eps_is_added_outside_the_root():
    """torch's and Keras 2's placement: p - lr g / (sqrt(a) + eps); inside the root
    (Keras 3) the first step of a zero accumulator would move by lr g / sqrt(g^2 + eps)."""
    w = np.array([0.0])
    Adagrad(lr=1.0, initial_accumulator_value=0.0, eps=0.5).step({"w": w}, {"w": np.array([0.5])})
    assert w[0] == -0.5  # 0.5 / (0.5 + 0.5); inside the root: 0.5 / sqrt(0.75) = 0.577...


def _torch_order_adagrad(p, a, grads, lr, eps, rows_of_step=None):
    """torch/optim/adagrad.py, ``_single_tensor_adagrad``, restated: the dense branch
    (``a + g g``, ``sqrt(a) + eps``, ``p - (lr g) / std``) or, with rows, the sparse
    branch (the same on the rows, then ``p - lr (g / std)``)."""
    p, a = p.copy(), a.copy()
    for step, g in enumerate(grads):
        if rows_of_step is None:
            a = a + g * g
            p = p - (lr * g) / (np.sqrt(a) + eps)
        else:
            rows = rows_of_step[step]
            a[rows] = a[rows] + g * g
            p[rows] = p[rows] - lr * (g / (np.sqrt(a[rows]) + eps))
    return p, a


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("init_eps", [(0.1, 0.0), (0.0, 1e-10), (0.5, 1e-3)])
def test_dense_adagrad_follows_torchs_arithmetic_order_bitwise(dtype, init_eps):
    rng = np.random.default_rng(21)
    init, eps = init_eps
    p0 = rng.normal(size=(7, 5)).astype(dtype)
    grads = [(rng.normal(size=(7, 5)) * 10.0 ** rng.integers(-5, 3, size=(7, 5))).astype(dtype) for _ in range(50)]
    w, opt = p0.copy(), Adagrad(0.03, init, eps)
    for g in grads:
        opt.step({"w": w}, {"w": g})
    expected_p, expected_a = _torch_order_adagrad(p0, np.full_like(p0, init), grads, dtype(0.03), dtype(eps))
    assert w.dtype == dtype and opt.state["w"]["accumulator"].dtype == dtype
    np.testing.assert_array_equal(opt.state["w"]["accumulator"], expected_a)
    np.testing.assert_array_equal(w, expected_p)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lazy_adagrad_follows_torchs_sparse_arithmetic_order_bitwise(dtype):
    rng = np.random.default_rng(22)
    p0 = rng.normal(size=(V, D)).astype(dtype)
    rows_of_step = [np.flatnonzero(rng.random(V) < 0.5) for _ in range(40)]
    grads = [(rng.normal(size=(r.size, D)) * 10.0 ** rng.integers(-5, 3, size=(r.size, 1))).astype(dtype)
             for r in rows_of_step]
    table, opt = p0.copy(), Adagrad(0.03, 0.0, 1e-10)
    for rows, g in zip(rows_of_step, grads):
        opt.step({"e": table}, {"e": _sparse(rows, g, V, dtype)})
    expected_p, expected_a = _torch_order_adagrad(p0, np.zeros_like(p0), grads, dtype(0.03), dtype(1e-10), rows_of_step)
    np.testing.assert_array_equal(opt.state["e"]["accumulator"], expected_a)
    np.testing.assert_array_equal(table, expected_p)


def test_adagrad_matches_duchis_formula():
    """Duchi, Hazan & Singer (2011), diagonal Adagrad: p_t = p_{t-1} - lr g_t / (sqrt(a0 + sum_s g_s^2) + eps),
    written independently (the accumulator re-summed from scratch at every step)."""
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=6) for _ in range(30)]
    w = p = rng.normal(size=6)
    w = w.copy()
    opt = Adagrad(0.2, initial_accumulator_value=0.05, eps=1e-6)
    for t, g in enumerate(grads):
        opt.step({"w": w}, {"w": g})
        p = p - 0.2 * g / (np.sqrt(0.05 + sum(h**2 for h in grads[:t + 1])) + 1e-6)
    np.testing.assert_allclose(w, p, rtol=1e-13)


# ---------------------------------------------------------------- Adagrad, row-sparse

def _adagrad_sparse_steps(mode, l2=0.0):
    """Steps touch rows [1, 3], [3, 4], [0, 3]; returns the table and accumulator after each step."""
    rng = np.random.default_rng(8)
    table = rng.normal(size=(V, D))
    opt = Adagrad(0.1, sparse=mode, l2_embeddings=l2)
    snapshots = [(table.copy(), np.full((V, D), 0.1))]
    for rows in ([1, 3], [3, 4], [0, 3]):
        opt.step({"e": table}, {"e": _sparse(rows, rng.normal(size=(2, D)), V)})
        snapshots.append((table.copy(), opt.state["e"]["accumulator"].copy()))
    return snapshots


def test_lazy_adagrad_touches_only_the_rows_in_the_batch():
    snapshots = _adagrad_sparse_steps("lazy")
    (p0, a0), (p1, a1), (p2, a2), (p3, a3) = snapshots
    for never in (2, 5):
        assert np.array_equal(p3[never], p0[never]) and np.array_equal(a3[never], a0[never])
    # row 1 is touched at step 1 only: bit-identical afterwards, value and accumulator
    assert np.array_equal(p3[1], p1[1]) and np.array_equal(a3[1], a1[1]) and not np.array_equal(p1[1], p0[1])
    assert np.all(a3[3] > a2[3]) and not np.array_equal(p3[3], p2[3])


def test_adagrad_lazy_and_dense_modes_agree_up_to_rounding():
    """A zero gradient leaves Adagrad's accumulator and parameter as they are, so the dense
    mode moves the same rows by the same amounts; only the grouping of lr (g / d) differs."""
    for (lazy_p, lazy_a), (dense_p, dense_a) in zip(_adagrad_sparse_steps("lazy", 0.3), _adagrad_sparse_steps("dense", 0.3)):
        np.testing.assert_array_equal(lazy_a, dense_a)
        np.testing.assert_allclose(lazy_p, dense_p, rtol=1e-15, atol=0)
        np.testing.assert_array_equal(lazy_p[[2, 5]], dense_p[[2, 5]])


def test_adagrad_accumulator_starts_at_its_initial_value_per_parameter():
    params = {"a": np.zeros(2, np.float32), "b": np.ones(2, np.float32)}
    opt = Adagrad(0.1, initial_accumulator_value=0.3)
    opt.step(params, {"a": np.ones(2, np.float32)})
    assert "b" not in opt.state
    assert opt.state["a"]["accumulator"].dtype == np.float32
    np.testing.assert_array_equal(opt.state["a"]["accumulator"], np.float32(0.3) + np.float32(1.0))
    np.testing.assert_array_equal(params["b"], [1.0, 1.0])


# ---------------------------------------------------------------- learning-rate warm-up

def test_warmup_lr_is_linear_up_to_lr_then_flat():
    assert [warmup_lr(0.2, t, 4) for t in range(6)] == [0.2 * 0.25, 0.2 * 0.5, 0.2 * 0.75, 0.2, 0.2, 0.2]
    assert [warmup_lr(0.2, t, 0) for t in range(3)] == [0.2, 0.2, 0.2]
    assert warmup_lr(0.2, 0, 1) == 0.2
    assert warmup_lr(0.01, 2, 3) == 0.01  # min(1, 3 / 3) = 1.0 exactly: no rounding at the end of the warm-up


def _with_lr(make_opt, lr):
    """The optimizer with its base learning rate replaced (how torch's LambdaLR drives one)."""
    opt = make_opt()
    opt.lr = lr
    return opt


@pytest.mark.parametrize("make_opt", [lambda **kw: SGD(0.1, l2_embeddings=0.2, **kw),
                                      lambda **kw: Adam(0.1, l2_embeddings=0.2, **kw),
                                      lambda **kw: Adam(0.1, sparse="dense", **kw),
                                      lambda **kw: Adagrad(0.1, l2_embeddings=0.2, **kw),
                                      lambda **kw: Adagrad(0.1, sparse="dense", **kw)])
@pytest.mark.parametrize("start_step", [0, 2])
def test_every_optimizer_steps_at_the_warmed_up_learning_rate(make_opt, start_step):
    """Step t of an optimizer with lr_warmup_steps = 4 equals the optimizer without warm-up
    whose learning rate is set to lr * min(1, (t + 1) / 4) before that step, bit for bit."""
    rng = np.random.default_rng(4)
    params = {"w": rng.normal(size=(3, 2)), "e": rng.normal(size=(V, D))}
    reference = {k: v.copy() for k, v in params.items()}
    warmed = make_opt(lr_warmup_steps=4, start_step=start_step)
    plain = make_opt()
    lrs = []
    for t in range(start_step, start_step + 6):
        grads = {"w": rng.normal(size=(3, 2)), "e": _sparse([1, 4], rng.normal(size=(2, D)), V)}
        lrs.append(warmed.current_lr())
        warmed.step(params, grads)
        plain.lr = 0.1 * min(1.0, (t + 1) / 4)
        plain.step(reference, grads)
        for name in params:
            np.testing.assert_array_equal(params[name], reference[name])
    assert lrs == [0.1 * min(1.0, (t + 1) / 4) for t in range(start_step, start_step + 6)]
    assert warmed.steps_taken == start_step + 6 and warmed.lr == 0.1


def test_sgd_warmup_first_step_moves_by_lr_over_n():
    w = np.array([1.0])
    SGD(0.3, lr_warmup_steps=3).step({"w": w}, {"w": np.array([1.0])})
    assert w[0] == 1.0 - 0.3 * (1 / 3)


def test_a_rejected_step_does_not_advance_the_warmup():
    opt = SGD(0.1, lr_warmup_steps=5)
    with pytest.raises(ValueError, match=r"^grads\['missing'\]"):
        opt.step({"w": np.zeros(2)}, {"missing": np.zeros(2)})
    assert opt.steps_taken == 0 and opt.current_lr() == 0.1 * (1 / 5)


def test_derivations_name_every_update_rule_of_the_optimizers():
    """docs/derivations.md has a section headed with each update rule's function, and the
    names resolve."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "derivations.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    for function in (SGD, Adam, Adagrad, warmup_lr, optim.adagrad_update_):
        dotted = f"`pfd_ref.optim.{function.__qualname__}`"
        assert any(dotted in heading for heading in headings), dotted

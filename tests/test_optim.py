"""Tests of pfd_ref.optim: hand-computed steps, lazy vs dense sparse Adam, L2, dtypes, errors."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref.optim import SGD, Adam
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


@pytest.mark.parametrize("mode", ["lazy", "dense"])
def test_adam_l2_is_added_to_touched_rows_only(mode):
    rng = np.random.default_rng(11)
    table = rng.normal(size=(V, D))
    explicit = table.copy()
    rows, values = np.array([1, 4]), rng.normal(size=(2, D))
    Adam(0.1, sparse=mode, l2_embeddings=0.3).step({"e": table}, {"e": _sparse(rows, values, V)})
    Adam(0.1, sparse=mode).step({"e": explicit}, {"e": _sparse(rows, values + 0.3 * explicit[rows], V)})
    np.testing.assert_array_equal(table, explicit)


def test_adam_l2_is_not_applied_to_dense_parameters():
    w, w_plain = np.array([1.0, 2.0]), np.array([1.0, 2.0])
    for _ in range(2):
        Adam(0.1, l2_embeddings=0.5).step({"w": w}, {"w": np.array([0.3, -0.2])})
        Adam(0.1).step({"w": w_plain}, {"w": np.array([0.3, -0.2])})
    np.testing.assert_array_equal(w, w_plain)


# ---------------------------------------------------------------- dtypes, in place

@pytest.mark.parametrize("make_opt", [lambda: SGD(0.1, l2_embeddings=0.1),
                                      lambda: Adam(0.1, l2_embeddings=0.1, sparse="lazy"),
                                      lambda: Adam(0.1, l2_embeddings=0.1, sparse="dense")])
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
        assert state["m"].dtype == np.float32 and state["v"].dtype == np.float32


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

@pytest.mark.parametrize("make_opt", [lambda: SGD(0.1), lambda: Adam(0.1)])
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

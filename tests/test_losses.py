"""pfd_ref.losses: gradients against central differences, values against a 50-digit decimal
reference, stability at huge logits, the soft loss's fixed point and temperature scaling,
dtype behaviour and input validation."""

from __future__ import annotations

import contextlib
import warnings
from decimal import Context, Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck import numerical_gradient, relative_error
from pfd_ref.losses import (exp_minus_abs, hard_loss, log_sigmoid, sigmoid, sigmoid_difference, soft_loss, softmax_loss,
                            squared_error_loss)

DTYPES = [np.float32, np.float64]
GRAD_TOLERANCE = 1e-6
EXTREMES = [-1e4, -1e3, -50.0, 0.0, 50.0, 1e3, 1e4]
seeds = st.integers(0, 2**32 - 1)

# Agreement with the decimal reference: (relative, absolute in units of the result's scale).
# The absolute part covers differences of two probabilities near 1 and float32 subnormals.
TOLERANCE = {np.float32: (2e-5, 1e-6), np.float64: (1e-13, 1e-15)}


# --------------------------------------------------------------------------- decimal reference

DIGITS = Context(prec=50, Emin=-10**6, Emax=10**6)


def _dec(x) -> Decimal:
    return Decimal(float(x))  # the exact binary value


def ref_softplus(x: Decimal) -> Decimal:
    """``log(1 + e^x)`` to 50 digits for any x (``e^-1e4`` is representable here)."""
    with localcontext(DIGITS):
        if x > 0:
            return x + ref_softplus(-x)
        e = x.exp()
        if e < Decimal("1e-25"):
            return e - e * e / 2  # log1p(e), the next term e^3/3 is below 50 digits
        return (1 + e).ln()


def ref_sigmoid(x: Decimal) -> Decimal:
    with localcontext(DIGITS):
        return 1 / (1 + (-x).exp())


def ref_hard(logits, labels, weights=None):
    """Loss and gradient of hard_loss in 50 digits, as floats."""
    n = len(logits)
    weights = np.ones(n) if weights is None else weights
    loss, grad = Decimal(0), []
    with localcontext(DIGITS):
        for z, y, w in zip(map(_dec, logits), labels, map(_dec, weights)):
            loss += w * ref_softplus(-z if y else z)  # -log s(z) = softplus(-z), -log(1 - s(z)) = softplus(z)
            grad.append(w * (-ref_sigmoid(-z) if y else ref_sigmoid(z)) / n)  # s(z) - 1 = -s(-z)
        return float(loss / n), np.array([float(g) for g in grad])


def ref_soft(student, teacher, temperature, weights=None):
    """Loss and gradient of soft_loss in 50 digits, as floats."""
    n = len(student)
    weights = np.ones(n) if weights is None else weights
    T = _dec(temperature)
    loss, grad = Decimal(0), []
    with localcontext(DIGITS):
        for z, t, w in zip(map(_dec, student), map(_dec, teacher), map(_dec, weights)):
            p, one_minus_p, u = ref_sigmoid(t / T), ref_sigmoid(-t / T), z / T
            loss += w * T * T * (p * ref_softplus(-u) + one_minus_p * ref_softplus(u))
            grad.append(w * T * (ref_sigmoid(u) - p) / n)
        return float(loss / n), np.array([float(g) for g in grad])


def assert_close_to_reference(value, reference, dtype, scale=1.0):
    rtol, atol = TOLERANCE[dtype]
    # below the smallest normal number relative precision is lost by design (subnormals)
    np.testing.assert_allclose(value, reference, rtol=rtol, atol=atol * scale + np.finfo(dtype).tiny)


@contextlib.contextmanager
def no_floating_point_warnings():
    """Overflow, invalid operations and division by zero become errors (underflow to 0 is exact
    to working precision and stays silent, as in NumPy's default)."""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        warnings.simplefilter("error")
        yield


# --------------------------------------------------------------------------- sigmoid, log_sigmoid


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_log_sigmoid_match_the_reference_at_extreme_and_random_values(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([EXTREMES, rng.uniform(-60, 60, 40), rng.uniform(-1e4, 1e4, 20)]).astype(dtype)
    with no_floating_point_warnings():
        log_s, s = log_sigmoid(x), sigmoid(x)
    assert log_s.dtype == dtype and s.dtype == dtype
    # relative accuracy everywhere (tiny absolute floor for float32 subnormals)
    rtol = TOLERANCE[dtype][0]
    np.testing.assert_allclose(log_s, [float(-ref_softplus(-_dec(v))) for v in x], rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(s, [float(ref_sigmoid(_dec(v))) for v in x], rtol=rtol, atol=1e-37)
    assert np.all((s >= 0) & (s <= 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_exp_minus_abs_serves_x_and_minus_x_with_the_bits_of_computing_it_again(dtype):
    # the losses compute e = exp(-|x|) once and pass it to sigmoid / log_sigmoid of x and -x, and
    # to sigmoid_difference: every result must be the one computed without it, bit for bit
    rng = np.random.default_rng(7)
    x = np.concatenate([np.array([0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 1e4, -1e4], dtype),
                        (rng.standard_normal(200) * 20).astype(dtype)])
    e = exp_minus_abs(x)
    assert e.dtype == dtype and exp_minus_abs(-x).tobytes() == e.tobytes()
    for signed in (x, -x):
        assert sigmoid(signed, e).tobytes() == sigmoid(signed).tobytes()
        assert log_sigmoid(signed, e).tobytes() == log_sigmoid(signed).tobytes()
    t = (rng.standard_normal(x.shape[0]) * 20).astype(dtype)
    for temperature in (1.0, 3.0):
        e_t = exp_minus_abs(t / temperature)
        given = sigmoid_difference(x, t, temperature, sigmoid(t / temperature, e_t), sigmoid(-t / temperature, e_t),
                                   exp_minus_abs(x / temperature))
        assert given.tobytes() == sigmoid_difference(x, t, temperature).tobytes()


@settings(max_examples=15, deadline=None)
@given(x=hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(-6, 6)), seed=seeds)
def test_derivatives_of_log_sigmoid_and_sigmoid(x, seed):
    """d/dx log s(x) = s(-x) and s'(x) = s(x) s(-x), against central differences."""
    c = np.random.default_rng(seed).standard_normal(x.shape)
    numeric = numerical_gradient(lambda: c @ log_sigmoid(x), x)
    assert relative_error(c * sigmoid(-x), numeric) < GRAD_TOLERANCE
    numeric = numerical_gradient(lambda: c @ sigmoid(x), x)
    assert relative_error(c * sigmoid(x) * sigmoid(-x), numeric) < GRAD_TOLERANCE


# --------------------------------------------------------------------------- hard loss


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 10), weighted=st.booleans(), seed=seeds)
def test_hard_loss_gradient_matches_finite_differences(n, weighted, seed):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal(n)
    labels = rng.integers(0, 2, n).astype(np.int8)
    weights = rng.uniform(0, 2, n) if weighted else None
    loss, d_logits = hard_loss(logits, labels, weights)
    numeric = numerical_gradient(lambda: hard_loss(logits, labels, weights)[0], logits)
    assert relative_error(d_logits, numeric) < GRAD_TOLERANCE
    reference_loss, reference_grad = ref_hard(logits, labels, weights)
    assert_close_to_reference(loss, reference_loss, np.float64)
    assert_close_to_reference(d_logits, reference_grad, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_hard_loss_is_stable_and_accurate_at_huge_logits(dtype):
    rng = np.random.default_rng(1)
    logits = np.concatenate([EXTREMES, EXTREMES, rng.uniform(-1e4, 1e4, 10)]).astype(dtype)
    labels = np.concatenate([np.zeros(7), np.ones(7), rng.integers(0, 2, 10)]).astype(np.int64)
    weights = rng.uniform(0, 2, logits.size).astype(dtype)
    for w in (None, weights):
        with no_floating_point_warnings():
            loss, d_logits = hard_loss(logits, labels, w)
        assert np.isfinite(loss) and np.all(np.isfinite(d_logits))
        reference_loss, reference_grad = ref_hard(logits, labels, w)
        assert_close_to_reference(loss, reference_loss, dtype)
        assert_close_to_reference(d_logits, reference_grad, dtype, scale=1 / logits.size)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("logit", [5.0, 7.0, 15.0, 30.0, 50.0, 200.0])
def test_losses_keep_relative_precision_for_confident_predictions(dtype, logit):
    """One example at a time, so a tiny loss is not hidden in a sum: ``-log s(z)`` for a right
    confident prediction and the soft loss against a nearly certain teacher (``1 - p`` small)."""
    for sign in (1.0, -1.0):
        z = np.array([sign * logit], dtype)
        label = np.array([sign > 0])
        with no_floating_point_warnings():
            loss, d_logits = hard_loss(z, label)
        assert_close_to_reference(loss, ref_hard(z, label)[0], dtype, scale=0)
        assert_close_to_reference(d_logits, ref_hard(z, label)[1], dtype, scale=0)
        for student in (z, z + dtype(sign)):
            with no_floating_point_warnings():
                loss, d_student = soft_loss(student, z, 1.0)
            assert_close_to_reference(loss, ref_soft(student, z, 1.0)[0], dtype, scale=0)


@pytest.mark.parametrize("weighted", [False, True])
def test_float32_loss_is_finite_while_its_mean_fits_float32(weighted):
    """Logits of +-3e38 on the wrong side: every per-example loss is 3e38 and their sum
    overflows float32; the mean (summed in float64) is 3e38 again, returned without a warning.
    A mean beyond float32 itself (weights of 2) is infinite, which training refuses
    (``train.check_finite_loss``)."""
    logits, labels = np.array([3e38, -3e38], np.float32), np.array([0, 1])
    weights = np.array([1.0, 0.5], np.float32) if weighted else None
    with no_floating_point_warnings():
        loss, d_logits = hard_loss(logits, labels, weights)
        soft, _ = soft_loss(logits, -logits, 1.0, weights)
    expected = 3e38 * (0.75 if weighted else 1.0)
    assert loss.dtype == np.float32 and loss == pytest.approx(expected, rel=1e-6)
    assert soft == pytest.approx(expected, rel=1e-6)
    assert np.array_equal(d_logits, np.array([0.5, -0.5], np.float32) * (1 if weights is None else weights))
    with np.errstate(over="ignore"):
        assert hard_loss(logits, labels, np.array([2.0, 2.0], np.float32))[0] == np.inf


def test_hard_loss_values_by_hand():
    loss, d_logits = hard_loss(np.array([0.0, 0.0]), np.array([1, 0]))
    assert loss == pytest.approx(np.log(2), rel=1e-15)
    np.testing.assert_allclose(d_logits, [-0.25, 0.25], rtol=1e-15)
    loss, d_logits = hard_loss(np.array([2.0, 0.0]), np.array([1, 1]), weights=np.array([0.0, 3.0]))
    assert loss == pytest.approx(3 * np.log(2) / 2, rel=1e-15)
    np.testing.assert_allclose(d_logits, [0.0, -0.75], rtol=1e-15)


@pytest.mark.parametrize("labels_dtype", [np.int8, np.int64, np.uint8, np.float32, np.float64, bool])
def test_hard_loss_accepts_any_numeric_label_dtype(labels_dtype):
    logits = np.array([0.3, -1.2, 2.0])
    labels = np.array([1, 0, 1]).astype(labels_dtype)
    expected = hard_loss(logits, np.array([1, 0, 1]))
    result = hard_loss(logits, labels)
    assert result[0] == expected[0]
    np.testing.assert_array_equal(result[1], expected[1])


# --------------------------------------------------------------------------- soft loss


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 10), temperature=st.sampled_from([0.3, 1.0, 2.5, 7.0]), weighted=st.booleans(), seed=seeds)
def test_soft_loss_gradient_matches_finite_differences(n, temperature, weighted, seed):
    rng = np.random.default_rng(seed)
    student, teacher = 3 * rng.standard_normal(n), 3 * rng.standard_normal(n)
    weights = rng.uniform(0, 2, n) if weighted else None
    teacher_before = teacher.copy()
    loss, d_student = soft_loss(student, teacher, temperature, weights)
    numeric = numerical_gradient(lambda: soft_loss(student, teacher, temperature, weights)[0], student)
    assert relative_error(d_student, numeric) < GRAD_TOLERANCE
    reference_loss, reference_grad = ref_soft(student, teacher, temperature, weights)
    assert_close_to_reference(loss, reference_loss, np.float64)
    assert_close_to_reference(d_student, reference_grad, np.float64, scale=temperature / n)
    np.testing.assert_array_equal(teacher, teacher_before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_soft_loss_is_stable_and_accurate_at_huge_logits(dtype, temperature):
    rng = np.random.default_rng(2)
    grid_student, grid_teacher = np.meshgrid(EXTREMES, EXTREMES)
    student = np.concatenate([grid_student.ravel(), rng.uniform(-1e4, 1e4, 10)]).astype(dtype)
    teacher = np.concatenate([grid_teacher.ravel(), rng.uniform(-1e4, 1e4, 10)]).astype(dtype)
    weights = rng.uniform(0, 2, student.size).astype(dtype)
    for w in (None, weights):
        with no_floating_point_warnings():
            loss, d_student = soft_loss(student, teacher, temperature, w)
        assert np.isfinite(loss) and np.all(np.isfinite(d_student))
        reference_loss, reference_grad = ref_soft(student, teacher, temperature, w)
        assert_close_to_reference(loss, reference_loss, dtype)
        assert_close_to_reference(d_student, reference_grad, dtype, scale=temperature / student.size)


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from(DTYPES), data=st.data(),
       temperature=st.floats(0.05, 20.0), weighted=st.booleans())
def test_soft_loss_gradient_is_exactly_zero_when_student_equals_teacher(dtype, data, temperature, weighted):
    width = 32 if dtype == np.float32 else 64
    logits = data.draw(hnp.arrays(dtype, st.integers(1, 12), elements=st.floats(-1e4, 1e4, width=width)))
    weights = np.full(logits.size, 0.7, dtype) if weighted else None
    with no_floating_point_warnings():
        loss, d_student = soft_loss(logits, logits.copy(), temperature, weights)
    assert np.all(d_student == 0)
    # the loss there is T^2 times the binary entropy of p = s(t/T), at the rounded t/T
    scaled = logits / dtype(temperature)
    w = 0.7 if weighted else 1.0
    with localcontext(DIGITS):
        entropy = sum(ref_sigmoid(_dec(x)) * ref_softplus(-_dec(x)) + ref_sigmoid(-_dec(x)) * ref_softplus(_dec(x)) for x in scaled)
    expected = w * temperature**2 * float(entropy) / logits.size
    rtol = TOLERANCE[dtype][0]
    np.testing.assert_allclose(loss, expected, rtol=rtol, atol=1e-35 * temperature**2)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 8), temperature=st.floats(0.1, 10.0), seed=seeds)
def test_soft_loss_temperature_scaling(n, temperature, seed):
    """With logits scaled by T, the T^2 factor gives L_T(T z, T t) = T^2 L_1(z, t) and
    dL_T/dz' = T (q - p) / n = T dL_1/dz (this fails if the T^2 factor were dropped)."""
    rng = np.random.default_rng(seed)
    student, teacher = rng.standard_normal(n), rng.standard_normal(n)
    loss_1, grad_1 = soft_loss(student, teacher, 1.0)
    loss_T, grad_T = soft_loss(student * temperature, teacher * temperature, temperature)
    assert loss_T == pytest.approx(temperature**2 * loss_1, rel=1e-12)
    np.testing.assert_allclose(grad_T, temperature * grad_1, rtol=1e-10, atol=1e-15 * temperature)


def test_soft_loss_at_temperature_one_with_a_certain_teacher_is_the_hard_loss():
    rng = np.random.default_rng(3)
    student = 4 * rng.standard_normal(20)
    labels = rng.integers(0, 2, 20)
    teacher = np.where(labels == 1, 1e4, -1e4)  # p = s(+-1e4) rounds to exactly 1 or 0
    weights = rng.uniform(0, 2, 20)
    soft, d_soft = soft_loss(student, teacher, 1.0, weights)
    hard, d_hard = hard_loss(student, labels, weights)
    assert soft == pytest.approx(hard, rel=1e-14)
    np.testing.assert_allclose(d_soft, d_hard, rtol=1e-12, atol=1e-17)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_soft_loss_returns_only_the_student_gradient(temperature):
    """Stop-gradient: the result is ``(loss, dL/dz)`` with the teacher held constant (the
    central differences in ``z`` alone), not the total derivative that moving the teacher
    too would give, and the teacher's logits are left as they were."""
    rng = np.random.default_rng(4)
    student, teacher, weights = rng.normal(0, 2, 6), rng.normal(0, 2, 6), rng.uniform(0.5, 2, 6)
    teacher_before = teacher.copy()
    result = soft_loss(student, teacher, temperature, weights)
    assert len(result) == 2 and np.array_equal(teacher, teacher_before)
    d_student = numerical_gradient(lambda: soft_loss(student, teacher, temperature, weights)[0], student)
    d_teacher = numerical_gradient(lambda: soft_loss(student, teacher, temperature, weights)[0], teacher)
    assert relative_error(result[1], d_student) < GRAD_TOLERANCE
    assert _far_apart(result[1], d_student + d_teacher)  # not the gradient with the teacher moving


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0, 1e3])
def test_the_teacher_gradient_the_stop_gradient_removes(temperature):
    """docs/derivations.md ("The PFD objective and who receives which gradient"):
    ``d (lam L_soft) / d t_i = -lam w_i s_i p_i (1 - p_i) / n`` with ``p = s(t/T)`` and ``s``
    the student's logit: no ``T`` besides the one inside ``p`` (central differences)."""
    rng = np.random.default_rng(5)
    student, teacher, weights = rng.normal(0, 2, 7), rng.normal(0, 2, 7) * temperature, rng.uniform(0.5, 2, 7)
    lam, n = 0.7, student.size
    p = sigmoid(teacher / temperature)
    formula = -lam * weights * student * p * (1 - p) / n
    eps = 1e-5 * temperature  # the loss is of size T^2: a larger step keeps the rounding of the differences small
    numeric = numerical_gradient(lambda: lam * soft_loss(student, teacher, temperature, weights)[0], teacher, eps)
    assert relative_error(formula, numeric) < GRAD_TOLERANCE
    wrong = -lam * weights * temperature * (sigmoid(student / temperature) - p) / n  # minus the student's term
    assert _far_apart(wrong, numeric)


def _far_apart(a, b) -> bool:
    """``max|a - b| > 0.1 max|b|``: a formula that is not the one checked (kept out of the
    finite-difference statistics of tests/gradcheck.py)."""
    return bool(np.max(np.abs(a - b)) > 0.1 * np.max(np.abs(b)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", [1.0, 10.0, 1e3])
def test_soft_gradient_keeps_relative_precision_where_student_and_teacher_nearly_agree(dtype, temperature):
    """``T (q - p) / n`` against the 50-digit reference, entry by entry and relative only: the
    difference of two sigmoids would lose every digit where ``q`` and ``p`` agree to the
    dtype's precision (float32: 10% off at T = 1, 27% at T = 1e3); ``losses.sigmoid_difference``
    keeps a few ulps. Scaled logits ``z/T ~ N(0, 3)``, gaps ``(t - z)/T`` from 1e-7 to 1."""
    rng = np.random.default_rng(6)
    scaled = rng.normal(0, 3, 60)
    gaps = rng.choice([-1, 1], 60) * 10.0 ** rng.uniform(-7, 0, 60)
    student, teacher = (scaled * temperature).astype(dtype), ((scaled + gaps) * temperature).astype(dtype)
    with no_floating_point_warnings():
        _, d_student = soft_loss(student, teacher, temperature)
    reference = ref_soft(student, teacher, temperature)[1]
    rtol = {np.float32: 1e-6, np.float64: 5e-15}[dtype]
    np.testing.assert_allclose(d_student, reference, rtol=rtol, atol=0)


def test_sigmoid_difference_signs_and_extremes():
    z = np.array([0.0, 1.0, -1.0, 3e38, -3e38, 5.0], np.float32)
    t = np.array([0.0, -1.0, 1.0, -3e38, 3e38, 5.0], np.float32)
    with no_floating_point_warnings():
        difference = sigmoid_difference(z, t)
    expected = [0.0, float(sigmoid(np.float64(1)) - sigmoid(np.float64(-1))),
                -float(sigmoid(np.float64(1)) - sigmoid(np.float64(-1))), 1.0, -1.0, 0.0]
    np.testing.assert_allclose(difference, expected, rtol=1e-6)
    assert difference.dtype == np.float32


# --------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_loss_function_returns_the_dtype_it_was_given(dtype):
    z, t, w = np.array([0.5, -2.0, 3.0], dtype), np.array([1.0, 0.0, -4.0], dtype), np.array([1.0, 0.5, 2.0], dtype)
    assert log_sigmoid(z).dtype == dtype and sigmoid(z).dtype == dtype
    for loss, grad in [hard_loss(z, [1, 0, 1]), hard_loss(z, [1, 0, 1], w), soft_loss(z, t, 2.0), soft_loss(z, t, 0.5, w)]:
        assert isinstance(loss, np.floating) and loss.dtype == dtype
        assert grad.dtype == dtype


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 12), temperature=st.sampled_from([0.5, 1.0, 4.0]), seed=seeds)
def test_float32_and_float64_losses_agree(n, temperature, seed):
    rng = np.random.default_rng(seed)
    z32 = (5 * rng.standard_normal(n)).astype(np.float32)
    t32 = (5 * rng.standard_normal(n)).astype(np.float32)
    w32 = rng.uniform(0, 2, n).astype(np.float32)
    labels = rng.integers(0, 2, n)
    pairs = [
        (hard_loss(z32, labels, w32), hard_loss(z32.astype(np.float64), labels, w32.astype(np.float64))),
        (soft_loss(z32, t32, temperature, w32), soft_loss(z32.astype(np.float64), t32.astype(np.float64), temperature, w32.astype(np.float64))),
    ]
    for (loss32, grad32), (loss64, grad64) in pairs:
        assert loss32 == pytest.approx(loss64, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(grad32, grad64, rtol=1e-4, atol=1e-6 * temperature)
    np.testing.assert_allclose(log_sigmoid(z32), log_sigmoid(z32.astype(np.float64)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(sigmoid(z32), sigmoid(z32.astype(np.float64)), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- auxiliary losses (MTL)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 8), k=st.integers(1, 4), weighted=st.booleans(), seed=seeds)
def test_squared_error_loss_gradient_and_value(n, k, weighted, seed):
    rng = np.random.default_rng(seed)
    predictions, targets = rng.standard_normal((n, k)), rng.standard_normal((n, k))
    weights = rng.uniform(0.5, 2, n) if weighted else None
    loss, grad = squared_error_loss(predictions, targets, weights)
    w = np.ones(n) if weights is None else weights
    assert loss == pytest.approx(np.sum(w[:, None] * (predictions - targets) ** 2) / n, rel=1e-14)
    numeric = numerical_gradient(lambda: squared_error_loss(predictions, targets, weights)[0], predictions)
    assert relative_error(grad, numeric) < GRAD_TOLERANCE


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 8), classes=st.integers(2, 5), weighted=st.booleans(), seed=seeds)
def test_softmax_loss_gradient_and_value(n, classes, weighted, seed):
    rng = np.random.default_rng(seed)
    logits, ids = 2 * rng.standard_normal((n, classes)), rng.integers(0, classes, n)
    weights = rng.uniform(0.5, 2, n) if weighted else None
    loss, grad = softmax_loss(logits, ids, weights)
    w = np.ones(n) if weights is None else weights
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.sum(w * np.log(probabilities[np.arange(n), ids])) / n, rel=1e-13)
    numeric = numerical_gradient(lambda: softmax_loss(logits, ids, weights)[0], logits)
    assert relative_error(grad, numeric) < GRAD_TOLERANCE
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-15)  # each row's probabilities sum to 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_loss_is_finite_at_huge_logits_and_keeps_the_dtype(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, grad = softmax_loss(logits, np.array([1, 2]))
    assert loss.dtype == dtype and grad.dtype == dtype
    assert float(loss) == pytest.approx(2e4 / 2, rel=1e-6)  # row 0 misses by 2e4 nats, row 1 is right
    np.testing.assert_array_equal(grad, np.array([[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], dtype=dtype))
    loss, grad = squared_error_loss(logits[:, :2], np.zeros((2, 2), dtype=dtype))
    assert loss.dtype == dtype and grad.dtype == dtype

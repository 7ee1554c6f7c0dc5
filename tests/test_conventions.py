"""The three conventions' objectives: gradients against finite differences, pfd_ref's against
its training code bit for bit, the reductions and clipping each framework defines, hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref.conventions import (CONVENTIONS, KERAS_EPSILON, LOSSES_OF, SATURATED_LOGIT, check_convention,
                                 convention_objective, logits_from_probabilities, teacher_value)
from pfd_ref.distill import DistillConfig, student_objective
from pfd_ref.losses import sigmoid

COMBINATIONS = [(c, loss) for c in CONVENTIONS for loss in LOSSES_OF[c]]


def _batch(seed: int, n: int = 9, weighted: bool = False):
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2, n)
    t = s + rng.normal(0, 1.5, n)
    y = rng.integers(0, 2, n)
    w = None
    if weighted:
        w = rng.uniform(0.5, 2, n)
        w[1] = 0.0
    return s, t, y, w


@pytest.mark.parametrize("convention, loss", COMBINATIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_match_finite_differences_with_teacher_logits(convention, loss, weighted):
    s, t, y, w = _batch(1, weighted=weighted)
    T = 1.0 if loss == "l2" else 1.7
    def run():
        return convention_objective(convention, loss, s, t, "logits", y, w, T, 0.3, "one_minus_lambda")
    out = run()
    assert relative_error(out["grad.student_logits"], numerical_gradient(lambda: run()["loss.total"], s)) < 1e-7
    assert relative_error(out["grad.hard"], numerical_gradient(lambda: run()["loss.hard"], s)) < 1e-7
    assert relative_error(out["grad.soft"], numerical_gradient(lambda: run()["loss.soft"], s)) < 1e-7
    # what the stop-gradient removes: d(lambda soft)/dt, t being u for teacher logits
    removed = numerical_gradient(lambda: 0.3 * run()["loss.soft"], t)
    assert relative_error(out["grad.teacher_without_stop_gradient"], removed) < 1e-7


# du/dpi of each convention's reading of probabilities, inside EasyRec's clipping range
DU_DPI = {
    "pfd_ref": lambda pi: 1 / (pi * (1 - pi)),
    ("easyrec", "bce"): lambda pi: 1 / (pi * (1 - pi)),
    ("easyrec", "kl"): lambda pi: 1 / (pi * (1 - pi)),
    ("easyrec", "ce"): lambda pi: 1 / (pi + KERAS_EPSILON),
    ("easyrec", "l2"): lambda pi: np.ones_like(pi),
}


@pytest.mark.parametrize("convention, loss", [c for c in COMBINATIONS if c[0] != "rocket"])
def test_teacher_gradient_in_probabilities_follows_the_chain_rule(convention, loss):
    s, t, y, _ = _batch(2)
    pi = sigmoid(np.clip(t, -6, 6))  # well inside (1e-7, 1 - 1e-7)
    T = 1.0 if loss == "l2" else 2.0
    out = convention_objective(convention, loss, s, pi, "probabilities", y, None, T, 0.4, "one")
    du_dpi = DU_DPI["pfd_ref" if convention == "pfd_ref" else (convention, loss)](pi)
    numeric = numerical_gradient(lambda: 0.4 * convention_objective(convention, loss, s, pi, "probabilities", y, None, T,
                                                                    0.4, "one")["loss.soft"], pi, eps=1e-8)
    assert relative_error(out["grad.teacher_without_stop_gradient"] * du_dpi, numeric) < 1e-6


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), lam=st.sampled_from([0.0, 0.3, 1.0]), T=st.sampled_from([0.5, 1.0, 3.0]),
       dtype=st.sampled_from([np.float32, np.float64]), weighted=st.booleans(),
       hard_weight=st.sampled_from(["one_minus_lambda", "one"]))
def test_pfd_ref_convention_is_what_pfd_ref_trains_with(seed, lam, T, dtype, weighted, hard_weight):
    """Total and student gradient equal distill.student_objective's bit for bit."""
    s, t, y, w = _batch(seed, n=12, weighted=weighted)
    s, t = s.astype(dtype), t.astype(dtype)
    w = None if w is None else w.astype(dtype)
    out = convention_objective("pfd_ref", "bce", s, t, "logits", y, w, T, lam, hard_weight)
    config = DistillConfig(lambda_=lam, temperature=T, hard_weight=hard_weight)
    terms, d_s = student_objective(s, y, t, lam, config, w)
    assert out["loss.total"].tobytes() == np.asarray(terms["student_total"]).tobytes()
    assert out["loss.soft"].tobytes() == np.asarray(terms["soft"]).tobytes()
    assert out["grad.student_logits"].tobytes() == d_s.tobytes()
    assert out["grad.student_logits"].dtype == dtype and out["loss.total"].dtype == dtype


def test_kl_and_bce_share_the_student_gradient_and_differ_by_the_teachers_entropy():
    s, t, y, w = _batch(3, weighted=True)
    bce = convention_objective("pfd_ref", "bce", s, t, "logits", y, w, 2.0)
    kl = convention_objective("pfd_ref", "kl", s, t, "logits", y, w, 2.0)
    np.testing.assert_allclose(kl["grad.student_logits"], bce["grad.student_logits"], rtol=1e-15)
    p = sigmoid(t / 2.0)
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert float(bce["loss.soft"] - kl["loss.soft"]) == pytest.approx(4.0 * np.sum(w * entropy) / len(s), rel=1e-12)


def test_easyrec_by_hand():
    """One row, T = 2, lambda 0.5, hard weight one: each loss type from its TensorFlow formula."""
    s, t, y, T = 1.3, -0.4, 1, 2.0
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    p, q, eps = sig(t / T), sig(s / T), KERAS_EPSILON
    expected = {
        "bce": max(s / T, 0) - p * s / T + math.log1p(math.exp(-abs(s / T))),
        "ce": -p * math.log(q + eps) - (1 - p) * math.log(1 - q + eps),
        "kl": p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)),
    }
    hard = math.log1p(math.exp(-s))  # y = 1
    for loss, soft in expected.items():
        out = convention_objective("easyrec", loss, np.array([s]), np.array([t]), "logits", np.array([y]), None, T, 0.5)
        assert float(out["loss.soft"]) == pytest.approx(soft, rel=1e-13), loss
        assert float(out["loss.total"]) == pytest.approx(hard + 0.5 * soft, rel=1e-13), loss
    out = convention_objective("easyrec", "l2", np.array([s]), np.array([t]), "logits", np.array([y]), None, 1.0, 0.5)
    assert float(out["loss.soft"]) == pytest.approx((s - t) ** 2, rel=1e-15)


def test_easyrec_clips_probabilities_at_keras_epsilon():
    """bce/kl read a probability below 1e-7 as 1e-7 (and above 1 - 1e-7 as 1 - 1e-7); ce adds 1e-7."""
    s, y = np.array([0.3, -0.2]), np.array([1, 0])
    for loss in ("bce", "kl"):
        at_floor = convention_objective("easyrec", loss, s, np.array([1e-7, 1 - 1e-7]), "probabilities", y, None, 2.0)
        beyond = convention_objective("easyrec", loss, s, np.array([0.0, 1.0]), "probabilities", y, None, 2.0)
        assert float(beyond["loss.soft"]) == float(at_floor["loss.soft"])
    u = teacher_value("easyrec", "ce", np.array([0.0, 0.5]), "probabilities")
    np.testing.assert_allclose(u, np.log([1e-7, 0.5 + 1e-7]), rtol=1e-15)


def test_pfd_ref_reads_probabilities_without_clipping():
    pi = np.array([0.0, 1.0, 1e-9, 0.25])
    t = logits_from_probabilities(pi, temperature=3.0)
    assert t[0] == -SATURATED_LOGIT * 3 and t[1] == SATURATED_LOGIT * 3
    soft_label = sigmoid(t / 3.0)
    assert soft_label[0] == 0.0 and soft_label[1] == 1.0  # exactly the 0 and 1 given
    assert soft_label[2] == pytest.approx(1 / (1 + (1 / 1e-9 - 1) ** (1 / 3)), rel=1e-12)
    np.testing.assert_allclose(sigmoid(logits_from_probabilities(pi[2:])), pi[2:], rtol=1e-13)
    assert logits_from_probabilities(pi.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="^probabilities: probabilities must lie in \\[0, 1\\]; row 1 holds 1.5"):
        logits_from_probabilities(np.array([0.5, 1.5]))


@pytest.mark.parametrize("weighted", [False, True])
def test_reductions(weighted):
    """pfd_ref divides sum_i w_i l_i by n; EasyRec's hard loss and Rocket Launching by the
    number of non-zero weights; EasyRec's soft losses ignore the weights."""
    s, t, y, w = _batch(4, n=6, weighted=weighted)
    per_example_hard = np.log1p(np.exp(s)) - y * s
    weight = np.ones(6) if w is None else w
    count = np.count_nonzero(weight)
    ref = convention_objective("pfd_ref", "bce", s, t, "logits", y, w, 1.0)
    easy = convention_objective("easyrec", "l2", s, t, "logits", y, w, 1.0)
    rocket = convention_objective("rocket", "l2", s, t, "logits", y, w, 1.0)
    assert float(ref["loss.hard"]) == pytest.approx(np.sum(weight * per_example_hard) / 6, rel=1e-13)
    assert float(easy["loss.hard"]) == pytest.approx(np.sum(weight * per_example_hard) / count, rel=1e-13)
    assert float(easy["loss.soft"]) == pytest.approx(np.mean((s - t) ** 2), rel=1e-13)
    assert float(rocket["loss.soft"]) == pytest.approx(np.sum(weight * (s - t) ** 2) / count, rel=1e-13)


def test_all_zero_weights_give_tensorflows_zero():
    s, t, y, _ = _batch(5, n=4)
    out = convention_objective("rocket", "l2", s, t, "logits", y, np.zeros(4), 1.0, 0.5)
    assert float(out["loss.total"]) == 0.0 and not np.any(out["grad.student_logits"])


@pytest.mark.parametrize("convention, loss", COMBINATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_and_saturated_probabilities_stay_finite(convention, loss, dtype):
    s = np.array([1e4, -1e4, 1e4, 0.0], dtype)
    t = np.array([-1e4, 1e4, 1e4, 0.0], dtype)
    y = np.array([0, 1, 1, 0])
    inputs = [("logits", t)] + ([] if convention == "rocket" else [("probabilities", np.array([0, 1, 1, 0.5], dtype))])
    for teacher_input, teacher in inputs:
        out = convention_objective(convention, loss, s, teacher, teacher_input, y, None, 1.0 if loss == "l2" else 2.0)
        for name, value in out.items():
            assert value.dtype == dtype and np.all(np.isfinite(value)), (teacher_input, name)


@pytest.mark.parametrize("arguments, message", [
    (("tf", "bce", "logits", 1.0), "^convention: unknown convention 'tf'"),
    (("pfd_ref", "ce", "logits", 1.0), "^loss: the pfd_ref convention defines bce, kl; got 'ce'"),
    (("rocket", "bce", "logits", 1.0), "^loss: the rocket convention defines l2"),
    (("easyrec", "bce", "scores", 1.0), "^teacher_input: expected one of"),
    (("easyrec", "l2", "logits", 2.0), "^temperature: the easyrec l2 loss has no temperature"),
    (("rocket", "l2", "probabilities", 1.0), "^teacher_input: Rocket Launching's hint loss reads the booster's logits"),
    (("easyrec", "bce", "logits", 0.0), "^temperature"),
])
def test_unknown_or_incompatible_settings_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        check_convention(*arguments)


def test_bad_inputs_are_named():
    s, t, y, _ = _batch(6, n=3)
    with pytest.raises(ValueError, match="^teacher: expected dtype float64"):
        convention_objective("pfd_ref", "bce", s, t.astype(np.float32), "logits", y)
    for convention in ("pfd_ref", "easyrec"):  # EasyRec would clip -0.1 silently: here it is an error
        with pytest.raises(ValueError, match="^teacher: probabilities must lie in \\[0, 1\\]; row 1 holds -0.1"):
            convention_objective(convention, "bce", s, np.array([0.5, -0.1, 0.2]), "probabilities", y)
    with pytest.raises(ValueError, match="^teacher: contains NaN"):
        convention_objective("easyrec", "bce", s, np.array([0.5, np.nan, 0.2]), "probabilities", y)
    with pytest.raises(ValueError, match="^lambda: must be <= 1"):
        convention_objective("pfd_ref", "bce", s, t, "logits", y, lam=1.5)
    with pytest.raises(ValueError, match="^hard_weight"):
        convention_objective("pfd_ref", "bce", s, t, "logits", y, hard_weight="half")

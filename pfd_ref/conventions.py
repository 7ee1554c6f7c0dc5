"""The distillation objective as three frameworks define it: pfd_ref's own, EasyRec's ``kd``
block, and Rocket Launching's hint loss. docs/oracle.md ("Conventions") states each formula
and cites the file of the framework that defines it; docs/derivations.md derives every
gradient under ``pfd_ref.conventions.convention_objective``.

Notation: ``s`` the student's logits, the teacher's input (``t`` logits or ``pi``
probabilities), ``y`` labels, ``w`` optional per-example weights, ``T`` the temperature,
``lambda`` the soft-loss weight, ``sigma`` the sigmoid, ``n`` the batch size. Every
convention first forms ``u``, the teacher value its soft loss reads (``teacher_value``), then

    total = a * L_hard(y, s) + lambda * L_soft(s, u),      a = 1 - lambda  or  1  (hard_weight)

with ``u`` a constant (stop-gradient). Reductions differ: pfd_ref divides ``sum_i w_i l_i`` by
``n``; EasyRec's hard loss and Rocket Launching divide by the number of non-zero weights
(TensorFlow's ``SUM_BY_NONZERO_WEIGHTS``), and EasyRec's soft losses ignore the sample
weights (an unweighted mean).
"""

from __future__ import annotations

import numpy as np

from pfd_ref.distill import DistillConfig
from pfd_ref.losses import hard_loss, log_sigmoid, sigmoid, soft_loss
from pfd_ref.validation import (check_choice, check_float_array, check_labels, check_probabilities, check_scalar, check_shape,
                                check_weights)

CONVENTIONS = ("pfd_ref", "easyrec", "rocket")
LOSSES = ("bce", "kl", "l2", "ce")
LOSSES_OF = {"pfd_ref": ("bce", "kl"), "easyrec": ("bce", "kl", "ce", "l2"), "rocket": ("l2",)}
TEACHER_INPUTS = ("logits", "probabilities")
DEFAULT_HARD_WEIGHT = {"pfd_ref": "one_minus_lambda", "easyrec": "one", "rocket": "one"}
# EasyRec clips probabilities at tf.keras.backend.epsilon() and adds it inside log_loss's logs.
KERAS_EPSILON = 1e-7
# sigma(+-1000) is exactly 1 or 0 in float32 and float64: exp(-1000) underflows to 0.
SATURATED_LOGIT = 1000.0


def check_convention(convention: str, loss: str, teacher_input: str, temperature: float) -> None:
    """Raise ValueError naming the argument unless ``loss`` is one of ``LOSSES_OF[convention]``
    and ``teacher_input``, ``temperature`` fit it (Rocket Launching reads teacher logits; its
    hint loss and EasyRec's L2_LOSS have no temperature, so T must be 1)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: unknown convention {convention!r}; expected one of {CONVENTIONS}")
    if loss not in LOSSES_OF[convention]:
        raise ValueError(f"loss: the {convention} convention defines {', '.join(LOSSES_OF[convention])}; got {loss!r}")
    check_choice("teacher_input", teacher_input, TEACHER_INPUTS)
    check_scalar("temperature", temperature, float, low=0, low_open=True)
    if loss == "l2" and temperature != 1:
        raise ValueError(f"temperature: the {convention} l2 loss has no temperature (it compares raw values); "
                         f"leave it at 1, got {temperature!r}")
    if convention == "rocket" and teacher_input != "logits":
        raise ValueError("teacher_input: Rocket Launching's hint loss reads the booster's logits, not probabilities")


def logits_from_probabilities(probabilities: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """pfd_ref's reading of a teacher's probabilities as logits, for ``soft_loss``:

        t_i = log pi_i - log(1 - pi_i)     for 0 < pi_i < 1
        t_i = +-SATURATED_LOGIT * T        for pi_i = 1, 0

    so that the soft label ``sigma(t_i / T)`` is ``sigma(logit(pi_i) / T)``, exactly 0 or 1 at
    the ends (``sigma(+-1000)`` rounds to 1 and 0 in float32 and float64). No clipping.

    probabilities : (n,) float32/float64 in [0, 1]; temperature : finite > 0 with
    ``1000 T`` finite in the dtype. Returns (n,) logits in the same dtype.
    """
    probabilities = check_probabilities("probabilities", probabilities)
    saturated = probabilities.dtype.type(SATURATED_LOGIT * check_scalar("temperature", temperature, float, low=0, low_open=True))
    if not np.isfinite(saturated):
        raise ValueError(f"temperature: {temperature!r} is too large for {probabilities.dtype} logits")
    inside = (probabilities > 0) & (probabilities < 1)
    clipped = np.where(inside, probabilities, probabilities.dtype.type(0.5))  # no log(0) warnings
    logits = np.log(clipped) - np.log1p(-clipped)
    return np.where(inside, logits, np.where(probabilities == 1, saturated, -saturated))


def teacher_value(convention: str, loss: str, teacher: np.ndarray, teacher_input: str, temperature: float = 1.0):
    """``u``, the teacher value the convention's soft loss reads (before dividing by ``T``):

        logits input:                 u = t                              (every convention)
        pfd_ref, probabilities:       u = logits_from_probabilities(pi, T)
        easyrec bce/kl, probabilities: u = log c - log(1 - c),  c = clip(pi, 1e-7, 1 - 1e-7)
        easyrec ce, probabilities:    u = log(pi + 1e-7)
        easyrec l2:                   u = the input as given (logits or probabilities)

    teacher : (n,) float32/float64 (probabilities in [0, 1]). Returns (n,) in its dtype.
    """
    if teacher_input == "logits":
        return teacher
    if convention == "pfd_ref":
        return logits_from_probabilities(teacher, temperature)
    if loss == "l2":
        return teacher
    epsilon = teacher.dtype.type(KERAS_EPSILON)
    if loss == "ce":
        return np.log(teacher + epsilon)
    clipped = np.clip(teacher, epsilon, 1 - epsilon)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid_pair(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sigma(x), sigma(-x)) = (sigma(x), 1 - sigma(x))``, each to full relative precision."""
    return sigmoid(x), sigmoid(-x)


def _nonzero_count(weights: np.ndarray | None, n: int) -> int:
    """The denominator of TensorFlow's SUM_BY_NONZERO_WEIGHTS: n without weights, else #{w_i != 0}."""
    return n if weights is None else int(np.count_nonzero(weights))


def _pfd_ref_soft(loss, s, u, temperature, weights):
    """pfd_ref: ``losses.soft_loss`` (``T^2`` BCE, mean over n); ``kl`` subtracts the teacher's
    entropy ``T^2 H(p)``, which leaves ``d/ds`` unchanged. ``d/du``: bce ``-s p (1 - p) w / n``,
    kl ``(u - s) p (1 - p) w / n``."""
    n = s.shape[0]
    value, d_s = soft_loss(s, u, temperature, weights)
    p, one_minus_p = _sigmoid_pair(u / temperature)
    scale = (1 if weights is None else weights) / s.dtype.type(n)
    if loss == "bce":
        return value, d_s, -s * p * one_minus_p * scale
    # H(p) = -[p log p + (1 - p) log(1 - p)]; u is finite, so 0 * log(...) is 0, never nan
    entropy = -(p * log_sigmoid(u / temperature) + one_minus_p * log_sigmoid(-u / temperature))
    entropy_mean = np.sum(entropy if weights is None else weights * entropy) / s.dtype.type(n)
    return value - temperature**2 * entropy_mean, d_s, (u - s) * p * one_minus_p * scale


def _easyrec_soft(loss, s, u, temperature):
    """EasyRec's ``kd`` losses (``build_kd_loss``), unweighted means over n; see the module and
    docs/oracle.md for the formulas, docs/derivations.md for the gradients."""
    n = s.dtype.type(s.shape[0])
    if loss == "l2":  # tf.losses.mean_squared_error(label=u, pred=s): no conversion, no temperature
        difference = s - u
        return np.sum(difference * difference) / n, 2 * difference / n, -2 * difference / n
    epsilon = s.dtype.type(KERAS_EPSILON)
    z = s / temperature
    q, one_minus_q = _sigmoid_pair(z)
    p, one_minus_p = _sigmoid_pair(u / temperature)
    d_q_d_s, d_p_d_u = q * one_minus_q / temperature, p * one_minus_p / temperature
    if loss == "bce":  # keras binary_crossentropy(p, z, from_logits=True) = softplus(z) - p z
        terms = np.maximum(z, 0) - p * z + np.log1p(np.exp(-np.abs(z)))
        return np.sum(terms) / n, (q - p) / temperature / n, -z * d_p_d_u / n
    if loss == "ce":  # tf.losses.log_loss(p, q): -p log(q + eps) - (1 - p) log(1 - q + eps)
        log_q, log_one_minus_q = np.log(q + epsilon), np.log(one_minus_q + epsilon)
        terms = -p * log_q - one_minus_p * log_one_minus_q
        d_q = -p / (q + epsilon) + one_minus_p / (one_minus_q + epsilon)
        return np.sum(terms) / n, d_q * d_q_d_s / n, (log_one_minus_q - log_q) * d_p_d_u / n
    # kl: keras KLD([1 - p, p], [1 - q, q]) with both clipped to [eps, 1]
    y1, y0 = np.maximum(p, epsilon), np.maximum(one_minus_p, epsilon)
    yhat1, yhat0 = np.maximum(q, epsilon), np.maximum(one_minus_q, epsilon)
    log_epsilon, scaled_u = np.log(epsilon), u / temperature  # logs of the clipped values, via log_sigmoid
    log_ratio1 = (np.where(p >= epsilon, log_sigmoid(scaled_u), log_epsilon)
                  - np.where(q >= epsilon, log_sigmoid(z), log_epsilon))
    log_ratio0 = (np.where(one_minus_p >= epsilon, log_sigmoid(-scaled_u), log_epsilon)
                  - np.where(one_minus_q >= epsilon, log_sigmoid(-z), log_epsilon))
    terms = y1 * log_ratio1 + y0 * log_ratio0
    d_q = -np.where(q >= epsilon, y1 / yhat1, 0) + np.where(one_minus_q >= epsilon, y0 / yhat0, 0)
    d_p = np.where(p >= epsilon, log_ratio1 + 1, 0) - np.where(one_minus_p >= epsilon, log_ratio0 + 1, 0)
    return np.sum(terms) / n, d_q * d_q_d_s / n, d_p * d_p_d_u / n


def _rocket_soft(s, u, weights):
    """Rocket Launching's hint loss as EasyRec builds it: ``sum_i w_i (s_i - u_i)^2 / N``,
    N the number of non-zero weights (n without weights; 0 when every weight is 0)."""
    count = _nonzero_count(weights, s.shape[0])
    if count == 0:
        zeros = np.zeros_like(s)
        return s.dtype.type(0), zeros, zeros
    difference = s - u
    weighted = difference if weights is None else weights * difference
    scale = s.dtype.type(count)
    return np.sum(weighted * difference) / scale, 2 * weighted / scale, -2 * weighted / scale


def _hard(convention, s, labels, weights):
    """``(L_hard, dL_hard/ds)``: ``losses.hard_loss`` (``sum_i w_i l_i / n``) for pfd_ref;
    rescaled by ``n / N`` (N = number of non-zero weights, TensorFlow's
    SUM_BY_NONZERO_WEIGHTS; 0 when every weight is 0) for EasyRec and Rocket Launching."""
    value, d_s = hard_loss(s, labels, weights)
    if convention == "pfd_ref" or weights is None:
        return value, d_s
    count = _nonzero_count(weights, s.shape[0])
    scale = s.dtype.type(s.shape[0] / count) if count else s.dtype.type(0)
    return value * scale, d_s * scale


def convention_objective(convention: str, loss: str, student_logits: np.ndarray, teacher: np.ndarray,
                         teacher_input: str, labels, weights: np.ndarray | None = None, temperature: float = 1.0,
                         lam: float = 0.5, hard_weight: str | None = None) -> dict[str, np.ndarray]:
    """The student's distillation objective under ``convention``, its terms and gradients.

        total = a * hard + lam * soft,   a = 1 - lam ("one_minus_lambda") or 1 ("one")
        d total / ds = a * dhard/ds + lam * dsoft/ds;   d total / d teacher = 0 (stop-gradient)

    hard = binary cross-entropy with the labels; soft = the convention's soft loss of ``s``
    against ``u = teacher_value(...)`` (docs/oracle.md lists each formula).

    student_logits : (n,) float32/float64, finite, n >= 1; teacher : (n,) of the same dtype,
    finite (``teacher_input`` "logits"), or in [0, 1] ("probabilities"); labels : (n,) 0/1;
    weights : None or (n,) >= 0 in the logits' dtype; temperature > 0; lam >= 0 (<= 1 with
    "one_minus_lambda"); hard_weight : None for ``DEFAULT_HARD_WEIGHT[convention]``.
    Returns, in the logits' dtype: ``loss.hard``, ``loss.soft``, ``loss.total`` (0-d),
    ``grad.hard``, ``grad.soft`` (``dL/ds`` of each term), ``grad.student_logits`` (of the
    total), ``grad.teacher_without_stop_gradient`` (``lam * dsoft/du``: what the stop-gradient
    removes, in the teacher value ``u``), each (n,).
    """
    check_convention(convention, loss, teacher_input, temperature)
    hard_weight = DEFAULT_HARD_WEIGHT[convention] if hard_weight is None else hard_weight
    DistillConfig(lambda_=lam, temperature=temperature, hard_weight=hard_weight)  # checks lambda and the hard weight
    lam = float(lam)
    s = check_float_array("student_logits", student_logits, ndim=1)
    n = s.shape[0]
    if n == 0:
        raise ValueError("student_logits: empty batch, the mean loss is undefined")
    if teacher_input == "probabilities":
        teacher = check_probabilities("teacher", teacher, dtype=s.dtype)
    else:
        teacher = check_float_array("teacher", teacher, ndim=1, dtype=s.dtype)
    check_shape("teacher", teacher, (n,))
    labels = check_labels("labels", labels, n)
    weights = check_weights("weights", weights, n, s.dtype)
    u = teacher_value(convention, loss, teacher, teacher_input, temperature)
    hard, d_hard = _hard(convention, s, labels, weights)
    if convention == "pfd_ref":
        soft, d_soft, d_u = _pfd_ref_soft(loss, s, u, temperature, weights)
    elif convention == "easyrec":
        soft, d_soft, d_u = _easyrec_soft(loss, s, u, temperature)
    else:
        soft, d_soft, d_u = _rocket_soft(s, u, weights)
    dtype = s.dtype.type
    hard_scale, lam_ = dtype(1 - lam if hard_weight == "one_minus_lambda" else 1), dtype(lam)
    if lam == 0:  # as distill.student_objective: the soft term is not added (no -0.0 + 0.0 in the gradient)
        total, d_total = hard, d_hard.copy()
    else:
        total, d_total = hard_scale * hard + lam_ * soft, hard_scale * d_hard + lam_ * d_soft
    return {
        "loss.hard": np.asarray(hard, s.dtype), "loss.soft": np.asarray(soft, s.dtype),
        "loss.total": np.asarray(total, s.dtype), "grad.hard": d_hard, "grad.soft": d_soft,
        "grad.student_logits": d_total, "grad.teacher_without_stop_gradient": lam_ * d_u,
    }

"""The losses of pfd_ref on logits, with their gradients: the binary cross-entropies of PFD
(``hard_loss``, ``soft_loss``) and the auxiliary losses of the MTL control (``squared_error_loss``,
``softmax_loss``; ``hard_loss`` serves its binary targets).

``s(x) = 1 / (1 + exp(-x))`` is the sigmoid. Every loss is a mean over the batch,
``L = (1/n) sum_i w_i l_i`` (``w_i = 1`` without weights), returned as a NumPy scalar of the
logits' dtype together with the gradient wrt the (student's) logits in the same dtype. The
derivations are in docs/derivations.md under each function's name.

Stability: every term is written with ``sigmoid`` and ``log_sigmoid`` below, the one
definition of each, which use ``exp(-|x|)`` only; it never overflows, so every per-example
term and every gradient entry is finite, without warnings, for logits of any finite
magnitude that float32/float64 hold (checked from ``|x| = 1e4`` to ``3e38``).
``exp(-|x|)`` may underflow to 0, which is exact to the working precision. The soft
gradient's ``q - p`` is ``sigmoid_difference``, accurate to a few ulps relative even where
the student and the teacher agree (no difference of two nearly equal sigmoids). The mean
``(1/n) sum_i w_i l_i`` is summed in float64 and rounded to the logits' dtype: it is finite
whenever it fits that dtype (a float32 loss of per-example terms near 3e38 included); a mean
beyond it is infinite, which training refuses (``train.check_finite_loss``).

The functions trust their inputs (shapes, dtypes, 0/1 labels, finite values, ``T > 0``):
pfd_ref checks them where they enter (``Dataset``, ``Model.forward``, ``DistillConfig``;
docs/conventions.md, "Errors"). Called on arrays of your own, check them first with
``pfd_ref.validation``.
"""

from __future__ import annotations

import numpy as np



def exp_minus_abs(x: np.ndarray) -> np.ndarray:
    """``e = exp(-|x|)``, elementwise, in ``(0, 1]`` (0 where it underflows): what
    ``sigmoid`` and ``log_sigmoid`` evaluate ``x`` and ``-x`` through (``|-x| = |x|``, so one
    ``e`` serves both signs; the losses compute it once per input and pass it on).

    x : float32/float64 array of any shape (not checked). Returns the same shape and dtype.
    """
    return np.exp(-np.abs(x))


def log_sigmoid(x: np.ndarray, e: np.ndarray | None = None) -> np.ndarray:
    """``log s(x) = -log(1 + exp(-x)) = min(x, 0) - log1p(exp(-|x|))``, elementwise.

    x : float32/float64 array of any shape (not checked); e : ``exp_minus_abs(x)`` (or of
    ``-x``, the same values) when the caller has it, else None. Returns the same shape and
    dtype as ``x``. Derivative (used by the losses): ``d/dx log s(x) = 1 - s(x) = s(-x)``.
    """
    return np.minimum(x, 0) - np.log1p(exp_minus_abs(x) if e is None else e)


def sigmoid(x: np.ndarray, e: np.ndarray | None = None) -> np.ndarray:
    """``s(x) = 1 / (1 + exp(-x))``, evaluated as ``1 / (1 + e)`` for ``x >= 0`` and
    ``e / (1 + e)`` for ``x < 0`` with ``e = exp(-|x|)``.

    x : float32/float64 array of any shape (not checked); e : ``exp_minus_abs(x)`` (or of
    ``-x``, the same values) when the caller has it, else None. Returns the same shape and
    dtype as ``x``, in ``[0, 1]``. Derivative: ``s'(x) = s(x) s(-x)``. The scoring kernel's
    scalar twin is ``pfd_ref.kernels.mlp.sigmoid`` (the same formula, within 4 ulp: libm's ``exp``).
    """
    e = exp_minus_abs(x) if e is None else e
    denominator = 1 + e
    return np.where(x >= 0, 1 / denominator, e / denominator)


def _weighted_mean(terms: np.ndarray, weights: np.ndarray | None):
    """``(1/n) sum_i w_i terms_i``, the products and the sum in float64, returned as a NumPy
    scalar of the terms' dtype: a float32 loss does not overflow while the mean itself fits
    float32 (float64 terms are summed exactly as before: the same operations)."""
    wide = terms.astype(np.float64, copy=False)
    weighted = wide if weights is None else weights.astype(np.float64, copy=False) * wide
    return (weighted.sum() / terms.shape[0]).astype(terms.dtype)


def hard_loss(logits: np.ndarray, labels, weights: np.ndarray | None = None):
    """Binary cross-entropy with the labels (the "hard" loss):

        l_i = -[y_i log s(z_i) + (1 - y_i) log(1 - s(z_i))] = softplus(z_i) - y_i z_i
        L   = (1/n) sum_i w_i l_i
        dL/dz_i = w_i (s(z_i) - y_i) / n

    Evaluated with the sign ``a_i = 2 y_i - 1`` as ``l_i = -log s(a_i z_i)`` and
    ``s(z_i) - y_i = -a_i s(-a_i z_i)``, which keeps full relative precision when the
    prediction is nearly right.

    logits ``z`` : float32/float64 ``(n,)``, finite, n >= 1; labels ``y`` : ``(n,)`` of any
    numeric dtype holding 0/1; weights ``w`` : ``(n,)`` non-negative in the logits' dtype,
    or None for all ones. Returns ``(L, dL/dz)``: a NumPy scalar and an ``(n,)`` array, both
    in the logits' dtype; ``dL/dz`` is finite for any finite logits, ``L`` whenever the mean
    fits the dtype (summed in float64: at float32 logits of +-3e38, ``L`` is 3e38).
    """
    n = logits.shape[0]
    sign = 2 * np.asarray(labels, dtype=logits.dtype) - 1
    signed_logits = sign * logits
    e = exp_minus_abs(signed_logits)  # of -signed_logits too
    loss = _weighted_mean(-log_sigmoid(signed_logits, e), weights)
    d_logits = -sign * sigmoid(-signed_logits, e) / n
    if weights is not None:
        d_logits *= weights
    return loss, d_logits


def soft_loss(student_logits: np.ndarray, teacher_logits: np.ndarray, temperature: float = 1.0,
              weights: np.ndarray | None = None):
    """Binary cross-entropy of the student against the teacher's probability (the "soft" loss),
    with temperature ``T > 0``:

        p_i = s(t_i / T)  (teacher, the soft label),   q_i = s(z_i / T)  (student)
        l_i = T^2 * -[p_i log q_i + (1 - p_i) log(1 - q_i)]
        L   = (1/n) sum_i w_i l_i
        dL/dz_i = w_i T (q_i - p_i) / n          (q_i - p_i: ``sigmoid_difference``)

    ``log q_i`` and ``log(1 - q_i)`` are ``log_sigmoid(z_i / T)`` and ``log_sigmoid(-z_i / T)``,
    and ``1 - p_i`` is ``s(-t_i / T)``.
    The ``T^2`` factor (Hinton et al., 2015) keeps the gradient's magnitude roughly independent
    of ``T``, so the soft-loss weight lambda means the same at any temperature; at ``T = 1`` the
    loss is exactly the paper's. When ``z == t`` the gradient is exactly zero (``sigmoid_difference``
    multiplies by ``1 - exp(0) = 0``) and ``l_i = T^2 H(p_i)``, the binary entropy.

    Stop-gradient: the teacher's logits are a constant here; no gradient wrt ``t`` is computed
    or returned, so the soft loss never moves the teacher.

    student_logits ``z``, teacher_logits ``t`` : ``(n,)`` of one float dtype, finite, n >= 1;
    temperature : finite > 0 (``z / T`` and ``T^2 L`` must stay within the dtype's range);
    weights ``w`` : ``(n,)`` non-negative in that dtype, or None. Returns ``(L, dL/dz)``: a
    NumPy scalar and an ``(n,)`` array in the logits' dtype.
    """
    n = student_logits.shape[0]
    scaled_student, scaled_teacher = student_logits / temperature, teacher_logits / temperature
    e_teacher, e_student = exp_minus_abs(scaled_teacher), exp_minus_abs(scaled_student)  # one per input and both signs
    teacher_prob = sigmoid(scaled_teacher, e_teacher)
    teacher_complement = sigmoid(-scaled_teacher, e_teacher)  # 1 - p without cancellation when p is near 1
    cross_entropy = -(teacher_prob * log_sigmoid(scaled_student, e_student)
                      + teacher_complement * log_sigmoid(-scaled_student, e_student))
    loss = _weighted_mean(temperature**2 * cross_entropy, weights)
    d_student = temperature * sigmoid_difference(student_logits, teacher_logits, temperature, teacher_prob,
                                                 teacher_complement, e_student) / n
    if weights is not None:
        d_student *= weights
    return loss, d_student


def sigmoid_difference(z: np.ndarray, t: np.ndarray, temperature: float = 1.0, p: np.ndarray | None = None,
                       p_complement: np.ndarray | None = None, e_student: np.ndarray | None = None) -> np.ndarray:
    """``q - p = s(z/T) - s(t/T)`` to full relative precision, elementwise:

        q - p =  q (1 - p) (1 - exp(-(z - t)/T))     where z >= t
        q - p = -p (1 - q) (1 - exp(-(t - z)/T))     where z <  t

    with ``1 - exp(-x)`` as ``-expm1(-x)`` and ``z - t`` formed from the logits themselves
    (exact when they are close), so no two nearly equal numbers are ever subtracted: the
    plain difference of two sigmoids loses every digit where ``q`` and ``p`` agree to the
    dtype's precision (in float32, 10% at ``T = 1`` and 27% at ``T = 1e3`` where ``|z - t|``
    is 1e-3 and the logits large; a few ulps here). Exactly 0 where ``z == t``.

    z, t : arrays of one float dtype and shape; temperature : ``T > 0``; ``p = s(t/T)``,
    ``p_complement = s(-t/T)`` and ``e_student = exp_minus_abs(z/T)`` when already computed.
    Returns the shape and dtype of ``z``.
    """
    scaled_student = z / temperature
    p = sigmoid(t / temperature) if p is None else p
    p_complement = sigmoid(-t / temperature) if p_complement is None else p_complement
    e_student = exp_minus_abs(scaled_student) if e_student is None else e_student
    with np.errstate(over="ignore"):  # |z - t| beyond the dtype's range: expm1(-inf) = -1, exact
        shrink = -np.expm1(-np.abs(z - t) / temperature)
    above = z >= t
    return np.where(above, sigmoid(scaled_student, e_student) * p_complement * shrink,
                    -(p * sigmoid(-scaled_student, e_student) * shrink))


def squared_error_loss(predictions: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None):
    """Squared error summed over the columns, averaged over the batch (an auxiliary MSE loss):

        l_i = sum_c (o_ic - z_ic)^2
        L   = (1/n) sum_i w_i l_i
        dL/do_ic = 2 w_i (o_ic - z_ic) / n

    With one column this is ``torch.nn.functional.mse_loss`` (mean reduction) and TensorFlow's
    ``mean_squared_error``. predictions ``o``, targets ``z`` : ``(n, k)`` of one float dtype,
    finite, n >= 1; weights ``w`` : ``(n,)`` in that dtype, or None. Returns ``(L, dL/do)``: a
    NumPy scalar and an ``(n, k)`` array in that dtype.
    """
    n = predictions.shape[0]
    residuals = predictions - targets
    loss = _weighted_mean((residuals * residuals).sum(axis=1), weights)
    d_predictions = (2 / n) * residuals
    if weights is not None:
        d_predictions *= weights[:, None]
    return loss, d_predictions


def softmax_loss(logits: np.ndarray, classes: np.ndarray, weights: np.ndarray | None = None):
    """Multi-class log loss (softmax cross-entropy) of the class ids ``classes``:

        log p_ic = z_ic - m_i - log sum_k exp(z_ik - m_i),   m_i = max_k z_ik
        l_i = -log p_{i, y_i}
        L   = (1/n) sum_i w_i l_i
        dL/dz_ic = w_i (p_ic - 1[c = y_i]) / n

    Subtracting the row maximum keeps every ``exp`` in ``(0, 1]`` (no overflow). This is
    ``torch.nn.functional.cross_entropy`` of the logits (with ``weight`` per row: ``(w * l).sum() / n``).
    logits ``z`` : ``(n, V)`` float32/float64, finite; classes ``y`` : ``(n,)`` integer ids in
    ``[0, V)``; weights ``w`` : ``(n,)`` in the logits' dtype, or None. Returns ``(L, dL/dz)``:
    a NumPy scalar and an ``(n, V)`` array in the logits' dtype.
    """
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exps = np.exp(shifted)
    sums = exps.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = _weighted_mean(np.log(sums[:, 0]) - shifted[rows, classes], weights)
    d_logits = exps / sums
    d_logits[rows, classes] -= 1
    d_logits /= n
    if weights is not None:
        d_logits *= weights[:, None]
    return loss, d_logits

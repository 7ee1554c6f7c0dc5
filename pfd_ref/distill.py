"""The PFD objective: which loss term updates which parameters, and the lambda schedule.

Synchronous PFD (Xu et al. 2020) minimises over the student's parameters ``W_s`` and the
teacher's ``W_t``::

    L = a(lambda) * L_hard(y, s) + lambda * L_soft(s, t) + L_hard(y, t)

with ``s = f_s(X; W_s)`` and ``t = f_t(X, X*; W_t)`` the logits, ``a(lambda) = 1 - lambda``
(the paper; ``hard_weight="one"`` gives ``a = 1``) and ``L_soft`` taking ``t`` as a constant
(stop-gradient): the teacher is moved only by its own hard loss. Two-stage PFD minimises the
first two terms with a frozen teacher. docs/method.md states the rule for shared embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfd_ref.losses import hard_loss, soft_loss
from pfd_ref.validation import check_choice, check_scalar

HARD_WEIGHTS = ("one_minus_lambda", "one")


@dataclass(frozen=True)
class DistillConfig:
    """Hyperparameters of the distillation term.

    lambda_ : weight of the soft loss after the warm-up (>= 0; <= 1 with the default hard weight).
    warmup_steps : optimizer steps at the start of synchronous training during which lambda = 0.
    temperature : T of ``soft_loss`` (> 0; the paper's binary setting is T = 1).
    hard_weight : "one_minus_lambda" (the paper's ``(1 - lambda) L_hard``) or "one" (``L_hard``).
    """

    lambda_: float = 0.5
    warmup_steps: int = 0
    temperature: float = 1.0
    hard_weight: str = "one_minus_lambda"

    def __post_init__(self):
        check_choice("hard_weight", self.hard_weight, HARD_WEIGHTS)
        object.__setattr__(self, "lambda_", check_scalar("lambda", self.lambda_, float, low=0))
        if self.hard_weight == "one_minus_lambda" and self.lambda_ > 1:
            raise ValueError(f"lambda: must be <= 1 when the hard loss is weighted by (1 - lambda), got {self.lambda_}")
        object.__setattr__(self, "warmup_steps", check_scalar("warmup_steps", self.warmup_steps, int, low=0))
        object.__setattr__(self, "temperature", check_scalar("temperature", self.temperature, float, low=0, low_open=True))


def lambda_at(step: int, config: DistillConfig) -> float:
    """``lambda(step) = 0`` for ``step < warmup_steps`` (0-based), ``config.lambda_`` afterwards."""
    return 0.0 if step < config.warmup_steps else config.lambda_


def student_objective(student_logits: np.ndarray, labels: np.ndarray, teacher_logits: np.ndarray | None,
                      lam: float, config: DistillConfig, weights: np.ndarray | None = None):
    """Student loss ``a(lam) * L_hard(y, s) + lam * L_soft(s, t)`` and its gradient in ``s``.

    student_logits, teacher_logits : ``(n,)`` of one float dtype (teacher may be None: no
    distillation, ``lam`` must then be 0); labels : ``(n,)`` in {0, 1}; weights : ``(n,)`` or None.
    Returns ``(terms, d_student_logits)`` with ``terms = {"hard", "soft", "student_total"}``
    (``soft`` is nan without a teacher) and ``d_s = a(lam) * dL_hard/ds + lam * dL_soft/ds``.
    ``t`` is a constant here: no gradient for the teacher is formed (stop-gradient).
    When ``lam == 0`` the soft term is reported but not added, so the gradient is bit-identical
    to the no-distillation baseline's.
    """
    hard, d_hard = hard_loss(student_logits, labels, weights)
    hard_scale = 1.0 - lam if config.hard_weight == "one_minus_lambda" else 1.0
    if teacher_logits is None:
        if lam != 0:
            raise ValueError("teacher_logits: required when lambda > 0")
        return {"hard": hard, "soft": np.nan, "student_total": hard}, d_hard
    soft, d_soft = soft_loss(student_logits, teacher_logits, config.temperature, weights)
    if lam == 0:
        return {"hard": hard, "soft": soft, "student_total": hard}, d_hard
    total = hard_scale * hard + lam * soft
    return {"hard": hard, "soft": soft, "student_total": total}, hard_scale * d_hard + lam * d_soft

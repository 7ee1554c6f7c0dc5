"""Distillation losses in PyTorch autograd, checked against pfd_ref's objective-level cases.

Three losses written from their frameworks' definitions (docs/oracle.md, "Objective-level
cases", cites the files), not from pfd_ref's code:

* ``pfd_ref``: ``T^2`` binary cross-entropy (or ``T^2`` KL) of ``sigmoid(s/T)`` against
  ``sigmoid(t/T)``; every term ``sum_i w_i l_i / n``;
* ``easyrec``: EasyRec's ``kd`` block (``build_kd_loss`` in
  easy_rec/python/builders/loss_builder.py), its four binary loss types, with TensorFlow's
  reductions (the hard loss divided by the number of non-zero weights, the kd loss an
  unweighted mean) and Keras' epsilon 1e-7;
* ``rocket``: Rocket Launching's hint loss, ``sum_i w_i (s_i - t_i)^2`` over the number of
  non-zero weights, as EasyRec's rocket_launching.py builds it, weighted by lambda.

``numpy_loss(convention)`` wraps one as the NumPy-in, NumPy-out callable that
``pfd_ref.objective_oracle.check_loss`` calls: autograd gives every gradient. Run::

    python docs/examples/torch_objective.py                # checks every convention, prints a summary
    python docs/examples/torch_objective.py --show easyrec --against pfd_ref --temperature 2
                                                           # EasyRec's loss judged by pfd_ref's convention

``tests/test_objective_torch.py`` runs these losses on every convention, loss and teacher
input in CI: the independent reproduction of pfd_ref's numbers.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

KERAS_EPSILON = 1e-7  # tf.keras.backend.epsilon()


def _nonzero_mean(per_example: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """TensorFlow's SUM_BY_NONZERO_WEIGHTS: ``sum_i w_i l_i / #{w_i != 0}``, 0 when every w_i is 0."""
    if weights is None:
        return per_example.mean()
    count = torch.count_nonzero(weights)
    return (weights * per_example).sum() / count if count > 0 else (weights * per_example).sum() * 0


def _batch_mean(per_example: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """pfd_ref's reduction: ``sum_i w_i l_i / n``."""
    weighted = per_example if weights is None else weights * per_example
    return weighted.sum() / per_example.shape[0]


def teacher_value(convention: str, teacher: torch.Tensor, settings: dict) -> torch.Tensor:
    """What the soft loss reads of the teacher, before the temperature: its logits, or the
    logit its framework forms from probabilities."""
    if settings["teacher_input"] == "logits" or (convention == "easyrec" and settings["loss"] == "l2"):
        return teacher
    if convention == "pfd_ref":  # no clipping: pi = 0 and 1 give -inf and +inf
        return torch.logit(teacher)
    if settings["loss"] == "ce":  # EasyRec: label = log(label + eps), read as a logit
        return torch.log(teacher + KERAS_EPSILON)
    clipped = torch.clamp(teacher, KERAS_EPSILON, 1 - KERAS_EPSILON)  # EasyRec bce / kl
    return torch.log(clipped / (1 - clipped))


def hard_loss(convention: str, s, labels, weights):
    per_example = F.binary_cross_entropy_with_logits(s, labels, reduction="none")
    return _batch_mean(per_example, weights) if convention == "pfd_ref" else _nonzero_mean(per_example, weights)


def soft_loss(convention: str, s, u, weights, settings):
    """The soft term of ``s`` against the teacher value ``u`` (already detached or not)."""
    loss, T = settings["loss"], settings["temperature"]
    if convention == "rocket":  # hint loss: MSE of the logits, the sample weights as in the hard loss
        return _nonzero_mean((s - u) ** 2, weights)
    if loss == "l2":  # EasyRec L2_LOSS: tf.losses.mean_squared_error(label, pred), no temperature
        return ((s - u) ** 2).mean()
    z, p, one_minus_p = s / T, torch.sigmoid(u / T), torch.sigmoid(-u / T)  # sigmoid(-x) = 1 - sigmoid(x)
    if convention == "pfd_ref":
        cross_entropy = F.binary_cross_entropy_with_logits(z, p, reduction="none")
        if loss == "kl":  # KL = cross-entropy - entropy of p; the entropy is 0 where p is 0 or 1 (u infinite)
            negative_entropy = p * F.logsigmoid(u / T) + one_minus_p * F.logsigmoid(-u / T)
            cross_entropy = cross_entropy + torch.where(torch.isfinite(u), negative_entropy, 0.0)
        return T**2 * _batch_mean(cross_entropy, weights)
    if loss == "bce":  # keras binary_crossentropy(label, pred / T, from_logits=True), reduce_mean
        return F.binary_cross_entropy_with_logits(z, p, reduction="none").mean()
    q, one_minus_q = torch.sigmoid(z), torch.sigmoid(-z)
    if loss == "ce":  # tf.losses.log_loss(label, pred): epsilon 1e-7 inside the logs
        return (-p * torch.log(q + KERAS_EPSILON) - one_minus_p * torch.log(one_minus_q + KERAS_EPSILON)).mean()
    # kl: keras KLD([1 - p, p], [1 - q, q]), both clipped to [eps, 1], summed over the two classes
    y = torch.clamp(torch.stack([one_minus_p, p]), KERAS_EPSILON, 1)
    y_hat = torch.clamp(torch.stack([one_minus_q, q]), KERAS_EPSILON, 1)
    return (y * torch.log(y / y_hat)).sum(0).mean()


def objective(convention: str, s, teacher, labels, weights, settings, stop_gradient: bool = True):
    """``{"hard", "soft", "total"}`` and the teacher value ``u``; ``total = a hard + lambda soft``."""
    u = teacher_value(convention, teacher, settings)
    hard = hard_loss(convention, s, labels, weights)
    soft = soft_loss(convention, s, u.detach() if stop_gradient else u, weights, settings)
    lam = settings["lambda"]
    hard_scale = 1 - lam if settings["hard_weight"] == "one_minus_lambda" else 1.0
    return {"hard": hard, "soft": soft, "total": hard_scale * hard + lam * soft}, u


def numpy_loss(convention: str, stop_gradient: bool = True):
    """The callable ``check_loss`` expects: NumPy inputs, autograd, NumPy outputs by the case's
    names. The removed teacher gradient is taken in ``u``; where ``u`` is infinite (pfd_ref's
    logit of a probability 0 or 1) it is the limit 0, since ``sigmoid'(u) = 0`` there."""
    def loss_fn(inputs: dict, settings: dict) -> dict:
        teacher_name = f"teacher_{settings['teacher_input']}"
        s = torch.tensor(inputs["student_logits"], requires_grad=True)
        teacher = torch.tensor(inputs[teacher_name], requires_grad=True)
        labels = torch.tensor(inputs["labels"], dtype=s.dtype)
        weights = None if inputs["weights"] is None else torch.tensor(inputs["weights"])
        terms, u = objective(convention, s, teacher, labels, weights, settings, stop_gradient)
        grad_s, grad_teacher = torch.autograd.grad(terms["total"], [s, teacher], retain_graph=True, allow_unused=True)
        grad_hard, = torch.autograd.grad(terms["hard"], [s], retain_graph=True)
        grad_soft, = torch.autograd.grad(terms["soft"], [s], retain_graph=True)
        u_leaf = u.detach().requires_grad_()
        grad_u, = torch.autograd.grad(settings["lambda"] * soft_loss(convention, s.detach(), u_leaf, weights, settings),
                                      [u_leaf])
        grad_u = torch.where(torch.isfinite(u_leaf), grad_u, torch.zeros_like(grad_u))
        return {
            "loss.hard": terms["hard"].detach().numpy(), "loss.soft": terms["soft"].detach().numpy(),
            "loss.total": terms["total"].detach().numpy(), "grad.student_logits": grad_s.numpy(),
            f"grad.{teacher_name}": (torch.zeros_like(teacher) if grad_teacher is None else grad_teacher).numpy(),
            "reference.grad.hard": grad_hard.numpy(), "reference.grad.soft": grad_soft.numpy(),
            "reference.grad.teacher_without_stop_gradient": grad_u.numpy(),
        }
    return loss_fn


LOSSES_OF = {"pfd_ref": ("bce", "kl"), "easyrec": ("bce", "kl", "ce", "l2"), "rocket": ("l2",)}


def main(argv=None) -> int:
    from pfd_ref.objective_oracle import check_loss
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", choices=tuple(LOSSES_OF), help="print the full report of this implementation")
    parser.add_argument("--against", choices=tuple(LOSSES_OF), help="the convention to judge it by (default: its own)")
    parser.add_argument("--loss", default="bce")
    parser.add_argument("--temperature", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.show:
        report = check_loss(numpy_loss(args.show), convention=args.against or args.show, loss=args.loss,
                            temperatures=(args.temperature,), weights=(False,), hard_weight="one")
        print(report.format())
        return 0 if report.passed else 1
    failed = 0
    for convention, losses in LOSSES_OF.items():
        for loss in losses:
            for teacher_input in ("logits", "probabilities") if convention != "rocket" else ("logits",):
                report = check_loss(numpy_loss(convention), convention=convention, loss=loss,
                                    teacher_input=teacher_input, seeds=(0, 1))
                failed += not report.passed
                print(f"{convention:8} {loss:4} teacher {teacher_input:13}: {report.format().splitlines()[-1]}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

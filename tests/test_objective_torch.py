"""Independent reproduction of every convention's objective-level cases: PyTorch autograd losses
written from each framework's definition (docs/examples/torch_objective.py) match pfd_ref's
numbers at the default tolerances, in float64 and float32; judged by another convention they
fail with that difference named; a missing stop-gradient shows in the teacher's gradient."""

from __future__ import annotations

import pytest
from examples import load_example

torch = pytest.importorskip("torch", reason="the PyTorch cross-check needs torch (pip install torch==2.13.0, CPU wheel)")

from pfd_ref.conventions import CONVENTIONS, LOSSES_OF, TEACHER_INPUTS  # noqa: E402
from pfd_ref.objective_oracle import check_loss  # noqa: E402


torch_objective = load_example("torch_objective")
GRID = [(c, loss, t) for c in CONVENTIONS for loss in LOSSES_OF[c] for t in TEACHER_INPUTS
        if not (c == "rocket" and t == "probabilities")]


def test_the_example_defines_the_same_losses():
    assert torch_objective.LOSSES_OF == LOSSES_OF


@pytest.mark.parametrize("convention, loss, teacher_input", GRID, ids=["-".join(g) for g in GRID])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_reproduces_every_case(convention, loss, teacher_input, dtype):
    report = check_loss(torch_objective.numpy_loss(convention), convention, loss, teacher_input,
                        temperatures=(0.5, 3.0), rows=24, dtype=dtype)
    assert report.passed, report.format(only_failures=True)
    assert all(set(check.report.failed) == set() and len(check.report.results) == 8 for _, check in report.cases)


@pytest.mark.parametrize("lam, hard_weight", [(0.0, "one_minus_lambda"), (1.0, "one_minus_lambda"), (2.5, "one")])
def test_torch_reproduces_the_lambda_and_hard_weight_edges(lam, hard_weight):
    for convention in CONVENTIONS:
        report = check_loss(torch_objective.numpy_loss(convention), convention, LOSSES_OF[convention][-1],
                            lambda_=lam, hard_weight=hard_weight)
        assert report.passed, report.format(only_failures=True)


def test_easyrec_judged_by_pfd_ref_fails_by_the_missing_t_squared():
    report = check_loss(torch_objective.numpy_loss("easyrec"), "pfd_ref", "bce", temperatures=(2.0,),
                        weights=(False,), hard_weight="one")
    check = report.cases[0][1]
    assert set(check.report.failed) == {"output.loss.soft", "output.loss.total", "output.grad.student_logits",
                                        "reference.grad.soft", "reference.grad.teacher_without_stop_gradient"}
    assert sum("= 1/T² at T = 2: theirs lacks the T² factor" in line for line in check.diagnoses) == 3


def test_a_missing_stop_gradient_moves_the_teacher():
    report = check_loss(torch_objective.numpy_loss("pfd_ref", stop_gradient=False), temperatures=(2.0,),
                        weights=(False,))
    assert report.cases[0][1].report.failed == ["output.grad.teacher_logits"]

"""Independent cross-check: every golden case rebuilt in PyTorch autograd
(docs/examples/torch_pfd.py, torch's own optimizers and learning-rate scheduler) matches
pfd_ref's losses, gradients and updated parameters at rtol 1e-9 in float64; and
``oracle check`` catches four typical bugs of a PFD implementation, naming the arrays they
corrupt."""

from __future__ import annotations

from pathlib import Path

import pytest
from examples import load_example

torch = pytest.importorskip("torch", reason="the PyTorch cross-check needs torch (pip install torch==2.13.0, CPU wheel)")

from pfd_ref.cli import main  # noqa: E402
from pfd_ref.data.dataset import load_npz  # noqa: E402
from pfd_ref.oracle import case_meta, check_arrays  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_FILES = sorted((ROOT / "tests" / "golden").glob("*.npz"))
RTOL, ATOL = 1e-9, 1e-12


torch_pfd = load_example("torch_pfd")
pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_torch_reproduces_the_golden_case(path):
    case = load_npz(path)
    outputs, rule = torch_pfd.run_case(*torch_pfd.load_case(path))
    assert rule in case_meta(case)["optimizer_rule"]  # the case names the torch optimizer it matches
    report = check_arrays(case, outputs, rtol=RTOL, atol=ATOL)
    assert report.passed, report.format(only_failures=True)
    assert sorted(outputs) == sorted(n for n in case if n.startswith("output."))


def _failures(case_name: str, bug: str):
    path = ROOT / "tests" / "golden" / f"{case_name}.npz"
    outputs, _ = torch_pfd.run_case(*torch_pfd.load_case(path), bug=bug)
    return path, outputs, set(check_arrays(load_npz(path), outputs, rtol=RTOL, atol=ATOL).failed)


def test_no_detach_moves_the_teacher_only():
    """Sync mode: the soft loss's gradient reaches the teacher. Step 1's logits and losses
    are right; the teacher's gradients and updates are wrong, the student's gradients right."""
    _, _, failed = _failures("two_tower-pfd-sync-T2-weights-dense", "no-detach")
    assert {"output.grad.teacher.user_tower.0.weight", "output.grad.teacher.bias",
            "output.after1.teacher.user_tower.0.weight", "output.after3.student.bias"} <= failed
    assert not {n for n in failed if n.startswith(("output.loss.", "output.grad.student.", "output.after1.student."))}
    assert not failed & {"output.student_logits", "output.teacher_logits", "output.lambdas"}


def test_missing_t_squared_shows_in_the_soft_loss():
    """T = 2: the soft loss is 4 times too small, so the student's objective, gradients and
    updates are wrong; the hard loss and the logits are right."""
    _, outputs, failed = _failures("mlp-pfd-two_stage-T2", "no-t-squared")
    assert {"output.loss.soft", "output.loss.student_total", "output.loss.total",
            "output.grad.student.mlp.0.weight", "output.after3.student.mlp.0.weight"} <= failed
    assert not failed & {"output.loss.hard", "output.student_logits", "output.teacher_logits", "output.lambdas"}
    case = load_npz(ROOT / "tests" / "golden" / "mlp-pfd-two_stage-T2.npz")
    assert outputs["output.loss.soft"] * 4 == pytest.approx(case["output.loss.soft"], rel=1e-12)


def test_lambda_during_warmup_shows_in_the_lambdas():
    """The boundary case: lambda is 0 at step 1 and 0.5 at steps 2 and 3; the bug uses 0.5
    at step 1, so the student's objective and everything after it are wrong."""
    _, _, failed = _failures("two_tower-pfd-two_stage-boundary", "lambda-in-warmup")
    assert {"output.lambdas", "output.loss.student_total", "output.loss.total",
            "output.grad.student.bias", "output.after1.student.bias"} <= failed
    assert not failed & {"output.loss.hard", "output.loss.soft", "output.student_logits", "output.teacher_logits"}


def test_lr_warmup_off_by_one_shows_in_the_learning_rates():
    """The SGD case warms up over 3 steps: lr / 3, 2 lr / 3, lr. The bug uses 0, lr / 3,
    2 lr / 3: step 1's forward, losses and gradients are right, every update is wrong."""
    _, outputs, failed = _failures("mlp-pfd-two_stage-sgd-lr_warmup3", "lr-warmup-off-by-one")
    assert list(outputs["output.lrs"]) == [0.0, 0.05 / 3, 0.05 * 2 / 3]
    assert {"output.lrs", "output.after1.student.mlp.0.weight", "output.after3.student.embed.user_id"} <= failed
    assert not {n for n in failed if n.startswith(("output.loss.", "output.grad.", "output.lambdas"))}
    assert not failed & {"output.student_logits", "output.teacher_logits"}


@pytest.mark.parametrize("case_name, bug, name", [
    ("two_tower-pfd-sync-T2-weights-dense", "no-detach", "output.grad.teacher.bias"),
    ("mlp-pfd-two_stage-T2", "no-t-squared", "output.loss.soft"),
    ("two_tower-pfd-two_stage-boundary", "lambda-in-warmup", "output.lambdas"),
    ("mlp-pfd-two_stage-sgd-lr_warmup3", "lr-warmup-off-by-one", "output.lrs"),
])
def test_cli_check_exits_1_on_each_bug(tmp_path, capsys, case_name, bug, name):
    case_path = ROOT / "tests" / "golden" / f"{case_name}.npz"
    assert torch_pfd.main([str(case_path), str(tmp_path / "theirs.npz"), "--bug", bug]) == 0
    assert main(["oracle", "check", str(case_path), str(tmp_path / "theirs.npz")]) == 1
    report = capsys.readouterr().out
    assert any(line.startswith(name) and line.endswith("FAIL") for line in report.splitlines())
    assert torch_pfd.main([str(case_path), str(tmp_path / "theirs.npz")]) == 0
    assert main(["oracle", "check", str(case_path), str(tmp_path / "theirs.npz")]) == 0


def test_unknown_bug_is_rejected():
    with pytest.raises(ValueError, match="^bug:"):
        torch_pfd.run_case(*torch_pfd.load_case(GOLDEN_FILES[0]), bug="off-by-one")

"""Objective-level oracle cases: content as docs/oracle.md specifies, the hard rows, bit-for-bit
reruns, the convention diagnosis of the checker, the user-callable entry point and the CLI."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from pfd_ref.cli import main
from pfd_ref.conventions import convention_objective
from pfd_ref.data.dataset import load_npz
from pfd_ref.objective_oracle import (HARD_ROWS, ObjectiveSpec, check_loss, check_objective_arrays,
                                      compute_objective_case, constant_factor, is_objective_case, objective_inputs,
                                      recompute_objective_case)
from pfd_ref.oracle import case_meta

SOFT_ARRAYS = {"output.loss.soft", "reference.grad.soft", "reference.grad.teacher_without_stop_gradient"}


def test_case_holds_the_documented_arrays():
    spec = ObjectiveSpec("easyrec", "kl", 2.0, "probabilities", weights=True, rows=12)
    case = compute_objective_case(spec)
    assert list(case) == ["meta", "input.student_logits", "input.teacher_probabilities", "input.labels",
                          "input.weights", "output.loss.hard", "output.loss.soft", "output.loss.total",
                          "output.grad.student_logits", "output.grad.teacher_probabilities", "reference.grad.hard",
                          "reference.grad.soft", "reference.grad.teacher_without_stop_gradient"]
    meta = case_meta(case)
    assert meta["kind"] == "objective" and meta["case"] == asdict(spec) and is_objective_case(case)
    assert meta["case"]["hard_weight"] == "one"  # EasyRec's default, resolved and stored
    for name, value in case.items():
        if name.startswith(("output.loss", "output.grad", "reference")):
            assert value.dtype == np.float64 and value.shape == (() if ".loss." in name else (12,)), name
    assert case["input.labels"].dtype == np.int8
    assert not np.any(case["output.grad.teacher_probabilities"])  # the stop-gradient
    assert np.any(case["reference.grad.teacher_without_stop_gradient"])  # what it removes


def test_the_hard_rows_come_first():
    inputs = objective_inputs(ObjectiveSpec(teacher_input="probabilities", weights=True))
    s, pi = inputs["student_logits"], inputs["teacher_probabilities"]
    k = len(HARD_ROWS)
    assert s[0] == s[1] and inputs["labels"][0] != inputs["labels"][1]  # a tie across labels
    assert np.max(np.abs(s[:k])) == 1e4
    assert {0.0, 1.0} <= set(pi[:k]) and pi[:k].min() == 0.0 and np.any((pi[:k] > 0) & (pi[:k] < 1e-7))
    assert np.any((pi[:k] < 1) & (pi[:k] > 1 - 1e-7))  # beyond EasyRec's clipping range at the top
    assert inputs["weights"][2] == 0.0 and np.all(inputs["weights"][np.arange(16) != 2] >= 0.5)
    logits = objective_inputs(ObjectiveSpec())
    assert logits["teacher_logits"][0] == s[0]  # student equals teacher in row 0
    assert logits["weights"] is None


def test_inputs_do_not_depend_on_the_convention():
    a = compute_objective_case(ObjectiveSpec("pfd_ref", "bce", 2.0, weights=True))
    b = compute_objective_case(ObjectiveSpec("easyrec", "ce", 3.0, weights=True))
    for name in ("input.student_logits", "input.teacher_logits", "input.labels", "input.weights"):
        assert a[name].tobytes() == b[name].tobytes()


@pytest.mark.parametrize("spec", [ObjectiveSpec("pfd_ref", "kl", 0.5, "probabilities", dtype="float32"),
                                  ObjectiveSpec("rocket", "l2", weights=True, rows=30, seed=4)])
def test_rerun_is_bit_identical(spec):
    first, again = compute_objective_case(spec), recompute_objective_case(compute_objective_case(spec))
    assert list(first) == list(again)
    assert all(first[k].tobytes() == again[k].tobytes() for k in first)


def test_outputs_are_the_conventions_numbers():
    spec = ObjectiveSpec("easyrec", "bce", 2.0, weights=True, lambda_=0.25)
    case = compute_objective_case(spec)
    inputs = objective_inputs(spec)
    expected = convention_objective("easyrec", "bce", inputs["student_logits"], inputs["teacher_logits"], "logits",
                                    inputs["labels"], inputs["weights"], 2.0, 0.25, "one")
    assert case["output.loss.total"] == expected["loss.total"]
    assert case["output.grad.student_logits"].tobytes() == expected["grad.student_logits"].tobytes()


# --------------------------------------------------------------------------- the checker's diagnosis


def test_an_easyrec_case_fails_pfd_refs_convention_by_one_over_t_squared():
    """The closing note's demonstration: EasyRec's numbers checked against pfd_ref's case at
    T = 2 (same hard weight): the hard arrays pass, every soft array is off by the relative
    1 - 1/T^2 = 0.75 in every entry and the diagnosis names the missing T^2; the total and
    the student gradient, which mix both terms, fail without a constant factor."""
    ours = compute_objective_case(ObjectiveSpec("pfd_ref", "bce", 2.0, hard_weight="one"))
    theirs = compute_objective_case(ObjectiveSpec("easyrec", "bce", 2.0, hard_weight="one"))
    check = check_objective_arrays(ours, theirs)
    assert set(check.report.failed) == SOFT_ARRAYS | {"output.loss.total", "output.grad.student_logits"}
    for result in check.report.results:
        if result.name in SOFT_ARRAYS:
            assert result.max_rel_error == pytest.approx(0.75, rel=1e-12)
    assert {line.split(":")[0] for line in check.diagnoses} == SOFT_ARRAYS
    text = check.format()
    assert text.count("c = 0.25, relative difference |c - 1| = 0.75 = 1/T² at T = 2: theirs lacks the T² factor") == 3
    # at T = 1 the two conventions agree on bce
    same = check_objective_arrays(compute_objective_case(ObjectiveSpec("pfd_ref", "bce", 1.0, hard_weight="one")),
                                  compute_objective_case(ObjectiveSpec("easyrec", "bce", 1.0, hard_weight="one")))
    assert same.passed, same.format(only_failures=True)


def test_weight_denominators_are_diagnosed():
    """EasyRec's hard loss divides by the 15 non-zero weights, pfd_ref's by n = 16."""
    ours = compute_objective_case(ObjectiveSpec("pfd_ref", "bce", 1.0, hard_weight="one", weights=True))
    theirs = compute_objective_case(ObjectiveSpec("easyrec", "bce", 1.0, hard_weight="one", weights=True))
    check = check_objective_arrays(ours, theirs)
    hard = next(line for line in check.diagnoses if line.startswith("output.loss.hard"))
    assert "n/N = 16/15" in hard and "SUM_BY_NONZERO_WEIGHTS" in hard


def test_constant_factor():
    expected = np.array([1.0, -2.0, 0.0, 4.0])
    assert constant_factor(expected, 0.25 * expected, 1e-12) == 0.25
    assert constant_factor(expected, expected + np.array([0, 0, 1e-3, 0]), 1e-12) is None  # a zero entry moved
    assert constant_factor(expected, expected * np.array([1, 1, 1, 1.01]), 1e-12) is None
    assert constant_factor(np.zeros(3), np.zeros(3), 1e-12) is None
    assert constant_factor(expected, np.array([1.0, np.nan, 0, 4]), 1e-12) is None


def test_a_scalar_with_no_known_factor_is_not_diagnosed():
    case = compute_objective_case(ObjectiveSpec())
    theirs = {k: (v * 1.2345 if k == "output.loss.soft" else v) for k, v in case.items()}
    check = check_objective_arrays(case, theirs)
    assert check.report.failed == ["output.loss.soft"] and check.diagnoses == ()


# --------------------------------------------------------------------------- check_loss


def _reference_loss(convention):
    """The convention's numbers from the case inputs (pfd_ref's own code: checks the plumbing only)."""
    def loss_fn(inputs, settings):
        teacher_name = f"teacher_{settings['teacher_input']}"
        out = convention_objective(convention, settings["loss"], inputs["student_logits"], inputs[teacher_name],
                                   settings["teacher_input"], inputs["labels"], inputs["weights"],
                                   settings["temperature"], settings["lambda"], settings["hard_weight"])
        inputs["student_logits"][:] = np.nan  # mutating the copies must not touch the cases
        return {"loss.hard": out["loss.hard"], "loss.soft": out["loss.soft"], "output.loss.total": out["loss.total"],
                "grad.student_logits": out["grad.student_logits"],
                f"grad.{teacher_name}": np.zeros_like(out["grad.soft"])}
    return loss_fn


def test_check_loss_runs_every_case_and_accepts_both_name_forms():
    seen = []
    def loss_fn(inputs, settings):
        seen.append((settings["temperature"], inputs["weights"] is not None))
        return _reference_loss("easyrec")(inputs, settings)
    report = check_loss(loss_fn, "easyrec", "kl", "probabilities", temperatures=(1.0, 3.0), seeds=(0, 1))
    assert report.passed, report.format(only_failures=True)
    assert sorted(seen) == sorted((t, w) for t in (1.0, 3.0) for w in (False, True) for _ in (0, 1))
    assert "PASS: 8 of 8 cases pass" in report.format()
    assert len(check_loss(_reference_loss("rocket"), "rocket", "l2").cases) == 2  # l2: T = 1 only


def test_check_loss_reports_missing_arrays_and_the_wrong_convention():
    def incomplete(inputs, settings):
        out = _reference_loss("pfd_ref")(inputs, settings)
        del out["grad.teacher_logits"]
        return out
    report = check_loss(incomplete, weights=(False,), temperatures=(1.0,))
    assert not report.passed and report.cases[0][1].report.failed == ["output.grad.teacher_logits"]
    assert "FAIL (missing)" in report.format()
    wrong = check_loss(_reference_loss("easyrec"), "pfd_ref", "bce", temperatures=(2.0,), weights=(False,),
                       hard_weight="one")
    assert not wrong.passed and "1/T² at T = 2" in wrong.format()
    with pytest.raises(ValueError, match="^loss_fn: must return a dict"):
        check_loss(lambda inputs, settings: 1.0)


# --------------------------------------------------------------------------- spec and CLI


@pytest.mark.parametrize("settings, message", [
    (dict(rows=7), "^rows: expected an integer >= 8"),
    (dict(dtype="float16"), "^dtype"),
    (dict(convention="torch"), "^convention: unknown convention"),
    (dict(loss="ce"), "^loss: the pfd_ref convention defines bce, kl"),
    (dict(lambda_=2.0), "^lambda: must be <= 1"),
    (dict(seed=-1), "^seed"),
])
def test_spec_errors_name_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        ObjectiveSpec(**settings)


def test_cli_writes_the_case_and_check_diagnoses_it(tmp_path, capsys):
    ours, theirs = tmp_path / "ours.npz", tmp_path / "theirs.npz"
    assert main(["oracle", "objective", "--temperature", "2", "--hard-weight", "one", "--out", str(ours)]) == 0
    assert main(["oracle", "objective", "--convention", "easyrec", "--temperature", "2", "--out", str(theirs)]) == 0
    written = load_npz(ours)
    expected = compute_objective_case(ObjectiveSpec(temperature=2.0, hard_weight="one"))
    assert all(written[k].tobytes() == expected[k].tobytes() for k in expected)
    assert json.loads(str(written["meta"]))["case"]["convention"] == "pfd_ref"
    capsys.readouterr()
    assert main(["oracle", "check", str(ours), str(theirs), "--only-failures"]) == 1
    out = capsys.readouterr().out
    assert "output.loss.soft" in out and "1/T² at T = 2" in out and "output.loss.hard" not in out.split("constant")[0]
    assert main(["oracle", "check", str(ours), str(ours)]) == 0


@pytest.mark.parametrize("arguments, message", [
    (["--convention", "rocket", "--loss", "l2", "--teacher-input", "probabilities"], "teacher_input: Rocket"),
    (["--loss", "l2"], "loss: the pfd_ref convention defines bce, kl"),
    (["--rows", "3"], "rows: expected an integer >= 8"),
])
def test_cli_errors_name_the_option_and_write_nothing(tmp_path, capsys, arguments, message):
    out = tmp_path / "case.npz"
    assert main(["oracle", "objective", "--out", str(out), *arguments]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_cli_rejects_an_unknown_convention_or_loss(tmp_path, capsys):
    for option, value in (("--convention", "tf"), ("--loss", "hinge")):
        with pytest.raises(SystemExit) as exit_info:
            main(["oracle", "objective", "--out", str(tmp_path / "c.npz"), option, value])
        assert exit_info.value.code == 2 and f"argument {option}: invalid choice: '{value}'" in capsys.readouterr().err

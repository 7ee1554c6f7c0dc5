"""Oracle cases: the golden set still reproduces, the set covers what it promises, the case
content follows docs/oracle.md, and the checker (API and CLI) reports every kind of mismatch
by name."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref.cli import main
from pfd_ref.data.dataset import load_npz
from pfd_ref.oracle import (LR_WARMUP_RULE, OPTIMIZER_RULES, CaseSpec, case_meta, check_arrays, check_files, compute_case,
                            recompute, save_case)
from pfd_ref.distill import METHOD_RULES, METHODS, STUDENT_KINDS
from pfd_ref.train import MODES

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.npz"))
# Drift tolerance: recomputing on this machine is bit-identical; another BLAS or CPU may sum
# a matrix product in another order (a few ulps), which three Adam steps can grow a little.
DRIFT_RTOL, DRIFT_ATOL = 1e-12, 1e-15


def _golden_cases() -> dict:
    spec = importlib.util.spec_from_file_location("regenerate", GOLDEN_DIR / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GOLDEN_CASES


@pytest.fixture(scope="module")
def small_case():
    return compute_case(CaseSpec("mlp", "pfd", "sync", seed=3, temperature=2.0, weights=True))


# --------------------------------------------------------------------------- golden set


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_golden_case_is_reproduced(path, each_backend):
    golden = load_npz(path)
    again = recompute(golden)
    assert case_meta(again) == case_meta(golden)
    report = check_arrays(golden, again, rtol=DRIFT_RTOL, atol=DRIFT_ATOL)
    assert report.passed, report.format(only_failures=True)
    assert list(again) == list(golden)


def test_golden_files_are_exactly_the_listed_cases():
    cases = _golden_cases()
    assert sorted(p.stem for p in GOLDEN_FILES) == sorted(cases)
    for name, spec in cases.items():
        assert case_meta(load_npz(GOLDEN_DIR / f"{name}.npz"))["case"] == asdict(spec), name
    assert sum(p.stat().st_size for p in GOLDEN_FILES) < 1_200_000  # 1.16 MB with the multi-head cases


def test_golden_set_covers_every_kind_method_mode_and_feature():
    metas = [meta for meta in (case_meta(load_npz(p)) for p in GOLDEN_FILES) if meta["case"]["model"] in STUDENT_KINDS]
    cases = [m["case"] for m in metas]
    assert {(c["model"], c["method"], c["mode"]) for c in cases} == {
        (k, m, mode) for k in STUDENT_KINDS for m in METHODS for mode in MODES if k in METHOD_RULES[m].student_kinds}
    assert all(c["dtype"] == "float64" for c in cases)
    assert {c["adam_sparse"] for c in cases} == {"lazy", "dense"}
    assert {c["pooling"] for c in cases} == {"mean", "sum"}
    assert {c["hard_weight"] for c in cases} == {"one_minus_lambda", "one"}
    for feature in (lambda c: c["sharing"] == "all", lambda c: c["sharing"] == "all-but-user-id",
                    lambda c: c["weights"], lambda c: c["temperature"] != 1):
        assert {c["model"] for c in cases if feature(c) and c["method"] != "baseline"} == set(STUDENT_KINDS)
    boundary = [p for p in GOLDEN_FILES if (lambdas := load_npz(p)["output.lambdas"])[0] == 0 < lambdas[1]]
    assert {p.stem.split("-")[0] for p in boundary} == {*STUDENT_KINDS, "multihead"}
    assert {c["optimizer"] for c in cases} == {"adam", "adagrad", "sgd"}
    adagrad = [c for c in cases if c["optimizer"] == "adagrad"]
    assert {c["adagrad_sparse"] for c in adagrad} == {"lazy", "dense"}
    assert {(c["adagrad_initial_accumulator"], c["adagrad_eps"]) for c in adagrad} >= {(0.1, 0.0), (0.0, 1e-10)}
    lr_warmup = [c for c in cases if c["lr_warmup_steps"]]
    assert {c["optimizer"] for c in lr_warmup} == {"adam", "adagrad", "sgd"}
    assert any(c["start_step"] < c["lr_warmup_steps"] <= c["start_step"] + 3 for c in lr_warmup)  # reaches lr inside
    # the layer options: batch norm on batch statistics (sync) and on running averages (the two-stage teacher)
    assert {(c["model"], c["mode"]) for c in cases if c["batch_norm"]} == {(k, m) for k in STUDENT_KINDS for m in MODES}
    assert {c["model"] for c in cases if c["activation"] == "leaky_relu"} == set(STUDENT_KINDS)
    assert {(c["tower_norm"], c["tower_scale"] != 1) for c in cases if c["model"] == "two_tower"} == {
        ("none", False), ("l2", True), ("none", True)}
    # mtl: every target kind (continuous, binary, categorical), heads with a hidden layer, batch norm in them
    auxiliary = [m["models"]["auxiliary"] for m in metas if m["models"]["auxiliary"]]
    assert {t["kind"] for layout in auxiliary for t in layout["targets"]} == {"continuous", "binary", "categorical"}
    assert all(len(t["mlp"]) == 2 for layout in auxiliary for t in layout["targets"])
    assert any(layout["batch_norm"] for layout in auxiliary)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_golden_case_has_empty_multi_id_rows_repeated_ids_and_untouched_rows(path):
    arrays = load_npz(path)
    assert np.any(np.diff(arrays["input.recent.offsets"]) == 0)
    assert len(np.unique(arrays["input.item_id"])) < arrays["input.item_id"].size
    table_grads = [v for n, v in arrays.items() if n.startswith("output.grad.") and ".embed." in n]
    assert any((~grad.any(axis=1)).any() for grad in table_grads)


# --------------------------------------------------------------------------- case content


def test_case_holds_the_documented_arrays(small_case):
    arrays = small_case
    meta = case_meta(arrays)
    params = [n.removeprefix("param.") for n in arrays if n.startswith("param.")]
    assert meta["teacher_trained"] and meta["optimizer_rule"] == OPTIMIZER_RULES["adam", "lazy"]
    for prefix in ("output.grad.", "output.after1.", "output.after3."):
        assert [n.removeprefix(prefix) for n in arrays if n.startswith(prefix)] == params
        for name in params:
            assert arrays[prefix + name].shape == arrays["param." + name].shape
    assert {n for n in arrays if n.startswith("output.loss.")} == {
        f"output.loss.{t}" for t in ("hard", "soft", "student_total", "teacher_hard", "total")}
    assert arrays["output.loss.total"] == arrays["output.loss.student_total"] + arrays["output.loss.teacher_hard"]
    assert arrays["input.recent.offsets"][1] == 0  # row 0 of the multi-id field is empty
    assert {"input.user_id", "input.age", "input.cat_clicks", "input.chatted", "input.labels", "input.weights"} <= set(arrays)
    assert arrays["output.grad.student.embed.user_id"].shape == (5, 3)  # embedding gradients are stored dense


@pytest.mark.parametrize("mode", MODES)
def test_batch_norm_case_stores_running_averages_and_evaluation_logits(mode):
    """Buffers: initial values in param.*, after1/after3 for the models trained here, never a
    gradient; the student's evaluation-mode logits after step 3 exist only with batch norm."""
    arrays = compute_case(CaseSpec("two_tower", "pfd", mode, batch_norm=True, activation="leaky_relu"))
    buffers = [n.removeprefix("param.") for n in arrays if n.startswith("param.") and ".bn.running_" in n]
    trained_buffers = [n for n in buffers if n.startswith("student.") or mode == "sync"]
    assert {n.split(".")[0] for n in buffers} == {"student", "teacher"}
    assert not [n for n in arrays if n.startswith("output.grad.") and ".bn.running_" in n]
    for k in (1, 3):
        assert sorted(n.removeprefix(f"output.after{k}.") for n in arrays
                      if n.startswith(f"output.after{k}.") and ".bn.running_" in n) == sorted(trained_buffers)
        for name in trained_buffers:
            assert not np.array_equal(arrays[f"output.after{k}.{name}"], arrays[f"param.{name}"]), name
    assert not np.allclose(arrays["output.eval_student_logits"], arrays["output.student_logits"])
    assert "output.eval_student_logits" not in compute_case(CaseSpec("two_tower", "pfd", mode))


def test_two_stage_and_baseline_train_only_the_student():
    two_stage = compute_case(CaseSpec("two_tower", "pfd", "two-stage"))
    assert "param.teacher.bias" in two_stage and "output.teacher_logits" in two_stage
    assert not any(n.startswith(("output.grad.teacher", "output.after1.teacher")) for n in two_stage)
    assert "output.loss.teacher_hard" not in two_stage and not case_meta(two_stage)["teacher_trained"]
    baseline = compute_case(CaseSpec("mlp", "baseline", "sync", lambda_=0.7))
    assert "output.loss.soft" not in baseline and "output.teacher_logits" not in baseline
    assert list(baseline["output.lambdas"]) == [0.0, 0.0, 0.0]


def test_warmup_boundary_lambdas():
    arrays = compute_case(CaseSpec("mlp", "pfd", "sync", lambda_=0.3, warmup_steps=5, start_step=4))
    assert list(arrays["output.lambdas"]) == [0.0, 0.3, 0.3]
    assert arrays["output.loss.student_total"] == arrays["output.loss.hard"]


def test_learning_rate_warmup_is_recorded_step_by_step():
    arrays = compute_case(CaseSpec("mlp", "baseline", "sync", optimizer="sgd", lr=0.06, lr_warmup_steps=4, start_step=1))
    assert list(arrays["output.lrs"]) == [0.06 * (2 / 4), 0.06 * (3 / 4), 0.06]
    assert case_meta(arrays)["optimizer_rule"] == OPTIMIZER_RULES["sgd", None] + LR_WARMUP_RULE
    # SGD: the first update is -lr_1 g exactly
    np.testing.assert_array_equal(arrays["output.after1.student.mlp.0.weight"],
                                  arrays["param.student.mlp.0.weight"] - 0.03 * arrays["output.grad.student.mlp.0.weight"])
    assert "output.lrs" not in compute_case(CaseSpec("mlp", "baseline", "sync", optimizer="sgd"))


@pytest.mark.parametrize("spec, rule", [
    (CaseSpec(), "adam_lazy"), (CaseSpec(adam_sparse="dense"), "adam_dense"),
    (CaseSpec(optimizer="adagrad"), "adagrad_lazy"), (CaseSpec(optimizer="adagrad", adagrad_sparse="dense"), "adagrad_dense"),
    (CaseSpec(optimizer="sgd"), "sgd"),
])
def test_each_optimizer_setting_names_its_torch_rule(spec, rule):
    assert spec.optimizer_rule().startswith(rule + " = torch.optim.")
    assert case_meta(compute_case(replace(spec, method="baseline")))["optimizer_rule"] == spec.optimizer_rule()


def test_the_optimizers_move_the_parameters_differently():
    changes = (dict(), dict(adam_sparse="dense"), dict(optimizer="adagrad"), dict(optimizer="sgd"))
    tables = [compute_case(replace(CaseSpec(), method="baseline", **change))["output.after3.student.embed.user_id"]
              for change in changes]
    assert not any(np.array_equal(a, b) for i, a in enumerate(tables) for b in tables[i + 1:])


def test_dump_is_deterministic_and_float32_keeps_its_dtype():
    spec = CaseSpec("two_tower", "pfd+md", "sync", dtype="float32", sharing="all", weights=True)
    first, second = compute_case(spec), compute_case(spec)
    assert list(first) == list(second)
    assert all(np.array_equal(first[n], second[n]) for n in first)
    floats = {first[n].dtype for n in first if n.startswith(("param.", "output.")) and n != "output.lambdas"}
    assert floats == {np.dtype(np.float32)} and first["input.weights"].dtype == np.float32
    assert first["output.lambdas"].dtype == np.float64 and first["input.age"].dtype == np.float64
    report = check_arrays(first, second)
    assert (report.rtol, report.atol) == (1e-4, 1e-6) and report.passed


def test_a_case_round_trips_through_a_file_without_pickle(tmp_path, small_case):
    save_case(tmp_path / "c.npz", small_case)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as loaded:
        assert loaded.files == list(small_case)
        assert all(np.array_equal(loaded[n], small_case[n]) for n in loaded.files)


@pytest.mark.parametrize("change, message", [
    (dict(rows=1), "rows:"), (dict(model="cnn"), "student_kind:"), (dict(method="kd"), "method:"),
    (dict(mode="two-stage", sharing="all"), "sharing: 'all' needs mode 'sync'"), (dict(dtype="float16"), "dtype:"),
    (dict(sharing="some"), "sharing: expected one of"), (dict(model="two_tower", method="mtl"), "method: 'mtl' is defined"),
    (dict(method="mtl", mtl_weight=-1.0), "mtl_weight:"), (dict(student_layers=3), "student_layers:"),
    (dict(pooling="max"), "pooling:"), (dict(beta2=1.0), "beta2:"), (dict(start_step=-1), "start_step:"),
    (dict(temperature=0.0), "temperature:"), (dict(adam_sparse="row"), "sparse:"), (dict(seed=1.5), "seed:"),
    (dict(optimizer="rmsprop"), "optimizer:"), (dict(lr_warmup_steps=-3), "lr_warmup_steps:"),
    (dict(optimizer="adagrad", adagrad_eps=-1.0), "eps:"), (dict(optimizer="adagrad", adagrad_sparse="row"), "sparse:"),
    (dict(optimizer="adagrad", adagrad_initial_accumulator=0.0), "eps: must be > 0 when"),
    (dict(optimizer="adagrad", beta1=0.5), "beta1: an option of optimizer 'adam'"),
    (dict(optimizer="sgd", eps=1e-6), "eps: an option of optimizer 'adam'"),
    (dict(adagrad_eps=1e-10), "adagrad_eps: an option of optimizer 'adagrad'"),
    (dict(activation="elu"), "activation:"), (dict(tower_norm="l2"), "tower_norm: tower normalisation and scale are for"),
    (dict(model="two_tower", tower_norm="cos"), "tower_norm:"), (dict(model="two_tower", tower_scale=0.0), "tower_scale:"),
])
def test_bad_case_settings_raise_naming_the_setting(change, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        replace(CaseSpec(), **change)


def test_unknown_setting_in_a_case_file_is_an_error():
    with pytest.raises(ValueError, match="^data: unknown case setting"):
        CaseSpec.from_dict({**asdict(CaseSpec()), "momentum": 0.9})


# --------------------------------------------------------------------------- checking


def _only_outputs(arrays):
    return {n: v for n, v in arrays.items() if n.startswith("output.")}


def test_outputs_alone_pass_and_a_perturbed_entry_fails_by_name(small_case):
    theirs = _only_outputs(small_case)
    assert check_arrays(small_case, theirs).passed
    theirs["output.grad.student.mlp.0.weight"] = theirs["output.grad.student.mlp.0.weight"].copy()
    theirs["output.grad.student.mlp.0.weight"][2, 1] *= 1 + 1e-6
    report = check_arrays(small_case, theirs)
    assert report.failed == ["output.grad.student.mlp.0.weight"]
    (row,) = [r for r in report.results if not r.passed]
    assert row.max_rel_error == pytest.approx(1e-6, rel=1e-6) and row.problem == ""
    assert "output.grad.student.mlp.0.weight" in report.format(only_failures=True).splitlines()[1]


def test_missing_extra_shape_and_dtype_are_reported_by_name(small_case):
    theirs = _only_outputs(small_case)
    del theirs["output.after3.student.mlp.1.bias"]
    theirs["output.grad.student.extra"] = np.zeros(3)
    theirs["output.student_logits"] = theirs["output.student_logits"][:-1]
    theirs["output.loss.soft"] = theirs["output.loss.soft"].astype(np.float32)
    theirs["input.labels"] = small_case["input.labels"].astype(np.float64)
    report = check_arrays(small_case, theirs)
    problems = {r.name: r.problem for r in report.results if not r.passed}
    assert problems == {
        "output.after3.student.mlp.1.bias": "missing", "output.grad.student.extra": "extra",
        "output.student_logits": "shape (7,), expected (8,)", "output.loss.soft": "dtype float32, expected float64",
        "input.labels": "dtype float64, expected int8"}
    text = report.format()
    assert all(name in text for name in problems)
    assert text.splitlines()[-1].startswith("FAIL: 5 of ") and text.endswith(", ... (+1 more)")


def test_inputs_are_compared_exactly_and_non_finite_values_fail(small_case):
    theirs = _only_outputs(small_case)
    theirs["input.user_id"] = small_case["input.user_id"] + 1
    theirs["output.loss.hard"] = np.array(np.nan)
    theirs["output.loss.soft"] = np.array(np.inf)
    report = check_arrays(small_case, theirs)
    assert report.failed == ["input.user_id", "output.loss.hard", "output.loss.soft"]
    rows = {r.name: r for r in report.results}
    assert rows["input.user_id"].max_abs_error == np.inf
    assert np.isnan(rows["output.loss.hard"].max_abs_error) and np.isnan(rows["output.loss.hard"].max_rel_error)
    assert rows["output.loss.soft"].max_abs_error == np.inf
    lines = {line.split()[0]: line for line in report.format().splitlines()}
    assert lines["output.loss.hard"].split()[2:4] == ["nan", "nan"]  # a NaN prints as nan, not as inf


def test_integer_arrays_of_any_integer_dtype_are_compared_by_value(small_case):
    """docs/conventions.md: labels may be any numeric dtype holding 0/1; ids any integer dtype."""
    theirs = _only_outputs(small_case)
    theirs["input.labels"] = small_case["input.labels"].astype(np.int64)
    theirs["input.user_id"] = small_case["input.user_id"].astype(np.int32)
    assert check_arrays(small_case, theirs).passed
    theirs["input.labels"] = 1 - theirs["input.labels"]
    assert check_arrays(small_case, theirs).failed == ["input.labels"]


def test_relative_error_of_an_exact_zero(small_case):
    theirs = _only_outputs(small_case)
    grad = theirs["output.grad.student.embed.user_id"]
    zero_rows = np.flatnonzero(~grad.any(axis=1))
    assert zero_rows.size  # a row no id of the batch touched: exactly 0 in the case
    theirs["output.grad.student.embed.user_id"] = grad + np.where(np.arange(grad.shape[0]) == zero_rows[0], 1e-13, 0)[:, None]
    row = {r.name: r for r in check_arrays(small_case, theirs).results}["output.grad.student.embed.user_id"]
    # within atol: it passes, and counts 0 in the relative error (a passing row never shows infinity)
    assert row.passed and np.isfinite(row.max_rel_error) and row.max_abs_error == pytest.approx(1e-13)
    theirs["output.grad.student.embed.user_id"] = grad + np.where(np.arange(grad.shape[0]) == zero_rows[0], 1e-6, 0)[:, None]
    row = {r.name: r for r in check_arrays(small_case, theirs).results}["output.grad.student.embed.user_id"]
    assert not row.passed and row.max_rel_error == np.inf  # beyond atol where the case is 0


@settings(max_examples=30, deadline=None)
@given(rtol=st.floats(1e-12, 1e-3), factor=st.floats(0.0, 0.9) | st.floats(1.1, 100.0))
def test_tolerance_is_relative_to_the_case(small_case, rtol, factor):
    case = {"meta": small_case["meta"], "output.x": np.array([1.0, -3.0, 250.0])}
    theirs = {"output.x": case["output.x"] * (1 + factor * rtol)}
    assert check_arrays(case, theirs, rtol=rtol, atol=0.0).passed == (factor < 1)


@pytest.mark.parametrize("tolerance", [{"rtol": -1.0}, {"atol": float("nan")}])
def test_bad_tolerances_raise(small_case, tolerance):
    with pytest.raises(ValueError, match=f"^{next(iter(tolerance))}:"):
        check_arrays(small_case, small_case, **tolerance)


def test_a_file_that_is_not_a_case_is_rejected(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="^case: .*plain.npz': not a pfd_ref oracle case"):
        check_files(tmp_path / "plain.npz", tmp_path / "plain.npz")
    np.save(tmp_path / "single.npy", np.zeros(2))
    with pytest.raises(ValueError, match="^theirs: .* not an .npz archive"):
        load_npz(tmp_path / "single.npy", "theirs")
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="^theirs: .*pickling"):
        load_npz(tmp_path / "pickled.npz", "theirs")


def test_a_newer_case_format_is_rejected(small_case):
    meta = json.loads(str(small_case["meta"]))
    with pytest.raises(ValueError, match="^case: case format 2"):
        case_meta({"meta": np.array(json.dumps({**meta, "format_version": 2}))})


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def dumped(tmp_path_factory):
    path = tmp_path_factory.mktemp("oracle") / "case.npz"
    assert main(["oracle", "dump", "--model", "two_tower", "--method", "pfd", "--mode", "sync", "--seed", "4",
                 "--temperature", "2", "--share", "all", "--weights", "--pooling", "sum", "--out", str(path)]) == 0
    return path


def test_cli_dump_writes_the_case_of_its_options(dumped):
    expected = compute_case(CaseSpec("two_tower", "pfd", "sync", seed=4, temperature=2.0, sharing="all",
                                     weights=True, pooling="sum"))
    arrays = load_npz(dumped)
    assert list(arrays) == list(expected) and all(np.array_equal(arrays[n], expected[n]) for n in arrays)


def test_cli_dump_takes_the_optimizer_options(tmp_path):
    path = tmp_path / "adagrad.npz"
    assert main(["oracle", "dump", "--model", "mlp", "--method", "md", "--mode", "two-stage", "--optimizer", "adagrad",
                 "--adagrad-initial-accumulator", "0", "--adagrad-eps", "1e-10", "--adagrad", "dense",
                 "--lr", "0.05", "--lr-warmup-steps", "5", "--start-step", "3", "--out", str(path)]) == 0
    spec = CaseSpec("mlp", "md", "two-stage", optimizer="adagrad", adagrad_initial_accumulator=0.0, adagrad_eps=1e-10,
                    adagrad_sparse="dense", lr=0.05, lr_warmup_steps=5, start_step=3)
    arrays, expected = load_npz(path), compute_case(spec)
    assert case_meta(arrays)["case"] == asdict(spec)
    assert list(arrays) == list(expected) and all(np.array_equal(arrays[n], expected[n]) for n in arrays)


def test_cli_dump_passes_the_layer_options(tmp_path):
    path = tmp_path / "layers.npz"
    assert main(["oracle", "dump", "--model", "two_tower", "--method", "md", "--mode", "two-stage", "--activation",
                 "leaky_relu", "--batch-norm", "--tower-norm", "l2", "--tower-scale", "5", "--out", str(path)]) == 0
    case = case_meta(load_npz(path))["case"]
    assert (case["activation"], case["batch_norm"], case["tower_norm"], case["tower_scale"]) == ("leaky_relu", True, "l2", 5.0)


def test_cli_check_against_itself_passes(dumped, capsys):
    assert main(["oracle", "check", str(dumped), str(dumped)]) == 0
    out = capsys.readouterr().out
    assert "output.grad.shared.embed.recent" in out and out.splitlines()[-1].startswith("PASS: ")


def test_cli_check_fails_with_the_names_of_the_bad_arrays(dumped, tmp_path, capsys):
    theirs = _only_outputs(load_npz(dumped))
    theirs["output.after1.student.bias"] = theirs["output.after1.student.bias"] + 1e-6
    del theirs["output.lambdas"]
    np.savez(tmp_path / "theirs.npz", **theirs)
    assert main(["oracle", "check", str(dumped), str(tmp_path / "theirs.npz"), "--only-failures"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:-1]] == ["output.lambdas", "output.after1.student.bias"]
    assert lines[-1].endswith("output.lambdas, output.after1.student.bias")
    assert main(["oracle", "check", str(dumped), str(tmp_path / "theirs.npz"), "--rtol", "1e-3", "--atol", "1e-5"]) == 1
    assert "FAIL: 1 of" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["check", "CASE", "missing.npz"], "theirs: "),
    (["check", "CASE", "CASE", "--rtol", "-1"], "rtol: "),
    (["dump", "--model", "mlp", "--method", "pfd", "--mode", "two-stage", "--share", "all", "--out", "x.npz"],
     "sharing: "),
    (["dump", "--model", "two_tower", "--method", "mtl", "--mode", "sync", "--out", "x.npz"], "method: 'mtl'"),
    (["dump", "--model", "mlp", "--method", "pfd", "--mode", "sync", "--lr-warmup-steps", "-1", "--out", "x.npz"],
     "lr_warmup_steps: "),
    (["dump", "--model", "mlp", "--method", "pfd", "--mode", "sync", "--adagrad-eps", "1e-10", "--out", "x.npz"],
     "adagrad_eps: an option of optimizer 'adagrad'"),
])
def test_cli_errors_exit_2_naming_the_input(dumped, tmp_path, capsys, argv, message):
    argv = [str(dumped) if a == "CASE" else str(tmp_path / a) if a.endswith(".npz") else a for a in argv]
    assert main(["oracle", *argv]) == 2
    assert capsys.readouterr().err.startswith(f"pfd-ref: error: {message}")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("argv", [["dump", "--model", "mlp", "--method", "kd", "--mode", "sync", "--out", "x.npz"],
                                  ["dump", "--method", "pfd", "--mode", "sync", "--out", "x.npz"], ["check", "a.npz"],
                                  []])
def test_cli_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["oracle", *argv])
    assert exit_info.value.code == 2


def test_worked_example_of_the_docs():
    """The numbers of docs/oracle.md, section 5."""
    arrays = compute_case(CaseSpec("two_tower", "pfd", "two-stage", rows=2, temperature=2.0, weights=True, seed=0))
    assert list(arrays["input.recent.offsets"]) == [0, 0, 2] and list(arrays["input.recent.values"]) == [2, 2]
    assert list(arrays["output.student_logits"]) == pytest.approx([-0.18132496072500717, 0.0042087505197715355], rel=1e-15)
    assert list(arrays["output.teacher_logits"]) == pytest.approx([-0.06828157352734004, -0.21876226470400317], rel=1e-15)
    assert list(arrays["input.weights"]) == [1.9098864548391807, 1.8996421151368987]
    expected = {"output.loss.hard": 1.2356270969172185, "output.loss.soft": 5.282316274655834,
                "output.loss.student_total": 3.258971685786526, "output.loss.total": 3.258971685786526,
                "output.grad.student.bias": -0.006837809027838343, "param.student.bias": 0.04328406756959924,
                "output.after1.student.bias": 0.053284052945053076}
    for name, value in expected.items():
        assert float(np.ravel(arrays[name])[0]) == pytest.approx(value, rel=1e-14), name


def test_golden_set_covers_the_multihead_student():
    """Every method of the multi-head student, both modes, sharing, weights, batch norm, and a
    click head both undistilled (teachers reading cat_clicks) and distilled (md's)."""
    metas = [meta for meta in (case_meta(load_npz(p)) for p in GOLDEN_FILES) if meta["case"]["model"] == "multihead"]
    cases = [m["case"] for m in metas]
    assert {c["method"] for c in cases} == {"baseline", "md", "lupi", "pfd", "pfd+md"}
    assert {c["mode"] for c in cases} == set(MODES)
    assert any(c["sharing"] == "all" for c in cases) and any(c["weights"] for c in cases)
    assert any(c["batch_norm"] for c in cases) and any(c["hard_weight"] == "one" for c in cases)
    distilled = {m["case"]["method"]: m["models"]["student"]["distilled"] for m in metas}
    assert distilled["md"] == ["click", "like", "comment"] and distilled["pfd"] == ["like", "comment"]
    assert distilled["baseline"] == []

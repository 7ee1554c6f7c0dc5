"""Command line: arguments checked before any work, a tiny end-to-end run, scoring its students."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_dataset

from pfd_ref import cli, experiment
from pfd_ref.cli import main
from pfd_ref.data import Dataset
from pfd_ref.experiment import RECORD_KEYS
from pfd_ref.schema import Schema
METRICS = ("auc", "gauc", "logloss")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    tiny_dataset(np.random.default_rng(5), 200).save(path)
    return path


def _run_args(data_file, out_dir, *extra):
    return ["run", "--data", str(data_file), "--methods", "baseline,pfd", "--seeds", "2", "--epochs", "1",
            "--batch-size", "32", "--warmup-steps", "1", "--quiet", "--json", str(out_dir / "out.json"),
            "--save", str(out_dir / "students"), *extra]


@pytest.fixture(scope="module")
def finished_run(data_file, tmp_path_factory):
    """One tiny run, its exit code, stdout and JSON records; then a rerun's, and a run on the
    NumPy backend."""
    outputs = []
    for name, extra in (("first", ()), ("rerun", ()), ("numpy", ("--backend", "numpy"))):
        out_dir = tmp_path_factory.mktemp(name)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = main(_run_args(data_file, out_dir, *extra))
        outputs.append((code, stdout.getvalue(), json.loads((out_dir / "out.json").read_text()), out_dir))
    return outputs


def test_unknown_method_is_an_argparse_error(data_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--data", str(data_file), "--methods", "baseline,nonsense", "--save", str(tmp_path / "s")])
    assert exit_info.value.code == 2
    assert "nonsense" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv, message", [
    (["run", "--seeds", "x"], "argument --seeds: expected a count or a comma list of integers, got 'x'"),
    (["run", "--seeds", "0"], "argument --seeds: the count must be >= 1, got 0"),
    (["run", "--seeds", "1,1"], "argument --seeds: seed(s) [1] listed twice"),
    (["run", "--methods", "pfd,teacher"], "argument --methods: 'teacher' reports the pfd+md teacher"),
    (["paper", "--tables", "2,3"], "argument --tables: unknown table(s) ['3']"),
])
def test_argument_errors_name_the_option_once(argv, message, capsys):
    """argparse puts the option before a type's message: the message does not repeat it
    ('argument --seeds: --seeds: ...' before)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("command, option", [("run", "--objective-weights"), ("paper", "--lambdas")])
@pytest.mark.parametrize("value, message", [("0.5,x", "expected a comma list of numbers, got '0.5,x'"),
                                            (",", "expected at least one number, got ','")])
def test_number_lists_share_one_parser(command, option, value, message, capsys):
    """--objective-weights and paper --lambdas parse and refuse alike, naming the option once."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, option, value])
    assert exit_info.value.code == 2
    assert f"error: argument {option}: {message}\n" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, name", [("--lambda", "-1", "--lambda: expected a finite number >= 0"),
                                                 ("--warmup-steps", "100000", "--warmup-steps: 100000 is not shorter")])
def test_bad_schedule_returns_2_before_training(data_file, tmp_path, capsys, option, value, name):
    json_path = tmp_path / "out.json"
    code = main(["run", "--data", str(data_file), "--methods", "baseline,pfd", "--batch-size", "32", option, value,
                 "--json", str(json_path), "--save", str(tmp_path / "s")])
    captured = capsys.readouterr()
    assert code == 2
    assert f"error: {name}" in captured.err
    assert captured.out == ""  # no table: nothing was trained
    assert not json_path.exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize("extra, message", [
    (["--lr-warmup-steps", "-1"], "error: --lr-warmup-steps: expected an integer >= 0"),
    (["--lr-warmup-steps", "6"], "error: --lr-warmup-steps: 6 is longer than the student's training (5 steps of 32 rows)"),
    (["--mode", "two-stage", "--teacher-epochs", "1", "--epochs", "2", "--lr-warmup-steps", "6"],
     "error: --lr-warmup-steps: 6 is longer than the teacher's training (5 steps of 32 rows)"),
    (["--optimizer", "adagrad", "--adagrad-eps=-1e-10"], "error: --adagrad-eps: expected a finite number >= 0"),
    (["--optimizer", "adagrad", "--adagrad-initial-accumulator", "nan"], "error: --adagrad-initial-accumulator:"),
    (["--optimizer", "adagrad", "--adagrad-initial-accumulator", "0", "--adagrad-eps", "0"], "error: --adagrad-eps: must be > 0 when"),
    (["--optimizer", "adam", "--adagrad-eps", "1e-10"], "error: --adagrad-eps: only with --optimizer adagrad"),
    (["--preset", "simple", "--adagrad-eps", "1e-10"], "error: --adagrad-eps: only with --optimizer adagrad"),
    (["--optimizer", "sgd", "--adagrad-initial-accumulator", "0.2"],
     "error: --adagrad-initial-accumulator: only with --optimizer adagrad"),
])
def test_bad_optimizer_options_return_2_before_training(data_file, tmp_path, capsys, extra, message):
    """200 rows less the last day's test split leave 134 training rows: 5 batches of 32."""
    json_path = tmp_path / "out.json"
    code = main(["run", "--data", str(data_file), "--methods", "baseline,pfd", "--batch-size", "32",
                 "--warmup-steps", "1", "--json", str(json_path), "--save", str(tmp_path / "s"), *extra])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert captured.out == ""
    assert not json_path.exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize("key", sorted(experiment.RUN_OPTION_BOUNDS))
def test_every_numeric_run_option_out_of_range_is_named_by_its_option_before_any_data(tmp_path, capsys, key):
    """One value below each bound of ``experiment.RUN_OPTION_BOUNDS``: exit 2, the message names
    the option as typed (``--batch-size``, not ``batch_size``), no traceback, nothing written
    (``--batch-size 0`` raised a ZeroDivisionError before the check)."""
    kind, low, low_open = experiment.RUN_OPTION_BOUNDS[key]
    value = low if low_open else (low - 1 if kind is int else low - 0.5)
    option = "--" + key.replace("_", "-")
    json_path = tmp_path / "out.json"
    source = ["--data", "taobao", "--path", str(tmp_path / "missing.csv")] if key == "rows" else []
    code = main(["run", *source, option, str(value), "--json", str(json_path)])
    captured = capsys.readouterr()
    assert code == 2
    assert f"error: {option}: expected" in captured.err, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert not json_path.exists()


@pytest.mark.parametrize("option, value", [("--optimizer", "rmsprop"), ("--lr-warmup-steps", "2.5")])
def test_unknown_optimizer_and_fractional_warmup_are_argparse_errors(data_file, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--data", str(data_file), option, value])
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--optimizer", "adagrad", "--lr-warmup-steps", "3", "--adagrad-eps", "1e-10"],
                                   ["--optimizer", "sgd", "--lr", "0.05", "--lr-warmup-steps", "5"]])
def test_run_with_another_optimizer_and_a_warmup(data_file, tmp_path, capsys, extra):
    assert main(_run_args(data_file, tmp_path, *extra)) == 0
    records = json.loads((tmp_path / "out.json").read_text())
    assert sorted((r["method"], r["seed"]) for r in records) == [("baseline", 0), ("baseline", 1), ("pfd", 0), ("pfd", 1)]
    assert f"optimizer {extra[1]}" in capsys.readouterr().err


def test_run_prints_a_table_with_every_method(finished_run):
    code, stdout, _, _ = finished_run[0]
    assert code == 0
    rows = [line.split()[0] for line in stdout.splitlines() if line.split()]
    assert "baseline" in rows and "pfd" in rows


def test_run_writes_one_json_record_per_method_and_seed(finished_run):
    _, _, records, _ = finished_run[0]
    assert isinstance(records, list)
    assert sorted((r["method"], r["seed"]) for r in records) == [("baseline", 0), ("baseline", 1), ("pfd", 0), ("pfd", 1)]
    for r in records:
        assert list(r) == list(RECORD_KEYS)
        assert r["task"] == "tiny"
        assert 0.0 <= r["auc"] <= 1.0 and r["logloss"] > 0.0


def test_same_seed_gives_identical_metrics_on_a_rerun(finished_run):
    (_, _, first, _), (_, _, rerun, _), _ = finished_run
    assert [(r["method"], r["seed"], *(r[m] for m in METRICS)) for r in first] == \
        [(r["method"], r["seed"], *(r[m] for m in METRICS)) for r in rerun]
    # records come in (seed, method) order; different seeds really train differently,
    # so the equality above is not vacuous
    assert (first[0]["method"], first[0]["seed"], first[2]["method"], first[2]["seed"]) == ("baseline", 0, "baseline", 1)
    assert first[0]["logloss"] != first[2]["logloss"]


def test_the_numpy_backend_gives_the_same_table(finished_run):
    (_, stdout, first, _), _, (code, numpy_stdout, numpy_records, _) = finished_run
    assert code == 0
    assert [(r["method"], r["seed"], *(r[m] for m in METRICS)) for r in first] == \
        [(r["method"], r["seed"], *(r[m] for m in METRICS)) for r in numpy_records]
    without_times = [line.rsplit(maxsplit=1)[0] for line in stdout.splitlines() if line.startswith(("baseline", "pfd"))]
    assert without_times == [line.rsplit(maxsplit=1)[0] for line in numpy_stdout.splitlines()
                             if line.startswith(("baseline", "pfd"))]


def test_saved_students_feed_score(finished_run, data_file, capsys):
    _, _, _, out_dir = finished_run[0]
    saved = sorted(p.name for p in (out_dir / "students").iterdir())
    assert saved == ["tiny_baseline_seed0.npz", "tiny_baseline_seed1.npz", "tiny_pfd_seed0.npz", "tiny_pfd_seed1.npz"]
    with np.load(data_file) as archive:
        user = int(archive["user_ids"][0])
    code = main(["score", str(out_dir / "students" / "tiny_pfd_seed0.npz"), "--users", str(user), "--k", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert lines[0] == "user,rank,item,score"
    assert len(lines) == 4
    for rank, line in enumerate(lines[1:], start=1):
        fields = line.split(",")
        assert fields[:2] == [str(user), str(rank)]
        int(fields[2]), float(fields[3])
    scores = [float(line.split(",")[3]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True)


def test_score_of_an_unknown_user_returns_2_naming_users(finished_run, capsys):
    _, _, _, out_dir = finished_run[0]
    code = main(["score", str(out_dir / "students" / "tiny_baseline_seed0.npz"), "--users", "987654", "--k", "3"])
    assert code == 2
    assert "error: users" in capsys.readouterr().err


def test_table_reprints_the_run_from_its_json(finished_run, tmp_path, capsys):
    code, stdout, records, out_dir = finished_run[0]
    assert main(["table", str(out_dir / "out.json")]) == 0
    assert capsys.readouterr().out == stdout
    # two files holding different seeds merge into one table
    halves = [tmp_path / "seed0.json", tmp_path / "seed1.json"]
    for seed, path in enumerate(halves):
        path.write_text(json.dumps([r for r in records if r["seed"] == seed]))
    assert main(["table", *map(str, halves)]) == 0
    merged = capsys.readouterr().out
    assert merged.startswith(stdout)  # then one line on what differs between the files: nothing
    assert merged[len(stdout):].startswith("runs merged:") and "their provenance is the same" in merged[len(stdout):]


@pytest.mark.parametrize("content, match", [("{}", "list of records"), ("[{\"task\": \"t\"}]", "missing method"),
                                            ("not json", "cannot read")])
def test_table_rejects_bad_record_files(tmp_path, capsys, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["table", str(path)]) == 2
    assert match in capsys.readouterr().err


def test_table_rejects_a_record_given_twice(finished_run, capsys):
    _, _, _, out_dir = finished_run[0]
    assert main(["table", str(out_dir / "out.json"), str(out_dir / "out.json")]) == 2
    assert "appears twice" in capsys.readouterr().err


def test_run_with_the_paper_layers_trains_saves_and_scores(data_file, tmp_path, capsys):
    """--activation leaky_relu --batch-norm --tower-norm l2 --tower-scale 5 reach the models,
    and the saved two-tower student (batch norm folded) serves its scaled scores."""
    code = main(_run_args(data_file, tmp_path, "--seeds", "1", "--student", "two_tower", "--activation", "leaky_relu",
                          "--batch-norm", "--tower-norm", "l2", "--tower-scale", "5"))
    assert code == 0
    from pfd_ref.serving import ServedStudent
    served = ServedStudent.load(tmp_path / "students" / "tiny_pfd_seed0.npz")
    config = served.model.config()
    assert (config["activation"], config["batch_norm"], config["tower_norm"], config["tower_scale"]) == (
        "leaky_relu", False, "l2", 5.0)  # batch norm trained, then folded into the saved weights
    capsys.readouterr()
    user = int(served.user_keys[0])
    assert main(["score", str(tmp_path / "students" / "tiny_pfd_seed0.npz"), "--users", str(user), "--k", "3"]) == 0
    scores = [float(line.split(",")[3]) for line in capsys.readouterr().out.splitlines()[1:]]
    # 5 cos + b with |cos| <= 1 (printed to 6 significant digits)
    assert len(scores) == 3 and all(abs(s - served.params["student.bias"][0]) <= 5.0 + 1e-4 for s in scores)


def test_a_batch_of_one_row_with_batch_norm_returns_2_before_training(data_file, tmp_path, capsys):
    """The saved tiny data trains on 134 rows (days 0 and 1): batches of 133 leave one row."""
    json_path = tmp_path / "out.json"
    code = main(_run_args(data_file, tmp_path, "--batch-size", "133", "--batch-norm"))
    captured = capsys.readouterr()
    assert code == 2 and "error: --batch-size: with batch normalisation, the training set (134 rows" in captured.err
    assert captured.out == "" and not json_path.exists() and not (tmp_path / "students").exists()


def test_run_reports_lupi_and_mtl_with_lupi_next_to_its_control(data_file, tmp_path, capsys):
    code = main(_run_args(data_file, tmp_path, "--methods", "baseline,mtl,lupi,lupi_teacher,pfd,pfd_teacher",
                          "--mtl-weight", "0.5"))
    assert code == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert {"baseline", "mtl", "lupi", "pfd", "lupi_teacher", "pfd_teacher"} <= set(lines)
    assert lines["lupi"].count("[") == 2 and lines["pfd"].count("[") == 1  # gain and control columns; gain only
    assert "lupi vs pfd" in out
    records = json.loads((tmp_path / "out.json").read_text())
    assert [r["method"] for r in records if r["seed"] == 0] == ["baseline", "mtl", "lupi", "lupi_teacher", "pfd",
                                                                "pfd_teacher"]
    train_config = records[0]["provenance"]["config"]["train_config"]
    assert train_config["distill"]["mtl_weight"] == 0.5 and train_config["sharing"] == "all"
    saved = np.load(tmp_path / "students" / "tiny_mtl_seed0.npz")
    assert not any(".aux." in name or name.startswith("param.aux.") for name in saved.files)  # only the main head


def test_the_simple_preset_trains_with_the_earlier_defaults(data_file, tmp_path, capsys):
    assert main(_run_args(data_file, tmp_path, "--seeds", "1", "--preset", "simple")) == 0
    config = json.loads((tmp_path / "out.json").read_text())[0]["provenance"]["config"]["train_config"]
    assert (config["optimizer"], config["lr"], config["lr_warmup_steps"], config["sharing"]) == ("adam", 0.005, 0, "none")
    assert (config["sizes"]["activation"], config["sizes"]["batch_norm"]) == ("relu", False)
    assert "preset simple: optimizer adam lr 0.005, relu, sharing none" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--mode", "two-stage", "--share", "all"], "error: --share: 'all' needs --mode sync"),
    (["--student", "two_tower", "--methods", "baseline,mtl"], "error: --methods: 'mtl' is defined for mlp students only"),
    (["--mtl-weight", "-1"], "error: --mtl-weight: expected a finite number >= 0"),
    (["--warmup-steps", "5"], "error: --warmup-steps: 5 is not shorter than training (5 steps)"),
    (["--batch-size", "133"], "error: --batch-size: with batch normalisation, the training set (134 rows"),
])
def test_bad_method_and_sharing_options_return_2_before_training(data_file, tmp_path, capsys, extra, message):
    code = main(_run_args(data_file, tmp_path, *extra))
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err
    assert captured.out == "" and not (tmp_path / "out.json").exists() and not (tmp_path / "students").exists()


@pytest.mark.parametrize("extra, message", [
    (["--mode", "two-stage", "--teacher-folds", "500"],
     "--teacher-folds: 500 folds of 134 training rows would leave a fold empty; at most 134"),
    (["--mode", "two-stage", "--teacher-folds", "1"], "--teacher-folds: 0, or >= 2 with mode 'two-stage'"),
    (["--mode", "two-stage", "--teacher-folds", "2", "--batch-size", "66"],
     "--batch-size: with batch normalisation, the teacher of fold 1/2 (67 rows, batches of 66)"),
    (["--batch-size", "1"], "--batch-size: batch normalisation needs batches of at least 2 rows"),
    (["--lambda", "2"], "--lambda: must be <= 1 when the hard loss is weighted by (1 - lambda)"),
    (["--test-days", "3"], "--test-days: 3 test day(s) leave no training day (days 0..2) in --data"),
])
def test_checks_on_the_data_name_the_option_as_typed_before_training(data_file, tmp_path, capsys, monkeypatch, extra,
                                                                     message):
    """What the configurations, train's checks and the data sources say of a run option is
    reported by the option as typed (``--teacher-folds``, not ``teacher_folds`` or ``folds``),
    before any training; a library call keeps the field's name (tests/test_train.py)."""
    monkeypatch.setattr(experiment, "train", _reached("train"))
    assert main(_run_args(data_file, tmp_path, *extra)) == 2
    captured = capsys.readouterr()
    assert f"pfd-ref: error: {message}" in captured.err, captured.err
    assert captured.out == "" and not (tmp_path / "out.json").exists() and not (tmp_path / "students").exists()


@pytest.mark.parametrize("method", ["lupi", "mtl"])
def test_lupi_and_mtl_on_data_without_privileged_features_return_2(tmp_path, capsys, method):
    data = tiny_dataset(np.random.default_rng(5), 200)
    schema = Schema(data.schema.regular())
    Dataset(schema, {f.name: data.columns[f.name] for f in schema}, data.labels, data.user_ids, data.day).save(
        tmp_path / "regular.npz")
    assert main(_run_args(tmp_path / "regular.npz", tmp_path, "--methods", f"baseline,{method}")) == 2
    assert f"error: --methods: '{method}'" in capsys.readouterr().err
    assert main(_run_args(tmp_path / "regular.npz", tmp_path, "--methods", "baseline,md", "--seeds", "1")) == 0


def test_tower_options_on_mlp_students_only_return_2(data_file, tmp_path, capsys):
    code = main(_run_args(data_file, tmp_path, "--student", "mlp", "--tower-norm", "l2"))
    assert code == 2 and "error: --tower-norm, --tower-scale: the tower options act on two-tower models" in capsys.readouterr().err


def test_oracle_dump_has_one_option_per_case_setting_with_its_default():
    from dataclasses import fields

    from pfd_ref.cli import build_parser
    from pfd_ref.oracle import CaseSpec
    required = ["oracle", "dump", "--model", "two_tower", "--method", "md", "--mode", "two-stage", "--out", "case.npz"]
    args = build_parser().parse_args(required)
    assert CaseSpec(**{f.name: getattr(args, f.name) for f in fields(CaseSpec)}) == CaseSpec("two_tower", "md", "two-stage")
    changed = build_parser().parse_args(required + ["--seed", "4", "--lambda", "0.25", "--adam", "dense", "--weights",
                                                    "--pooling", "sum", "--start-step", "2", "--dtype", "float32"])
    spec = CaseSpec(**{f.name: getattr(changed, f.name) for f in fields(CaseSpec)})
    assert (spec.seed, spec.lambda_, spec.adam_sparse, spec.weights, spec.pooling, spec.start_step, spec.dtype) == \
        (4, 0.25, "dense", True, "sum", 2, "float32")
    layers = build_parser().parse_args(required + ["--activation", "leaky_relu", "--batch-norm", "--tower-norm", "l2",
                                                   "--tower-scale", "5", "--optimizer", "adagrad", "--adagrad", "dense"])
    spec = CaseSpec(**{f.name: getattr(layers, f.name) for f in fields(CaseSpec)})
    assert (spec.activation, spec.batch_norm, spec.tower_norm, spec.tower_scale, spec.optimizer, spec.adagrad_sparse) == \
        ("leaky_relu", True, "l2", 5.0, "adagrad", "dense")


def test_oracle_objective_has_one_option_per_objective_setting_with_its_default():
    from dataclasses import fields

    from pfd_ref.cli import build_parser
    from pfd_ref.objective_oracle import ObjectiveSpec
    required = ["oracle", "objective", "--out", "case.npz"]
    args = build_parser().parse_args(required)
    assert ObjectiveSpec(**{f.name: getattr(args, f.name) for f in fields(ObjectiveSpec)}) == ObjectiveSpec()
    changed = build_parser().parse_args(required + ["--convention", "easyrec", "--loss", "ce", "--temperature", "3",
                                                    "--hard-weight", "one_minus_lambda", "--weights", "--rows", "9"])
    spec = ObjectiveSpec(**{f.name: getattr(changed, f.name) for f in fields(ObjectiveSpec)})
    assert (spec.convention, spec.loss, spec.temperature, spec.hard_weight, spec.weights, spec.rows) == \
        ("easyrec", "ce", 3.0, "one_minus_lambda", True, 9)


# --------------------------------------------------------------------------- faults: nothing lost


@pytest.mark.parametrize("make_argv, message", [
    (lambda d, t: ["run", "--data", d, "--json", t / "missing" / "out.json"], "--json: the directory of .* does not exist"),
    (lambda d, t: ["run", "--data", d, "--json", t], "--json: .* is a directory; give a file name"),
    (lambda d, t: ["run", "--data", d, "--json", t / "a_file" / "out.json"], "--json: the directory of .* is not a directory"),
    (lambda d, t: ["run", "--data", d, "--save", t / "a_file"], "--save: .*a_file is not a directory"),
    (lambda d, t: ["run", "--data", d, "--save", t / "a_file" / "s"], "--save: .* is not a directory \\(.*a_file is a file\\)"),
    (lambda d, t: ["oracle", "dump", "--model", "mlp", "--method", "pfd", "--mode", "sync", "--out", t / "no" / "c.npz"],
     "--out: the directory of .* does not exist"),
    (lambda d, t: ["oracle", "objective", "--out", t], "--out: .* is a directory"),
    (lambda d, t: ["score", t / "student.npz", "--users", "1", "--out", t / "no" / "top.csv"],
     "--out: the directory of .* does not exist"),
    (lambda d, t: ["metrics", t / "predictions.csv", "--json", t / "no" / "m.json"], "--json: the directory of .* does not exist"),
])
def test_output_paths_are_checked_before_anything_is_read_or_computed(data_file, tmp_path, capsys, monkeypatch,
                                                                      make_argv, message):
    """A wrong --json, --save or --out costs nothing: exit 2 before the data is loaded (every
    reader and computation here fails the test if it is reached), nothing written."""
    (tmp_path / "a_file").write_text("x")
    for name in ("prepare_runs",):
        monkeypatch.setattr(experiment, name, _reached(name))
    monkeypatch.setattr("pfd_ref.oracle.compute_case", _reached("compute_case"))
    monkeypatch.setattr("pfd_ref.objective_oracle.compute_objective_case", _reached("compute_objective_case"))
    monkeypatch.setattr("pfd_ref.serving.ServedStudent.load", _reached("ServedStudent.load"))
    monkeypatch.setattr("pfd_ref.score_files.read_predictions", _reached("read_predictions"))
    before = sorted(tmp_path.rglob("*"))
    assert main([str(a) for a in make_argv(str(data_file), tmp_path)]) == 2
    captured = capsys.readouterr()
    assert re.search(f"^pfd-ref: error: {message}", captured.err, re.M), captured.err
    assert captured.out == "" and sorted(tmp_path.rglob("*")) == before


def _reached(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} was reached before the output path was checked")
    return fail


@pytest.mark.parametrize("student, argv", [
    ("tiny_pfd_seed1.npz", ()),  # --methods baseline,pfd on the saved file tiny.npz
    ("ctr_pfd+md_seed2.npz", ("--data", None, "--methods", None)),  # the built-in data, every method of each student
    ("cvr_mtl_seed0.npz", ("--data", None, "--methods", None)),
])
def test_a_save_folder_whose_student_name_is_a_directory_returns_2_before_any_data(data_file, tmp_path, capsys,
                                                                                   monkeypatch, student, argv):
    """The student files of --save are checked before the data is read (prepare_runs), for
    every task, method and seed of the run."""
    monkeypatch.setattr(experiment, "prepare_runs", _reached("prepare_runs"))
    (tmp_path / "s" / student).mkdir(parents=True)
    args = _run_args(data_file, tmp_path, "--save", str(tmp_path / "s"), "--seeds", "3")
    for option, value in zip(argv[::2], argv[1::2]):  # None: the option left out (its default)
        at = args.index(option)
        del args[at:at + 2]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "error: --save: " in captured.err and f"{student} is a directory" in captured.err
    assert captured.out == "" and not (tmp_path / "out.json").exists()


def test_the_save_folder_is_made_with_its_first_student(data_file, tmp_path, capsys, monkeypatch):
    """--save DIR is not created when the run stops before any student is saved (here an
    interrupt in the first training); finished_run's is made by its first student."""
    _interrupt_at_seed(monkeypatch, 0)
    assert main(_run_args(data_file, tmp_path, "--save", str(tmp_path / "new" / "s"))) == 130
    assert not (tmp_path / "new").exists()


def _interrupt_at_seed(monkeypatch, seed: int, error=KeyboardInterrupt):
    """Make experiment.train raise ``error`` when it starts training seed ``seed``."""
    real = experiment.train

    def train(data, method, config, **kwargs):
        if config.seed == seed:
            raise error()
        return real(data, method, config, **kwargs)

    monkeypatch.setattr(experiment, "train", train)


def test_an_interrupted_run_keeps_every_seed_it_finished(data_file, tmp_path, capsys, monkeypatch):
    """Ctrl-C during seed 2 of 4: exit 130; the JSON holds the records of seeds 0 and 1 and the
    students of seeds 0 and 1 are saved whole (each was written when it finished)."""
    _interrupt_at_seed(monkeypatch, 2)
    assert main(_run_args(data_file, tmp_path, "--seeds", "4")) == 130
    err = capsys.readouterr().err
    assert f"pfd-ref: interrupted; {tmp_path / 'out.json'} holds the 4 records of the seeds that finished" in err
    records = json.loads((tmp_path / "out.json").read_text())
    assert sorted((r["method"], r["seed"]) for r in records) == [("baseline", 0), ("baseline", 1), ("pfd", 0), ("pfd", 1)]
    assert all(r["provenance"]["config"]["options"]["seeds"] == [0, 1, 2, 3] for r in records)
    from pfd_ref.serving import ServedStudent
    students = sorted(p.name for p in (tmp_path / "students").iterdir())
    assert students == ["tiny_baseline_seed0.npz", "tiny_baseline_seed1.npz", "tiny_pfd_seed0.npz", "tiny_pfd_seed1.npz"]
    for name in students:
        ServedStudent.load(tmp_path / "students" / name)


def test_json_is_rewritten_after_every_seed_with_all_records_so_far(data_file, tmp_path, monkeypatch):
    """The rule: after each finished seed of each task, every record so far (a later failure
    loses at most the seed in progress)."""
    from pfd_ref import files
    written, real = [], files.write_atomically

    def recording(path, write, mode="wb"):
        result = real(path, write, mode)
        if str(path).endswith("out.json"):
            written.append([(r["method"], r["seed"]) for r in json.loads(Path(path).read_text())])
        return result

    monkeypatch.setattr("pfd_ref.cli.write_atomically", recording)
    assert main(_run_args(data_file, tmp_path, "--seeds", "3", "--quiet")) == 0
    assert written == [[("baseline", 0), ("pfd", 0)], [("baseline", 0), ("pfd", 0), ("baseline", 1), ("pfd", 1)],
                       [("baseline", 0), ("pfd", 0), ("baseline", 1), ("pfd", 1), ("baseline", 2), ("pfd", 2)]]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_device_that_fills_up_during_the_run_keeps_the_finished_seeds(data_file, tmp_path, capsys, monkeypatch):
    from pfd_ref import files
    real, calls = files._create, []

    def create(path):
        if Path(path).name == "out.json":
            calls.append(path)
            if len(calls) > 1:  # the second write of the records: the device is full
                return os.open("/dev/full", os.O_WRONLY), Path(path).with_name(".never")
        return real(path)

    monkeypatch.setattr(files, "_create", create)
    assert main(_run_args(data_file, tmp_path, "--seeds", "3")) == 2
    assert f"pfd-ref: error: {tmp_path / 'out.json'}: No space left on device" in capsys.readouterr().err
    assert sorted((r["method"], r["seed"]) for r in json.loads((tmp_path / "out.json").read_text())) == [
        ("baseline", 0), ("pfd", 0)]
    assert not list(tmp_path.glob(".out.json.*"))


def test_sigterm_ends_a_run_like_ctrl_c_keeping_the_finished_seeds(data_file, tmp_path):
    """A real process: SIGTERM once seed 0 is written; it exits 130 and leaves no temporary file."""
    process = subprocess.Popen([sys.executable, "-m", "pfd_ref.cli", *_run_args(data_file, tmp_path, "--seeds", "5",
                                                                               "--epochs", "40")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "out.json").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    records = json.loads((tmp_path / "out.json").read_text())
    seeds = sorted({r["seed"] for r in records})
    assert process.returncode == 130 and "pfd-ref: interrupted;" in err, err
    assert seeds and seeds == list(range(len(seeds))) and len(seeds) < 5 and len(records) == 2 * len(seeds)
    assert not list(tmp_path.rglob(".*.tmp"))


@pytest.mark.parametrize("error", [OSError(28, "No space left on device", "/data/x.json"), zipfile.BadZipFile("bad"),
                                   zlib.error("Error -3 while decompressing"), EOFError("cut"), csv.Error("field"),
                                   ValueError("--k: expected an integer")])
def test_expected_errors_are_messages_not_tracebacks(monkeypatch, capsys, error):
    def command(args):
        raise error
    monkeypatch.setitem(cli.COMMANDS, "table", command)
    assert main(["table", "x.json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pfd-ref: error: ") and "Traceback" not in err
    if isinstance(error, OSError):
        assert err == "pfd-ref: error: /data/x.json: No space left on device\n"


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    """Only the expected classes become messages: anything else is a bug and must show where."""
    def command(args):
        raise RuntimeError("a bug")
    monkeypatch.setitem(cli.COMMANDS, "table", command)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["table", "x.json"])


@pytest.mark.parametrize("seeds, message", [("1,1", "seed(s) [1] listed twice"), ("-1,2", "a seed must be >= 0, got -1"),
                                            ("0", "the count must be >= 1"), ("1.5", "expected a count or a comma list")])
def test_bad_seeds_are_refused_when_the_arguments_are_parsed(data_file, capsys, monkeypatch, seeds, message):
    monkeypatch.setattr(experiment, "resolve_options", _reached("resolve_options"))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--data", str(data_file), f"--seeds={seeds}"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("users, message", [("1.7", "expected a comma list of integers"), (",", "at least one integer")])
def test_bad_user_lists_are_argparse_errors(capsys, users, message):
    with pytest.raises(SystemExit):
        main(["score", "student.npz", f"--users={users}"])
    assert message in capsys.readouterr().err


def test_score_writes_its_csv_atomically(finished_run, tmp_path, capsys):
    _, _, _, out_dir = finished_run[0]
    from pfd_ref.serving import ServedStudent
    student = out_dir / "students" / "tiny_pfd_seed0.npz"
    user = int(ServedStudent.load(student).user_keys[0])
    assert main(["score", str(student), "--users", str(user), "--k", "2", "--out", str(tmp_path / "top.csv")]) == 0
    assert (tmp_path / "top.csv").read_text().splitlines()[0] == "user,rank,item,score"
    assert [p.name for p in tmp_path.iterdir()] == ["top.csv"]


# --------------------------------------------------------------------------- defaults that fit the file


KUAIRAND_SAMPLE = Path(__file__).resolve().parent / "data" / "kuairand_sample.tsv"


def _kuairand_log(path: Path, rows: int) -> Path:
    """``rows`` rows in the KuaiRand log format (the sample's, with fresh ids) over 4 days."""
    lines = KUAIRAND_SAMPLE.read_text().splitlines()
    rng = np.random.default_rng(1)
    out = [lines[0]]
    for k in range(rows):
        cells = lines[1 + k % (len(lines) - 1)].split("\t")
        cells[0], cells[1], cells[2] = str(1000 + rng.integers(0, 60)), str(5000 + rng.integers(0, 400)), f"202204{8 + 4 * k // rows:02d}"
        out.append("\t".join(cells))
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.mark.parametrize("rows, expected", [
    # 241 // 20 = 12 leaves a last batch of one row (241 = 20 * 12 + 1), which the paper preset's batch norm refuses: 13
    (None, ["kuairand_label: defaults fitted to its 241 training rows: --batch-size 13 (default 1024) (at least 20 "
            "steps an epoch"]),
    (2000, ["--test-days 1 (default 4): the data spans 4 day(s)",
            "kuairand_label: defaults fitted to its 1,500 training rows: --batch-size 75 (default 1024) (at least 20 "
            "steps an epoch"]),
])
def test_a_small_kuairand_log_runs_with_the_defaults_and_says_what_it_fitted(tmp_path, capsys, rows, expected):
    """A valid 2,000-row log in the official format (and the 297-row sample) ran into
    "warmup_steps: 10 is not shorter than training (2 steps of 1024 rows)"; now the defaults
    left unset are fitted to the file, each on a line of its own."""
    path = KUAIRAND_SAMPLE if rows is None else _kuairand_log(tmp_path / "log.tsv", rows)
    assert main(["run", "--data", "kuairand", "--path", str(path), "--seeds", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    for line in expected:
        assert line in err, err


def test_options_given_are_never_fitted(tmp_path, capsys):
    """--batch-size 1024 given: only the warm-up, left unset (the simple preset's source default
    of 10 steps), is fitted to its 2 steps; both given: the schedule error, as before."""
    path = _kuairand_log(tmp_path / "log.tsv", 2000)
    run = ["run", "--data", "kuairand", "--path", str(path), "--seeds", "1", "--quiet", "--methods", "baseline,pfd",
           "--batch-size", "1024", "--preset", "simple"]
    assert main(run) == 0
    assert "defaults fitted to its 1,500 training rows: --warmup-steps 1 (default 10)" in capsys.readouterr().err
    assert main(run + ["--warmup-steps", "10", "--test-days", "1"]) == 2
    assert "error: --warmup-steps: 10 is not shorter than training (2 steps" in capsys.readouterr().err


# --------------------------------------------------------------------------- score: candidates, item vectors


def _score_lines(capsys, *argv):
    code = main(["score", *map(str, argv)])
    captured = capsys.readouterr()
    return code, [line.split(",") for line in captured.out.strip().splitlines()[1:]], captured.err


def test_score_ranks_each_users_candidates_from_a_csv(finished_run, tmp_path, capsys):
    from pfd_ref.serving import ServedStudent
    model = finished_run[0][3] / "students" / "tiny_pfd_seed0.npz"
    served = ServedStudent.load(model)
    users, items = [int(u) for u in served.user_keys[[2, 0]]], [int(i) for i in served.item_keys]
    wanted = {users[0]: items[::2], users[1]: items[1:4]}
    path = tmp_path / "candidates.csv"
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, keys in wanted.items() for i in keys))
    code, rows, _ = _score_lines(capsys, model, "--candidates", path, "--k", 2)
    assert code == 0
    assert [int(r[0]) for r in rows] == [users[0], users[0], users[1], users[1]]  # users in the file's order
    for user in users:
        expected_items, expected_scores = served.rank_candidates(user, wanted[user], 2)
        got = [r for r in rows if int(r[0]) == user]
        assert [int(r[2]) for r in got] == list(expected_items)
        np.testing.assert_allclose([float(r[3]) for r in got], expected_scores, rtol=1e-5)
    code, rows, _ = _score_lines(capsys, model, "--candidates", path, "--users", users[1], "--k", 10)
    assert code == 0 and sorted(int(r[2]) for r in rows) == sorted(wanted[users[1]])


@pytest.mark.parametrize("content, users, message", [
    ("user;item\n1,2\n", [], "expected the header 'user,item'"),
    ("user,item\n1,2\n1,2\n", [], "user 1 lists item 2 twice"),
    ("user,item\n1,x\n", [], "expected two integer columns"),
    ("user,item\n", [], "expected rows of two integers"),
    ("user,item\n1,2\n", ["--users", "1,3"], "lists no candidates for user 3"),
])
def test_score_rejects_bad_candidate_files(finished_run, tmp_path, capsys, content, users, message):
    path = tmp_path / "candidates.csv"
    path.write_text(content)
    code, _, err = _score_lines(capsys, finished_run[0][3] / "students" / "tiny_pfd_seed0.npz", "--candidates", path,
                                *users)
    assert code == 2 and f"error: --candidates: " in err and message in err


def test_score_reads_two_tower_item_vectors_from_a_file(data_file, tmp_path, capsys):
    from pfd_ref import catalogue, kernels
    from pfd_ref.data import Dataset
    from pfd_ref.serving import ServedStudent, save_student
    from pfd_ref.distill import ModelSizes
    from pfd_ref.train import TrainConfig, train
    data = Dataset.load(data_file)
    sizes = ModelSizes(embed_dim=3, student_hidden=(4,), tower_out_dim=3, strong_hidden=(6, 4))
    result = train(data, "baseline", TrainConfig(student_kind="two_tower", epochs=1, batch_size=32, sizes=sizes, seed=1))
    model = save_student(tmp_path / "two_tower.npz", result, data)
    served = ServedStudent.load(model)
    vectors = catalogue.save_item_vectors(tmp_path / "v.npy", served.item_vectors(), *served.item_vectors().shape,
                                          served.item_vectors().dtype)
    users = [int(u) for u in served.user_keys[:2]]
    code, rows, _ = _score_lines(capsys, model, "--users", ",".join(map(str, users)), "--item-vectors", vectors, "--k", 4)
    assert code == 0
    scores, rows_expected = kernels.top_k_items(served.item_vectors(), served.user_vectors(users), 4)
    assert [int(r[2]) for r in rows] == rows_expected.reshape(-1).tolist()  # items are rows of the file
    np.testing.assert_allclose([float(r[3]) for r in rows], served.logits(scores).reshape(-1), rtol=1e-5)
    path = tmp_path / "candidates.csv"
    path.write_text(f"user,item\n{users[0]},3\n{users[0]},1\n")
    code, rows, _ = _score_lines(capsys, model, "--candidates", path, "--item-vectors", vectors, "--k", 5)
    assert code == 0 and sorted(int(r[2]) for r in rows) == [1, 3]


def test_score_refuses_item_vectors_for_an_mlp_student(finished_run, tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.zeros((3, 2), np.float32))
    code, _, err = _score_lines(capsys, finished_run[0][3] / "students" / "tiny_pfd_seed0.npz", "--users", 1,
                                "--item-vectors", tmp_path / "v.npy")
    assert code == 2 and "--item-vectors: only for a two-tower student" in err


# --------------------------------------------------------------------------- run: compilation apart


def test_run_reports_the_compile_time_on_its_own_line(data_file, tmp_path, capsys):
    code = main(["run", "--data", str(data_file), "--methods", "baseline", "--seeds", "1", "--batch-size", "64",
                 "--quiet", "--backend", "numba"])
    err = capsys.readouterr().err
    assert code == 0
    assert re.search(r"^compile: the float32 training kernels, compiled or loaded from Numba's cache in \d+\.\d s "
                     r"\(not counted in train s\)$", err, re.MULTILINE)


TRAINING_COMPILES_NOTHING = """
import sys
from numba.core import event
from pfd_ref import cli, kernels


class Recorder(event.Listener):
    def __init__(self):
        self.names = []

    def on_start(self, ev):
        self.names.append(ev.data["dispatcher"].py_func.__qualname__)

    def on_end(self, ev):
        pass


recorder = Recorder()
compile_all = kernels.compile_all


def compile_then_record(*args, **kwargs):
    compile_all(*args, **kwargs)
    event.register("numba:compile", recorder)


kernels.compile_all = compile_then_record
code = cli.main(sys.argv[1:])
print("compiled after compile_all:", recorder.names)
sys.exit(code)
"""


def test_run_compiles_no_kernel_after_its_compile_line(data_file, tmp_path):
    """A fresh process with an empty Numba cache: every kernel the run needs is compiled by
    the compile line, none during training or evaluation."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", TRAINING_COMPILES_NOTHING, "run", "--data", str(data_file),
                           "--methods", "baseline,pfd", "--seeds", "1", "--batch-size", "32", "--warmup-steps", "1", "--quiet",
                           "--backend", "numba"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "compiled after compile_all: []" in done.stdout

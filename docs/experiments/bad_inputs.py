"""Bad inputs and faults, tried one by one: what pfd-ref says to each (issue 14).

    python docs/experiments/bad_inputs.py            # every case, a Markdown table on stdout
    python docs/experiments/bad_inputs.py --only 'bad files'

Each case is a command line (run in this process through ``pfd_ref.cli.main``, its stderr
captured), a Python call, or a fault run in subprocesses (an interrupt, concurrent writers,
a kill in the middle of a save, a full device). Its outcome is one of

* ``error``: a clear message (``pfd-ref: error: ...`` or argparse's, with exit status 2; a
  ``ValueError`` naming the argument from Python);
* ``fail``: ``oracle check`` ran and reported a mismatch (exit status 1);
* ``ok``: accepted (the input is valid; the message says what happened);
* ``kept``: a fault that lost nothing (the message says what was kept);
* ``TRACEBACK`` / ``LOST``: a defect.

A case also states the outcome it expects; the script exits 1 when any case differs, so it
can run in CI as well. Everything happens in a temporary directory; a run takes a minute or
two (the faults start subprocesses).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np

from pfd_ref import DistillConfig, TrainConfig
from pfd_ref.cli import main
from pfd_ref.data import SyntheticConfig, generate
from pfd_ref.data.dataset import Dataset, load_npz
from pfd_ref.distill import student_objective
from pfd_ref.experiment import load_records
from pfd_ref.losses import hard_loss, soft_loss
from pfd_ref.oracle import CaseSpec, check_arrays
from pfd_ref.serving import ServedStudent

REPOSITORY = Path(__file__).resolve().parents[2]
KUAIRAND_SAMPLE = REPOSITORY / "tests" / "data" / "kuairand_sample.tsv"
QUICK = ["--batch-size", "32", "--warmup-steps", "1", "--quiet"]  # a run of a few seconds on the small data


@dataclass
class Case:
    category: str
    what: str
    attempt: Callable[[], tuple[str, str]]  # -> (outcome, message)
    expect: str = "error"


def one_line(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def cli(*argv) -> tuple[str, str]:
    """Run ``pfd-ref argv`` in this process: ``(outcome, message)``."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse
        code = stop.code
    except BaseException as error:  # noqa: BLE001 (a traceback is what this script looks for)
        return "TRACEBACK", f"{type(error).__name__}: {error} ({traceback.extract_tb(error.__traceback__)[-1].name})"
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    if code == 2 and errors:
        return "error", errors[-1]
    if code == 1:
        verdict = [line for line in out.getvalue().splitlines() if line.startswith(("PASS", "FAIL"))]
        return "fail", verdict[-1] if verdict else out.getvalue()[-200:]
    if code == 0:
        notes = [line.strip() for line in lines if "fitted" in line or "--test-days" in line]
        return "ok", (notes[0] if notes else (out.getvalue().strip().splitlines() or ["exit 0"])[-1])
    return "TRACEBACK", f"exit {code}: {(lines or ['(no message)'])[-1]}"


def api(call: Callable[[], object]) -> tuple[str, str]:
    """Call ``call()``: ``("error", message)`` for a ValueError, ``("ok", repr)`` when it returns."""
    try:
        value = call()
    except ValueError as error:
        return "error", f"ValueError: {error}"
    except BaseException as error:  # noqa: BLE001
        return "TRACEBACK", f"{type(error).__name__}: {error}"
    return "ok", one_line(repr(value), 100)


# --------------------------------------------------------------------------- the files the cases spoil


class Files:
    """Valid inputs in a temporary directory, and spoilt copies of them."""

    def __init__(self, root: Path):
        self.root = root
        train, test = generate("cvr", SyntheticConfig(n_users=150, n_items=300, n_days=6, test_days=1, seed=3))
        self.data = root / "data.npz"
        train.save(self.data)
        self.dataset = train
        students = root / "students"
        assert cli("run", "--data", self.data, "--methods", "baseline", "--seeds", "1", *QUICK,
                   "--save", students)[0] == "ok"
        self.student = next(students.glob("*.npz"))
        self.case = root / "case.npz"
        assert cli("oracle", "dump", "--model", "mlp", "--method", "pfd", "--mode", "sync", "--out", self.case)[0] == "ok"
        case = load_npz(self.case)
        self.case_arrays = case
        self.theirs = self.npz("theirs.npz", {k: v for k, v in case.items() if k.startswith("output.")})
        rng = np.random.default_rng(0)
        self.predictions = self.text("predictions.csv", "label,score,user_id\n" + "".join(
            f"{int(rng.random() < 0.3)},{rng.normal():.6f},{rng.integers(0, 5)}\n" for _ in range(40)))
        self.kuairand = self.kuairand_log(2000)
        self.records = root / "records.json"
        assert cli("run", "--data", self.data, "--methods", "baseline", "--seeds", "2", *QUICK,
                   "--json", self.records)[0] == "ok"

    def path(self, name: str) -> Path:
        return self.root / name

    def text(self, name: str, text: str) -> Path:
        self.path(name).write_text(text)
        return self.path(name)

    def npz(self, name: str, arrays: dict) -> Path:
        np.savez(self.path(name), **arrays)
        return self.path(name)

    def truncated(self, source: Path, name: str) -> Path:
        data = source.read_bytes()
        self.path(name).write_bytes(data[:len(data) // 2])
        return self.path(name)

    def corrupted(self, source: Path, name: str) -> Path:
        """A copy with bytes flipped inside its largest member's data: the zip's CRC fails."""
        data = bytearray(source.read_bytes())
        with zipfile.ZipFile(source) as archive:
            member = max(archive.infolist(), key=lambda info: info.compress_size)
        start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + member.compress_size // 2
        for k in range(start, start + 8):
            data[k] ^= 0xFF
        self.path(name).write_bytes(bytes(data))
        return self.path(name)

    def student_without(self, name: str, drop: Callable[[str], bool], add: dict | None = None,
                        change: dict | None = None) -> Path:
        arrays = {k: v for k, v in load_npz(self.student).items() if not drop(k)}
        arrays.update(add or {})
        for key, function in (change or {}).items():
            arrays[key] = function(arrays[key])
        return self.npz(name, arrays)

    def dataset_with(self, name: str, drop=(), add: dict | None = None, change: dict | None = None) -> Path:
        arrays = {k: v for k, v in load_npz(self.data).items() if k not in drop}
        arrays.update(add or {})
        for key, function in (change or {}).items():
            arrays[key] = function(arrays[key])
        return self.npz(name, arrays)

    def kuairand_log(self, rows: int, name: str = "kuairand_2000.tsv") -> Path:
        """``rows`` rows in the official KuaiRand log format: the sample's rows, repeated with
        fresh user and video ids and dates spread over 2022-04-08..04-11."""
        lines = KUAIRAND_SAMPLE.read_text().splitlines()
        header, body = lines[0], lines[1:]
        rng = np.random.default_rng(1)
        out = [header]
        for k in range(rows):
            cells = body[k % len(body)].split("\t")
            cells[0] = str(1000 + rng.integers(0, 60))          # user_id
            cells[1] = str(5000 + rng.integers(0, 400))         # video_id
            cells[2] = f"202204{8 + k * 4 // rows:02d}"                # date: 4 days
            out.append("\t".join(cells))
        return self.text(name, "\n".join(out) + "\n")


# --------------------------------------------------------------------------- the cases


def output_cases(f: Files) -> list[Case]:
    run = ["run", "--data", f.data, "--methods", "baseline,pfd", "--seeds", "1", *QUICK]
    blocker = f.text("a_file", "x")
    directory = f.path("a_directory")
    directory.mkdir()
    (f.path("save_clash") / f"{f.data.stem}_pfd_seed0.npz").mkdir(parents=True)
    c = "outputs"
    return [
        Case(c, "run --json into a missing directory", lambda: cli(*run, "--json", f.path("missing/out.json"))),
        Case(c, "run --json onto a directory", lambda: cli(*run, "--json", directory)),
        Case(c, "run --json under a file (a_file/out.json)", lambda: cli(*run, "--json", blocker / "out.json")),
        Case(c, "run --save onto an existing file", lambda: cli(*run, "--save", blocker)),
        Case(c, "run --save under a file", lambda: cli(*run, "--save", blocker / "students")),
        Case(c, "run --save where a student's file name is a directory",
             lambda: cli(*run, "--save", f.path("save_clash"))),
        Case(c, "oracle dump --out into a missing directory",
             lambda: cli("oracle", "dump", "--model", "mlp", "--method", "pfd", "--mode", "sync",
                         "--out", f.path("missing/case.npz"))),
        Case(c, "oracle dump --out onto a directory",
             lambda: cli("oracle", "dump", "--model", "mlp", "--method", "pfd", "--mode", "sync", "--out", directory)),
        Case(c, "oracle objective --out into a missing directory",
             lambda: cli("oracle", "objective", "--out", f.path("missing/objective.npz"))),
        Case(c, "oracle objective --out onto a directory", lambda: cli("oracle", "objective", "--out", directory)),
        Case(c, "score --out into a missing directory",
             lambda: cli("score", f.student, "--users", _a_user(f), "--out", f.path("missing/top.csv"))),
        Case(c, "score --out onto a directory", lambda: cli("score", f.student, "--users", _a_user(f), "--out", directory)),
        Case(c, "metrics --json into a missing directory",
             lambda: cli("metrics", f.predictions, "--json", f.path("missing/m.json"))),
        Case(c, "metrics --json onto a directory", lambda: cli("metrics", f.predictions, "--json", directory)),
        Case(c, "run --json on a full device (every write fails with ENOSPC)", lambda: full_device(run, f)),
        Case(c, "run --json: the device fills up after the first seed", lambda: fills_up(f), "kept"),
    ]


def _a_user(f: Files) -> str:
    return str(int(load_npz(f.student)["user_keys"][0]))


def _dev_full(path):
    """A stand-in for ``files._create``: a descriptor on /dev/full, where every write fails with ENOSPC."""
    return os.open("/dev/full", os.O_WRONLY), Path(path).with_name(".never-created")


def full_device(run: list, f: Files) -> tuple[str, str]:
    with mock.patch("pfd_ref.files._create", _dev_full):
        outcome, message = cli(*run, "--json", f.path("full.json"))
    return outcome, message + ("" if not f.path("full.json").exists() else " (but a file appeared)")


def fills_up(f: Files) -> tuple[str, str]:
    """ENOSPC from the second JSON write on: the first seed's records stay in the file."""
    from pfd_ref import files
    real, writes = files._create, []

    def create(path):
        if Path(path).name == "fill.json":
            writes.append(path)
            if len(writes) > 1:
                return _dev_full(path)
        return real(path)

    target = f.path("fill.json")
    with mock.patch("pfd_ref.files._create", create):
        outcome, message = cli("run", "--data", f.data, "--methods", "baseline", "--seeds", "3", *QUICK, "--json", target)
    records = json.loads(target.read_text())
    if outcome != "error":
        return "LOST", f"{outcome}: {message}"
    return "kept", f"{message}; {target.name} still holds the {len(records)} records of seed 0"


def bad_file_cases(f: Files) -> list[Case]:
    c = "bad files"
    text = f.text("notes.npz", "these are notes, not arrays\n")
    binary = f.path("random.npz")
    binary.write_bytes(np.random.default_rng(0).bytes(4000))
    empty = f.text("empty.npz", "")
    npy = f.path("array.npy")
    np.save(npy, np.arange(4))
    pickled = f.npz("pickled.npz", {"a": np.array([{"x": 1}], dtype=object)})
    user = _a_user(f)
    score = lambda model: cli("score", model, "--users", user)  # noqa: E731
    data = lambda path: cli("run", "--data", path, "--methods", "baseline", "--seeds", "1", *QUICK)  # noqa: E731
    cases = []
    for what, path in (("truncated", f.truncated(f.student, "student_truncated.npz")),
                       ("corrupt (bytes flipped: bad CRC)", f.corrupted(f.student, "student_corrupt.npz")),
                       ("random bytes", binary), ("a text file", text), ("empty (0 bytes)", empty), ("a .npy", npy),
                       ("a directory", f.root), ("missing", f.path("nothing.npz")), ("pickled object array", pickled)):
        cases.append(Case(c, f"score: student file {what}", lambda path=path: score(path)))
    for what, path in (("truncated", f.truncated(f.data, "data_truncated.npz")),
                       ("corrupt (bad CRC)", f.corrupted(f.data, "data_corrupt.npz")), ("a text file", text),
                       ("random bytes", binary), ("a directory", f.root)):
        cases.append(Case(c, f"run --data: dataset {what}", lambda path=path: data(path)))
    for what, path in (("truncated", f.truncated(f.case, "case_truncated.npz")),
                       ("corrupt (bad CRC)", f.corrupted(f.case, "case_corrupt.npz")), ("a text file", text),
                       ("a dataset, not a case", f.data)):
        cases.append(Case(c, f"oracle check: case {what}", lambda path=path: cli("oracle", "check", path, f.theirs)))
    for what, path in (("truncated", f.truncated(f.theirs, "theirs_truncated.npz")), ("a text file", text),
                       ("random bytes", binary)):
        cases.append(Case(c, f"oracle check: THEIRS {what}", lambda path=path: cli("oracle", "check", f.case, path)))
    cases += [
        Case(c, "metrics: predictions .npz truncated",
             lambda: cli("metrics", f.truncated(f.npz("p.npz", {"label": np.array([0, 1]), "score": np.array([.1, .2])}),
                                                "p_truncated.npz"))),
        Case(c, "run --teacher-scores: a text file named .npz",
             lambda: cli("run", "--data", f.data, "--mode", "two-stage", "--teacher-scores", text, *QUICK)),
    ]
    student = f.student
    cases += [
        Case(c, "score: student file without its param.* arrays",
             lambda: score(f.student_without("s1.npz", lambda k: k.startswith("param.")))),
        Case(c, "score: student file without one user column",
             lambda: score(f.student_without("s2.npz", lambda k: k == "users.user_id"))),
        Case(c, "score: student file without item_keys", lambda: score(f.student_without("s3.npz", lambda k: k == "item_keys"))),
        Case(c, "score: student file without config", lambda: score(f.student_without("s4.npz", lambda k: k == "config"))),
        Case(c, "score: student file with an extra array",
             lambda: score(f.student_without("s5.npz", lambda k: False, add={"param.extra": np.zeros(3)}))),
        Case(c, "score: student config not JSON",
             lambda: score(f.student_without("s6.npz", lambda k: False, change={"config": lambda v: np.array("{oops")}))),
        Case(c, "score: student user_keys unsorted",
             lambda: score(f.student_without("s7.npz", lambda k: False, change={"user_keys": lambda v: v[::-1].copy()}))),
        Case(c, "score: student parameter with NaN",
             lambda: score(f.student_without("s8.npz", lambda k: False, change={
                 _first_param(student, "weight"): lambda v: np.where(np.arange(v.size).reshape(v.shape) == 0, np.nan, v)}))),
        Case(c, "score: student parameter of the wrong shape",
             lambda: score(f.student_without("s9.npz", lambda k: False, change={
                 _first_param(student, "weight"): lambda v: v[:-1]}))),
        Case(c, "score: student item ids outside their table",
             lambda: score(f.student_without("s10.npz", lambda k: False, change={"items.item_id": lambda v: v + 10**6}))),
        Case(c, "score: student file of format 1",
             lambda: score(f.student_without("s11.npz", lambda k: False,
                                             change={"format": lambda v: np.array("pfd_ref.student/1")}))),
        Case(c, "run --data: dataset without labels", lambda: data(f.dataset_with("d1.npz", drop=("labels",)))),
        Case(c, "run --data: dataset with an extra array (docs/data.md: an error)",
             lambda: data(f.dataset_with("d2.npz", add={"column.extra": np.zeros(3)}))),
        Case(c, "run --data: dataset with 0 rows", lambda: data(_empty_dataset(f))),
        Case(c, "run --data: dataset schema not JSON", lambda: data(f.dataset_with("d4.npz", change={"schema": lambda v: np.array("[")}))),
        Case(c, "run --data: dataset label 2", lambda: data(f.dataset_with("d5.npz", change={"labels": lambda v: v + 2}))),
        Case(c, "run --data: dataset format 1", lambda: data(f.dataset_with("d6.npz", change={"pfd_ref_dataset_format": lambda v: np.array(1)}))),
        Case(c, "run --data: dataset without a day column", lambda: data(f.dataset_with("d7.npz", drop=("day",)))),
        Case(c, "run --data: dataset of a single day", lambda: data(f.dataset_with("d8.npz", change={"day": np.zeros_like}))),
        Case(c, "oracle check: THEIRS with integer (int64) labels", lambda: cli(
            "oracle", "check", f.case, f.npz("theirs_int_labels.npz", {**load_npz(f.theirs),
                                                                        "input.labels": f.case_arrays["input.labels"].astype(np.int64)})),
             "ok"),
        Case(c, "oracle check: THEIRS with a NaN", lambda: cli("oracle", "check", f.case, _theirs_with_nan(f)), "fail"),
    ]
    cases += csv_cases(f)
    return cases


def _first_param(student: Path, suffix: str) -> str:
    return next(k for k in load_npz(student) if k.startswith("param.") and k.endswith(suffix))


def _empty_dataset(f: Files) -> Path:
    empty = f.dataset.take(np.zeros(0, dtype=np.int64))
    empty.save(f.path("empty_data.npz"))
    return f.path("empty_data.npz")


def _theirs_with_nan(f: Files) -> Path:
    arrays = load_npz(f.theirs)
    arrays["output.student_logits"] = arrays["output.student_logits"].copy()
    arrays["output.student_logits"][0] = np.nan
    return f.npz("theirs_nan.npz", arrays)


def csv_cases(f: Files) -> list[Case]:
    c = "bad files"
    huge = "x" * 200_000
    metrics = lambda name, text: cli("metrics", f.text(name, text))  # noqa: E731
    log = f.kuairand.read_text().splitlines()
    header = log[0].split("\t")
    kuairand = lambda name, lines: cli("run", "--data", "kuairand", "--path", f.text(name, "\n".join(lines) + "\n"),  # noqa: E731
                                       "--seeds", "1", "--methods", "baseline", "--quiet")

    def cell(line: str, column: str, value: str) -> str:
        cells = line.split("\t")
        cells[header.index(column)] = value
        return "\t".join(cells)

    return [
        Case(c, "metrics: a CSV cell of 200,000 characters in an unread column",
             lambda: metrics("huge.csv", f"label,score,note\n1,0.5,{huge}\n0,-0.5,x\n"), "ok"),
        Case(c, "metrics: a CSV ending in a blank line", lambda: metrics("blank.csv", "label,score\n1,0.5\n0,-0.5\n\n"), "ok"),
        Case(c, "metrics: a CSV cell of 200,000 characters in the score column",
             lambda: metrics("huge_score.csv", f"label,score\n1,{huge}\n0,-0.5\n")),
        Case(c, "metrics: CSV without a score column", lambda: metrics("noscore.csv", "label,value\n1,0.5\n")),
        Case(c, "metrics: CSV score 'abc'", lambda: metrics("abc.csv", "label,score\n1,abc\n0,0.1\n")),
        Case(c, "metrics: CSV score NaN", lambda: metrics("nan.csv", "label,score\n1,nan\n0,0.1\n")),
        Case(c, "metrics: CSV label 2", lambda: metrics("two.csv", "label,score\n2,0.5\n0,0.1\n")),
        Case(c, "metrics: CSV header only", lambda: metrics("header.csv", "label,score\n")),
        Case(c, "metrics: empty CSV", lambda: metrics("empty.csv", "")),
        Case(c, "metrics: CSV line with a missing field", lambda: metrics("ragged.csv", "label,score\n1,0.5\n0\n")),
        Case(c, "metrics: CSV not UTF-8", lambda: cli("metrics", _latin1(f))),
        Case(c, "metrics: negative weight", lambda: metrics("weight.csv", "label,score,weight\n1,0.5,-1\n0,0.1,1\n")),
        Case(c, "metrics: --score-is probabilities with a score of 1.5",
             lambda: cli("metrics", f.text("p15.csv", "label,score\n1,1.5\n0,0.1\n"), "--score-is", "probabilities")),
        Case(c, "run --teacher-scores: one score too few",
             lambda: cli("run", "--data", f.data, "--mode", "two-stage", "--teacher-scores",
                         f.text("few.csv", "score\n" + "0.1\n" * (f.dataset.n - 1)), *QUICK)),
        Case(c, "run --teacher-scores: a NaN score",
             lambda: cli("run", "--data", f.data, "--mode", "two-stage", "--teacher-scores",
                         f.text("nanscores.csv", "score\nnan\n" + "0.1\n" * (f.dataset.n - 1)), *QUICK)),
        Case(c, "run --teacher-scores: row_id repeated",
             lambda: cli("run", "--data", f.data, "--mode", "two-stage", "--teacher-scores-align", "row-id",
                         "--teacher-scores", f.text("rep.csv", "row_id,score\n0,1\n0,2\n"), *QUICK)),
        Case(c, "KuaiRand log: missing column play_time_ms",
             lambda: kuairand("k1.tsv", ["\t".join(h for h in header if h != "play_time_ms")] + [
                 "\t".join(v for h, v in zip(header, line.split("\t")) if h != "play_time_ms") for line in log[1:]])),
        Case(c, "KuaiRand log: date 20221345", lambda: kuairand("k2.tsv", [log[0], cell(log[1], "date", "20221345")] + log[2:])),
        Case(c, "KuaiRand log: hourmin 2460", lambda: kuairand("k3.tsv", [log[0], cell(log[1], "hourmin", "2460")] + log[2:])),
        Case(c, "KuaiRand log: label 2", lambda: kuairand("k4.tsv", [log[0], cell(log[1], "label", "2")] + log[2:])),
        Case(c, "KuaiRand log: user_id 2^70", lambda: kuairand("k5.tsv", [log[0], cell(log[1], "user_id", str(2**70))] + log[2:])),
        Case(c, "KuaiRand log: header only", lambda: kuairand("k6.tsv", [log[0]])),
        Case(c, "KuaiRand log: a line with a missing field", lambda: kuairand("k7.tsv", [log[0], log[1].rsplit("\t", 1)[0]] + log[2:])),
        Case(c, "KuaiRand log: a single label class",
             lambda: kuairand("k8.tsv", [log[0]] + [cell(line, "label", "1") for line in log[1:]])),
        Case(c, "KuaiRand log: every row on one day",
             lambda: kuairand("k9.tsv", [log[0]] + [cell(line, "date", "20220408") for line in log[1:]])),
    ]


def _latin1(f: Files) -> Path:
    f.path("latin1.csv").write_bytes("label,score,name\n1,0.5,caf\xe9\n".encode("latin-1"))
    return f.path("latin1.csv")


def option_cases(f: Files) -> list[Case]:
    c = "options"
    run = lambda *extra: cli("run", "--data", f.data, "--methods", "baseline,pfd", "--seeds", "1",  # noqa: E731
                             *QUICK, *extra)
    synthetic = lambda *extra: cli("run", "--task", "cvr", "--quiet", *extra)  # noqa: E731
    dump = lambda *extra: cli("oracle", "dump", "--model", "mlp", "--method", "pfd", "--mode", "sync",  # noqa: E731
                              "--out", f.path("dump.npz"), *extra)
    user = _a_user(f)
    cases = [Case(c, f"run {' '.join(extra)}", lambda extra=extra: run(*extra)) for extra in (
        ("--seeds", "1,1"), ("--seeds=-1,2",), ("--seeds", "0"), ("--seeds", "a"), ("--seeds", "1.5"),
        ("--epochs", "0"), ("--epochs", "1.5"), ("--batch-size", "0"), ("--batch-size=-3",),
        ("--warmup-steps=-1",), ("--warmup-steps", "100000"), ("--lambda=-1",), ("--lambda", "2"),
        ("--lambda", "nan"), ("--lambda", "inf"), ("--temperature", "0"), ("--temperature", "nan"), ("--lr", "0"),
        ("--lr", "nan"), ("--teacher-epochs", "0"), ("--teacher-folds", "1", "--mode", "two-stage"),
        ("--teacher-folds", "3"), ("--lr-warmup-steps=-1",), ("--test-days", "0"), ("--test-days", "100"),
        ("--tower-norm", "l2"), ("--tower-scale", "0"), ("--shared-embeddings", "--mode", "two-stage"),
        ("--methods", ""), ("--methods", "teacher"), ("--methods", "baseline,nonsense"), ("--path", "x.tsv"),
        ("--label", "is_like"), ("--adagrad-eps", "1e-10"), ("--optimizer", "adagrad", "--adagrad-eps=-1"),
        ("--batch-norm", "--batch-size", "967"), ("--dtype", "float16"), ("--hard-weight", "two"),
        ("--teacher-scores-are", "probabilities"), ("--student", "cnn"))]
    cases += [
        Case(c, "run --data kuairand without --path", lambda: cli("run", "--data", "kuairand", "--quiet")),
        Case(c, "run --data-seed -1 (synthetic)", lambda: synthetic("--data-seed=-1")),
        Case(c, "run --privileged-strength nan (synthetic)", lambda: synthetic("--privileged-strength", "nan")),
        Case(c, "run --privileged-strength -1 (synthetic)", lambda: synthetic("--privileged-strength=-1")),
        Case(c, "run --teacher-scores with the synthetic data",
             lambda: cli("run", "--mode", "two-stage", "--teacher-scores", f.predictions)),
        Case(c, "score --k 0", lambda: cli("score", f.student, "--users", user, "--k", "0")),
        Case(c, "score --k -1", lambda: cli("score", f.student, "--users", user, "--k=-1")),
        Case(c, "score --users '' (none)", lambda: cli("score", f.student, "--users", ",")),
        Case(c, "score --users 1.7", lambda: cli("score", f.student, "--users", "1.7")),
        Case(c, "score --users 2^70", lambda: cli("score", f.student, "--users", str(2**70))),
        Case(c, "score --users of an unknown user", lambda: cli("score", f.student, "--users", "99999999")),
        Case(c, "oracle dump --rows 1", lambda: dump("--rows", "1")),
        Case(c, "oracle dump --rows 0", lambda: dump("--rows", "0")),
        Case(c, "oracle dump --seed -1", lambda: dump("--seed=-1")),
        Case(c, "oracle dump --lambda 2", lambda: dump("--lambda", "2")),
        Case(c, "oracle dump --temperature 0", lambda: dump("--temperature", "0")),
        Case(c, "oracle dump --shared-embeddings --mode two-stage",
             lambda: cli("oracle", "dump", "--model", "mlp", "--method", "pfd", "--mode", "two-stage",
                         "--shared-embeddings", "--out", f.path("dump.npz"))),
        Case(c, "oracle dump --tower-norm l2 with an mlp student", lambda: dump("--tower-norm", "l2")),
        Case(c, "oracle dump --beta1 0.8 --optimizer adagrad", lambda: dump("--beta1", "0.8", "--optimizer", "adagrad")),
        Case(c, "oracle dump --lr 0", lambda: dump("--lr", "0")),
        Case(c, "oracle objective --rows 7", lambda: cli("oracle", "objective", "--rows", "7", "--out", f.path("o.npz"))),
        Case(c, "oracle objective --loss l2 --temperature 2",
             lambda: cli("oracle", "objective", "--convention", "easyrec", "--loss", "l2", "--temperature", "2",
                         "--out", f.path("o.npz"))),
        Case(c, "oracle objective --convention rocket --teacher-input probabilities",
             lambda: cli("oracle", "objective", "--convention", "rocket", "--loss", "l2", "--teacher-input",
                         "probabilities", "--out", f.path("o.npz"))),
        Case(c, "oracle objective --loss ce (pfd_ref convention)",
             lambda: cli("oracle", "objective", "--loss", "ce", "--out", f.path("o.npz"))),
        Case(c, "oracle check --rtol -1", lambda: cli("oracle", "check", f.case, f.theirs, "--rtol=-1")),
        Case(c, "oracle check --atol nan", lambda: cli("oracle", "check", f.case, f.theirs, "--atol", "nan")),
    ]
    records = json.loads(f.records.read_text())
    for what, content in (("[] (no records)", "[]"), ("a NaN AUC", json.dumps([dict(records[0], auc=float("nan"))])),
                          ("an infinite log loss", json.dumps([dict(records[0], logloss=float("inf"))])),
                          ("an AUC given as a string", json.dumps([dict(records[0], auc="0.7")])),
                          ("a seed of 1.5", json.dumps([dict(records[0], seed=1.5)])),
                          ("a record without auc", json.dumps([{k: v for k, v in records[0].items() if k != "auc"}])),
                          ("an object, not a list", json.dumps(records[0])), ("not JSON", "{oops"),
                          ("a record that is a number", "[3]"), ("an unknown method", json.dumps([dict(records[0], method="x")]))):
        cases.append(Case(c, f"table: a file holding {what}", lambda content=content, what=what: cli(
            "table", f.text(f"records_{abs(hash(what))}.json", content))))
    cases.append(Case(c, "table: the same run's file twice (seeds repeat)", lambda: cli("table", f.records, f.records)))
    cases.append(Case(c, "metrics: --gauc-weight nonsense", lambda: cli("metrics", f.predictions, "--gauc-weight", "x")))
    return cases


def api_cases(f: Files) -> list[Case]:
    c = "Python API"
    student = ServedStudent.load(f.student)
    user = int(student.user_keys[0])
    logits = np.array([0.5, -0.5])
    labels = np.array([1, 0])
    config = DistillConfig()
    case = f.case_arrays
    cases = [Case(c, f"TrainConfig({field}={value!r})", lambda field=field, value=value: api(
        lambda: TrainConfig(**{field: value}))) for field, value in (
        ("epochs", 1.5), ("epochs", True), ("epochs", 0), ("batch_size", 0), ("batch_size", 2.0), ("lr", -1.0),
        ("lr", float("nan")), ("seed", -1), ("dtype", "float16"), ("teacher_folds", 1), ("lr_warmup_steps", -1),
        ("optimizer", "rmsprop"), ("student_kind", "cnn"))]
    cases += [Case(c, f"DistillConfig({field}={value!r})", lambda field=field, value=value: api(
        lambda: DistillConfig(**{field: value}))) for field, value in (
        ("lambda_", 2.0), ("lambda_", -0.1), ("temperature", 0.0), ("temperature", float("inf")), ("warmup_steps", -1),
        ("warmup_steps", 2.5), ("hard_weight", "half"))]
    cases += [
        Case(c, "student_objective(lam=2)", lambda: api(lambda: student_objective(logits, labels, logits, 2, config))),
        Case(c, "student_objective(lam=-0.5)", lambda: api(lambda: student_objective(logits, labels, logits, -0.5, config))),
        Case(c, "student_objective(lam=nan)",
             lambda: api(lambda: student_objective(logits, labels, logits, float("nan"), config))),
        Case(c, "student_objective(lam=0.5) without teacher logits",
             lambda: api(lambda: student_objective(logits, labels, None, 0.5, config))),
        Case(c, "ServedStudent.top_k([1.7])", lambda: api(lambda: student.top_k([1.7], 3))),
        Case(c, "ServedStudent.top_k([2**70])", lambda: api(lambda: student.top_k([2**70], 3))),
        Case(c, "ServedStudent.top_k([True])", lambda: api(lambda: student.top_k([True], 3))),
        Case(c, "ServedStudent.top_k(['3'])", lambda: api(lambda: student.top_k(["3"], 3))),
        Case(c, "ServedStudent.top_k([])", lambda: api(lambda: student.top_k([], 3))),
        Case(c, "ServedStudent.top_k(k=0)", lambda: api(lambda: student.top_k([user], 0))),
        Case(c, "ServedStudent.top_k(k=1.5)", lambda: api(lambda: student.top_k([user], 1.5))),
        Case(c, "CaseSpec(rows=1)", lambda: api(lambda: CaseSpec(rows=1))),
        Case(c, "check_arrays(rtol=-1)", lambda: api(lambda: check_arrays(case, case, rtol=-1))),
        Case(c, "load_records([a file holding []])", lambda: api(lambda: load_records([f.text("empty.json", "[]")]))),
        Case(c, "Dataset(labels=[2])", lambda: api(lambda: Dataset(f.dataset.schema, _one_row(f, "columns"), [2], [0]))),
        Case(c, "Dataset with an extra column",
             lambda: api(lambda: Dataset(f.dataset.schema, {**_one_row(f, "columns"), "extra": np.zeros(1)}, [1], [0]))),
        Case(c, "Dataset.split_last_days(0)", lambda: api(lambda: f.dataset.split_last_days(0))),
        Case(c, "SyntheticConfig(n_users=0)", lambda: api(lambda: SyntheticConfig(n_users=0))),
        Case(c, "SyntheticConfig(privileged_strength=nan)", lambda: api(lambda: SyntheticConfig(privileged_strength=math.nan))),
    ]
    return cases


def _one_row(f: Files, what: str) -> dict:
    row = f.dataset.take(np.zeros(1, dtype=np.int64))
    return row.columns


def numerics_cases(f: Files) -> list[Case]:
    c = "numerics"

    def soft_gradient_error(temperature: float) -> tuple[str, str]:
        """The worst relative error of the float32 soft gradient over logits close to each other
        (``t = z + d``, ``|d|`` from 1e-3 to 10), against ``T (s(z/T) - s(t/T)) / n`` of the
        same float32 inputs in float64 (independent of pfd_ref; its own rounding: < 1e-9 here)."""
        rng = np.random.default_rng(0)
        z = rng.normal(0, 3, 4000)
        t = z + rng.choice([-1, 1], 4000) * 10.0 ** rng.uniform(-3, 1, 4000)
        z32, t32 = z.astype(np.float32), t.astype(np.float32)
        z64, t64 = z32.astype(np.float64) / temperature, t32.astype(np.float64) / temperature
        exact = temperature * (1 / (1 + np.exp(-z64)) - 1 / (1 + np.exp(-t64))) / z.shape[0]
        got = soft_loss(z32, t32, temperature)[1]
        worst = float(np.max(np.abs(got - exact) / np.abs(exact)))
        return ("ok" if worst < 1e-5 else "WRONG"), f"worst relative error {worst:.2e} over 4,000 rows with |z - t| in [1e-3, 10]"

    def hard_loss_at(value: float) -> tuple[str, str]:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                loss, grad = hard_loss(np.array([value, -value], np.float32), np.array([0, 1]))
            except (ValueError, RuntimeWarning) as error:
                return "error", f"{type(error).__name__}: {error}"
        finite = bool(np.isfinite(loss) and np.all(np.isfinite(grad)))
        return ("ok" if finite else "WRONG"), f"loss {float(loss):.6g}, gradient {grad.tolist()}"

    return [Case(c, f"soft_loss float32 gradient at T = {T:g}", lambda T=T: soft_gradient_error(T), "ok")
            for T in (1.0, 10.0, 1e3)] + [
        Case(c, "hard_loss float32 at logits ±3e38 (wrong side)", lambda: hard_loss_at(3e38), "ok"),
        Case(c, "hard_loss float32 at logits ±1e30", lambda: hard_loss_at(1e30), "ok"),
    ]


def defaults_cases(f: Files) -> list[Case]:
    c = "defaults"
    return [
        Case(c, "run --data kuairand on a valid 2,000-row log, every other option at its default",
             lambda: cli("run", "--data", "kuairand", "--path", f.kuairand, "--quiet"), "ok"),
        Case(c, "run --data kuairand on the 297-row sample (tests/data), defaults",
             lambda: cli("run", "--data", "kuairand", "--path", KUAIRAND_SAMPLE, "--quiet", "--seeds", "1"), "ok"),
        Case(c, "run --data SMALL.npz (a saved 60-row dataset), defaults",
             lambda: cli("run", "--data", _small_saved(f), "--quiet", "--seeds", "1"), "ok"),
    ]


def _small_saved(f: Files) -> Path:
    small = f.dataset.take(np.flatnonzero(np.isin(np.arange(f.dataset.n) % 40, [0, 1])))
    small.save(f.path("small.npz"))
    return f.path("small.npz")


TAOBAO_SAMPLE = REPOSITORY / "tests" / "data" / "userbehavior_generated.csv"  # official format, no header


def taobao_cases(f: Files) -> list[Case]:
    """``--data taobao`` (issue 16's loader and streaming reader) and the generator of such files."""
    c = "Taobao"
    log = TAOBAO_SAMPLE.read_text().splitlines()
    quick = ("--task", "cvr", "--methods", "baseline", "--seeds", "1", "--quiet")
    taobao = lambda path, *extra: cli("run", "--data", "taobao", "--path", path, *quick, *extra)  # noqa: E731

    def edited(name: str, line: int, column: int, value: str) -> Path:
        lines = list(log)
        cells = lines[line - 1].split(",")
        cells[column] = value
        lines[line - 1] = ",".join(cells)
        return f.text(name, "\n".join(lines) + "\n")

    def swapped(name: str) -> Path:
        lines = list(log)
        k = next(k for k in range(len(lines) - 1) if lines[k].split(",")[0] == lines[k + 1].split(",")[0]
                 and lines[k].split(",")[4] != lines[k + 1].split(",")[4])
        lines[k], lines[k + 1] = lines[k + 1], lines[k]
        return f.text(name, "\n".join(lines) + "\n")

    def generator(*argv) -> tuple[str, str]:
        from pfd_ref.data.taobao_synthetic import main as generate_log
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                code = generate_log([str(a) for a in argv])
        except SystemExit as stop:
            code = stop.code
        except BaseException as error:  # noqa: BLE001
            return "TRACEBACK", f"{type(error).__name__}: {error}"
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        return ("error" if code == 2 else "ok" if code == 0 else "TRACEBACK"), (lines or ["exit 0"])[-1].strip()

    one_day = "\n".join(",".join(line.split(",")[:4] + ["1512000000"]) for line in log) + "\n"
    return [
        Case(c, "run --data taobao without --path", lambda: cli("run", "--data", "taobao", "--quiet")),
        Case(c, "run --data taobao --path of a missing file", lambda: taobao(f.path("missing.csv"))),
        Case(c, "run --data taobao --path of a directory", lambda: taobao(f.root)),
        Case(c, "run --data taobao --path of an empty file", lambda: taobao(f.text("tb_empty.csv", ""))),
        Case(c, "Taobao log: a header line", lambda: taobao(
            f.text("tb_header.csv", "user_id,item_id,category_id,behavior_type,timestamp\n" + "\n".join(log) + "\n"))),
        Case(c, "Taobao log: behavior 'click'", lambda: taobao(edited("tb1.csv", 40, 3, "click"))),
        Case(c, "Taobao log: user_id u17", lambda: taobao(edited("tb2.csv", 40, 0, "u17"))),
        Case(c, "Taobao log: item_id 2^70", lambda: taobao(edited("tb3.csv", 40, 1, str(2**70)))),
        Case(c, "Taobao log: category_id -4", lambda: taobao(edited("tb4.csv", 40, 2, "-4"))),
        Case(c, "Taobao log: a timestamp outside the window", lambda: taobao(edited("tb5.csv", 40, 4, "1511000000"))),
        Case(c, "Taobao log: a timestamp outside the window, --outside-window drop",
             lambda: taobao(edited("tb5.csv", 40, 4, "1511000000"), "--outside-window", "drop"), "ok"),
        Case(c, "Taobao log: a row with 4 fields", lambda: taobao(f.text("tb6.csv", "\n".join(
            log[:10] + [log[10].rsplit(",", 1)[0]] + log[11:]) + "\n"))),
        Case(c, "Taobao log: a blank line in the middle",
             lambda: taobao(f.text("tb7.csv", "\n".join(log[:10] + [""] + log[10:]) + "\n"))),
        Case(c, "Taobao log: ends in blank lines", lambda: taobao(f.text("tb8.csv", "\n".join(log) + "\n\n\n")), "ok"),
        Case(c, "Taobao log: two rows of a user out of time order", lambda: taobao(swapped("tb9.csv"))),
        Case(c, "Taobao log: a user's rows split", lambda: taobao(f.text("tb10.csv", "\n".join(log[1:] + log[:1]) + "\n"))),
        Case(c, "Taobao log: only pv rows (no CVR positive)", lambda: taobao(
            f.text("tb11.csv", "\n".join(line for line in log if ",pv," in line) + "\n"))),
        Case(c, "Taobao log: every row on one day", lambda: taobao(f.text("tb12.csv", one_day))),
        Case(c, "run --data taobao --rows 0", lambda: taobao(TAOBAO_SAMPLE, "--rows", "0")),
        Case(c, "run --data taobao --rows=-5", lambda: taobao(TAOBAO_SAMPLE, "--rows=-5")),
        Case(c, "run --data taobao --rows 1.5", lambda: taobao(TAOBAO_SAMPLE, "--rows", "1.5")),
        Case(c, "run --data taobao --rows 10 (one user, too few rows)", lambda: taobao(TAOBAO_SAMPLE, "--rows", "10")),
        Case(c, "run --data taobao --outside-window keep", lambda: taobao(TAOBAO_SAMPLE, "--outside-window", "keep")),
        Case(c, "run --data taobao --label is_like", lambda: taobao(TAOBAO_SAMPLE, "--label", "is_like")),
        Case(c, "run --data taobao --test-days 100", lambda: taobao(TAOBAO_SAMPLE, "--test-days", "100")),
        Case(c, "run --data taobao --json into a missing directory",
             lambda: taobao(TAOBAO_SAMPLE, "--json", f.path("missing/tb.json"))),
        Case(c, "run --data kuairand --rows 10", lambda: cli("run", "--data", "kuairand", "--path", f.kuairand,
                                                              "--rows", "10", "--quiet")),
        Case(c, "taobao_synthetic --out onto a directory", lambda: generator("--rows", "100", "--out", f.root)),
        Case(c, "taobao_synthetic --out into a missing directory",
             lambda: generator("--rows", "100", "--out", f.path("missing/ub.csv"))),
        Case(c, "taobao_synthetic --rows 0", lambda: generator("--rows", "0", "--out", f.path("ub.csv"))),
        Case(c, "taobao_synthetic on a full device (every write fails with ENOSPC)", lambda: _full_generator(f)),
    ]


def _full_generator(f: Files) -> tuple[str, str]:
    from pfd_ref.data.taobao_synthetic import main as generate_log
    err = io.StringIO()
    with mock.patch("pfd_ref.files._create", _dev_full), contextlib.redirect_stderr(err):
        try:
            code = generate_log(["--rows", "1000", "--out", str(f.path("ub_full.csv"))])
        except BaseException as error:  # noqa: BLE001
            return "TRACEBACK", f"{type(error).__name__}: {error}"
    message = [line.strip() for line in err.getvalue().splitlines() if "error" in line]
    lost = f.path("ub_full.csv").exists()
    return ("LOST" if lost else "error" if code == 2 else "TRACEBACK"), (message or [f"exit {code}"])[-1]


# --------------------------------------------------------------------------- faults in subprocesses


def _pfd_ref(*argv) -> list[str]:
    return [sys.executable, "-m", "pfd_ref.cli", *map(str, argv)]


def _loads(path: Path) -> bool:
    try:
        ServedStudent.load(path)
        return True
    except ValueError:
        return False


def interrupted(f: Files, how: int) -> tuple[str, str]:
    """Start a 5-seed run, send ``how`` once seed 0 is in the JSON, and count what is left."""
    out = f.path(f"interrupted_{how}")
    out.mkdir()
    process = subprocess.Popen(_pfd_ref("run", "--data", f.data, "--methods", "baseline,pfd", "--seeds", "5",
                                        "--epochs", "30", *QUICK, "--json", out / "run.json", "--save", out / "students"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "run.json").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(how)
    _, err = process.communicate(timeout=120)
    records = json.loads((out / "run.json").read_text())
    seeds = sorted({r["seed"] for r in records})
    students = sorted((out / "students").glob("*.npz"))
    loadable = sum(_loads(p) for p in students)
    leftovers = [p.name for p in out.rglob(".*.tmp")]
    kept = (seeds and len(records) == 2 * len(seeds) and loadable == len(students) and not leftovers
            and len(seeds) < 5)
    return ("kept" if kept else "LOST"), (f"exit {process.returncode}; run.json: seeds {seeds} ({len(records)} records); "
                                          f"{loadable}/{len(students)} student files load; temporary files left: "
                                          f"{len(leftovers)}; {one_line(err.strip().splitlines()[-1] if err.strip() else '')}")


def concurrent_runs(f: Files) -> tuple[str, str]:
    """Two runs writing the same --save folder and --json file at once, three times."""
    out = f.path("concurrent")
    out.mkdir()
    broken, codes, files = 0, [], 0
    for trial in range(3):
        processes = [subprocess.Popen(_pfd_ref("run", "--data", f.data, "--methods", "baseline,pfd", "--seeds", "2",
                                               *QUICK, "--json", out / "run.json", "--save", out / "students"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        codes += [p.wait(timeout=300) for p in processes]
        students = sorted((out / "students").glob("*.npz"))
        files += len(students) + 1
        broken += sum(not _loads(p) for p in students)
        try:
            json.loads((out / "run.json").read_text())
        except (OSError, ValueError):
            broken += 1
    ok = broken == 0 and set(codes) == {0}
    return ("kept" if ok else "LOST"), (f"3 trials of 2 concurrent runs: exit codes {sorted(set(codes))}, "
                                        f"{files} files checked, {broken} unreadable")


WRITER = """
import sys, numpy as np
from pfd_ref.data.dataset import save_npz
path, tag = sys.argv[1], int(sys.argv[2])
arrays = {f"a{k}": np.full(200_000, tag + k, dtype=np.float64) for k in range(8)}
for _ in range(int(sys.argv[3])):
    save_npz(path, arrays)
"""


def concurrent_writers(f: Files) -> tuple[str, str]:
    """Three processes save 12.8 MB archives to one path 15 times each while this one reads it."""
    path = f.path("shared.npz")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(100 * k), "15"]) for k in range(3)]
    reads = bad = 0
    while any(w.poll() is None for w in writers):
        if path.exists():
            reads += 1
            try:
                arrays = load_npz(path)
                tags = {float(a[0]) - k for k, a in enumerate(arrays.values())}
                bad += len(tags) != 1  # a mix of two writers' members
            except ValueError:
                bad += 1
    ok = bad == 0 and all(w.returncode == 0 for w in writers)
    return ("kept" if ok else "LOST"), f"{reads} reads while 3 writers replaced the file 45 times: {bad} torn or unreadable"


def killed_during_save(f: Files) -> tuple[str, str]:
    """SIGKILL a process in the middle of saving a 12.8 MB archive, 10 times: the file under the
    final name is always the last whole one."""
    path = f.path("killed.npz")
    save = [sys.executable, "-c", WRITER, str(path), "7", "1000"]
    subprocess.run([sys.executable, "-c", WRITER, str(path), "7", "1"], check=True)
    whole = 0
    leftovers = 0
    for trial in range(10):
        process = subprocess.Popen(save)
        time.sleep(1.5 + 0.13 * trial)
        process.kill()
        process.wait()
        whole += _whole(path)
        leftovers += len(list(f.root.glob(".killed.npz.*.tmp")))
        for temporary in f.root.glob(".killed.npz.*.tmp"):
            temporary.unlink()
    return ("kept" if whole == 10 else "LOST"), (f"10 kills: the file loads whole after {whole}; a hidden temporary "
                                                 f"file was left {leftovers} time(s) (removed here; SIGKILL allows no "
                                                 "clean-up)")


def _whole(path: Path) -> bool:
    try:
        return len(load_npz(path)) == 8
    except ValueError:
        return False


def fault_cases(f: Files) -> list[Case]:
    c = "faults"
    return [
        Case(c, "Ctrl-C (SIGINT) during a 5-seed run", lambda: interrupted(f, signal.SIGINT), "kept"),
        Case(c, "SIGTERM during a 5-seed run", lambda: interrupted(f, signal.SIGTERM), "kept"),
        Case(c, "two runs writing one --save folder and --json file at once", lambda: concurrent_runs(f), "kept"),
        Case(c, "three processes saving one .npz at once, read meanwhile", lambda: concurrent_writers(f), "kept"),
        Case(c, "SIGKILL in the middle of saving an .npz", lambda: killed_during_save(f), "kept"),
    ]


CATEGORIES = {"outputs": output_cases, "bad files": bad_file_cases, "options": option_cases, "Python API": api_cases,
              "defaults": defaults_cases, "numerics": numerics_cases, "Taobao": taobao_cases, "faults": fault_cases}


def main_script(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=tuple(CATEGORIES), action="append", help="run only these categories")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pfd-ref-bad-inputs-") as root:
        files = Files(Path(root))
        cases = [case for name, build in CATEGORIES.items() if not args.only or name in args.only
                 for case in build(files)]
        print("| # | category | input or fault | expected | outcome | message |")
        print("|---|---|---|---|---|---|")
        wrong, outcomes = [], {}
        for k, case in enumerate(cases, start=1):
            outcome, message = case.attempt()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome != case.expect:
                wrong.append(k)
            mark = "" if outcome == case.expect else " **≠**"
            print(f"| {k} | {case.category} | {case.what} | {case.expect} | {outcome}{mark} | "
                  f"{one_line(message).replace('|', '/')} |", flush=True)
    tally = ", ".join(f"{outcome} {count}" for outcome, count in sorted(outcomes.items()))
    print(f"\n{len(cases)} cases ({tally}); {len(cases) - len(wrong)} as expected"
          + (f"; not as expected: {wrong}" if wrong else ""))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main_script())

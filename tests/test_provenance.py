"""Provenance: every --json record says what produced it (every option, the data's hash or the
generator's configuration, versions, thread counts, git commit, date), and `pfd-ref table`
says what differs between the runs it merges."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import shutil
import subprocess
from dataclasses import asdict

import numpy as np
import pytest
from tiny import tiny_dataset

from pfd_ref.cli import build_parser, main
from pfd_ref.data.synthetic import SyntheticConfig
from pfd_ref.provenance import (differences, file_source, flatten, format_differences, generator_source, git_state,
                                provenance, thread_counts)


def test_provenance_block(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"pfd" * 1000)
    block = provenance({"options": {"lambda_": 0.5}}, {"data": file_source(tmp_path / "data.bin")})
    assert set(block) == {"config", "data_source", "versions", "threads", "git", "code", "date"}
    assert block["data_source"]["data"]["sha256"] == hashlib.sha256(b"pfd" * 1000).hexdigest()
    assert block["versions"]["numpy"] == np.__version__ and block["versions"]["python"]
    assert isinstance(block["threads"]["numba"], int) and block["threads"]["numba"] >= 1
    assert datetime.datetime.fromisoformat(block["date"]).tzinfo is not None
    json.dumps(block)  # serialisable as it is


def test_blas_thread_count_is_read_from_openblas():
    import numpy  # noqa: F401  (its OpenBLAS is loaded)
    blas = thread_counts()["blas"]
    if not blas:
        pytest.skip("no OpenBLAS found in this process (another BLAS, or no /proc)")
    assert all(isinstance(entry["threads"], int) and entry["threads"] >= 1 for entry in blas)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state(tmp_path):
    assert git_state(tmp_path) is None  # not a checkout
    run = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "f.txt").write_text("b")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_ignores_the_git_variables_of_the_environment(tmp_path, monkeypatch):
    """Under a hook or ``git rebase --exec``, GIT_DIR names the repository being rebased; the
    provenance must still describe the checkout pfd_ref runs from."""
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["git", "-C", str(other), "init", "-q"], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "other"], check=True)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    outside = tmp_path / "outside"
    outside.mkdir()
    assert git_state(outside) is None  # not a checkout, whatever GIT_DIR says
    ours = git_state()
    assert ours is None or ours["commit"] != subprocess.run(
        ["git", "-C", str(other), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_differences_and_their_text():
    a = {"config": {"lambda_": 0.5, "seeds": [0, 1]}, "date": "x", "git": None}
    b = {"config": {"lambda_": 0.3, "seeds": [0, 1]}, "date": "y", "git": {"commit": "c", "dirty": False}}
    assert flatten(a) == {"config.lambda_": 0.5, "config.seeds": [0, 1], "date": "x", "git": None}
    assert differences([a, b]) == {"config.lambda_": [0.5, 0.3],
                                   "git.commit": [None, "c"], "git.dirty": [None, False]}
    lines = format_differences({"a.json": a, "b.json": b})
    assert lines[0] == "runs merged: a.json, b.json; they differ in:"
    assert "  config.lambda_: 0.5 (a.json); 0.3 (b.json)" in lines
    assert "the same" in format_differences({"a.json": a, "c.json": dict(a, date="z")})[0]
    assert "no provenance in old.json" in format_differences({"a.json": a, "old.json": None})[0]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny baseline runs on one data file, seeds 0,1 and 2,3, lambda 0.5 and 0.3."""
    directory = tmp_path_factory.mktemp("runs")
    tiny_dataset(np.random.default_rng(5), 120).save(directory / "data.npz")
    for name, seeds, lam in (("a", "0,1", "0.5"), ("b", "2,3", "0.3")):
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["run", "--data", str(directory / "data.npz"), "--methods", "baseline", "--seeds", seeds,
                         "--lambda", lam, "--batch-size", "32", "--quiet", "--json", str(directory / f"{name}.json")]) == 0
    return directory


def test_run_records_carry_the_whole_configuration(two_runs):
    records = json.loads((two_runs / "a.json").read_text())
    assert len(records) == 2
    block = records[0]["provenance"]
    run_options = {action.dest for action in build_parser()._subparsers._group_actions[0].choices["run"]._actions
                   if action.dest != "help"}
    assert run_options <= set(block["config"]["options"])  # every option, with its resolved value
    assert block["config"]["options"]["epochs"] == 1 and block["config"]["options"]["methods"] == ["baseline"]
    assert block["config"]["train_config"]["batch_size"] == 32
    assert block["config"]["train_config"]["sizes"]["embed_dim"] == 16
    source = block["data_source"]["data"]
    assert source["kind"] == "file" and source["sha256"] == hashlib.sha256((two_runs / "data.npz").read_bytes()).hexdigest()


def test_synthetic_data_is_recorded_by_its_generator_configuration():
    config = SyntheticConfig(seed=3)
    source = generator_source("pfd_ref.data.synthetic.generate", {"task": "ctr", **asdict(config)})
    assert source["config"]["seed"] == 3 and source["config"]["n_users"] == config.n_users


def test_table_shows_what_differs_between_merged_runs(two_runs, capsys):
    assert main(["table", str(two_runs / "a.json"), str(two_runs / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "runs merged:" in out and "they differ in:" in out
    assert "config.options.lambda_: 0.5" in out and "0.3" in out
    assert "config.options.seeds: [0, 1]" in out
    assert "config.options.json" not in out and "date" not in out.split("they differ in:")[1]

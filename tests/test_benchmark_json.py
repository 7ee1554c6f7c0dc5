"""The benchmarks' --json path is checked before anything is timed or written (the catalogue
file of benchmarks.scoring, the generated log of benchmarks.loader): exit 2, the option named."""

from __future__ import annotations

import errno
import os
import re

import pytest

from benchmarks import common, loader, scoring, training
from pfd_ref import files


def _reached(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} was reached before --json was checked")
    return fail


@pytest.mark.parametrize("main, module", [(training.main, "training"), (scoring.main, "scoring"),
                                          (loader.main, "loader")])
@pytest.mark.parametrize("json_path, message", [
    (".", "--json: .* is a directory; give a file name"),
    ("missing/out.json", "--json: the directory of .*missing/out.json does not exist"),
    ("a_file/out.json", "--json: the directory of .*a_file/out.json is not a directory"),
])
def test_a_bad_json_path_is_refused_before_the_benchmark_runs(tmp_path, monkeypatch, capsys, main, module, json_path,
                                                              message):
    monkeypatch.setattr(common, "run_per_thread_count", _reached("run_per_thread_count"))
    monkeypatch.setattr(scoring, "write_catalogue_file", _reached("write_catalogue_file"))
    monkeypatch.setattr("pfd_ref.data.taobao_synthetic.write_user_behavior", _reached("write_user_behavior"))
    (tmp_path / "a_file").write_text("x")
    before = sorted(tmp_path.rglob("*"))
    argv = ["--json", str(tmp_path / json_path)]
    if module == "scoring":
        argv += ["--catalogue-file", str(tmp_path / "catalogue.npy")]  # written first when absent
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.search(f"^python -m benchmarks.{module}: error: {message}", err, re.M), err
    assert sorted(tmp_path.rglob("*")) == before


def test_an_unwritable_json_directory_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(common, "run_per_thread_count", _reached("run_per_thread_count"))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes into a read-only directory: the refusal the file system would give
        create = files._create

        def refused(path):
            if path.parent == locked:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return create(path)
        monkeypatch.setattr(files, "_create", refused)
    with pytest.raises(SystemExit):
        training.main(["--json", str(locked / "out.json")])
    assert "--json: cannot write in" in capsys.readouterr().err


def test_a_good_json_path_lets_the_benchmark_run(tmp_path, monkeypatch):
    """The check passes a writable path (and a child process, which writes no --json)."""
    runs = []
    monkeypatch.setattr(common, "run_per_thread_count", lambda module, argv, counts: runs.append(module) or [{}])
    training.main(["--json", str(tmp_path / "out.json"), "--threads", "1"])
    assert runs == ["benchmarks.training"] and (tmp_path / "out.json").exists()
    common.check_json_argument("benchmarks.training", ["--json", str(tmp_path), common.CHILD_FLAG, "x"])


@pytest.mark.parametrize("extra, message", [
    (["--only", "no_such_section"], "--only: unknown section"),
    (["--threads", "1,x"], "--threads: expected comma-separated integers, got '1,x'"),
    (["--threads", "0"], "--threads: expected thread counts >= 1, got '0'"),
    (["--catalogue-gb", "0"], "--catalogue-gb: expected a size > 0, got 0"),
    (["--catalogue-gb", "nan"], "--catalogue-gb: expected a size > 0, got nan"),
    (["--cold-start-baseline", "no-such-commit"], "--cold-start-baseline: 'no-such-commit' names no commit"),
])
def test_the_scoring_benchmark_checks_every_option_before_writing_its_catalogue_file(tmp_path, monkeypatch, capsys,
                                                                                     extra, message):
    """A malformed option is refused (exit 2, named) before the catalogue file, minutes of
    writing, is written, and before anything runs."""
    monkeypatch.setattr(common, "run_per_thread_count", _reached("run_per_thread_count"))
    monkeypatch.setattr(scoring, "write_catalogue_file", _reached("write_catalogue_file"))
    with pytest.raises(SystemExit) as exit_info:
        scoring.main(["--catalogue-file", str(tmp_path / "catalogue.npy"), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_scoring_benchmark_writes_its_absent_catalogue_file_and_deletes_it_after_the_runs(tmp_path, monkeypatch):
    path = tmp_path / "catalogue.npy"
    events = []
    monkeypatch.setattr(scoring, "write_catalogue_file", lambda name, gigabytes: events.append("write") or path.touch())
    monkeypatch.setattr(common, "run_per_thread_count",
                        lambda module, argv, counts: events.append(("run", path.exists())) or [{}])
    scoring.main(["--catalogue-file", str(path), "--only", "coarse_ranking", "--threads", "1"])
    assert events == ["write", ("run", True)] and not path.exists()

"""The synthetic short-video log (pfd_ref.data.shortvideo) and multi-objective runs: one table
per objective, rare objectives named and skipped, bad options refused before training."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pfd_ref import experiment
from pfd_ref.cli import main
from pfd_ref.data.objectives import evaluable
from pfd_ref.data.shortvideo import (OBJECTIVES, REVEALED_BY, WATCH_FEATURES, ShortVideoConfig, generate_shortvideo,
                                     simulate)
from pfd_ref.distill import DistillConfig, ModelSizes
from pfd_ref.train import TrainConfig

TINY = ShortVideoConfig(n_users=60, n_videos=80, n_authors=20, n_days=4, test_days=1, impressions_per_user_day=8)
SMALL = TrainConfig(batch_size=64, distill=DistillConfig(lambda_=0.5, warmup_steps=2),
                    sizes=ModelSizes(embed_dim=4, student_hidden=(8,), strong_hidden=(12, 6)))


def test_the_generator_is_a_function_of_its_seed():
    a, b = generate_shortvideo(TINY)[0], generate_shortvideo(TINY)[0]
    c = generate_shortvideo(ShortVideoConfig(**{**TINY.__dict__, "seed": 1}))[0]
    assert np.array_equal(a.targets, b.targets) and np.array_equal(a.columns["watch_time"], b.columns["watch_time"])
    assert not np.array_equal(a.targets, c.targets)


def test_watch_time_exists_only_after_a_click_and_the_stay_times_reveal_their_actions():
    log = simulate(TINY)
    clicked = log["is_click"] == 1
    assert np.all(log["play_time_ms"][~clicked] == 0) and np.all(log["play_time_ms"][clicked] > 0)
    for name in OBJECTIVES[1:]:  # every interaction follows a play
        assert np.all(log[name][~clicked] == 0)
    assert np.all(log["comment_stay_time"][log["is_comment"] == 1] > 0)  # a comment needs a visit...
    assert np.any(log["comment_stay_time"][log["is_comment"] == 0] > 0)  # ...not every visit is a comment
    assert np.array_equal(log["profile_stay_time"] > 0, log["is_profile_enter"] == 1)
    train, _ = generate_shortvideo(TINY)
    assert np.array_equal(train.played, train.targets[:, 0] == 1)
    for name in WATCH_FEATURES:
        assert np.all(train.columns[name][~train.played] == 0), name
    assert train.objectives.revealed_by[0] == WATCH_FEATURES and REVEALED_BY["is_comment"] == ("comment_stay",)
    assert train.objectives.scopes == ("all",) + ("played",) * 5


def test_the_interactions_depend_on_the_watch_beyond_the_interest():
    """The privileged signal the teacher reads: among clicked rows of equal interest, longer
    watches carry more likes (a logistic fit on both has a clearly positive watch weight)."""
    log = simulate(ShortVideoConfig(n_users=300, n_days=4, impressions_per_user_day=10))
    clicked = log["is_click"] == 1
    watch = np.log1p(log["play_time_ms"][clicked] / 1000) - np.log1p(log["duration_ms"][clicked] / 1000)
    x = np.column_stack([np.ones(clicked.sum()), log["interest"][clicked], watch])
    y = log["is_like"][clicked]
    w = np.zeros(3)
    for _ in range(200):  # Newton's method for the logistic regression
        p = 1 / (1 + np.exp(-x @ w))
        w += np.linalg.solve((x * (p * (1 - p))[:, None]).T @ x, x.T @ (y - p))
    assert w[2] > 0.3 and w[1] > 0


@pytest.mark.parametrize("objectives, weights, match", [
    (("is_click", "watch_time"), None, "^objectives: 'watch_time' is a privileged column of the data"),
    (("is_click", "is_share"), None, r"^objectives: \['is_share'\] not in the synthetic log's objectives"),
    (("is_click", "is_like"), (1.0,), "^objective_weights: 1 weight"),
])
def test_bad_objectives_are_named(objectives, weights, match):
    with pytest.raises(ValueError, match=match):
        generate_shortvideo(TINY, objectives, weights)


def test_run_methods_gives_records_per_objective_and_skips_the_rare_ones():
    train, test = generate_shortvideo(TINY)
    names, skipped = evaluable(test, experiment.MIN_TEST_POSITIVES)
    assert names and skipped  # this tiny log has both kinds
    records = experiment.run_methods("sv", train, test, ("baseline", "pfd", "pfd_teacher", "md", "md_teacher"), [0],
                                     SMALL)
    tasks = {r["task"] for r in records}
    assert tasks == {f"sv/{name}" for name in names}
    # the click head has no pfd teacher row (the pfd teacher has no click head); md's teacher has one
    if "is_click" in names:
        assert {r["method"] for r in records if r["task"] == "sv/is_click"} == {"baseline", "pfd", "md", "md_teacher"}
    for name in names:
        rows = experiment.summarize([r for r in records if r["task"] == f"sv/{name}"])
        assert "AUC gain vs baseline" in experiment.format_table(rows)


@pytest.fixture()
def tiny_shortvideo(monkeypatch):
    monkeypatch.setattr(experiment, "ShortVideoConfig", lambda seed: ShortVideoConfig(**{**TINY.__dict__, "seed": seed}))


def test_cli_prints_one_table_per_objective_and_names_the_skipped(tiny_shortvideo, tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["run", "--task", "shortvideo", "--seeds", "2", "--methods", "baseline,pfd,pfd+md,md",
                 "--batch-size", "64", "--quiet", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    records = json.loads(out.read_text())
    tasks = list(dict.fromkeys(r["task"] for r in records))
    assert tasks and all(task.startswith("shortvideo/") for task in tasks)
    for task in tasks:
        assert f"\n{task}  (2 seed(s)" in captured.out
    assert "skipped in the tables" in captured.err
    assert "95% CI" in captured.out


@pytest.mark.parametrize("argv, message", [
    (["--objectives", "is_click"], "--objectives: only with --task shortvideo"),
    (["--task", "shortvideo", "--objectives", "is_click,is_like", "--objective-weights", "1"],
     "error: --objective-weights: 1 weight"),
    (["--task", "shortvideo", "--objectives", "is_click,watch_ratio"], "'watch_ratio' is a privileged column"),
    (["--task", "shortvideo", "--methods", "baseline,mtl"], "--methods: 'mtl' is not defined for the multi-head"),
    (["--task", "shortvideo", "--objectives", "is_click", "--methods", "pfd"], "no head may be distilled"),
    (["--task", "shortvideo", "--save", "x"], "--save: a multi-head student is not exported"),
    (["--task", "shortvideo", "--student", "two_tower"], "--student: a run with several objectives trains the multi-head"),
    (["--data", "x.npz", "--task", "shortvideo"], "--task: 'shortvideo' is the built-in synthetic log"),
])
def test_cli_refuses_bad_objective_options_before_training(tiny_shortvideo, capsys, argv, message):
    assert main(["run", "--quiet", *argv]) == 2
    assert message in capsys.readouterr().err

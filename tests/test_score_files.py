"""Score files: ``pfd-ref metrics`` against a brute-force pairwise count (ties and weights
included) and direct formulas; the prediction and teacher-score readers' errors, naming the
file, row and column; teacher scores reaching the student of ``run --teacher-scores``."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from tiny import tiny_dataset

from pfd_ref.cli import main
from pfd_ref.conventions import SATURATED_LOGIT
from pfd_ref.data import Dataset
from pfd_ref.distill import DistillConfig
from pfd_ref.score_files import read_predictions, read_teacher_scores
from pfd_ref.train import TrainConfig, train


def pairwise_auc(labels, scores, weights):
    """sum over (positive i, negative j) of w_i w_j ([s_i > s_j] + [s_i = s_j] / 2), over the weight products."""
    pos, neg = labels == 1, labels == 0
    wins = (scores[pos][:, None] > scores[neg][None, :]) + 0.5 * (scores[pos][:, None] == scores[neg][None, :])
    products = weights[pos][:, None] * weights[neg][None, :]
    return float(np.sum(products * wins) / np.sum(products))


def pairwise_gauc(labels, scores, groups, weights, weighting):
    total = norm = 0.0
    for g in np.unique(groups):
        rows = groups == g
        y, w = labels[rows], weights[rows]
        if np.sum(w[y == 1]) > 0 and np.sum(w[y == 0]) > 0:
            c = {"impressions": np.sum(w), "uniform": 1.0, "positives": np.sum(w[y == 1])}[weighting]
            total += c * pairwise_auc(y, scores[rows], w)
            norm += c
    return total / norm


def _prediction_file(tmp_path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.round(rng.normal(size=n) + labels, 1)  # one decimal: many ties
    users = rng.integers(0, 30, n)
    weights = np.round(rng.uniform(0, 2, n), 2)
    weights[:5] = 0.0
    path = tmp_path / "predictions.csv"
    with open(path, "w") as handle:
        handle.write("label,score,user_id,weight\n")
        for row in zip(labels, scores, users, weights):
            handle.write(f"{row[0]},{float(row[1])!r},user{row[2]},{float(row[3])!r}\n")
    return path, labels, scores, users, weights


@pytest.mark.parametrize("weighting", ["impressions", "uniform", "positives"])
def test_metrics_command_agrees_with_the_pairwise_count(tmp_path, capsys, weighting):
    path, labels, scores, users, weights = _prediction_file(tmp_path)
    assert main(["metrics", str(path), "--gauc-weight", weighting, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    metrics = record["metrics"]
    ones = np.ones_like(weights)
    assert metrics["auc"] == pytest.approx(pairwise_auc(labels, scores, ones), abs=1e-14)
    assert metrics["weighted_auc"] == pytest.approx(pairwise_auc(labels, scores, weights), abs=1e-13)
    assert metrics["gauc"] == pytest.approx(pairwise_gauc(labels, scores, users, ones, weighting), abs=1e-13)
    assert metrics["weighted_gauc"] == pytest.approx(pairwise_gauc(labels, scores, users, weights, weighting), abs=1e-12)
    p = 1 / (1 + np.exp(-scores))
    losses = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    rate, weighted_rate = labels.mean(), np.sum(weights * labels) / np.sum(weights)
    entropy = lambda r: -(r * math.log(r) + (1 - r) * math.log(1 - r))  # noqa: E731
    assert metrics["logloss"] == pytest.approx(losses.mean(), rel=1e-12)
    assert metrics["weighted_logloss"] == pytest.approx(np.sum(weights * losses) / np.sum(weights), rel=1e-12)
    assert metrics["normalized_entropy"] == pytest.approx(losses.mean() / entropy(rate), rel=1e-12)
    assert metrics["weighted_normalized_entropy"] == pytest.approx(
        np.sum(weights * losses) / np.sum(weights) / entropy(weighted_rate), rel=1e-12)
    assert metrics["calibration"] == pytest.approx(p.mean() / rate, rel=1e-12)
    assert metrics["weighted_calibration"] == pytest.approx(np.sum(weights * p) / np.sum(weights) / weighted_rate,
                                                            rel=1e-12)
    assert metrics["gauc_weighting"] == weighting and metrics["n"] == 400
    assert record["provenance"]["data_source"]["predictions"]["path"].endswith("predictions.csv")


def test_the_three_gauc_weightings_differ_and_the_text_names_their_users(tmp_path, capsys):
    path, *_ = _prediction_file(tmp_path)
    values = []
    for weighting in ("impressions", "uniform", "positives"):
        assert main(["metrics", str(path), "--gauc-weight", weighting]) == 0
        out = capsys.readouterr().out
        values.append(next(line for line in out.splitlines() if line.split()[0] == "gauc"))
        assert f"weighted by {weighting}" in out
    assert len(set(values)) == 3
    assert main(["metrics", str(path), "--gauc-weight", "uniform"]) == 0
    assert "torchrec" in capsys.readouterr().out
    assert main(["metrics", str(path), "--gauc-weight", "positives"]) == 0
    assert "RecBole" in capsys.readouterr().out


def test_probabilities_and_logits_give_the_same_metrics(tmp_path, capsys):
    rng = np.random.default_rng(3)
    labels = (rng.random(200) < 0.4).astype(np.int64)
    logits = rng.normal(size=200) * 2
    np.savez(tmp_path / "logits.npz", label=labels, score=logits)
    np.savez(tmp_path / "probabilities.npz", label=labels, score=1 / (1 + np.exp(-logits)))
    outputs = []
    for name, kind in (("logits", "logits"), ("probabilities", "probabilities")):
        assert main(["metrics", str(tmp_path / f"{name}.npz"), "--score-is", kind, "--json"]) == 0
        outputs.append(json.loads(capsys.readouterr().out)["metrics"])
    for key in ("auc", "logloss", "normalized_entropy", "mean_predicted", "calibration"):
        assert outputs[0][key] == pytest.approx(outputs[1][key], rel=1e-12), key
    assert outputs[0]["gauc"] is None  # no user_id column


def test_a_probability_of_zero_for_a_positive_is_an_infinite_log_loss(tmp_path, capsys):
    np.savez(tmp_path / "p.npz", label=np.array([1, 0, 1]), score=np.array([0.0, 0.2, 0.9]))
    assert main(["metrics", str(tmp_path / "p.npz"), "--score-is", "probabilities", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["logloss"] == math.inf


def test_tab_separated_files_and_renamed_columns(tmp_path, capsys):
    path = tmp_path / "p.tsv"
    path.write_text("clicked\tpred\tuid\n1\t0.3\t7\n0\t0.1\t7\n1\t0.1\t8\n0\t0.3\t8\n")
    assert main(["metrics", str(path), "--label-column", "clicked", "--score-column", "pred", "--user-column", "uid",
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["auc"] == 0.5 and metrics["gauc"] == 0.5  # user 7: 1, user 8: 0


@pytest.mark.parametrize("content, arguments, message", [
    ("score,user_id\n0.1,1\n", [], "no column 'label' (columns: 'score', 'user_id'); name it with --label-column"),
    ("label,score\n1,0.2\n0,nan\n", [], "p.csv, row 1 (line 3), column 'score': nan (NaN or infinity)"),
    ("label,score\n1,0.2\n0,1.3\n", ["--score-is", "probabilities"],
     "p.csv, row 1 (line 3), column 'score': 1.3 is outside [0, 1] (--score-is probabilities)"),
    ("label,score\n1,0.2\n0,abc\n", [], "p.csv, row 1 (line 3), column 'score': 'abc' is not a number"),
    ("label,score\n1,0.2\n2,0.1\n", [], "p.csv, row 1 (line 3), column 'label': 2.0 is not a label (0 or 1)"),
    ("label,score\n1,0.2\n0\n", [], "p.csv, line 3: 1 field(s), the header has 2"),
    ("label,score,weight\n1,0.2,1\n0,0.1,-1\n", [], "column 'weight': -1.0 is a negative weight"),
    ("label,score\n1,0.2\n1,0.1\n", [], "labels: AUC needs both classes"),
    ("", [], "p.csv: empty file"),
    ("label,score\n1," + "9" * 200_000 + "x\n0,0.1\n", [],
     "p.csv, row 0 (line 2), column 'score': '9999999999999999999999999999999999999999'... (200,001 characters) is not a number"),
])
def test_bad_prediction_files_name_the_file_row_and_column(tmp_path, capsys, content, arguments, message):
    path = tmp_path / "p.csv"
    path.write_text(content)
    assert main(["metrics", str(path), *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err


def test_a_huge_cell_in_a_column_not_read_and_a_final_blank_line_are_accepted(tmp_path, capsys):
    """The csv module refuses fields over 131,072 characters by default, even in a column
    nobody reads; a file may end in a blank line (or several)."""
    path = tmp_path / "p.csv"
    path.write_text("label,score,note\n1,0.8," + "x" * 200_000 + "\n0,-0.3,short\n\n\n")
    assert main(["metrics", str(path)]) == 0
    assert f"{path}: 2 rows, 1 positive" in capsys.readouterr().out


def test_a_csv_error_names_the_file_and_line(tmp_path, capsys, monkeypatch):
    """What the csv module still refuses (here: a field over a limit lowered to 10 characters)."""
    monkeypatch.setattr("pfd_ref.score_files.FIELD_SIZE_LIMIT", 10)
    path = tmp_path / "p.csv"
    path.write_text("label,score\n1,0.2\n0,0.12345678901234\n")
    assert main(["metrics", str(path)]) == 2
    assert f"pfd-ref: error: {path}, line 3: not CSV (field larger than field limit (10))" in capsys.readouterr().err


def test_npz_columns_of_different_lengths(tmp_path):
    np.savez(tmp_path / "p.npz", label=np.array([0, 1, 1]), score=np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="p.npz: column 'scores' has 2 rows, 'labels' has 3"):
        read_predictions(tmp_path / "p.npz")


def test_user_ids_of_any_kind_group_rows(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("label,score,user_id\n1,0.5,anna\n0,0.2,bob\n0,0.1,anna\n")
    predictions = read_predictions(path)
    assert predictions.groups.tolist() == [0, 1, 0] and predictions.weights is None


# --------------------------------------------------------------------------- teacher scores


def test_teacher_scores_by_position_and_by_row_id(tmp_path):
    scores = np.array([0.5, -1.0, 2.0, 0.25])
    np.save(tmp_path / "s.npy", scores)
    assert read_teacher_scores(tmp_path / "s.npy", 4, dtype="float64").tolist() == scores.tolist()
    order = np.array([2, 0, 3, 1])
    np.savez(tmp_path / "s.npz", row_id=order, score=scores[order])
    got = read_teacher_scores(tmp_path / "s.npz", 4, align="row-id", dtype="float64")
    assert got.tolist() == scores.tolist()
    (tmp_path / "s.csv").write_text("row_id,score\n" + "".join(f"{i},{float(scores[i])!r}\n" for i in order))
    assert read_teacher_scores(tmp_path / "s.csv", 4, align="row-id", dtype="float64").tolist() == scores.tolist()
    assert read_teacher_scores(tmp_path / "s.npy", 4).dtype == np.float32


def test_teacher_probabilities_become_exact_soft_labels(tmp_path):
    np.save(tmp_path / "p.npy", np.array([0.0, 1.0, 0.25]))
    logits = read_teacher_scores(tmp_path / "p.npy", 3, "probabilities", temperature=2.0, dtype="float64")
    assert logits[0] == -2 * SATURATED_LOGIT and logits[1] == 2 * SATURATED_LOGIT
    assert logits[2] == pytest.approx(math.log(0.25 / 0.75), rel=1e-15)


@pytest.mark.parametrize("file, content, arguments, message", [
    ("s.npy", np.zeros(3), {}, "s.npy: 3 scores for the 4 rows of the data (aligned by position: score k belongs to row k)"),
    ("s.npy", np.array([0.1, np.nan, 0, 0]), {}, "s.npy, row 1, column 'score': nan (NaN or infinity)"),
    ("s.npy", np.array([0.1, 1.5, 0, 0]), {"score_is": "probabilities"},
     "s.npy, row 1, column 'score': 1.5 is outside [0, 1] (--teacher-scores-are probabilities)"),
    ("s.npy", np.zeros(4), {"align": "row-id"}, "s.npy: a .npy file holds scores only"),
    ("s.csv", "row_id,score\n0,1\n1,1\n1,1\n3,1\n", {"align": "row-id"},
     "s.csv, row 2 (line 4), column 'row_id': row id 1 appears twice (file rows 1 and 2)"),
    ("s.csv", "row_id,score\n0,1\n1,1\n4,1\n3,1\n", {"align": "row-id"},
     "s.csv, row 2 (line 4), column 'row_id': row id 4 is outside the 4 rows of the data"),
    ("s.csv", "row_id,score\n0,1\n1,1\n3,1\n", {"align": "row-id"}, "s.csv: no score for 1 row(s) of the data (first: row 2)"),
    ("s.csv", "row_id,score\n0,1\n1.5,1\n2,1\n3,1\n", {"align": "row-id"}, "'row_id': 1.5 is not a whole row index"),
    ("s.csv", "id,score\n0,1\n1,1\n2,1\n3,1\n", {"align": "row-id"}, "s.csv: no column 'row_id'"),
    ("s.csv", "logit\n1\n", {}, "s.csv: no column 'score' (columns: 'logit')"),
])
def test_bad_teacher_scores_name_the_file_and_row(tmp_path, file, content, arguments, message):
    path = tmp_path / file
    if isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    with pytest.raises(ValueError) as error:
        read_teacher_scores(path, 4, **arguments)
    assert message in str(error.value)


def test_run_trains_the_student_on_the_given_scores(tmp_path):
    """The pfd student of ``run --teacher-scores`` equals ``train(..., teacher_logits=...)``
    given the scores of the training rows (days 0 and 1 of the tiny data), bit for bit."""
    data = tiny_dataset(np.random.default_rng(5), 120)
    data.save(tmp_path / "data.npz")
    scores = np.random.default_rng(9).normal(size=120)
    order = np.random.default_rng(10).permutation(120)
    np.savez(tmp_path / "scores.npz", row_id=order, score=scores[order])
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", "--data", str(tmp_path / "data.npz"), "--mode", "two-stage", "--teacher-scores",
                     str(tmp_path / "scores.npz"), "--teacher-scores-align", "row-id", "--seeds", "1", "--batch-size",
                     "16", "--warmup-steps", "1", "--quiet", "--save", str(tmp_path / "students"), "--json",
                     str(tmp_path / "run.json"), "--preset", "simple"])
    assert code == 0
    train_rows = np.flatnonzero(data.day <= 1)
    config = TrainConfig(mode="two-stage", batch_size=16, distill=DistillConfig(lambda_=0.5, warmup_steps=1))  # simple
    expected = train(Dataset.load(tmp_path / "data.npz").take(train_rows), "pfd", config,
                     teacher_logits=scores[train_rows].astype(np.float32))
    saved = np.load(tmp_path / "students" / "data_pfd_seed0.npz")
    for name, value in expected.student_params().items():
        assert saved[f"param.{name}"].tobytes() == value.tobytes(), name
    records = json.loads((tmp_path / "run.json").read_text())
    assert [r["method"] for r in records] == ["baseline", "pfd"]
    source = records[1]["provenance"]["data_source"]
    assert source["teacher_scores"]["path"].endswith("scores.npz") and source["data"]["path"].endswith("data.npz")
    assert records[1]["provenance"]["config"]["options"]["teacher_scores_align"] == "row-id"


@pytest.mark.parametrize("arguments, message", [
    (["--mode", "sync"], "--teacher-scores: needs --mode two-stage"),
    (["--mode", "two-stage", "--methods", "baseline,md,pfd"], "--methods: with --teacher-scores list baseline and at most one"),
    (["--mode", "two-stage", "--methods", "pfd,pfd_teacher"], "--methods: with --teacher-scores"),
    (["--mode", "two-stage", "--teacher-folds", "2"], "--teacher-folds: not with --teacher-scores"),
])
def test_run_rejects_teacher_scores_it_cannot_use(tmp_path, capsys, arguments, message):
    tiny_dataset(np.random.default_rng(5), 60).save(tmp_path / "data.npz")
    np.save(tmp_path / "s.npy", np.zeros(60))
    assert main(["run", "--data", str(tmp_path / "data.npz"), "--teacher-scores", str(tmp_path / "s.npy"),
                 *arguments]) == 2
    assert message in capsys.readouterr().err
    assert main(["run", "--teacher-scores", str(tmp_path / "s.npy"), "--mode", "two-stage"]) == 2
    assert "--teacher-scores: needs --data FILE.npz" in capsys.readouterr().err

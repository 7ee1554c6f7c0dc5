"""docs/experiments/ctr_gap.py runs end to end at its tiny size and prints tables of the
expected structure (the numbers are the full run's business, docs/ctr_gap.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import dataclasses

import numpy as np
import pytest

from pfd_ref.data.synthetic import bayes_logits, generate
from pfd_ref.metrics import auc

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "experiments" / "ctr_gap.py"


@pytest.fixture(scope="module")
def ctr_gap():
    spec = importlib.util.spec_from_file_location("ctr_gap", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ctr_gap"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tables(ctr_gap, tmp_path_factory):
    cache = tmp_path_factory.mktemp("ctr_gap") / "cache.json"
    return ctr_gap.run(ctr_gap.EXPERIMENTS, ctr_gap.TINY, str(cache)), cache


def test_every_experiment_prints_its_tables_with_full_rows(ctr_gap, tables):
    tables, _ = tables
    tiny = ctr_gap.TINY
    assert [t.title.split(":")[0] for t in tables] == [
        "CTR, 1 epoch, sync, lambda 0.5", "(a) epochs", "(b) teacher capacity", "(c) the true CTR logit's parts on the test rows",
        "(c) students fitted to a target's logits alone (lambda 1, 2 epochs), test AUC",
        "(c) the soft labels against the hard label", "(d) data size",
        "history", "recipe"]
    for table in tables:
        assert table.rows and all(len(row) == len(table.columns) for row in table.rows), table.title
        assert table.markdown().count("\n|") == len(table.rows) + 2  # header, separator, rows
    by_title = {t.title.split(":")[0]: t for t in tables}
    methods = len(ctr_gap.METHODS)
    assert len(by_title["CTR, 1 epoch, sync, lambda 0.5"].rows) == 2 * methods + len(ctr_gap.PAPER_TABLE2)
    assert len(by_title["(a) epochs"].rows) == len(tiny.epochs) * methods
    assert len(by_title["(b) teacher capacity"].rows) == 1 + 2 * len(tiny.widths)
    assert len(by_title["(d) data size"].rows) == len(tiny.size_factors) * methods
    assert len(by_title["history"].rows) == len(tiny.history_shares) * methods
    fits = by_title["(c) students fitted to a target's logits alone (lambda 1, 2 epochs), test AUC"]
    assert [row[0] for row in fits.rows] == (["pfd+md teacher"] * 2 + ["md teacher"] * 2 + ["eta"] * 2 + ["eta_without_intent"] * 2
                                             + ["hard labels, 1 epoch", "hard labels, 2 epochs"] * 2)
    assert len(by_title["(c) the soft labels against the hard label"].rows) == 3
    parts = by_title["(c) the true CTR logit's parts on the test rows"]
    shares = {row[0]: float(row[2]) for row in parts.rows}
    assert shares["eta"] == 1.0 and 0 < shares["intent"] < 1


def test_the_soft_label_table_measures_distances_to_the_true_probability(ctr_gap, tables):
    """Its cells against an independent computation from the generator's true logits."""
    tables, _ = tables
    soft = next(t for t in tables if t.title.startswith("(c) the soft labels"))
    train_eta, test_eta = bayes_logits("ctr", ctr_gap.TINY.data)
    train, test = generate("ctr", ctr_gap.TINY.data)
    without = bayes_logits("ctr", dataclasses.replace(ctr_gap.TINY.data, category_intent_effect=0.0, shop_intent_effect=0.0))
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    rows = {row[0]: row for row in soft.rows}
    assert float(rows["hard label y"][1]) == pytest.approx(np.mean((train.labels - sigmoid(train_eta)) ** 2), abs=6e-5)
    assert float(rows["eta_without_intent"][1]) == pytest.approx(np.mean((sigmoid(without[0]) - sigmoid(train_eta)) ** 2),
                                                                 abs=6e-5)
    assert float(rows["eta_without_intent"][4]) == pytest.approx(auc(test.labels, without[1]), abs=6e-5)
    assert 0 < float(rows["pfd+md teacher (in-sample on training rows)"][1]) < float(rows["hard label y"][1])


def test_gains_are_paired_against_the_baseline_of_their_setting(tables):
    tables, _ = tables
    gap = tables[0]
    for row in gap.rows:
        if row[0] in ("paper", "simple"):
            assert (row[3] == "") == (row[1] == "baseline")  # every method but the baseline has a gain
            assert (row[6] != "") == (row[1] == "pfd+md")  # the md control: pfd+md only
            if row[3]:
                assert row[4].startswith("[") and 0 <= float(row[5]) <= 1  # a CI and a p value


def test_a_rerun_reads_every_training_from_the_cache(ctr_gap, tables, monkeypatch):
    first, cache = tables
    assert len(json.loads(cache.read_text())) > 20
    monkeypatch.setattr(ctr_gap, "train", lambda *a, **k: pytest.fail("trained again despite the cache"))
    again = ctr_gap.run(("gap", "history"), ctr_gap.TINY, str(cache))
    assert [t.rows for t in again] == [t.rows for t in first if t.title.startswith(("CTR", "history"))]

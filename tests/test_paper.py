"""pfd_ref.paper and `pfd-ref paper`: the paper's numbers against PAPER.md, the claims against the
paper's own numbers, the verdict rule on constructed inputs, the plan's shared units, a run at a
tiny scale (rows, claims, the --json file after every training, an interruption), bad inputs."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from pfd_ref import cli, files, paper
from pfd_ref.data.synthetic import SyntheticConfig
from pfd_ref.distill import ModelSizes, build_models
from pfd_ref.provenance import code_fingerprint, package_versions
from pool_stub import sleep_or_fail, thread_settings
from tiny import tiny_schema

PAPER_MD = Path(__file__).resolve().parents[1].parent / "shared" / "PAPER.md"  # ../shared/PAPER.md of the checkout
TINY = paper.Scale("tiny", SyntheticConfig(n_users=30, n_items=100, n_categories=10, n_shops=20, n_days=3, test_days=1,
                                           ctr_impressions_per_user_day=12.0, cvr_impressions_per_user_day=150.0),
                   seeds=2, lambdas=(0.5, 0.9), widths={"ctr": 4, "cvr": 4}, cost_candidates=10, cost_repeats=1,
                   batch_size=128)  # about 700 CTR and 460 CVR training rows: 6 and 4 steps


# --------------------------------------------------------------------------- the paper's numbers


@pytest.fixture(scope="module")
def paper_md() -> str:
    if not PAPER_MD.is_file():
        pytest.skip(f"{PAPER_MD} is not there (the paper's numbers live outside the repository)")
    return PAPER_MD.read_text()


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def _markdown_table(text: str, start: str) -> dict:
    """{first cell: the other cells} of the markdown table after ``start``."""
    rows = {}
    for line in text[text.index(start):].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] not in ("method", "---"):
            rows[cells[0]] = [None if c == "-" else float(c) for c in cells[1:]]
    return rows


NAMES = {"baseline": "baseline", "MTL": "mtl", "LUPI": "lupi", "MD": "md", "PFD": "pfd", "PFD+MD": "pfd+md"}


def test_tables_2_and_4_are_the_papers(paper_md):
    for start, constants in (("Table 2, CTR", paper.PAPER_TABLE_2), ("Table 4, CVR", paper.PAPER_TABLE_4)):
        parsed = {NAMES[name]: (cells[0], cells[1]) for name, cells in _markdown_table(paper_md, start).items()}
        assert parsed == constants


def test_the_lambda_tables_are_the_papers(paper_md):
    block = " ".join(_section(paper_md, "Tables 5 / 6", "Tables 7 / 8").split())
    for table, (start, end) in {"5": ("CTR 1 day:", "CVR 30 days:"), "6": ("CVR 30 days:", "robust")}.items():
        part = _section(block, start, end)
        parsed = {NAMES[m.group(1)]: tuple(float(v) for v in m.group(2).split())
                  for m in re.finditer(r"(PFD\+MD|LUPI|MD|PFD) ((?:0\.\d{4} ?){5})", part)}
        assert parsed == paper.PAPER_LAMBDA_SWEEP[table]
    assert re.search(r"λ \(0\.1, 0\.3, 0\.5, 0\.7, 0\.9\)", paper_md) and paper.PAPER_LAMBDAS == (0.1, 0.3, 0.5, 0.7, 0.9)


def test_the_training_manner_tables_are_the_papers(paper_md):
    block = " ".join(_section(paper_md, "Tables 7 / 8", "- So:").split())
    names = {"baseline": "baseline", "Ind&Async": "ind_async", "Ind&Sync": "ind_sync", "Share&Sync": "share_sync",
             "Share*&Sync": "share_but_user_id_sync", "PFD Share&Sync": "pfd share_sync"}
    pattern = (r"(baseline|Ind&Async|Ind&Sync|PFD Share&Sync|Share\*&Sync|Share&Sync)[^0-9]*?(0\.\d{4})"
               r"(?: / (0\.\d{4}))?, (\d+\.\d+) h(?: \(\+(\d+\.\d)%\))?")
    for table, (start, end) in {"7": ("CTR, PFD+MD:", "CVR:"), "8": ("CVR:", "- So:")}.items():
        part = block[block.index(start):block.index(end, block.index(start) + 1) if end in block else None]
        parsed = {names[m.group(1)]: (float(m.group(2)), m.group(3) and float(m.group(3)), float(m.group(4)),
                                      m.group(5) and round(float(m.group(5)) / 100, 4))
                  for m in re.finditer(pattern, part)}
        assert parsed == paper.PAPER_MANNER_TABLES[table]


def test_the_cost_figure_is_the_papers(paper_md):
    text = " ".join(paper_md.split())
    assert "~6.9e5 multiply-adds against 128 for an inner product (~5400x)" in text
    assert "10^5 repetitions, 89.695 s vs 0.108 s (~830x)" in text
    cost = paper.PAPER_COST
    assert (cost["multiply_adds_tower"], cost["multiply_adds_inner_product"], cost["multiply_add_ratio"]) == (6.9e5, 128, 5400)
    assert (cost["tower_s"], cost["inner_product_s"], cost["time_ratio"], cost["repetitions"]) == (89.695, 0.108, 830, 10 ** 5)


def test_every_claim_is_met_by_the_papers_own_numbers():
    """Each claim, read by its rule on the paper's point values, says what the paper says."""
    rows = {row.key: row for table in ("2", "4", "5", "6", "7", "8") for row in paper.table_rows(table)}
    for claim in paper.claims_for():
        for part in claim.parts:
            value = paper.part_statistic(part, lambda key: {**rows[key].paper, "lambda": rows[key].unit.lambda_})
            assert paper.paper_meets(part, value), (claim.text, part.describe(), value)


# --------------------------------------------------------------------------- the verdict rule


def _around(mean: float, spread: float, n: int = 5) -> np.ndarray:
    return mean + spread * np.array([-2.0, -1.0, 0.0, 1.0, 2.0])[:n]


@pytest.mark.parametrize("test, d, margin, verdict", [
    ("greater", _around(0.010, 0.001), 0.0, "holds"),
    ("greater", _around(-0.010, 0.001), 0.0, "does not hold"),
    ("greater", _around(0.001, 0.01), 0.0, "not significant"),
    ("greater", _around(0.010, 0.001), 0.02, "does not hold"),  # above 0, but shown below the margin
    ("less", _around(-0.010, 0.001), 0.0, "holds"),
    ("less", _around(0.010, 0.001), 0.0, "does not hold"),
    ("less", _around(0.001, 0.01), 0.0, "not significant"),
    ("less", _around(0.001, 0.0002), 0.002, "holds"),  # better, but by less than the margin: "not better than"
    ("equivalent", _around(0.0005, 0.0002), 0.002, "holds"),
    ("equivalent", _around(0.010, 0.001), 0.002, "does not hold"),
    ("equivalent", _around(-0.010, 0.001), 0.002, "does not hold"),
    ("equivalent", _around(0.0, 0.01), 0.002, "not significant"),
])
def test_decide_gives_each_verdict(test, d, margin, verdict):
    assert paper.decide(d, test, margin).verdict == verdict


def test_decide_uses_one_sided_t_tests_and_tost():
    d = np.array([0.004, 0.001, 0.003, -0.001, 0.002])
    greater = paper.decide(d, "greater")
    assert greater.p == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue, rel=1e-12)
    assert greater.p_against == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="less").pvalue, rel=1e-12)
    assert greater.mean == pytest.approx(d.mean(), rel=1e-12)
    tost = paper.decide(d, "equivalent", 0.005)
    assert tost.p == pytest.approx(max(stats.ttest_1samp(d, -0.005, alternative="greater").pvalue,
                                       stats.ttest_1samp(d, 0.005, alternative="less").pvalue), rel=1e-12)
    assert tost.p_against == 1.0  # 2 x 0.99: Bonferroni's bound, capped at 1
    outside = d + 0.006
    assert paper.decide(outside, "equivalent", 0.005).p_against == pytest.approx(
        2 * stats.ttest_1samp(outside, 0.005, alternative="greater").pvalue, rel=1e-12)


def test_decide_with_no_spread_and_bad_inputs():
    assert paper.decide([0.01, 0.01, 0.01], "greater").verdict == "holds"
    assert paper.decide([0.0, 0.0, 0.0], "greater").verdict == "not significant"
    assert paper.decide([0.0, 0.0], "equivalent", 0.001).verdict == "holds"
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paper.decide([0.01], "greater")
    with pytest.raises(ValueError, match="margin"):
        paper.decide([0.01, 0.02], "equivalent", 0.0)
    with pytest.raises(ValueError, match="test"):
        paper.decide([0.01, 0.02], "bigger")


def test_a_claim_holds_when_every_part_holds_and_fails_by_bonferroni():
    holds, fails, unclear = (paper.Decision("holds", 0.01, 0.99, 1.0), paper.Decision("does not hold", 0.99, 0.01, -1.0),
                             paper.Decision("not significant", 0.3, 0.7, 0.1))
    assert paper.claim_verdict([holds, holds]) == ("holds", 0.01, 1.0)
    assert paper.claim_verdict([holds, unclear]) == ("not significant", 0.3, 1.0)
    assert paper.claim_verdict([unclear, fails, holds]) == ("does not hold", 0.99, 0.03)
    weak = paper.Decision("does not hold", 0.98, 0.02, -1.0)  # fails alone, not after 3 parts' correction
    assert paper.claim_verdict([unclear, weak, holds]) == ("not significant", 0.98, pytest.approx(0.06))


# --------------------------------------------------------------------------- the plan


def test_holm_adjusts_a_family_step_down():
    # sorted 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1, raised to the running 0.06)
    assert paper.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert paper.holm([0.5, 0.9]) == [1.0, 1.0] and paper.holm([]) == []
    claims = [{"p": 0.001, "p_against": 1.0}, {"p": 0.04, "p_against": 0.9}, {"p": 0.9, "p_against": 0.02}]
    paper.add_family_wise(claims)
    assert [c["holm_verdict"] for c in claims] == ["holds", "not significant", "not significant"]
    assert [c["holm_p"] for c in claims] == pytest.approx([0.003, 0.08, 0.9])


@pytest.mark.parametrize("n", [3, 5, 8])
def test_tost_power_is_the_sd_at_which_an_equivalence_of_mean_zero_starts_to_hold(n):
    max_sd, _ = paper.tost_power(0.001, n, paper.AUC_MARGIN)
    z = np.arange(n) - (n - 1) / 2
    for factor, verdict in ((0.99, "holds"), (1.01, "not significant")):
        d = z / np.std(z, ddof=1) * max_sd * factor  # mean 0, sd factor x max_sd
        assert paper.decide(d, "equivalent", paper.AUC_MARGIN).verdict == verdict
    sd = 0.005
    seeds = paper.tost_power(sd, n, paper.AUC_MARGIN)[1]
    assert paper.tost_power(sd, seeds, paper.AUC_MARGIN)[0] > sd >= paper.tost_power(sd, seeds - 1, paper.AUC_MARGIN)[0]
    assert paper.tost_power(0.0021, 5, 0.002)[0] == pytest.approx(0.002 * 5 ** 0.5 / stats.t.ppf(0.95, 4))


def test_tables_share_their_units():
    plan = paper.make_plan(paper.TABLES, paper.FULL, range(5))
    rows = plan.rows
    assert rows[("2", "baseline")].unit == rows[("5", "baseline")].unit == rows[("7", "baseline")].unit
    assert rows[("2", "PFD+MD")].unit == rows[("5", "PFD+MD λ=0.5")].unit == rows[("7", "Share*&Sync")].unit
    assert rows[("4", "PFD+MD")].unit == rows[("8", "Share&Sync")].unit and rows[("4", "PFD")].unit == rows[("8", "PFD Share&Sync")].unit
    # per task: Table 2 or 4's methods, 4 methods x 4 more lambdas, and the manners not trained elsewhere
    assert len(plan.units) == (5 + 16 + 3) + (6 + 16 + 2)
    assert len(rows) == 5 + 6 + 2 * (1 + 4 * 5) + 5 + 5


def test_units_train_the_papers_settings():
    ctr = paper.unit_config(paper.make_unit("ctr", "pfd+md", 0.3), 100_000, 64)
    assert (ctr.mode, ctr.sharing, ctr.distill.lambda_, ctr.optimizer, ctr.student_kind) == \
        ("sync", "all-but-user-id", 0.3, "adagrad", "two_tower")
    assert ctr.sizes.student_hidden == (64, 32) and ctr.sizes.tower_out_dim == 16 and ctr.sizes.strong_hidden == (64, 32, 16)
    assert (ctr.sizes.tower_norm, ctr.sizes.tower_scale, ctr.sizes.activation, ctr.sizes.batch_norm) == ("l2", 5.0, "leaky_relu", True)
    cvr = paper.unit_config(paper.make_unit("cvr", "md", manner="ind_async"), 100_000, 32)
    assert (cvr.mode, cvr.sharing, cvr.student_kind) == ("two-stage", "none", "mlp")
    assert cvr.sizes.student_hidden == (32, 16, 8) and cvr.sizes.strong_hidden == (512, 256, 128, 64, 32, 16, 8)
    assert paper.make_unit("cvr", "mtl", 0.9, "ind_sync") == paper.make_unit("cvr", "mtl")  # no teacher: one unit


def test_scales_are_checked():
    with pytest.raises(ValueError, match="lambdas"):
        replace(TINY, lambdas=(0.1, 0.9))
    with pytest.raises(ValueError, match="widths"):
        replace(TINY, widths={"ctr": 6, "cvr": 4})
    with pytest.raises(ValueError, match="seeds"):
        replace(TINY, seeds=1)


# --------------------------------------------------------------------------- a run at a tiny scale


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("paper") / "paper.json"
    lines, sizes = [], []

    def log(line):
        lines.append(line)
        if line.startswith("["):
            sizes.append(len(json.loads(path.read_text())["rows"]))
    report = paper.run_paper(("2", "4", "5", "6", "7", "8"), TINY, [0, 1], jobs=1, json_path=path, log=log)
    return report, path, lines, sizes


def test_a_run_reports_every_row_and_seed(tiny_run):
    report, path, lines, sizes = tiny_run
    plan = paper.make_plan(report["tables"], TINY, [0, 1])
    assert len(report["rows"]) == 2 * len(plan.rows)
    keys = ("table", "row", "task", "method", "setting", "seed", "auc", "gauc", "logloss", "teacher_auc", "train_seconds",
            "train_cpu_seconds")
    for record in report["rows"]:
        assert all(k in record for k in keys) and 0 <= record["auc"] <= 1 and record["train_cpu_seconds"] > 0
        row = plan.rows[(record["table"], record["row"])]
        assert record["paper"] == row.paper and (record["teacher_auc"] is None) == (row.unit.method in ("baseline", "mtl"))
    by_key = {(r["table"], r["row"], r["seed"]): r for r in report["rows"]}
    for seed in (0, 1):  # a shared unit shows the same numbers in every table
        assert by_key[("2", "PFD+MD", seed)]["auc"] == by_key[("5", "PFD+MD λ=0.5", seed)]["auc"] == \
            by_key[("7", "Share*&Sync", seed)]["auc"]
    assert by_key[("2", "PFD+MD", 0)]["auc"] != by_key[("2", "PFD+MD", 1)]["auc"]


def test_a_run_decides_every_claim_of_its_tables(tiny_run):
    report = tiny_run[0]
    assert [c["claim"] for c in report["claims"]] == [c.text for c in paper.claims_for(TINY.lambdas)]
    for claim in report["claims"]:
        assert claim["verdict"] in paper.VERDICTS and 0 <= claim["p"] <= 1 and 0 <= claim["p_against"] <= 1
        assert len(claim["ours"]) == len(claim["paper"]) == len(claim["parts"])
        assert all(len(part["ours_per_seed"]) == 2 for part in claim["parts"])
        assert claim["holm_verdict"] in paper.VERDICTS and claim["holm_p"] >= claim["p"]
        assert claim["holm_p_against"] >= claim["p_against"]
        assert all(("tost" in part) == (part["test"] == "equivalent") for part in claim["parts"])
    text = paper.format_report(report)
    for table in report["tables"]:
        assert paper.TABLE_TITLES[table] in text
    assert all(claim["claim"] in text for claim in report["claims"])


def test_the_json_file_is_rewritten_after_every_training(tiny_run):
    report, path, lines, sizes = tiny_run
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    assert sizes == sorted(sizes) and len(sizes) == 2 * len(paper.make_plan(report["tables"], TINY, [0]).units)
    assert sizes[0] > 0 and report["complete"] and report["provenance"]["git"] is not None


def test_each_training_encodes_only_its_own_rows(tmp_path, monkeypatch):
    """The --json rewrite after a training encodes that training's row records, not every
    record so far: over a run, each record is encoded at most twice (when its training
    finishes, and once more in the final report, in the plan's order). Counted by a spy on
    paper's json module; the trainings are stand-ins (no model is trained)."""
    encoded = []

    class CountingJson:  # json, counting the row records each dumps / dump encodes
        def __getattr__(self, name):
            return getattr(json, name)

        @staticmethod
        def _count(value):
            if isinstance(value, dict):
                encoded.append(len(value["rows"]) if "rows" in value else int("row" in value and "seed" in value))

        def dumps(self, value, *args, **kwargs):
            self._count(value)
            return json.dumps(value, *args, **kwargs)

        def dump(self, value, *args, **kwargs):
            self._count(value)
            return json.dump(value, *args, **kwargs)

    def stand_in(unit, seed, scale):
        auc = 0.6 + 0.01 * seed + 0.001 * len(unit.method)
        return {"auc": auc, "gauc": auc, "logloss": 0.5, "teacher_auc": None if unit.lambda_ is None else 0.7,
                "train_seconds": 1.0, "train_cpu_seconds": 1.0}
    monkeypatch.setattr(paper, "json", CountingJson())
    monkeypatch.setattr(paper, "load_data", lambda *args: None)
    monkeypatch.setattr(paper, "train_unit", stand_in)
    path, sizes = tmp_path / "paper.json", []
    log = lambda line: sizes.append(len(json.loads(path.read_text())["rows"])) if line.startswith("[") else None  # noqa: E731
    report = paper.run_paper(("2", "5"), TINY, list(range(6)), json_path=path, log=log)
    n_units = len(paper.make_plan(("2", "5"), TINY, [0]).units)
    assert len(sizes) == 6 * n_units and sizes == sorted(sizes) and sizes[-1] == len(report["rows"])
    assert sum(encoded) <= 2 * len(report["rows"])
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))


def test_an_interrupted_run_keeps_its_finished_trainings(tmp_path, monkeypatch):
    path, calls = tmp_path / "paper.json", []
    real = paper.train_unit

    def interrupted_after_three(*args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args)
        return real(*args)
    monkeypatch.setattr(paper, "train_unit", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        paper.run_paper(("2",), TINY, [0, 1], json_path=path)
    saved = json.loads(path.read_text())
    assert not saved["complete"] and len({(r["row"], r["seed"]) for r in saved["rows"]}) == 3


def test_a_resumed_run_keeps_the_finished_trainings_and_does_the_rest(tmp_path, monkeypatch):
    path, trained = tmp_path / "paper.json", []
    real = paper.train_unit
    first = paper.run_paper(("2",), TINY, [0, 1], json_path=path)
    monkeypatch.setattr(paper, "train_unit", lambda *args: trained.append(args) or real(*args))
    again = paper.run_paper(("2", "5"), TINY, [0, 1], json_path=path, resume=True)
    assert not [args for args in trained if args[0].lambda_ == 0.5]  # Table 2's units (and Table 5's at 0.5) kept
    assert len(trained) == 2 * 4  # Table 5 at lambda 0.9: 4 methods x 2 seeds
    assert [r for r in again["rows"] if r["table"] == "2"] == first["rows"]
    with pytest.raises(ValueError, match="--resume: .* another scale"):
        paper.run_paper(("2",), replace(TINY, name="other", widths={"ctr": 8, "cvr": 4}), [0, 1], json_path=path,
                        resume=True)
    fewer = paper.run_paper(("5",), replace(TINY, name="other", lambdas=(0.5,)), [0, 1], json_path=path, resume=True)
    assert len(trained) == 8 and {r["row"] for r in fewer["rows"]} == {"baseline", "LUPI λ=0.5", "MD λ=0.5", "PFD λ=0.5",
                                                                       "PFD+MD λ=0.5"}


def _resumable(**changes) -> dict:
    """A report `--resume` accepts for TINY (one row record), with ``changes``: a value, or a
    function of the report that changes it in place."""
    row = {"table": "2", "row": "baseline", "seed": 0, "auc": 0.6, "gauc": 0.6, "logloss": 0.5, "teacher_auc": None,
           "train_seconds": 1.0, "train_cpu_seconds": 1.0}
    report = {"command": "pfd-ref paper", "scale": paper.scale_record(TINY), "rows": [row],
              "provenance": {"code": code_fingerprint(), "git": None, "versions": package_versions()}}
    for key, change in changes.items():
        if callable(change):
            change(report)
        else:
            report[key] = change
    return report


@pytest.mark.parametrize("report, message", [
    ([1], r"does not hold a `pfd-ref paper` report \(a JSON object\), but an array"),
    (_resumable(scale="quick"), "the field 'scale' is a string, not an object"),
    (_resumable(scale=[1]), "the field 'scale' is an array, not an object"),
    (_resumable(scale={"data": {}}), "the field 'scale' lacks 'widths', 'batch_size'"),
    (_resumable(rows=None), "the field 'rows' is null, not an array"),
    (_resumable(drop=lambda r: r.pop("rows")), "the report has no 'rows' field"),
    (_resumable(rows=[1]), r"rows\[0\] is a number, not a row record"),
    (_resumable(row=lambda r: r["rows"][0].pop("auc")), r"rows\[0\] lacks 'auc'"),
    (_resumable(row=lambda r: r["rows"][0].update(auc="x")), r"rows\[0\].auc is 'x', not a number"),
    (_resumable(row=lambda r: r["rows"][0].update(teacher_auc=True)), r"rows\[0\].teacher_auc is True, not a number"),
    (_resumable(row=lambda r: r["rows"][0].update(seed="0")), r"rows\[0\].seed is '0', not an integer >= 0"),
    (_resumable(row=lambda r: r["rows"][0].update(table=2)), r"rows\[0\].table is a number, not a string"),
    (_resumable(drop=lambda r: r.pop("provenance")), "the report has no 'provenance.code'"),
    (_resumable(provenance={"git": None}), "the report has no 'provenance.code'"),
    (_resumable(provenance={"code": "0" * 64, "git": {"commit": "d558097" + "0" * 33, "dirty": False}}),
     "was made by other code \\(code fingerprint 000000000000, git commit d55809700000; this code's is"),
    (_resumable(provenance={"code": code_fingerprint(), "git": None,
                            "versions": {**package_versions(), "numpy": "1.0.0"}}),
     "was made with other libraries \\(numpy 1.0.0 there, "),
])
def test_a_malformed_resume_file_is_refused_naming_the_field_before_any_training(tmp_path, monkeypatch, report, message):
    monkeypatch.setattr(paper, "load_data", lambda *a: pytest.fail("data generated despite a bad --resume file"))
    monkeypatch.setattr(paper, "train_unit", lambda *a: pytest.fail("trained despite a bad --resume file"))
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(report))
    with pytest.raises(ValueError, match=f"^--resume: {re.escape(str(path))}:? {message}"):
        paper.run_paper(("2",), TINY, [0, 1], json_path=path, resume=True)


def test_a_well_formed_resume_file_is_resumed(tmp_path, monkeypatch):
    """The report of the malformed cases above, unchanged, is accepted: its one training kept."""
    trained = []
    monkeypatch.setattr(paper, "load_data", lambda *a: None)
    result = {key: _resumable()["rows"][0][key] for key in paper.RESULT_KEYS}
    monkeypatch.setattr(paper, "train_unit", lambda *args: trained.append(args[:2]) or result)
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(_resumable()))
    assert paper.run_paper(("2",), TINY, [0, 1], json_path=path, resume=True)["resumed"] == 1
    assert len(trained) == 2 * 5 - 1 and (paper.make_unit("ctr", "baseline"), 0) not in trained


def test_worker_processes_give_the_same_numbers(tmp_path):
    one = paper.run_paper(("2",), TINY, [0, 1], jobs=1)
    two = paper.run_paper(("2",), TINY, [0, 1], jobs=2)
    numbers = lambda report: sorted((r["row"], r["seed"], r["auc"], r["teacher_auc"]) for r in report["rows"])  # noqa: E731
    assert numbers(one) == numbers(two)


def test_a_failed_training_in_a_worker_cancels_the_queue_and_keeps_what_finished(tmp_path):
    work, finished = [(str(tmp_path), i) for i in range(40)], {}
    with pytest.raises(RuntimeError, match=r"item 1: the training failed .*ArithmeticError: a broken training") as error:
        paper.run_in_pool(sleep_or_fail, work, 2, (None, ()), lambda item, result: finished.update({item[1]: result}),
                          lambda item: f"item {item[1]}")
    assert isinstance(error.value.__cause__, ArithmeticError)
    ran = {int(marker.name) for marker in tmp_path.iterdir()}
    assert ran == set(finished) and all(finished[i] == i for i in ran)  # every training that ran was handed back
    assert len(ran) <= 12  # the queue was cancelled (the old code ran all 39 others before raising)


def test_workers_get_their_share_of_the_cpus_as_threads(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    results = {}
    paper.run_in_pool(thread_settings, [(i,) for i in range(6)], 2, (None, ()),
                      lambda item, result: results.update({item: result}), str, threads=3)
    assert len(results) == 6 and all(set(r.values()) == {"3"} for r in results.values())  # both workers
    assert os.environ["OPENBLAS_NUM_THREADS"] == "7" and "NUMBA_NUM_THREADS" not in os.environ  # this process's kept
    cpus = len(os.sched_getaffinity(0))
    assert paper.worker_threads(1) == cpus and paper.worker_threads(2) == max(1, cpus // 2)
    assert paper.worker_threads(10 * cpus) == 1


def test_the_timing_phase_times_the_settings_of_a_seed_together():
    plan = paper.make_plan(("2", "7", "8"), TINY, [0, 1, 2])
    order = paper.timing_order(plan)
    ctr = [row.unit for row in plan.rows.values() if row.table == "7"]
    cvr = [row.unit for row in plan.rows.values() if row.table == "8"]
    assert len(ctr) == len(cvr) == 5 and len(order) == 3 * 10
    for position, seed in enumerate((0, 1, 2)):
        block = order[10 * position:10 * (position + 1)]
        assert {s for _, s in block} == {seed}  # one seed at a time, every setting of it
        assert [u for u, _ in block[:5]] == ctr[position:] + ctr[:position]  # rotated: no setting always first
        assert [u for u, _ in block[5:]] == cvr[position:] + cvr[:position]
    assert paper.timing_order(paper.make_plan(("2", "4", "5"), TINY, [0, 1])) == []


def test_the_time_columns_and_claims_come_from_the_timing_phase(tiny_run):
    report = tiny_run[0]
    timing = report["timing"]
    assert timing["same_auc"] is True and timing["jobs"] == 1 and len(timing["load_1min"]) == 2
    assert sorted((r["table"], r["row"], r["seed"]) for r in timing["records"]) == sorted(
        (r["table"], r["row"], r["seed"]) for r in report["rows"] if r["table"] in paper.TIMED_TABLES)
    times = {(r["table"], r["row"], r["seed"]): r["train_cpu_seconds"] for r in timing["records"]}
    claim = next(c for c in report["claims"] if c["table"] == "8" and c["claim"].startswith("sharing"))
    part = claim["parts"][1]  # Share&Sync CPU time - baseline CPU time, per seed
    assert part["ours_per_seed"] == [math.log(times[("8", "Share&Sync", s)]) - math.log(times[("8", "baseline", s)])
                                     for s in (0, 1)]
    text = paper.format_report(report)
    assert text.count("times: the timing phase") == 2


# --------------------------------------------------------------------------- the command


def test_the_command_prints_the_tables_and_claims(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(paper, "QUICK", TINY)
    assert cli.main(["paper", "--quick", "--tables", "2", "--jobs", "1", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr()
    assert paper.TABLE_TITLES["2"] in out.out and "PFD beats MD" in out.out and "[10/10]" in out.err
    assert json.loads((tmp_path / "p.json").read_text())["complete"]


@pytest.mark.parametrize("argv, message", [
    (["--tables", "2,3"], "--tables: unknown table"),
    (["--seeds", "1"], "--seeds: the verdicts are paired tests"),
    (["--jobs", "0"], "--jobs"),
    (["--lambdas", "0.1,0.9"], "--lambdas: a subset"),
    (["--lambdas", "0.2,0.5"], "--lambdas: a subset"),
    (["--json", "/nonexistent-directory/p.json"], "--json: the directory"),
])
def test_bad_options_are_refused_before_any_training(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(paper, "load_data", lambda *a: pytest.fail("data generated despite a bad option"))
    try:
        status = cli.main(["paper", "--quick", *argv])
    except SystemExit as exit:  # argparse's refusal of a bad --tables
        status = exit.code
    assert status == 2 and message in capsys.readouterr().err


def test_an_unwritable_json_directory_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory")
    monkeypatch.setattr(paper, "load_data", lambda *a: pytest.fail("data generated despite a bad option"))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert cli.main(["paper", "--quick", "--json", str(locked / "p.json")]) == 2
    assert "--json: cannot write in" in capsys.readouterr().err
    assert cli.main(["paper", "--quick", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_the_json_path_is_checked_once_before_any_data(tmp_path, monkeypatch):
    """`pfd-ref paper --json` probes its directory once, in run_paper (which a direct call goes
    through too), before any data is made."""
    probes, real = [], files._probe
    monkeypatch.setattr(files, "_probe", lambda *args: probes.append(args) or real(*args))

    def stop(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(paper, "load_data", stop)
    assert cli.main(["paper", "--quick", "--tables", "2", "--jobs", "1", "--quiet", "--json", str(tmp_path / "p.json")]) \
        == 130
    assert [option for option, _ in probes] == ["--json"]
    with pytest.raises(ValueError, match="--json: .* is a directory"):
        paper.run_paper(("2",), TINY, [0, 1], json_path=tmp_path)
    with pytest.raises(ValueError, match="--json: the directory of .* does not exist"):
        paper.run_paper(("2",), TINY, [0, 1], json_path=tmp_path / "missing" / "p.json")


def test_cost_figure_claim_compares_both_ratios(monkeypatch):
    figure = {"multiply_add_ratio": 5376.0, "time_ratio": 50.0}
    import pfd_ref.serving as serving
    monkeypatch.setattr(serving, "tower_cost_figure", lambda **kw: figure, raising=False)
    assert paper.cost_figure(TINY)["verdict"] == "does not hold"
    figure["time_ratio"] = 400.0
    assert paper.cost_figure(TINY)["verdict"] == "holds"
    assert math.isclose(paper.cost_figure(TINY)["paper"]["time_ratio"], 830)


def test_paper_sizes_keep_the_papers_proportions():
    base = ModelSizes()
    cvr = paper.paper_sizes("mlp", 512, base)
    assert cvr.student_hidden == (512, 256, 128) and cvr.strong_hidden == (8192, 4096, 2048, 1024, 512, 256, 128)
    ctr = paper.paper_sizes("two_tower", 512, base)
    assert ctr.student_hidden == (512, 256) and ctr.tower_out_dim == 128 and ctr.strong_hidden == (512, 256, 128)
    teachers = {method: build_models(tiny_schema(), method, "two_tower", ctr)[1].hidden for method in ("lupi", "md", "pfd+md")}
    assert teachers == dict.fromkeys(("lupi", "md", "pfd+md"), (512, 256, 128))  # the paper's CTR MLP teachers


def test_the_thread_variables_are_restored_when_the_pool_cannot_start(monkeypatch):
    """``run_in_pool`` sets the workers' thread variables in this process's environment while it
    spawns them; a pool that fails to start must not leave them set."""
    from pfd_ref.provenance import THREAD_VARIABLES
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}

    def refused(*args, **kwargs):
        raise OSError("no processes")
    monkeypatch.setattr(paper, "ProcessPoolExecutor", refused)
    with pytest.raises(OSError):
        paper.run_in_pool(thread_settings, [(0,)], 2, (None, ()), lambda item, result: None, str, threads=7)
    assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == before


def test_run_paper_gives_every_pool_its_share_of_the_cpus_as_threads(monkeypatch):
    """Both pools of a --jobs 2 run (the trainings and the timing phase) are given
    ``worker_threads(2)`` threads, and the report says so; the pools run in this process here,
    recording what they were given."""
    given = []

    def in_this_process(function, work, jobs, initializer, finished, describe, threads=None):
        given.append((jobs, threads))
        initializer[0](*initializer[1])
        try:
            for item in work:
                finished(item, function(*item))
        finally:
            paper._DATA.clear()

    monkeypatch.setattr(paper, "run_in_pool", in_this_process)
    monkeypatch.setattr(paper, "usable_cpus", lambda: 4)
    report = paper.run_paper(("8",), TINY, [0, 1], jobs=2)
    assert given == [(2, 2), (2, 2)]
    assert report["worker_threads"] == 2 and report["timing"]["threads_per_worker"] == 2


def test_the_timing_phase_is_saved_after_every_timed_training(tmp_path, monkeypatch):
    """A crash in the timing phase keeps what it timed: the JSON holds the finished timing
    records, marked incomplete; a finished run's rows of Table 8 carry the timing phase's times."""
    path = tmp_path / "run.json"
    time_unit, calls = paper.time_unit, []

    def crash_on_the_fourth(unit, seed, scale):
        calls.append(unit)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return time_unit(unit, seed, scale)

    monkeypatch.setattr(paper, "time_unit", crash_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        paper.run_paper(("8",), TINY, [0, 1], jobs=1, json_path=path)
    saved = json.loads(path.read_text())
    assert saved["complete"] is False and saved["timing"]["complete"] is False
    assert len(saved["timing"]["records"]) == 3
    monkeypatch.setattr(paper, "time_unit", time_unit)
    report = paper.run_paper(("8",), TINY, [0, 1], jobs=1, json_path=path, resume=True)
    times = {(r["row"], r["seed"]): r["train_cpu_seconds"] for r in report["timing"]["records"]}
    assert report["timing"]["complete"] is True and len(times) == 10
    assert all(r["train_cpu_seconds"] == times[(r["row"], r["seed"])] for r in report["rows"] if r["table"] == "8")


def test_a_timing_phase_with_other_aucs_is_printed_as_a_warning(tiny_run):
    report = json.loads(json.dumps(tiny_run[0]))
    assert "WARNING: a training of the timing phase" not in paper.format_report(report)
    report["timing"]["same_auc"] = False
    assert paper.format_report(report).count("WARNING: a training of the timing phase gave another AUC") == 2

"""docs/experiments/cvr_paper_preset.py (the CVR investigation of docs/cvr_paper_preset.md)
runs end to end on a tiny world: its tables, its diagnosis and its records."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "cvr_paper_preset.py"


def _script():
    spec = importlib.util.spec_from_file_location("cvr_paper_preset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_candidates_end_to_end_print_tables_and_write_records(tmp_path, capsys):
    out = tmp_path / "records.json"
    _script().main(["--candidate", "lambda0,share", "--seeds", "2", "--methods", "baseline,pfd", "--tiny",
                    "--diagnose", "--json", str(out)])
    captured = capsys.readouterr()
    assert captured.err.count("[") == 4, captured.err  # each setting is logged
    rows = [line for line in captured.out.splitlines() if line.startswith("| lambda 0 | pfd |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert cells[3].startswith(("+", "-")) and " p " in cells[3]  # gain over its own baseline, with its test
    assert len(cells[4].split()) == 2  # one gain per seed
    assert " p " in cells[5]  # the change against the paper preset's gain
    assert "| share none | 1 |" in captured.out  # the diagnosis: one row per setting and seed
    records = json.loads(out.read_text())
    assert {(r["candidate"], r["setting"]) for r in records} == {
        ("lambda0", "lambda 0.5 (paper)"), ("lambda0", "lambda 0"), ("share", "share all (paper)"), ("share", "share none")}
    assert {r["method"] for r in records} == {"baseline", "pfd", "pfd_teacher"}
    assert all(r["seed"] in (0, 1) for r in records)


def test_each_candidate_compares_settings_that_differ_from_the_paper_preset_with_it_first():
    module = _script()
    from pfd_ref.experiment import preset_config
    paper = preset_config("mlp", 200_000)
    for candidate, settings in module.CANDIDATES.items():
        first, *others = settings.items()
        assert first[1] == {} and first[0] not in module.DATA_OF, candidate
        for label, options in others:
            run_options = {k: v for k, v in options.items() if k not in module.SIZE_OPTIONS}
            assert (label in module.DATA_OF or len(run_options) < len(options)
                    or preset_config("mlp", 200_000, **run_options) != paper), (candidate, label)


def test_bad_candidate_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        _script().main(["--candidate", "share,nonsense", "--tiny"])
    assert "'nonsense' is not one of" in capsys.readouterr().err


def test_settings_merged_by_effective_give_bit_identical_results():
    """``effective`` lets settings share a method's results; each merge it makes must be exact."""
    module = _script()
    from pfd_ref.data.synthetic import generate
    from pfd_ref.experiment import preset_config, run_methods
    data = {s: generate("cvr", module.world({"privileged_strength": s}, True, 0)) for s in (1.0, 2.0)}
    train, test = data[1.0]
    paper = preset_config("mlp", train.n, batch_size=module.TINY_BATCH, warmup_steps=2)
    changed = preset_config("mlp", train.n, batch_size=module.TINY_BATCH, share="none", warmup_steps=0, lambda_=0.0)
    auc = lambda method, config, split=data[1.0]: run_methods("cvr", *split, [method], [0], config)[0]["auc"]  # noqa: E731
    for method, other in (("baseline", changed), ("mtl", changed), ("lupi", preset_config(
            "mlp", train.n, batch_size=module.TINY_BATCH, warmup_steps=2, share="none"))):
        assert module.effective(method, paper, {}) == module.effective(method, other, {})
        assert auc(method, paper) == auc(method, other), method
    assert module.effective("baseline", paper, {}) == module.effective("baseline", paper, {"privileged_strength": 2.0})
    assert auc("baseline", paper) == auc("baseline", paper, data[2.0])
    # and what it keeps apart differs: pfd with and without shared tables, lupi and mtl across s
    unshared = replace(paper, sharing="none")
    assert module.effective("pfd", paper, {}) != module.effective("pfd", unshared, {})
    assert auc("pfd", paper) != auc("pfd", unshared)
    for method in ("pfd", "lupi", "mtl"):
        assert module.effective(method, paper, {}) != module.effective(method, paper, {"privileged_strength": 2.0})


def test_a_setting_shared_by_two_candidates_is_trained_once():
    module = _script()
    memo = {}
    for candidate in ("share", "lambda0"):
        module.run_candidate(candidate, range(2), ("baseline", "pfd"), tiny=True, log=lambda line: None, memo=memo)
    trained = [key for key in memo if key[0] != "data"]
    # baseline once (no setting of either candidate can move it), pfd: paper, share none, lambda 0
    assert sorted(key[3] for key in trained) == ["baseline", "pfd", "pfd", "pfd"]

"""docs/experiments/cvr_paper_preset.py (the CVR investigation of docs/cvr_paper_preset.md)
runs end to end on a tiny world: its tables, its diagnosis and its records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "cvr_paper_preset.py"


def _script():
    spec = importlib.util.spec_from_file_location("cvr_paper_preset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_candidates_end_to_end_share_the_reference_and_write_records(tmp_path, capsys):
    out = tmp_path / "records.json"
    _script().main(["--candidate", "lambda0,share", "--seeds", "2", "--methods", "baseline,pfd", "--tiny",
                    "--diagnose", "--json", str(out)])
    captured = capsys.readouterr()
    # the paper preset is the first setting of both candidates and is trained once (3 settings, not 4)
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


def test_the_paper_reference_is_the_preset_and_each_setting_changes_one_option():
    module = _script()
    from pfd_ref.experiment import preset_config
    paper = preset_config("mlp", 200_000)
    for candidate, settings in module.CANDIDATES.items():
        first, *others = settings.values()
        assert first == {}, candidate
        for options in others:
            assert len(options) <= 1, (candidate, options)
            if options:
                assert preset_config("mlp", 200_000, **options) != paper, (candidate, options)


def test_bad_candidate_is_refused_before_any_work(capsys):
    with pytest.raises(SystemExit):
        _script().main(["--candidate", "share,nonsense", "--tiny"])
    assert "'nonsense' is not one of" in capsys.readouterr().err

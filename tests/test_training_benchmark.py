"""benchmarks.training without a C++ compiler: torch.compile's column is skipped and the
reason said (no timing is asserted; the times below are made up)."""

from __future__ import annotations

from benchmarks.training import (COMPILED_PEER, FLOOR, compile_line, compiled_peers, cxx_compiler, sharing_floor, step_rows,
                                 targets)

NO_COMPILER = ("pfd-ref-test-no-such-compiler++",)
TIMES = {("baseline", "pfd_ref"): 2e-3, ("baseline", "torch sparse"): 6e-3, ("baseline", "torch dense"): 4e-3,
         ("pfd", "pfd_ref"): 3e-3, ("pfd", "torch sparse"): 9e-3, ("pfd", "torch dense"): 7e-3,
         ("pfd shared", "pfd_ref"): 2.5e-3, ("pfd shared", "torch sparse"): 8e-3, ("pfd shared", "torch dense"): 5e-3}


def test_no_compiler_found():
    assert cxx_compiler(NO_COMPILER) is None


def test_without_a_compiler_the_column_is_skipped_and_the_reason_said():
    steps, about = compiled_peers(object(), {"baseline": (None, None)}, [], compiler_names=NO_COMPILER)
    assert steps == {}
    line = compile_line(about)
    assert "skipped" in line and "no C++ compiler" in line and NO_COMPILER[0] in line
    columns, rows = step_rows(TIMES)
    assert not any(COMPILED_PEER in column for column in columns)
    assert columns == ["step", "pfd_ref ms", "torch sparse ms", "torch dense ms", "x fastest eager"]
    assert [row["x fastest eager"] for row in rows] == [2.0, 7 / 3, 2.0]
    assert not any(COMPILED_PEER in t["target"] for t in targets(TIMES))


def test_with_compiled_times_the_column_and_its_targets_appear():
    times = {**TIMES, ("baseline", COMPILED_PEER): 2.8e-3, ("pfd", COMPILED_PEER): 4.5e-3,
             ("pfd shared", COMPILED_PEER): 5e-3}
    columns, rows = step_rows(times)
    assert columns[-2:] == ["x fastest eager", f"x {COMPILED_PEER}"]
    assert [round(row[f"x {COMPILED_PEER}"], 6) for row in rows] == [1.4, 1.5, 2.0]
    met = {t["target"]: t["met"] for t in targets(times) if COMPILED_PEER in t["target"]}
    assert list(met.values()) == ["yes", "yes", "yes"]


def test_the_sharing_target_is_the_shared_step_over_the_student_step():
    shared = {t["target"]: t for t in targets(TIMES) if "sharing" in t["target"]}
    (target,) = shared.values()
    assert (target["goal"], target["measured"], target["met"]) == ("<= 1.3", 1.25, "yes")
    slow = {**TIMES, ("pfd shared", "pfd_ref"): 2.7e-3}
    assert [t["met"] for t in targets(slow) if "sharing" in t["target"]] == ["no"]


def test_without_torch_the_reason_is_said():
    assert compiled_peers(None, {}, [])[1] == {"skipped": "torch is not installed"}


def test_the_sharing_floor_is_printed_beside_the_measured_ratio():
    times = {**TIMES, (FLOOR, "products"): 0.5e-3, (FLOOR, "losses"): 0.1e-3}
    rows, (floor, ratio) = sharing_floor(times)
    assert (round(floor, 9), round(ratio, 9)) == (2.6e-3, 1.3)
    assert [row["part"] for row in rows][1:3] == ["+ products", "+ losses"]
    assert round(rows[-1]["x student step"], 9) == 1.25  # the measured shared step beside it
    found = [t for t in targets(TIMES, floor_ratio=1.4) if "floor" in t["target"]]
    assert [(t["goal"], t["measured"], t["met"]) for t in found] == [("<= 1.3", 1.4, "no")]
    assert not any("floor" in t["target"] for t in targets(TIMES))

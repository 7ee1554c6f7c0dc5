"""benchmarks.scoring's FAISS section: skipped, the reason said, without faiss; with it, the
peer returns the kernel's top-k (no timing is asserted). The cold-start targets' ratios."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import scoring

TINY = dict(faiss_cases=((1, 500), (4, 300)), repeats=1)


def test_without_faiss_the_section_is_skipped_and_the_reason_said(monkeypatch, capsys):
    monkeypatch.setattr(scoring, "import_faiss", lambda: None)
    assert scoring.bench_faiss(TINY, np.random.default_rng(0), 1) == []
    out = capsys.readouterr().out
    assert "section skipped, faiss is not installed" in out and "bench" in out


def test_with_faiss_its_top_k_is_the_kernels():
    faiss = pytest.importorskip("faiss", reason="faiss is not installed (the optional extra 'bench')")
    rows = scoring.bench_faiss(TINY, np.random.default_rng(0), 1, faiss)
    assert [(row["users"], row["N"]) for row in rows] == [(1, 500), (4, 300)]
    assert all(row["ids_agree"] == 1.0 and row["kernel_ms"] > 0 and row["faiss_ms"] > 0 for row in rows)


def test_cold_start_targets_divide_the_default_and_the_same_work_by_the_baselines():
    """The target's ratio is compile_all()'s default over the baseline's compile_all() (both
    dtypes); the same-work ratios put both dtypes over both dtypes and float32 over the
    baseline's float32 half; each number distinct, so that a mixed-up pair is caught."""
    times = {scoring.COMPILE_ALL: (6.0, 0.3, 5.0), scoring.BOTH_DTYPES: (12.0, 0.45, 10.0),
             scoring.BASELINE_BOTH.format("abc"): (16.0, 0.6, 15.0), scoring.BASELINE_FLOAT32.format("abc"): (8.0, 0.4, 7.0)}
    rows = [dict(run=run, cache=cache, compile_s=values[i], compile_cpu_s=values[2] if i == 0 else 0.1)
            for run, values in times.items() for i, cache in enumerate(("empty (compile)", "Numba's cache"))]
    checks = [(row["measured"], row["cpu_time"], row["met"]) for row in scoring.cold_start_targets(rows, "abc")]
    assert checks == [(6 / 16, 5 / 15, "yes"), (12 / 16, 10 / 15, "NO"), (6 / 8, 5 / 7, "NO"), (0.3, 0.1, "yes"),
                      (0.45, 0.1, "yes")]
    assert [row["target"] for row in scoring.cold_start_targets(rows, None)] == [
        f"from the cache (s): {scoring.COMPILE_ALL}: the target", f"from the cache (s): {scoring.BOTH_DTYPES}"]

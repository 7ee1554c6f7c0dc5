"""benchmarks.scoring's FAISS section: skipped, the reason said, without faiss; with it, the
peer returns the kernel's top-k (no timing is asserted)."""

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

"""benchmarks.scoring's FAISS section: skipped, the reason said, without faiss; with it, the
peer returns the kernel's top-k (no timing is asserted). The cold-start targets' ratios.
Timing from cold caches, and the file-scan section's limit (the fastest read of the same file)."""

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


class _ExactFlatIP:
    """A stand-in for FAISS's ``IndexFlatIP`` (exact inner-product search in NumPy), ``reverse``:
    the worst k instead of the best, for the test that the section's agreement can fail."""

    def __init__(self, d, reverse=False):
        self.items, self.reverse = np.empty((0, d), np.float32), reverse

    def add(self, items):
        self.items = np.vstack([self.items, items])

    def search(self, queries, k):
        scores = np.atleast_2d(queries) @ self.items.T
        ids = np.argsort(scores if self.reverse else -scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, axis=1), ids


@pytest.mark.parametrize("reverse", [False, True])
def test_the_faiss_section_compares_the_kernels_top_k_with_the_peers(reverse):
    """Without faiss installed (CI), the section's comparison runs against an exact flat index
    in NumPy: full agreement with it, none with one that returns the worst k."""
    from types import SimpleNamespace
    stub = SimpleNamespace(IndexFlatIP=lambda d: _ExactFlatIP(d, reverse), omp_set_num_threads=lambda n: None,
                           __version__="(an exact NumPy stand-in)")
    rows = scoring.bench_faiss(TINY, np.random.default_rng(0), 1, stub)
    assert [(row["users"], row["N"]) for row in rows] == [(1, 500), (4, 300)]
    assert all(row["ids_agree"] == (0.0 if reverse else 1.0) for row in rows), rows


def test_cold_start_targets_divide_the_default_and_the_same_work_by_the_baselines():
    """The target's ratio is compile_all()'s default over the baseline's compile_all() (both
    dtypes); the same-work ratios put both dtypes over both dtypes and float32 over the
    baseline's float32 half; the one-process ratio compile_all(workers=1) over the baseline's
    compile_all(); each number distinct, so that a mixed-up pair is caught."""
    times = {scoring.COMPILE_ALL: (6.0, 0.3, 5.0), scoring.BOTH_DTYPES: (12.0, 0.45, 10.0),
             scoring.COMPILE_ALL_HERE: (9.0, 0.35, 4.0),
             scoring.BASELINE_BOTH.format("abc"): (16.0, 0.6, 15.0), scoring.BASELINE_FLOAT32.format("abc"): (8.0, 0.4, 7.0)}
    rows = [dict(run=run, cache=cache, compile_s=values[i], compile_cpu_s=values[2] if i == 0 else 0.1)
            for run, values in times.items() for i, cache in enumerate(("empty (compile)", "Numba's cache"))]
    checks = [(row["measured"], row["cpu_time"], row["met"]) for row in scoring.cold_start_targets(rows, "abc")]
    assert checks == [(6 / 16, 5 / 15, "yes"), (12 / 16, 10 / 15, "NO"), (6 / 8, 5 / 7, "NO"), (9 / 16, 4 / 15, "NO"),
                      (0.3, 0.1, "yes"), (0.45, 0.1, "yes")]
    assert [row["target"] for row in scoring.cold_start_targets(rows, None)] == [
        f"from the cache (s): {scoring.COMPILE_ALL}: the target", f"from the cache (s): {scoring.BOTH_DTYPES}"]


def test_cold_caches_empties_the_caches_before_every_timed_call(monkeypatch):
    from benchmarks import common

    log = []
    monkeypatch.setattr(common, "evict_caches", lambda: log.append("evict"))
    common.time_side_by_side({"a": lambda: log.append("a"), "b": lambda: log.append("b")}, 3, cold_caches=True)
    warm_up = ["a", "a", "b", "b"]  # each: one warm-up call and one call that sizes the sample
    assert log == warm_up + ["evict", "a", "evict", "b"] * 3


@pytest.mark.parametrize("direct", [True, False])
def test_the_file_scan_section_compares_the_scan_with_the_fastest_read_of_the_same_file(tmp_path, capsys, monkeypatch,
                                                                                         direct):
    path = tmp_path / "catalogue.npy"
    scoring.write_catalogue_file(str(path), 0.002, d=16)
    if not direct:  # a file system that refuses O_DIRECT: the direct reads leave the limit, said so
        monkeypatch.setattr(scoring.catalogue, "open_direct", lambda path: None)
    elif scoring.catalogue.open_direct(path) is None:
        pytest.skip("this file system refuses direct reads")
    rows = scoring.bench_out_of_core(str(path), 1)
    reads = [row for row in rows if row["run"].startswith("read_")]
    direct_reads = {"read_direct", "read_direct_2"} if direct else set()
    assert {row["run"] for row in rows} == {"read_readinto", "read_mmap_touch", "top_k_1_user", "top_k_16_users"} | direct_reads
    assert ("direct reads (O_DIRECT) are refused" in capsys.readouterr().out) != direct
    fastest = min(row["median_s"] for row in reads)
    for row in rows:
        assert row["pct_read"] == pytest.approx(100 * fastest / row["median_s"])

"""Shared helpers of the benchmarks (``python -m benchmarks.<name>``). Tests import only what
needs no timing (the step counts of benchmarks/step_limit.py, the report of benchmarks/training.py).

Method (docs/performance.md): every figure is the median over ``repeats`` rounds after a
warm-up call, timed with ``time.perf_counter``; candidates that are compared run
round-robin in the same rounds (``time_side_by_side``), so a slow spell of the shared
machine hits all of them alike and the ratios stay fair. Calls shorter than
``min_sample_s`` are looped and averaged within each sample.

Thread counts are fixed per process: BLAS reads its thread count when NumPy is imported,
so a benchmark runs itself once per requested thread count in a child process
(``run_per_thread_count``) whose environment sets ``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``; inside the child ``set_threads`` sets Numba's
and PyTorch's counts to the same number.

API:
    run_per_thread_count(module, argv, thread_counts)  parent: one child process per count
    write_json(path, payload)               write results
    set_threads(threads)                    child: Numba (and torch, if installed) thread counts
    import_torch()                          the torch module, or None when not installed
    time_side_by_side(candidates, repeats)  {name: median seconds per call}
    evict_caches()                          push what was read before out of the CPU's caches
    memory_bandwidth(threads)               {"triad_GBps": ..., "read_1_stream_GBps": ...}
    make_triad(threads) / make_read(array)  (callable, bytes) to time beside a kernel
    make_gather_reads(table, ids)           ({name: callable}, bytes): reading random rows
    gemm_gflops(dtype, size, repeats)       BLAS GEMM throughput of NumPy's matmul
    machine_info()                          CPU, cores, versions, BLAS, environment
    print_table(title, columns, rows)       fixed-width table of dict rows
    run_python(code, env, args)             run code in a fresh interpreter, return stdout
    parse_and_run(...) / benchmark_main(...)  the shared command line of a benchmark module
    check_json_argument(module, argv)       parent: --json checked before anything runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numba
import numpy as np
from numba import njit

from pfd_ref.files import check_output_file, write_atomically
from pfd_ref.kernels._common import chunk_bounds, run_chunks
from pfd_ref.kernels.scoring import _prefetch

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Set on some processors for older OpenBLAS builds; they slow a current NumPy, so the
# benchmark children run without them (never changed in tests). Reported in machine_info.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
CHILD_FLAG = "--child-json"


# ----------------------------------------------------------------------------- processes


def run_per_thread_count(module: str, argv: list[str], thread_counts: list[int]) -> list[dict]:
    """Run ``python -m module *argv --threads N --child-json FILE`` once per N, each in a
    fresh process with BLAS limited to N threads; the children print their tables and
    write their results (a dict) to FILE; returns those dicts."""
    results = []
    for threads in thread_counts:
        env = dict(os.environ)
        removed = {name: env.pop(name) for name in OPENBLAS_OVERRIDES if name in env}
        env.update({name: str(threads) for name in BLAS_THREAD_VARIABLES})
        env["PFD_BENCH_REMOVED_ENV"] = json.dumps(removed)
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            child_json = handle.name
        command = [sys.executable, "-m", module, *argv, "--threads", str(threads), CHILD_FLAG, child_json]
        subprocess.run(command, env=env, check=True)
        with open(child_json) as handle:
            results.append(json.load(handle))
        os.unlink(child_json)
    return results


def write_json(path: str, payload: dict) -> None:
    """Write ``payload`` to ``path`` as indented JSON (atomically) and say so."""
    write_atomically(path, lambda handle: json.dump(payload, handle, indent=1), mode="w")
    print(f"\nwrote {path}")


def run_python(code: str, env: dict | None = None, args: list[str] | None = None, cwd: str | None = None) -> str:
    """Run ``code`` with ``args`` in a fresh interpreter (``env`` added to this environment)
    in directory ``cwd`` (this one when None; ``python -c`` puts it first on ``sys.path``,
    before ``PYTHONPATH``); return stdout."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-c", code, *(args or [])], env=full_env, check=True, capture_output=True,
                          text=True, cwd=cwd)
    return done.stdout


def set_threads(threads: int) -> None:
    """Set Numba's thread count (and torch's, if installed) to ``threads``; check BLAS's."""
    for name in BLAS_THREAD_VARIABLES:
        if os.environ.get(name) != str(threads):
            raise RuntimeError(f"{name} must be {threads} before NumPy is imported; use run_per_thread_count")
    numba.set_num_threads(threads)
    torch = import_torch()
    if torch is not None:
        torch.set_num_threads(threads)


def import_torch():
    """The torch module, or None when it is not installed (its columns are then skipped)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


# ----------------------------------------------------------------------------- timing


def _seconds_per_call(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def time_side_by_side(
    candidates: dict[str, Callable[[], object]], repeats: int, min_sample_s: float = 0.002,
    cold_caches: bool = False,
) -> dict[str, float]:
    """Median seconds per call of every candidate, measured round-robin.

    Each candidate is called once to warm up (compilation, caches, page faults), then
    timed once to choose how many calls make one sample (at least ``min_sample_s``);
    then ``repeats`` rounds each take one sample of every candidate in turn.
    ``cold_caches``: every sample is one call, and before it (untimed) ``evict_caches``
    reads a buffer larger than the CPU's caches, so that no candidate finds in cache what
    the candidate before it read (reads of the same random rows, say).
    """
    numbers = {}
    for name, fn in candidates.items():
        fn()
        single = _seconds_per_call(fn, 1)
        numbers[name] = 1 if cold_caches else max(1, math.ceil(min_sample_s / max(single, 1e-9)))
    samples = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            if cold_caches:
                evict_caches()
            samples[name].append(_seconds_per_call(fn, numbers[name]))
    return {name: float(np.median(values)) for name, values in samples.items()}


# ----------------------------------------------------------------------------- limits


@njit(nogil=True)
def _triad(a, b, c, scalar):
    for i in range(a.shape[0]):
        a[i] = b[i] + scalar * c[i]


@njit(nogil=True, fastmath={"reassoc"})
def _read_sum(a):
    total = 0.0
    for i in range(a.shape[0]):
        total += a[i]
    return total


_EVICTION_BUFFER = []  # created on first use: 128 MB, four times the 32 MiB L3 of the benchmark machine


def evict_caches() -> None:
    """Read 128 MB once (a float64 sum), which pushes whatever a kernel read before out of
    the CPU's caches (L3 32 MiB on the benchmark machine)."""
    if not _EVICTION_BUFFER:
        _EVICTION_BUFFER.append(np.ones(16_000_000))
    _read_sum(_EVICTION_BUFFER[0])


def make_triad(threads: int, elements: int = 8_000_000) -> tuple[Callable[[], object], int]:
    """A STREAM-like triad ``a = b + s c`` on float64 arrays of ``elements`` (64 MB each,
    far beyond the caches), split into ``threads`` chunks run at once (the kernels' own
    thread pool). Returns the callable and the bytes it moves as STREAM counts them:
    3 x 8 per element (the write-allocate read of ``a`` is not counted)."""
    a, b, c = np.zeros(elements), np.ones(elements), np.full(elements, 2.0)
    bounds = chunk_bounds(elements, threads)
    args = [(a[i:j], b[i:j], c[i:j], 3.0) for i, j in bounds]
    return (lambda: run_chunks(_triad, args)), 24 * elements


def make_read(array: np.ndarray) -> tuple[Callable[[], object], int]:
    """One thread reading ``array`` front to back once (a float64 sum over its bytes).
    Returns the callable and the bytes read."""
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    flat = flat[: flat.shape[0] // 8 * 8].view(np.float64)
    return (lambda: _read_sum(flat)), flat.nbytes


@njit(nogil=True, fastmath={"reassoc"})
def _gather_sum_4(table, ids):
    """Sum of the rows ``table[ids]``, four random rows in one inner loop (four distant
    quarters of ``ids``, as the candidate kernel reads them); the tail rows one by one."""
    q = ids.shape[0] // 4
    s0 = s1 = s2 = s3 = table.dtype.type(0)
    for t in range(q):
        r0, r1, r2, r3 = ids[t], ids[q + t], ids[2 * q + t], ids[3 * q + t]
        for j in range(table.shape[1]):
            s0 += table[r0, j]
            s1 += table[r1, j]
            s2 += table[r2, j]
            s3 += table[r3, j]
    for t in range(4 * q, ids.shape[0]):
        for j in range(table.shape[1]):
            s0 += table[ids[t], j]
    return s0 + s1 + s2 + s3


@njit(nogil=True, fastmath={"reassoc"})
def _gather_sum_8(table, ids):
    """As ``_gather_sum_4`` with eight random rows in one inner loop."""
    q = ids.shape[0] // 8
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = table.dtype.type(0)
    for t in range(q):
        r0, r1, r2, r3 = ids[t], ids[q + t], ids[2 * q + t], ids[3 * q + t]
        r4, r5, r6, r7 = ids[4 * q + t], ids[5 * q + t], ids[6 * q + t], ids[7 * q + t]
        for j in range(table.shape[1]):
            s0 += table[r0, j]
            s1 += table[r1, j]
            s2 += table[r2, j]
            s3 += table[r3, j]
            s4 += table[r4, j]
            s5 += table[r5, j]
            s6 += table[r6, j]
            s7 += table[r7, j]
    for t in range(8 * q, ids.shape[0]):
        for j in range(table.shape[1]):
            s0 += table[ids[t], j]
    return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7


@njit(nogil=True, fastmath={"reassoc"})
def _gather_sum_prefetch(table, ids, distance):
    """Sum of the rows ``table[ids]``, one row at a time, every line of the row ``distance``
    positions ahead requested first (the candidate kernel's ``_prefetch`` hint)."""
    line = 64 // table.itemsize
    total = table.dtype.type(0)
    for t in range(ids.shape[0]):
        if t + distance < ids.shape[0]:
            for column in range(0, table.shape[1], line):
                _prefetch(table, ids[t + distance], column)
        for j in range(table.shape[1]):
            total += table[ids[t], j]
    return total


def make_gather_reads(table: np.ndarray, ids: np.ndarray) -> tuple[dict[str, Callable[[], object]], int]:
    """Ways to read the rows ``table[ids]`` once and nothing else, to time beside a kernel
    that gathers them: one thread summing them 4 or 8 random rows at a time, or one at a
    time with the rows 8 or 16 positions ahead requested first (Numba), and NumPy's
    ``np.take`` into a preallocated buffer (which also writes them). The fastest is the
    random-row gather limit of the run. Returns the callables and the bytes of the rows."""
    out = np.empty((ids.shape[0], table.shape[1]), table.dtype)
    reads = {
        "gather_sum_4": lambda: _gather_sum_4(table, ids),
        "gather_sum_8": lambda: _gather_sum_8(table, ids),
        "prefetch_8": lambda: _gather_sum_prefetch(table, ids, 8),
        "prefetch_16": lambda: _gather_sum_prefetch(table, ids, 16),
        "np_take": lambda: np.take(table, ids, axis=0, out=out),
    }
    return reads, ids.shape[0] * table.shape[1] * table.itemsize


def memory_bandwidth(threads: int, repeats: int = 9) -> dict:
    """STREAM-like bandwidths in GB/s (1e9 bytes per second): ``triad`` (``make_triad``
    with ``threads`` threads) and ``read_1_stream`` (one thread summing one 64 MB array,
    the rate of a single sequential read stream)."""
    triad, triad_bytes = make_triad(threads)
    read, read_bytes = make_read(np.ones(8_000_000))
    times = time_side_by_side({"triad": triad, "read": read}, repeats)
    return {"triad_GBps": triad_bytes / times["triad"] / 1e9, "read_1_stream_GBps": read_bytes / times["read"] / 1e9}


def gemm_gflops(dtype, size: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of NumPy's ``matmul`` (BLAS GEMM) on ``size x size`` matrices: 2 size^3 flops."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, size)).astype(dtype)
    y = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty((size, size), dtype)
    seconds = time_side_by_side({"gemm": lambda: np.matmul(x, y, out=out)}, repeats)["gemm"]
    return 2 * size**3 / seconds / 1e9


# ----------------------------------------------------------------------------- reporting


def machine_info() -> dict:
    """CPU model and cores (from lscpu), versions, BLAS build and thread environment."""
    info = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        for key in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache"):
            if key in fields:
                info[key] = fields[key].strip()
    except (OSError, subprocess.CalledProcessError):
        info["Model name"] = platform.processor()
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    info["blas"] = f"{blas.get('name', '?')} {blas.get('version', '?')}"
    torch = import_torch()
    info["torch"] = torch.__version__ if torch is not None else "not installed"
    info["env"] = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    info["removed_env"] = json.loads(os.environ.get("PFD_BENCH_REMOVED_ENV", "{}"))
    return info


def _format(value) -> str:
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.2e}"
    return str(value)


def print_table(title: str, columns: list[str], rows: list[dict]) -> None:
    """Print ``rows`` (dicts) under ``title``, one column per name in ``columns``."""
    cells = [[_format(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) if cells else len(column) for i, column in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths)))
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths)))
    sys.stdout.flush()


def parse_and_run(module: str, description: str, quick_help: str, run, argv=None, add_arguments=None,
                  sections: tuple[str, ...] = (), before_run=None):
    """The shared command line of a benchmark module: ``--quick``, ``--threads 1,2``,
    ``--json PATH``, ``--only`` (when the module names its ``sections``; then it is
    ``run(threads, quick, only)``), and the parent-only options ``add_arguments(parser)``
    adds. Runs ``run(threads, quick)`` in one child process per thread count
    (``run_per_thread_count``) and returns ``(args, runs)``; in a child process it writes
    its result for the parent and returns None. In the parent, once every option has been
    parsed and checked, ``before_run(args, parser)`` runs before the first child (it may
    refuse an option with ``parser.error``)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts, one process each (default 1,2)")
    parser.add_argument("--json", help="write all results to this JSON file")
    parser.add_argument(CHILD_FLAG, help=argparse.SUPPRESS)
    if sections:
        parser.add_argument("--only", default=None, help=f"comma-separated sections to run (default all): {', '.join(sections)}")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        counts = [int(t) for t in args.threads.split(",")]
    except ValueError:
        parser.error(f"--threads: expected comma-separated integers, got {args.threads!r}")
    if any(count < 1 for count in counts):
        parser.error(f"--threads: expected thread counts >= 1, got {args.threads!r}")
    only = None
    if sections and args.only is not None:
        only = tuple(name for name in args.only.split(",") if name)
        unknown = [name for name in only if name not in sections]
        if unknown:
            parser.error(f"--only: unknown section(s) {', '.join(unknown)}; expected names from {', '.join(sections)}")
    if args.child_json:
        with open(args.child_json, "w") as handle:
            json.dump(run(counts[0], args.quick, only) if sections else run(counts[0], args.quick), handle)
        return None
    if before_run is not None:
        before_run(args, parser)
    child_argv = (["--quick"] if args.quick else []) + (["--only", args.only] if only is not None else [])
    return args, run_per_thread_count(module, child_argv, counts)


def check_json_argument(module: str, argv: list[str]) -> None:
    """The first thing a benchmark's parent process does (``CHILD_FLAG`` absent from ``argv``):
    exit with status 2 and a message naming ``--json`` when the file given to it cannot be
    written (``files.check_output_file``: its directory exists and takes a new file, it is not
    a directory), before anything is timed or written. A malformed ``--json`` is left to the
    benchmark's own parser."""
    if CHILD_FLAG in argv:
        return
    parser = argparse.ArgumentParser(prog=f"python -m {module}", add_help=False, exit_on_error=False)
    parser.add_argument("--json", default=None)
    try:
        known, _ = parser.parse_known_args(argv)
        check_output_file("--json", known.json)
    except argparse.ArgumentError:
        return
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def benchmark_main(module: str, description: str, quick_help: str, run, argv=None) -> None:
    """``check_json_argument``, ``parse_and_run``, then (in the parent) write every run to
    ``--json`` when given."""
    check_json_argument(module, sys.argv[1:] if argv is None else argv)
    parsed = parse_and_run(module, description, quick_help, run, argv)
    if parsed is None:
        return
    args, runs = parsed
    if args.json:
        write_json(args.json, {"runs": runs})

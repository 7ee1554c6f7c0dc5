"""Loader benchmark: rows per second and peak memory of the streaming log readers.

    python -m benchmarks.loader [--rows 10000000] [--file PATH] [--keep-file] [--repeats 3]
                                [--features] [--feature-rows 1000000] [--kuairand PATH] [--json PATH]

* ``taobao read``: ``pfd_ref.data.taobao.read_user_behavior`` on a generated file in the
  official format (``pfd_ref.data.taobao_synthetic``, written to a temporary folder unless
  ``--file`` names one; ``--keep-file`` keeps a generated one).
* ``--features``: ``cvr_dataset`` and ``ctr_dataset`` on the first ``--feature-rows`` rows
  of the file (time and peak; the CTR dataset of 10M log rows would take about 10 GB).
* ``--kuairand PATH``: ``load_kuairand`` on the KuaiRand file repeated ``--copies`` times
  (the header once), the size the issue measured the old loader at.

Every measurement runs in a fresh process with ``NUMBA_NUM_THREADS=1`` and one BLAS thread
(the kernels are serial: one core), after the kernels are compiled or loaded from Numba's
cache and the file has been read once (so the page cache holds it: the figure is parsing,
not the disk). Reported per measurement (median over ``--repeats`` processes): seconds,
rows per second, the peak of NumPy's own allocations above the start (``tracemalloc``, in a
separate process so that tracing costs no time in the timed one), the peak resident set
above the process's size before the call (``VmHWM - VmRSS``), the final arrays' bytes and
peak / final. Never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from benchmarks.common import check_json_argument, machine_info, print_table, write_json

ENV = {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if hasattr(value, "columns"):  # a Dataset
        arrays = [a for c in value.columns.values() for a in (c if isinstance(c, tuple) else (c,))]
        return sum(a.nbytes for a in arrays) + value.labels.nbytes + value.user_ids.nbytes + value.day.nbytes
    return sum(getattr(value, name).nbytes for name in ("user", "item", "category", "behavior", "timestamp"))


def _child(what: str, path: str, trace: bool, max_rows: int | None) -> dict:
    """One measurement in this (fresh) process."""
    from pfd_ref.data import kuairand, taobao
    from pfd_ref.kernels import text
    text.warm_up()
    with open(path, "rb") as handle:  # into the page cache
        while handle.read(1 << 24):
            pass
    if what == "kuairand":
        kuairand.load_kuairand(os.path.join(os.path.dirname(__file__), "..", "tests", "data", "kuairand_sample.tsv"))
        call = lambda: kuairand.load_kuairand(path)[0]  # noqa: E731
    elif what == "taobao":
        call = lambda: taobao.read_user_behavior(path)  # noqa: E731
    else:
        log = taobao.read_user_behavior(path, max_rows=max_rows)
        build = taobao.cvr_dataset if what == "cvr" else taobao.ctr_dataset
        call = lambda: build(log)[0]  # noqa: E731
    if trace:
        tracemalloc.start()
        start_bytes = tracemalloc.get_traced_memory()[0]
        result = call()
        peak = tracemalloc.get_traced_memory()[1] - start_bytes
        tracemalloc.stop()
        return {"traced_peak_bytes": peak}
    rss_before = _status_kib("VmRSS")
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    rows = result.n
    return {"seconds": seconds, "rows": int(rows), "final_bytes": _nbytes(result),
            "rss_peak_increase_bytes": (_status_kib("VmHWM") - rss_before) * 1024}


def _measure(what: str, path: str, repeats: int, max_rows: int | None = None) -> dict:
    runs = []
    for trace in [False] * repeats + [True]:
        command = [sys.executable, "-m", "benchmarks.loader", "--child", what, "--file", path] + (["--trace"] if trace else [])
        command += [] if max_rows is None else ["--feature-rows", str(max_rows)]
        done = subprocess.run(command, env={**os.environ, **ENV}, check=True, capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    timed = runs[:-1]
    seconds = float(np.median([r["seconds"] for r in timed]))
    out = {"what": what, "rows": timed[0]["rows"], "seconds": seconds, "seconds_all": [r["seconds"] for r in timed],
           "rows_per_s": timed[0]["rows"] / seconds, "final_bytes": timed[0]["final_bytes"],
           "traced_peak_bytes": runs[-1]["traced_peak_bytes"],
           "rss_peak_increase_bytes": float(np.median([r["rss_peak_increase_bytes"] for r in timed]))}
    out["traced_peak_over_final"] = out["traced_peak_bytes"] / out["final_bytes"]
    out["rss_peak_over_final"] = out["rss_peak_increase_bytes"] / out["final_bytes"]
    print(json.dumps(out), file=sys.stderr)
    return out


def _repeat_kuairand(source: str, copies: int, folder: str) -> str:
    with open(source, "rb") as handle:
        header, body = handle.readline(), handle.read()
    path = os.path.join(folder, f"kuairand_x{copies}.tsv")
    with open(path, "wb") as handle:
        handle.write(header)
        for _ in range(copies):
            handle.write(body if body.endswith(b"\n") else body + b"\n")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loader", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the generated file (about)")
    parser.add_argument("--file", default=None, help="an official-format file to read instead of generating one")
    parser.add_argument("--keep-file", action="store_true", help="keep the generated file (its path is printed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--features", action="store_true", help="also time the CVR and CTR datasets")
    parser.add_argument("--feature-rows", type=int, default=1_000_000, help="with --features: rows of the file's head")
    parser.add_argument("--kuairand", default=None, help="a KuaiRand log to time load_kuairand on")
    parser.add_argument("--copies", type=int, default=10, help="with --kuairand: copies of its rows")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.file, args.trace, args.feature_rows if args.child in ("cvr", "ctr") else None)))
        return 0
    check_json_argument("benchmarks.loader", sys.argv[1:] if argv is None else argv)  # before the file is generated
    from pfd_ref.data.taobao_synthetic import UserBehaviorConfig, write_user_behavior
    folder = tempfile.mkdtemp(prefix="pfd-loader-")
    path = args.file
    if path is None:
        path = os.path.join(folder, f"UserBehavior_{args.rows}.csv")
        start = time.perf_counter()
        rows = write_user_behavior(path, UserBehaviorConfig(rows=args.rows))
        print(f"generated {path}: {rows:,} rows, {os.path.getsize(path) / 2**20:.0f} MiB in "
              f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    results = [_measure("taobao", path, args.repeats)]
    if args.features:
        results += [_measure(task, path, args.repeats, args.feature_rows) for task in ("cvr", "ctr")]
    if args.kuairand:
        results.append(_measure("kuairand", _repeat_kuairand(args.kuairand, args.copies, folder), args.repeats))
    rows = [{"measure": r["what"], "rows": r["rows"], "s": r["seconds"], "M rows/s": r["rows_per_s"] / 1e6,
             "final MiB": r["final_bytes"] / 2**20, "traced peak MiB": r["traced_peak_bytes"] / 2**20,
             "peak/final": r["traced_peak_over_final"], "RSS peak MiB": r["rss_peak_increase_bytes"] / 2**20,
             "RSS/final": r["rss_peak_over_final"]} for r in results]
    info = machine_info()
    print(f"\n{info.get('Model name')}, load average {os.getloadavg()[0]:.2f} at the end; one core "
          f"(NUMBA_NUM_THREADS=1), median of {args.repeats} processes")
    print_table("loaders", list(rows[0]), rows)
    if args.file is None and not args.keep_file:
        os.unlink(path)
    elif args.file is None:
        print(f"kept {path}", file=sys.stderr)
    if args.json:
        write_json(args.json, {"machine": info, "file": path, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

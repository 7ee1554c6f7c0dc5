"""Where ``compile_all()``'s time goes: compile and cache-load seconds per jitted function and dtype.

    python -m benchmarks.compile_profile [--rounds 3]

Each round and dtype runs ``kernels.compile_all(dtypes=(dtype,))`` in a fresh process with
its own empty ``NUMBA_CACHE_DIR`` (compile), then again in another fresh process from that
cache (load). ``numba.core.dispatcher.Dispatcher.compile`` (which loads from the cache or
compiles one signature) is timed around every call; a function's own time excludes the
jitted functions it calls that compile inside it (``heap.offer`` inside ``_select_row``).
Only functions that compile or load on their own appear in the load column: a callee's code
is linked into its caller's cached library. The first function of a process also pays
Numba's start-up (its typing and lowering registries, NumPy support included, and, from
``numba.np.arraymath``, the import of ``scipy.linalg`` to look for BLAS); the table names
it apart. Prints a Markdown table of the medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import defaultdict

from benchmarks.common import run_python

PROFILE_CODE = """
import json, sys, time
from numba.core import dispatcher
from numba.core.sigutils import normalize_signature
stack, records = [], []
compile_one = dispatcher.Dispatcher.compile
def timed(self, sig):
    if tuple(normalize_signature(sig)[0]) in self.overloads:
        return compile_one(self, sig)
    stack.append(0.0)
    start = time.perf_counter()
    try:
        return compile_one(self, sig)
    finally:
        total = time.perf_counter() - start
        nested = stack.pop()
        if stack:
            stack[-1] += total
        records.append((self.py_func.__module__.rsplit(".", 1)[-1] + "." + self.py_func.__name__, total - nested))
dispatcher.Dispatcher.compile = timed
from pfd_ref import kernels
start = time.perf_counter()
kernels.compile_all(dtypes=(sys.argv[1],))
print(json.dumps(dict(total=time.perf_counter() - start, records=records)))
"""
DTYPES = ("float32", "float64")
FIRST = " (the first: Numba's start-up included)"


def profile(rounds: int) -> tuple[dict, dict]:
    """``{function: {(dtype, "compile" | "load"): [own seconds per round]}}`` and
    ``{(dtype, state): [compile_all seconds per round]}``."""
    own, totals = defaultdict(lambda: defaultdict(list)), defaultdict(list)
    for _ in range(rounds):
        for dtype in DTYPES:
            with tempfile.TemporaryDirectory() as cache:
                for state in ("compile", "load"):
                    run = json.loads(run_python(PROFILE_CODE, {"NUMBA_CACHE_DIR": cache}, [dtype]))
                    totals[(dtype, state)].append(run["total"])
                    for i, (name, seconds) in enumerate(run["records"]):
                        own[name + (FIRST if i == 0 else "")][(dtype, state)].append(seconds)
    return own, totals


def markdown(own: dict, totals: dict) -> str:
    def cell(values, scale, digits):
        return f"{scale * statistics.median(values):.{digits}f}" if values else ""

    lines = ["| function | float32 compile s | float64 compile s | float32 load ms | float64 load ms |",
             "|---|---:|---:|---:|---:|"]
    for name, times in own.items():
        lines.append(f"| `{name}` | " + " | ".join(
            [cell(times[(d, "compile")], 1, 2) for d in DTYPES] + [cell(times[(d, "load")], 1e3, 1) for d in DTYPES]) + " |")
    lines.append("| **`compile_all(dtypes=(dtype,))`, whole** | " + " | ".join(
        [cell(totals[(d, "compile")], 1, 2) for d in DTYPES] + [cell(totals[(d, "load")], 1e3, 0) for d in DTYPES]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process rounds per dtype (default 3)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds: expected at least 1, got {args.rounds}")
    print(markdown(*profile(args.rounds)))


if __name__ == "__main__":
    main()

"""Paired comparisons between methods of `pfd-ref run --json` records (same seeds): AUC and
GAUC differences with a two-sided paired t-test, as Markdown tables.

    python docs/experiments/paired_differences.py RUN.json [RUN.json ...]
"""
import json
import sys

import numpy as np

from pfd_ref.metrics import paired_comparison

PAIRS = [("pfd", "md"), ("pfd+md", "md"), ("pfd", "baseline"), ("pfd+md", "baseline"), ("md", "baseline"),
         ("teacher", "md_teacher"), ("pfd_teacher", "baseline")]
for path in sys.argv[1:]:
    records = json.load(open(path))
    by = {}
    for r in records:
        by.setdefault(r["method"], {})[r["seed"]] = r
    print(f"\n{path}")
    print("| comparison | seeds | AUC diff (mean ± sd) | p | GAUC diff (mean ± sd) | p |")
    print("|---|---|---|---|---|---|")
    for a, b in PAIRS:
        if a not in by or b not in by:
            continue
        seeds = sorted(set(by[a]) & set(by[b]))
        cells = []
        for key in ("auc", "gauc"):
            c = paired_comparison(np.array([by[a][s][key] for s in seeds]), np.array([by[b][s][key] for s in seeds]))
            cells += [f"{c['mean_gain']:+.4f} ± {c['std_gain']:.4f}", f"{c['p_value']:.3f}"]
        print(f"| {a} − {b} | {len(seeds)} | " + " | ".join(cells) + " |")

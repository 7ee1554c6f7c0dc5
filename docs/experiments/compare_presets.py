"""Paired comparison of two `pfd-ref run --json` runs method by method (same tasks, methods
and seeds; e.g. the paper preset against `--preset simple`): for every (task, method) in both,
the AUC and GAUC of run A minus run B per seed, with a two-sided paired t-test over seeds
(`pfd_ref.metrics.paired_comparison`), as a Markdown table.

    python docs/experiments/compare_presets.py A.json B.json
"""
import json
import sys

import numpy as np

from pfd_ref.metrics import paired_comparison


def by_key(path: str) -> dict:
    """``{(task, method): {seed: record}}`` of one run's records."""
    found = {}
    for record in json.load(open(path)):
        found.setdefault((record["task"], record["method"]), {})[record["seed"]] = record
    return found


def main(path_a: str, path_b: str) -> None:
    a, b = by_key(path_a), by_key(path_b)
    print(f"A = {path_a}, B = {path_b}")
    print("| task | method | seeds | AUC A | AUC B | AUC A − B (mean ± sd) | 95% CI | p | GAUC A − B | p |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in (k for k in a if k in b):
        seeds = sorted(set(a[key]) & set(b[key]))
        cells = []
        for metric in ("auc", "gauc"):
            x, y = (np.array([run[key][s][metric] for s in seeds]) for run in (a, b))
            c = paired_comparison(x, y)
            cells.append((x.mean(), y.mean(), c))
        (auc_a, auc_b, auc), (_, _, gauc) = cells
        print(f"| {key[0]} | {key[1]} | {len(seeds)} | {auc_a:.4f} | {auc_b:.4f} | {auc['mean_gain']:+.4f} ± "
              f"{auc['std_gain']:.4f} | [{auc['ci_low']:+.4f}, {auc['ci_high']:+.4f}] | {auc['p_value']:.3f} | "
              f"{gauc['mean_gain']:+.4f} ± {gauc['std_gain']:.4f} | {gauc['p_value']:.3f} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])

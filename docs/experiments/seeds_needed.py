"""How many seeds a paired comparison needs: the power calculation of docs/results.md.

    python docs/experiments/seeds_needed.py               # the spreads of the 5-seed default run (docs/results.md)
    python docs/experiments/seeds_needed.py RUN.json ...  # the spreads measured in `pfd-ref run --json` records

For each comparison, the seed-to-seed standard deviation of the paired AUC gains, and the
seeds (two-sided paired t-test, alpha 0.05, power 0.8; ``pfd_ref.metrics.seeds_needed``)
needed to detect a true gain of 0.001, 0.002 and 0.005 AUC and of the mean gain measured.
"""
import json
import sys

import numpy as np

from pfd_ref.metrics import paired_comparison, seeds_needed

EFFECTS = (0.001, 0.002, 0.005)
PAIRS = [("md", "baseline"), ("pfd", "baseline"), ("pfd+md", "baseline"), ("pfd+md", "md")]
# (task, comparison, mean gain, std of the gains) as printed in docs/results.md, "The default
# run, 5 seeds" (rounded to 4 decimals there, so the seed counts carry that rounding).
DEFAULT_RUN_5_SEEDS = [
    ("ctr", "md − baseline", 0.0000, 0.0045), ("ctr", "pfd − baseline", -0.0013, 0.0055),
    ("ctr", "pfd+md − baseline", 0.0019, 0.0030), ("ctr", "pfd+md − md", 0.0018, 0.0021),
    ("cvr", "md − baseline", -0.0007, 0.0007), ("cvr", "pfd − baseline", 0.0033, 0.0012),
    ("cvr", "pfd+md − baseline", 0.0033, 0.0011), ("cvr", "pfd+md − md", 0.0040, 0.0010),
]


def _needed(effect: float, std: float) -> str:
    if effect == 0:
        return "–"
    try:
        return str(seeds_needed(effect, std))
    except ValueError:
        return "> 1000"


def spreads_from_records(paths) -> list[tuple[str, str, float, float]]:
    rows = []
    for path in paths:
        by = {}
        for r in json.load(open(path)):
            by.setdefault((r["task"], r["method"]), {})[r["seed"]] = r["auc"]
        for task in dict.fromkeys(task for task, _ in by):
            for a, b in PAIRS:
                if (task, a) in by and (task, b) in by:
                    seeds = sorted(set(by[task, a]) & set(by[task, b]))
                    c = paired_comparison(np.array([by[task, a][s] for s in seeds]),
                                          np.array([by[task, b][s] for s in seeds]))
                    rows.append((task, f"{a} − {b}", c["mean_gain"], c["std_gain"]))
    return rows


def main() -> None:
    rows = spreads_from_records(sys.argv[1:]) if sys.argv[1:] else DEFAULT_RUN_5_SEEDS
    print("| task | comparison | mean gain | std of gains | " + " | ".join(f"seeds for {e}" for e in EFFECTS)
          + " | seeds for the mean gain |")
    print("|---|---|---|---|" + "---|" * (len(EFFECTS) + 1))
    for task, comparison, mean, std in rows:
        cells = [_needed(e, std) for e in EFFECTS] + [_needed(abs(mean), std)]
        print(f"| {task} | {comparison} | {mean:+.4f} | {std:.4f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

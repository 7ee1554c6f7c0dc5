"""The probes that chose the defaults the paper does not fix for our data (docs/results.md,
"The paper's defaults on our data"): Adagrad's learning rate and initial accumulator, and the
MTL control's auxiliary weight.

    python docs/experiments/paper_defaults_probe.py optimizer [--seeds 3] [--lrs 2,5 --accumulators tf1]
    python docs/experiments/paper_defaults_probe.py mtl [--seeds 3] [--lr LR --accumulator A --eps E]

Both train on the synthetic data's training split less its last day and score that day (the
validation split); the test days are never read. Every other setting is the paper preset's
(``experiment.preset_config``: LeakyReLU with batch normalisation, l2 towers x 5 for CTR,
Adagrad with the scaled learning-rate warm-up, batch 1024, 1 epoch).

``optimizer``: the baseline alone (no teacher, so nothing here can favour a distilled
method), on both tasks, for every learning rate of ``LRS`` and both accumulator settings of
``ACCUMULATORS`` (TensorFlow 1's and PyTorch's defaults; the paper names neither). Rule,
fixed before the run: the setting with the highest validation AUC averaged over both tasks
and the seeds becomes the default.

``mtl``: the mtl student on CVR (the paper ran MTL there) for every weight of the paper's grid
``MTL_WEIGHTS``, with the chosen optimizer settings. Rule, fixed before the run: the weight
with the highest mean validation AUC becomes ``DistillConfig.mtl_weight``.

Prints one line per setting (mean and std over seeds, and each seed's AUC) and the choice.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from pfd_ref.data.synthetic import SyntheticConfig, generate  # noqa: E402
from pfd_ref.experiment import STUDENT_OF_TASK, preset_config  # noqa: E402
from pfd_ref.metrics import evaluate  # noqa: E402
from pfd_ref.train import predict, train, with_seed  # noqa: E402

LRS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
ACCUMULATORS = {"tf1": (0.1, 0.0), "torch": (0.0, 1e-10)}  # (initial accumulator, eps)
MTL_WEIGHTS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def validation_splits(tasks) -> dict:
    """``{task: (fit, validation)}``: each task's training split, its last day held out."""
    return {task: generate(task, SyntheticConfig())[0].split_last_days(1) for task in tasks}


def validation_auc(fit, validation, method: str, config, seeds) -> list[float]:
    aucs = []
    for seed in seeds:
        result = train(fit, method, with_seed(config, seed))
        aucs.append(evaluate(validation.labels, predict(result.student, result.params, validation),
                             validation.user_ids)["auc"])
    return aucs


def report(label: str, aucs: list[float]) -> None:
    print(f"{label:<44} {np.mean(aucs):.4f} ± {np.std(aucs, ddof=1):.4f}   "
          f"({', '.join(f'{a:.4f}' for a in aucs)})", flush=True)


def probe_optimizer(seeds, lrs=LRS, accumulators=tuple(ACCUMULATORS)) -> None:
    splits = validation_splits(("ctr", "cvr"))
    scores = {}
    for name in accumulators:
        accumulator, eps = ACCUMULATORS[name]
        for lr in lrs:
            per_task = []
            for task, (fit, validation) in splits.items():
                config = preset_config(STUDENT_OF_TASK[task], fit.n, lr=lr, adagrad_initial_accumulator=accumulator,
                                       adagrad_eps=eps)
                aucs = validation_auc(fit, validation, "baseline", config, seeds)
                report(f"{task} baseline, adagrad {name} {ACCUMULATORS[name]}, lr {lr:g}", aucs)
                per_task.append(np.mean(aucs))
            scores[name, lr] = float(np.mean(per_task))
            print(f"{'  mean of both tasks':<44} {scores[name, lr]:.4f}", flush=True)
    (name, lr) = max(scores, key=scores.get)
    print(f"best: adagrad {name}, lr {lr:g} (mean validation AUC of both tasks {scores[name, lr]:.4f})")


def probe_mtl(seeds, lr: float | None, accumulator: float | None, eps: float | None) -> None:
    fit, validation = validation_splits(("cvr",))["cvr"]
    changes = {key: value for key, value in (("lr", lr), ("adagrad_initial_accumulator", accumulator),
                                             ("adagrad_eps", eps)) if value is not None}
    scores = {}
    baseline = validation_auc(fit, validation, "baseline", preset_config("mlp", fit.n, **changes), seeds)
    report("cvr baseline", baseline)
    for weight in MTL_WEIGHTS:
        aucs = validation_auc(fit, validation, "mtl", preset_config("mlp", fit.n, mtl_weight=weight, **changes), seeds)
        report(f"cvr mtl, weight {weight:g}", aucs)
        scores[weight] = float(np.mean(aucs))
    best = max(scores, key=scores.get)
    print(f"chosen: mtl weight {best:g} (mean validation AUC {scores[best]:.4f}; baseline {np.mean(baseline):.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=("optimizer", "mtl"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lrs", default=",".join(map(str, LRS)), help="optimizer: comma list of learning rates")
    parser.add_argument("--accumulators", default=",".join(ACCUMULATORS), help=f"optimizer: from {list(ACCUMULATORS)}")
    parser.add_argument("--lr", type=float, default=None, help="mtl: the learning rate (default: the preset's)")
    parser.add_argument("--accumulator", type=float, default=None, help="mtl: Adagrad's initial accumulator")
    parser.add_argument("--eps", type=float, default=None, help="mtl: Adagrad's eps")
    args = parser.parse_args()
    start = time.perf_counter()
    seeds = range(args.seeds)
    if args.probe == "optimizer":
        probe_optimizer(seeds, tuple(float(v) for v in args.lrs.split(",")), tuple(args.accumulators.split(",")))
    else:
        probe_mtl(seeds, args.lr, args.accumulator, args.eps)
    print(f"wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

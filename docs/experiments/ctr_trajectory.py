"""Test AUC of the CTR student (and its teacher) every 25 steps of one epoch, sync mode.

    python docs/experiments/ctr_trajectory.py STRENGTH SEEDS METHODS [LAMBDA]
    python docs/experiments/ctr_trajectory.py 1 2 baseline,pfd+md        # docs/results.md

Each checkpoint prints ``step:AUC/mean predicted probability`` on every third test row,
and ``T<AUC>`` for the teacher.
"""
import sys

import numpy as np

from pfd_ref.data.synthetic import SyntheticConfig, generate
from pfd_ref.data.dataset import batch_indices
from pfd_ref.train import TrainConfig, models_for, run_step, predict, STREAM_BATCH_ORDER
from pfd_ref.distill import DistillConfig, init_params
from pfd_ref.optim import Adam
from pfd_ref.losses import sigmoid
from pfd_ref.metrics import auc
strength = float(sys.argv[1]); seeds = [int(s) for s in sys.argv[2].split(",")]; methods = sys.argv[3].split(",")
lam = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
cfg = SyntheticConfig(privileged_strength=strength)
train, test = generate("ctr", cfg)
sub = test.take(np.arange(0, test.n, 3))
for seed in seeds:
    for method in methods:
        config = TrainConfig(student_kind="two_tower", seed=seed, distill=DistillConfig(lambda_=lam, warmup_steps=100))
        student, teacher = models_for(train.schema, method, config)
        params = init_params(seed, np.float32, *([teacher] if teacher else []), student)
        opt = Adam(config.lr)
        rng = np.random.default_rng([seed, STREAM_BATCH_ORDER])
        out = []
        for step, idx in enumerate(batch_indices(train.n, config.batch_size, rng)):
            run_step(student, teacher, params, opt, train.take(idx), step, config.distill)
            if step % 25 == 24 or step == 422:
                s = predict(student, params, sub)
                t = predict(teacher, params, sub) if teacher is not None else None
                out.append(f"{step+1}:{auc(sub.labels, s):.4f}/{sigmoid(s).mean():.3f}" + (f" T{auc(sub.labels, t):.4f}" if t is not None else ""))
        print(f"seed {seed} {method}: " + "  ".join(out), flush=True)

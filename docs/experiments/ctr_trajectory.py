"""Test AUC of the CTR student (and its teacher) every 25 steps of one epoch, sync mode.

    python docs/experiments/ctr_trajectory.py STRENGTH SEEDS METHODS [LAMBDA]
    python docs/experiments/ctr_trajectory.py 1 2 baseline,pfd+md        # docs/results.md

Each checkpoint prints ``step:AUC/mean predicted probability`` on every third test row,
and ``T<AUC>`` for the teacher.
"""
import sys

import numpy as np

from pfd_ref.data.synthetic import SyntheticConfig, generate
from pfd_ref.train import TrainConfig, build_models, step_gradients, batch_order, predict, STREAM_BATCH_ORDER, STREAM_STUDENT_INIT, STREAM_TEACHER_INIT
from pfd_ref.distill import DistillConfig, lambda_at
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
        student, teacher = build_models(train.schema, method, config)
        params = {}
        if teacher is not None:
            params.update(teacher.init_params(np.random.default_rng([seed, STREAM_TEACHER_INIT]), np.float32))
        params.update(student.init_params(np.random.default_rng([seed, STREAM_STUDENT_INIT]), np.float32))
        opt = Adam(config.lr)
        rng = np.random.default_rng([seed, STREAM_BATCH_ORDER])
        out = []
        for step, idx in enumerate(batch_order(train.n, config.batch_size, rng, 1)):
            l = lambda_at(step, config.distill) if teacher is not None else 0.0
            o = step_gradients(student, teacher, params, train.take(idx), l, config.distill)
            opt.step(params, o.grads)
            if step % 25 == 24 or step == 422:
                s = predict(student, params, sub)
                t = predict(teacher, params, sub) if teacher is not None else None
                out.append(f"{step+1}:{auc(sub.labels, s):.4f}/{sigmoid(s).mean():.3f}" + (f" T{auc(sub.labels, t):.4f}" if t is not None else ""))
        print(f"seed {seed} {method}: " + "  ".join(out), flush=True)

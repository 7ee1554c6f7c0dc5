"""Why distillation does not help on KuaiRand: where the test rows' videos were seen, how well
each teacher fits its own training rows, and what a student copying the teacher alone reaches.

    python docs/experiments/kuairand_diagnose.py ../shared/data/kuairand/processed_standard_kcore_15.csv

Prints the table of docs/results.md ("Real data", "Why"); 5 seeds, sync, lambda 0.5, the
`--data kuairand` defaults (about 2 minutes on 2 cores).
"""
import sys
from dataclasses import replace

import numpy as np

from pfd_ref.data.kuairand import load_kuairand, split_by_time
from pfd_ref.distill import DistillConfig
from pfd_ref.metrics import auc, paired_comparison
from pfd_ref.train import TrainConfig, predict, train

data, report = load_kuairand(sys.argv[1])
tr, te = split_by_time(data, report)
seen = np.isin(te.columns["video_id"], tr.columns["video_id"])
print(f"test rows whose video occurs in training: {seen.mean():.3f} ({seen.sum()} of {te.n}); "
      f"positive rate seen {te.labels[seen].mean():.3f}, unseen {te.labels[~seen].mean():.3f}")
print(f"training positive rate {tr.positive_rate:.4f}, test {te.positive_rate:.4f}")
config = TrainConfig(student_kind="mlp", epochs=1, batch_size=1024, distill=DistillConfig(lambda_=0.5, warmup_steps=10))
rows = {}
for seed in range(5):
    cfg = replace(config, seed=seed)
    for method in ("baseline", "md", "pfd+md"):
        result = train(tr, method, cfg)
        s_test = predict(result.student, result.params, te)
        rows.setdefault((method, "student all"), []).append(auc(te.labels, s_test))
        rows.setdefault((method, "student seen video"), []).append(auc(te.labels[seen], s_test[seen]))
        rows.setdefault((method, "student unseen video"), []).append(auc(te.labels[~seen], s_test[~seen]))
        if result.teacher is not None:
            t_train = predict(result.teacher, result.params, tr)
            rows.setdefault((method, "teacher train (in-sample)"), []).append(auc(tr.labels, t_train))
            rows.setdefault((method, "teacher test"), []).append(auc(te.labels, predict(result.teacher, result.params, te)))
    # a student trained on the pfd+md teacher's soft labels alone (lambda 1 after warm-up)
    result = train(tr, "pfd+md", replace(cfg, distill=DistillConfig(lambda_=1.0, warmup_steps=10)))
    rows.setdefault(("pfd+md lambda=1", "student all"), []).append(auc(te.labels, predict(result.student, result.params, te)))
    print(f"seed {seed} done", file=sys.stderr)
print("| model | rows | AUC mean ± sd over 5 seeds |")
print("|---|---|---|")
for (method, what), values in rows.items():
    v = np.array(values)
    print(f"| {method} | {what} | {v.mean():.4f} ± {v.std(ddof=1):.4f} |")
for method in ("md", "pfd+md"):
    for part in ("seen video", "unseen video"):
        c = paired_comparison(np.array(rows[(method, f"student {part}")]), np.array(rows[("baseline", f"student {part}")]))
        print(f"{method} - baseline on {part} rows: {c['mean_gain']:+.4f} ± {c['std_gain']:.4f}, p {c['p_value']:.3f}")

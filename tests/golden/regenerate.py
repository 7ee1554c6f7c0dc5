"""Rewrite the golden oracle cases ``tests/golden/*.npz`` (float64) from ``GOLDEN_CASES``.

Run from the repository root: ``python -m tests.golden.regenerate``. It deletes every
``*.npz`` here first, so the directory holds exactly the cases listed below;
``tests/test_oracle.py`` fails when the code no longer reproduces them (docs/oracle.md).

Every student kind x method x mode appears once with Adam; across the set the cases also
cover shared embeddings, temperatures other than 1, the warm-up boundary (lambda 0 at the
first step, > 0 at steps 2 and 3), hard weight "one", sum and mean pooling of the multi-id
field (every case has one, with an empty row), per-example weights, lazy and dense Adam,
lazy and dense Adagrad (with TensorFlow 1's and with PyTorch's defaults), SGD, and a linear
learning-rate warm-up, from the first step and from inside a longer run. The layer cases
(``LAYER_CASES``) add LeakyReLU, batch normalisation (sync: teacher and student on batch
statistics; two-stage: the frozen teacher on its running averages), the l2 tower
normalisation and the tower scale, for both student kinds. The method cases (``METHOD_CASES``)
add lupi (both kinds, both modes), mtl (the MLP student only: its three target kinds,
continuous, binary and categorical, with heads of one hidden layer) and the sharing
"all-but-user-id". The multi-head cases (``MULTIHEAD_CASES``) add the multi-head student
(several objectives, the click head's leakage rule, played-row scopes).
"""

from __future__ import annotations

from pathlib import Path

from pfd_ref.oracle import CaseSpec, compute_case, save_case

GOLDEN_DIR = Path(__file__).resolve().parent
BOUNDARY = dict(warmup_steps=2, start_step=1)  # lambda_at(1) = 0, lambda_at(2) = lambda_at(3) = lambda
TORCH_ADAGRAD = dict(adagrad_initial_accumulator=0.0, adagrad_eps=1e-10)  # torch.optim.Adagrad's defaults

GOLDEN_CASES = {
    "mlp-baseline-sync": CaseSpec("mlp", "baseline", "sync", seed=1, weights=True),
    "mlp-baseline-two_stage-dense": CaseSpec("mlp", "baseline", "two-stage", seed=2, adam_sparse="dense"),
    "mlp-md-sync-boundary": CaseSpec("mlp", "md", "sync", seed=3, **BOUNDARY),
    "mlp-md-two_stage-sum-dense": CaseSpec("mlp", "md", "two-stage", seed=4, pooling="sum", adam_sparse="dense"),
    "mlp-pfd-sync-shared-T2-weights": CaseSpec("mlp", "pfd", "sync", seed=5, sharing="all", temperature=2.0,
                                               weights=True),
    "mlp-pfd-two_stage-T2": CaseSpec("mlp", "pfd", "two-stage", seed=6, temperature=2.0),
    "mlp-pfd+md-sync-boundary-T0.5-hard_one": CaseSpec("mlp", "pfd+md", "sync", seed=7, temperature=0.5,
                                                       hard_weight="one", lambda_=0.8, **BOUNDARY),
    "mlp-pfd+md-two_stage-weights-sum": CaseSpec("mlp", "pfd+md", "two-stage", seed=8, weights=True, pooling="sum"),
    "two_tower-baseline-two_stage-weights": CaseSpec("two_tower", "baseline", "two-stage", seed=9, weights=True),
    "two_tower-baseline-sync-sum": CaseSpec("two_tower", "baseline", "sync", seed=10, pooling="sum"),
    "two_tower-md-sync-shared": CaseSpec("two_tower", "md", "sync", seed=11, sharing="all"),
    "two_tower-md-two_stage-T3": CaseSpec("two_tower", "md", "two-stage", seed=12, temperature=3.0),
    "two_tower-pfd-sync-T2-weights-dense": CaseSpec("two_tower", "pfd", "sync", seed=13, temperature=2.0,
                                                    weights=True, adam_sparse="dense"),
    "two_tower-pfd-two_stage-boundary": CaseSpec("two_tower", "pfd", "two-stage", seed=14, **BOUNDARY),
    "two_tower-pfd+md-sync-shared-boundary-T2-dense": CaseSpec("two_tower", "pfd+md", "sync", seed=15,
                                                               sharing="all", temperature=2.0,
                                                               adam_sparse="dense", **BOUNDARY),
    "two_tower-pfd+md-two_stage-weights-sum-dense": CaseSpec("two_tower", "pfd+md", "two-stage", seed=16,
                                                             weights=True, pooling="sum", adam_sparse="dense"),
    # optimizers other than Adam, and the learning-rate warm-up (lr 0.05: Adagrad's and SGD's steps are smaller)
    "mlp-pfd-sync-shared-adagrad_dense": CaseSpec("mlp", "pfd", "sync", seed=17, sharing="all",
                                                  optimizer="adagrad", lr=0.05, adagrad_sparse="dense"),
    "two_tower-pfd+md-sync-adagrad_lazy-weights": CaseSpec("two_tower", "pfd+md", "sync", seed=18, weights=True,
                                                           optimizer="adagrad", lr=0.05),
    "two_tower-md-two_stage-adagrad_lazy-torch_defaults-sum": CaseSpec("two_tower", "md", "two-stage", seed=19,
                                                                       pooling="sum", optimizer="adagrad", lr=0.05,
                                                                       **TORCH_ADAGRAD),
    "mlp-pfd-two_stage-sgd-lr_warmup3": CaseSpec("mlp", "pfd", "two-stage", seed=20, optimizer="sgd", lr=0.05,
                                                  lr_warmup_steps=3),  # lr / 3, 2 lr / 3, lr
    "two_tower-pfd-sync-adagrad_lazy-lr_warmup4-boundary": CaseSpec("two_tower", "pfd", "sync", seed=21,
                                                                    optimizer="adagrad", lr=0.05, lr_warmup_steps=4,
                                                                    **BOUNDARY),  # 2 lr / 4, 3 lr / 4, lr
    "mlp-pfd+md-sync-adam-lr_warmup1000": CaseSpec("mlp", "pfd+md", "sync", seed=22, lr_warmup_steps=1000,
                                                   start_step=500),  # 501 lr / 1000, ...
}
LAYER_CASES = {
    "mlp-pfd-sync-leaky-bn-weights": CaseSpec("mlp", "pfd", "sync", seed=23, activation="leaky_relu",
                                              batch_norm=True, weights=True),
    "mlp-md-two_stage-bn-dense": CaseSpec("mlp", "md", "two-stage", seed=24, batch_norm=True, adam_sparse="dense"),
    "two_tower-pfd+md-sync-shared-leaky-bn-l2": CaseSpec("two_tower", "pfd+md", "sync", seed=25, activation="leaky_relu",
                                                         batch_norm=True, tower_norm="l2", tower_scale=5.0,
                                                         sharing="all"),
    "two_tower-baseline-two_stage-l2": CaseSpec("two_tower", "baseline", "two-stage", seed=26, tower_norm="l2",
                                                tower_scale=5.0),
    "two_tower-pfd-two_stage-leaky-bn-scale2": CaseSpec("two_tower", "pfd", "two-stage", seed=27,
                                                        activation="leaky_relu", batch_norm=True, tower_scale=2.0),
}
GOLDEN_CASES.update(LAYER_CASES)
# the methods lupi and mtl, and the paper's sharing "all-but-user-id" (the student keeps its own user-id table)
METHOD_CASES = {
    "mlp-mtl-sync-leaky-bn-binary-layers2-weights": CaseSpec("mlp", "mtl", "sync", seed=28, student_layers=2,
                                                            activation="leaky_relu", batch_norm=True,
                                                            binary_privileged=True, mtl_weight=0.5, weights=True),
    "mlp-mtl-two_stage-layers2-adagrad": CaseSpec("mlp", "mtl", "two-stage", seed=29, student_layers=2, mtl_weight=0.2,
                                                  optimizer="adagrad", lr=0.05),  # continuous target standardised
    "mlp-lupi-sync-boundary": CaseSpec("mlp", "lupi", "sync", seed=30, **BOUNDARY),
    "mlp-lupi-two_stage-T2": CaseSpec("mlp", "lupi", "two-stage", seed=31, temperature=2.0),
    "two_tower-lupi-sync-weights": CaseSpec("two_tower", "lupi", "sync", seed=32, weights=True),
    "two_tower-lupi-two_stage-leaky-bn": CaseSpec("two_tower", "lupi", "two-stage", seed=33, activation="leaky_relu",
                                                  batch_norm=True),
    "two_tower-pfd+md-sync-share_but_user_id-paper": CaseSpec("two_tower", "pfd+md", "sync", seed=34,
                                                              sharing="all-but-user-id", activation="leaky_relu",
                                                              batch_norm=True, tower_norm="l2", tower_scale=5.0,
                                                              optimizer="adagrad", lr=0.05, lr_warmup_steps=2),
    "mlp-pfd-sync-share_but_user_id-weights": CaseSpec("mlp", "pfd", "sync", seed=35, sharing="all-but-user-id",
                                                       weights=True, temperature=2.0),
}
GOLDEN_CASES.update(METHOD_CASES)
# the multi-head student (pfd_ref.multihead): the click head undistilled under pfd, pfd+md and lupi, every head
# under md; the interaction heads on the played rows only
MULTIHEAD_CASES = {
    "multihead-pfd-sync-shared-T2-weights": CaseSpec("multihead", "pfd", "sync", seed=36, sharing="all",
                                                     temperature=2.0, weights=True),
    "multihead-md-two_stage-boundary": CaseSpec("multihead", "md", "two-stage", seed=37, **BOUNDARY),
    "multihead-pfd+md-sync-leaky-bn-adagrad": CaseSpec("multihead", "pfd+md", "sync", seed=38, activation="leaky_relu",
                                                       batch_norm=True, optimizer="adagrad", lr=0.05),
    "multihead-lupi-two_stage-layers2-hard_one": CaseSpec("multihead", "lupi", "two-stage", seed=39, student_layers=2,
                                                          hard_weight="one", lambda_=0.7),
    "multihead-baseline-sync-weights": CaseSpec("multihead", "baseline", "sync", seed=40, weights=True),
}
GOLDEN_CASES.update(MULTIHEAD_CASES)


def main() -> None:
    for stale in GOLDEN_DIR.glob("*.npz"):
        stale.unlink()
    for name, spec in GOLDEN_CASES.items():
        save_case(GOLDEN_DIR / f"{name}.npz", compute_case(spec))
    total = sum(path.stat().st_size for path in GOLDEN_DIR.glob("*.npz"))
    print(f"wrote {len(GOLDEN_CASES)} cases to {GOLDEN_DIR} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

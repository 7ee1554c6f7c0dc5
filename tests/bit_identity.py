"""Bit-identity harness: train 46 configurations and hash every parameter.

A refactor or a speed-up that claims to leave the arithmetic unchanged must leave every
hash unchanged. Run it before the change (``record``) and after (``compare``)::

    python -m tests.bit_identity record /tmp/before.json     # on the code before the change
    python -m tests.bit_identity compare /tmp/before.json    # on the code after it

``compare`` prints one line per configuration and exits 1 when any hash differs.
Hashes depend on the CPU (BLAS kernels round differently on other instruction sets), so
record and compare on the same machine; the harness pins BLAS to one thread for that reason.

The configurations cover the four original methods (baseline, md, pfd, pfd+md), both students
(mlp, two_tower), both dtypes, sync and two-stage, shared embeddings, dense Adam, L2 on the
embeddings, a temperature, the ``one`` hard weight, per-example weights and cross-fitted
teachers: 2 x 2 x 4 x 2 = 32 base runs and 14 variants.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402

from pfd_ref import DistillConfig, ModelSizes, TrainConfig, train  # noqa: E402
from tests.tiny import tiny_dataset  # noqa: E402

ROWS = 300
BASE = TrainConfig(batch_size=64, epochs=2, lr=0.01, distill=DistillConfig(lambda_=0.5, warmup_steps=2),
                   sizes=ModelSizes(embed_dim=4, student_hidden=(8, 6), tower_out_dim=4, strong_hidden=(12, 8)))


def configurations() -> list[tuple[str, bool, TrainConfig, str]]:
    """``(name, weighted, config, method)`` of every run, 46 in all."""
    runs = []
    for student in ("mlp", "two_tower"):
        for dtype in ("float32", "float64"):
            for method in ("baseline", "md", "pfd", "pfd+md"):
                for mode in ("sync", "two-stage"):
                    runs.append((f"{student}/{dtype}/{method}/{mode}", False,
                                 replace(BASE, student_kind=student, dtype=dtype, mode=mode), method))
    for student in ("mlp", "two_tower"):
        for method in ("md", "pfd", "pfd+md"):
            runs.append((f"{student}/float32/{method}/sync/shared", False,
                         replace(BASE, student_kind=student, sharing="all"), method))
    variants = [
        ("mlp/float64/pfd+md/sync/dense-adam", False, replace(BASE, dtype="float64", adam_sparse="dense"), "pfd+md"),
        ("two_tower/float32/pfd/sync/dense-adam", False, replace(BASE, student_kind="two_tower", adam_sparse="dense"), "pfd"),
        ("mlp/float32/pfd/sync/l2", False, replace(BASE, l2_embeddings=1e-3), "pfd"),
        ("two_tower/float64/pfd+md/two-stage/l2", False,
         replace(BASE, student_kind="two_tower", dtype="float64", mode="two-stage", l2_embeddings=1e-3), "pfd+md"),
        ("mlp/float64/pfd/sync/T2-hard_one", False,
         replace(BASE, dtype="float64", distill=DistillConfig(lambda_=0.7, warmup_steps=1, temperature=2.0,
                                                              hard_weight="one")), "pfd"),
        ("mlp/float32/pfd+md/sync/weights", True, BASE, "pfd+md"),
        ("two_tower/float32/md/two-stage/weights", True, replace(BASE, student_kind="two_tower", mode="two-stage"), "md"),
        ("mlp/float64/pfd/two-stage/folds3", False, replace(BASE, dtype="float64", mode="two-stage", teacher_folds=3), "pfd"),
    ]
    return runs + variants


def fingerprint(params: dict) -> str:
    """sha256 over every parameter's name, dtype, shape and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(params):
        array = np.ascontiguousarray(params[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def run_all() -> dict[str, str]:
    """Train every configuration (data from seed 7) and return ``{name: fingerprint}``."""
    hashes = {}
    for name, weighted, config, method in configurations():
        data = tiny_dataset(np.random.default_rng(7), ROWS, weights=weighted)
        result = train(data, method, config)
        hashes[name] = fingerprint(result.params)
    return hashes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bit_identity", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "compare"))
    parser.add_argument("path", help="the JSON file of hashes (written by record, read by compare)")
    args = parser.parse_args(argv)
    hashes = run_all()
    if len(hashes) != 46:
        raise SystemExit(f"expected 46 configurations, built {len(hashes)}")
    if args.action == "record":
        tmp = args.path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(hashes, fh, indent=1, sort_keys=True)
        os.replace(tmp, args.path)
        print(f"recorded {len(hashes)} configurations in {args.path}")
        return 0
    with open(args.path) as fh:
        before = json.load(fh)
    differ = [name for name in hashes if before.get(name) != hashes[name]]
    for name in hashes:
        print(f"{'same  ' if name not in differ else 'DIFFER'} {name}")
    print(f"{len(hashes) - len(differ)}/{len(hashes)} identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

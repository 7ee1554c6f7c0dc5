"""pfd_ref's Adagrad against torch.optim.Adagrad over many steps (docs/optim.md, "Adagrad").

    python docs/experiments/adagrad_vs_torch.py [STEPS]          # default 1000
    ATEN_CPU_CAPABILITY=default python docs/experiments/adagrad_vs_torch.py

Each side follows its own trajectory from the same start on the same gradients (spanning
six decades): a dense (64, 16) parameter, and a (1000, 16) nn.Embedding(sparse=True) looked
up by 256 ids per step (repeated ids; rows never looked up stay as they were), with
TensorFlow 1's defaults (initial accumulator 0.1, eps 0) and PyTorch's (0, 1e-10). Prints,
per dtype, path and setting, the largest absolute and relative difference of the
parameters and the share of entries that are bit-identical. ``ATEN_CPU_CAPABILITY=default``
makes torch run its non-vectorised kernels (no fused multiply-adds).
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import torch

from pfd_ref.layers import embedding_backward
from pfd_ref.optim import Adagrad

warnings.filterwarnings("ignore", message="Sparse invariant checks")
LR = 0.05
SETTINGS = {"TF1 defaults (0.1, 0)": (0.1, 0.0), "torch defaults (0, 1e-10)": (0.0, 1e-10)}


def dense(dtype, steps, initial_accumulator, eps, rng):
    param = rng.normal(size=(64, 16)).astype(dtype)
    ours, optimizer = {"p": param.copy()}, Adagrad(LR, initial_accumulator, eps)
    weight = torch.tensor(param.copy(), requires_grad=True)
    reference = torch.optim.Adagrad([weight], lr=LR, initial_accumulator_value=initial_accumulator, eps=eps)
    for _ in range(steps):
        grad = (rng.normal(size=param.shape) * 10.0 ** rng.integers(-4, 2, size=(64, 1))).astype(dtype)
        optimizer.step(ours, {"p": grad})
        weight.grad = torch.from_numpy(grad)
        reference.step()
    return ours["p"], weight.detach().numpy()


def embedding(dtype, steps, initial_accumulator, eps, rng):
    table = rng.normal(size=(1000, 16)).astype(dtype)
    ours, optimizer = {"e": table.copy()}, Adagrad(LR, initial_accumulator, eps)
    module = torch.nn.Embedding(1000, 16, sparse=True, _weight=torch.tensor(table.copy()))
    reference = torch.optim.Adagrad(module.parameters(), lr=LR, initial_accumulator_value=initial_accumulator, eps=eps)
    touched = np.zeros(1000, bool)
    for _ in range(steps):
        ids = rng.integers(0, 900, size=256)  # ids 900..999 never occur
        d_out = (rng.normal(size=(256, 16)) * 10.0 ** rng.integers(-4, 2, size=(256, 1))).astype(dtype)
        module.zero_grad()
        (module(torch.from_numpy(ids)) * torch.from_numpy(d_out)).sum().backward()
        reference.step()
        optimizer.step(ours, {"e": embedding_backward(d_out, ids, 1000)})
        touched[ids] = True
    theirs = module.weight.detach().numpy()
    untouched_kept = np.array_equal(ours["e"][~touched], table[~touched]) and np.array_equal(theirs[~touched], table[~touched])
    return ours["e"][touched], theirs[touched], untouched_kept


def main(steps: int) -> None:
    capability = os.environ.get("ATEN_CPU_CAPABILITY", torch.backends.cpu.get_cpu_capability())
    print(f"torch {torch.__version__}, CPU capability {capability}, {steps} steps, lr {LR}")
    print(f"{'dtype':8} {'path':10} {'setting':26} {'max abs diff':>12} {'max rel diff':>12} {'bit-identical':>13}  "
          "untouched rows")
    for dtype in (np.float64, np.float32):
        for setting, (initial_accumulator, eps) in SETTINGS.items():
            rng = np.random.default_rng(0)
            ours, theirs = dense(dtype, steps, initial_accumulator, eps, rng)
            rows = [("dense", ours, theirs, "")]
            ours, theirs, kept = embedding(dtype, steps, initial_accumulator, eps, rng)
            rows.append(("lazy rows", ours, theirs, "unchanged (both)" if kept else "CHANGED"))
            for path, a, b, untouched in rows:
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                difference = np.abs(a64 - b64)
                print(f"{np.dtype(dtype).name:8} {path:10} {setting:26} {difference.max():12.2e} "
                      f"{(difference / np.abs(b64)).max():12.2e} {np.mean(a == b):13.1%}  {untouched}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)

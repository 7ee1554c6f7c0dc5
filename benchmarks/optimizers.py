"""Optimizer-update benchmark: lazy Adagrad's Numba kernel against its NumPy twin and PyTorch.

    python -m benchmarks.optimizers [--quick] [--threads 1] [--json PATH]

One update of the rows of an embedding table (float32, width 16) that one batch touches:
``kernels.sparse_adagrad_rows_update_`` (what ``pfd_ref.optim.Adagrad`` runs), its readable
twin ``pfd_ref.twins.sparse_adagrad_rows_update_`` (gather the rows, update them, scatter them
back: the same bits) and ``torch.optim.Adagrad`` given the same sparse gradient (coalesced, so torch does not
sum duplicates). Tables of 1,000 rows (600 touched) and of 1,000,000 rows (1,000 touched,
the unique ids of a batch of 1024). Every figure is a median of round-robin rounds after a
warm-up (benchmarks/common.py).
"""

from __future__ import annotations

import warnings

import numpy as np

from benchmarks.common import benchmark_main, import_torch, machine_info, print_table, set_threads, time_side_by_side
from pfd_ref import kernels, twins

WIDTH = 16
CASES = ((1_000, 600), (1_000_000, 1_000))  # (table rows, touched rows)
LR, EPS = 0.01, 0.0
warnings.filterwarnings("ignore", message="Sparse invariant checks")


def candidates(torch, num_rows: int, touched: int, rng: np.random.Generator) -> dict:
    table = rng.normal(size=(num_rows, WIDTH)).astype(np.float32)
    rows = np.sort(rng.choice(num_rows, touched, replace=False))
    values = (rng.normal(size=(touched, WIDTH)) * 1e-2).astype(np.float32)
    kernel_state = (table.copy(), np.full_like(table, 0.1))
    twin_state = (table.copy(), np.full_like(table, 0.1))
    found = {
        "kernel": lambda: kernels.sparse_adagrad_rows_update_(*kernel_state, rows, values, LR, EPS),
        "twin": lambda: twins.sparse_adagrad_rows_update_(*twin_state, rows, values, LR, EPS),
    }
    if torch is not None:
        weight = torch.tensor(table.copy(), requires_grad=True)
        optimizer = torch.optim.Adagrad([weight], lr=LR, initial_accumulator_value=0.1, eps=EPS)
        grad = torch.sparse_coo_tensor(torch.from_numpy(rows)[None], torch.from_numpy(values), table.shape).coalesce()

        def torch_step():
            weight.grad = grad
            optimizer.step()

        found["torch"] = torch_step
    return found


def run(threads: int, quick: bool) -> dict:
    set_threads(threads)
    torch = import_torch()
    info = machine_info()
    repeats = 7 if quick else 31
    print(f"\n=== optimizer updates, {threads} thread(s) ===")
    rows_out = []
    for num_rows, touched in CASES:
        found = candidates(torch, num_rows, touched, np.random.default_rng(0))
        seconds = time_side_by_side(found, repeats)
        for name, t in seconds.items():
            rows_out.append({"table": f"{num_rows:,} x {WIDTH}, {touched:,} rows touched", "implementation": name,
                             "us/update": t * 1e6, "twin / this": seconds["twin"] / t})
    print_table(f"Lazy Adagrad update of one table, float32; {threads} thread(s); median of {repeats} round-robin rounds",
                ["table", "implementation", "us/update", "twin / this"], rows_out)
    if torch is None:
        print("torch is not installed: its rows are skipped.")
    return {"threads": threads, "quick": quick, "machine": info, "rows": rows_out}


def main(argv: list[str] | None = None) -> None:
    benchmark_main("benchmarks.optimizers", __doc__.splitlines()[0], "fewer repeats", run, argv)


if __name__ == "__main__":
    main()

"""Training-step benchmark: pfd_ref's student step and synchronous PFD step against PyTorch CPU.

    python -m benchmarks.training [--quick] [--threads 1,2] [--json PATH]

One step = losses, hand-derived gradients and an Adam update on one batch of 1024 rows of
the synthetic CVR data (float32), for the MLP student alone (``baseline``) and for the
synchronous PFD pair (teacher on regular + privileged features, student distilled with
lambda = 0.5); pfd_ref's teacher is also timed alone, so that the sync step can be set
against the two models' own steps. pfd_ref's Adam is lazy: embedding rows absent from the batch are not
touched (SparseAdam semantics). The PyTorch peer is the same model, run twice: sparse
embeddings with SparseAdam + Adam, and dense embeddings with one Adam; the faster of the two
is the peer. pfd_ref's steps also run on the NumPy backend (the kernels' twins, the same
bits), timed in the same rounds. Every figure is a median of round-robin rounds after a
warm-up (benchmarks/common.py); batches are prepared before timing and cycled through.
"""

from __future__ import annotations

import json

import numpy as np

from benchmarks.common import (
    benchmark_main,
    import_torch,
    machine_info,
    print_table,
    set_threads,
    time_side_by_side,
)
from pfd_ref.backend import using
from pfd_ref.data.synthetic import SyntheticConfig, generate
from pfd_ref.distill import DistillConfig
from pfd_ref.optim import Adam
from pfd_ref.train import TrainConfig, models_for, run_step

BATCH_SIZE = 1024
N_BATCHES = 8
LAMBDA = 0.5
DTYPE = np.float32


def sizes(quick: bool) -> dict:
    return dict(repeats=7) if quick else dict(repeats=31)


def fixed_batches(data, rng: np.random.Generator) -> list:
    """``N_BATCHES`` batches of ``BATCH_SIZE`` rows drawn without replacement, taken once."""
    order = rng.permutation(data.n)[: N_BATCHES * BATCH_SIZE]
    return [data.take(order[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]) for i in range(N_BATCHES)]


def cycling(step, items: list):
    """A no-argument callable that runs ``step(item)`` on the next item of ``items`` in turn."""
    position = [0]

    def call():
        step(items[position[0] % len(items)])
        position[0] += 1

    return call


# ----------------------------------------------------------------------------- pfd_ref


def pfd_ref_step(method: str, schema, batches: list, rng: np.random.Generator):
    """One pfd_ref training step of ``method`` ("baseline" or "pfd"): ``train.run_step``
    (gradients, loss check, lazy ``Adam.step``). Returns ``(callable over the batches, student,
    teacher)``."""
    student, teacher = models_for(schema, method, TrainConfig(student_kind="mlp"))
    return model_step(student, teacher, batches, rng), student, teacher


def model_step(student, teacher, batches: list, rng: np.random.Generator):
    """A callable running one ``train.run_step`` (lazy Adam) per call, cycling over
    ``batches``: ``student`` alone on its hard loss when ``teacher`` is None, else sync PFD
    (lambda = ``LAMBDA``, no warm-up)."""
    params = student.init_params(rng, DTYPE)
    if teacher is not None:
        params.update(teacher.init_params(rng, DTYPE))
    optimizer = Adam(TrainConfig().lr, sparse="lazy")
    distill = DistillConfig(lambda_=LAMBDA)

    def step(batch):
        run_step(student, teacher, params, optimizer, batch, 0, distill)

    return cycling(step, batches)


def on_backend(name: str, step):
    """``step`` run with pfd_ref's kernels on backend ``name`` (the NumPy twins: "numpy")."""
    def call():
        with using(name):
            step()

    return call


# ----------------------------------------------------------------------------- PyTorch


def torch_ranker(torch, model, sparse: bool):
    """The PyTorch twin of a pfd_ref ``MLPRanker``: one ``nn.Embedding`` per categorical
    field (``nn.EmbeddingBag`` with its pooling mode for multi-id fields, fed the CSR
    values and offsets), dense columns appended, the same MLP widths, ReLU between layers."""
    nn = torch.nn

    class Ranker(nn.Module):
        def __init__(self):
            super().__init__()
            self.fields = model.fields
            self.tables = nn.ModuleDict()
            for f in self.fields:
                if f.kind == "categorical":
                    self.tables[f.name] = nn.Embedding(f.vocab_size, model.embed_dim, sparse=sparse)
                elif f.kind == "multi_categorical":
                    self.tables[f.name] = nn.EmbeddingBag(f.vocab_size, model.embed_dim, mode=f.pooling, sparse=sparse)
            widths = model.mlp.sizes
            layers = []
            for j, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
                layers.append(nn.Linear(fan_in, fan_out))
                if j < len(widths) - 2:
                    layers.append(nn.ReLU())
            self.mlp = nn.Sequential(*layers)

        def forward(self, columns):
            parts = []
            for f in self.fields:
                if f.kind == "categorical":
                    parts.append(self.tables[f.name](columns[f.name]))
                elif f.kind == "multi_categorical":
                    values, offsets = columns[f.name]
                    parts.append(self.tables[f.name](values, offsets))
                else:
                    parts.append(columns[f.name])
            return self.mlp(torch.cat(parts, dim=1))[:, 0]

    return Ranker()


def torch_columns(torch, batch) -> dict:
    """The batch's columns as tensors: ids int64, multi-id ``(values, offsets[:-1])`` (the
    EmbeddingBag convention), dense float32, labels float32."""
    columns = {}
    for name, column in batch.columns.items():
        if hasattr(column, "offsets"):
            columns[name] = (torch.from_numpy(column.values), torch.from_numpy(column.offsets[:-1].copy()))
        elif column.dtype.kind == "f":
            columns[name] = torch.from_numpy(column.astype(DTYPE).reshape(batch.n, -1))
        else:
            columns[name] = torch.from_numpy(column)
    columns["labels"] = torch.from_numpy(batch.labels.astype(DTYPE))
    return columns


def torch_optimizers(torch, modules: list, sparse: bool, lr: float) -> list:
    """Sparse: SparseAdam over the embedding tables + Adam over the rest; dense: one Adam."""
    params = [p for module in modules for p in module.parameters()]
    if not sparse:
        return [torch.optim.Adam(params, lr=lr)]
    tables = [p for module in modules for p in module.tables.parameters()]
    table_ids = {id(p) for p in tables}
    return [torch.optim.SparseAdam(tables, lr=lr), torch.optim.Adam([p for p in params if id(p) not in table_ids], lr=lr)]


def torch_step(torch, student_model, teacher_model, batches: list, sparse: bool):
    """PyTorch twin of one pfd_ref step: BCEWithLogits hard loss for the student alone, or
    for sync PFD ``(1 - lam) hard + lam soft`` (soft target ``sigmoid(teacher_logits.detach())``)
    plus the teacher's hard loss, one backward of the sum, then the optimizers' steps."""
    torch.manual_seed(0)
    student = torch_ranker(torch, student_model, sparse)
    teacher = torch_ranker(torch, teacher_model, sparse) if teacher_model is not None else None
    modules = [student] + ([teacher] if teacher is not None else [])
    optimizers = torch_optimizers(torch, modules, sparse, TrainConfig().lr)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    tensors = [torch_columns(torch, batch) for batch in batches]

    def step(columns):
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        labels = columns["labels"]
        s_logits = student(columns)
        if teacher is None:
            loss = bce(s_logits, labels)
        else:
            t_logits = teacher(columns)
            soft = bce(s_logits, torch.sigmoid(t_logits.detach()))
            loss = (1 - LAMBDA) * bce(s_logits, labels) + LAMBDA * soft + bce(t_logits, labels)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()

    return cycling(step, tensors)


# ----------------------------------------------------------------------------- run


def run(threads: int, quick: bool) -> dict:
    set_threads(threads)
    torch = import_torch()
    info = machine_info()
    print(f"\n=== training step, {threads} thread(s) ===")
    print(json.dumps(info))
    train, _ = generate("cvr", SyntheticConfig())
    rng = np.random.default_rng(0)
    batches = fixed_batches(train, rng)
    candidates = {}
    models = {}
    for method in ("baseline", "pfd"):
        candidates[(method, "pfd_ref")], student, teacher = pfd_ref_step(method, train.schema, batches, rng)
        candidates[(method, "pfd_ref numpy")] = on_backend("numpy", model_step(student, teacher, batches, rng))
        models[method] = (student, teacher)
    # the teacher trained alone (hard loss): sync PFD against student + teacher isolates what
    # synchronous distillation adds beyond running the two models
    candidates[("teacher", "pfd_ref")] = model_step(models["pfd"][1], None, batches, rng)
    if torch is not None:
        for method in ("baseline", "pfd"):
            for sparse in (True, False):
                name = "torch sparse" if sparse else "torch dense"
                candidates[(method, name)] = torch_step(torch, *models[method], batches, sparse)
    labels = {key: f"{key[0]}:{key[1]}" for key in candidates}
    seconds = time_side_by_side({labels[k]: fn for k, fn in candidates.items()}, sizes(quick)["repeats"])
    times = {key: seconds[labels[key]] for key in candidates}

    step_names = {"baseline": "student (baseline)", "pfd": "sync PFD (teacher + student)"}
    rows, targets = [], []
    for method in ("baseline", "pfd"):
        peers = {k[1]: t for k, t in times.items() if k[0] == method and k[1].startswith("torch")}
        best_peer = min(peers, key=peers.get) if peers else None
        for (m, impl), t in times.items():
            if m != method:
                continue
            row = {"step": f"{step_names[method]} / {impl}", "samples/s": round(BATCH_SIZE / t), "ms/step": t * 1e3}
            if impl == "pfd_ref" and best_peer is not None:
                row["ratio"] = peers[best_peer] / t
                row["ratio of"] = f"samples/s pfd_ref / {best_peer}"
            rows.append(row)
        if best_peer is not None:
            ratio = peers[best_peer] / times[(method, "pfd_ref")]
            targets.append({"target": f"{step_names[method]}: pfd_ref samples/s / fastest torch ({best_peer})",
                            "goal": ">= 1.5", "measured": ratio, "met": "yes" if ratio >= 1.5 else "no"})
    pfd_over_baseline = times[("pfd", "pfd_ref")] / times[("baseline", "pfd_ref")]
    teacher_time = times[("teacher", "pfd_ref")]
    rows.append({"step": "teacher alone (hard loss) / pfd_ref", "samples/s": round(BATCH_SIZE / teacher_time),
                 "ms/step": teacher_time * 1e3})
    rows.append({"step": "sync PFD / student step, pfd_ref", "ratio": pfd_over_baseline, "ratio of": "time per step"})
    rows.append({"step": "teacher alone / student step, pfd_ref", "ratio": teacher_time / times[("baseline", "pfd_ref")],
                 "ratio of": "time per step"})
    rows.append({"step": "sync PFD / (student + teacher alone), pfd_ref",
                 "ratio": times[("pfd", "pfd_ref")] / (times[("baseline", "pfd_ref")] + teacher_time),
                 "ratio of": "time per step"})
    for method in ("baseline", "pfd"):
        rows.append({"step": f"{step_names[method]}, NumPy backend / Numba backend",
                     "ratio": times[(method, "pfd_ref numpy")] / times[(method, "pfd_ref")], "ratio of": "time per step"})
    targets.insert(0, {"target": "pfd_ref sync PFD step time / student step time", "goal": "<= 2",
                       "measured": pfd_over_baseline, "met": "yes" if pfd_over_baseline <= 2 else "no"})

    title = (f"Training step, batch {BATCH_SIZE}, float32, Adam; {threads} thread(s); median of "
             f"{sizes(quick)['repeats']} round-robin rounds. pfd_ref's Adam is lazy (touched rows only).")
    print_table(title, ["step", "samples/s", "ms/step", "ratio", "ratio of"], rows)
    if torch is None:
        print("torch is not installed: PyTorch rows and ratios skipped.")
    else:
        print("torch sparse: nn.Embedding/EmbeddingBag(sparse=True) + SparseAdam + Adam; "
              "torch dense: sparse=False + one Adam (updates every row each step).")
    print_table("Targets", ["target", "goal", "measured", "met"], targets)
    return {"threads": threads, "quick": quick, "machine": info, "batch_size": BATCH_SIZE,
            "seconds_per_step": {labels[k]: t for k, t in times.items()}, "rows": rows, "targets": targets}


def main(argv: list[str] | None = None) -> None:
    benchmark_main("benchmarks.training", __doc__.splitlines()[0], "fewer repeats", run, argv)


if __name__ == "__main__":
    main()

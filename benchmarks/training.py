"""Training-step benchmark: pfd_ref's student step and synchronous PFD step against PyTorch CPU
(eager and torch.compile) and against the step's own limit.

    python -m benchmarks.training [--quick] [--threads 1,2] [--json PATH]

One step = losses, hand-derived gradients and an Adam update on one batch of 1024 rows of
the synthetic CVR data (float32), for the MLP student alone (``baseline``) and for the
synchronous PFD pair (teacher on regular + privileged features, student distilled with
lambda = 0.5), with separate tables and sharing every regular table (``--share all``, the
paper's CVR setting; target: at most 1.3x the student step, printed beside its floor: the
student step plus only what the teacher must add, each piece timed in the same rounds,
``step_limit.teacher_increment``). ReLU, no batch normalisation,
Adam: the paper preset's Adagrad and layers are not benchmarked here yet. pfd_ref's teacher
is also timed alone, so that the sync step can be set
against the two models' own steps. pfd_ref's Adam is lazy: embedding rows absent from the
batch are not touched (SparseAdam semantics). pfd_ref's steps also run on the NumPy backend
(the kernels' twins, the same bits), timed in the same rounds.

Peers, the same model, batches and optimizer: eager PyTorch with sparse embeddings
(SparseAdam + Adam) and with dense embeddings (one Adam), and ``torch.compile`` (inductor,
which builds C++ kernels for the CPU) of the dense one: the forward pass and the loss
compiled (AOTAutograd compiles their backward), Adam's step compiled as well. Its compile
and warm-up time (the first pass over the batches, from an empty inductor cache) is printed
on its own line; without a C++ compiler its column is skipped and the reason printed.

Every figure is a median of round-robin rounds after a warm-up (benchmarks/common.py);
batches are prepared before timing and cycled through. After the timing the run measures
the step's limit (benchmarks/step_limit.py: its multiply-adds and bytes, BLAS at its
shapes, the bandwidth at its working set) and profiles pfd_ref's step
(benchmarks/step_profile.py: per-phase timers, cProfile).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np

from benchmarks.common import (
    benchmark_main,
    gemm_gflops,
    import_torch,
    machine_info,
    memory_bandwidth,
    print_table,
    set_threads,
    time_side_by_side,
)
from benchmarks.step_limit import (StepLimit, gemm_seconds, shared_step_floor, step_counts, teacher_increment,
                                   working_set_bandwidth)
from benchmarks.step_profile import cprofile_top, phase_seconds, phase_table
from pfd_ref.backend import using
from pfd_ref.data.synthetic import SyntheticConfig, generate
from pfd_ref.distill import DistillConfig
from pfd_ref.optim import Adam
from pfd_ref.train import TrainConfig, models_for, run_step

BATCH_SIZE = 1024
N_BATCHES = 8
LAMBDA = 0.5
DTYPE = np.float32
MLP_STUDENT = TrainConfig(student_kind="mlp")

# The steps compared: key -> (method, configuration, label). "pfd shared": the pair sharing
# every regular table (docs/method.md, "Sharing"; the paper's CVR setting): build_models names
# a shared table once, and torch_ranker shares one module wherever two models name the same table.
STEPS = {
    "baseline": ("baseline", MLP_STUDENT, "student (baseline)"),
    "pfd": ("pfd", MLP_STUDENT, "sync PFD (teacher + student)"),
    "pfd shared": ("pfd", dataclasses.replace(MLP_STUDENT, sharing="all"), "sync PFD, shared tables (all)"),
}
EAGER_PEERS = ("torch sparse", "torch dense")
NUMPY_BACKEND = "pfd_ref numpy"  # pfd_ref's step on its NumPy twins: not a peer, its own cost
COMPILED_PEER = "torch.compile"
FLOOR = "floor"  # the pieces of step_limit.teacher_increment, timed in the same rounds as the steps
FLOOR_LABEL = "student step + what the teacher must add"


def sizes(quick: bool) -> dict:
    return dict(repeats=7, profile_rounds=5) if quick else dict(repeats=31, profile_rounds=25)


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


def pfd_ref_step(method: str, config: TrainConfig, schema, batches: list, rng: np.random.Generator):
    """One pfd_ref training step of ``method`` ("baseline" or "pfd") with the models of
    ``config``: ``train.run_step`` (gradients, loss check, lazy ``Adam.step``). Returns
    ``(callable over the batches, student, teacher)``."""
    student, teacher = models_for(schema, method, config)
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


def torch_ranker(torch, model, sparse: bool, tables: dict):
    """The PyTorch twin of a pfd_ref ``MLPRanker``: one ``nn.Embedding`` per categorical
    field (``nn.EmbeddingBag`` with its pooling mode for multi-id fields, fed the CSR
    values and offsets), dense columns appended, the same MLP widths, ReLU between layers.
    ``tables`` maps pfd_ref's table names to modules: a table already there (one that
    another model of the step reads too) is shared, a new one is added."""
    nn = torch.nn

    class Ranker(nn.Module):
        def __init__(self):
            super().__init__()
            self.fields = model.fields
            self.tables = nn.ModuleDict()
            for f in self.fields:
                if f.kind == "dense":
                    continue
                name = model.encoder.table_names[f.name]
                if name not in tables:
                    tables[name] = (nn.Embedding(f.vocab_size, model.embed_dim, sparse=sparse) if f.kind == "categorical"
                                    else nn.EmbeddingBag(f.vocab_size, model.embed_dim, mode=f.pooling, sparse=sparse))
                self.tables[f.name] = tables[name]
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
    """Sparse: SparseAdam over the embedding tables + Adam over the rest; dense: one Adam.
    A parameter two modules share is given to the optimizer once."""
    params = list({id(p): p for module in modules for p in module.parameters()}.values())
    if not sparse:
        return [torch.optim.Adam(params, lr=lr)]
    tables = list({id(p): p for module in modules for p in module.tables.parameters()}.values())
    table_ids = {id(p) for p in tables}
    return [torch.optim.SparseAdam(tables, lr=lr), torch.optim.Adam([p for p in params if id(p) not in table_ids], lr=lr)]


def torch_training(torch, student_model, teacher_model, sparse: bool):
    """``(loss_of, optimizers)``: the PyTorch twin's objective on one batch of tensors, the
    BCE-with-logits hard loss for the student alone, or for sync PFD ``(1 - lam) hard + lam
    soft`` (soft target ``sigmoid(teacher_logits.detach())``) plus the teacher's hard loss;
    and the optimizers of its parameters (``torch_optimizers``)."""
    torch.manual_seed(0)
    tables = {}
    student = torch_ranker(torch, student_model, sparse, tables)
    teacher = torch_ranker(torch, teacher_model, sparse, tables) if teacher_model is not None else None
    optimizers = torch_optimizers(torch, [student] + ([teacher] if teacher is not None else []), sparse, TrainConfig().lr)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def loss_of(columns):
        labels = columns["labels"]
        s_logits = student(columns)
        if teacher is None:
            return bce(s_logits, labels)
        t_logits = teacher(columns)
        soft = bce(s_logits, torch.sigmoid(t_logits.detach()))
        return (1 - LAMBDA) * bce(s_logits, labels) + LAMBDA * soft + bce(t_logits, labels)

    return loss_of, optimizers


def torch_step(torch, student_model, teacher_model, batches: list, sparse: bool, compiled: bool = False):
    """PyTorch twin of one pfd_ref step: zero the gradients, one backward of the objective
    (``torch_training``), then the optimizers' steps. ``compiled``: the objective and the
    optimizers' steps run through ``torch.compile`` (dense embeddings only: with sparse ones
    inductor stops, "Cannot access storage of SparseTensorImpl")."""
    loss_of, optimizers = torch_training(torch, student_model, teacher_model, sparse)

    def update():
        for optimizer in optimizers:
            optimizer.step()

    if compiled:
        loss_of, update = torch.compile(loss_of), torch.compile(update)
    tensors = [torch_columns(torch, batch) for batch in batches]

    def step(columns):
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss_of(columns).backward()
        update()

    return cycling(step, tensors)


def inductor_compiler_names() -> tuple[str, ...]:
    """The C++ compilers torch.compile's CPU backend (inductor) looks for, in its order:
    ``torch._inductor.config.cpp.cxx`` ($CXX, else g++), less its entry None (a compiler
    inductor downloads through conda only when asked to)."""
    from torch._inductor import config

    listed = config.cpp.cxx
    return tuple(name for name in (listed if isinstance(listed, (list, tuple)) else (listed,)) if name)


def cxx_compiler(names: tuple[str, ...]) -> str | None:
    """The path of the first of ``names`` found on the PATH that answers ``--version``, or None."""
    for name in names:
        path = shutil.which(name)
        if path is not None and subprocess.run([path, "--version"], capture_output=True).returncode == 0:
            return path
    return None


@contextlib.contextmanager
def empty_inductor_cache():
    """Point ``TORCHINDUCTOR_CACHE_DIR`` at a fresh temporary directory for the block (removed
    afterwards), so that torch.compile compiles from scratch as on its first use, and not
    from the kernels an earlier run left on disk."""
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    directory = tempfile.mkdtemp(prefix="pfd_ref_bench_inductor_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = directory
    try:
        yield directory
    finally:
        if previous is None:
            del os.environ["TORCHINDUCTOR_CACHE_DIR"]
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
        shutil.rmtree(directory, ignore_errors=True)


def compiled_peers(torch, models: dict, batches: list, compiler_names: tuple | None = None) -> tuple[dict, dict]:
    """``({key: compiled step}, about)`` for each step of ``models`` (key -> (student,
    teacher)). ``about`` holds the compiler and each step's compile-and-warm-up seconds (the
    first pass over ``batches``: every new input shape compiles), or ``"skipped"``: why
    there is no torch.compile column (no torch, no C++ compiler among ``compiler_names``,
    by default ``inductor_compiler_names()``)."""
    if torch is None:
        return {}, {"skipped": "torch is not installed"}
    names = compiler_names or inductor_compiler_names()
    compiler = cxx_compiler(names)
    if compiler is None:
        return {}, {"skipped": "no C++ compiler found (inductor, torch.compile's CPU backend, needs one; "
                               f"looked for {', '.join(names)})"}
    steps, seconds = {}, {}
    for key, (student, teacher) in models.items():
        step = torch_step(torch, student, teacher, batches, sparse=False, compiled=True)
        start = time.perf_counter()
        for _ in batches:
            step()
        seconds[key] = time.perf_counter() - start
        steps[key] = step
    return steps, {"compiler": compiler, "compile_and_warm_up_seconds": seconds}


def compile_line(about: dict) -> str:
    """The line that reports torch.compile's compile time, or why its column is missing."""
    if "skipped" in about:
        return f"torch.compile: column skipped, {about['skipped']}."
    times = ", ".join(f"{STEPS[key][2]} {s:.1f} s" for key, s in about["compile_and_warm_up_seconds"].items())
    return (f"torch.compile: torch dense with its loss and Adam's step compiled (inductor, {about['compiler']}); "
            f"compile and warm-up, the first pass over the {N_BATCHES} batches from an empty inductor cache: {times}.")


# ----------------------------------------------------------------------------- report


def step_rows(times: dict) -> tuple[list[str], list[dict]]:
    """The comparison table: ``(columns, rows)``, one row per step of ``STEPS`` with each
    implementation's ms per step (pfd_ref, pfd_ref on its NumPy backend, the peers) and
    pfd_ref's ratios (``peer time / pfd_ref time``, i.e. samples/s pfd_ref / peer) to the
    fastest eager peer and to torch.compile; an implementation not in ``times``
    (``{(key, implementation): seconds}``) has no column."""
    implementations = [impl for impl in ("pfd_ref", NUMPY_BACKEND, *EAGER_PEERS, COMPILED_PEER)
                       if any(k[1] == impl for k in times)]
    columns = ["step", *(f"{impl} ms" for impl in implementations)]
    eager = [impl for impl in EAGER_PEERS if impl in implementations]
    if eager:
        columns.append("x fastest eager")
    if COMPILED_PEER in implementations:
        columns.append(f"x {COMPILED_PEER}")
    rows = []
    for key, (_, _, label) in STEPS.items():
        row = {"step": label, **{f"{impl} ms": times[(key, impl)] * 1e3 for impl in implementations}}
        if eager:
            row["x fastest eager"] = min(times[(key, impl)] for impl in eager) / times[(key, "pfd_ref")]
        if COMPILED_PEER in implementations:
            row[f"x {COMPILED_PEER}"] = times[(key, COMPILED_PEER)] / times[(key, "pfd_ref")]
        rows.append(row)
    return columns, rows


def targets(times: dict, floor_ratio: float | None = None) -> list[dict]:
    """Each target with its goal, the measured value and whether it is met (peers absent
    from ``times`` give no target). ``floor_ratio``: the sharing target's floor
    (``step_limit.shared_step_floor``), listed under the sharing target when given: the
    target is reachable only if its floor meets it."""
    found = []

    def target(name, goal, measured, met):
        found.append({"target": name, "goal": goal, "measured": measured, "met": "yes" if met else "no"})

    pfd_over_baseline = times[("pfd", "pfd_ref")] / times[("baseline", "pfd_ref")]
    target("pfd_ref sync PFD step time / student step time", "<= 2", pfd_over_baseline, pfd_over_baseline <= 2)
    shared_over_baseline = times[("pfd shared", "pfd_ref")] / times[("baseline", "pfd_ref")]
    target("pfd_ref sync PFD with sharing step time / student step time", "<= 1.3", shared_over_baseline,
           shared_over_baseline <= 1.3)
    if floor_ratio is not None:
        target(f"  its floor: ({FLOOR_LABEL}) / student step", "<= 1.3", floor_ratio, floor_ratio <= 1.3)
    for key, (_, _, label) in STEPS.items():
        eager = {impl: times[(key, impl)] for impl in EAGER_PEERS if (key, impl) in times}
        if eager:
            best = min(eager, key=eager.get)
            ratio = eager[best] / times[(key, "pfd_ref")]
            target(f"{label}: pfd_ref samples/s / fastest eager torch ({best})", ">= 1.5", ratio, ratio >= 1.5)
        if (key, COMPILED_PEER) in times:
            ratio = times[(key, COMPILED_PEER)] / times[(key, "pfd_ref")]
            target(f"{label}: pfd_ref samples/s / {COMPILED_PEER}", ">= 1.3", ratio, ratio >= 1.3)
    return found


def sharing_floor(times: dict) -> tuple[list[dict], tuple[float, float]]:
    """The floor of the sharing target from the round-robin's ``times``: ``(rows, (floor
    seconds, floor / student step))``, one row per part (the student step, each piece of
    ``teacher_increment`` under its ``(FLOOR, piece)`` key), then the floor and the measured
    shared step."""
    student = times[("baseline", "pfd_ref")]
    pieces = {piece: t for (key, piece), t in times.items() if key == FLOOR}
    floor = shared_step_floor(student, pieces)
    rows = [{"part": "student step (pfd_ref)", "ms": student * 1e3, "x student step": 1.0}]
    rows += [{"part": f"+ {piece}", "ms": t * 1e3, "x student step": t / student} for piece, t in pieces.items()]
    rows.append({"part": f"floor: {FLOOR_LABEL}", "ms": floor[0] * 1e3, "x student step": floor[1]})
    shared = times[("pfd shared", "pfd_ref")]
    rows.append({"part": "measured: sync PFD, shared tables (pfd_ref)", "ms": shared * 1e3, "x student step": shared / student})
    return rows, floor


def step_limits(models: dict, batches: list, times: dict, repeats: int) -> tuple[list[dict], list[dict], dict]:
    """The limit of each step: ``(rows, byte rows, machine)``; counts of the first batch
    (the unique ids of the others change its bytes by a few percent, stated in the rows)."""
    machine = {"BLAS GEMM 1024^3 GFLOP/s": gemm_gflops(DTYPE, repeats=repeats),
               **{f"DRAM {k}": v for k, v in memory_bandwidth(1, repeats).items()}}
    rows, byte_rows = [], []
    for key, (student, teacher) in models.items():
        counts = step_counts(student, teacher, batches[0], np.dtype(DTYPE).itemsize, "adam")
        all_bytes = [step_counts(student, teacher, b, np.dtype(DTYPE).itemsize, "adam").total_bytes for b in batches]
        per_product = gemm_seconds(counts, DTYPE, repeats)
        bandwidth = working_set_bandwidth(counts, repeats)
        limit = StepLimit.from_counts(counts, per_product, bandwidth)
        step_time = times[(key, "pfd_ref")]
        label = STEPS[key][2]
        rows.append({
            "step": label, "multiply-adds M": counts.multiply_adds / 1e6, "bytes KB": counts.total_bytes / 1e3,
            "bytes over batches KB": f"{min(all_bytes) / 1e3:.0f}-{max(all_bytes) / 1e3:.0f}",
            "GEMMs at BLAS ms": limit.gemm_seconds * 1e3, "BLAS GFLOP/s at these shapes": limit.gemm_flops / 1e9,
            "working set MB": counts.resident_bytes / 1e6, "its triad GB/s": bandwidth,
            "bytes ms": limit.bytes_seconds * 1e3, "bound ms": limit.seconds * 1e3, "step ms": step_time * 1e3,
            "bound / step": limit.seconds / step_time,
            "forward GEMMs ms": sum(t for name, t in per_product.items() if name.endswith("forward")) * 1e3,
        })
        byte_rows.extend({"step": label, "bytes of": kind, "KB": b / 1e3} for kind, b in counts.bytes.items())
    return rows, byte_rows, machine


def profiles(candidates: dict, limit_rows: list[dict], rounds: int) -> dict:
    """Per-phase timers and cProfile of each pfd_ref step, the MLP phases set beside their
    products' time at BLAS speed (from ``limit_rows``)."""
    found = {}
    for key, row in zip(STEPS, limit_rows):
        step = candidates[(key, "pfd_ref")]
        seconds = phase_seconds(step, rounds, N_BATCHES)
        forward = row["forward GEMMs ms"] / 1e3
        found[key] = {"phases": phase_table(seconds, forward, row["GEMMs at BLAS ms"] / 1e3 - forward),
                      "cprofile": cprofile_top(step, 5 * N_BATCHES)}
    return found


# ----------------------------------------------------------------------------- run


def run(threads: int, quick: bool) -> dict:
    set_threads(threads)
    torch = import_torch()
    info = machine_info()
    info["loadavg at start"] = os.getloadavg()
    print(f"\n=== training step, {threads} thread(s) ===")
    print(json.dumps(info))
    train, _ = generate("cvr", SyntheticConfig())
    rng = np.random.default_rng(0)
    batches = fixed_batches(train, rng)
    candidates, models = {}, {}
    for key, (method, config, _) in STEPS.items():
        candidates[(key, "pfd_ref")], student, teacher = pfd_ref_step(method, config, train.schema, batches, rng)
        candidates[(key, NUMPY_BACKEND)] = on_backend("numpy", model_step(student, teacher, batches, rng))
        models[key] = (student, teacher)
    # the teacher trained alone (hard loss): sync PFD against student + teacher isolates what
    # synchronous distillation adds beyond running the two models
    candidates[("teacher", "pfd_ref")] = model_step(models["pfd"][1], None, batches, rng)
    # the floor of the sharing target: the student's step plus what the teacher must add
    pieces = teacher_increment(*models["pfd shared"], batches[0], DTYPE)
    candidates.update({(FLOOR, piece): call for piece, call in pieces.items()})
    if torch is not None:
        for key, pair in models.items():
            for sparse, name in zip((True, False), EAGER_PEERS):
                candidates[(key, name)] = torch_step(torch, *pair, batches, sparse)
    repeats = sizes(quick)["repeats"]
    with empty_inductor_cache():
        compiled, compile_about = compiled_peers(torch, models, batches)
        candidates.update({(key, COMPILED_PEER): step for key, step in compiled.items()})
        labels = {key: f"{key[0]}:{key[1]}" for key in candidates}
        seconds = time_side_by_side({labels[k]: fn for k, fn in candidates.items()}, repeats)
    times = {key: seconds[labels[key]] for key in candidates}
    info["loadavg after timing"] = os.getloadavg()

    columns, rows = step_rows(times)
    title = (f"Training step, batch {BATCH_SIZE}, float32, Adam; {threads} thread(s); median of {repeats} "
             "round-robin rounds; x: samples/s of pfd_ref / the peer's. pfd_ref's Adam is lazy (touched rows only).")
    print_table(title, columns, rows)
    if torch is not None:
        print("torch sparse: nn.Embedding/EmbeddingBag(sparse=True) + SparseAdam + Adam; torch dense: sparse=False + "
              "one Adam (updates every row each step).")
    print(compile_line(compile_about))
    teacher_time, baseline_time = times[("teacher", "pfd_ref")], times[("baseline", "pfd_ref")]
    floor_rows, floor = sharing_floor(times)
    print_table(f"The sharing target's floor: the student step plus what the teacher must add with every table shared "
                "(benchmarks/step_limit.py, teacher_increment), each piece timed in the same rounds",
                ["part", "ms", "x student step"], floor_rows)
    ratios = [
        {"pfd_ref": "teacher alone (hard loss), ms", "value": teacher_time * 1e3},
        {"pfd_ref": "sync PFD / student step", "value": times[("pfd", "pfd_ref")] / baseline_time},
        {"pfd_ref": "sync PFD, shared tables / student step", "value": times[("pfd shared", "pfd_ref")] / baseline_time},
        {"pfd_ref": f"its floor: ({FLOOR_LABEL}) / student step", "value": floor[1]},
        {"pfd_ref": "teacher alone / student step", "value": teacher_time / baseline_time},
        {"pfd_ref": "sync PFD / (student + teacher alone)", "value": times[("pfd", "pfd_ref")] / (baseline_time + teacher_time)},
        *({"pfd_ref": f"{label}, NumPy backend / Numba backend",
           "value": times[(key, NUMPY_BACKEND)] / times[(key, "pfd_ref")]} for key, (_, _, label) in STEPS.items()),
    ]
    print_table("pfd_ref's steps against each other (time per step)", ["pfd_ref", "value"], ratios)
    found_targets = targets(times, floor[1])
    print_table("Targets", ["target", "goal", "measured", "met"], found_targets)

    limit_rows, byte_rows, machine = step_limits(models, batches, times, repeats)
    found_profiles = profiles(candidates, limit_rows, sizes(quick)["profile_rounds"])
    for row, profile in zip(limit_rows, found_profiles.values()):
        row["loop step ms"] = profile["phases"][-1]["ms/step"]
        row["bound / loop step"] = row["bound ms"] / row["loop step ms"]
    print_table("The step's limit (benchmarks/step_limit.py): its products at BLAS's speed for their shapes, then its "
                "bytes at a triad's bandwidth over arrays as large as its working set; counts of the first batch. "
                "step ms: the table above (each step after the peers' steps); loop step ms: steps one after another "
                "(the profile below)",
                ["step", "multiply-adds M", "bytes KB", "bytes over batches KB", "GEMMs at BLAS ms",
                 "BLAS GFLOP/s at these shapes", "working set MB", "its triad GB/s", "bytes ms", "bound ms", "step ms",
                 "bound / step", "loop step ms", "bound / loop step"], limit_rows)
    print("Machine, same run, 1 thread: " + "; ".join(f"{k} {v:.1f}" for k, v in machine.items()))
    print_table("The bytes each step must move, by kind", ["step", "bytes of", "KB"], byte_rows)

    for key, profile in found_profiles.items():
        print_table(f"Profile of pfd_ref's {STEPS[key][2]} step: phase timers, median over rounds of {N_BATCHES} steps",
                    ["phase", "ms/step", "share", "BLAS GEMM ms", "rest ms"], profile["phases"])
        print_table(f"cProfile of the same step, {5 * N_BATCHES} steps: the functions with the most own time",
                    ["function", "calls/step", "own ms/step", "cumulative ms/step"], profile["cprofile"])
    info["loadavg at end"] = os.getloadavg()
    print(f"load average (1, 5, 15 min): start {info['loadavg at start']}, after timing "
          f"{info['loadavg after timing']}, end {info['loadavg at end']}")
    return {"threads": threads, "quick": quick, "machine": info, "batch_size": BATCH_SIZE,
            "seconds_per_step": {labels[k]: t for k, t in times.items()}, "rows": rows, "ratios": ratios,
            "targets": found_targets, "sharing_floor": {"seconds": floor[0], "over_student_step": floor[1],
                                                         "parts": floor_rows}, "torch_compile": compile_about, "limit": limit_rows, "limit_bytes": byte_rows,
            "machine_limits": machine, "profiles": found_profiles}


def main(argv: list[str] | None = None) -> None:
    benchmark_main("benchmarks.training", __doc__.splitlines()[0], "fewer repeats", run, argv)


if __name__ == "__main__":
    main()

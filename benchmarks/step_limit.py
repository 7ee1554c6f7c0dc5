"""The training step's own limit: what one step must compute and move, what this machine
does at those shapes and sizes, and the step's time as a fraction of that bound.

Counting (pure, no timing; tests/test_step_limit.py checks it against hand counts):

    step_counts(student, teacher, batch, optimizer="adam") -> StepCounts   one step of a model
        or of a sync pair (a table both models read, shared embeddings, is counted once)
    mlp_ranker_counts(model, batch) / two_tower_counts(model, batch)       one model each

What one step must do, counted once each:

* **Multiply-adds of the matrix products.** Per linear layer ``j`` of an MLP with ``n`` rows,
  input width ``i_j`` and output width ``o_j``: the forward product ``h_j W_j`` (``n i_j o_j``),
  the weight gradient ``h_j^T d_z_j`` (``n i_j o_j``) and the input gradient ``d_z_j W_j^T``
  (``n i_j o_j``; for the first layer only over the embedded columns, ``n (C d) o_0``, since
  dense input columns need no gradient). A two-tower model adds its inner product,
  ``n k`` forward and ``2 n k`` backward (``other_multiply_adds``). Element-wise work
  (activations, the loss, the pooled mean, the scatter-adds, the optimizer's arithmetic)
  is a few operations per byte and is bound by its bytes, so it is not counted here.
* **Bytes.** The batch's inputs (ids, dense columns, labels, as stored); each embedding row
  the batch touches (``unique ids x d``), read once and written once; the optimizer state of
  those rows, read and written (``optimizer_slots`` arrays: Adam 2, Adagrad 1, SGD 0); every
  dense parameter (MLP weights and biases, batch normalisation's gamma and beta, a two-tower
  bias) read and written, and its optimizer state read and written; batch normalisation's
  running averages read and written. Activations and gradients are not counted: at batch
  1024 they fit in the caches and a fused step need not send them to memory.

Throughputs and the bound (timed in the benchmark's run, beside the step):

    gemm_seconds(counts, dtype, repeats) -> {product: seconds}   NumPy's matmul at each of the step's shapes and layouts
    working_set_bandwidth(counts, repeats) -> GB/s               a triad over arrays as large as the resident state
    StepLimit.from_counts(...): seconds = sum(GEMM seconds) + bytes / bandwidth   (phases in sequence)

The floor of a sync step with shared tables against the student's own step (issue 11's
target: at most 1.3x the student step). With every table shared, the teacher adds no lookup,
no scatter-add and no lazy row update of its own; what it must still add to the student's
step is timed piece by piece (``teacher_increment``, run in the benchmark's round-robin
beside the steps):

    teacher_increment_sizes(student, teacher, batch) -> TeacherIncrement (pure, hand-checked)
    teacher_increment(student, teacher, batch, dtype) -> {piece: callable}
    floor seconds = student step + sum of the pieces' seconds      (``shared_step_floor``)

* the teacher's matrix products, forward, weight gradients and input gradients (its
  ``mlp_ranker_counts`` products, at their shapes and layouts, as ``gemm_seconds`` times them,
  except that an outer product, the last layer's input gradient, is broadcast as
  ``layers.linear_backward`` computes it);
* the losses it brings: its own hard loss and the student's soft loss against it
  (``losses.hard_loss``, ``losses.soft_loss``);
* the sum of the two models' gradients of the shared tables' rows (one add of the
  ``(n, embedded width)`` blocks, before the one scatter-add);
* Adam's arithmetic on the teacher's own parameters: one dense Adam kernel pass
  (``adam_update_``) over as many entries as its dense parameters and the rows of any table
  it does not share.

Everything else of the teacher (its bias additions and activations, the glue around its
kernels) is left out, so the floor is a lower bound of any sync step with this teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from benchmarks.common import make_triad, time_side_by_side
from pfd_ref import backend, losses

OPTIMIZER_SLOTS = {"adam": 2, "adagrad": 1, "sgd": 0}  # state arrays per parameter entry


@dataclass(frozen=True)
class Product:
    """One matrix product ``(m, k) @ (k, n)`` of the step: ``m k n`` multiply-adds.

    layout : how the step passes the operands to BLAS: "NN" (both C-contiguous), "TN" (the
    first is the transpose of a C-contiguous array: the weight gradient ``h^T d_z``) or "NT"
    (the second is: the input gradient ``d_z W^T``)."""

    name: str
    m: int
    k: int
    n: int
    layout: str = "NN"

    @property
    def multiply_adds(self) -> int:
        return self.m * self.k * self.n


@dataclass
class StepCounts:
    """What one training step must compute and touch (see the module docstring).

    products : the matrix products; other_multiply_adds : {what: count} outside them;
    touched_rows : {table name: (rows the batch touches, table rows, width)};
    dense_parameters, buffers : {name: entries}; inputs : {column: bytes as stored};
    itemsize : bytes per float of the parameters; optimizer_slots : state arrays per entry.
    Dicts keyed by name, so that two models reading one table count it once (``merged``).
    """

    itemsize: int
    optimizer_slots: int
    products: list = field(default_factory=list)
    other_multiply_adds: dict = field(default_factory=dict)
    touched_rows: dict = field(default_factory=dict)
    dense_parameters: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)

    @property
    def multiply_adds(self) -> int:
        return sum(p.multiply_adds for p in self.products) + sum(self.other_multiply_adds.values())

    @property
    def bytes(self) -> dict[str, int]:
        """Bytes the step must move, by kind (each byte counted once)."""
        rows = sum(touched * width for touched, _, width in self.touched_rows.values()) * self.itemsize
        dense = sum(self.dense_parameters.values()) * self.itemsize
        return {
            "batch inputs (ids, dense columns, labels)": sum(self.inputs.values()),
            "embedding rows touched, read": rows,
            "embedding rows touched, written": rows,
            "optimizer state of those rows, read and written": 2 * self.optimizer_slots * rows,
            "dense parameters, read and written": 2 * dense,
            "optimizer state of the dense parameters, read and written": 2 * self.optimizer_slots * dense,
            "batch-norm running averages, read and written": 2 * sum(self.buffers.values()) * self.itemsize,
        }

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    @property
    def resident_bytes(self) -> int:
        """Bytes of the parameters, buffers and optimizer state that the step's bytes come
        from (whole tables): the working set that stays in memory between steps."""
        tables = sum(rows * width for _, rows, width in self.touched_rows.values())
        return ((1 + self.optimizer_slots) * (tables + sum(self.dense_parameters.values()))
                + sum(self.buffers.values())) * self.itemsize

    def merged(self, other: "StepCounts") -> "StepCounts":
        """The counts of a step that runs both: products added, named things counted once."""
        if (self.itemsize, self.optimizer_slots) != (other.itemsize, other.optimizer_slots):
            raise ValueError("other: counts of another dtype or optimizer")
        return StepCounts(self.itemsize, self.optimizer_slots, self.products + other.products,
                          {**self.other_multiply_adds, **other.other_multiply_adds},
                          {**self.touched_rows, **other.touched_rows},
                          {**self.dense_parameters, **other.dense_parameters},
                          {**self.buffers, **other.buffers}, {**self.inputs, **other.inputs})


def _encoder_counts(counts: StepCounts, encoder, batch) -> int:
    """Add the inputs and touched table rows of one ``FieldEncoder``; return its embedded width."""
    embedded = 0
    for f in encoder.fields:
        column = batch.columns[f.name]
        if f.kind == "dense":
            counts.inputs[f.name] = column.nbytes
            continue
        ids = column if f.kind == "categorical" else column.values
        counts.inputs[f.name] = column.nbytes if f.kind == "categorical" else column.values.nbytes + column.offsets.nbytes
        counts.touched_rows[encoder.table_names[f.name]] = (np.unique(ids).size, f.vocab_size, encoder.embed_dim)
        embedded += encoder.embed_dim
    return embedded


def _mlp_counts(counts: StepCounts, stack, n: int, embedded_width: int) -> None:
    """Add the products and parameters of one ``MLPStack`` on ``n`` rows whose input has
    ``embedded_width`` embedded columns (the others need no input gradient)."""
    for j, ((w_name, b_name), fan_in, fan_out) in enumerate(zip(stack.names, stack.sizes[:-1], stack.sizes[1:])):
        counts.products.append(Product(f"{stack.prefix}.{j} forward", n, fan_in, fan_out, "NN"))
        counts.products.append(Product(f"{stack.prefix}.{j} weight gradient", fan_in, n, fan_out, "TN"))
        needed = embedded_width if j == 0 else fan_in
        if needed:
            counts.products.append(Product(f"{stack.prefix}.{j} input gradient", n, fan_out, needed, "NT"))
        counts.dense_parameters[w_name] = fan_in * fan_out
        if b_name is not None:
            counts.dense_parameters[b_name] = fan_out
    for norm, width in zip(stack.norm_names, stack.sizes[1:]):
        counts.dense_parameters[norm.gamma] = counts.dense_parameters[norm.beta] = width
        counts.buffers[norm.running_mean] = counts.buffers[norm.running_var] = width


def _new_counts(batch, itemsize: int, optimizer: str) -> StepCounts:
    if optimizer not in OPTIMIZER_SLOTS:
        raise ValueError(f"optimizer: expected one of {tuple(OPTIMIZER_SLOTS)}, got {optimizer!r}")
    counts = StepCounts(int(itemsize), OPTIMIZER_SLOTS[optimizer])
    counts.inputs["labels"] = batch.labels.nbytes
    if batch.weights is not None:
        counts.inputs["weights"] = batch.weights.nbytes
    return counts


def mlp_ranker_counts(model, batch, itemsize: int = 4, optimizer: str = "adam") -> StepCounts:
    """Counts of one training step of an ``MLPRanker`` on ``batch`` (a ``Dataset``)."""
    counts = _new_counts(batch, itemsize, optimizer)
    _mlp_counts(counts, model.mlp, batch.n, _encoder_counts(counts, model.encoder, batch))
    return counts


def two_tower_counts(model, batch, itemsize: int = 4, optimizer: str = "adam") -> StepCounts:
    """Counts of one training step of a ``TwoTower`` on ``batch``: both towers, the inner
    product (``n k`` forward, ``2 n k`` backward) and the bias."""
    counts = _new_counts(batch, itemsize, optimizer)
    for encoder, stack in ((model.user_encoder, model.user_mlp), (model.item_encoder, model.item_mlp)):
        _mlp_counts(counts, stack, batch.n, _encoder_counts(counts, encoder, batch))
    counts.other_multiply_adds[f"{model.prefix} inner product"] = 3 * batch.n * model.out_dim
    if model.bias:
        counts.dense_parameters[f"{model.prefix}.bias"] = 1
    return counts


MODEL_COUNTS = {"mlp": mlp_ranker_counts, "two_tower": two_tower_counts}


def step_counts(student, teacher, batch, itemsize: int = 4, optimizer: str = "adam") -> StepCounts:
    """Counts of one step of ``student`` alone (``teacher`` None) or of a sync pair."""
    counts = MODEL_COUNTS[student.kind](student, batch, itemsize, optimizer)
    if teacher is not None:
        counts = counts.merged(MODEL_COUNTS[teacher.kind](teacher, batch, itemsize, optimizer))
    return counts


# ----------------------------------------------------------------------------- throughputs


def _operands(product: Product, dtype, rng: np.random.Generator):
    a = rng.standard_normal((product.k, product.m) if product.layout == "TN" else (product.m, product.k)).astype(dtype)
    b = rng.standard_normal((product.n, product.k) if product.layout == "NT" else (product.k, product.n)).astype(dtype)
    return (a.T if product.layout == "TN" else a), (b.T if product.layout == "NT" else b)


def gemm_seconds(counts: StepCounts, dtype, repeats: int) -> dict[str, float]:
    """Median seconds of NumPy's ``matmul`` (BLAS) for each of the step's products, at its
    shape and layout, alone (operands in cache after the warm-up), round-robin."""
    rng = np.random.default_rng(0)
    calls = {}
    for product in counts.products:
        a, b = _operands(product, dtype, rng)
        calls[product.name] = lambda a=a, b=b: np.matmul(a, b)
    return time_side_by_side(calls, repeats)


def working_set_bandwidth(counts: StepCounts, repeats: int) -> float:
    """GB/s of a one-thread STREAM-like triad whose three arrays together are as large as
    ``counts.resident_bytes`` (the parameters and optimizer state the step's bytes come
    from), so that they sit in the same level of the cache hierarchy."""
    elements = max(counts.resident_bytes // 24, 1024)
    triad, moved = make_triad(1, elements)
    return moved / time_side_by_side({"triad": triad}, repeats)["triad"] / 1e9


@dataclass(frozen=True)
class StepLimit:
    """The bound of one step: its products at BLAS's measured speed for their shapes, then
    its bytes at the measured bandwidth, in sequence (a step's phases do not overlap)."""

    gemm_seconds: float
    gemm_flops: float
    other_seconds: float
    bytes_seconds: float
    bandwidth_GBps: float

    @classmethod
    def from_counts(cls, counts: StepCounts, seconds_per_product: dict[str, float], bandwidth_GBps: float):
        """``other_multiply_adds`` run at the products' overall rate."""
        gemm = sum(seconds_per_product[p.name] for p in counts.products)
        flops = 2 * sum(p.multiply_adds for p in counts.products) / gemm
        other = 2 * sum(counts.other_multiply_adds.values()) / flops
        return cls(gemm, flops, other, counts.total_bytes / (bandwidth_GBps * 1e9), bandwidth_GBps)

    @property
    def seconds(self) -> float:
        return self.gemm_seconds + self.other_seconds + self.bytes_seconds


# ----------------------------------------------------------------------------- the sharing floor


@dataclass(frozen=True)
class TeacherIncrement:
    """The sizes of what a sync step adds to the student's own step (module docstring):
    the teacher's ``products``, the width of the shared tables' embedded columns whose two
    gradients are summed (``shared_width``), the entries of the teacher's own parameters
    that Adam updates (``adam_entries``: its dense parameters and the touched rows of the
    tables it does not share), and the batch's ``n``."""

    products: list
    shared_width: int
    adam_entries: int
    n: int


def teacher_increment_sizes(student, teacher, batch) -> TeacherIncrement:
    """``TeacherIncrement`` of the ``MLPRanker`` pair ``(student, teacher)`` on ``batch``."""
    counts = mlp_ranker_counts(teacher, batch)
    student_tables = set(student.encoder.table_names.values())
    shared = [name for name in teacher.encoder.table_names.values() if name in student_tables]
    own_rows = sum(touched * width for name, (touched, _, width) in counts.touched_rows.items()
                   if name not in student_tables)
    return TeacherIncrement(counts.products, teacher.embed_dim * len(shared),
                            sum(counts.dense_parameters.values()) + own_rows, batch.n)


def teacher_increment(student, teacher, batch, dtype) -> dict[str, object]:
    """The work a sync step with shared tables must add to the student's own step, as
    no-argument callables ``{piece: callable}`` (see the module docstring) of the sizes of
    ``teacher_increment_sizes``: the teacher's products, its hard loss and the student's
    soft loss, the shared rows' gradient sum, and one dense Adam pass over the teacher's
    own parameter entries. Operands are random numbers of ``dtype``, drawn once."""
    rng = np.random.default_rng(0)
    sizes = teacher_increment_sizes(student, teacher, batch)
    operands = [_operands(product, dtype, rng) for product in sizes.products]

    def products():
        for a, b in operands:
            np.multiply(a, b) if a.shape[1] == 1 else np.matmul(a, b)  # an outer product as the step does it

    student_logits, teacher_logits = (rng.standard_normal(sizes.n).astype(dtype) for _ in range(2))

    def losses_added():
        losses.hard_loss(teacher_logits, batch.labels)
        losses.soft_loss(student_logits, teacher_logits)

    d_teacher, d_student = (rng.standard_normal((sizes.n, sizes.shared_width)).astype(dtype) for _ in range(2))
    param, grad = (rng.standard_normal(sizes.adam_entries).astype(dtype) for _ in range(2))
    m, v = np.zeros_like(param), np.zeros_like(param)

    def adam_arithmetic():
        backend.adam_update_(param, grad, m, v, 1e-3, 0.5, 0.9, 0.999, 1e-8)

    return {"teacher's products (forward, weight and input gradients)": products,
            "teacher's hard loss and the student's soft loss": losses_added,
            "shared rows' gradient sum": lambda: d_teacher + d_student,
            "Adam on the teacher's own parameters (one dense pass)": adam_arithmetic}


def shared_step_floor(student_seconds: float, piece_seconds: dict[str, float]) -> tuple[float, float]:
    """``(floor seconds, floor / student step)``: the student's step plus every piece of
    ``teacher_increment`` (their measured seconds)."""
    floor = student_seconds + sum(piece_seconds.values())
    return floor, floor / student_seconds

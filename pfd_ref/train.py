"""Training loops: the student alone, two-stage PFD and synchronous PFD.

The rule these loops follow (which teacher, which gradient reaches which parameter, the
lambda schedule, the initial parameters) is ``pfd_ref.distill``; this module runs it over
batches: ``run_step`` is the one optimizer step of every loop here and of the oracle cases.

Randomness: every run draws from independent streams of one seed
(``numpy.random.default_rng([seed, stream])``: ``distill.INIT_STREAM`` for the initial
parameters, ``STREAM_BATCH_ORDER`` and ``STREAM_FOLDS`` here), so the student's initial
parameters and batch order are the same for every method and mode; with lambda = 0 a
distilled student follows the baseline's trajectory bit for bit, step after step, unless it
shares tables with its teacher (whose hard-loss gradient then moves them).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from pfd_ref.data import Dataset
from pfd_ref.data.dataset import batch_indices
from pfd_ref.data.objectives import ObjectiveData, check_trainable
from pfd_ref.auxiliary import AuxiliaryHeads, auxiliary_targets
from pfd_ref.distill import (METHOD_RULES, SHARING, STUDENT_KINDS, DistillConfig, ModelSizes, StepOutput, build_auxiliary,
                             build_models, check_method, check_schedule, init_params, step_gradients)
from pfd_ref.models import MultiHeadRanker
from pfd_ref.multihead import build_objective_models, objective_step_gradients
from pfd_ref.optim import SPARSE_MODES, check_optimizer_fields, optimizer_from
from pfd_ref.validation import check_choice, check_scalar

MODES = ("sync", "two-stage")
DTYPES = ("float32", "float64")
STREAM_BATCH_ORDER, STREAM_FOLDS = 3, 4


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data.

    mode : "sync" (teacher and student in one loop) or "two-stage" (teacher first, frozen).
    epochs : passes over the training set for the student (and for the teacher in sync mode).
    teacher_epochs : passes for the teacher in two-stage mode (None: same as ``epochs``).
    sharing : which embedding tables teacher and student share in sync mode, a key of
        ``distill.SHARING``: "none", "all" (every regular field's) or "all-but-user-id" (the
        paper's Share*: all but the user id's, docs/method.md); two-stage needs "none".
    optimizer : "adam", "adagrad" or "sgd" (docs/optim.md); every training loop (the sync
        loop, a two-stage teacher, the student) gets a fresh one from ``make_optimizer``.
    lr : the learning rate (after the warm-up).
    lr_warmup_steps : N >= 0, a linear learning-rate warm-up over each loop's first N
        optimizer steps, ``lr_t = lr * min(1, (t + 1) / N)`` (``pfd_ref.optim.warmup_lr``; 0: none).
        Not to be confused with ``distill.warmup_steps`` (lambda = 0 at the start).
    adam_sparse : Adam only: "lazy" (touched rows only, SparseAdam semantics) or "dense".
    adagrad_initial_accumulator, adagrad_eps, adagrad_sparse : Adagrad only: the
        accumulator's start value and eps (``pfd_ref.optim.Adagrad``; defaults TensorFlow 1's,
        0.1 and 0), "lazy" or "dense" embedding updates (equal up to rounding).
    teacher_folds : two-stage only; 0 trains one teacher on all rows (in-sample soft labels),
        K >= 2 cross-fits K teachers (out-of-fold soft labels, ``out_of_fold_teacher_logits``).
    An option of another optimizer than ``optimizer`` must stay at its default (ValueError).
    """

    student_kind: str = "mlp"
    mode: str = "sync"
    epochs: int = 1
    teacher_epochs: int | None = None
    batch_size: int = 1024
    lr: float = 0.005
    distill: DistillConfig = field(default_factory=DistillConfig)
    sharing: str = "none"
    teacher_folds: int = 0
    optimizer: str = "adam"
    lr_warmup_steps: int = 0
    adam_sparse: str = "lazy"
    adagrad_initial_accumulator: float = 0.1
    adagrad_eps: float = 0.0
    adagrad_sparse: str = "lazy"
    l2_embeddings: float = 0.0
    dtype: str = "float32"
    seed: int = 0
    sizes: ModelSizes = field(default_factory=ModelSizes)

    def __post_init__(self):
        check_choice("student_kind", self.student_kind, STUDENT_KINDS)
        check_choice("mode", self.mode, MODES)
        check_choice("adam_sparse", self.adam_sparse, SPARSE_MODES)
        check_choice("dtype", self.dtype, DTYPES)
        checked = {
            "epochs": check_scalar("epochs", self.epochs, int, low=1),
            "teacher_epochs": None if self.teacher_epochs is None else check_scalar("teacher_epochs", self.teacher_epochs,
                                                                                     int, low=1),
            "batch_size": check_scalar("batch_size", self.batch_size, int, low=1),
            "lr": check_scalar("lr", self.lr, float, low=0, low_open=True),
            "teacher_folds": check_scalar("teacher_folds", self.teacher_folds, int, low=0),
            "l2_embeddings": check_scalar("l2_embeddings", self.l2_embeddings, float, low=0),
            "seed": check_scalar("seed", self.seed, int, low=0),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        check_choice("sharing", self.sharing, tuple(SHARING))
        if self.sharing != "none" and self.mode != "sync":
            raise ValueError(f"sharing: {self.sharing!r} needs mode 'sync' (a two-stage teacher is trained before its "
                             "student, so the two cannot share a table); use 'none'")
        if self.teacher_folds and (self.mode != "two-stage" or self.teacher_folds < 2):
            raise ValueError(f"teacher_folds: 0, or >= 2 with mode 'two-stage'; got {self.teacher_folds!r} with {self.mode!r}")
        if not isinstance(self.distill, DistillConfig) or not isinstance(self.sizes, ModelSizes):
            raise ValueError("distill, sizes: expected a DistillConfig and a ModelSizes")
        if self.sizes.batch_norm and self.batch_size < 2:
            raise ValueError(f"batch_size: batch normalisation needs batches of at least 2 rows, got {self.batch_size}")
        check_optimizer_fields(self)
        self.make_optimizer()  # raises on a bad learning rate, warm-up or optimizer option

    def make_optimizer(self):
        """A fresh optimizer for one training loop: its state and its warm-up start at step 0."""
        return optimizer_from(self, l2_embeddings=self.l2_embeddings, lr_warmup_steps=self.lr_warmup_steps)


@dataclass
class TrainResult:
    """A trained student (and its teacher, if any), with timing and a loss history.

    history : one dict per logged step, ``{"step", "lambda", "hard", "soft", "student_total",
    "teacher_hard"}`` (teacher fields only when a teacher exists; ``aux.<field>`` and ``aux``
    for mtl). auxiliary : mtl's ``auxiliary.AuxiliaryHeads`` (their parameters are in
    ``params``; never served), else None.
    """

    method: str
    student: object
    params: dict
    teacher: object | None
    train_seconds: float
    history: list
    auxiliary: AuxiliaryHeads | None = None

    def student_params(self) -> dict:
        """The student's parameters only (what is served)."""
        return {name: self.params[name] for name in self.student.param_names()}


def models_for(schema, method: str, config: TrainConfig, objectives=None):
    """``distill.build_models`` for ``config``: ``(student, teacher or None)``; with
    ``objectives`` (an ``ObjectiveSet``: several labels per row) the multi-head models of
    ``multihead.build_objective_models`` (the student kind is then the multi-head MLP)."""
    if objectives is not None:
        return build_objective_models(schema, objectives, method, config.sizes, config.sharing)
    return build_models(schema, method, config.student_kind, config.sizes, config.sharing)


def models_of(data: Dataset, method: str, config: TrainConfig):
    """``models_for`` the data: multi-head models for ``ObjectiveData``."""
    return models_for(data.schema, method, config, data.objectives if isinstance(data, ObjectiveData) else None)


def auxiliary_for(data: Dataset, method: str, config: TrainConfig, student) -> AuxiliaryHeads | None:
    """``distill.build_auxiliary`` with the targets of ``data``, the training split (mtl), else None."""
    targets = auxiliary_targets(data) if METHOD_RULES[check_method(method)].auxiliary else ()
    return build_auxiliary(method, student, targets, config.sizes)


def predict(model, params: dict, data: Dataset, batch_size: int = 65536) -> np.ndarray:
    """Logits of ``model`` on every row of ``data``, shape ``(n,)``, in the parameters' dtype
    (evaluation mode: batch normalisation on its running averages)."""
    parts = [model.forward(params, data.take(idx))[0] for idx in batch_indices(data.n, batch_size)]
    return np.concatenate(parts) if parts else np.zeros(0)


class Progress:
    """Progress of one training loop on stderr: ``label: step k/total loss x``.

    On a terminal one line is rewritten at most every ``interval`` seconds; otherwise (a log
    file, CI) a line is written at each quarter of the steps.
    """

    def __init__(self, label: str, total_steps: int, stream=None, interval: float = 0.5):
        self.label, self.total, self.interval = label, total_steps, interval
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = 0.0

    def __call__(self, step: int, loss: float) -> None:
        if self.tty:
            now = time.perf_counter()
            if now - self.last < self.interval and step != self.total:
                return
            self.last = now
            end = "\n" if step == self.total else ""
            self.stream.write(f"\r  {self.label}: step {step}/{self.total} loss {loss:.4f}{end}")
        elif step == self.total or step % max(1, self.total // 4) == 0:
            self.stream.write(f"  {self.label}: step {step}/{self.total} loss {loss:.4f}\n")
        self.stream.flush()


def steps(n: int, batch_size: int, epochs: int) -> int:
    """The number of optimizer steps of ``epochs`` passes over ``n`` rows in batches of ``batch_size``."""
    return epochs * -(-n // batch_size)


def check_warmup(config: TrainConfig, n_rows: int) -> None:
    """``distill.check_schedule`` for the student's training on ``n_rows`` rows."""
    check_schedule(config.distill, steps(n_rows, config.batch_size, config.epochs))


def check_lr_warmup(config: TrainConfig, n_rows: int, teacher_alone: bool) -> None:
    """Raise ValueError when the learning-rate warm-up is longer than a training loop of the
    run (its learning rate would never reach ``lr``). The loops: the student's (with the
    teacher, in sync mode) and, when ``teacher_alone``, a two-stage teacher's, on every row
    or, cross-fitted, on all but the largest fold."""
    loops = {"student": steps(n_rows, config.batch_size, config.epochs)}
    if teacher_alone:
        fit_rows = n_rows - -(-n_rows // config.teacher_folds) if config.teacher_folds else n_rows
        loops["teacher"] = steps(fit_rows, config.batch_size, config.teacher_epochs or config.epochs)
    for loop, n_steps in loops.items():
        if config.lr_warmup_steps > n_steps:
            raise ValueError(f"lr_warmup_steps: {config.lr_warmup_steps} is longer than the {loop}'s training "
                             f"({n_steps} steps of {config.batch_size} rows); the learning rate would never reach its full value")


def check_teacher_folds(config: TrainConfig, n_rows: int) -> None:
    """Raise ValueError (naming ``teacher_folds``) when two-stage cross-fitting has more folds
    than the ``n_rows`` training rows (a fold would hold no row to predict)."""
    if config.teacher_folds > n_rows:
        raise ValueError(f"teacher_folds: {config.teacher_folds} folds of {n_rows} training rows would leave a fold "
                         f"empty; at most {n_rows}")


def check_batch_norm_batches(config: TrainConfig, n_rows: int) -> None:
    """With ``config.sizes.batch_norm``, raise ValueError (naming ``batch_size``) when some
    training batch would hold a single row: batch statistics of one row are degenerate (the
    variance is 0 and the running average's unbiased variance divides by ``n - 1 = 0``;
    PyTorch refuses such a batch too). The last batch of an epoch over ``m`` rows has
    ``m mod batch_size`` rows; ``m`` is the training set's size, and with two-stage
    cross-fitting also each fold teacher's (the rows of the other folds)."""
    if not config.sizes.batch_norm:
        return
    sizes = {n_rows: "the training set"}
    if config.mode == "two-stage" and config.teacher_folds:
        for fold in range(config.teacher_folds):  # fold k holds the rows with (permuted index) % K == k
            held_out = n_rows // config.teacher_folds + (fold < n_rows % config.teacher_folds)
            sizes.setdefault(n_rows - held_out, f"the teacher of fold {fold + 1}/{config.teacher_folds}")
    for size, what in sizes.items():
        if size % config.batch_size == 1:
            raise ValueError(f"batch_size: with batch normalisation, {what} ({size} rows, batches of {config.batch_size}) "
                             "would end each epoch with a batch of 1 row, whose batch statistics are undefined; "
                             "choose another batch size")


def train(data: Dataset, method: str, config: TrainConfig,
          progress: Callable[[str, int], Callable[[int, float], None]] | None = None,
          log_every: int = 50, teacher_logits: np.ndarray | None = None) -> TrainResult:
    """Train ``method``'s student (and teacher) on ``data``: a ``Dataset`` (one label), or
    ``ObjectiveData`` (several objectives: the multi-head models of ``pfd_ref.multihead``,
    ValueError naming an objective without positives in ``data``).

    progress : a factory ``(label, total_steps) -> callback(step, loss)``, e.g. ``Progress``;
    None trains silently.
    teacher_logits : two-stage only, optional ``(n,)`` soft labels made elsewhere; when given,
    no teacher is trained here. With ``config.teacher_folds`` the soft labels are cross-fitted
    and no single teacher exists: ``TrainResult.teacher`` is then None.
    """
    check_method(method)
    if not isinstance(data, Dataset) or data.n == 0:
        raise ValueError("data: expected a Dataset with at least one row")
    student, teacher = models_of(data, method, config)
    if isinstance(data, ObjectiveData):
        check_trainable(data)
    auxiliary = auxiliary_for(data, method, config, student)
    if teacher is not None:
        check_warmup(config, data.n)
    check_batch_norm_batches(config, data.n)
    if teacher_logits is not None and (config.mode != "two-stage" or teacher is None):
        raise ValueError("teacher_logits: only for a two-stage run of a method with a teacher")
    check_lr_warmup(config, data.n, teacher_alone=teacher is not None and config.mode == "two-stage"
                    and teacher_logits is None)
    if teacher is not None and teacher_logits is None:
        check_teacher_folds(config, data.n)
    n_steps = steps(data.n, config.batch_size, config.epochs)
    progress = progress or (lambda label, total: (lambda step, loss: None))
    start = time.perf_counter()
    history = []
    if teacher is None or config.mode == "sync":
        models = [*([teacher] if teacher else []), student, *([auxiliary] if auxiliary else [])]
        params = init_params(config.seed, config.dtype, *models)
        _run_loop(data, student, teacher, params, config, n_steps, history, log_every, progress(method, n_steps), None,
                  auxiliary)
        return TrainResult(method, student, params, teacher, time.perf_counter() - start, history, auxiliary)
    teacher_params = {}
    if teacher_logits is None and not config.teacher_folds:
        teacher_params = init_params(config.seed, config.dtype, teacher)
        teacher_steps = steps(data.n, config.batch_size, config.teacher_epochs or config.epochs)
        fit_alone(data, teacher, teacher_params, config, progress(f"{method} teacher", teacher_steps))
        teacher_logits = predict(teacher, teacher_params, data)
    else:
        if teacher_logits is None:
            teacher_logits = out_of_fold_teacher_logits(data, method, config, config.teacher_folds, progress)
        teacher = None  # soft labels made elsewhere or cross-fitted: no single teacher to report
    params = init_params(config.seed, config.dtype, student)
    _run_loop(data, student, None, params, config, n_steps, history, log_every, progress(method, n_steps), teacher_logits)
    params.update(teacher_params)
    return TrainResult(method, student, params, teacher, time.perf_counter() - start, history)


def fit_alone(data: Dataset, model, params: dict, config: TrainConfig, progress=None) -> None:
    """Train ``model`` by its hard loss alone (a teacher in two-stage mode), in place (batch
    normalisation's running averages included).

    Uses the same batch-order stream as every other loop and its own optimizer, so with equal
    epochs the result equals the teacher of a synchronous run without shared embeddings,
    bit for bit.
    """
    optimizer = config.make_optimizer()
    rng = np.random.default_rng([config.seed, STREAM_BATCH_ORDER])
    epochs = config.teacher_epochs or config.epochs
    for step, idx in enumerate(batch_indices(data.n, config.batch_size, rng, epochs)):
        out = run_step(model, None, params, optimizer, data.take(idx), step, config.distill)
        if progress is not None:
            progress(step + 1, float(out.terms["total"]))


def out_of_fold_teacher_logits(data: Dataset, method: str, config: TrainConfig, folds: int = 5,
                               progress=None) -> np.ndarray:
    """Cross-fitted soft labels for two-stage training, shape ``(n,)``.

    Rows are split into ``folds`` parts by a seeded permutation (stream 4); for each part a
    fresh teacher (same initial parameters) is trained alone on the other parts and predicts
    this part, so no row's soft label comes from a teacher that saw its label. In-sample
    teacher predictions leak the label into the soft target (the teacher has fitted it).
    """
    _, teacher = models_of(data, method, config)
    if teacher is None:
        raise ValueError("method: 'baseline' has no teacher to cross-fit")
    folds = check_scalar("folds", folds, int, low=2, high=data.n)
    fold_of_row = np.empty(data.n, dtype=np.int64)
    fold_of_row[np.random.default_rng([config.seed, STREAM_FOLDS]).permutation(data.n)] = np.arange(data.n) % folds
    logits = None
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of_row == fold)
        params = init_params(config.seed, config.dtype, teacher)
        fit_data = data.take(np.flatnonzero(fold_of_row != fold))
        n_steps = steps(fit_data.n, config.batch_size, config.teacher_epochs or config.epochs)
        fit_alone(fit_data, teacher, params, config, progress(f"{method} teacher fold {fold + 1}/{folds}", n_steps) if progress else None)
        fold_logits = predict(teacher, params, data.take(held_out))
        if logits is None:
            logits = np.empty((data.n, *fold_logits.shape[1:]), dtype=fold_logits.dtype)
        logits[held_out] = fold_logits
    return logits


def check_finite_loss(step: int, terms: dict, objective: str = "total") -> None:
    """Raise ``ValueError`` naming the step and every loss term when ``terms[objective]`` (the
    loss the gradients are of) is NaN or infinite; ``step`` counts from 0 as in the history.

    ``run_step`` calls it before the optimizer, so the parameters stay as they were before
    that step. The models' forward checks its inputs (finite MLP input and parameters) and
    the optimizer its gradients; this catches what lies between, e.g. a weighted mean whose
    sum overflows although every example's loss is finite.
    """
    if not np.isfinite(terms[objective]):
        listing = ", ".join(f"{name}={float(value)}" for name, value in terms.items())
        raise ValueError(f"loss: the {objective!r} loss is {float(terms[objective])} at step {step} (counted from 0; "
                         f"terms: {listing}); the parameters were not updated at this step")


def run_step(student, teacher, params: dict, optimizer, batch, step: int, distill: DistillConfig,
             frozen_teacher_logits: np.ndarray | None = None, auxiliary: AuxiliaryHeads | None = None) -> StepOutput:
    """One optimizer step: ``distill.step_gradients`` on ``batch`` at the (0-based) ``step``
    (with mtl's ``auxiliary`` heads when given), ``check_finite_loss``, ``optimizer.step``,
    then the new running averages of batch normalisation (params updated in place). Returns
    the step's ``StepOutput`` (its gradients are those before the update). A multi-head
    student's step is ``multihead.objective_step_gradients``."""
    gradients = objective_step_gradients if isinstance(student, MultiHeadRanker) else step_gradients
    out = gradients(student, teacher, params, batch, step, distill, frozen_teacher_logits, auxiliary)
    check_finite_loss(step, out.terms)
    optimizer.step(params, out.grads)
    params.update(out.buffers)
    return out


def _run_loop(data, student, teacher, params, config, n_steps, history, log_every, progress, frozen_teacher_logits,
              auxiliary=None):
    """One loop over the student's batches. With ``teacher`` (sync): both models step on
    every batch, the teacher on its hard loss only, from logits computed before the step.
    With ``frozen_teacher_logits`` (two-stage): the soft labels are read, nothing else. With
    ``auxiliary`` (mtl): its heads step with the student."""
    optimizer = config.make_optimizer()
    rng = np.random.default_rng([config.seed, STREAM_BATCH_ORDER])
    for step, idx in enumerate(batch_indices(data.n, config.batch_size, rng, config.epochs)):
        frozen = None if frozen_teacher_logits is None else frozen_teacher_logits[idx]
        out = run_step(student, teacher, params, optimizer, data.take(idx), step, config.distill, frozen, auxiliary)
        if step % log_every == 0 or step == n_steps - 1:
            history.append({"step": step, "lambda": out.lam, **{k: float(v) for k, v in out.terms.items()}})
        progress(step + 1, float(out.terms["student_total"]))


def with_seed(config: TrainConfig, seed: int) -> TrainConfig:
    """``config`` with another seed."""
    return replace(config, seed=seed)

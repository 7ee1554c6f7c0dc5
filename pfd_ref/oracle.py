"""Correctness-oracle cases: reference numbers for one tiny PFD problem, and a checker.

A *case* is one ``.npz`` (docs/oracle.md is its full specification) holding a tiny batch
(regular and privileged columns, labels, optional per-example weights), every initial
parameter of the student and teacher by name, the hyperparameters (as JSON in the string
array ``meta``), and what pfd_ref computes from them:

* the soft-loss weight lambda of each of its ``STEPS = 3`` steps (all on the same batch);
* the logits, each loss term and the gradient of every trained parameter at the first step;
* the parameters after 1 and after 3 optimizer steps (Adam, Adagrad or SGD), and the
  learning rate of every step when the case has a learning-rate warm-up (with batch
  normalisation, also the running averages, and the student's evaluation-mode logits after
  step 3).

``compute_case(spec)`` builds the arrays, ``save_case``/``pfd_ref.data.dataset.load_npz`` write and read them
(``allow_pickle=False``), ``check_arrays(case, theirs)`` compares another implementation's
arrays with the case's, name by name, and ``CheckReport.format()`` prints the result.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from pfd_ref import layers
from pfd_ref.data import Dataset, MultiIds
from pfd_ref.data.dataset import load_npz, pack_columns, save_npz
from pfd_ref.data.objectives import ObjectiveData, ObjectiveSet
from pfd_ref.distill import (HARD_WEIGHTS, METHODS, SHARING, STUDENT_KINDS, DistillConfig, ModelSizes, check_method,
                             init_params)
from pfd_ref.layers import ACTIVATIONS, LEAKY_RELU_SLOPE
from pfd_ref.models import TOWER_NORMS
from pfd_ref.optim import OPTIMIZERS, SPARSE_MODES, check_optimizer_fields, optimizer_from
from pfd_ref.schema import FeatureSpec, Schema
from pfd_ref.sparse import to_dense
from pfd_ref.train import MODES, TrainConfig, auxiliary_for, models_for, run_step
from pfd_ref.validation import POOLINGS, check_choice, check_pooling, check_scalar

FORMAT_NAME = "pfd_ref oracle case"
FORMAT_VERSION = 1
META_KEY = "meta"
STEPS = 3
AFTER_STEPS = (1, 3)
STREAM_CASE_DATA = 5
BIAS_INIT_STD = 0.1
RUNNING_VAR_INIT_RANGE = (0.5, 1.5)
CASE_SIZES = ModelSizes(embed_dim=3, student_hidden=(4,), tower_out_dim=3, strong_hidden=(5, 4))
STUDENT_HIDDEN = (4, 3)  # the student's hidden sizes are STUDENT_HIDDEN[:student_layers]
MULTIHEAD = "multihead"  # the case kind of the multi-head student (pfd_ref.multihead)
CASE_MODELS = (*STUDENT_KINDS, MULTIHEAD)
# The objectives of a multi-head case: cat_clicks gives the click away (as the watch time does), so
# the teachers that read it (pfd, pfd+md, lupi) distil like and comment only, and md's distils all three.
CASE_OBJECTIVES = ObjectiveSet(("click", "like", "comment"), ("all", "played", "played"), (1.0, 2.0, 0.5),
                               (("cat_clicks",), (), ()))
OPTIMIZER_RULES = {  # (optimizer, how its embedding tables are updated) -> the torch optimizer that matches
    ("adam", "lazy"): "adam_lazy = torch.optim.SparseAdam on embedding tables + torch.optim.Adam elsewhere",
    ("adam", "dense"): "adam_dense = torch.optim.Adam on every parameter (embedding gradients densified)",
    ("adagrad", "lazy"): "adagrad_lazy = torch.optim.Adagrad on every parameter, embedding tables with sparse gradients",
    ("adagrad", "dense"): "adagrad_dense = torch.optim.Adagrad on every parameter (embedding gradients densified)",
    ("sgd", None): "sgd = torch.optim.SGD on every parameter",
}
LR_WARMUP_RULE = ("; learning rate: torch.optim.lr_scheduler.LambdaLR with the factor "
                  "min(1, (start_step + t + 1) / lr_warmup_steps) at the case's 0-based step t")
DEFAULT_TOLERANCES = {"float64": (1e-9, 1e-12), "float32": (1e-4, 1e-6)}
SUMMARY_NAMES = 4  # failing names repeated in the report's last line


@dataclass(frozen=True)
class CaseSpec:
    """Everything that determines a case (stored in its ``meta`` under ``"case"``).

    model : student kind, "mlp", "two_tower" or "multihead" (the multi-head student of
    ``pfd_ref.multihead`` with the objectives ``CASE_OBJECTIVES``); method : one of
    ``distill.METHODS`` (baseline, mtl (MLP only), md, lupi, pfd, pfd+md);
    mode : "sync" or "two-stage" (recorded but without effect for "baseline");
    seed : draws the batch and the initial parameters; dtype : "float64" or "float32";
    rows : batch size n (>= 2); lambda_, temperature, warmup_steps, hard_weight : the
    ``DistillConfig``; start_step : the global (0-based) index of the case's first step, so
    step ``k`` (1..3) uses ``lambda_at(start_step + k - 1)`` and the learning rate
    ``warmup_lr(lr, start_step + k - 1, lr_warmup_steps)``; optimizer : "adam", "adagrad"
    or "sgd", its state fresh at the case's first step; lr, lr_warmup_steps : the learning
    rate and its linear warm-up (0: none); beta1, beta2, eps, adam_sparse : Adam's options;
    adagrad_initial_accumulator, adagrad_eps, adagrad_sparse : Adagrad's (an option of
    another optimizer must stay at its default);
    sharing : which tables teacher and student share, a key of ``distill.SHARING`` ("none",
    "all", "all-but-user-id"; sync only); mtl_weight : alpha of method mtl;
    weights : draw per-example weights; binary_privileged : draw the dense privileged field
    ``cat_clicks`` as 0/1 (from the same normal draws, ``1[x > 0]``: a binary target for mtl);
    pooling : "mean" or "sum", the pooling of the multi-id field ``recent``;
    activation, batch_norm, tower_norm, tower_scale : the layers of every model
    (``train.ModelSizes``); student_layers : 1 or 2, the student's hidden sizes (4,) or (4, 3)
    (with 2, mtl's heads have a hidden layer of 3 units).
    """

    # The metadata (choices, required, help, flag) makes the options of ``pfd-ref oracle dump``.
    model: str = field(default="mlp", metadata=dict(choices=CASE_MODELS, required=True,
                                                    help="the student's kind (multihead: one head per objective)"))
    method: str = field(default="pfd", metadata=dict(choices=METHODS, required=True))
    mode: str = field(default="sync", metadata=dict(choices=MODES, required=True))
    seed: int = 0
    dtype: str = field(default="float64", metadata=dict(choices=tuple(DEFAULT_TOLERANCES)))
    rows: int = field(default=8, metadata=dict(help="batch size, >= 2 (one row of each label)"))
    lambda_: float = 0.5
    temperature: float = 1.0
    warmup_steps: int = 0
    start_step: int = field(default=0, metadata=dict(
        help="global 0-based index of the case's first step (lambda and learning-rate schedules)"))
    hard_weight: str = field(default="one_minus_lambda", metadata=dict(choices=HARD_WEIGHTS))
    lr: float = 0.01
    beta1: float = field(default=0.9, metadata=dict(help="Adam"))
    beta2: float = field(default=0.999, metadata=dict(help="Adam"))
    eps: float = field(default=1e-8, metadata=dict(help="Adam"))
    adam_sparse: str = field(default="lazy", metadata=dict(
        flag="--adam", choices=SPARSE_MODES, help="Adam's embedding tables: lazy (SparseAdam rule) or dense (Adam rule)"))
    optimizer: str = field(default="adam", metadata=dict(choices=tuple(OPTIMIZERS)))
    lr_warmup_steps: int = field(default=0, metadata=dict(
        help="linear learning-rate warm-up: lr * min(1, (start_step + k) / N) at step k = 1..3"))
    adagrad_initial_accumulator: float = 0.1
    adagrad_eps: float = 0.0
    adagrad_sparse: str = field(default="lazy", metadata=dict(
        flag="--adagrad", choices=SPARSE_MODES, help="Adagrad's embedding tables: lazy (sparse gradients) or dense (densified)"))
    sharing: str = field(default="none", metadata=dict(
        flag="--share", choices=tuple(SHARING), help="sync: the tables teacher and student share (docs/method.md)"))
    mtl_weight: float = field(default=0.5, metadata=dict(help="mtl: the auxiliary losses' weight"))
    weights: bool = field(default=False, metadata=dict(help="per-example weights"))
    binary_privileged: bool = field(default=False, metadata=dict(
        help="draw the dense privileged field cat_clicks as 0/1 (a binary target for mtl)"))
    pooling: str = field(default="mean", metadata=dict(choices=POOLINGS, help="of the multi-id field"))
    activation: str = field(default="relu", metadata=dict(
        choices=ACTIVATIONS, help=f"hidden activation of every MLP (leaky_relu: slope {LEAKY_RELU_SLOPE})"))
    batch_norm: bool = field(default=False, metadata=dict(help="batch normalisation before every hidden activation"))
    tower_norm: str = field(default="none", metadata=dict(choices=TOWER_NORMS, help="two-tower models: l2-normalise both towers"))
    tower_scale: float = field(default=1.0, metadata=dict(help="two-tower models: score = S * <u, v> + b"))
    student_layers: int = field(default=1, metadata=dict(
        choices=(1, 2), help=f"the student's hidden layers: sizes {STUDENT_HIDDEN[:1]} or {STUDENT_HIDDEN}"))

    def __post_init__(self):
        object.__setattr__(self, "seed", check_scalar("seed", self.seed, int, low=0))
        object.__setattr__(self, "rows", check_scalar("rows", self.rows, int, low=2))  # one row of each label
        object.__setattr__(self, "start_step", check_scalar("start_step", self.start_step, int, low=0))
        for name in ("weights", "binary_privileged"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        check_choice("dtype", self.dtype, tuple(DEFAULT_TOLERANCES))
        check_pooling(self.pooling)
        if self.model != "two_tower" and (self.tower_norm != "none" or self.tower_scale != 1):
            raise ValueError(f"tower_norm: tower normalisation and scale are for model 'two_tower', got {self.model!r}")
        object.__setattr__(self, "student_layers", check_scalar("student_layers", self.student_layers, int, low=1, high=2))
        check_optimizer_fields(self)
        self.make_optimizer()  # raises on a bad optimizer setting
        # raises on a bad model, method, mode, sharing or distillation setting, or a method the model does not take
        models_for(case_schema(self.pooling), self.method, self.train_config(), self.objectives())

    def objectives(self) -> ObjectiveSet | None:
        """``CASE_OBJECTIVES`` for a multi-head case, else None."""
        return CASE_OBJECTIVES if self.model == MULTIHEAD else None

    def distill_config(self) -> DistillConfig:
        return DistillConfig(lambda_=self.lambda_, warmup_steps=self.warmup_steps, temperature=self.temperature,
                             hard_weight=self.hard_weight, mtl_weight=self.mtl_weight)

    def train_config(self) -> TrainConfig:
        check_method(self.method)
        return TrainConfig(student_kind="mlp" if self.model == MULTIHEAD else self.model, mode=self.mode, lr=self.lr, distill=self.distill_config(),
                           sharing=self.sharing, adam_sparse=self.adam_sparse, dtype=self.dtype,
                           seed=self.seed, sizes=replace(CASE_SIZES, student_hidden=STUDENT_HIDDEN[:self.student_layers],
                                                         activation=self.activation,
                                                         batch_norm=self.batch_norm, tower_norm=self.tower_norm,
                                                         tower_scale=self.tower_scale))

    def make_optimizer(self):
        """A fresh optimizer whose warm-up schedule starts at ``start_step``."""
        return optimizer_from(self, lr_warmup_steps=self.lr_warmup_steps, start_step=self.start_step)

    def optimizer_rule(self) -> str:
        """The torch optimizer (and scheduler) that reproduces this case's updates (docs/oracle.md)."""
        table_mode = {"adam": self.adam_sparse, "adagrad": self.adagrad_sparse}.get(self.optimizer)
        return OPTIMIZER_RULES[self.optimizer, table_mode] + (LR_WARMUP_RULE if self.lr_warmup_steps else "")

    @classmethod
    def from_dict(cls, data: dict) -> "CaseSpec":
        """Inverse of ``dataclasses.asdict``; ValueError on unknown keys. A case written before
        ``sharing`` existed names it ``shared_embeddings`` (true: "all", false: "none")."""
        data = dict(data)
        if "shared_embeddings" in data and "sharing" not in data:
            data["sharing"] = "all" if data.pop("shared_embeddings") else "none"
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"data: unknown case setting(s) {unknown}")
        return cls(**data)


def case_schema(pooling: str = "mean") -> Schema:
    """The schema of every case: user fields ``user_id`` (categorical, 5 ids), ``recent``
    (multi-id, 6 ids, pooled by ``pooling``), ``age`` (dense, width 2); item fields
    ``item_id`` (6 ids) and ``shop`` (3 ids); privileged ``cat_clicks`` (dense, width 2) and
    ``chatted`` (categorical, 3 ids). Small vocabularies, so a batch repeats some ids (their
    gradient rows are summed) and leaves others untouched (lazy and dense Adam differ there)."""
    return Schema((
        FeatureSpec("user_id", "categorical", "regular", "user", vocab_size=5),
        FeatureSpec("recent", "multi_categorical", "regular", "user", vocab_size=6, pooling=pooling),
        FeatureSpec("age", "dense", "regular", "user", width=2),
        FeatureSpec("item_id", "categorical", "regular", "item", vocab_size=6),
        FeatureSpec("shop", "categorical", "regular", "item", vocab_size=3),
        FeatureSpec("cat_clicks", "dense", "privileged", None, width=2),
        FeatureSpec("chatted", "categorical", "privileged", None, vocab_size=3),
    ))


def _case_batch(spec: CaseSpec, schema: Schema, rng: np.random.Generator) -> Dataset:
    """``spec.rows`` random rows: ids uniform over each vocabulary, dense columns standard
    normal (``1[x > 0]`` for a privileged one when ``spec.binary_privileged``), 0..3 ids per
    multi-id row with row 0 empty, labels 0 and 1 in rows 0 and 1, and weights uniform in
    [0.5, 2) in the case's dtype when ``spec.weights``. A multi-head case's rows are
    ``ObjectiveData``: the labels are the click's, the odd rows played, the other objectives
    0/1 with probability 1/2 on the played rows (drawn after the weights) and 0 elsewhere."""
    n = spec.rows
    columns = {}
    for f in schema:
        if f.kind == "categorical":
            columns[f.name] = rng.integers(0, f.vocab_size, n)
        elif f.kind == "dense":
            columns[f.name] = rng.standard_normal((n, f.width))
            if spec.binary_privileged and f.role == "privileged":
                columns[f.name] = (columns[f.name] > 0).astype(np.float64)
        else:
            lengths = rng.integers(0, 4, n)
            lengths[0] = 0
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            columns[f.name] = MultiIds(rng.integers(0, f.vocab_size, offsets[-1]), offsets)
    labels = rng.random(n) < 0.5
    labels[:2] = (False, True)
    weights = rng.uniform(0.5, 2.0, n).astype(spec.dtype) if spec.weights else None
    if spec.model == MULTIHEAD:  # then one label per objective, and rows 0, 2, 4, ... unplayed
        objectives = spec.objectives()
        played = np.arange(n) % 2
        targets = (rng.random((n, len(objectives.names))) < 0.5).astype(np.int8)
        targets[:, 0] = labels
        targets[played == 0, 1:] = 0
        return ObjectiveData(schema, columns, objectives, targets, played, user_ids=columns["user_id"], weights=weights)
    return Dataset(schema, columns, labels.astype(np.int8), user_ids=columns["user_id"], weights=weights)


def _model_layout(model) -> dict:
    """How ``model`` reads its parameters: per input slot the field and its table (None for
    a dense column), in concatenation order, the MLP layers' name prefixes, the hidden
    activation and its negative slope, the batch normalisation's constants (None without it)
    and, for a two-tower model, the tower normalisation, its epsilon and the scale."""
    def inputs(encoder):
        return [{"field": f.name, "table": encoder.table_names.get(f.name)} for f in encoder.fields]

    def layer_names(stack):
        return [w.removesuffix(".weight") for w, _ in stack.names]

    stack = model.user_mlp if model.kind == "two_tower" else model.mlp
    batch_norm = {"eps": layers.BATCH_NORM_EPS, "momentum": layers.BATCH_NORM_MOMENTUM,
                  "running_var": "unbiased"} if stack.batch_norm else None
    common = {"activation": stack.activation, "negative_slope": layers.negative_slope(stack.activation),
              "batch_norm": batch_norm}
    if model.kind == "mlp":
        return {"kind": "mlp", "inputs": inputs(model.encoder), "mlp": layer_names(model.mlp), **common}
    if model.kind == MULTIHEAD:  # the output layer's column k is objective k's head
        return {"kind": MULTIHEAD, "inputs": inputs(model.encoder), "mlp": layer_names(model.mlp), **common,
                "objectives": list(model.objectives), "distilled": list(model.distilled)}
    return {"kind": "two_tower", "user_inputs": inputs(model.user_encoder), "item_inputs": inputs(model.item_encoder),
            "user_mlp": layer_names(model.user_mlp), "item_mlp": layer_names(model.item_mlp),
            "bias": f"{model.prefix}.bias" if model.bias else None, **common, "tower_norm": model.tower_norm,
            "tower_norm_eps": layers.L2_NORM_EPS if model.tower_norm == "l2" else None,
            "tower_scale": model.tower_scale}


def _auxiliary_layout(auxiliary, student) -> dict | None:
    """How mtl's heads read their parameters: what they read (the student's first hidden
    layer's output, i.e. the input of its layer ``student.mlp.1``), each target (field, kind,
    width, the standardisation's mean and std) with its head's layer prefixes, and the heads'
    activation and batch normalisation (as a model layout's). None without heads."""
    if auxiliary is None:
        return None
    stack = auxiliary.stacks[0]
    batch_norm = {"eps": layers.BATCH_NORM_EPS, "momentum": layers.BATCH_NORM_MOMENTUM,
                  "running_var": "unbiased"} if stack.batch_norm else None
    return {"reads": f"{student.prefix}.mlp.0 (its output after the activation: the input of {student.prefix}.mlp.1)",
            "targets": [{**target.to_dict(), "mlp": [w.removesuffix(".weight") for w, _ in head.names]}
                        for target, head in zip(auxiliary.targets, auxiliary.stacks)],
            "activation": stack.activation, "negative_slope": layers.negative_slope(stack.activation),
            "batch_norm": batch_norm}


def _input_arrays(batch: Dataset) -> dict[str, np.ndarray]:
    arrays = pack_columns("input", batch.columns)
    arrays["input.labels"] = batch.labels
    if isinstance(batch, ObjectiveData):
        arrays["input.targets"], arrays["input.played"] = batch.targets, batch.played.astype(np.int8)
    if batch.weights is not None:
        arrays["input.weights"] = batch.weights
    return arrays


def compute_case(spec: CaseSpec) -> dict[str, np.ndarray]:
    """All arrays of the case ``spec``, in file order: ``meta``, ``input.*``, ``param.*``
    (initial values), ``output.*`` (docs/oracle.md lists every name, shape and dtype).

    Initial parameters: ``distill.init_params`` of the teacher (stream ``[seed, 2]``), of
    the student (stream ``[seed, 1]``) and of mtl's auxiliary heads (stream ``[seed, 7]``;
    their targets' statistics from the case's batch), as in ``train.train``; then, in
    parameter order, every
    bias and batch-normalisation ``beta`` and ``running_mean`` is redrawn
    ``~ N(0, BIAS_INIT_STD^2)``, every ``gamma`` ``~ 1 + N(0, BIAS_INIT_STD^2)`` and every
    ``running_var`` ``~ U(RUNNING_VAR_INIT_RANGE)``, from the data stream ``[seed, 5]``
    (after the batch), so that a mishandled one shows at the first step. Step k = 1..3 is
    ``train.run_step`` (the step of every training loop: gradients, one step of
    ``spec.make_optimizer()``, the running-average update) on the same batch at the global
    step ``start_step + k - 1``. In two-stage mode the teacher's logits are computed once from
    its parameters, in evaluation mode, and held fixed; only the student is trained.
    """
    schema = case_schema(spec.pooling)
    config = spec.train_config()
    student, teacher = models_for(schema, spec.method, config, spec.objectives())
    dtype = np.dtype(spec.dtype)
    rng = np.random.default_rng([spec.seed, STREAM_CASE_DATA])
    batch = _case_batch(spec, schema, rng)
    auxiliary = auxiliary_for(batch, spec.method, config, student)  # mtl: targets from the case's batch
    params = init_params(spec.seed, dtype, *([teacher] if teacher else []), student, *([auxiliary] if auxiliary else []))
    for name in params:
        if name.endswith((".bias", ".bn.beta", ".bn.running_mean")):
            params[name] = (BIAS_INIT_STD * rng.standard_normal(params[name].shape)).astype(dtype)
        elif name.endswith(".bn.gamma"):
            params[name] = (1 + BIAS_INIT_STD * rng.standard_normal(params[name].shape)).astype(dtype)
        elif name.endswith(".bn.running_var"):
            params[name] = rng.uniform(*RUNNING_VAR_INIT_RANGE, size=params[name].shape).astype(dtype)
    sync = teacher is not None and spec.mode == "sync"
    meta = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "case": asdict(spec), "steps": STEPS,
        "optimizer_rule": spec.optimizer_rule(), "schema": json.loads(schema.to_json()),
        "models": {"student": _model_layout(student), "teacher": None if teacher is None else _model_layout(teacher),
                   "auxiliary": _auxiliary_layout(auxiliary, student)},
        "teacher_trained": sync,
    }
    if spec.objectives() is not None:
        meta["objectives"] = spec.objectives().to_dict()
    arrays = {META_KEY: np.array(json.dumps(meta))}
    arrays.update(_input_arrays(batch))
    arrays.update(pack_columns("param", {name: value.copy() for name, value in params.items()}))
    arrays.update(_run_steps(spec, student, teacher, sync, params, batch, auxiliary))
    return arrays


def _run_steps(spec: CaseSpec, student, teacher, sync: bool, params: dict, batch: Dataset,
               auxiliary=None) -> dict[str, np.ndarray]:
    """The ``output.*`` arrays: the lambda of every step (and its learning rate, with a
    learning-rate warm-up), first-step logits, losses and gradients, the trained parameters
    and running averages after steps ``AFTER_STEPS``, and with batch normalisation the
    student's evaluation-mode logits after the last step. Updates ``params`` in place."""
    distill = spec.distill_config()
    frozen_teacher_logits = None if teacher is None or sync else teacher.forward(params, batch)[0]
    optimizer = spec.make_optimizer()
    outputs, lambdas = {"output.lambdas": None}, []  # the lambdas come first in the file
    if spec.lr_warmup_steps:
        outputs["output.lrs"] = np.zeros(STEPS, dtype=np.float64)  # filled in below, step by step
    for k in range(1, STEPS + 1):
        if spec.lr_warmup_steps:
            outputs["output.lrs"][k - 1] = optimizer.current_lr()
        out = run_step(student, teacher if sync else None, params, optimizer, batch, spec.start_step + k - 1, distill,
                       frozen_teacher_logits, auxiliary)
        lambdas.append(out.lam)
        trained = [name for name in params if name in out.grads]
        if k == 1:
            outputs["output.student_logits"] = out.student_logits
            if out.teacher_logits is not None:
                outputs["output.teacher_logits"] = out.teacher_logits
            for term, value in out.terms.items():
                if not np.isnan(value):  # "soft" without a teacher does not exist
                    outputs[f"output.loss.{term}"] = np.asarray(value)
            outputs.update({f"output.grad.{name}": to_dense(out.grads[name]) for name in trained})
        if k in AFTER_STEPS:
            outputs.update({f"output.after{k}.{name}": params[name].copy() for name in trained + list(out.buffers)})
    outputs["output.lambdas"] = np.array(lambdas, dtype=np.float64)
    if spec.batch_norm:
        outputs["output.eval_student_logits"] = student.forward(params, batch)[0]
    return outputs


def save_case(path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to one compressed ``.npz`` at exactly ``path``, atomically (no pickled objects)."""
    save_npz(path, arrays, compressed=True)


def case_meta(arrays: dict[str, np.ndarray], name: str = "case") -> dict:
    """The decoded ``meta`` of a case; ValueError starting with ``name`` if it is not a case."""
    try:
        meta = json.loads(str(arrays[META_KEY]))
    except (KeyError, json.JSONDecodeError):
        raise ValueError(f"{name}: not a pfd_ref oracle case (no readable {META_KEY!r} array)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{name}: not a pfd_ref oracle case ({META_KEY!r} does not name the format)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{name}: case format {meta.get('format_version')}; this version reads {FORMAT_VERSION}")
    return meta


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class ArrayResult:
    """The comparison of one array. ``problem`` is "" (values compared), "missing",
    "extra", "shape ..." or "dtype ..."; the errors are NaN when the values were not compared
    or THEIRS holds a NaN, infinite where it holds an infinity. ``max_rel_error`` is over the
    entries where the case is not 0; an entry where the case is 0 passes or fails on ``atol``
    alone and counts 0 (passes) or infinity (fails) here."""

    name: str
    shape: tuple | None
    max_abs_error: float
    max_rel_error: float
    passed: bool
    problem: str = ""


@dataclass(frozen=True)
class CheckReport:
    """All comparisons of one check, in the case's array order, then the extra arrays."""

    results: tuple[ArrayResult, ...]
    rtol: float
    atol: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        """Names of the arrays that failed, in report order."""
        return [r.name for r in self.results if not r.passed]

    def format(self, only_failures: bool = False) -> str:
        """A table: name, shape, worst absolute and relative error, ok/FAIL (with the
        problem), then one summary line naming the first failures. ``only_failures`` leaves
        out the passing rows."""
        width = max([len(r.name) for r in self.results] + [5])
        lines = [f"{'array':<{width}}  {'shape':<10} {'max abs err':>11}  {'max rel err':>11}  result"]
        for r in self.results:
            if only_failures and r.passed:
                continue
            shape = "-" if r.shape is None else str(r.shape)
            not_compared = r.problem and math.isnan(r.max_abs_error)  # missing, extra, shape, dtype
            errors = "          -            -" if not_compared else (
                f"{r.max_abs_error:11.3e}  {r.max_rel_error:11.3e}")
            verdict = "ok" if r.passed else "FAIL" + (f" ({r.problem})" if r.problem else "")
            lines.append(f"{r.name:<{width}}  {shape:<10} {errors}  {verdict}")
        n = len(self.results)
        tolerance = f"|theirs - case| <= {self.atol:g} + {self.rtol:g} |case|"
        if self.passed:
            lines.append(f"PASS: {n} arrays, every entry within {tolerance}")
        else:
            failed = self.failed
            listed = ", ".join(failed[:SUMMARY_NAMES]) + (f", ... (+{len(failed) - SUMMARY_NAMES} more)"
                                                            if len(failed) > SUMMARY_NAMES else "")
            lines.append(f"FAIL: {len(failed)} of {n} arrays ({tolerance}): {listed}")
        return "\n".join(lines)


INTEGER_KINDS = "biu"  # ids, offsets and labels: compared by value whatever their integer (or boolean) dtype


def _compare(name: str, expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float) -> ArrayResult:
    integers = expected.dtype.kind in INTEGER_KINDS and actual.dtype.kind in INTEGER_KINDS
    if actual.dtype != expected.dtype and not integers:
        return ArrayResult(name, expected.shape, math.nan, math.nan, False,
                           f"dtype {actual.dtype}, expected {expected.dtype}")
    if actual.shape != expected.shape:
        return ArrayResult(name, expected.shape, math.nan, math.nan, False,
                           f"shape {actual.shape}, expected {expected.shape}")
    if expected.dtype.kind not in "fc":  # ids, offsets, labels: must be equal
        equal = bool(np.array_equal(actual, expected))
        return ArrayResult(name, expected.shape, 0.0 if equal else math.inf, 0.0 if equal else math.inf, equal,
                           "" if equal else "values differ")
    if expected.size == 0:
        return ArrayResult(name, expected.shape, 0.0, 0.0, True)
    expected64, actual64 = expected.astype(np.float64), actual.astype(np.float64)
    abs_error = np.abs(actual64 - expected64)  # NaN where theirs is NaN, infinity where it is infinite
    tolerance = atol + rtol * np.abs(expected64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_error = np.where(expected64 != 0, abs_error / np.abs(expected64),
                             np.where(abs_error <= tolerance, 0.0, math.inf))  # a zero of the case: atol alone
    rel_error[np.isnan(abs_error)] = math.nan
    passed = bool(np.all(abs_error <= tolerance))
    return ArrayResult(name, expected.shape, float(np.max(abs_error)), float(np.max(rel_error)), passed)


def default_tolerances(case: dict[str, np.ndarray]) -> tuple[float, float]:
    """``(rtol, atol)`` for the case's dtype: (1e-9, 1e-12) for float64, (1e-4, 1e-6) for float32."""
    return DEFAULT_TOLERANCES[case_meta(case)["case"]["dtype"]]


def check_arrays(case: dict[str, np.ndarray], theirs: dict[str, np.ndarray], rtol: float | None = None,
                 atol: float | None = None) -> CheckReport:
    """Compare another implementation's arrays ``theirs`` with the case's, by name.

    Required: every ``output.*`` array of the case. Compared: every array of ``theirs``
    except ``meta`` (so ``input.*`` and ``param.*`` copies are checked too when present).
    An array of ``theirs`` with a name the case lacks is an "extra" failure; a missing one, a
    dtype or a shape that differs fails with that problem (integer arrays of any integer or
    boolean dtype are compared by value: ``int64`` labels match the case's ``int8``). Floating
    arrays pass when every entry satisfies ``|theirs - case| <= atol + rtol |case|`` (NaN or
    infinity never passes); integer arrays must be equal. Errors: ``max |theirs - case|`` and
    ``max |theirs - case| / |case|`` (``ArrayResult``: NaN when THEIRS has a NaN; a zero of the
    case counts 0 when within ``atol``, infinity when not).
    rtol, atol : None for ``default_tolerances(case)``; otherwise finite and >= 0.
    """
    default_rtol, default_atol = default_tolerances(case)
    rtol = default_rtol if rtol is None else check_scalar("rtol", rtol, float, low=0)
    atol = default_atol if atol is None else check_scalar("atol", atol, float, low=0)
    results = []
    for name, expected in case.items():
        if name == META_KEY:
            continue
        if name in theirs:
            results.append(_compare(name, expected, np.asarray(theirs[name]), rtol, atol))
        elif name.startswith("output."):
            results.append(ArrayResult(name, expected.shape, math.nan, math.nan, False, "missing"))
    results += [ArrayResult(name, None, math.nan, math.nan, False, "extra")
                for name in theirs if name != META_KEY and name not in case]
    return CheckReport(tuple(results), rtol, atol)


def check_files(case_path, theirs_path, rtol: float | None = None, atol: float | None = None) -> CheckReport:
    """``check_arrays`` on two ``.npz`` files (the case first)."""
    case = load_npz(case_path, "case")
    case_meta(case, f"case: {os.fspath(case_path)!r}")
    return check_arrays(case, load_npz(theirs_path, "theirs"), rtol, atol)


def recompute(case: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of the case rebuilt by this version of pfd_ref from the case's settings."""
    return compute_case(CaseSpec.from_dict(case_meta(case)["case"]))


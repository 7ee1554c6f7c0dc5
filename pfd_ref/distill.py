"""The whole PFD rule: which teacher each method has, which gradient reaches which parameter
(shared tables included), and the lambda schedule. ``train.py`` runs the loops and
``oracle.py`` the steps of one case; both call ``init_params`` and ``step_gradients`` here.

Synchronous PFD (Xu et al. 2020) minimises over the student's parameters ``W_s`` and the
teacher's ``W_t``::

    L = a(lambda) * L_hard(y, s) + lambda * L_soft(s, t) + L_hard(y, t)

with ``s = f_s(X; W_s)`` and ``t = f_t(X, X*; W_t)`` the logits, ``a(lambda) = 1 - lambda``
(the paper; ``hard_weight="one"`` gives ``a = 1``) and ``L_soft`` taking ``t`` as a constant
(stop-gradient): the teacher is moved only by its own hard loss. Two-stage PFD minimises the
first two terms with a frozen teacher. A table both models read (``SHARING``) receives the
sum of the two paths' gradients. docs/method.md states the rule, docs/derivations.md
("The PFD objective and who receives which gradient") derives it.

Methods (each produces the same student architecture, served without privileged features);
``METHOD_RULES`` is the table the code reads:

============  ==============================================================================
baseline      the student alone, hard loss only
mtl           no teacher: auxiliary heads on the student predict the privileged features
              (``pfd_ref.auxiliary``; MLP student only)
md            teacher = a stronger model over regular features only (model distillation)
lupi          teacher = an MLP over the privileged features only (Lopez-Paz et al.)
pfd           teacher = the student's architecture plus the privileged features
pfd+md        teacher = the stronger model over regular + privileged features
============  ==============================================================================

The stronger model is an ``MLPRanker`` with ``sizes.strong_hidden`` over its fields (for the
two-tower student, the inputs of both towers); LUPI's teacher an ``MLPRanker`` with
``sizes.student_hidden`` (the paper's LUPI teachers: an MLP 512-256-128, the widths of its
students). A two-tower teacher of the student's architecture feeds its fields without a
tower (the privileged ones) into its user tower (docs/method.md). A new method is one entry
of ``METHOD_RULES`` (and, for a new kind of teacher input, one of ``TEACHER_FIELDS``); a new
way of sharing tables is one entry of ``SHARING``.

Sharing (sync mode, ``SHARING``): ``none``; ``all`` (every regular field's table is read by
both models); ``all-but-user-id`` (the paper's "Share*": all but the field ``USER_ID_FIELD``,
of which each model keeps its own table). Privileged tables and MLP weights are never shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from pfd_ref.auxiliary import AuxiliaryHeads, check_targets_schema
from pfd_ref.layers import check_activation
from pfd_ref.losses import hard_loss, soft_loss
from pfd_ref.models import MLPRanker, SharedTables, TwoTower, check_tower_norm
from pfd_ref.schema import FeatureSpec, Schema
from pfd_ref.validation import check_choice, check_scalar

HARD_WEIGHTS = ("one_minus_lambda", "one")
STUDENT_KINDS = ("two_tower", "mlp")
# Independent random streams of one seed, default_rng([seed, stream]): the student's and the
# teacher's initial parameters (train.py and oracle.py add the batch order and others).
INIT_STREAM = {"student": 1, "teacher": 2, AuxiliaryHeads.prefix: 7}
SHARED_PREFIX = "shared"  # a shared table is the parameter f"{SHARED_PREFIX}.embed.{field}"
USER_ID_FIELD = "user_id"  # the field whose table "all-but-user-id" keeps apart


@dataclass(frozen=True)
class ModelSizes:
    """Widths and layers of the models (student and teachers alike).

    ``student_hidden``: MLP student hidden sizes, or the hidden sizes of each tower of a
    two-tower student (whose towers end in ``tower_out_dim`` units); ``strong_hidden``: the
    hidden sizes of the stronger MLP teacher (md and pfd+md). ``activation`` ("relu" or
    "leaky_relu", slope ``layers.LEAKY_RELU_SLOPE``) and ``batch_norm`` (before every hidden
    activation) apply to every MLP: the MLP ranker, the towers, the teachers.
    ``tower_norm`` ("none" or "l2") and ``tower_scale`` (> 0) apply to two-tower models: logit
    ``= tower_scale * <f(u), f(v)> + b`` (``models.TwoTower``; the paper: "l2" and 5).
    """

    embed_dim: int = 16
    student_hidden: tuple = (64, 32)
    tower_out_dim: int = 32
    strong_hidden: tuple = (256, 128, 64)
    activation: str = "relu"
    batch_norm: bool = False
    tower_norm: str = "none"
    tower_scale: float = 1.0

    def __post_init__(self):
        check_activation(self.activation)
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm: expected True or False, got {self.batch_norm!r}")
        object.__setattr__(self, "tower_scale", check_tower_norm(self.tower_norm, self.tower_scale)[1])
        for name in ("embed_dim", "tower_out_dim"):
            object.__setattr__(self, name, check_scalar(name, getattr(self, name), int, low=1))
        for name in ("student_hidden", "strong_hidden"):
            widths = getattr(self, name)
            if not isinstance(widths, (tuple, list)):
                raise ValueError(f"{name}: expected a tuple of layer widths, got {widths!r}")
            object.__setattr__(self, name, tuple(check_scalar(f"{name}[{j}]", w, int, low=1) for j, w in enumerate(widths)))


@dataclass(frozen=True)
class DistillConfig:
    """Hyperparameters of the student's objective beyond its hard loss: the distillation term
    and the MTL control's auxiliary losses.

    lambda_ : weight of the soft loss after the warm-up (>= 0; <= 1 with the default hard weight).
    warmup_steps : the first optimizer steps of the student's training during which lambda = 0,
        in either mode: in sync mode (the paper's warm-up: the teacher is still untrained) and
        in two-stage mode too, where the teacher is already trained (``0`` gives the paper's
        two-stage objective from the first step).
    temperature : T of ``soft_loss`` (> 0; the paper's binary setting is T = 1).
    hard_weight : "one_minus_lambda" (the paper's ``(1 - lambda) L_hard``) or "one" (``L_hard``).
    mtl_weight : alpha >= 0, the weight of the auxiliary losses of method ``mtl``
        (``L_hard + alpha sum_f L_f``; ``pfd_ref.auxiliary``). Its default was chosen by a sweep
        over the paper's grid (docs/results.md, "MTL weight").
    """

    lambda_: float = 0.5
    warmup_steps: int = 0
    temperature: float = 1.0
    hard_weight: str = "one_minus_lambda"
    mtl_weight: float = 0.5

    def __post_init__(self):
        check_choice("hard_weight", self.hard_weight, HARD_WEIGHTS)
        object.__setattr__(self, "lambda_", check_scalar("lambda", self.lambda_, float, low=0))
        if self.hard_weight == "one_minus_lambda" and self.lambda_ > 1:
            raise ValueError(f"lambda: must be <= 1 when the hard loss is weighted by (1 - lambda), got {self.lambda_}")
        object.__setattr__(self, "warmup_steps", check_scalar("warmup_steps", self.warmup_steps, int, low=0))
        object.__setattr__(self, "temperature", check_scalar("temperature", self.temperature, float, low=0, low_open=True))
        object.__setattr__(self, "mtl_weight", check_scalar("mtl_weight", self.mtl_weight, float, low=0))


# --------------------------------------------------------------------------- which teacher


@dataclass(frozen=True)
class MethodRule:
    """What a method adds to the student.

    teacher : None (no teacher), ``"student"`` (the student's architecture), ``"strong"``
        (an ``MLPRanker`` with ``sizes.strong_hidden``) or ``"mlp"`` (an ``MLPRanker`` of the
        student's widths: ``sizes.student_hidden``, and for a two-tower student
        ``sizes.student_hidden + (sizes.tower_out_dim,)``, the widths of each of its towers);
    teacher_fields : the key of ``TEACHER_FIELDS`` naming the fields the teacher reads;
    teacher_row : the name under which the teacher's own scores are reported (not servable);
    auxiliary : the student gets auxiliary heads that predict the privileged features (mtl);
    student_kinds : the student kinds the method is defined for.
    """

    teacher: str | None = None
    teacher_fields: str | None = None
    teacher_row: str | None = None
    auxiliary: bool = False
    student_kinds: tuple = STUDENT_KINDS


TEACHER_FIELDS: dict[str, Callable[[Schema], tuple[FeatureSpec, ...]]] = {
    "regular": lambda schema: schema.regular(),
    "privileged": lambda schema: schema.privileged(),
    "regular+privileged": lambda schema: schema.regular() + schema.privileged(),
}

METHOD_RULES = {
    "baseline": MethodRule(),
    "mtl": MethodRule(auxiliary=True, student_kinds=("mlp",)),
    "md": MethodRule("strong", "regular", teacher_row="md_teacher"),
    "lupi": MethodRule("mlp", "privileged", teacher_row="lupi_teacher"),
    "pfd": MethodRule("student", "regular+privileged", teacher_row="pfd_teacher"),
    "pfd+md": MethodRule("strong", "regular+privileged", teacher_row="teacher"),
}
METHODS = tuple(METHOD_RULES)

# Which fields' tables teacher and student share (sync mode): a predicate on the field.
SHARING: dict[str, Callable[[FeatureSpec], bool]] = {
    "none": lambda field: False,
    "all": lambda field: field.role == "regular",
    "all-but-user-id": lambda field: field.role == "regular" and field.name != USER_ID_FIELD,
}


def check_method(method: str) -> str:
    """Return ``method``; raise unless it is one of ``METHODS``."""
    return check_choice("method", method, METHODS)


def check_method_fits(schema: Schema, method: str, student_kind: str, sizes: ModelSizes) -> MethodRule:
    """``METHOD_RULES[method]``; ValueError naming ``method`` when it is not defined for
    ``student_kind`` (mtl: MLP students only) or for the data (lupi's teacher and mtl's heads
    need privileged fields), or ``sizes`` when mtl's student has no hidden layer to share."""
    rule = METHOD_RULES[check_method(method)]
    check_choice("student_kind", student_kind, STUDENT_KINDS)
    if student_kind not in rule.student_kinds:
        raise ValueError(f"method: {method!r} is defined for {' and '.join(rule.student_kinds)} students only, not "
                         f"{student_kind!r} (the paper ran MTL on its MLP student; a two-tower student has no layer "
                         "that sees user and item together for the auxiliary heads to share)")
    if rule.teacher is not None and not TEACHER_FIELDS[rule.teacher_fields](schema):
        raise ValueError(f"method: {method!r}'s teacher reads the {rule.teacher_fields} fields, and the data has none")
    if rule.auxiliary:
        check_targets_schema(schema)
        if not sizes.student_hidden:
            raise ValueError("student_hidden: method 'mtl' needs a hidden layer (its auxiliary heads share the first)")
    return rule


def shared_fields(schema: Schema, sharing: str) -> tuple[str, ...]:
    """The fields of ``schema`` whose table teacher and student share under ``sharing`` (a key
    of ``SHARING``); ValueError naming ``sharing`` for "all-but-user-id" on a schema without
    the field ``USER_ID_FIELD``."""
    is_shared = SHARING[check_choice("sharing", sharing, tuple(SHARING))]
    if sharing == "all-but-user-id" and USER_ID_FIELD not in schema:
        raise ValueError(f"sharing: 'all-but-user-id' keeps the table of the field {USER_ID_FIELD!r} apart, and the "
                         "data has no such field")
    return tuple(f.name for f in schema if is_shared(f))


def build_models(schema: Schema, method: str, student_kind: str, sizes: ModelSizes, sharing: str = "none"):
    """Return ``(student, teacher)`` for ``method`` (teacher None without one, ``METHOD_RULES``;
    ``check_method_fits``).

    The student reads the regular fields; ``sharing`` (a key of ``SHARING``) names the fields
    whose embedding table both models read, as ``shared.embed.<field>``: of those the teacher
    reads too (none without a teacher, none for lupi's).
    """
    rule = check_method_fits(schema, method, student_kind, sizes)
    teacher_reads = {f.name for f in TEACHER_FIELDS[rule.teacher_fields](schema)} if rule.teacher else set()
    shared = tuple(name for name in shared_fields(schema, sharing) if name in teacher_reads)  # both models read it

    layer_options = dict(shared_fields=shared, activation=sizes.activation, batch_norm=sizes.batch_norm)

    def model(prefix: str, architecture: str, fields: tuple[FeatureSpec, ...]):
        if architecture == "strong":
            return MLPRanker(prefix, fields, sizes.embed_dim, sizes.strong_hidden, **layer_options)
        if student_kind == "mlp":
            return MLPRanker(prefix, fields, sizes.embed_dim, sizes.student_hidden, **layer_options)
        if architecture == "mlp":  # the widths of a two-tower student's tower: its hidden layers, then its output
            return MLPRanker(prefix, fields, sizes.embed_dim, sizes.student_hidden + (sizes.tower_out_dim,),
                             **layer_options)
        return TwoTower(prefix, tuple(f for f in fields if f.tower != "item"), tuple(f for f in fields if f.tower == "item"),
                        sizes.embed_dim, sizes.student_hidden, sizes.tower_out_dim, tower_norm=sizes.tower_norm,
                        tower_scale=sizes.tower_scale, **layer_options)

    student = model("student", "student", schema.regular())
    if rule.teacher is None:
        return student, None
    return student, model("teacher", rule.teacher, TEACHER_FIELDS[rule.teacher_fields](schema))


def build_auxiliary(method: str, student, targets, sizes: ModelSizes) -> AuxiliaryHeads | None:
    """The auxiliary heads of ``method`` on ``student``'s first hidden layer (None for a
    method without them): one per ``auxiliary.AuxTarget`` of ``targets`` (from the training
    split, ``auxiliary.auxiliary_targets``), each ``h_1 -> student_hidden[1:] -> width``."""
    if not METHOD_RULES[check_method(method)].auxiliary:
        return None
    return AuxiliaryHeads(targets, sizes.student_hidden[0], sizes.student_hidden[1:], sizes.activation, sizes.batch_norm)


def init_params(seed: int, dtype, *models) -> dict[str, np.ndarray]:
    """The initial parameters of ``models``, in that order, each drawn by its own
    ``init_params`` from the stream ``default_rng([seed, INIT_STREAM[model.prefix]])``.

    A table two models share is drawn by both; the later model's values are kept (at the
    position the first one gave it), so with ``(teacher, student)`` a shared table starts
    from the student's values.
    """
    params = {}
    for model in models:
        params.update(model.init_params(np.random.default_rng([seed, INIT_STREAM[model.prefix]]), np.dtype(dtype)))
    return params


# --------------------------------------------------------------------------- the lambda schedule


def lambda_at(step: int, config: DistillConfig) -> float:
    """``lambda(step) = 0`` for ``step < warmup_steps`` (0-based), ``config.lambda_`` afterwards."""
    return 0.0 if step < config.warmup_steps else config.lambda_


def check_schedule(config: DistillConfig, n_steps: int) -> None:
    """Raise ValueError when the warm-up is not shorter than the ``n_steps`` of the student's
    training (with lambda > 0 the soft loss would never be applied)."""
    if config.lambda_ > 0 and config.warmup_steps >= n_steps:
        raise ValueError(f"warmup_steps: {config.warmup_steps} is not shorter than training ({n_steps} steps); "
                         "lambda would never be applied")


# --------------------------------------------------------------------------- which gradient


def student_objective(student_logits: np.ndarray, labels: np.ndarray, teacher_logits: np.ndarray | None,
                      lam: float, config: DistillConfig, weights: np.ndarray | None = None):
    """Student loss ``a(lam) * L_hard(y, s) + lam * L_soft(s, t)`` and its gradient in ``s``.

    student_logits, teacher_logits : ``(n,)`` of one float dtype (teacher may be None: no
    distillation, ``lam`` must then be 0); labels : ``(n,)`` in {0, 1}; weights : ``(n,)`` or None.
    Returns ``(terms, d_student_logits)`` with ``terms = {"hard", "soft", "student_total"}``
    (``soft`` is nan without a teacher) and ``d_s = a(lam) * dL_hard/ds + lam * dL_soft/ds``.
    ``t`` is a constant here: no gradient for the teacher is formed (stop-gradient).
    When ``lam == 0`` the soft term is reported but not added, so the gradient is bit-identical
    to the no-distillation baseline's. ``lam``: a finite number >= 0, <= 1 with the hard weight
    ``one_minus_lambda`` (``a`` would turn negative); ValueError otherwise.
    """
    check_scalar("lam", lam, float, low=0, high=1 if config.hard_weight == "one_minus_lambda" else None)
    hard, d_hard = hard_loss(student_logits, labels, weights)
    hard_scale = 1.0 - lam if config.hard_weight == "one_minus_lambda" else 1.0
    if teacher_logits is None:
        if lam != 0:
            raise ValueError("teacher_logits: required when lambda > 0")
        return {"hard": hard, "soft": np.nan, "student_total": hard}, d_hard
    soft, d_soft = soft_loss(student_logits, teacher_logits, config.temperature, weights)
    if lam == 0:
        return {"hard": hard, "soft": soft, "student_total": hard}, d_hard
    total = hard_scale * hard + lam * soft
    return {"hard": hard, "soft": soft, "student_total": total}, hard_scale * d_hard + lam * d_soft


@dataclass
class StepOutput:
    """Everything one optimizer step computes before it updates the parameters.

    lam : the soft-loss weight of this step; student_logits, teacher_logits : ``(n,)``
    (teacher_logits None without a teacher); terms : ``hard``, ``soft``, ``student_total``
    (the student's objective), ``teacher_hard`` (sync mode), ``aux.<field>`` and ``aux``
    (method mtl) and ``total`` (student_total + teacher_hard in sync mode, else
    student_total); grads : gradient of ``total`` for every
    trained parameter (the teacher's only in sync mode); buffers : the new running averages
    of batch normalisation (of the models that ran in training mode), to be written into the
    parameters after the step; empty without it.
    """

    lam: float
    student_logits: np.ndarray
    teacher_logits: np.ndarray | None
    terms: dict
    grads: dict
    buffers: dict


def step_gradients(student, teacher, params: dict, batch, step: int, config: DistillConfig,
                   frozen_teacher_logits: np.ndarray | None = None, auxiliary: AuxiliaryHeads | None = None) -> StepOutput:
    """Losses and gradients of the (0-based, global) optimizer step ``step`` on ``batch``.

    With ``teacher`` (sync mode) the teacher's gradient is that of its hard loss alone and
    the student's that of ``a(lam) L_hard + lam L_soft`` with the teacher's logits as
    constants (``student_objective``); a parameter read by both (a shared table) gets the
    sum of the two paths (``models.SharedTables``). With ``frozen_teacher_logits`` (two-stage, ``(n,)``) only the
    student has gradients. With neither, ``lam = 0`` and the student's loss is its hard loss
    (the baseline, or a teacher trained alone). Otherwise ``lam = lambda_at(step, config)``.
    With ``auxiliary`` (method mtl) the student's objective gains ``alpha sum_f L_f``
    (``auxiliary_objective``). Every model runs in training mode (batch normalisation on the
    batch's statistics).
    """
    weights = None if batch.weights is None else batch.weights.astype(next(iter(params.values())).dtype, copy=False)
    grads, terms, buffers = {}, {}, {}
    teacher_logits = frozen_teacher_logits
    shared = SharedTables() if teacher is not None else None  # the tables both models read: one lookup, one scatter
    if teacher is not None:
        teacher_logits, t_cache = teacher.forward(params, batch, training=True, shared=shared)
        t_loss, d_t = hard_loss(teacher_logits, batch.labels, weights)
        grads = teacher.backward(params, t_cache, d_t)
        buffers = teacher.running_averages(params, t_cache)
        terms["teacher_hard"] = t_loss
    lam = 0.0 if teacher_logits is None else lambda_at(step, config)
    s_logits, s_cache = student.forward(params, batch, training=True, shared=shared)
    student_terms, d_s = student_objective(s_logits, batch.labels, teacher_logits, lam, config, weights)
    d_first_hidden = None
    if auxiliary is not None:
        aux_terms, aux_grads, d_first_hidden, aux_buffers = auxiliary_objective(
            auxiliary, params, student.first_hidden(s_cache), batch, config.mtl_weight, weights)
        student_total = student_terms.pop("student_total") + config.mtl_weight * aux_terms[auxiliary.prefix]
        student_terms.update(aux_terms, student_total=student_total)
        grads.update(aux_grads)
        buffers.update(aux_buffers)
    terms.update(student_terms)
    terms["total"] = terms["student_total"] + terms.get("teacher_hard", 0)
    grads.update(student.backward(params, s_cache, d_s) if d_first_hidden is None
                 else student.backward(params, s_cache, d_s, d_first_hidden))
    if shared is not None:
        grads.update(shared.gradients())  # each shared table: the teacher's path + the student's, one scatter
    buffers.update(student.running_averages(params, s_cache))
    return StepOutput(lam, s_logits, teacher_logits, terms, grads, buffers)


def auxiliary_objective(auxiliary: AuxiliaryHeads, params: dict, first_hidden: np.ndarray, batch, alpha: float,
                        weights: np.ndarray | None):
    """The MTL control's part of the student's objective, ``alpha * sum_f L_f``, on the
    student's first hidden layer ``h_1`` ``(n, H)``.

    Returns ``(terms, grads, d_first_hidden, buffers)``: ``terms`` holds each head's loss
    ``aux.<field>`` and their sum ``aux`` (unweighted); ``grads`` the heads' parameters'
    gradients of ``alpha sum_f L_f``; ``d_first_hidden`` ``(n, H)`` the gradient that sum sends
    ``h_1`` (for the student's backward), None when ``alpha == 0`` (the student's gradient is
    then the baseline's bit for bit, like lambda = 0); ``buffers`` the heads' new running
    averages.
    """
    outputs, caches = auxiliary.forward(params, first_hidden, training=True)
    terms, d_outputs = auxiliary.losses(outputs, batch, weights)
    total = None
    for value in terms.values():
        total = value if total is None else total + value
    d_first_hidden, grads = auxiliary.backward(caches, [alpha * d for d in d_outputs])
    return ({**terms, auxiliary.prefix: total}, grads, d_first_hidden if alpha != 0 else None,
            auxiliary.running_averages(params, caches))

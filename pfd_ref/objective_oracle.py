"""Objective-level oracle cases: the distillation loss alone, independent of any architecture.

A case (docs/oracle.md, "Objective-level cases") holds a batch of student logits, teacher
logits or probabilities, labels and optional weights, with hard rows first (ties, logits of
1e4 in magnitude, probabilities of exactly 0 and 1, probabilities beyond EasyRec's clipping
range), and what ``pfd_ref.conventions.convention_objective`` computes from them in one
convention: every loss term, the total, the gradient in the student logits, the (zero)
gradient in the teacher input, and for reference the per-term gradients and the teacher
gradient that the stop-gradient removes.

``compute_objective_case(spec)`` builds the arrays, ``oracle.save_case`` writes them;
``check_objective_arrays(case, theirs)`` compares like ``oracle.check_arrays`` and adds a
diagnosis where an array is off by one constant factor (e.g. ``1/T^2``: a convention, not a
bug); ``check_loss(loss_fn, ...)`` runs a user's loss callable (NumPy in, NumPy out) on
generated cases and reports per case and array.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from pfd_ref.conventions import (CONVENTIONS, DEFAULT_HARD_WEIGHT, KERAS_EPSILON, LOSSES, TEACHER_INPUTS, check_convention,
                                 convention_objective)
from pfd_ref.data.dataset import load_npz
from pfd_ref.distill import HARD_WEIGHTS, DistillConfig
from pfd_ref.oracle import DEFAULT_TOLERANCES, FORMAT_NAME, FORMAT_VERSION, META_KEY, CheckReport, case_meta, check_arrays
from pfd_ref.validation import check_choice, check_scalar

KIND = "objective"
# (student logit, teacher logit, label, teacher probability): the rows every case starts with.
HARD_ROWS = (
    (0.75, 0.75, 1, None),       # the student equals the teacher: pfd_ref's soft gradient is exactly 0
    (0.75, 0.75, 0, None),       # tied logits in two rows with different labels
    (1e4, -1e4, 0, 0.0),         # confidently wrong, |logit| = 1e4; probability exactly 0; weight 0
    (-1e4, 1e4, 1, 1.0),         # the reverse; probability exactly 1
    (1e4, 1e4, 1, 1.0),          # confidently right, student and teacher agree
    (0.0, 0.0, 0, 0.5),          # both undecided
    (-30.0, 25.0, 1, 1e-9),      # probability below EasyRec's clipping floor 1e-7
    (16.0, -18.0, 0, 1 - 1e-9),  # probability above 1 - 1e-7 (1.0 in float32)
)
ZERO_WEIGHT_ROW = 2
STREAM_OBJECTIVE_CASE = 6
REQUIRED_PREFIX, REFERENCE_PREFIX = "output.", "reference."


@dataclass(frozen=True)
class ObjectiveSpec:
    """Everything that determines an objective-level case (stored in ``meta["case"]``).

    convention : "pfd_ref", "easyrec" or "rocket"; loss : one of ``LOSSES_OF[convention]``;
    temperature : T > 0 (1 for l2); teacher_input : "logits" or "probabilities"; lambda_ :
    the soft-loss weight; hard_weight : "one_minus_lambda" or "one" (None: the convention's
    ``DEFAULT_HARD_WEIGHT``, resolved and stored); weights : per-example weights (one is 0);
    rows : n >= len(HARD_ROWS); seed : draws the rows after the hard ones; dtype : "float64"
    or "float32". The inputs depend on seed, rows, dtype and weights only, so two cases that
    differ in convention, loss or temperature share their inputs.
    """

    # The metadata (choices, help, type) makes the options of ``pfd-ref oracle objective``.
    convention: str = field(default="pfd_ref", metadata=dict(choices=CONVENTIONS))
    loss: str = field(default="bce", metadata=dict(choices=LOSSES, help="pfd_ref: bce, kl; easyrec: bce, kl, ce, l2; rocket: l2"))
    temperature: float = 1.0
    teacher_input: str = field(default="logits", metadata=dict(choices=TEACHER_INPUTS))
    lambda_: float = 0.5
    hard_weight: str | None = field(default=None, metadata=dict(
        type=str, choices=HARD_WEIGHTS, help="default: one_minus_lambda (pfd_ref), one (easyrec, rocket)"))
    weights: bool = field(default=False, metadata=dict(help="per-example weights (one of them 0)"))
    rows: int = field(default=16, metadata=dict(help="batch size, >= 8 (the hard rows)"))
    seed: int = 0
    dtype: str = field(default="float64", metadata=dict(choices=tuple(DEFAULT_TOLERANCES)))

    def __post_init__(self):
        check_convention(self.convention, self.loss, self.teacher_input, self.temperature)
        if self.hard_weight is None:
            object.__setattr__(self, "hard_weight", DEFAULT_HARD_WEIGHT[self.convention])
        object.__setattr__(self, "seed", check_scalar("seed", self.seed, int, low=0))
        # a case starts with len(HARD_ROWS) hard rows
        object.__setattr__(self, "rows", check_scalar("rows", self.rows, int, low=len(HARD_ROWS)))
        check_choice("dtype", self.dtype, tuple(DEFAULT_TOLERANCES))
        DistillConfig(lambda_=self.lambda_, temperature=self.temperature, hard_weight=self.hard_weight)

    @classmethod
    def from_dict(cls, data: dict) -> "ObjectiveSpec":
        """Inverse of ``dataclasses.asdict``; ValueError on unknown keys."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"data: unknown objective case setting(s) {unknown}")
        return cls(**data)


def teacher_input_name(teacher_input: str) -> str:
    """``teacher_logits`` or ``teacher_probabilities``: the teacher's array name in a case."""
    return f"teacher_{teacher_input}"


def objective_inputs(spec: ObjectiveSpec) -> dict[str, np.ndarray]:
    """The case's inputs: ``HARD_ROWS``, then ``rows - 8`` drawn from ``[seed, 6]``:
    ``s ~ N(0, 2^2)``, ``t = s + N(0, 1.5^2)``, ``pi = sigma(t)``, ``y ~ Bernoulli(sigma(t))``;
    weights ``U[0.5, 2)`` with row 2 set to 0. Returns ``student_logits``, the teacher's array
    (``teacher_input_name``), ``labels`` (int8) and ``weights`` (or None), in ``spec.dtype``."""
    rng = np.random.default_rng([spec.seed, STREAM_OBJECTIVE_CASE])
    drawn = spec.rows - len(HARD_ROWS)
    student = rng.normal(0.0, 2.0, drawn)
    teacher = student + rng.normal(0.0, 1.5, drawn)
    probability = 1 / (1 + np.exp(-teacher))
    labels = (rng.random(drawn) < probability).astype(np.int8)
    weights = rng.uniform(0.5, 2.0, spec.rows)
    hard_probability = [1 / (1 + math.exp(-t)) if p is None else p for _, t, _, p in HARD_ROWS]
    dtype = np.dtype(spec.dtype)
    inputs = {
        "student_logits": np.concatenate([[row[0] for row in HARD_ROWS], student]).astype(dtype),
        teacher_input_name(spec.teacher_input): (
            np.concatenate([[row[1] for row in HARD_ROWS], teacher]) if spec.teacher_input == "logits"
            else np.concatenate([hard_probability, probability])).astype(dtype),
        "labels": np.concatenate([np.array([row[2] for row in HARD_ROWS], np.int8), labels]),
        "weights": None,
    }
    if spec.weights:
        weights[ZERO_WEIGHT_ROW] = 0.0
        inputs["weights"] = weights.astype(dtype)
    return inputs


def compute_objective_case(spec: ObjectiveSpec) -> dict[str, np.ndarray]:
    """All arrays of the case ``spec``, in file order: ``meta``, ``input.*``, ``output.*``
    (required of another implementation), ``reference.*`` (optional). docs/oracle.md lists
    every name; the numbers are ``convention_objective`` of the inputs."""
    inputs = objective_inputs(spec)
    teacher_name = teacher_input_name(spec.teacher_input)
    result = convention_objective(spec.convention, spec.loss, inputs["student_logits"], inputs[teacher_name],
                                  spec.teacher_input, inputs["labels"], inputs["weights"], spec.temperature,
                                  spec.lambda_, spec.hard_weight)
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": KIND, "case": asdict(spec),
            "keras_epsilon": KERAS_EPSILON}
    arrays = {META_KEY: np.array(json.dumps(meta))}
    arrays.update({f"input.{name}": value for name, value in inputs.items() if value is not None})
    for term in ("hard", "soft", "total"):
        arrays[f"output.loss.{term}"] = result[f"loss.{term}"]
    arrays["output.grad.student_logits"] = result["grad.student_logits"]
    arrays[f"output.grad.{teacher_name}"] = np.zeros_like(inputs[teacher_name])  # stop-gradient
    for name in ("grad.hard", "grad.soft", "grad.teacher_without_stop_gradient"):
        arrays[REFERENCE_PREFIX + name] = result[name]
    return arrays


def is_objective_case(arrays: dict[str, np.ndarray], name: str = "case") -> bool:
    """Whether ``arrays`` is an objective-level case (ValueError if it is not a case at all)."""
    return case_meta(arrays, name).get("kind") == KIND


def recompute_objective_case(case: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of an objective case rebuilt by this version of pfd_ref from its settings."""
    return compute_objective_case(ObjectiveSpec.from_dict(case_meta(case)["case"]))


def check_case_files(case_path, theirs_path, rtol: float | None = None, atol: float | None = None):
    """Compare the ``.npz`` at ``theirs_path`` with the case at ``case_path``: an objective
    case by ``check_objective_arrays`` (``ObjectiveCheck``), a model-level case by
    ``oracle.check_arrays`` (``CheckReport``); both have ``.passed`` and ``.format()``."""
    case = load_npz(case_path, "case")
    theirs = load_npz(theirs_path, "theirs")
    if is_objective_case(case, f"case: {os.fspath(case_path)!r}"):
        return check_objective_arrays(case, theirs, rtol, atol)
    return check_arrays(case, theirs, rtol, atol)


# --------------------------------------------------------------------------- diagnosis


def _known_factors(spec: dict, n: int, nonzero: int) -> list[tuple[float, str]]:
    """``(factor, explanation)`` pairs that a convention difference multiplies an array by."""
    T, lam = spec["temperature"], spec["lambda_"]
    factors = [
        (1 / T**2, f"1/T² at T = {T:g}: theirs lacks the T² factor (EasyRec's kd losses divide both logits by T "
                   "and apply no T²)"),
        (T**2, f"T² at T = {T:g}: theirs has a T² factor the case does not apply"),
        (1 / T, f"1/T at T = {T:g}: a temperature divides once more in theirs"),
        (T, f"T at T = {T:g}: a temperature divides once less in theirs"),
        (float(n), f"n = {n}: theirs sums over the batch where the case takes the mean"),
        (1 / n, f"1/n at n = {n}: theirs averages where the case sums"),
        (-1.0, "-1: the sign is flipped"),
    ]
    if nonzero and nonzero != n:
        factors += [(n / nonzero, f"n/N = {n}/{nonzero}: theirs divides by the number of non-zero weights "
                                  "(TensorFlow's SUM_BY_NONZERO_WEIGHTS) where the case divides by n"),
                    (nonzero / n, f"N/n = {nonzero}/{n}: theirs divides by n where the case divides by the number "
                                  "of non-zero weights")]
    if 0 < lam != 1:
        factors.append((lam, f"λ = {lam:g}: theirs includes the soft weight λ in this term (the case reports it unweighted)"))
    if 0 < lam < 1:
        factors.append((1 - lam, f"1 - λ = {1 - lam:g}: theirs includes the hard weight (1 - λ) in this term (the case "
                                 "reports it unweighted)"))
    return factors


def constant_factor(expected: np.ndarray, actual: np.ndarray, atol: float) -> float | None:
    """``c`` when ``actual = c * expected`` holds entry by entry (ratios equal to 1e-6
    relative where ``|expected| > atol``, ``|actual| <= atol`` elsewhere), else None."""
    expected, actual = np.asarray(expected, np.float64).ravel(), np.asarray(actual, np.float64).ravel()
    if expected.shape != actual.shape or not np.all(np.isfinite(actual)):
        return None
    significant = np.abs(expected) > atol
    if not significant.any() or np.any(np.abs(actual[~significant]) > atol):
        return None
    ratios = actual[significant] / expected[significant]
    factor = float(np.median(ratios))
    return factor if np.all(np.abs(ratios - factor) <= 1e-6 * abs(factor)) else None


@dataclass(frozen=True)
class ObjectiveCheck:
    """The comparison of one objective case: the per-array ``report`` of ``oracle.check_arrays``
    and one diagnosis line per failing array that is a constant multiple of the case's."""

    report: CheckReport
    diagnoses: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.report.passed

    def format(self, only_failures: bool = False) -> str:
        lines = [self.report.format(only_failures)]
        if self.diagnoses:
            lines.append("constant factors (theirs = c × case in every entry):")
            lines += [f"  {line}" for line in self.diagnoses]
        return "\n".join(lines)


def check_objective_arrays(case: dict[str, np.ndarray], theirs: dict[str, np.ndarray], rtol: float | None = None,
                           atol: float | None = None) -> ObjectiveCheck:
    """``oracle.check_arrays(case, theirs)``, plus, for every failing floating array that
    ``theirs`` holds as ``c`` times the case's (``constant_factor``), a line naming ``c`` and,
    when it matches one, the convention difference that explains it (``_known_factors``: 1/T²
    for EasyRec against pfd_ref, the hard weight, a sum for a mean, the weights' denominator)."""
    report = check_arrays(case, theirs, rtol, atol)
    spec = case_meta(case)["case"]
    n = int(case["input.student_logits"].shape[0])
    weights = case.get("input.weights")
    factors = _known_factors(spec, n, n if weights is None else int(np.count_nonzero(weights)))
    diagnoses = []
    for result in report.results:  # the explanations of every matching factor, joined by "or"
        if result.passed or result.problem or result.name not in case or case[result.name].dtype.kind != "f":
            continue
        factor = constant_factor(case[result.name], theirs[result.name], report.atol)
        if factor is None:
            continue
        known = " or ".join(text for value, text in factors if abs(factor - value) <= 1e-6 * abs(value))
        if not known and np.count_nonzero(case[result.name]) < 2:
            continue  # any two non-zero numbers have a constant ratio: only a known factor says something
        relative = abs(factor - 1)
        lines = f"{result.name}: c = {factor:.6g}, relative difference |c - 1| = {relative:.6g}"
        diagnoses.append(lines + (f" = {known}" if known else " (no known convention factor)"))
    return ObjectiveCheck(report, tuple(diagnoses))


# --------------------------------------------------------------------------- a user's loss callable


@dataclass(frozen=True)
class LossCheckReport:
    """``check_loss``'s result: one ``(spec, ObjectiveCheck)`` per generated case."""

    cases: tuple[tuple[ObjectiveSpec, ObjectiveCheck], ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for _, check in self.cases)

    def format(self, only_failures: bool = False) -> str:
        blocks = []
        for k, (spec, check) in enumerate(self.cases, start=1):
            title = (f"case {k}/{len(self.cases)}: {spec.convention} {spec.loss}, teacher {spec.teacher_input}, "
                     f"T = {spec.temperature:g}, lambda = {spec.lambda_:g}, hard weight {spec.hard_weight}, "
                     f"{'weights' if spec.weights else 'no weights'}, seed {spec.seed}, {spec.dtype}: "
                     f"{'PASS' if check.passed else 'FAIL'}")
            blocks.append(title + "\n" + check.format(only_failures))
        failed = sum(not check.passed for _, check in self.cases)
        blocks.append(f"{'PASS' if not failed else 'FAIL'}: {len(self.cases) - failed} of {len(self.cases)} cases pass")
        return "\n\n".join(blocks)


def _as_case_names(returned: dict) -> dict[str, np.ndarray]:
    """The callable's arrays under the case's names: ``loss.total`` -> ``output.loss.total``;
    names already starting with ``output.`` or ``reference.`` are kept."""
    if not isinstance(returned, dict):
        raise ValueError(f"loss_fn: must return a dict of arrays, returned {type(returned).__name__}")
    return {name if name.startswith((REQUIRED_PREFIX, REFERENCE_PREFIX)) else REQUIRED_PREFIX + name: np.asarray(value)
            for name, value in returned.items()}


def check_loss(loss_fn, convention: str = "pfd_ref", loss: str = "bce", teacher_input: str = "logits",
               temperatures=(1.0, 2.0), lambda_: float = 0.5, hard_weight: str | None = None,
               weights=(False, True), seeds=(0,), rows: int = 16, dtype: str = "float64",
               rtol: float | None = None, atol: float | None = None) -> LossCheckReport:
    """Check a distillation loss written elsewhere against the convention's cases.

    For every temperature (only 1 for the l2 losses), weights setting and seed, the case's
    inputs go to ``loss_fn(inputs, settings)``:

        inputs   = {"student_logits", "teacher_logits" or "teacher_probabilities", "labels",
                    "weights" (None without weights)}         (NumPy arrays, copies)
        settings = {"convention", "loss", "teacher_input", "temperature", "lambda", "hard_weight"}

    and it returns a dict of NumPy arrays (or scalars) named as the case's outputs, with or
    without the ``output.`` prefix: required ``loss.hard``, ``loss.soft``, ``loss.total``,
    ``grad.student_logits``, ``grad.teacher_logits`` (or ``grad.teacher_probabilities``: the
    gradient of the total in the teacher input, zero under the stop-gradient); optional
    ``reference.grad.hard``, ``reference.grad.soft``, ``reference.grad.teacher_without_stop_gradient``.
    Each case is compared by ``check_objective_arrays`` (default tolerances of the dtype).
    """
    check_convention(convention, loss, teacher_input, 1.0)
    temperatures = (1.0,) if loss == "l2" else tuple(temperatures)
    cases = []
    for temperature in temperatures:
        for weighted in weights:
            for seed in seeds:
                spec = ObjectiveSpec(convention, loss, float(temperature), teacher_input, lambda_, hard_weight,
                                     bool(weighted), rows, seed, dtype)
                case = compute_objective_case(spec)
                inputs = {name: value.copy() for name, value in objective_inputs(spec).items() if value is not None}
                inputs.setdefault("weights", None)
                settings = {"convention": spec.convention, "loss": spec.loss, "teacher_input": spec.teacher_input,
                            "temperature": spec.temperature, "lambda": spec.lambda_, "hard_weight": spec.hard_weight}
                theirs = _as_case_names(loss_fn(inputs, settings))
                cases.append((spec, check_objective_arrays(case, theirs, rtol, atol)))
    return LossCheckReport(tuple(cases))

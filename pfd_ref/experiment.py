"""Experiments: the data of each task, train methods over seeds, evaluate on the test split,
summarise in a table. ``pfd-ref run`` and ``pfd-ref table`` (pfd_ref/cli.py) parse their
options and call the functions here, which hold the policy: the data sources and their
defaults (``SOURCE_DEFAULTS``, some scaled to the data: ``scaled_run_defaults``), the record
schema (``RECORD_KEYS``), the tables.

A record is one (task, method, seed) result with the keys ``RECORD_KEYS``. The summary gives, per
method, the mean and sample standard deviation over seeds, the AUC/GAUC gain over the
baseline with a two-sided paired t-test across seeds (``pfd_ref.metrics.paired_comparison``),
and for the methods of ``CONTROL_OF`` the AUC difference from their control: ``pfd+md``
(and the ``teacher`` row) against ``md`` (``md_teacher``), the same teacher without the
privileged features, the comparison that isolates them; ``lupi`` (``lupi_teacher``) against
``pfd`` (``pfd_teacher``), a teacher that also reads the regular features.
The pseudo-methods ``teacher``, ``md_teacher``, ``lupi_teacher`` and ``pfd_teacher`` report
the own scores of the teacher of ``pfd+md``, ``md``, ``lupi`` and ``pfd`` (``TEACHER_OF``).
They are references, not servable models (all but ``md_teacher`` read privileged features).

Presets (``PRESETS``, ``pfd-ref run --preset``): the options a run leaves at None take the
values of its preset. ``paper`` (the default) follows the paper wherever it states a choice
(Adagrad with a linear learning-rate warm-up, LeakyReLU with batch normalisation, l2-normalised
towers scaled by 5, shared inputs: ``all-but-user-id`` for the two-tower CTR student, ``all``
for the MLP; lambda 0.5 and no temperature), with its step counts scaled to the data
(``scaled_warmup_steps``); ``simple`` is the project's earlier setting (Adam, ReLU, no batch
normalisation, plain inner product, separate tables, the data source's warm-up). The
learning rate and Adagrad's accumulator were chosen by a probe of the baseline on a
validation split (docs/results.md, "The paper's defaults on our data").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from pfd_ref.backend import get_backend
from pfd_ref.data import Dataset
from pfd_ref.data.dataset import last_days
from pfd_ref.data.objectives import ObjectiveData, evaluable
from pfd_ref.data.shortvideo import OBJECTIVES, ShortVideoConfig, generate_shortvideo
from pfd_ref.data.synthetic import SyntheticConfig, generate
from pfd_ref.distill import METHOD_RULES, METHODS, STUDENT_KINDS, DistillConfig, ModelSizes, check_method, check_method_fits
from pfd_ref.multihead import build_objective_models
from pfd_ref.metrics import evaluate, paired_comparison
from pfd_ref.provenance import file_source, format_differences, generator_source, json_options, provenance
from pfd_ref.score_files import read_teacher_scores
from pfd_ref.train import (TrainConfig, check_batch_norm_batches, check_lr_warmup, check_teacher_folds, check_warmup,
                           predict, steps, train, with_seed)
from pfd_ref.validation import check_choice, check_scalar

TASKS = ("ctr", "cvr")  # the tasks of the synthetic data and of the Taobao log
STUDENT_OF_TASK = {"ctr": "two_tower", "cvr": "mlp"}  # of those tasks; every other data source: mlp
SHORT_VIDEO = "shortvideo"  # the synthetic short-video log (several objectives, a multi-head student)
MIN_TEST_POSITIVES = 30  # an objective with fewer test positives (or negatives) in its scope is named and skipped
DEFAULT_SEEDS = 3
KUAIRAND = "kuairand"
TAOBAO = "taobao"
LOGS = (KUAIRAND, TAOBAO)  # the real logs, read from --path
# The options of one or more data sources, by name, and their values when left at None.
SOURCE_OPTIONS = {"path": LOGS, "label": (KUAIRAND,), "user_features": (KUAIRAND,), "rows": (TAOBAO,),
                  "outside_window": (TAOBAO,)}
SOURCE_OPTION_DEFAULTS = {"label": "label", "outside_window": "error"}
# Defaults that depend on the data (the run options left at None): "synthetic" (the built-in
# generator), "saved" (--data FILE.npz), "kuairand" (a real log, ~33k training rows: see
# docs/results.md, "Real data", for how its values were measured) and "taobao" (the
# UserBehavior log, 100M rows: None here is scaled to each task's training rows,
# ``scaled_run_defaults``).
SOURCE_DEFAULTS = {
    "synthetic": {"epochs": 1, "warmup_steps": 100, "batch_size": 1024, "test_days": None},
    "saved": {"epochs": 1, "warmup_steps": 100, "batch_size": 1024, "test_days": 1},
    KUAIRAND: {"epochs": 1, "warmup_steps": 10, "batch_size": 1024, "test_days": 4},
    TAOBAO: {"epochs": None, "warmup_steps": None, "batch_size": None, "test_days": 1},
}
SCALED_OPTIONS = ("epochs", "batch_size", "warmup_steps")  # None in SOURCE_DEFAULTS: scaled_run_defaults
PAPER_BATCH_SIZE = 1024
MIN_STEPS_PER_EPOCH = 100  # scaled_run_defaults: a batch size halved until an epoch has at least this many steps
MIN_FITTED_STEPS_PER_EPOCH = 20  # fitted_defaults: a default batch size is cut to give an epoch at least this many steps
TEST_DAYS_FRACTION = 3  # a default test split is cut to at most the last third of the days
TEACHER_SCORES_METHODS = ("baseline", "pfd")  # with --teacher-scores: the student alone, and on the given scores
TEACHER_SCORES_DEFAULTS = {"teacher_scores_are": "logits", "teacher_scores_align": "position"}
ADAGRAD_OPTIONS = ("adagrad_initial_accumulator", "adagrad_eps")
LAYER_OPTIONS = ("activation", "batch_norm", "tower_norm", "tower_scale")  # the run options of ModelSizes
TOWER_OPTIONS = ("tower_norm", "tower_scale")  # the layer options of two-tower models only

# --------------------------------------------------------------------------- presets
PRESETS = ("paper", "simple")
# The paper's step counts (section 5): the distillation warm-up k and the learning-rate warm-up are
# both 10^6 steps of 1024 rows, about a tenth of its 1-day CTR data (1.09e10 impressions, Table 1),
# trained for 1 epoch. Scaled to our data: the same fraction of one pass over the training rows.
PAPER_WARMUP_FRACTION = 1e6 * 1024 / 1.09e10  # 0.0939
PAPER_SHARING = {"two_tower": "all-but-user-id", "mlp": "all"}  # CTR Share*, CVR everything (Tables 7, 8)
# The learning rate of each optimizer when --lr is not given, and Adagrad's accumulator and eps when
# not given: Adam's is the project's; Adagrad's were chosen by the probe of docs/results.md ("The
# paper's defaults on our data") for the paper preset's baseline on a validation split.
DEFAULT_LR = {"adam": 0.005, "adagrad": 0.2, "sgd": 0.005}
ADAGRAD_DEFAULTS = {"adagrad_initial_accumulator": 0.0, "adagrad_eps": 1e-10}  # PyTorch's (TensorFlow 1's: 0.1, 0)
PRESET_OPTIONS = ("optimizer", "lr", "lr_warmup_steps", "warmup_steps", "share", *LAYER_OPTIONS, *ADAGRAD_OPTIONS)
RECORD_KEYS = ("task", "method", "seed", "mode", "auc", "gauc", "logloss", "mean_predicted", "observed_rate",
               "train_seconds", "provenance")
TABLE_KEYS = ("task", "method", "seed", "auc", "gauc", "logloss", "train_seconds")  # what summarize reads
# provenance keys that differ between any two runs without saying anything about the numbers
RUN_DIFFERENCE_IGNORED = ("date", "config.options.json", "config.options.save", "config.options.quiet")

# the teacher rows: each reports the own scores of one method's teacher (distill.METHOD_RULES)
TEACHER_OF = {rule.teacher_row: method for method, rule in METHOD_RULES.items() if rule.teacher_row}
REPORTED_METHODS = METHODS + tuple(TEACHER_OF)
# Controls. pfd+md against md: the same teacher architecture without privileged features (only a
# gain over it can be credited to the privileged features, not to the teacher's size). lupi against
# pfd: a teacher of the privileged features alone against one that also reads the regular features
# (the same MLP for an MLP student; for a two-tower student pfd's teacher is a two-tower).
CONTROL_OF = {"pfd+md": "md", "teacher": "md_teacher", "lupi": "pfd", "lupi_teacher": "pfd_teacher"}
CONTROL_NOTE = ("control: pfd+md vs md and teacher vs md_teacher (the same teacher without the privileged features), "
                "lupi vs pfd and lupi_teacher vs pfd_teacher (a teacher of the privileged features alone vs one that "
                "also reads the regular features)")


def parse_methods(methods) -> tuple[str, ...]:
    """Check a list of method names (teacher rows of ``TEACHER_OF`` allowed); raise
    ValueError naming the bad one, or a teacher row whose method is not in the list."""
    methods = tuple(methods)
    if not methods:
        raise ValueError("methods: at least one method is needed")
    for m in methods:
        if m in TEACHER_OF:
            if TEACHER_OF[m] not in methods:
                raise ValueError(f"methods: {m!r} reports the {TEACHER_OF[m]} teacher; add {TEACHER_OF[m]!r} to the methods")
        else:
            check_method(m)
    return methods


def _record(task: str, method: str, config: TrainConfig, metrics: dict, seconds: float) -> dict:
    """One record, its keys in the order of ``RECORD_KEYS`` but the ``provenance`` of its run
    (``run_task`` adds it)."""
    return {"task": task, "method": method, "seed": config.seed, "mode": config.mode,
            **{k: float(metrics[k]) for k in RECORD_KEYS[4:-2]}, "train_seconds": float(seconds)}


def _check_record(where: str, record) -> None:
    """ValueError starting with ``where`` unless ``record`` has every key of ``TABLE_KEYS``
    with a value of its kind: ``task`` and ``method`` strings (``method`` one of
    ``REPORTED_METHODS``), ``seed`` an integer >= 0, the metrics and ``train_seconds`` finite
    numbers."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a record (a JSON object), got {type(record).__name__}")
    missing = [k for k in TABLE_KEYS if k not in record]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    for key in ("task", "method"):
        if not isinstance(record[key], str):
            raise ValueError(f"{where}: {key} must be a string, got {record[key]!r}")
    if record["method"] not in REPORTED_METHODS:
        raise ValueError(f"{where}: unknown method {record['method']!r}")
    check_scalar(f"{where}: seed", record["seed"], int, low=0)
    for key in TABLE_KEYS[3:]:
        check_scalar(f"{where}: {key}", record[key], float)


def load_records(paths) -> tuple[list[dict], list[str]]:
    """The records of one or more ``pfd-ref run --json`` files, in order, and the file of each;
    ValueError naming the file and record when one is unreadable, not a non-empty list of
    records, a record lacks a key of ``TABLE_KEYS`` or holds a value of the wrong kind (a NaN
    AUC, a seed of 1.5: ``_check_record``), or a (task, method, seed) repeats."""
    records, origins = [], []
    for path in paths:
        try:
            loaded = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"records: cannot read {path}: {err}")
        if not isinstance(loaded, list) or not loaded:
            raise ValueError(f"records: {path} does not hold a list of records (written by `pfd-ref run --json`)"
                             + (": the list is empty" if loaded == [] else ""))
        for i, record in enumerate(loaded):
            _check_record(f"records: {path}, record {i}", record)
        records.extend(loaded)
        origins.extend([str(path)] * len(loaded))
    keys = [(r["task"], r["method"], r["seed"]) for r in records]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"records: task {duplicate[0]!r}, method {duplicate[1]!r}, seed {duplicate[2]} appears twice")
    return records, origins


def run_differences(records: list[dict], origins: list[str], task: str) -> list[str]:
    """What differs between the runs (one per file) of ``task`` in loaded records, as lines of
    ``provenance.format_differences`` (none for a single file), ``RUN_DIFFERENCE_IGNORED``
    left out."""
    by_file = {}  # each file's provenance of this task (one per run)
    for origin, record in zip(origins, records):
        if record["task"] == task:
            by_file.setdefault(origin, record.get("provenance"))
    return format_differences(by_file, RUN_DIFFERENCE_IGNORED) if len(by_file) > 1 else []


# --------------------------------------------------------------------------- the data of a run


def data_source(data: str | None) -> str:
    """The key of ``SOURCE_DEFAULTS`` for ``--data``: synthetic (None), kuairand, taobao, or
    saved (a file)."""
    return "synthetic" if data is None else data if data in LOGS else "saved"


# The numeric options of `pfd-ref run` that a value can put out of range, with the bounds of the
# functions that take them (train.TrainConfig, distill.DistillConfig, optim, models, the data
# sources): (kind, low, low strict). Checked by option name before any data is made.
RUN_OPTION_BOUNDS = {
    "rows": (int, 1, False), "epochs": (int, 1, False), "teacher_epochs": (int, 1, False),
    "batch_size": (int, 1, False), "lr": (float, 0, True), "lr_warmup_steps": (int, 0, False),
    "warmup_steps": (int, 0, False), "temperature": (float, 0, True), "mtl_weight": (float, 0, False),
    "adagrad_initial_accumulator": (float, 0, False), "adagrad_eps": (float, 0, False),
    "tower_scale": (float, 0, True), "data_seed": (int, 0, False), "test_days": (int, 1, False),
    "privileged_strength": (float, 0, False),
}


def resolve_options(options: dict) -> dict:
    """``options`` (the run's, by name) with those that do not depend on a task's data filled
    in when left at None: ``methods`` with teacher scores (``TEACHER_SCORES_METHODS``; without,
    each run's student kind decides, ``methods_for``), the ``SOURCE_OPTION_DEFAULTS`` of the
    source's options and ``epochs``, ``batch_size`` and ``test_days`` of ``SOURCE_DEFAULTS`` of
    the data source (the preset's options, the warm-up among them, are filled per run,
    ``run_options``; a ``SCALED_OPTIONS`` default may stay None: ``prepare_runs`` scales it to
    the data). The names of the options left to a default (those filled here and the warm-up)
    are listed under ``source_defaults`` (``fitted_defaults`` may fit them to the data).
    ValueError naming an option of ``SOURCE_OPTIONS`` given with another data source,
    ``--path`` missing with a log, ``--rows`` not a positive integer, an unknown preset,
    ``--share`` other than none with two-stage, or a teacher-scores option that does not fit
    the run (``check_teacher_scores``)."""
    options = dict(options)
    check_choice("preset", options["preset"], PRESETS)
    if options["share"] not in (None, "none") and options["mode"] != "sync":
        raise ValueError(f"--share: {options['share']!r} needs --mode sync (a two-stage teacher is trained before its "
                         "student, so the two cannot share a table)")
    if options["methods"] is None and options["teacher_scores"] is not None:
        options["methods"] = TEACHER_SCORES_METHODS
    source = data_source(options["data"])
    if source in LOGS and options["path"] is None:
        raise ValueError(f"--path: required with --data {source} (the log file)")
    check_objective_options(options, source)
    for option, sources in SOURCE_OPTIONS.items():
        if source not in sources and options[option] is not None:
            raise ValueError(f"--{option.replace('_', '-')}: only with --data {' or '.join(sources)}")
        if source in sources and options[option] is None and option in SOURCE_OPTION_DEFAULTS:
            options[option] = SOURCE_OPTION_DEFAULTS[option]
    for key, (kind, low, low_open) in RUN_OPTION_BOUNDS.items():
        if options.get(key) is not None:  # the bounds of the function that takes it, named by the option
            check_scalar(f"--{key.replace('_', '-')}", options[key], kind, low=low, low_open=low_open)
    options = with_source_defaults(options, source)
    check_teacher_scores(options)
    return options


def with_source_defaults(options: dict, source: str) -> dict:
    """``options`` with each option of ``SOURCE_DEFAULTS[source]`` that it holds at None set to
    the source's value, and their names listed under ``source_defaults`` (the warm-up listed
    but left at None: it is the preset's, ``run_options``; ``fitted_defaults`` may fit them
    all to the data)."""
    options = dict(options)
    options["source_defaults"] = [key for key, value in SOURCE_DEFAULTS[source].items()
                                  if key in options and options[key] is None
                                  and (value is not None or key == "warmup_steps")]
    for key in options["source_defaults"]:
        if key != "warmup_steps":
            options[key] = SOURCE_DEFAULTS[source][key]
    return options


def check_objective_options(options: dict, source: str) -> None:
    """ValueError naming ``--objectives`` or ``--objective-weights`` when given outside a
    multi-objective run (``--task shortvideo`` or ``--data kuairand``), weights without
    objectives on KuaiRand, ``--task shortvideo`` with ``--data``, ``--label`` with
    ``--objectives``, ``--student two_tower``, or ``--save`` (a multi-head student is not
    exported for serving)."""
    objectives, weights = options.get("objectives"), options.get("objective_weights")
    if options.get("task") == SHORT_VIDEO and source != "synthetic":
        raise ValueError(f"--task: {SHORT_VIDEO!r} is the built-in synthetic log; with --data {KUAIRAND} give "
                         "--objectives instead")
    multi = options.get("task") == SHORT_VIDEO if source == "synthetic" else source == KUAIRAND and objectives is not None
    if multi and source == KUAIRAND and options.get("label") is not None:
        raise ValueError("--label: not with --objectives (each objective is a label of its own head)")
    if not multi and (objectives is not None or weights is not None):
        option = "--objectives" if objectives is not None else "--objective-weights"
        raise ValueError(f"{option}: only with --task {SHORT_VIDEO} or --data {KUAIRAND} --objectives ...")
    if multi and options.get("student") not in (None, "mlp"):
        raise ValueError(f"--student: a run with several objectives trains the multi-head MLP student, not "
                         f"{options['student']!r}")
    if multi and options.get("save") is not None:
        raise ValueError("--save: a multi-head student is not exported for serving (pfd_ref.serving scores one "
                         "objective); run without --save")


def scaled_warmup_steps(n_rows: int, batch_size: int) -> int:
    """The paper's distillation warm-up k and learning-rate warm-up scaled to ``n_rows``
    training rows: ``round(PAPER_WARMUP_FRACTION * steps of one epoch)``, at least 1 (the
    paper: 10^6 steps, about a tenth of one pass over its 1-day CTR data). ValueError naming
    ``batch_size`` unless it is an integer >= 1."""
    check_scalar("batch_size", batch_size, int, low=1)
    return max(1, round(PAPER_WARMUP_FRACTION * steps(n_rows, batch_size, 1)))


def preset_defaults(preset: str, student_kind: str, mode: str, n_rows: int, batch_size: int,
                    source: str = "synthetic") -> dict:
    """The values of ``PRESET_OPTIONS`` that ``preset`` gives a run of a ``student_kind``
    student in ``mode`` on ``n_rows`` training rows in batches of ``batch_size`` (its
    learning rate and Adagrad settings are those of its optimizer: ``DEFAULT_LR``,
    ``ADAGRAD_DEFAULTS``). The tower options apply to two-tower students; sharing to sync mode."""
    check_choice("preset", preset, PRESETS)
    two_tower, sync = student_kind == "two_tower", mode == "sync"
    if preset == "paper":
        warmup = scaled_warmup_steps(n_rows, batch_size)
        values = dict(optimizer="adagrad", lr_warmup_steps=warmup, warmup_steps=warmup,
                      share=PAPER_SHARING[student_kind] if sync else "none", activation="leaky_relu", batch_norm=True,
                      tower_norm="l2" if two_tower else "none", tower_scale=5.0 if two_tower else 1.0)
    else:
        values = dict(optimizer="adam", lr_warmup_steps=0, warmup_steps=SOURCE_DEFAULTS[source]["warmup_steps"],
                      share="none", activation="relu", batch_norm=False, tower_norm="none", tower_scale=1.0)
    return {**values, "lr": None, **{name: None for name in ADAGRAD_OPTIONS}}


def run_options(options: dict, student_kind: str, n_rows: int, source: str = "synthetic") -> dict:
    """Resolved ``options`` with every ``PRESET_OPTIONS`` entry left at None filled in for one
    run (``preset_defaults`` of ``options["preset"]``; the learning rate from ``DEFAULT_LR`` of
    the run's optimizer, Adagrad's settings from ``ADAGRAD_DEFAULTS`` with Adagrad). ValueError
    naming an Adagrad option given with another optimizer."""
    preset = preset_defaults(options["preset"], student_kind, options["mode"], n_rows, options["batch_size"], source)
    filled = dict(options)
    for name in PRESET_OPTIONS:
        if filled[name] is None:
            filled[name] = preset[name]
    given_adagrad = [name for name in ADAGRAD_OPTIONS if options[name] is not None]
    if given_adagrad and filled["optimizer"] != "adagrad":
        raise ValueError(f"--{given_adagrad[0].replace('_', '-')}: only with --optimizer adagrad")
    if filled["lr"] is None:
        filled["lr"] = DEFAULT_LR[filled["optimizer"]]
    for name, default in ADAGRAD_DEFAULTS.items():
        if filled[name] is None and filled["optimizer"] == "adagrad":
            filled[name] = default
    return filled


def methods_for(schema, student_kind: str, sizes: ModelSizes, methods=None, objectives=None) -> tuple[str, ...]:
    """The methods (teacher rows included) a run of a ``student_kind`` student with ``sizes``
    on data of ``schema`` reports: ``methods`` when given, each checked to be defined there
    (``distill.check_method_fits``: mtl needs an MLP student, lupi and mtl privileged fields;
    with ``objectives``, ``multihead.build_objective_models``: no mtl, a teacher that may
    distil some head; ValueError naming ``--methods``), else every one of ``REPORTED_METHODS`` that is."""
    def problem(method: str) -> str | None:
        try:
            if objectives is not None:
                build_objective_models(schema, objectives, TEACHER_OF.get(method, method), sizes)
            check_method_fits(schema, TEACHER_OF.get(method, method), student_kind, sizes)
        except ValueError as error:
            return str(error).removeprefix("method: ")
        return None

    if methods is None:
        return tuple(m for m in REPORTED_METHODS if problem(m) is None)
    for method in methods:
        if problem(method) is not None:
            raise ValueError(f"--methods: {problem(method)}")
    return tuple(methods)


def scaled_run_defaults(train_rows: int, epochs: int | None = None, batch_size: int | None = None,
                        warmup_steps: int | None = None) -> tuple[dict, str]:
    """``({"epochs", "batch_size", "warmup_steps"}, text)``: each value given (not None) is
    kept, each other one is scaled to the training rows (docs/data.md, "Run defaults"):

    * epochs: 1, the paper's single pass;
    * batch_size: the paper's 1024, or for a training set of fewer than
      ``MIN_STEPS_PER_EPOCH * 1024`` rows the largest power of two (>= 32) that still gives
      an epoch of at least ``MIN_STEPS_PER_EPOCH`` steps;
    * warmup_steps: ``scaled_warmup_steps``, the paper's share of an epoch (also the paper
      preset's learning-rate warm-up).
    """
    chosen, notes = {}, []
    chosen["epochs"] = 1 if epochs is None else epochs
    notes.append(f"epochs {chosen['epochs']} " + ("(given)" if epochs is not None else "(the paper's single pass)"))
    if batch_size is None:
        batch_size = PAPER_BATCH_SIZE
        while batch_size > 32 and train_rows < MIN_STEPS_PER_EPOCH * batch_size:
            batch_size //= 2
        notes.append(f"batch size {batch_size} (the paper's 1024, halved while an epoch would have fewer than "
                     f"{MIN_STEPS_PER_EPOCH} steps)")
    else:
        notes.append(f"batch size {batch_size} (given)")
    chosen["batch_size"] = batch_size
    steps = -(-train_rows // batch_size)
    if warmup_steps is None:
        chosen["warmup_steps"] = scaled_warmup_steps(train_rows, batch_size)
        notes.append(f"warm-up {chosen['warmup_steps']:,} steps (a tenth of the {steps:,} steps of an epoch, "
                     f"{PAPER_WARMUP_FRACTION:.4f}: the paper's share, 10^6 steps of its 1-day CTR data)")
    else:
        chosen["warmup_steps"] = warmup_steps
        notes.append(f"warm-up {warmup_steps:,} steps (given)")
    return chosen, "  run defaults (docs/data.md): " + "; ".join(notes)


def fitted_test_days(options: dict, n_days: int) -> int:
    """The test days of a time split of data spanning ``n_days`` calendar days: ``--test-days``
    as given, or, when it was left at its source default ``D``, ``min(D, max(1, n_days // 3))``
    (at most the last third of the days, at least 1; ``D`` from ``3 D`` days on, e.g. KuaiRand's
    4 test days of the extract's 14)."""
    default = options["test_days"]
    if "test_days" not in options["source_defaults"]:
        return default
    return min(default, max(1, n_days // TEST_DAYS_FRACTION))


def fitted_defaults(options: dict, n_train: int) -> dict:
    """``{option: value}`` for the training options left at their source default that do not
    fit ``n_train`` training rows (an empty dict when they all fit):

    * ``batch_size``: with fewer than ``MIN_FITTED_STEPS_PER_EPOCH`` batches per epoch,
      ``max(1, n_train // MIN_FITTED_STEPS_PER_EPOCH)``, which gives at least that many (one row a
      batch below it); with batch normalisation at least 2 (``min(2, n_train)``) and then grown
      by one until no epoch ends in a batch of one row;
    * ``warmup_steps``: at most half of the student's steps (``epochs`` passes in batches of
      the batch size above), so that lambda applies for the other half.

    The defaults of the built-in data and of KuaiRand's extract (docs/results.md) fit as they are."""
    defaulted = options["source_defaults"]
    fitted = {}
    batch_size = options["batch_size"]
    if "batch_size" in defaulted and -(-n_train // batch_size) < MIN_FITTED_STEPS_PER_EPOCH:
        smallest = min(2, n_train) if options["batch_norm"] else 1  # batch norm needs two rows a batch
        batch_size = max(smallest, n_train // MIN_FITTED_STEPS_PER_EPOCH)
        while options["batch_norm"] and n_train % batch_size == 1 and batch_size < n_train:
            batch_size += 1
        fitted["batch_size"] = batch_size
    if "warmup_steps" in defaulted:
        half = steps(n_train, batch_size, options["epochs"]) // 2
        if options["warmup_steps"] > half:
            fitted["warmup_steps"] = half
    return fitted


def scaled_options(options: dict, source: str) -> list[str]:
    """The ``SCALED_OPTIONS`` that ``options`` leaves at None and ``source`` has no default for:
    ``fit_to_data`` scales them to the training rows (``scaled_run_defaults``)."""
    return [key for key in SCALED_OPTIONS if options[key] is None and SOURCE_DEFAULTS[source][key] is None]


def fit_to_data(options: dict, student_kind: str, n_train: int, source: str,
                log: Callable[[str], None] = lambda line: None, task: str = "") -> dict:
    """``options`` (with ``source_defaults``, ``with_source_defaults``) for one task of
    ``n_train`` training rows, as ``pfd-ref run`` trains it: the ``scaled_options`` scaled
    (``scaled_run_defaults``), then the defaults that do not fit the rows fitted
    (``fitted_defaults``); ``log`` receives a line for each."""
    if scaled_options(options, source):
        chosen, text = scaled_run_defaults(n_train, **{key: options[key] for key in SCALED_OPTIONS})
        log(text)
        options = {**options, **chosen}
    filled = run_options(options, student_kind, n_train, source)
    fitted = fitted_defaults(filled, n_train)
    if fitted:
        log(f"  {task}: defaults fitted to its {n_train:,} training rows: " + ", ".join(
            f"{_option(key)} {value} (default {filled[key]})" for key, value in fitted.items())
            + f" (at least {MIN_FITTED_STEPS_PER_EPOCH} steps an epoch, lambda over at least half of them)")
    return {**options, **fitted}


def check_teacher_scores(options: dict) -> None:
    """With ``teacher_scores``: a saved dataset, two-stage mode, no cross-fitting, and one
    distilled method (each would train the same student on the same scores); without it, the
    ``TEACHER_SCORES_DEFAULTS``. ValueError naming the option otherwise."""
    if options["teacher_scores"] is None:
        for option, default in TEACHER_SCORES_DEFAULTS.items():
            if options[option] != default:
                raise ValueError(f"--{option.replace('_', '-')}: only with --teacher-scores")
        return
    if data_source(options["data"]) != "saved":
        raise ValueError("--teacher-scores: needs --data FILE.npz (the scores are aligned to that file's rows)")
    if options["mode"] != "two-stage":
        raise ValueError("--teacher-scores: needs --mode two-stage (a teacher made elsewhere is frozen)")
    if options["teacher_folds"]:
        raise ValueError("--teacher-folds: not with --teacher-scores (the teacher is not trained here)")
    distilled = [m for m in options["methods"] if m != "baseline"]
    with_teacher = [m for m in METHODS if METHOD_RULES[m].teacher is not None]
    if len(distilled) > 1 or any(m not in with_teacher for m in distilled):
        raise ValueError(f"--methods: with --teacher-scores list baseline and at most one of {', '.join(with_teacher)} "
                         f"(each trains the same student on the same scores; no teacher row exists); got {distilled}")


def train_config(options: dict, student_kind: str, n_rows: int, source: str = "synthetic") -> TrainConfig:
    """The ``TrainConfig`` of resolved run ``options`` for a student of ``student_kind`` trained
    on ``n_rows`` rows (``run_options`` fills the preset's options)."""
    options = run_options(options, student_kind, n_rows, source)
    distill = DistillConfig(lambda_=options["lambda_"], warmup_steps=options["warmup_steps"],
                            temperature=options["temperature"], hard_weight=options["hard_weight"],
                            mtl_weight=options["mtl_weight"])
    adagrad = {name: options[name] for name in ADAGRAD_OPTIONS if options[name] is not None}
    sizes = ModelSizes(**{name: options[name] for name in LAYER_OPTIONS})
    return TrainConfig(student_kind=student_kind, mode=options["mode"], epochs=options["epochs"],
                       teacher_epochs=options["teacher_epochs"], batch_size=options["batch_size"], lr=options["lr"],
                       distill=distill, sharing=options["share"], teacher_folds=options["teacher_folds"],
                       dtype=options["dtype"], optimizer=options["optimizer"], lr_warmup_steps=options["lr_warmup_steps"],
                       sizes=sizes, **adagrad)


def preset_config(student_kind: str, n_rows: int, preset: str = "paper", source: str = "synthetic",
                  **options) -> TrainConfig:
    """The ``TrainConfig`` that ``pfd-ref run --preset PRESET`` trains a ``student_kind``
    student with on ``n_rows`` training rows of ``source``; ``options`` (by their run-option
    names: ``lr``, ``share``, ``lambda_``, ``epochs``, ``mtl_weight``, ...) change it, as the
    command's options do. For Python, e.g. to build a table of the paper's configurations."""
    defaults = dict(RUN_OPTION_DEFAULTS, preset=preset)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"options: unknown run option(s) {unknown}; known: {sorted(defaults)}")
    resolved = fit_to_data(with_source_defaults({**defaults, **options}, source), student_kind, n_rows, source)
    return train_config(resolved, student_kind, n_rows, source)


# The options of a run that change its TrainConfig, and their defaults (those of `pfd-ref run`):
# None takes the preset's value (PRESET_OPTIONS) or the data source's (SOURCE_DEFAULTS).
RUN_OPTION_DEFAULTS = {
    "preset": "paper", "mode": "sync", "epochs": None, "teacher_epochs": None, "batch_size": None,
    "lambda_": DistillConfig.lambda_, "temperature": DistillConfig.temperature, "hard_weight": DistillConfig.hard_weight,
    "mtl_weight": DistillConfig.mtl_weight, "teacher_folds": 0, "dtype": "float32",
    **{name: None for name in PRESET_OPTIONS},
}


@dataclass(frozen=True)
class Run:
    """One task of a run: its name, its training and test splits, its training configuration,
    the methods it reports (``methods_for``), the teacher's logits for the training rows when
    they come from a file (``--teacher-scores``), the data source (for the records'
    provenance) and the run's options with the defaults scaled or fitted to this task's data
    (``scaled_run_defaults``, ``fitted_test_days``, ``fitted_defaults``; also for the records'
    provenance; the preset's options are filled by ``run_options`` from them)."""

    task: str
    train: Dataset
    test: Dataset
    config: TrainConfig
    methods: tuple
    teacher_logits: np.ndarray | None
    source: dict
    options: dict


# The run options that the functions they feed (TrainConfig, DistillConfig, the optimizers, train's
# checks, the data sources) name in their messages, by the name they use where it is not the option's
# key: an error of theirs in prepare_runs is reported by the option as typed (named_by_option).
NAMED_OPTIONS = (*RUN_OPTION_DEFAULTS, "student", "test_days", "objective_weights")
OPTION_OF_NAME = {"lambda": "lambda_", "sharing": "share", "student_kind": "student", "eps": "adagrad_eps",
                  "initial_accumulator_value": "adagrad_initial_accumulator"}


def named_by_option(error: ValueError) -> ValueError:
    """``error`` with the name its message starts with (``lr_warmup_steps: ...``, the
    configuration's or the function's) replaced by the run option as typed
    (``--lr-warmup-steps: ...``) when it names one of ``NAMED_OPTIONS``; else ``error`` itself."""
    name, colon, rest = str(error).partition(": ")
    key = OPTION_OF_NAME.get(name, name)
    return ValueError(f"{_option(key)}: {rest}") if colon and key in NAMED_OPTIONS else error


def prepare_runs(options: dict, log: Callable[[str], None] | None = None) -> list[Run]:
    """Every task of a ``pfd-ref run`` (``options`` resolved by ``resolve_options``): the data
    of its source, split by time, and its configuration, all checked before anything is
    trained (options first, then the schedules against each training set). An option of
    ``SCALED_OPTIONS`` that the data source leaves at None and the run does not give is scaled
    to each task's training rows (``scaled_run_defaults``); one left at its default (the
    source's, or the preset's warm-up) that does not fit them is fitted (``fitted_defaults``).
    ``log`` receives what a loader reports and a line for the defaults scaled or fitted to the
    data. A ValueError names the option as typed (``named_by_option``): ``--lr-warmup-steps: 6
    is longer than the student's training ...``, where ``train.train`` says ``lr_warmup_steps``."""
    try:
        return _prepare_runs(options, log or (lambda line: None))
    except ValueError as error:
        named = named_by_option(error)
        if named is error:
            raise
        raise named from None


def _prepare_runs(options: dict, log: Callable[[str], None]) -> list[Run]:
    source = data_source(options["data"])
    scaled = scaled_options(options, source)
    stand_ins = {"epochs": 1, "batch_size": PAPER_BATCH_SIZE, "warmup_steps": 0}  # until the data is read
    for kind in (options["student"],) if options["student"] else STUDENT_KINDS:  # option errors before any data
        train_config({**options, **{key: stand_ins[key] for key in scaled}}, kind, 1 << 20, source)
    runs = []
    for task, train_data, test_data, kind, teacher_logits, files, task_options in _task_data(options, log):
        task_options = fit_to_data(task_options, kind, train_data.n, source, log, task)
        config = train_config(task_options, kind, train_data.n, source)
        objectives = train_data.objectives if isinstance(train_data, ObjectiveData) else None
        methods = methods_for(train_data.schema, kind, config.sizes, options["methods"], objectives)
        runs.append(Run(task, train_data, test_data, config, methods, teacher_logits, files, task_options))
        if isinstance(test_data, ObjectiveData):
            for name, reason in evaluable(test_data, MIN_TEST_POSITIVES)[1].items():
                log(f"  objective {name} skipped in the tables: {reason}")
    given_tower = [name for name in TOWER_OPTIONS if options[name] is not None]
    if given_tower and all(run.config.student_kind == "mlp" for run in runs):
        raise ValueError("--tower-norm, --tower-scale: the tower options act on two-tower models; "
                         "this run trains MLP students only")
    for run in runs:
        with_teacher = any(METHOD_RULES[TEACHER_OF.get(m, m)].teacher is not None for m in run.methods)
        if with_teacher:
            check_warmup(run.config, run.train.n)
        check_lr_warmup(run.config, run.train.n, teacher_alone=run.config.mode == "two-stage" and with_teacher)
        check_batch_norm_batches(run.config, run.train.n)
        if with_teacher and run.teacher_logits is None:
            check_teacher_folds(run.config, run.train.n)
    return runs


def _option(key: str) -> str:
    return "--" + key.rstrip("_").replace("_", "-")


def _fit_test_days(options: dict, day: np.ndarray, log: Callable[[str], None]) -> dict:
    """``options`` with ``test_days`` fitted to the days ``day`` spans (``fitted_test_days``), logged when it changed."""
    test_days = fitted_test_days(options, int(day.max()) + 1 if day.size else 0)
    if test_days != options["test_days"]:
        log(f"  --test-days {test_days} (default {options['test_days']}): the data spans {int(day.max()) + 1} day(s); "
            "a default test split takes at most the last third of them")
    return {**options, "test_days": test_days}


def _base_tasks(options: dict) -> tuple[str, ...]:
    """The tasks of ``--task`` on the built-in data and the Taobao log: both of ``TASKS`` for all."""
    return TASKS if options["task"] == "all" else (options["task"],)


def run_tasks(options: dict) -> tuple[tuple[str, str], ...]:
    """``(task, student_kind)`` of each task of resolved ``options``, in the order ``prepare_runs``
    makes them: known before any data is read (the tasks name the tables, the records and the
    files ``--save`` writes). The task: the built-in data's ``ctr``, ``cvr`` or ``shortvideo``,
    ``taobao_ctr`` / ``taobao_cvr``, ``kuairand`` with ``--objectives`` else ``kuairand_<label>``,
    a saved file's stem; the student: ``--student``, else ``STUDENT_OF_TASK`` of the task (the
    Taobao log's too), else (every other source, and several objectives) the MLP."""
    source, student = data_source(options["data"]), options["student"]
    if source == KUAIRAND:
        task = KUAIRAND if options["objectives"] is not None else f"{KUAIRAND}_{options['label']}"
        return ((task, student or "mlp"),)
    if source == "saved":
        return ((Path(options["data"]).stem, student or "mlp"),)
    if options["task"] == SHORT_VIDEO:
        return ((SHORT_VIDEO, "mlp"),)
    prefix = f"{TAOBAO}_" if source == TAOBAO else ""
    return tuple((prefix + task, student or STUDENT_OF_TASK[task]) for task in _base_tasks(options))


def _task_data(options: dict, log: Callable[[str], None]):
    """Yield ``(task, train, test, student_kind, teacher_logits, source, task_options)`` for each
    task of resolved ``options`` (``task_options``: ``options`` with the test days fitted); the
    tasks and students of ``run_tasks``."""
    source = data_source(options["data"])
    tasks = run_tasks(options)
    if source == KUAIRAND:
        from pfd_ref.data.kuairand import load_kuairand, load_kuairand_objectives, split_by_time
        if options["objectives"] is not None:  # several objectives: a multi-head student
            data, report = load_kuairand_objectives(options["path"], options["objectives"], options["objective_weights"],
                                                    options["user_features"])
        else:
            data, report = load_kuairand(options["path"], options["label"], options["user_features"])
        log(report.summary())
        options = _fit_test_days(options, data.day, log)
        train_data, test_data = split_by_time(data, report, options["test_days"])
        log(_split_text(options["test_days"], train_data, test_data))
        user_features = options["user_features"]
        files = {"data": file_source(options["path"]), "label": options["label"],
                 "user_features": None if user_features is None else file_source(user_features)}
        if isinstance(data, ObjectiveData):
            files.update(label=None, objectives=data.objectives.to_dict())
        (task, kind), = tasks
        yield task, train_data, test_data, kind, None, files, options
    elif source == TAOBAO:
        from pfd_ref.data import taobao
        events = taobao.read_user_behavior(options["path"], max_rows=options["rows"],
                                            outside_window=options["outside_window"])
        log(events.summary())
        files = {"data": file_source(options["path"]), "rows": options["rows"],
                 "outside_window": options["outside_window"], "negatives_seed": options["data_seed"]}
        for task, (name, kind) in zip(_base_tasks(options), tasks):
            data, report = taobao.cvr_dataset(events) if task == "cvr" else taobao.ctr_dataset(events, seed=options["data_seed"])
            log(report.summary())
            train_data, test_data = taobao.split_by_time(data, options["test_days"], events.path)
            del data  # the splits are copies
            log(_split_text(options["test_days"], train_data, test_data))
            yield name, train_data, test_data, kind, None, files, options
    elif source == "saved":
        path = Path(options["data"])
        data = Dataset.load(path)
        if data.n == 0:
            raise ValueError(f"--data: {path} has no rows")
        if data.day is None:
            raise ValueError(f"--data: {path} has no 'day' column, so it cannot be split by time")
        options = _fit_test_days(options, data.day, log)
        try:
            train_data, test_data = data.split_last_days(options["test_days"])
        except ValueError as error:  # test_days: ... (prepare_runs names --test-days)
            raise ValueError(f"{error} in --data {path}") from None
        files, teacher_logits = {"data": file_source(path)}, None
        if options["teacher_scores"] is not None:
            files["teacher_scores"] = file_source(options["teacher_scores"])
            scores = read_teacher_scores(options["teacher_scores"], data.n, options["teacher_scores_are"],
                                         options["teacher_scores_align"], options["temperature"], options["dtype"],
                                         data_name=str(path))
            teacher_logits = scores[~last_days(data.day, options["test_days"])]  # the training rows, in their order
            log(f"  teacher: {options['teacher_scores']} ({options['teacher_scores_are']}, aligned by "
                f"{options['teacher_scores_align']} to the {data.n} rows of {path}; {train_data.n} training rows used)")
        (task, kind), = tasks
        yield task, train_data, test_data, kind, teacher_logits, files, options
    elif options["task"] == SHORT_VIDEO:
        config = ShortVideoConfig(seed=options["data_seed"])
        objectives = options["objectives"] or OBJECTIVES
        train_data, test_data = generate_shortvideo(config, objectives, options["objective_weights"])
        files = {"data": generator_source("pfd_ref.data.shortvideo.generate_shortvideo",
                                          {**asdict(config), "objectives": train_data.objectives.to_dict()})}
        (task, kind), = tasks
        yield task, train_data, test_data, kind, None, files, options
    else:
        for task, kind in tasks:
            config = SyntheticConfig(seed=options["data_seed"])
            if options["privileged_strength"] is not None:
                config = replace(config, privileged_strength=options["privileged_strength"])
            files = {"data": generator_source("pfd_ref.data.synthetic.generate", {"task": task, **asdict(config)})}
            yield task, *generate(task, config), kind, None, files, options


def _split_text(test_days: int, train_data: Dataset, test_data: Dataset) -> str:
    """The report line of a time split."""
    return (f"  time split: the last {test_days} day(s) (days {int(test_data.day.min())}..{int(test_data.day.max())}) "
            f"are the test split ({test_data.n:,} rows, positive rate {test_data.positive_rate:.4f}); training "
            f"{train_data.n:,} rows, positive rate {train_data.positive_rate:.4f}")


def run_task(run: Run, progress=None, on_result=None, on_seed=None) -> list[dict]:
    """``run_methods`` on one ``Run`` with its ``methods`` and the ``seeds`` of its options; each
    record gets the run's ``provenance`` (the options, the training configuration, the data
    source, the software: ``pfd_ref.provenance``, taken before training starts), already when
    ``on_seed(seed, records)`` receives it."""
    run_provenance = provenance({"options": json_options(run.options),
                                 "train_config": asdict(run.config), "backend": get_backend()}, run.source)

    def seed_done(seed: int, records: list[dict]) -> None:
        for record in records:
            record["provenance"] = run_provenance
        if on_seed is not None:
            on_seed(seed, records)

    return run_methods(run.task, run.train, run.test, run.methods, run.options["seeds"], run.config,
                       progress=progress, on_result=on_result, on_seed=seed_done, teacher_logits=run.teacher_logits)


def run_methods(task: str, train_data: Dataset, test_data: Dataset, methods, seeds, config: TrainConfig,
                progress=None, on_result=None, on_seed=None, teacher_logits=None) -> list[dict]:
    """Train every method for every seed and evaluate it on ``test_data``.

    A teacher row (``TEACHER_OF``) needs its method in the same run; it is absent where no
    single teacher exists (two-stage with cross-fitted or given soft labels).
    ``on_result(seed, result)`` is called with each ``TrainResult`` (e.g. to save the student),
    ``on_seed(seed, records)`` with the records of each seed once all its methods are done
    (e.g. to write them: what a seed finished is kept when a later one is interrupted).
    ``teacher_logits``: two-stage only, ``(n_train,)`` soft labels made elsewhere, given to
    every method with a teacher (``train.train``). Returns the records in (seed, method) order.
    """
    methods = parse_methods(methods)
    teacher_row = {method: row for row, method in TEACHER_OF.items() if row in methods}
    records = []
    objectives = evaluable(test_data, MIN_TEST_POSITIVES)[0] if isinstance(test_data, ObjectiveData) else None
    for seed in seeds:
        seed_start = len(records)
        seeded = with_seed(config, seed)
        for method in (m for m in methods if m not in TEACHER_OF):
            result = train(train_data, method, seeded,
                           progress=(lambda name, total: progress(f"{task} seed {seed} {name}", total)) if progress else None,
                           teacher_logits=teacher_logits if METHOD_RULES[method].teacher else None)
            for name, metrics in _evaluate(task, result.student, result.params, test_data, objectives):
                records.append(_record(name, method, seeded, metrics, result.train_seconds))
            if method in teacher_row and result.teacher is not None:
                for name, metrics in _evaluate(task, result.teacher, result.params, test_data, objectives):
                    records.append(_record(name, teacher_row[method], seeded, metrics, result.train_seconds))
            if on_result is not None:
                on_result(seed, result)
        if on_seed is not None:
            on_seed(seed, records[seed_start:])
    return records


def run_settings(task: str, train_data: Dataset, test_data: Dataset, settings: dict, methods, seeds,
                 progress=None) -> dict[str, list[dict]]:
    """``run_methods`` for each labelled configuration of ``settings`` (``{label: TrainConfig}``,
    e.g. ``preset_config`` with one option varied: a lambda sweep, the sharing modes): the
    records of each label, in the order given. ``summarize`` of one label's records is its
    table; the records are those of ``run_methods`` (``methods`` and ``seeds`` alike for every
    label, so labels compare paired over seeds)."""
    return {label: run_methods(task, train_data, test_data, methods, seeds, config,
                               progress=(lambda name, total, label=label: progress(f"{label}: {name}", total))
                               if progress else None)
            for label, config in settings.items()}


def _evaluate(task: str, model, params: dict, data: Dataset, objectives=None) -> list[tuple[str, dict]]:
    """``[(task, metrics)]`` of ``model`` on ``data``; with ``objectives`` (multi-head, the
    evaluable objectives of ``data``) ``(task/objective, metrics)`` for each head of ``model``
    among them, on the rows of the objective's scope."""
    logits = predict(model, params, data)
    if objectives is None:
        return [(task, evaluate(data.labels, logits, data.user_ids))]
    results = []
    for k, name in enumerate(model.objectives):
        if name in objectives:
            rows = data.masks([name], np.bool_)[:, 0]
            results.append((objective_task(task, name),
                            evaluate(data.labels_of([name])[rows, 0], logits[rows, k], data.user_ids[rows])))
    return results


def objective_task(task: str, objective: str) -> str:
    """The task name of one objective's records and table: ``task/objective``."""
    return f"{task}/{objective}"


GAIN_STATISTICS = ("", "_std", "_ci_low", "_ci_high", "_p")  # suffixes of a gain's entries in a summary row


def _paired_gain(by_seed: dict, reference: dict | None, key: str) -> tuple[float, ...]:
    """``(mean, std, ci_low, ci_high, p)`` of ``by_seed[s][key] - reference[s][key]`` over the
    seeds of ``by_seed`` (two-sided paired t-test, 95% confidence interval); nan when
    ``reference`` lacks one of those seeds."""
    seeds = sorted(by_seed)
    if reference is None or by_seed is reference or not all(s in reference for s in seeds):
        return (float("nan"),) * len(GAIN_STATISTICS)
    cmp = paired_comparison(np.array([by_seed[s][key] for s in seeds]), np.array([reference[s][key] for s in seeds]))
    return cmp["mean_gain"], cmp["std_gain"], cmp["ci_low"], cmp["ci_high"], cmp["p_value"]


def _gain_entries(name: str, values: tuple) -> dict:
    return {name + suffix: value for suffix, value in zip(GAIN_STATISTICS, values)}


def summarize(records: list[dict], baseline: str = "baseline") -> list[dict]:
    """One row per (task, method): mean and std of each metric over seeds; the paired AUC and
    GAUC gains over ``baseline`` (``auc_gain``, ``auc_gain_std``, ``auc_gain_ci_low``,
    ``auc_gain_ci_high`` (95% confidence interval), ``auc_gain_p``, same for gauc); and, for the
    methods of ``CONTROL_OF``, the paired AUC difference from their equal-capacity control
    (``auc_vs_control`` with the same suffixes). Entries are nan where the reference method
    or one of the seeds is absent."""
    rows = []
    for task in dict.fromkeys(r["task"] for r in records):
        by_method = {}
        for r in records:
            if r["task"] == task:
                by_method.setdefault(r["method"], {})[r["seed"]] = r
        for method in sorted(by_method, key=lambda m: m in TEACHER_OF):  # teacher rows last
            by_seed = by_method[method]
            seeds = sorted(by_seed)
            row = {"task": task, "method": method, "n_seeds": len(seeds)}
            for key in ("auc", "gauc", "logloss", "train_seconds"):
                values = np.array([by_seed[s][key] for s in seeds])
                row[key] = float(values.mean())
                row[key + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            for key in ("auc", "gauc"):
                row.update(_gain_entries(key + "_gain", _paired_gain(by_seed, by_method.get(baseline), key)))
            row.update(_gain_entries("auc_vs_control", _paired_gain(by_seed, by_method.get(CONTROL_OF.get(method)), "auc")))
            rows.append(row)
    return rows


def _pm(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f}" if np.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _gain_text(mean: float, std: float) -> str:
    if np.isnan(mean):
        return ""
    return f"{mean:+.4f}" if np.isnan(std) else f"{mean:+.4f} ± {std:.4f}"


def _ci_text(low: float, high: float) -> str:
    return "" if np.isnan(low) else f"[{low:+.4f}, {high:+.4f}]"


def _p_text(p: float) -> str:
    return "" if np.isnan(p) else f"{p:.3f}"


def format_table(rows: list[dict]) -> str:
    """Plain-text table of ``summarize`` rows for one task, with notes on the GAUC weighting,
    the confidence intervals and the controls."""
    header = ("method", "AUC", "GAUC", "log loss", "AUC gain vs baseline", "95% CI", "p", "AUC vs control",
              "95% CI", "p", "train s")
    lines = []
    for r in rows:
        name = r["method"] + (" (not servable)" if r["method"] in TEACHER_OF else "")
        lines.append((name, _pm(r["auc"], r["auc_std"], 4), _pm(r["gauc"], r["gauc_std"], 4),
                      _pm(r["logloss"], r["logloss_std"], 4), _gain_text(r["auc_gain"], r["auc_gain_std"]),
                      _ci_text(r["auc_gain_ci_low"], r["auc_gain_ci_high"]), _p_text(r["auc_gain_p"]),
                      _gain_text(r["auc_vs_control"], r["auc_vs_control_std"]),
                      _ci_text(r["auc_vs_control_ci_low"], r["auc_vs_control_ci_high"]), _p_text(r["auc_vs_control_p"]),
                      f"{r['train_seconds']:.1f}"))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    notes = ["GAUC: per-user AUC weighted by the user's impressions (users with one class skipped; docs/metrics.md)",
             "95% CI: of the mean paired gain over seeds (t-interval of scipy.stats.ttest_rel), beside its p value",
             CONTROL_NOTE]
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines] + notes)

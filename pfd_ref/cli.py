"""Command line: ``pfd-ref run`` (the main job) and its siblings.

Every argument is checked before any data is generated or any model trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pfd_ref.backend import BACKENDS, ENVIRONMENT_VARIABLE, using
from pfd_ref.data import Dataset
from pfd_ref.data.dataset import last_days
from pfd_ref.data.synthetic import SyntheticConfig, generate
from pfd_ref.distill import HARD_WEIGHTS, METHODS, STUDENT_KINDS, DistillConfig, ModelSizes
from pfd_ref.experiment import REPORTED_METHODS, TEACHER_OF, format_table, parse_methods, run_methods, summarize
from pfd_ref.files import write_atomically
from pfd_ref.layers import ACTIVATIONS, LEAKY_RELU_SLOPE
from pfd_ref.metrics import SCORE_KINDS
from pfd_ref.models import TOWER_NORMS
from pfd_ref.optim import OPTIMIZERS, SPARSE_MODES
from pfd_ref.provenance import file_source, format_differences, generator_source, provenance
from pfd_ref.score_files import ALIGNMENTS, read_teacher_scores
from pfd_ref.train import MODES, Progress, TrainConfig, check_batch_norm_batches, check_lr_warmup, check_warmup
from pfd_ref.validation import check_scalar

TASKS = ("ctr", "cvr")
STUDENT_OF_TASK = {"ctr": "two_tower", "cvr": "mlp"}
DEFAULT_SEEDS = 3
DEFAULT_LAMBDA = 0.5
TEACHER_SCORES_METHODS = ("baseline", "pfd")  # with --teacher-scores: the student alone, and on the given scores
TEACHER_SCORES_DEFAULTS = {"teacher_scores_are": "logits", "teacher_scores_align": "position"}
KUAIRAND = "kuairand"
# Defaults that depend on the data (argparse default None, filled in by _resolve_data_defaults):
# "synthetic" (the built-in generator), "saved" (--data FILE.npz) and "kuairand" (a real log,
# ~33k training rows: see docs/results.md, "Real data", for how its values were measured).
SOURCE_DEFAULTS = {
    "synthetic": {"epochs": 1, "warmup_steps": 100, "batch_size": 1024, "test_days": None},
    "saved": {"epochs": 1, "warmup_steps": 100, "batch_size": 1024, "test_days": 1},
    KUAIRAND: {"epochs": 1, "warmup_steps": 10, "batch_size": 1024, "test_days": 4},
}


def _seeds(text: str) -> list[int]:
    """``N`` means seeds 0..N-1; ``a,b,c`` lists them."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: expected a count or a comma list of integers, got {text!r}")
    if len(values) == 1:
        if values[0] < 1:
            raise argparse.ArgumentTypeError(f"--seeds: the count must be >= 1, got {values[0]}")
        return list(range(values[0]))
    return values


def _methods(text: str) -> tuple[str, ...]:
    try:
        return parse_methods(m.strip() for m in text.split(",") if m.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--{err}")


def _per_source(key: str) -> str:
    """``SOURCE_DEFAULTS[*][key]`` for --help: ``source value, ...`` (sources where it is set)."""
    return ", ".join(f"{source} {values[key]}" for source, values in SOURCE_DEFAULTS.items() if values[key] is not None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pfd-ref", description="Privileged Features Distillation, reference implementation")
    commands = parser.add_subparsers(dest="command", required=True)
    computes = argparse.ArgumentParser(add_help=False)  # the options of every command that computes
    computes.add_argument("--backend", choices=BACKENDS, default=None,
                          help=f"run the kernels in Numba or in their NumPy twins (default: ${ENVIRONMENT_VARIABLE}, else numba)")
    run = commands.add_parser("run", parents=[computes], help="train the methods on both tasks and print one table per task")
    run.add_argument("--task", choices=TASKS + ("all",), default="all")
    run.add_argument("--methods", type=_methods, default=None,
                     help=f"comma list from {', '.join(REPORTED_METHODS)} (default: all; with --teacher-scores: "
                          f"{','.join(TEACHER_SCORES_METHODS)})")
    run.add_argument("--mode", choices=MODES, default="sync")
    run.add_argument("--lambda", dest="lambda_", type=float, default=DEFAULT_LAMBDA, help="soft-loss weight after warm-up")
    run.add_argument("--warmup-steps", type=int, default=None,
                     help=f"steps with lambda = 0 at the start (default: {_per_source('warmup_steps')})")
    run.add_argument("--temperature", type=float, default=1.0)
    run.add_argument("--hard-weight", choices=HARD_WEIGHTS, default="one_minus_lambda")
    run.add_argument("--epochs", type=int, default=None, help=f"default: {_per_source('epochs')}")
    run.add_argument("--teacher-epochs", type=int, default=None, help="two-stage: teacher epochs (default: --epochs)")
    run.add_argument("--seeds", type=_seeds, default=list(range(DEFAULT_SEEDS)), help="a count N (seeds 0..N-1) or a comma list")
    run.add_argument("--batch-size", type=int, default=None, help=f"default: {_per_source('batch_size')}")
    run.add_argument("--lr", type=float, default=TrainConfig.lr, help="learning rate (reached after --lr-warmup-steps)")
    run.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=TrainConfig.optimizer,
                     help="Adam (lazy embedding rows), Adagrad (lazy rows) or plain SGD (docs/optim.md)")
    run.add_argument("--lr-warmup-steps", type=int, default=TrainConfig.lr_warmup_steps,
                     help="linear learning-rate warm-up: lr * min(1, (t + 1) / N) at 0-based step t of every loop")
    run.add_argument("--adagrad-initial-accumulator", type=float, default=None,
                     help=f"Adagrad's accumulator start value (default {TrainConfig.adagrad_initial_accumulator:g})")
    run.add_argument("--adagrad-eps", type=float, default=None,
                     help=f"Adagrad's eps, added to sqrt(accumulator) (default {TrainConfig.adagrad_eps:g})")
    run.add_argument("--shared-embeddings", action="store_true", help="sync: teacher and student share regular embeddings")
    run.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    run.add_argument("--privileged-strength", type=float, default=None, help="synthetic data: strength of the privileged signal")
    run.add_argument("--data-seed", type=int, default=0, help="synthetic data: generator seed")
    run.add_argument("--data", default=None,
                     help=f"instead of the synthetic data: '{KUAIRAND}' (a KuaiRand log, with --path) "
                          "or a saved pfd_ref dataset (.npz)")
    run.add_argument("--path", type=Path, default=None, help=f"with --data {KUAIRAND}: the log file (comma or tab separated)")
    run.add_argument("--label", default=None,
                     help=f"with --data {KUAIRAND}: the 0/1 label column, e.g. label, is_like, long_view (default: label)")
    run.add_argument("--user-features", type=Path, default=None,
                     help=f"with --data {KUAIRAND}: a KuaiRand user-features file (user_id + categorical columns)")
    run.add_argument("--test-days", type=int, default=None,
                     help=f"with --data: the last N days form the test split (default: {_per_source('test_days')})")
    run.add_argument("--student", choices=STUDENT_KINDS, default=None, help="student kind (default: two_tower for ctr, mlp otherwise)")
    run.add_argument("--json", type=Path, default=None, help="write the per-seed records as JSON")
    run.add_argument("--save", type=Path, default=None, help="directory for the trained students")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--teacher-folds", type=int, default=0,
                     help="two-stage: cross-fit the teacher's soft labels over K folds (0: in-sample)")
    _add_layer_options(run, ModelSizes())
    run.add_argument("--teacher-scores", type=Path, default=None,
                     help="two-stage with --data FILE.npz: a teacher's scores for every row of FILE (.npy, .npz or "
                          "CSV with a 'score' column), used as the soft labels instead of training a teacher")
    run.add_argument("--teacher-scores-are", choices=SCORE_KINDS, default=TEACHER_SCORES_DEFAULTS["teacher_scores_are"])
    run.add_argument("--teacher-scores-align", choices=ALIGNMENTS, default=TEACHER_SCORES_DEFAULTS["teacher_scores_align"],
                     help="position: score k is row k of the data file; row-id: a 'row_id' column holds each "
                          "score's 0-based row of the data file")

    score = commands.add_parser("score", parents=[computes], help="top-k items for users from a student saved by `run --save`")
    score.add_argument("model", type=Path, help="a student file (.npz) written by `pfd-ref run --save DIR`")
    score.add_argument("--users", required=True, type=_int_list, help="comma list of user ids")
    score.add_argument("--k", type=int, default=100)
    score.add_argument("--out", type=Path, default=None, help="write a CSV (user,rank,item,score) instead of printing")
    table = commands.add_parser("table", help="print the tables of saved runs (`run --json` files, merged) and "
                                              "what differs between the runs")
    table.add_argument("records", type=Path, nargs="+", help="JSON files written by `pfd-ref run --json`")
    _add_metrics_parser(commands)
    _add_oracle_parser(commands, computes)
    return parser


def _add_layer_options(parser, defaults) -> None:
    """``--activation``, ``--batch-norm``, ``--tower-norm``, ``--tower-scale`` (``train.ModelSizes``)."""
    parser.add_argument("--activation", choices=ACTIVATIONS, default=defaults.activation,
                        help=f"hidden activation of every MLP (leaky_relu: slope {LEAKY_RELU_SLOPE})")
    parser.add_argument("--batch-norm", action="store_true",
                        help="batch normalisation before every hidden activation (running averages for evaluation)")
    parser.add_argument("--tower-norm", choices=TOWER_NORMS, default=defaults.tower_norm,
                        help="two-tower models: l2-normalise both tower outputs (the paper: l2)")
    parser.add_argument("--tower-scale", type=float, default=defaults.tower_scale,
                        help="two-tower models: score = S * <u, v> + b (the paper: 5, with --tower-norm l2)")


def _add_metrics_parser(commands) -> None:
    """``metrics FILE``: the metrics of a prediction file (docs/metrics.md)."""
    from pfd_ref.metrics import GAUC_WEIGHTINGS
    metrics = commands.add_parser("metrics", help="AUC, GAUC, log loss, normalised entropy and calibration of a "
                                                  "prediction file (CSV with a header, or .npz)")
    metrics.add_argument("file", type=Path, help="columns label and score; optional user_id (GAUC) and weight")
    metrics.add_argument("--score-is", choices=SCORE_KINDS, default="logits")
    metrics.add_argument("--gauc-weight", choices=GAUC_WEIGHTINGS, default="impressions",
                         help="the weight of each user's AUC in GAUC: impressions (pfd_ref, FuxiCTR gAUC), uniform "
                              "(EasyRec's default, torchrec), positives (RecBole)")
    metrics.add_argument("--label-column", default="label")
    metrics.add_argument("--score-column", default="score")
    metrics.add_argument("--user-column", default="user_id")
    metrics.add_argument("--weight-column", default="weight")
    metrics.add_argument("--json", type=Path, nargs="?", const=Path("-"), default=None,
                         help="write the record (metrics + provenance) as JSON to this file, or to stdout without one")


def _add_oracle_parser(commands, computes) -> None:
    """``oracle dump`` (write a reference case) and ``oracle check`` (compare with it); docs/oracle.md."""
    from pfd_ref.oracle import CaseSpec
    oracle = commands.add_parser("oracle", help="reference cases for checking another PFD implementation (docs/oracle.md)")
    actions = oracle.add_subparsers(dest="oracle_command", required=True)
    dump = actions.add_parser("dump", parents=[computes], help="write one case (.npz): inputs, parameters, losses, gradients, updates")
    dump.add_argument("--model", choices=STUDENT_KINDS, required=True, help="the student's kind")
    dump.add_argument("--method", choices=METHODS, required=True)
    dump.add_argument("--mode", choices=MODES, required=True)
    dump.add_argument("--seed", type=int, default=CaseSpec.seed)
    dump.add_argument("--dtype", choices=("float64", "float32"), default=CaseSpec.dtype)
    dump.add_argument("--out", type=Path, required=True, help="the case file to write (.npz)")
    dump.add_argument("--rows", type=int, default=CaseSpec.rows, help="batch size")
    dump.add_argument("--lambda", dest="lambda_", type=float, default=CaseSpec.lambda_)
    dump.add_argument("--temperature", type=float, default=CaseSpec.temperature)
    dump.add_argument("--warmup-steps", type=int, default=CaseSpec.warmup_steps)
    dump.add_argument("--start-step", type=int, default=CaseSpec.start_step,
                      help="global 0-based index of the case's first step (lambda and learning-rate schedules)")
    dump.add_argument("--hard-weight", choices=HARD_WEIGHTS, default=CaseSpec.hard_weight)
    dump.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=CaseSpec.optimizer)
    dump.add_argument("--lr", type=float, default=CaseSpec.lr)
    dump.add_argument("--lr-warmup-steps", type=int, default=CaseSpec.lr_warmup_steps,
                      help="linear learning-rate warm-up: lr * min(1, (start_step + k) / N) at step k = 1..3")
    dump.add_argument("--beta1", type=float, default=CaseSpec.beta1, help="Adam")
    dump.add_argument("--beta2", type=float, default=CaseSpec.beta2, help="Adam")
    dump.add_argument("--eps", type=float, default=CaseSpec.eps, help="Adam")
    dump.add_argument("--adam", dest="adam_sparse", choices=SPARSE_MODES, default=CaseSpec.adam_sparse,
                      help="Adam's embedding tables: lazy (SparseAdam rule) or dense (Adam rule)")
    dump.add_argument("--adagrad-initial-accumulator", type=float, default=CaseSpec.adagrad_initial_accumulator)
    dump.add_argument("--adagrad-eps", type=float, default=CaseSpec.adagrad_eps)
    dump.add_argument("--adagrad", dest="adagrad_sparse", choices=SPARSE_MODES, default=CaseSpec.adagrad_sparse,
                      help="Adagrad's embedding tables: lazy (sparse gradients) or dense (densified)")
    dump.add_argument("--shared-embeddings", action="store_true", help="sync: one table per regular field")
    dump.add_argument("--weights", action="store_true", help="per-example weights")
    dump.add_argument("--pooling", choices=("mean", "sum"), default=CaseSpec.pooling, help="of the multi-id field")
    _add_layer_options(dump, CaseSpec)
    _add_objective_parser(actions)
    check = actions.add_parser("check", help="compare another implementation's arrays with a case")
    check.add_argument("case", type=Path, help="a case written by `oracle dump` or `oracle objective`")
    check.add_argument("theirs", type=Path, help="an .npz with the case's output.* arrays, by the same names")
    check.add_argument("--rtol", type=float, default=None, help="default: 1e-9 (float64 case), 1e-4 (float32)")
    check.add_argument("--atol", type=float, default=None, help="default: 1e-12 (float64 case), 1e-6 (float32)")
    check.add_argument("--only-failures", action="store_true", help="leave the passing arrays out of the table")


def _add_objective_parser(actions) -> None:
    """``oracle objective``: an objective-level case in one framework's convention (docs/oracle.md)."""
    from pfd_ref.conventions import CONVENTIONS, LOSSES, TEACHER_INPUTS
    from pfd_ref.objective_oracle import ObjectiveSpec
    objective = actions.add_parser("objective", help="write one objective-level case (.npz): the loss terms and "
                                                     "gradients of a batch of logits, in one framework's convention")
    objective.add_argument("--out", type=Path, required=True, help="the case file to write (.npz)")
    objective.add_argument("--convention", choices=CONVENTIONS, default=ObjectiveSpec.convention)
    objective.add_argument("--loss", choices=LOSSES, default=ObjectiveSpec.loss,
                           help="pfd_ref: bce, kl; easyrec: bce, kl, ce, l2; rocket: l2")
    objective.add_argument("--temperature", type=float, default=ObjectiveSpec.temperature)
    objective.add_argument("--teacher-input", choices=TEACHER_INPUTS, default=ObjectiveSpec.teacher_input)
    objective.add_argument("--lambda", dest="lambda_", type=float, default=ObjectiveSpec.lambda_)
    objective.add_argument("--hard-weight", choices=HARD_WEIGHTS, default=None,
                           help="default: one_minus_lambda (pfd_ref), one (easyrec, rocket)")
    objective.add_argument("--weights", action="store_true", help="per-example weights (one of them 0)")
    objective.add_argument("--rows", type=int, default=ObjectiveSpec.rows, help="batch size, >= 8 (the hard rows)")
    objective.add_argument("--seed", type=int, default=ObjectiveSpec.seed)
    objective.add_argument("--dtype", choices=("float64", "float32"), default=ObjectiveSpec.dtype)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")


def command_score(args) -> int:
    from pfd_ref.serving import ServedStudent
    check_scalar("k", args.k, int, low=1)
    student = ServedStudent.load(args.model)
    items, scores = student.top_k(args.users, args.k)
    lines = ["user,rank,item,score"] + [f"{user},{rank + 1},{item},{score:.6g}"
                                        for user, user_items, user_scores in zip(args.users, items, scores)
                                        for rank, (item, score) in enumerate(zip(user_items, user_scores))]
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    else:
        print("\n".join(lines))
    return 0


ADAGRAD_OPTIONS = {"adagrad_initial_accumulator": "--adagrad-initial-accumulator", "adagrad_eps": "--adagrad-eps"}


def _train_config(args, student_kind: str) -> TrainConfig:
    distill = DistillConfig(lambda_=args.lambda_, warmup_steps=args.warmup_steps, temperature=args.temperature,
                            hard_weight=args.hard_weight)
    adagrad = {name: getattr(args, name) for name in ADAGRAD_OPTIONS if getattr(args, name) is not None}
    if adagrad and args.optimizer != "adagrad":
        raise ValueError(f"{ADAGRAD_OPTIONS[next(iter(adagrad))]}: only with --optimizer adagrad")
    sizes = ModelSizes(activation=args.activation, batch_norm=args.batch_norm, tower_norm=args.tower_norm,
                       tower_scale=args.tower_scale)
    return TrainConfig(student_kind=student_kind, mode=args.mode, epochs=args.epochs, teacher_epochs=args.teacher_epochs,
                       batch_size=args.batch_size, lr=args.lr, distill=distill, shared_embeddings=args.shared_embeddings,
                       teacher_folds=args.teacher_folds, dtype=args.dtype, optimizer=args.optimizer,
                       lr_warmup_steps=args.lr_warmup_steps, sizes=sizes, **adagrad)


def _data_source(args) -> str:
    if args.data is None:
        return "synthetic"
    return KUAIRAND if args.data == KUAIRAND else "saved"


def _resolve_data_defaults(args) -> None:
    """Fill the options left at None from ``SOURCE_DEFAULTS`` of the run's data source, and
    reject the KuaiRand options without ``--data kuairand`` (ValueError naming the option)."""
    source = _data_source(args)
    if source == KUAIRAND:
        if args.path is None:
            raise ValueError(f"--path: required with --data {KUAIRAND} (the KuaiRand log file)")
        args.label = "label" if args.label is None else args.label
    else:
        for option in ("path", "label", "user_features"):
            if getattr(args, option) is not None:
                raise ValueError(f"--{option.replace('_', '-')}: only with --data {KUAIRAND}")
    for key, value in SOURCE_DEFAULTS[source].items():
        if getattr(args, key) is None:
            setattr(args, key, value)


class TaskData(NamedTuple):
    """One task of a run: its splits, the student kind, the teacher's logits for the training
    rows when they come from a file (``--teacher-scores``), and the data source (provenance)."""

    task: str
    train: Dataset
    test: Dataset
    student_kind: str
    teacher_logits: np.ndarray | None
    source: dict


def _datasets(args):
    """Yield a ``TaskData`` for each task of the run."""
    if args.data == KUAIRAND:
        from pfd_ref.data.kuairand import load_kuairand, split_by_time
        data, report = load_kuairand(args.path, args.label, args.user_features)
        train, test = split_by_time(data, report, args.test_days)
        print(report.summary(), file=sys.stderr)
        print(f"  time split: the last {args.test_days} day(s) are the test split ({test.n:,} rows, positive rate "
              f"{test.positive_rate:.4f}); training {train.n:,} rows, positive rate {train.positive_rate:.4f}",
              file=sys.stderr)
        source = {"data": file_source(args.path), "label": args.label,
                  "user_features": None if args.user_features is None else file_source(args.user_features)}
        yield TaskData(f"{KUAIRAND}_{args.label}", train, test, args.student or "mlp", None, source)
        return
    if args.data is not None:
        path = Path(args.data)
        data = Dataset.load(path)
        if data.day is None:
            raise ValueError(f"--data: {path} has no 'day' column, so it cannot be split by time")
        train, test = data.split_last_days(args.test_days)
        source, teacher_logits = {"data": file_source(path)}, None
        if args.teacher_scores is not None:
            source["teacher_scores"] = file_source(args.teacher_scores)
            scores = read_teacher_scores(args.teacher_scores, data.n, args.teacher_scores_are, args.teacher_scores_align,
                                         args.temperature, args.dtype, data_name=str(path))
            teacher_logits = scores[~last_days(data.day, args.test_days)]  # the training rows, in their order
            print(f"  teacher: {args.teacher_scores} ({args.teacher_scores_are}, aligned by "
                  f"{args.teacher_scores_align} to the {data.n} rows of {path}; {train.n} training rows used)",
                  file=sys.stderr)
        yield TaskData(path.stem, train, test, args.student or "mlp", teacher_logits, source)
        return
    for task in (TASKS if args.task == "all" else (args.task,)):
        config = SyntheticConfig(seed=args.data_seed)
        if args.privileged_strength is not None:
            config = replace(config, privileged_strength=args.privileged_strength)
        train, test = generate(task, config)
        source = {"data": generator_source("pfd_ref.data.synthetic.generate", {"task": task, **asdict(config)})}
        yield TaskData(task, train, test, args.student or STUDENT_OF_TASK[task], None, source)


def _check_teacher_scores(args) -> None:
    """With ``--teacher-scores``: a saved dataset, two-stage mode, no cross-fitting, and one
    distilled method (each would train the same student on the same scores); ValueError
    naming the option otherwise."""
    if args.teacher_scores is None:
        for option, default in TEACHER_SCORES_DEFAULTS.items():
            if getattr(args, option) != default:
                raise ValueError(f"--{option.replace('_', '-')}: only with --teacher-scores")
        return
    if args.data is None or args.data == KUAIRAND:
        raise ValueError("--teacher-scores: needs --data FILE.npz (the scores are aligned to that file's rows)")
    if args.mode != "two-stage":
        raise ValueError("--teacher-scores: needs --mode two-stage (a teacher made elsewhere is frozen)")
    if args.teacher_folds:
        raise ValueError("--teacher-folds: not with --teacher-scores (the teacher is not trained here)")
    distilled = [m for m in args.methods if m != "baseline"]
    if len(distilled) > 1 or any(m in TEACHER_OF for m in distilled):
        raise ValueError(f"--methods: with --teacher-scores list baseline and at most one of md, pfd, pfd+md (each "
                         f"trains the same student on the same scores; no teacher row exists); got {distilled}")


def _json_value(value):
    return str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value


def command_run(args) -> int:
    if args.methods is None:
        args.methods = TEACHER_SCORES_METHODS if args.teacher_scores is not None else REPORTED_METHODS
    _resolve_data_defaults(args)
    _check_teacher_scores(args)
    _train_config(args, "mlp")  # option errors surface before any data is generated
    if args.json is not None and not args.json.resolve().parent.is_dir():
        raise ValueError(f"--json: the directory of {args.json} does not exist")
    runs = [(data, _train_config(args, data.student_kind)) for data in _datasets(args)]
    if (args.tower_norm != "none" or args.tower_scale != 1) and all(c.student_kind == "mlp" for _, c in runs):
        raise ValueError("--tower-norm, --tower-scale: the tower options act on two-tower models; this run trains MLP students only")
    for data, config in runs:  # and schedule errors before any training
        if any(m != "baseline" for m in args.methods):
            check_warmup(config, data.train.n)
        check_lr_warmup(config, data.train.n, teacher_alone=config.mode == "two-stage"
                        and any(m != "baseline" for m in args.methods))
        check_batch_norm_batches(config, data.train.n)
    progress = None if args.quiet else Progress
    options = {key: _json_value(value) for key, value in vars(args).items()}
    all_records = []
    for (task, train, test, student_kind, teacher_logits, source), config in runs:
        print(f"\n== {task}: {train.n} training rows, {test.n} test rows, student {student_kind}, mode {args.mode}, "
              f"lambda {args.lambda_}, warm-up {args.warmup_steps} steps, seeds {args.seeds}{_optimizer_text(config)}",
              file=sys.stderr)
        on_result = None
        if args.save is not None:
            from pfd_ref.serving import save_student
            on_result = lambda seed, result, task=task, train=train: save_student(  # noqa: E731
                args.save / f"{task}_{result.method}_seed{seed}.npz", result, train)
        records = run_methods(task, train, test, args.methods, args.seeds, config, progress=progress, on_result=on_result,
                              teacher_logits=teacher_logits)
        run_provenance = provenance({"options": options, "train_config": asdict(config)}, source)
        for record in records:
            record["provenance"] = run_provenance
        all_records.extend(records)
        _print_table(task, records)
    if args.json is not None:
        write_atomically(args.json, lambda handle: json.dump(all_records, handle, indent=1), mode="w")
    return 0


def _optimizer_text(config: TrainConfig) -> str:
    """The optimizer for the run's header line; empty for the default (Adam, no learning-rate warm-up)."""
    text = ""
    if config.optimizer == "adagrad":
        text += (f", optimizer adagrad (initial accumulator {config.adagrad_initial_accumulator:g}, "
                 f"eps {config.adagrad_eps:g})")
    elif config.optimizer != TrainConfig.optimizer:
        text += f", optimizer {config.optimizer}"
    if config.lr_warmup_steps:
        text += f", lr {config.lr:g} after a {config.lr_warmup_steps}-step learning-rate warm-up"
    return text


def command_oracle(args) -> int:
    """``dump``: write the case; ``check``: print the report, exit 1 when any array fails."""
    from pfd_ref import oracle
    if args.oracle_command == "dump":
        spec = oracle.CaseSpec(**{name: getattr(args, name) for name in oracle.CaseSpec.__dataclass_fields__})
        arrays = oracle.compute_case(spec)
        oracle.save_case(args.out, arrays)
        outputs = sum(name.startswith("output.") for name in arrays)
        print(f"wrote {args.out}: {spec.model} {spec.method} {spec.mode} {spec.dtype} {spec.optimizer}, "
              f"{len(arrays)} arrays ({outputs} outputs)")
        return 0
    if args.oracle_command == "objective":
        return _command_oracle_objective(args)
    from pfd_ref.objective_oracle import check_case_files
    report = check_case_files(args.case, args.theirs, args.rtol, args.atol)
    print(f"pfd-ref oracle check: {args.case} (case) vs {args.theirs} (theirs)")
    print(report.format(only_failures=args.only_failures))
    return 0 if report.passed else 1


def _command_oracle_objective(args) -> int:
    from pfd_ref import objective_oracle
    spec = objective_oracle.ObjectiveSpec(**{name: getattr(args, name)
                                             for name in objective_oracle.ObjectiveSpec.__dataclass_fields__})
    arrays = objective_oracle.compute_objective_case(spec)
    objective_oracle.save_objective_case(args.out, arrays)
    print(f"wrote {args.out}: {spec.convention} {spec.loss}, teacher {spec.teacher_input}, T = {spec.temperature:g}, "
          f"lambda = {spec.lambda_:g}, hard weight {spec.hard_weight}, {spec.rows} rows, {spec.dtype}, "
          f"{len(arrays)} arrays")
    return 0


def command_metrics(args) -> int:
    """Print (or write as JSON, with its provenance) the metrics of one prediction file."""
    from pfd_ref.metrics import GAUC_WEIGHTING_USERS, score_metrics
    from pfd_ref.score_files import read_predictions
    if args.json is not None and str(args.json) != "-" and not args.json.resolve().parent.is_dir():
        raise ValueError(f"--json: the directory of {args.json} does not exist")
    predictions = read_predictions(args.file, args.score_is, args.label_column, args.score_column, args.user_column,
                                   args.weight_column)
    try:
        result = score_metrics(predictions.labels, predictions.scores, args.score_is, predictions.groups,
                               predictions.weights, args.gauc_weight)
    except ValueError as error:
        raise ValueError(f"{args.file}: {error}") from None
    if args.json is not None:
        options = {key: _json_value(value) for key, value in vars(args).items()}
        record = {"metrics": result, "provenance": provenance({"options": options},
                                                              {"predictions": file_source(args.file)})}
        text = json.dumps(record, indent=1)
        if str(args.json) == "-":
            print(text)
        else:
            write_atomically(args.json, lambda handle: handle.write(text + "\n"), mode="w")
        return 0
    print(f"{args.file}: {result['n']} rows, {result['positives']} positive, scores are {args.score_is}")
    for key, value in result.items():
        if key not in ("n", "positives", "score_is", "gauc_weighting"):
            print(f"  {key:<28} {'-' if value is None else f'{value:.6f}'}")
    if predictions.groups is not None:
        print(f"GAUC: per-user AUC weighted by {args.gauc_weight} (used by {GAUC_WEIGHTING_USERS[args.gauc_weight]}); "
              "users with one class skipped")
    else:
        print(f"GAUC: no {args.user_column!r} column (name it with --user-column)")
    if predictions.weights is not None:
        print(f"weighted_*: every row weighted by column {args.weight_column!r} (pairs by w_i w_j in AUC)")
    return 0


def _print_table(task: str, records: list[dict]) -> None:
    n_seeds = len({r["seed"] for r in records})
    print(f"\n{task}  ({n_seeds} seed(s); mean ± std over seeds; gain: paired over seeds)")
    print(format_table(summarize(records)))
    sys.stdout.flush()


RECORD_KEYS = ("task", "method", "seed", "auc", "gauc", "logloss", "train_seconds")
# provenance keys that differ between any two runs without saying anything about the numbers
RUN_DIFFERENCE_IGNORED = ("date", "config.options.json", "config.options.save", "config.options.quiet")


def command_table(args) -> int:
    """Print the tables of the records in one or more ``run --json`` files (merged)."""
    records, origins = [], []
    for path in args.records:
        try:
            loaded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"records: cannot read {path}: {err}")
        if not isinstance(loaded, list):
            raise ValueError(f"records: {path} does not hold a list of records (written by `pfd-ref run --json`)")
        for i, record in enumerate(loaded):
            missing = [k for k in RECORD_KEYS if not isinstance(record, dict) or k not in record]
            if missing:
                raise ValueError(f"records: {path}, record {i}: missing {', '.join(missing)}")
        records.extend(loaded)
        origins.extend([str(path)] * len(loaded))
    keys = [(r["task"], r["method"], r["seed"]) for r in records]
    if len(set(keys)) != len(keys):
        duplicate = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"records: task {duplicate[0]!r}, method {duplicate[1]!r}, seed {duplicate[2]} appears twice")
    for task in dict.fromkeys(r["task"] for r in records):
        _print_table(task, [r for r in records if r["task"] == task])
        by_file = {}  # each file's provenance of this task (one per run)
        for origin, record in zip(origins, records):
            if record["task"] == task:
                by_file.setdefault(origin, record.get("provenance"))
        if len(by_file) > 1:
            print("\n".join(format_differences(by_file, RUN_DIFFERENCE_IGNORED)))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with using(getattr(args, "backend", None)):
            return {"run": command_run, "score": command_score, "oracle": command_oracle, "table": command_table,
                    "metrics": command_metrics}[args.command](args)
    except ValueError as err:
        print(f"pfd-ref: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

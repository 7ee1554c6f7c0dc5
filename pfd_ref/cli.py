"""Command line: ``pfd-ref run`` (the main job) and its siblings.

This module parses arguments and calls: the policy (data sources and their defaults, the
teacher-scores rules, the record schema and its provenance, the tables) is in
``pfd_ref.experiment``, the oracle in ``pfd_ref.oracle`` and ``pfd_ref.objective_oracle``,
serving in ``pfd_ref.serving``, the metrics of a prediction file in ``pfd_ref.metrics``.
Every argument is checked before any data is generated or any model trained.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import signal
import sys
import threading
import zipfile
import zlib
from pathlib import Path

from pfd_ref import experiment
from pfd_ref.backend import BACKENDS, ENVIRONMENT_VARIABLE, compile_kernels, using
from pfd_ref.data.taobao import OUTSIDE_WINDOW
from pfd_ref.distill import HARD_WEIGHTS, METHOD_RULES, METHODS, SHARING, STUDENT_KINDS, DistillConfig
from pfd_ref.files import check_output_directory, check_output_file, write_atomically
from pfd_ref.layers import ACTIVATIONS, LEAKY_RELU_SLOPE
from pfd_ref.metrics import SCORE_KINDS
from pfd_ref.models import TOWER_NORMS
from pfd_ref.optim import OPTIMIZERS
from pfd_ref.provenance import file_source, json_options, provenance
from pfd_ref.score_files import ALIGNMENTS
from pfd_ref.train import DTYPES, MODES, Progress, TrainConfig
from pfd_ref.validation import check_scalar


def _seeds(text: str) -> list[int]:
    """``N`` means seeds 0..N-1; ``a,b,c`` lists distinct seeds >= 0."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a comma list of integers, got {text!r}")
    if len(values) == 1:
        if values[0] < 1:
            raise argparse.ArgumentTypeError(f"the count must be >= 1, got {values[0]}")
        return list(range(values[0]))
    if min(values) < 0:
        raise argparse.ArgumentTypeError(f"a seed must be >= 0, got {min(values)}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"seed(s) {repeated} listed twice (each seed trains once)")
    return values


def _methods(text: str) -> tuple[str, ...]:
    try:
        return experiment.parse_methods(m.strip() for m in text.split(",") if m.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("methods: "))  # argparse names the option


def _names(text: str) -> tuple[str, ...]:
    """A comma list of names (column names: --objectives)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _float_list(text: str) -> tuple[float, ...]:
    """A comma list of numbers (--objective-weights, paper --lambdas); empty entries are skipped."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of numbers, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return values


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def _per_source(key: str) -> str:
    """``SOURCE_DEFAULTS[*][key]`` for --help: ``source value, ...`` (sources where it is set,
    or scaled to the data)."""
    scaled = "scaled to the data (docs/data.md, \"Run defaults\")"
    return ", ".join(f"{source} {scaled if values[key] is None else values[key]}"
                     for source, values in experiment.SOURCE_DEFAULTS.items()
                     if values[key] is not None or key in experiment.SCALED_OPTIONS)


def add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    """One option per field of the dataclass ``cls``: ``--field-name`` (or ``metadata["flag"]``),
    of the default's type (or ``metadata["type"]``; a bool is a switch), with the field's
    default, and the ``choices``, ``required`` and ``help`` of its metadata."""
    for field in dataclasses.fields(cls):
        flag = field.metadata.get("flag", "--" + field.name.rstrip("_").replace("_", "-"))
        kwargs = {"dest": field.name, "help": field.metadata.get("help")}
        if isinstance(field.default, bool):
            kwargs.update(action="store_true")
        else:
            kwargs.update(type=field.metadata.get("type", type(field.default)), choices=field.metadata.get("choices"))
            if field.metadata.get("required"):
                kwargs.update(required=True)
            else:
                kwargs.update(default=field.default)
        parser.add_argument(flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pfd-ref", description="Privileged Features Distillation, reference implementation")
    commands = parser.add_subparsers(dest="command", required=True)
    computes = argparse.ArgumentParser(add_help=False)  # the options of every command that runs kernels
    computes.add_argument("--backend", choices=BACKENDS, default=None,
                          help=f"run the kernels in Numba or in their NumPy twins (default: ${ENVIRONMENT_VARIABLE}, else numba)")
    _add_run_parser(commands, computes)
    score = commands.add_parser("score", parents=[computes], help="top-k items for users from a student saved by `run --save`")
    score.add_argument("model", type=Path, help="a student file (.npz) written by `pfd-ref run --save DIR`")
    score.add_argument("--users", type=_int_list, default=None,
                       help="comma list of user ids (required unless --candidates gives them)")
    score.add_argument("--k", type=int, default=100)
    score.add_argument("--candidates", type=Path, default=None,
                       help="a CSV file with the header user,item: rank only each user's candidates (one request "
                            "per user; items are catalogue keys, or rows of --item-vectors)")
    score.add_argument("--item-vectors", type=Path, default=None,
                       help="two-tower students: score the item vectors of this .npy file (N, k), read in blocks "
                            "(catalogues larger than memory; the rows of --candidates from a memory map of it); items "
                            "are reported by row number")
    score.add_argument("--out", type=Path, default=None, help="write a CSV (user,rank,item,score) instead of printing")
    table = commands.add_parser("table", help="print the tables of saved runs (`run --json` files, merged) and "
                                              "what differs between the runs")
    table.add_argument("records", type=Path, nargs="+", help="JSON files written by `pfd-ref run --json`")
    _add_metrics_parser(commands)
    _add_oracle_parser(commands, computes)
    _add_paper_parser(commands, computes)
    return parser


def _add_run_parser(commands, computes) -> None:
    kuairand, taobao = experiment.KUAIRAND, experiment.TAOBAO
    distill, config = DistillConfig(), TrainConfig()
    run = commands.add_parser("run", parents=[computes], help="train the methods on both tasks and print one table per task")
    run.add_argument("--task", choices=experiment.TASKS + (experiment.SHORT_VIDEO, "all"), default="all",
                     help=f"all: {' and '.join(experiment.TASKS)}; {experiment.SHORT_VIDEO}: the synthetic short-video log "
                          "(several objectives, a multi-head student; docs/results.md, 'Short video')")
    run.add_argument("--methods", type=_methods, default=None,
                     help=f"comma list from {', '.join(experiment.REPORTED_METHODS)} (default: all; with "
                          f"--teacher-scores: {','.join(experiment.TEACHER_SCORES_METHODS)})")
    run.add_argument("--preset", choices=experiment.PRESETS, default=experiment.PRESETS[0],
                     help="the defaults of every option below marked 'preset': paper (the paper's choices, step counts "
                          "scaled to the data) or simple (Adam, ReLU, no batch norm, plain inner product, no sharing); "
                          "docs/method.md, 'Defaults'")
    run.add_argument("--mode", choices=MODES, default=config.mode)
    run.add_argument("--lambda", dest="lambda_", type=float, default=distill.lambda_, help="soft-loss weight after warm-up")
    run.add_argument("--warmup-steps", type=int, default=None,
                     help="steps with lambda = 0 at the start (preset paper: a tenth of an epoch's steps, "
                          f"scaled_warmup_steps; simple: {_per_source('warmup_steps')}; fitted to small data)")
    run.add_argument("--temperature", type=float, default=distill.temperature)
    run.add_argument("--hard-weight", choices=HARD_WEIGHTS, default=distill.hard_weight)
    run.add_argument("--epochs", type=int, default=None, help=f"default: {_per_source('epochs')}")
    run.add_argument("--teacher-epochs", type=int, default=None, help="two-stage: teacher epochs (default: --epochs)")
    run.add_argument("--seeds", type=_seeds, default=list(range(experiment.DEFAULT_SEEDS)),
                     help="a count N (seeds 0..N-1) or a comma list")
    run.add_argument("--batch-size", type=int, default=None,
                     help=f"default: {_per_source('batch_size')}; fitted to small data (at least 20 steps an epoch)")
    lrs = ", ".join(f"{name} {lr:g}" for name, lr in experiment.DEFAULT_LR.items())
    adagrad = experiment.ADAGRAD_DEFAULTS
    run.add_argument("--lr", type=float, default=None,
                     help=f"learning rate, reached after --lr-warmup-steps (default by optimizer: {lrs})")
    run.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=None,
                     help="Adam (lazy embedding rows), Adagrad (lazy rows) or plain SGD (docs/optim.md; "
                          "preset paper: adagrad, simple: adam)")
    run.add_argument("--lr-warmup-steps", type=int, default=None,
                     help="linear learning-rate warm-up: lr * min(1, (t + 1) / N) at 0-based step t of every loop "
                          "(preset paper: as --warmup-steps; simple: 0)")
    run.add_argument("--adagrad-initial-accumulator", type=float, default=None,
                     help=f"Adagrad's accumulator start value (default {adagrad['adagrad_initial_accumulator']:g})")
    run.add_argument("--adagrad-eps", type=float, default=None,
                     help=f"Adagrad's eps, added to sqrt(accumulator) (default {adagrad['adagrad_eps']:g})")
    sharing = experiment.PAPER_SHARING
    run.add_argument("--share", choices=tuple(SHARING), default=None,
                     help="sync: the embedding tables teacher and student share (docs/method.md; preset paper: "
                          f"{sharing['two_tower']} for a two-tower student, {sharing['mlp']} for an MLP; simple: none)")
    run.add_argument("--mtl-weight", type=float, default=distill.mtl_weight,
                     help="mtl: the weight alpha of the auxiliary losses (L_hard + alpha sum_f L_f)")
    run.add_argument("--dtype", choices=DTYPES, default=config.dtype)
    run.add_argument("--privileged-strength", type=float, default=None, help="synthetic data: strength of the privileged signal")
    run.add_argument("--data-seed", type=int, default=0,
                     help=f"synthetic data: generator seed; --data {taobao}: the seed of the CTR negatives")
    run.add_argument("--data", default=None,
                     help=f"instead of the synthetic data: '{kuairand}' (a KuaiRand log, with --path), "
                          f"'{taobao}' (Taobao UserBehavior.csv, with --path; --task cvr, ctr or all) "
                          "or a saved pfd_ref dataset (.npz)")
    run.add_argument("--path", type=Path, default=None,
                     help=f"with --data {kuairand} or {taobao}: the log file (comma or tab separated)")
    run.add_argument("--rows", type=int, default=None,
                     help=f"with --data {taobao}: read only the first N rows (whole users; default: all)")
    run.add_argument("--outside-window", choices=OUTSIDE_WINDOW, default=None,
                     help=f"with --data {taobao}: rows timestamped outside 2017-11-25..12-03 are an error "
                          "(default) or dropped and counted")
    run.add_argument("--label", default=None,
                     help=f"with --data {kuairand}: the 0/1 label column, e.g. label, is_like, long_view (default: label)")
    run.add_argument("--objectives", type=_names, default=None,
                     help=f"with --task {experiment.SHORT_VIDEO} or --data {kuairand}: a comma list of 0/1 objective "
                          "columns, one head each of a multi-head student, e.g. is_click,is_like,is_comment,is_forward,"
                          "is_follow,is_profile_enter (docs/method.md, 'Several objectives')")
    run.add_argument("--objective-weights", type=_float_list, default=None,
                     help="with --objectives: one weight w_k >= 0 per objective, in its order (default: 1 each)")
    run.add_argument("--user-features", type=Path, default=None,
                     help=f"with --data {kuairand}: a KuaiRand user-features file (user_id + categorical columns)")
    run.add_argument("--test-days", type=int, default=None,
                     help=f"with --data: the last N days form the test split (default: {_per_source('test_days')}; "
                          "at most a third of the days)")
    run.add_argument("--student", choices=STUDENT_KINDS, default=None, help="student kind (default: two_tower for ctr, mlp otherwise)")
    run.add_argument("--json", type=Path, default=None,
                     help="write the per-seed records as JSON, rewritten after every finished seed")
    run.add_argument("--save", type=Path, default=None, help="directory for the trained students (each saved when trained)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--teacher-folds", type=int, default=config.teacher_folds,
                     help="two-stage: cross-fit the teacher's soft labels over K folds (0: in-sample)")
    run.add_argument("--activation", choices=ACTIVATIONS, default=None,
                     help=f"hidden activation of every MLP (leaky_relu: slope {LEAKY_RELU_SLOPE}; preset paper: "
                          "leaky_relu, simple: relu)")
    run.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None,
                     help="batch normalisation before every hidden activation, running averages for evaluation "
                          "(preset paper: on, simple: off)")
    run.add_argument("--tower-norm", choices=TOWER_NORMS, default=None,
                     help="two-tower models: l2-normalise both tower outputs (preset paper: l2, simple: none)")
    run.add_argument("--tower-scale", type=float, default=None,
                     help="two-tower models: score = S * <u, v> + b (preset paper: 5, simple: 1)")
    defaults = experiment.TEACHER_SCORES_DEFAULTS
    run.add_argument("--teacher-scores", type=Path, default=None,
                     help="two-stage with --data FILE.npz: a teacher's scores for every row of FILE (.npy, .npz or "
                          "CSV with a 'score' column), used as the soft labels instead of training a teacher")
    run.add_argument("--teacher-scores-are", choices=SCORE_KINDS, default=defaults["teacher_scores_are"])
    run.add_argument("--teacher-scores-align", choices=ALIGNMENTS, default=defaults["teacher_scores_align"],
                     help="position: score k is row k of the data file; row-id: a 'row_id' column holds each "
                          "score's 0-based row of the data file")


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
    """``oracle dump`` (one option per ``CaseSpec`` field), ``oracle objective`` (one per
    ``ObjectiveSpec`` field) and ``oracle check``; docs/oracle.md."""
    from pfd_ref.objective_oracle import ObjectiveSpec
    from pfd_ref.oracle import DEFAULT_TOLERANCES, CaseSpec
    oracle = commands.add_parser("oracle", help="reference cases for checking another PFD implementation (docs/oracle.md)")
    actions = oracle.add_subparsers(dest="oracle_command", required=True)
    dump = actions.add_parser("dump", parents=[computes], help="write one case (.npz): inputs, parameters, losses, gradients, updates")
    add_dataclass_options(dump, CaseSpec)
    dump.add_argument("--out", type=Path, required=True, help="the case file to write (.npz)")
    objective = actions.add_parser("objective", help="write one objective-level case (.npz): the loss terms and "
                                                     "gradients of a batch of logits, in one framework's convention")
    add_dataclass_options(objective, ObjectiveSpec)
    objective.add_argument("--out", type=Path, required=True, help="the case file to write (.npz)")
    check = actions.add_parser("check", help="compare another implementation's arrays with a case")
    check.add_argument("case", type=Path, help="a case written by `oracle dump` or `oracle objective`")
    check.add_argument("theirs", type=Path, help="an .npz with the case's output.* arrays, by the same names")
    rtols, atols = (", ".join(f"{tolerance[i]:g} ({dtype} case)" for dtype, tolerance in DEFAULT_TOLERANCES.items())
                    for i in (0, 1))
    check.add_argument("--rtol", type=float, default=None, help=f"default: {rtols}")
    check.add_argument("--atol", type=float, default=None, help=f"default: {atols}")
    check.add_argument("--only-failures", action="store_true", help="leave the passing arrays out of the table")


def _tables(text: str) -> tuple[str, ...]:
    from pfd_ref.paper import parse_tables
    try:
        return parse_tables(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--tables: "))  # argparse names the option


def _add_paper_parser(commands, computes) -> None:
    """``paper``: the paper's tables on the built-in data, beside its numbers, with a verdict per claim."""
    from pfd_ref import paper
    command = commands.add_parser("paper", parents=[computes],
                                  help="the paper's Tables 2, 4-8 and its §5.2 cost figure on the built-in data, "
                                       "beside the paper's numbers, with a verdict per claim (docs/paper.md)")
    command.add_argument("--quick", action="store_true",
                         help=f"smaller data ({paper.QUICK.data.n_users} users instead of {paper.FULL.data.n_users}), "
                              f"{paper.QUICK.seeds} seeds, lambda {','.join(map(str, paper.QUICK.lambdas))}: "
                              "the structure in minutes, not verdicts")
    command.add_argument("--seeds", type=int, default=None,
                         help=f"seeds 0..N-1, N >= 2 (default: {paper.FULL.seeds}; --quick {paper.QUICK.seeds})")
    command.add_argument("--tables", type=_tables, default=paper.TABLES,
                         help=f"comma list from {','.join(paper.TABLES)} (default: all)")
    command.add_argument("--jobs", type=int, default=None,
                         help="worker processes that train in parallel (default: the usable CPUs, at most 4); the "
                              "numbers do not depend on it, the times do")
    command.add_argument("--json", type=Path, default=None,
                         help="write the rows, claims, cost figure and provenance as JSON (rewritten after every "
                              "finished training, so an interrupted run keeps its finished work)")
    command.add_argument("--lambdas", type=_float_list, default=None,
                         help=f"the lambdas of Tables 5 and 6, a comma list from {','.join(map(str, paper.PAPER_LAMBDAS))} "
                              f"holding {paper.PAPER_LAMBDA} (default: all; --quick {','.join(map(str, paper.QUICK.lambdas))})")
    command.add_argument("--resume", action="store_true",
                         help="keep the trainings the --json file of an earlier run of the same size already holds")
    command.add_argument("--quiet", action="store_true", help="no progress lines")


def command_paper(args) -> int:
    """Run the paper's tables and print them with the claims' verdicts. Options and the --json
    path (by ``paper.run_paper``) are checked before any data is made; --json is rewritten
    after every training."""
    from pfd_ref import paper
    scale = paper.QUICK if args.quick else paper.FULL
    if args.lambdas is not None:
        scale = dataclasses.replace(scale, lambdas=args.lambdas)  # checked: a subset of the paper's, with 0.5
    seeds = paper.check_seeds(scale.seeds if args.seeds is None else args.seeds)
    jobs = paper.default_jobs() if args.jobs is None else check_scalar("--jobs", args.jobs, int, low=1)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        report = paper.run_paper(args.tables, scale, seeds, jobs, args.json, log, options=json_options(vars(args)),
                                 resume=args.resume)
    except KeyboardInterrupt:
        kept = f"; {args.json} holds the trainings that finished" if args.json else ""
        print(f"pfd-ref: interrupted{kept}", file=sys.stderr)
        return INTERRUPTED
    print(paper.format_report(report))
    return 0


def command_run(args) -> int:
    """Train and print the tables. Output paths are checked before any data is loaded;
    ``--json`` is rewritten (atomically) after every finished seed of every task with all the
    records so far, and each student is saved as soon as it is trained, so an interrupted
    run keeps every seed it finished."""
    options = experiment.resolve_options(vars(args))
    check_output_file("--json", args.json)
    check_output_directory("--save", args.save)
    students = _student_paths(args.save, options)
    runs = experiment.prepare_runs(options, log=lambda line: print(line, file=sys.stderr))
    seconds = compile_kernels((options["dtype"],), ("training",))  # before training: no train s includes it
    if seconds is not None:
        print(f"compile: the {options['dtype']} training kernels, compiled or loaded from Numba's cache in "
              f"{seconds:.1f} s (not counted in train s)", file=sys.stderr)
    progress = None if args.quiet else Progress
    finished = []

    def keep(seed: int, records: list[dict]) -> None:
        finished.extend(records)
        if args.json is not None:
            write_atomically(args.json, lambda handle: json.dump(finished, handle, indent=1), mode="w")

    try:
        for run in runs:
            config = run.config
            print(f"\n== {run.task}: {run.train.n} training rows, {run.test.n} test rows, student {config.student_kind}, "
                  f"mode {config.mode}, lambda {config.distill.lambda_}, warm-up {config.distill.warmup_steps} steps, "
                  f"seeds {args.seeds}; preset {args.preset}: {_config_text(config)}", file=sys.stderr)
            on_result = None
            if students is not None:
                from pfd_ref.serving import save_student  # makes --save DIR when it saves the first student
                on_result = lambda seed, result, run=run: save_student(  # noqa: E731
                    students[run.task, result.method, seed], result, run.train)
            records = experiment.run_task(run, progress=progress, on_result=on_result, on_seed=keep)
            for task in dict.fromkeys(r["task"] for r in records):  # one table per objective of a multi-head run
                _print_table(task, [r for r in records if r["task"] == task])
    except KeyboardInterrupt:
        kept = f"; {args.json} holds the {len(finished)} records of the seeds that finished" if args.json else ""
        print(f"pfd-ref: interrupted{kept}", file=sys.stderr)
        return INTERRUPTED
    return 0


def _student_paths(directory: Path | None, options: dict) -> dict | None:
    """``{(task, method, seed): path}`` of every student file ``--save`` may write (None without
    it): each task of ``experiment.run_tasks``, each method of ``--methods`` (the teacher rows
    save nothing), or without it each method its student kind takes, and each seed. Called
    before any data is read: ValueError naming ``--save`` when one of the paths is a directory.
    Creates nothing (``serving.save_student`` makes ``directory`` with the first student)."""
    if directory is None:
        return None
    paths = {}
    for task, kind in experiment.run_tasks(options):
        methods = options["methods"] or [m for m in METHODS if kind in METHOD_RULES[m].student_kinds]
        for method in (m for m in methods if m not in experiment.TEACHER_OF):
            for seed in options["seeds"]:
                paths[task, method, seed] = directory / f"{task}_{method}_seed{seed}.npz"
    clash = next((path for path in paths.values() if path.is_dir()), None)
    if clash is not None:
        raise ValueError(f"--save: {clash} is a directory, where this run may write a student file")
    return paths


def _config_text(config: TrainConfig) -> str:
    """The optimizer, layers and sharing of a run for its header line."""
    text = f"optimizer {config.optimizer} lr {config.lr:g}"
    if config.optimizer == "adagrad":
        text += f" (initial accumulator {config.adagrad_initial_accumulator:g}, eps {config.adagrad_eps:g})"
    if config.lr_warmup_steps:
        text += f" after a {config.lr_warmup_steps}-step learning-rate warm-up"
    sizes = config.sizes
    text += f", {sizes.activation}" + (" + batch norm" if sizes.batch_norm else "")
    if config.student_kind == "two_tower":
        text += f", towers {sizes.tower_norm} x {sizes.tower_scale:g}"
    return text + f", sharing {config.sharing}"


def command_score(args) -> int:
    from pfd_ref.serving import ServedStudent, rank_requests
    check_scalar("--k", args.k, int, low=1)
    check_output_file("--out", args.out)
    if args.users is None and args.candidates is None:
        raise ValueError("--users: required unless --candidates lists the users")
    student = ServedStudent.load(args.model)
    users, ranked = rank_requests(student, args.users, args.k, args.candidates, args.item_vectors)
    lines = ["user,rank,item,score"] + [f"{user},{rank + 1},{item},{score:.6g}"
                                        for user, (user_items, user_scores) in zip(users, ranked)
                                        for rank, (item, score) in enumerate(zip(user_items, user_scores))]
    if args.out is not None:
        write_atomically(args.out, lambda handle: handle.write("\n".join(lines) + "\n"), mode="w")
    else:
        print("\n".join(lines))
    return 0


def _spec(cls, args):
    """The dataclass ``cls`` made of the parsed options its fields generated."""
    return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})


def command_oracle(args) -> int:
    """``dump`` and ``objective``: write the case; ``check``: print the report, exit 1 when any array fails."""
    from pfd_ref.oracle import CaseSpec, compute_case, save_case
    if args.oracle_command == "dump":
        spec = _spec(CaseSpec, args)
        check_output_file("--out", args.out)
        arrays = compute_case(spec)
        save_case(args.out, arrays)
        outputs = sum(name.startswith("output.") for name in arrays)
        print(f"wrote {args.out}: {spec.model} {spec.method} {spec.mode} {spec.dtype} {spec.optimizer}, "
              f"{len(arrays)} arrays ({outputs} outputs)")
        return 0
    from pfd_ref import objective_oracle
    if args.oracle_command == "objective":
        spec = _spec(objective_oracle.ObjectiveSpec, args)
        check_output_file("--out", args.out)
        arrays = objective_oracle.compute_objective_case(spec)
        save_case(args.out, arrays)
        print(f"wrote {args.out}: {spec.convention} {spec.loss}, teacher {spec.teacher_input}, T = {spec.temperature:g}, "
              f"lambda = {spec.lambda_:g}, hard weight {spec.hard_weight}, {spec.rows} rows, {spec.dtype}, "
              f"{len(arrays)} arrays")
        return 0
    report = objective_oracle.check_case_files(args.case, args.theirs, args.rtol, args.atol)
    print(f"pfd-ref oracle check: {args.case} (case) vs {args.theirs} (theirs)")
    print(report.format(only_failures=args.only_failures))
    return 0 if report.passed else 1


def command_metrics(args) -> int:
    """Print (or write as JSON, with its provenance) the metrics of one prediction file."""
    from pfd_ref.metrics import GAUC_WEIGHTING_USERS, score_metrics
    from pfd_ref.score_files import read_predictions
    check_output_file("--json", args.json)
    predictions = read_predictions(args.file, args.score_is, args.label_column, args.score_column, args.user_column,
                                   args.weight_column)
    try:
        result = score_metrics(predictions.labels, predictions.scores, args.score_is, predictions.groups,
                               predictions.weights, args.gauc_weight)
    except ValueError as error:
        raise ValueError(f"{args.file}: {error}") from None
    if args.json is not None:
        record = {"metrics": result, "provenance": provenance({"options": json_options(vars(args))},
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


def command_table(args) -> int:
    """Print the tables of the records in one or more ``run --json`` files (merged) and what
    differs between the runs."""
    records, origins = experiment.load_records(args.records)
    for task in dict.fromkeys(r["task"] for r in records):
        _print_table(task, [r for r in records if r["task"] == task])
        lines = experiment.run_differences(records, origins, task)
        if lines:
            print("\n".join(lines))
    return 0


def _print_table(task: str, records: list[dict]) -> None:
    n_seeds = len({r["seed"] for r in records})
    print(f"\n{task}  ({n_seeds} seed(s); mean ± std over seeds; gain: paired over seeds)")
    print(experiment.format_table(experiment.summarize(records)))
    sys.stdout.flush()


COMMANDS = {"run": command_run, "score": command_score, "oracle": command_oracle, "table": command_table,
            "metrics": command_metrics, "paper": command_paper}


# What bad input or a failing environment raises: reported as ``pfd-ref: error: ...`` with exit
# status 2. Anything else is a bug of pfd_ref and keeps its traceback.
EXPECTED_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, csv.Error)
INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)


def error_message(error: BaseException) -> str:
    """The text after ``pfd-ref: error:`` for one of ``EXPECTED_ERRORS``: an ``OSError`` as
    ``<file>: <reason>``, a file-format error with its type, anything else as it reads."""
    if isinstance(error, OSError) and error.strerror:
        names = [name for name in (error.filename, error.filename2) if name is not None]
        return f"{' -> '.join(map(str, names))}: {error.strerror}" if names else error.strerror
    if isinstance(error, ValueError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _terminate(signal_number, frame):
    """SIGTERM ends a command like Ctrl-C: files being written are removed, finished ones stay."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with using(getattr(args, "backend", None)):
            return COMMANDS[args.command](args)
    except EXPECTED_ERRORS as error:
        print(f"pfd-ref: error: {error_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pfd-ref: interrupted", file=sys.stderr)
        return INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())

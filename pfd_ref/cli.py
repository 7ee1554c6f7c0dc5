"""Command line: ``pfd-ref run`` (the main job) and its siblings.

Every argument is checked before any data is generated or any model trained.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from pfd_ref.data import Dataset
from pfd_ref.data.synthetic import SyntheticConfig, generate
from pfd_ref.distill import HARD_WEIGHTS, DistillConfig
from pfd_ref.experiment import REPORTED_METHODS, format_table, parse_methods, run_methods, summarize
from pfd_ref.train import MODES, STUDENT_KINDS, Progress, TrainConfig, check_schedule

TASKS = ("ctr", "cvr")
STUDENT_OF_TASK = {"ctr": "two_tower", "cvr": "mlp"}
DEFAULT_SEEDS = 3
DEFAULT_EPOCHS = 1
DEFAULT_LAMBDA = 0.5
DEFAULT_WARMUP = 100


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pfd-ref", description="Privileged Features Distillation, reference implementation")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train the methods on both tasks and print one table per task")
    run.add_argument("--task", choices=TASKS + ("all",), default="all")
    run.add_argument("--methods", type=_methods, default=REPORTED_METHODS,
                     help=f"comma list from {', '.join(REPORTED_METHODS)} (default: all)")
    run.add_argument("--mode", choices=MODES, default="sync")
    run.add_argument("--lambda", dest="lambda_", type=float, default=DEFAULT_LAMBDA, help="soft-loss weight after warm-up")
    run.add_argument("--warmup-steps", type=int, default=DEFAULT_WARMUP, help="steps with lambda = 0 at the start")
    run.add_argument("--temperature", type=float, default=1.0)
    run.add_argument("--hard-weight", choices=HARD_WEIGHTS, default="one_minus_lambda")
    run.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    run.add_argument("--teacher-epochs", type=int, default=None, help="two-stage: teacher epochs (default: --epochs)")
    run.add_argument("--seeds", type=_seeds, default=list(range(DEFAULT_SEEDS)), help="a count N (seeds 0..N-1) or a comma list")
    run.add_argument("--batch-size", type=int, default=1024)
    run.add_argument("--lr", type=float, default=TrainConfig.lr)
    run.add_argument("--shared-embeddings", action="store_true", help="sync: teacher and student share regular embeddings")
    run.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    run.add_argument("--privileged-strength", type=float, default=None, help="synthetic data: strength of the privileged signal")
    run.add_argument("--data-seed", type=int, default=0, help="synthetic data: generator seed")
    run.add_argument("--data", type=Path, default=None, help="a saved pfd_ref dataset (.npz) instead of the synthetic data")
    run.add_argument("--test-days", type=int, default=1, help="with --data: the last N days form the test split")
    run.add_argument("--student", choices=STUDENT_KINDS, default=None, help="student kind (default: two_tower for ctr, mlp otherwise)")
    run.add_argument("--json", type=Path, default=None, help="write the per-seed records as JSON")
    run.add_argument("--save", type=Path, default=None, help="directory for the trained students")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--teacher-folds", type=int, default=0,
                     help="two-stage: cross-fit the teacher's soft labels over K folds (0: in-sample)")

    score = commands.add_parser("score", help="top-k items for users from a student saved by `run --save`")
    score.add_argument("model", type=Path, help="a student file (.npz) written by `pfd-ref run --save DIR`")
    score.add_argument("--users", required=True, type=_int_list, help="comma list of user ids")
    score.add_argument("--k", type=int, default=100)
    score.add_argument("--out", type=Path, default=None, help="write a CSV (user,rank,item,score) instead of printing")
    return parser


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")


def command_score(args) -> int:
    from pfd_ref.serving import ServedStudent
    if args.k < 1:
        raise ValueError(f"k: must be >= 1, got {args.k}")
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


def _train_config(args, student_kind: str) -> TrainConfig:
    distill = DistillConfig(lambda_=args.lambda_, warmup_steps=args.warmup_steps, temperature=args.temperature,
                            hard_weight=args.hard_weight)
    return TrainConfig(student_kind=student_kind, mode=args.mode, epochs=args.epochs, teacher_epochs=args.teacher_epochs,
                       batch_size=args.batch_size, lr=args.lr, distill=distill, shared_embeddings=args.shared_embeddings,
                       teacher_folds=args.teacher_folds, dtype=args.dtype)


def _datasets(args):
    """Yield ``(task, train, test, student_kind)`` for each task of the run."""
    if args.data is not None:
        data = Dataset.load(args.data)
        if data.day is None:
            raise ValueError(f"--data: {args.data} has no 'day' column, so it cannot be split by time")
        last_train_day = int(data.day.max()) - args.test_days
        train, test = data.split_by_day(last_train_day)
        yield args.data.stem, train, test, args.student or "mlp"
        return
    for task in (TASKS if args.task == "all" else (args.task,)):
        config = SyntheticConfig(seed=args.data_seed)
        if args.privileged_strength is not None:
            config = replace(config, privileged_strength=args.privileged_strength)
        train, test = generate(task, config)
        yield task, train, test, args.student or STUDENT_OF_TASK[task]


def command_run(args) -> int:
    _train_config(args, "mlp")  # option errors surface before any data is generated
    runs = [(task, train, test, _train_config(args, kind)) for task, train, test, kind in _datasets(args)]
    for task, train, test, config in runs:  # and schedule errors before any training
        if any(m != "baseline" for m in args.methods):
            check_schedule(config, train.n)
    progress = None if args.quiet else Progress
    all_records = []
    for task, train, test, config in runs:
        student_kind = config.student_kind
        print(f"\n== {task}: {train.n} training rows, {test.n} test rows, student {student_kind}, mode {args.mode}, "
              f"lambda {args.lambda_}, warm-up {args.warmup_steps} steps, seeds {args.seeds}", file=sys.stderr)
        on_result = None
        if args.save is not None:
            from pfd_ref.serving import save_student
            on_result = lambda seed, result, task=task, train=train: save_student(  # noqa: E731
                args.save / f"{task}_{result.method}_seed{seed}.npz", result, train)
        records = run_methods(task, train, test, args.methods, args.seeds, config, progress=progress, on_result=on_result)
        all_records.extend(records)
        print(f"\n{task}  ({len(args.seeds)} seed(s); mean ± std over seeds; gain: paired over seeds)")
        print(format_table(summarize(records)))
        sys.stdout.flush()
    if args.json is not None:
        args.json.write_text(json.dumps(all_records, indent=1))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"run": command_run, "score": command_score}[args.command](args)
    except ValueError as err:
        print(f"pfd-ref: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

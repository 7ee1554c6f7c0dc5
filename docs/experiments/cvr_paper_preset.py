"""Why the CVR task under the paper preset shows PFD without gain and LUPI and MTL with gains
(issue 12; docs/cvr_paper_preset.md): one candidate at a time, each a set of labelled
settings that differ from the paper preset (`pfd-ref run` defaults, ``experiment.preset_config``)
in one option; every setting trains the same methods on the same seeds, and each method's
AUC gain over the baseline *of its own setting* is given with a paired t-test and 95% CI
over seeds (``pfd_ref.metrics.paired_comparison``), then the change of that gain against the
first setting (also paired over seeds).

    OPENBLAS_NUM_THREADS=1 python docs/experiments/cvr_paper_preset.py --candidate share --seeds 5

Candidates (``CANDIDATES``): ``reference`` (the paper preset alone), ``share``, ``optimizer``,
``lr``, ``batch_norm``, ``activation``, ``warmup`` (the distillation warm-up k), ``lr_warmup``,
``epochs``, ``lambda0`` (lambda 0: a student that differs from the baseline only through
what its teacher does to the shared tables), ``embedding`` (the embedding width, 16 or 64,
with the tables shared or not), ``preset`` (paper against simple, the whole preset),
``strength`` (the generator's ``privileged_strength`` s: how much the CVR privileged features
say) and ``days`` (the generator's ``n_days``, 14 or 28: twice the training rows); for the
last two the data changes (``DATA_OF``) and the default world is the first setting.
``--diagnose`` adds, per setting and seed, the pfd student's gain and its loss terms after
the distillation warm-up (hard, soft, the teacher's hard loss) beside the baseline's hard
loss. ``--cache DIR`` shares results between processes run in parallel. ``--tiny`` runs on a
small world (the test's).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from pfd_ref.data.synthetic import SyntheticConfig, generate
from pfd_ref.experiment import preset_config, run_methods
from pfd_ref.files import write_atomically
from pfd_ref.metrics import paired_comparison

PAPER = "paper preset"
# candidate -> {label: run options changed from the paper preset (preset_config's names)};
# the first label of each is the reference its other labels are compared with.
CANDIDATES = {
    "reference": {PAPER: {}},
    "share": {"share all (paper)": {}, "share none": {"share": "none"}},
    "optimizer": {"adagrad lr 0.2 (paper)": {}, "adam lr 0.005": {"optimizer": "adam"}},
    "lr": {"adagrad lr 0.2 (paper)": {}, "adagrad lr 0.1": {"lr": 0.1}, "adagrad lr 0.05": {"lr": 0.05}},
    "batch_norm": {"batch norm (paper)": {}, "no batch norm": {"batch_norm": False}},
    "activation": {"leaky_relu (paper)": {}, "relu": {"activation": "relu"}},
    "warmup": {"k = 20 (paper, 0.094 epoch)": {}, "k = 0": {"warmup_steps": 0}, "k = 100": {"warmup_steps": 100}},
    "lr_warmup": {"lr warm-up 20 (paper)": {}, "no lr warm-up": {"lr_warmup_steps": 0}},
    "epochs": {"1 epoch (paper)": {}, "2 epochs": {"epochs": 2}},
    "lambda0": {"lambda 0.5 (paper)": {}, "lambda 0": {"lambda_": 0.0}},
    "preset": {PAPER: {}, "preset simple": {"preset": "simple"}},
    "strength": {"s = 1 (default)": {}, "s = 0.5": {}, "s = 2": {}},
    "days": {"14 days (default)": {}, "28 days": {}},
    "embedding": {"share all, embedding 16 (paper)": {}, "share all, embedding 64": {"embed_dim": 64},
                  "share none, embedding 64": {"embed_dim": 64, "share": "none"}},
}
SIZE_OPTIONS = ("embed_dim",)  # options of ModelSizes that are not run options: set on the preset's config
# the settings whose data differ from the default world: their SyntheticConfig changes
DATA_OF = {"s = 0.5": {"privileged_strength": 0.5}, "s = 2": {"privileged_strength": 2.0}, "28 days": {"n_days": 28}}
METHODS = ("baseline", "pfd", "lupi", "mtl")
# the methods a candidate trains by default: those its settings can move (``effective``), the baseline first
METHODS_OF = {"share": ("baseline", "pfd"), "lambda0": ("baseline", "pfd"), "warmup": ("baseline", "pfd", "lupi"),
              "lr_warmup": ("baseline", "pfd"), "activation": ("baseline", "pfd"), "lr": ("baseline", "pfd"), "embedding": ("baseline", "pfd"),
              "strength": ("baseline", "pfd", "lupi", "mtl")}
TINY = dict(n_users=300, n_items=400, n_categories=20, n_shops=60, n_days=4, test_days=1,
            cvr_impressions_per_user_day=60.0)  # --tiny: a small world for the end-to-end test
TINY_BATCH = 64


def world(changes: dict, tiny: bool, data_seed: int) -> SyntheticConfig:
    """The generator's config: the default world (or ``TINY``) with ``changes`` (``DATA_OF``)."""
    return replace(SyntheticConfig(seed=data_seed), **(TINY if tiny else {}), **changes)


def effective(method: str, config, changes: dict):
    """``(config, data changes)`` reduced to what can change ``method``'s arithmetic, so that
    settings equal for a method share its results: a method without a teacher (baseline, mtl)
    ignores sharing, lambda and k; lupi's teacher reads no regular field, so it shares no
    table; the baseline reads no privileged column, so the privileged strength cannot move it
    (docs/data.md: the regular columns and labels are bit-identical across s). Checked bit for
    bit on the tiny world (tests/test_cvr_paper_preset.py)."""
    if method in ("baseline", "mtl"):
        config = replace(config, sharing="none", distill=replace(config.distill, lambda_=0.5, warmup_steps=0))
    elif method == "lupi":
        config = replace(config, sharing="none")
    if method == "baseline":
        changes = {k: v for k, v in changes.items() if k != "privileged_strength"}
    return config, tuple(sorted(changes.items()))


def _train_method(method, train, test, seeds, config, key, memo, cache):
    """The records (teacher row included) and histories of ``method`` over ``seeds``, from
    ``memo``, from the ``cache`` folder (shared by parallel processes: a ``.claim`` file marks
    a result in training; the others wait for it), or trained here."""
    if key in memo:
        return memo[key]
    path = None
    if cache is not None:
        path = Path(cache) / (hashlib.sha1(repr(key).encode()).hexdigest() + ".json")
        claim = path.with_suffix(".claim")
        while not path.exists():
            try:
                os.close(os.open(claim, os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                time.sleep(5)  # another process trains it
        if path.exists():
            loaded = json.loads(path.read_text())
            memo[key] = loaded["records"], {(m, s): h for m, s, h in loaded["histories"]}
            return memo[key]
    histories = {}

    def keep(seed, result):
        histories[(result.method, seed)] = result.history

    teacher_row = {"pfd": ["pfd_teacher"], "lupi": ["lupi_teacher"]}.get(method, [])
    records = run_methods("cvr", train, test, [method, *teacher_row], seeds, config, on_result=keep)
    memo[key] = records, histories
    if path is not None:
        write_atomically(path, lambda handle: handle.write(json.dumps(
            {"key": repr(key), "records": records, "histories": [[m, s, h] for (m, s), h in histories.items()]})),
            mode="w")
        os.remove(path.with_suffix(".claim"))
    return memo[key]


def run_candidate(candidate: str, seeds, methods=None, tiny: bool = False, data_seed: int = 0,
                  log=print, memo: dict | None = None, cache: str | None = None) -> dict:
    """Train the ``methods`` (default: the candidate's, ``METHODS_OF``) of every setting of
    ``candidate`` for every seed; returns ``{label: {"records": [...], "histories": {(method,
    seed): history}, "config": TrainConfig}}``. ``memo`` (a dict kept across candidates) and
    ``cache`` (a folder kept across processes) hold the data of each world and the results of
    each method's ``effective`` setting, so that the paper preset is trained once."""
    if candidate not in CANDIDATES:
        raise ValueError(f"--candidate: {candidate!r} is not one of {', '.join(CANDIDATES)}")
    memo = {} if memo is None else memo
    methods = METHODS_OF.get(candidate, METHODS) if methods is None else methods
    seeds = tuple(seeds)
    results = {}
    labels = list(CANDIDATES[candidate])
    for label in labels[1:] + labels[:1]:  # the reference last: a parallel process may be training it
        options = CANDIDATES[candidate][label]
        changes = DATA_OF.get(label, {})
        data_key = ("data", tuple(sorted(changes.items())))
        if data_key not in memo:
            memo[data_key] = generate("cvr", world(changes, tiny, data_seed))
        train, test = memo[data_key]
        options = dict(options, **({"batch_size": TINY_BATCH} if tiny and "batch_size" not in options else {}))
        if tiny and options.get("warmup_steps", 0) > 2:
            options["warmup_steps"] = 2
        sizes = {name: options.pop(name) for name in SIZE_OPTIONS if name in options}
        config = preset_config("mlp", train.n, **options)
        config = replace(config, sizes=replace(config.sizes, **sizes))
        log(f"[{label}] {config.optimizer} lr {config.lr} lr warm-up {config.lr_warmup_steps}, k "
            f"{config.distill.warmup_steps}, lambda {config.distill.lambda_}, share {config.sharing}, "
            f"{config.sizes.activation}, batch norm {config.sizes.batch_norm}, embedding {config.sizes.embed_dim}, epochs {config.epochs}, batch "
            f"{config.batch_size}; data {changes or 'default'}: {train.n:,} training rows")
        records, histories = [], {}
        for method in methods:
            key = (tiny, data_seed, seeds, method, *effective(method, config, changes))
            method_records, method_histories = _train_method(method, train, test, seeds, config, key, memo, cache)
            records += method_records
            histories.update(method_histories)
        results[label] = {"records": records, "histories": histories, "config": config}
    return {label: results[label] for label in labels}


def _by(records: list[dict]) -> dict:
    found = {}
    for r in records:
        found.setdefault(r["method"], {})[r["seed"]] = r["auc"]
    return found


def _cmp(a: dict, b: dict) -> dict:
    seeds = sorted(set(a) & set(b))
    return paired_comparison(np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds]))


def _cell(c: dict) -> str:
    if np.isnan(c["std_gain"]):
        return f"{c['mean_gain']:+.4f}"
    return f"{c['mean_gain']:+.4f} ± {c['std_gain']:.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] p {c['p_value']:.3f}"


def tables(results: dict) -> str:
    """Markdown: per setting and method the mean AUC, the paired gain over the setting's own
    baseline, the per-seed gains, and the change of the gain against the first setting."""
    lines = ["| setting | method | AUC (mean ± sd) | gain vs own baseline ± sd [95% CI] p | per-seed gains |"
             " gain − first setting's gain [95% CI] p |", "|---|---|---|---|---|---|"]
    first = None
    for label, result in results.items():
        by = _by(result["records"])
        base = by["baseline"]
        gains = {m: {s: v - base[s] for s, v in by[m].items()} for m in by}
        if first is None:
            first = gains
        for method, values in by.items():
            seeds = sorted(values)
            auc = np.array([values[s] for s in seeds])
            sd = f" ± {auc.std(ddof=1):.4f}" if len(auc) > 1 else ""
            gain = "" if method == "baseline" else _cell(_cmp(values, base))
            per_seed = "" if method == "baseline" else " ".join(f"{gains[method][s]:+.4f}" for s in seeds)
            change = ""
            if method != "baseline" and first is not gains and method in first:
                change = _cell(_cmp(gains[method], first[method]))
            lines.append(f"| {label} | {method} | {auc.mean():.4f}{sd} | {gain} | {per_seed} | {change} |")
    return "\n".join(lines)


def _after(history: list, key: str, start: int) -> float:
    """The mean of loss term ``key`` over the logged steps from ``start`` on (nan if none)."""
    values = [h[key] for h in history if h["step"] >= start and key in h]
    return float(np.mean(values)) if values else float("nan")


def diagnosis(results: dict) -> str:
    """Markdown: per setting and seed, the pfd gain, its teacher's AUC, the mean loss terms (as
    logged every 50 steps) from the end of the distillation warm-up on, for pfd and the
    baseline, and the last logged hard losses."""
    lines = ["| setting | seed | pfd gain | pfd_teacher AUC | baseline hard (after k) | pfd hard (after k) | "
             "pfd soft (after k) | teacher hard (after k) | pfd hard (last logged) | baseline hard (last logged) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, result in results.items():
        by, hist, k = _by(result["records"]), result["histories"], result["config"].distill.warmup_steps
        if "pfd" not in by:
            continue
        for seed in sorted(by["pfd"]):
            base, pfd = hist.get(("baseline", seed)), hist.get(("pfd", seed))
            if base is None or pfd is None:
                continue
            lines.append(f"| {label} | {seed} | {by['pfd'][seed] - by['baseline'][seed]:+.4f} | "
                         f"{by['pfd_teacher'][seed]:.4f} | {_after(base, 'hard', k):.4f} | "
                         f"{_after(pfd, 'hard', k):.4f} | {_after(pfd, 'soft', k):.4f} | "
                         f"{_after(pfd, 'teacher_hard', k):.4f} | {pfd[-1]['hard']:.4f} | {base[-1]['hard']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidate", required=True, help=f"comma-separated, of: {', '.join(CANDIDATES)}")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
    parser.add_argument("--methods", help="comma-separated, baseline first (default: the candidate's, METHODS_OF)")
    parser.add_argument("--cache", help="a folder for results shared by processes run in parallel")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--diagnose", action="store_true", help="also print the per-seed loss table of pfd")
    parser.add_argument("--tiny", action="store_true", help="a small world (the end-to-end test)")
    parser.add_argument("--json", help="write the records here (atomically)")
    args = parser.parse_args(argv)
    methods = None if args.methods is None else tuple(args.methods.split(","))
    if methods is not None and methods[0] != "baseline":
        parser.error("--methods: list baseline first (every gain is over the setting's own baseline)")
    if args.seeds < 2:
        parser.error("--seeds: at least 2 (paired tests)")
    candidates = args.candidate.split(",")
    for candidate in candidates:
        if candidate not in CANDIDATES:
            parser.error(f"--candidate: {candidate!r} is not one of {', '.join(CANDIDATES)}")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        parser.error(f"--json: the directory of {args.json} does not exist")
    if args.cache and not Path(args.cache).is_dir():
        parser.error(f"--cache: {args.cache} is not a folder")
    memo, records = {}, []
    for candidate in candidates:
        results = run_candidate(candidate, range(args.seeds), methods, args.tiny, args.data_seed,
                                log=lambda line: print(line, file=sys.stderr), memo=memo, cache=args.cache)
        print(f"\ncandidate {candidate}, {args.seeds} seeds, data seed {args.data_seed}" + (" (tiny)" if args.tiny else ""))
        print(tables(results))
        if args.diagnose:
            print()
            print(diagnosis(results))
        sys.stdout.flush()
        records += [dict(r, candidate=candidate, setting=label) for label, result in results.items()
                    for r in result["records"]]
        if args.json:  # rewritten after each candidate: what is done is kept
            write_atomically(args.json, lambda handle: handle.write(json.dumps(records, indent=1)), mode="w")


if __name__ == "__main__":
    main()

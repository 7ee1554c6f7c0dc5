"""Experiments: train methods over seeds, evaluate on the test split, summarise in a table.

A record is one (task, method, seed) result with the keys ``task, method, seed, mode, auc,
gauc, logloss, mean_predicted, observed_rate, train_seconds``. The summary gives, per
method, the mean and sample standard deviation over seeds, the AUC/GAUC gain over the
baseline with a two-sided paired t-test across seeds (``pfd_ref.metrics.paired_comparison``),
and for ``pfd+md`` (and the ``teacher`` row) the AUC difference from its equal-capacity
control ``md`` (``md_teacher``), the comparison that isolates the privileged features.
The pseudo-methods ``teacher``, ``md_teacher`` and ``pfd_teacher`` report the own scores of
the teacher of ``pfd+md``, ``md`` and ``pfd`` (``TEACHER_OF``). They are references, not
servable models (``teacher`` and ``pfd_teacher`` read privileged features). Comparing
``teacher`` with ``md_teacher`` (the same architecture without privileged features) shows what
the privileged features give a teacher of equal capacity.
"""

from __future__ import annotations

import numpy as np

from pfd_ref.data import Dataset
from pfd_ref.metrics import evaluate, paired_comparison
from pfd_ref.distill import METHOD_RULES, METHODS, check_method
from pfd_ref.train import TrainConfig, predict, train, with_seed

# the teacher rows: each reports the own scores of one method's teacher (distill.METHOD_RULES)
TEACHER_OF = {rule.teacher_row: method for method, rule in METHOD_RULES.items() if rule.teacher_row}
REPORTED_METHODS = METHODS + tuple(TEACHER_OF)
# Equal-capacity controls: the same teacher architecture without privileged features. Only
# a gain over the control can be credited to the privileged features (not to the teacher's size).
CONTROL_OF = {"pfd+md": "md", "teacher": "md_teacher"}


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
    return {"task": task, "method": method, "seed": config.seed, "mode": config.mode,
            **{k: float(v) for k, v in metrics.items()}, "train_seconds": float(seconds)}


def run_methods(task: str, train_data: Dataset, test_data: Dataset, methods, seeds, config: TrainConfig,
                progress=None, on_result=None, teacher_logits=None) -> list[dict]:
    """Train every method for every seed and evaluate it on ``test_data``.

    A teacher row (``TEACHER_OF``) needs its method in the same run; it is absent where no
    single teacher exists (two-stage with cross-fitted or given soft labels).
    ``on_result(seed, result)`` is called with each ``TrainResult`` (e.g. to save the student).
    ``teacher_logits``: two-stage only, ``(n_train,)`` soft labels made elsewhere, given to
    every method with a teacher (``train.train``). Returns the records in (seed, method) order.
    """
    methods = parse_methods(methods)
    teacher_row = {method: row for row, method in TEACHER_OF.items() if row in methods}
    records = []
    for seed in seeds:
        seeded = with_seed(config, seed)
        for method in (m for m in methods if m not in TEACHER_OF):
            result = train(train_data, method, seeded,
                           progress=(lambda name, total: progress(f"{task} seed {seed} {name}", total)) if progress else None,
                           teacher_logits=None if method == "baseline" else teacher_logits)
            records.append(_record(task, method, seeded, _evaluate(result.student, result.params, test_data),
                                   result.train_seconds))
            if method in teacher_row and result.teacher is not None:
                records.append(_record(task, teacher_row[method], seeded, _evaluate(result.teacher, result.params, test_data),
                                       result.train_seconds))
            if on_result is not None:
                on_result(seed, result)
    return records


def _evaluate(model, params: dict, data: Dataset) -> dict:
    return evaluate(data.labels, predict(model, params, data), data.user_ids)


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
             "control (same teacher capacity, no privileged features): " + ", ".join(
                 f"{method} vs {control}" for method, control in CONTROL_OF.items())]
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines] + notes)

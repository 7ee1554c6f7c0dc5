"""``pfd-ref paper``: the paper's Tables 2 and 4-8 and its §5.2 cost figure, run on the built-in
synthetic data and printed beside the paper's numbers, with a verdict per claim (docs/paper.md).

What is here, in the order a run uses it:

* ``PAPER_*``: the paper's numbers (Xu et al., KDD 2020), each block cited to its table in
  ../shared/PAPER.md (tests/test_paper.py parses that file and checks every number).
* ``Unit``: one trained model (task, method, lambda, training manner); ``table_rows``: the rows
  of each table, each pointing at a unit. Rows of different tables that describe the same
  training share its unit, so it is trained once per seed (Table 2's baseline serves Tables 5
  and 7; Table 2's PFD+MD is Table 5's PFD+MD at lambda 0.5 and Table 7's Share*&Sync).
* ``Claim``: the paper's claims as data, each a conjunction of ``Part``s (two rows compared on
  a metric, or a slope over lambda), and the verdict rule (``decide``, ``claim_verdict``).
* ``run_paper``: train every unit of the selected tables for every seed (in ``jobs`` worker
  processes), write the ``--json`` file after each finished unit, time the settings of Tables
  7 / 8 again in a timing phase of their own (``time_manners``: seed by seed, warmed up, the
  threads capped), then decide the claims and measure the cost figure; ``format_report``
  prints it all.

Settings: every unit uses ``experiment.preset_config`` with the ``paper`` preset (lambda 0.5,
Adagrad with the learning-rate warm-up, the distillation warm-up scaled to the data, LeakyReLU
with batch normalisation, l2 towers x 5 for the two-tower CTR student, the paper's sharing per
task), with the model widths of ``paper_sizes``: the paper's proportions scaled by ``width / 512``.

The verdict rule (``decide``), at ``ALPHA = 0.05`` over the per-seed statistic ``d`` (a paired
difference, or a per-seed slope), one-sample t-tests of ``scipy.stats.ttest_1samp``:

=============  ==========================================  ===========================================
test           holds when (its p < ALPHA)                  does not hold when (its p < ALPHA)
=============  ==========================================  ===========================================
greater        H0 mean(d) <= m rejected (one-sided)        H0 mean(d) >= m rejected (one-sided)
less           H0 mean(d) >= m rejected (one-sided)        H0 mean(d) <= m rejected (one-sided)
equivalent     both H0 mean(d) <= -m and H0 mean(d) >= m   H0 mean(d) <= m or H0 mean(d) >= -m
               rejected (TOST; p = the larger p)           rejected (p = 2 x the smaller p, Bonferroni)
=============  ==========================================  ===========================================

and ``not significant`` otherwise. A claim of ``k`` parts holds when every part holds (its p
is the largest part's p: an intersection-union test), does not hold when ``k`` times the
smallest part's p_against is below ALPHA (Bonferroni), and is not significant otherwise. ``m`` is 0 for "beats"; ``AUC_MARGIN`` for "within noise", "robust to
lambda", "sync = async" and "not better than"; ``log(1 + NEAR_BASELINE_OVERHEAD)`` for "near
the baseline's cost".

Beside each claim's own verdict, ``add_family_wise`` gives the family-wise one: Holm's
adjustment (``holm``) of every claim's p (and p_against) over the run's claims; under each
equivalence part, ``tost_power`` says the largest paired sd its seeds could pass.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import stats

from pfd_ref.backend import get_backend
from pfd_ref.data.synthetic import SyntheticConfig, generate
from pfd_ref.distill import METHOD_RULES
from pfd_ref.experiment import STUDENT_OF_TASK, preset_config, scaled_run_defaults
from pfd_ref.files import check_output_file, write_atomically
from pfd_ref.metrics import evaluate
from pfd_ref.provenance import THREAD_VARIABLES, code_fingerprint, generator_source, package_versions, provenance
from pfd_ref.train import TrainConfig, predict, train, with_seed
from pfd_ref.validation import check_scalar

# --------------------------------------------------------------------------- the paper's numbers
# Every number below is the paper's, as ../shared/PAPER.md gives it (checked against the camera-ready
# text); tests/test_paper.py parses PAPER.md and compares.

# PAPER.md, Table 2: CTR test AUC on the next day's data, 1-day training data: (student, teacher).
PAPER_TABLE_2 = {"baseline": (0.6625, None), "lupi": (0.6637, 0.6687), "md": (0.6704, 0.6892),
                 "pfd": (0.6712, 0.6921), "pfd+md": (0.6745, 0.7110)}
# PAPER.md, Table 4: CVR test AUC, 30-day training data: (student, teacher).
PAPER_TABLE_4 = {"baseline": (0.9040, None), "mtl": (0.9045, None), "lupi": (0.8965, 0.9651), "md": (0.9052, 0.9058),
                 "pfd": (0.9084, 0.9901), "pfd+md": (0.9082, 0.9911)}
# PAPER.md, Tables 5 / 6: student AUC at lambda 0.1, 0.3, 0.5, 0.7, 0.9 (Table 5: CTR 1 day; Table 6: CVR 30 days).
PAPER_LAMBDAS = (0.1, 0.3, 0.5, 0.7, 0.9)
PAPER_LAMBDA_SWEEP = {
    "5": {"lupi": (0.6648, 0.6640, 0.6637, 0.6631, 0.6624), "md": (0.6695, 0.6697, 0.6704, 0.6706, 0.6700),
          "pfd": (0.6711, 0.6709, 0.6712, 0.6700, 0.6696), "pfd+md": (0.6741, 0.6740, 0.6745, 0.6747, 0.6739)},
    "6": {"lupi": (0.9024, 0.8998, 0.8965, 0.8876, 0.8613), "md": (0.9047, 0.9054, 0.9052, 0.9050, 0.9049),
          "pfd": (0.9081, 0.9082, 0.9084, 0.9082, 0.9082), "pfd+md": (0.9081, 0.9085, 0.9082, 0.9083, 0.9080)},
}
# PAPER.md, Tables 7 / 8: training manner of PFD+MD (and, in Table 8, PFD): (student AUC, teacher AUC,
# wall time in hours, the paper's printed time relative to the baseline). Table 8's Ind&Sync prints
# +67.4% although 20.56 / 12.22 = 1.682 (+68.2%); both are kept as printed.
PAPER_MANNER_TABLES = {
    "7": {"baseline": (0.6625, None, 9.24, None), "ind_async": (0.6751, 0.7112, 18.43, 0.995),
          "ind_sync": (0.6748, 0.7112, 14.32, 0.550), "share_sync": (0.6717, 0.7108, 9.51, 0.029),
          "share_but_user_id_sync": (0.6745, 0.7110, 10.29, 0.114)},
    "8": {"baseline": (0.9040, None, 12.22, None), "ind_async": (0.9067, 0.9887, 26.85, 1.197),
          "ind_sync": (0.9069, 0.9887, 20.56, 0.674), "share_sync": (0.9082, 0.9911, 14.97, 0.225),
          "pfd share_sync": (0.9084, 0.9901, 12.67, 0.036)},
}
# PAPER.md, §5.2 ("Coarse ranking, CTR"): one candidate through a 1024-input tower against one
# 128-d inner product; multiply-adds and the time of 10^5 repetitions on a PC.
PAPER_COST = {"multiply_adds_tower": 6.9e5, "multiply_adds_inner_product": 128, "multiply_add_ratio": 5400,
              "tower_s": 89.695, "inner_product_s": 0.108, "time_ratio": 830, "repetitions": 10 ** 5}

# --------------------------------------------------------------------------- tables, rows, units

TABLES = ("2", "4", "5", "6", "7", "8", "cost")
TABLE_TASK = {"2": "ctr", "4": "cvr", "5": "ctr", "6": "cvr", "7": "ctr", "8": "cvr"}
TABLE_TITLES = {
    "2": "Table 2: CTR (coarse ranking, two-tower student), test AUC",
    "4": "Table 4: CVR (fine ranking, MLP student), test AUC",
    "5": "Table 5: CTR student AUC against lambda",
    "6": "Table 6: CVR student AUC against lambda",
    "7": "Table 7: CTR, training manner of PFD+MD (time: the timing phase of this run, one machine)",
    "8": "Table 8: CVR, training manner of PFD+MD and PFD (time: the timing phase of this run, one machine)",
    "cost": "§5.2: scoring one candidate, a tower mapping against an inner product",
}
METHOD_LABELS = {"baseline": "baseline", "mtl": "MTL", "lupi": "LUPI", "md": "MD", "pfd": "PFD", "pfd+md": "PFD+MD"}
# The training manners of Tables 7 / 8: (mode, sharing, the paper's name).
MANNERS = {"ind_async": ("two-stage", "none", "Ind&Async"), "ind_sync": ("sync", "none", "Ind&Sync"),
           "share_sync": ("sync", "all", "Share&Sync"),
           "share_but_user_id_sync": ("sync", "all-but-user-id", "Share*&Sync")}
PAPER_MANNER = {"ctr": "share_but_user_id_sync", "cvr": "share_sync"}  # what the paper reports elsewhere (Tables 7, 8)
PAPER_LAMBDA = 0.5  # the paper's default lambda: Tables 2, 4, 7, 8


@dataclass(frozen=True)
class Unit:
    """One trained model per seed: ``task``, ``method``, the soft-loss weight ``lambda_`` and the
    training manner (a key of ``MANNERS``); both None for a method without a teacher."""

    task: str
    method: str
    lambda_: float | None
    manner: str | None

    def describe(self) -> str:
        setting = "" if self.lambda_ is None else f" λ {self.lambda_:g} {MANNERS[self.manner][2]}"
        return f"{self.task} {self.method}{setting}"


def make_unit(task: str, method: str, lambda_: float = PAPER_LAMBDA, manner: str | None = None) -> Unit:
    """The ``Unit`` of ``method`` on ``task``: a method without a teacher has no lambda and no
    manner (one baseline serves every table of its task); ``manner`` None is the paper's
    (``PAPER_MANNER``)."""
    if METHOD_RULES[method].teacher is None:
        return Unit(task, method, None, None)
    return Unit(task, method, float(lambda_), manner or PAPER_MANNER[task])


@dataclass(frozen=True)
class Row:
    """One row of one of the paper's tables: its label, the unit whose results it shows, and
    the paper's numbers (``auc``, ``teacher_auc``, ``hours``, ``relative``; None where the
    paper gives none)."""

    table: str
    label: str
    unit: Unit
    paper: dict

    @property
    def key(self) -> tuple[str, str]:
        return self.table, self.label


def lambda_label(method: str, lambda_: float) -> str:
    return f"{METHOD_LABELS[method]} λ={lambda_:g}"


def table_rows(table: str, lambdas=PAPER_LAMBDAS) -> tuple[Row, ...]:
    """The rows of ``table`` ("2", "4", ..., "8"), the lambda tables over ``lambdas`` (each one
    of ``PAPER_LAMBDAS``; the paper's numbers of the others are not used)."""
    task = TABLE_TASK[table]
    if table in ("2", "4"):
        numbers = PAPER_TABLE_2 if table == "2" else PAPER_TABLE_4
        return tuple(Row(table, METHOD_LABELS[m], make_unit(task, m), {"auc": s, "teacher_auc": t})
                     for m, (s, t) in numbers.items())
    if table in ("5", "6"):
        baseline = (PAPER_TABLE_2 if table == "5" else PAPER_TABLE_4)["baseline"][0]
        rows = [Row(table, "baseline", make_unit(task, "baseline"), {"auc": baseline})]
        for method, values in PAPER_LAMBDA_SWEEP[table].items():
            rows += [Row(table, lambda_label(method, lam), make_unit(task, method, lam),
                         {"auc": values[PAPER_LAMBDAS.index(lam)]}) for lam in lambdas]
        return tuple(rows)
    rows = []
    for name, (student, teacher, hours, relative) in PAPER_MANNER_TABLES[table].items():
        paper = {"auc": student, "teacher_auc": teacher, "hours": hours, "relative": relative}
        if name == "baseline":
            rows.append(Row(table, "baseline", make_unit(task, "baseline"), paper))
        else:
            method, manner = ("pfd", name.split()[1]) if name.startswith("pfd ") else ("pfd+md", name)
            label = MANNERS[manner][2] if method == "pfd+md" else f"PFD {MANNERS[manner][2]}"
            rows.append(Row(table, label, make_unit(task, method, PAPER_LAMBDA, manner), paper))
    return tuple(rows)


# --------------------------------------------------------------------------- scales and sizes


@dataclass(frozen=True)
class Scale:
    """The size of a run: the synthetic data's configuration, the default number of seeds, the
    lambdas of Tables 5 / 6, the width of each task's student (``widths``, by task: the paper's
    512, scaled; ``paper_sizes``), the cost figure's candidates and repeats, and the batch size
    (None: ``experiment.scaled_run_defaults``, the paper's 1024 halved while an epoch would have
    fewer than ``experiment.MIN_STEPS_PER_EPOCH`` steps; the tests fix it for their tiny data)."""

    name: str
    data: SyntheticConfig
    seeds: int
    lambdas: tuple
    widths: dict
    cost_candidates: int
    cost_repeats: int
    batch_size: int | None = None

    def __post_init__(self):
        if self.batch_size is not None:
            check_scalar("batch_size", self.batch_size, int, low=2)
        check_scalar("seeds", self.seeds, int, low=2)
        for task in TABLE_TASK.values():
            width = check_scalar(f"widths[{task!r}]", self.widths.get(task), int, low=4)
            if width % 4:
                raise ValueError(f"widths[{task!r}]: a multiple of 4 (the paper's 512-256-128 scaled), got {width}")
        if PAPER_LAMBDA not in self.lambdas or any(lam not in PAPER_LAMBDAS for lam in self.lambdas):
            raise ValueError(f"--lambdas: a subset of {PAPER_LAMBDAS} holding {PAPER_LAMBDA}, got {self.lambdas}")


# The full run: 800 of the default synthetic world's 6000 users; the paper's widths scaled by 1/8 for
# CTR and 1/16 for CVR (whose MD teacher is 16 times as wide as its student: 512 here, 8192 in the
# paper); docs/paper.md, "Scale", says why. The quick run: 300 users, half the widths, batches of
# 256, 2 seeds, two lambdas: the structure in minutes.
FULL = Scale("full", SyntheticConfig(n_users=800), seeds=5, lambdas=PAPER_LAMBDAS, widths={"ctr": 64, "cvr": 32},
             cost_candidates=10_000, cost_repeats=5)
QUICK = Scale("quick", SyntheticConfig(n_users=300, n_items=3000, n_shops=300), seeds=2, lambdas=(0.5, 0.9),
              widths={"ctr": 32, "cvr": 16}, cost_candidates=2_000, cost_repeats=3, batch_size=256)


def paper_sizes(student_kind: str, width: int, base):
    """``base`` (a ``distill.ModelSizes``) with the paper's widths scaled by ``width / 512``
    (section 5): the CTR student's towers ``width -> width/2 -> width/4`` and its MLP teachers
    (LUPI, MD, PFD+MD) ``(width, width/2, width/4)``; the CVR student and its LUPI and PFD
    teachers ``(width, width/2, width/4)``, its MD and PFD+MD teachers ``16 width ... width/4``
    (the paper's 8192-4096-2048-1024-512-256-128)."""
    w = width
    if student_kind == "two_tower":
        return replace(base, student_hidden=(w, w // 2), tower_out_dim=w // 4, strong_hidden=(w, w // 2, w // 4))
    return replace(base, student_hidden=(w, w // 2, w // 4), strong_hidden=tuple(16 * w >> i for i in range(7)))


def unit_config(unit: Unit, n_rows: int, width: int, batch_size: int | None = None) -> TrainConfig:
    """The ``TrainConfig`` of ``unit`` on ``n_rows`` training rows: the ``paper`` preset
    (``experiment.preset_config``) in the unit's manner and lambda, ``paper_sizes`` of ``width``,
    batches of ``batch_size`` (None: ``experiment.scaled_run_defaults`` of ``n_rows``; the
    preset scales its warm-ups to the steps of an epoch)."""
    kind = STUDENT_OF_TASK[unit.task]
    options = {"batch_size": batch_size or scaled_run_defaults(n_rows)[0]["batch_size"]}
    if unit.manner is not None:
        mode, share, _ = MANNERS[unit.manner]
        options.update(mode=mode, share=share, lambda_=unit.lambda_)
    config = preset_config(kind, n_rows, "paper", **options)
    return replace(config, sizes=paper_sizes(kind, width, config.sizes))


# --------------------------------------------------------------------------- claims and the verdict rule

ALPHA = 0.05
AUC_MARGIN = 0.002  # the AUC difference below which two settings count as the same (docs/paper.md, "Verdicts")
NEAR_BASELINE_OVERHEAD = 0.25  # "near the baseline's cost": at most 25% more time (docs/paper.md)
COST_ORDERS_OF_MAGNITUDE = 100  # the §5.2 claim: a tower costs at least 100x an inner product per candidate
VERDICTS = ("holds", "does not hold", "not significant")
TESTS = ("greater", "less", "equivalent")
# log_cpu_seconds: the log of a training's CPU time (time ratios). CPU time, not wall time: on a shared
# machine the wall time of one training depends on what else runs (docs/paper.md, "Times").
METRICS = ("auc", "teacher_auc", "log_cpu_seconds")


@dataclass(frozen=True)
class Part:
    """One comparison of a claim. The per-seed statistic ``d`` is ``a.metric - b.b_metric``
    (``b_metric`` None: ``metric``) or, with ``slope_over`` (row keys) instead of ``a``/``b``,
    the least-squares slope of ``metric`` against lambda over those rows; ``test`` and
    ``margin`` as in ``decide``."""

    test: str
    a: tuple | None = None
    b: tuple | None = None
    metric: str = "auc"
    b_metric: str | None = None
    margin: float = 0.0
    slope_over: tuple = ()

    def rows(self) -> tuple:
        return self.slope_over or (self.a, self.b)

    def describe(self) -> str:
        metric = {"auc": "", "teacher_auc": " teacher", "log_cpu_seconds": " CPU time"}
        if self.slope_over:
            return f"slope of {self.slope_over[0][1].split(' λ')[0]}{metric[self.metric]} AUC over λ"
        b_metric = metric[self.b_metric or self.metric]
        return f"{self.a[1]}{metric[self.metric]} - {self.b[1]}{b_metric}"


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims: the table it belongs to, its text, its parts (all must hold)."""

    table: str
    text: str
    parts: tuple


def _greater(a, b, **kw) -> Part:
    return Part("greater", a, b, **kw)


def claims_for(lambdas=PAPER_LAMBDAS) -> tuple[Claim, ...]:
    """The claims of every table (the lambda tables over ``lambdas``); docs/paper.md lists them."""
    claims = []
    t2 = lambda label: ("2", label)  # noqa: E731
    for method in ("LUPI", "MD", "PFD", "PFD+MD"):
        claims.append(Claim("2", f"every method beats the baseline: {method}", (_greater(t2(method), t2("baseline")),)))
    claims += [
        Claim("2", "PFD beats MD", (_greater(t2("PFD"), t2("MD")),)),
        Claim("2", "PFD+MD is the best", tuple(_greater(t2("PFD+MD"), t2(m)) for m in ("baseline", "LUPI", "MD", "PFD"))),
        Claim("2", "the PFD teacher is above the LUPI teacher",
              (_greater(t2("PFD"), t2("LUPI"), metric="teacher_auc"),)),
    ]
    t4 = lambda label: ("4", label)  # noqa: E731
    claims += [
        Claim("4", "LUPI is below the baseline although its teacher is strong",
              (Part("less", t4("LUPI"), t4("baseline")),
               _greater(t4("LUPI"), t4("baseline"), metric="teacher_auc", b_metric="auc"))),
        Claim("4", "MTL is within noise of the baseline", (Part("equivalent", t4("MTL"), t4("baseline"), margin=AUC_MARGIN),)),
        Claim("4", "PFD beats the baseline and MD", (_greater(t4("PFD"), t4("baseline")), _greater(t4("PFD"), t4("MD")))),
        Claim("4", "PFD+MD is not better than PFD", (Part("less", t4("PFD+MD"), t4("PFD"), margin=AUC_MARGIN),)),
    ]
    for table in ("5", "6"):
        for method in ("md", "pfd", "pfd+md"):
            name = METHOD_LABELS[method]
            claims.append(Claim(table, f"{name} beats the baseline at every λ",
                                tuple(_greater((table, lambda_label(method, lam)), (table, "baseline")) for lam in lambdas)))
        for method in ("md", "pfd", "pfd+md"):
            name, reference = METHOD_LABELS[method], (table, lambda_label(method, PAPER_LAMBDA))
            others = [lam for lam in lambdas if lam != PAPER_LAMBDA]
            if others:  # claims about the lambdas need more than one
                claims.append(Claim(table, f"{name} is robust to λ (each λ within the margin of λ={PAPER_LAMBDA:g})",
                                    tuple(Part("equivalent", (table, lambda_label(method, lam)), reference,
                                               margin=AUC_MARGIN) for lam in others)))
        if len(lambdas) > 1:
            claims.append(Claim(table, "LUPI degrades as λ grows",
                                (Part("less", slope_over=tuple((table, lambda_label("lupi", lam)) for lam in lambdas)),)))
    near = math.log1p(NEAR_BASELINE_OVERHEAD)
    for table, shared in (("7", "Share*&Sync"), ("8", "Share&Sync")):
        claims += [
            Claim(table, "sync = async in student AUC (Ind&Sync vs Ind&Async)",
                  (Part("equivalent", (table, "Ind&Sync"), (table, "Ind&Async"), margin=AUC_MARGIN),)),
            Claim(table, f"sharing brings the cost near the baseline ({shared} below Ind&Sync and within "
                         f"+{NEAR_BASELINE_OVERHEAD:.0%} of the baseline)",
                  (Part("less", (table, shared), (table, "Ind&Sync"), metric="log_cpu_seconds"),
                   Part("less", (table, shared), (table, "baseline"), metric="log_cpu_seconds", margin=near))),
        ]
    claims.append(Claim("7", "full sharing hurts the CTR student until the user id is split off",
                        (Part("less", ("7", "Share&Sync"), ("7", "Ind&Sync")),
                         _greater(("7", "Share*&Sync"), ("7", "Share&Sync")))))
    return tuple(claims)


def _one_sided_p(d: np.ndarray, value: float, alternative: str) -> float:
    """p of the one-sample t-test of H1: mean(d) > value ("greater") or < value ("less");
    with no spread (every d equal) the sign of ``d - value`` decides (p 0 or 1)."""
    if np.all(d == d[0]):
        shown = d[0] > value if alternative == "greater" else d[0] < value
        return 0.0 if shown else 1.0
    return float(stats.ttest_1samp(d, value, alternative=alternative).pvalue)


@dataclass(frozen=True)
class Decision:
    """The verdict on one statistic: ``verdict`` (one of ``VERDICTS``), ``p`` (of the test
    that would make it hold), ``p_against`` (of the test that would make it not hold), and
    ``mean`` of the per-seed statistic."""

    verdict: str
    p: float
    p_against: float
    mean: float


def verdict_of(p: float, against: float, alpha: float = ALPHA) -> str:
    """``holds`` when ``p < alpha``, else ``does not hold`` when ``against < alpha``, else
    ``not significant`` (a part's, a claim's and a family-wise verdict alike)."""
    return "holds" if p < alpha else "does not hold" if against < alpha else "not significant"


def decide(d, test: str, margin: float = 0.0, alpha: float = ALPHA) -> Decision:
    """The verdict on per-seed statistics ``d`` ``(n,)``, n >= 2 (module docstring's table):
    ``greater``: mean(d) > margin; ``less``: mean(d) < margin; ``equivalent``: |mean(d)| < margin
    (TOST). ``holds`` when its test rejects at ``alpha``, else ``does not hold`` when the
    opposite test does, else ``not significant``."""
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 1 or d.size < 2:
        raise ValueError(f"d: a paired test needs at least 2 seeds, got {d.size}")
    if test == "greater":
        p, against = _one_sided_p(d, margin, "greater"), _one_sided_p(d, margin, "less")
    elif test == "less":
        p, against = _one_sided_p(d, margin, "less"), _one_sided_p(d, margin, "greater")
    elif test == "equivalent":
        if not margin > 0:
            raise ValueError(f"margin: an equivalence test needs a margin > 0, got {margin}")
        p = max(_one_sided_p(d, -margin, "greater"), _one_sided_p(d, margin, "less"))
        against = min(1.0, 2 * min(_one_sided_p(d, margin, "greater"), _one_sided_p(d, -margin, "less")))
    else:
        raise ValueError(f"test: expected one of {TESTS}, got {test!r}")
    return Decision(verdict_of(p, against, alpha), p, against, float(d.mean()))


def claim_verdict(decisions, alpha: float = ALPHA) -> tuple[str, float, float]:
    """A claim's ``(verdict, p, p_against)`` from its ``k`` parts' ``Decision``s: ``p`` = the
    largest part's p (every part must hold: an intersection-union test), ``p_against`` =
    ``min(1, k * the smallest part's p_against)`` (some part fails: Bonferroni over the parts).
    ``holds`` when p < alpha, else ``does not hold`` when p_against < alpha, else ``not significant``."""
    p = max(d.p for d in decisions)
    against = min(1.0, len(decisions) * min(d.p_against for d in decisions))
    return verdict_of(p, against, alpha), p, against


def holm(p_values) -> list[float]:
    """Holm's step-down adjustment of ``m`` p values (a family of tests at one ``ALPHA``): with
    ``p_(1) <= ... <= p_(m)`` sorted, ``p~_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``,
    returned in the given order. Rejecting every ``p~ < ALPHA`` keeps the chance of any false
    rejection in the family at most ``ALPHA`` (family-wise error rate), whatever their dependence."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def add_family_wise(claims: list[dict], alpha: float = ALPHA) -> None:
    """Beside each claim record's own verdict (each claim at ``alpha`` alone), the family-wise
    view over every claim of the run: ``holm_p`` = ``holm`` of the claims' ``p``,
    ``holm_p_against`` = ``holm`` of their ``p_against`` (two families, one per direction), and
    ``holm_verdict``: holds when holm_p < alpha, else does not hold when holm_p_against < alpha,
    else not significant."""
    for claim, p, against in zip(claims, holm([c["p"] for c in claims]), holm([c["p_against"] for c in claims])):
        claim["holm_p"], claim["holm_p_against"] = p, against
        claim["holm_verdict"] = verdict_of(p, against, alpha)


def tost_power(sd: float, n: int, margin: float, alpha: float = ALPHA) -> tuple[float, int | None]:
    """What an equivalence part (TOST, margin ``m``) can show with ``n`` seeds: ``(max_sd,
    seeds)``. Even with a mean paired difference of exactly 0 both one-sided tests reject only
    when ``t = m sqrt(n) / sd > t_{1-alpha, n-1}``, so ``max_sd = m sqrt(n) / t_{1-alpha, n-1}``;
    ``seeds``: the fewest seeds with which a paired sd of ``sd`` could pass (mean 0), None
    beyond 10^4."""
    def largest_sd(seeds: int) -> float:
        return margin * math.sqrt(seeds) / float(stats.t.ppf(1 - alpha, seeds - 1))

    return largest_sd(n), next((seeds for seeds in range(2, 10_001) if sd < largest_sd(seeds)), None)


def _metric_value(values: dict, metric: str) -> float | None:
    """``values`` (a result or the paper's numbers) on ``metric``; log_cpu_seconds from
    ``train_cpu_seconds`` or the paper's ``hours`` (its wall time on a cluster)."""
    if metric == "log_cpu_seconds":
        seconds = values.get("train_cpu_seconds", values.get("hours"))
        return None if seconds is None else math.log(seconds)
    return values.get(metric)


def part_statistic(part: Part, values_of: Callable[[tuple], dict]) -> float | None:
    """The part's statistic on one set of numbers: ``values_of(row_key)`` gives a row's values
    (one seed's results, or the paper's numbers). None when one is missing."""
    if part.slope_over:
        x = [values_of(key)["lambda"] for key in part.slope_over]
        y = [_metric_value(values_of(key), part.metric) for key in part.slope_over]
        return None if None in y else float(np.polyfit(x, y, 1)[0])
    a = _metric_value(values_of(part.a), part.metric)
    b = _metric_value(values_of(part.b), part.b_metric or part.metric)
    return None if a is None or b is None else a - b


def paper_meets(part: Part, statistic: float | None) -> bool | None:
    """Whether the paper's own point value of a part's statistic satisfies the part's claim
    (a check that each claim is read as the paper reads it); None where the paper has no number."""
    if statistic is None:
        return None
    return {"greater": statistic > part.margin, "less": statistic < part.margin,
            "equivalent": abs(statistic) < part.margin}[part.test]


def evaluate_claims(claims, rows: dict, results: dict, seeds) -> list[dict]:
    """The claim records: for each claim whose rows all exist in ``rows`` (``{key: Row}``), its
    verdict over ``seeds`` from ``results`` (``{(unit, seed): result}``), its p, and per part
    our mean statistic, the paper's, and the part's own verdict."""
    records = []
    for claim in claims:
        if not all(key in rows for part in claim.parts for key in part.rows()):
            continue
        parts, decisions = [], []
        for part in claim.parts:
            per_seed = [part_statistic(part, lambda key, s=seed: {**results[(rows[key].unit, s)],
                                                                   "lambda": rows[key].unit.lambda_})
                        for seed in seeds]
            decision = decide(per_seed, part.test, part.margin)
            paper = part_statistic(part, lambda key: {**rows[key].paper, "lambda": rows[key].unit.lambda_})
            decisions.append(decision)
            parts.append({"comparison": part.describe(), "test": part.test, "metric": part.metric,
                          "margin": part.margin, "verdict": decision.verdict, "p": decision.p,
                          "p_against": decision.p_against, "ours": decision.mean, "ours_per_seed": per_seed,
                          "paper": paper, "paper_meets_claim": paper_meets(part, paper)})
            if part.test == "equivalent":
                sd = float(np.std(per_seed, ddof=1))
                parts[-1]["tost"] = dict(zip(("max_sd", "seeds_needed"), tost_power(sd, len(per_seed), part.margin)),
                                         sd=sd)
        verdict, p, against = claim_verdict(decisions)
        records.append({"table": claim.table, "claim": claim.text, "verdict": verdict, "p": p, "p_against": against,
                        "ours": [part["ours"] for part in parts], "paper": [part["paper"] for part in parts],
                        "parts": parts})
    add_family_wise(records)
    return records


# --------------------------------------------------------------------------- running


def parse_tables(text: str) -> tuple[str, ...]:
    """``2,4,cost`` -> ("2", "4", "cost") in ``TABLES`` order; ValueError naming ``--tables``
    and the unknown entry."""
    asked = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in asked if t not in TABLES]
    if unknown or not asked:
        raise ValueError(f"--tables: unknown table(s) {unknown or [text]}; choose from {','.join(TABLES)}")
    return tuple(t for t in TABLES if t in asked)


def check_seeds(seeds: int) -> list[int]:
    """Seeds ``0 .. seeds-1``; ValueError naming ``--seeds`` when fewer than 2 (a paired test
    over seeds needs 2)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
        raise ValueError(f"--seeds: the verdicts are paired tests over seeds and need at least 2, got {seeds!r}")
    return list(range(seeds))


def usable_cpus() -> int:
    """The CPUs this process may use (its affinity where the platform has one). The kernels'
    compile has its own (``kernels.compiling.available_cpus``): pfd_ref reaches the kernels
    only through ``pfd_ref.backend`` and their checks, and the kernels import nothing of pfd_ref."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_jobs() -> int:
    """Worker processes by default: the CPUs this process may use, at most 4."""
    return max(1, min(4, usable_cpus()))


@dataclass
class Plan:
    """What a run trains: the rows of its tables (by key), the distinct units, the seeds."""

    tables: tuple
    scale: Scale
    seeds: list
    rows: dict = field(default_factory=dict)
    units: list = field(default_factory=list)


# The order in which a run trains its units, each for every seed before the next: the tables at
# lambda 0.5 first, then the training manners, then the lambda sweeps from the ends of the range
# inwards, so that a run stopped early (and kept by --json) holds whole tables.
TRAINING_ORDER = (("2", "4"), ("7", "8"), ("5", "6"))
LAMBDA_ORDER = (0.5, 0.1, 0.9, 0.3, 0.7)


def make_plan(tables, scale: Scale, seeds) -> Plan:
    """The rows of ``tables`` over ``scale.lambdas`` (in ``TABLES`` order) and the distinct
    units they need, in ``TRAINING_ORDER`` (by group) and ``LAMBDA_ORDER`` (within one)."""
    plan = Plan(tuple(tables), scale, list(seeds))
    for table in plan.tables:
        if table != "cost":
            plan.rows.update((row.key, row) for row in table_rows(table, scale.lambdas))
    rank = lambda unit: LAMBDA_ORDER.index(unit.lambda_) if unit.lambda_ is not None else 0  # noqa: E731
    for tables in TRAINING_ORDER:
        units = [row.unit for row in plan.rows.values() if row.table in tables]
        plan.units += sorted(dict.fromkeys(u for u in units if u not in plan.units), key=rank)
    return plan


_DATA: dict = {}  # a worker's synthetic data by task: (train, test), made by load_data


def load_data(data: SyntheticConfig, tasks) -> None:
    """Generate ``data``'s training and test splits of every task into this process's ``_DATA``
    (the initializer of each worker process; deterministic, so every worker has the same data)."""
    _DATA.clear()
    for task in tasks:
        _DATA[task] = generate(task, data)


def train_unit(unit: Unit, seed: int, scale: Scale) -> dict:
    """Train ``unit`` with ``seed`` on this process's data and evaluate it on the test split:
    ``{"auc", "gauc", "logloss", "teacher_auc" (None without a teacher), "train_seconds" (wall),
    "train_cpu_seconds" (this process's CPU time, every thread, ``time.process_time``)}``."""
    train_data, test_data = _DATA[unit.task]
    config = with_seed(unit_config(unit, train_data.n, scale.widths[unit.task], scale.batch_size), seed)
    cpu_start = time.process_time()
    result = train(train_data, unit.method, config)
    cpu_seconds = time.process_time() - cpu_start
    metrics = evaluate(test_data.labels, predict(result.student, result.params, test_data), test_data.user_ids)
    teacher_auc = None
    if result.teacher is not None:
        teacher_auc = evaluate(test_data.labels, predict(result.teacher, result.params, test_data),
                               test_data.user_ids)["auc"]
    return {"auc": metrics["auc"], "gauc": metrics["gauc"], "logloss": metrics["logloss"],
            "teacher_auc": None if teacher_auc is None else float(teacher_auc),
            "train_seconds": float(result.train_seconds), "train_cpu_seconds": float(cpu_seconds)}


def row_record(row: Row, seed: int, result: dict) -> dict:
    """The record of ``row`` for ``seed`` from its unit's ``result``: table, row, task, method,
    setting (lambda, manner), seed, auc, gauc, logloss, teacher_auc, train_seconds,
    train_cpu_seconds, and the paper's numbers of the row."""
    unit = row.unit
    return {"table": row.table, "row": row.label, "task": unit.task, "method": unit.method,
            "setting": {"lambda": unit.lambda_, "manner": None if unit.manner is None else MANNERS[unit.manner][2]},
            "seed": seed, **result, "paper": row.paper}


def row_records(plan: Plan, results: dict, timed: dict | None = None) -> list[dict]:
    """``row_record`` of every (row, seed) of ``plan`` whose unit has finished, in the plan's
    order (row by row, seed by seed); a row of ``TIMED_TABLES`` takes its ``TIME_FIELDS``
    from ``timed`` (the timing phase's ``{(unit, seed): times}``) where it has them."""
    def result(row, seed):
        found = results[(row.unit, seed)]
        times = (timed or {}).get((row.unit, seed)) if row.table in TIMED_TABLES else None
        return found if times is None else {**found, **{name: times[name] for name in TIME_FIELDS}}
    return [row_record(row, seed, result(row, seed))
            for row in plan.rows.values() for seed in plan.seeds if (row.unit, seed) in results]


def report_text(report: dict, row_texts: list[str]) -> str:
    """``report`` as JSON text, a field a line, and a row record or claim a line; its ``rows``
    from ``row_texts``, the JSON of each row record made once when its training finished (so
    the rewrite after each training encodes only that training's records). ``json.loads`` of
    the text equals ``report`` when ``row_texts`` encode ``report["rows"]``."""
    def field(key, value) -> str:
        if key in ("rows", "claims"):
            items = row_texts if key == "rows" else [json.dumps(item) for item in value]
            return f" {json.dumps(key)}: [" + ",".join("\n  " + item for item in items) + ("\n ]" if items else "]")
        return f" {json.dumps(key)}: {json.dumps(value)}"
    return "{\n" + ",\n".join(field(key, value) for key, value in report.items()) + "\n}\n"


def scale_record(scale: Scale) -> dict:
    """``scale`` as the report and its JSON hold it."""
    return json.loads(json.dumps({**asdict(scale), "data": asdict(scale.data)}))


# What a training depends on besides its unit and seed: two runs that agree on these can share trainings
# (the name, the default seeds, the lambdas listed and the cost figure's sizes change no training).
TRAINING_SCALE_KEYS = ("data", "widths", "batch_size")


# The libraries whose version can change a training's numbers: a --resume file must name the same.
ARITHMETIC_PACKAGES = ("python", "numpy", "scipy", "numba")

RESULT_KEYS = ("auc", "gauc", "logloss", "teacher_auc", "train_seconds", "train_cpu_seconds")


def _json_kind(value) -> str:
    """The JSON name of ``value``'s type, for messages."""
    kinds = ((bool, "boolean"), (dict, "an object"), (list, "an array"), (str, "a string"), ((int, float), "a number"))
    return "null" if value is None else next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_resumed_report(path, earlier) -> None:
    """ValueError naming ``--resume``, ``path`` and the field unless ``earlier`` (the JSON that
    ``path`` holds) has what ``finished_results`` reads: an object whose ``scale`` is an object
    holding ``TRAINING_SCALE_KEYS`` and whose ``rows`` is an array of row records, each an object
    with the strings ``table`` and ``row``, an integer ``seed`` >= 0 and the numbers of
    ``RESULT_KEYS`` (``teacher_auc`` may be null), and whose ``provenance.code`` is a string."""
    where = f"--resume: {path}"
    if not isinstance(earlier, dict):
        raise ValueError(f"{where} does not hold a `pfd-ref paper` report (a JSON object), but {_json_kind(earlier)}")
    for key, kind, name in (("scale", dict, "an object"), ("rows", list, "an array")):
        if key not in earlier:
            raise ValueError(f"{where}: the report has no {key!r} field")
        if not isinstance(earlier[key], kind):
            raise ValueError(f"{where}: the field {key!r} is {_json_kind(earlier[key])}, not {name}")
    missing = [key for key in TRAINING_SCALE_KEYS if key not in earlier["scale"]]
    if missing:
        raise ValueError(f"{where}: the field 'scale' lacks {', '.join(map(repr, missing))}")
    code = earlier.get("provenance", {}).get("code") if isinstance(earlier.get("provenance"), dict) else None
    if not isinstance(code, str):
        raise ValueError(f"{where}: the report has no 'provenance.code' (the fingerprint of the code that made its "
                         "trainings; written by this version on), so its trainings cannot be checked against this code")
    for i, record in enumerate(earlier["rows"]):
        field = f"{where}: rows[{i}]"
        if not isinstance(record, dict):
            raise ValueError(f"{field} is {_json_kind(record)}, not a row record (an object)")
        missing = [key for key in ("table", "row", "seed", *RESULT_KEYS) if key not in record]
        if missing:
            raise ValueError(f"{field} lacks {', '.join(map(repr, missing))}")
        for key in ("table", "row"):
            if not isinstance(record[key], str):
                raise ValueError(f"{field}.{key} is {_json_kind(record[key])}, not a string")
        if not isinstance(record["seed"], int) or isinstance(record["seed"], bool) or record["seed"] < 0:
            raise ValueError(f"{field}.seed is {record['seed']!r}, not an integer >= 0")
        for key in RESULT_KEYS:
            if not _is_number(record[key]) and not (key == "teacher_auc" and record[key] is None):
                raise ValueError(f"{field}.{key} is {record[key]!r}, not a number")


def finished_results(path, scale: Scale) -> dict:
    """``{(unit, seed): result}`` of the trainings a ``--json`` file of an earlier run of
    ``scale`` holds (its row records, of any table), for ``--resume``; empty when the file does
    not exist. ValueError naming ``--resume`` and the file when it is not JSON, does not hold a
    report (``check_resumed_report`` names the field), holds a run of another scale, or was
    made by other code (``provenance.code_fingerprint``: an edit to any source file of pfd_ref
    or its kernels, committed or not, refuses it) or with other versions of
    ``ARITHMETIC_PACKAGES``."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"--resume: {path} does not hold a `pfd-ref paper` report ({error})") from None
    check_resumed_report(path, earlier)
    record = scale_record(scale)
    if not all(earlier["scale"][key] == record[key] for key in TRAINING_SCALE_KEYS):
        raise ValueError(f"--resume: {path} holds a run of another scale ({earlier['scale'].get('name')!r}: its "
                         f"{', '.join(TRAINING_SCALE_KEYS)} differ from this run's, {scale.name!r})")
    code = code_fingerprint()
    if earlier["provenance"]["code"] != code:
        commit = (earlier["provenance"].get("git") or {}).get("commit")
        raise ValueError(f"--resume: {path} was made by other code (code fingerprint {earlier['provenance']['code'][:12]}"
                         f"{f', git commit {commit[:12]}' if isinstance(commit, str) else ''}; this code's is "
                         f"{code[:12]}): its trainings cannot be paired with this code's; rerun without --resume, or "
                         "resume with the code that made it")
    earlier_versions, versions = earlier["provenance"].get("versions"), package_versions()
    changed = [name for name in ARITHMETIC_PACKAGES
               if not isinstance(earlier_versions, dict) or earlier_versions.get(name) != versions.get(name)]
    if changed:
        was = earlier_versions if isinstance(earlier_versions, dict) else {}
        raise ValueError(f"--resume: {path} was made with other libraries ("
                         + ", ".join(f"{name} {was.get(name)} there, {versions.get(name)} here" for name in changed)
                         + "): their arithmetic may differ, so its trainings cannot be paired with this run's")
    units = {row.key: row.unit for table in TABLE_TASK for row in table_rows(table, scale.lambdas)}
    return {(units[(r["table"], r["row"])], r["seed"]): {key: r[key] for key in RESULT_KEYS}
            for r in earlier["rows"] if (r["table"], r["row"]) in units}


def run_paper(tables, scale: Scale, seeds, jobs: int = 1, json_path=None, log: Callable[[str], None] | None = None,
              options: dict | None = None, resume: bool = False) -> dict:
    """Run the tables: train every unit of ``make_plan`` for every seed (``jobs`` worker
    processes; 1: in this process), write ``json_path`` (when given) after each finished unit,
    decide the claims, measure the cost figure (table "cost"), and return the report:
    ``{"scale", "seeds", "tables", "jobs", "resumed", "rows", "claims", "cost", "complete",
    "wall_seconds", "provenance"}`` (and "timing", ``time_manners``' record, when Table 7 or 8 is
    run: their time columns and time claims come from it). The numbers do not depend on ``jobs``
    (each unit is trained from its seed); the times do (workers share the machine; each of
    ``jobs`` > 1 workers gets ``worker_threads(jobs)`` threads). ``log`` gets one progress line per finished unit.
    ``resume``: the trainings ``json_path`` already holds (``finished_results``) are kept, not
    repeated (the report's wall time is then this call's)."""
    log = log or (lambda line: None)
    seeds = list(seeds)
    check_seeds(len(seeds))
    jobs = check_scalar("jobs", jobs, int, low=1)
    check_output_file("--json", json_path)
    if resume and json_path is None:
        raise ValueError("--resume: needs --json (the file of the run to resume)")
    earlier = finished_results(json_path, scale) if resume else {}
    plan = make_plan(tables, scale, seeds)
    start = time.perf_counter()
    tasks = tuple(dict.fromkeys(unit.task for unit in plan.units))
    threads = worker_threads(jobs) if jobs > 1 else None
    report = {"command": "pfd-ref paper", "scale": scale_record(scale), "seeds": seeds,
              "tables": list(plan.tables), "jobs": jobs, "worker_threads": threads,
              "rows": [], "claims": [], "cost": None, "complete": False,
              "wall_seconds": None,
              "provenance": provenance({"options": options or {}, "backend": get_backend(), "jobs": jobs},
                                       generator_source("pfd_ref.data.synthetic.generate",
                                                        {"tasks": list(tasks), **asdict(scale.data)}))}
    results = {key: result for key, result in earlier.items() if key[0] in plan.units and key[1] in seeds}
    work = [(unit, seed) for unit in plan.units for seed in seeds if (unit, seed) not in results]
    total = len(work) + len(results)
    report["resumed"] = len(results)
    rows_of_unit = {}
    for row in plan.rows.values():
        rows_of_unit.setdefault(row.unit, []).append(row)
    row_texts = []  # the JSON of each record of report["rows"], made once

    def set_rows(records: list[dict]) -> None:
        report["rows"] = records
        row_texts[:] = [json.dumps(record) for record in records]

    def save() -> None:
        if json_path is not None:
            write_atomically(json_path, lambda handle: handle.write(report_text(report, row_texts)), mode="w")

    set_rows(row_records(plan, results))  # the resumed trainings

    def finished(unit, seed, result):
        results[(unit, seed)] = result
        new_records = [row_record(row, seed, result) for row in rows_of_unit[unit]]
        report["rows"].extend(new_records)  # in the order the trainings finished; the plan's order at the end
        row_texts.extend(json.dumps(record) for record in new_records)
        save()
        teacher = "" if result["teacher_auc"] is None else f", teacher {result['teacher_auc']:.4f}"
        log(f"[{len(results)}/{total}] {unit.describe()} seed {seed}: AUC {result['auc']:.4f}{teacher}, "
            f"{result['train_seconds']:.1f} s, CPU {result['train_cpu_seconds']:.1f} s "
            f"(elapsed {time.perf_counter() - start:.0f} s)")

    log(f"pfd-ref paper ({scale.name}): tables {','.join(plan.tables)}, {len(plan.units)} trained settings x "
        f"{len(seeds)} seeds = {total} trainings in {jobs} process(es); data: {scale.data.n_users} users"
        + (f"; {len(results)} resumed from {json_path}" if results else ""))
    if work and jobs == 1:
        load_data(scale.data, tasks)
        try:
            for unit, seed in work:
                finished(unit, seed, train_unit(unit, seed, scale))
        finally:
            _DATA.clear()
    elif work:
        run_in_pool(partial(train_unit, scale=scale), work, jobs, (load_data, (scale.data, tasks)),
                    lambda item, result: finished(*item, result), lambda item: f"{item[0].describe()} seed {item[1]}",
                    threads)
    set_rows(row_records(plan, results))  # in the plan's order
    timed = {}
    if any(table in plan.tables for table in TIMED_TABLES):
        log(f"timing phase: the settings of Tables {', '.join(t for t in TIMED_TABLES if t in plan.tables)} "
            "trained again, seed by seed, for their times")
        report["timing"] = {}
        timed = time_manners(plan, scale, jobs, threads, log, report["timing"], save)
        # the timing trainings are the same trainings: their AUCs are those of the tables
        report["timing"]["same_auc"] = all(timed[key]["auc"] == results[key]["auc"] for key in timed)
        set_rows(row_records(plan, results, timed))  # Tables 7 and 8 with the timing phase's times
    claim_results = {key: {**result, **{name: timed[key][name] for name in TIME_FIELDS}} if key in timed else result
                     for key, result in results.items()}
    report["claims"] = evaluate_claims(claims_for(scale.lambdas), plan.rows, claim_results, seeds)
    if "cost" in plan.tables:
        log("§5.2 cost figure: timing the tower against the inner product")
        report["cost"] = cost_figure(scale)
    report["complete"], report["wall_seconds"] = True, time.perf_counter() - start
    save()
    return report


def worker_threads(jobs: int) -> int:
    """The BLAS and Numba threads of each of ``jobs`` worker processes: the CPUs this process
    may use divided among them (at least 1), so that the workers do not compete for cores."""
    return max(1, usable_cpus() // jobs)


# The tables whose time columns and time claims compare training manners: their times come from a
# timing phase of their own (time_manners), not from the trainings that give their AUCs.
TIMED_TABLES = ("7", "8")
TIME_FIELDS = ("train_seconds", "train_cpu_seconds")  # what the timing phase replaces in their rows


def timing_order(plan: Plan) -> list[tuple[Unit, int]]:
    """The trainings of the timing phase in the order they are queued: seed by seed, and within
    one seed the units of the rows of each of ``TIMED_TABLES`` in the plan (baseline, Ind&Async,
    Ind&Sync, Share&Sync, Share*&Sync or PFD Share&Sync) rotated by the seed's position, so
    that every setting of a seed is timed next to the others, at the same load, and none is
    always first."""
    order = []
    for position, seed in enumerate(plan.seeds):
        for table in TIMED_TABLES:
            units = [row.unit for row in plan.rows.values() if row.table == table]
            if units:
                k = position % len(units)
                order += [(unit, seed) for unit in units[k:] + units[:k]]
    return order


def warm_up(data: SyntheticConfig, tasks, scale: Scale) -> None:
    """``load_data``, then one untimed training of each task's baseline (seed 0): the kernels
    loaded, BLAS's threads started and the memory touched before the first timed training
    (the initializer of each worker of the timing phase)."""
    load_data(data, tasks)
    for task in tasks:
        train_unit(make_unit(task, "baseline"), 0, scale)


def time_unit(unit: Unit, seed: int, scale: Scale) -> dict:
    """``train_unit`` (the same training, the same arithmetic) reduced to its times and AUC:
    ``{"train_seconds", "train_cpu_seconds", "load_1min" (``os.getloadavg`` at its start), "auc"}``."""
    load = os.getloadavg()[0]
    result = train_unit(unit, seed, scale)
    return {"train_seconds": result["train_seconds"], "train_cpu_seconds": result["train_cpu_seconds"],
            "load_1min": load, "auc": result["auc"]}


def time_manners(plan: Plan, scale: Scale, jobs: int, threads: int | None, log: Callable[[str], None], record: dict,
                 save: Callable[[], None]) -> dict:
    """The timing phase: every training of ``timing_order`` again, in ``jobs`` processes (1: this
    one) with ``threads`` BLAS and Numba threads each (None: this process's), each process
    warmed up first (``warm_up``). Fills ``record``, the report's, and calls ``save`` after
    each timed training (nothing timed is lost on a crash; ``complete`` False until the end):
    ``jobs``, ``threads_per_worker``, ``load_1min`` at the start (and the end), one entry per
    (table, row, seed) with its times and the 1-minute load at its start (in the order they
    finished, then the plan's). Returns ``{(unit, seed): time_unit's result}``."""
    order = timing_order(plan)
    tasks = tuple(dict.fromkeys(unit.task for unit, _ in order))
    times = {}
    labels = {(row.table, row.unit): row.label for row in plan.rows.values() if row.table in TIMED_TABLES}
    record.update(jobs=jobs, threads_per_worker=threads, load_1min=[os.getloadavg()[0]], records=[], complete=False)

    def entries(items) -> list:
        return [{"table": table, "row": label, "seed": seed, **times[(unit, seed)]}
                for (table, unit), label in labels.items() for seed in plan.seeds if (unit, seed) in items]

    def finished(item, result):
        times[item] = result
        record["records"] += entries({item})
        save()
        log(f"timing {len(times)}/{len(order)}: {item[0].describe()} seed {item[1]}: {result['train_seconds']:.1f} s, "
            f"CPU {result['train_cpu_seconds']:.1f} s, load {result['load_1min']:.1f}")
    if jobs == 1:
        warm_up(scale.data, tasks, scale)
        try:
            for item in order:
                finished(item, time_unit(*item, scale))
        finally:
            _DATA.clear()
    else:
        run_in_pool(partial(time_unit, scale=scale), order, jobs, (warm_up, (scale.data, tasks, scale)),
                    finished, lambda item: f"timing {item[0].describe()} seed {item[1]}", threads)
    record.update(records=entries(times), complete=True)
    record["load_1min"].append(os.getloadavg()[0])
    return times


def run_in_pool(function: Callable, work: list, jobs: int, initializer: tuple, finished: Callable,
                describe: Callable, threads: int | None = None) -> None:
    """``function(*item)`` for every ``item`` of ``work`` (tuples), queued in that order on
    ``jobs`` spawned worker processes (each started by ``initializer``, ``(function, args)``,
    with ``threads`` BLAS and Numba threads: ``provenance.THREAD_VARIABLES`` set in their
    environment, read when they import numpy and numba; None: this process's);
    ``finished(item, result)`` in this process as each ends. On the first failure the queued
    items are cancelled (never started), the running ones are waited for and their results
    passed to ``finished`` too (nothing finished is lost), and RuntimeError naming the item
    (``describe(item)``) is raised from the worker's exception."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    pool = None
    try:
        try:  # the workers are spawned by the first submits, so with this environment
            if threads is not None:
                os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
            pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=initializer[0], initargs=initializer[1])
            futures = {pool.submit(function, *item): item for item in work}
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        for future in as_completed(futures):
            item = futures.pop(future)
            if future.exception() is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                done = [(other, key) for other, key in futures.items() if not other.cancelled()]
                for other, key in done:
                    if other.exception() is None:
                        finished(key, other.result())
                raise RuntimeError(f"{describe(item)}: the training failed in a worker process "
                                   f"({type(future.exception()).__name__}: {future.exception()}); "
                                   f"{len(futures) - len(done)} queued training(s) cancelled") from future.exception()
            finished(item, future.result())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def cost_figure(scale: Scale) -> dict:
    """``serving.tower_cost_figure`` at the scale's candidates and repeats, the paper's numbers
    beside it, and the claim's verdict: holds when both our multiply-add ratio and our time
    ratio are at least ``COST_ORDERS_OF_MAGNITUDE`` (one timing, no seeds: no p)."""
    from pfd_ref.serving import tower_cost_figure
    ours = tower_cost_figure(candidates=scale.cost_candidates, repeats=scale.cost_repeats)
    holds = min(ours["multiply_add_ratio"], ours["time_ratio"]) >= COST_ORDERS_OF_MAGNITUDE
    return {"ours": ours, "paper": PAPER_COST,
            "claim": f"a tower per candidate costs at least {COST_ORDERS_OF_MAGNITUDE}x an inner product "
                     "(multiply-adds and measured time)",
            "verdict": "holds" if holds else "does not hold"}


# --------------------------------------------------------------------------- printing


def _mean_std(values, sign: bool = False) -> str:
    """``mean ± std`` (sample std) of the values that are not None, 4 decimals; "" for none."""
    values = [v for v in values if v is not None]
    if not values:
        return ""
    mean = f"{float(np.mean(values)):{'+' if sign else ''}.4f}"
    return mean if len(values) < 2 else f"{mean} ± {float(np.std(values, ddof=1)):.4f}"


def _number(value, digits: int = 4, sign: bool = False) -> str:
    return "" if value is None else f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _table_lines(table: str, rows: list[Row], records: list[dict]) -> list[str]:
    by_row = {}
    for record in records:
        by_row.setdefault(record["row"], {})[record["seed"]] = record
    baseline = by_row.get("baseline", {})
    paper_baseline = next((r.paper for r in rows if r.label == "baseline"), {})
    header = ["row", "AUC", "paper", "gain", "paper gain", "teacher AUC", "paper teacher", "wall s", "CPU s"]
    if table in ("7", "8"):
        header += ["CPU vs baseline", "wall vs baseline", "paper h", "paper vs baseline"]
    lines = []
    for row in rows:
        seeds = by_row.get(row.label, {})
        paired = [s for s in seeds if s in baseline]
        gain = [seeds[s]["auc"] - baseline[s]["auc"] for s in paired] if row.label != "baseline" else []
        paper_gain = None if row.label == "baseline" or row.paper.get("auc") is None else \
            row.paper["auc"] - paper_baseline.get("auc", float("nan"))
        cells = [row.label, _mean_std(r["auc"] for r in seeds.values()), _number(row.paper.get("auc")),
                 _mean_std(gain, sign=True),
                 _number(paper_gain, sign=True),
                 _mean_std(r["teacher_auc"] for r in seeds.values()), _number(row.paper.get("teacher_auc")),
                 *(f"{np.mean([r[key] for r in seeds.values()]):.1f}" if seeds else ""
                   for key in ("train_seconds", "train_cpu_seconds"))]
        if table in ("7", "8"):
            for key in ("train_cpu_seconds", "train_seconds"):  # geometric mean of the per-seed ratios
                ratio = [math.log(seeds[s][key] / baseline[s][key]) for s in paired]
                cells.append("" if row.label == "baseline" or not ratio else f"{math.expm1(np.mean(ratio)):+.1%}")
            paper_relative = row.paper.get("relative")
            cells += [_number(row.paper.get("hours"), 2), "" if paper_relative is None else f"{paper_relative:+.1%}"]
        lines.append(cells)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines]


def _statistic_text(part: dict, value) -> str:
    if value is None:
        return "-"
    if part["metric"] == "log_cpu_seconds":
        return f"{math.expm1(value):+.1%}"
    return f"{value:+.4f}" + ("/λ" if part["comparison"].startswith("slope") else "")


def format_claims(claims: list[dict]) -> list[str]:
    """One line per claim (table, verdict, p, text) and an indented line per part: its
    comparison, our mean over seeds, the paper's value, the part's own verdict."""
    lines = []
    p_text = lambda verdict, p, against: f"p={p:.3g}" if verdict != "does not hold" else f"p_against={against:.3g}"  # noqa: E731
    for claim in claims:
        holm_text = f"{claim['holm_verdict']} ({p_text(claim['holm_verdict'], claim['holm_p'], claim['holm_p_against'])})"
        lines.append(f"Table {claim['table']:<2} {claim['verdict']:<16} "
                     f"{p_text(claim['verdict'], claim['p'], claim['p_against']):<17} {claim['claim']}; "
                     f"Holm: {holm_text}")
        for part in claim["parts"]:
            meets = {True: "", False: " (the paper's own numbers do not meet this rule)", None: ""}[part["paper_meets_claim"]]
            lines.append(f"    {part['comparison']}: ours {_statistic_text(part, part['ours'])}, paper "
                         f"{_statistic_text(part, part['paper'])}; {part['test']}"
                         f"{'' if not part['margin'] else ' margin ' + _statistic_text(part, part['margin']).lstrip('+')}"
                         f": {part['verdict']} (p={part['p']:.3g}, p_against={part['p_against']:.3g}){meets}")
            if "tost" in part:
                tost, seeds = part["tost"], len(part["ours_per_seed"])
                needed = "more than 10^4" if tost["seeds_needed"] is None else tost["seeds_needed"]
                lines.append(f"      TOST power: with {seeds} seeds this part can hold only if the paired sd < "
                             f"{tost['max_sd']:.4f} (ours {tost['sd']:.4f}; at ours it needs {needed} seeds, at "
                             "a mean difference of 0)")
    return lines


def format_cost(cost: dict) -> list[str]:
    ours, paper = cost["ours"], cost["paper"]
    return [
        f"multiply-adds per candidate: tower {ours['multiply_adds_tower']:,} vs inner product "
        f"{ours['multiply_adds_inner_product']} = {ours['multiply_add_ratio']:.0f}x (paper: ~{paper['multiply_adds_tower']:.1e} "
        f"vs {paper['multiply_adds_inner_product']} = ~{paper['multiply_add_ratio']}x)",
        f"measured per candidate, batched ({ours['candidates']} candidates, median of {ours['repeats']}): tower "
        f"{ours['tower_s'] * 1e6:.2f} us vs inner product {ours['inner_product_s'] * 1e9:.1f} ns = {ours['time_ratio']:.0f}x",
        f"measured one call per candidate: tower {ours['tower_s_one_at_a_time'] * 1e6:.2f} us vs inner product "
        f"{ours['inner_product_s_one_at_a_time'] * 1e6:.2f} us = {ours['time_ratio_one_at_a_time']:.0f}x",
        f"paper (a PC, {paper['repetitions']:.0e} repetitions): {paper['tower_s']} s vs {paper['inner_product_s']} s = "
        f"~{paper['time_ratio']}x",
        f"claim: {cost['claim']}: {cost['verdict']}",
    ]


def format_report(report: dict) -> str:
    """The report as text: each table beside the paper's numbers, then the claims."""
    scale, lines = report["scale"], []
    lines.append(f"pfd-ref paper ({scale['name']}): {len(report['seeds'])} seeds, synthetic data with "
                 f"{scale['data']['n_users']} users, student widths {scale['widths']} (the paper's 512), "
                 f"{report['jobs']} process(es); wall {report['wall_seconds'] or 0:.0f} s"
                 + (f" ({report['resumed']} trainings resumed from an earlier run, not in this wall time)"
                    if report.get("resumed") else ""))
    threads = report["provenance"]["threads"]
    blas = ",".join(str(t) for t in sorted({b["threads"] for b in threads["blas"]} - {None})) or "unknown"
    where = (f"in one of {report['jobs']} worker processes with {report['worker_threads']} BLAS and Numba thread(s) "
             "each" if report.get("worker_threads") else f"in this process (BLAS {blas}, Numba {threads['numba']} threads)")
    lines.append(f"every training {where}; AUC, teacher AUC, wall s and CPU s: mean ± std over seeds; gain: paired "
                 "over seeds against the table's baseline; the paper's numbers beside ours (docs/paper.md)")
    timing = report.get("timing")
    for table in report["tables"]:
        lines += ["", TABLE_TITLES[table]]
        if table == "cost":
            lines += format_cost(report["cost"]) if report["cost"] else ["(not measured)"]
            continue
        rows = table_rows(table, tuple(scale["lambdas"]))
        lines += _table_lines(table, rows, [r for r in report["rows"] if r["table"] == table])
        if table in TIMED_TABLES and timing:
            loads = [r["load_1min"] for r in timing["records"] if r["table"] == table]
            lines.append(f"times: the timing phase, every setting of a seed trained again next to the others (seed by "
                         f"seed, after a warm-up), {timing['jobs']} process(es)"
                         + (f" x {timing['threads_per_worker']} thread(s)" if timing["threads_per_worker"] else "")
                         + f"; 1-minute load {min(loads):.1f}-{max(loads):.1f}; indicative only (docs/paper.md, 'Times')")
            if timing.get("same_auc") is False:
                lines.append("WARNING: a training of the timing phase gave another AUC than the table's: the two did "
                             "not compute the same (report timing.same_auc)")
    if report["claims"]:
        lines += ["", f"Claims (paired over {len(report['seeds'])} seeds; one-sided t-tests, TOST for 'the same'; "
                      f"p < {ALPHA}; AUC margin {AUC_MARGIN}; docs/paper.md, 'Verdicts'); after each claim its "
                      f"family-wise verdict, Holm-adjusted over the {len(report['claims'])} claims"]
        lines += format_claims(report["claims"])
    return "\n".join(lines)

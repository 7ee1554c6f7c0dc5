"""Why our CTR distillation gain is smaller than the paper's: each candidate measured (docs/ctr_gap.md).

    python docs/experiments/ctr_gap.py                          # every experiment at its default size
    python docs/experiments/ctr_gap.py --only gap,epochs        # some of them (names: EXPERIMENTS)
    python docs/experiments/ctr_gap.py --only epochs --epochs 8 --seeds 3
    python docs/experiments/ctr_gap.py --cache runs/ctr_gap.json  # reuse finished trainings (resumable)
    python docs/experiments/ctr_gap.py --tiny                   # seconds: the structure, not the numbers

Every training is ``pfd_ref.train.train`` with ``experiment.preset_config`` (the paper preset of
``pfd-ref run``) on the built-in synthetic CTR data, changed in one option per experiment;
seeds 0 .. N-1 are paired across methods and settings (same data, same initial student, same
batch order), and each gain is the paired mean over seeds with its 95% t-interval and the
two-sided paired t-test's p (``pfd_ref.metrics.paired_comparison``). The experiments:

``gap``       the four CTR methods and their teachers, paper and simple presets, beside Table 2
``epochs``    (a) an under-trained two-tower: 1, 2, 4, 8 epochs
``capacity``  (b) the teacher's capacity: the pfd+md teacher's hidden widths, and md's at the same widths
``inner``     (c) what a student can carry of a teacher: students fitted to target logits alone
              (lambda 1, no hard label) -- the pfd+md teacher's and the generator's true logits with and
              without the day's intent -- two-tower against MLP; and the true logit's parts
``size``      (d) the data size: training days x1, x2, x4, x8
``history``   our generator's departure from the paper's data: the recent-category history blind to
              the day's intent (``SyntheticConfig.history_intent_share`` 0, the default) or not
``recipe``    the paper preset's parts: sharing, the distillation warm-up, the optimizer

Each experiment prints markdown tables. ``--cache FILE`` keeps every finished training's
metrics (written atomically after each), keyed by the data's and the training's full
configuration and by the code (``code_fingerprint``), so a rerun or another experiment with
the same configuration on the same code does not train again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from pfd_ref.data.synthetic import SyntheticConfig, bayes_logits, generate  # noqa: E402
from pfd_ref.experiment import preset_config  # noqa: E402
from pfd_ref.files import write_atomically  # noqa: E402
from pfd_ref.metrics import auc, paired_comparison  # noqa: E402
from pfd_ref.provenance import code_fingerprint  # noqa: E402
from pfd_ref.train import predict, train  # noqa: E402

METHODS = ("baseline", "md", "pfd", "pfd+md")
TEACHER_METHODS = ("md", "pfd", "pfd+md")
# Table 2 of the paper (1 day of CTR data): student AUC and teacher AUC (docs/../shared PAPER.md)
PAPER_TABLE2 = {"baseline": (0.6625, None), "md": (0.6704, 0.6892), "pfd": (0.6712, 0.6921),
                "pfd+md": (0.6745, 0.7110)}
EXPERIMENTS = ("gap", "epochs", "capacity", "inner", "size", "history", "recipe")


@dataclass(frozen=True)
class Scale:
    """The sizes of every experiment: data, seeds, and each experiment's settings.

    ``model``: ModelSizes fields that replace the preset's (none at the full size);
    ``batch_size``; ``simple_warmup``: the simple preset's distillation warm-up (None: its own, 100).
    """

    data: SyntheticConfig = field(default_factory=SyntheticConfig)
    seeds: int = 5
    epochs: tuple = (1, 2, 4, 8)
    widths: tuple = ((64, 32), (256, 128, 64), (512, 256, 128))
    fit_epochs: int = 4
    size_factors: tuple = (1, 2, 4, 8)
    history_shares: tuple = (0.0, 0.5)
    model: dict = field(default_factory=dict)
    batch_size: int = 1024
    simple_warmup: int | None = None


FULL = Scale()
TINY = Scale(data=SyntheticConfig(n_users=100, n_items=200, n_categories=12, n_shops=30, n_days=3, test_days=1,
                                  ctr_impressions_per_user_day=8.0),
             seeds=2, epochs=(1, 2), widths=((8,), (16, 8)), fit_epochs=2, size_factors=(1, 2), history_shares=(0.0, 1.0),
             model=dict(embed_dim=4, student_hidden=(8,), tower_out_dim=4, strong_hidden=(16, 8)), batch_size=256,
             simple_warmup=2)


@dataclass
class Table:
    """One printed table: a title, its column names and rows of cells (strings)."""

    title: str
    columns: tuple
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines + ([""] + self.notes if self.notes else []))


# --------------------------------------------------------------------------- training, cached


class Runner:
    """Trains (or reads from the cache) one method at one seed and evaluates it on the test split."""

    def __init__(self, scale: Scale, cache_path: str | None = None, log=None, methods=METHODS):
        self.scale, self.cache_path, self.method_names = scale, cache_path, tuple(methods)
        self.log = log or (lambda text: None)
        self.cache = {}
        if cache_path and os.path.exists(cache_path):
            with open(cache_path) as handle:
                self.cache = json.load(handle)
        self._data_key, self._data = None, None
        self.code = code_fingerprint()

    def data(self, config: SyntheticConfig):
        """``(train, test)`` of the CTR task of ``config`` (the last one generated is kept)."""
        if self._data_key != config:
            self._data = None  # free the previous data first
            self._data = generate("ctr", config)
            self._data_key = config
        return self._data

    def config(self, data: SyntheticConfig, student_kind: str = "two_tower", preset: str = "paper", model=None,
               **options):
        """``preset_config`` for a student of ``student_kind`` on the training split of ``data``, with
        ``options`` (run-option names) and the scale's (and ``model``'s) ModelSizes fields."""
        n_rows = self.data(data)[0].n
        if preset == "simple" and self.scale.simple_warmup is not None:
            options.setdefault("warmup_steps", self.scale.simple_warmup)
        config = preset_config(student_kind, n_rows, preset, **{"batch_size": self.scale.batch_size, **options})
        sizes = {**self.scale.model, **(model or {})}
        return replace(config, sizes=replace(config.sizes, **sizes)) if sizes else config

    def run(self, data: SyntheticConfig, config, method: str, seed: int, teacher_logits=None, target: str = "",
            target_test_logits=None) -> dict:
        """``{"auc", "mean_predicted", "teacher_auc"?, "r2_target"?, "seconds"}`` of ``method``'s
        student trained with ``config`` at ``seed`` (``teacher_logits``: two-stage soft labels named
        ``target``; with ``target_test_logits``, ``r2_target = 1 - mean (s - t)^2 / var(t)`` of the
        student's test logits ``s`` to the target's ``t``)."""
        key = json.dumps([asdict(data), asdict(replace(config, seed=seed)), method, target, self.code], sort_keys=True)
        if key in self.cache:
            return self.cache[key]
        train_data, test_data = self.data(data)
        start = time.process_time()
        result = train(train_data, method, replace(config, seed=seed), teacher_logits=teacher_logits)
        logits = predict(result.student, result.params, test_data)
        record = {"auc": auc(test_data.labels, logits), "mean_predicted": float(np.mean(1 / (1 + np.exp(-logits))))}
        if result.teacher is not None:
            record["teacher_auc"] = auc(test_data.labels, predict(result.teacher, result.params, test_data))
        if target_test_logits is not None:
            residual = logits.astype(np.float64) - target_test_logits
            record["r2_target"] = float(1.0 - np.mean(residual ** 2) / np.var(target_test_logits))
        record["seconds"] = time.process_time() - start
        self.log(f"  {method} seed {seed}{' ' + target if target else ''}: auc {record['auc']:.4f}"
                 + (f" teacher {record['teacher_auc']:.4f}" if "teacher_auc" in record else "")
                 + f" ({record['seconds']:.1f} s cpu)")
        self.cache[key] = record
        if self.cache_path:  # merged with what other processes wrote there meanwhile
            if os.path.exists(self.cache_path):
                with open(self.cache_path) as handle:
                    self.cache = {**json.load(handle), **self.cache}
            write_atomically(self.cache_path, lambda h: json.dump(self.cache, h), mode="w")
        return record

    def methods(self, data: SyntheticConfig, config, methods=None, seeds=None) -> dict:
        """``{method: [record per seed]}`` for seeds ``0 .. seeds - 1`` (default: the scale's) and
        ``methods`` (default: the runner's)."""
        methods = self.method_names if methods is None else methods
        seeds = self.scale.seeds if seeds is None else seeds
        return {m: [self.run(data, config, m, s) for s in range(seeds)] for m in methods}


# --------------------------------------------------------------------------- statistics and cells


def _values(records: list[dict], key: str = "auc") -> np.ndarray:
    return np.array([r[key] for r in records])


def _gain(values: np.ndarray, reference: np.ndarray) -> dict:
    return paired_comparison(values, reference)


def _mean_sd(values: np.ndarray) -> str:
    return f"{values.mean():.4f}" + (f" ± {values.std(ddof=1):.4f}" if len(values) > 1 else "")


def _gain_cells(values: np.ndarray, reference: np.ndarray) -> list[str]:
    """``[mean gain, 95% CI, p]`` of ``values - reference`` paired over seeds."""
    c = _gain(values, reference)
    if c["n"] < 2:
        return [f"{c['mean_gain']:+.4f}", "", ""]
    return [f"{c['mean_gain']:+.4f}", f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]", f"{c['p_value']:.3f}"]


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator > 0 else "–"


METHOD_COLUMNS = ("AUC", "gain vs baseline", "95% CI", "p", "vs md", "95% CI", "p", "teacher AUC",
                  "teacher gain", "transfer")
METHOD_NOTES = ["gain: paired over seeds (mean, 95% t-interval, two-sided paired t-test p); vs md: the same "
                "comparison against md (pfd+md's control: the same teacher without the privileged features); "
                "teacher gain: the teacher's AUC minus the baseline student's; transfer: gain / teacher gain"]


def method_rows(label: list[str], by_method: dict) -> list[list[str]]:
    """One row per method of ``by_method`` (``{method: [record per seed]}``, baseline included)."""
    base = _values(by_method["baseline"])
    rows = []
    for method, records in by_method.items():
        values = _values(records)
        row = [*label, method, _mean_sd(values)]
        row += _gain_cells(values, base) if method != "baseline" else ["", "", ""]
        row += _gain_cells(values, _values(by_method["md"])) if method == "pfd+md" and "md" in by_method else ["", "", ""]
        if "teacher_auc" in records[0]:
            teacher = _values(records, "teacher_auc")
            row += [_mean_sd(teacher), f"{(teacher - base).mean():+.4f}",
                    _ratio((values - base).mean(), (teacher - base).mean())]
        else:
            row += ["", "", ""]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the experiments


def experiment_gap(runner: Runner) -> list[Table]:
    """The four methods in the paper and simple presets, beside the paper's Table 2."""
    data = runner.scale.data
    table = Table("CTR, 1 epoch, sync, lambda 0.5: ours (two presets) and the paper's Table 2",
                  ("preset", "method") + METHOD_COLUMNS, notes=METHOD_NOTES[:])
    for preset in ("paper", "simple"):
        table.rows += method_rows([preset], runner.methods(data, runner.config(data, preset=preset)))
    base = PAPER_TABLE2["baseline"][0]
    md_auc = PAPER_TABLE2["md"][0]
    for method, (student, teacher) in PAPER_TABLE2.items():
        gain = "" if method == "baseline" else f"{student - base:+.4f}"
        vs_md = f"{student - md_auc:+.4f}" if method == "pfd+md" else ""
        table.rows.append(["paper (1 day)", method, f"{student:.4f}", gain, "", "", vs_md, "", "",
                           "" if teacher is None else f"{teacher:.4f}",
                           "" if teacher is None else f"{teacher - base:+.4f}",
                           "" if teacher is None else _ratio(student - base, teacher - base)])
    table.notes.append("paper: one run per method, no spread given")
    return [table]


def experiment_epochs(runner: Runner, epochs=None) -> list[Table]:
    """(a) More passes for every model (student and sync teacher alike); the warm-ups stay the
    preset's (scaled to one epoch)."""
    data = runner.scale.data
    table = Table("(a) epochs: gains of the distilled students as the two-tower trains longer",
                  ("epochs", "method") + METHOD_COLUMNS, notes=METHOD_NOTES[:])
    for n in epochs or runner.scale.epochs:
        table.rows += method_rows([str(n)], runner.methods(data, runner.config(data, epochs=n)))
    return [table]


def _width_text(widths) -> str:
    return "-".join(map(str, widths))


def experiment_capacity(runner: Runner, widths=None) -> list[Table]:
    """(b) The strong teacher's hidden widths (md's and pfd+md's alike); the student stays."""
    data = runner.scale.data
    table = Table("(b) teacher capacity: md and pfd+md teachers of several widths",
                  ("teacher hidden", "method") + METHOD_COLUMNS, notes=METHOD_NOTES[:])
    base_config = runner.config(data)
    baseline = runner.methods(data, base_config, ("baseline",))["baseline"]
    pfd = runner.methods(data, base_config, ("pfd",))["pfd"]
    table.rows += method_rows(["two-tower (pfd's)"], {"baseline": baseline, "pfd": pfd})[1:]
    for w in widths or runner.scale.widths:
        by_method = {"baseline": baseline, **runner.methods(data, runner.config(data, model={"strong_hidden": tuple(w)}),
                                                            ("md", "pfd+md"))}
        table.rows += method_rows([_width_text(w)], by_method)[1:]
    table.notes.append("the baseline (the same in every row) is the preset's two-tower student; "
                       "pfd's teacher is the student's two-tower with the privileged features in its user tower")
    return [table]


def logit_parts(config: SyntheticConfig) -> dict:
    """The true CTR logit's parts on (train, test): ``eta = base + taste + price + intent`` with
    ``base = b + r_u + q_i``, ``taste = alpha <a_u, w_i>``, ``price = -gamma sigmoid(...)`` and
    ``intent = alpha_c z_cat + alpha_s z_shop`` (docs/data.md), each the difference of
    ``bayes_logits`` with that effect set to 0 (impressions and latent variables do not
    depend on the effects, so every call sees the same rows)."""
    full = bayes_logits("ctr", config)
    zero = {"taste": dict(taste_effect=0.0), "price": dict(price_effect=0.0),
            "intent": dict(category_intent_effect=0.0, shop_intent_effect=0.0)}
    parts = {"eta": full}
    for name, changes in zero.items():
        without = bayes_logits("ctr", replace(config, **changes))
        parts[name] = tuple(f - w for f, w in zip(full, without))
    parts["base"] = tuple(f - parts["taste"][i] - parts["price"][i] - parts["intent"][i] for i, f in enumerate(full))
    parts["eta_without_intent"] = tuple(f - parts["intent"][i] for i, f in enumerate(full))
    return parts


def explained_share(keys: np.ndarray, values: np.ndarray) -> float:
    """The share of ``var(values)`` that a function of ``keys`` explains, corrected for the noise of
    small groups (omega squared of a one-way analysis of variance):

        omega^2 = (SS_between - (k - 1) MS_within) / (SS_total + MS_within),   MS_within = SS_within / (N - k)

    with ``k`` distinct keys over ``N`` rows. 0 when the key says nothing, 1 when it determines the values."""
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, values) / counts
    total = np.sum((values - values.mean()) ** 2)
    within = np.sum((values - means[inverse]) ** 2)
    k, n = len(counts), len(values)
    ms_within = within / (n - k)
    return float(((total - within) - (k - 1) * ms_within) / (total + ms_within))


def experiment_inner(runner: Runner) -> list[Table]:
    """(c) How much of a target's advantage a student reproduces from the regular features when
    fitted to that target alone (two-stage, lambda 1: no hard label, no warm-up), two-tower
    against an MLP student over the same regular inputs, trained ``fit_epochs`` passes; and the
    parts of the true logit (docs/data.md) with what a function of (user, category) or (user, shop)
    predicts of the day's intent."""
    scale, data = runner.scale, runner.scale.data
    train_data, test_data = runner.data(data)
    parts = logit_parts(data)
    tables = []

    decomposition = Table("(c) the true CTR logit's parts on the test rows",
                          ("part", "variance", "share of var(eta)", "AUC of the part alone"))
    total = np.var(parts["eta"][1])
    for name in ("base", "taste", "price", "intent", "eta_without_intent", "eta"):
        values = parts[name][1]
        decomposition.rows.append([name, f"{np.var(values):.3f}", f"{np.var(values) / total:.3f}",
                                   f"{auc(test_data.labels, values):.4f}"])
    rows_intent = np.concatenate(parts["intent"])
    column = lambda name: np.concatenate([train_data.columns[name], test_data.columns[name]])  # noqa: E731
    users, categories, shops = column("user_id"), column("category"), column("shop")
    for label, keys in (("user", users), ("category", categories), ("(user, category)", users * data.n_categories + categories),
                        ("(user, shop)", users * data.n_shops + shops)):
        decomposition.notes.append(f"share of the intent part's variance explained by a function of {label} "
                                   f"(omega^2, all rows): {explained_share(keys, rows_intent):.3f}")
    decomposition.notes.append("base = b + r_u + q_i; taste = alpha <a_u, w_i>; price = -gamma sigmoid((p_i - beta_u)/tau);"
                               " intent = alpha_c z_cat + alpha_s z_shop (the day's intent, which the privileged counts"
                               " reveal); eta_without_intent is a function of (user, item) alone")
    tables.append(decomposition)

    fits = Table(f"(c) students fitted to a target's logits alone (lambda 1, {scale.fit_epochs} epochs), test AUC",
                 ("target", "target's test AUC", "student", "student AUC", "gain over the 1-epoch hard-label student",
                  "95% CI", "p", "share of the target's lift", "R^2 to the target (test)"))
    seeds = range(scale.seeds)
    hard = {(kind, epochs): [runner.run(data, runner.config(data, kind, epochs=epochs), "baseline", s) for s in seeds]
            for kind in ("two_tower", "mlp") for epochs in (1, scale.fit_epochs)}
    targets = {}  # name: (train logits per seed, test logits per seed)
    teacher_config = runner.config(data, "two_tower", mode="two-stage", lambda_=1.0, warmup_steps=0)
    for method in ("pfd+md", "md"):  # the strong teachers with and without the privileged features, 1 epoch alone
        results = [train(train_data, method, replace(teacher_config, seed=s)) for s in seeds]
        targets[f"{method} teacher"] = ([predict(r.teacher, r.params, train_data) for r in results],
                                        [predict(r.teacher, r.params, test_data) for r in results])
    teacher_train, teacher_test = targets["pfd+md teacher"]
    for name in ("eta", "eta_without_intent"):
        targets[name] = ([parts[name][0].astype(np.float32)] * len(seeds), [parts[name][1]] * len(seeds))
    for name, (train_logits, test_logits) in targets.items():
        target_auc = np.array([auc(test_data.labels, t) for t in test_logits])
        for kind in ("two_tower", "mlp"):
            config = runner.config(data, kind, mode="two-stage", lambda_=1.0, warmup_steps=0, epochs=scale.fit_epochs)
            records = [runner.run(data, config, "pfd", s, teacher_logits=train_logits[s], target=name,
                                  target_test_logits=test_logits[s]) for s in seeds]
            values, base = _values(records), _values(hard[kind, 1])
            fits.rows.append([name, _mean_sd(target_auc), kind.replace("_", "-"), _mean_sd(values),
                              *_gain_cells(values, base), _ratio((values - base).mean(), (target_auc - base).mean()),
                              f"{_values(records, 'r2_target').mean():.3f}"])
    for (kind, epochs), records in hard.items():
        fits.rows.append([f"hard labels, {epochs} epoch{'s' if epochs > 1 else ''}", "", kind.replace("_", "-"),
                          _mean_sd(_values(records)), "", "", "", "", ""])
    fits.notes += [f"each target row: students of the two kinds fitted to the target's logits alone (hard-label weight 0) "
                   f"for {scale.fit_epochs} epochs; gain and share are against the hard-label student of the same kind "
                   "trained 1 epoch (the preset's)",
                   "share of the target's lift: gain / (target's test AUC - that student's AUC); "
                   "R^2: 1 - mean (student logit - target logit)^2 / var(target logit) on the test rows"]
    tables.append(fits)

    soft = Table("(c) the soft labels against the hard label: distance to the true click probability",
                 ("label", "mean (label - sigmoid(eta))^2, training rows", "same, test rows", "AUC, training rows",
                  "AUC, test rows"))
    truth = [1 / (1 + np.exp(-eta)) for eta in parts["eta"]]
    labels = (train_data.labels, test_data.labels)
    candidates = {"hard label y": [labels], "pfd+md teacher (in-sample on training rows)": list(zip(teacher_train, teacher_test)),
                  "eta_without_intent": [parts["eta_without_intent"]]}
    for name, per_seed in candidates.items():
        cells = []
        for split in (0, 1):
            probabilities = [c[split] if name == "hard label y" else 1 / (1 + np.exp(-c[split].astype(np.float64)))
                             for c in per_seed]
            cells.append(f"{np.mean([np.mean((q - truth[split]) ** 2) for q in probabilities]):.4f}")
        for split in (0, 1):
            cells.append("" if name == "hard label y" else
                         f"{np.mean([auc(labels[split], c[split]) for c in per_seed]):.4f}")
        soft.rows.append([name, *cells])
    soft.notes.append("mean over seeds for the teacher; a label's squared distance to the truth is the noise a student "
                      "fitted to it must average away (the hard label's is the Bernoulli variance)")
    tables.append(soft)
    return tables


def experiment_size(runner: Runner, factors=None) -> list[Table]:
    """(d) More training days (x k: ``k`` times the default's training days, the same 2 test days)."""
    base = runner.scale.data
    factors = factors or runner.scale.size_factors
    table = Table(f"(d) data size: training days {', '.join(f'x{k}' for k in factors)} (1 epoch)",
                  ("rows", "method") + METHOD_COLUMNS, notes=METHOD_NOTES[:])
    train_days = base.n_days - base.test_days
    for k in factors:
        data = replace(base, n_days=k * train_days + base.test_days)
        rows = method_rows([f"x{k} ({runner.data(data)[0].n:,})"], runner.methods(data, runner.config(data)))
        table.rows += rows
    return [table]


def experiment_history(runner: Runner) -> list[Table]:
    """The regular history reflecting the day's intent (as the paper's behaviour sequence holds the
    same clicks its interacted features count) or not (our default)."""
    table = Table("history: a share h of the recent categories drawn from the day's intent (default h = 0)",
                  ("h", "method") + METHOD_COLUMNS, notes=METHOD_NOTES[:])
    for share in runner.scale.history_shares:
        data = replace(runner.scale.data, history_intent_share=share)
        table.rows += method_rows([f"{share:g}"], runner.methods(data, runner.config(data)))
    return [table]


def experiment_recipe(runner: Runner) -> list[Table]:
    """One part of the paper preset changed at a time."""
    data = runner.scale.data
    settings = {"paper preset": {}, "share none": {"share": "none"}, "distillation warm-up 0": {"warmup_steps": 0},
                "adam lr 0.005, no lr warm-up": {"optimizer": "adam", "lr_warmup_steps": 0}}
    table = Table("recipe: the paper preset with one part changed", ("setting", "method") + METHOD_COLUMNS,
                  notes=METHOD_NOTES[:])
    for label, options in settings.items():
        table.rows += method_rows([label], runner.methods(data, runner.config(data, **options)))
    return [table]


def run(names, scale: Scale, cache: str | None = None, log=None, methods=METHODS, **choices) -> list[Table]:
    """The tables of the experiments ``names`` (in the order of ``EXPERIMENTS``); ``methods``: those
    of the gap, epochs, size, history and recipe tables (the baseline always among them)."""
    runner = Runner(scale, cache, log, methods)
    functions = {"gap": experiment_gap, "epochs": experiment_epochs, "capacity": experiment_capacity,
                 "inner": experiment_inner, "size": experiment_size, "history": experiment_history,
                 "recipe": experiment_recipe}
    arguments = {"epochs": {"epochs": choices.get("epochs")}, "capacity": {"widths": choices.get("widths")},
                 "size": {"factors": choices.get("factors")}}
    tables = []
    for name in EXPERIMENTS:
        if name in names:
            (log or (lambda text: None))(f"== {name}")
            tables += functions[name](runner, **arguments.get(name, {}))
    return tables


def _int_list(text: str) -> tuple:
    return tuple(int(v) for v in text.split(","))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(EXPERIMENTS), help=f"comma list of {', '.join(EXPERIMENTS)}")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0 .. N-1 (default 5; --tiny 2)")
    parser.add_argument("--epochs", type=_int_list, default=None, help="epochs: comma list (default 1,2,4,8)")
    parser.add_argument("--widths", default=None, help="capacity: widths separated by '/', e.g. 64-32/256-128-64")
    parser.add_argument("--factors", type=_int_list, default=None, help="size: comma list of multipliers (1,2,4,8)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="gap, epochs, size, history, recipe: comma list of methods (baseline first)")
    parser.add_argument("--cache", default=None, help="JSON file of finished trainings (read, and written after each)")
    parser.add_argument("--tiny", action="store_true", help="tiny data and models: the tables' structure in seconds")
    args = parser.parse_args(argv)
    names = tuple(args.only.split(","))
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"--only: unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    if args.cache and not os.path.isdir(os.path.dirname(os.path.abspath(args.cache))):
        parser.error(f"--cache: the directory of {args.cache} does not exist")
    methods = tuple(args.methods.split(","))
    if methods[0] != "baseline" or any(m not in METHODS for m in methods):
        parser.error(f"--methods: baseline first, then any of {', '.join(METHODS[1:])}; got {args.methods}")
    scale = TINY if args.tiny else FULL
    if args.seeds is not None:
        scale = replace(scale, seeds=args.seeds)
    widths = None if args.widths is None else tuple(tuple(int(v) for v in w.split("-")) for w in args.widths.split("/"))
    start = time.process_time()
    tables = run(names, scale, args.cache, log=lambda text: print(text, file=sys.stderr, flush=True), methods=methods,
                 epochs=args.epochs, widths=widths, factors=args.factors)
    for table in tables:
        print(table.markdown() + "\n", flush=True)
    print(f"cpu {time.process_time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()

"""pfd_ref.experiment: method lists, teacher rows, the per-seed records and their summary."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats
from tiny import tiny_dataset

from pfd_ref.distill import DistillConfig
from pfd_ref.experiment import TEACHER_OF, format_table, parse_methods, run_methods, summarize
from pfd_ref.metrics import evaluate
from pfd_ref.distill import ModelSizes
from pfd_ref.train import TrainConfig, predict, train, with_seed

SMALL = TrainConfig(batch_size=32, distill=DistillConfig(lambda_=0.5, warmup_steps=1),
                    sizes=ModelSizes(embed_dim=4, student_hidden=(6,), tower_out_dim=3, strong_hidden=(8, 5)))


@pytest.mark.parametrize("methods, match", [((), "at least one"), (("baseline", "nope"), "nope"),
                                            (("baseline", "teacher"), "pfd\\+md"),
                                            (("pfd", "md_teacher"), "'md'")])
def test_parse_methods_rejects_unknown_names_and_orphan_teacher_rows(methods, match):
    with pytest.raises(ValueError, match=match):
        parse_methods(methods)


def test_teacher_rows_report_each_methods_own_teacher():
    rng = np.random.default_rng(0)
    train_data, test_data = tiny_dataset(rng, 96), tiny_dataset(rng, 64)
    records = run_methods("t", train_data, test_data, ("baseline", "md", "md_teacher", "pfd_teacher", "pfd"), [3], SMALL)
    assert [r["method"] for r in records] == ["baseline", "md", "md_teacher", "pfd", "pfd_teacher"]
    for row in ("md_teacher", "pfd_teacher"):
        result = train(train_data, TEACHER_OF[row], with_seed(SMALL, 3))
        expected = evaluate(test_data.labels, predict(result.teacher, result.params, test_data), test_data.user_ids)
        record = next(r for r in records if r["method"] == row)
        assert record["auc"] == expected["auc"] and record["logloss"] == expected["logloss"]
        assert record["seed"] == 3 and record["task"] == "t"


def test_cross_fitted_teachers_have_no_teacher_row():
    rng = np.random.default_rng(1)
    config = replace(SMALL, mode="two-stage", teacher_folds=2)
    records = run_methods("t", tiny_dataset(rng, 96), tiny_dataset(rng, 64), ("pfd", "pfd_teacher"), [0], config)
    assert [r["method"] for r in records] == ["pfd"]


def _record(method, seed, auc):
    return {"task": "t", "method": method, "seed": seed, "auc": auc, "gauc": auc / 2, "logloss": 1 - auc,
            "train_seconds": 1.0 + seed}


def test_summary_gives_mean_std_and_a_paired_gain_over_the_baseline():
    base, other = [0.70, 0.72, 0.71], [0.72, 0.73, 0.75]
    records = [_record("teacher", s, 0.9) for s in range(3)]  # listed first, shown last
    records += [_record("baseline", s, a) for s, a in enumerate(base)] + [_record("pfd", s, a) for s, a in enumerate(other)]
    rows = {r["method"]: r for r in summarize(records)}
    assert list(rows) == ["baseline", "pfd", "teacher"]
    diff = np.array(other) - np.array(base)
    assert rows["pfd"]["auc"] == pytest.approx(np.mean(other), abs=1e-15)
    assert rows["pfd"]["auc_std"] == pytest.approx(np.std(other, ddof=1), rel=1e-12)
    assert rows["pfd"]["auc_gain"] == pytest.approx(diff.mean(), rel=1e-12)
    assert rows["pfd"]["auc_gain_std"] == pytest.approx(diff.std(ddof=1), rel=1e-12)
    assert rows["pfd"]["auc_gain_p"] == pytest.approx(stats.ttest_rel(other, base).pvalue, rel=1e-10)
    assert np.isnan(rows["baseline"]["auc_gain"])
    half_width = stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)  # the t-interval, by hand
    assert rows["pfd"]["auc_gain_ci_low"] == pytest.approx(diff.mean() - half_width, rel=1e-10)
    assert rows["pfd"]["auc_gain_ci_high"] == pytest.approx(diff.mean() + half_width, rel=1e-10)
    table = format_table(list(rows.values()))
    pfd_line = next(line for line in table.splitlines() if line.startswith("pfd "))
    assert f"{diff.mean():+.4f} ± {diff.std(ddof=1):.4f}" in pfd_line
    assert f"[{diff.mean() - half_width:+.4f}, {diff.mean() + half_width:+.4f}]" in pfd_line
    assert "teacher (not servable)" in table and "95% CI" in table.splitlines()[0]
    assert "weighted by the user's impressions" in table  # the table names its GAUC weighting


def test_summary_compares_pfd_md_with_its_equal_capacity_control():
    md, pfd_md = [0.70, 0.74, 0.72], [0.71, 0.76, 0.72]
    records = [_record("baseline", s, 0.7) for s in range(3)] + [_record("md", s, a) for s, a in enumerate(md)]
    records += [_record("pfd+md", s, a) for s, a in enumerate(pfd_md)]
    rows = {r["method"]: r for r in summarize(records)}
    diff = np.array(pfd_md) - np.array(md)
    assert rows["pfd+md"]["auc_vs_control"] == pytest.approx(diff.mean(), rel=1e-12)
    assert rows["pfd+md"]["auc_vs_control_p"] == pytest.approx(stats.ttest_rel(pfd_md, md).pvalue, rel=1e-10)
    assert np.isnan(rows["md"]["auc_vs_control"]) and np.isnan(rows["baseline"]["auc_vs_control"])
    table = format_table(list(rows.values()))
    pfd_md_line = next(line for line in table.splitlines() if line.startswith("pfd+md"))
    assert f"{diff.mean():+.4f} ± {diff.std(ddof=1):.4f}" in pfd_md_line
    assert "pfd+md vs md" in table.splitlines()[-1]


def test_summary_without_a_shared_baseline_seed_reports_no_gain():
    rows = {r["method"]: r for r in summarize([_record("baseline", 0, 0.7), _record("pfd", 1, 0.8)])}
    assert np.isnan(rows["pfd"]["auc_gain"]) and np.isnan(rows["pfd"]["auc_std"])
    assert np.isnan(rows["pfd"]["auc_vs_control"])


def _options(**changes):
    from pfd_ref.experiment import RUN_OPTION_DEFAULTS, TEACHER_SCORES_DEFAULTS
    options = dict(RUN_OPTION_DEFAULTS, data=None, path=None, label=None, user_features=None, rows=None,
                   outside_window=None, test_days=None, methods=None, teacher_scores=None, **TEACHER_SCORES_DEFAULTS)
    options.update(changes)
    return options


def test_each_data_source_fills_in_its_own_defaults():
    from pfd_ref.experiment import SOURCE_DEFAULTS, resolve_options, run_options
    synthetic = resolve_options(_options())
    assert (synthetic["epochs"], synthetic["batch_size"]) == (1, 1024) and synthetic["warmup_steps"] is None
    saved = resolve_options(_options(data="mine.npz", epochs=3))
    assert (saved["epochs"], saved["test_days"]) == (3, SOURCE_DEFAULTS["saved"]["test_days"])
    kuairand = resolve_options(_options(data="kuairand", path="log.csv"))
    assert kuairand["label"] == "label" and kuairand["outside_window"] is None
    simple = run_options(resolve_options(_options(data="kuairand", path="log.csv", preset="simple")), "mlp", 33_000,
                         "kuairand")
    assert simple["warmup_steps"] == SOURCE_DEFAULTS["kuairand"]["warmup_steps"]
    taobao = resolve_options(_options(data="taobao", path="UserBehavior.csv", epochs=2))
    assert (taobao["outside_window"], taobao["label"], taobao["test_days"]) == ("error", None, 1)
    assert (taobao["epochs"], taobao["batch_size"], taobao["warmup_steps"]) == (2, None, None)  # scaled to the data


def test_the_methods_default_to_those_the_student_and_data_take_or_to_those_of_teacher_scores():
    from pfd_ref.experiment import REPORTED_METHODS, TEACHER_SCORES_METHODS, methods_for, resolve_options
    from pfd_ref.schema import Schema
    assert resolve_options(_options())["methods"] is None  # decided per run
    schema, sizes = tiny_dataset(np.random.default_rng(0), 4).schema, SMALL.sizes
    assert methods_for(schema, "mlp", sizes) == REPORTED_METHODS
    assert methods_for(schema, "two_tower", sizes) == tuple(m for m in REPORTED_METHODS if m != "mtl")
    regular_only = Schema(schema.regular())
    assert "lupi" not in methods_for(regular_only, "mlp", sizes) and "lupi_teacher" not in methods_for(regular_only, "mlp", sizes)
    with pytest.raises(ValueError, match="^--methods: 'mtl' is defined for mlp students only"):
        methods_for(schema, "two_tower", sizes, ("baseline", "mtl"))
    with pytest.raises(ValueError, match="^--methods: 'lupi'.s teacher reads the privileged fields, and the data has none"):
        methods_for(regular_only, "mlp", sizes, ("lupi",))
    given = resolve_options(_options(data="mine.npz", mode="two-stage", teacher_scores="scores.npy"))
    assert given["methods"] == TEACHER_SCORES_METHODS


def test_the_paper_preset_follows_the_paper_and_scales_its_step_counts():
    from pfd_ref.experiment import PAPER_WARMUP_FRACTION, preset_config, scaled_warmup_steps
    assert PAPER_WARMUP_FRACTION == pytest.approx(0.0939, abs=1e-4)
    assert scaled_warmup_steps(432_535, 1024) == round(0.09394 * 423) == 40 and scaled_warmup_steps(10, 1024) == 1
    ctr = preset_config("two_tower", 432_535)
    assert (ctr.optimizer, ctr.lr_warmup_steps, ctr.distill.warmup_steps, ctr.sharing) == ("adagrad", 40, 40, "all-but-user-id")
    assert (ctr.sizes.activation, ctr.sizes.batch_norm, ctr.sizes.tower_norm, ctr.sizes.tower_scale) == (
        "leaky_relu", True, "l2", 5.0)
    assert (ctr.distill.lambda_, ctr.distill.temperature, ctr.epochs, ctr.batch_size) == (0.5, 1.0, 1, 1024)
    cvr = preset_config("mlp", 214_500)
    assert (cvr.sharing, cvr.sizes.tower_norm, cvr.distill.warmup_steps) == ("all", "none", 20)
    assert preset_config("mlp", 214_500, mode="two-stage").sharing == "none"
    simple = preset_config("two_tower", 432_535, preset="simple")
    assert (simple.optimizer, simple.lr, simple.sharing, simple.distill.warmup_steps, simple.lr_warmup_steps) == (
        "adam", 0.005, "none", 100, 0)
    assert (simple.sizes.activation, simple.sizes.batch_norm, simple.sizes.tower_norm) == ("relu", False, "none")
    changed = preset_config("mlp", 214_500, share="none", optimizer="adam", lambda_=0.3)
    assert (changed.sharing, changed.optimizer, changed.lr, changed.distill.lambda_) == ("none", "adam", 0.005, 0.3)
    with pytest.raises(ValueError, match="^options: unknown run option"):
        preset_config("mlp", 100, shared_embeddings=True)


def test_the_run_options_of_the_command_are_those_preset_config_takes():
    """pfd-ref run's parser and RUN_OPTION_DEFAULTS agree: the same configuration from both."""
    from pfd_ref.cli import build_parser
    from pfd_ref.experiment import RUN_OPTION_DEFAULTS
    args = vars(build_parser().parse_args(["run"]))
    assert {name: args[name] for name in RUN_OPTION_DEFAULTS} == RUN_OPTION_DEFAULTS


@pytest.mark.parametrize("changes, message", [
    (dict(share="all", mode="two-stage"), "^--share: 'all' needs --mode sync"),
    (dict(preset="tf"), "^preset: expected one of"),
])
def test_sharing_with_two_stage_and_an_unknown_preset_are_refused(changes, message):
    from pfd_ref.experiment import resolve_options
    with pytest.raises(ValueError, match=message):
        resolve_options(_options(**changes))


@pytest.mark.parametrize("changes, message", [
    (dict(data="kuairand"), "^--path: required with --data kuairand"),
    (dict(data="taobao"), "^--path: required with --data taobao"),
    (dict(label="is_like"), "^--label: only with --data kuairand"),
    (dict(data="mine.npz", user_features="users.csv"), "^--user-features: only with --data kuairand"),
    (dict(data="taobao", path="UserBehavior.csv", label="is_like"), "^--label: only with --data kuairand"),
    (dict(data="kuairand", path="log.csv", rows=10), "^--rows: only with --data taobao"),
    (dict(data="taobao", path="UserBehavior.csv", rows=0), r"^--rows: expected an integer >= 1, got 0"),
    (dict(outside_window="drop"), "^--outside-window: only with --data taobao"),
    (dict(data="mine.npz", path="log.csv"), "^--path: only with --data kuairand or taobao"),
])
def test_source_options_belong_to_their_sources(changes, message):
    from pfd_ref.experiment import resolve_options
    with pytest.raises(ValueError, match=message):
        resolve_options(_options(**changes))


@pytest.mark.parametrize("rows, expected", [(1_000_000, (1024, 92)), (50_000, (256, 18)), (1_000, (32, 3))])
def test_scaled_run_defaults_scale_with_the_training_rows(rows, expected):
    from pfd_ref.experiment import PAPER_WARMUP_FRACTION, scaled_run_defaults
    chosen, text = scaled_run_defaults(rows)
    assert (chosen["batch_size"], chosen["warmup_steps"]) == expected and chosen["epochs"] == 1
    assert chosen["warmup_steps"] == round(PAPER_WARMUP_FRACTION * -(-rows // chosen["batch_size"]))
    given, text = scaled_run_defaults(rows, epochs=2, batch_size=100, warmup_steps=7)
    assert given == {"epochs": 2, "batch_size": 100, "warmup_steps": 7} and text.count("(given)") == 3


# --------------------------------------------------------------------------- defaults fitted to the data


def _resolved(source: str, **given) -> dict:
    """Run options as resolve_options leaves them, ``given`` set by the user, the rest the source's defaults."""
    from pfd_ref.experiment import SOURCE_DEFAULTS
    defaults = {key: value for key, value in SOURCE_DEFAULTS[source].items() if value is not None and key not in given}
    return {"epochs": 1, "batch_norm": False, **SOURCE_DEFAULTS[source], **given, "source_defaults": list(defaults)}


@pytest.mark.parametrize("source, n_train, n_days", [("synthetic", 432_535, 14), ("synthetic", 214_500, 14),
                                                    ("kuairand", 33_485, 14), ("saved", 300_000, 3)])
def test_the_defaults_of_the_documented_runs_are_left_as_they_are(source, n_train, n_days):
    """The synthetic tasks (CTR, CVR) and KuaiRand's extract (docs/results.md): nothing is fitted,
    so the published numbers keep their configuration."""
    from pfd_ref.experiment import fitted_defaults, fitted_test_days
    options = _resolved(source)
    assert fitted_defaults(options, n_train) == {}
    if options["test_days"] is not None:
        assert fitted_test_days(options, n_days) == options["test_days"]


@pytest.mark.parametrize("n_train, expected", [(1_500, {"batch_size": 75}), (241, {"batch_size": 12}),
                                              (25, {"batch_size": 1}), (12, {"batch_size": 1, "warmup_steps": 6}),
                                              (1, {"batch_size": 1, "warmup_steps": 0})])
def test_small_kuairand_data_gets_at_least_20_steps_and_lambda_over_half_of_them(n_train, expected):
    _check_fitted("kuairand", n_train, expected)


@pytest.mark.parametrize("n_train, expected", [(150_000, {"warmup_steps": 73}), (20_000, {"warmup_steps": 10}),
                                              (19_000, {"batch_size": 950, "warmup_steps": 10})])
def test_a_saved_dataset_below_200_steps_gets_a_shorter_warm_up(n_train, expected):
    """The saved-data default warm-up of 100 steps would hold lambda at 0 for over half of a
    training of fewer than 200 steps (it was refused only from 100 steps down)."""
    _check_fitted("saved", n_train, expected)


def _check_fitted(source: str, n_train: int, expected: dict) -> None:
    from pfd_ref.experiment import SOURCE_DEFAULTS, fitted_defaults
    from pfd_ref.train import check_schedule, steps
    fitted = fitted_defaults(_resolved(source), n_train)
    assert fitted == expected
    batch = fitted.get("batch_size", SOURCE_DEFAULTS[source]["batch_size"])
    warmup = fitted.get("warmup_steps", SOURCE_DEFAULTS[source]["warmup_steps"])
    assert steps(n_train, batch, 1) >= min(20, n_train) and warmup <= steps(n_train, batch, 1) // 2
    check_schedule(DistillConfig(lambda_=0.5, warmup_steps=warmup), steps(n_train, batch, 1))


def test_options_the_user_gave_are_not_fitted():
    from pfd_ref.experiment import fitted_defaults, fitted_test_days
    assert fitted_defaults(_resolved("kuairand", batch_size=1024), 1_500) == {"warmup_steps": 1}
    assert fitted_defaults(_resolved("kuairand", batch_size=1024, warmup_steps=10), 1_500) == {}
    assert fitted_test_days(_resolved("kuairand", test_days=4), 4) == 4  # and the split then says what is wrong
    assert fitted_test_days(_resolved("kuairand"), 4) == 1 and fitted_test_days(_resolved("kuairand"), 9) == 3


def test_a_fitted_batch_size_never_leaves_a_batch_of_one_row_with_batch_norm():
    from pfd_ref.experiment import fitted_defaults
    plain = fitted_defaults(_resolved("saved"), 401)["batch_size"]
    assert plain == 20 and 401 % plain == 1  # the case batch normalisation refuses
    with_norm = fitted_defaults(_resolved("saved", batch_norm=True), 401)["batch_size"]
    assert with_norm == 21 and 401 % with_norm != 1


@pytest.mark.parametrize("n_train", [2, 3, 30, 39])
def test_a_fitted_batch_size_has_two_rows_with_batch_norm(n_train):
    """Below 40 rows ``n // 20`` is 1, which batch normalisation refuses: the run would have
    failed naming --batch-size, an option the user never gave."""
    from pfd_ref.experiment import fitted_defaults, preset_config
    batch = fitted_defaults(_resolved("saved", batch_norm=True), n_train)["batch_size"]
    assert batch >= 2 and n_train % batch != 1
    assert preset_config("mlp", n_train).batch_size == batch


# --------------------------------------------------------------------------- records read back


@pytest.mark.parametrize("content, message", [
    ("[]", r"does not hold a list of records .*: the list is empty"),
    ('[{"task": "t", "method": "baseline", "seed": 0, "auc": NaN, "gauc": 0.5, "logloss": 0.6, "train_seconds": 1}]',
     r"record 0: auc: expected a finite number, got nan"),
    ('[{"task": "t", "method": "baseline", "seed": 0, "auc": 0.7, "gauc": 0.5, "logloss": Infinity, "train_seconds": 1}]',
     r"record 0: logloss: expected a finite number, got inf"),
    ('[{"task": "t", "method": "baseline", "seed": 1.5, "auc": 0.7, "gauc": 0.5, "logloss": 0.6, "train_seconds": 1}]',
     r"record 0: seed: expected an integer >= 0, got 1.5"),
    ('[{"task": "t", "method": "baseline", "seed": 0, "auc": "0.7", "gauc": 0.5, "logloss": 0.6, "train_seconds": 1}]',
     r"record 0: auc: expected a finite number, got '0.7'"),
    ('[{"task": 3, "method": "baseline", "seed": 0, "auc": 0.7, "gauc": 0.5, "logloss": 0.6, "train_seconds": 1}]',
     r"record 0: task must be a string, got 3"),
    ('[{"task": "t", "method": "magic", "seed": 0, "auc": 0.7, "gauc": 0.5, "logloss": 0.6, "train_seconds": 1}]',
     r"record 0: unknown method 'magic'"),
    ("[7]", r"record 0: expected a record \(a JSON object\), got int"),
])
def test_load_records_refuses_what_a_table_cannot_show(tmp_path, content, message):
    from pfd_ref.experiment import load_records
    path = tmp_path / "run.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"^records: {path}.*{message}"):
        load_records([path])


def test_run_settings_gives_each_labelled_configuration_its_records():
    from pfd_ref.experiment import preset_config, run_settings
    rng = np.random.default_rng(2)
    train_data, test_data = tiny_dataset(rng, 96), tiny_dataset(rng, 64)
    sizes = ModelSizes(embed_dim=3, student_hidden=(4,), tower_out_dim=3, strong_hidden=(5,))
    settings = {f"lambda {lam}": replace(preset_config("mlp", train_data.n, lambda_=lam, batch_size=32, warmup_steps=1,
                                                       share="none"), sizes=sizes) for lam in (0.0, 0.5)}
    results = run_settings("t", train_data, test_data, settings, ("baseline", "pfd"), [0, 1])
    assert list(results) == ["lambda 0.0", "lambda 0.5"]

    def metrics(records):
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in records]

    for label, config in settings.items():
        assert metrics(results[label]) == metrics(run_methods("t", train_data, test_data, ("baseline", "pfd"), [0, 1],
                                                              config))
    by_label = {label: {r["method"]: r["auc"] for r in records if r["seed"] == 0} for label, records in results.items()}
    assert by_label["lambda 0.0"]["pfd"] == by_label["lambda 0.0"]["baseline"]  # lambda 0, no sharing: the baseline
    assert by_label["lambda 0.5"]["pfd"] != by_label["lambda 0.5"]["baseline"]


@pytest.mark.parametrize("data", ["taobao", "saved"])
def test_preset_config_is_the_configuration_the_command_trains(data, tmp_path):
    """``preset_config`` scales and fits the defaults to the rows as ``pfd-ref run`` does: the
    Taobao source leaves epochs, batch size and warm-up to the data (``preset_config`` raised a
    TypeError there), and a small saved dataset gets the fitted batch size and warm-up."""
    from pathlib import Path

    from pfd_ref.cli import build_parser
    from pfd_ref.experiment import prepare_runs, preset_config, resolve_options
    if data == "taobao":
        argv = ["run", "--data", "taobao", "--path", str(Path(__file__).parent / "data" / "userbehavior_generated.csv")]
    else:
        path = tmp_path / "small.npz"
        tiny_dataset(np.random.default_rng(0), 900).save(path)
        argv = ["run", "--data", str(path)]
    runs = prepare_runs(resolve_options(vars(build_parser().parse_args(argv))))
    source = {"taobao": "taobao", "saved": "saved"}[data]
    for run in runs:
        assert run.config == preset_config(run.config.student_kind, run.train.n, source=source), run.task
    assert any(run.config.batch_size != 1024 for run in runs)


def test_a_batch_size_below_one_is_refused_where_the_warm_up_divides_by_it():
    """``preset_config(..., batch_size=0)`` raised a ZeroDivisionError in ``scaled_warmup_steps``
    (only ``pfd-ref run`` checked it, through ``RUN_OPTION_BOUNDS``)."""
    from pfd_ref.experiment import preset_config, scaled_warmup_steps
    for call in (lambda: preset_config("mlp", 1000, batch_size=0), lambda: scaled_warmup_steps(1000, 0)):
        with pytest.raises(ValueError, match="^batch_size: expected an integer >= 1, got 0"):
            call()

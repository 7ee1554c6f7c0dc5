"""pfd_ref.distill, the PFD rule: which teacher each method has, which gradient reaches which
parameter (stop-gradient, shared tables), the lambda schedule, the initial parameters."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref.distill import (METHOD_RULES, METHODS, SHARING, DistillConfig, ModelSizes, build_models,
                             check_schedule, init_params, lambda_at, step_gradients, student_objective)
from gradcheck import numerical_gradient, relative_error
from pfd_ref.losses import hard_loss, soft_loss
from pfd_ref.models import MLPRanker
from pfd_ref.schema import FeatureSpec, Schema
from pfd_ref.sparse import to_dense
from tiny import tiny_dataset, tiny_schema

SMALL = ModelSizes(embed_dim=3, student_hidden=(4,), tower_out_dim=3, strong_hidden=(6, 5))
KINDS = ("mlp", "two_tower")


def names(fields) -> list[str]:
    return [f.name for f in fields]


# --------------------------------------------------------------------------- which teacher


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_each_method_builds_the_documented_teacher(kind, method):
    schema = tiny_schema()
    regular, privileged = names(schema.regular()), names(schema.privileged())
    if method == "mtl" and kind == "two_tower":
        with pytest.raises(ValueError, match="^method: 'mtl' is defined for mlp students only"):
            build_models(schema, method, kind, SMALL)
        return
    student, teacher = build_models(schema, method, kind, SMALL)
    assert student.prefix == "student" and sorted(student.feature_names) == sorted(regular)
    if method in ("baseline", "mtl"):
        assert teacher is None and METHOD_RULES[method].teacher_row is None
        return
    assert teacher.prefix == "teacher"
    expected_fields = {"md": regular, "lupi": privileged}.get(method, regular + privileged)
    assert sorted(teacher.feature_names) == sorted(expected_fields)
    if method == "pfd":  # the student's architecture, with the privileged fields in the user tower
        assert type(teacher) is type(student)
        if kind == "two_tower":
            assert names(teacher.item_fields) == names(student.item_fields)
            assert names(teacher.user_fields) == names(student.user_fields) + privileged
        else:
            assert teacher.hidden == student.hidden
    elif method == "lupi":  # an MLP of the student's widths (a two-tower student's: a tower's) over the privileged fields
        widths = SMALL.student_hidden + ((SMALL.tower_out_dim,) if kind == "two_tower" else ())
        assert isinstance(teacher, MLPRanker) and teacher.hidden == widths
    else:  # md, pfd+md: the stronger MLP
        assert isinstance(teacher, MLPRanker) and teacher.hidden == SMALL.strong_hidden
    assert METHOD_RULES[method].teacher_row is not None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["md", "pfd", "pfd+md"])
@pytest.mark.parametrize("sharing", ["all", "all-but-user-id"])
def test_sharing_shares_exactly_the_regular_tables_it_names(kind, method, sharing):
    schema = tiny_schema()
    student, teacher = build_models(schema, method, kind, SMALL, sharing=sharing)
    s_names, t_names = set(student.param_names()), set(teacher.param_names())
    shared = s_names & t_names
    kept_apart = {"user_id"} if sharing == "all-but-user-id" else set()
    assert shared == {f"shared.embed.{f.name}" for f in schema.regular() if f.kind != "dense" and f.name not in kept_apart}
    assert ("student.embed.user_id" in s_names and "teacher.embed.user_id" in t_names) == bool(kept_apart)
    assert ("teacher.embed.chatted" in t_names) == (method != "md")  # privileged tables are never shared
    assert not any(n.startswith("teacher.") for n in s_names) and not any(n.startswith("student.") for n in t_names)
    _, separate = build_models(schema, method, kind, SMALL, sharing="none")
    assert not set(separate.param_names()) & set(build_models(schema, method, kind, SMALL)[0].param_names())
    assert set(SHARING) == {"none", "all", "all-but-user-id"}


def test_lupi_shares_nothing_and_all_but_user_id_needs_a_user_id_field():
    schema = tiny_schema()
    student, teacher = build_models(schema, "lupi", "mlp", SMALL, sharing="all")
    assert not set(student.param_names()) & set(teacher.param_names())  # its teacher reads no regular field
    renamed = Schema(tuple(replace(f, name="uid") if f.name == "user_id" else f for f in schema))
    with pytest.raises(ValueError, match="^sharing: 'all-but-user-id' keeps the table of the field 'user_id' apart"):
        build_models(renamed, "pfd", "mlp", SMALL, sharing="all-but-user-id")


@pytest.mark.parametrize("method", ["lupi", "mtl"])
def test_lupi_and_mtl_need_privileged_fields(method):
    regular_only = Schema(tiny_schema().regular())
    with pytest.raises(ValueError, match=f"^method: '{method}'"):
        build_models(regular_only, method, "mlp", SMALL)
    build_models(regular_only, "md", "mlp", SMALL)


def test_mtl_needs_a_hidden_layer_and_no_multi_id_privileged_field():
    with pytest.raises(ValueError, match="^student_hidden: method 'mtl' needs a hidden layer"):
        build_models(tiny_schema(), "mtl", "mlp", replace(SMALL, student_hidden=()))
    pooled = Schema(tiny_schema().features + (FeatureSpec("seen", "multi_categorical", "privileged", None, vocab_size=4),))
    with pytest.raises(ValueError, match="^method: 'mtl' has no auxiliary target for the multi-id privileged field 'seen'"):
        build_models(pooled, "mtl", "mlp", SMALL)


def test_unknown_method_kind_or_sharing_is_rejected():
    schema = tiny_schema()
    for args, name in [(("pfd++", "mlp", SMALL), "method"), (("pfd", "forest", SMALL), "student_kind"),
                       (("pfd", "mlp", SMALL, "some"), "sharing")]:
        with pytest.raises(ValueError, match=f"^{name}: expected one of"):
            build_models(schema, *args)


def test_init_params_draws_each_model_from_its_stream_and_shared_tables_from_the_student():
    schema = tiny_schema()
    student, teacher = build_models(schema, "pfd+md", "mlp", SMALL, sharing="all")
    params = init_params(3, np.float32, teacher, student)
    assert list(params) == list(dict.fromkeys(teacher.param_names() + student.param_names()))
    alone_student = student.init_params(np.random.default_rng([3, 1]), np.float32)
    alone_teacher = teacher.init_params(np.random.default_rng([3, 2]), np.float32)
    for name, value in params.items():
        expected = alone_student[name] if name in alone_student else alone_teacher[name]
        np.testing.assert_array_equal(value, expected, err_msg=name)
        assert value.dtype == np.float32
    assert not np.array_equal(alone_student["shared.embed.user_id"], alone_teacher["shared.embed.user_id"])


# --------------------------------------------------------------------------- the lambda schedule


def test_lambda_is_zero_during_the_warm_up_then_fixed():
    config = DistillConfig(lambda_=0.3, warmup_steps=5)
    assert [lambda_at(step, config) for step in range(8)] == [0.0] * 5 + [0.3] * 3


def test_a_warm_up_not_shorter_than_training_is_rejected():
    check_schedule(DistillConfig(lambda_=0.5, warmup_steps=9), 10)
    check_schedule(DistillConfig(lambda_=0.0, warmup_steps=10), 10)  # no soft loss to apply
    with pytest.raises(ValueError, match=r"^warmup_steps: 10 is not shorter than training \(10 steps\)"):
        check_schedule(DistillConfig(lambda_=0.5, warmup_steps=10), 10)


@pytest.mark.parametrize("make, match", [
    (lambda: DistillConfig(lambda_=-0.1), r"^lambda: expected a finite number >= 0"),
    (lambda: DistillConfig(lambda_=1.5), r"^lambda: must be <= 1 when the hard loss is weighted by \(1 - lambda\)"),
    (lambda: DistillConfig(temperature=0.0), r"^temperature: expected a finite number > 0"),
    (lambda: DistillConfig(warmup_steps=-1), r"^warmup_steps: expected an integer >= 0"),
    (lambda: DistillConfig(warmup_steps=2.5), r"^warmup_steps: expected an integer >= 0"),
    (lambda: DistillConfig(hard_weight="half"), r"^hard_weight: expected one of"),
])
def test_bad_settings_raise_naming_the_setting(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_lambda_above_one_is_allowed_with_hard_weight_one():
    assert DistillConfig(lambda_=1.5, hard_weight="one").lambda_ == 1.5


# --------------------------------------------------------------------------- which gradient


def _models_and_params(method, kind="mlp", sharing="none", seed=5):
    schema = tiny_schema()
    student, teacher = build_models(schema, method, kind, SMALL, sharing)
    params = init_params(seed, np.float64, *([teacher] if teacher else []), student)
    return student, teacher, params, tiny_dataset(np.random.default_rng(seed), 30, schema, weights=True)


@settings(max_examples=10, deadline=None)
@given(kind=st.sampled_from(KINDS), method=st.sampled_from(["md", "pfd", "pfd+md"]), lam=st.floats(0.05, 1.0),
       temperature=st.floats(0.3, 4.0), seed=st.integers(0, 1000))
def test_the_soft_loss_sends_no_gradient_into_the_teacher(kind, method, lam, temperature, seed):
    """Stop-gradient: the teacher's gradients are those of its hard loss alone, whatever lambda
    and T; the student's depend on them. This fails if L_soft flows through t."""
    student, teacher, params, batch = _models_and_params(method, kind, seed=seed)
    with_soft = step_gradients(student, teacher, params, batch, 0, DistillConfig(lambda_=lam, temperature=temperature))
    without = step_gradients(student, teacher, params, batch, 0, DistillConfig(lambda_=0.0))
    assert with_soft.lam == lam and without.lam == 0.0
    for name in teacher.param_names():
        np.testing.assert_array_equal(to_dense(with_soft.grads[name]), to_dense(without.grads[name]), err_msg=name)
    assert any(not np.array_equal(to_dense(with_soft.grads[n]), to_dense(without.grads[n])) for n in student.param_names())
    assert with_soft.terms["total"] == with_soft.terms["student_total"] + with_soft.terms["teacher_hard"]


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(KINDS), method=st.sampled_from(["md", "pfd", "pfd+md"]),
       sharing=st.sampled_from(["all", "all-but-user-id"]), lam=st.floats(0.1, 1.0), temperature=st.floats(0.5, 3.0),
       batch_norm=st.booleans(), seed=st.integers(0, 1000))
def test_a_shared_table_gets_the_student_path_of_hard_and_soft_plus_the_teacher_path_of_its_hard_loss(
        kind, method, sharing, lam, temperature, batch_norm, seed):
    """Against finite differences of the two paths, computed on a copy of the models with
    separate tables that hold the shared values: the student path carries ``(1 - lam) L_hard +
    lam L_soft`` with the teacher's logits held fixed, the teacher path ``L_hard(y, t)`` alone.
    ``L_soft`` never flows through the teacher path; the check also confirms that it would
    change the shared gradient if it did, so the test can fail."""
    sizes = replace(SMALL, batch_norm=batch_norm, activation="leaky_relu")
    schema = tiny_schema()
    student, teacher = build_models(schema, method, kind, sizes, sharing)
    params = init_params(seed, np.float64, teacher, student)
    batch = tiny_dataset(np.random.default_rng(seed), 12, schema, weights=True)
    distill = DistillConfig(lambda_=lam, temperature=temperature)
    out = step_gradients(student, teacher, params, batch, 0, distill)
    alone_student, alone_teacher = build_models(schema, method, kind, sizes, "none")
    separate = {}
    for model, alone in ((student, alone_student), (teacher, alone_teacher)):
        for name, alone_name in zip(model.param_names(), alone.param_names()):
            separate[alone_name] = params[name].copy()
    weights = batch.weights

    def teacher_logits():
        return alone_teacher.forward(separate, batch, training=True)[0]

    fixed_t = teacher_logits()

    def student_path():
        s = alone_student.forward(separate, batch, training=True)[0]
        return (1 - lam) * hard_loss(s, batch.labels, weights)[0] + lam * soft_loss(s, fixed_t, temperature, weights)[0]

    def soft_through_the_teacher():
        s_fixed = alone_student.forward(separate, batch, training=True)[0]
        return lam * soft_loss(s_fixed, teacher_logits(), temperature, weights)[0]

    shared_names = [n for n in out.grads if n.startswith("shared.")]
    assert shared_names and all(n.removeprefix("shared.embed.") != "user_id" for n in shared_names) == (
        sharing == "all-but-user-id")
    scale = max(np.abs(to_dense(out.grads[n])).max() for n in shared_names)
    for name in shared_names:
        field = name.removeprefix("shared.embed.")
        s_name, t_name = f"student.embed.{field}", f"teacher.embed.{field}"
        expected = (numerical_gradient(student_path, separate[s_name])
                    + numerical_gradient(lambda: hard_loss(teacher_logits(), batch.labels, weights)[0], separate[t_name]))
        assert relative_error(to_dense(out.grads[name]), expected, scale) < 1e-6, name
    leak = sum(np.abs(numerical_gradient(soft_through_the_teacher, separate[f"teacher.embed.{n[len('shared.embed.'):]}"])).max()
               for n in shared_names)
    assert leak > 1e-4 * scale  # the excluded term is not negligible: a leak would fail above


def test_without_a_teacher_lambda_is_zero_and_the_loss_is_the_hard_loss():
    student, _, params, batch = _models_and_params("baseline")
    out = step_gradients(student, None, params, batch, 10, DistillConfig(lambda_=0.5))
    assert out.lam == 0.0 and out.teacher_logits is None and np.isnan(out.terms["soft"])
    weights = batch.weights.astype(np.float64)
    assert out.terms["total"] == out.terms["student_total"] == hard_loss(out.student_logits, batch.labels, weights)[0]


@pytest.mark.parametrize("hard_weight", ["one_minus_lambda", "one"])
def test_student_objective_is_the_weighted_sum_of_the_two_losses(hard_weight):
    rng = np.random.default_rng(2)
    s, t, y, w = rng.standard_normal(9), rng.standard_normal(9), rng.integers(0, 2, 9), rng.uniform(0.5, 2, 9)
    config = DistillConfig(lambda_=0.3, temperature=2.0, hard_weight=hard_weight)
    terms, d_s = student_objective(s, y, t, 0.3, config, w)
    hard, d_hard = hard_loss(s, y, w)
    soft, d_soft = soft_loss(s, t, 2.0, w)
    a = 0.7 if hard_weight == "one_minus_lambda" else 1.0
    assert terms == {"hard": hard, "soft": soft, "student_total": a * hard + 0.3 * soft}
    np.testing.assert_array_equal(d_s, a * d_hard + 0.3 * d_soft)
    zero_terms, d_zero = student_objective(s, y, t, 0.0, config, w)  # lambda 0: the baseline's gradient, bit for bit
    np.testing.assert_array_equal(d_zero, d_hard)
    with pytest.raises(ValueError, match="^teacher_logits: required"):
        student_objective(s, y, None, 0.3, config, w)


@pytest.mark.parametrize("lam, hard_weight, message", [
    (2, "one_minus_lambda", r"^lam: expected a finite number in \[0, 1\], got 2"),  # would weight L_hard by -1
    (-0.5, "one_minus_lambda", r"^lam: expected a finite number in \[0, 1\], got -0.5"),
    (float("nan"), "one", r"^lam: expected a finite number >= 0, got nan"),
    (True, "one", r"^lam: expected a finite number >= 0, got True"),
])
def test_student_objective_refuses_a_lambda_outside_its_range(lam, hard_weight, message):
    rng = np.random.default_rng(3)
    s, t, y = rng.standard_normal(4), rng.standard_normal(4), np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match=message):
        student_objective(s, y, t, lam, DistillConfig(lambda_=0.5, hard_weight=hard_weight))
    if hard_weight == "one":
        student_objective(s, y, t, 2.0, DistillConfig(lambda_=0.5, hard_weight="one"))  # L_hard + 2 L_soft is fine




"""pfd_ref.multihead: the multi-head student and teacher, the weighted multi-objective loss,
the per-head stop-gradient, the leakage rule (click head), training in both modes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_gradient, relative_error
from pfd_ref.data.objectives import ObjectiveData, ObjectiveSet, evaluable
from pfd_ref.distill import METHOD_RULES, SHARING, TEACHER_FIELDS, DistillConfig, ModelSizes
from pfd_ref.layers import ACTIVATIONS
from pfd_ref.losses import hard_loss, soft_loss
from pfd_ref.models import MultiHeadRanker, build_model
from pfd_ref.multihead import (build_objective_models, distilled_objectives, multi_objective_loss,
                               objective_step_gradients)
from pfd_ref.schema import FeatureSpec, Schema
from pfd_ref.sparse import to_dense
from pfd_ref.train import TrainConfig, predict, train
from tiny import tiny_dataset, tiny_schema

SMALL = ModelSizes(embed_dim=3, student_hidden=(4,), tower_out_dim=3, strong_hidden=(6, 5))
MULTI_METHODS = ("baseline", "md", "lupi", "pfd", "pfd+md")
# the tiny schema's privileged columns: cat_clicks plays the watch time (it gives the click away)
TINY_OBJECTIVES = ObjectiveSet(("click", "like", "comment"), ("all", "played", "played"), (1.0, 2.0, 0.5),
                               (("cat_clicks", "chatted"), (), ("chatted",)))


def tiny_objective_data(rng, n: int, objectives: ObjectiveSet = TINY_OBJECTIVES, weights: bool = False,
                        schema=None) -> ObjectiveData:
    """``n`` rows of the tiny schema with random objectives (each class present in each
    objective's scope when n >= 4) and played rows = clicked ones where there is a click."""
    base = tiny_dataset(rng, n, schema, weights)
    targets = (rng.random((n, len(objectives.names))) < 0.4).astype(np.int8)
    played = np.ones(n, dtype=np.int8)
    played[: n // 3] = 0  # some unplayed rows; the interactions are 0 there
    targets[played == 0, 1:] = 0
    if n >= 4:
        targets[-2:, :] = [[0] * targets.shape[1], [1] * targets.shape[1]]
    return ObjectiveData(base.schema, base.columns, objectives, targets, played, base.user_ids, base.day, base.weights)


def perturbed_params(model_or_models, rng, dtype=np.float64):
    models = model_or_models if isinstance(model_or_models, tuple) else (model_or_models,)
    params = {}
    for model in models:
        if model is not None:
            params.update(model.init_params(rng, dtype))
    for name in params:
        if not name.endswith(("running_var",)):
            params[name] = params[name] + 0.3 * rng.standard_normal(params[name].shape)
    return params


# --------------------------------------------------------------------------- the model


@settings(max_examples=10, deadline=None)
@given(n=st.integers(4, 9), hidden=st.lists(st.integers(1, 4), min_size=0, max_size=2), heads=st.integers(1, 4),
       activation=st.sampled_from(ACTIVATIONS), batch_norm=st.booleans(), seed=st.integers(0, 2**31))
def test_multihead_backward_matches_finite_differences(n, hidden, heads, activation, batch_norm, seed):
    rng = np.random.default_rng(seed)
    schema = tiny_schema()
    model = MultiHeadRanker("m", schema.regular(), [f"o{k}" for k in range(heads)], 3, tuple(hidden),
                            activation=activation, batch_norm=batch_norm)
    params = model.init_params(rng, np.float64)
    for name in params:
        if not name.endswith(("running_var", "running_mean")):
            params[name] += 0.3 * rng.standard_normal(params[name].shape)
    batch = tiny_dataset(rng, n, schema)
    coefficients = rng.standard_normal((n, heads))
    logits, cache = model.forward(params, batch, training=True)
    assert logits.shape == (n, heads)
    grads = model.backward(params, cache, coefficients)
    assert set(grads) == set(params) - set(model.buffer_names)
    scale = max(np.abs(to_dense(g)).max() for g in grads.values())
    for name in grads:
        numeric = numerical_gradient(
            lambda: float(np.sum(coefficients * model.forward(params, batch, training=True)[0])), params[name])
        assert relative_error(to_dense(grads[name]), numeric, scale) < 1e-6, name


def test_each_head_is_one_column_of_the_output_layer():
    rng = np.random.default_rng(0)
    schema = tiny_schema()
    model = MultiHeadRanker("m", schema.regular(), ("a", "b", "c"), 3, (4, 3))
    params = perturbed_params(model, rng)
    batch = tiny_dataset(rng, 6, schema)
    logits, cache = model.forward(params, batch)
    hidden = cache[1].inputs[-1]  # the last hidden layer's output, the heads' input
    for k in range(3):
        np.testing.assert_allclose(logits[:, k], hidden @ params["m.mlp.2.weight"][:, k] + params["m.mlp.2.bias"][k])


def test_multihead_config_round_trip_and_export():
    rng = np.random.default_rng(1)
    schema = tiny_schema()
    model = MultiHeadRanker("m", schema.regular(), ("a", "b"), 3, (4,), batch_norm=True, distilled=("b",))
    rebuilt = build_model(model.config())
    assert isinstance(rebuilt, MultiHeadRanker) and rebuilt.config() == model.config()
    params = perturbed_params(model, rng)
    batch = tiny_dataset(rng, 6, schema)
    served, served_params = model.exported(params)
    np.testing.assert_allclose(served.forward(served_params, batch)[0], model.forward(params, batch)[0], rtol=1e-12)


def test_multihead_backward_names_d_logits_of_the_wrong_shape():
    rng = np.random.default_rng(2)
    model = MultiHeadRanker("m", tiny_schema().regular(), ("a", "b"), 3, (4,))
    params = perturbed_params(model, rng)
    _, cache = model.forward(params, tiny_dataset(rng, 5), training=True)
    with pytest.raises(ValueError, match=r"^d_logits: expected shape \(5, 2\)"):
        model.backward(params, cache, np.zeros(5))


# --------------------------------------------------------------------------- the loss


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 8), heads=st.integers(1, 4), lam=st.sampled_from([0.0, 0.3, 1.0]),
       temperature=st.sampled_from([1.0, 2.5]), hard_weight=st.sampled_from(["one_minus_lambda", "one"]),
       teacher=st.booleans(), seed=st.integers(0, 2**31))
def test_multi_objective_loss_gradient_matches_finite_differences(n, heads, lam, temperature, hard_weight, teacher,
                                                                   seed):
    rng = np.random.default_rng(seed)
    logits = 2 * rng.standard_normal((n, heads))
    labels = (rng.random((n, heads)) < 0.5).astype(np.int8)
    rows = rng.uniform(0, 2, (n, heads)) * (rng.random((n, heads)) < 0.8)
    head_weights = rng.uniform(0, 2, heads)
    teacher_logits = 2 * rng.standard_normal((n, heads)) if teacher else None
    distilled = rng.random(heads) < 0.6
    lam = lam if teacher else 0.0
    config = DistillConfig(lambda_=lam, temperature=temperature, hard_weight=hard_weight)
    names = [f"o{k}" for k in range(heads)]

    def loss():
        return multi_objective_loss(logits, labels, rows, head_weights, teacher_logits, distilled, lam, config, names)[0]

    terms, d_logits = multi_objective_loss(logits, labels, rows, head_weights, teacher_logits, distilled, lam, config,
                                           names)
    numeric = numerical_gradient(lambda: loss()["student_total"], logits)
    assert relative_error(d_logits, numeric, 1e-3) < 1e-7


def test_multi_objective_loss_is_the_documented_weighted_sum():
    """L = sum_k w_k [(1 - lambda_k) H_k + lambda_k S_k], lambda_k = lambda on distilled heads,
    H_k, S_k the one-label losses with row weights r_k (written out here, not through the code's path)."""
    rng = np.random.default_rng(3)
    n, heads, lam = 7, 3, 0.4
    logits, teacher_logits = rng.standard_normal((n, heads)), rng.standard_normal((n, heads))
    labels = (rng.random((n, heads)) < 0.5).astype(np.int8)
    rows = rng.uniform(0, 2, (n, heads))
    w = np.array([1.0, 2.0, 0.5])
    distilled = np.array([False, True, True])
    config = DistillConfig(lambda_=lam, temperature=2.0)
    terms, _ = multi_objective_loss(logits, labels, rows, w, teacher_logits, distilled, lam, config, ["a", "b", "c"])
    expected = 0.0
    for k in range(heads):
        hard = hard_loss(logits[:, k], labels[:, k], rows[:, k])[0]
        soft = soft_loss(logits[:, k], teacher_logits[:, k], 2.0, rows[:, k])[0]
        lam_k = lam if distilled[k] else 0.0
        expected += w[k] * ((1 - lam_k) * hard + lam_k * soft)
    assert terms["student_total"] == pytest.approx(expected, rel=1e-12)
    assert "soft.a" not in terms and "soft.b" in terms


# --------------------------------------------------------------------------- the leakage rule


def shortvideo_like_schema(privileged_names) -> Schema:
    return Schema((
        FeatureSpec("user_id", "categorical", "regular", "user", vocab_size=5),
        FeatureSpec("video_id", "categorical", "regular", "item", vocab_size=6),
        *(FeatureSpec(name, "dense", "privileged", None, width=1) for name in privileged_names),
    ))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_leakage_rule_no_student_reads_privileged_and_no_head_is_distilled_from_a_teacher_holding_its_label(data):
    """For any schema, objectives and revealing columns, every method and sharing: the student
    reads regular columns only, and each distilled head's teacher reads none of the columns
    that give its label away (and the teacher has a head exactly for each distilled objective)."""
    privileged = data.draw(st.lists(st.sampled_from(["watch", "ratio", "stay", "visit"]), min_size=1, max_size=4,
                                    unique=True))
    schema = shortvideo_like_schema(privileged)
    names = data.draw(st.lists(st.sampled_from(["click", "like", "comment", "follow"]), min_size=1, max_size=4,
                               unique=True))
    revealed_by = tuple(tuple(data.draw(st.lists(st.sampled_from(privileged), max_size=2, unique=True)))
                        for _ in names)
    objectives = ObjectiveSet(tuple(names), ("all",) * len(names), (1.0,) * len(names), revealed_by)
    method = data.draw(st.sampled_from(MULTI_METHODS))
    sharing = data.draw(st.sampled_from(["none", "all"]))
    rule = METHOD_RULES[method]
    reads = {f.name for f in TEACHER_FIELDS[rule.teacher_fields](schema)} if rule.teacher else set()
    must_refuse = bool(rule.teacher) and all(reads & set(r) for r in revealed_by)
    if must_refuse:
        with pytest.raises(ValueError, match="^method: .* no head may be distilled"):
            build_objective_models(schema, objectives, method, SMALL, sharing)
        return
    student, teacher = build_objective_models(schema, objectives, method, SMALL, sharing)
    privileged_names = {f.name for f in schema.privileged()}
    assert not set(student.feature_names) & privileged_names, "the student reads a privileged column"
    assert student.objectives == objectives.names
    if teacher is None:
        assert student.distilled == ()
        return
    assert teacher.objectives == student.distilled
    for name in student.distilled:
        revealing = set(revealed_by[names.index(name)]) | {name}
        assert not set(teacher.feature_names) & revealing, f"head {name!r} is distilled from a teacher holding its label"
    undistilled = [name for name in names if name not in student.distilled]
    for name in undistilled:  # and a head is left out only for that reason
        assert set(teacher.feature_names) & set(revealed_by[names.index(name)])


def test_distilled_objectives_is_the_stated_rule():
    assert distilled_objectives(TINY_OBJECTIVES, ["user_id", "cat_clicks"]) == ("like", "comment")
    assert distilled_objectives(TINY_OBJECTIVES, ["user_id", "chatted"]) == ("like",)
    assert distilled_objectives(TINY_OBJECTIVES, ["user_id"]) == ("click", "like", "comment")


@pytest.mark.parametrize("method", MULTI_METHODS)
def test_click_head_is_trained_on_every_row_and_never_distilled_from_a_watch_time_teacher(method):
    """The click rule: under pfd, pfd+md and lupi (teachers reading the watch time) the click
    head's gradient is its hard loss's on every row (lambda = 1 changes nothing there), the
    interaction heads see the played rows only; md's teacher (no privileged column) distils it."""
    rng = np.random.default_rng(4)
    batch = tiny_objective_data(rng, 12)
    student, teacher = build_objective_models(batch.schema, TINY_OBJECTIVES, method, SMALL)
    reads_watch_time = teacher is not None and "cat_clicks" in teacher.feature_names
    assert ("click" in student.distilled) == (teacher is not None and not reads_watch_time)
    params = perturbed_params((teacher, student), rng)
    config = DistillConfig(lambda_=1.0, hard_weight="one")
    out = objective_step_gradients(student, teacher, params, batch, 0, config)
    hard_only = objective_step_gradients(student, None, params, batch, 0, config)
    s_logits = out.student_logits
    d = multi_objective_loss(s_logits, batch.targets, batch.masks(TINY_OBJECTIVES.names, np.float64),
                             TINY_OBJECTIVES.weights, None, np.zeros(3, bool), 0.0, config, TINY_OBJECTIVES.names)[1]
    assert np.all(d[:, 0] != 0)  # the click head learns from every row, played or not
    assert np.all(d[~batch.played, 1:] == 0)  # the interaction heads from the played rows only
    if teacher is None or reads_watch_time:
        assert out.terms["hard.click"] == hard_only.terms["hard.click"] and "soft.click" not in out.terms
        # the step's own gradient: the click column of the student's output layer is the hard loss's alone
        last = [k for k in out.grads if k.startswith(f"{student.prefix}.mlp.") and k.endswith(".weight")][-1]
        np.testing.assert_array_equal(out.grads[last][:, 0], hard_only.grads[last][:, 0])
    else:
        assert "soft.click" in out.terms


# --------------------------------------------------------------------------- one step and training


@pytest.mark.parametrize("method,sharing", [("pfd", "none"), ("pfd", "all"), ("pfd+md", "all"), ("md", "all"),
                                            ("lupi", "none")])
def test_sync_step_gradients_are_the_stop_gradient_objective(method, sharing):
    """Sync step: teacher parameters get dL_t/dW_t, student parameters dL_s/dW_s with the
    teacher's logits held fixed, a shared table the sum of both (finite differences)."""
    rng = np.random.default_rng(5)
    batch = tiny_objective_data(rng, 9, weights=True)
    student, teacher = build_objective_models(batch.schema, TINY_OBJECTIVES, method, SMALL, sharing)
    params = perturbed_params((teacher, student), rng)
    config = DistillConfig(lambda_=0.6, temperature=2.0)
    out = objective_step_gradients(student, teacher, params, batch, 0, config)
    frozen = out.teacher_logits.copy()

    def student_loss():
        return objective_step_gradients(student, None, params, batch, 0, config, frozen).terms["student_total"]

    def teacher_loss():
        return objective_step_gradients(teacher, None, params, batch, 0, config).terms["student_total"]

    student_names, teacher_names = set(student.param_names()), set(teacher.param_names())
    scale = max(np.abs(to_dense(g)).max() for g in out.grads.values())
    for name, grad in out.grads.items():
        numeric = 0
        if name in student_names:
            numeric = numeric + numerical_gradient(student_loss, params[name])
        if name in teacher_names:
            numeric = numeric + numerical_gradient(teacher_loss, params[name])
        assert relative_error(to_dense(grad), numeric, scale) < 1e-6, name
    assert set(out.grads) == (student_names | teacher_names) - set(student.buffer_names)


def small_config(**changes) -> TrainConfig:
    base = dict(student_kind="mlp", epochs=2, batch_size=16, lr=0.01, dtype="float64", sizes=SMALL,
                distill=DistillConfig(lambda_=0.5, warmup_steps=1))
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("mode", ["sync", "two-stage"])
@pytest.mark.parametrize("method", MULTI_METHODS)
def test_every_method_trains_in_both_modes(method, mode):
    rng = np.random.default_rng(6)
    data = tiny_objective_data(rng, 60)
    result = train(data, method, small_config(mode=mode, sharing="all" if mode == "sync" and method != "lupi" else "none"))
    logits = predict(result.student, result.params, data)
    assert logits.shape == (60, 3) and np.all(np.isfinite(logits))
    assert all(np.isfinite(h["student_total"]) for h in result.history)


def test_lambda_zero_student_follows_the_baseline_bit_for_bit():
    rng = np.random.default_rng(7)
    data = tiny_objective_data(rng, 50)
    base = train(data, "baseline", small_config())
    pfd = train(data, "pfd", small_config(distill=DistillConfig(lambda_=0.0)))
    for name in base.student.param_names():
        np.testing.assert_array_equal(base.params[name], pfd.params[name])


def test_two_stage_cross_fitted_teacher_gives_one_logit_per_distilled_head():
    rng = np.random.default_rng(8)
    data = tiny_objective_data(rng, 60)
    result = train(data, "pfd", small_config(mode="two-stage", teacher_folds=2))
    assert result.teacher is None and result.student.distilled == ("like",)  # chatted gives the comment away
    assert "soft.like" in result.history[-1] and "soft.comment" not in result.history[-1]


# --------------------------------------------------------------------------- bad input


def test_objective_without_positives_in_the_training_split_is_named():
    rng = np.random.default_rng(9)
    data = tiny_objective_data(rng, 30)
    targets = data.targets.copy()
    targets[:, 2] = 0
    flat = ObjectiveData(data.schema, data.columns, data.objectives, targets, data.played, data.user_ids, data.day)
    with pytest.raises(ValueError, match="^objectives: 'comment' has no positive in the training split"):
        train(flat, "baseline", small_config())


def test_objective_that_is_a_column_is_refused():
    rng = np.random.default_rng(10)
    base = tiny_dataset(rng, 6)
    objectives = ObjectiveSet(("click", "chatted"), ("all", "played"), (1, 1), ((), ()))
    with pytest.raises(ValueError, match="^objectives: 'chatted' is a privileged column of the data"):
        ObjectiveData(base.schema, base.columns, objectives, np.zeros((6, 2)), np.ones(6), base.user_ids)


def test_objective_labels_other_than_0_1_name_the_column():
    rng = np.random.default_rng(11)
    base = tiny_dataset(rng, 6)
    targets = np.zeros((6, 3))
    targets[2, 1] = 2
    with pytest.raises(ValueError, match="^objectives: column 'like': labels must be 0 or 1, found 2"):
        ObjectiveData(base.schema, base.columns, TINY_OBJECTIVES, targets, np.ones(6), base.user_ids)


@pytest.mark.parametrize("weights,message", [((1.0,), "^objective_weights: 1 weight"),
                                             ((1.0, -1.0), r"^objective_weights\[1\]"),
                                             ((0.0, 0.0), "^objective_weights: every weight is 0")])
def test_objective_weights_that_do_not_match_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        ObjectiveSet(("a", "b"), ("all", "played"), weights, ((), ()))


def test_mtl_is_not_a_multi_head_method():
    with pytest.raises(ValueError, match="^method: 'mtl' is not defined for the multi-head student"):
        build_objective_models(tiny_schema(), TINY_OBJECTIVES, "mtl", SMALL)


def test_every_sharing_builds():
    for sharing in SHARING:
        schema = tiny_schema()
        if sharing == "all-but-user-id":
            student, teacher = build_objective_models(schema, TINY_OBJECTIVES, "pfd", SMALL, sharing)
            assert "student.embed.user_id" in student.param_names()
            assert "shared.embed.item_id" in teacher.param_names()


def test_evaluable_names_the_rare_objectives_and_why():
    rng = np.random.default_rng(12)
    base = tiny_dataset(rng, 40)
    user_ids = np.arange(40) % 4
    targets = np.zeros((40, 3), dtype=np.int8)
    targets[:, 0] = (np.arange(40) // 4) % 2  # click: 20 of each class, every user both
    targets[:3, 1] = 1  # like: 3 positives
    targets[user_ids == 0, 2] = 1  # comment: all of user 0, 10 of each class, no user with both
    data = ObjectiveData(base.schema, base.columns, TINY_OBJECTIVES, targets, np.ones(40), user_ids)
    names, skipped = evaluable(data, 5)
    assert names == ["click"]
    assert skipped["like"].startswith("3 positive(s) among 40 rows") and "GAUC undefined" in skipped["comment"]

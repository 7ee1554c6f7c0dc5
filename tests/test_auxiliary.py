"""pfd_ref.auxiliary, the MTL control: targets from the training split, the heads' gradients
(and their effect on the student) against finite differences, mtl with weight 0 is the baseline
bit for bit, and the served student never carries a head."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_gradient, relative_error
from pfd_ref.auxiliary import AuxiliaryHeads, AuxTarget, auxiliary_targets
from pfd_ref.data import Dataset
from pfd_ref.distill import DistillConfig, ModelSizes, build_auxiliary, build_models, init_params, step_gradients
from pfd_ref.sparse import to_dense
from pfd_ref.train import TrainConfig, train
from tiny import tiny_dataset

SIZES = ModelSizes(embed_dim=3, student_hidden=(5, 4), tower_out_dim=3, strong_hidden=(6, 4))


def with_binary(data: Dataset, field: str = "cat_clicks") -> Dataset:
    """``data`` with the dense privileged ``field`` replaced by 0/1 values."""
    columns = dict(data.columns, **{field: (data.columns[field] > 0).astype(np.float64)})
    return Dataset(data.schema, columns, data.labels, data.user_ids, data.day, data.weights)


def test_targets_take_their_kind_and_statistics_from_the_training_rows():
    rng = np.random.default_rng(0)
    data = tiny_dataset(rng, 40)
    data.columns["cat_clicks"][:] = 3.0 + 2.0 * data.columns["cat_clicks"]
    continuous, categorical = auxiliary_targets(data)
    assert (continuous.field, continuous.kind, continuous.width) == ("cat_clicks", "continuous", 2)
    np.testing.assert_allclose(continuous.mean, data.columns["cat_clicks"].mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(continuous.std, data.columns["cat_clicks"].std(axis=0), rtol=1e-15)
    standardised = continuous.values(data, np.float64)
    np.testing.assert_allclose(standardised.mean(axis=0), 0, atol=1e-14)
    np.testing.assert_allclose(standardised.std(axis=0), 1, rtol=1e-13)
    assert (categorical.field, categorical.kind, categorical.width) == ("chatted", "categorical", 2)
    np.testing.assert_array_equal(categorical.values(data, np.float64), data.columns["chatted"])
    binary = auxiliary_targets(with_binary(data))[0]
    assert (binary.kind, binary.mean, binary.std) == ("binary", None, None)
    # other rows (a test split) are standardised with the training rows' statistics, not their own
    other = tiny_dataset(rng, 30)
    np.testing.assert_allclose(continuous.values(other, np.float64),
                               (other.columns["cat_clicks"] - continuous.mean) / continuous.std, rtol=1e-15)
    assert AuxTarget.from_dict(continuous.to_dict()) == continuous


def test_a_constant_column_is_standardised_by_one():
    data = tiny_dataset(np.random.default_rng(1), 20)
    data.columns["cat_clicks"][:, 1] = 7.0
    target = auxiliary_targets(data)[0]
    assert target.std[1] == 1.0 and target.mean[1] == 7.0


def _mtl_problem(seed: int, binary: bool, batch_norm: bool, activation: str, weights: bool):
    rng = np.random.default_rng(seed)
    data = tiny_dataset(rng, 10, weights=weights)
    data = with_binary(data) if binary else data
    sizes = replace(SIZES, batch_norm=batch_norm, activation=activation)
    student, _ = build_models(data.schema, "mtl", "mlp", sizes)
    auxiliary = build_auxiliary("mtl", student, auxiliary_targets(data), sizes)
    params = init_params(seed, np.float64, student, auxiliary)
    for name in params:  # away from zero biases and unit gammas, so that every path shows
        if not name.endswith(("running_mean", "running_var")):
            params[name] += 0.2 * rng.standard_normal(params[name].shape)
    return data, student, auxiliary, params


@settings(max_examples=10, deadline=None)
@given(binary=st.booleans(), batch_norm=st.booleans(), activation=st.sampled_from(["relu", "leaky_relu"]),
       alpha=st.sampled_from([0.05, 1.0, 2.0]), weights=st.booleans(), seed=st.integers(0, 1000))
def test_every_gradient_of_the_mtl_objective_matches_finite_differences(binary, batch_norm, activation, alpha, weights,
                                                                         seed):
    """``L_hard + alpha sum_f L_f``: the heads' parameters and, through the first hidden
    layer, every student parameter (tables included); the buffers get no gradient."""
    data, student, auxiliary, params = _mtl_problem(seed, binary, batch_norm, activation, weights)
    config = DistillConfig(mtl_weight=alpha)
    out = step_gradients(student, None, params, data, 0, config, auxiliary=auxiliary)
    assert set(out.grads) == set(params) - set(student.buffer_names) - set(auxiliary.buffer_names)
    assert out.terms["student_total"] == out.terms["hard"] + alpha * out.terms["aux"]
    assert out.terms["aux"] == out.terms["aux.cat_clicks"] + out.terms["aux.chatted"]

    def objective():
        return step_gradients(student, None, params, data, 0, config, auxiliary=auxiliary).terms["total"]

    scale = max(np.abs(to_dense(g)).max() for g in out.grads.values())
    for name, grad in out.grads.items():
        assert relative_error(to_dense(grad), numerical_gradient(objective, params[name]), scale) < 1e-6, name


def test_each_head_loss_is_its_targets_loss():
    """continuous: mean squared error of the standardised column summed over columns; binary:
    the columns' log losses summed; categorical: softmax cross-entropy of the ids."""
    data, student, auxiliary, params = _mtl_problem(3, False, False, "relu", False)
    _, cache = student.forward(params, data, training=True)
    outputs, _ = auxiliary.forward(params, student.first_hidden(cache))
    terms, _ = auxiliary.losses(outputs, data, None)
    z = auxiliary.targets[0].values(data, np.float64)
    assert terms["aux.cat_clicks"] == pytest.approx(np.mean(((outputs[0] - z) ** 2).sum(axis=1)), rel=1e-14)
    logits, ids = outputs[1], data.columns["chatted"]
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert terms["aux.chatted"] == pytest.approx(-np.mean(log_p[np.arange(data.n), ids]), rel=1e-13)
    binary_data, _, binary_heads, binary_params = _mtl_problem(3, True, False, "relu", False)
    outputs, _ = binary_heads.forward(binary_params, student.first_hidden(student.forward(binary_params, binary_data,
                                                                                             training=True)[1]))
    y, o = binary_data.columns["cat_clicks"], outputs[0]
    expected = np.mean(np.log1p(np.exp(o)) - y * o, axis=0).sum()
    assert binary_heads.losses(outputs, binary_data, None)[0]["aux.cat_clicks"] == pytest.approx(expected, rel=1e-13)


def test_heads_repeat_the_student_above_its_first_layer_and_draw_their_own_stream():
    data, student, auxiliary, params = _mtl_problem(0, False, True, "leaky_relu", False)
    assert [stack.sizes for stack in auxiliary.stacks] == [(5, 4, 2), (5, 4, 2)]  # (H_1, H_2, width)
    assert auxiliary.param_names()[0] == "aux.cat_clicks.0.weight" and "aux.chatted.0.bn.running_var" in params
    student_alone = init_params(0, np.float64, student)
    fresh = init_params(0, np.float64, student, auxiliary)
    for name, value in student_alone.items():  # adding the heads leaves the student's draws as they were
        np.testing.assert_array_equal(fresh[name], value)
    assert isinstance(auxiliary, AuxiliaryHeads) and auxiliary.config()["hidden"] == [4]


@pytest.mark.parametrize("mode", ["sync", "two-stage"])
def test_mtl_with_weight_zero_trains_the_baselines_student_bit_for_bit(mode):
    data = tiny_dataset(np.random.default_rng(4), 70)
    config = TrainConfig(student_kind="mlp", mode=mode, epochs=2, batch_size=16, lr=0.01, dtype="float64",
                         sizes=replace(SIZES, batch_norm=True, activation="leaky_relu"),
                         distill=DistillConfig(mtl_weight=0.0))
    mtl, baseline = train(data, "mtl", config), train(data, "baseline", config)
    assert set(mtl.student_params()) == set(baseline.params)
    for name, value in baseline.params.items():
        assert mtl.params[name].tobytes() == value.tobytes(), name
    assert mtl.auxiliary is not None and any(name.startswith("aux.") for name in mtl.params)
    moved = train(data, "mtl", replace(config, distill=DistillConfig(mtl_weight=0.5)))
    assert not np.array_equal(moved.params["student.mlp.0.weight"], baseline.params["student.mlp.0.weight"])
    assert {"aux", "aux.cat_clicks", "aux.chatted"} <= set(moved.history[0])

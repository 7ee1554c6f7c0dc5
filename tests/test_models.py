"""Models: hand-written backward against finite differences, dtype behaviour, config round trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_gradient, relative_error
from pfd_ref.layers import ACTIVATIONS
from pfd_ref.models import TOWER_NORMS, MLPRanker, SharedTables, TwoTower, build_model
from pfd_ref.sparse import RowSparseGrad, to_dense
from tiny import tiny_dataset, tiny_schema


def make_model(kind: str, schema, hidden: int, with_privileged: bool = False, activation: str = "relu",
               batch_norm: bool = False, tower_norm: str = "none", tower_scale: float = 1.0):
    regular = schema.regular()
    layer_options = dict(activation=activation, batch_norm=batch_norm)
    if kind == "mlp":
        fields = regular + (schema.privileged() if with_privileged else ())
        return MLPRanker("m", fields, embed_dim=3, hidden=(hidden, 3), **layer_options)
    extra = schema.privileged() if with_privileged else ()
    return TwoTower("m", schema.regular("user") + extra, schema.regular("item"), embed_dim=3,
                    tower_hidden=(hidden,), out_dim=4, tower_norm=tower_norm, tower_scale=tower_scale, **layer_options)


def check_model_gradients(model, params, batch, rng):
    """Every trained parameter's analytic gradient of sum_i c_i logit_i (training mode)
    against central differences; the buffers get none."""
    coefficients = rng.standard_normal(batch.n)
    logits, cache = model.forward(params, batch, training=True)
    grads = model.backward(params, cache, coefficients)
    assert set(grads) == set(params) - set(model.buffer_names)
    # a unit that a ReLU switches off for every row has gradient 0: differences are judged on the model's scale
    scale = max(np.abs(to_dense(g)).max() for g in grads.values())
    for name in grads:
        numeric = numerical_gradient(lambda: float(coefficients @ model.forward(params, batch, training=True)[0]),
                                     params[name])
        assert relative_error(to_dense(grads[name]), numeric, scale) < 1e-6, name


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["mlp", "two_tower"]), n=st.integers(2, 9), hidden=st.integers(1, 5),
       privileged=st.booleans(), seed=st.integers(0, 2**31))
def test_model_gradients_match_finite_differences(kind, n, hidden, privileged, seed):
    rng = np.random.default_rng(seed)
    schema = tiny_schema()
    model = make_model(kind, schema, hidden, privileged)
    params = model.init_params(rng, np.float64)
    for name in params:  # move away from the zero biases so every path is exercised
        params[name] += 0.3 * rng.standard_normal(params[name].shape)
    check_model_gradients(model, params, tiny_dataset(rng, n, schema), rng)


@settings(max_examples=12, deadline=None)
@given(kind=st.sampled_from(["mlp", "two_tower"]), n=st.integers(6, 10), hidden=st.integers(2, 5),
       activation=st.sampled_from(ACTIVATIONS), batch_norm=st.booleans(), tower_norm=st.sampled_from(TOWER_NORMS),
       tower_scale=st.sampled_from([1.0, 5.0]), seed=st.integers(0, 2**31))
def test_model_gradients_with_every_layer_option_match_finite_differences(kind, n, hidden, activation, batch_norm,
                                                                          tower_norm, tower_scale, seed):
    rng = np.random.default_rng(seed)
    schema = tiny_schema()
    model = make_model(kind, schema, hidden, True, activation, batch_norm, *(
        (tower_norm, tower_scale) if kind == "two_tower" else ("none", 1.0)))
    params = model.init_params(rng, np.float64)
    for name in set(params) - set(model.buffer_names):  # away from gamma = 1, beta = 0, zero biases
        params[name] += 0.3 * rng.standard_normal(params[name].shape)
    check_model_gradients(model, params, tiny_dataset(rng, n, schema), rng)


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
def test_batch_norm_parameters_buffers_and_running_averages(kind):
    schema = tiny_schema()
    model = make_model(kind, schema, 4, batch_norm=True)
    params = model.init_params(np.random.default_rng(0), np.float64)
    stacks = [model.mlp] if kind == "mlp" else [model.user_mlp, model.item_mlp]
    hidden = [stack.prefix + ".0" for stack in stacks] + ([stacks[0].prefix + ".1"] if kind == "mlp" else [])
    for layer in hidden:  # no bias before batch norm; gamma 1, beta 0, running mean 0, running variance 1
        assert f"{layer}.bias" not in params
        for part, value in (("gamma", 1), ("beta", 0), ("running_mean", 0), ("running_var", 1)):
            assert np.all(params[f"{layer}.bn.{part}"] == value)
    assert set(model.buffer_names) == {f"{layer}.bn.{part}" for layer in hidden for part in ("running_mean", "running_var")}
    batch = tiny_dataset(np.random.default_rng(1), 9, schema)
    _, cache = model.forward(params, batch, training=True)
    updated = model.running_averages(params, cache)
    assert set(updated) == set(model.buffer_names)
    mlp_cache = cache[1] if kind == "mlp" else cache[2]
    z = mlp_cache.inputs[0] @ params[f"{hidden[0]}.weight"]  # the first hidden layer's pre-normalisation values
    np.testing.assert_allclose(updated[f"{hidden[0]}.bn.running_mean"], 0.1 * z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(updated[f"{hidden[0]}.bn.running_var"], 0.9 + 0.1 * z.var(axis=0, ddof=1), rtol=1e-12)
    assert model.running_averages(params, model.forward(params, batch)[1]) == {}  # evaluation mode: nothing to update


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
def test_evaluation_mode_uses_the_running_averages_and_has_no_backward(kind):
    schema = tiny_schema()
    model = make_model(kind, schema, 4, activation="leaky_relu", batch_norm=True)
    params = model.init_params(np.random.default_rng(0), np.float64)
    batch = tiny_dataset(np.random.default_rng(1), 9, schema)
    training_logits, _ = model.forward(params, batch, training=True)
    eval_logits, eval_cache = model.forward(params, batch)
    assert not np.allclose(training_logits, eval_logits)
    _, cache = model.forward(params, batch, training=True)  # running averages set to the batch's statistics:
    for stack_cache, stack in ([(cache[1], model.mlp)] if kind == "mlp" else
                               [(cache[2], model.user_mlp), (cache[3], model.item_mlp)]):
        for norm, norm_cache in zip(stack.norm_names, stack_cache.norm_caches):
            params[norm.running_mean], params[norm.running_var] = norm_cache.mean, norm_cache.var  # biased, as used
    np.testing.assert_allclose(model.forward(params, batch)[0], training_logits, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="^cache: backward needs a forward with training=True"):
        model.backward(params, eval_cache, np.ones(batch.n))


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_exported_model_folds_batch_norm_and_gives_the_evaluation_logits(kind, batch_norm):
    schema = tiny_schema()
    model = make_model(kind, schema, 4, activation="leaky_relu", batch_norm=batch_norm,
                       **({"tower_norm": "l2", "tower_scale": 5.0} if kind == "two_tower" else {}))
    rng = np.random.default_rng(0)
    params = model.init_params(rng, np.float64)
    for name in params:
        params[name] = params[name] + (rng.uniform(0.2, 1.0, params[name].shape) if name.endswith("running_var")
                                       else 0.3 * rng.standard_normal(params[name].shape))
    served, served_params = model.exported(params)
    assert served.buffer_names == () and not any(".bn." in name for name in served_params)
    assert set(served_params) == set(served.init_params(rng, np.float64))
    batch = tiny_dataset(np.random.default_rng(1), 12, schema)
    np.testing.assert_allclose(served.forward(served_params, batch)[0], model.forward(params, batch)[0], rtol=1e-12, atol=1e-13)
    assert served.config() == dict(model.config(), batch_norm=False)


def test_two_tower_l2_norm_and_scale_give_a_scaled_cosine_plus_bias():
    rng = np.random.default_rng(5)
    schema = tiny_schema()
    model = make_model("two_tower", schema, 3, tower_norm="l2", tower_scale=5.0)
    params = model.init_params(rng, np.float64)
    for name in params:  # non-zero biases: no tower output is exactly 0
        params[name] += 0.3 * rng.standard_normal(params[name].shape)
    params["m.bias"][0] = 0.7
    batch = tiny_dataset(rng, 8, schema)
    plain = make_model("two_tower", schema, 3)
    u, v = plain.user_vectors(params, batch), plain.item_vectors(params, batch)
    cosine = np.sum(u * v, axis=1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(model.forward(params, batch)[0], 5.0 * cosine + 0.7, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(model.user_vectors(params, batch), axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(model.item_vectors(params, batch), axis=1), 1.0, rtol=1e-14)
    scaled = make_model("two_tower", schema, 3, tower_scale=2.0)  # a scale without normalisation scales <u, v>
    np.testing.assert_allclose(scaled.forward(params, batch)[0], 2.0 * np.sum(u * v, axis=1) + 0.7, rtol=1e-12)


@pytest.mark.parametrize("change, message", [
    (dict(activation="tanh"), "^activation"), (dict(tower_norm="l1"), "^tower_norm"),
    (dict(tower_scale=0.0), "^tower_scale"), (dict(tower_scale=-5.0), "^tower_scale"),
    (dict(tower_scale=float("inf")), "^tower_scale"),
])
def test_bad_layer_options_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        make_model("two_tower", tiny_schema(), 3, **change)


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
def test_embedding_gradients_are_row_sparse_and_touch_only_batch_rows(kind):
    rng = np.random.default_rng(1)
    schema = tiny_schema(vocab=50)
    model = make_model(kind, schema, 4)
    params = model.init_params(rng, np.float64)
    batch = tiny_dataset(rng, 6, schema)
    logits, cache = model.forward(params, batch)
    grads = model.backward(params, cache, np.ones(batch.n))
    user_grad = grads["m.embed.user_id"]
    assert isinstance(user_grad, RowSparseGrad)
    np.testing.assert_array_equal(user_grad.rows, np.unique(batch.columns["user_id"]))


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
def test_float32_matches_float64_and_keeps_its_dtype(kind):
    rng = np.random.default_rng(2)
    schema = tiny_schema()
    model = make_model(kind, schema, 5)
    batch = tiny_dataset(rng, 32, schema)
    p64 = model.init_params(np.random.default_rng(3), np.float64)
    p32 = model.init_params(np.random.default_rng(3), np.float32)
    l64, c64 = model.forward(p64, batch)
    l32, c32 = model.forward(p32, batch)
    assert l32.dtype == np.float32 and l64.dtype == np.float64
    np.testing.assert_allclose(l32, l64, rtol=1e-4, atol=1e-5)
    g32 = model.backward(p32, c32, np.ones(batch.n, np.float32))
    g64 = model.backward(p64, c64, np.ones(batch.n))
    for name in g64:
        assert to_dense(g32[name]).dtype == np.float32, name
        np.testing.assert_allclose(to_dense(g32[name]), to_dense(g64[name]), rtol=1e-3, atol=1e-5)


def test_init_params_rejects_integer_dtype():
    model = make_model("mlp", tiny_schema(), 3)
    with pytest.raises(ValueError, match="dtype"):
        model.init_params(np.random.default_rng(0), np.int32)


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
@pytest.mark.parametrize("options", [{}, dict(activation="leaky_relu", batch_norm=True),
                                     dict(activation="leaky_relu", tower_norm="l2", tower_scale=5.0)])
def test_config_round_trip_rebuilds_the_same_function(kind, options):
    if kind == "mlp":
        options = {k: v for k, v in options.items() if not k.startswith("tower")}
    rng = np.random.default_rng(4)
    schema = tiny_schema()
    model = make_model(kind, schema, 3, with_privileged=True, **options)
    params = model.init_params(rng, np.float64)
    batch = tiny_dataset(rng, 10, schema)
    rebuilt = build_model(model.config())
    for training in (False, True):
        np.testing.assert_array_equal(rebuilt.forward(params, batch, training)[0], model.forward(params, batch, training)[0])
    assert rebuilt.feature_names == model.feature_names and rebuilt.config() == model.config()


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
def test_a_config_without_the_layer_keys_builds_the_plain_model(kind):
    """Students exported before the layer options existed load as ReLU, no batch norm, no tower norm."""
    model = make_model(kind, tiny_schema(), 3)
    old = {k: v for k, v in model.config().items() if k not in ("activation", "batch_norm", "tower_norm", "tower_scale")}
    assert build_model(old).config() == model.config()


def test_build_model_rejects_unknown_kind():
    with pytest.raises(ValueError, match="config"):
        build_model({"kind": "forest"})


def test_two_tower_logit_is_inner_product_of_tower_vectors_plus_bias():
    rng = np.random.default_rng(5)
    schema = tiny_schema()
    model = make_model("two_tower", schema, 3)
    params = model.init_params(rng, np.float64)
    params["m.bias"][0] = 0.7
    batch = tiny_dataset(rng, 8, schema)
    u, v = model.user_vectors(params, batch), model.item_vectors(params, batch)
    np.testing.assert_allclose(model.forward(params, batch)[0], np.sum(u * v, axis=1) + 0.7, rtol=1e-12)


def test_shared_fields_name_one_table_for_both_models():
    schema = tiny_schema()
    student = MLPRanker("student", schema.regular(), 3, (4,), shared_fields=("user_id",))
    teacher = MLPRanker("teacher", schema.regular() + schema.privileged(), 3, (4,), shared_fields=("user_id",))
    s_names, t_names = set(student.param_names()), set(teacher.param_names())
    assert s_names & t_names == {"shared.embed.user_id"}
    assert "teacher.embed.item_id" in t_names and "student.embed.item_id" in s_names


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
def test_param_names_are_the_initial_parameters_in_order(kind):
    model = make_model(kind, tiny_schema(), 3, with_privileged=True)
    assert model.param_names() == list(model.init_params(np.random.default_rng(0), np.float32))


# ---------------------------------------------------------------- checks at the model boundary


class Rows:
    """A batch that is not a ``Dataset`` (like serving's rows): only ``.columns``."""

    def __init__(self, columns):
        self.columns = columns


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
@pytest.mark.parametrize("table_name, bad", [("m.embed.user_id", np.nan), ("m.embed.recent", np.inf),
                                              ("m.embed.item_id", -np.inf)])
def test_forward_rejects_a_non_finite_table_row_the_batch_reads(kind, table_name, bad):
    schema = tiny_schema()
    model = make_model(kind, schema, 3)
    params = model.init_params(np.random.default_rng(0), np.float64)
    batch = tiny_dataset(np.random.default_rng(1), 12, schema)
    column = batch.columns[table_name.rsplit(".", 1)[1]]
    row = column.values[0] if hasattr(column, "values") else column[0]
    model.forward(params, batch)
    params[table_name][row, 0] = bad
    with pytest.raises(ValueError, match=r"^x: contains NaN or infinity"):
        model.forward(params, batch)


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
def test_forward_checks_the_ids_of_a_batch_that_is_not_a_dataset(kind):
    schema = tiny_schema()
    model = make_model(kind, schema, 3)
    params = model.init_params(np.random.default_rng(0), np.float64)
    batch = tiny_dataset(np.random.default_rng(1), 6, schema)
    rows = Rows(dict(batch.columns))
    np.testing.assert_array_equal(model.forward(params, rows)[0], model.forward(params, batch)[0])
    rows.columns["user_id"] = batch.columns["user_id"].copy()
    rows.columns["user_id"][2] = 7
    with pytest.raises(ValueError, match=r"^batch.columns\['user_id'\]: id 7 is outside the table \[0, 7\)"):
        model.forward(params, rows)
    recent = batch.columns["recent"]
    rows.columns = dict(batch.columns, recent=type(recent)(recent.values, recent.offsets[::-1].copy()))
    with pytest.raises(ValueError, match=r"^batch.columns\['recent'\].offsets: must start at 0"):
        model.forward(params, rows)


def forward_after(kind: str, names, change, **options):
    """The training-mode forward of a tiny float64 model (``make_model(kind, ..., **options)``)
    on 5 rows after ``change`` replaced each parameter in ``names(model)``."""
    schema = tiny_schema()
    model = make_model(kind, schema, 3, **options)
    params = model.init_params(np.random.default_rng(0), np.float64)
    for name in names(model):
        params[name] = change(params[name])
    return model.forward(params, tiny_dataset(np.random.default_rng(1), 5, schema), training=True)


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
@pytest.mark.parametrize("change, message", [
    (lambda t: t.astype(np.float32), r"expected a float64 array of shape \(9, 3\), got float32 \(9, 3\)"),
    (lambda t: t[:-1], r"expected a float64 array of shape \(9, 3\), got float64 \(8, 3\)"),
    (lambda t: t.tolist(), r"expected a float64 array of shape \(9, 3\), got list"),
])
def test_forward_rejects_a_table_of_another_dtype_or_shape(kind, change, message):
    with pytest.raises(ValueError, match=r"^params\['m.embed.item_id'\]: " + message):
        forward_after(kind, lambda model: ["m.embed.item_id"], change)


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
@pytest.mark.parametrize("d_logits, message", [
    (np.ones(4), r"expected shape \(5,\)"), (np.ones(5, np.float32), "expected dtype float64"),
    ([1.0] * 5, "expected a numpy array"),
])
def test_backward_checks_d_logits(kind, d_logits, message):
    schema = tiny_schema()
    model = make_model(kind, schema, 3)
    params = model.init_params(np.random.default_rng(0), np.float64)
    _, cache = model.forward(params, tiny_dataset(np.random.default_rng(1), 5, schema))
    with pytest.raises(ValueError, match=r"^d_logits: " + message):
        model.backward(params, cache, d_logits)


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
@pytest.mark.parametrize("layer, part, change, message", [
    (0, 0, lambda a: a[:-1], r"^weights\[0\]: expected shape"),
    (0, 1, lambda a: a[:-1], r"^biases\[0\]: expected shape"),
    (1, 0, lambda a: a.astype(np.float32), r"^weights\[1\]: expected dtype float64"),
    (1, 1, lambda a: np.where(np.arange(a.size) == 0, np.inf, a), r"^biases\[1\]: contains NaN or infinity"),
    (1, 0, lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0, np.nan, a), r"^weights\[1\]: contains NaN or infinity"),
])
def test_forward_checks_every_mlp_parameter(kind, layer, part, change, message):
    with pytest.raises(ValueError, match=message):
        forward_after(kind, lambda model: [(model.mlp if kind == "mlp" else model.item_mlp).names[layer][part]], change)


@pytest.mark.parametrize("change, message", [
    (lambda b: b.astype(np.float32), r"expected dtype float64"), (lambda b: np.array([np.nan]), "contains NaN"),
    (lambda b: np.zeros(2), r"expected shape \(1,\)"),
])
def test_two_tower_forward_checks_its_bias(change, message):
    with pytest.raises(ValueError, match=r"^params\['m.bias'\]: " + message):
        forward_after("two_tower", lambda model: ["m.bias"], change)


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
@pytest.mark.parametrize("part, change, message", [
    ("gamma", lambda a: a[:-1], r"^norms\[0\].gamma: expected shape"),
    ("beta", lambda a: a.astype(np.float32), r"^norms\[0\].beta: expected dtype float64"),
    ("running_var", lambda a: np.full_like(a, np.nan), r"^norms\[0\].running_var: contains NaN or infinity"),
])
def test_forward_checks_every_batch_norm_parameter(kind, part, change, message):
    with pytest.raises(ValueError, match=message):
        forward_after(kind, lambda model: [getattr((model.mlp if kind == "mlp" else model.user_mlp).norm_names[0], part)],
                      change, batch_norm=True)


def test_batch_statistics_of_a_single_row_are_refused_at_the_model():
    schema = tiny_schema()
    model = make_model("mlp", schema, 3, batch_norm=True)
    params = model.init_params(np.random.default_rng(0), np.float64)
    one_row = tiny_dataset(np.random.default_rng(1), 1, schema)
    assert model.forward(params, one_row)[0].shape == (1,)  # evaluation mode: the running averages
    with pytest.raises(ValueError, match="^x: batch normalisation with batch statistics needs at least 2 rows, got 1"):
        model.forward(params, one_row, training=True)


@pytest.mark.parametrize("kind", ["mlp", "two_tower"])
def test_shared_tables_are_looked_up_once_and_scattered_once_with_both_models_gradients(kind):
    """Two models that share every regular table: the second forward reuses the first's rows
    (the same array, the same values as a lookup of its own) and their encoders hand the
    tables' gradients to ``SharedTables``, which returns the sum of both models' gradients."""
    rng = np.random.default_rng(3)
    schema = tiny_schema()
    shared_fields = tuple(f.name for f in schema.regular())
    first = MLPRanker("teacher", schema.regular() + schema.privileged(), 3, (4,), shared_fields=shared_fields)
    second = MLPRanker("m", schema.regular(), 3, (3, 3), shared_fields=shared_fields) if kind == "mlp" else TwoTower(
        "m", schema.regular("user"), schema.regular("item"), 3, (3,), 4, shared_fields=shared_fields)
    params = {**first.init_params(rng, np.float64), **second.init_params(rng, np.float64)}
    batch = tiny_dataset(rng, 11, schema)
    shared = SharedTables()
    first_logits, first_cache = first.forward(params, batch, training=True, shared=shared)
    second_logits, second_cache = second.forward(params, batch, training=True, shared=shared)
    np.testing.assert_array_equal(first_logits, first.forward(params, batch, training=True)[0])
    np.testing.assert_array_equal(second_logits, second.forward(params, batch, training=True)[0])
    c1, c2 = rng.standard_normal(11), rng.standard_normal(11)
    first_grads, second_grads = first.backward(params, first_cache, c1), second.backward(params, second_cache, c2)
    tables = {f"shared.embed.{f.name}" for f in schema.regular() if f.kind != "dense"}
    assert not tables & (set(first_grads) | set(second_grads))  # left to SharedTables
    summed = shared.gradients()
    assert set(summed) == tables
    alone_first = first.backward(params, first.forward(params, batch, training=True)[1], c1)
    alone_second = second.backward(params, second.forward(params, batch, training=True)[1], c2)
    for name in tables:
        np.testing.assert_allclose(summed[name].to_dense(), alone_first[name].to_dense() + alone_second[name].to_dense(),
                                   rtol=1e-13, atol=1e-17)
    for name, grad in first_grads.items():
        np.testing.assert_array_equal(to_dense(grad), to_dense(alone_first[name]))

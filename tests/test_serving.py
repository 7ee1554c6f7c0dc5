"""Serving: the exported file holds the student alone, and top-k equals a brute-force ranking."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from tiny import tiny_dataset

from pfd_ref.data import MultiIds
from pfd_ref.models import FieldEncoder, TwoTower
from pfd_ref.serving import ServedStudent, save_student, tower_cost_figure
from pfd_ref.distill import ModelSizes
from pfd_ref.train import TrainConfig, train

SIZES = ModelSizes(embed_dim=3, student_hidden=(4,), tower_out_dim=3, strong_hidden=(6, 4))
PAPER_LAYERS = replace(SIZES, activation="leaky_relu", batch_norm=True, tower_norm="l2", tower_scale=5.0)
LAYERS = {"plain": SIZES, "paper": PAPER_LAYERS}
PRIVILEGED = ("cat_clicks", "chatted")


@pytest.fixture(scope="module")
def data():
    return tiny_dataset(np.random.default_rng(11), 120)


@pytest.fixture(scope="module")
def exports(data, tmp_path_factory):
    """A pfd student of each kind, with ReLU and plain towers ("plain") and with LeakyReLU,
    batch norm and l2 towers x 5 ("paper"), trained in float64, exported and loaded back."""
    by_kind = {}
    for kind in ("two_tower", "mlp"):
        for layers, sizes in LAYERS.items():
            config = TrainConfig(student_kind=kind, epochs=1, batch_size=16, sizes=sizes, dtype="float64", seed=3, lr=0.05)
            result = train(data, "pfd", config)
            path = save_student(tmp_path_factory.mktemp("served") / f"{kind}-{layers}.npz", result, data)
            by_kind[kind, layers] = SimpleNamespace(result=result, path=path, served=ServedStudent.load(path))
    return by_kind


@pytest.fixture(params=[(kind, layers) for kind in ("two_tower", "mlp") for layers in LAYERS], ids="-".join)
def exported(request, exports):
    return exports[request.param]


def _column_rows(column, index):
    return column.take(np.asarray(index, dtype=np.int64)) if isinstance(column, MultiIds) else column[index]


def _last_row_of(keys: np.ndarray, key: int) -> int:
    return int(np.flatnonzero(keys == key)[-1])


def brute_force_top_k(result, data, user: int, k: int):
    """Rank every catalogue item (last row of each distinct ``item_id``, catalogue index =
    position in sorted ids) for ``user`` (its last row) by the student's own ``forward``."""
    item_keys = np.unique(data.columns["item_id"])
    item_rows = [_last_row_of(data.columns["item_id"], key) for key in item_keys]
    user_row = _last_row_of(data.user_ids, user)
    model = result.student
    fields = model.user_fields + model.item_fields if isinstance(model, TwoTower) else model.fields
    columns = {f.name: _column_rows(data.columns[f.name], [user_row] * len(item_rows) if f.tower == "user" else item_rows)
               for f in fields}
    logits, _ = model.forward(result.params, SimpleNamespace(columns=columns))
    order = np.lexsort((np.arange(len(item_keys)), -logits))[:k]
    return item_keys[order], logits[order]


def test_file_holds_no_teacher_parameter_and_no_privileged_column(exported):
    with np.load(exported.path) as archive:
        keys = archive.files
    assert any(key.startswith("param.student.") for key in keys)
    assert not [key for key in keys if key.startswith("param.teacher.")]
    assert not [key for key in keys if any(name in key for name in PRIVILEGED)]
    assert exported.result.teacher is not None  # the trained result did have a teacher to leave out


def test_loaded_parameters_equal_the_trained_student_bit_for_bit(exports):
    exported = exports["two_tower", "plain"], exports["mlp", "plain"]
    for one in exported:
        expected = one.result.student_params()
        assert sorted(one.served.params) == sorted(expected)
        for name, value in expected.items():
            np.testing.assert_array_equal(one.served.params[name], value)
            assert one.served.params[name].dtype == np.float64


@pytest.mark.parametrize("kind", ["two_tower", "mlp"])
def test_batch_norm_is_folded_into_the_exported_weights(exports, kind):
    """W' = W gamma / sqrt(rv + eps), b' = beta - rm gamma / sqrt(rv + eps); no gamma, beta or buffer is written."""
    one = exports[kind, "paper"]
    trained = one.result.student_params()
    assert any(".bn." in name for name in trained)
    assert not any(".bn." in name for name in one.served.params)
    assert one.served.model.config()["batch_norm"] is False and one.served.model.config()["activation"] == "leaky_relu"
    layer = "student.mlp.0" if kind == "mlp" else "student.user_tower.0"
    scale = trained[f"{layer}.bn.gamma"] / np.sqrt(trained[f"{layer}.bn.running_var"] + 1e-5)
    np.testing.assert_allclose(one.served.params[f"{layer}.weight"], trained[f"{layer}.weight"] * scale, rtol=1e-15)
    np.testing.assert_allclose(one.served.params[f"{layer}.bias"],
                               trained[f"{layer}.bn.beta"] - trained[f"{layer}.bn.running_mean"] * scale, rtol=1e-14)


def test_a_model_with_batch_norm_is_not_served_unfolded(exports):
    one = exports["mlp", "paper"]
    served = one.served
    with pytest.raises(ValueError, match="^model: a served model has its batch normalisation folded"):
        ServedStudent(one.result.student, one.result.student_params(), served.user_keys, served.user_rows,
                      served.item_keys, served.item_rows)


def test_top_k_equals_brute_force_forward_ranking(exported, data):
    users = [int(u) for u in np.unique(data.user_ids)[[0, 2, -1]]]
    items, scores = exported.served.top_k(users, 5)
    assert items.shape == scores.shape == (3, 5)
    assert scores.dtype == np.float64
    for j, user in enumerate(users):
        expected_items, expected_scores = brute_force_top_k(exported.result, data, user, 5)
        np.testing.assert_array_equal(items[j], expected_items)
        np.testing.assert_allclose(scores[j], expected_scores, rtol=0, atol=1e-10)


@pytest.mark.parametrize("layers", list(LAYERS))
def test_two_tower_scores_are_scaled_user_item_inner_products_plus_bias(exports, data, layers):
    """S <f(u), f(v)> + b, the user and item vectors normalised (f) when tower_norm is l2."""
    exported = exports["two_tower", layers]
    model, params = exported.result.student, exported.result.params
    user = int(data.user_ids[-1])
    user_row = _last_row_of(data.user_ids, user)
    item_keys = np.unique(data.columns["item_id"])
    item_rows = [_last_row_of(data.columns["item_id"], key) for key in item_keys]
    u = model.user_vectors(params, SimpleNamespace(columns={f.name: _column_rows(data.columns[f.name], [user_row])
                                                            for f in model.user_fields}))
    v = model.item_vectors(params, SimpleNamespace(columns={f.name: _column_rows(data.columns[f.name], item_rows)
                                                            for f in model.item_fields}))
    expected = model.tower_scale * (v @ u[0]) + params["student.bias"][0]
    assert params["student.bias"][0] != 0.0  # trained, so the bias term is really checked
    if layers == "paper":
        assert model.tower_scale == 5.0
        np.testing.assert_allclose(np.linalg.norm(exported.served.item_vectors(), axis=1), 1.0, rtol=1e-14)
    items, scores = exported.served.top_k([user], len(item_keys))
    np.testing.assert_allclose(scores[0], expected[np.searchsorted(item_keys, items[0])], rtol=0, atol=1e-10)
    np.testing.assert_allclose(exported.served.item_vectors(), v, rtol=0, atol=1e-12)


def test_k_larger_than_the_catalogue_returns_every_item_once(exported, data):
    n_items = len(np.unique(data.columns["item_id"]))
    items, scores = exported.served.top_k([int(data.user_ids[0])], n_items + 50)
    assert items.shape == scores.shape == (1, n_items)
    np.testing.assert_array_equal(np.sort(items[0]), np.unique(data.columns["item_id"]))
    assert np.all(np.diff(scores[0]) <= 0)


def test_unknown_user_is_rejected_naming_users(exported, data):
    unknown = int(data.user_ids.max()) + 1
    with pytest.raises(ValueError, match=rf"^users: .*{unknown}"):
        exported.served.top_k([int(data.user_ids[0]), unknown], 3)


def test_a_file_that_is_not_a_student_is_rejected_naming_it(tmp_path, data):
    dataset_file = tmp_path / "dataset.npz"
    data.save(dataset_file)
    with pytest.raises(ValueError, match="dataset.npz"):
        ServedStudent.load(dataset_file)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        ServedStudent.load(garbage)


def test_a_single_array_file_is_rejected_naming_it(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="array.npy"):
        ServedStudent.load(path)


def test_a_student_file_of_format_1_is_rejected_naming_the_format(tmp_path, exported):
    with np.load(exported.path) as archive:
        arrays = dict(archive)
    arrays["format"] = np.array("pfd_ref.student/1")
    np.savez(tmp_path / "old.npz", **arrays)
    with pytest.raises(ValueError, match=r"^model: .*old.npz' is not a pfd_ref student file \(expected format pfd_ref.student/2\)"):
        ServedStudent.load(tmp_path / "old.npz")


def test_save_student_writes_exactly_the_path_it_returns(exports, data, tmp_path):
    path = save_student(tmp_path / "student_without_suffix", exports["mlp", "plain"].result, data)
    assert path == tmp_path / "student_without_suffix" and path.exists()
    assert ServedStudent.load(path).item_keys.shape == exports["mlp", "plain"].served.item_keys.shape


def test_no_users_is_rejected_naming_users(exported):
    with pytest.raises(ValueError, match="^users: at least one"):
        exported.served.top_k([], 3)


def _spoil(tmp_path, exported, drop=(), add=None, change=None):
    """A copy of the exported student file without the arrays ``drop``, with ``add``, and with
    ``change[name](array)`` in place of an array."""
    with np.load(exported.path) as archive:
        arrays = {name: value for name, value in archive.items() if name not in drop}
    arrays.update(add or {})
    for name, function in (change or {}).items():
        arrays[name] = function(arrays[name])
    np.savez(tmp_path / "spoilt.npz", **arrays)
    return tmp_path / "spoilt.npz"


def _a_param(exported, suffix: str) -> str:
    with np.load(exported.path) as archive:
        return next(name for name in archive.files if name.startswith("param.") and name.endswith(suffix))


@pytest.mark.parametrize("spoil, message", [
    (dict(drop=("config",)), r"lacks the array 'config'"),
    (dict(drop=("item_keys",)), r"lacks the array 'item_keys'"),
    (dict(drop=("users.user_id",)), r"lacks the array 'users.user_id'"),
    (dict(drop=("users.recent.offsets",)), r"lacks the array 'users.recent.offsets'"),
    (dict(add={"param.student.extra": np.zeros(2)}), r"holds array\(s\) \['param.student.extra'\] that its student does not read"),
    (dict(change={"config": lambda value: np.array("{not json")}), r": its 'config' is not a student's"),
    (dict(change={"config": lambda value: np.array('{"kind": "forest"}')}), r": its 'config' is not a student's \(config: unknown model kind"),
    (dict(change={"user_keys": lambda keys: keys[::-1].copy()}), r": user_keys: expected unique keys in increasing order"),
    (dict(change={"item_keys": lambda keys: keys.astype(np.float64)}), r": item_keys: expected a non-empty 1-d integer array"),
    (dict(change={"items.item_id": lambda ids: ids + 1000}), r": items: columns\['item_id'\]: id \d+ is outside the table"),
    (dict(change={"users.age": lambda age: age[:-1]}), r": users: columns\['age'\]: expected shape"),
])
def test_a_spoilt_student_file_is_a_clear_error_naming_the_file_and_array(tmp_path, exported, spoil, message):
    path = _spoil(tmp_path, exported, **spoil)
    with pytest.raises(ValueError, match=f"^model: '{path}'{message}" if message.startswith(":") else
                       f"^model: '{path}' {message}"):
        ServedStudent.load(path)


@pytest.mark.parametrize("change, message", [
    (lambda w: np.where(np.arange(w.size).reshape(w.shape) == 0, np.nan, w), r"contains NaN or infinity"),
    (lambda w: w[:-1], r"expected shape"),
    (lambda w: w.astype(np.float32), r"expected a float32 array of shape .*, got float64"),  # mixed dtypes
])
def test_a_student_parameter_of_the_wrong_value_shape_or_dtype_is_refused_at_load(tmp_path, exported, change, message):
    path = _spoil(tmp_path, exported, change={_a_param(exported, "0.weight"): change})
    with pytest.raises(ValueError, match=f"^model: '{path}': .*{message}"):
        ServedStudent.load(path)


@pytest.mark.parametrize("users, message", [
    ([1.7], r"^users: expected integer user ids, got 1.7"),
    ([True], r"^users: expected integer user ids, got True"),
    (["3"], r"^users: expected integer user ids, got '3'"),
    ([2**70], r"^users: user 1180591620717411303424 is not in the exported student's user table \(ids are 64-bit\)"),
    (np.array([2**64 - 1], dtype=np.uint64), r"^users: user 18446744073709551615 is not in the exported"),
    ([-1], r"^users: user -1 is not in the exported student's user table"),
])
def test_user_keys_that_are_not_table_integers_are_refused(exported, users, message):
    """top_k([1.7]) would have scored user 1, and 2**70 raised an OverflowError."""
    with pytest.raises(ValueError, match=message):
        exported.served.top_k(users, 3)


@pytest.mark.parametrize("k", [0, -2, 1.5, True])
def test_k_must_be_a_positive_integer(exported, k):
    user = int(exported.served.user_keys[0])
    with pytest.raises(ValueError, match=r"^k: expected an integer >= 1"):
        exported.served.top_k([user], k)


# --------------------------------------------------------------------------- one request's candidates


def brute_force_candidates(result, data, user: int, candidate_keys, k: int):
    """The student's own ``forward`` on (user, candidate) pairs, ranked by score, then catalogue key."""
    keys, logits = brute_force_top_k(result, data, user, len(np.unique(data.columns["item_id"])))
    logit_of = dict(zip(keys.tolist(), logits.tolist()))
    scores = np.array([logit_of[key] for key in candidate_keys])
    order = np.lexsort((candidate_keys, -scores))[:k]
    return np.asarray(candidate_keys)[order], scores[order]


def test_rank_candidates_equals_the_plain_forward_on_the_candidates(exported, data):
    item_keys = np.unique(data.columns["item_id"])
    candidates = np.concatenate([item_keys[::3], item_keys[3:4]])  # item_keys[3] listed twice: ranked twice
    for user in [int(u) for u in np.unique(data.user_ids)[[0, -1]]]:
        for k in (4, len(candidates) + 2):
            items, scores = exported.served.rank_candidates(user, candidates, k)
            expected_items, expected_scores = brute_force_candidates(exported.result, data, user, candidates, k)
            np.testing.assert_array_equal(items, expected_items)
            np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-10)
    assert np.sum(items == item_keys[3]) == 2


@pytest.mark.parametrize("layers", list(LAYERS))
def test_split_first_layer_reassembles_the_exported_first_weight_matrix(exports, data, layers):
    served = exports["mlp", layers].served
    model, params = served.model, served.params
    w0 = params[model.mlp.names[0][0]]
    blocks = served.first_layer
    assert sum(block.shape[0] for block in blocks.values()) == w0.shape[0] and blocks["cross"].shape[0] == 0
    rows = data.take(np.arange(7))
    x, _ = model.encoder.forward(params, rows, w0.dtype)
    by_blocks = 0
    for tower in ("user", "item"):
        encoder = FieldEncoder(tuple(f for f in model.fields if f.tower == tower), model.embed_dim, model.encoder.table_names)
        by_blocks = by_blocks + encoder.forward(params, rows, w0.dtype)[0] @ blocks[tower]
    np.testing.assert_allclose(by_blocks, x @ w0, rtol=0, atol=1e-12)


def _rewrite(path, out, change):
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    with open(out, "wb") as handle:
        np.savez(handle, **arrays)
    return out


def test_an_mlp_export_without_its_split_first_layer_is_rejected(exports, tmp_path):
    path = exports["mlp", "plain"].path
    missing = _rewrite(path, tmp_path / "old.npz", lambda a: a.pop("first_layer.item"))
    with pytest.raises(ValueError, match=r"old\.npz': the MLP student's split first layer is missing \(first_layer.item\)"):
        ServedStudent.load(missing)
    tampered = _rewrite(path, tmp_path / "tampered.npz", lambda a: a.update({"first_layer.user": 2 * a["first_layer.user"]}))
    with pytest.raises(ValueError, match=r"tampered\.npz': first_layer.user .* is not the user block"):
        ServedStudent.load(tampered)


def test_unknown_candidates_are_rejected_naming_candidates(exported, data):
    unknown = int(data.columns["item_id"].max()) + 7
    with pytest.raises(ValueError, match=rf"^candidates: item {unknown} is not in the exported student's catalogue"):
        exported.served.rank_candidates(int(data.user_ids[0]), [int(data.columns["item_id"][0]), unknown], 3)
    with pytest.raises(ValueError, match=r"^candidates: expected integer item keys"):
        exported.served.rank_candidates(int(data.user_ids[0]), [1.5], 3)
    items, scores = exported.served.rank_candidates(int(data.user_ids[0]), [], 3)
    assert items.shape == scores.shape == (0,)


def test_tower_cost_figure_counts_multiply_adds_and_times_both_ways():
    figure = tower_cost_figure(candidates=32, repeats=1)
    assert figure["multiply_adds_tower"] == 1024 * 512 + 512 * 256 + 256 * 128
    assert figure["multiply_add_ratio"] == figure["multiply_adds_tower"] / 128
    for way in ("", "_one_at_a_time"):
        assert figure[f"tower_s{way}"] > 0 and figure[f"inner_product_s{way}"] > 0
        assert figure[f"time_ratio{way}"] == figure[f"tower_s{way}"] / figure[f"inner_product_s{way}"]


@pytest.mark.parametrize("candidates", [[2**63], np.array([2**64 - 1], dtype=np.uint64), [2**70]])
def test_a_candidate_key_beyond_64_bits_is_refused_not_wrapped(exported, data, candidates):
    """A key past int64 was cast with astype(np.int64) and wrapped round onto another number,
    which could be a real item of the catalogue; it is refused, naming the key."""
    with pytest.raises(ValueError, match=r"^candidates: item \d+ is not in the exported student's catalogue \(ids are 64-bit\)"):
        exported.served.rank_candidates(int(data.user_ids[0]), candidates, 3)

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref.schema import FeatureSpec, Schema


def _user(name="user_id", vocab=10):
    return FeatureSpec(name, "categorical", "regular", "user", vocab)


def _schema():
    return Schema((
        _user(),
        FeatureSpec("history", "multi_categorical", "regular", "user", 5, pooling="sum"),
        FeatureSpec("item_id", "categorical", "regular", "item", 7),
        FeatureSpec("price", "dense", "regular", "item", width=2),
        FeatureSpec("clicks_24h", "dense", "privileged", None),
    ))


@pytest.mark.parametrize("kwargs, field", [
    (dict(name="", kind="categorical", role="regular", tower="user", vocab_size=3), "name"),
    (dict(name=3, kind="categorical", role="regular", tower="user", vocab_size=3), "name"),
    (dict(name="recent.values", kind="categorical", role="regular", tower="user", vocab_size=3), "name"),
    (dict(name="a", kind="sparse", role="regular", tower="user", vocab_size=3), "kind"),
    (dict(name="a", kind="categorical", role="secret", tower="user", vocab_size=3), "role"),
    (dict(name="a", kind="categorical", role="regular", tower=None, vocab_size=3), "tower"),
    (dict(name="a", kind="categorical", role="regular", tower="query", vocab_size=3), "tower"),
    (dict(name="a", kind="dense", role="privileged", tower="user"), "tower"),
    (dict(name="a", kind="categorical", role="regular", tower="user", vocab_size=0), "vocab_size"),
    (dict(name="a", kind="multi_categorical", role="regular", tower="user", vocab_size=0), "vocab_size"),
    (dict(name="a", kind="categorical", role="regular", tower="user", vocab_size=2.5), "vocab_size"),
    (dict(name="a", kind="categorical", role="regular", tower="user", vocab_size=True), "vocab_size"),
    (dict(name="a", kind="categorical", role="regular", tower="user", vocab_size=3, width=2), "width"),
    (dict(name="a", kind="dense", role="regular", tower="item", width=0), "width"),
    (dict(name="a", kind="dense", role="regular", tower="item", vocab_size=4), "vocab_size"),
    (dict(name="a", kind="multi_categorical", role="regular", tower="user", vocab_size=3, pooling="max"), "pooling"),
])
def test_feature_spec_rejects_bad_fields_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        FeatureSpec(**kwargs)


def test_feature_spec_is_frozen_and_stores_numpy_integers_as_int():
    spec = FeatureSpec("a", "categorical", "regular", "user", np.int64(12))
    assert type(spec.vocab_size) is int and spec.vocab_size == 12
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.vocab_size = 3


def test_feature_spec_dict_round_trip_and_bad_dicts():
    spec = FeatureSpec("h", "multi_categorical", "regular", "user", 9, pooling="sum")
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="^data:"):
        FeatureSpec.from_dict({**spec.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="^data:"):
        FeatureSpec.from_dict(["h"])


def test_schema_queries():
    schema = _schema()
    assert schema.names == ("user_id", "history", "item_id", "price", "clicks_24h")
    assert [s.name for s in schema.regular()] == ["user_id", "history", "item_id", "price"]
    assert [s.name for s in schema.regular("user")] == ["user_id", "history"]
    assert [s.name for s in schema.regular("item")] == ["item_id", "price"]
    assert [s.name for s in schema.privileged()] == ["clicks_24h"]
    assert schema["item_id"].vocab_size == 7
    assert "price" in schema and "nope" not in schema
    assert len(schema) == 5 and list(schema) == list(schema.features)
    with pytest.raises(KeyError, match="nope"):
        schema["nope"]
    with pytest.raises(ValueError, match="^tower:"):
        schema.regular("query")


def test_schema_rejects_duplicates_and_non_specs():
    with pytest.raises(ValueError, match="^features: duplicate.*user_id"):
        Schema((_user(), _user(vocab=3)))
    with pytest.raises(ValueError, match="^features:"):
        Schema((_user(), {"name": "x"}))


def test_schema_accepts_a_list_and_stores_a_tuple():
    schema = Schema([_user()])
    assert isinstance(schema.features, tuple)
    assert hash(schema) == hash(Schema((_user(),)))


specs = st.builds(
    lambda name, kind, role, tower, vocab, pooling, width: FeatureSpec(
        name, kind, role, tower if role == "regular" else None,
        vocab if kind != "dense" else 0, pooling, width if kind == "dense" else 1),
    name=st.text(min_size=1, max_size=8).filter(lambda name: "." not in name),
    kind=st.sampled_from(["categorical", "multi_categorical", "dense"]),
    role=st.sampled_from(["regular", "privileged"]),
    tower=st.sampled_from(["user", "item"]),
    vocab=st.integers(1, 10**9),
    pooling=st.sampled_from(["sum", "mean"]),
    width=st.integers(1, 64),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(specs, max_size=6, unique_by=lambda s: s.name))
def test_schema_json_round_trip(features):
    schema = Schema(tuple(features))
    assert Schema.from_json(schema.to_json()) == schema


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"features": 3}', '{"features": [{"name": "a"}]}'])
def test_schema_from_json_rejects_other_documents(text):
    with pytest.raises(ValueError):
        Schema.from_json(text)

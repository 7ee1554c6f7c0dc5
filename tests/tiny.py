"""Small random schemas and datasets for model and training tests (not a test module)."""

from __future__ import annotations

import numpy as np

from pfd_ref.data import Dataset, MultiIds
from pfd_ref.schema import FeatureSpec, Schema


def tiny_schema(vocab: int = 7, with_multi: bool = True, dense_width: int = 2) -> Schema:
    """User fields: user_id, (recent, multi-id, mean-pooled), age (dense); item fields:
    item_id, shop; privileged: cat_clicks (dense), chatted (categorical)."""
    features = [
        FeatureSpec("user_id", "categorical", "regular", "user", vocab_size=vocab),
        FeatureSpec("item_id", "categorical", "regular", "item", vocab_size=vocab + 2),
        FeatureSpec("shop", "categorical", "regular", "item", vocab_size=3),
        FeatureSpec("age", "dense", "regular", "user", width=dense_width),
        FeatureSpec("cat_clicks", "dense", "privileged", None, width=2),
        FeatureSpec("chatted", "categorical", "privileged", None, vocab_size=2),
    ]
    if with_multi:
        features.insert(1, FeatureSpec("recent", "multi_categorical", "regular", "user", vocab_size=5, pooling="mean"))
    return Schema(tuple(features))


def tiny_dataset(rng: np.random.Generator, n: int, schema: Schema | None = None, weights: bool = False) -> Dataset:
    """``n`` random rows of ``schema`` with both label classes present (when n >= 2)."""
    schema = schema or tiny_schema()
    columns = {}
    for f in schema.features:
        if f.kind == "categorical":
            columns[f.name] = rng.integers(0, f.vocab_size, n).astype(np.int64)
        elif f.kind == "dense":
            columns[f.name] = rng.standard_normal((n, f.width))
        else:
            lengths = rng.integers(0, 4, n)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            columns[f.name] = MultiIds(rng.integers(0, f.vocab_size, offsets[-1]).astype(np.int64), offsets)
    labels = (rng.random(n) < 0.4).astype(np.int8)
    if n >= 2:
        labels[0], labels[1] = 0, 1
    w = rng.uniform(0.5, 2.0, n) if weights else None
    return Dataset(schema, columns, labels, user_ids=columns["user_id"].copy(),
                   day=np.arange(n, dtype=np.int64) % 3, weights=w)

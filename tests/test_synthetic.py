import dataclasses

import numpy as np
import pytest
from scipy.stats import rankdata

from pfd_ref.data import Dataset, MultiIds, SyntheticConfig, bayes_logits, generate
from pfd_ref.data.synthetic import GroupedSampler

SMALL = SyntheticConfig(n_users=600, n_items=600, n_categories=20, n_shops=60, n_days=4, test_days=1,
                        ctr_impressions_per_user_day=12.0, cvr_impressions_per_user_day=100.0, seed=3)
REGULAR = {
    "user": ["user_id", "age_bucket", "gender", "purchase_power", "recent_categories"],
    "item": ["item_id", "category", "shop", "price_bucket"],
}
PRIVILEGED = {
    "ctr": ["clicks_in_category_24h", "clicks_in_shop_24h"],
    "cvr": ["dwell_time", "viewed_reviews", "chatted_with_seller"],
}


def rank_auc(labels, scores):
    """Mann-Whitney AUC with mid-ranks for ties."""
    ranks = rankdata(scores)
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _arrays(data: Dataset) -> list[np.ndarray]:
    out = [data.labels, data.user_ids, data.day]
    for name in data.schema.names:
        column = data.columns[name]
        out += list(column) if isinstance(column, MultiIds) else [column]
    return out


def _privileged_score(data: Dataset) -> np.ndarray:
    return sum(data.columns[spec.name][:, 0] for spec in data.schema.privileged())


@pytest.fixture(scope="module", params=["ctr", "cvr"])
def small(request):
    task = request.param
    return task, generate(task, SMALL)


def test_generation_is_bit_identical_for_one_config(small):
    task, (train, test) = small
    again = generate(task, SMALL)
    for first, second in zip(_arrays(train) + _arrays(test), _arrays(again[0]) + _arrays(again[1])):
        assert first.dtype == second.dtype and first.tobytes() == second.tobytes()


def test_another_seed_gives_other_data(small):
    task, (train, _) = small
    other, _ = generate(task, dataclasses.replace(SMALL, seed=4))
    assert other.n != train.n or not np.array_equal(other.columns["item_id"], train.columns["item_id"])


def test_schema_roles_towers_and_shapes(small):
    task, (train, test) = small
    schema = train.schema
    assert test.schema == schema
    assert [s.name for s in schema.regular("user")] == REGULAR["user"]
    assert [s.name for s in schema.regular("item")] == REGULAR["item"]
    assert [s.name for s in schema.privileged()] == PRIVILEGED[task]
    assert all(s.kind == "dense" and s.width == 1 and s.tower is None for s in schema.privileged())
    assert schema["recent_categories"].kind == "multi_categorical" and schema["recent_categories"].pooling == "mean"
    assert schema["user_id"].vocab_size == SMALL.n_users and schema["item_id"].vocab_size == SMALL.n_items
    np.testing.assert_array_equal(train.user_ids, train.columns["user_id"])
    for data in (train, test):
        for spec in schema.privileged():
            assert data.columns[spec.name].shape == (data.n, 1) and data.columns[spec.name].dtype == np.float64


def test_time_split_puts_the_last_days_in_test(small):
    _, (train, test) = small
    last_train_day = SMALL.n_days - SMALL.test_days - 1
    assert train.day.min() == 0 and train.day.max() == last_train_day
    assert test.day.min() == last_train_day + 1 and test.day.max() == SMALL.n_days - 1
    assert np.all(np.diff(train.day) >= 0)


def test_positive_rates_are_in_a_sane_range(small):
    task, (train, test) = small
    for data in (train, test):
        assert 0.02 < data.positive_rate < 0.25, (task, data.positive_rate)


def test_dense_features_are_of_order_one(small):
    _, (train, _) = small
    for spec in train.schema.privileged():
        column = train.columns[spec.name]
        assert abs(column.mean()) < 2 and 0 < column.std() < 2


def test_cvr_rows_are_clicks_of_the_ctr_world():
    ctr_train, _ = generate("ctr", SMALL)
    cvr_train, _ = generate("cvr", SMALL)
    # same world: an item has the same category, shop and price bucket in both tasks
    common = np.intersect1d(ctr_train.columns["item_id"], cvr_train.columns["item_id"])
    assert len(common) > 50
    for name in ("category", "shop", "price_bucket"):
        ctr_map = dict(zip(ctr_train.columns["item_id"], ctr_train.columns[name]))
        cvr_map = dict(zip(cvr_train.columns["item_id"], cvr_train.columns[name]))
        assert all(ctr_map[i] == cvr_map[i] for i in common)


@pytest.mark.parametrize("task", ["ctr", "cvr"])
def test_privileged_signal_grows_with_strength_and_nothing_else_changes(task):
    scores, reference = [], None
    for strength in (0.0, 1.0, 8.0):
        train, _ = generate(task, dataclasses.replace(SMALL, privileged_strength=strength))
        regular = [a for a in _arrays(train) if not any(a is train.columns[s.name] for s in train.schema.privileged())]
        assert len(regular) == 13  # labels, user ids, days, 8 single columns, values + offsets of the multi-id one
        if reference is None:
            reference = regular
        assert all(np.array_equal(a, b) for a, b in zip(regular, reference))
        scores.append(rank_auc(train.labels, _privileged_score(train)))
    assert abs(scores[0] - 0.5) < 0.04, scores  # the standard deviation across seeds is about 0.013
    assert scores[0] + 0.06 < scores[1] < scores[2] and scores[2] > 0.6, scores


@pytest.mark.parametrize("task", ["ctr", "cvr"])
def test_history_intent_share_changes_the_history_alone(task):
    """h = 1: every history entry is one of the user-day's two intent categories (so at most 2
    distinct values a row); h = 0.5: a mix; every other array stays that of h = 0 (the default)."""
    reference, _ = generate(task, SMALL)
    history = reference.columns["recent_categories"]
    distinct = lambda h: [len(set(h.values[h.offsets[i]:h.offsets[i + 1]])) for i in range(len(h.offsets) - 1)]  # noqa: E731
    assert max(distinct(history)) > 2
    for share in (0.5, 1.0):
        train, _ = generate(task, dataclasses.replace(SMALL, history_intent_share=share))
        changed = train.columns["recent_categories"]
        assert np.array_equal(changed.offsets, history.offsets)
        assert 0 < np.mean(changed.values != history.values) < 1
        others = [a for a in _arrays(train) if a is not changed.values]
        assert all(np.array_equal(a, b) for a, b in zip(others, [a for a in _arrays(reference) if a is not history.values]))
    assert max(distinct(changed)) == 2


@pytest.mark.parametrize("task", ["ctr", "cvr"])
def test_bayes_logits_are_row_aligned_and_calibrated(task):
    train, test = generate(task, SMALL)
    train_logits, test_logits = bayes_logits(task, SMALL)
    assert train_logits.shape == (train.n,) and test_logits.shape == (test.n,)
    assert train_logits.dtype == np.float64
    probs = 1.0 / (1.0 + np.exp(-train_logits))
    # labels are Bernoulli(sigmoid(logit)): counts agree within a few standard deviations
    assert abs(train.labels.sum() - probs.sum()) < 4 * np.sqrt(np.sum(probs * (1 - probs)))
    above = train_logits > np.median(train_logits)
    assert train.labels[above].mean() > 2 * train.labels[~above].mean()
    assert rank_auc(test.labels, test_logits) > rank_auc(test.labels, _privileged_score(test))


def test_default_config_sizes_and_rates():
    train, test = generate("ctr", SyntheticConfig())
    assert 300_000 <= train.n <= 500_000 and 0.05 < train.positive_rate < 0.10
    assert test.n > 30_000 and 0.05 < test.positive_rate < 0.10
    train, test = generate("cvr", SyntheticConfig())
    assert 150_000 <= train.n <= 250_000 and 0.03 < train.positive_rate < 0.12
    assert test.n > 15_000


def test_bad_task_config_and_empty_positives_are_errors():
    with pytest.raises(ValueError, match="^task:"):
        generate("gmv", SMALL)
    with pytest.raises(ValueError, match="^config:"):
        generate("ctr", {"n_users": 10})
    with pytest.raises(ValueError, match="^config: the ctr training split .*no positive label"):
        generate("ctr", dataclasses.replace(SMALL, click_bias=-60.0))


@pytest.mark.parametrize("kwargs, field", [
    (dict(n_users=0), "n_users"), (dict(n_items=2.5), "n_items"), (dict(n_items=10, n_categories=20), "n_items"),
    (dict(n_days=1, test_days=1), "n_days"), (dict(test_days=4), "test_days"), (dict(test_days=0), "test_days"),
    (dict(seed=-1), "seed"), (dict(privileged_strength=-0.5), "privileged_strength"),
    (dict(click_bias=float("inf")), "click_bias"), (dict(history_length="5"), "history_length"),
    (dict(history_intent_share=1.5), "history_intent_share"), (dict(history_intent_share=-0.1), "history_intent_share"),
])
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        dataclasses.replace(SMALL, **kwargs)


def test_grouped_sampler_draws_members_of_the_group_by_weight():
    groups = np.array([1, 0, 1, 2, 1, 0])
    members = np.arange(6)
    weights = np.array([1.0, 3.0, 0.0, 5.0, 3.0, 1.0])
    sampler = GroupedSampler(groups, members, weights)
    rng = np.random.default_rng(0)
    draws = sampler.sample(rng, np.repeat([0, 1, 2], 20_000))
    by_group = draws.reshape(3, -1)
    assert set(by_group[0]) == {1, 5} and set(by_group[1]) == {0, 4} and set(by_group[2]) == {3}
    assert np.mean(by_group[0] == 1) == pytest.approx(0.75, abs=0.015)
    assert np.mean(by_group[1] == 4) == pytest.approx(0.75, abs=0.015)

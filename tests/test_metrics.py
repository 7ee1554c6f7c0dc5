"""Tests of pfd_ref.metrics against brute-force and hand-computed values."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pfd_ref.metrics import auc, calibration, evaluate, gauc, logloss, paired_comparison


def brute_force_auc(labels, scores):
    """Fraction of (positive, negative) pairs ordered correctly, ties counted 1/2: O(n_pos n_neg)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def brute_force_gauc(labels, scores, groups):
    total, weight = 0.0, 0
    for g in np.unique(groups):
        y, s = labels[groups == g], scores[groups == g]
        if 0 < y.sum() < len(y):
            total += len(y) * brute_force_auc(y, s)
            weight += len(y)
    return total / weight


# Scores drawn from a few values so that ties are common.
tied_scores = st.lists(st.integers(-3, 3), min_size=2, max_size=40)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_auc_matches_pair_count_with_ties(data, dtype):
    raw = data.draw(tied_scores)
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=len(raw), max_size=len(raw))), np.int8)
    assume(0 < labels.sum() < len(labels))
    scores = (np.array(raw) * 0.25).astype(dtype)
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)


def test_auc_known_values():
    labels = np.array([0, 0, 1, 1])
    assert auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auc(labels, np.full(4, 0.3)) == 0.5
    # pairs (0.5 vs 0.1) win, (0.5 vs 0.5) tie, (0.2 vs 0.1) win, (0.2 vs 0.5) loss: 2.5 / 4
    assert auc(labels, np.array([0.1, 0.5, 0.5, 0.2])) == 0.625


def test_auc_accepts_bool_and_float_labels():
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    assert auc(np.array([False, True, False, True]), scores) == 0.75
    assert auc(np.array([0.0, 1.0, 0.0, 1.0]), scores) == 0.75


def test_gauc_by_hand():
    #            group 1: AUC 1, n 3 | group 2: AUC 1.5/4, n 4 | group 3 and 4: one class, skipped
    groups = np.array([2, 1, 3, 2, 1, 4, 2, 3, 1, 2])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 1, 0, 0])
    scores = np.array([0.2, 0.9, 0.3, 0.6, 0.1, 0.5, 0.4, 0.7, 0.5, 0.6])
    assert gauc(labels, scores, groups) == pytest.approx((3 * 1.0 + 4 * 0.375) / 7, abs=1e-15)


def test_gauc_of_one_group_equals_auc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(size=500), 1)
    assert gauc(labels, scores, np.full(500, 42)) == pytest.approx(auc(labels, scores), abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_gauc_matches_brute_force(data, dtype):
    raw = data.draw(tied_scores)
    n = len(raw)
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    groups = np.array(data.draw(st.lists(st.integers(-2, 3), min_size=n, max_size=n)), np.int64)
    assume(any(0 < labels[groups == g].sum() < (groups == g).sum() for g in np.unique(groups)))
    scores = np.array(raw, dtype)
    assert gauc(labels, scores, groups) == pytest.approx(brute_force_gauc(labels, scores, groups), abs=1e-12)


def test_gauc_matches_per_group_auc_on_many_groups():
    rng = np.random.default_rng(1)
    n, n_groups = 20000, 2000
    groups = rng.integers(0, n_groups, n) * 7919  # sparse, unsorted ids
    labels = (rng.random(n) < 0.3).astype(np.int8)
    scores = np.round(rng.normal(size=n), 2).astype(np.float32)
    total = weight = 0.0
    for g in np.unique(groups):
        in_group = groups == g
        if 0 < labels[in_group].sum() < in_group.sum():
            total += in_group.sum() * auc(labels[in_group], scores[in_group])
            weight += in_group.sum()
    assert gauc(labels, scores, groups) == pytest.approx(total / weight, abs=1e-12)


def _direct_logloss(labels, logits):
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 50))
def test_logloss_matches_direct_formula(seed, n):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    # |x| <= 8 keeps the naive log(1 - p) of the reference accurate to ~1e-13
    logits = np.clip(rng.normal(scale=4.0, size=n), -8.0, 8.0)
    assert logloss(labels, logits) == pytest.approx(_direct_logloss(labels, logits), rel=1e-12)
    assert logloss(labels, logits.astype(np.float32)) == pytest.approx(
        _direct_logloss(labels, logits.astype(np.float32)), rel=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logloss_is_stable_for_extreme_logits(dtype):
    # -log sigmoid(-1e4) = 1e4 + log(1 + e^-1e4) = 1e4 up to rounding; a naive formula gives inf
    assert logloss(np.array([1, 0]), np.array([-1e4, 1e4], dtype)) == pytest.approx(1e4, rel=1e-7)
    assert logloss(np.array([1, 0]), np.array([1e4, -1e4], dtype)) == 0.0


def test_calibration_by_hand():
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4
    result = calibration(np.array([1, 0, 0]), np.array([0.0, 0.0, math.log(3.0)]))
    assert result["mean_predicted"] == pytest.approx(1.75 / 3, rel=1e-15)
    assert result["observed_rate"] == pytest.approx(1 / 3, rel=1e-15)
    assert result["ratio"] == pytest.approx(1.75, rel=1e-14)


def test_calibration_ratio_is_nan_without_positives():
    result = calibration(np.array([0, 0]), np.array([0.0, 1.0]))
    assert result["observed_rate"] == 0.0 and math.isnan(result["ratio"])


def test_evaluate_collects_the_metrics():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 300)
    logits = rng.normal(size=300).astype(np.float32)
    groups = rng.integers(0, 20, 300)
    result = evaluate(labels, logits, groups)
    assert set(result) == {"auc", "gauc", "logloss", "mean_predicted", "observed_rate"}
    assert result["auc"] == auc(labels, logits)
    assert result["gauc"] == gauc(labels, logits, groups)
    assert result["logloss"] == logloss(labels, logits)
    assert result["mean_predicted"] == calibration(labels, logits)["mean_predicted"]
    assert result["observed_rate"] == labels.mean()
    assert all(isinstance(v, float) for v in result.values())


# ---------------------------------------------------------------- paired comparison

def test_paired_comparison_matches_manual_t_test():
    values, baseline = np.array([0.71, 0.73, 0.76]), np.array([0.70, 0.71, 0.72])
    gain = values - baseline
    mean = gain.sum() / 3
    std = math.sqrt(((gain - mean) ** 2).sum() / 2)
    t = mean / (std / math.sqrt(3))
    # Student t with 2 degrees of freedom: P(|T| >= t) = 1 - t / sqrt(t^2 + 2)
    p = 1 - t / math.sqrt(t * t + 2)
    result = paired_comparison(values, baseline)
    assert result["n"] == 3
    assert result["mean_gain"] == pytest.approx(mean, rel=1e-12)
    assert result["std_gain"] == pytest.approx(std, rel=1e-12)
    assert result["t_statistic"] == pytest.approx(t, rel=1e-10)
    assert result["p_value"] == pytest.approx(p, rel=1e-10)


def test_paired_comparison_is_antisymmetric():
    values, baseline = np.array([0.5, 0.7, 0.2, 0.4]), np.array([0.4, 0.5, 0.3, 0.1])
    forward, backward = paired_comparison(values, baseline), paired_comparison(baseline, values)
    assert backward["mean_gain"] == pytest.approx(-forward["mean_gain"])
    assert backward["t_statistic"] == pytest.approx(-forward["t_statistic"])
    assert backward["p_value"] == pytest.approx(forward["p_value"])


# Multiples of 1/8 so that the "identical gains" cases have bitwise equal differences.
@pytest.mark.parametrize("values, baseline, expected", [
    ([0.75], [0.5], dict(n=1, mean_gain=0.25, std_gain=math.nan, t_statistic=math.nan, p_value=math.nan)),
    ([0.375, 0.5, 0.625], [0.125, 0.25, 0.375], dict(n=3, mean_gain=0.25, std_gain=0.0, t_statistic=math.inf,
                                                      p_value=0.0)),
    ([0.125, 0.25], [0.375, 0.5], dict(n=2, mean_gain=-0.25, std_gain=0.0, t_statistic=-math.inf, p_value=0.0)),
    ([0.5, 0.625], [0.5, 0.625], dict(n=2, mean_gain=0.0, std_gain=0.0, t_statistic=math.nan, p_value=math.nan)),
])
def test_paired_comparison_degenerate_cases_without_warnings(values, baseline, expected):
    values, baseline = np.array(values), np.array(baseline)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_comparison(values, baseline)
    for key, value in expected.items():
        assert result[key] == value or (math.isnan(value) and math.isnan(result[key])), key


@pytest.mark.parametrize("values, baseline, message", [
    (np.array([0.1, 0.2]), np.array([0.1]), "^baseline: expected shape"),
    (np.array([0.1, np.nan]), np.array([0.1, 0.2]), "^values: contains NaN"),
    (np.array([0.1, 0.2]), np.array([0.1, 0.2], np.float32), "dtype mismatch"),
    (np.zeros(0), np.zeros(0), "^values: empty"),
    ([0.1, 0.2], np.array([0.1, 0.2]), "^values: expected a numpy array"),
])
def test_paired_comparison_errors(values, baseline, message):
    with pytest.raises(ValueError, match=message):
        paired_comparison(values, baseline)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("labels, scores, message", [
    (np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3]), "^labels: AUC needs both classes"),
    (np.array([0, 0]), np.array([0.1, 0.2]), "^labels: AUC needs both classes"),
    (np.array([0, 1]), np.array([0.1, 0.2, 0.3]), "^labels: expected shape"),
    (np.array([0, 2]), np.array([0.1, 0.2]), "^labels: labels must be 0 or 1"),
    (np.array([0, 1]), np.array([0.1, np.nan]), "^scores: contains NaN"),
    (np.array([0, 1]), np.array([[0.1, 0.2]]), "^scores: expected 1 dimension"),
    (np.array([0, 1]), np.array([1, 2]), "^scores: expected float32 or float64"),
    (np.zeros(0), np.zeros(0), "^labels: empty"),
])
def test_auc_and_gauc_errors(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        auc(labels, scores)
    with pytest.raises(ValueError, match=message):
        gauc(labels, scores, np.zeros(len(labels), np.int64))


def test_gauc_errors_name_groups():
    labels, scores = np.array([1, 0, 1, 0]), np.array([0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="^groups: no group holds both classes"):
        gauc(labels, scores, np.array([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="^groups: expected integer ids"):
        gauc(labels, scores, np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="^groups: expected integer ids"):
        gauc(labels, scores, np.array([1.0, 1.0, 2.0, 2.0]))


@pytest.mark.parametrize("function", [logloss, calibration])
def test_logloss_and_calibration_errors(function):
    with pytest.raises(ValueError, match="^logits: contains NaN"):
        function(np.array([0, 1]), np.array([0.1, np.inf]))
    with pytest.raises(ValueError, match="^labels: expected shape"):
        function(np.array([0, 1, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="^labels: empty"):
        function(np.zeros(0), np.zeros(0))

"""Tests of pfd_ref.metrics against brute-force and hand-computed values."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scipy import stats

from pfd_ref.metrics import (auc, calibration, evaluate, gauc, logloss, normalized_entropy, paired_comparison,
                             paired_t_power, seeds_needed)


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
    # 95% t-interval: t_{0.975, 2} = 4.302652729... (tables), half width t * std / sqrt(3)
    half_width = 4.302652729749464 * std / math.sqrt(3)
    assert result["ci_low"] == pytest.approx(mean - half_width, rel=1e-9)
    assert result["ci_high"] == pytest.approx(mean + half_width, rel=1e-9)


def test_paired_comparison_is_antisymmetric():
    values, baseline = np.array([0.5, 0.7, 0.2, 0.4]), np.array([0.4, 0.5, 0.3, 0.1])
    forward, backward = paired_comparison(values, baseline), paired_comparison(baseline, values)
    assert backward["mean_gain"] == pytest.approx(-forward["mean_gain"])
    assert backward["t_statistic"] == pytest.approx(-forward["t_statistic"])
    assert backward["p_value"] == pytest.approx(forward["p_value"])


# Multiples of 1/8 so that the "identical gains" cases have bitwise equal differences.
@pytest.mark.parametrize("values, baseline, expected", [
    ([0.75], [0.5], dict(n=1, mean_gain=0.25, std_gain=math.nan, t_statistic=math.nan, p_value=math.nan,
                         ci_low=math.nan, ci_high=math.nan)),
    ([0.375, 0.5, 0.625], [0.125, 0.25, 0.375], dict(n=3, mean_gain=0.25, std_gain=0.0, t_statistic=math.inf,
                                                      p_value=0.0, ci_low=0.25, ci_high=0.25)),
    ([0.125, 0.25], [0.375, 0.5], dict(n=2, mean_gain=-0.25, std_gain=0.0, t_statistic=-math.inf, p_value=0.0,
                                       ci_low=-0.25, ci_high=-0.25)),
    ([0.5, 0.625], [0.5, 0.625], dict(n=2, mean_gain=0.0, std_gain=0.0, t_statistic=math.nan, p_value=math.nan,
                                      ci_low=0.0, ci_high=0.0)),
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


# ---------------------------------------------------------------- weights, GAUC weightings, NE


def brute_force_weighted_auc(labels, scores, weights):
    pos, neg = labels == 1, labels == 0
    wins = (scores[pos][:, None] > scores[neg][None, :]) + 0.5 * (scores[pos][:, None] == scores[neg][None, :])
    products = weights[pos][:, None] * weights[neg][None, :]
    return np.sum(products * wins) / np.sum(products)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), weighting=st.sampled_from(["impressions", "uniform", "positives"]))
def test_weighted_auc_and_gauc_match_the_pairwise_count(data, weighting):
    raw = data.draw(tied_scores)
    n = len(raw)
    labels = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    groups = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int64)
    weights = np.array(data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=n, max_size=n)))
    scores = np.array(raw, np.float64)
    usable = [g for g in np.unique(groups)
              if weights[(groups == g) & (labels == 1)].sum() > 0 and weights[(groups == g) & (labels == 0)].sum() > 0]
    assume(usable)
    assert auc(labels, scores, weights) == pytest.approx(brute_force_weighted_auc(labels, scores, weights), abs=1e-12)
    total = norm = 0.0
    for g in usable:
        rows = groups == g
        y, w = labels[rows], weights[rows]
        c = {"impressions": w.sum(), "uniform": 1.0, "positives": w[y == 1].sum()}[weighting]
        total += c * brute_force_weighted_auc(y, scores[rows], w)
        norm += c
    assert gauc(labels, scores, groups, weighting, weights) == pytest.approx(total / norm, abs=1e-12)


def test_unit_weights_give_the_unweighted_metrics_bit_for_bit():
    rng = np.random.default_rng(4)
    labels, scores, groups = rng.integers(0, 2, 500), np.round(rng.normal(size=500), 1), rng.integers(0, 40, 500)
    ones = np.ones(500)
    assert auc(labels, scores, ones) == auc(labels, scores)
    assert gauc(labels, scores, groups, weights=ones) == gauc(labels, scores, groups)


def test_gauc_weightings_by_hand():
    # user 1: AUC 1 over 3 rows (1 positive); user 2: AUC 0.5 over 2 rows (1 positive), user 3: 1 over 4 (3 positives)
    groups = np.array([1, 1, 1, 2, 2, 3, 3, 3, 3])
    labels = np.array([1, 0, 0, 1, 0, 1, 1, 1, 0])
    scores = np.array([0.9, 0.1, 0.2, 0.5, 0.5, 0.8, 0.7, 0.6, 0.1])
    assert gauc(labels, scores, groups, "impressions") == pytest.approx((3 * 1 + 2 * 0.5 + 4 * 1) / 9, abs=1e-15)
    assert gauc(labels, scores, groups, "uniform") == pytest.approx((1 + 0.5 + 1) / 3, abs=1e-15)
    assert gauc(labels, scores, groups, "positives") == pytest.approx((1 + 0.5 + 3) / 5, abs=1e-15)
    with pytest.raises(ValueError, match="^weighting: expected one of"):
        gauc(labels, scores, groups, "sessions")


def test_weighted_logloss_calibration_and_normalized_entropy():
    labels, logits, weights = np.array([1, 0, 0, 1]), np.array([0.3, -1.0, 2.0, 0.0]), np.array([2.0, 1.0, 0.0, 1.0])
    p = 1 / (1 + np.exp(-logits))
    per_example = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert logloss(labels, logits, weights) == pytest.approx(np.sum(weights * per_example) / 4, rel=1e-14)
    rate = 3 / 4  # weighted positive rate: (2 + 1) / 4
    assert normalized_entropy(labels, logits, weights) == pytest.approx(
        np.sum(weights * per_example) / 4 / -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate)), rel=1e-14)
    result = calibration(labels, logits, weights)
    assert result["mean_predicted"] == pytest.approx(np.sum(weights * p) / 4, rel=1e-14)
    assert result["observed_rate"] == rate
    assert math.isnan(normalized_entropy(np.array([1, 1]), np.array([0.1, 0.2])))  # H(1) = 0
    with pytest.raises(ValueError, match="^weights: every weight is 0"):
        logloss(labels, logits, np.zeros(4))
    with pytest.raises(ValueError, match="^weights: must be non-negative"):
        auc(labels, logits, -weights)
    with pytest.raises(ValueError, match="^weights: the positives weigh 0"):
        auc(labels, logits, np.array([0.0, 1.0, 1.0, 0.0]))


# ---------------------------------------------------------------- power of the paired test


def test_power_matches_a_monte_carlo_of_the_paired_t_test():
    rng = np.random.default_rng(7)
    effect, std_gain, n, trials = 0.002, 0.003, 8, 20000
    gains = rng.normal(effect, std_gain, (trials, n))
    t = gains.mean(1) / (gains.std(1, ddof=1) / np.sqrt(n))
    simulated = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    # binomial standard error of the simulated rate: sqrt(0.5 * 0.5 / 20000) = 0.0035
    assert paired_t_power(effect, std_gain, n) == pytest.approx(simulated, abs=0.012)


def test_seeds_needed_is_the_first_count_with_enough_power():
    n = seeds_needed(0.0019, 0.0030)
    assert paired_t_power(0.0019, 0.0030, n) >= 0.8 > paired_t_power(0.0019, 0.0030, n - 1)
    assert seeds_needed(0.0033, 0.0012) == 4
    assert seeds_needed(-0.0033, 0.0012) == 4  # two-sided
    assert seeds_needed(0.01, 0.001) == 3  # even a huge effect: at n = 2 the critical t (1 df) is 12.7
    with pytest.raises(ValueError, match="^effect: 0.0 with std_gain 0.001 needs more than 50 seeds"):
        seeds_needed(0.0, 0.001, max_seeds=50)
    with pytest.raises(ValueError, match="^std_gain"):
        paired_t_power(0.1, 0.0, 5)
    with pytest.raises(ValueError, match="^n: expected an integer >= 2"):
        paired_t_power(0.1, 0.1, 1)

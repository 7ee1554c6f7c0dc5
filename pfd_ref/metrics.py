"""Evaluation metrics: AUC, group AUC, log loss and calibration from logits, and the paired
comparison of a method with a baseline across seeds. Definitions: docs/metrics.md.

Every metric returns a Python float computed in float64 from float32 or float64 inputs (the
inputs are never cast in place; element-wise terms are computed in the input's dtype and
accumulated in float64).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from pfd_ref.losses import log_sigmoid, sigmoid
from pfd_ref.validation import (check_choice, check_float_array, check_labels, check_probabilities, check_same_dtype, check_scalar,
                                check_weights)


def _check_labels_and_floats(labels, floats, floats_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate 1-d finite float ``floats`` and 0/1 ``labels`` of the same length (n >= 1)."""
    floats = check_float_array(floats_name, floats, ndim=1)
    labels = check_labels("labels", labels, floats.shape[0])
    if floats.shape[0] == 0:
        raise ValueError("labels: empty; at least one example is needed")
    return labels, floats


def _check_both_classes(labels: np.ndarray) -> None:
    """Raise unless both classes occur."""
    n_pos = int(np.count_nonzero(labels))
    if n_pos == 0 or n_pos == labels.shape[0]:
        raise ValueError(f"labels: AUC needs both classes, got {n_pos} positive(s) among {labels.shape[0]}")


GAUC_WEIGHTINGS = ("impressions", "uniform", "positives")
# Who uses which weighting of the per-group AUCs (docs/metrics.md cites the files):
GAUC_WEIGHTING_USERS = {
    "impressions": "pfd_ref's tables (the DIN paper's definition), FuxiCTR gAUC, EasyRec reduction 'mean_by_sample_num'",
    "uniform": "EasyRec gauc's default reduction 'mean', torchrec GAUCMetric, FuxiCTR avgAUC",
    "positives": "RecBole GAUC, EasyRec reduction 'mean_by_positive_num'",
}


def _check_metric_weights(weights, n: int) -> np.ndarray | None:
    """Sample weights for a metric: None, or ``(n,)`` float32/float64, finite, >= 0, not all 0."""
    weights = check_weights("weights", weights, n, None)
    if weights is not None and not np.any(weights > 0):
        raise ValueError("weights: every weight is 0; the weighted metrics are undefined")
    return weights


def _grouped_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, weights: np.ndarray | None):
    """Per group: ``(u, w_pos, w_neg)``, float64 arrays over the groups in sorted id order.

    ``u = sum_{i pos, j neg in g} w_i w_j ([s_i > s_j] + 1/2 [s_i = s_j])``; ``w_pos``, ``w_neg``
    the groups' positive and negative weight (counts when ``weights`` is None). One sort by
    (group, score); a tie block's positives beat the negatives of lower blocks in the group
    and tie with its own: ``u = sum_blocks W_pos,b (W_neg below b + W_neg,b / 2)``. With unit
    weights every sum is an integer or a half and exact in float64 below 2^53.
    """
    n = labels.shape[0]
    order = np.lexsort((scores, groups))
    sorted_groups, sorted_scores = groups[order], scores[order]
    positive = labels[order] == 1
    weight = np.ones(n) if weights is None else weights[order].astype(np.float64)
    positive_weight = np.where(positive, weight, 0.0)
    negative_weight = weight - positive_weight
    group_starts = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    block_starts = group_starts | np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    block_index = np.cumsum(block_starts) - 1
    block_positive = np.bincount(block_index, weights=positive_weight)
    block_negative = np.bincount(block_index, weights=negative_weight)
    block_group = (np.cumsum(group_starts) - 1)[block_starts]
    negative_before = np.cumsum(block_negative) - block_negative  # over all blocks of all groups
    first_block = np.flatnonzero(np.r_[True, block_group[1:] != block_group[:-1]])
    negative_below = negative_before - negative_before[first_block][block_group]  # within the group
    u = np.bincount(block_group, weights=block_positive * (negative_below + 0.5 * block_negative))
    return u, np.bincount(block_group, weights=block_positive), np.bincount(block_group, weights=block_negative)


def auc(labels, scores, weights=None) -> float:
    """Exact ROC AUC: the fraction of (positive, negative) pairs the scores order correctly,
    a tied pair counting 1/2, each pair weighted by ``w_i w_j`` when ``weights`` are given:

        AUC = sum_{i: y_i = 1} sum_{j: y_j = 0} w_i w_j ([s_i > s_j] + 1/2 [s_i = s_j])
              / (sum_{y_i = 1} w_i  sum_{y_j = 0} w_j)

    (unweighted: the Mann-Whitney U statistic over ``n_pos n_neg``; weighted: the area under
    the ROC curve with weighted counts, as ``sklearn.metrics.roc_auc_score(sample_weight=w)``).
    Computed by one sort and sums over tie blocks (``_grouped_auc``), exact for unit weights.

    labels : (n,) 0/1, any numeric dtype; both classes must occur (with positive weight).
    scores : (n,) float32 or float64, finite (logits or probabilities: AUC depends on order only).
    weights : None or (n,) float32/float64, finite, >= 0.
    """
    labels, scores = _check_labels_and_floats(labels, scores, "scores")
    _check_both_classes(labels)
    weights = _check_metric_weights(weights, labels.shape[0])
    u, w_pos, w_neg = _grouped_auc(labels, scores, np.zeros(labels.shape[0], np.int64), weights)
    if w_pos[0] == 0 or w_neg[0] == 0:
        raise ValueError(f"weights: the {'positives' if w_pos[0] == 0 else 'negatives'} weigh 0; AUC is undefined")
    return float(u[0] / (w_pos[0] * w_neg[0]))


def gauc(labels, scores, groups, weighting: str = "impressions", weights=None) -> float:
    """Group AUC: the per-group AUC averaged over the groups (e.g. users) that hold both classes,

        GAUC = sum_g c_g AUC_g / sum_g c_g

    with ``AUC_g`` = ``auc`` restricted to group g (ties 1/2, pairs weighted by ``w_i w_j``) and
    the group weight ``c_g`` by ``weighting`` (``GAUC_WEIGHTING_USERS`` names who uses which):
    "impressions" ``c_g = sum_{i in g} w_i`` (the group's rows; the default, the DIN paper's),
    "uniform" ``c_g = 1``, "positives" ``c_g = sum_{i in g, y_i = 1} w_i``. Groups with one
    class (or whose positives or negatives weigh 0) are skipped. No Python loop over rows or
    groups (``_grouped_auc``). With weights, a group's sums are differences of running sums
    over all rows: exact for integer weights, otherwise rounded relative to the total weight.

    labels : (n,) 0/1; scores : (n,) float32 or float64, finite; groups : (n,) integer ids;
    weights : None or (n,) float32/float64, finite, >= 0.
    Raises ValueError naming ``labels`` when a class is absent altogether, naming ``groups``
    when no single group holds both, naming ``weighting`` for an unknown weighting.
    """
    labels, scores = _check_labels_and_floats(labels, scores, "scores")
    groups = np.asarray(groups)
    if groups.dtype.kind not in "iu" or groups.shape != labels.shape:
        raise ValueError(f"groups: expected integer ids of shape {labels.shape}, got {groups.dtype} {groups.shape}")
    check_choice("weighting", weighting, GAUC_WEIGHTINGS)
    _check_both_classes(labels)
    weights = _check_metric_weights(weights, labels.shape[0])
    u, w_pos, w_neg = _grouped_auc(labels, scores, groups, weights)
    both = (w_pos > 0) & (w_neg > 0)
    if not both.any():
        raise ValueError(f"groups: no group holds both classes ({u.shape[0]} group(s)); GAUC is undefined")
    group_auc = u[both] / (w_pos[both] * w_neg[both])
    group_weight = {"impressions": w_pos[both] + w_neg[both], "uniform": np.ones(group_auc.shape[0]),
                    "positives": w_pos[both]}[weighting]
    return float(np.sum(group_weight * group_auc) / np.sum(group_weight))


def _mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    """``(1/n) sum_i v_i`` or ``sum_i w_i v_i / sum_i w_i``, accumulated in float64."""
    if weights is None:
        return float(np.mean(values, dtype=np.float64))
    weights = weights.astype(np.float64)
    return float(np.sum(weights * values, dtype=np.float64) / np.sum(weights))


def _log_loss_terms(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """``-log sigmoid(a_i x_i)``, ``a_i = 2 y_i - 1``: each example's cross-entropy, in the logits' dtype."""
    return -log_sigmoid(np.where(labels == 1, logits, -logits))


def logloss(labels, logits, weights=None) -> float:
    """Mean binary cross-entropy from logits, with the stable ``log_sigmoid``:

        logloss = -(1/n) sum_i [y_i log sigmoid(x_i) + (1 - y_i) log sigmoid(-x_i)]
                = -(1/n) sum_i log sigmoid(a_i x_i),   a_i = 2 y_i - 1

    and with ``weights`` the weighted mean ``sum_i w_i l_i / sum_i w_i`` (as
    ``sklearn.metrics.log_loss(sample_weight=w)``).

    labels : (n,) 0/1; logits : (n,) float32 or float64, finite; weights : None or (n,)
    float32/float64, finite, >= 0. Terms in the logits' dtype, mean accumulated in float64.
    """
    labels, logits = _check_labels_and_floats(labels, logits, "logits")
    return _mean(_log_loss_terms(labels, logits), _check_metric_weights(weights, labels.shape[0]))


def binary_entropy(p: float) -> float:
    """``H(p) = -p log p - (1 - p) log(1 - p)`` in nats for a rate ``p`` in [0, 1] (0 at 0 and 1)."""
    return float(-(special.xlogy(p, p) + special.xlog1py(1 - p, -p)))


def normalized_entropy(labels, logits, weights=None) -> float:
    """Normalised entropy (He et al., ADKDD 2014): the log loss over the entropy of the
    observed positive rate, i.e. relative to always predicting that rate:

        NE = logloss / H(p_bar),   p_bar = sum_i w_i y_i / sum_i w_i,   H(p) = -p log p - (1-p) log(1-p)

    (``w_i = 1`` without weights). Below 1 is better than the base rate; nan when only one
    class occurs (H = 0). Arguments as ``logloss``.
    """
    labels, logits = _check_labels_and_floats(labels, logits, "logits")
    weights = _check_metric_weights(weights, labels.shape[0])
    entropy = binary_entropy(_mean(labels, weights))
    return _mean(_log_loss_terms(labels, logits), weights) / entropy if entropy > 0 else math.nan


def calibration(labels, logits, weights=None) -> dict:
    """Mean predicted probability against the observed positive rate.

        mean_predicted = (1/n) sum_i sigmoid(x_i);  observed_rate = (1/n) sum_i y_i;
        ratio = mean_predicted / observed_rate   (nan when observed_rate = 0)

    With ``weights`` both means are weighted (``sum_i w_i v_i / sum_i w_i``).
    labels : (n,) 0/1; logits : (n,) float32 or float64, finite; weights : None or (n,).
    Returns ``{"mean_predicted", "observed_rate", "ratio"}`` as floats.
    """
    labels, logits = _check_labels_and_floats(labels, logits, "logits")
    weights = _check_metric_weights(weights, labels.shape[0])
    return _calibration(labels, sigmoid(logits), weights)


def _calibration(labels: np.ndarray, probabilities: np.ndarray, weights: np.ndarray | None) -> dict:
    mean_predicted, observed_rate = _mean(probabilities, weights), _mean(labels, weights)
    ratio = mean_predicted / observed_rate if observed_rate > 0 else math.nan
    return {"mean_predicted": mean_predicted, "observed_rate": observed_rate, "ratio": ratio}


def evaluate(labels, logits, groups) -> dict:
    """All test metrics of one model: ``{"auc", "gauc", "logloss", "mean_predicted",
    "observed_rate"}`` (AUC and GAUC rank the logits; GAUC impression-weighted; groups are e.g.
    user ids).

    labels : (n,) 0/1; logits : (n,) float32 or float64; groups : (n,) integer ids.
    """
    calib = calibration(labels, logits)
    return {
        "auc": auc(labels, logits),
        "gauc": gauc(labels, logits, groups),
        "logloss": logloss(labels, logits),
        "mean_predicted": calib["mean_predicted"],
        "observed_rate": calib["observed_rate"],
    }


SCORE_KINDS = ("logits", "probabilities")


def score_metrics(labels, scores, score_is: str = "logits", groups=None, weights=None,
                  gauc_weighting: str = "impressions") -> dict:
    """Every metric of one prediction file (``pfd-ref metrics``), unweighted and, with
    ``weights``, sample-weighted (keys prefixed ``weighted_``):

        n, positives, auc, gauc (with groups), logloss, normalized_entropy, mean_predicted,
        observed_rate, calibration (= mean_predicted / observed_rate)

    scores : (n,) float32/float64 logits, or probabilities in [0, 1] (``score_is``). AUC and
    GAUC rank the scores as given. Probabilities enter the log loss as ``-log p_i`` or
    ``-log(1 - p_i)`` (infinite when a positive has p = 0 or a negative p = 1: that is the
    log loss), logits through ``log_sigmoid``; the mean predicted probability is ``mean(p)``
    or ``mean(sigmoid(x))``. labels : (n,) 0/1 with both classes; groups : None or (n,)
    integer ids; weights : None or (n,) >= 0; gauc_weighting : one of ``GAUC_WEIGHTINGS``.
    """
    check_choice("score_is", score_is, SCORE_KINDS)
    labels, scores = _check_labels_and_floats(labels, scores, "scores")
    if score_is == "probabilities":
        check_probabilities("scores", scores)
    if score_is == "logits":
        losses, probabilities = _log_loss_terms(labels, scores), sigmoid(scores)
    else:
        with np.errstate(divide="ignore"):
            losses = np.where(labels == 1, -np.log(scores), -np.log1p(-scores))
        probabilities = scores
    weights = _check_metric_weights(weights, labels.shape[0])
    result = {"n": int(labels.shape[0]), "positives": int(np.count_nonzero(labels)), "score_is": score_is,
              "gauc_weighting": None if groups is None else gauc_weighting}
    for prefix, w in {"": None, "weighted_": weights}.items():
        if prefix and weights is None:
            continue
        entropy, mean_loss = binary_entropy(_mean(labels, w)), _mean(losses, w)
        calib = _calibration(labels, probabilities, w)
        result.update({
            prefix + "auc": auc(labels, scores, w),
            prefix + "gauc": None if groups is None else gauc(labels, scores, groups, gauc_weighting, w),
            prefix + "logloss": mean_loss,
            prefix + "normalized_entropy": mean_loss / entropy if entropy > 0 else math.nan,
            prefix + "mean_predicted": calib["mean_predicted"],
            prefix + "observed_rate": calib["observed_rate"],
            prefix + "calibration": calib["ratio"],
        })
    return result


CONFIDENCE_LEVEL = 0.95


def paired_comparison(values, baseline) -> dict:
    """Paired comparison of a method with a baseline over seeds (``values[k]`` and
    ``baseline[k]`` come from the same seed).

        gain_k = values_k - baseline_k,   mean_gain = mean(gain),   std_gain = std(gain, ddof=1)
        t = mean_gain / (std_gain / sqrt(n)),   p = two-sided P(|T_{n-1}| >= |t|)
        95% CI = mean_gain -+ t_{0.975, n-1} std_gain / sqrt(n)

    (``scipy.stats.ttest_rel`` and its ``confidence_interval(0.95)``). Special cases, returned
    without warnings: n < 2: std_gain, t, p and the CI are nan. Bitwise identical gains:
    std_gain = 0.0 and the CI is ``[gain, gain]``; t = +-inf with p = 0.0 when the common gain
    is non-zero, t and p nan when every gain is exactly 0.

    values, baseline : (n,) float arrays of one dtype, finite, n >= 1.
    Returns ``{"n", "mean_gain", "std_gain", "t_statistic", "p_value", "ci_low", "ci_high"}``
    (n int, the rest floats).
    """
    values = check_float_array("values", values, ndim=1)
    baseline = check_float_array("baseline", baseline, ndim=1)
    check_same_dtype(values=values, baseline=baseline)
    if baseline.shape != values.shape:
        raise ValueError(f"baseline: expected shape {values.shape} (paired with values), got {baseline.shape}")
    n = values.shape[0]
    if n == 0:
        raise ValueError("values: empty; at least one seed is needed")
    gain = values.astype(np.float64) - baseline.astype(np.float64)
    mean_gain = float(gain.mean())
    nan = math.nan
    if n < 2:
        return {"n": n, "mean_gain": mean_gain, "std_gain": nan, "t_statistic": nan, "p_value": nan,
                "ci_low": nan, "ci_high": nan}
    if np.all(gain == gain[0]):
        std_gain, ci_low, ci_high = 0.0, float(gain[0]), float(gain[0])
        t_statistic, p_value = (math.copysign(math.inf, gain[0]), 0.0) if gain[0] != 0.0 else (nan, nan)
    else:
        std_gain = float(gain.std(ddof=1))
        result = stats.ttest_rel(values, baseline)
        t_statistic, p_value = float(result.statistic), float(result.pvalue)
        interval = result.confidence_interval(CONFIDENCE_LEVEL)
        ci_low, ci_high = float(interval.low), float(interval.high)
    return {"n": n, "mean_gain": mean_gain, "std_gain": std_gain, "t_statistic": t_statistic, "p_value": p_value,
            "ci_low": ci_low, "ci_high": ci_high}


def paired_t_power(effect: float, std_gain: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` with ``n`` seeds, when the
    per-seed gains are normal with mean ``effect`` and standard deviation ``std_gain``:

        power = P(|T'| > t_{1 - alpha/2, n-1}),   T' ~ noncentral t(df = n - 1, nc = effect sqrt(n) / std_gain)

    (``P(T' < -c)`` is taken as the upper tail of the mirrored distribution, ``P(T'(-nc) > c)``:
    scipy's ``nct.cdf`` returns nan far in its left tail).

    effect : finite; std_gain : finite > 0; n : whole number >= 2; alpha in (0, 1).
    """
    std_gain = check_scalar("std_gain", std_gain, float, low=0, low_open=True)
    n = check_scalar("n", n, int, low=2)
    alpha = check_scalar("alpha", alpha, float, low=0, high=1, low_open=True, high_open=True)
    df, noncentrality = n - 1, effect * math.sqrt(n) / std_gain
    critical = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.sf(critical, df, -noncentrality))


def seeds_needed(effect: float, std_gain: float, power: float = 0.8, alpha: float = 0.05, max_seeds: int = 1000) -> int:
    """The smallest number of seeds n >= 2 at which ``paired_t_power(effect, std_gain, n, alpha)``
    reaches ``power``: how many seeds a paired comparison needs to detect a true mean gain of
    ``effect`` given the seed-to-seed spread ``std_gain`` of the gains. Raises ValueError
    when ``max_seeds`` do not suffice (e.g. effect 0). power in (0, 1)."""
    if not 0 < power < 1:
        raise ValueError(f"power: must lie in (0, 1), got {power!r}")
    for n in range(2, max_seeds + 1):  # power rises with n
        if paired_t_power(effect, std_gain, n, alpha) >= power:
            return n
    raise ValueError(f"effect: {effect!r} with std_gain {std_gain!r} needs more than {max_seeds} seeds")

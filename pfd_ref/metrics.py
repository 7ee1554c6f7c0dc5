"""Evaluation metrics: AUC, group AUC, log loss and calibration from logits, and the paired
comparison of a method with a baseline across seeds. Definitions: docs/metrics.md.

Every metric returns a Python float computed in float64 from float32 or float64 inputs (the
inputs are never cast in place; element-wise terms are computed in the input's dtype and
accumulated in float64).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from pfd_ref.losses import log_sigmoid, sigmoid
from pfd_ref.validation import check_float_array, check_labels, check_same_dtype


def _check_labels_and_floats(labels, floats, floats_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate 1-d finite float ``floats`` and 0/1 ``labels`` of the same length (n >= 1)."""
    floats = check_float_array(floats_name, floats, ndim=1)
    labels = check_labels("labels", labels, floats.shape[0])
    if floats.shape[0] == 0:
        raise ValueError("labels: empty; at least one example is needed")
    return labels, floats


def _check_both_classes(labels: np.ndarray) -> int:
    """Return the number of positives; raise unless both classes occur."""
    n_pos = int(np.count_nonzero(labels))
    if n_pos == 0 or n_pos == labels.shape[0]:
        raise ValueError(f"labels: AUC needs both classes, got {n_pos} positive(s) among {labels.shape[0]}")
    return n_pos


def auc(labels, scores) -> float:
    """Exact ROC AUC: the Mann-Whitney U statistic over n_pos n_neg.

        AUC = (sum_{i: y_i = 1} rank_i - n_pos (n_pos + 1) / 2) / (n_pos n_neg)

    with ``rank`` the 1-based average ranks of ``scores`` (``scipy.stats.rankdata``), so a
    tied positive/negative pair counts 1/2. Equals the fraction of (positive, negative) pairs
    ordered correctly.

    labels : (n,) 0/1, any numeric dtype; both classes must occur.
    scores : (n,) float32 or float64, finite (logits or probabilities: AUC depends on order only).
    """
    labels, scores = _check_labels_and_floats(labels, scores, "scores")
    n_pos = _check_both_classes(labels)
    n_neg = labels.shape[0] - n_pos
    ranks = stats.rankdata(scores)
    u_statistic = ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u_statistic / (n_pos * n_neg))


def gauc(labels, scores, groups) -> float:
    """Group AUC (Taobao): per-group AUC weighted by the group's number of impressions.

        GAUC = sum_g n_g AUC_g / sum_g n_g

    over the groups g (e.g. users) that hold both classes; groups with one class are skipped.
    ``AUC_g`` is ``auc`` restricted to group g (average ranks within the group, ties count 1/2).
    Computed without a Python loop: one sort by (group, score), tie blocks found by
    comparing neighbours, per-group sums by ``np.bincount``.

    labels : (n,) 0/1; scores : (n,) float32 or float64, finite; groups : (n,) integer ids.
    Raises ValueError naming ``labels`` when a class is absent altogether, naming ``groups``
    when both occur but no single group holds both.
    """
    labels, scores = _check_labels_and_floats(labels, scores, "scores")
    groups = np.asarray(groups)
    if groups.dtype.kind not in "iu" or groups.shape != labels.shape:
        raise ValueError(f"groups: expected integer ids of shape {labels.shape}, got {groups.dtype} {groups.shape}")
    _check_both_classes(labels)
    n = labels.shape[0]
    order = np.lexsort((scores, groups))
    sorted_groups, sorted_scores = groups[order], scores[order]
    positive = labels[order] == 1

    group_starts = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    group_index = np.cumsum(group_starts) - 1
    group_first = np.flatnonzero(group_starts)[group_index]
    tie_starts = group_starts | np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    tie_index = np.cumsum(tie_starts) - 1
    tie_first = np.flatnonzero(tie_starts)
    tie_end = np.r_[tie_first[1:], n]
    # 1-based average rank inside the group of a tie block covering [first, end)
    rank = ((tie_first + tie_end + 1) / 2)[tie_index] - group_first

    n_groups = group_index[-1] + 1
    size = np.bincount(group_index).astype(np.float64)
    n_pos = np.bincount(group_index, weights=positive)
    n_neg = size - n_pos
    positive_rank_sum = np.bincount(group_index, weights=rank * positive)
    both = (n_pos > 0) & (n_neg > 0)
    if not both.any():
        raise ValueError(f"groups: no group holds both classes ({n_groups} group(s)); GAUC is undefined")
    u_statistic = positive_rank_sum[both] - n_pos[both] * (n_pos[both] + 1) / 2
    group_auc = u_statistic / (n_pos[both] * n_neg[both])
    return float(np.sum(size[both] * group_auc) / np.sum(size[both]))


def logloss(labels, logits) -> float:
    """Mean binary cross-entropy from logits, with the stable ``log_sigmoid``:

        logloss = -(1/n) sum_i [y_i log sigmoid(x_i) + (1 - y_i) log sigmoid(-x_i)]
                = -(1/n) sum_i log sigmoid(s_i x_i),   s_i = 2 y_i - 1

    labels : (n,) 0/1; logits : (n,) float32 or float64, finite. Terms in the logits' dtype,
    mean accumulated in float64.
    """
    labels, logits = _check_labels_and_floats(labels, logits, "logits")
    signed_logits = np.where(labels == 1, logits, -logits)
    return float(-np.mean(log_sigmoid(signed_logits), dtype=np.float64))


def calibration(labels, logits) -> dict:
    """Mean predicted probability against the observed positive rate.

        mean_predicted = (1/n) sum_i sigmoid(x_i);  observed_rate = (1/n) sum_i y_i;
        ratio = mean_predicted / observed_rate   (nan when observed_rate = 0)

    labels : (n,) 0/1; logits : (n,) float32 or float64, finite.
    Returns ``{"mean_predicted", "observed_rate", "ratio"}`` as floats.
    """
    labels, logits = _check_labels_and_floats(labels, logits, "logits")
    mean_predicted = float(np.mean(sigmoid(logits), dtype=np.float64))
    observed_rate = float(np.mean(labels, dtype=np.float64))
    ratio = mean_predicted / observed_rate if observed_rate > 0 else math.nan
    return {"mean_predicted": mean_predicted, "observed_rate": observed_rate, "ratio": ratio}


def evaluate(labels, logits, groups) -> dict:
    """All test metrics of one model: ``{"auc", "gauc", "logloss", "mean_predicted",
    "observed_rate"}`` (AUC and GAUC rank the logits; groups are e.g. user ids).

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


def paired_comparison(values, baseline) -> dict:
    """Paired comparison of a method with a baseline over seeds (``values[k]`` and
    ``baseline[k]`` come from the same seed).

        gain_k = values_k - baseline_k,   mean_gain = mean(gain),   std_gain = std(gain, ddof=1)
        t = mean_gain / (std_gain / sqrt(n)),   p = two-sided P(|T_{n-1}| >= |t|)

    (``scipy.stats.ttest_rel``). Special cases, returned without warnings:
    n < 2: std_gain, t and p are nan. Bitwise identical gains: std_gain = 0.0, and t = +-inf
    with p = 0.0 when the common gain is non-zero, t and p nan when every gain is exactly 0.

    values, baseline : (n,) float arrays of one dtype, finite, n >= 1.
    Returns ``{"n", "mean_gain", "std_gain", "t_statistic", "p_value"}`` (n int, the rest floats).
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
        return {"n": n, "mean_gain": mean_gain, "std_gain": nan, "t_statistic": nan, "p_value": nan}
    if np.all(gain == gain[0]):
        std_gain = 0.0
        t_statistic, p_value = (math.copysign(math.inf, gain[0]), 0.0) if gain[0] != 0.0 else (nan, nan)
    else:
        std_gain = float(gain.std(ddof=1))
        result = stats.ttest_rel(values, baseline)
        t_statistic, p_value = float(result.statistic), float(result.pvalue)
    return {"n": n, "mean_gain": mean_gain, "std_gain": std_gain, "t_statistic": t_statistic, "p_value": p_value}

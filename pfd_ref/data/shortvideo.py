"""A seeded synthetic short-video log with several objectives (equations: docs/data.md,
"Short video").

Each impression shows a user one video. The user's interest in it, ``iota``, is a taste match
(user and video latent vectors) plus the video's quality plus a moment's interest ``eps`` that
no regular feature records. The click follows the interest; after a click the user watches a
fraction of the video that the interest also drives, so the watch time (privileged: it exists
only after the play) reads ``eps``; each interaction after the play (like, comment, forward,
follow, profile entry) depends on both the interest and the watch. The comment-area stay time
is non-zero for every comment (and for some other visits), the profile stay time exactly for
the profile entries: their labels' revealing columns, like the watch time for the click.

``generate_shortvideo(config, objectives=None, objective_weights=None) -> (train, test)``
returns ``ObjectiveData`` split by day, with the features and objective names of the
official KuaiRand log as ``pfd_ref.data.kuairand`` reads it (``watch_time``,
``watch_ratio``, ``long_view``, ``comment_stay``, ``profile_stay``; ``is_click``, ``is_like``,
...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pfd_ref.data.kuairand import DURATION_EDGES_S, duration_bucket, watch_ratio
from pfd_ref.data.objectives import ObjectiveData, ObjectiveSet
from pfd_ref.schema import FeatureSpec, Schema
from pfd_ref.validation import check_scalar

LATENT_DIM = 4
QUALITY_STD = 1.0  # std of a video's quality q_v
USER_ZIPF, VIDEO_ZIPF, AUTHOR_ZIPF = 0.6, 0.8, 1.0
CLICK_BASE = -0.6  # c_0 of the click logit
INTEREST_NOISE = 1.0  # sigma_eps: std of the moment's interest, seen by no regular feature
WATCH_BASE, WATCH_INTEREST, WATCH_DURATION, WATCH_NOISE = 0.0, 1.2, 0.6, 0.5
REWATCH = 1.5  # the watched fraction lies in (0, 1.5): a play may loop
LONG_VIEW_S = 18.0
# Interactions after a play: base logit c_j, weight of the interest alpha_j and of the watch gamma_j.
INTERACTIONS = {
    "is_like": (-5.5, 0.8, 1.0),
    "is_comment": (-6.6, 0.6, 0.8),
    "is_forward": (-7.8, 0.5, 1.0),
    "is_follow": (-8.3, 0.7, 0.9),
    "is_profile_enter": (-5.8, 0.4, 0.7),
}
COMMENT_VISIT_BASE = -2.5  # a comment-area visit without a comment: sigmoid(c + 0.5 iota)
OBJECTIVES = ("is_click", *INTERACTIONS)
# The privileged columns that give each objective's label away (ObjectiveSet.revealed_by):
# every one is 0 without a play; the stay times are non-zero for every comment / profile entry.
WATCH_FEATURES = ("watch_time", "watch_ratio", "long_view", "comment_stay", "profile_stay")
REVEALED_BY = {"is_click": WATCH_FEATURES, "is_comment": ("comment_stay",), "is_profile_enter": ("profile_stay",)}


@dataclass(frozen=True)
class ShortVideoConfig:
    """Sizes and seed of the synthetic short-video log (defaults: docs/data.md, "Short video").

    n_users, n_videos, n_authors : population sizes; n_days : days of the log, the last
    ``test_days`` the test split; impressions_per_user_day : mean impressions per user and day
    (``n_users * n_days * impressions_per_user_day`` rows in all); seed : the one seed.
    """

    n_users: int = 800
    n_videos: int = 600
    n_authors: int = 120
    n_days: int = 10
    test_days: int = 2
    impressions_per_user_day: int = 16
    seed: int = 0

    def __post_init__(self):
        for name in ("n_users", "n_videos", "n_authors", "n_days", "impressions_per_user_day", "test_days"):
            object.__setattr__(self, name, check_scalar(name, getattr(self, name), int, low=1))
        object.__setattr__(self, "seed", check_scalar("seed", self.seed, int, low=0))
        if self.test_days >= self.n_days:
            raise ValueError(f"test_days: {self.test_days} leaves no training day of {self.n_days}")


def objective_set(objectives=None, objective_weights=None, revealed_by=None) -> ObjectiveSet:
    """The ``ObjectiveSet`` of ``objectives`` (default ``OBJECTIVES``): scope "all" for
    ``is_click``, "played" for every other; weights ``objective_weights`` (default 1 each);
    ``revealed_by`` (default ``REVEALED_BY``) per objective."""
    names = tuple(OBJECTIVES if objectives is None else objectives)
    weights = (1.0,) * len(names) if objective_weights is None else tuple(objective_weights)
    revealed_by = REVEALED_BY if revealed_by is None else revealed_by
    return ObjectiveSet(names, tuple("all" if name == "is_click" else "played" for name in names), weights,
                        tuple(revealed_by.get(name, ()) for name in names))


def schema_for(config: ShortVideoConfig) -> Schema:
    """Regular: ``user_id``, ``hour`` (user tower); ``video_id``, ``author_id``,
    ``duration_bucket`` (item tower). Privileged (dense, width 1): ``WATCH_FEATURES``."""
    return Schema((
        FeatureSpec("user_id", "categorical", "regular", "user", vocab_size=config.n_users),
        FeatureSpec("hour", "categorical", "regular", "user", vocab_size=24),
        FeatureSpec("video_id", "categorical", "regular", "item", vocab_size=config.n_videos),
        FeatureSpec("author_id", "categorical", "regular", "item", vocab_size=config.n_authors),
        FeatureSpec("duration_bucket", "categorical", "regular", "item", vocab_size=len(DURATION_EDGES_S) + 2),
        *(FeatureSpec(name, "dense", "privileged", None, width=1) for name in WATCH_FEATURES),
    ))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _zipf(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return rng.permutation(weights / weights.sum())


def simulate(config: ShortVideoConfig) -> dict:
    """Every column of the log as arrays of its ``N`` rows (docs/data.md, "Short video"):
    ids, ``day``, ``hour``, ``duration_ms``, ``play_time_ms``, the privileged features, each
    objective's 0/1 label and the interest ``iota``."""
    c = config
    rng = np.random.default_rng(c.seed)
    k = LATENT_DIM
    author_taste = rng.standard_normal((c.n_authors, k))
    author_of = rng.choice(c.n_authors, size=c.n_videos, p=_zipf(rng, c.n_authors, AUTHOR_ZIPF))
    video_taste = 0.7 * author_taste[author_of] + 0.7 * rng.standard_normal((c.n_videos, k))
    quality = QUALITY_STD * rng.standard_normal(c.n_videos)
    duration_s = np.clip(np.exp(np.log(20.0) + 0.8 * rng.standard_normal(c.n_videos)), 3.0, 600.0)
    user_taste = rng.standard_normal((c.n_users, k))
    user_activity = 0.5 * rng.standard_normal(c.n_users)
    user_propensity = 0.5 * rng.standard_normal(c.n_users)
    n = c.n_users * c.n_days * c.impressions_per_user_day
    user = rng.choice(c.n_users, size=n, p=_zipf(rng, c.n_users, USER_ZIPF))
    video = rng.choice(c.n_videos, size=n, p=_zipf(rng, c.n_videos, VIDEO_ZIPF))
    day = np.sort(rng.integers(0, c.n_days, n))
    hour = rng.integers(0, 24, n)
    match = np.einsum("ij,ij->i", user_taste[user], video_taste[video]) / np.sqrt(k)
    interest = match + quality[video] + INTEREST_NOISE * rng.standard_normal(n)
    clicked = rng.random(n) < _sigmoid(CLICK_BASE + user_activity[user] + 0.8 * interest)
    duration = duration_s[video]
    fraction = REWATCH * _sigmoid(WATCH_BASE + WATCH_INTEREST * interest - WATCH_DURATION * np.log(duration / 20.0)
                                  + WATCH_NOISE * rng.standard_normal(n))
    play_s = np.where(clicked, fraction * duration, 0.0)
    watch_signal = np.log(fraction / (REWATCH - fraction))  # the watch's logit, as the interactions read it
    columns = {"user_id": user, "video_id": video, "author_id": author_of[video], "day": day, "hour": hour,
               "duration_ms": np.round(duration * 1000).astype(np.int64),
               "play_time_ms": np.round(play_s * 1000).astype(np.int64), "is_click": clicked.astype(np.int8),
               "interest": interest}
    for name, (base, alpha, gamma) in INTERACTIONS.items():
        logit = base + alpha * interest + gamma * watch_signal + user_propensity[user]
        columns[name] = (clicked & (rng.random(n) < _sigmoid(logit))).astype(np.int8)
    visited = clicked & ((columns["is_comment"] == 1) | (rng.random(n) < _sigmoid(COMMENT_VISIT_BASE + 0.5 * interest)))
    comment_stay_s = np.where(visited, np.exp(np.log(8.0) + 0.7 * rng.standard_normal(n)), 0.0)
    profile_stay_s = np.where(columns["is_profile_enter"] == 1, np.exp(np.log(6.0) + 0.7 * rng.standard_normal(n)), 0.0)
    columns["comment_stay_time"] = np.round(comment_stay_s * 1000).astype(np.int64)
    columns["profile_stay_time"] = np.round(profile_stay_s * 1000).astype(np.int64)
    columns["long_view"] = (clicked & (play_s >= np.minimum(duration, LONG_VIEW_S))).astype(np.int8)
    return columns


def generate_shortvideo(config: ShortVideoConfig | None = None, objectives=None,
                        objective_weights=None) -> tuple[ObjectiveData, ObjectiveData]:
    """``(train, test)`` ``ObjectiveData`` of the synthetic log (the last ``test_days`` days
    test), with the ``objective_set`` of ``objectives`` (default ``OBJECTIVES``) and their
    weights. Played rows: the clicked ones. ValueError naming ``objectives`` for a name that
    is not one of ``OBJECTIVES``."""
    config = config or ShortVideoConfig()
    objectives = objective_set(objectives, objective_weights)
    schema = schema_for(config)
    for name in objectives.names:
        if name in schema:
            raise ValueError(f"objectives: {name!r} is a {schema[name].role} column of the data; an objective cannot "
                             "also be a feature (its head, or a teacher, would read its own label)")
    unknown = [name for name in objectives.names if name not in OBJECTIVES]
    if unknown:
        raise ValueError(f"objectives: {unknown} not in the synthetic log's objectives {list(OBJECTIVES)}")
    log = simulate(config)
    play_ms = log["play_time_ms"].astype(np.float64)
    privileged = {
        "watch_time": np.log1p(play_ms / 1000.0), "watch_ratio": watch_ratio(log["play_time_ms"], log["duration_ms"]),
        "long_view": log["long_view"].astype(np.float64),
        "comment_stay": np.log1p(log["comment_stay_time"] / 1000.0),
        "profile_stay": np.log1p(log["profile_stay_time"] / 1000.0),
    }
    columns = {"user_id": log["user_id"], "hour": log["hour"], "video_id": log["video_id"],
               "author_id": log["author_id"], "duration_bucket": duration_bucket(log["duration_ms"]),
               **{name: value[:, None] for name, value in privileged.items()}}
    targets = np.stack([log[name] for name in objectives.names], axis=1)
    data = ObjectiveData(schema, columns, objectives, targets, log["is_click"], log["user_id"],
                         day=log["day"])
    return data.split_last_days(config.test_days)


"""A seeded, Taobao-like synthetic world with a known ground truth (equations: docs/data.md).

Users, items, categories and shops have long-tailed (Zipf) popularity. Each user has a
long-term taste (a latent vector shaped partly by the profile) and a budget; on every day the
user also has a short-term intent (two categories and one shop, drawn from the taste) that
moves from day to day and that no regular feature records. Two tasks, as in the paper:

* ``"ctr"`` (coarse-grained ranking): impressions with click labels. Privileged: the user's
  clicks in the candidate's category and in its shop in the last 24 h, Poisson counts whose
  rate follows that day's intent and the user's taste for the category.
* ``"cvr"`` (fine-grained ranking): clicked impressions with purchase labels. Privileged:
  post-event signals (dwell time, viewed reviews, chatted with the seller), noisy readings of
  the click's purchase interest, which includes an idiosyncratic intent no regular feature sees.

``SyntheticConfig.privileged_strength`` (``s``) moves the privileged features from pure noise
(``s = 0``) to nearly determined by the latent variables (large ``s``). They are drawn from
their own random stream, so for one seed every regular column and every label is
bit-identical across values of ``s``; only the privileged columns change.

``generate(task, config) -> (train, test)`` returns ``Dataset``s split by day;
``bayes_logits(task, config) -> (train_logits, test_logits)`` returns the true logit of each
row of those datasets (the log-odds of its label given every latent variable).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from pfd_ref.data.dataset import Dataset, MultiIds, last_days
from pfd_ref.schema import FeatureSpec, Schema
from pfd_ref.validation import check_scalar

TASKS = ("ctr", "cvr")

# Structural constants of the world (see docs/data.md, "Generating equations").
LATENT_DIM = 8  # k: width of the long-term taste vectors
AGE_BUCKET_PROBS = np.array([0.08, 0.20, 0.25, 0.20, 0.13, 0.09, 0.05])
FEMALE_PROB = 0.6
N_POWER_BUCKETS = 5
AGE_BUDGET_SHIFT, BUDGET_NOISE = 0.08, 0.02  # budget = (power + 0.5) / 5 + shift[age] + 0.02 N(0, 1)
USER_ZIPF, ITEM_ZIPF, CATEGORY_ZIPF, SHOP_ZIPF = 0.6, 0.7, 1.0, 1.0
SHOP_MAIN_CATEGORY_PROB = 0.8  # an item belongs to its shop's main category with this probability
PREFERENCE_SHARPNESS = 1.5  # kappa in P(category | user) ~ pop_c * exp(kappa <a_u, b_c>)
N_INTENT_CATEGORIES = 2  # per user and day, drawn from P(category | user)
# Where an impression's item comes from: intent categories, intent shop, long-term taste, global popularity.
SOURCE_PROBS = np.array([0.25, 0.10, 0.35, 0.30])
PRICE_STEP_WIDTH = 0.03  # tau: softness of the over-budget step of the click logit
PURCHASE_PRICE_SCALE = 0.1  # the purchase logit falls by gamma' per 0.1 of price level over budget
CATEGORY_BACKGROUND_RATE, SHOP_BACKGROUND_RATE = 0.5, 0.3  # lambda_0: clicks unrelated to interest
CATEGORY_INTEREST_RATE, SHOP_INTEREST_RATE = 0.5, 0.3  # lambda_1: interest-driven clicks per unit of s
REVIEW_THRESHOLD, CHAT_THRESHOLD = 0.5, 1.3  # P(viewed reviews) = 0.31, P(chatted) = 0.10


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic world. Every size, effect and the seed; defaults in docs/data.md.

    Sizes: ``n_users``, ``n_items``, ``n_categories``, ``n_shops``, ``n_price_buckets``,
    ``n_days`` (days ``0 .. n_days - 1``), ``test_days`` (the last ``test_days`` days form the
    test split), ``history_length`` (mean length of the recently-clicked-categories list),
    ``ctr_impressions_per_user_day`` and ``cvr_impressions_per_user_day`` (mean impressions
    of an average user on one day; the cvr task keeps only the clicked ones).
    ``privileged_strength``: ``s >= 0``, the informativeness of the privileged features.
    ``history_intent_share``: ``h`` in [0, 1], the chance that an entry of the recent-category
    history is one of the day's intent categories instead of a draw from the long-term taste
    (0, the default: the history is blind to the day's intent; docs/data.md).
    Effects (logit units): ``click_bias``, ``taste_effect``, ``price_effect``,
    ``category_intent_effect``, ``shop_intent_effect``, ``purchase_bias``,
    ``purchase_taste_effect``, ``purchase_price_effect``, ``purchase_intent_scale``.
    """

    n_users: int = 6000
    n_items: int = 10000
    n_categories: int = 100
    n_shops: int = 1000
    n_price_buckets: int = 20
    n_days: int = 14
    test_days: int = 2
    history_length: float = 5.0
    ctr_impressions_per_user_day: float = 6.0
    cvr_impressions_per_user_day: float = 36.0
    seed: int = 0
    privileged_strength: float = 1.0
    history_intent_share: float = 0.0
    click_bias: float = -3.8
    taste_effect: float = 1.0
    price_effect: float = 4.0
    category_intent_effect: float = 1.5
    shop_intent_effect: float = 1.0
    purchase_bias: float = -4.6
    purchase_taste_effect: float = 0.7
    purchase_price_effect: float = 1.5
    purchase_intent_scale: float = 1.2

    def __post_init__(self):
        at_least_one = ("n_users", "n_items", "n_categories", "n_shops", "n_price_buckets")
        non_negative = ("seed", "history_length", "ctr_impressions_per_user_day", "cvr_impressions_per_user_day",
                        "privileged_strength", "history_intent_share")
        for f in fields(self):
            low = 1 if f.name in at_least_one else 0 if f.name in non_negative else None
            object.__setattr__(self, f.name, check_scalar(f.name, getattr(self, f.name), int if f.type == "int" else float,
                                                          low=low))
        if self.n_items < self.n_categories:
            raise ValueError(f"n_items: must be >= n_categories ({self.n_categories}) so every category has an item")
        check_scalar("history_intent_share", self.history_intent_share, float, high=1)
        object.__setattr__(self, "n_days", check_scalar("n_days", self.n_days, int, low=2))  # a time split needs 2 days
        check_scalar("test_days", self.test_days, int, low=1, high=self.n_days - 1)


def schema_for(task: str, config: SyntheticConfig) -> Schema:
    """The schema of ``task``: the same regular fields for both tasks, privileged ones per task."""
    _check_task(task)
    regular = (
        FeatureSpec("user_id", "categorical", "regular", "user", config.n_users),
        FeatureSpec("age_bucket", "categorical", "regular", "user", len(AGE_BUCKET_PROBS)),
        FeatureSpec("gender", "categorical", "regular", "user", 2),
        FeatureSpec("purchase_power", "categorical", "regular", "user", N_POWER_BUCKETS),
        FeatureSpec("recent_categories", "multi_categorical", "regular", "user", config.n_categories, pooling="mean"),
        FeatureSpec("item_id", "categorical", "regular", "item", config.n_items),
        FeatureSpec("category", "categorical", "regular", "item", config.n_categories),
        FeatureSpec("shop", "categorical", "regular", "item", config.n_shops),
        FeatureSpec("price_bucket", "categorical", "regular", "item", config.n_price_buckets),
    )
    if task == "ctr":
        privileged_names = ("clicks_in_category_24h", "clicks_in_shop_24h")
    else:
        privileged_names = ("dwell_time", "viewed_reviews", "chatted_with_seller")
    return Schema(regular + tuple(FeatureSpec(name, "dense", "privileged", None) for name in privileged_names))


def generate(task: str, config: SyntheticConfig | None = None) -> tuple[Dataset, Dataset]:
    """Draw the ``task`` ("ctr" | "cvr") data set of ``config`` and split it by day.

    Returns ``(train, test)``: train holds days ``0 .. n_days - test_days - 1``, test the
    rest, rows ordered by day then user. Same config -> bit-identical arrays. Raises
    ``ValueError`` for an unknown task or if either split has no positive label.
    """
    train, test, _, _ = _simulate(task, config)
    return train, test


def bayes_logits(task: str, config: SyntheticConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """True logits ``(train (n_train,), test (n_test,))`` float64, row-aligned with ``generate``.

    ``P(label = 1 | all latent variables) = sigmoid(logit)``; the AUC of these logits is the
    Bayes-optimal AUC. Re-runs the simulation (same cost as ``generate``).
    """
    _, _, train_logits, test_logits = _simulate(task, config)
    return train_logits, test_logits


def _check_task(task) -> None:
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """The generator's logistic function ``0.5 (1 + tanh(x / 2))``, part of the data's
    definition. It is ``pfd_ref.losses.sigmoid`` rounded differently: using that one here
    would leave the labels of seeds 0 and 1 as they are but move the price levels and the
    CVR dense features in their last bits, and so every published table."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """``w_j = rank_j^(-exponent) / sum``, ranks a random permutation of ``1..n``; ``(n,)``."""
    weights = (rng.permutation(n) + 1.0) ** -exponent
    return weights / weights.sum()


class GroupedSampler:
    """Draws a member of a group with probability proportional to its weight within the group.

    Members are sorted by group; member ``j`` of group ``g`` gets the key ``g + F_j`` where
    ``F_j`` is the cumulative within-group weight fraction (the last one set to exactly 1).
    A draw for group ``g`` with ``r ~ U[0, 1)`` returns the first member whose key exceeds
    ``g + r``: inverse-CDF sampling for many groups with one ``searchsorted``.
    Every queried group must have at least one member.
    """

    def __init__(self, groups: np.ndarray, members: np.ndarray, weights: np.ndarray):
        order = np.argsort(groups, kind="stable")
        groups, self.members, weights = groups[order], members[order], weights[order]
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        group_totals = np.add.reduceat(weights, starts)
        sizes = np.diff(np.r_[starts, len(groups)])
        cumulative = np.cumsum(weights) - np.repeat(np.cumsum(group_totals) - group_totals, sizes)
        fractions = cumulative / np.repeat(group_totals, sizes)
        fractions[np.r_[starts[1:], len(groups)] - 1] = 1.0
        self.keys = groups + fractions

    def sample(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        positions = np.searchsorted(self.keys, groups + rng.random(len(groups)), side="right")
        return self.members[np.minimum(positions, len(self.members) - 1)]


def _draw_world(rng: np.random.Generator, c: SyntheticConfig) -> dict:
    """Users, categories, shops and items with their latent variables (docs/data.md, "World")."""
    k, n_ages = LATENT_DIM, len(AGE_BUCKET_PROBS)
    # users
    activity = zipf_weights(rng, c.n_users, USER_ZIPF)
    age = rng.choice(n_ages, size=c.n_users, p=AGE_BUCKET_PROBS)
    gender = (rng.random(c.n_users) < FEMALE_PROB).astype(np.int64)
    power = rng.integers(N_POWER_BUCKETS, size=c.n_users)
    age_budget_shift = rng.uniform(-AGE_BUDGET_SHIFT, AGE_BUDGET_SHIFT, n_ages)
    budget = (power + 0.5) / N_POWER_BUCKETS + age_budget_shift[age] + BUDGET_NOISE * rng.standard_normal(c.n_users)
    age_taste = rng.standard_normal((n_ages, k))
    gender_taste = rng.standard_normal((2, k))
    taste = age_taste[age] + gender_taste[gender] + rng.standard_normal((c.n_users, k))
    taste /= np.sqrt(np.mean(taste * taste))  # unit mean square, whatever the profile draws
    age_click_bias = 0.3 * rng.standard_normal(n_ages)
    user_click_bias = age_click_bias[age] + 0.3 * rng.standard_normal(c.n_users)
    user_purchase_bias = 0.2 * (power - 2) + 0.4 * rng.standard_normal(c.n_users)
    # categories and shops
    category_popularity = zipf_weights(rng, c.n_categories, CATEGORY_ZIPF)
    category_vector = rng.standard_normal((c.n_categories, k))
    category_vector *= np.sqrt(0.8 / k / np.mean(category_vector * category_vector))
    category_price = rng.normal(0.0, 0.8, c.n_categories)
    shop_popularity = zipf_weights(rng, c.n_shops, SHOP_ZIPF)
    shop_main_category = rng.choice(c.n_categories, size=c.n_shops, p=category_popularity)
    # items: the first n_categories items cover every category once
    item_shop = rng.choice(c.n_shops, size=c.n_items, p=shop_popularity)
    off_main = rng.random(c.n_items) >= SHOP_MAIN_CATEGORY_PROB
    item_category = np.where(off_main, rng.choice(c.n_categories, size=c.n_items, p=category_popularity),
                             shop_main_category[item_shop])
    item_category[: c.n_categories] = np.arange(c.n_categories)
    item_popularity = zipf_weights(rng, c.n_items, ITEM_ZIPF)
    item_vector = category_vector[item_category] + np.sqrt(0.2 / k) * rng.standard_normal((c.n_items, k))
    price_level = _sigmoid(category_price[item_category] + 0.8 * rng.standard_normal(c.n_items))
    price_bucket = np.minimum((price_level * c.n_price_buckets).astype(np.int64), c.n_price_buckets - 1)
    item_click_quality = 0.5 * rng.standard_normal(c.n_items)
    item_purchase_quality = 0.5 * item_click_quality + 0.5 * rng.standard_normal(c.n_items)
    # P(category | user) ~ pop_c * exp(kappa <a_u, b_c>), a U x C table as a grouped sampler
    preference = np.log(category_popularity) + PREFERENCE_SHARPNESS * taste @ category_vector.T
    preference = np.exp(preference - preference.max(axis=1, keepdims=True))
    user_category = np.arange(c.n_users * c.n_categories)
    return dict(
        activity=activity, age=age, gender=gender, budget=budget, power=power, taste=taste,
        user_click_bias=user_click_bias, user_purchase_bias=user_purchase_bias,
        category_popularity=category_popularity, category_vector=category_vector, shop_main_category=shop_main_category,
        item_shop=item_shop, item_category=item_category, item_vector=item_vector,
        price_level=price_level, price_bucket=price_bucket,
        item_click_quality=item_click_quality, item_purchase_quality=item_purchase_quality,
        items_by_category=GroupedSampler(item_category, np.arange(c.n_items), item_popularity),
        items_by_shop=GroupedSampler(item_shop, np.arange(c.n_items), item_popularity),
        items_overall=GroupedSampler(np.zeros(c.n_items, np.int64), np.arange(c.n_items), item_popularity),
        categories_by_user=GroupedSampler(
            user_category // c.n_categories, user_category % c.n_categories, preference.ravel()),
    )


def _draw_impressions(rng: np.random.Generator, world: dict, c: SyntheticConfig, per_user_day: float,
                      history_rng: np.random.Generator) -> dict:
    """Impressions of every (day, user), their items, the day's intent and the recent-category lists.

    With ``c.history_intent_share`` ``h > 0`` each history entry becomes, with probability ``h``,
    one of its user-day's two intent categories (uniformly), drawn from ``history_rng`` alone,
    so that every other draw is that of ``h = 0``."""
    n_user_days = c.n_days * c.n_users
    day_of = np.repeat(np.arange(c.n_days), c.n_users)  # user-day j = (day j // U, user j % U)
    user_of = np.tile(np.arange(c.n_users), c.n_days)
    # the day's short-term intent: two categories from the long-term taste, one shop (of an item of the first)
    intent_categories = world["categories_by_user"].sample(rng, np.repeat(user_of, N_INTENT_CATEGORIES))
    intent_categories = intent_categories.reshape(n_user_days, N_INTENT_CATEGORIES)
    intent_shop = world["item_shop"][world["items_by_category"].sample(rng, intent_categories[:, 0])]
    # recently clicked categories: a Poisson-length list drawn from the long-term taste
    history_lengths = rng.poisson(c.history_length, n_user_days)
    history_owner = np.repeat(user_of, history_lengths)
    history_values = world["categories_by_user"].sample(rng, history_owner)
    if c.history_intent_share > 0:
        history_user_day = np.repeat(np.arange(n_user_days), history_lengths)
        from_intent = history_rng.random(len(history_values)) < c.history_intent_share
        which = history_rng.integers(N_INTENT_CATEGORIES, size=len(history_values))
        history_values = np.where(from_intent, intent_categories[history_user_day, which], history_values)
    history = MultiIds(history_values, np.r_[0, np.cumsum(history_lengths)].astype(np.int64))
    # impressions: Poisson count per user-day, item from one of four sources
    counts = rng.poisson(per_user_day * c.n_users * world["activity"][user_of])
    user_day = np.repeat(np.arange(n_user_days, dtype=np.int64), counts)
    user = user_of[user_day]
    source = rng.choice(len(SOURCE_PROBS), size=len(user_day), p=SOURCE_PROBS)
    item = np.empty(len(user_day), dtype=np.int64)
    pick = rng.integers(N_INTENT_CATEGORIES, size=len(user_day))
    rows = source == 0
    item[rows] = world["items_by_category"].sample(rng, intent_categories[user_day[rows], pick[rows]])
    rows = source == 1
    item[rows] = world["items_by_shop"].sample(rng, intent_shop[user_day[rows]])
    rows = source == 2
    item[rows] = world["items_by_category"].sample(rng, world["categories_by_user"].sample(rng, user[rows]))
    rows = source == 3
    item[rows] = world["items_overall"].sample(rng, np.zeros(rows.sum(), np.int64))
    category = world["item_category"][item]
    shop = world["item_shop"][item]
    return dict(
        user_day=user_day, user=user, day=day_of[user_day], item=item, category=category, shop=shop,
        category_intent=(intent_categories[user_day] == category[:, None]).any(axis=1).astype(np.float64),
        shop_intent=(intent_shop[user_day] == shop).astype(np.float64),
        history=history,
    )


def _pair_dot(left: np.ndarray, right: np.ndarray, left_rows: np.ndarray, right_rows: np.ndarray) -> np.ndarray:
    """``out[n] = <left[left_rows[n]], right[right_rows[n]]>``; (n,) float64. One column at a
    time, so no (n, k) temporary is built (the impression arrays hold millions of rows)."""
    out = np.zeros(len(left_rows))
    for j in range(left.shape[1]):
        out += left[left_rows, j] * right[right_rows, j]
    return out


def _click_logits(world: dict, imp: dict, c: SyntheticConfig) -> np.ndarray:
    """eta = b + r_u + q_i + alpha <a_u, w_i> - gamma sigmoid((p_i - beta_u) / tau)
    + alpha_c z_cat + alpha_s z_shop; shape (n,) float64."""
    user, item = imp["user"], imp["item"]
    taste = _pair_dot(world["taste"], world["item_vector"], user, item)
    over_budget = _sigmoid((world["price_level"][item] - world["budget"][user]) / PRICE_STEP_WIDTH)
    return (c.click_bias + world["user_click_bias"][user] + world["item_click_quality"][item]
            + c.taste_effect * taste - c.price_effect * over_budget
            + c.category_intent_effect * imp["category_intent"] + c.shop_intent_effect * imp["shop_intent"])


def _purchase_logits(world: dict, imp: dict, intent: np.ndarray, c: SyntheticConfig) -> np.ndarray:
    """zeta = b' + r'_u + q'_i + alpha' <a_u, w_i> - gamma' max(0, p_i - beta_u) / 0.1 + sigma_pi pi,
    with pi ~ N(0, 1) the idiosyncratic purchase intent of the click; shape (n,) float64."""
    user, item = imp["user"], imp["item"]
    taste = _pair_dot(world["taste"], world["item_vector"], user, item)
    over_budget = np.maximum(world["price_level"][item] - world["budget"][user], 0.0) / PURCHASE_PRICE_SCALE
    return (c.purchase_bias + world["user_purchase_bias"][user] + world["item_purchase_quality"][item]
            + c.purchase_taste_effect * taste - c.purchase_price_effect * over_budget
            + c.purchase_intent_scale * intent)


def _shared_count(rng: np.random.Generator, keys: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """One Poisson(rate) count per distinct key, repeated on every row with that key; ``(n,)``."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return rng.poisson(rates[first])[inverse].astype(np.float64)


def _ctr_privileged(rng: np.random.Generator, world: dict, imp: dict, c: SyntheticConfig) -> dict:
    """log1p of the user's 24 h clicks in the row's category and shop, one count per (user-day, category | shop):
    N ~ Poisson(lambda_0 + s lambda_1 exp(alpha <a_u, b_c> + alpha_c z_cat)) and likewise for the shop
    with the shop's main category and z_shop; shape (n, 1) float64 each."""
    s = c.privileged_strength
    user = imp["user"]
    category_affinity = _pair_dot(world["taste"], world["category_vector"], user, imp["category"])
    shop_affinity = _pair_dot(world["taste"], world["category_vector"], user, world["shop_main_category"][imp["shop"]])
    category_rate = CATEGORY_BACKGROUND_RATE + s * CATEGORY_INTEREST_RATE * np.exp(
        c.taste_effect * category_affinity + c.category_intent_effect * imp["category_intent"])
    shop_rate = SHOP_BACKGROUND_RATE + s * SHOP_INTEREST_RATE * np.exp(
        c.taste_effect * shop_affinity + c.shop_intent_effect * imp["shop_intent"])
    category_clicks = _shared_count(rng, imp["user_day"] * c.n_categories + imp["category"], category_rate)
    shop_clicks = _shared_count(rng, imp["user_day"] * c.n_shops + imp["shop"], shop_rate)
    return {"clicks_in_category_24h": np.log1p(category_clicks)[:, None],
            "clicks_in_shop_24h": np.log1p(shop_clicks)[:, None]}


def _cvr_privileged(rng: np.random.Generator, interest: np.ndarray, c: SyntheticConfig) -> dict:
    """Post-event signals of the purchase interest iota (standardised zeta - b'):
    x = (s iota + e) / sqrt(1 + s^2), e ~ N(0, 1); dwell_time = x_dwell (standardised log seconds),
    viewed_reviews = 1[x_rev > 0.5], chatted_with_seller = 1[x_chat > 1.3]; corr(x, iota) = s / sqrt(1 + s^2).
    """
    s = c.privileged_strength
    signals = (s * interest[:, None] + rng.standard_normal((len(interest), 3))) / np.sqrt(1.0 + s * s)
    return {"dwell_time": signals[:, 0:1].copy(),
            "viewed_reviews": (signals[:, 1:2] > REVIEW_THRESHOLD).astype(np.float64),
            "chatted_with_seller": (signals[:, 2:3] > CHAT_THRESHOLD).astype(np.float64)}


def _simulate(task: str, config: SyntheticConfig | None):
    """Return ``(train, test, train_logits, test_logits)``; see ``generate`` and ``bayes_logits``."""
    _check_task(task)
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise ValueError(f"config: expected a SyntheticConfig, got {type(config).__name__}")
    world_seed, ctr_seed, cvr_seed = np.random.SeedSequence(config.seed).spawn(3)
    # the fourth stream (history_intent_share only) leaves the first three as they were
    impression_seed, label_seed, privileged_seed, history_seed = (ctr_seed if task == "ctr" else cvr_seed).spawn(4)
    label_rng = np.random.default_rng(label_seed)

    world = _draw_world(np.random.default_rng(world_seed), config)
    per_user_day = config.ctr_impressions_per_user_day if task == "ctr" else config.cvr_impressions_per_user_day
    imp = _draw_impressions(np.random.default_rng(impression_seed), world, config, per_user_day,
                            np.random.default_rng(history_seed))
    logits = _click_logits(world, imp, config)
    labels = label_rng.random(len(logits)) < _sigmoid(logits)
    if task == "cvr":
        imp = {name: value if name == "history" else value[labels] for name, value in imp.items()}
        purchase_intent = label_rng.standard_normal(len(imp["user"]))
        logits = _purchase_logits(world, imp, purchase_intent, config)
        labels = label_rng.random(len(logits)) < _sigmoid(logits)

    in_train = ~last_days(imp["day"], config.test_days)
    for part, rows in (("training", in_train), ("test", ~in_train)):
        if not labels[rows].any():
            raise ValueError(
                f"config: the {task} {part} split has {rows.sum()} rows and no positive label; "
                "use more users, impressions or days"
            )
    privileged_rng = np.random.default_rng(privileged_seed)
    if task == "ctr":
        privileged = _ctr_privileged(privileged_rng, world, imp, config)
    else:
        interest = logits - config.purchase_bias
        privileged = _cvr_privileged(privileged_rng, (interest - interest.mean()) / interest.std(), config)

    user, item = imp["user"], imp["item"]
    columns = {
        "user_id": user, "age_bucket": world["age"][user], "gender": world["gender"][user],
        "purchase_power": world["power"][user], "recent_categories": imp["history"].take(imp["user_day"]),
        "item_id": item, "category": imp["category"], "shop": imp["shop"],
        "price_bucket": world["price_bucket"][item], **privileged,
    }
    dataset = Dataset(schema_for(task, config), columns, labels.astype(np.int8), user, day=imp["day"])
    train, test = dataset.split_last_days(config.test_days)
    return train, test, logits[in_train], logits[~in_train]

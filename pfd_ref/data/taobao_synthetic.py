"""Generated files in the official UserBehavior format, for tests and benchmarks.

``write_user_behavior(path, UserBehaviorConfig(rows=..., seed=...))`` writes a CSV without a
header, ``user_id,item_id,category_id,behavior_type,timestamp``, laid out like the official
file: each user's rows together, users in the string order of their ids (``1, 100, 1000,
1000001, ...``), rows in time order within a user. Sizes, ids, behaviour shares and the 9
days follow the log's published facts; the behaviour itself is a small generative model
whose equations are in docs/data.md ("Generated UserBehavior files"): users visit items
(a first ``pv``), and a latent purchase intent drives the purchase and, noisily, the
post-click signals (cart, favourite, revisits). Regular features see the user's and the
item's parts of the intent and whether the category is one of the user's favourites; the
idiosyncratic part shows only in the post-click signals.

Command line (the file is written atomically)::

    python -m pfd_ref.data.taobao_synthetic --rows 10000000 --out /path/UserBehavior_10M.csv [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from pfd_ref.data.synthetic import zipf_weights
from pfd_ref.data.taobao import BEHAVIORS, BUY, CART, FAV, PV, SECONDS_PER_DAY, WINDOW_DAYS, WINDOW_END, WINDOW_START
from pfd_ref.files import check_output_file, write_atomically
from pfd_ref.losses import sigmoid
from pfd_ref.validation import check_scalar

# Published facts of the full log (Tianchi dataset 649).
LOG_ROWS, LOG_USERS, LOG_ITEMS, LOG_CATEGORIES = 100_150_807, 987_994, 4_162_024, 9_439
# Largest ids in the log as reported by analyses of it (ids are serialised, so not dense).
LOG_MAX_USER_ID, LOG_MAX_ITEM_ID, LOG_MAX_CATEGORY_ID = 1_018_011, 5_163_070, 5_162_429
# Behaviour shares of the full log: pv 89,716,264, buy 2,015,839, cart 5,530,446, fav 2,888,258.
BEHAVIOR_SHARES = np.array([89_716_264, 2_015_839, 5_530_446, 2_888_258]) / LOG_ROWS

# The generative model (docs/data.md gives the equations).
CATEGORY_ZIPF, ITEM_ZIPF = 1.0, 0.8
ACTIVITY_SIGMA = 0.8  # visits per user: Poisson with a log-normal mean
FAVOURITE_CATEGORIES, FAVOURITE_PROB = 3, 0.7
USER_SIGMA, ITEM_SIGMA, FAVOURITE_EFFECT, IDIOSYNCRATIC_SIGMA = 0.6, 0.6, 0.8, 1.2
CART_SLOPE, FAV_SLOPE, REVISIT_SLOPE = 1.0, 0.8, 0.5
MEAN_REVISITS = 0.5
CART_DELAY_S, FAV_DELAY_S, BUY_DELAY_S, REVISIT_DELAY_S = 1200.0, 1200.0, 3600.0, 10800.0  # exponential means
# Relative activity by hour of day (China time), low at night, highest in the evening.
HOUR_WEIGHTS = np.array([0.6, 0.35, 0.2, 0.15, 0.12, 0.15, 0.3, 0.6, 0.9, 1.1, 1.2, 1.2,
                         1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.4, 1.6, 1.9, 2.1, 2.0, 1.3])
BLOCK_USERS = 20_000  # users generated (and written) together; part of the output's definition


@dataclass(frozen=True)
class UserBehaviorConfig:
    """rows : about how many rows to write (users = rows / 101.37, the log's rows per user;
    items in proportion; categories ``9439 sqrt(rows / 1e8)`` within [10, 9439]);
    seed : the one seed of the file."""

    rows: int = 1_000_000
    seed: int = 0

    def __post_init__(self):
        check_scalar("rows", self.rows, int, low=1)
        check_scalar("seed", self.seed, int, low=0)

    @property
    def users(self) -> int:
        return max(1, round(self.rows * LOG_USERS / LOG_ROWS))

    @property
    def items(self) -> int:
        return max(10, round(self.rows * LOG_ITEMS / LOG_ROWS))

    @property
    def categories(self) -> int:
        return int(np.clip(round(LOG_CATEGORIES * np.sqrt(self.rows / 1e8)), 10, LOG_CATEGORIES))


def _intercepts(favourite_share: float) -> dict:
    """Intercepts that give the log's behaviour shares in expectation (Gauss-Hermite over
    ``x = u + q + g f + e``): ``P(buy) = E sigmoid(b0 + x)``, ``P(cart) = E sigmoid(bc + 1.0 x)``,
    ``P(fav) = E sigmoid(bf + 0.8 x)`` per visit, ``E[revisits] = exp(br) E exp(0.5 x)``."""
    scale = np.sqrt(USER_SIGMA ** 2 + ITEM_SIGMA ** 2 + IDIOSYNCRATIC_SIGMA ** 2)
    nodes, weights = hermegauss(60)
    weights = weights / weights.sum()

    def mean_of(f):  # E over x of f(x)
        return sum(share * (weights * f(FAVOURITE_EFFECT * fav + scale * nodes)).sum()
                   for fav, share in ((1, favourite_share), (0, 1 - favourite_share)))

    def solve(target, slope):  # bisection on the intercept b of E sigmoid(b + slope x) = target
        low, high = -20.0, 20.0
        for _ in range(100):
            mid = (low + high) / 2
            low, high = (mid, high) if mean_of(lambda x: sigmoid(mid + slope * x)) < target else (low, mid)
        return (low + high) / 2

    pv_per_visit = 1 + MEAN_REVISITS
    per_visit = BEHAVIOR_SHARES / BEHAVIOR_SHARES[PV] * pv_per_visit
    return {"buy": solve(per_visit[BUY], 1.0), "cart": solve(per_visit[CART], CART_SLOPE),
            "fav": solve(per_visit[FAV], FAV_SLOPE),
            "revisit": np.log(MEAN_REVISITS / mean_of(lambda x: np.exp(REVISIT_SLOPE * x)))}


class _World:
    """Ids, categories, popularities and qualities shared by every user (stream 0)."""

    def __init__(self, config: UserBehaviorConfig):
        rng = np.random.default_rng([config.seed, 0])
        n_users, n_items, n_categories = config.users, config.items, config.categories
        self.user_ids = np.sort(rng.choice(max(n_users, round(n_users * LOG_MAX_USER_ID / LOG_USERS)), n_users, replace=False) + 1)
        self.item_ids = rng.choice(max(n_items, round(n_items * LOG_MAX_ITEM_ID / LOG_ITEMS)), n_items, replace=False) + 1
        self.category_ids = rng.choice(LOG_MAX_CATEGORY_ID, n_categories, replace=False) + 1
        self.category_weights = zipf_weights(rng, n_categories, CATEGORY_ZIPF)
        category_of_item = np.concatenate([np.arange(n_categories), rng.choice(n_categories, n_items - n_categories,
                                                                              p=self.category_weights)]) \
            if n_items >= n_categories else rng.choice(n_categories, n_items, p=self.category_weights)
        item_weights = zipf_weights(rng, n_items, ITEM_ZIPF)
        self.item_quality = ITEM_SIGMA * rng.standard_normal(n_items)
        # items sorted by category; within a category drawn in proportion to their weights
        self.items_by_category = np.argsort(category_of_item, kind="stable")
        self.category_of_item = category_of_item
        self.cumulative = np.cumsum(item_weights[self.items_by_category])
        bounds = np.searchsorted(category_of_item[self.items_by_category], np.arange(n_categories + 1))
        self.category_start = np.concatenate(([0.0], self.cumulative))[bounds]
        favourite_share = FAVOURITE_PROB + (1 - FAVOURITE_PROB) * FAVOURITE_CATEGORIES * float((self.category_weights ** 2).sum())
        self.intercept = _intercepts(min(favourite_share, 1.0))
        # users in the string order of their ids, as in the official file
        self.user_order = np.argsort(self.user_ids.astype(str), kind="stable")

    def item_in(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        """An item of each given category, drawn in proportion to the item weights."""
        low, high = self.category_start[category], self.category_start[category + 1]
        position = np.searchsorted(self.cumulative, low + rng.random(category.size) * (high - low), side="right")
        return self.items_by_category[np.minimum(position, self.cumulative.size - 1)]


def _block(world: _World, users: np.ndarray, rng: np.random.Generator, mean_visits: float):
    """The rows of ``users`` (indices into ``world.user_ids``, in file order) as arrays
    ``(user, item, category, behavior, timestamp)``, grouped by user in the given order and
    in time order within a user."""
    n = users.size
    visits = rng.poisson(mean_visits * np.exp(ACTIVITY_SIGMA * rng.standard_normal(n) - ACTIVITY_SIGMA ** 2 / 2)) + 1
    propensity = USER_SIGMA * rng.standard_normal(n)
    favourites = rng.choice(world.category_weights.size, (n, FAVOURITE_CATEGORIES), p=world.category_weights)
    owner = np.repeat(np.arange(n), visits)
    m = owner.size
    from_favourites = rng.random(m) < FAVOURITE_PROB
    category = np.where(from_favourites, favourites[owner, rng.integers(0, FAVOURITE_CATEGORIES, m)],
                        rng.choice(world.category_weights.size, m, p=world.category_weights))
    item = world.item_in(rng, category)
    favourite = (favourites[owner] == category[:, None]).any(axis=1)
    intent = (propensity[owner] + world.item_quality[item] + FAVOURITE_EFFECT * favourite
              + IDIOSYNCRATIC_SIGMA * rng.standard_normal(m))
    hour = rng.choice(24, m, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    start = (WINDOW_START + SECONDS_PER_DAY * rng.integers(0, WINDOW_DAYS, m) + 3600 * hour
             + rng.integers(0, 3600, m)).astype(np.int64)
    bought = rng.random(m) < sigmoid(world.intercept["buy"] + intent)
    carted = rng.random(m) < sigmoid(world.intercept["cart"] + CART_SLOPE * intent)
    faved = rng.random(m) < sigmoid(world.intercept["fav"] + FAV_SLOPE * intent)
    revisits = rng.poisson(np.exp(world.intercept["revisit"] + REVISIT_SLOPE * intent))

    def delayed(mask, mean):
        return start[mask] + rng.exponential(mean, int(mask.sum())).astype(np.int64)

    revisit_of = np.repeat(np.arange(m), revisits)
    parts = [  # (visit, behaviour, time): the click first, so it precedes its events within a second
        (np.arange(m), PV, start),
        (revisit_of, PV, start[revisit_of] + rng.exponential(REVISIT_DELAY_S, revisit_of.size).astype(np.int64)),
        (np.flatnonzero(carted), CART, delayed(carted, CART_DELAY_S)),
        (np.flatnonzero(faved), FAV, delayed(faved, FAV_DELAY_S)),
        (np.flatnonzero(bought), BUY, delayed(bought, BUY_DELAY_S)),
    ]
    visit = np.concatenate([p[0] for p in parts])
    behavior = np.concatenate([np.full(p[0].size, p[1], dtype=np.int8) for p in parts])
    timestamp = np.concatenate([p[2] for p in parts])
    kept = timestamp < WINDOW_END  # events after the log's end are not in the log
    visit, behavior, timestamp = visit[kept], behavior[kept], timestamp[kept]
    order = np.lexsort((timestamp, owner[visit]))  # by user (file order), then time; stable
    visit, behavior, timestamp = visit[order], behavior[order], timestamp[order]
    return (world.user_ids[users[owner[visit]]], world.item_ids[item[visit]],
            world.category_ids[category[visit]], behavior, timestamp)


def format_rows(user, item, category, behavior, timestamp) -> bytes:
    """The rows as CSV bytes, ``u,i,c,b,t\\n`` each, without a Python loop: every row is laid
    out in a fixed-width ``uint8`` matrix (numbers right-aligned, tokens left-aligned, zero
    padding) and the padding is dropped in row-major order."""
    tokens = np.zeros((len(BEHAVIORS), max(len(b) for b in BEHAVIORS)), dtype=np.uint8)
    for k, name in enumerate(BEHAVIORS):
        tokens[k, :len(name)] = np.frombuffer(name.encode(), dtype=np.uint8)
    pieces = []
    for index, column in enumerate((user, item, category, None, timestamp)):
        if column is None:
            pieces.append(tokens[behavior])
        else:
            width = len(str(int(column.max(initial=0))))
            power = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
            digits = (column[:, None] // power) % 10
            significant = (column[:, None] >= power) | (power == 1)
            pieces.append(np.where(significant, digits + ord("0"), 0).astype(np.uint8))
        pieces.append(np.full((user.size, 1), ord("\n") if index == 4 else ord(","), dtype=np.uint8))
    matrix = np.concatenate(pieces, axis=1)
    return matrix[matrix != 0].tobytes()


def write_user_behavior(path, config: UserBehaviorConfig = UserBehaviorConfig(), progress=None) -> int:
    """Write the file of ``config`` at ``path`` (atomically: ``pfd_ref.files.write_atomically``).
    Returns the number of rows written. Same config -> the same bytes. progress : None or a
    callback ``(users done, users)``."""
    check_output_file("out", path)
    world = _World(config)
    mean_visits = LOG_ROWS / LOG_USERS / (1 + MEAN_REVISITS + BEHAVIOR_SHARES[[BUY, CART, FAV]].sum() / BEHAVIOR_SHARES[PV]
                                          * (1 + MEAN_REVISITS)) - 1
    blocks = np.random.SeedSequence([config.seed, 1]).spawn(-(-config.users // BLOCK_USERS))
    rows = 0

    def write(file) -> None:
        nonlocal rows
        for b, seed in enumerate(blocks):
            users = world.user_order[b * BLOCK_USERS:(b + 1) * BLOCK_USERS]
            columns = _block(world, users, np.random.default_rng(seed), mean_visits)
            file.write(format_rows(*columns))
            rows += columns[0].size
            if progress is not None:
                progress(min((b + 1) * BLOCK_USERS, config.users), config.users)

    write_atomically(path, write)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pfd_ref.data.taobao_synthetic",
                                     description="write a generated file in the official UserBehavior format")
    parser.add_argument("--rows", type=int, required=True, help="about how many rows (whole users are written)")
    parser.add_argument("--out", required=True, help="the CSV file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        config = UserBehaviorConfig(rows=args.rows, seed=args.seed)
        rows = write_user_behavior(args.out, config, progress=lambda done, total: print(
            f"\r  users {done:,}/{total:,}", end="", file=sys.stderr))
    except (ValueError, OSError) as error:  # an OSError: the device filled up during the write
        print(f"taobao_synthetic: error: {error}", file=sys.stderr)
        return 2
    print(f"\nwrote {args.out}: {rows:,} rows, {config.users:,} users, seed {config.seed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Taobao UserBehavior (Alibaba, Tianchi dataset 649) as the paper's two tasks.

The log: one behaviour per line, no header, ``user_id,item_id,category_id,behavior_type,timestamp``
with ``behavior_type`` one of ``pv`` (item page view, a click), ``buy``, ``cart``, ``fav``
and a Unix timestamp in seconds; 100,150,807 rows, 987,994 users, 4,162,024 items, 9,439
categories, 25 Nov - 3 Dec 2017 (about 3.5 GB). The official file holds each user's rows
together, in time order. Days are counted in China time (UTC+8): day ``d`` is
``[WINDOW_START + 86400 d, WINDOW_START + 86400 (d + 1))``, ``WINDOW_START`` = 2017-11-25
00:00 +08:00; the documented window is days 0..8.

``read_user_behavior`` streams the file into arrays (``pfd_ref.data.text``) and checks it;
``cvr_dataset`` and ``ctr_dataset`` build the tasks (docs/data.md, "Taobao UserBehavior",
gives every rule and why). In short:

* **CVR** (fine ranking, MLP student): one sample per first ``pv`` of a (user, item). Label:
  a ``buy`` of that item by that user after the click (later in the log's order) and less
  than ``label_window`` seconds after it. Regular: user, item, category; the last
  ``history_length`` clicked items and their categories strictly before the click; the
  user's clicks in the item's category in the ``interaction_window`` seconds before it.
  Privileged (post-click): ``carted``, ``faved`` (0/1), ``revisits`` (log1p of the count of
  further ``pv`` of the item) and ``revisit_span`` (log1p of minutes from the click to the
  last revisit), each counting only events after the click and strictly earlier than the
  purchase, or than the window's end when there is none.
  **Leakage rule**: the purchase itself and every event at or after its time are never
  read by any feature; every regular feature reads only events strictly earlier than the
  click. Samples come from the days whose every click has its whole label window inside the
  log (with the 24 h window: every day but the last); the clicks of the other days are
  counted in the report.
* **CTR** (coarse ranking, two-tower student): every ``pv`` is a positive. The log has no
  impressions, so each click gets ``negatives`` sampled items: a uniformly drawn ``pv``
  of the same day (so items are drawn in proportion to their clicks that day), redrawn
  while the user clicks that item on that day at or after the click's time. A negative
  has its click's user and time. User tower: user, recent items and categories (as for
  CVR); item tower: item, category. Privileged: the user's clicks in the candidate's
  category and on the candidate item in the ``interaction_window`` seconds before.

Ids: raw ids are mapped to ``0..V-1`` in increasing order over the rows read
(``pfd_ref.data.events.dense_ids``); ``day`` is the China-time day index.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from pfd_ref.data.dataset import Dataset, MultiIds
from pfd_ref.data.events import block_index, count_in_window, dense_ids, recent_before
from pfd_ref.data.text import BYTE_ORDER_MARK, read_columns
from pfd_ref.schema import FeatureSpec, Schema
from pfd_ref.validation import check_choice, check_scalar

COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
BEHAVIORS = ("pv", "buy", "cart", "fav")  # codes 0..3 in this order
PV, BUY, CART, FAV = range(4)
SECONDS_PER_DAY = 86400
WINDOW_START = 1511539200  # 2017-11-25 00:00:00 +08:00
WINDOW_DAYS = 9  # 25 Nov .. 3 Dec 2017
WINDOW_END = WINDOW_START + WINDOW_DAYS * SECONDS_PER_DAY  # 2017-12-04 00:00:00 +08:00
OUTSIDE_WINDOW = ("error", "drop")
HISTORY_LENGTH = 10
LABEL_WINDOW = SECONDS_PER_DAY
INTERACTION_WINDOW = SECONDS_PER_DAY
NEGATIVES_PER_CLICK = 4
MAX_REDRAWS = 100
STREAM_NEGATIVES = 7


@dataclass
class BehaviorLog:
    """The rows kept from a UserBehavior file, in canonical order (each user's rows together,
    times non-decreasing, ties in file order): raw ids, ``behavior`` codes (``BEHAVIORS``),
    ``timestamp`` (Unix seconds), with what was read and dropped."""

    path: str
    user: np.ndarray
    item: np.ndarray
    category: np.ndarray
    behavior: np.ndarray
    timestamp: np.ndarray
    rows_read: int
    dropped_outside_window: int = 0
    dropped_partial_user: int = 0
    head: bool = False  # only the first rows of the file were read

    @property
    def n(self) -> int:
        return self.user.size

    def summary(self) -> str:
        """A few lines for the log: rows, filters, counts."""
        counts = np.bincount(self.behavior, minlength=len(BEHAVIORS))
        shares = ", ".join(f"{name} {c:,} ({c / max(self.n, 1):.2%})" for name, c in zip(BEHAVIORS, counts))
        days = (self.timestamp - WINDOW_START) // SECONDS_PER_DAY
        lines = [f"taobao: {self.rows_read:,} rows read from {self.path}"
                 + (" (the head of the file)" if self.head else "") + f", {self.n:,} kept; "
                 f"{np.unique(self.user).size:,} users, {np.unique(self.item).size:,} items, "
                 f"{np.unique(self.category).size:,} categories, days {int(days.min())}..{int(days.max())}",
                 f"  behaviours: {shares}"]
        if self.dropped_outside_window:
            lines.append(f"  dropped: {self.dropped_outside_window:,} rows with a timestamp outside "
                         f"[{WINDOW_START}, {WINDOW_END}) (--outside-window drop)")
        if self.dropped_partial_user:
            lines.append(f"  dropped: {self.dropped_partial_user:,} rows of the last user, whose rows go on "
                         "past the rows read (a head keeps whole users)")
        return "\n".join(lines)


def _error_at(path: str, line: int, column: str, message: str) -> ValueError:
    return ValueError(f"path: {path!r} line {line}, column {column!r}: {message}")


def _reject_header(path) -> None:
    """A first line whose first cell is a word is a header: the official file has none."""
    try:
        with open(path, "rb") as file:
            first = file.readline().removeprefix(BYTE_ORDER_MARK).strip()
    except OSError:
        return  # read_columns names the problem
    cell = first.split(b",")[0]
    if first and not cell.lstrip(b"+-").isdigit() and any(c.isalpha() for c in cell.decode("utf-8", "replace")):
        raise _error_at(os.fspath(path), 1, COLUMNS[0], f"line 1 looks like a header ({first[:80].decode('utf-8', 'replace')!r});"
                        " UserBehavior.csv has no header line: user_id,item_id,category_id,behavior_type,timestamp")


def read_user_behavior(path, max_rows: int | None = None, outside_window: str = "error",
                       require_order: bool = True) -> BehaviorLog:
    """Read and check a UserBehavior file (streaming; ``pfd_ref.data.text``).

    max_rows : read only the first ``max_rows`` rows (a head); rows of the last user that
        go on past them are dropped, so every user kept is whole (counted in the log).
    outside_window : ``"error"`` (default) or ``"drop"`` for rows whose timestamp lies
        outside ``[WINDOW_START, WINDOW_END)`` (dropped rows are counted).
    require_order : the official layout (each user's rows together, in time order) is
        checked; False accepts any order and sorts the rows into canonical order.
    Raises ``ValueError`` starting with ``path:`` and naming the file, line and column for:
    an empty file, a header line, a row without five fields, a non-numeric or negative id,
    an unknown ``behavior_type``, a timestamp outside the window (with "error") or earlier
    than the previous row of its user, and a user whose rows are split (with require_order).
    """
    check_choice("outside_window", outside_window, OUTSIDE_WINDOW)
    if max_rows is not None:
        max_rows = check_scalar("max_rows", max_rows, int, low=1)
    _reject_header(path)
    text = read_columns(path, names=COLUMNS, delimiter=",", integers=("user_id", "item_id", "category_id", "timestamp"),
                        tokens={"behavior_type": tuple(b.encode() for b in BEHAVIORS)},
                        max_rows=None if max_rows is None else max_rows + 1)
    columns = text.columns
    user, item, category = columns["user_id"], columns["item_id"], columns["category_id"]
    behavior, timestamp = columns["behavior_type"], columns["timestamp"]
    for name, values in (("user_id", user), ("item_id", item), ("category_id", category)):
        if values.size and values.min() < 0:
            row = int(np.argmax(values < 0))
            raise ValueError(f"{text.where(row, name)}: expected an id >= 0, got {text.cell(row, name)!r}")
    log = BehaviorLog(text.path, user, item, category, behavior, timestamp, rows_read=text.n)
    if max_rows is not None and text.n > max_rows:  # the extra row tells whether the last user goes on
        keep = max_rows
        if require_order and user[max_rows] == user[max_rows - 1]:
            others = np.flatnonzero(user[:max_rows] != user[max_rows - 1])
            if others.size == 0:
                raise ValueError(f"max_rows: the first {max_rows} rows all belong to one user whose rows go on; "
                                 "read more rows")
            keep = int(others[-1]) + 1
        log.dropped_partial_user = max_rows - keep
        _take_rows(log, slice(0, keep))
        log.rows_read, log.head = max_rows, True
    outside = log.timestamp < WINDOW_START
    outside |= log.timestamp >= WINDOW_END
    if outside.any():
        if outside_window == "error":
            row = int(np.argmax(outside))
            raise ValueError(f"{text.where(row, 'timestamp')}: {text.cell(row, 'timestamp')!r} lies outside the log's "
                             f"documented window [{WINDOW_START}, {WINDOW_END}) (2017-11-25..2017-12-03, UTC+8); "
                             "pass --outside-window drop to leave such rows out (they are counted)")
        log.dropped_outside_window = int(outside.sum())
        file_row = np.flatnonzero(~outside)
        _take_rows(log, file_row)
        if require_order:
            _check_order(log, text, file_row)
    elif require_order:
        _check_order(log, text, None)
    if not require_order:
        _take_rows(log, np.lexsort((log.timestamp, log.user)))
    if log.n == 0:
        raise ValueError(f"path: {log.path!r}: no row is left")
    return log


def _take_rows(log: BehaviorLog, rows) -> None:
    for name in ("user", "item", "category", "behavior", "timestamp"):
        setattr(log, name, getattr(log, name)[rows])


def _check_order(log: BehaviorLog, text, file_row: np.ndarray | None) -> None:
    """The official layout: a user's rows are contiguous and their timestamps non-decreasing.
    file_row : the file row (0-based) of each kept row (None: every row was kept), for the
    error message."""
    def source(kept: int) -> int:
        return kept if file_row is None else int(file_row[kept])

    same_user = log.user[1:] == log.user[:-1]
    backwards = log.timestamp[1:] < log.timestamp[:-1]
    backwards &= same_user
    if backwards.any():
        kept = int(np.argmax(backwards)) + 1
        row = source(kept)
        raise ValueError(f"{text.where(row, 'timestamp')}: {text.cell(row, 'timestamp')!r} is earlier than the "
                         f"previous row of user {log.user[kept]} ({log.timestamp[kept - 1]}, line "
                         f"{text.first_line + source(kept - 1)}); the official file holds each user's rows in time order")
    block_users = log.user[np.concatenate(([0], np.flatnonzero(~same_user) + 1))]
    _, first_block = np.unique(block_users, return_index=True)
    if first_block.size < block_users.size:
        repeated = np.ones(block_users.size, dtype=bool)
        repeated[first_block] = False
        block = int(np.argmax(repeated))
        kept = int(np.flatnonzero(np.concatenate(([True], ~same_user)))[block])
        row = source(kept)
        raise ValueError(f"{text.where(row, 'user_id')}: user {log.user[kept]} has rows earlier in the file, "
                         "separated from these by other users; the official file holds each user's rows together")


# ---------------------------------------------------------------- the two tasks


@dataclass
class TaskReport:
    """What ``cvr_dataset`` / ``ctr_dataset`` made of a log: sample counts, the rules used, filters."""

    task: str
    samples: int
    positives: int
    rules: dict = field(default_factory=dict)
    filtered: dict = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.task}: {self.samples:,} samples, {self.positives:,} positive ({self.positives / max(self.samples, 1):.2%})"]
        lines += [f"  {name}: {value}" for name, value in self.rules.items()]
        lines += [f"  not a sample: {count:,} {reason}" for reason, count in self.filtered.items()]
        return "\n".join(lines)


@dataclass
class _Canonical:
    """The log's arrays as the task builders use them (canonical order): the user block of
    each event, dense item and category ids, behaviour codes, seconds since WINDOW_START;
    ``block_user`` maps a block to its dense user id."""

    block: np.ndarray
    item: np.ndarray
    category: np.ndarray
    behavior: np.ndarray
    time: np.ndarray
    block_user: np.ndarray
    n_users: int
    n_items: int
    n_categories: int

    @property
    def day(self) -> np.ndarray:
        return self.time // SECONDS_PER_DAY

    def clicks(self) -> np.ndarray:
        """Positions of the ``pv`` events."""
        return np.flatnonzero(self.behavior == PV)


def _canonical(log: BehaviorLog) -> _Canonical:
    block, starts = block_index(log.user)
    block_user, n_users = dense_ids(log.user[starts[:-1]])
    item, n_items = dense_ids(log.item)
    category, n_categories = dense_ids(log.category)
    return _Canonical(block, item, category, log.behavior, log.timestamp - WINDOW_START, block_user,
                      n_users, n_items, n_categories)


def _history(events: _Canonical, clicks: np.ndarray, query_block, query_time, length: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(positions, offsets)`` of the last ``length`` clicks of each query's user strictly
    before its time; ``positions`` index the events."""
    positions, offsets = recent_before(events.block[clicks], events.time[clicks], query_block, query_time, length)
    return clicks[positions], offsets


def _clicks_before(events: _Canonical, clicks: np.ndarray, key: np.ndarray, query_key: np.ndarray,
                   query_time: np.ndarray, width: int) -> np.ndarray:
    """log1p of the user's clicks with the same ``key`` (one per click) in ``[t - width, t)``, ``(m, 1)``."""
    counts = count_in_window(key, events.time[clicks], query_key, query_time, width)
    return np.log1p(counts).astype(np.float64)[:, None]


def _category_key(events: _Canonical, block, category):
    return block * events.n_categories + category


def _item_key(events: _Canonical, block, item):
    return block * events.n_items + item


def _specs(events: _Canonical, dense_regular: tuple, privileged: tuple) -> Schema:
    return Schema((
        FeatureSpec("user_id", "categorical", "regular", "user", vocab_size=events.n_users),
        FeatureSpec("recent_items", "multi_categorical", "regular", "user", vocab_size=events.n_items, pooling="mean"),
        FeatureSpec("recent_categories", "multi_categorical", "regular", "user", vocab_size=events.n_categories, pooling="mean"),
        FeatureSpec("item_id", "categorical", "regular", "item", vocab_size=events.n_items),
        FeatureSpec("category_id", "categorical", "regular", "item", vocab_size=events.n_categories),
        *(FeatureSpec(name, "dense", "regular", "user") for name in dense_regular),
        *(FeatureSpec(name, "dense", "privileged", None) for name in privileged),
    ))


def _first_clicks(events: _Canonical, clicks: np.ndarray) -> np.ndarray:
    """Canonical positions of the first ``pv`` of each (user, item), ascending."""
    _, first = np.unique(_item_key(events, events.block[clicks], events.item[clicks]), return_index=True)
    return np.sort(clicks[first])


def _after_the_click(events: _Canonical, sample_at: np.ndarray):
    """``(owner, when, kind)`` of every event that follows a sample's click in the log's order
    and has its (user, item): the sample's index, the event's time and behaviour code."""
    pair = _item_key(events, events.block, events.item)
    sample_pair = pair[sample_at]
    by_pair = np.argsort(sample_pair)
    slot = by_pair[np.minimum(np.searchsorted(sample_pair[by_pair], pair), sample_pair.size - 1)]
    del by_pair
    after = sample_pair[slot] == pair
    del pair
    after &= np.arange(events.block.size) > sample_at[slot]
    events_after = np.flatnonzero(after)
    del after
    return slot[events_after], events.time[events_after], events.behavior[events_after]


def cvr_dataset(log: BehaviorLog, label_window: int = LABEL_WINDOW, history_length: int = HISTORY_LENGTH,
                interaction_window: int = INTERACTION_WINDOW) -> tuple[Dataset, TaskReport]:
    """The CVR task of the module docstring: ``(Dataset, TaskReport)``, rows in canonical
    order of their clicks. ``label_window`` and ``interaction_window`` are seconds (>= 1),
    ``history_length`` a number of clicks (>= 0). Raises ``ValueError`` naming the file when
    the log has no ``buy`` (no positive label is possible) or no click with a whole label
    window."""
    label_window = check_scalar("label_window", label_window, int, low=1)
    history_length = check_scalar("history_length", history_length, int, low=0)
    interaction_window = check_scalar("interaction_window", interaction_window, int, low=1)
    if not (log.behavior == BUY).any():
        raise ValueError(f"path: {log.path!r} has no 'buy' row, so no click can have a purchase label "
                         "(a file of only pv rows gives no CVR positives)")
    events = _canonical(log)
    clicks = events.clicks()
    first_clicks = _first_clicks(events, clicks)
    log_end = (int(events.time.max()) // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
    whole = (events.day[first_clicks] + 1) * SECONDS_PER_DAY + label_window <= log_end  # days whose every click has a whole window
    censored = int((~whole).sum())
    sample_at = first_clicks[whole]
    del first_clicks, whole
    if sample_at.size == 0:
        raise ValueError(f"path: {log.path!r}: no day of the log ends {label_window} s or more before the end "
                         "of its last day, so no click has a whole label window")
    n = sample_at.size
    t_click = events.time[sample_at]
    owner, when, kind = _after_the_click(events, sample_at)
    buys = (kind == BUY) & (when < t_click[owner] + label_window)
    no_purchase = np.iinfo(np.int64).max
    purchase_time = np.full(n, no_purchase)
    np.minimum.at(purchase_time, owner[buys], when[buys])
    labels = (purchase_time != no_purchase).astype(np.int8)
    cut = np.where(labels == 1, purchase_time, t_click + label_window)
    post = when < cut[owner]  # the leakage rule: strictly before the purchase (or the window's end)
    revisit = post & (kind == PV)
    span = np.zeros(n, dtype=np.int64)
    np.maximum.at(span, owner[revisit], when[revisit] - t_click[owner[revisit]])
    privileged = {
        "carted": (np.bincount(owner[post & (kind == CART)], minlength=n) > 0).astype(np.float64)[:, None],
        "faved": (np.bincount(owner[post & (kind == FAV)], minlength=n) > 0).astype(np.float64)[:, None],
        "revisits": np.log1p(np.bincount(owner[revisit], minlength=n)).astype(np.float64)[:, None],
        "revisit_span": np.log1p(span / 60.0)[:, None],
    }
    del owner, when, kind, post, revisit, span

    block, category = events.block[sample_at], events.category[sample_at]
    positions, offsets = _history(events, clicks, block, t_click, history_length)
    in_category = _clicks_before(events, clicks, _category_key(events, events.block[clicks], events.category[clicks]),
                                 _category_key(events, block, category), t_click, interaction_window)
    users = events.block_user[block]
    columns = {"user_id": users, "recent_items": MultiIds(events.item[positions], offsets),
               "recent_categories": MultiIds(events.category[positions], offsets),
               "item_id": events.item[sample_at], "category_id": category,
               "clicks_in_category_24h": in_category, **privileged}
    del positions
    schema = _specs(events, ("clicks_in_category_24h",), tuple(privileged))
    data = Dataset(schema, columns, labels, users, day=t_click // SECONDS_PER_DAY)
    report = TaskReport("cvr", n, int(labels.sum()), rules={
        "sample": "the first pv of each (user, item)",
        "label": f"a buy of the item by the user after the click, less than {label_window / 3600:g} h after it",
        "privileged": "carted, faved, revisits, revisit_span: after the click, strictly before the purchase "
                      "(or the label window's end)",
        "history": f"last {history_length} clicks strictly before the click; clicks in the item's category "
                   f"in the {interaction_window / 3600:g} h before it"},
        filtered={f"first clicks on the last {-(-label_window // SECONDS_PER_DAY)} day(s), whose label windows "
                  "may pass the log's end": censored})
    return data, report


def _draw_negatives(events: _Canonical, clicks: np.ndarray, negatives: int, rng: np.random.Generator,
                    log: BehaviorLog) -> np.ndarray:
    """For each click, ``negatives`` positions of clicks whose items are the negatives (the
    sampling rule of the module docstring), click-major."""
    click_day, click_time, click_block = events.day[clicks], events.time[clicks], events.block[clicks]
    # Clicks of each day are contiguous in the day-sorted order: draw a uniform click of the day.
    by_day = np.argsort(click_day, kind="stable")
    n_days = int(click_day.max()) + 1
    day_start = np.searchsorted(click_day[by_day], np.arange(n_days + 1))
    # The latest click of each (user, day, item): an item the user clicks at or after t that day is redrawn.
    key = (click_block * n_days + click_day) * events.n_items + events.item[clicks]
    order = np.lexsort((click_time, key))
    last = np.flatnonzero(np.append(key[order][1:] != key[order][:-1], True))
    seen_key, seen_last = key[order][last], click_time[order][last]
    del key, order, last
    owner = np.repeat(np.arange(clicks.size), negatives)
    drawn = np.empty(owner.size, dtype=np.int64)
    pending = np.arange(owner.size)
    for _ in range(MAX_REDRAWS):
        d = click_day[owner[pending]]
        drawn[pending] = by_day[day_start[d] + (rng.random(pending.size) * (day_start[d + 1] - day_start[d])).astype(np.int64)]
        query = (click_block[owner[pending]] * n_days + d) * events.n_items + events.item[clicks[drawn[pending]]]
        slot = np.minimum(np.searchsorted(seen_key, query), seen_key.size - 1)
        clash = (seen_key[slot] == query) & (seen_last[slot] >= click_time[owner[pending]])
        pending = pending[clash]
        if pending.size == 0:
            return clicks[drawn]
    click = clicks[owner[pending[0]]]
    raise ValueError(f"path: {log.path!r}: no negative found in {MAX_REDRAWS} draws for the click of user "
                     f"{log.user[click]} at {log.timestamp[click]}: it clicks nearly every item of that day")


def ctr_dataset(log: BehaviorLog, negatives: int = NEGATIVES_PER_CLICK, seed: int = 0,
                history_length: int = HISTORY_LENGTH, interaction_window: int = INTERACTION_WINDOW) -> tuple[Dataset, TaskReport]:
    """The CTR task of the module docstring: ``(Dataset, TaskReport)``; each click is followed
    by its ``negatives`` (>= 1) sampled rows. Sampling draws from ``default_rng([seed,
    STREAM_NEGATIVES])`` (``seed`` >= 0); ``history_length`` and ``interaction_window`` as for
    ``cvr_dataset``. Raises ``ValueError`` naming the file when there is no click, or when a
    click cannot get a negative in ``MAX_REDRAWS`` draws (its user clicks nearly every item of
    that day)."""
    negatives = check_scalar("negatives", negatives, int, low=1)
    seed = check_scalar("seed", seed, int, low=0)
    history_length = check_scalar("history_length", history_length, int, low=0)
    interaction_window = check_scalar("interaction_window", interaction_window, int, low=1)
    events = _canonical(log)
    clicks = events.clicks()
    if clicks.size == 0:
        raise ValueError(f"path: {log.path!r} has no 'pv' row: no click to learn from")
    drawn = _draw_negatives(events, clicks, negatives, np.random.default_rng([seed, STREAM_NEGATIVES]), log)
    # Rows: each click, then its negatives; ``candidate`` is the event giving item and category.
    group = negatives + 1
    source_click = np.repeat(np.arange(clicks.size), group)
    candidate = np.empty(source_click.size, dtype=np.int64)
    candidate[::group] = clicks
    for j in range(negatives):
        candidate[j + 1::group] = drawn[j::negatives]
    del drawn
    is_positive = np.zeros(source_click.size, dtype=np.int8)
    is_positive[::group] = 1
    click_block, click_time = events.block[clicks], events.time[clicks]
    block, time = click_block[source_click], click_time[source_click]
    item, category = events.item[candidate], events.category[candidate]
    del candidate
    in_category = _clicks_before(events, clicks, _category_key(events, click_block, events.category[clicks]),
                                 _category_key(events, block, category), time, interaction_window)
    on_item = _clicks_before(events, clicks, _item_key(events, click_block, events.item[clicks]),
                             _item_key(events, block, item), time, interaction_window)
    positions, offsets = _history(events, clicks, click_block, click_time, history_length)
    positions, offsets = MultiIds(positions, offsets).take(source_click)  # each click's history, once per row
    users = events.block_user[block]
    del block, source_click
    columns = {"user_id": users, "recent_items": MultiIds(events.item[positions], offsets),
               "recent_categories": MultiIds(events.category[positions], offsets),
               "item_id": item, "category_id": category,
               "clicks_in_category_24h": in_category, "clicks_on_item_24h": on_item}
    del positions
    schema = _specs(events, (), ("clicks_in_category_24h", "clicks_on_item_24h"))
    data = Dataset(schema, columns, is_positive, users, day=time // SECONDS_PER_DAY)
    report = TaskReport("ctr", data.n, int(clicks.size), rules={
        "positive": "every pv",
        "negatives": f"{negatives} per click: the item of a uniformly drawn pv of the same day (popularity-weighted "
                     "by that day's clicks), redrawn while the user clicks it that day at or after the click "
                     f"(sampling seed {seed})",
        "history": f"last {history_length} clicks strictly before the click",
        "privileged": f"the user's clicks in the candidate's category and on the candidate item in the "
                      f"{interaction_window / 3600:g} h before the click"})
    return data, report


# ---------------------------------------------------------------- the time split


def split_by_time(data: Dataset, test_days: int, path: str) -> tuple[Dataset, Dataset]:
    """``(train, test)``: the last ``test_days`` days holding samples are the test split, the
    earlier ones the training split: the one time split of every source
    (``Dataset.split_last_days``), with the file named in its errors. Raises ``ValueError``
    when ``test_days`` leaves no training day or a split lacks a class."""
    test_days = check_scalar("test_days", test_days, int, low=1)
    first, last = int(data.day.min()), int(data.day.max())
    if last - test_days < first:
        raise ValueError(f"test_days: the samples of {path!r} span days {first}..{last}; "
                         f"{test_days} test day(s) leave no training day")
    train, test = data.split_last_days(test_days)
    for name, part in (("training", train), ("test", test)):
        for value, word in ((1, "positive"), (0, "negative")):
            if not (part.labels == value).any():
                raise ValueError(f"path: {path!r}: the {name} split (days {int(part.day.min())}..{int(part.day.max())}) "
                                 f"has no {word} label; read more rows or choose another --test-days")
    return train, test

"""KuaiRand interaction logs as a pfd_ref dataset (watch time and the post-play actions privileged).

KuaiRand (Gao et al., CIKM 2022, doi 10.1145/3511808.3557624; data CC BY-SA 4.0) logs one row
per (user, video) impression of the Kuaishou app. This module reads its *standard* log format:
a comma- or tab-separated text file (the separator is taken from the header line) with the
official column names. Columns read:

=====================  ========================================================================
required               ``user_id``, ``video_id``, ``date`` (YYYYMMDD), ``hourmin`` (HHMM, local
                       time), ``duration_ms`` (0: unknown), ``play_time_ms``, and the label
post-play, if present  ``is_click`` (in the single-column UI: a valid play, read off the watch
                       time), ``is_like``, ``is_hate``, ``is_follow``, ``is_comment``,
                       ``is_forward``, ``is_profile_enter``, ``long_view``, ``label`` (0/1 each);
                       ``comment_stay_time``, ``profile_stay_time`` (ms)
=====================  ========================================================================

Any other column (``time_ms``, ``timestamp``, ``tab``, ``is_rand``, ...) is not read; the
report lists it.

Features (``schema_for`` gives the exact list for a file's columns and a label):

* regular, user tower: ``user_id``; ``hour`` (``hourmin // 100``, 24 ids); ``day_of_week``
  (Monday = 0, 7 ids); one categorical per column of the optional user-features file. Hour
  and day of week are request context: a two-tower model computes the user side per request,
  when they are known, while item vectors are computed ahead of time, so they go with the user.
* regular, item tower: ``video_id``; ``duration_bucket``: 0 when ``duration_ms == 0``
  (unknown), else ``1 + #{e in DURATION_EDGES_S : duration_ms > 1000 e}``, i.e. the buckets
  (0, 5], (5, 10], (10, 18], (18, 30], (30, 60], (60, 120], (120, 300], (300, inf) seconds
  (18 s is where ``long_view`` changes its rule).
* privileged (dense, width 1 each, known only after the play):
  ``watch_time = log1p(play_time_ms / 1000)``;
  ``watch_ratio = min(play_time_ms / duration_ms, WATCH_RATIO_CAP)`` where
  ``duration_ms > 0``, and 0 where the duration is unknown (never divided by; the teacher
  also reads ``duration_bucket``, whose id 0 says so);
  ``comment_stay = log1p(comment_stay_time / 1000)``, ``profile_stay`` likewise;
  each 0/1 post-play action as 0.0/1.0 under its own name.

The label is any 0/1 column the user names. It is never a feature, and neither is a column
that determines it: columns in one group of ``LABEL_GROUPS`` are read off the same event
(``long_view`` and ``is_click`` are functions of the watch time and the duration; the
extract's ``label`` is ``is_like`` against ``is_hate``; ``is_comment`` implies comment stay
time), so when the label is in a group, every feature made from that group is left out
(``LoadReport.excluded`` says which and why). With ``long_view`` as the label, for example,
``watch_time``, ``watch_ratio`` and ``is_click`` are left out: ``long_view`` is a function of
``play_time_ms`` and ``duration_ms``, and a teacher reading them would be trivially perfect.

**Several objectives** (``load_kuairand_objectives``, ``pfd-ref run --data kuairand
--objectives is_click,is_like,...``): every named 0/1 column is the label of one head of a
multi-head student (docs/method.md, "Several objectives"), none of them is a feature, and
the other columns are read as above. ``is_click`` is decided before the play (scope: every
row); every other objective is a post-play interaction (scope: the played rows,
``play_time_ms > 0``). Instead of leaving out the columns that give a label away, the loader
names them per objective (``ObjectiveSet.revealed_by``): every privileged feature for
``is_click`` (each is a post-play signal), and for an interaction the features made from its
``LABEL_GROUPS`` partners; ``pfd_ref.multihead`` never distils a head from a teacher that
reads one of them.

Ids: user and video ids are mapped to ``0..V-1`` in increasing raw-id order over the whole
file (no label is read for this). An id that occurs only in the test days still has a row
in the table; training never updates that row, so the model sees it at its initial value.
Days: ``day = (date - first date in the file)`` in days; split with ``split_by_time``
(``Dataset.split_last_days``, with the dates and the label in its messages).

Every row read is kept: the loader has no row filter. Bad input is a ``ValueError`` starting
with ``path:`` (or ``user_features:``) and naming the file, the line and the column.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np

from pfd_ref.data.dataset import Dataset
from pfd_ref.data.objectives import ObjectiveData, ObjectiveSet, check_trainable
from pfd_ref.data.text import read_columns, read_header
from pfd_ref.schema import FeatureSpec, Schema
from pfd_ref.validation import check_scalar

REQUIRED_COLUMNS = ("user_id", "video_id", "date", "hourmin", "duration_ms", "play_time_ms")
BINARY_COLUMNS = ("is_click", "is_like", "is_hate", "is_follow", "is_comment", "is_forward",
                  "is_profile_enter", "long_view", "label")
STAY_TIME_FEATURES = {"comment_stay_time": "comment_stay", "profile_stay_time": "profile_stay"}
# Log columns read off one event: with the label in a group, no member of it becomes a feature.
LABEL_GROUPS = (
    ("play_time_ms", "long_view", "is_click"),
    ("label", "is_like", "is_hate"),
    ("is_comment", "comment_stay_time"),
    ("is_profile_enter", "profile_stay_time"),
)
# The privileged features made from a column other than themselves (feature -> column), and the
# log's columns that hold no 0/1 label (for --objectives' messages).
_FEATURE_SOURCE = {"watch_time": "play_time_ms", "watch_ratio": "play_time_ms",
                   **{name: column for column, name in STAY_TIME_FEATURES.items()}}
PRIVILEGED_SOURCES = ("play_time_ms", *STAY_TIME_FEATURES)
PRE_PLAY_OBJECTIVES = ("is_click",)  # decided before the play: every row, revealed by every post-play feature
DURATION_EDGES_S = (5, 10, 18, 30, 60, 120, 300)
WATCH_RATIO_CAP = 5.0
DEFAULT_TEST_DAYS = 4
REGULAR_LOG_FEATURES = ("user_id", "hour", "day_of_week", "video_id", "duration_bucket")


@dataclass(frozen=True)
class LoadReport:
    """What ``load_kuairand`` read and made of it.

    rows : data rows read, all kept (there is no row filter); delimiter : ``","`` or ``"\\t"``;
    users, videos, days : distinct values; first_date, last_date : ISO dates;
    positive_rate : mean label; unknown_duration_rows : rows with ``duration_ms == 0``;
    regular, privileged : feature names; excluded : column -> why it is not a feature;
    ignored_columns : columns of the file the loader does not read;
    users_without_features : users of the log absent from the user-features file (their
    user-feature ids are 0), None without that file.
    """

    path: str
    label: str
    delimiter: str
    rows: int
    users: int
    videos: int
    days: int
    first_date: str
    last_date: str
    positive_rate: float
    unknown_duration_rows: int
    regular: tuple
    privileged: tuple
    excluded: dict
    ignored_columns: tuple
    user_features_path: str | None = None
    users_without_features: int | None = None

    def summary(self) -> str:
        """A few lines for a log: counts, features, exclusions."""
        separator = "tab" if self.delimiter == "\t" else "comma"
        lines = [
            f"kuairand: {self.rows:,} rows read from {self.path} ({separator}-separated), all kept (no row filter); "
            f"{self.users:,} users, {self.videos:,} videos, {self.days} days {self.first_date}..{self.last_date}",
            f"  label {self.label!r}: positive rate {self.positive_rate:.4f}; "
            f"duration unknown (0) in {self.unknown_duration_rows:,} rows",
            f"  regular: {', '.join(self.regular)}",
            f"  privileged: {', '.join(self.privileged)}",
        ]
        lines += [f"  not a feature: {column} ({reason})" for column, reason in self.excluded.items()]
        if self.ignored_columns:
            lines.append(f"  columns not read: {', '.join(self.ignored_columns)}")
        if self.user_features_path is not None:
            lines.append(f"  user features from {self.user_features_path}: "
                         f"{self.users_without_features:,} log users absent from it (user-feature id 0)")
        return "\n".join(lines)


class _Log:
    """The columns of a delimited file (``pfd_ref.data.text.read_columns``) with the checks
    the loader needs; ``ValueError`` naming the file, line and column of the first bad cell."""

    def __init__(self, path, argument: str, integers, strings=()):
        self.text = read_columns(path, argument=argument, integers=integers, strings=strings)
        self.path, self.n, self.where = self.text.path, self.text.n, self.text.where

    def integers(self, column: str, low: int | None = None) -> np.ndarray:
        """The column as int64 ``(n,)``, handed over once (the reader lets go of it, so parsed
        and converted columns do not pile up); ``ValueError`` at the first cell below ``low``."""
        values = self.text.columns.pop(column)
        if low is not None and (values < low).any():
            row = int(np.argmax(values < low))
            raise ValueError(f"{self.where(row, column)}: expected an integer >= {low}, got {self.text.cell(row, column)!r}")
        return values

    def binary(self, column: str) -> np.ndarray:
        """The column as int64 ``(n,)`` of 0/1; ``ValueError`` at the first other value."""
        values = self.integers(column)
        bad = (values != 0) & (values != 1)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"{self.where(row, column)}: expected 0 or 1, got {self.text.cell(row, column)!r}")
        return values


def excluded_columns(label: str, columns) -> dict:
    """Columns of ``columns`` that may not be features when ``label`` is the label, with the reason."""
    excluded = {label: "the label"}
    for group in LABEL_GROUPS:
        if label in group:
            for column in group:
                if column != label and column in columns:
                    excluded[column] = f"read off the same event as the label {label!r}"
    return excluded


def duration_bucket(duration_ms: np.ndarray) -> np.ndarray:
    """int64 ``(n,)``: 0 where ``duration_ms == 0`` (unknown), else
    ``1 + #{e in DURATION_EDGES_S : duration_ms > 1000 e}`` (buckets right-closed in seconds)."""
    edges_ms = 1000 * np.asarray(DURATION_EDGES_S, dtype=np.int64)
    buckets = 1 + np.searchsorted(edges_ms, duration_ms, side="left")
    return np.where(duration_ms == 0, 0, buckets).astype(np.int64)


def watch_ratio(play_time_ms: np.ndarray, duration_ms: np.ndarray) -> np.ndarray:
    """float64 ``(n,)``: ``min(play_time_ms / duration_ms, WATCH_RATIO_CAP)`` where
    ``duration_ms > 0``, else 0 (unknown duration: no division)."""
    known = duration_ms > 0
    ratio = np.zeros(len(play_time_ms), dtype=np.float64)
    ratio[known] = np.minimum(play_time_ms[known] / duration_ms[known], WATCH_RATIO_CAP)
    return ratio


def _dates(table: _Log) -> tuple[np.ndarray, datetime.date]:
    """``(day (n,) int64 = days since the first date, first date)`` from the ``date`` column."""
    raw = table.integers("date")
    unique, inverse = np.unique(raw, return_inverse=True)
    parsed = []
    for value in unique:
        try:
            parsed.append(datetime.datetime.strptime(str(value), "%Y%m%d").date())
        except ValueError:
            row = int(np.argmax(raw == value))
            got = table.text.cell(row, "date")
            raise ValueError(f"{table.where(row, 'date')}: expected a date YYYYMMDD, got {got!r}") from None
    first = parsed[0]
    offsets = np.array([(d - first).days for d in parsed], dtype=np.int64)
    return offsets[inverse], first


def _hours(table: _Log) -> np.ndarray:
    hourmin = table.integers("hourmin", low=0)
    bad = (hourmin > 2359) | (hourmin % 100 > 59)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{table.where(row, 'hourmin')}: expected HHMM (0..2359), got {table.text.cell(row, 'hourmin')!r}")
    return hourmin // 100


def _user_feature_columns(path, user_raw_ids: np.ndarray, taken_names) -> tuple[dict, int]:
    """Categorical user features for each log row, ``({name: (ids (n,) int64, vocab_size)}, users absent)``.

    Every column of the file except ``user_id`` is one feature; its distinct strings (an
    empty cell is a value too) get ids ``1..K`` in sorted order, and id 0 means "user not in
    the file".
    """
    names, _ = read_header(path, "user_features")
    if "user_id" not in names:
        raise ValueError(f"user_features: {os.fspath(path)!r} lacks column(s) ['user_id']; its header has {list(names)}")
    for name in names:
        if name != "user_id" and name in taken_names:
            raise ValueError(f"user_features: {os.fspath(path)!r} line 1: column {name!r} clashes with a log feature")
    table = _Log(path, "user_features", ["user_id"], strings=[name for name in names if name != "user_id"])
    file_ids = table.integers("user_id")
    unique, first_row, counts = np.unique(file_ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        repeated = int(np.flatnonzero(file_ids == unique[counts > 1][0])[1])
        raise ValueError(f"{table.where(repeated, 'user_id')}: user {file_ids[repeated]} appears twice")
    position = np.searchsorted(unique, user_raw_ids).clip(0, len(unique) - 1)
    present = unique[position] == user_raw_ids
    source_row = first_row[position]
    columns = {}
    for name, values in table.text.string_values.items():
        codes = table.text.columns[name]
        columns[name] = (np.where(present, codes[source_row], 0).astype(np.int64), len(values) + 1)
    if not columns:
        raise ValueError(f"user_features: {os.fspath(path)!r} has no column besides 'user_id'")
    return columns, int(len(np.unique(user_raw_ids[~present])))


def load_kuairand(path, label: str = "label", user_features=None) -> tuple[Dataset, LoadReport]:
    """Read a KuaiRand standard log (module docstring) into ``(Dataset, LoadReport)``.

    path : the log file; label : a 0/1 column of it; user_features : optional path to a
    KuaiRand user-features file (``user_id`` plus categorical columns).
    Returns a dataset with ``day`` (days since the file's first date), ``user_ids`` (the
    remapped user id, for GAUC), int8 ``labels`` and the columns of the module docstring.
    Raises ``ValueError`` (starting ``path:``, naming file, line and column) for a missing or
    empty file, missing columns, unparsable or out-of-range values, a label that is not 0/1
    or has a single class, or a label that leaves no privileged feature.
    """
    if label not in BINARY_COLUMNS:
        raise ValueError(f"label: expected one of the 0/1 columns {BINARY_COLUMNS}, got {label!r}")
    header, _ = read_header(path, "path")
    table = _Log(path, "path", _columns_to_read(header, (label,)))
    labels = table.binary(label)
    if labels.min() == labels.max():
        raise ValueError(f"path: {table.path!r} column {label!r}: every row is {labels[0]}; "
                         "the label needs both classes")
    excluded = excluded_columns(label, header)
    log = _log_features(table, header, excluded, user_features)
    if not log.privileged:
        raise ValueError(f"path: {table.path!r}: with label {label!r} no privileged column is left")
    data = Dataset(log.schema, log.columns, labels, log.user_ids, day=log.day)
    return data, _report(table, header, log, label, float(labels.mean()), excluded, user_features)


def load_kuairand_objectives(path, objectives, objective_weights=None,
                             user_features=None) -> tuple[ObjectiveData, LoadReport]:
    """Read a KuaiRand standard log with several objectives (a multi-head run; docs/method.md,
    "Several objectives") into ``(ObjectiveData, LoadReport)``.

    objectives : 0/1 columns of ``BINARY_COLUMNS`` (e.g. ``is_click, is_like, is_comment,
    is_forward, is_follow, is_profile_enter``); objective_weights : one weight each (default 1).
    Scopes: ``is_click`` every row (it is decided before the play), every other objective the
    played rows (``play_time_ms > 0``). No objective is a feature; the other columns are read
    as by ``load_kuairand``. Revealing columns (``ObjectiveSet.revealed_by``): every
    privileged feature for ``is_click`` (each is a post-play signal), and for an interaction
    the features read off the same event (``LABEL_GROUPS``: the comment stay time for
    ``is_comment``, the profile stay time for ``is_profile_enter``, ``label`` and ``is_hate``
    for ``is_like``, ...). ValueError naming the objective for a column that is missing, not
    0/1 (with file, line and column), privileged rather than an objective, or not a KuaiRand
    0/1 column; naming ``objective_weights`` when they do not match the objectives.
    """
    objectives = tuple(objectives)
    for name in objectives:
        if name in PRIVILEGED_SOURCES or name in _FEATURE_SOURCE:
            raise ValueError(f"objectives: {name!r} is a privileged column (read only after the play), not a 0/1 "
                             f"objective; choose among {BINARY_COLUMNS}")
        if name not in BINARY_COLUMNS:
            raise ValueError(f"objectives: {name!r} is not a 0/1 column of the KuaiRand log; choose among {BINARY_COLUMNS}")
    header, _ = read_header(path, "path")
    missing = [name for name in objectives if name not in header]
    if missing:
        raise ValueError(f"objectives: column(s) {missing} missing from {os.fspath(path)!r}; its header has {list(header)}")
    weights = (1.0,) * len(objectives) if objective_weights is None else tuple(objective_weights)
    ObjectiveSet(objectives, ("all",) * len(objectives), weights, ((),) * len(objectives))  # names and weights first
    table = _Log(path, "path", _columns_to_read(header, objectives))
    targets = np.stack([table.binary(name) for name in objectives], axis=1)
    excluded = {name: "an objective" for name in objectives}
    log = _log_features(table, header, excluded, user_features)
    if not log.privileged:
        raise ValueError(f"path: {table.path!r}: with objectives {list(objectives)} no privileged column is left")
    objective_set = ObjectiveSet(objectives, tuple("all" if name in PRE_PLAY_OBJECTIVES else "played" for name in objectives),
                                 weights, tuple(_revealing_features(name, log.privileged) for name in objectives))
    data = ObjectiveData(log.schema, log.columns, objective_set, targets, log.play_time > 0, log.user_ids, day=log.day)
    return data, _report(table, header, log, ",".join(objectives), float(targets[:, 0].mean()), excluded, user_features)


def _revealing_features(objective: str, privileged) -> tuple[str, ...]:
    """The privileged features that give ``objective``'s label away: all of them for a
    pre-play objective, else those read off one of its ``LABEL_GROUPS``."""
    if objective in PRE_PLAY_OBJECTIVES:
        return tuple(privileged)
    partners = {column for group in LABEL_GROUPS if objective in group for column in group if column != objective}
    return tuple(name for name in privileged if _FEATURE_SOURCE.get(name, name) in partners)


def _columns_to_read(header, labels) -> list[str]:
    """The required columns, the labels, and every optional column of the header."""
    optional = [c for c in BINARY_COLUMNS + tuple(STAY_TIME_FEATURES) if c in header and c not in labels]
    return list(REQUIRED_COLUMNS + tuple(labels)) + optional


@dataclass
class _LogFeatures:
    schema: Schema
    columns: dict
    user_ids: np.ndarray
    day: np.ndarray
    first_date: datetime.date
    play_time: np.ndarray
    unknown_duration_rows: int
    users: int
    videos: int
    regular: tuple
    privileged: tuple
    users_without_features: int | None


def _log_features(table: _Log, header, excluded: dict, user_features) -> _LogFeatures:
    """The regular and privileged features of the module docstring (no column of ``excluded``
    becomes a privileged feature)."""
    def usable(column: str) -> bool:
        return column in header and column not in excluded

    day, first_date = _dates(table)
    user_raw = table.integers("user_id")
    user_vocab, user_ids = np.unique(user_raw, return_inverse=True)
    video_vocab, video_ids = np.unique(table.integers("video_id"), return_inverse=True)
    duration = table.integers("duration_ms", low=0)
    play_time = table.integers("play_time_ms", low=0)
    weekday = (first_date.weekday() + day) % 7

    user_columns, users_without = ({}, None) if user_features is None else _user_feature_columns(
        user_features, user_raw, set(REGULAR_LOG_FEATURES) | set(header))
    regular = [FeatureSpec("user_id", "categorical", "regular", "user", vocab_size=len(user_vocab)),
               FeatureSpec("hour", "categorical", "regular", "user", vocab_size=24),
               FeatureSpec("day_of_week", "categorical", "regular", "user", vocab_size=7)]
    regular += [FeatureSpec(name, "categorical", "regular", "user", vocab_size=size)
                for name, (_, size) in user_columns.items()]
    regular += [FeatureSpec("video_id", "categorical", "regular", "item", vocab_size=len(video_vocab)),
                FeatureSpec("duration_bucket", "categorical", "regular", "item", vocab_size=len(DURATION_EDGES_S) + 2)]
    columns = {"user_id": user_ids.astype(np.int64), "hour": _hours(table), "day_of_week": weekday,
               **{name: ids for name, (ids, _) in user_columns.items()},
               "video_id": video_ids.astype(np.int64), "duration_bucket": duration_bucket(duration)}

    privileged = {}
    if usable("play_time_ms"):
        privileged["watch_time"] = np.log1p(play_time / 1000.0)
        privileged["watch_ratio"] = watch_ratio(play_time, duration)
    for column, name in STAY_TIME_FEATURES.items():
        if usable(column):
            privileged[name] = np.log1p(table.integers(column, low=0) / 1000.0)
    for column in BINARY_COLUMNS:
        if usable(column):
            privileged[column] = table.binary(column).astype(np.float64)
    columns.update({name: values.reshape(-1, 1) for name, values in privileged.items()})
    specs = regular + [FeatureSpec(name, "dense", "privileged", None, width=1) for name in privileged]
    return _LogFeatures(Schema(tuple(specs)), columns, user_ids.astype(np.int64), day, first_date, play_time,
                        int((duration == 0).sum()), len(user_vocab), len(video_vocab), tuple(s.name for s in regular),
                        tuple(privileged), users_without)


def _report(table: _Log, header, log: _LogFeatures, label: str, positive_rate: float, excluded: dict,
            user_features) -> LoadReport:
    used = set(REQUIRED_COLUMNS) | set(BINARY_COLUMNS) | set(STAY_TIME_FEATURES) | set(excluded)
    return LoadReport(
        path=table.path, label=label, delimiter=table.text.delimiter, rows=table.n, users=log.users,
        videos=log.videos, days=len(np.unique(log.day)), first_date=log.first_date.isoformat(),
        last_date=(log.first_date + datetime.timedelta(days=int(log.day.max()))).isoformat(),
        positive_rate=positive_rate, unknown_duration_rows=log.unknown_duration_rows,
        regular=log.regular, privileged=log.privileged,
        excluded={c: r for c, r in excluded.items() if c in header},
        ignored_columns=tuple(c for c in header if c not in used),
        user_features_path=None if user_features is None else os.fspath(user_features),
        users_without_features=log.users_without_features)


def split_by_time(data: Dataset, report: LoadReport, test_days: int = DEFAULT_TEST_DAYS) -> tuple[Dataset, Dataset]:
    """``(train, test)``: the last ``test_days`` calendar days of the file are the test split,
    every earlier day the training split (``Dataset.split_last_days``).

    Raises ``ValueError`` naming the file when ``test_days`` leaves a split empty or a split
    has no positive or no negative label.
    """
    test_days = check_scalar("test_days", test_days, int, low=1)
    last_day = int(data.day.max())
    if test_days > last_day:
        raise ValueError(f"test_days: {report.path!r} spans days 0..{last_day} "
                         f"({report.first_date}..{report.last_date}); {test_days} test day(s) leave no training day")
    train, test = data.split_last_days(test_days)
    if isinstance(data, ObjectiveData):  # rare objectives of the test split are skipped by the tables, not here
        check_trainable(train)
        return train, test
    first = datetime.date.fromisoformat(report.first_date)
    date_of = lambda day: first + datetime.timedelta(days=int(day))  # noqa: E731
    for name, part in (("training", train), ("test", test)):
        for value, word in ((1, "positive"), (0, "negative")):
            if not (part.labels == value).any():
                days = f"{date_of(part.day.min())}..{date_of(part.day.max())}"
                raise ValueError(f"path: {report.path!r}: the {name} split ({days}) has no {word} in column "
                                 f"{report.label!r}; choose another --test-days or label")
    return train, test

"""Taobao UserBehavior: reading and its errors, the CVR and CTR tasks (the leakage rule, the
negative sampling), the time split, the generated file and the CLI (its run defaults scaled
to the data: tests/test_experiment.py).

``tests/data/userbehavior_generated.csv`` is the generator's file for ``rows=5000, seed=0``
(``test_fixture_is_the_generators_file`` keeps it so).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pfd_ref.cli import main
from pfd_ref.data import taobao
from pfd_ref.data.taobao import FAV, PV, WINDOW_END, WINDOW_START
from pfd_ref.data.taobao_synthetic import UserBehaviorConfig, format_rows, write_user_behavior

FIXTURE = Path(__file__).resolve().parent / "data" / "userbehavior_generated.csv"
H = 3600
T0 = WINDOW_START + 10 * H  # 2017-11-25 10:00 +08:00


def _lines() -> list[str]:
    return FIXTURE.read_text().splitlines()


def _write(tmp_path, lines, name="UserBehavior.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _log_file(tmp_path, events, name="UserBehavior.csv") -> Path:
    """``events``: (user, item, category, behaviour, timestamp) tuples, written in the given order."""
    return _write(tmp_path, [f"{u},{i},{c},{b},{t}" for u, i, c, b, t in events], name)


def _error(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


@pytest.fixture(scope="module")
def log():
    return taobao.read_user_behavior(FIXTURE)


# ---------------------------------------------------------------- the generated file


def test_fixture_is_the_generators_file(tmp_path):
    path = tmp_path / "again.csv"
    write_user_behavior(path, UserBehaviorConfig(rows=5000, seed=0))
    assert path.read_bytes() == FIXTURE.read_bytes()


def test_generated_file_has_the_official_layout(log):
    lines = _lines()
    assert all(re.fullmatch(r"\d+,\d+,\d+,(pv|buy|cart|fav),\d{10}", line) for line in lines)
    users = [line.split(",")[0] for line in lines]
    blocks = [u for k, u in enumerate(users) if k == 0 or u != users[k - 1]]
    assert blocks == sorted(set(users))  # each user once, in the string order of the ids
    assert log.n == len(lines) and log.dropped_outside_window == 0
    assert log.timestamp.min() >= WINDOW_START and log.timestamp.max() < WINDOW_END
    assert np.unique((log.timestamp - WINDOW_START) // 86400).tolist() == list(range(9))


def test_generated_shares_follow_the_log(tmp_path):
    path = tmp_path / "g.csv"
    rows = write_user_behavior(path, UserBehaviorConfig(rows=60_000, seed=3))
    read = taobao.read_user_behavior(path)
    shares = np.bincount(read.behavior, minlength=4) / read.n
    assert read.n == rows and abs(rows - 60_000) < 6_000  # about: 592 users of heavy-tailed activity
    np.testing.assert_allclose(shares, [0.8958, 0.0201, 0.0552, 0.0288], atol=0.006)


def test_format_rows_writes_the_official_text():
    text = format_rows(np.array([1, 1000]), np.array([0, 5163070]), np.array([7, 2520377]),
                       np.array([PV, FAV], dtype=np.int8), np.array([1511544070, 1512316799]))
    assert text == b"1,0,7,pv,1511544070\n1000,5163070,2520377,fav,1512316799\n"


def test_generator_options_are_checked(tmp_path):
    assert _error(lambda: UserBehaviorConfig(rows=0)).startswith("rows:")
    assert _error(lambda: write_user_behavior(tmp_path / "no" / "f.csv", UserBehaviorConfig(rows=10))).startswith("out:")
    assert _error(lambda: write_user_behavior(tmp_path, UserBehaviorConfig(rows=10))).startswith("out: ")  # a directory
    assert list(tmp_path.iterdir()) == []  # refused before a byte was written


# ---------------------------------------------------------------- reading and its errors


def test_read_counts_and_head(log, tmp_path):
    assert log.rows_read == log.n == 4648 and not log.head
    head = taobao.read_user_behavior(FIXTURE, max_rows=1000)
    users = [line.split(",")[0] for line in _lines()]
    kept = 1000 - head.dropped_partial_user
    assert head.head and head.rows_read == 1000 and head.n == kept
    assert users[kept - 1] != users[kept] and users[999] == users[1000]  # the cut user is left out whole
    assert "rows of the last user" in head.summary()


def _edit(tmp_path, line: int, column: int, value: str) -> Path:
    lines = _lines()
    cells = lines[line - 1].split(",")
    cells[column] = value
    lines[line - 1] = ",".join(cells)
    return _write(tmp_path, lines)


@pytest.mark.parametrize("column, value, expected", [
    (3, "click", "column 'behavior_type': expected one of 'pv', 'buy', 'cart', 'fav', got 'click'"),
    (0, "u17", "column 'user_id': cannot parse 'u17' as a 64-bit integer"),
    (1, "12.5", "column 'item_id': cannot parse '12.5'"),
    (2, "-4", "column 'category_id': expected an id >= 0, got '-4'"),
    (4, "1511000000", "column 'timestamp': '1511000000' lies outside the log's documented window"),
    (4, "1512316800", "lies outside"),  # 2017-12-04 00:00 +08:00: the first second after the window
])
def test_bad_cells_name_file_line_and_column(tmp_path, column, value, expected):
    path = _edit(tmp_path, 40, column, value)
    message = _error(lambda: taobao.read_user_behavior(path))
    assert message.startswith(f"path: {str(path)!r} line 40, ") and expected in message


def test_out_of_window_rows_can_be_dropped_and_are_counted(tmp_path):
    lines = _lines()
    for line in (10, 11, 500):
        cells = lines[line - 1].split(",")
        lines[line - 1] = ",".join(cells[:4] + ["1511000000"])
    path = _write(tmp_path, lines)
    assert "line 10, column 'timestamp'" in _error(lambda: taobao.read_user_behavior(path))
    read = taobao.read_user_behavior(path, outside_window="drop")
    assert read.dropped_outside_window == 3 and read.n == len(lines) - 3
    assert "dropped: 3 rows with a timestamp outside" in read.summary()


def test_out_of_order_and_split_users(tmp_path):
    lines = _lines()
    lines[20], lines[21] = lines[21], lines[20]  # two rows of one user, swapped in time
    assert lines[20].split(",")[0] == lines[21].split(",")[0]
    message = _error(lambda: taobao.read_user_behavior(_write(tmp_path, lines)))
    assert "line 22, column 'timestamp'" in message and "earlier than the previous row of user" in message
    assert taobao.read_user_behavior(_write(tmp_path, lines), require_order=False).n == len(lines)
    lines = _lines()
    moved = lines.pop(0)  # the first user's first row, moved to the end: that user is split
    message = _error(lambda: taobao.read_user_behavior(_write(tmp_path, lines + [moved])))
    assert f"line {len(lines) + 1}, column 'user_id'" in message and "has rows earlier in the file" in message


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"),
    (b"\n", "is empty"),
    (b"user_id,item_id,category_id,behavior_type,timestamp\n1,2,3,pv,1511544070\n", "line 1, column 'user_id': "
                                                                                      "line 1 looks like a header"),
    (b"1,2,3,pv,1511544070\n1,2,3,pv\n", "line 2 has 4 field(s); expected 5"),
    (b"1,2,3,pv,1511544070\n\n1,2,3,pv,1511544071\n", "line 2 is empty"),  # (blank lines at the end are accepted)
])
def test_bad_files(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    message = _error(lambda: taobao.read_user_behavior(path))
    assert message.startswith(f"path: {str(path)!r}") and expected in message


def test_only_pv_rows_refused_for_cvr_with_the_reason(tmp_path):
    path = _write(tmp_path, [line for line in _lines() if ",pv," in line])
    only_clicks = taobao.read_user_behavior(path)
    message = _error(lambda: taobao.cvr_dataset(only_clicks))
    assert str(path) in message and "no 'buy' row" in message and "no CVR positives" in message
    data, _ = taobao.ctr_dataset(only_clicks)  # clicks are CTR's positives: the task stands
    assert data.labels.sum() == only_clicks.n


# ---------------------------------------------------------------- CVR


def _cvr_rows(tmp_path, events):
    data, report = taobao.cvr_dataset(taobao.read_user_behavior(_log_file(tmp_path, events)))
    return data, report


def _row(data, index: int) -> dict:
    return {name: (column.values[column.offsets[index]:column.offsets[index + 1]].tolist() if hasattr(column, "offsets")
                   else column[index].tolist()) for name, column in data.columns.items()}


def test_cvr_label_window_and_post_click_features(tmp_path):
    # user 5: clicks item 10 at T0; revisits, carts, buys at +3 h; after the buy: a fav and a revisit (cut off)
    # item 11: clicked, carted, bought 25 h later (outside the 24 h window: label 0, window ends at +24 h)
    events = [(5, 10, 1, "pv", T0), (5, 11, 2, "pv", T0 + 60), (5, 10, 1, "pv", T0 + H), (5, 10, 1, "cart", T0 + 2 * H),
              (5, 11, 2, "cart", T0 + 2 * H), (5, 10, 1, "buy", T0 + 3 * H), (5, 10, 1, "fav", T0 + 3 * H),
              (5, 10, 1, "pv", T0 + 4 * H), (5, 11, 2, "buy", T0 + 25 * H), (6, 12, 1, "pv", T0 + 8 * 86400),
              (7, 12, 1, "pv", WINDOW_START + 8 * 86400)]
    data, report = _cvr_rows(tmp_path, events)
    assert data.n == 2 and list(report.filtered.values()) == [2]  # clicks on the last day are not samples
    first, second = _row(data, 0), _row(data, 1)
    assert data.labels.tolist() == [1, 0]
    assert first["carted"] == [1.0] and first["faved"] == [0.0]  # the fav came at the purchase's second
    assert first["revisits"] == [np.log1p(1)] and first["revisit_span"] == [np.log1p(60.0)]
    assert second["carted"] == [1.0] and second["revisits"] == [0.0]
    assert first["recent_items"] == [] and second["recent_items"] == [0]  # item 10 (dense 0) clicked 60 s before
    assert second["clicks_in_category_24h"] == [0.0]


def test_cvr_labels_follow_their_item_whatever_the_id_order(tmp_path):
    # the user clicks item 30, then 20, then 10; only 20 is bought
    events = [(5, 30, 1, "pv", T0), (5, 20, 1, "pv", T0 + 60), (5, 10, 1, "pv", T0 + 120),
              (5, 20, 1, "cart", T0 + 180), (5, 20, 1, "buy", T0 + 240), (6, 30, 1, "pv", T0 + 8 * 86400)]
    data, _ = _cvr_rows(tmp_path, events)
    assert data.columns["item_id"].tolist() == [2, 1, 0] and data.labels.tolist() == [0, 1, 0]
    assert data.columns["carted"][:, 0].tolist() == [0.0, 1.0, 0.0]


def _fixture_events():
    return [(int(u), int(i), int(c), b, int(t)) for u, i, c, b, t in (line.split(",") for line in _lines())]


def _sample_of(data) -> dict:
    """Row of each sample by (user, item): a CVR sample is the first click of its pair. Dense
    ids are the same across the perturbations below, which keep every row's ids."""
    return {(int(u), int(i)): r for r, (u, i) in enumerate(zip(data.columns["user_id"], data.columns["item_id"]))}


def test_leakage_rule_the_purchase_and_everything_after_it_is_never_a_feature(tmp_path, log):
    """For a positive: changing every event of its user from the purchase's second on (other
    than the purchase itself) changes none of its features."""
    data, _ = taobao.cvr_dataset(log)
    events = _fixture_events()
    swap = {"pv": "cart", "cart": "pv", "buy": "fav", "fav": "pv"}
    users, items = np.unique(log.user), np.unique(log.item)
    positives = np.flatnonzero(data.labels == 1)
    assert positives.size >= 10
    for r in positives[:10]:
        user, item = users[data.user_ids[r]], items[data.columns["item_id"][r]]
        click = min(t for u, i, c, b, t in events if (u, i, b) == (user, item, "pv"))
        purchase = min(t for u, i, c, b, t in events if (u, i, b) == (user, item, "buy") and t >= click)
        changed = []
        for u, i, c, b, t in events:
            is_purchase = (u, i, b, t) == (user, item, "buy", purchase)
            changed.append((u, i, c, swap[b] if u == user and t >= purchase and not is_purchase else b, t))
            if is_purchase:  # and more of the item in the purchase's second, after it in the log
                changed += [(u, i, c, kind, t) for kind in ("cart", "fav", "pv")]
        other, _ = taobao.cvr_dataset(taobao.read_user_behavior(_log_file(tmp_path, changed, f"p{r}.csv")))
        k = _sample_of(other)[(int(data.user_ids[r]), int(data.columns["item_id"][r]))]
        assert _row(other, k) == _row(data, r) and other.labels[k] == 1


def test_regular_features_read_only_events_before_the_click(tmp_path, log):
    """Changing every later event of the user (other items) changes no regular feature."""
    data, _ = taobao.cvr_dataset(log)
    events = _fixture_events()
    swap = {"pv": "fav", "fav": "pv", "cart": "pv", "buy": "pv"}
    users, items = np.unique(log.user), np.unique(log.item)
    regular = [s.name for s in data.schema.regular()]
    for r in range(0, data.n, 97):
        user, item = users[data.user_ids[r]], items[data.columns["item_id"][r]]
        click = min(t for u, i, c, b, t in events if (u, i, b) == (user, item, "pv"))
        changed = [(u, i, c, swap[b] if u == user and t > click and i != item else b, t) for u, i, c, b, t in events]
        other, _ = taobao.cvr_dataset(taobao.read_user_behavior(_log_file(tmp_path, changed, f"r{r}.csv")))
        k = _sample_of(other)[(int(data.user_ids[r]), int(data.columns["item_id"][r]))]
        assert {n: _row(other, k)[n] for n in regular} == {n: _row(data, r)[n] for n in regular}


def test_cvr_schema_roles(log):
    data, _ = taobao.cvr_dataset(log)
    assert [s.name for s in data.schema.privileged()] == ["carted", "faved", "revisits", "revisit_span"]
    assert [s.name for s in data.schema.regular()] == ["user_id", "recent_items", "recent_categories", "item_id",
                                                       "category_id", "clicks_in_category_24h"]
    assert int(data.day.max()) == 7  # day 8 is the label horizon of day 7's clicks


# ---------------------------------------------------------------- CTR


def test_ctr_negatives_follow_the_sampling_rule(log):
    data, report = taobao.ctr_dataset(log, negatives=4, seed=1)
    clicks = int((log.behavior == PV).sum())
    assert data.n == 5 * clicks and report.positives == clicks
    labels = data.labels.reshape(-1, 5)
    assert (labels[:, 0] == 1).all() and (labels[:, 1:] == 0).all()
    user, item, day = (data.columns["user_id"].reshape(-1, 5), data.columns["item_id"].reshape(-1, 5),
                       data.day.reshape(-1, 5))
    assert (user == user[:, :1]).all() and (day == day[:, :1]).all()  # a negative has its click's user and day
    # no negative is an item its user clicks that day at or after the click
    click_time = {}
    users, items = np.unique(log.user, return_inverse=True)[1], np.unique(log.item, return_inverse=True)[1]
    days = (log.timestamp - WINDOW_START) // 86400
    for u, i, d, t, b in zip(users, items, days, log.timestamp, log.behavior):
        if b == PV:
            click_time.setdefault((u, d, i), []).append(t)
    times = log.timestamp[log.behavior == PV]  # the clicks, in the dataset's order
    for k in range(user.shape[0]):
        for j in range(1, 5):
            later = [t for t in click_time.get((user[k, 0], day[k, 0], item[k, j]), []) if t >= times[k]]
            assert not later


def test_ctr_negatives_are_drawn_by_the_days_clicks(tmp_path):
    # day 0: item 1 has 3/4 of the other users' clicks, item 2 a quarter; user 9 clicks item 3
    events = [(u, 1 if u % 4 else 2, 7, "pv", T0 + u) for u in range(1, 401)] + [(900, 3, 7, "pv", T0 + 500)]
    events.sort(key=lambda e: str(e[0]))
    read = taobao.read_user_behavior(_log_file(tmp_path, events))
    data, _ = taobao.ctr_dataset(read, negatives=50, seed=0)
    rows = data.columns["user_id"] == np.searchsorted(np.unique(read.user), 900)
    negative_items = data.columns["item_id"][rows & (data.labels == 0)]
    share = np.mean(negative_items == 0)  # dense id 0 = raw item 1
    assert negative_items.size == 50 and abs(share - 300 / 400) < 0.15
    assert not (negative_items == 2).any()  # never the item user 900 clicks


def test_ctr_sampling_is_seeded(log):
    a, _ = taobao.ctr_dataset(log, seed=4)
    b, _ = taobao.ctr_dataset(log, seed=4)
    c, _ = taobao.ctr_dataset(log, seed=5)
    np.testing.assert_array_equal(a.columns["item_id"], b.columns["item_id"])
    assert (a.columns["item_id"] != c.columns["item_id"]).any()


def test_ctr_privileged_counts_read_only_earlier_clicks(tmp_path):
    events = [(5, 10, 1, "pv", T0), (5, 11, 1, "pv", T0 + 60), (5, 10, 1, "pv", T0 + 120),
              (5, 10, 1, "pv", T0 + 120 + 24 * H), (6, 12, 2, "pv", T0), (6, 13, 2, "pv", T0 + 24 * H)]
    data, _ = taobao.ctr_dataset(taobao.read_user_behavior(_log_file(tmp_path, events)), negatives=1)
    positives = (data.labels == 1) & (data.user_ids == 0)
    in_category = np.expm1(data.columns["clicks_in_category_24h"][positives, 0]).round().tolist()
    on_item = np.expm1(data.columns["clicks_on_item_24h"][positives, 0]).round().tolist()
    assert in_category == [0, 1, 2, 1]  # the last click: only the one at T0 + 120 is inside its 24 h
    assert on_item == [0, 0, 1, 1]


# ---------------------------------------------------------------- split, command line


def test_time_split_and_its_errors(log):
    data, _ = taobao.ctr_dataset(log)
    train, test = taobao.split_by_time(data, 1, "f")
    assert train.day.max() == 7 and set(test.day.tolist()) == {8}
    assert _error(lambda: taobao.split_by_time(data, 9, "f")).startswith("test_days:")


def _run(capsys, *args) -> tuple[int, str, str]:
    """``pfd-ref run --data taobao --quiet ARGS``: exit code, stdout, stderr."""
    code = main(["run", "--data", "taobao", "--quiet", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_runs_both_tasks_on_the_generated_file(tmp_path, capsys):
    json_path = tmp_path / "out.json"
    code, out, err = _run(capsys, "--path", str(FIXTURE), "--methods", "baseline,pfd,pfd_teacher", "--seeds", "1",
                          "--json", str(json_path))
    assert code == 0, err
    for task in ("taobao_cvr", "taobao_ctr"):
        assert task in out
    assert re.search(r"^pfd_teacher \(not servable\)\s+0\.\d{4}", out, re.MULTILINE)
    assert "4,648 rows read" in err and "run defaults" in err and "a tenth of the" in err
    assert {r["task"] for r in json.loads(json_path.read_text())} == {"taobao_cvr", "taobao_ctr"}


def test_cli_taobao_options(capsys):
    assert _run(capsys, "--methods", "baseline")[::2] == (2, "pfd-ref: error: --path: required with --data taobao (the log file)\n")
    assert main(["run", "--rows", "10", "--quiet"]) == 2
    assert "--rows: only with --data taobao" in capsys.readouterr().err
    code, _, err = _run(capsys, "--path", str(FIXTURE), "--label", "x")
    assert code == 2 and "--label: only with --data kuairand" in err
    code, _, err = _run(capsys, "--path", str(FIXTURE), "--task", "cvr", "--rows", "300", "--methods", "baseline",
                        "--seeds", "1")
    assert code == 2 and "has no positive label" in err

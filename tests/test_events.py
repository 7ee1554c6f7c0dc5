"""Sorted-array features of event logs (pfd_ref.data.events) against brute force."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pfd_ref.data.events import block_index, count_in_window, dense_ids, recent_before


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), max_size=30), st.booleans())
def test_dense_ids_is_the_inverse_of_unique(values, huge):
    raw = np.array(values, dtype=np.int64) * (10 ** 12 if huge else 1)  # huge: the sorting path
    ids, size = dense_ids(raw)
    unique, inverse = np.unique(raw, return_inverse=True)
    np.testing.assert_array_equal(ids, inverse.reshape(-1))
    assert size == unique.size


EVENTS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40)), min_size=1, max_size=40)


@settings(max_examples=100, deadline=None)
@given(EVENTS, st.lists(st.tuples(st.integers(0, 4), st.integers(0, 45)), max_size=10), st.integers(0, 20))
def test_count_in_window_counts_by_brute_force(events, queries, width):
    keys, times = (np.array(v, dtype=np.int64) for v in zip(*events))
    query_keys = np.array([k for k, _ in queries], dtype=np.int64)
    query_times = np.array([t for _, t in queries], dtype=np.int64)
    expected = [sum(1 for k, t in events if k == qk and qt - width <= t < qt) for qk, qt in queries]
    assert count_in_window(keys, times, query_keys, query_times, width).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(EVENTS, st.lists(st.tuples(st.integers(0, 3), st.integers(0, 45)), max_size=10), st.integers(1, 4))
def test_recent_before_takes_the_last_events_strictly_earlier(events, queries, length):
    events = sorted(events)  # canonical order: by block, then time
    block, times = (np.array(v, dtype=np.int64) for v in zip(*events))
    positions, offsets = recent_before(block, times, np.array([b for b, _ in queries], dtype=np.int64),
                                       np.array([t for _, t in queries], dtype=np.int64), length)
    for q, (qb, qt) in enumerate(queries):
        earlier = [e for e, (b, t) in enumerate(events) if b == qb and t < qt]
        assert positions[offsets[q]:offsets[q + 1]].tolist() == earlier[-length:]


def test_block_index():
    block, starts = block_index(np.array([7, 7, 3, 9, 9, 9]))
    assert block.tolist() == [0, 0, 1, 2, 2, 2] and starts.tolist() == [0, 2, 3, 6]

"""Features of event logs computed with sorted arrays: no loop over users or events.

An event log here is a set of parallel arrays in *canonical order*: grouped by user (one
contiguous block per user), times non-decreasing within a block, ties in file order. A
user's *block* is its rank in that order (``block_index``). Times are seconds since the
log's start (``>= 0``).
"""

from __future__ import annotations

import numpy as np



def dense_ids(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """``(ids, V)``: ``ids[e]`` is the rank of ``raw[e]`` among the distinct values of ``raw``
    (ascending), so ``ids`` lies in ``[0, V)`` -- ``np.unique(raw, return_inverse=True)``.

    raw : non-negative int64 ``(n,)``. When ``max(raw) < 8 n`` a presence table of
    ``max(raw) + 1`` flags replaces the sort: ``rank = cumsum(present) - 1`` (linear time).
    """
    if raw.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    top = int(raw.max())
    if top < 8 * raw.size:
        present = np.zeros(top + 1, dtype=bool)
        present[raw] = True
        rank = np.cumsum(present, dtype=np.int64) - 1
        return rank[raw], int(rank[-1] + 1)
    values, inverse = np.unique(raw, return_inverse=True)
    return inverse.astype(np.int64), len(values)


def block_index(user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(block (n,), starts (B + 1,))`` for a log grouped by user: ``block[e]`` is the index
    of the user block holding event ``e`` and block ``b`` spans ``starts[b]:starts[b + 1]``."""
    change = np.flatnonzero(user[1:] != user[:-1]) + 1
    starts = np.concatenate(([0], change, [user.size])).astype(np.int64)
    block = np.repeat(np.arange(starts.size - 1, dtype=np.int64), np.diff(starts))
    return block, starts


def _composite(keys: np.ndarray, times: np.ndarray, span: int) -> np.ndarray:
    return keys * span + times


def _span_for(keys_top: int, times_top: int) -> int:
    span = times_top + 1
    if (keys_top + 1) * span >= 2 ** 62:
        raise ValueError(f"keys: {keys_top + 1} keys x {span} time steps do not fit one int64 sort key")
    return span


def count_in_window(keys: np.ndarray, times: np.ndarray, query_keys: np.ndarray, query_times: np.ndarray,
                    width: int) -> np.ndarray:
    """``counts[q] = #{e : keys[e] == query_keys[q], query_times[q] - width <= times[e] < query_times[q]}``.

    keys, times : non-negative int64 ``(n,)`` (events, any order); query_keys, query_times :
    int64 ``(m,)``; width : seconds. Returns int64 ``(m,)``. Each event becomes one sort key
    ``key * S + time`` (``S`` = 1 + the largest time); a query's count is the difference of
    two ``searchsorted`` positions in the sorted keys.
    """
    if keys.size == 0:
        return np.zeros(query_keys.size, dtype=np.int64)
    span = _span_for(int(max(keys.max(), query_keys.max(initial=0))), int(max(times.max(), query_times.max(initial=0))))
    sorted_keys = np.sort(_composite(keys, times, span))
    upper = np.searchsorted(sorted_keys, _composite(query_keys, query_times, span), side="left")
    lower = np.searchsorted(sorted_keys, _composite(query_keys, np.maximum(query_times - width, 0), span), side="left")
    return (upper - lower).astype(np.int64)


def recent_before(block: np.ndarray, times: np.ndarray, query_block: np.ndarray, query_times: np.ndarray,
                  length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the last ``length`` events of its user block strictly earlier than its
    time, oldest first, as CSR ``(positions (nnz,), offsets (m + 1,))`` into the events
    (``MultiIds(values[positions], offsets)`` gathers any per-event values; fewer than
    ``length`` when the user has fewer).

    block, times : int64 ``(n,)`` of the events to draw from, in canonical order (sorted by
    block, then time); query_block, query_times : int64 ``(m,)``. Row ``q`` holds the events
    ``max(first_q, j_q - length) .. j_q - 1`` with ``j_q`` the number of events before
    ``(query_block[q], query_times[q])`` in ``(block, time)`` order and ``first_q`` the first
    event of the block.
    """
    span = _span_for(int(max(block.max(initial=0), query_block.max(initial=0))),
                     int(max(times.max(initial=0), query_times.max(initial=0))))
    event_keys = _composite(block, times, span)  # sorted: canonical order
    end = np.searchsorted(event_keys, _composite(query_block, query_times, span), side="left")
    start = np.maximum(np.searchsorted(event_keys, query_block * span, side="left"), end - length)
    del event_keys
    lengths = end - start
    offsets = np.zeros(query_block.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    positions = np.repeat(start - offsets[:-1], lengths)
    positions += np.arange(offsets[-1], dtype=np.int64)
    return positions, offsets

"""Bounded heaps for top-k selection (Numba, no Python objects).

A heap of capacity ``k`` is two arrays, ``heap_scores`` (float) and ``heap_ids`` (int64),
plus its current size. The root holds the *worst* kept candidate under the ranking order

    (s_a, i_a) ranks before (s_b, i_b)  <=>  s_a > s_b  or  (s_a == s_b and i_a < i_b),

so a new candidate enters only if it ranks before the root. Because ids are unique this is
a strict total order, and the kept set is the exact top-k whatever order candidates are
offered in (which lets scans read several parts of a matrix at once, or in parallel
chunks). Scores are finite when offered (the callers count and reject non-finite ones).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True)
def ranks_before(score_a, id_a, score_b, id_b):
    """True when candidate a ranks before (is better than) candidate b."""
    return score_a > score_b or (score_a == score_b and id_a < id_b)


@njit(cache=True)
def _sift_down_root(heap_scores, heap_ids, size):
    """Restore the heap order of the first ``size`` entries after the root was replaced."""
    pos = 0
    score, idx = heap_scores[0], heap_ids[0]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        # pick the worse child: the one the other ranks before
        if right < size and ranks_before(heap_scores[child], heap_ids[child], heap_scores[right], heap_ids[right]):
            child = right
        if not ranks_before(score, idx, heap_scores[child], heap_ids[child]):
            break
        heap_scores[pos], heap_ids[pos] = heap_scores[child], heap_ids[child]
        pos = child
    heap_scores[pos], heap_ids[pos] = score, idx


@njit(cache=True)
def _sift_up(heap_scores, heap_ids, pos):
    """Restore the heap order after an entry was written at ``pos`` (the last one)."""
    score, idx = heap_scores[pos], heap_ids[pos]
    while pos > 0:
        parent = (pos - 1) // 2
        if not ranks_before(heap_scores[parent], heap_ids[parent], score, idx):
            break
        heap_scores[pos], heap_ids[pos] = heap_scores[parent], heap_ids[parent]
        pos = parent
    heap_scores[pos], heap_ids[pos] = score, idx


@njit(cache=True)
def offer(heap_scores, heap_ids, size, score, idx):
    """Offer one candidate to a heap of capacity ``len(heap_scores)``; return the new size."""
    if size < heap_scores.shape[0]:
        heap_scores[size], heap_ids[size] = score, idx
        _sift_up(heap_scores, heap_ids, size)
        return size + 1
    if size > 0 and ranks_before(score, idx, heap_scores[0], heap_ids[0]):
        heap_scores[0], heap_ids[0] = score, idx
        _sift_down_root(heap_scores, heap_ids, size)
    return size


@njit(cache=True)
def sort_best_first(heap_scores, heap_ids, size):
    """Heap-sort the first ``size`` entries in place so that index 0 is the best."""
    for end in range(size - 1, 0, -1):
        heap_scores[0], heap_scores[end] = heap_scores[end], heap_scores[0]
        heap_ids[0], heap_ids[end] = heap_ids[end], heap_ids[0]
        _sift_down_root(heap_scores, heap_ids, end)

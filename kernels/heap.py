"""Bounded heaps for top-k selection (Numba, no Python objects).

A heap of capacity ``k`` is two arrays, ``heap_scores`` (float) and ``heap_ids`` (int64),
plus its current size. The root holds the *worst* kept candidate under the ranking order

    (s_a, i_a) ranks before (s_b, i_b)  <=>  s_a > s_b  or  (s_a == s_b and i_a < i_b),

so a new candidate enters only if it ranks before the root. Because ids are unique this is
a strict total order, and the kept set is the exact top-k whatever order candidates are
offered in (which lets scans read several parts of a matrix at once, or in parallel
chunks). Scores are finite when offered (the callers count and reject non-finite ones).
The kept entries are put in ranking order by ``sort_best_first`` (NumPy), once at the end.

``offer`` is one jitted function with the sifts written inline: each jitted function is
compiled on its own, once per dtype, so four small ones (the sifts and the comparison)
cost more compile time than they save in lines (docs/performance.md, "Cold start").
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def offer(heap_scores, heap_ids, size, score, idx):
    """Offer one candidate ``(score, idx)`` to a heap of capacity ``len(heap_scores)``
    holding ``size`` entries; return the new size.

    Not full: the candidate is appended and sifted up (moved above every parent it ranks
    before). Full: it replaces the root if it ranks before the root, and is sifted down
    (swapped with the worse of its children while it ranks before that child), so the root
    stays the worst kept entry.
    """
    if size < heap_scores.shape[0]:
        pos = size
        while pos > 0:
            parent = (pos - 1) // 2
            parent_score, parent_id = heap_scores[parent], heap_ids[parent]
            if not (parent_score > score or (parent_score == score and parent_id < idx)):
                break  # the parent does not rank before the candidate: the order holds
            heap_scores[pos], heap_ids[pos] = parent_score, parent_id
            pos = parent
        heap_scores[pos], heap_ids[pos] = score, idx
        return size + 1
    if size == 0 or not (score > heap_scores[0] or (score == heap_scores[0] and idx < heap_ids[0])):
        return size
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        # the worse child: the right one when the left ranks before it
        if right < size and (heap_scores[child] > heap_scores[right]
                             or (heap_scores[child] == heap_scores[right] and heap_ids[child] < heap_ids[right])):
            child = right
        if not (score > heap_scores[child] or (score == heap_scores[child] and idx < heap_ids[child])):
            break  # the candidate does not rank before its worse child: the order holds
        heap_scores[pos], heap_ids[pos] = heap_scores[child], heap_ids[child]
        pos = child
    heap_scores[pos], heap_ids[pos] = score, idx
    return size


def sort_best_first(heap_scores: np.ndarray, heap_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full heaps ``(m, k)`` (every row holding ``k`` entries) in ranking order, best first:
    score descending, then id ascending (``np.lexsort`` row by row). Returns new arrays."""
    order = np.lexsort((heap_ids, -heap_scores), axis=-1)
    return np.take_along_axis(heap_scores, order, axis=-1), np.take_along_axis(heap_ids, order, axis=-1)

"""benchmarks.step_limit: the counts of one training step against counts made by hand."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.step_limit import StepCounts, shared_step_floor, step_counts, teacher_increment, teacher_increment_sizes
from pfd_ref.data import Dataset, MultiIds
from pfd_ref.models import MLPRanker, TwoTower
from pfd_ref.schema import FeatureSpec, Schema

USER = FeatureSpec("u", "categorical", "regular", "user", vocab_size=5)
RECENT = FeatureSpec("m", "multi_categorical", "regular", "user", vocab_size=4, pooling="mean")
AGE = FeatureSpec("x", "dense", "regular", "user", width=2)
ITEM = FeatureSpec("i", "categorical", "regular", "item", vocab_size=3)
PRIVILEGED = FeatureSpec("p", "dense", "privileged", None, width=1)


def batch() -> Dataset:
    """4 rows: u = 0 1 1 3 (3 ids), m = [2] [] [2 0] [] (2 ids), i = 0 0 2 1 (3 ids)."""
    columns = {"u": np.array([0, 1, 1, 3]), "m": MultiIds(np.array([2, 2, 0]), np.array([0, 1, 1, 3, 3])),
               "x": np.zeros((4, 2)), "i": np.array([0, 0, 2, 1]), "p": np.zeros((4, 1))}
    return Dataset(Schema((USER, RECENT, AGE, ITEM, PRIVILEGED)), columns, np.array([0, 1, 0, 1], dtype=np.int8), np.arange(4))


def ranker(prefix: str, fields, shared_fields=(), batch_norm=False) -> MLPRanker:
    return MLPRanker(prefix, fields, embed_dim=2, hidden=(3,), shared_fields=shared_fields, batch_norm=batch_norm)


# Inputs as stored: u 4 int64 = 32 bytes; m 3 values + 5 offsets int64 = 64; x 4 x 2 float64 = 64;
# p 4 x 1 float64 = 32; i 32; labels 4 int8 = 4.


def test_mlp_ranker_by_hand():
    # sizes (6, 3, 1): layer 0 forward 4*6*3 = 72, weight gradient 72, input gradient over the
    # 4 embedded columns 4*3*4 = 48; layer 1: 4*3*1 = 12 three times.
    counts = step_counts(ranker("student", (USER, RECENT, AGE)), None, batch())
    assert counts.multiply_adds == 72 + 72 + 48 + 3 * 12
    # 5 touched rows x 2 = 10 floats = 40 bytes; dense W0 18 + b0 3 + W1 3 + b1 1 = 25 floats = 100 bytes.
    assert counts.bytes == {
        "batch inputs (ids, dense columns, labels)": 32 + 64 + 64 + 4,
        "embedding rows touched, read": 40,
        "embedding rows touched, written": 40,
        "optimizer state of those rows, read and written": 2 * 2 * 40,
        "dense parameters, read and written": 2 * 100,
        "optimizer state of the dense parameters, read and written": 2 * 2 * 100,
        "batch-norm running averages, read and written": 0,
    }
    assert counts.total_bytes == 1004
    # tables 5*2 + 4*2 = 18 floats, dense 25: (1 + 2 Adam slots) * 43 floats * 4 bytes
    assert counts.resident_bytes == 3 * 43 * 4


def test_sync_pair_by_hand_and_shared_tables_counted_once():
    student = ranker("student", (USER, RECENT, AGE))
    # teacher sizes (7, 3, 1): 4*7*3 = 84 twice, input gradient 48 (embedded columns only), 3 * 12
    teacher_macs = 84 + 84 + 48 + 3 * 12
    own = step_counts(student, ranker("teacher", (USER, RECENT, AGE, PRIVILEGED)), batch())
    assert own.multiply_adds == 228 + teacher_macs
    # inputs + p; rows 80 bytes (each model's tables); dense 25 + 28 = 53 floats = 212 bytes
    assert own.total_bytes == (164 + 32) + 80 + 80 + 4 * 80 + 2 * 212 + 4 * 212
    shared = step_counts(ranker("student", (USER, RECENT, AGE), ("u", "m")),
                         ranker("teacher", (USER, RECENT, AGE, PRIVILEGED), ("u", "m")), batch())
    assert shared.multiply_adds == own.multiply_adds
    assert shared.total_bytes == (164 + 32) + 40 + 40 + 4 * 40 + 2 * 212 + 4 * 212


def test_batch_norm_and_adagrad_by_hand():
    counts = step_counts(ranker("student", (USER, RECENT, AGE), batch_norm=True), None, batch(), itemsize=8, optimizer="adagrad")
    # W0 18, gamma 3, beta 3 (no b0), W1 3, b1 1 = 28 floats of 8 bytes; running mean and var 6 floats
    assert counts.bytes["dense parameters, read and written"] == 2 * 28 * 8
    assert counts.bytes["optimizer state of the dense parameters, read and written"] == 2 * 1 * 28 * 8
    assert counts.bytes["optimizer state of those rows, read and written"] == 2 * 1 * 10 * 8
    assert counts.bytes["batch-norm running averages, read and written"] == 2 * 6 * 8


def test_two_tower_by_hand():
    model = TwoTower("student", (USER, RECENT, AGE), (ITEM,), embed_dim=2, tower_hidden=(3,), out_dim=2)
    # user tower (6, 3, 2): 72 + 72 + 48, then 4*3*2 = 24 three times; item tower (2, 3, 2):
    # 4*2*3 = 24 three times, 24 three times; inner product 4*2 forward + 2*4*2 backward
    counts = step_counts(model, None, batch())
    assert counts.multiply_adds == (72 + 72 + 48 + 72) + (72 + 72) + 24
    # rows: u 3, m 2, i 3 = 8 x 2 floats; dense: user 18+3+6+2, item 6+3+6+2, bias 1 = 47 floats
    assert counts.total_bytes == (32 + 64 + 64 + 32 + 4) + 2 * 64 + 4 * 64 + 6 * 47 * 4


def test_merging_counts_of_another_dtype_is_refused():
    with pytest.raises(ValueError, match="other"):
        StepCounts(4, 2).merged(StepCounts(8, 2))
    with pytest.raises(ValueError, match="optimizer"):
        step_counts(ranker("student", (USER,)), None, batch(), optimizer="rmsprop")


def test_what_the_teacher_adds_by_hand():
    student = ranker("student", (USER, RECENT, AGE), ("u", "m"))
    teacher = ranker("teacher", (USER, RECENT, AGE, PRIVILEGED), ("u", "m"))
    sizes = teacher_increment_sizes(student, teacher, batch())
    # teacher sizes (7, 3, 1): forward, weight gradient, input gradient (4 embedded columns) per layer
    assert [(p.m, p.k, p.n) for p in sizes.products] == [(4, 7, 3), (7, 4, 3), (4, 3, 4), (4, 3, 1), (3, 4, 1), (4, 1, 3)]
    # u and m shared: 2 tables x 2 columns summed; Adam: W0 21 + b0 3 + W1 3 + b1 1 = 28 entries, no own table
    assert (sizes.shared_width, sizes.adam_entries, sizes.n) == (4, 28, 4)
    # nothing shared: no sum; the teacher's own touched rows (u 3, m 2, x 2 columns) join Adam's entries
    alone = teacher_increment_sizes(ranker("student", (USER, RECENT, AGE)), ranker("teacher", (USER, RECENT, AGE, PRIVILEGED)),
                                    batch())
    assert (alone.shared_width, alone.adam_entries) == (0, 28 + 10)
    pieces = teacher_increment(student, teacher, batch(), np.float32)
    assert len(pieces) == 4
    for call in pieces.values():
        call()


def test_the_floor_is_the_student_step_plus_the_pieces():
    assert shared_step_floor(2.0, {"products": 0.5, "losses": 0.1, "sum": 0.1, "adam": 0.1}) == (2.8, 1.4)

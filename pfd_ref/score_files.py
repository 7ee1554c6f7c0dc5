"""Reading score files: prediction files for ``pfd-ref metrics`` and a teacher's scores for
``pfd-ref run --mode two-stage --teacher-scores``.

A file is CSV with a header line (comma, or tab when the header holds a tab and no comma),
``.npz`` (one 1-d array per column) or, for teacher scores only, ``.npy`` (one 1-d array of
scores, aligned by position). Every error is a ``ValueError`` naming the file and, where one
is at fault, the row (0-based, as in the data; for CSV also the line) and the column.
"""

from __future__ import annotations

import contextlib
import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pfd_ref.conventions import logits_from_probabilities
from pfd_ref.data.dataset import load_npz
from pfd_ref.metrics import SCORE_KINDS
from pfd_ref.validation import check_choice

ALIGNMENTS = ("position", "row-id")
FIELD_SIZE_LIMIT = 2**31 - 1  # the largest the csv module takes on every platform (a C long)


def _where(path, row: int | None = None, column: str | None = None, csv_file: bool = False) -> str:
    text = os.fspath(path)
    if row is not None:
        text += f", row {row}" + (f" (line {row + 2})" if csv_file else "")
    if column is not None:
        text += f", column {column!r}"
    return text


@contextlib.contextmanager
def _any_field_size():
    """No limit on the length of a CSV field (the csv module's default refuses 131,072
    characters and more, even in a column that is never read), restored afterwards."""
    previous = csv.field_size_limit(FIELD_SIZE_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _read_csv(path) -> dict[str, list[str]]:
    """Columns of a CSV file with a header, as lists of strings (blank lines skipped, fields
    of any length); ValueError naming the file (and the line) when it cannot be read, a line
    has the wrong number of fields or is not CSV."""
    try:
        with open(path, newline="") as handle, _any_field_size():
            header_line = handle.readline()
            delimiter = "\t" if "\t" in header_line and "," not in header_line else ","
            handle.seek(0)
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if not header:
                raise ValueError(f"{path}: empty file; expected a header line naming the columns")
            header = [name.strip() for name in header]
            columns = {name: [] for name in header}
            for line_number, fields in enumerate(reader, start=2):
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise ValueError(f"{path}, line {line_number}: {len(fields)} field(s), the header has {len(header)}")
                for name, value in zip(header, fields):
                    columns[name].append(value.strip())
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read ({error})") from None
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: not CSV ({error})") from None
    return columns


def _read_table(path, argument: str) -> tuple[dict[str, np.ndarray | list], bool]:
    """``(columns, is_csv)``: an ``.npz`` file's arrays (errors start with ``argument``), or a
    CSV file's string columns."""
    if Path(path).suffix.lower() == ".npz":
        return load_npz(path, argument), False
    return _read_csv(path), True


def _float_column(path, columns: dict, name: str, option: str, is_csv: bool) -> np.ndarray:
    """Column ``name`` as finite float64; ValueError naming the file, the row and the column."""
    if name not in columns:
        listing = ", ".join(map(repr, columns)) or "none"
        raise ValueError(f"{path}: no column {name!r} (columns: {listing}); name it with {option}")
    values = columns[name]
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        row = next(i for i, v in enumerate(values) if not _is_number(v))
        shown = repr(values[row]) if len(str(values[row])) <= 40 else f"{str(values[row])[:40]!r}... ({len(values[row]):,} characters)"
        raise ValueError(f"{_where(path, row, name, is_csv)}: {shown} is not a number") from None
    if array.ndim != 1:
        raise ValueError(f"{_where(path, column=name)}: expected one value per row, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        row = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{_where(path, row, name, is_csv)}: {array[row].item()} (NaN or infinity)")
    return array


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _check_lengths(path, arrays: dict[str, np.ndarray]) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    first = next(iter(lengths))
    for name, length in lengths.items():
        if length != lengths[first]:
            raise ValueError(f"{path}: column {name!r} has {length} rows, {first!r} has {lengths[first]}")
    if lengths[first] == 0:
        raise ValueError(f"{path}: no rows")
    return lengths[first]


def _check_probabilities(path, scores: np.ndarray, column: str, is_csv: bool, option: str) -> None:
    outside = (scores < 0) | (scores > 1)
    if np.any(outside):
        row = int(np.flatnonzero(outside)[0])
        raise ValueError(f"{_where(path, row, column, is_csv)}: {scores[row].item()!r} is outside [0, 1] "
                         f"({option} probabilities)")


@dataclass(frozen=True)
class Predictions:
    """A prediction file's columns: ``labels`` (n,) int8 0/1, ``scores`` (n,) float64,
    ``groups`` (n,) int64 user indices (the file's user ids renumbered 0..) or None,
    ``weights`` (n,) float64 >= 0 or None."""

    labels: np.ndarray
    scores: np.ndarray
    groups: np.ndarray | None
    weights: np.ndarray | None


def read_predictions(path, score_is: str = "logits", label_column: str = "label", score_column: str = "score",
                     user_column: str | None = "user_id", weight_column: str | None = "weight",
                     require_users: bool = False, require_weights: bool = False) -> Predictions:
    """Read a prediction file (CSV with a header, or ``.npz``) for ``pfd-ref metrics``.

    Required columns ``label_column`` (0/1) and ``score_column`` (finite; in [0, 1] when
    ``score_is`` is "probabilities"); optional ``user_column`` (any ids, compared for
    equality: GAUC groups) and ``weight_column`` (finite, >= 0), used when present (and an
    error when absent but required). Raises ValueError naming the file, row and column.
    """
    check_choice("--score-is", score_is, SCORE_KINDS)
    columns, is_csv = _read_table(path, "file")
    arrays = {"labels": _float_column(path, columns, label_column, "--label-column", is_csv),
              "scores": _float_column(path, columns, score_column, "--score-column", is_csv)}
    users = None
    if user_column is not None and (user_column in columns or require_users):
        if user_column not in columns:
            raise ValueError(f"{path}: no column {user_column!r} for the user ids (GAUC); name it with --user-column")
        users = np.asarray(columns[user_column])
        arrays["users"] = users
    if weight_column is not None and (weight_column in columns or require_weights):
        arrays["weights"] = _float_column(path, columns, weight_column, "--weight-column", is_csv)
    _check_lengths(path, arrays)
    labels = arrays["labels"]
    bad = (labels != 0) & (labels != 1)
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{_where(path, row, label_column, is_csv)}: {labels[row].item()!r} is not a label (0 or 1)")
    if score_is == "probabilities":
        _check_probabilities(path, arrays["scores"], score_column, is_csv, "--score-is")
    weights = arrays.get("weights")
    if weights is not None and np.any(weights < 0):
        row = int(np.flatnonzero(weights < 0)[0])
        raise ValueError(f"{_where(path, row, weight_column, is_csv)}: {weights[row].item()!r} is a negative weight")
    groups = None if users is None else np.unique(users, return_inverse=True)[1].astype(np.int64).ravel()
    return Predictions(labels.astype(np.int8), arrays["scores"], groups, weights)


def read_teacher_scores(path, n_rows: int, score_is: str = "logits", align: str = "position",
                        temperature: float = 1.0, dtype: str = "float32", data_name: str = "the data") -> np.ndarray:
    """A teacher's scores for the ``n_rows`` rows of the data, as logits for ``soft_loss``.

    The file: ``.npy`` (a 1-d array of scores), ``.npz`` (array ``score``, and ``row_id`` to
    align by row id) or CSV with a header (column ``score``, and ``row_id``). ``align``:
    "position" (score k belongs to row k of the data file; the counts must match) or
    "row-id" (``row_id`` holds each row's 0-based index in the data file, every row exactly
    once, in any order). ``score_is`` "probabilities" converts by
    ``conventions.logits_from_probabilities`` (no clipping; 0 and 1 stay exact soft labels).
    Returns (n_rows,) logits in ``dtype``, in the data's row order. ValueError naming the
    file, the row and the problem: a count or id mismatch, NaN, a probability outside [0, 1].
    """
    check_choice("--teacher-scores-are", score_is, SCORE_KINDS)
    check_choice("--teacher-scores-align", align, ALIGNMENTS)
    is_csv = False
    if Path(path).suffix.lower() == ".npy":
        if align != "position":
            raise ValueError(f"{path}: a .npy file holds scores only; aligning by row id needs a 'row_id' column "
                             "(.npz or CSV)")
        try:
            columns = {"score": np.load(path, allow_pickle=False)}
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read as .npy ({error})") from None
    else:
        columns, is_csv = _read_table(path, "--teacher-scores")
    scores = _float_column(path, columns, "score", "a column named 'score'", is_csv)
    if score_is == "probabilities":
        _check_probabilities(path, scores, "score", is_csv, "--teacher-scores-are")
    if align == "position":
        if scores.shape[0] != n_rows:
            raise ValueError(f"{path}: {scores.shape[0]} scores for the {n_rows} rows of {data_name} (aligned by "
                             "position: score k belongs to row k)")
        ordered = scores
    else:
        ids = _float_column(path, columns, "row_id", "a column named 'row_id'", is_csv)
        _check_lengths(path, {"score": scores, "row_id": ids})
        ordered = scores[_row_order(path, ids, n_rows, is_csv, data_name)]
    float_scores = ordered.astype(dtype)
    if score_is == "logits":
        if not np.all(np.isfinite(float_scores)):
            row = int(np.flatnonzero(~np.isfinite(float_scores))[0])
            raise ValueError(f"{path}: the logit of data row {row} overflows {dtype}")
        return float_scores
    return logits_from_probabilities(float_scores, temperature)


def _row_order(path, ids: np.ndarray, n_rows: int, is_csv: bool, data_name: str) -> np.ndarray:
    """``order`` with ``ids[order[k]] == k`` for every data row k; ValueError naming the file
    row of a non-integer, out-of-range or repeated id, or the first data row no id names."""
    whole = ids == np.round(ids)
    if not np.all(whole):
        row = int(np.flatnonzero(~whole)[0])
        raise ValueError(f"{_where(path, row, 'row_id', is_csv)}: {ids[row].item()!r} is not a whole row index")
    outside = (ids < 0) | (ids >= n_rows)
    if np.any(outside):
        row = int(np.flatnonzero(outside)[0])
        raise ValueError(f"{_where(path, row, 'row_id', is_csv)}: row id {int(ids[row])} is outside the "
                         f"{n_rows} rows of {data_name}")
    ids = ids.astype(np.int64)
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:  # report the repeat that comes first in the file
        k = int(np.argmin(order[repeated + 1]))
        earlier, row = int(order[repeated[k]]), int(order[repeated[k] + 1])
        raise ValueError(f"{_where(path, row, 'row_id', is_csv)}: row id {ids[row]} appears twice (file rows "
                         f"{earlier} and {row})")
    file_row = np.full(n_rows, -1, np.int64)
    file_row[ids] = np.arange(ids.shape[0])
    if np.any(file_row < 0):
        missing = np.flatnonzero(file_row < 0)
        raise ValueError(f"{path}: no score for {missing.shape[0]} row(s) of {data_name} (first: row {missing[0]})")
    return file_row

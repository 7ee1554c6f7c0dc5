"""A dataset: plain NumPy arrays plus the schema that describes them.

Column layouts (``n`` rows):

* categorical: int64 ids of shape ``(n,)`` in ``[0, vocab_size)``;
* multi_categorical: ``MultiIds(values (nnz,) int64, offsets (n + 1,) int64)`` in CSR layout,
  row ``i`` holds ``values[offsets[i]:offsets[i + 1]]`` (an empty row is allowed);
* dense: float64 of shape ``(n, width)``, finite.

Besides the columns a dataset holds ``labels`` (int8 0/1, ``(n,)``), ``user_ids`` (int64
``(n,)``, the groups of GAUC), optionally ``day`` (int64 ``(n,)``, for time splits) and
``weights`` (float32 or float64 ``(n,)``, non-negative). Everything is checked once, when the
dataset is built from outside; datasets derived from a valid one (``take``,
``split_last_days``) skip the checks.

This module also defines, once for every file pfd_ref writes (datasets, exported students,
oracle cases), how named columns are stored in an ``.npz`` (``pack_columns``: dotted keys,
like the parameter names), the batcher of every loop (``batch_indices``) and the time split
of every data source (``last_days``, ``Dataset.split_last_days``).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pfd_ref.files import write_atomically
from pfd_ref.schema import Schema
from pfd_ref.validation import check_float_array, check_ids, check_labels, check_offsets, check_scalar, check_weights

FORMAT_KEY = "pfd_ref_dataset_format"
FORMAT_VERSION = 2  # 2: columns stored by pack_columns("column", ...); 1 stored them by position


class MultiIds(NamedTuple):
    """A multi-id column in CSR layout: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``.

    values : int64 ``(nnz,)``; offsets : int64 ``(n + 1,)`` with ``offsets[0] == 0``,
    non-decreasing, ``offsets[-1] == nnz``.
    """

    values: np.ndarray
    offsets: np.ndarray

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.offsets) - 1

    def take(self, indices: np.ndarray) -> "MultiIds":
        """Rows ``indices`` (int64 ``(m,)``, any order, repeats allowed) as a new ``MultiIds``.

        Vectorised CSR gather: with ``start_j = offsets[indices[j]]`` and
        ``length_j = offsets[indices[j] + 1] - start_j``, the new offsets are
        ``[0, cumsum(length)]`` and slot ``t`` of new row ``j`` reads
        ``values[start_j + t - new_offsets[j]]``.
        """
        starts = self.offsets[indices]
        lengths = self.offsets[indices + 1] - starts
        new_offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        positions = np.arange(new_offsets[-1], dtype=np.int64) + np.repeat(starts - new_offsets[:-1], lengths)
        return MultiIds(self.values[positions], new_offsets)


def _take_column(column, indices: np.ndarray):
    """Rows ``indices`` of one column, whatever its layout."""
    return column.take(indices) if isinstance(column, MultiIds) else column[indices]


def pack_columns(prefix: str, columns: dict) -> dict[str, np.ndarray]:
    """The arrays of named columns (or parameters) under one dotted key scheme, in order:
    ``{prefix}.{name}`` for an array, ``{prefix}.{name}.values`` and ``{prefix}.{name}.offsets``
    for a ``MultiIds`` column. Datasets (``column``), exported students (``param``, ``users``,
    ``items``) and oracle cases (``input``, ``param``) are all written this way."""
    arrays = {}
    for name, column in columns.items():
        if isinstance(column, MultiIds):
            arrays[f"{prefix}.{name}.values"], arrays[f"{prefix}.{name}.offsets"] = column.values, column.offsets
        else:
            arrays[f"{prefix}.{name}"] = column
    return arrays


def unpack_columns(prefix: str, arrays: dict, fields=None) -> dict:
    """Inverse of ``pack_columns``. With ``fields`` (``FeatureSpec``s): exactly their columns,
    a ``MultiIds`` for each multi_categorical one (``KeyError`` naming a missing key).
    Without: every array whose key starts with ``{prefix}.``, by the rest of its key."""
    if fields is None:
        return {key[len(prefix) + 1:]: value for key, value in arrays.items() if key.startswith(prefix + ".")}
    return {f.name: MultiIds(arrays[f"{prefix}.{f.name}.values"], arrays[f"{prefix}.{f.name}.offsets"])
            if f.kind == "multi_categorical" else arrays[f"{prefix}.{f.name}"] for f in fields}


def batch_indices(n: int, batch_size: int, rng: np.random.Generator | None = None, epochs: int = 1):
    """Yield the row indices of every batch, epoch after epoch: ``range(n)`` in order (``rng``
    None) or a fresh ``rng.permutation(n)`` per epoch, cut into consecutive slices of
    ``batch_size`` (the last one of an epoch may be shorter). The batcher of every loop."""
    for _ in range(epochs):
        order = np.arange(n, dtype=np.int64) if rng is None else rng.permutation(n)
        for start in range(0, n, batch_size):
            yield order[start:start + batch_size]


def last_days(day: np.ndarray, test_days: int) -> np.ndarray:
    """The time split of every data source: a boolean mask of the rows in the last
    ``test_days`` days, ``day > max(day) - test_days`` (the test split; the others train)."""
    return day > day.max() - test_days


def _check_column(name: str, spec, column, n: int):
    """Return the column in its stored layout, or raise ``ValueError`` starting with ``columns['name']``."""
    label = f"columns[{name!r}]"
    if spec.kind == "multi_categorical":
        if not isinstance(column, MultiIds):
            raise ValueError(f"{label}: expected MultiIds(values, offsets), got {type(column).__name__}")
        values = check_ids(f"{label}.values", column.values, spec.vocab_size)
        offsets = check_offsets(f"{label}.offsets", column.offsets, len(values))
        if len(offsets) != n + 1:
            raise ValueError(f"{label}.offsets: expected length n + 1 = {n + 1}, got {len(offsets)}")
        return MultiIds(values, offsets)
    if not isinstance(column, np.ndarray):
        raise ValueError(f"{label}: expected a numpy array, got {type(column).__name__}")
    if spec.kind == "categorical":
        ids = check_ids(label, column, spec.vocab_size)
        if ids.shape != (n,):
            raise ValueError(f"{label}: expected shape ({n},), got {ids.shape}")
        return ids
    if column.dtype != np.float64:
        raise ValueError(f"{label}: dense columns are float64, got {column.dtype} (no silent casts)")
    if column.shape != (n, spec.width):
        raise ValueError(f"{label}: expected shape ({n}, {spec.width}), got {column.shape}")
    return check_float_array(label, column)


def _check_int_vector(name: str, x, n: int) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integers, got dtype {x.dtype}")
    if x.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {x.shape}")
    return x.astype(np.int64, copy=False)


NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)  # what a damaged archive raises
NPZ_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first bytes (with members, empty)
NPY_MAGIC = b"\x93NUMPY"


def load_npz(path, name: str = "path") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (read with ``allow_pickle=False``), in file
    order. ValueError starting with ``name`` and naming the file when it cannot be read, is
    not a zip archive (a text file, a ``.npy`` array), is truncated or damaged (a bad CRC, a
    cut-off member), or holds an array that needs pickling."""
    where = f"{name}: {os.fspath(path)!r}"
    try:
        with open(path, "rb") as handle:
            start = handle.read(len(NPY_MAGIC))
    except OSError as error:
        raise ValueError(f"{where} cannot be read ({error.strerror or error})") from None
    if start.startswith(NPY_MAGIC):
        raise ValueError(f"{where} is a .npy array, not an .npz archive")
    if not start.startswith(NPZ_MAGIC):
        kind = "empty" if not start else "text, not a NumPy zip archive" if _is_text(start) else "not a NumPy zip archive"
        raise ValueError(f"{where} is {kind} (an .npz starts with the bytes PK\\x03\\x04; this file starts with "
                         f"{start!r})")
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return {key: loaded[key] for key in loaded.files}
    except ValueError as error:
        if "pickle" in str(error):
            raise ValueError(f"{where} holds an array that needs pickling ({error})") from None
        raise ValueError(f"{where} is truncated or damaged ({error})") from None
    except NPZ_ERRORS as error:
        raise ValueError(f"{where} is truncated or damaged ({type(error).__name__}: {error})") from None


def _is_text(start: bytes) -> bool:
    """Whether the first bytes of a file read as printable UTF-8 text."""
    try:
        return all(c.isprintable() or c.isspace() for c in start.decode("utf-8"))
    except UnicodeDecodeError:
        return False


def save_npz(path, arrays: dict[str, np.ndarray], compressed: bool = False) -> Path:
    """Write ``arrays`` (none of them pickled objects) as one ``.npz`` at exactly ``path``
    (``numpy.savez``, or ``savez_compressed``), atomically (``pfd_ref.files.write_atomically``).
    The writer of every ``.npz`` pfd_ref makes: datasets, exported students, oracle cases."""
    savez = np.savez_compressed if compressed else np.savez
    return write_atomically(path, lambda handle: savez(handle, **arrays))


class Dataset:
    """``n`` rows of columns described by ``schema``, with labels, user ids, days and weights.

    Dataset(schema, columns, labels, user_ids, day=None, weights=None) checks everything and
    raises ``ValueError`` naming the offending column or argument: a missing or extra column,
    a wrong length, shape or dtype, an id outside ``[0, vocab_size)``, bad offsets, NaN or
    infinity in a dense column, labels other than 0/1, a ``user_ids`` or ``day`` of the wrong
    length. Integer arrays of any integer dtype are accepted and stored as int64; labels are
    stored as int8; dense columns must already be float64 and weights float32 or float64.
    """

    def __init__(self, schema: Schema, columns: dict, labels, user_ids, day=None, weights=None):
        if not isinstance(schema, Schema):
            raise ValueError(f"schema: expected a Schema, got {type(schema).__name__}")
        if not isinstance(columns, dict):
            raise ValueError(f"columns: expected a dict of column name -> array, got {type(columns).__name__}")
        missing = [name for name in schema.names if name not in columns]
        if missing:
            raise ValueError(f"columns: missing column(s) {missing} required by the schema")
        extra = [name for name in columns if name not in schema]
        if extra:
            raise ValueError(f"columns: column(s) {extra} are not in the schema")
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels: expected shape (n,), got {labels.shape}")
        n = len(labels)
        labels = check_labels("labels", labels, n).astype(np.int8)
        checked = {spec.name: _check_column(spec.name, spec, columns[spec.name], n) for spec in schema}
        user_ids = _check_int_vector("user_ids", user_ids, n)
        day = None if day is None else _check_int_vector("day", day, n)
        if weights is not None:
            weights = check_float_array("weights", weights, ndim=1)
            weights = check_weights("weights", weights, n, weights.dtype)
        self._set(schema, checked, labels, user_ids, day, weights)

    def _set(self, schema, columns, labels, user_ids, day, weights) -> None:
        self.schema = schema
        self.columns = columns
        self.labels = labels
        self.user_ids = user_ids
        self.day = day
        self.weights = weights

    @classmethod
    def _trusted(cls, schema, columns, labels, user_ids, day, weights) -> "Dataset":
        """Build from arrays already known to be valid (derived from a checked dataset)."""
        dataset = cls.__new__(cls)
        dataset._set(schema, columns, labels, user_ids, day, weights)
        return dataset

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.labels)

    @property
    def positive_rate(self) -> float:
        """Fraction of rows with label 1 (unweighted); NaN for an empty dataset."""
        return float(self.labels.mean()) if self.n else float("nan")

    def __repr__(self) -> str:
        return (
            f"Dataset(n={self.n}, positive_rate={self.positive_rate:.4f}, "
            f"regular={[s.name for s in self.schema.regular()]}, privileged={[s.name for s in self.schema.privileged()]})"
        )

    def take(self, indices) -> "Dataset":
        """Rows ``indices`` (integers in ``[0, n)``, ``(m,)``, in that order, repeats allowed)."""
        indices = check_ids("indices", indices, self.n)
        columns = {name: _take_column(column, indices) for name, column in self.columns.items()}
        return Dataset._trusted(
            self.schema, columns, self.labels[indices], self.user_ids[indices],
            None if self.day is None else self.day[indices],
            None if self.weights is None else self.weights[indices],
        )

    def split_last_days(self, test_days: int) -> tuple["Dataset", "Dataset"]:
        """``(train, test)``: the rows of the last ``test_days`` days (``last_days``) are the test
        split, the earlier ones the training split, each in row order.

        Raises ``ValueError`` naming ``test_days`` unless it is an integer >= 1 that leaves a
        training day, or naming ``day`` when the dataset has none.
        """
        test_days = check_scalar("test_days", test_days, int, low=1)
        if self.day is None or self.n == 0:
            raise ValueError("day: this dataset has no day column (or no rows) to split on")
        in_test = last_days(self.day, test_days)
        if in_test.all():
            raise ValueError(f"test_days: {test_days} test day(s) leave no training day "
                             f"(days {self.day.min()}..{self.day.max()})")
        return self.take(np.flatnonzero(~in_test)), self.take(np.flatnonzero(in_test))

    def with_permuted_privileged(self, rng: np.random.Generator) -> "Dataset":
        """A copy whose privileged columns are row-permuted by one ``rng.permutation(n)``
        (jointly, so their joint distribution is kept); every other array is the same object."""
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        order = rng.permutation(self.n)
        privileged = {spec.name for spec in self.schema.privileged()}
        columns = {
            name: _take_column(column, order) if name in privileged else column for name, column in self.columns.items()
        }
        return Dataset._trusted(self.schema, columns, self.labels, self.user_ids, self.day, self.weights)

    def save(self, path) -> None:
        """Write one ``.npz`` at exactly ``path``: the schema as JSON, labels, user ids, day and
        weights when present, and the columns by ``pack_columns("column", ...)``
        (``column.<name>``, or ``column.<name>.values`` and ``.offsets`` for a multi-id column)."""
        arrays = {
            FORMAT_KEY: np.array(FORMAT_VERSION),
            "schema": np.array(self.schema.to_json()),
            "labels": self.labels,
            "user_ids": self.user_ids,
        }
        if self.day is not None:
            arrays["day"] = self.day
        if self.weights is not None:
            arrays["weights"] = self.weights
        arrays.update(pack_columns("column", self.columns))
        save_npz(path, arrays)

    @classmethod
    def load(cls, path) -> "Dataset":
        """Read a file written by ``save`` (bit-exact round trip), checking it like a new dataset.

        Raises ``ValueError`` naming the file when it is not a pfd_ref dataset.
        """
        where = f"path: {os.fspath(path)!r}"
        arrays = load_npz(path)
        if FORMAT_KEY not in arrays:
            raise ValueError(f"{where} is not a pfd_ref dataset (no {FORMAT_KEY!r} entry)")
        if int(arrays[FORMAT_KEY]) != FORMAT_VERSION:
            version = int(arrays[FORMAT_KEY])
            raise ValueError(f"{where} has dataset format {version}; this version reads {FORMAT_VERSION}")
        try:
            schema = Schema.from_json(str(arrays["schema"]))
            columns = unpack_columns("column", arrays, schema)
            known = {FORMAT_KEY, "schema", "labels", "user_ids", "day", "weights", *pack_columns("column", columns)}
            extra = [key for key in arrays if key not in known]
            if extra:
                raise ValueError(f"array(s) {extra} are not in its schema")
            return cls(schema, columns, arrays["labels"], arrays["user_ids"], arrays.get("day"), arrays.get("weights"))
        except KeyError as error:
            raise ValueError(f"{where} is not a valid pfd_ref dataset (no array {error})") from None
        except ValueError as error:
            raise ValueError(f"{where} is not a valid pfd_ref dataset ({error})") from None

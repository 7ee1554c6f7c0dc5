"""Input checks used at the public boundary.

Every check raises ``ValueError`` whose message starts with the argument's name, so a
user sees at once which input is wrong and what was expected. None of these functions
converts a floating dtype: a float32 array stays float32 and a float64 array stays
float64; integer id arrays are returned as int64 views or copies.
"""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
POOLINGS = ("sum", "mean")  # how a multi-id row is pooled: the sum or the mean of its embeddings


def check_float_dtype(name: str, x, dtype=None) -> np.ndarray:
    """Raise unless ``x`` is an ndarray of float32 or float64 (of ``dtype`` when given)."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype)}, got {x.dtype} (no silent casts)")
    return x


def check_float_array(name: str, x, ndim: int | None = None, dtype=None) -> np.ndarray:
    """Return ``x`` as an ndarray of float32 or float64, unchanged in dtype.

    Raises ``ValueError`` naming ``name`` if ``x`` is not a float32/float64 array, has
    the wrong number of dimensions, a dtype other than ``dtype`` (when given), or holds
    NaN or infinity.
    """
    check_float_dtype(name, x, dtype)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains NaN or infinity")
    return x


def check_same_dtype(**arrays: np.ndarray) -> np.dtype:
    """Return the common dtype of the named float arrays; raise if they differ."""
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{n}={d}" for n, d in dtypes.items())
        raise ValueError(f"dtype mismatch: {listing}; pass arrays of one dtype (no silent casts)")
    return next(iter(dtypes.values()))


def check_shape(name: str, x: np.ndarray, shape: tuple) -> None:
    """Raise unless ``x.shape`` equals ``shape`` (``None`` in ``shape`` matches any size)."""
    if x.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, x.shape)):
        raise ValueError(f"{name}: expected shape {shape}, got {x.shape}")


def check_ids(name: str, ids, num_rows: int, ndim: int = 1) -> np.ndarray:
    """Return integer ids as int64; raise if any id is outside ``[0, num_rows)``."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer ids, got dtype {ids.dtype}")
    if ids.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_rows):
        bad = ids[(ids < 0) | (ids >= num_rows)][0]
        raise ValueError(f"{name}: id {int(bad)} is outside the table [0, {num_rows})")
    return ids.astype(np.int64, copy=False)


def check_pooling(pooling) -> str:
    """Return ``pooling``; raise unless it is one of ``POOLINGS``."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected {' or '.join(map(repr, POOLINGS))}, got {pooling!r}")
    return pooling


def check_offsets(name: str, offsets, num_values: int) -> np.ndarray:
    """Return CSR-style offsets as int64: ``offsets[0] == 0``, non-decreasing,
    ``offsets[-1] == num_values``; raise otherwise."""
    offsets = np.asarray(offsets)
    if offsets.dtype.kind not in "iu" or offsets.ndim != 1 or offsets.size < 1:
        raise ValueError(f"{name}: expected a 1-d integer array of length n + 1, got {offsets.dtype} {offsets.shape}")
    offsets = offsets.astype(np.int64, copy=False)
    if offsets[0] != 0 or offsets[-1] != num_values or np.any(np.diff(offsets) < 0):
        raise ValueError(
            f"{name}: must start at 0, never decrease and end at the number of ids ({num_values}); "
            f"got start {offsets[0]}, end {offsets[-1]}"
        )
    return offsets


def check_labels(name: str, labels, n: int) -> np.ndarray:
    """Return labels as given (any numeric dtype); raise unless shape ``(n,)`` with values in {0, 1}."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {labels.shape}")
    if labels.dtype.kind not in "iufb":
        raise ValueError(f"{name}: expected numeric labels, got dtype {labels.dtype}")
    if labels.size and not np.all((labels == 0) | (labels == 1)):
        bad = labels[(labels != 0) & (labels != 1)][0]
        raise ValueError(f"{name}: labels must be 0 or 1, found {bad.item()!r}")
    return labels


def check_probabilities(name: str, x, dtype=None) -> np.ndarray:
    """Return a 1-d float32/float64 array of probabilities; raise naming ``name`` and the first
    offending row (0-based) unless every entry is finite and in [0, 1]."""
    x = check_float_array(name, x, ndim=1, dtype=dtype)
    outside = (x < 0) | (x > 1)
    if np.any(outside):
        row = int(np.flatnonzero(outside)[0])
        raise ValueError(f"{name}: probabilities must lie in [0, 1]; row {row} holds {x[row].item()!r}")
    return x


def check_weights(name: str, weights, n: int, dtype) -> np.ndarray | None:
    """Return per-example weights (or None); raise unless shape ``(n,)``, the given float
    dtype, finite and non-negative."""
    if weights is None:
        return None
    weights = check_float_array(name, weights, ndim=1, dtype=dtype)
    if weights.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {weights.shape}")
    if np.any(weights < 0):
        raise ValueError(f"{name}: must be non-negative")
    return weights


def check_positive(name: str, value: float) -> float:
    """Raise unless ``value`` is a finite number > 0."""
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


def check_count(name: str, value) -> int:
    """Return ``value`` as an int; raise unless it is a whole number >= 0 (a bool is not one)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)) \
            or not np.isfinite(value) or int(value) != value or value < 0:
        raise ValueError(f"{name}: must be a whole number >= 0, got {value!r}")
    return int(value)


def check_non_negative(name: str, value: float) -> float:
    """Raise unless ``value`` is a finite number >= 0."""
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    return float(value)

"""Argument checks of the kernels, and the checks of every option in pfd_ref.

``kernels/`` depends on nothing in ``pfd_ref``, so the checks it needs live here, at the
bottom of the import graph; ``pfd_ref.validation`` imports them from here instead of
defining them a second time. Every check raises ``ValueError`` whose message starts with
the argument's name. None of them converts a floating dtype; ids and offsets are returned
as int64, scalars as Python ``int`` or ``float``.
"""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
POOLINGS = ("sum", "mean")  # how a multi-id row is pooled: the sum or the mean of its embeddings


def check_scalar(name: str, value, kind: type, low=None, high=None, low_open: bool = False,
                 high_open: bool = False):
    """Return ``value`` as ``kind`` (``int`` or ``float``) after checking its type and bounds,
    in the manner of scikit-learn's ``check_scalar``.

    kind=int: an integer (Python or NumPy); ``1.5``, ``2.0`` and booleans are rejected.
    kind=float: a finite real number (integers allowed); booleans, NaN and infinity rejected.
    low, high : inclusive bounds when given (``low_open`` / ``high_open`` make them strict).
    The message states both, e.g. ``epochs: expected an integer >= 1, got 1.5``.
    """
    if kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value))
    else:
        raise TypeError(f"kind: expected int or float, got {kind!r}")
    if ok:
        number = kind(value)
        below = low is not None and (number <= low if low_open else number < low)
        above = high is not None and (number >= high if high_open else number > high)
        if not (below or above):
            return number
    if low is not None and high is not None:
        bounds = f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        bounds = f" {'>' if low_open else '>='} {low}"
    elif high is not None:
        bounds = f" {'<' if high_open else '<='} {high}"
    else:
        bounds = ""
    expected = "an integer" if kind is int else "a finite number"
    raise ValueError(f"{name}: expected {expected}{bounds}, got {value!r}")


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    """Return ``value``; raise unless it is one of the strings ``choices``."""
    if isinstance(value, str) and value in choices:
        return value
    raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}; got {value!r}")


def check_pooling(pooling) -> str:
    """Return ``pooling``; raise unless it is one of ``POOLINGS``."""
    return check_choice("pooling", pooling, POOLINGS)


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

"""Input checks used at the public boundary (CLI, loaders, configurations, ``Model.forward``).

Every check raises ``ValueError`` whose message starts with the argument's name, so a
user sees at once which input is wrong and what was expected. None of these functions
converts a floating dtype: a float32 array stays float32 and a float64 array stays
float64; integer id arrays are returned as int64 views or copies.

The scalar and array checks that the kernels also need (``check_scalar``, ``check_choice``,
``check_float_array``, ``check_ids``, ``check_offsets``, ...) are defined once, in
``kernels/checks.py`` (``kernels/`` depends on nothing in ``pfd_ref``), and imported here;
this module adds the checks only ``pfd_ref`` needs.
"""

from __future__ import annotations

import numpy as np

from pfd_ref.kernels.checks import (  # noqa: F401 (re-exported: the one definition of each check)
    FLOAT_DTYPES,
    POOLINGS,
    check_choice,
    check_float_array,
    check_float_dtype,
    check_ids,
    check_offsets,
    check_pooling,
    check_same_dtype,
    check_scalar,
    float_dtype,
)


def check_shape(name: str, x: np.ndarray, shape: tuple) -> None:
    """Raise unless ``x.shape`` equals ``shape`` (``None`` in ``shape`` matches any size)."""
    if x.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, x.shape)):
        raise ValueError(f"{name}: expected shape {shape}, got {x.shape}")


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

"""Finite-difference gradient checking, shared by the layer, loss and model tests.

    numerical_gradient(f, x, eps=1e-6) -> array of x's shape
        Central differences of the scalar ``f()`` wrt every entry of the float64 array ``x``,
        which ``f`` reads (e.g. through a closure). Each entry is perturbed in place and
        restored, so ``x`` is unchanged afterwards.
    relative_error(analytic, numeric, scale=1e-12) -> float
        ``max|a - n| / max(max|a|, max|n|, scale)``: one norm-based number per gradient, well
        conditioned when single entries are near zero. ``scale`` floors the denominator: pass
        the size of the model's largest gradient when an array's exact gradient may be 0
        (a unit that a ReLU switches off for every row), where the differences' rounding
        noise (about 1e-10) would otherwise be divided by itself. It also records the largest value seen
        in this process, with the test that produced it (``largest_error()``; tests/conftest.py
        prints it at the end of the run).
"""

from __future__ import annotations

import os

import numpy as np

_largest = {"error": -1.0, "test": None}


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``g[k] = (f() with x[k] + eps  -  f() with x[k] - eps) / (2 eps)`` for every index ``k``."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise ValueError(f"x: expected a float64 array (finite differences in float32 are too coarse), got {type(x).__name__}")
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        try:
            x[index] = original + eps
            plus = float(f())
            x[index] = original - eps
            minus = float(f())
        finally:
            x[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def relative_error(analytic, numeric, scale: float = 1e-12) -> float:
    """``max|a - n| / max(max|a|, max|n|, scale)`` over all entries (0 for empty arrays)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"analytic: shape {analytic.shape} differs from numeric {numeric.shape}")
    if analytic.size == 0:
        return 0.0
    scale = max(np.max(np.abs(analytic)), np.max(np.abs(numeric)), scale)
    error = float(np.max(np.abs(analytic - numeric)) / scale)
    if error > _largest["error"]:
        test = os.environ.get("PYTEST_CURRENT_TEST", "<outside a test>").rsplit(" (", 1)[0]
        _largest.update(error=error, test=test)
    return error


def largest_error() -> tuple[float, str] | None:
    """The largest relative error recorded so far and its test id, or None if none was."""
    return None if _largest["test"] is None else (_largest["error"], _largest["test"])

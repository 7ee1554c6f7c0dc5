"""Shared pieces of the kernels' Python layer: argument checks and the serial/parallel choice.

Layout rule (the same in every kernel module):

* arrays that are prepared once and reused across calls (the item matrix, MLP weights and
  biases, an embedding table) must already be C-contiguous; a non-contiguous one is
  rejected, because a silent per-call copy would cost a full pass over the largest array;
* per-call inputs (user vectors, MLP inputs, score vectors, ids, gradient rows) are copied
  to C-contiguous when they are not (``np.ascontiguousarray``), which costs no more than
  reading them once.

Finiteness (no NaN, no infinity) is not checked element by element up front on large
arrays: the kernels count non-finite values in what they compute anyway (scores,
pre-activations), which is complete (a NaN or infinity in any input always makes the
result it feeds non-finite) and costs one comparison per result instead of a pass over
the inputs. Only when that count is non-zero does :func:`raise_nonfinite` look for the
culprit, so the error still names the argument.
"""

from __future__ import annotations

import numba
import numpy as np

from pfd_ref.validation import FLOAT_DTYPES, check_float_array

# Below this many floating-point multiply-adds (or elements, for copy kernels) a parallel
# kernel is slower than the serial one on the 2-core benchmark machine: waking the worker
# threads costs tens of microseconds. Measured by `python -m benchmarks.scoring`
# (section "parallel threshold"), see docs/performance.md.
PARALLEL_MIN_WORK = 1 << 20


def use_parallel(work: int) -> bool:
    """True when Numba has more than one thread and ``work`` is large enough to pay."""
    return work >= PARALLEL_MIN_WORK and numba.get_num_threads() > 1


def check_float_layout(name: str, x, ndims: tuple[int, ...], dtype=None, copy: bool = False) -> np.ndarray:
    """Return ``x`` after checking type, float dtype (``dtype`` when given), that ``x.ndim``
    is in ``ndims``, and C-contiguity.

    A non-contiguous ``x`` is copied when ``copy`` (per-call inputs) and rejected otherwise
    (reusable arrays). Finiteness is left to the kernel (see the module docstring).
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected float32 or float64, got {x.dtype}")
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype)}, got {x.dtype} (no silent casts)")
    if x.ndim not in ndims:
        raise ValueError(f"{name}: expected {' or '.join(map(str, ndims))} dimension(s), got shape {x.shape}")
    if x.flags.c_contiguous:
        return x
    if copy:
        return np.ascontiguousarray(x)
    raise ValueError(
        f"{name}: must be C-contiguous; call np.ascontiguousarray({name}) once and reuse "
        "the result (a copy on every call would cost a full pass over the array)"
    )


def check_k(k) -> int:
    """Return ``k`` as an int; raise unless it is an integer >= 0."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k: expected an integer >= 0, got {k!r}")
    return int(k)


def raise_nonfinite(suspects: dict, what: str) -> None:
    """Raise the ``ValueError`` for a kernel that met a non-finite result.

    ``suspects`` maps argument names to arrays in the order they are blamed; the first
    that holds a NaN or infinity is named. If none does, the finite inputs overflowed
    and the first name is blamed for that, with ``what`` saying where.
    """
    for name, array in suspects.items():
        check_float_array(name, array)
    first = next(iter(suspects))
    raise ValueError(f"{first}: {what} overflowed to infinity (inputs are finite but too large for their dtype)")

"""Array generators shared by the kernel and twin tests (not a test module)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

DTYPES = (np.float32, np.float64)


def integer_valued(rng, shape, dtype, low=-3, high=4):
    """Small integers as floats: every sum of them is exact, and many scores tie."""
    return rng.integers(low, high, size=shape).astype(dtype)


def real_valued(rng, shape, dtype):
    return rng.uniform(-1, 1, size=shape).astype(dtype)


def strided(x):
    """The same values as a view that is not C-contiguous (every other column of a wider array)."""
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    wide[..., ::2] = x
    return wide[..., ::2]


def same_bits(a, b):
    """Assert that two arrays have the same dtype, shape and bytes."""
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.ascontiguousarray(a).reshape(-1).view(np.uint8),
                                  np.ascontiguousarray(b).reshape(-1).view(np.uint8))


def rtol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12


@st.composite
def scoring_case(draw, integer):
    """``(items (n, d), users (d,) or (m, d))`` of one dtype, users sometimes strided."""
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 40))
    d = draw(st.integers(1, 6))
    batch = draw(st.sampled_from([None, 0, 1, 3]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    make = integer_valued if integer else real_valued
    items = make(rng, (n, d), dtype)
    users = make(rng, (d,) if batch is None else (batch, d), dtype)
    if draw(st.booleans()):
        users = strided(users)  # per-call input: copied by the kernel
    return items, users

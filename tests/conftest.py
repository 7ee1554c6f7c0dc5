"""Shared pytest hooks: run a test on each backend; report the worst finite-difference
gradient check of the run."""

from __future__ import annotations

import pytest

import gradcheck
from pfd_ref import backend


@pytest.fixture(params=backend.BACKENDS)
def each_backend(request):
    """Run the test once on the Numba kernels and once on their NumPy twins (pfd_ref.backend)."""
    with backend.using(request.param):
        yield request.param


def pytest_terminal_summary(terminalreporter):
    largest = gradcheck.largest_error()
    if largest is not None:
        error, test = largest
        terminalreporter.write_line(f"largest finite-difference relative error: {error:.3e} ({test})")

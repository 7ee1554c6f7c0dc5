"""Shared pytest hooks: report the worst finite-difference gradient check of the run."""

from __future__ import annotations

import gradcheck


def pytest_terminal_summary(terminalreporter):
    largest = gradcheck.largest_error()
    if largest is not None:
        error, test = largest
        terminalreporter.write_line(f"largest finite-difference relative error: {error:.3e} ({test})")

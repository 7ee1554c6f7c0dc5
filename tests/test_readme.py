"""The README's Python quick start runs as written: it trains two methods, prints their metrics
(close to the output the README shows) and exports students that load and score."""

from __future__ import annotations

import ast
import contextlib
import io
import re
from pathlib import Path

import numpy as np

from pfd_ref.serving import ServedStudent

README = Path(__file__).resolve().parent.parent / "README.md"


def _quick_start() -> tuple[str, str]:
    """The ```python block of the section "Python quick start" and the output block after it."""
    section = README.read_text().split("## Python quick start", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"It prints.*?```\n(.*?)```", section, re.S).group(1)
    return code, shown


def _printed_metrics(text: str) -> dict:
    return {line.split(" ", 1)[0]: ast.literal_eval(line.split(" ", 1)[1]) for line in text.strip().splitlines()}


def test_quick_start_runs_and_prints_what_the_readme_shows(tmp_path, monkeypatch):
    code, shown = _quick_start()
    assert len(code.strip().splitlines()) <= 15  # "about ten lines"
    monkeypatch.chdir(tmp_path)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(code, "README.md quick start", "exec"), {})
    printed, expected = _printed_metrics(stdout.getvalue()), _printed_metrics(shown)
    assert list(printed) == list(expected) == ["baseline", "pfd"]
    for method in printed:
        assert set(printed[method]) == set(expected[method])
        for name, value in expected[method].items():  # another BLAS may round the last digits differently
            assert abs(printed[method][name] - value) < 5e-3, (method, name)
    for method in ("baseline", "pfd"):
        student = ServedStudent.load(tmp_path / f"cvr_{method}.npz")
        items, scores = student.top_k(student.user_keys[:2], 5)
        assert items.shape == (2, 5) and np.all(np.isfinite(scores))

"""The documents name what exists: every heading of docs/derivations.md names functions that
exist, every gradient and update function has a heading there, and the parameter names of
docs/conventions.md are the names the models give."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pfd_ref
import pfd_ref.kernels
from pfd_ref.distill import METHODS, SHARING, STUDENT_KINDS, ModelSizes, build_models
from tiny import tiny_schema

DOCS = Path(__file__).resolve().parent.parent / "docs"
HEADINGS_WITHOUT_FUNCTIONS = {"Conventions used below", "Optimizer update rules"}  # introductions


def resolve(dotted: str):
    """The object named ``dotted`` (a module, then attributes), or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute, None)
        return obj
    return None


def derivation_headings() -> dict[str, list[str]]:
    """Each ``## `` heading of docs/derivations.md and the dotted names in backticks in it."""
    headings = {}
    for line in (DOCS / "derivations.md").read_text().splitlines():
        if line.startswith("## "):
            headings[line[3:]] = re.findall(r"`(pfd_ref\.[\w.]+)`", line)
    return headings


def gradient_and_update_functions() -> dict[str, object]:
    """Every public function of pfd_ref (kernels included) named ``*_backward`` or ``*_update_``."""
    found = {}
    modules = [*pkgutil.walk_packages(pfd_ref.__path__, "pfd_ref."),  # kernels/ installs as pfd_ref.kernels:
               *pkgutil.walk_packages(pfd_ref.kernels.__path__, "pfd_ref.kernels.")]  # a folder of its own
    for module_info in modules:
        module = importlib.import_module(module_info.name)
        for name, obj in vars(module).items():
            if (name.endswith(("_backward", "_update_")) and not name.startswith("_") and callable(obj)
                    and getattr(obj, "__module__", None) == module.__name__):
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_derivation_heading_names_functions_that_exist():
    headings = derivation_headings()
    assert len(headings) >= 15
    for heading, names in headings.items():
        if heading in HEADINGS_WITHOUT_FUNCTIONS:
            continue
        assert names, f"heading names no function: {heading}"
        for name in names:
            obj = resolve(name)
            assert obj is not None and callable(obj), f"{name} (heading {heading!r}) does not exist"


def test_every_backward_and_update_function_has_a_derivation():
    named = {id(resolve(name)) for names in derivation_headings().values() for name in names}
    functions = gradient_and_update_functions()
    assert {"pfd_ref.layers.mlp_backward", "pfd_ref.optim.sgd_update_", "pfd_ref.twins.adam_update_",
            "pfd_ref.kernels.adam.sparse_adam_rows_update_"} <= set(functions)
    missing = [name for name, obj in functions.items() if id(obj) not in named]
    assert not missing, f"no heading in docs/derivations.md names {missing}"


def test_the_parameter_names_of_the_conventions_are_the_models_names():
    text = (DOCS / "conventions.md").read_text()
    documented = set(re.findall(r"`((?:student|teacher|shared)\.[\w.]+)`", text))
    assert len(documented) >= 6
    actual = set()
    for batch_norm in (False, True):
        sizes = ModelSizes(embed_dim=2, student_hidden=(3, 3), tower_out_dim=2, strong_hidden=(3, 3, 3),
                           batch_norm=batch_norm)
        for method in METHODS:
            for kind in STUDENT_KINDS:
                for sharing in SHARING:
                    for model in build_models(tiny_schema(), method, kind, sizes, sharing):
                        actual.update(model.param_names() if model is not None else [])
    assert documented <= actual, f"docs/conventions.md names parameters that do not exist: {documented - actual}"

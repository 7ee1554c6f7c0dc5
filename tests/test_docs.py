"""The documents name what exists: every heading of docs/derivations.md names functions that
exist, every gradient and update function has a heading there, the parameter names of
docs/conventions.md are the names the models give, and the worked example of docs/oracle.md
prints the digits the command writes."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import numpy as np

import pfd_ref
import pfd_ref.kernels
from pfd_ref.auxiliary import auxiliary_targets
from pfd_ref.distill import METHOD_RULES, METHODS, SHARING, ModelSizes, build_auxiliary, build_models
from tiny import tiny_dataset

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
    documented = set(re.findall(r"`((?:student|teacher|shared|aux)\.[\w.]+)`", text))
    assert len(documented) >= 6
    actual = set()
    data = tiny_dataset(np.random.default_rng(0), 20)
    for batch_norm in (False, True):
        sizes = ModelSizes(embed_dim=2, student_hidden=(3, 3), tower_out_dim=2, strong_hidden=(3, 3, 3),
                           batch_norm=batch_norm)
        for method in METHODS:
            for kind in METHOD_RULES[method].student_kinds:
                for sharing in SHARING:
                    student, teacher = build_models(data.schema, method, kind, sizes, sharing)
                    auxiliary = build_auxiliary(method, student, auxiliary_targets(data), sizes)
                    for model in (student, teacher, auxiliary):
                        actual.update(model.param_names() if model is not None else [])
    assert documented <= actual, f"docs/conventions.md names parameters that do not exist: {documented - actual}"


def test_the_worked_example_of_the_oracle_prints_the_files_digits():
    """docs/oracle.md, section 5: every full-precision number it quotes is the repr of the
    array the command writes (``--rows 2 --temperature 2 --weights --seed 0``), bit for bit."""
    from pfd_ref.oracle import CaseSpec, compute_case
    text = (DOCS / "oracle.md").read_text()
    example = text[text.index("## 5. Worked example"):text.index("## 6.")].replace("−", "-")
    case = compute_case(CaseSpec("two_tower", "pfd", "two-stage", rows=2, temperature=2.0, weights=True, seed=0))
    quoted = {
        "output.student_logits": case["output.student_logits"].tolist(),
        "output.teacher_logits": case["output.teacher_logits"].tolist(),
        "input.weights": case["input.weights"].tolist(),
        "output.loss.hard": [case["output.loss.hard"].item()], "output.loss.soft": [case["output.loss.soft"].item()],
        "output.loss.student_total": [case["output.loss.student_total"].item()],
        "output.grad.student.bias": case["output.grad.student.bias"].tolist(),
        "param.student.bias": case["param.student.bias"].tolist(),
        "output.after1.student.bias": case["output.after1.student.bias"].tolist(),
    }
    for name, values in quoted.items():
        for value in values:
            assert repr(value) in example, f"{name}: {value!r} is not quoted in docs/oracle.md, section 5"
    assert case["input.recent.offsets"].tolist() == [0, 0, 2] and case["input.recent.values"].tolist() == [2, 2]

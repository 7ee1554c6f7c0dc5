"""pfd_ref.backend: the switch that runs every kernel of pfd_ref in Numba or in its NumPy twin."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import pfd_ref
from pfd_ref import backend, kernels, twins
from pfd_ref.distill import ModelSizes
from pfd_ref.train import TrainConfig, train
from arrays import same_bits
from tiny import tiny_dataset


def test_pfd_ref_reaches_the_kernels_only_through_the_backend():
    """Outside the backend itself, no module of pfd_ref imports the kernels (only their checks)."""
    for path in sorted(Path(pfd_ref.__file__).parent.rglob("*.py")):
        if path.name == "backend.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not (name.startswith("pfd_ref.kernels") and not name.startswith("pfd_ref.kernels.checks")), \
                    f"{path.name} imports {name}"


# --------------------------------------------------------------------------- the switch


@pytest.fixture
def restore_backend():
    with backend.using(None):
        yield


def test_set_backend_switches_every_kernel(restore_backend):
    pfd_ref.set_backend("numpy")
    assert pfd_ref.get_backend() == "numpy"
    assert all(getattr(backend, name) is getattr(twins, name) for name in twins.__all__)
    pfd_ref.set_backend("numba")
    assert all(getattr(backend, name) is getattr(kernels, name) for name in twins.__all__)
    with pytest.raises(AttributeError):
        backend.compile_all  # noqa: B018 (not a kernel)


def test_bad_backend_names_are_rejected(restore_backend):
    with pytest.raises(ValueError, match=r"^backend: expected one of 'numba', 'numpy'; got 'torch'"):
        pfd_ref.set_backend("torch")


def test_the_environment_variable_chooses_the_backend():
    """In a fresh process: a bad PFD_REF_BACKEND is an error naming it when a kernel is first
    needed; once it names a backend, that backend runs."""
    code = ("import os, pfd_ref\n"
            "try:\n    pfd_ref.get_backend()\nexcept ValueError as error:\n    print(error)\n"
            "os.environ['PFD_REF_BACKEND'] = 'numpy'\n"
            "from pfd_ref import backend, twins\n"
            "print(pfd_ref.get_backend(), backend.pool_rows is twins.pool_rows)\n")
    env = {**os.environ, "PFD_REF_BACKEND": "cuda"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["PFD_REF_BACKEND: expected one of 'numba', 'numpy'; got 'cuda'", "numpy True"]


SIZES = ModelSizes(embed_dim=3, student_hidden=(5,), tower_out_dim=3, strong_hidden=(6, 4))


@pytest.mark.parametrize("kind, method, changes", [
    ("mlp", "pfd+md", dict(sharing="all")),
    ("two_tower", "pfd", dict(adam_sparse="dense", dtype="float64")),
    ("mlp", "md", dict(mode="two-stage", l2_embeddings=1e-3)),
    ("two_tower", "pfd+md", dict(optimizer="adagrad", lr_warmup_steps=3, l2_embeddings=1e-3,
                                 sizes=replace(SIZES, activation="leaky_relu", batch_norm=True, tower_norm="l2",
                                               tower_scale=5.0))),
])
def test_training_gives_the_same_bits_on_both_backends(restore_backend, kind, method, changes):
    data = tiny_dataset(np.random.default_rng(5), 90)
    config = TrainConfig(**{**dict(student_kind=kind, epochs=2, batch_size=16, lr=0.01, sizes=SIZES), **changes})
    results = {}
    for name in ("numba", "numpy"):
        pfd_ref.set_backend(name)
        results[name] = train(data, method, config).params
    assert list(results["numba"]) == list(results["numpy"])
    for name in results["numba"]:
        same_bits(results["numba"][name], results["numpy"][name])

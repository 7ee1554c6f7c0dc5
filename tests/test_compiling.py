"""``kernels.compile_all``'s compile in two processes (kernels/compiling.py): every module is
compiled once, by this process or by a worker whose code this process then loads from Numba's
cache; a warm cache starts no worker; a failed worker is reported and its modules compiled here.

The fresh-process tests run with their own empty Numba cache and ``NUMBA_OPT=0`` (it halves
the time) on the training modules: at that level Numba refuses to cache some scoring and MLP
kernels ("dynamic globals"), so a worker's compile of those could not reach this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

from pfd_ref import kernels
from pfd_ref.kernels import compiling

# In a fresh process: compile_units over one use's modules (optionally with `cached` forced
# to True: an index file that turns out stale), print where each module went and whether every
# kernel then has its float32 signature in this process; then the same from that warm cache in
# another fresh process, where starting a process or making a temporary directory or file raises.
COLD_THEN_WARM = """
import json, subprocess, sys, tempfile, warnings
import numpy as np
from pfd_ref import kernels
from pfd_ref.kernels import compiling
if sys.argv[1] == "warm":
    def refuse(*args, **kwargs):
        raise AssertionError("a worker was started, or a claims directory or log made, from a warm cache")
    subprocess.Popen = tempfile.TemporaryDirectory = tempfile.TemporaryFile = refuse
if sys.argv[2] == "stale":
    compiling.cached = lambda module: True
if sys.argv[1] == "cold":  # this process leaves the last module to the worker: a share that does not hang on speed
    claim = compiling.claim
    compiling.claim = lambda claims, unit: unit != compiling._module_name(kernels.COMPILE_ORDER[-1]) and claim(claims, unit)
if sys.argv[3] == "broken":
    compiling._package_dir = lambda: "/no/such/kernels"  # what the parent tells its workers
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    modules = [m for m in kernels.COMPILE_ORDER if m in kernels.KERNEL_MODULES[sys.argv[4]]]
    where = compiling.compile_units(modules, [np.float32], 2)
compiled = all(any("float32" in str(s) for s in d.signatures) or m is kernels.text and d.signatures
               for m in modules for d in compiling.dispatchers(m) if d.py_func.__module__ == m.__name__)
mine = [str(w.message) for w in caught if str(w.message).startswith("kernels.compile_all")]  # not Numba's own
print(json.dumps(dict(where=where, compiled=compiled, warnings=mine)))
"""


def run_compile(cache, *args) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBA_OPT": "0"}
    done = subprocess.run([sys.executable, "-c", COLD_THEN_WARM, *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


NAMES = [module.__name__.rsplit(".", 1)[1] for module in kernels.COMPILE_ORDER if module in kernels.KERNEL_MODULES["training"]]


def cold_compile_checks(result: dict) -> None:
    """Every module compiled once, the first here, some by the worker (at least the last,
    which this process is told not to claim; "worker" only when this process then loaded its
    float32 code from the cache without compiling anything), and no warning."""
    assert sorted(result["where"]) == sorted(NAMES) and result["where"][NAMES[0]] == "here"
    assert "worker" in result["where"].values() and result["compiled"] and result["warnings"] == []


def test_a_cold_compile_shares_the_modules_with_a_worker_and_a_warm_one_starts_none(tmp_path):
    """Cold, as cold_compile_checks says. Warm: every module here, no process started and no
    temporary file made (Popen and tempfile's makers raise in that process)."""
    cold_compile_checks(run_compile(tmp_path, "cold", "fresh", "ok", "training"))
    warm = run_compile(tmp_path, "warm", "fresh", "ok", "training")
    assert set(warm["where"].values()) == {"here"} and warm["compiled"] and warm["warnings"] == []


def test_a_stale_cache_starts_the_worker_when_the_first_module_misses(tmp_path):
    """``cached`` says yes (an index file that turns out stale), so no worker is started up
    front; the first module misses, and the worker starts then: the compile is shared as cold."""
    cold_compile_checks(run_compile(tmp_path, "cold", "stale", "ok", "training"))


def test_a_failed_worker_is_reported_and_its_modules_compiled_here(tmp_path):
    """A worker told another kernels directory than its own exits with WRONG_KERNELS before
    compiling; this process warns with that status and compiles every module itself."""
    result = run_compile(tmp_path, "cold", "fresh", "broken", "training")
    assert set(result["where"].values()) == {"here"} and result["compiled"]
    assert len(result["warnings"]) == 1 and f"exited with status {compiling.WRONG_KERNELS}" in result["warnings"][0]


def test_no_two_kernel_modules_share_a_jitted_function():
    """A module is compiled by one process only; were a jitted function reachable from two
    modules, two processes could add its signatures to its cache index at once."""
    seen = {}
    for module in kernels.COMPILE_ORDER:
        for dispatcher in compiling.dispatchers(module):
            assert seen.setdefault(id(dispatcher), module) is module, (dispatcher.py_func, module, seen[id(dispatcher)])
    assert set(kernels.COMPILE_ORDER) == {module for modules in kernels.KERNEL_MODULES.values() for module in modules}


def test_a_unit_is_claimed_once(tmp_path):
    assert compiling.claim(str(tmp_path), "scoring") and not compiling.claim(str(tmp_path), "scoring")
    assert compiling.claim(str(tmp_path), "mlp")


def test_an_error_here_kills_the_workers(monkeypatch):
    """The first module's compile fails: the started workers are killed (not left to end on
    their own when their input closes) and waited for, and the error reaches the caller."""
    started = []
    start = compiling._start_workers

    def record(*args):
        started.extend(start(*args))
        return started

    def fail(dtype):
        raise KeyboardInterrupt

    monkeypatch.setattr(compiling, "_start_workers", record)
    monkeypatch.setattr(compiling, "cached", lambda module: False)
    first = types.SimpleNamespace(__name__="pfd_ref.kernels.first", warm_up=fail)
    second = types.SimpleNamespace(__name__="pfd_ref.kernels.second", warm_up=lambda dtype: None)
    with pytest.raises(KeyboardInterrupt):
        compiling.compile_units([first, second], [np.float32], 3)
    assert [process.returncode for process in started] == [-signal.SIGKILL] * 2


def test_no_process_to_be_had_is_reported_and_the_compile_goes_on_here(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no processes left")

    warmed = []
    monkeypatch.setattr(compiling.subprocess, "Popen", refuse)
    monkeypatch.setattr(compiling, "cached", lambda module: False)
    modules = [types.SimpleNamespace(__name__=f"pfd_ref.kernels.m{i}", warm_up=lambda dtype, i=i: warmed.append(i))
               for i in range(3)]
    with pytest.warns(RuntimeWarning, match=r"could not start a compile worker \(no processes left\)"):
        where = compiling.compile_units(modules, [np.float32], 2)
    assert warmed == [0, 1, 2] and where == {"m0": "here", "m1": "here", "m2": "here"}


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_compile_all_refuses_a_bad_worker_count(workers):
    with pytest.raises(ValueError, match=f"workers: expected an integer >= 1 or None, got {workers!r}"):
        kernels.compile_all(uses=("serving",), workers=workers)

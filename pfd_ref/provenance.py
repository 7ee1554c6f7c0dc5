"""Provenance of a result: what produced it, from which data, with which software, when.

``provenance(config, data_source)`` returns the block every ``--json`` record carries
(``pfd-ref run``, ``pfd-ref metrics``, and any later command that writes records)::

    {"config":      every option with its value (as the command resolved it),
     "data_source": file_source(path) (path + sha256) or generator_source(...) (its configuration),
     "versions":    python, pfd_ref, numpy, scipy, numba, platform,
     "threads":     BLAS (each loaded OpenBLAS: its thread count and build), Numba, the thread
                    environment variables,
     "git":         {"commit", "dirty"} of the checkout pfd_ref runs from, or null outside one,
     "code":        code_fingerprint(): sha256 of pfd_ref's and its kernels' source files (the
                    code that ran, with or without git, uncommitted edits included),
     "date":        UTC, ISO 8601}

``differences(provenances)`` lists the dotted keys whose values differ between records (what
``pfd-ref table`` prints for merged runs).
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
from pathlib import Path

from pfd_ref.files import sha256_of

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
PACKAGES = ("pfd_ref", "numpy", "scipy", "numba")
# Symbols that report OpenBLAS's thread count, by the name each build exports them under.
OPENBLAS_THREAD_SYMBOLS = ("openblas_get_num_threads", "openblas_get_num_threads64_",
                           "scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads")


def file_source(path) -> dict:
    """``{"kind": "file", "path": absolute path, "sha256": hex digest of its bytes}``."""
    path = Path(path)
    return {"kind": "file", "path": str(path.resolve()), "sha256": sha256_of(path)}


def generator_source(generator: str, config: dict) -> dict:
    """``{"kind": "generator", "generator": its qualified name, "config": its configuration}``."""
    return {"kind": "generator", "generator": generator, "config": config}


def package_versions() -> dict:
    """Python, the packages of ``PACKAGES`` (None when one is not installed) and the platform."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["platform"] = platform.platform()
    return versions


def _loaded_libraries(fragment: str) -> list[str]:
    """Paths of the shared libraries of this process whose file name contains ``fragment``
    (from /proc/self/maps; empty where that does not exist)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if fragment in Path(p).name.lower())


def blas_threads() -> list[dict]:
    """One ``{"library", "threads", "build"}`` per OpenBLAS loaded in this process (NumPy's and
    SciPy's may differ), read through OpenBLAS's own functions; an empty list when none is
    found (another BLAS, or no /proc): the environment variables then say what was asked for."""
    found = []
    for path in _loaded_libraries("openblas"):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        getter = next((getattr(library, name) for name in OPENBLAS_THREAD_SYMBOLS if hasattr(library, name)), None)
        if getter is None:
            continue
        getter.restype = ctypes.c_int
        config = next((getattr(library, name) for name in ("openblas_get_config", "openblas_get_config64_",
                                                            "scipy_openblas_get_config64_") if hasattr(library, name)),
                      None)
        build = None
        if config is not None:
            config.restype = ctypes.c_char_p
            build = config().decode(errors="replace")
        found.append({"library": Path(path).name, "threads": int(getter()), "build": build})
    return found


def thread_counts() -> dict:
    """``{"blas": blas_threads(), "numba": numba.get_num_threads(), "environment": {...}}``."""
    import numba
    return {"blas": blas_threads(), "numba": numba.get_num_threads(),
            "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES}}


def git_state(directory=None) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``directory`` (default:
    this package's), or None when it is not in one or git is not available. git runs without
    the ``GIT_*`` variables of the environment (``GIT_DIR``, ``GIT_WORK_TREE``, ... set by a
    hook or ``git rebase --exec``), which would make it describe another repository."""
    directory = Path(directory) if directory is not None else Path(__file__).resolve().parent
    environment = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    try:
        commit = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, env=environment)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, env=environment)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def code_fingerprint() -> str:
    """sha256 over every ``.py`` file of pfd_ref and of its kernels (each file's path relative
    to its package, a NUL byte, then its bytes; files in sorted order): two results with the
    same fingerprint were computed by the same code."""
    digest = hashlib.sha256()
    for package in ("pfd_ref", "pfd_ref.kernels"):  # found, not imported (the kernels load Numba)
        root = Path(importlib.util.find_spec(package).origin).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def provenance(config: dict, data_source: dict) -> dict:
    """The provenance block of a record (module docstring). ``config``: every option of the
    command with its value, JSON-serialisable; ``data_source``: ``file_source`` or
    ``generator_source`` (or a dict of several, e.g. data and teacher scores)."""
    return {
        "config": config, "data_source": data_source, "versions": package_versions(), "threads": thread_counts(),
        "git": git_state(), "code": code_fingerprint(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def json_options(options: dict) -> dict:
    """A command's options (``vars`` of its parsed arguments) made JSON-serialisable for
    ``provenance``'s ``config``: paths as strings, tuples as lists."""
    return {key: str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
            for key, value in options.items()}


def flatten(value, prefix: str = "") -> dict:
    """Nested dicts as one dict with dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``);
    lists are kept as values."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def differences(provenances: list[dict], ignore=("date",)) -> dict[str, list]:
    """The dotted keys whose values differ between the given provenance blocks (a key
    missing from one counts as None), each with its value per block, in block order; keys
    listed in ``ignore`` (and those under them) are left out."""
    flat = [flatten(p) for p in provenances]
    keys = dict.fromkeys(key for block in flat for key in block)
    return {key: [block.get(key) for block in flat] for key in keys
            if not any(key == i or key.startswith(i + ".") for i in ignore)
            and len({repr(block.get(key)) for block in flat}) > 1}


def format_differences(provenance_by_run: dict, ignore=("date",), width: int = 60) -> list[str]:
    """Lines saying what differs between runs: ``provenance_by_run`` maps a run's name (e.g.
    its file) to its provenance block, or None for records written without one."""
    missing = [name for name, block in provenance_by_run.items() if block is None]
    if missing:
        return [f"runs merged: {', '.join(provenance_by_run)}; no provenance in {', '.join(missing)} (written before "
                "records carried it), so what differs between them is unknown"]
    differing = differences(list(provenance_by_run.values()), ignore)
    names = list(provenance_by_run)
    if not differing:
        return [f"runs merged: {', '.join(names)}; their provenance is the same (except {', '.join(ignore)})"]
    lines = [f"runs merged: {', '.join(names)}; they differ in:"]
    for key, values in differing.items():
        shown = "; ".join(f"{_short(value, width)} ({name})" for value, name in zip(values, names))
        lines.append(f"  {key}: {shown}")
    return lines


def _short(value, width: int) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."

"""The backend switch: which implementation of the kernels pfd_ref runs.

* ``"numba"`` (the default): the compiled kernels, ``pfd_ref.kernels`` (``kernels/``);
* ``"numpy"``: their readable NumPy twins, ``pfd_ref.twins``, under the same names.

Choose with ``pfd_ref.set_backend(name)``, with the environment variable
``PFD_REF_BACKEND`` (read when a kernel is first needed, unless ``set_backend`` came first),
or with ``pfd-ref ... --backend``. Every call of a kernel in pfd_ref goes through this module
(``backend.pool_rows(...)``), so the switch covers training and serving alike; training gives
the same bits on both backends (pfd_ref.twins lists what each twin gives).

The kernels this module dispatches are the names in ``pfd_ref.twins.__all__``, which
tests/test_twins.py holds equal to ``pfd_ref.kernels.__all__``: a new kernel and its twin
(docs/conventions.md, "Adding a kernel") need nothing here.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from pfd_ref import kernels, twins
from pfd_ref.validation import check_choice

BACKENDS = ("numba", "numpy")
ENVIRONMENT_VARIABLE = "PFD_REF_BACKEND"
_IMPLEMENTATIONS = {"numba": kernels, "numpy": twins}
_active: str | None = None


def _bind(name: str | None) -> None:
    """Make ``backend.<kernel>`` the kernel of backend ``name`` (None: unbound, chosen again
    on the next use), as plain module attributes: a call pays no dispatch."""
    global _active
    _active = name
    for kernel in twins.__all__:
        if name is None:
            globals().pop(kernel, None)
        else:
            globals()[kernel] = getattr(_IMPLEMENTATIONS[name], kernel)


def set_backend(name: str) -> None:
    """Run every kernel from now on in ``name``'s implementation: "numba" or "numpy"."""
    _bind(check_choice("backend", name, BACKENDS))


def get_backend() -> str:
    """The backend in use: the last ``set_backend``, else ``PFD_REF_BACKEND``, else "numba"."""
    if _active is None:
        _bind(check_choice(ENVIRONMENT_VARIABLE, os.environ.get(ENVIRONMENT_VARIABLE, "numba"), BACKENDS))
    return _active


@contextmanager
def using(name: str | None):
    """``with using(name):`` runs the block on backend ``name`` (None: leave it as it is), then
    restores the previous choice."""
    previous = _active
    if name is not None:
        set_backend(name)
    try:
        yield
    finally:
        _bind(previous)


def __getattr__(name: str):
    """``backend.<kernel name>`` before the first choice: choose (``get_backend``), then the
    kernel is a module attribute."""
    if name in twins.__all__:
        get_backend()
        return globals()[name]
    raise AttributeError(f"module 'pfd_ref.backend' has no attribute {name!r}")


def compile_kernels(dtypes, uses) -> float | None:
    """On the Numba backend, compile (or load from Numba's cache) the kernels of ``uses`` for
    ``dtypes`` (``kernels.compile_all``) and return the seconds it took; None on the NumPy
    backend, which has nothing to compile. ``pfd-ref run`` calls it before training, so that
    no method's ``train s`` includes compilation."""
    if get_backend() != "numba":
        return None
    start = time.perf_counter()
    kernels.compile_all(dtypes, uses)
    return time.perf_counter() - start

"""Compile kernel modules up front, in this process and, when the cache is cold, in a worker
process beside it (``compile_units``, which ``compile_all`` calls).

Numba compiles one function at a time under a process-wide lock, and a compile is
single-threaded Python and LLVM work, so a second core helps only through a second process.
The units of work are kernel modules, each with every requested dtype. Where Numba's
cache has no index file for the first unit's functions (``cached``), the caller starts
``workers - 1`` worker processes at once, which import Numba and run its start-up while the
caller takes the first unit itself. If that unit compiled anything (a cache miss: the cache
is empty or stale; for a stale one the workers are started now), the caller tells the
workers to go on, and from then on every process
takes the next unit that no one has claimed yet (a claim is a file created with ``O_EXCL`` in
a temporary directory, so each unit is claimed exactly once); else (a warm cache) it kills
them before they have written anything, and takes the other units itself. A worker's compiled
code reaches the caller through Numba's on-disk cache (``cache=True``): after the workers
have exited, the caller runs their units too, which loads them from the cache, or compiles
what a failed worker left undone. A worker left with no module to take (the caller took them
all) is killed rather than waited for: it can have written nothing. The caller's result does not depend on the workers: they
can only save it time.

Why whole modules: Numba's cache index of a jitted function is read, extended and written back
without a lock, and an entry names a data file by number, so two processes adding *different*
signatures of one function at the same moment can pair one signature with the other's code.
A module with all its dtypes is compiled by one process only, and no two kernel modules share a
jitted function (``heap``'s belongs to ``scoring``; tests/test_compiling.py checks it).

Cost, measured in docs/performance.md ("Cold start"): a worker pays its own interpreter, imports
and Numba start-up (about 1 s of CPU time), so the CPU time of a cold ``compile_all()`` grows
while its wall-clock time shrinks; from a warm cache no worker is started (with
``NUMBA_OPT=0`` Numba refuses to cache some scoring and MLP kernels, so a cache holds no index
for them: a call whose first module is among them compiles that module every time, and
shares the rest with a worker as from a cold cache). On a busy machine, whose second CPU is taken, two processes are
slower than one: ``compile_all(workers=1)``. ``compile_all`` runs one call at a time in a
process (a lock), so that two threads' workers never compile one module at once.
"""

from __future__ import annotations

import glob
import importlib
import os
import subprocess
import sys
import tempfile
import warnings

from numba import njit
from numba.core.registry import CPUDispatcher

# The worker process: runs Numba's start-up, waits for GO on its standard input (anything else,
# the end of the input included, ends it), then claims and compiles units until none is left.
# Its arguments: the claims directory, the directory this package was imported from (a worker
# that imports another copy of pfd_ref's kernels exits with WRONG_KERNELS and compiles
# nothing), the dtype names joined by commas (empty for none), then the unit names in the
# caller's order.
WORKER_CODE = f"import sys; from {__package__} import compiling; sys.exit(compiling.worker(sys.argv[1:]))"
WRONG_KERNELS = 3
GO = b"1"


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def dispatchers(module) -> list:
    """The Numba dispatchers in ``module``'s namespace (its jitted functions and those it imports)."""
    return [value for value in vars(module).values() if isinstance(value, CPUDispatcher)]


def cache_misses(modules) -> int:
    """How many signatures the dispatchers of ``modules`` have compiled rather than loaded
    from Numba's cache in this process."""
    return sum(sum(dispatcher.stats.cache_misses.values()) for module in modules for dispatcher in dispatchers(module))


def cached(module) -> bool:
    """Whether Numba's cache holds an index file for each jitted function defined in
    ``module`` (``<file stem>.<function>-<line>.<python tag>.nbi`` in the function's cache
    directory). False means the module will compile; True that it may load (the index can
    still be stale: only loading tells)."""
    stem = os.path.splitext(os.path.basename(module.__file__))[0]
    for dispatcher in dispatchers(module):
        if dispatcher.py_func.__module__ != module.__name__:
            continue
        directory = dispatcher.stats.cache_path
        if directory is None or not glob.glob(os.path.join(glob.escape(directory), glob.escape(
                f"{stem}.{dispatcher.py_func.__qualname__}-") + "*.nbi")):
            return False
    return True


def claim(claims: str, unit: str) -> bool:
    """True for the one process whose call creates the claim file of ``unit`` in ``claims``."""
    try:
        os.close(os.open(os.path.join(claims, unit), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _warm(module, dtypes) -> None:
    """Compile (or load) ``module``'s kernels: once for the tokenizer, which has no float
    argument, else once per dtype."""
    if module.__name__.endswith(".text"):
        module.warm_up()
        return
    for dtype in dtypes:
        module.warm_up(dtype)


def _module_name(module) -> str:
    return module.__name__.rsplit(".", 1)[1]


def _module(name: str):
    return importlib.import_module(f"{__package__}.{name}")


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def worker(argv: list) -> int:
    """A worker process's loop (``WORKER_CODE``): claim and compile units until none is left."""
    claims, package_dir, dtype_names, *units = argv
    if package_dir != _package_dir():
        return WRONG_KERNELS
    njit(lambda: 0)()  # Numba's start-up (its registries), before the caller's answer
    if sys.stdin.buffer.read(len(GO)) != GO:
        return 0
    dtypes = [name for name in dtype_names.split(",") if name]
    for unit in units:
        if claim(claims, unit):
            _warm(_module(unit), dtypes)
    return 0


def _start_workers(count: int, claims: str, dtypes, units, log) -> list:
    """``count`` worker processes with this interpreter, this process's import path and
    environment, their output in the open file ``log``; as many as could be started (a
    ``RuntimeWarning`` for the rest: their modules are compiled here)."""
    path = os.pathsep.join(entry or os.getcwd() for entry in sys.path)
    env = {**os.environ, "PYTHONPATH": path}
    arguments = [sys.executable, "-c", WORKER_CODE, claims, _package_dir(), ",".join(d.__name__ for d in dtypes), *units]
    processes = []
    try:
        for _ in range(count):
            processes.append(subprocess.Popen(arguments, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                              env=env))
    except OSError as error:  # no process to be had
        warnings.warn(f"kernels.compile_all: could not start a compile worker ({error}); compiling in this process",
                      RuntimeWarning, stacklevel=5)
    return processes


def compile_units(modules, dtypes, workers: int) -> dict:
    """Compile (or load from Numba's cache) every module of ``modules`` (kernel modules, in
    the order to take them) for ``dtypes`` (NumPy float types), with up to ``workers``
    processes (this one included) when the first module misses the cache. Returns ``{module
    name: "here" | "worker"}``: "worker" for the modules a worker compiled and this process
    then loaded from the cache without compiling anything, "here" for the others (compiled or
    loaded here first, or compiled here after all: a failed worker, a cache the worker could
    not write). A cache with the first module's index files starts no process and writes no
    file unless that module misses."""
    if workers < 2 or len(modules) < 2 or not dtypes or not sys.executable:
        return _compile_here(modules, dtypes)
    first, rest = modules[0], [(_module_name(module), module) for module in modules[1:]]
    if not cached(first):  # cold: the workers' start-up overlaps the first module's compile
        return {_module_name(first): "here", **_compile_shared(first, rest, dtypes, workers)}
    misses = cache_misses([first])
    _warm(first, dtypes)
    if cache_misses([first]) > misses:  # a stale cache: its index files were there
        return {_module_name(first): "here", **_compile_shared(None, rest, dtypes, workers)}
    return {_module_name(first): "here", **_compile_here(modules[1:], dtypes)}


def _compile_here(modules, dtypes) -> dict:
    """Every module of ``modules`` in this process."""
    for module in modules:
        _warm(module, dtypes)
    return dict.fromkeys(map(_module_name, modules), "here")


def _compile_shared(first, rest, dtypes, workers: int) -> dict:
    """``compile_units``'s shared compile: the workers start while this process takes
    ``first`` (None: already taken, and it missed); if it missed, every process claims and
    compiles modules of ``rest`` (``[(name, module)]``) one at a time, else the workers are
    killed and ``rest`` is taken here; then this process loads what the workers compiled."""
    done = {}
    with tempfile.TemporaryDirectory(prefix="pfd_ref-compile-") as claims, tempfile.TemporaryFile("w+b") as log:
        started = _start_workers(workers - 1, claims, dtypes, [name for name, _ in rest], log)
        stopped = False  # killed by this process before they could write anything
        try:
            cold = True
            if first is not None:
                misses = cache_misses([first])
                _warm(first, dtypes)
                cold = cache_misses([first]) > misses
            for process in started:
                if not cold:
                    stopped = True
                    process.kill()  # still in its start-up: it has written nothing
                    continue
                try:
                    process.stdin.write(GO)
                    process.stdin.close()
                except OSError:  # it has already ended: reported below by its status
                    pass
            for name, module in rest:
                if not cold or claim(claims, name):
                    _warm(module, dtypes)
                    done[name] = "here"
            if len(done) == len(rest):  # every module taken here: a worker has none and writes nothing
                stopped = True
                for process in started:
                    process.kill()
        except BaseException:
            for process in started:
                process.kill()
            raise
        finally:
            for process in started:
                process.stdin.close()  # a worker still waiting for GO ends
                process.wait()
        failed = [] if stopped else [process.returncode for process in started if process.returncode != 0]
        if failed:
            log.seek(0)
            lines = log.read().decode(errors="replace").strip().splitlines()
            warnings.warn(f"kernels.compile_all: a compile worker exited with status {failed[0]}"
                          f"{': ' + lines[-1] if lines else ''}; its modules are compiled in this process",
                          RuntimeWarning, stacklevel=4)
    for name, module in rest:
        if name not in done:
            misses = cache_misses([module])
            _warm(module, dtypes)  # from the cache the workers wrote, or compiled here if one failed
            done[name] = "worker" if cache_misses([module]) == misses else "here"
    return done

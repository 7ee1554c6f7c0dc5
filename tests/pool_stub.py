"""A worker's stand-in for a training, for the worker-pool tests of tests/test_paper.py: a module
of its own that imports nothing heavy, so that a spawned worker process starts in a fraction of
a second."""

import time
from pathlib import Path


def sleep_or_fail(marker_dir: str, index: int) -> int:
    """Item 1 fails at once; every other one takes 0.2 s, leaves a file named after it in
    ``marker_dir`` and returns its index."""
    if index == 1:
        raise ArithmeticError("a broken training")
    time.sleep(0.2)
    Path(marker_dir, str(index)).touch()
    return index


def thread_settings(index: int) -> dict:
    """The thread variables of this worker's environment (``provenance.THREAD_VARIABLES``)."""
    import os
    return {name: os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                    "NUMBA_NUM_THREADS")}

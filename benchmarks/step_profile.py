"""Where the time of one pfd_ref training step goes: per-phase timers and cProfile.

    phase_seconds(step, rounds, steps_per_round) -> {phase: median seconds per step}
    cprofile_top(step, steps, limit) -> rows of the functions with the most own time

Phases are timed by wrapping the functions that do them (``PHASES``: the models'
``FieldEncoder`` and ``MLPStack`` methods, the losses, the optimizer's parts and the kernels
it calls through ``pfd_ref.backend``) for the duration of the measurement and restoring them
afterwards; nothing in pfd_ref changes.
A wrapped call costs about half a microsecond of timer overhead. Phases nest
(the optimizer's step holds its checks and kernels), so ``phase_table`` reports each
leaf's own time and the optimizer's and the whole step's remainders.
"""

from __future__ import annotations

import contextlib
import cProfile
import importlib
import pstats
import time
from collections import defaultdict

import numpy as np

# phase -> the functions whose calls it sums, as (module, attribute path). A target that no
# longer exists (the training step was restructured) raises RuntimeError, so that no phase
# is silently lost.
PHASES = {
    "encoder forward (gathers, pooled field, concatenation)": [("pfd_ref.models", "FieldEncoder.forward")],
    "MLP forward": [("pfd_ref.models", "MLPStack.forward")],
    "losses and their gradients": [("pfd_ref.distill", "hard_loss"), ("pfd_ref.distill", "student_objective")],
    "MLP backward": [("pfd_ref.models", "MLPStack.backward")],
    "encoder backward (embedding gradients)": [("pfd_ref.models", "FieldEncoder.backward")],
    "optimizer: gradient checks": [("pfd_ref.optim", "_check_step_inputs")],
    "optimizer: dense Adam kernel calls": [("pfd_ref.backend", "adam_update_")],
    "optimizer: lazy Adam row kernel calls": [("pfd_ref.backend", "sparse_adam_rows_update_")],
    "optimizer: step": [("pfd_ref.optim", "_Optimizer.step")],
}
OPTIMIZER_PARTS = ("optimizer: gradient checks", "optimizer: dense Adam kernel calls", "optimizer: lazy Adam row kernel calls")


def _timed(function, totals: dict, phase: str, active: set):
    """``function`` adding its seconds to ``totals[phase]``, unless it runs inside another
    call of the same phase (the student's objective calls the hard loss too)."""
    def timed(*args, **kwargs):
        if phase in active:
            return function(*args, **kwargs)
        active.add(phase)
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[phase] += time.perf_counter() - start
            active.discard(phase)

    return timed


@contextlib.contextmanager
def instrumented(totals: dict):
    """Within the block, every function of ``PHASES`` adds its calls' seconds to ``totals[phase]``."""
    restore, active = [], set()
    try:
        for phase, targets in PHASES.items():
            for module_name, path in targets:
                owner = importlib.import_module(module_name)
                *parents, name = path.split(".")
                try:
                    for parent in parents:
                        owner = getattr(owner, parent)
                    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
                except (AttributeError, KeyError):
                    raise RuntimeError(f"PHASES: {module_name}.{path} (phase {phase!r}) no longer exists; "
                                       "point the phase at the function that does it now") from None
                restore.append((owner, name, original))
                setattr(owner, name, _timed(original, totals, phase, active))
        yield totals
    finally:
        for owner, name, original in reversed(restore):
            setattr(owner, name, original)


def phase_seconds(step, rounds: int, steps_per_round: int) -> dict[str, float]:
    """Median over ``rounds`` of the mean seconds per step of each phase (and ``"step"``, the
    whole call of ``step``) over ``steps_per_round`` calls; one round runs first as a warm-up."""
    per_round = defaultdict(list)
    for round_index in range(rounds + 1):
        totals = defaultdict(float)
        with instrumented(totals):
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            totals["step"] = time.perf_counter() - start
        if round_index:
            for phase in ("step", *PHASES):
                per_round[phase].append(totals[phase] / steps_per_round)
    return {phase: float(np.median(values)) for phase, values in per_round.items()}


def phase_table(seconds: dict[str, float], gemm_forward: float, gemm_backward: float) -> list[dict]:
    """Rows ``{phase, ms/step, share, BLAS GEMM ms, rest ms}`` from ``phase_seconds``: each
    phase's own time (the optimizer's step less its parts, the step less every phase), with
    the forward and backward products' time at BLAS speed (``step_limit.gemm_seconds``)
    beside the MLP phases."""
    own = {phase: t for phase, t in seconds.items() if phase not in ("step", "optimizer: step")}
    own["optimizer: the rest (Python loop, state, step sizes)"] = seconds["optimizer: step"] - sum(
        seconds[p] for p in OPTIMIZER_PARTS)
    own["the rest of the step (model glue, checks, merging gradients)"] = seconds["step"] - seconds[
        "optimizer: step"] - sum(t for p, t in seconds.items() if p not in ("step", "optimizer: step", *OPTIMIZER_PARTS))
    gemm = {"MLP forward": gemm_forward, "MLP backward": gemm_backward}
    rows = []
    for phase, t in own.items():
        row = {"phase": phase, "ms/step": t * 1e3, "share": t / seconds["step"]}
        if phase in gemm:
            row["BLAS GEMM ms"], row["rest ms"] = gemm[phase] * 1e3, (t - gemm[phase]) * 1e3
        rows.append(row)
    rows.append({"phase": "step", "ms/step": seconds["step"] * 1e3, "share": 1.0,
                 "BLAS GEMM ms": (gemm_forward + gemm_backward) * 1e3})
    return rows


def cprofile_top(step, steps: int, limit: int = 12) -> list[dict]:
    """The ``limit`` functions with the most own time over ``steps`` calls of ``step`` under
    cProfile (which slows each Python call, so Python-heavy parts read high), per step."""
    profiler = cProfile.Profile()
    step()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.items():
        where = f"{filename.rsplit('/', 2)[-2]}/{filename.rsplit('/', 1)[-1]}:{line}" if "/" in filename else filename
        rows.append({"function": f"{name} ({where})", "calls/step": calls / steps,
                     "own ms/step": own / steps * 1e3, "cumulative ms/step": cumulative / steps * 1e3})
    rows.sort(key=lambda row: -row["own ms/step"])
    return rows[:limit]

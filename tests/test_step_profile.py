"""benchmarks.step_profile: every phase's functions are found, called and restored (no
timing is asserted)."""

from __future__ import annotations

import numpy as np

from benchmarks.step_profile import PHASES, phase_seconds, phase_table
from benchmarks.training import model_step
from pfd_ref.models import FieldEncoder, MLPStack
from pfd_ref.train import TrainConfig, models_for
from tiny import tiny_dataset


def test_every_phase_is_timed_and_the_functions_are_restored():
    data = tiny_dataset(np.random.default_rng(0), 16)
    student, teacher = models_for(data.schema, "pfd", TrainConfig(student_kind="mlp"))
    originals = (FieldEncoder.forward, MLPStack.forward, MLPStack.backward)
    step = model_step(student, teacher, [data.take(np.arange(8)), data.take(np.arange(8, 16))], np.random.default_rng(1))
    seconds = phase_seconds(step, rounds=2, steps_per_round=2)
    assert set(seconds) == {"step", *PHASES}
    assert all(t > 0 for t in seconds.values())  # every phase's functions ran inside the step
    assert (FieldEncoder.forward, MLPStack.forward, MLPStack.backward) == originals
    rows = phase_table(seconds, gemm_forward=0.0, gemm_backward=0.0)
    own = [row["ms/step"] for row in rows if row["phase"] != "step"]
    assert np.isclose(sum(own), seconds["step"] * 1e3)  # the optimizer's parts are not counted twice

"""Live parity with diffusers' DDPMScheduler/DDIMScheduler (skipped unless torch and diffusers are
installed: the `parity` extra). Runs the reference now instead of reading the golden fixture, and
checks that the committed fixture is what the reference produces today.

    PYTHONPATH=. <parity venv>/bin/python -m pytest tests/parity/test_live_diffusion_schedules.py
"""

import numpy as np
import pytest

from experiments.parity import diffusion_schedules as parity

pytest.importorskip("torch")
pytest.importorskip("diffusers")

FIXTURE = "tests/fixtures/parity/diffusion_schedules.npz"
TOLERANCE = 1e-6  # relative to each array's scale, absolute below 1 (parity.scaled_errors)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return parity.generate()


def test_ours_equals_live_diffusers_within_1e_minus_6(reference):
    ours = {**parity.our_schedule_outputs(), **parity.our_sampler_outputs()}
    compared = [key for key in reference if not key.startswith("extra_step/")]  # diffusers' bug
    assert sorted(ours) == sorted(compared)
    errors = parity.scaled_errors(ours, reference)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, (worst, errors[worst])


def test_committed_fixture_is_what_diffusers_produces_today(reference):
    committed = dict(np.load(FIXTURE))
    assert sorted(committed) == sorted(reference)
    for key, value in reference.items():
        np.testing.assert_array_equal(committed[key], value, err_msg=key)

"""Shared test settings: hypothesis profiles and a float64 fixture."""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

# JAX compiles on first call, so the first example of a property is slow: no deadline.
# The x64 fixture is function-scoped on purpose: float64 stays on for every example of a test.
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "default", deadline=None, max_examples=25, suppress_health_check=SUPPRESSED
)
settings.register_profile(
    "thorough", deadline=None, max_examples=300, suppress_health_check=SUPPRESSED
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def x64():
    """Runs a test in float64, for comparisons tighter than float32 resolution."""
    with jax.enable_x64(True):
        yield

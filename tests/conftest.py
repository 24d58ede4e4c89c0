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
# CI (CI=true, set by .ci/run's environment) draws the same examples on every run, so a red CI
# is reproducible and never the luck of a draw; local runs keep exploring new examples.
settings.register_profile(
    "ci", deadline=None, max_examples=25, suppress_health_check=SUPPRESSED, derandomize=True
)
default_profile = "ci" if os.environ.get("CI", "").lower() in ("1", "true") else "default"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default_profile))


@pytest.fixture
def x64():
    """Runs a test in float64, for comparisons tighter than float32 resolution."""
    with jax.enable_x64(True):
        yield

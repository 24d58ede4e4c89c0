"""Shared test settings: hypothesis profiles and a float64 fixture."""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

# JAX compiles on first call, so the first example of a property is slow: no deadline.
settings.register_profile(
    "default", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def x64():
    """Runs a test in float64, for comparisons tighter than float32 resolution."""
    with jax.enable_x64(True):
        yield

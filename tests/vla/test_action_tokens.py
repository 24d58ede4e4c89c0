"""Action tokenization: bins against a loop, round-trip error bounds, edges, token layouts."""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vla import action_tokens as at

batch_shapes = st.sampled_from([(3,), (4, 3), (2, 5, 3)])
bin_counts = st.sampled_from([1, 7, 256])
# The x64 fixture is entered once per test function; examples do not share mutable state.
x64_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def bounds(draw, action_dim=3):
    low = draw(arrays(np.float64, action_dim, elements=st.floats(-10, 10)))
    span = draw(arrays(np.float64, action_dim, elements=st.floats(0.1, 10)))
    return low, low + span


@x64_settings
@given(data=st.data(), shape=batch_shapes, num_bins=bin_counts, limits=bounds())
def test_discretize_is_the_floor_formula_and_round_trip_error_is_at_most_half_a_bin(
    x64, data, shape, num_bins, limits
):
    low, high = limits
    fractions = data.draw(arrays(np.float64, shape, elements=st.floats(0, 1)))
    actions = low + fractions * (high - low)
    bins = np.asarray(at.discretize(actions, low, high, num_bins))
    for index in np.ndindex(shape):
        d = index[-1]
        # Eq. 19.2 in exact rational arithmetic on the float64 inputs.
        scaled = (
            (Fraction(actions[index]) - Fraction(low[d]))
            / (Fraction(high[d]) - Fraction(low[d]))
            * num_bins
        )
        expected = min(max(math.floor(scaled), 0), num_bins - 1)
        # Within rounding of a bin edge either side is right (XLA divides by a reciprocal).
        on_edge = abs(scaled - round(scaled)) < 1e-9
        assert bins[index] == expected or (on_edge and abs(bins[index] - expected) == 1)
    error = np.abs(at.bin_centers(bins, low, high, num_bins) - actions)
    half_width = at.bin_width(low, high, num_bins) / 2
    assert np.all(error <= half_width * (1 + 1e-9))


@x64_settings
@given(values=arrays(np.float64, 20, elements=st.floats(-3, 3)), num_bins=bin_counts)
def test_discretize_is_monotone_and_clips_out_of_range_values(x64, values, num_bins):
    low, high = np.array([-1.0]), np.array([1.0])
    bins = at.discretize(np.sort(values)[:, None], low, high, num_bins)[:, 0]
    assert np.all(np.diff(bins) >= 0)
    assert np.all(bins[np.sort(values) <= -1.0] == 0)
    assert np.all(bins[np.sort(values) >= 1.0] == num_bins - 1)


def test_bin_edges_upper_bound_and_centers():
    low, high = np.array([0.0, -4.0]), np.array([8.0, 4.0])
    edges = np.array([[0.0, -4.0], [1.0, -3.0], [7.999, 3.999], [8.0, 4.0]])
    np.testing.assert_array_equal(
        at.discretize(edges, low, high, 8), [[0, 0], [1, 1], [7, 7], [7, 7]]
    )
    np.testing.assert_allclose(at.bin_centers(np.array([[0, 7]]), low, high, 8), [[0.5, 3.5]])
    np.testing.assert_allclose(at.bin_width(low, high, 8), [1.0, 1.0])


def test_uniform_values_have_mean_absolute_error_a_quarter_bin_and_maximum_half_a_bin(x64):
    low, high, num_bins, samples = np.array([-np.pi]), np.array([np.pi]), 256, 200_000
    actions = jax.random.uniform(jax.random.key(0), (samples, 1), minval=-np.pi, maxval=np.pi)
    error = jnp.abs(
        at.bin_centers(at.discretize(actions, low, high, num_bins), low, high, 256) - actions
    )
    width = float(at.bin_width(low, high, num_bins)[0])
    # Within a bin the error is uniform on [0, Δ/2]: mean Δ/4, standard deviation Δ/(4√3).
    standard_error = width / (4 * np.sqrt(3)) / np.sqrt(samples)
    assert abs(float(jnp.mean(error)) - width / 4) < 5 * standard_error
    assert 0.499 * width < float(jnp.max(error)) <= 0.5 * width


@given(
    data=st.data(),
    shape=batch_shapes,
    num_bins=bin_counts,
    layout=st.sampled_from(at.LAYOUTS),
    offset=st.sampled_from([0, 32000]),
)
def test_token_ids_round_trip_and_fill_the_action_vocabulary(data, shape, num_bins, layout, offset):
    bins = data.draw(arrays(np.int32, shape, elements=st.integers(0, num_bins - 1)))
    token_ids = at.bins_to_token_ids(bins, num_bins, layout, offset)
    np.testing.assert_array_equal(at.token_ids_to_bins(token_ids, num_bins, layout, offset), bins)
    size = at.action_vocabulary_size(shape[-1], num_bins, layout)
    assert np.all((token_ids >= offset) & (token_ids < offset + size))
    for index in np.ndindex(shape):
        per_dimension = offset + index[-1] * num_bins + bins[index]
        expected = per_dimension if layout == "per_dimension" else offset + bins[index]
        assert token_ids[index] == expected


def test_vocabulary_of_seven_dimensions_and_256_bins():
    assert at.action_vocabulary_size(7, 256) == 1792
    assert at.action_vocabulary_size(7, 256, layout="shared") == 256
    all_bins = np.broadcast_to(np.arange(256)[:, None], (256, 7))
    assert len(np.unique(at.bins_to_token_ids(all_bins, 256))) == 1792


def test_discretize_under_jit_matches_eager():
    low, high = jnp.array([-1.0, 0.0]), jnp.array([1.0, 2.0])
    actions = jnp.array([[0.3, 1.9], [-2.0, 0.5]])
    jitted = jax.jit(at.discretize, static_argnums=3)
    np.testing.assert_array_equal(
        jitted(actions, low, high, 16), at.discretize(actions, low, high, 16)
    )


def test_bad_arguments_raise_value_error():
    low, high = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match=r"low must have shape \[2\]"):
        at.discretize(np.zeros((4, 2)), low, high, 8)
    with pytest.raises(ValueError, match="low must be < high"):
        at.discretize(np.zeros(3), high, low, 8)
    with pytest.raises(ValueError, match="num_bins must be an integer >= 1, got 0"):
        at.bin_centers(np.zeros(3, np.int32), low, high, 0)
    with pytest.raises(ValueError, match="layout must be one of"):
        at.bins_to_token_ids(np.zeros(3, np.int32), 8, layout="joint")
    with pytest.raises(ValueError, match=r"actions must have shape \[..., D\] \(rank >= 1\)"):
        at.discretize(np.float32(0.5), low[:1], high[:1], 8)

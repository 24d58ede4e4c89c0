"""Counting the linear regions of ReLU networks (book 9.2.2)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import linear_regions, mlp

x64_property = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    max_examples=10,
)
SEEDS = st.integers(0, 2**32 - 1)
GRID_POINTS = 100_001


def random_network(seed: int, sizes, bias_std: float = 0.5):
    """Drawn with numpy so that each example does not compile a new jax.random program."""
    rng = np.random.default_rng(seed)
    return [
        mlp.Layer(
            W=jnp.asarray(rng.normal(size=(fan_out, fan_in)) * np.sqrt(2 / fan_in)),
            b=jnp.asarray(bias_std * rng.normal(size=fan_out)),
        )
        for fan_in, fan_out in itertools.pairwise(sizes)
    ]


def grid_count(params, start, end, num_points=GRID_POINTS):
    """Brute force: 1 + the number of consecutive grid points whose patterns differ."""
    t = np.linspace(0.0, 1.0, num_points)[:, None]
    points = jnp.asarray(np.asarray(start) + t * (np.asarray(end) - np.asarray(start)))
    patterns = np.asarray(linear_regions.activation_patterns(params, points))
    return 1 + int(np.sum(np.any(patterns[1:] != patterns[:-1], axis=1)))


@x64_property
@given(seed=SEEDS, sizes=st.sampled_from([(2, 6, 1), (2, 5, 4, 1), (3, 4, 4, 4, 1)]))
def test_exact_line_count_equals_the_brute_force_grid_count(x64, seed, sizes):
    """The grid count is a lower bound (a pattern change between two neighbours implies a
    breakpoint between them), and equal to the exact count when no two breakpoints share a
    grid cell."""
    params = random_network(seed, sizes)
    rng = np.random.default_rng(seed + 1)
    start, end = jnp.asarray(rng.normal(size=sizes[0])), jnp.asarray(rng.normal(size=sizes[0]))
    start, end = 3 * start, -3 * end
    exact = linear_regions.count_regions_on_line(params, start, end, max_breakpoints=128)
    brute_force = grid_count(params, start, end)
    assert len(exact.breakpoints) == exact.count - 1
    gaps = np.diff(np.concatenate([[0.0], exact.breakpoints, [1.0]]))
    if gaps.min() > 2.0 / (GRID_POINTS - 1):
        assert brute_force == exact.count
    else:
        assert brute_force <= exact.count


@x64_property
@given(seed=SEEDS, width=st.sampled_from([1, 3, 8]))
def test_one_hidden_layer_in_1d_has_one_region_more_than_kinks_in_the_segment(x64, seed, width):
    """f(x) = Σ a_j relu(w_j x + b_j) on [x_a, x_b] switches unit j at x = −b_j / w_j only:
    1 + #{kinks inside} regions, hence at most width + 1."""
    params = random_network(seed, (1, width, 1))
    start, end = jnp.array([-2.0]), jnp.array([2.0])
    kinks = -np.asarray(params[0].b) / np.asarray(params[0].W[:, 0])
    count = linear_regions.count_regions_on_line(params, start, end).count
    assert count == 1 + np.sum((kinks > -2.0) & (kinks < 2.0))
    assert count <= width + 1


def test_the_pattern_changes_across_every_breakpoint(x64):
    params = random_network(7, (2, 6, 6, 1))
    start, end = jnp.array([-3.0, -1.0]), jnp.array([3.0, 2.0])
    regions = linear_regions.count_regions_on_line(params, start, end)
    offsets = np.array([-1e-9, 1e-9])
    t = (regions.breakpoints[:, None] + offsets).ravel()[:, None]
    patterns = np.asarray(
        linear_regions.activation_patterns(params, start + jnp.asarray(t) * (end - start))
    ).reshape(len(regions.breakpoints), 2, -1)
    assert regions.count > 5
    assert np.all(np.any(patterns[:, 0] != patterns[:, 1], axis=1))


@pytest.mark.parametrize("depth", [1, 3, 8])
def test_sawtooth_has_two_to_the_depth_regions_and_computes_the_folded_tent(x64, depth):
    params = linear_regions.sawtooth_network(depth)
    regions = linear_regions.count_regions_on_line(
        params, jnp.zeros(1), jnp.ones(1), max_breakpoints=256
    )
    assert regions.count == 2**depth
    x = np.linspace(0.0, 1.0, 101)
    folded = x.copy()
    for _ in range(depth):
        folded = np.where(folded < 0.5, 2 * folded, 2 - 2 * folded)  # the tent map g
    outputs = mlp.forward(params, jnp.asarray(x)[None], mlp.RELU, mlp.IDENTITY_MSE).A[-1][0]
    np.testing.assert_allclose(outputs, folded, atol=1e-12)


def test_too_few_breakpoint_slots_raise_instead_of_undercounting(x64):
    with pytest.raises(ValueError, match="max_breakpoints=8"):
        linear_regions.count_regions_on_line(
            linear_regions.sawtooth_network(5), jnp.zeros(1), jnp.ones(1), max_breakpoints=8
        )


def test_plane_labels_count_the_four_quadrants_of_two_axis_units(x64):
    """relu(x_1) and relu(x_2) switch on the axes: four regions on a square around 0."""
    params = [
        mlp.Layer(W=jnp.eye(2), b=jnp.zeros(2)),
        mlp.Layer(W=jnp.ones((1, 2)), b=jnp.zeros(1)),
    ]
    labels = linear_regions.plane_pattern_ids(params, jnp.array([0.01, 0.01]), jnp.eye(2), 1.0, 50)
    assert labels.shape == (50, 50)
    assert labels.max() + 1 == 4
    assert len({labels[0, 0], labels[0, -1], labels[-1, -1], labels[-1, 0]}) == 4


def test_plane_count_is_a_lower_bound_of_what_a_finer_grid_finds(x64):
    params = random_network(3, (2, 8, 8, 1))
    coarse, fine = (
        linear_regions.plane_pattern_ids(params, jnp.zeros(2), jnp.eye(2), 2.0, r).max() + 1
        for r in (20, 300)
    )
    assert coarse <= fine


def test_random_relu_network_has_he_weights_and_the_requested_bias_scale():
    params = linear_regions.random_relu_network(jax.random.key(0), (200, 400, 1), bias_std=0.7)
    weights, biases = np.asarray(params[0].W), np.asarray(params[0].b)
    # 80000 Gaussian weights: the sample variance has relative std √(2/80000) = 0.5%
    assert np.var(weights) == pytest.approx(2 / 200, rel=0.025)
    assert np.std(biases) == pytest.approx(0.7, rel=0.15)  # 400 draws: relative std 3.5%


def test_bad_arguments_are_rejected_by_name():
    params = linear_regions.sawtooth_network(2)
    with pytest.raises(ValueError, match="start"):
        linear_regions.count_regions_on_line(params, jnp.zeros(2), jnp.ones(1))
    with pytest.raises(ValueError, match="depth"):
        linear_regions.sawtooth_network(0)
    with pytest.raises(ValueError, match="resolution"):
        linear_regions.plane_pattern_ids(params, jnp.zeros(1), jnp.ones((2, 1)), 1.0, 1)
    with pytest.raises(ValueError, match="basis"):
        linear_regions.plane_pattern_ids(params, jnp.zeros(1), jnp.ones((1, 1)), 1.0, 5)
    with pytest.raises(ValueError, match="bias_std"):
        linear_regions.random_relu_network(jax.random.key(0), (2, 3, 1), bias_std=-1.0)

"""Tests of core.hparam_search: Expected Improvement against a hand computation and Monte Carlo,
its limits; the grid as the product of eq. 13.8; random search's bounds, log-uniformity and
reproducibility; the shared loop; and Bayesian optimization on a 1-D quadratic."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import hparam_search as hs

SPACE = (
    hs.Dimension("learning_rate", 1e-4, 1e-1, log_scale=True),
    hs.Dimension("momentum", 0.0, 0.9),
)
SMALL_BAYES = hs.BayesianConfig(
    initial_trials=3, num_candidates=256, num_local_candidates=64, num_refined=4, fit_steps=60
)


def _normal_cdf(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _normal_pdf(z):
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def test_expected_improvement_equals_hand_computation():
    # μ = 0.2, σ = 0.5, f* = 0.5, ξ = 0.1: z = (0.5 − 0.1 − 0.2)/0.5 = 0.4,
    # EI = 0.2 Φ(0.4) + 0.5 φ(0.4) = 0.2 · 0.655422 + 0.5 · 0.368270 = 0.315219.
    expected = 0.2 * _normal_cdf(0.4) + 0.5 * _normal_pdf(0.4)
    ours = hs.expected_improvement(jnp.asarray([0.2]), jnp.asarray([0.25]), jnp.asarray(0.5), 0.1)
    np.testing.assert_allclose(ours, [expected], rtol=1e-6)
    np.testing.assert_allclose(expected, 0.315219, atol=1e-6)


def test_expected_improvement_equals_monte_carlo_mean_of_the_improvement():
    # EI is E[max(f* − ξ − f, 0)], f ~ N(μ, σ²): a sample mean of 10^6 draws is within 4 of its
    # standard errors.
    mean, variance, best, xi = 0.3, 0.8, 0.1, 0.05
    samples = mean + math.sqrt(variance) * np.random.default_rng(0).standard_normal(1_000_000)
    improvements = np.maximum(best - xi - samples, 0.0)
    standard_error = improvements.std() / math.sqrt(improvements.size)
    ours = hs.expected_improvement(
        jnp.asarray([mean]), jnp.asarray([variance]), jnp.asarray(best), xi
    )
    assert abs(float(ours[0]) - improvements.mean()) < 4 * standard_error


@given(
    mean=st.floats(-3, 3, allow_subnormal=False),
    std=st.floats(0, 3, allow_subnormal=False),
    best=st.floats(-3, 3, allow_subnormal=False),
)
def test_expected_improvement_is_non_negative_and_at_least_the_plain_improvement(mean, std, best):
    # E[max(f* − f, 0)] >= max(f* − E f, 0) by Jensen; with σ = 0 they are equal.
    ei = float(
        hs.expected_improvement(jnp.asarray([mean]), jnp.asarray([std**2]), jnp.asarray(best))[0]
    )
    plain = max(best - mean, 0.0)
    assert ei >= plain - 1e-5 * (1 + abs(plain))
    if std == 0:
        assert ei == pytest.approx(plain, abs=1e-6)


def test_expected_improvement_without_spread_is_zero_unless_the_mean_improves():
    ei = hs.expected_improvement(
        jnp.asarray([0.5, 0.2, 0.0]), jnp.zeros(3), jnp.asarray(0.2), xi=0.0
    )
    np.testing.assert_array_equal(ei[:2], [0.0, 0.0])
    np.testing.assert_allclose(ei[2], 0.2, rtol=1e-6)


def test_grid_enumerates_the_product_of_the_levels():
    # Eq. 13.8: every combination of n levels per dimension, m · n · p points.
    grid = np.asarray(hs.grid_unit_points(3, 4))
    levels = np.linspace(0, 1, 4)
    np.testing.assert_allclose(grid, list(itertools.product(levels, repeat=3)), rtol=1e-6)
    values = np.asarray(hs.to_values(SPACE, jnp.asarray(hs.grid_unit_points(2, 4))))
    np.testing.assert_allclose(np.unique(values[:, 0]), [1e-4, 1e-3, 1e-2, 1e-1], rtol=1e-5)
    np.testing.assert_allclose(np.unique(values[:, 1]), [0.0, 0.3, 0.6, 0.9], atol=1e-6)


@pytest.mark.parametrize(
    ("budget", "dims", "points"), [(27, 3, 3), (26, 3, 2), (64, 3, 4), (7, 1, 7)]
)
def test_grid_size_is_the_largest_grid_within_the_budget(budget, dims, points):
    assert hs.grid_size_within(budget, dims) == points


def _recording_objective(calls):
    def objective(hparams):
        calls.append(hparams)
        return (math.log10(hparams["learning_rate"]) + 2.5) ** 2 + hparams["momentum"]

    return objective


def test_minimize_grid_runs_every_grid_point_once():
    calls = []
    result = hs.minimize(_recording_objective(calls), SPACE, 10, jax.random.PRNGKey(0), "grid")
    expected = np.asarray(hs.to_values(SPACE, hs.grid_unit_points(2, 3)))
    assert len(calls) == 9 and result.losses.shape == (9,)
    ran = np.asarray([[c["learning_rate"], c["momentum"]] for c in calls])
    np.testing.assert_allclose(np.sort(ran, axis=0), np.sort(expected, axis=0), rtol=1e-5)


def test_random_search_is_in_bounds_log_uniform_and_reproducible():
    first = hs.minimize(_recording_objective([]), SPACE, 400, jax.random.PRNGKey(1), "random")
    again = hs.minimize(_recording_objective([]), SPACE, 400, jax.random.PRNGKey(1), "random")
    other = hs.minimize(_recording_objective([]), SPACE, 400, jax.random.PRNGKey(2), "random")
    np.testing.assert_array_equal(first.values, again.values)
    assert not np.allclose(first.values, other.values)
    rates, momenta = first.values[:, 0], first.values[:, 1]
    assert rates.min() >= 1e-4 * (1 - 1e-6) and rates.max() <= 1e-1 * (1 + 1e-6)
    assert momenta.min() >= 0.0 and momenta.max() <= 0.9
    # log10 η is uniform on [−4, −1]: mean −2.5, standard error sqrt(3/4)/sqrt(400) = 0.043.
    assert abs(np.log10(rates).mean() + 2.5) < 4 * math.sqrt(0.75 / 400)
    np.testing.assert_array_equal(first.best_so_far, np.minimum.accumulate(first.losses))


@pytest.mark.slow  # compiles one Bayesian-optimization proposal (~4 s of CPU)
def test_bayesian_optimization_finds_a_quadratic_minimum_in_few_trials():
    # f(x) = (x − 0.3)² on [−1, 1]: 3 random trials, then 7 chosen by EI.
    space = (hs.Dimension("x", -1.0, 1.0),)
    result = hs.minimize(
        lambda h: (h["x"] - 0.3) ** 2, space, 10, jax.random.PRNGKey(0), "bayesian", SMALL_BAYES
    )
    random = hs.minimize(lambda h: (h["x"] - 0.3) ** 2, space, 10, jax.random.PRNGKey(0), "random")
    np.testing.assert_array_equal(result.values[:3], random.values[:3])  # shared initial design
    assert result.best_so_far[-1] < 1e-4
    assert abs(result.best_values(space)["x"] - 0.3) < 1e-2


def test_invalid_searches_are_rejected_with_the_bad_value():
    objective = _recording_objective([])
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="method must be one of"):
        hs.minimize(objective, SPACE, 5, key, "annealing")
    with pytest.raises(ValueError, match="budget must be positive"):
        hs.minimize(objective, SPACE, 0, key, "random")
    with pytest.raises(ValueError, match="needs low < high"):
        hs.minimize(objective, (hs.Dimension("x", 1.0, 1.0),), 5, key, "random")
    with pytest.raises(ValueError, match="needs low > 0"):
        hs.minimize(objective, (hs.Dimension("x", 0.0, 1.0, log_scale=True),), 5, key, "random")
    with pytest.raises(ValueError, match="repeated dimension names"):
        hs.minimize(objective, (SPACE[0], SPACE[0]), 5, key, "random")
    with pytest.raises(ValueError, match="kernel must be one of"):
        hs.minimize(objective, SPACE, 5, key, "bayesian", SMALL_BAYES._replace(kernel="cubic"))
    with pytest.raises(ValueError, match="objective returned nan"):
        hs.minimize(lambda h: float("nan"), SPACE, 5, key, "random")

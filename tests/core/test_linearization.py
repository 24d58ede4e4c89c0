"""The first-order Taylor model of a network around its initialization (book 9.3.3, eq. 9.8)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from core import activations, linearization, shallow_network

network = functools.partial(
    shallow_network.apply, parameterization="ntk", activation=activations.tanh
)


def expansion_problem():
    """θ_0 and a direction Δ with N(0, 1) entries (NTK draws, width 16), inputs [5, 2]."""
    rng = np.random.default_rng(0)

    def draw():
        return shallow_network.ShallowParams(
            *(jnp.asarray(rng.normal(size=shape)) for shape in ((16, 2), (16,), (16,)))
        )

    return draw(), draw(), jnp.asarray(rng.normal(size=(5, 2)))


def moved(params, direction, step):
    return jax.tree.map(lambda p, d: p + step * d, params, direction)


def test_taylor_model_equals_the_network_at_the_expansion_point(x64):
    initial, _, inputs = expansion_problem()
    taylor = linearization.taylor_model(network, initial)
    np.testing.assert_array_equal(taylor(initial, inputs), network(initial, inputs))


def test_taylor_model_matches_the_network_to_first_order(x64):
    """f(θ_0 + εΔ) − f_lin(θ_0 + εΔ) = O(ε²): halving ε quarters it; and f_lin's change agrees
    with a central finite difference of f, whose own error is O(ε³)."""
    initial, direction, inputs = expansion_problem()
    taylor = linearization.taylor_model(network, initial)

    def remainder(step):
        params = moved(initial, direction, step)
        return np.max(np.abs(network(params, inputs) - taylor(params, inputs)))

    assert remainder(1e-3) / remainder(5e-4) == pytest.approx(4.0, rel=0.01)
    step = 1e-4
    central_difference = (
        network(moved(initial, direction, step), inputs)
        - network(moved(initial, direction, -step), inputs)
    ) / 2
    linear_change = taylor(moved(initial, direction, step), inputs) - network(initial, inputs)
    np.testing.assert_allclose(linear_change, central_difference, rtol=1e-7, atol=1e-13)


def test_taylor_model_is_affine_in_the_parameters(x64):
    initial, direction, inputs = expansion_problem()
    taylor = linearization.taylor_model(network, initial)
    at_zero = taylor(initial, inputs)
    at_one = taylor(moved(initial, direction, 1.0), inputs)
    at_three = taylor(moved(initial, direction, 3.0), inputs)
    np.testing.assert_allclose(at_three - at_zero, 3 * (at_one - at_zero), rtol=1e-10)


def test_taylor_model_of_a_linear_model_is_the_model(x64):
    def linear_model(weights, x):
        return x @ weights

    weights = jnp.array([1.0, -2.0])
    inputs = jnp.array([[0.5, 1.0], [2.0, -1.0]])
    taylor = linearization.taylor_model(linear_model, jnp.zeros(2))
    np.testing.assert_allclose(taylor(weights, inputs), linear_model(weights, inputs))


def test_relative_distances_are_the_norm_ratios():
    f, g, f0 = jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]), jnp.array([0.0, 0.0])
    assert float(linearization.relative_distance(f, g, f0)) == pytest.approx(1 / np.sqrt(5))
    params = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0])}
    initial = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([1.0])}
    change = float(linearization.relative_parameter_change(params, initial))
    assert change == pytest.approx(3.0 / float(optax.tree.norm(initial)))


def test_mismatched_shapes_are_rejected_by_name():
    with pytest.raises(ValueError, match="other_outputs"):
        linearization.relative_distance(jnp.ones(3), jnp.ones(2), jnp.ones(3))
    with pytest.raises(ValueError, match="initial_params"):
        linearization.relative_parameter_change({"a": jnp.ones(2)}, {"a": jnp.ones(3)})

"""The one-hidden-layer network of eq. 9.1 in the standard and NTK parameterizations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import activations, optim, shallow_network


def test_apply_is_the_sum_over_units_of_eq_9_1():
    params = shallow_network.init(jax.random.key(0), 3, 5)
    inputs = jax.random.normal(jax.random.key(1), (4, 3))
    W, b, a = (np.asarray(p) for p in params)
    expected = [sum(a[j] * np.tanh(W[j] @ x + b[j]) for j in range(5)) for x in np.asarray(inputs)]
    outputs = shallow_network.apply(params, inputs, activation=activations.tanh)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5)


def test_ntk_network_is_the_standard_network_with_rescaled_weights():
    """(1/√N) Σ a_j σ(w_jᵀx/√d + b_j) = Σ (a_j/√N) σ((w_j/√d)ᵀx + b_j)."""
    width, input_dim = 7, 3
    params = shallow_network.init(jax.random.key(2), input_dim, width, "ntk")
    inputs = jax.random.normal(jax.random.key(3), (6, input_dim))
    rescaled = shallow_network.ShallowParams(
        params.input_weights / np.sqrt(input_dim),
        params.biases,
        params.output_weights / np.sqrt(width),
    )
    np.testing.assert_allclose(
        shallow_network.apply(params, inputs, "ntk"),
        shallow_network.apply(rescaled, inputs, "standard"),
        rtol=1e-5,
    )


def test_both_parameterizations_draw_the_same_initial_function():
    """Same key: the standard draws are the NTK draws with the scales moved inside."""
    inputs = jax.random.normal(jax.random.key(4), (6, 2))
    standard = shallow_network.init(jax.random.key(5), 2, 9, "standard")
    ntk = shallow_network.init(jax.random.key(5), 2, 9, "ntk")
    np.testing.assert_allclose(
        shallow_network.apply(standard, inputs, "standard"),
        shallow_network.apply(ntk, inputs, "ntk"),
        rtol=1e-5,
    )


@pytest.mark.parametrize("parameterization", shallow_network.PARAMETERIZATIONS)
def test_output_weight_gradient_is_the_hidden_activation_scaled_by_the_parameterization(
    parameterization,
):
    """∂f/∂a_j = σ(w_jᵀx + b_j) in the standard parameterization and σ(w_jᵀx/√d + b_j)/√N in
    the NTK one: the 1/√N that keeps each parameter's step small in wide networks."""
    width, input_dim = 16, 2
    params = shallow_network.init(jax.random.key(6), input_dim, width, parameterization)
    x = np.array([0.3, -1.2])
    gradient = jax.grad(
        lambda p: shallow_network.apply(p, jnp.asarray(x)[None], parameterization)[0]
    )(params)
    W, b = np.asarray(params.input_weights), np.asarray(params.biases)
    if parameterization == "ntk":
        expected = np.maximum(W @ x / np.sqrt(input_dim) + b, 0) / np.sqrt(width)
    else:
        expected = np.maximum(W @ x + b, 0)
    np.testing.assert_allclose(gradient.output_weights, expected, rtol=1e-5, atol=1e-7)


def test_training_a_linear_model_follows_the_gradient_descent_recursion(x64):
    """For f(w, X) = X w the MSE gradient is (2/B) Xᵀ(Xw − y): the iterates of
    `train_regression` with SGD against that recursion written out."""
    rng = np.random.default_rng(0)
    inputs, targets, start = rng.normal(size=(10, 3)), rng.normal(size=10), rng.normal(size=3)
    step_size, num_steps = 0.1, 20

    def linear_model(weights, x):
        return x @ weights

    final, losses = shallow_network.train_regression(
        linear_model,
        jnp.asarray(start),
        jnp.asarray(inputs),
        jnp.asarray(targets),
        optim.sgd(step_size),
        num_steps,
    )
    weights = start
    expected_losses = []
    for _ in range(num_steps):
        residual = inputs @ weights - targets
        expected_losses.append(np.mean(residual**2))
        weights = weights - step_size * 2 / len(targets) * inputs.T @ residual
    expected_losses.append(np.mean((inputs @ weights - targets) ** 2))
    np.testing.assert_allclose(final, weights, rtol=1e-12)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-12)


def test_adam_training_fits_a_smooth_target():
    inputs = jnp.linspace(-1.0, 1.0, 64)[:, None]
    targets = jnp.sin(2.0 * inputs[:, 0])
    params = shallow_network.init(jax.random.key(7), 1, 32)
    trained, losses = shallow_network.train_regression(
        shallow_network.apply, params, inputs, targets, optim.adam(1e-2), 500
    )
    assert losses[-1] < 1e-2 * losses[0]
    error = shallow_network.sup_norm_error(shallow_network.apply(trained, inputs), targets)
    assert float(error) == pytest.approx(
        np.max(np.abs(shallow_network.apply(trained, inputs) - targets))
    )


def test_bad_arguments_are_rejected_by_name():
    params = shallow_network.init(jax.random.key(0), 2, 3)
    with pytest.raises(ValueError, match="parameterization"):
        shallow_network.init(jax.random.key(0), 2, 3, "mup")
    with pytest.raises(ValueError, match="width"):
        shallow_network.init(jax.random.key(0), 2, 0)
    with pytest.raises(ValueError, match="inputs"):
        shallow_network.apply(params, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="num_steps"):
        shallow_network.train_regression(
            functools.partial(shallow_network.apply),
            params,
            jnp.ones((4, 2)),
            jnp.ones(4),
            optim.sgd(0.1),
            0,
        )
    with pytest.raises(ValueError, match="targets"):
        shallow_network.regression_loss(
            shallow_network.apply, params, jnp.ones((4, 2)), jnp.ones(3)
        )

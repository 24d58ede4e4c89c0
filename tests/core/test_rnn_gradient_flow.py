"""Jacobian products through time and the spectral radius (book 15.5, 15.7.2)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import activations, rnn
from core import rnn_gradient_flow as flow

LENGTH, HIDDEN = 5, 4
ACTIVATION = {"tanh": rnn.TANH, "relu": rnn.RELU, "linear": rnn.LINEAR}


def random_network(seed: int) -> tuple[rnn.RNNParams, jax.Array, jax.Array]:
    """Parameters with ρ(W_hh) = 1.3 and nonzero biases, inputs [1, T, 2] and h^(0) [1, d_h]."""
    rng = np.random.default_rng(seed)
    recurrent = rng.normal(size=(HIDDEN, HIDDEN))
    recurrent *= 1.3 / np.max(np.abs(np.linalg.eigvals(recurrent)))
    params = rnn.RNNParams(
        W_hh=jnp.asarray(recurrent),
        W_xh=jnp.asarray(rng.normal(size=(HIDDEN, 2))),
        b_h=jnp.asarray(0.3 * rng.normal(size=HIDDEN)),
        W_hy=jnp.zeros((1, HIDDEN)),
        b_y=jnp.zeros(1),
    )
    inputs = jnp.asarray(rng.normal(size=(1, LENGTH, 2)))
    return params, inputs, jnp.asarray(0.5 * rng.normal(size=(1, HIDDEN)))


@functools.partial(jax.jit, static_argnames="activation")
def jacobians_by_hand_and_autodiff(params, inputs, initial_hidden, activation):
    """(final_state_jacobians [T + 1, d_h, d_h], jax.jacobian of h^(k) ↦ h^(T), k = 0..T - 1)."""
    recurrent_activation = ACTIVATION[activation]
    hidden = rnn.forward(params, inputs, recurrent_activation, initial_hidden)[0]
    products = flow.final_state_jacobians(params.W_hh, hidden, recurrent_activation)
    states = jnp.concatenate([initial_hidden, hidden])

    def final_state_from(h_k, k):
        return rnn.forward(params, inputs[:, k:], recurrent_activation, h_k[None])[0, -1]

    by_autodiff = [jax.jacobian(final_state_from)(states[k], k) for k in range(inputs.shape[1])]
    return products, jnp.stack(by_autodiff)


@given(seed=st.integers(0, 2**32 - 1), activation=st.sampled_from(sorted(ACTIVATION)))
def test_final_state_jacobians_equal_jax_jacobian_of_h_T_wrt_h_k(x64, seed, activation):
    """∂h^(T)/∂h^(k) (eqs. 15.23-15.26) for every k, against jax.jacobian of the map h^(k) ↦
    h^(T) that runs the remaining steps."""
    params, inputs, initial = random_network(seed)
    products, expected = jacobians_by_hand_and_autodiff(params, inputs, initial, activation)
    np.testing.assert_allclose(products[:-1], expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(products[-1], np.eye(HIDDEN))


def test_step_jacobian_is_diag_derivative_times_W_hh(x64):
    params, inputs, initial = random_network(2)
    hidden = rnn.forward(params, inputs, rnn.TANH, initial)[0]
    jacobians = flow.step_jacobians(params.W_hh, hidden, rnn.TANH)
    previous = jnp.concatenate([initial, hidden[:-1]])
    for t in range(LENGTH):
        z = params.W_hh @ previous[t] + params.W_xh @ inputs[0, t] + params.b_h
        expected = jnp.diag(activations.tanh_derivative(z)) @ params.W_hh  # eq. 15.26
        np.testing.assert_allclose(jacobians[t], expected, rtol=1e-12)


def test_linear_rnn_jacobian_products_are_matrix_powers(x64):
    matrix = jnp.asarray(np.random.default_rng(3).normal(size=(3, 3)))
    products = flow.final_state_jacobians(matrix, jnp.zeros((6, 3)), rnn.LINEAR)
    for k in range(7):
        expected = np.linalg.matrix_power(np.asarray(matrix), 6 - k)
        np.testing.assert_allclose(products[k], expected, rtol=1e-12, atol=1e-12)


def test_spectral_radius_is_the_largest_eigenvalue_modulus_and_rescales(x64):
    rotation = jnp.asarray([[0.0, -2.0], [2.0, 0.0]])  # eigenvalues ±2i
    np.testing.assert_allclose(flow.spectral_radius(rotation), 2.0)
    rescaled = flow.with_spectral_radius(rotation, 0.9)
    np.testing.assert_allclose(rescaled, 0.45 * rotation)
    np.testing.assert_allclose(flow.spectral_radius(rescaled), 0.9)


def test_non_normal_matrix_with_rho_below_one_has_powers_far_above_one(x64):
    """The counterexample to book 15.5.2: W = 0.9 I + N (N nilpotent) has ρ = 0.9 but
    W^n = Σ_k C(n, k) 0.9^(n-k) N^k, whose corner entry C(n, 3) 0.9^(n-3) exceeds 1000."""
    matrix = 0.9 * jnp.eye(4) + jnp.eye(4, k=1)
    np.testing.assert_allclose(flow.spectral_radius(matrix), 0.9)
    products = flow.final_state_jacobians(matrix, jnp.zeros((40, 4)), rnn.LINEAR)
    corner = products[0, 0, 3]  # (W^40)[0, 3]
    np.testing.assert_allclose(corner, 9880 * 0.9**37, rtol=1e-12)  # C(40, 3) = 9880
    assert np.linalg.norm(products[0], 2) > 1e2 > 0.9**40


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: flow.step_jacobians(jnp.zeros((3, 3)), jnp.zeros((5, 2))), "hidden"),
        (lambda: flow.final_state_jacobians(jnp.zeros((3, 2)), jnp.zeros((5, 2))), "W_hh"),
        (lambda: flow.spectral_radius(jnp.zeros((3, 2))), "matrix"),
    ],
)
def test_bad_shapes_raise_value_errors_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()

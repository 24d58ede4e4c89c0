"""Activations and their derivatives (book 3.3, 5.5, 6.43, 10.12) against autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core import activations, numerics

pre_activations = hnp.arrays(np.float32, (8,), elements=st.floats(-20, 20, width=32))
nonzero_pre_activations = hnp.arrays(
    np.float32,
    (8,),
    elements=st.floats(-20, 20, width=32).filter(lambda z: abs(z) > 1e-6),
)
logit_vectors = hnp.arrays(np.float32, (5,), elements=st.floats(-10, 10, width=32))


def elementwise_grad(function):
    return jax.vmap(jax.grad(function))


def test_sigmoid_and_tanh_match_their_closed_forms(x64):
    z = jnp.linspace(-30.0, 30.0, 121)
    np.testing.assert_allclose(activations.sigmoid(z), 1.0 / (1.0 + np.exp(-z)), rtol=1e-14)
    tanh_closed_form = (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z))  # eq. 3.16
    np.testing.assert_allclose(activations.tanh(z), tanh_closed_form, rtol=1e-14, atol=1e-15)


@given(z=pre_activations)
def test_sigmoid_derivative_equals_jax_grad(z):
    np.testing.assert_allclose(
        activations.sigmoid_derivative(z),
        elementwise_grad(activations.sigmoid)(z),
        rtol=1e-5,
        atol=1e-7,
    )


@given(z=pre_activations)
def test_tanh_derivative_equals_jax_grad(z):
    np.testing.assert_allclose(
        activations.tanh_derivative(z),
        elementwise_grad(activations.tanh)(z),
        rtol=1e-5,
        atol=1e-6,
    )


@given(z=pre_activations)
def test_sigmoid_derivative_is_at_most_a_quarter_attained_at_zero(z):
    assert activations.sigmoid_derivative(jnp.float32(0.0)) == 0.25
    assert np.all(activations.sigmoid_derivative(z) <= 0.25)


@given(z=pre_activations)
def test_tanh_derivative_is_at_most_one_attained_at_zero(z):
    assert activations.tanh_derivative(jnp.float32(0.0)) == 1.0
    assert np.all(activations.tanh_derivative(z) <= 1.0)


def test_derivative_maxima_are_at_zero_on_a_grid():
    z = jnp.linspace(-5.0, 5.0, 1001)  # includes 0 at index 500
    assert int(jnp.argmax(activations.sigmoid_derivative(z))) == 500
    assert int(jnp.argmax(activations.tanh_derivative(z))) == 500


def test_sigmoid_gradient_is_finite_in_both_tails():
    z = jnp.array([-1000.0, 1000.0])
    np.testing.assert_array_equal(activations.sigmoid(z), [0.0, 1.0])
    np.testing.assert_array_equal(elementwise_grad(activations.sigmoid)(z), [0.0, 0.0])


@given(z=nonzero_pre_activations)
def test_relu_derivative_equals_jax_grad_away_from_zero(z):
    expected = elementwise_grad(activations.relu)(z)
    for at_zero in (0.0, 0.5, 1.0):  # the choice at 0 must not matter elsewhere
        np.testing.assert_array_equal(activations.relu_derivative(z, at_zero), expected)
    np.testing.assert_array_equal(activations.relu(z), np.maximum(z, 0.0))


@pytest.mark.parametrize("at_zero", [0.0, 0.25, 1.0])
def test_relu_derivative_at_zero_is_the_selected_subgradient(at_zero):
    assert activations.relu_derivative(jnp.float32(0.0), at_zero) == at_zero


def test_relu_derivative_default_at_zero_is_zero_as_in_eq_6_43():
    assert activations.relu_derivative(jnp.float32(0.0)) == 0.0


def test_autodiff_relu_conventions_at_zero():
    assert jax.grad(lambda z: jnp.maximum(0.0, z))(0.0) == 0.5  # ties split the gradient
    assert jax.grad(jax.nn.relu)(0.0) == 0.0
    assert jax.grad(activations.relu)(0.0) == activations.relu_derivative(0.0) == 0.0


def test_relu_derivative_rejects_a_value_outside_the_subdifferential():
    with pytest.raises(ValueError, match=r"at_zero must be a subgradient of ReLU at 0"):
        activations.relu_derivative(jnp.zeros(3), at_zero=1.5)


def test_activations_softmax_is_the_stable_numerics_softmax():
    assert activations.softmax is numerics.softmax


@given(logits=logit_vectors)
def test_softmax_jacobian_equals_jax_jacobian(logits):
    # Entries such as p(1 - p) cancel catastrophically near p = 1, so the two computations
    # differ by about one ulp of 1 in absolute terms: compare in float64.
    with jax.enable_x64(True):
        logits = jnp.asarray(logits, jnp.float64)
        np.testing.assert_allclose(
            activations.softmax_jacobian(activations.softmax(logits)),
            jax.jacobian(jax.nn.softmax)(logits),
            rtol=1e-12,
            atol=1e-15,
        )


def test_softmax_jacobian_batches_over_leading_axes():
    logits = jax.random.normal(jax.random.key(0), (2, 3, 4))
    expected = jax.vmap(jax.jacobian(jax.nn.softmax))(logits.reshape(6, 4)).reshape(2, 3, 4, 4)
    jacobians = activations.softmax_jacobian(activations.softmax(logits))
    assert jacobians.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(jacobians, expected, rtol=1e-5, atol=4e-7)  # ~4 float32 ulps


@given(logits=logit_vectors, cotangent=logit_vectors)
def test_softmax_vjp_equals_jax_vjp(logits, cotangent):
    with jax.enable_x64(True):
        logits, cotangent = jnp.asarray(logits, jnp.float64), jnp.asarray(cotangent, jnp.float64)
        probs, pullback = jax.vjp(jax.nn.softmax, logits)
        (expected,) = pullback(cotangent)
        np.testing.assert_allclose(
            activations.softmax_vjp(probs, cotangent), expected, rtol=1e-12, atol=1e-14
        )


def test_softmax_vjp_rejects_a_cotangent_of_another_shape():
    with pytest.raises(ValueError, match=r"probs_cotangent must have the same shape as probs"):
        activations.softmax_vjp(jnp.ones((2, 3)) / 3, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"probs must have shape \[\.\.\., K\] \(rank >= 1\)"):
        activations.softmax_jacobian(jnp.float32(1.0))

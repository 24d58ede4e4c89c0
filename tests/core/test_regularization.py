"""Weight penalties and dropout (book 7.2, 7.5, 8.4.1-8.4.3) against autodiff and statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core import regularization


def float_arrays(shape):
    """Entries on a 1e-3 grid in [-3, 3]: products with λ never reach the subnormal range,
    which XLA flushes to zero and numpy does not."""
    elements = st.integers(-3000, 3000).map(lambda n: float(np.float32(n / 1000)))
    return hnp.arrays(np.float32, shape, elements=elements)


weight_pairs = st.tuples(float_arrays((3, 2)), float_arrays((1, 3)))
strengths = st.sampled_from([0.0, 0.01, 0.5])


def test_squared_frobenius_norm_is_the_trace_of_a_transpose_a(x64):
    matrix = jax.random.normal(jax.random.key(0), (4, 3))
    np.testing.assert_allclose(
        regularization.squared_frobenius_norm(matrix), jnp.trace(matrix.T @ matrix), rtol=1e-14
    )


@given(weights=weight_pairs, strength=strengths)
def test_l2_penalty_gradient_is_two_lambda_w_eq_7_7(weights, strength):
    gradient = jax.grad(regularization.l2_penalty)(list(weights), strength)
    expected = regularization.l2_penalty_gradient(list(weights), strength)
    for actual, manual, weight in zip(gradient, expected, weights, strict=True):
        np.testing.assert_allclose(actual, manual, rtol=1e-6)
        np.testing.assert_allclose(actual, 2.0 * strength * weight, rtol=1e-6)


@given(weights=weight_pairs, strength=strengths)
def test_half_l2_penalty_gradient_is_lambda_w_eq_8_23(weights, strength):
    gradient = jax.grad(regularization.half_l2_penalty)(list(weights), strength)
    expected = regularization.half_l2_penalty_gradient(list(weights), strength)
    for actual, manual, weight in zip(gradient, expected, weights, strict=True):
        np.testing.assert_allclose(actual, manual, rtol=1e-6)
        np.testing.assert_allclose(actual, strength * weight, rtol=1e-6)
    np.testing.assert_allclose(
        regularization.half_l2_penalty(list(weights), strength),
        0.5 * regularization.l2_penalty(list(weights), strength),
        rtol=1e-6,
    )


def test_l1_penalty_is_lambda_times_the_sum_of_absolute_values(x64):
    weights = [jnp.array([[1.0, -2.0], [0.0, 3.0]]), jnp.array([[-0.5, 0.5]])]
    assert regularization.l1_penalty(weights, 0.1) == pytest.approx(0.1 * 7.0, rel=1e-15)


@given(weights=weight_pairs, strength=strengths)
def test_l1_subgradient_equals_jax_grad_away_from_zero(weights, strength):
    nonzero = [jnp.where(weight == 0, 1.0, weight) for weight in weights]
    gradient = jax.grad(regularization.l1_penalty)(nonzero, strength)
    for at_zero in (-1.0, 0.0, 1.0):  # the choice at 0 must not matter elsewhere
        subgradient = regularization.l1_penalty_subgradient(nonzero, strength, at_zero)
        for actual, expected in zip(subgradient, gradient, strict=True):
            np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_l1_subgradient_at_zero_is_the_selected_value_not_autodiffs():
    weights = [jnp.zeros((2, 2))]
    assert float(jax.grad(regularization.l1_penalty)(weights, 1.0)[0][0, 0]) == 1.0  # jax's choice
    for at_zero in (-1.0, 0.0, 0.25):
        subgradient = regularization.l1_penalty_subgradient(weights, 2.0, at_zero)[0]
        np.testing.assert_array_equal(subgradient, jnp.full((2, 2), 2.0 * at_zero))
    with pytest.raises(ValueError, match=r"at_zero must be a subgradient of \|w\| at 0"):
        regularization.l1_penalty_subgradient(weights, 1.0, at_zero=2.0)


def test_penalties_of_weight_leaves_leave_biases_alone():
    model = nn.Sequential([nn.Dense(3), nn.relu, nn.Dense(1)])
    params = model.init(jax.random.key(0), jnp.ones((1, 2)))

    def penalty(p):
        return regularization.l2_penalty(regularization.weight_leaves(p), 0.01)

    gradient = jax.grad(penalty)(params)
    for layer in ("layers_0", "layers_2"):
        np.testing.assert_array_equal(gradient["params"][layer]["bias"], 0.0)
        np.testing.assert_allclose(
            gradient["params"][layer]["kernel"],
            0.02 * params["params"][layer]["kernel"],
            rtol=1e-6,
        )
    kernels = [params["params"][layer]["kernel"] for layer in ("layers_0", "layers_2")]
    assert len(regularization.weight_leaves(params)) == 2
    np.testing.assert_allclose(penalty(params), regularization.l2_penalty(kernels, 0.01))


def test_weight_leaves_follow_an_explicit_mask_and_reject_a_misshaped_one():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    assert regularization.weight_leaves(params, {"w": False, "b": True})[0].shape == (2,)
    with pytest.raises(ValueError, match=r"mask must have one bool per leaf of params \(2\)"):
        regularization.weight_leaves(params, {"w": True})


def test_penalty_rejects_a_negative_strength():
    with pytest.raises(ValueError, match=r"strength must be non-negative, got -0.1"):
        regularization.l2_penalty([jnp.ones((2, 2))], -0.1)


# Dropout. Statistical tests use fixed keys (deterministic) and 5-sigma bands: a correct
# implementation would fail such a band by chance with probability < 1e-6.

DRAWS = 100_000
RATE = 0.3
ACTIVATIONS = jnp.array([0.1, -0.25, 0.4, 2.0])


def dropout_draws(function):
    keys = jax.random.split(jax.random.key(0), DRAWS)
    return jax.vmap(function)(keys)


def test_dropout_mask_is_bernoulli_with_keep_probability_one_minus_rate():
    masks = regularization.dropout_mask(jax.random.key(1), (DRAWS, 4), RATE)
    assert masks.dtype == jnp.bool_
    keep = 1.0 - RATE
    standard_error = np.sqrt(keep * RATE / DRAWS)
    np.testing.assert_array_less(np.abs(masks.mean(axis=0) - keep), 5.0 * standard_error)


def test_inverted_dropout_preserves_the_expectation_eq_8_29():
    def draw(key):
        mask = regularization.dropout_mask(key, ACTIVATIONS.shape, RATE)
        return regularization.inverted_dropout(ACTIVATIONS, mask, RATE)

    samples = dropout_draws(draw)
    keep = 1.0 - RATE
    kept_values = ACTIVATIONS / keep
    assert np.all((samples == 0.0) | np.isclose(samples, kept_values))
    # Var[ã] = a² p / q per unit, so the mean of DRAWS samples has std |a| sqrt(p / (q n)).
    standard_error = np.abs(ACTIVATIONS) * np.sqrt(RATE / (keep * DRAWS))
    np.testing.assert_array_less(np.abs(samples.mean(axis=0) - ACTIVATIONS), 5 * standard_error)


def test_non_inverted_dropout_expectation_is_the_test_time_scaling_eq_7_19():
    def draw(key):
        mask = regularization.dropout_mask(key, ACTIVATIONS.shape, RATE)
        return regularization.non_inverted_dropout(ACTIVATIONS, mask)

    samples = dropout_draws(draw)
    test_time = regularization.non_inverted_dropout_at_test(ACTIVATIONS, RATE)
    np.testing.assert_allclose(test_time, (1.0 - RATE) * ACTIVATIONS, rtol=1e-6)
    # Var[m a] = a² p q, so the mean of DRAWS samples has std |a| sqrt(p q / n).
    standard_error = np.abs(ACTIVATIONS) * np.sqrt(RATE * (1.0 - RATE) / DRAWS)
    np.testing.assert_array_less(np.abs(samples.mean(axis=0) - test_time), 5 * standard_error)


def test_dropout_layer_is_inverted_dropout_in_training_and_identity_in_eval():
    key = jax.random.key(3)
    mask = regularization.dropout_mask(key, ACTIVATIONS.shape, RATE)
    np.testing.assert_array_equal(
        regularization.dropout(key, ACTIVATIONS, RATE, train=True),
        regularization.inverted_dropout(ACTIVATIONS, mask, RATE),
    )
    assert regularization.dropout(None, ACTIVATIONS, RATE, train=False) is ACTIVATIONS
    with pytest.raises(ValueError, match=r"key must be a jax.random key when train is True"):
        regularization.dropout(None, ACTIVATIONS, RATE, train=True)


def test_dropout_matches_flax_given_the_same_mask():
    """Flax draws its mask from a derived key, so compare on flax's own drop pattern."""
    key = jax.random.key(4)
    layer = nn.Dropout(rate=RATE, deterministic=False)
    flax_output = layer.apply({}, ACTIVATIONS, rngs={"dropout": key})
    mask = flax_output != 0
    np.testing.assert_allclose(
        regularization.inverted_dropout(ACTIVATIONS, mask, RATE), flax_output, rtol=1e-6
    )


@pytest.mark.parametrize("rate", [-0.1, 1.0])
def test_dropout_rejects_a_rate_outside_zero_one(rate):
    with pytest.raises(ValueError, match=r"rate \(the drop probability p\) must be in \[0, 1\)"):
        regularization.dropout_mask(jax.random.key(0), (3,), rate)

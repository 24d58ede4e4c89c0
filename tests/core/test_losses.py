"""Losses (book ch. 4, 11.5, 16.33, 17.18) against autodiff, optax, scipy and explicit loops."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.scipy.stats import norm

from core import losses

BATCH, CLASSES = 4, 3


def float_arrays(dtype, shape, low, high):
    """Arrays with entries in [low, high], no subnormals (XLA on CPU flushes them to zero)."""
    width = np.finfo(dtype).bits
    elements = st.floats(low, high, width=width, allow_subnormal=False)
    return hnp.arrays(dtype, shape, elements=elements)


batch_vectors = float_arrays(np.float32, (BATCH, CLASSES), -5, 5)
wide_logits = float_arrays(np.float32, (BATCH, CLASSES), -50, 50)
unit_interval = float_arrays(np.float32, (BATCH, CLASSES), 0, 1)
open_unit_interval = float_arrays(np.float32, (BATCH, CLASSES), 1 / 64, 63 / 64)
class_indices = hnp.arrays(np.int32, (BATCH,), elements=st.integers(0, CLASSES - 1))


def one_hot(labels):
    return jax.nn.one_hot(labels, CLASSES)


# Regression.


@given(predictions=batch_vectors, targets=batch_vectors)
def test_sum_squared_error_gradient_is_twice_the_residual_eq_4_4(predictions, targets):
    gradient = jax.grad(lambda p: losses.sum_squared_error(p, targets).sum())(predictions)
    np.testing.assert_allclose(gradient, 2.0 * (predictions - targets), rtol=1e-6)


@given(predictions=batch_vectors, targets=batch_vectors)
def test_half_sum_squared_error_gradient_is_the_residual_and_matches_optax_l2_loss(
    predictions, targets
):
    gradient = jax.grad(lambda p: losses.half_sum_squared_error(p, targets).sum())(predictions)
    np.testing.assert_allclose(gradient, predictions - targets, rtol=1e-6)
    np.testing.assert_allclose(
        losses.half_sum_squared_error(predictions, targets),
        optax.l2_loss(predictions, targets).sum(axis=-1),
        rtol=1e-5,
        atol=1e-6,
    )


def test_mean_squared_error_sums_over_outputs_and_averages_over_samples_eq_4_3(x64):
    predictions = jnp.array([[1.0, 2.0], [0.0, -1.0], [3.0, 3.0]])
    targets = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 3.0]])
    per_sample = [1.0 + 4.0, 0.0 + 4.0, 4.0 + 0.0]  # squared residuals, by hand
    np.testing.assert_array_equal(losses.sum_squared_error(predictions, targets), per_sample)
    assert losses.mean_squared_error(predictions, targets) == pytest.approx(13.0 / 3.0, rel=1e-15)


def test_absolute_error_and_masked_mean_match_an_explicit_loop(x64):
    rng = np.random.default_rng(0)
    predictions = rng.normal(size=(2, 5, 3))
    targets = rng.normal(size=(2, 5, 3))
    valid_actions = rng.random((2, 5)) < 0.6
    valid_actions[0, 0] = True
    total, count = 0.0, 0
    for b in range(2):
        for t in range(5):
            if valid_actions[b, t]:
                for d in range(3):
                    total += abs(predictions[b, t, d] - targets[b, t, d])
                    count += 1
    errors = losses.absolute_error(predictions, targets)
    assert losses.masked_mean(errors, valid_actions) == pytest.approx(total / count, rel=1e-14)
    np.testing.assert_allclose(
        losses.masked_mean(errors, np.ones((2, 5, 3), bool)), np.mean(errors), rtol=1e-14
    )


def test_masked_mean_of_an_all_false_mask_is_zero_with_zero_gradient():
    values = jnp.ones((2, 3))
    mask = jnp.zeros((2,), bool)
    assert losses.masked_mean(values, mask) == 0.0
    np.testing.assert_array_equal(jax.grad(losses.masked_mean)(values, mask), jnp.zeros((2, 3)))


def test_masked_mean_rejects_a_mask_that_is_not_a_leading_boolean_shape():
    with pytest.raises(ValueError, match=r"mask must have the leading shape of values \[2, 3\]"):
        losses.masked_mean(jnp.ones((2, 3)), jnp.ones((3,), bool))
    with pytest.raises(ValueError, match=r"mask must be boolean, got dtype float32"):
        losses.masked_mean(jnp.ones((2, 3)), jnp.ones((2,), jnp.float32))


@given(predictions=batch_vectors, targets=batch_vectors, delta=st.sampled_from([0.5, 1.0, 2.0]))
def test_huber_loss_matches_optax(predictions, targets, delta):
    np.testing.assert_allclose(
        losses.huber_loss(predictions, targets, delta),
        optax.huber_loss(predictions, targets, delta=delta),
        rtol=1e-6,
        atol=1e-6,
    )


@given(predictions=batch_vectors, targets=batch_vectors, delta=st.sampled_from([0.5, 1.0, 2.0]))
def test_huber_derivative_equals_jax_grad_eq_4_20(predictions, targets, delta):
    gradient = jax.grad(lambda p: losses.huber_loss(p, targets, delta).sum())(predictions)
    np.testing.assert_allclose(
        losses.huber_loss_derivative(predictions, targets, delta), gradient, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        gradient, np.clip(predictions - targets, -delta, delta), rtol=1e-6, atol=1e-6
    )


def test_huber_rejects_a_non_positive_threshold():
    with pytest.raises(ValueError, match=r"delta must be positive, got 0.0"):
        losses.huber_loss(jnp.zeros(2), jnp.zeros(2), delta=0.0)


# Binary classification.


@given(probs=open_unit_interval, labels=unit_interval)
def test_bce_gradient_in_the_probability_is_eq_4_7(probs, labels):
    gradient = jax.grad(lambda p: losses.binary_cross_entropy(p, labels).sum())(probs)
    np.testing.assert_allclose(
        gradient, (probs - labels) / (probs * (1.0 - probs)), rtol=1e-4, atol=1e-5
    )


@given(logits=wide_logits, labels=unit_interval)
def test_sigmoid_bce_logit_gradient_is_prediction_minus_target_eq_4_8(logits, labels):
    gradient = jax.grad(lambda z: losses.binary_cross_entropy_with_logits(z, labels).sum())(logits)
    np.testing.assert_allclose(gradient, jax.nn.sigmoid(logits) - labels, rtol=1e-5, atol=1e-6)


@given(logits=wide_logits, labels=unit_interval)
def test_bce_with_logits_matches_optax(logits, labels):
    np.testing.assert_allclose(
        losses.binary_cross_entropy_with_logits(logits, labels),
        optax.sigmoid_binary_cross_entropy(logits, labels),
        rtol=1e-5,
        atol=1e-5,
    )


@given(logits=float_arrays(np.float64, (BATCH,), -10, 10))
def test_bce_with_logits_equals_bce_of_the_sigmoid(logits):
    with jax.enable_x64(True):
        labels = jnp.array([0.0, 1.0, 0.3, 1.0])
        np.testing.assert_allclose(
            losses.binary_cross_entropy_with_logits(logits, labels),
            losses.binary_cross_entropy(jax.nn.sigmoid(logits), labels),
            rtol=1e-9,
            atol=1e-10,  # 1 - σ(z) >= 4.5e-5 on [-10, 10]: the probability form loses 1e-12
        )


def test_bce_with_logits_is_exact_and_finite_at_logit_1000():
    logits = jnp.array([1000.0, -1000.0, 1000.0, -1000.0])
    labels = jnp.array([0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(
        losses.binary_cross_entropy_with_logits(logits, labels), [1000.0, 1000.0, 0.0, 0.0]
    )
    gradient = jax.grad(lambda z: losses.binary_cross_entropy_with_logits(z, labels).sum())(logits)
    np.testing.assert_array_equal(gradient, [1.0, -1.0, 0.0, 0.0])


def test_bce_from_probabilities_treats_zero_weighted_logs_as_zero():
    np.testing.assert_array_equal(
        losses.binary_cross_entropy(jnp.array([0.0, 1.0]), jnp.array([0.0, 1.0])), [0.0, 0.0]
    )
    assert np.isposinf(losses.binary_cross_entropy(jnp.array([0.0]), jnp.array([1.0]))[0])


# Multi-class classification.


@given(logits=wide_logits, labels=class_indices)
def test_softmax_cce_logit_gradient_is_p_minus_y_eq_4_18(logits, labels):
    targets = one_hot(labels)
    gradient = jax.grad(lambda z: losses.categorical_cross_entropy(z, targets).sum())(logits)
    np.testing.assert_allclose(gradient, jax.nn.softmax(logits) - targets, rtol=1e-5, atol=1e-6)


@given(logits=wide_logits, labels=class_indices)
def test_cce_matches_optax_for_one_hot_and_integer_labels(logits, labels):
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(
        losses.categorical_cross_entropy(logits, one_hot(labels)),
        optax.softmax_cross_entropy(logits, one_hot(labels)),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        losses.categorical_cross_entropy_integer_labels(logits, labels),
        expected,
        rtol=1e-5,
        atol=1e-5,
    )


def test_cce_is_exact_at_logit_1000():
    logits = jnp.array([[1000.0, 0.0, -1000.0]])
    np.testing.assert_array_equal(
        losses.categorical_cross_entropy(logits, jnp.array([[0.0, 1.0, 0.0]])), [1000.0]
    )
    np.testing.assert_array_equal(
        losses.categorical_cross_entropy_integer_labels(logits, jnp.array([2])), [2000.0]
    )


def test_cce_rejects_mismatched_labels():
    with pytest.raises(ValueError, match=r"labels must have the same shape as logits"):
        losses.categorical_cross_entropy(jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"labels must have shape \[4\] \(logits without"):
        losses.categorical_cross_entropy_integer_labels(jnp.zeros((4, 3)), jnp.zeros((4, 1), int))
    with pytest.raises(ValueError, match=r"labels must be integer class indices, got float32"):
        losses.categorical_cross_entropy_integer_labels(jnp.zeros((4, 3)), jnp.zeros(4))


# Gaussian likelihood and KL.


@given(
    targets=batch_vectors,
    mean=batch_vectors,
    log_std=float_arrays(np.float32, (BATCH, CLASSES), -2, 2),
)
def test_gaussian_nll_is_minus_the_sum_of_scipy_norm_logpdf(targets, mean, log_std):
    expected = -norm.logpdf(targets, loc=mean, scale=jnp.exp(log_std)).sum(axis=-1)
    np.testing.assert_allclose(
        losses.gaussian_nll(targets, mean, log_std), expected, rtol=1e-5, atol=1e-4
    )


@given(
    targets=float_arrays(np.float64, (BATCH, CLASSES), -5, 5),
    mean=float_arrays(np.float64, (BATCH, CLASSES), -5, 5),
)
def test_gaussian_nll_with_unit_sigma_is_half_squared_error_plus_constant(targets, mean):
    with jax.enable_x64(True):
        constant = 0.5 * CLASSES * np.log(2.0 * np.pi)
        np.testing.assert_allclose(
            losses.gaussian_nll(targets, mean, jnp.zeros_like(mean)),
            losses.half_sum_squared_error(mean, targets) + constant,
            rtol=1e-12,
        )


def test_kl_to_standard_normal_matches_a_monte_carlo_estimate(x64):
    mean = jnp.array([0.5, -1.0, 0.0, 2.0])
    log_var = jnp.array([0.0, -1.0, 1.0, -0.5])
    std = jnp.exp(0.5 * log_var)
    samples = mean + std * jax.random.normal(jax.random.key(0), (200_000, 4))
    log_ratio = (norm.logpdf(samples, mean, std) - norm.logpdf(samples)).sum(axis=-1)
    estimate = log_ratio.mean()
    # The estimator's standard error is std(log_ratio)/sqrt(n) (about 0.006 here); a 5-sigma
    # band fails by chance with probability < 1e-6.
    standard_error = log_ratio.std() / np.sqrt(log_ratio.size)
    assert abs(losses.kl_to_standard_normal(mean, log_var) - estimate) < 5.0 * standard_error


@given(
    mean=float_arrays(np.float64, (5,), -3, 3),
    variance=float_arrays(np.float64, (5,), 0.05, 5.0),
)
def test_kl_gradients_are_eqs_17_56_and_17_57(mean, variance):
    with jax.enable_x64(True):
        grad_mean, grad_variance = jax.grad(
            lambda m, v: losses.kl_to_standard_normal(m, jnp.log(v)), argnums=(0, 1)
        )(mean, variance)
        np.testing.assert_allclose(grad_mean, mean, rtol=1e-12)
        np.testing.assert_allclose(
            grad_variance, 0.5 * (1.0 - 1.0 / variance), rtol=1e-9, atol=1e-12
        )


def test_kl_is_zero_at_the_prior_and_batches_over_leading_axes():
    assert losses.kl_to_standard_normal(jnp.zeros(3), jnp.zeros(3)) == 0.0
    assert losses.kl_to_standard_normal(jnp.zeros((2, 5, 3)), jnp.zeros((2, 5, 3))).shape == (2, 5)


def test_losses_reject_mismatched_shapes_by_name():
    with pytest.raises(ValueError, match=r"targets must have the same shape as predictions"):
        losses.sum_squared_error(jnp.zeros((4, 3)), jnp.zeros((3,)))
    with pytest.raises(ValueError, match=r"targets must have shape \[B, K\] with B=4"):
        losses.mean_squared_error(jnp.zeros((4, 3)), jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"log_var must have the same shape as mean"):
        losses.kl_to_standard_normal(jnp.zeros((2, 8)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"log_std must have the same shape as targets"):
        losses.gaussian_nll(jnp.zeros((2, 7)), jnp.zeros((2, 7)), jnp.zeros((7,)))
    with pytest.raises(ValueError, match=r"labels must have the same shape as logits"):
        losses.binary_cross_entropy_with_logits(jnp.zeros((4, 1)), jnp.zeros((4,)))

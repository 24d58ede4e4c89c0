"""The bias-variance decomposition estimated by retraining (book 9.4.2, eq. 9.11).

The closed-form case: a fixed design X (only the noise is resampled) and ordinary least squares
on the features [1, x] of the misspecified target f*(x) = x². With H = Φ_test Φ⁺ the prediction
at the test points is H y, so E[f̂] = H f*(X), bias² = (H f*(X) − f*(x_test))², variance =
σ² ‖row of H‖², and noise σ².
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import bias_variance, least_squares

NOISE_STD = 0.5
NUM_DATASETS = 4000


def _features(inputs):
    return jnp.concatenate([jnp.ones_like(inputs), inputs], axis=1)


def _least_squares_fit_predict(key, train_inputs, train_targets, test_inputs):
    del key
    coefficients = least_squares.minimum_norm_solution(_features(train_inputs), train_targets)
    return _features(test_inputs) @ coefficients


def _square(inputs):
    return inputs[:, 0] ** 2


TRAIN_INPUTS = np.linspace(-1.0, 1.0, 8)[:, None]
TEST_INPUTS = np.linspace(-1.2, 1.2, 7)[:, None]


def closed_form():
    """Per test point: bias E f̂(x) − f*(x) and variance of the fixed-design fit: [m] each."""
    train_features = np.asarray(_features(TRAIN_INPUTS))
    hat = np.asarray(_features(TEST_INPUTS)) @ np.linalg.pinv(train_features)  # [m, n]
    bias_at_x = hat @ np.asarray(_square(TRAIN_INPUTS)) - np.asarray(_square(TEST_INPUTS))
    variance_at_x = NOISE_STD**2 * np.sum(hat**2, axis=1)
    return bias_at_x, variance_at_x


@pytest.fixture(scope="module")
def fixed_design_terms():
    with jax.enable_x64(True):
        terms = bias_variance.decompose(
            jax.random.key(0),
            lambda key: TRAIN_INPUTS,
            _square,
            _least_squares_fit_predict,
            TEST_INPUTS,
            NOISE_STD,
            NUM_DATASETS,
        )
        return jax.tree.map(np.asarray, terms)


def test_variance_matches_the_closed_form(fixed_design_terms):
    """The sample variance of D Gaussian draws has relative std √(2/(D−1)) = 2.2%; the mean
    over test points is no noisier than one point, so 10% is over four standard deviations."""
    _, variance_at_x = closed_form()
    assert fixed_design_terms.variance == pytest.approx(np.mean(variance_at_x), rel=0.1)


def test_bias_squared_matches_the_closed_form(fixed_design_terms):
    """The estimate (m − f*)² − var/D with m ~ N(E f̂, var/D) errs by about 2|bias|√(var/D)
    per point; the tolerance is five such standard deviations of the worst point."""
    bias_at_x, variance_at_x = closed_form()
    tolerance = 5 * np.max(2 * np.abs(bias_at_x) * np.sqrt(variance_at_x / NUM_DATASETS))
    assert abs(fixed_design_terms.bias_squared - np.mean(bias_at_x**2)) < tolerance
    assert fixed_design_terms.noise == NOISE_STD**2


def test_bias_squared_plus_variance_plus_noise_is_the_measured_error(fixed_design_terms):
    """Measured against fresh noisy labels, the error equals the sum up to a zero-mean Monte-Carlo
    term whose standard error the estimator reports; and it matches the closed-form total."""
    terms = fixed_design_terms
    assert terms.expected_error == pytest.approx(terms.bias_squared + terms.variance + terms.noise)
    assert abs(terms.measured_error - terms.expected_error) < 4 * terms.gap_standard_error
    bias_at_x, variance_at_x = closed_form()
    total = np.mean(bias_at_x**2) + np.mean(variance_at_x) + NOISE_STD**2
    assert terms.measured_error == pytest.approx(total, rel=0.03)


def test_several_algorithms_are_decomposed_on_the_same_datasets(x64):
    """A [K, m] fit_predict gives [K] terms, each equal to a separate run with the same key:
    here the least-squares fit and the same fit shrunk by half."""

    def fit_and_shrunk(key, train_inputs, train_targets, test_inputs):
        predictions = _least_squares_fit_predict(key, train_inputs, train_targets, test_inputs)
        return jnp.stack([predictions, 0.5 * predictions])

    def shrunk(key, train_inputs, train_targets, test_inputs):
        return 0.5 * _least_squares_fit_predict(key, train_inputs, train_targets, test_inputs)

    def sample_inputs(key):
        return jax.random.uniform(key, (8, 1), minval=-1, maxval=1)

    def decompose(fit_predict):
        return bias_variance.decompose(
            jax.random.key(3), sample_inputs, _square, fit_predict, TEST_INPUTS, NOISE_STD, 50
        )

    joint, alone = decompose(fit_and_shrunk), decompose(shrunk)
    for name in bias_variance.BiasVariance._fields:
        np.testing.assert_allclose(
            getattr(joint, name)[1], getattr(alone, name), rtol=1e-12, err_msg=name
        )


def test_bad_arguments_are_rejected_by_name():
    arguments = (lambda key: TRAIN_INPUTS, _square, _least_squares_fit_predict, TEST_INPUTS)
    with pytest.raises(ValueError, match="num_datasets"):
        bias_variance.decompose(jax.random.key(0), *arguments, NOISE_STD, 1)
    with pytest.raises(ValueError, match="noise_std"):
        bias_variance.decompose(jax.random.key(0), *arguments, -1.0, 5)
    with pytest.raises(ValueError, match="fit_predict"):
        bias_variance.decompose(
            jax.random.key(0),
            lambda key: TRAIN_INPUTS,
            _square,
            lambda key, x, y, test: jnp.zeros(3),
            TEST_INPUTS,
            NOISE_STD,
            5,
        )
    with pytest.raises(ValueError, match="sample_inputs"):
        bias_variance.decompose(
            jax.random.key(0), lambda key: jnp.ones((8, 2)), *arguments[1:], NOISE_STD, 5
        )

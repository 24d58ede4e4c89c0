"""Tests of core.gaussian_process: the posterior and the marginal likelihood against hand-written
numpy (explicit inverses, slogdet) and scikit-learn's GaussianProcessRegressor, the interpolation
law, the masking law that lets one compiled buffer serve every number of observations, and the
hyper-parameter fit against scikit-learn's L-BFGS-B fit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from core import gaussian_process as gp

# numpy float64 values: exact under the x64 fixture, rounded to float32 otherwise.
HYPERPARAMETERS = gp.GPHyperparameters(
    length_scales=np.asarray([0.4, 0.7]),
    signal_variance=np.asarray(1.3),
    noise_variance=np.asarray(0.05),
)


def _numpy_kernel(a, b, length_scales, signal_variance, kernel):
    """The kernels written out: σ_f² e^(−r²/2) and σ_f² (1 + √5 r + 5r²/3) e^(−√5 r)."""
    r = np.sqrt((((a[:, None, :] - b[None, :, :]) / length_scales) ** 2).sum(-1))
    if kernel == "rbf":
        return signal_variance * np.exp(-0.5 * r**2)
    return signal_variance * (1 + math.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-math.sqrt(5) * r)


def _sklearn_regressor(hyperparameters, kernel):
    length_scales = np.asarray(hyperparameters.length_scales, np.float64)
    correlation = RBF(length_scales) if kernel == "rbf" else Matern(length_scales, nu=2.5)
    return GaussianProcessRegressor(
        ConstantKernel(float(hyperparameters.signal_variance)) * correlation,
        alpha=float(hyperparameters.noise_variance),
        optimizer=None,
    )


def _random_data(seed, num_points=7, num_dimensions=2):
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(size=(num_points, num_dimensions))
    targets = np.sin(4 * inputs).sum(-1) + 0.1 * rng.normal(size=num_points)
    return inputs, targets


@pytest.mark.parametrize("kernel", gp.KERNELS)
def test_posterior_of_three_points_equals_the_closed_form(x64, kernel):
    # Hand computation: mean = k*ᵀ (K + σ_n² I)⁻¹ y, var = σ_f² − k*ᵀ (K + σ_n² I)⁻¹ k*.
    inputs = np.asarray([[0.0], [0.5], [1.0]])
    targets = np.asarray([1.0, -0.5, 0.25])
    queries = np.asarray([[0.25], [0.9], [2.0]])
    ell, signal, noise = 0.6, 1.5, 0.01
    hyperparameters = gp.GPHyperparameters(
        jnp.asarray([ell]), jnp.asarray(signal), jnp.asarray(noise)
    )
    noisy = _numpy_kernel(inputs, inputs, np.asarray([ell]), signal, kernel) + noise * np.eye(3)
    cross = _numpy_kernel(inputs, queries, np.asarray([ell]), signal, kernel)
    inverse = np.linalg.inv(noisy)
    expected_mean = cross.T @ inverse @ targets
    expected_variance = signal - np.einsum("nm,nk,km->m", cross, inverse, cross)

    posterior = gp.condition(jnp.asarray(inputs), jnp.asarray(targets), hyperparameters, kernel)
    mean, variance = gp.predict(posterior, jnp.asarray(queries))
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(variance, expected_variance, rtol=1e-10, atol=1e-12)
    # Far from the data (query 2.0 with ℓ = 0.6) the posterior returns towards the prior.
    assert variance[2] > 0.5 * signal


@pytest.mark.parametrize("kernel", gp.KERNELS)
def test_kernel_matrix_equals_scikit_learn(x64, kernel):
    inputs, _ = _random_data(0)
    reference = _sklearn_regressor(HYPERPARAMETERS, kernel).kernel(inputs, inputs[:4])
    ours = gp.kernel_matrix(jnp.asarray(inputs), jnp.asarray(inputs[:4]), HYPERPARAMETERS, kernel)
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


@given(seed=st.integers(0, 2**16), kernel=st.sampled_from(gp.KERNELS))
def test_posterior_and_likelihood_equal_scikit_learn(x64, seed, kernel):
    inputs, targets = _random_data(seed)
    queries = np.random.default_rng(seed + 1).uniform(size=(5, 2))
    regressor = _sklearn_regressor(HYPERPARAMETERS, kernel).fit(inputs, targets)
    expected_mean, expected_std = regressor.predict(queries, return_std=True)

    posterior = gp.condition(jnp.asarray(inputs), jnp.asarray(targets), HYPERPARAMETERS, kernel)
    mean, variance = gp.predict(posterior, jnp.asarray(queries))
    likelihood = gp.log_marginal_likelihood(
        jnp.asarray(inputs), jnp.asarray(targets), HYPERPARAMETERS, kernel
    )
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(np.sqrt(variance), expected_std, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(likelihood, regressor.log_marginal_likelihood_value_, rtol=1e-10)


@pytest.mark.parametrize("kernel", gp.KERNELS)
def test_log_marginal_likelihood_equals_direct_numpy(x64, kernel):
    # −½ yᵀ K_y⁻¹ y − ½ log det K_y − (n/2) log 2π with an explicit inverse and slogdet.
    inputs, targets = _random_data(3, num_points=6)
    noisy = _numpy_kernel(inputs, inputs, np.asarray(HYPERPARAMETERS.length_scales), 1.3, kernel)
    noisy += 0.05 * np.eye(6)
    _, log_determinant = np.linalg.slogdet(noisy)
    expected = -0.5 * targets @ np.linalg.inv(noisy) @ targets - 0.5 * log_determinant
    expected -= 3 * math.log(2 * math.pi)
    ours = gp.log_marginal_likelihood(
        jnp.asarray(inputs), jnp.asarray(targets), HYPERPARAMETERS, kernel
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


@pytest.mark.parametrize("kernel", gp.KERNELS)
def test_noise_free_posterior_interpolates_the_data(x64, kernel):
    inputs, targets = _random_data(4)
    hyperparameters = HYPERPARAMETERS._replace(noise_variance=jnp.asarray(1e-12))
    posterior = gp.condition(jnp.asarray(inputs), jnp.asarray(targets), hyperparameters, kernel)
    mean, variance = gp.predict(posterior, jnp.asarray(inputs))
    np.testing.assert_allclose(mean, targets, atol=1e-6)
    np.testing.assert_array_less(variance, 1e-6)


@pytest.mark.parametrize("kernel", gp.KERNELS)
def test_masked_rows_change_neither_posterior_nor_likelihood(kernel):
    # The fixed-capacity buffer law: padding rows (any finite values) are invisible.
    inputs, targets = _random_data(5, num_points=5)
    padded_inputs = np.concatenate([inputs, np.full((3, 2), 0.37)])
    padded_targets = np.concatenate([targets, [9.0, -4.0, 2.0]])
    mask = np.arange(8) < 5
    queries = np.random.default_rng(6).uniform(size=(4, 2))

    @jax.jit
    def posterior_and_likelihood(inputs, targets, mask):
        posterior = gp.condition(inputs, targets, HYPERPARAMETERS, kernel, mask)
        likelihood = gp.log_marginal_likelihood(inputs, targets, HYPERPARAMETERS, kernel, mask)
        return (*gp.predict(posterior, queries), likelihood)

    padded = posterior_and_likelihood(padded_inputs, padded_targets, mask)
    reference = posterior_and_likelihood(inputs, targets, np.ones(5, bool))
    for ours, expected in zip(padded, reference, strict=True):
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a float64 fit (2 × 300 Adam steps) against 9 L-BFGS-B restarts: ~5 s
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_reaches_scikit_learns_maximum_likelihood_within_the_bounds(x64):
    inputs, targets = _random_data(7, num_points=12)
    targets = (targets - targets.mean()) / targets.std()
    bounds = gp.DEFAULT_BOUNDS
    fitted = gp.fit_hyperparameters(
        jax.random.PRNGKey(0), jnp.asarray(inputs), jnp.asarray(targets), "matern52", steps=300
    )
    ours = gp.log_marginal_likelihood(jnp.asarray(inputs), jnp.asarray(targets), fitted, "matern52")

    kernel = ConstantKernel(1.0, bounds.signal_variance) * Matern(
        [0.5, 0.5], bounds.length_scale, nu=2.5
    ) + WhiteKernel(0.01, bounds.noise_variance)
    reference = GaussianProcessRegressor(kernel, n_restarts_optimizer=8, random_state=0).fit(
        inputs, targets
    )
    # Projected Adam with a fixed step ends within 0.01 nats of L-BFGS-B's maximum.
    assert float(ours) >= reference.log_marginal_likelihood_value_ - 1e-2
    for value, (low, high) in [
        (fitted.signal_variance, bounds.signal_variance),
        (fitted.noise_variance, bounds.noise_variance),
        *[(ell, bounds.length_scale) for ell in fitted.length_scales],
    ]:
        assert low * (1 - 1e-9) <= float(value) <= high * (1 + 1e-9)


def test_unknown_kernel_and_wrong_shapes_are_rejected():
    inputs, targets = _random_data(8)
    with pytest.raises(ValueError, match="kernel must be one of"):
        gp.kernel_matrix(jnp.asarray(inputs), jnp.asarray(inputs), HYPERPARAMETERS, "laplace")
    with pytest.raises(ValueError, match="targets"):
        gp.condition(jnp.asarray(inputs), jnp.asarray(targets[:-1]), HYPERPARAMETERS)
    with pytest.raises(ValueError, match="length_scales"):
        gp.condition(jnp.asarray(inputs[:, :1]), jnp.asarray(targets), HYPERPARAMETERS)
    with pytest.raises(ValueError, match=r"bounds\.noise_variance"):
        gp.fit_hyperparameters(
            jax.random.PRNGKey(0),
            jnp.asarray(inputs),
            jnp.asarray(targets),
            bounds=gp.HyperparameterBounds(noise_variance=(0.0, 1.0)),
        )

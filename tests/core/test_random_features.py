"""Random-features regression by minimum-norm least squares (book 9.5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import random_features


def test_relu_features_are_the_formula_column_by_column():
    features = random_features.init_random_features(jax.random.key(0), 3, 7, "relu")
    inputs = jax.random.normal(jax.random.key(1), (5, 3))
    weights, offsets = np.asarray(features.weights), np.asarray(features.offsets)
    expected = np.array(
        [
            [max(0.0, weights[k] @ x + offsets[k]) / np.sqrt(7) for k in range(7)]
            for x in np.asarray(inputs)
        ]
    )
    np.testing.assert_allclose(random_features.random_features(features, inputs), expected, 1e-5)


def test_fourier_features_approximate_the_gaussian_kernel():
    """φ(x)ᵀφ(x') → exp(−‖x − x'‖²/2) (Rahimi and Recht). Each of the p terms of the inner
    product is cos(Δ) + cos(Σ + 2b) over p, of variance <= 1/p per term, so with p = 20000 the
    error has a standard deviation below 0.01; 0.05 is five of them."""
    features = random_features.init_random_features(jax.random.key(0), 2, 20000, "fourier")
    inputs = jax.random.normal(jax.random.key(1), (6, 2))
    phi = random_features.random_features(features, inputs, "fourier")
    squared_distances = np.sum((inputs[:, None] - inputs[None]) ** 2, axis=-1)
    np.testing.assert_allclose(phi @ phi.T, np.exp(-squared_distances / 2), atol=0.05)


@pytest.mark.parametrize("kind", random_features.FEATURE_KINDS)
def test_overparameterized_fit_interpolates_with_coefficients_in_the_row_space(x64, kind):
    inputs = jax.random.normal(jax.random.key(2), (8, 3))
    targets = jax.random.normal(jax.random.key(3), (8,))
    features = random_features.init_random_features(jax.random.key(4), 3, 50, kind)
    model = random_features.fit_random_features(features, inputs, targets, kind)
    np.testing.assert_allclose(random_features.predict(model, inputs, kind), targets, atol=1e-9)
    design = np.asarray(random_features.random_features(features, inputs, kind))
    row_space_part = design.T @ np.linalg.lstsq(design.T, model.coefficients, rcond=None)[0]
    np.testing.assert_allclose(model.coefficients, row_space_part, atol=1e-9)


def test_underparameterized_fit_solves_the_normal_equations(x64):
    inputs = jax.random.normal(jax.random.key(5), (30, 2))
    targets = jax.random.normal(jax.random.key(6), (30,))
    features = random_features.init_random_features(jax.random.key(7), 2, 6, "relu")
    model = random_features.fit_random_features(features, inputs, targets)
    design = np.asarray(random_features.random_features(features, inputs))
    np.testing.assert_allclose(
        model.coefficients,
        np.linalg.solve(design.T @ design, design.T @ np.asarray(targets)),
        rtol=1e-8,
    )


def test_first_features_are_the_leading_rows_of_the_draw():
    features = random_features.init_random_features(jax.random.key(0), 2, 10, "fourier")
    first = random_features.first_features(features, 4)
    inputs = jnp.ones((3, 2))
    np.testing.assert_allclose(first.weights, features.weights[:4])
    # the √(2/p) scale follows the number of features actually used
    np.testing.assert_allclose(
        random_features.random_features(first, inputs, "fourier"),
        np.sqrt(10 / 4) * random_features.random_features(features, inputs, "fourier")[:, :4],
        rtol=1e-6,
    )


def test_bad_options_and_shapes_are_rejected_by_name():
    features = random_features.init_random_features(jax.random.key(0), 2, 5)
    with pytest.raises(ValueError, match="kind"):
        random_features.init_random_features(jax.random.key(0), 2, 5, "sigmoid")
    with pytest.raises(ValueError, match="num_features"):
        random_features.init_random_features(jax.random.key(0), 2, 0)
    with pytest.raises(ValueError, match="num_features"):
        random_features.first_features(features, 6)
    with pytest.raises(ValueError, match="inputs"):
        random_features.random_features(features, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="targets"):
        random_features.fit_random_features(features, jnp.ones((4, 2)), jnp.ones(3))

"""The perceptron (book ch. 2): geometry, the learning algorithm and the mistake bound."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import perceptron

SHAPES = st.sampled_from([(8, 2), (16, 3)])
SEEDS = st.integers(0, 2**32 - 1)
MAX_EPOCHS = 2000


def random_separator(rng: np.random.Generator, dim: int):
    return rng.normal(size=dim), rng.normal()


def separable_dataset(seed: int, shape, *, with_bias: bool):
    return perceptron.random_separable_dataset(jax.random.key(seed), *shape, with_bias=with_bias)


def reference_perceptron(points, labels, learning_rate, learn_bias, max_epochs):
    """Eqs. 2.10-2.12 as a plain loop over epochs and samples, with explicit w and b."""
    weights, bias, mistakes = np.zeros(points.shape[1]), 0.0, 0
    for _ in range(max_epochs):
        epoch_mistakes = 0
        for point, label in zip(points, labels, strict=True):
            if label * (weights @ point + bias) <= 0:
                weights = weights + learning_rate * label * point
                bias = bias + learning_rate * label if learn_bias else bias
                epoch_mistakes += 1
        mistakes += epoch_mistakes
        if epoch_mistakes == 0:
            break
    return weights, bias, mistakes


@given(shape=SHAPES, seed=SEEDS)
def test_signed_prediction_is_two_times_step_prediction_minus_one(shape, seed):
    rng = np.random.default_rng(seed)
    weights, bias = random_separator(rng, shape[1])
    points = rng.normal(size=shape)
    binary = perceptron.predict_binary(weights, bias, points)
    signed = perceptron.predict_signed(weights, bias, points)
    np.testing.assert_array_equal(signed, 2 * binary - 1)
    np.testing.assert_array_equal(binary, points @ weights + bias >= 0)


def test_a_point_on_the_boundary_is_predicted_positive_in_both_conventions():
    weights, bias, on_boundary = jnp.array([1.0, -1.0]), jnp.array(0.5), jnp.array([[1.5, 2.0]])
    assert float(perceptron.score(weights, bias, on_boundary)[0]) == 0.0
    assert float(perceptron.predict_binary(weights, bias, on_boundary)[0]) == 1.0  # step(0) = 1
    assert float(perceptron.predict_signed(weights, bias, on_boundary)[0]) == 1.0


@given(shape=SHAPES, seed=SEEDS, alpha=st.floats(1e-3, 1e3))
def test_positive_scaling_of_weights_and_bias_leaves_predictions_and_distances_unchanged(
    shape, seed, alpha
):
    rng = np.random.default_rng(seed)
    weights, bias = random_separator(rng, shape[1])
    points = rng.normal(size=shape)
    scaled = (alpha * weights, alpha * bias)
    np.testing.assert_allclose(  # book eq. 2.6
        perceptron.score(*scaled, points),
        alpha * perceptron.score(weights, bias, points),
        rtol=1e-5,
        atol=1e-5 * alpha,
    )
    clear = np.abs(perceptron.signed_distance(weights, bias, points)) > 1e-4
    np.testing.assert_array_equal(
        perceptron.predict_binary(*scaled, points)[clear],
        perceptron.predict_binary(weights, bias, points)[clear],
    )
    np.testing.assert_allclose(
        perceptron.signed_distance(*scaled, points),
        perceptron.signed_distance(weights, bias, points),
        rtol=1e-4,
        atol=1e-5,
    )


@given(shape=SHAPES, seed=SEEDS)
def test_signed_distance_is_projection_of_x_minus_any_boundary_point_on_unit_normal(shape, seed):
    rng = np.random.default_rng(seed)
    weights, bias = random_separator(rng, shape[1])
    points = rng.normal(size=shape)
    along_boundary = rng.normal(size=shape[1])
    along_boundary -= (along_boundary @ weights) * weights / (weights @ weights)
    boundary_point = -bias * weights / (weights @ weights) + along_boundary
    assert abs(weights @ boundary_point + bias) < 1e-9
    unit_normal = weights / np.linalg.norm(weights)
    np.testing.assert_allclose(  # book eq. 2.8
        perceptron.signed_distance(weights, bias, points),
        (points - boundary_point) @ unit_normal,
        rtol=1e-4,
        atol=1e-5,
    )


@given(shape=SHAPES, seed=SEEDS)
def test_abs_signed_distance_is_euclidean_distance_to_boundary_and_sign_gives_half_space(
    shape, seed
):
    rng = np.random.default_rng(seed)
    weights, bias = random_separator(rng, shape[1])
    points = rng.normal(size=shape)
    distance = np.asarray(perceptron.signed_distance(weights, bias, points), np.float64)
    unit_normal = weights / np.linalg.norm(weights)
    foot = points - distance[:, None] * unit_normal  # the closest point of H
    np.testing.assert_allclose(foot @ weights + bias, 0.0, atol=1e-4)
    # Every other boundary point is at least as far (Pythagoras along H).
    other = foot + rng.normal(size=shape)
    other -= ((other @ weights + bias) / (weights @ weights))[:, None] * weights  # back onto H
    assert np.all(np.linalg.norm(points - other, axis=1) >= np.abs(distance) - 1e-5)
    scores = points @ weights + bias
    np.testing.assert_array_equal(np.sign(distance), np.sign(scores))  # H+ and H-


@pytest.mark.parametrize("learn_bias", [True, False])
@given(shape=SHAPES, seed=SEEDS)
def test_jitted_training_equals_explicit_loop_of_eqs_2_10_to_2_12(learn_bias, shape, seed):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=shape)  # separable or not: both runs stop at the same epoch
    labels = np.where(rng.uniform(size=shape[0]) < 0.5, 1.0, -1.0)
    with jax.enable_x64(True):
        fit = perceptron.train(points, labels, learn_bias=learn_bias, max_epochs=50)
    weights, bias, mistakes = reference_perceptron(points, labels, 1.0, learn_bias, 50)
    np.testing.assert_allclose(fit.weights, weights, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fit.bias, bias, rtol=1e-12, atol=1e-12)
    assert int(fit.mistakes) == mistakes


@given(shape=SHAPES, seed=SEEDS, exponent=st.integers(-6, 6))
def test_mistakes_do_not_depend_on_learning_rate_and_weights_scale_with_it(shape, seed, exponent):
    _, _, points, labels = separable_dataset(seed, shape, with_bias=True)
    learning_rate = 2.0**exponent  # a power of 2 scales every iterate exactly
    base = perceptron.train(points, labels, max_epochs=MAX_EPOCHS)
    scaled = perceptron.train(points, labels, learning_rate=learning_rate, max_epochs=MAX_EPOCHS)
    assert int(scaled.mistakes) == int(base.mistakes)
    np.testing.assert_array_equal(scaled.weights, learning_rate * base.weights)
    np.testing.assert_array_equal(scaled.bias, learning_rate * base.bias)


@pytest.mark.parametrize("with_bias", [True, False])
@given(shape=SHAPES, seed=SEEDS)
def test_random_separable_dataset_keeps_every_point_gap_away_on_its_side(with_bias, shape, seed):
    weights, bias, points, labels = (
        np.asarray(a, np.float64) for a in separable_dataset(seed, shape, with_bias=with_bias)
    )
    distances = labels * (points @ weights + bias) / np.linalg.norm(weights)
    assert np.all(distances >= 0.2 - 1e-5)
    assert set(np.unique(labels)) <= {-1.0, 1.0}
    assert with_bias or bias == 0.0


@given(shape=SHAPES, seed=SEEDS)
def test_mistakes_obey_augmented_bound_on_random_separable_data_with_learned_bias(shape, seed):
    weights, bias, points, labels = separable_dataset(seed, shape, with_bias=True)
    fit = perceptron.train(points, labels, max_epochs=MAX_EPOCHS)
    assert bool(fit.converged)
    np.testing.assert_array_equal(perceptron.predict_signed(fit.weights, fit.bias, points), labels)
    bound = perceptron.augmented_mistake_bound(weights, bias, points, labels)
    assert int(fit.mistakes) <= float(bound)


@given(shape=SHAPES, seed=SEEDS)
def test_mistakes_obey_printed_bound_without_bias(shape, seed):
    weights, _, points, labels = separable_dataset(seed, shape, with_bias=False)
    fit = perceptron.train(points, labels, learn_bias=False, max_epochs=MAX_EPOCHS)
    assert bool(fit.converged)
    assert float(fit.bias) == 0.0
    bound = perceptron.printed_mistake_bound(weights, jnp.zeros([]), points, labels)
    assert int(fit.mistakes) <= float(bound)


def test_printed_bound_fails_with_learned_bias_on_two_points_far_from_origin():
    points = jnp.array([[4.0], [8.0]])
    labels = jnp.array([1.0, -1.0])
    weights, bias = jnp.array([-0.5]), jnp.array(3.0)  # y(w*x + b*) = 1 at both points: (2.13)
    np.testing.assert_allclose(labels * perceptron.score(weights, bias, points), [1.0, 1.0])
    # In 1-D no separator has a margin above half the gap, 2: so (R/γ)² <= 8²/2² = 16 for all.
    assert float(perceptron.margin(weights, bias, points, labels)) == 2.0
    assert float(perceptron.radius(points)) == 8.0
    assert float(perceptron.printed_mistake_bound(weights, bias, points, labels)) == 16.0
    fit = perceptron.train(points, labels)
    assert bool(fit.converged)
    assert int(fit.mistakes) == 53  # > 16: the printed eq. 2.15 fails
    assert reference_perceptron(np.asarray(points), np.asarray(labels), 1.0, True, 100)[2] == 53
    # The corrected bound on [x, 1]: R̃² = 65, γ̃ = 1/||(-0.5, 3)||, (R̃/γ̃)² = 65 · 9.25.
    augmented = perceptron.augmented_mistake_bound(weights, bias, points, labels)
    np.testing.assert_allclose(augmented, 65 * 9.25, rtol=1e-6)


@given(shape=SHAPES, seed=SEEDS, scale=st.floats(1.0, 10.0))
def test_margin_is_at_least_inverse_weight_norm_under_unit_functional_margin(shape, seed, scale):
    weights, bias, points, labels = separable_dataset(seed, shape, with_bias=True)
    functional = labels * perceptron.score(weights, bias, points)
    # Rescale (w*, b*) so that min_i y_i(w*ᵀx_i + b*) = scale >= 1, i.e. (2.13) holds.
    factor = scale / jnp.min(functional)
    weights, bias = factor * weights, factor * bias
    gamma = perceptron.margin(weights, bias, points, labels)
    np.testing.assert_allclose(gamma, scale / np.linalg.norm(weights), rtol=1e-5)
    assert float(gamma) >= 1 / float(np.linalg.norm(weights)) * (1 - 1e-6)


def test_integer_points_learn_float_weights_with_a_fractional_learning_rate():
    points, labels = jnp.array([[4], [8]]), jnp.array([1, -1])
    fit = perceptron.train(points, labels, learning_rate=0.5)
    reference = perceptron.train(points.astype(float), labels.astype(float))
    assert int(fit.mistakes) == int(reference.mistakes)
    np.testing.assert_array_equal(fit.weights, 0.5 * reference.weights)
    np.testing.assert_array_equal(fit.bias, 0.5 * reference.bias)


def test_xor_is_not_separable_and_training_does_not_converge():
    points = jnp.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    labels = jnp.array([-1.0, -1.0, 1.0, 1.0])
    fit = perceptron.train(points, labels, max_epochs=100)
    assert not bool(fit.converged)
    assert int(fit.epochs) == 100


def test_to_signed_labels_maps_zero_one_to_minus_one_plus_one():
    np.testing.assert_array_equal(
        perceptron.to_signed_labels(jnp.array([0, 1, 1, 0])), [-1, 1, 1, -1]
    )


def test_augment_appends_a_column_of_ones():
    np.testing.assert_array_equal(
        perceptron.augment(jnp.array([[2.0, 3.0], [4.0, 5.0]])), [[2, 3, 1], [4, 5, 1]]
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: perceptron.train(jnp.zeros((4, 2)), jnp.ones(3)), "labels must have shape"),
        (lambda: perceptron.train(jnp.zeros(4), jnp.ones(4)), "points must have shape"),
        (
            lambda: perceptron.train(jnp.zeros((4, 2)), jnp.ones(4), learning_rate=0.0),
            "learning_rate must be positive",
        ),
        (
            lambda: perceptron.train(jnp.zeros((4, 2)), jnp.ones(4), max_epochs=0),
            "max_epochs must be at least 1",
        ),
        (lambda: perceptron.score(jnp.ones(3), 0.0, jnp.zeros((4, 2))), "points must have shape"),
        (lambda: perceptron.score(jnp.ones(2), jnp.ones(2), jnp.zeros((4, 2))), "bias must"),
        (
            lambda: perceptron.margin(jnp.ones(2), 0.0, jnp.zeros((4, 2)), jnp.ones(5)),
            "labels must have shape",
        ),
    ],
)
def test_bad_shapes_and_arguments_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()

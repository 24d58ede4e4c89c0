"""Tests of the temporal-ensembling weights (book 17.60-17.62 and the original ACT convention)
against hand-computed weights and explicit weighted averages."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import temporal_ensembling as te


def test_book_weights_for_lambda_point_one_are_one_then_e_to_minus_point_one(x64):
    weights = te.temporal_ensemble_weights(100, 0.1, "book", normalize=False)
    assert float(weights[0]) == 1.0
    assert float(weights[1]) == pytest.approx(0.904837418, rel=1e-9)  # printed ≈ 0.905
    assert float(weights[99]) == pytest.approx(math.exp(-9.9), rel=1e-12)  # ≈ 5.0e-5


def test_act_weights_give_the_oldest_prediction_weight_one(x64):
    weights = te.temporal_ensemble_weights(3, 0.01, "act", normalize=False)
    # Ages 0, 1, 2 are the predictions i = 2, 1, 0 counted from the oldest.
    np.testing.assert_allclose(weights, [math.exp(-0.02), math.exp(-0.01), 1.0], rtol=1e-12)


@given(num_predictions=st.sampled_from([1, 2, 5, 100]), decay=st.floats(0.0, 1.0))
def test_convention_flip_reverses_the_order_of_the_raw_weights(num_predictions, decay):
    with jax.enable_x64(True):
        book, act = (
            np.asarray(te.temporal_ensemble_weights(num_predictions, decay, c, normalize=False))
            for c in ("book", "act")
        )
    np.testing.assert_allclose(act, book[::-1], rtol=1e-12)


@given(
    num_predictions=st.sampled_from([1, 3, 10]),
    decay=st.floats(0.0, 2.0),
    convention=st.sampled_from(te.CONVENTIONS),
)
def test_normalized_weights_are_the_raw_weights_over_their_sum(num_predictions, decay, convention):
    with jax.enable_x64(True):
        raw = np.asarray(
            te.temporal_ensemble_weights(num_predictions, decay, convention, normalize=False)
        )
        normalized = np.asarray(te.temporal_ensemble_weights(num_predictions, decay, convention))
    np.testing.assert_allclose(normalized, raw / np.sum(raw), rtol=1e-12)  # eq. 17.62
    assert float(np.sum(normalized)) == pytest.approx(1.0, rel=1e-12)


def test_normalized_act_weights_grow_with_age_as_exp_plus_m_tau(x64):
    normalized = te.temporal_ensemble_weights(4, 0.01, "act")
    growth = np.exp(0.01 * np.arange(4))
    np.testing.assert_allclose(normalized, growth / growth.sum(), rtol=1e-12)


def _explicit_average(predictions, valid, raw_weight_of_age):
    total = np.zeros(predictions.shape[1])
    norm = 0.0
    for age, (prediction, available) in enumerate(zip(predictions, valid, strict=True)):
        if available:
            total += raw_weight_of_age(age) * prediction
            norm += raw_weight_of_age(age)
    return total / norm


@given(step=st.integers(0, 8), seed=st.integers(0, 2**16))
def test_book_ensemble_equals_the_explicit_weighted_average_of_available_predictions(step, seed):
    chunk_size, decay = 5, 0.1
    predictions = np.random.default_rng(seed).normal(size=(chunk_size, 3))
    with jax.enable_x64(True):
        valid = te.available_predictions(jnp.asarray(step), chunk_size)
        action = te.ensemble(jnp.asarray(predictions), valid, decay, "book")
    expected = _explicit_average(predictions, np.asarray(valid), lambda age: math.exp(-decay * age))
    np.testing.assert_allclose(action, expected, rtol=1e-12)


@given(step=st.integers(0, 8), seed=st.integers(0, 2**16))
def test_act_ensemble_counts_i_from_the_oldest_available_prediction(step, seed):
    chunk_size, decay = 5, 0.3
    predictions = np.random.default_rng(seed).normal(size=(chunk_size, 2))
    with jax.enable_x64(True):
        valid = te.available_predictions(jnp.asarray(step), chunk_size)
        action = te.ensemble(jnp.asarray(predictions), valid, decay, "act")
    oldest_age = min(step, chunk_size - 1)
    expected = _explicit_average(
        predictions, np.asarray(valid), lambda age: math.exp(-decay * (oldest_age - age))
    )
    np.testing.assert_allclose(action, expected, rtol=1e-12)


def test_act_index_counts_older_available_predictions_when_one_is_missing(x64):
    # Ages 0, 2, 3 available: i = 2, 1, 0 counted from the oldest (age 3).
    predictions = jnp.array([[1.0], [50.0], [2.0], [4.0]])
    action = te.ensemble(predictions, jnp.array([True, False, True, True]), 0.5, "act")
    weights = np.exp(-0.5 * np.array([2.0, 1.0, 0.0]))
    expected = (weights @ np.array([1.0, 2.0, 4.0])) / weights.sum()
    np.testing.assert_allclose(action, [expected], rtol=1e-12)


@pytest.mark.parametrize("convention", te.CONVENTIONS)
def test_ensemble_of_identical_predictions_is_that_prediction(convention):
    prediction = jnp.array([0.3, -1.2, 4.0])
    predictions = jnp.tile(prediction, (6, 1))
    action = te.ensemble(predictions, jnp.ones(6, dtype=bool), 0.1, convention)
    np.testing.assert_allclose(action, prediction, rtol=1e-6)


def test_ensemble_ignores_unavailable_rows_even_if_they_hold_nan():
    predictions = jnp.array([[1.0, 2.0], [3.0, 4.0], [jnp.nan, jnp.nan]])
    action = te.ensemble(predictions, jnp.array([True, True, False]), 0.0, "book")
    np.testing.assert_allclose(action, [2.0, 3.0], rtol=1e-6)  # equal weights at λ = 0


def test_ensemble_is_jittable_over_the_step():
    predictions = jnp.arange(12.0).reshape(4, 3)

    @jax.jit
    def act_at(step):
        return te.ensemble(predictions, te.available_predictions(step, 4), 0.1, "book")

    np.testing.assert_allclose(act_at(jnp.asarray(0)), predictions[0])  # only the newest chunk


def test_action_one_is_predicted_twice_and_every_action_k_times_at_steady_state():
    # 17.7.1: k = 100, chunks at t = 0, 1, 2, ...
    assert int(jnp.sum(te.available_predictions(jnp.asarray(1), 100))) == 2
    assert int(jnp.sum(te.available_predictions(jnp.asarray(0), 100))) == 1
    assert int(jnp.sum(te.available_predictions(jnp.asarray(99), 100))) == 100
    assert int(jnp.sum(te.available_predictions(jnp.asarray(500), 100))) == 100


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: te.temporal_ensemble_weights(0, 0.1), "num_predictions"),
        (lambda: te.temporal_ensemble_weights(3, -0.1), "decay"),
        (lambda: te.temporal_ensemble_weights(3, 0.1, "newest"), "convention"),
        (lambda: te.ensemble(jnp.ones((3, 2)), jnp.ones(4, dtype=bool), 0.1), "valid"),
        (lambda: te.ensemble(jnp.ones(3), jnp.ones(3, dtype=bool), 0.1), "predictions"),
        (lambda: te.available_predictions(jnp.asarray(3), 0), "chunk_size"),
        (lambda: te.available_predictions(jnp.arange(3), 4), "step"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()

"""Tests of core.lr_finder: the run against an explicit Python loop of eq. 13.1 with SGD and the
bias-corrected moving average, the exact position of the loss minimum on a quadratic, the
divergence stop, and the reading rules on curves whose answer is known."""

import jax.numpy as jnp
import numpy as np
import pytest

from core import lr_finder, optim


def _least_squares(num_steps, seed=0):
    """A linear-regression problem: params {"w": [3]}, batches of 8 rows, one per step."""
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(num_steps, 8, 3))
    targets = inputs @ np.asarray([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=(num_steps, 8))
    return {"inputs": jnp.asarray(inputs), "targets": jnp.asarray(targets)}


def _mean_squared_error(params, batch):
    return jnp.mean(jnp.square(batch["inputs"] @ params["w"] - batch["targets"]))


def test_run_equals_an_explicit_loop_of_the_ramp_sgd_and_smoothing(x64):
    num_steps, low, high, beta = 40, 1e-4, 1.0, 0.9
    batches = _least_squares(num_steps)
    params = {"w": jnp.zeros(3)}
    curve = lr_finder.run_lr_finder(
        _mean_squared_error, params, batches, optim.sgd, low, high, smoothing=beta
    )

    w, average, losses, smoothed = np.zeros(3), 0.0, [], []
    for t in range(num_steps):
        rate = low * (high / low) ** (t / num_steps)  # book eq. 13.1
        x, y = np.asarray(batches["inputs"][t]), np.asarray(batches["targets"][t])
        residual = x @ w - y
        losses.append(np.mean(residual**2))
        average = beta * average + (1 - beta) * losses[-1]
        smoothed.append(average / (1 - beta ** (t + 1)))
        w = w - rate * 2 * x.T @ residual / len(y)
    assert int(curve.num_steps) == num_steps
    np.testing.assert_allclose(
        curve.learning_rates, low * (high / low) ** (np.arange(num_steps) / num_steps), rtol=1e-12
    )
    np.testing.assert_allclose(curve.losses, losses, rtol=1e-10)
    np.testing.assert_allclose(curve.smoothed_losses, smoothed, rtol=1e-10)


def test_raw_loss_minimum_sits_one_ramp_step_past_the_stability_limit(x64):
    # Full-batch GD on ½ a θ²: θ_{t+1} = (1 − η_t a) θ_t, so L_{t+1} < L_t exactly while
    # η_t < 2/a. With L_t paired with η_t, the minimum is at the first η_m >= 2/a: the curve
    # lags by one ramp factor r = (η_max/η_min)^(1/T), 2/a <= η_m < r · 2/a.
    curvature, num_steps, low, high = 4.0, 200, 1e-4, 10.0
    batches = {"dummy": jnp.zeros((num_steps, 1))}
    curve = lr_finder.run_lr_finder(
        lambda params, batch: 0.5 * curvature * params**2,
        jnp.asarray(1.0),
        batches,
        optim.sgd,
        low,
        high,
        smoothing=0.0,
    )
    suggestions = lr_finder.suggest_learning_rates(curve)
    ramp_factor = (high / low) ** (1 / num_steps)
    assert 2 / curvature <= float(suggestions.min_loss) < ramp_factor * 2 / curvature
    np.testing.assert_allclose(suggestions.min_loss_over_ten, suggestions.min_loss / 10)


def test_run_stops_after_the_first_step_above_four_times_the_best(x64):
    curvature, num_steps = 4.0, 200
    curve = lr_finder.run_lr_finder(
        lambda params, batch: 0.5 * curvature * params**2,
        jnp.asarray(1.0),
        {"dummy": jnp.zeros((num_steps, 1))},
        lambda rate: optim.momentum(rate, 0.9),
        1e-4,
        10.0,
    )
    steps = int(curve.num_steps)
    smoothed = np.asarray(curve.smoothed_losses)
    best_so_far = np.minimum.accumulate(smoothed[:steps])
    assert steps < num_steps
    assert smoothed[steps - 1] > 4 * best_so_far[steps - 1]
    assert np.all(smoothed[: steps - 1] <= 4 * best_so_far[: steps - 1])
    assert np.all(np.isnan(curve.losses[steps:])) and np.all(np.isnan(smoothed[steps:]))


def _curve(smoothed, num_steps=None):
    learning_rates = jnp.geomspace(1e-5, 1.0, len(smoothed))
    steps = len(smoothed) if num_steps is None else num_steps
    return lr_finder.LRFinderCurve(
        learning_rates, jnp.asarray(smoothed), jnp.asarray(smoothed), jnp.asarray(steps)
    )


def test_steepest_is_where_the_smoothed_loss_falls_fastest_before_its_minimum(x64):
    # ŝ = 1 − tanh(2(x − x0)) + 0.01 (x − x_end)², x = log η: the tanh drop is steepest at x0.
    log_rates = np.log(np.geomspace(1e-5, 1.0, 101))
    x0 = log_rates[40]
    smoothed = 1 - np.tanh(2 * (log_rates - x0)) + 0.01 * (log_rates - log_rates[-1]) ** 2
    suggestions = lr_finder.suggest_learning_rates(_curve(smoothed))
    np.testing.assert_allclose(suggestions.steepest, np.exp(x0), rtol=1e-9)
    np.testing.assert_allclose(suggestions.min_loss, np.exp(log_rates[np.argmin(smoothed)]))


def test_suggestions_read_only_the_recorded_steps_after_the_skipped_start(x64):
    # A curve that stopped after 60 of 100 steps (NaN after); the first 10% are not read.
    log_rates = np.log(np.geomspace(1e-5, 1.0, 100))
    smoothed = (log_rates - log_rates[50]) ** 2
    smoothed[60:] = np.nan
    suggestions = lr_finder.suggest_learning_rates(_curve(smoothed, num_steps=60))
    np.testing.assert_allclose(suggestions.min_loss, np.exp(log_rates[50]), rtol=1e-9)
    # The parabola falls fastest at its left end: the first step read is step 10.
    np.testing.assert_allclose(suggestions.steepest, np.exp(log_rates[10]), rtol=1e-9)
    rising = lr_finder.suggest_learning_rates(_curve(np.linspace(1.0, 2.0, 30)))
    assert (
        float(rising.steepest)
        == float(rising.min_loss)
        == pytest.approx(np.geomspace(1e-5, 1.0, 30)[3])
    )


def test_skip_start_hides_a_steep_start_up_wiggle(x64):
    # The moving average's start-up: a sharp early drop before the real descent at step 60.
    log_rates = np.log(np.geomspace(1e-5, 1.0, 100))
    smoothed = 2.0 - np.tanh(log_rates - log_rates[60]) + 0.01 * (log_rates - log_rates[-1]) ** 2
    smoothed[:5] += np.linspace(3.0, 0.0, 5)
    skipping = lr_finder.suggest_learning_rates(_curve(smoothed))
    reading_all = lr_finder.suggest_learning_rates(_curve(smoothed), skip_start=0.0)
    np.testing.assert_allclose(skipping.steepest, np.exp(log_rates[60]), rtol=1e-9)
    assert float(reading_all.steepest) < np.exp(log_rates[5])


def test_invalid_options_are_rejected_with_the_bad_value():
    batches = _least_squares(5)
    params = {"w": jnp.zeros(3)}
    with pytest.raises(ValueError, match="smoothing must be in"):
        lr_finder.run_lr_finder(_mean_squared_error, params, batches, optim.sgd, smoothing=1.0)
    with pytest.raises(ValueError, match="divergence_factor must exceed 1"):
        lr_finder.run_lr_finder(
            _mean_squared_error, params, batches, optim.sgd, divergence_factor=1.0
        )
    with pytest.raises(ValueError, match="leading axis"):
        uneven = {"inputs": batches["inputs"], "targets": batches["targets"][:3]}
        lr_finder.run_lr_finder(_mean_squared_error, params, uneven, optim.sgd)
    with pytest.raises(ValueError, match="skip_start must be in"):
        lr_finder.suggest_learning_rates(_curve(np.ones(10)), skip_start=1.0)
    with pytest.raises(ValueError, match="max_value must exceed"):
        lr_finder.run_lr_finder(_mean_squared_error, params, batches, optim.sgd, 1.0, 0.5)

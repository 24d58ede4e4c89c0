"""The bias-variance decomposition of the squared test error, estimated by retraining.

Book 9.4.2 (eq. 9.11). For data y = f*(x) + ε with E[ε] = 0, Var[ε] = σ², a learning algorithm
that maps a training set D to a predictor f̂_D has expected squared error at a test point x

  E_{D,ε}[(f̂_D(x) − y)²] = (E_D[f̂_D(x)] − f*(x))² + Var_D[f̂_D(x)] + σ²
                         =        bias²(x)        + variance(x)    + noise,

eq. 9.11 plus the noise term the book mentions in parentheses. `decompose` estimates each term
by training on `num_datasets` independently drawn training sets (inputs, noise and any
randomness of the algorithm itself, such as a random feature map) and averages over test points
drawn from the input distribution. It also measures the error directly, against fresh noisy
test labels, so the decomposition can be checked against what it decomposes.

The estimators are unbiased: Var with the 1/(D − 1) normalization, and bias² corrected by
−variance/D (the squared mean of D predictions overestimates the squared bias by Var/D). With
these, bias² + variance equals the mean over datasets of (f̂_D(x) − f*(x))² exactly, so
measured − (bias² + variance + noise) is a mean of D independent zero-mean terms
(ε² − σ² − 2(f̂_D − f*)ε, averaged over test points), whose standard error is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from core.checks import check_rank, check_shapes

FitPredict = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]
"""(key, train_inputs [n, d], train_targets [n], test_inputs [m, d]) -> [..., m] predictions:
[m] for one learning algorithm, [K, m] for K algorithms (e.g. K model sizes) trained on the
same data."""


class BiasVariance(NamedTuple):
    """The terms of eq. 9.11 averaged over test points: scalars, or [K] for K algorithms.

    bias_squared: mean_x (E_D f̂_D(x) − f*(x))² (unbiased estimate; can dip below 0 by noise).
    variance: mean_x Var_D f̂_D(x).
    noise: σ², the irreducible error.
    expected_error: bias_squared + variance + noise.
    measured_error: mean over datasets and test points of (f̂_D(x) − y)², y fresh noisy labels.
    gap_standard_error: the Monte-Carlo standard error of measured_error − expected_error.
    """

    bias_squared: jax.Array
    variance: jax.Array
    noise: jax.Array
    expected_error: jax.Array
    measured_error: jax.Array
    gap_standard_error: jax.Array


def decompose(
    key: jax.Array,
    sample_inputs: Callable[[jax.Array], jax.Array],
    target_function: Callable[[jax.Array], jax.Array],
    fit_predict: FitPredict,
    test_inputs: jax.Array,
    noise_std: float,
    num_datasets: int,
) -> BiasVariance:
    """Estimates bias², variance and noise by retraining on resampled data (book eq. 9.11).

    Each of the D training sets draws inputs with `sample_inputs`, targets
    f*(x) + σ ε with ε ~ N(0, 1), trains and predicts with `fit_predict` (given its own key),
    and is scored against fresh labels f*(x_test) + σ ε'. The D fits run as one program,
    `jax.jit(jax.vmap(...))`, so `sample_inputs`, `target_function` and `fit_predict` must be
    JAX-traceable. A `fit_predict`
    that returns [K, m] predictions of K algorithms (e.g. K model sizes) decomposes each of
    them on the same training sets, under one compilation.

    Args:
      key: a `jax.random` key.
      sample_inputs: key -> [n, d] training inputs (return a constant for a fixed design).
      target_function: f*: [k, d] inputs -> [k] noiseless targets.
      fit_predict: (key, train_inputs [n, d], train_targets [n], test_inputs [m, d]) ->
        [m] or [K, m] predictions.
      test_inputs: [m, d] test points, drawn from the input distribution.
      noise_std: σ >= 0.
      num_datasets: D >= 2.

    Returns:
      The `BiasVariance` terms, scalars or [K].
    """
    check_rank("test_inputs", test_inputs, 2)
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std!r}")
    if not (isinstance(num_datasets, int) and num_datasets >= 2):
        raise ValueError(f"num_datasets must be an int >= 2, got {num_datasets!r}")
    clean_test_targets = jnp.asarray(target_function(test_inputs))
    check_shapes(
        test_inputs=(test_inputs, ("m", None)), target_function=(clean_test_targets, ("m",))
    )

    def train_and_predict(dataset_key):
        input_key, noise_key, fit_key, test_noise_key = jax.random.split(dataset_key, 4)
        train_inputs = sample_inputs(input_key)
        clean_targets = jnp.asarray(target_function(train_inputs))
        check_shapes(
            sample_inputs=(train_inputs, ("n", test_inputs.shape[1])),
            target_function=(clean_targets, ("n",)),
        )
        noise = noise_std * jax.random.normal(noise_key, clean_targets.shape, clean_targets.dtype)
        predictions = fit_predict(fit_key, train_inputs, clean_targets + noise, test_inputs)
        check_shapes(fit_predict=(predictions, (*predictions.shape[:-1], test_inputs.shape[0])))
        test_noise = noise_std * jax.random.normal(
            test_noise_key, clean_test_targets.shape, clean_test_targets.dtype
        )
        return predictions, test_noise

    dataset_keys = jax.random.split(key, num_datasets)
    predictions, test_noise = jax.jit(jax.vmap(train_and_predict))(dataset_keys)
    # predictions: [D, ..., m]; the test labels' noise [D, m] is shared by every algorithm
    test_noise = jnp.expand_dims(test_noise, tuple(range(1, predictions.ndim - 1)))
    variance_at_x = jnp.var(predictions, axis=0, ddof=1)
    mean_prediction = jnp.mean(predictions, axis=0)
    bias_squared_at_x = (
        jnp.square(mean_prediction - clean_test_targets) - variance_at_x / num_datasets
    )
    bias_squared = jnp.mean(bias_squared_at_x, axis=-1)
    variance = jnp.mean(variance_at_x, axis=-1)
    noise = jnp.full_like(variance, noise_std**2)

    errors = predictions - clean_test_targets  # f̂_D(x) − f*(x): [D, ..., m]
    measured_per_dataset = jnp.mean(jnp.square(errors - test_noise), axis=-1)
    # measured − expected = mean over D of these independent, zero-mean terms:
    gap_per_dataset = measured_per_dataset - jnp.mean(jnp.square(errors), axis=-1) - noise
    return BiasVariance(
        bias_squared=bias_squared,
        variance=variance,
        noise=noise,
        expected_error=bias_squared + variance + noise,
        measured_error=jnp.mean(measured_per_dataset, axis=0),
        gap_standard_error=jnp.std(gap_per_dataset, axis=0, ddof=1) / jnp.sqrt(num_datasets),
    )

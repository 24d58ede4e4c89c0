"""Book 9.5: double descent of minimum-norm random-features regression.

Setup: n = 40 noisy samples y = tanh(2 xᵀβ) + 0.3 ε of a d = 5 Gaussian input; random ReLU and
random Fourier features (`core.random_features`) with p from 2 to 2048, fit by the minimum-norm
least-squares read-out c = Φ⁺y, in float64; test error on 1000 fresh inputs against the
noiseless target, over 20 draws of data and features (median and interquartile range). Within a
draw the feature maps are nested (the first p of 2048 drawn features), so the curves over p
share their randomness.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from core import random_features
from experiments.studies import common

INPUT_DIM = 5
NOISE_STD = 0.3
NUM_TEST = 1000


class Problem(NamedTuple):
    """One draw of the regression problem: inputs [n, d], noisy targets [n], test inputs
    [m, d], noiseless test targets [m]."""

    inputs: jax.Array
    targets: jax.Array
    test_inputs: jax.Array
    test_targets: jax.Array


def _draw_problem(key: jax.Array, num_samples: int) -> Problem:
    """y = f*(x) + σε with f*(x) = tanh(2 xᵀβ), x ~ N(0, I_d), β ~ N(0, I/d)."""
    direction_key, input_key, noise_key, test_key = jax.random.split(key, 4)
    direction = jax.random.normal(direction_key, (INPUT_DIM,)) / jnp.sqrt(INPUT_DIM)
    inputs = jax.random.normal(input_key, (num_samples, INPUT_DIM))
    noise = NOISE_STD * jax.random.normal(noise_key, (num_samples,))
    test_inputs = jax.random.normal(test_key, (NUM_TEST, INPUT_DIM))
    return Problem(
        inputs=inputs,
        targets=jnp.tanh(2.0 * inputs @ direction) + noise,
        test_inputs=test_inputs,
        test_targets=jnp.tanh(2.0 * test_inputs @ direction),
    )


@functools.partial(jax.jit, static_argnames=("num_features", "kind"))
def _measure(
    features: random_features.RandomFeatures, problem: Problem, num_features: int, kind: str
) -> jax.Array:
    """[test MSE, training MSE, ‖c‖] of the min-norm fit on the first p drawn features."""
    model = random_features.fit_random_features(
        random_features.first_features(features, num_features),
        problem.inputs,
        problem.targets,
        kind,
    )
    test_predictions = random_features.predict(model, problem.test_inputs, kind)
    train_predictions = random_features.predict(model, problem.inputs, kind)
    return jnp.stack(
        [
            jnp.mean(jnp.square(test_predictions - problem.test_targets)),
            jnp.mean(jnp.square(train_predictions - problem.targets)),
            jnp.linalg.norm(model.coefficients),
        ]
    )


def _feature_counts(num_samples: int, tiny: bool) -> list[int]:
    if tiny:
        return [3, num_samples, 4 * num_samples]
    near_threshold = [num_samples + offset for offset in (-4, -2, 0, 2, 4)]
    return sorted({*np.geomspace(2, 2048, 11).astype(int).tolist(), *near_threshold})


def run(tiny: bool = False) -> common.StudyResult:
    num_samples, num_draws = (10, 4) if tiny else (40, 20)
    feature_counts = _feature_counts(num_samples, tiny)
    results = {}
    with jax.enable_x64(True):
        problem_key, feature_key = jax.random.split(jax.random.key(0))
        draw_problems = jax.jit(jax.vmap(_draw_problem, in_axes=(0, None)), static_argnums=1)
        problems = draw_problems(jax.random.split(problem_key, num_draws), num_samples)
        for kind in random_features.FEATURE_KINDS:
            draw_features = jax.vmap(
                functools.partial(
                    random_features.init_random_features,
                    input_dim=INPUT_DIM,
                    num_features=max(feature_counts),
                    kind=kind,
                )
            )
            features = jax.jit(draw_features)(jax.random.split(feature_key, num_draws))
            measure = jax.vmap(_measure, in_axes=(0, 0, None, None))
            per_count = np.array(
                [measure(features, problems, p, kind) for p in feature_counts]
            )  # [len(feature_counts), num_draws, 3]
            results[kind] = {
                name: per_count[:, :, index]
                for index, name in enumerate(("test_mse", "train_mse", "coefficient_norm"))
            }

    figure = Figure(figsize=(11, 4.2))
    error_axes, norm_axes = figure.subplots(1, 2)
    for kind, color in zip(random_features.FEATURE_KINDS, ("C0", "C3"), strict=True):
        for axes, name in ((error_axes, "test_mse"), (norm_axes, "coefficient_norm")):
            low, median, high = np.percentile(results[kind][name], [25, 50, 75], axis=1)
            axes.loglog(feature_counts, median, "o-", ms=3, color=color, label=f"{kind} features")
            axes.fill_between(feature_counts, low, high, color=color, alpha=0.2)
    error_axes.axhline(NOISE_STD**2, color="gray", ls="--", lw=0.8, label="noise variance σ²")
    for axes in (error_axes, norm_axes):
        axes.axvline(num_samples, color="k", ls=":", lw=1, label=f"p = n = {num_samples}")
        axes.set_xlabel("number of random features p")
        axes.legend(fontsize=8)
    error_axes.set(
        ylabel="test MSE vs noiseless target",
        title=f"double descent, n = {num_samples} samples (median, IQR of {num_draws} draws)",
    )
    norm_axes.set(
        ylabel=r"$\|c\|$ of the min-norm read-out $c=\Phi^+y$",
        title="size of the fitted read-out",
    )

    figures = {"num_samples": num_samples, "num_draws": num_draws, "feature_counts": feature_counts}
    interpolating = [i for i, p in enumerate(feature_counts) if p >= num_samples]
    underparameterized = [i for i, p in enumerate(feature_counts) if p < num_samples]
    sentences = []
    for kind in random_features.FEATURE_KINDS:
        median_test = np.median(results[kind]["test_mse"], axis=1)
        median_norm = np.median(results[kind]["coefficient_norm"], axis=1)
        peak = int(np.argmax(median_test))
        best_under = min(underparameterized, key=lambda i: median_test[i])
        max_train_when_interpolating = float(np.max(results[kind]["train_mse"][interpolating]))
        figures[kind] = {
            "median_test_mse": median_test.tolist(),
            "median_coefficient_norm": median_norm.tolist(),
            "test_mse_peak_at_features": feature_counts[peak],
            "coefficient_norm_peak_at_features": feature_counts[int(np.argmax(median_norm))],
            "max_train_mse_when_interpolating": max_train_when_interpolating,
        }
        sentences.append(
            f"{kind} features: {median_test[best_under]:.2g} at best below n "
            f"(p = {feature_counts[best_under]}), a peak of {median_test[peak]:.2g} at "
            f"p = {feature_counts[peak]} where ‖Φ⁺y‖ peaks at p = "
            f"{figures[kind]['coefficient_norm_peak_at_features']}, then "
            f"{median_test[-1]:.2g} at p = {feature_counts[-1]}, with training MSE at most "
            f"{max_train_when_interpolating:.0e} for p >= n"
        )
    finding = f"Median test MSE with n = {num_samples} samples: " + "; ".join(sentences) + "."
    return common.StudyResult(
        claim=(
            "Test error first falls with model size, peaks near the interpolation threshold, "
            "and falls again in the overparameterized regime: double descent (9.5.3)."
        ),
        finding=finding,
        figures=figures,
        figure=figure,
    )

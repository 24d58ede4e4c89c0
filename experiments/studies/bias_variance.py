"""Book 9.4.2: the bias-variance decomposition against model capacity, by retraining.

Each capacity is scored over D = 300 independent training sets (`core.bias_variance.decompose`),
each fit by minimum-norm least squares (`core.least_squares`), in float64, on 500 test inputs
drawn from the input distribution. Two capacity axes:
(a) the degree of a Legendre-polynomial model of y = sin(πx) + 0.3 ε from n = 30 samples
x ~ U[−1, 1]: the classical U-shaped curve of 9.5.1;
(b) the number p of random ReLU features (`core.random_features`, a fresh map per training set,
of which each size uses the first p features) for y = tanh(2 xᵀβ) + 0.3 ε from n = 40 samples
x ~ N(0, I_5) (the double-descent study's problem with β fixed): across p = n the variance
explodes, the peak of 9.5.3.
The measured error, against fresh noisy labels, is overlaid on bias² + variance + noise.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from core import bias_variance, least_squares, random_features
from experiments.studies import common

NOISE_STD = 0.3
NUM_TEST = 500
POLYNOMIAL_SAMPLES, FEATURES_SAMPLES, FEATURES_INPUT_DIM = 30, 40, 5


def _sine(inputs: jax.Array) -> jax.Array:
    """f*(x) = sin(πx): [k, 1] -> [k]."""
    return jnp.sin(jnp.pi * inputs[:, 0])


def _uniform_inputs(key: jax.Array, num_samples: int) -> jax.Array:
    """x ~ U[−1, 1]: [n, 1]."""
    return jax.random.uniform(key, (num_samples, 1), minval=-1.0, maxval=1.0)


def _ridge(inputs: jax.Array) -> jax.Array:
    """f*(x) = tanh(2 xᵀβ), β ~ N(0, I/d) drawn once (fixed key): [k, d] -> [k]."""
    direction = jax.random.normal(jax.random.key(1), (FEATURES_INPUT_DIM,), inputs.dtype)
    return jnp.tanh(2.0 * inputs @ direction / jnp.sqrt(FEATURES_INPUT_DIM))


def _gaussian_inputs(key: jax.Array, num_samples: int) -> jax.Array:
    """x ~ N(0, I_d): [n, d]."""
    return jax.random.normal(key, (num_samples, FEATURES_INPUT_DIM))


def legendre_features(inputs: jax.Array, degree: int) -> jax.Array:
    """[P_0(x), ..., P_k(x)] by Bonnet's recurrence (j+1) P_{j+1} = (2j+1) x P_j − j P_{j−1}.

    Legendre polynomials are orthogonal on [−1, 1], so the least-squares problem stays well
    conditioned where the monomials 1, x, ..., x^k would not.

    Args:
      inputs: [m, 1] points in [−1, 1].
      degree: the highest degree k >= 0.

    Returns:
      [m, k + 1] features.
    """
    x = inputs[:, 0]
    columns = [jnp.ones_like(x), x]
    for j in range(1, degree):
        columns.append(((2 * j + 1) * x * columns[j] - j * columns[j - 1]) / (j + 1))
    return jnp.stack(columns[: degree + 1], axis=1)


def _fit_predict_nested(
    train_designs: list[jax.Array], test_designs: list[jax.Array], train_targets: jax.Array
) -> jax.Array:
    """Minimum-norm least-squares predictions of K models at once: [K, m].

    The K designs ([n, p_k] train, [m, p_k] test) are zero-padded to the widest and solved as
    one batch: a zero column gets zero weight in the minimum-norm solution, so each fit is
    exactly its own. One batched solve also keeps a single LAPACK call in flight, which
    sidesteps a jaxlib 0.10.2 CPU deadlock when several batched LAPACK calls run concurrently.
    """
    width = max(design.shape[1] for design in train_designs)

    def padded(designs):
        return jnp.stack([jnp.pad(d, ((0, 0), (0, width - d.shape[1]))) for d in designs])

    solve = jax.vmap(least_squares.minimum_norm_solution, in_axes=(0, None))
    coefficients = solve(padded(train_designs), train_targets)  # [K, width]
    return jnp.einsum("kmp,kp->km", padded(test_designs), coefficients)


def _polynomial_fit_predict(degrees: tuple[int, ...]) -> bias_variance.FitPredict:
    """Least squares on the Legendre features up to each degree: [len(degrees), m]."""

    def fit_predict(key, train_inputs, train_targets, test_inputs):
        del key  # the polynomial fit is deterministic given the data
        train_features = legendre_features(train_inputs, max(degrees))
        test_features = legendre_features(test_inputs, max(degrees))
        return _fit_predict_nested(
            [train_features[:, : degree + 1] for degree in degrees],
            [test_features[:, : degree + 1] for degree in degrees],
            train_targets,
        )

    return fit_predict


def _random_features_fit_predict(feature_counts: tuple[int, ...]) -> bias_variance.FitPredict:
    """Minimum-norm fits on the first p of one draw of random ReLU features, for each p in
    `feature_counts`: [len(feature_counts), m]."""

    def fit_predict(key, train_inputs, train_targets, test_inputs):
        all_features = random_features.init_random_features(
            key, train_inputs.shape[1], max(feature_counts), "relu", train_inputs.dtype
        )
        maps = [random_features.first_features(all_features, p) for p in feature_counts]
        return _fit_predict_nested(
            [random_features.random_features(m, train_inputs) for m in maps],
            [random_features.random_features(m, test_inputs) for m in maps],
            train_targets,
        )

    return fit_predict


@functools.partial(jax.jit, static_argnames=("degrees", "num_datasets"))
def _decompose_polynomials(
    key: jax.Array, degrees: tuple[int, ...], num_datasets: int
) -> bias_variance.BiasVariance:
    """The decomposition of each polynomial degree on the sine problem: terms [len(degrees)]."""
    test_key, data_key = jax.random.split(key)
    return bias_variance.decompose(
        data_key,
        functools.partial(_uniform_inputs, num_samples=POLYNOMIAL_SAMPLES),
        _sine,
        _polynomial_fit_predict(degrees),
        _uniform_inputs(test_key, NUM_TEST),
        NOISE_STD,
        num_datasets,
    )


@functools.partial(jax.jit, static_argnames=("feature_counts", "num_datasets"))
def _decompose_random_features(
    key: jax.Array, feature_counts: tuple[int, ...], num_datasets: int
) -> bias_variance.BiasVariance:
    """The decomposition of each number of random ReLU features on the ridge problem: terms
    [len(feature_counts)]."""
    test_key, data_key = jax.random.split(key)
    return bias_variance.decompose(
        data_key,
        functools.partial(_gaussian_inputs, num_samples=FEATURES_SAMPLES),
        _ridge,
        _random_features_fit_predict(feature_counts),
        _gaussian_inputs(test_key, NUM_TEST),
        NOISE_STD,
        num_datasets,
    )


def _terms_table(terms: bias_variance.BiasVariance) -> dict[str, list[float]]:
    """Each term as a list over capacities, from terms with a leading capacity axis."""
    return {name: np.asarray(values).tolist() for name, values in terms._asdict().items()}


def _plot(axes, capacities, table, xlabel, title, log_x, legend_location) -> None:
    plot = axes.loglog if log_x else axes.semilogy
    # the unbiased bias² estimate dips to <= 0 where the true bias² is ~0; a log axis omits it
    bias_squared = np.array(table["bias_squared"])
    positive_bias_squared = np.where(bias_squared > 0, bias_squared, np.nan)
    plot(capacities, positive_bias_squared, "s-", ms=3, label="bias² (omitted where <= 0)")
    plot(capacities, table["variance"], "^-", ms=3, label="variance")
    plot(capacities, table["noise"], ":", color="gray", label="noise σ²")
    plot(capacities, table["expected_error"], "-", color="k", lw=2, label="bias² + var + noise")
    axes.errorbar(
        capacities,
        table["measured_error"],
        yerr=2 * np.array(table["gap_standard_error"]),
        fmt="o",
        mfc="none",
        color="C3",
        label="measured test MSE (±2 s.e. of the gap)",
    )
    axes.set(xlabel=xlabel, ylabel="squared error (mean over test x)", title=title)
    axes.legend(fontsize=8, loc=legend_location)


def run(tiny: bool = False) -> common.StudyResult:
    num_datasets = 40 if tiny else 300
    degrees = (0, 3, 6) if tiny else tuple(range(9))
    feature_counts = (8, 40, 120) if tiny else (5, 10, 20, 30, 36, 44, 50, 80, 200)
    key = jax.random.key(0)
    with jax.enable_x64(True):
        polynomial = _terms_table(_decompose_polynomials(key, degrees, num_datasets))
        features = _terms_table(_decompose_random_features(key, feature_counts, num_datasets))

    figure = Figure(figsize=(12.5, 4.6))
    polynomial_axes, features_axes = figure.subplots(1, 2)
    _plot(
        polynomial_axes,
        degrees,
        polynomial,
        "polynomial degree k",
        f"(a) sin(πx), Legendre polynomials, n = {POLYNOMIAL_SAMPLES}, D = {num_datasets}",
        log_x=False,
        legend_location="lower left",
    )
    _plot(
        features_axes,
        feature_counts,
        features,
        "number of random ReLU features p",
        f"(b) tanh(2xᵀβ) in 5-D, random features, n = {FEATURES_SAMPLES}, D = {num_datasets}",
        log_x=True,
        legend_location="upper left",
    )
    features_axes.axvline(FEATURES_SAMPLES, color="k", ls=":", lw=1)

    measured = np.array(polynomial["measured_error"] + features["measured_error"])
    expected = np.array(polynomial["expected_error"] + features["expected_error"])
    standard_errors = np.array(polynomial["gap_standard_error"] + features["gap_standard_error"])
    gaps_in_standard_errors = np.abs(measured - expected) / standard_errors
    relative_gaps = np.abs(measured - expected) / measured
    best_degree = degrees[int(np.argmin(polynomial["expected_error"]))]
    peak_features = feature_counts[int(np.argmax(features["variance"]))]
    finding = (
        f"(a) Over polynomial degree 0-{degrees[-1]} the bias² goes from "
        f"{polynomial['bias_squared'][0]:.2f} to {polynomial['bias_squared'][-1]:.1e} and the "
        f"variance from {polynomial['variance'][0]:.3f} to {polynomial['variance'][-1]:.2f}; "
        f"the total is smallest at degree {best_degree}. (b) Over random features the variance "
        f"peaks at p = {peak_features} (n = {FEATURES_SAMPLES}), at "
        f"{max(features['variance']):.2g} against a bias² of at most "
        f"{max(features['bias_squared']):.2g}: the double-descent peak is a variance peak. In "
        f"all {len(measured)} settings bias² + variance + noise matches the measured test MSE "
        f"within {gaps_in_standard_errors.max():.1f} Monte-Carlo standard errors (at most "
        f"{100 * relative_gaps.max():.2f}% of it)."
    )
    return common.StudyResult(
        claim=(
            "The expected squared error splits into bias² + variance (+ noise); more capacity "
            "lowers bias and raises variance (9.4.2, eq. 9.11)."
        ),
        finding=finding,
        figures={
            "num_datasets": num_datasets,
            "noise_std": NOISE_STD,
            "polynomial_degrees": list(degrees),
            "polynomial": polynomial,
            "random_feature_counts": list(feature_counts),
            "random_features": features,
            "max_gap_in_standard_errors": float(gaps_in_standard_errors.max()),
            "max_relative_gap": float(relative_gaps.max()),
        },
        figure=figure,
    )

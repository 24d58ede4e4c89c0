"""Gaussian-process regression, the surrogate model of Bayesian optimization (book 13.3.3).

Book eq. 13.10 models the validation loss as f(h) ~ GP(μ(h), k(h, h')); the book stops there.
This module is the standard machinery behind that line (Rasmussen and Williams, Gaussian
Processes for Machine Learning, 2006, ch. 2 and 5):

- kernels k(h, h') with one length scale per input dimension (ARD): the squared exponential
  ("rbf") σ_f² exp(−r²/2) and the Matérn-5/2 σ_f² (1 + √5 r + 5r²/3) exp(−√5 r), where
  r² = Σ_d (h_d − h'_d)² / ℓ_d²; the prior mean μ is 0 (targets are standardized by the caller);
- observations y = f(h) + ε with ε ~ N(0, σ_n²): K_y = K + σ_n² I = L Lᵀ (Cholesky);
- the posterior at queries H*: mean k*ᵀ K_y⁻¹ y, variance k(h*, h*) − k*ᵀ K_y⁻¹ k* (of the latent
  f, without the noise);
- the log marginal likelihood log p(y | H) = −½ yᵀ K_y⁻¹ y − ½ log det K_y − (n/2) log 2π, whose
  maximum over (ℓ, σ_f², σ_n²) fits the hyper-parameters (type-II maximum likelihood).

Fixed shapes under `jit`. A search adds one observation per trial; recompiling for every count
would cost more than the fit. Every function therefore takes an optional `mask` [N] of valid
rows: masked rows become independent unit-variance points with target 0 (K_y gets the identity
there and no cross-covariance), which changes neither the posterior nor the likelihood of the
valid rows, so a buffer of capacity N serves every count.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from core import optim
from core.checks import check_shapes

KERNELS = ("matern52", "rbf")


class GPHyperparameters(NamedTuple):
    """The kernel and noise hyper-parameters, all positive.

    length_scales: [D] ℓ_d, one per input dimension.
    signal_variance: [] σ_f², the prior variance k(h, h) of f.
    noise_variance: [] σ_n², the variance of the observation noise.
    """

    length_scales: jax.Array
    signal_variance: jax.Array
    noise_variance: jax.Array


class HyperparameterBounds(NamedTuple):
    """Boxes (low, high) for the fit, sized for inputs in [0, 1]^D and standardized targets.

    Length scales below ~0.03 of the box would let the model memorize every point as its own
    bump, above ~3 it is almost linear over the box; a noise floor of 1e-4 (a noise standard
    deviation of 1% of the data's) keeps the Cholesky factor well conditioned in float32.
    """

    length_scale: tuple[float, float] = (0.03, 3.0)
    signal_variance: tuple[float, float] = (0.05, 20.0)
    noise_variance: tuple[float, float] = (1e-4, 1.0)


DEFAULT_BOUNDS = HyperparameterBounds()


@flax.struct.dataclass
class GPPosterior:
    """A GP conditioned on observations: what `predict` needs, computed once.

    inputs: [N, D] observed inputs H.
    cholesky: [N, N] L with L Lᵀ = K_y (masked rows: identity).
    weights: [N] α = K_y⁻¹ y (zero on masked rows).
    mask: [N] bool, the valid rows.
    hyperparameters: the kernel and noise hyper-parameters.
    kernel: "matern52" or "rbf" (static).
    """

    inputs: jax.Array
    cholesky: jax.Array
    weights: jax.Array
    mask: jax.Array
    hyperparameters: GPHyperparameters
    kernel: str = flax.struct.field(pytree_node=False)


def check_kernel(kernel: str) -> None:
    """Raises ValueError unless `kernel` names a kernel of this module."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")


def _squared_scaled_distances(
    inputs_a: jax.Array, inputs_b: jax.Array, length_scales: jax.Array
) -> jax.Array:
    """r²_ij = Σ_d (a_id − b_jd)² / ℓ_d², [N, D] × [M, D] -> [N, M]."""
    differences = (inputs_a[:, None, :] - inputs_b[None, :, :]) / length_scales
    return jnp.sum(jnp.square(differences), axis=-1)


def _safe_sqrt(squared: jax.Array) -> jax.Array:
    """sqrt with a zero (not infinite) derivative at 0, where r = 0 on the diagonal."""
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def kernel_matrix(
    inputs_a: jax.Array,
    inputs_b: jax.Array,
    hyperparameters: GPHyperparameters,
    kernel: str = "matern52",
) -> jax.Array:
    """The covariance matrix K_ij = k(a_i, b_j) of eq. 13.10's kernel.

    Args:
      inputs_a: [N, D]; inputs_b: [M, D].
      hyperparameters: ℓ [D] and σ_f² are used (σ_n² is not: this is the noise-free k).
      kernel: "matern52" for σ_f² (1 + √5 r + 5r²/3) e^(−√5 r), "rbf" for σ_f² e^(−r²/2).

    Returns:
      [N, M] covariances.
    """
    check_kernel(kernel)
    check_shapes(
        inputs_a=(inputs_a, (None, "D")),
        inputs_b=(inputs_b, (None, "D")),
        length_scales=(hyperparameters.length_scales, ("D",)),
    )
    squared = _squared_scaled_distances(inputs_a, inputs_b, hyperparameters.length_scales)
    if kernel == "rbf":
        correlation = jnp.exp(-0.5 * squared)
    else:
        scaled = math.sqrt(5.0) * _safe_sqrt(squared)
        correlation = (1.0 + scaled + jnp.square(scaled) / 3.0) * jnp.exp(-scaled)
    return hyperparameters.signal_variance * correlation


def _valid_mask(mask: jax.Array | None, num_points: int) -> jax.Array:
    return jnp.ones(num_points, bool) if mask is None else jnp.asarray(mask, bool)


def _check_observations(inputs, targets, mask, hyperparameters) -> None:
    named = {
        "inputs": (inputs, ("N", "D")),
        "targets": (targets, ("N",)),
        "length_scales": (hyperparameters.length_scales, ("D",)),
    }
    if mask is not None:
        named["mask"] = (mask, ("N",))
    check_shapes(**named)


def _masked_noisy_covariance(inputs, mask, hyperparameters, kernel) -> jax.Array:
    """K_y = K + σ_n² I on valid rows and columns, the identity on masked ones."""
    num_points = inputs.shape[0]
    covariance = kernel_matrix(inputs, inputs, hyperparameters, kernel)
    covariance = covariance + hyperparameters.noise_variance * jnp.eye(num_points)
    pair_mask = mask[:, None] & mask[None, :]
    return jnp.where(pair_mask, covariance, jnp.eye(num_points, dtype=covariance.dtype))


def condition(
    inputs: jax.Array,
    targets: jax.Array,
    hyperparameters: GPHyperparameters,
    kernel: str = "matern52",
    mask: jax.Array | None = None,
) -> GPPosterior:
    """Conditions the zero-mean GP on observations: K_y = L Lᵀ, α = K_y⁻¹ y (R&W alg. 2.1).

    Args:
      inputs: [N, D] observed inputs H.
      targets: [N] observed y (standardized: the prior mean is 0).
      hyperparameters: ℓ [D], σ_f², σ_n².
      kernel: "matern52" or "rbf".
      mask: optional [N] bool, the valid rows (default all).

    Returns:
      The `GPPosterior` to pass to `predict`.
    """
    check_kernel(kernel)
    _check_observations(inputs, targets, mask, hyperparameters)
    valid = _valid_mask(mask, inputs.shape[0])
    cholesky = jnp.linalg.cholesky(_masked_noisy_covariance(inputs, valid, hyperparameters, kernel))
    masked_targets = jnp.where(valid, targets, 0.0)
    weights = jax.scipy.linalg.cho_solve((cholesky, True), masked_targets)
    return GPPosterior(inputs, cholesky, weights, valid, hyperparameters, kernel)


def predict(posterior: GPPosterior, queries: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The posterior of the latent f at the queries (R&W eqs. 2.25-2.26).

    mean = k*ᵀ α and variance = k(h*, h*) − vᵀv with v = L⁻¹ k*; the variance is clipped at 0
    against rounding and excludes the observation noise σ_n².

    Args:
      posterior: from `condition`.
      queries: [M, D] inputs h*.

    Returns:
      (mean [M], variance [M]).
    """
    check_shapes(
        inputs=(posterior.inputs, ("N", "D")),
        queries=(queries, ("M", "D")),
    )
    cross = kernel_matrix(posterior.inputs, queries, posterior.hyperparameters, posterior.kernel)
    cross = jnp.where(posterior.mask[:, None], cross, 0.0)  # k*: [N, M]
    mean = cross.T @ posterior.weights
    solved = jax.scipy.linalg.solve_triangular(posterior.cholesky, cross, lower=True)
    prior_variance = posterior.hyperparameters.signal_variance  # k(h, h) = σ_f² for both kernels
    variance = jnp.maximum(prior_variance - jnp.sum(jnp.square(solved), axis=0), 0.0)
    return mean, variance


def log_marginal_likelihood(
    inputs: jax.Array,
    targets: jax.Array,
    hyperparameters: GPHyperparameters,
    kernel: str = "matern52",
    mask: jax.Array | None = None,
) -> jax.Array:
    """log p(y | H) = −½ yᵀ α − Σ_i log L_ii − (n/2) log 2π (R&W eq. 2.30, alg. 2.1).

    n counts the valid rows only; masked rows contribute log 1 = 0 and no data term.

    Args:
      inputs: [N, D]; targets: [N]; hyperparameters: ℓ [D], σ_f², σ_n²; kernel: as `condition`.
      mask: optional [N] bool, the valid rows (default all).

    Returns:
      [] the log marginal likelihood.
    """
    posterior = condition(inputs, targets, hyperparameters, kernel, mask)
    masked_targets = jnp.where(posterior.mask, targets, 0.0)
    data_fit = -0.5 * jnp.dot(masked_targets, posterior.weights)
    log_determinant = jnp.sum(jnp.log(jnp.diagonal(posterior.cholesky)))  # ½ log det K_y
    num_valid = jnp.sum(posterior.mask)
    return data_fit - log_determinant - 0.5 * num_valid * math.log(2.0 * math.pi)


def _log_box(bounds: HyperparameterBounds, num_dimensions: int) -> tuple[jax.Array, jax.Array]:
    """The fit's box in log space, as flat vectors [D + 2] (log ℓ, log σ_f², log σ_n²)."""
    lows = [bounds.length_scale[0]] * num_dimensions
    highs = [bounds.length_scale[1]] * num_dimensions
    lows += [bounds.signal_variance[0], bounds.noise_variance[0]]
    highs += [bounds.signal_variance[1], bounds.noise_variance[1]]
    return jnp.log(jnp.asarray(lows)), jnp.log(jnp.asarray(highs))


def _from_log(log_hyperparameters: jax.Array) -> GPHyperparameters:
    """[D + 2] (log ℓ, log σ_f², log σ_n²) -> positive hyper-parameters."""
    positive = jnp.exp(log_hyperparameters)
    return GPHyperparameters(positive[:-2], positive[-2], positive[-1])


def _check_bounds(bounds: HyperparameterBounds) -> None:
    for name, (low, high) in bounds._asdict().items():
        if not 0 < low < high:
            raise ValueError(f"bounds.{name} must satisfy 0 < low < high, got {(low, high)}")


@functools.partial(
    jax.jit,
    static_argnames=("kernel", "bounds", "screened", "restarts", "steps", "learning_rate"),
)
def _fit(key, inputs, targets, mask, kernel, bounds, screened, restarts, steps, learning_rate):
    log_low, log_high = _log_box(bounds, inputs.shape[1])
    optimizer = optim.adam(learning_rate)

    def likelihood(log_hyperparameters):
        hyperparameters = _from_log(log_hyperparameters)
        value = log_marginal_likelihood(inputs, targets, hyperparameters, kernel, mask)
        return jnp.where(jnp.isfinite(value), value, -jnp.inf)

    def ascend(start):
        def step(carry, _):
            log_hyperparameters, optimizer_state = carry
            ascent = jax.grad(lambda p: -likelihood(p))(log_hyperparameters)
            updates, optimizer_state = optimizer.update(ascent, optimizer_state)
            log_hyperparameters = optax.apply_updates(log_hyperparameters, updates)
            return (jnp.clip(log_hyperparameters, log_low, log_high), optimizer_state), None

        (final, _), _ = jax.lax.scan(step, (start, optimizer.init(start)), length=steps)
        return final, likelihood(final)

    candidates = jax.random.uniform(key, (screened, log_low.size), minval=log_low, maxval=log_high)
    starts = candidates[jnp.argsort(-jax.vmap(likelihood)(candidates))[:restarts]]
    finals, likelihoods = jax.vmap(ascend)(starts)
    return _from_log(finals[jnp.argmax(likelihoods)])


def fit_hyperparameters(
    key: jax.Array,
    inputs: jax.Array,
    targets: jax.Array,
    kernel: str = "matern52",
    mask: jax.Array | None = None,
    bounds: HyperparameterBounds = DEFAULT_BOUNDS,
    screened: int = 32,
    restarts: int = 2,
    steps: int = 100,
    learning_rate: float = 0.05,
) -> GPHyperparameters:
    """Maximizes the log marginal likelihood over (ℓ, σ_f², σ_n²) in a box (type-II ML).

    The likelihood has several local maxima (e.g. "all noise" against "short length scales").
    `screened` points drawn uniformly in the log box are scored in one batched evaluation, and
    projected Adam on the log hyper-parameters (log makes them positive and the steps
    relative) runs `steps` steps from the best `restarts` of them; the best end point wins.
    Screening is cheap (one batched Cholesky) where every Adam step is a sequential one, so
    it buys good starts for few restarts. Jitted: a fixed N (use `mask`) compiles once.

    Args:
      key: a `jax.random` key for the screened starts.
      inputs: [N, D] observed inputs, ideally scaled to [0, 1]^D (see `HyperparameterBounds`).
      targets: [N] observed values, ideally standardized.
      kernel: "matern52" or "rbf".
      mask: optional [N] bool, the valid rows (default all).
      bounds: the box for ℓ, σ_f², σ_n².
      screened, restarts, steps: random starts scored, best starts optimized (restarts <=
        screened), Adam steps per start; all positive.
      learning_rate: Adam's step size in log units.

    Returns:
      The hyper-parameters of the best restart.
    """
    check_kernel(kernel)
    _check_bounds(bounds)
    if not 1 <= restarts <= screened or steps < 1:
        raise ValueError(
            "need 1 <= restarts <= screened and steps >= 1, got "
            f"restarts={restarts}, screened={screened}, steps={steps}"
        )
    hyperparameter_shapes = GPHyperparameters(jnp.ones(jnp.shape(inputs)[-1]), 1.0, 1.0)
    _check_observations(inputs, targets, mask, hyperparameter_shapes)
    valid = _valid_mask(mask, inputs.shape[0])
    return _fit(
        key, inputs, targets, valid, kernel, bounds, screened, restarts, steps, learning_rate
    )

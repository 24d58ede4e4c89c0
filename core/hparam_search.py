"""Hyper-parameter search: grid search, random search and Bayesian optimization (book 13.3).

Grid search evaluates the product of per-dimension value lists (eq. 13.8), random search draws
trials from a prior over the box (eq. 13.9), and Bayesian optimization (13.3.3, eq. 13.10) fits a
Gaussian process (`core.gaussian_process`) to the trials so far and runs next where the Expected
Improvement is largest.

All three share one loop, `minimize(objective, space, budget, key, method)`, and one
representation: a trial is a point u in the unit cube [0, 1]^D, mapped to hyper-parameter values
per dimension, linearly or log-uniformly (`Dimension.log_scale`, for learning rates and weight
decays that matter by orders of magnitude). A log-scaled grid is geometric and random search on
a log dimension draws log-uniformly, so the three methods see the same geometry and differ only
in where they put their trials. Bayesian optimization starts from the same random points as
random search with the same key, so their curves part only where the model starts choosing.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from core import gaussian_process, optim
from core.checks import check_shapes

METHODS = ("grid", "random", "bayesian")


class Dimension(NamedTuple):
    """One hyper-parameter: its name and range [low, high], uniform or log-uniform."""

    name: str
    low: float
    high: float
    log_scale: bool = False


SearchSpace = Sequence[Dimension]


class BayesianConfig(NamedTuple):
    """Settings of Bayesian optimization (13.3.3).

    initial_trials: random trials before the first model-based one (the GP needs data); 10
      is scikit-optimize's default. With fewer, more of the early model-based trials go to the
      corners of the box, where a GP fitted to few points has its largest variance.
    log_losses: model log(loss) instead of the loss (losses must then be positive). Validation
      losses span orders of magnitude between diverged and good runs; on the raw scale the
      GP spends its variance on the diverged ones and cannot tell the good ones apart.
    kernel: the GP kernel, "matern52" (the usual choice for hyper-parameter surfaces, which
      are not infinitely smooth) or "rbf".
    num_candidates: uniform random candidates at which EI is evaluated each trial.
    num_local_candidates: candidates drawn around the best trial so far (N(best, 0.05²) per
      unit-cube coordinate), so that small improvements near the incumbent are found.
    num_refined: best candidates refined by gradient ascent on EI.
    refine_steps: Adam steps of that refinement, with step size `refine_learning_rate`.
    xi: the EI margin ξ (in standard deviations of the observed losses).
    fit_restarts, fit_steps, fit_learning_rate: of the marginal-likelihood fit.

    A proposal costs about fit_steps + refine_steps sequential steps of small linear algebra
    (N×N Cholesky factors), which on a CPU are bound by dispatch, not arithmetic: the defaults
    keep a proposal at tens of milliseconds for N ~ 40.
    """

    initial_trials: int = 10
    log_losses: bool = False
    kernel: str = "matern52"
    num_candidates: int = 2048
    num_local_candidates: int = 256
    num_refined: int = 8
    refine_steps: int = 15
    refine_learning_rate: float = 0.02
    xi: float = 0.01
    fit_restarts: int = 2
    fit_steps: int = 50
    fit_learning_rate: float = 0.1


DEFAULT_CONFIG = BayesianConfig()


class SearchResult(NamedTuple):
    """The trials of one search, in the order they were run.

    unit_points: [T, D] each trial as a point of [0, 1]^D.
    values: [T, D] the hyper-parameter values of each trial (columns in `space` order).
    losses: [T] the objective of each trial.
    best_so_far: [T] min(losses[:t + 1]), the curve a search is judged by.
    """

    unit_points: np.ndarray
    values: np.ndarray
    losses: np.ndarray
    best_so_far: np.ndarray

    def best_values(self, space: SearchSpace) -> dict[str, float]:
        """The hyper-parameters of the best trial, by name."""
        best = int(np.argmin(self.losses))
        return {dim.name: float(v) for dim, v in zip(space, self.values[best], strict=True)}


def check_space(space: SearchSpace) -> None:
    """Raises ValueError for an empty space, repeated names or a bad range."""
    if len(space) == 0:
        raise ValueError("space must hold at least one Dimension")
    names = [dim.name for dim in space]
    if len(set(names)) != len(names):
        raise ValueError(f"space has repeated dimension names: {names}")
    for dim in space:
        if not dim.low < dim.high:
            raise ValueError(f"dimension {dim.name!r} needs low < high, got {dim.low}, {dim.high}")
        if dim.log_scale and not dim.low > 0:
            raise ValueError(f"log-scaled dimension {dim.name!r} needs low > 0, got {dim.low}")


def to_values(space: SearchSpace, unit_points: jax.Array) -> jax.Array:
    """Maps unit-cube points to hyper-parameter values, per dimension.

    Linear: low + u (high − low). Log-scaled: low^(1 − u) high^u, so log v is uniform when u is.

    Args:
      space: D dimensions.
      unit_points: [..., D] points of [0, 1]^D.

    Returns:
      [..., D] values.
    """
    check_space(space)
    check_shapes(unit_points=(unit_points, (*([None] * (np.ndim(unit_points) - 1)), len(space))))
    columns = []
    for index, dim in enumerate(space):
        unit = unit_points[..., index]
        if dim.log_scale:
            columns.append(jnp.exp((1.0 - unit) * math.log(dim.low) + unit * math.log(dim.high)))
        else:
            columns.append((1.0 - unit) * dim.low + unit * dim.high)
    return jnp.stack(columns, axis=-1)


def grid_unit_points(num_dimensions: int, points_per_dimension: int) -> jax.Array:
    """The grid of eq. 13.8 in the unit cube: every combination of n evenly spaced levels.

    Levels are linspace(0, 1, n), the ends of each range included, as a hand-written grid
    (e.g. η ∈ {1e-4, 1e-3, 1e-2, 1e-1}) would be; the first dimension varies slowest.

    Args:
      num_dimensions: D > 0.
      points_per_dimension: n > 0 (n = 1 gives the centre).

    Returns:
      [n^D, D] grid points.
    """
    if num_dimensions < 1 or points_per_dimension < 1:
        raise ValueError(
            f"num_dimensions and points_per_dimension must be positive, got {num_dimensions} "
            f"and {points_per_dimension}"
        )
    levels = [0.5] if points_per_dimension == 1 else np.linspace(0, 1, points_per_dimension)
    return jnp.asarray(list(itertools.product(levels, repeat=num_dimensions)))


def grid_size_within(budget: int, num_dimensions: int) -> int:
    """The largest n with n^D <= budget: the points per dimension a grid of that budget affords."""
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    points = 1
    while (points + 1) ** num_dimensions <= budget:
        points += 1
    return points


def random_unit_points(key: jax.Array, num_points: int, num_dimensions: int) -> jax.Array:
    """Independent uniform draws from [0, 1]^D: eq. 13.9 with a (log-)uniform prior per axis.

    Returns:
      [num_points, D].
    """
    return jax.random.uniform(key, (num_points, num_dimensions))


def expected_improvement(
    mean: jax.Array, variance: jax.Array, best: jax.Array, xi: float = 0.0
) -> jax.Array:
    """EI(h) = E[max(f* − ξ − f(h), 0)] for f(h) ~ N(μ, σ²), minimization (13.3.3).

    Closed form: with z = (f* − ξ − μ) / σ, EI = (f* − ξ − μ) Φ(z) + σ φ(z); where σ = 0 it is
    max(f* − ξ − μ, 0), the limit σ → 0. Never negative.

    Args:
      mean: [M] posterior means μ; variance: [M] posterior variances σ² >= 0.
      best: [] f*, the best (lowest) loss observed.
      xi: ξ >= 0, the margin an improvement must exceed (more exploration when larger).

    Returns:
      [M] expected improvements.
    """
    check_shapes(mean=(mean, ("M",)), variance=(variance, ("M",)), best=(best, ()))
    improvement = best - xi - mean
    has_spread = variance > 0
    std = jnp.sqrt(jnp.where(has_spread, variance, 1.0))
    z = improvement / std
    expected = improvement * jax.scipy.stats.norm.cdf(z) + std * jax.scipy.stats.norm.pdf(z)
    return jnp.where(has_spread, jnp.maximum(expected, 0.0), jnp.maximum(improvement, 0.0))


def _standardize(losses: jax.Array, mask: jax.Array) -> jax.Array:
    """(y − mean) / std over the valid entries (the GP's prior mean 0 and variance ~1)."""
    count = jnp.sum(mask)
    mean = jnp.sum(jnp.where(mask, losses, 0.0)) / count
    variance = jnp.sum(jnp.where(mask, jnp.square(losses - mean), 0.0)) / count
    return jnp.where(mask, (losses - mean) / jnp.sqrt(jnp.maximum(variance, 1e-12)), 0.0)


@functools.partial(jax.jit, static_argnames="config")
def propose_bayesian(
    key: jax.Array,
    unit_points: jax.Array,
    losses: jax.Array,
    mask: jax.Array,
    config: BayesianConfig = DEFAULT_CONFIG,
) -> jax.Array:
    """The next trial of Bayesian optimization: argmax of EI under the fitted GP (13.3.3 1-3).

    1. Standardize the valid losses and fit the GP's hyper-parameters by marginal likelihood.
    2. Score EI (with f* the best standardized loss) at uniform and near-incumbent candidates.
    3. Refine the best candidates by projected gradient ascent on EI; return the best point.

    Args:
      key: a `jax.random` key.
      unit_points: [N, D] trials so far in [0, 1]^D (a buffer: rows with mask False unused).
      losses: [N] their objective values (finite on valid rows; positive with `log_losses`).
      mask: [N] bool, the valid rows; at least one.
      config: the `BayesianConfig` (static: a new config compiles anew).

    Returns:
      [D] the next point in [0, 1]^D.
    """
    check_shapes(
        unit_points=(unit_points, ("N", "D")), losses=(losses, ("N",)), mask=(mask, ("N",))
    )
    fit_key, uniform_key, local_key = jax.random.split(key, 3)
    num_dimensions = unit_points.shape[1]
    modeled = jnp.log(jnp.where(mask, losses, 1.0)) if config.log_losses else losses
    targets = _standardize(modeled, mask)
    hyperparameters = gaussian_process.fit_hyperparameters(
        fit_key,
        unit_points,
        targets,
        config.kernel,
        mask,
        restarts=config.fit_restarts,
        steps=config.fit_steps,
        learning_rate=config.fit_learning_rate,
    )
    posterior = gaussian_process.condition(
        unit_points, targets, hyperparameters, config.kernel, mask
    )
    incumbent_index = jnp.argmin(jnp.where(mask, targets, jnp.inf))
    best, incumbent = targets[incumbent_index], unit_points[incumbent_index]

    def acquisition(points):  # [M, D] -> [M]
        return expected_improvement(*gaussian_process.predict(posterior, points), best, config.xi)

    uniform = random_unit_points(uniform_key, config.num_candidates, num_dimensions)
    local = incumbent + 0.05 * jax.random.normal(
        local_key, (config.num_local_candidates, num_dimensions)
    )
    candidates = jnp.concatenate([uniform, jnp.clip(local, 0.0, 1.0)])
    starts = candidates[jnp.argsort(-acquisition(candidates))[: config.num_refined]]

    optimizer = optim.adam(config.refine_learning_rate)

    def refine_step(carry, _):
        points, optimizer_state = carry
        # The gradient of −Σ EI holds each point's own −∇EI: Adam's descent on it is ascent on EI.
        gradient = jax.grad(lambda p: -jnp.sum(acquisition(p)))(points)
        updates, optimizer_state = optimizer.update(gradient, optimizer_state)
        return (jnp.clip(optax.apply_updates(points, updates), 0.0, 1.0), optimizer_state), None

    (refined, _), _ = jax.lax.scan(
        refine_step, (starts, optimizer.init(starts)), length=config.refine_steps
    )
    finalists = jnp.concatenate([starts, refined])
    return finalists[jnp.argmax(acquisition(finalists))]


def _check_search(space, budget, method, config) -> None:
    check_space(space)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    gaussian_process.check_kernel(config.kernel)
    if config.initial_trials < 1:
        raise ValueError(f"config.initial_trials must be positive, got {config.initial_trials}")


def minimize(
    objective: Callable[[dict[str, float]], float],
    space: SearchSpace,
    budget: int,
    key: jax.Array,
    method: str = "bayesian",
    config: BayesianConfig = DEFAULT_CONFIG,
) -> SearchResult:
    """Minimizes `objective` over `space` with at most `budget` trials, by one of three methods.

    - "grid": the n^D grid with the largest n such that n^D <= budget (eq. 13.8), run in an
      order shuffled by `key` (a fixed enumeration order would make the best-so-far curve an
      artefact of which dimension varies slowest); it runs n^D trials, possibly fewer than
      `budget`.
    - "random": `budget` uniform points of the unit cube (eq. 13.9).
    - "bayesian": the first `config.initial_trials` points of "random" with the same key, then
      `propose_bayesian` for each further trial (13.3.3).

    Args:
      objective: hyper-parameters by name -> a finite loss (e.g. a validation loss); called
        once per trial, in order.
      space: the D dimensions searched.
      budget: the number of trials allowed.
      key: a `jax.random` key; the same key gives the same trials.
      method: "grid", "random" or "bayesian".
      config: settings of "bayesian" (ignored by the others).

    Returns:
      The `SearchResult`.

    Raises:
      ValueError: for a bad space, budget, method or config, or a non-finite objective value
        (or a non-positive one for "bayesian" with `config.log_losses`).
    """
    _check_search(space, budget, method, config)
    num_dimensions = len(space)
    plan_key, order_key, model_key = jax.random.split(key, 3)
    if method == "grid":
        grid = grid_unit_points(num_dimensions, grid_size_within(budget, num_dimensions))
        planned = jax.random.permutation(order_key, grid)
    elif method == "random":
        planned = random_unit_points(plan_key, budget, num_dimensions)
    else:
        planned = random_unit_points(plan_key, min(config.initial_trials, budget), num_dimensions)
    num_trials = budget if method == "bayesian" else planned.shape[0]

    unit_points = np.zeros((num_trials, num_dimensions), np.float32)
    losses = np.zeros(num_trials, np.float32)
    for trial in range(num_trials):
        if trial < planned.shape[0]:
            point = planned[trial]
        else:
            mask = np.arange(num_trials) < trial
            trial_key = jax.random.fold_in(model_key, trial)
            point = propose_bayesian(trial_key, unit_points, losses, mask, config)
        unit_points[trial] = np.asarray(point)
        values = np.asarray(to_values(space, jnp.asarray(point)))
        loss = float(objective({dim.name: float(v) for dim, v in zip(space, values, strict=True)}))
        if not math.isfinite(loss) or (method == "bayesian" and config.log_losses and loss <= 0):
            raise ValueError(
                f"objective returned {loss} at trial {trial} ({values}); return a finite loss, "
                "positive with config.log_losses (e.g. cap diverged runs at the loss of a "
                "constant prediction)"
            )
        losses[trial] = loss
    values = np.asarray(to_values(space, jnp.asarray(unit_points)))
    return SearchResult(unit_points, values, losses, np.minimum.accumulate(losses))

"""Book 9.1 (eqs. 9.1-9.3): the sup-norm error of a trained one-hidden-layer ReLU network against
its width N, for a 1D and a 2D target.

Setup: the Gaussian bump f(x) = exp(−2‖x‖²) on K = [−1, 1]^d, d = 1 and 2; the network of
eq. 9.1 (`core.shallow_network`, standard parameterization, ReLU) with w_j ~ N(0, I/d), a_j ~
N(0, 1/N) and each unit's kink hyperplane w_jᵀx + b_j = 0 placed through a uniform random point
of K (so no unit starts dead or outside the domain); full-batch Adam (`core.optim`) with a
cosine-decayed learning rate (`core.schedules`) on the mean squared error over a grid of K; the
sup-norm error measured on a 8x finer grid. Three seeds per width; the best of them estimates
the approximation error inf_θ ‖f_N − f‖_∞ of eq. 9.3 (training only ever gives an upper bound
on it), and a straight-line fit of log error against log N over N >= 8 gives the rate.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from core import optim, schedules, shallow_network
from experiments.studies import common

PEAK_LEARNING_RATE = 1e-2
NUM_SEEDS = 3
TRAIN_POINTS_PER_SIDE = {1: 256, 2: 32}
EVALUATION_REFINEMENT = 8


def _bump(inputs: jax.Array) -> jax.Array:
    """f(x) = exp(−2‖x‖²): [P, d] -> [P]."""
    return jnp.exp(-2.0 * jnp.sum(jnp.square(inputs), axis=1))


def _grid(input_dim: int, points_per_side: int) -> jax.Array:
    """A regular grid of [−1, 1]^d: [points_per_side^d, d]."""
    side = jnp.linspace(-1.0, 1.0, points_per_side)
    mesh = jnp.meshgrid(*[side] * input_dim, indexing="ij")
    return jnp.stack([axis.ravel() for axis in mesh], axis=1)


def _init_in_domain(key: jax.Array, input_dim: int, width: int) -> shallow_network.ShallowParams:
    """Standard-parameterization draws with b_j = −w_jᵀc_j, c_j ~ U(K): kinks through K."""
    params_key, centre_key = jax.random.split(key)
    params = shallow_network.init(params_key, input_dim, width)
    centres = jax.random.uniform(centre_key, (width, input_dim), minval=-1.0, maxval=1.0)
    return params._replace(biases=-jnp.sum(params.input_weights * centres, axis=1))


@functools.partial(jax.jit, static_argnames=("input_dim", "width", "num_steps"))
def _sup_norm_errors(keys: jax.Array, input_dim: int, width: int, num_steps: int) -> jax.Array:
    """[seeds] sup-norm errors of width-N networks trained from `keys`."""
    points_per_side = TRAIN_POINTS_PER_SIDE[input_dim]
    train_inputs = _grid(input_dim, points_per_side)
    evaluation_inputs = _grid(input_dim, EVALUATION_REFINEMENT * (points_per_side - 1) + 1)
    learning_rate = schedules.cosine_decay(
        PEAK_LEARNING_RATE, num_steps, min_value=PEAK_LEARNING_RATE / 100
    )

    def train_one(key):
        params, _ = shallow_network.train_regression(
            shallow_network.apply,
            _init_in_domain(key, input_dim, width),
            train_inputs,
            _bump(train_inputs),
            optim.adam(learning_rate),
            num_steps,
        )
        return shallow_network.sup_norm_error(
            shallow_network.apply(params, evaluation_inputs), _bump(evaluation_inputs)
        )

    return jax.vmap(train_one)(keys)


def _power_law_fit(widths: list[int], errors: np.ndarray) -> tuple[float, float]:
    """(s, c) of error ≈ c N^s, by least squares on log(error) against log(N)."""
    slope, log_prefactor = np.polyfit(np.log(widths), np.log(errors), 1)
    return float(slope), float(np.exp(log_prefactor))


def run(tiny: bool = False) -> common.StudyResult:
    widths = [8, 32] if tiny else [2, 4, 8, 16, 32, 64, 128, 256]
    num_steps = 200 if tiny else 3000
    keys = jax.random.split(jax.random.key(0), NUM_SEEDS)
    errors = {
        input_dim: np.array(
            [np.asarray(_sup_norm_errors(keys, input_dim, width, num_steps)) for width in widths]
        )  # [len(widths), seeds]
        for input_dim in (1, 2)
    }
    best = {d: e.min(axis=1) for d, e in errors.items()}
    fitted_widths = [w for w in widths if w >= 8]
    fit_rows = [widths.index(w) for w in fitted_widths]
    fits = {d: _power_law_fit(fitted_widths, b[fit_rows]) for d, b in best.items()}
    slopes = {d: slope for d, (slope, _) in fits.items()}

    figure = Figure(figsize=(7, 4.8))
    axes = figure.subplots()
    for (input_dim, per_seed), color in zip(errors.items(), ("C0", "C3"), strict=True):
        axes.loglog(
            widths,
            best[input_dim],
            "o-",
            color=color,
            label=f"d = {input_dim}: best of {NUM_SEEDS} seeds",
        )
        axes.loglog(widths, per_seed, ".", color=color, alpha=0.35)
        slope, prefactor = fits[input_dim]
        axes.loglog(
            fitted_widths,
            prefactor * np.array(fitted_widths, float) ** slope,
            "--",
            color=color,
            label=f"fit N^{slope:.2f} (N >= {fitted_widths[0]})",
        )
    axes.set(
        xlabel="width N (hidden units)",
        ylabel=r"sup-norm error $\max_x |f_N(x) - f(x)|$ on $[-1,1]^d$",
        title=r"trained one-hidden-layer ReLU net vs $f(x)=e^{-2\|x\|^2}$",
    )
    axes.legend(fontsize=8)

    slower_or_faster = "more slowly" if slopes[2] > slopes[1] else "faster"
    finding = (
        f"The best trained sup-norm error scales with the width as (fitted) "
        f"N^{slopes[1]:.2f} in 1D ({best[1][0]:.2g} at N = {widths[0]} to {best[1][-1]:.2g} at "
        f"N = {widths[-1]}) and N^{slopes[2]:.2f} in 2D ({best[2][0]:.2g} to "
        f"{best[2][-1]:.2g}): {slower_or_faster} in the higher dimension. A ReLU network can "
        f"represent the free-knot linear interpolant, whose error falls as N^-2 in 1D, so "
        f"training (Adam, {num_steps} steps), not expressivity, sets the measured rate."
    )
    return common.StudyResult(
        claim=(
            "A one-hidden-layer network with a non-polynomial activation approximates any "
            "continuous function uniformly on a compact set as N grows (9.1.2); how fast depends "
            "on smoothness and dimension (9.1.3)."
        ),
        finding=finding,
        figures={
            "widths": widths,
            "num_steps": num_steps,
            "sup_norm_error_per_seed": {f"d={d}": e.tolist() for d, e in errors.items()},
            "best_sup_norm_error": {f"d={d}": b.tolist() for d, b in best.items()},
            "fitted_slope_for_widths_from_8": {f"d={d}": s for d, s in slopes.items()},
        },
        figure=figure,
    )

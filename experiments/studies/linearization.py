"""Book 9.3.3 (eq. 9.8): a wide network trained by gradient descent stays close to its first-order
Taylor model around the initialization, and closer the wider it is.

Setup: the one-hidden-layer tanh network of eq. 9.1 in the NTK parameterization
(`core.shallow_network`: f = (1/√N) Σ_j a_j tanh(w_jᵀx/√d + b_j), every parameter ~ N(0, 1)),
16 samples of y = sin(3x) on [−1, 1], full-batch gradient descent (`core.optim.sgd`, η = 0.3,
the same for every width) on the mean squared error for 2000 steps, in float64; four seeds per
width N = 16 ... 4096. The Taylor model f_lin (`core.linearization.taylor_model`) is measured two
ways on 257 held-out inputs, each relative to how far training moved the network,
‖f(θ_T) − f(θ_0)‖:
- the Taylor model at the trained parameters, ‖f(θ_T) − f_lin(θ_T)‖ (does eq. 9.8 still hold
  where training ended?);
- the Taylor model trained by the same gradient descent from θ_0, ‖f(θ_T) − f_lin(θ_T^lin)‖
  (does training the network behave like training the kernel model?);
and the relative parameter change ‖θ_T − θ_0‖ / ‖θ_0‖.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from core import activations, linearization, optim, shallow_network
from experiments.studies import common

LEARNING_RATE = 0.3
NUM_SEEDS = 4
MEASURES = {
    "taylor_at_trained_params": (
        r"$\|f(\theta_T)-f_{lin}(\theta_T)\|$ / $\|f(\theta_T)-f(\theta_0)\|$"
    ),
    "trained_taylor_model": (
        r"$\|f(\theta_T)-f_{lin}(\theta^{lin}_T)\|$ / $\|f(\theta_T)-f(\theta_0)\|$"
    ),
    "relative_parameter_change": r"$\|\theta_T-\theta_0\|$ / $\|\theta_0\|$",
}

network = functools.partial(
    shallow_network.apply, parameterization="ntk", activation=activations.tanh
)


@functools.partial(jax.jit, static_argnames=("width", "num_steps"))
def _measure(keys: jax.Array, width: int, num_steps: int) -> dict[str, jax.Array]:
    """The three measures of `MEASURES` for each seed: [seeds] each."""
    train_inputs = jnp.linspace(-1.0, 1.0, 16)[:, None]
    train_targets = jnp.sin(3.0 * train_inputs[:, 0])
    held_out_inputs = jnp.linspace(-1.0, 1.0, 257)[:, None]

    def one_seed(key):
        initial = shallow_network.init(key, 1, width, "ntk")
        taylor = linearization.taylor_model(network, initial)
        trained, _ = shallow_network.train_regression(
            network, initial, train_inputs, train_targets, optim.sgd(LEARNING_RATE), num_steps
        )
        trained_linear, _ = shallow_network.train_regression(
            taylor, initial, train_inputs, train_targets, optim.sgd(LEARNING_RATE), num_steps
        )
        trained_outputs = network(trained, held_out_inputs)
        initial_outputs = network(initial, held_out_inputs)
        return {
            "taylor_at_trained_params": linearization.relative_distance(
                trained_outputs, taylor(trained, held_out_inputs), initial_outputs
            ),
            "trained_taylor_model": linearization.relative_distance(
                trained_outputs, taylor(trained_linear, held_out_inputs), initial_outputs
            ),
            "relative_parameter_change": linearization.relative_parameter_change(trained, initial),
        }

    return jax.vmap(one_seed)(keys)


def run(tiny: bool = False) -> common.StudyResult:
    widths = [16, 256] if tiny else [16, 64, 256, 1024, 4096]
    num_steps = 200 if tiny else 2000
    keys = jax.random.split(jax.random.key(0), NUM_SEEDS)
    with jax.enable_x64(True):
        per_width = [_measure(keys, width, num_steps) for width in widths]
    measured = {
        name: np.array([np.asarray(values[name]) for values in per_width]) for name in MEASURES
    }  # each [len(widths), seeds]
    slopes = {
        name: float(np.polyfit(np.log(widths), np.log(values.mean(axis=1)), 1)[0])
        for name, values in measured.items()
    }

    figure = Figure(figsize=(7.5, 5))
    axes = figure.subplots()
    for (name, label), marker in zip(MEASURES.items(), "os^", strict=True):
        values = measured[name]
        mean = values.mean(axis=1)
        axes.errorbar(
            widths,
            mean,
            yerr=[mean - values.min(axis=1), values.max(axis=1) - mean],
            fmt=marker + "-",
            capsize=3,
            label=f"{label}  (fitted slope {slopes[name]:.2f})",
        )
    reference = measured["relative_parameter_change"].mean(axis=1)[0] * np.sqrt(widths[0])
    axes.loglog(widths, reference / np.sqrt(widths), "k:", lw=1, label=r"$\propto N^{-1/2}$")
    axes.set(
        xscale="log",
        yscale="log",
        xlabel="width N (hidden units)",
        ylabel="relative distance (mean, min-max over 4 seeds)",
        title=f"tanh network, NTK parameterization, GD η = {LEARNING_RATE}, {num_steps} steps",
    )
    axes.legend(fontsize=8, loc="lower left")

    taylor_error = measured["taylor_at_trained_params"].mean(axis=1)
    trained_gap = measured["trained_taylor_model"].mean(axis=1)
    verdict = (
        "the linearization (9.8) becomes more accurate as the width grows"
        if all(slope < 0 for slope in slopes.values())
        else "the linearization (9.8) does not improve with width in every measure"
    )
    finding = (
        f"In the NTK parameterization, from N = {widths[0]} to {widths[-1]} the Taylor model "
        f"at the trained parameters misses {100 * taylor_error[0]:.0f}% then "
        f"{100 * taylor_error[-1]:.1f}% of the function's change (~N^"
        f"{slopes['taylor_at_trained_params']:.2f}), the separately trained Taylor model "
        f"differs by {100 * trained_gap[0]:.0f}% then {100 * trained_gap[-1]:.1f}% (~N^"
        f"{slopes['trained_taylor_model']:.2f}), and the parameters move by "
        f"~N^{slopes['relative_parameter_change']:.2f} of their norm: {verdict}."
    )
    return common.StudyResult(
        claim=(
            "With sufficient width, gradient descent stays in a neighbourhood of the "
            "initialization where the network is well described by its linearization (9.3.3, "
            "eq. 9.8)."
        ),
        finding=finding,
        figures={
            "parameterization": "ntk",
            "activation": "tanh",
            "learning_rate": LEARNING_RATE,
            "num_steps": num_steps,
            "widths": widths,
            **{name: values.tolist() for name, values in measured.items()},
            "fitted_slopes_of_the_seed_means": slopes,
        },
        figure=figure,
    )

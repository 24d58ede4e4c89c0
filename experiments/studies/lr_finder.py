"""Book 13.1.1: the learning-rate finder on the digits MLP, checked against fixed-rate training.

The finder (`core.lr_finder`) ramps η from 1e-5 to 10 over 300 batches of 16 (four passes over
the 1200 training digits) with heavy-ball SGD (β = 0.9), smooths the batch losses (β = 0.98) and
stops when they diverge; it is run with several seeds (initialization and batch order). The
ground truth is what the finder tries to predict: the validation loss after training at each
fixed rate of a log grid for 600 batches, from several seeds. The study reports both reading
rules (minimum / 10, steepest descent) and the validation loss that training at each achieves.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from core import lr_finder, optim
from experiments.studies import _digits
from experiments.studies.common import StudyResult

MOMENTUM = 0.9
BATCH_SIZE = 16
MIN_RATE, MAX_RATE = 1e-5, 10.0
SMOOTHING = 0.98  # fastai's and Lightning's β
FULL = {"finder_steps": 300, "finder_seeds": 5, "train_steps": 600, "train_seeds": 3, "rates": 16}
TINY = {"finder_steps": 40, "finder_seeds": 2, "train_steps": 20, "train_seeds": 1, "rates": 3}


def _make_optimizer(learning_rate):
    return optim.momentum(learning_rate, MOMENTUM)


@functools.partial(jax.jit, static_argnames="num_steps")
def _finder_curve(key, data, num_steps):
    """One finder run: He-initialized MLP, `num_steps` shuffled batches of 16."""
    init_key, order_key = jax.random.split(key)
    indices = _digits.batch_indices(order_key, num_steps, BATCH_SIZE)
    batches = {
        "inputs": jnp.moveaxis(data.train_inputs[:, indices], 1, 0),  # [T, 64, B]
        "labels": jnp.moveaxis(data.train_labels[:, indices], 1, 0),  # [T, 10, B]
    }
    return lr_finder.run_lr_finder(
        lambda params, batch: _digits.batch_loss(params, batch["inputs"], batch["labels"]),
        _digits.init_params(init_key),
        batches,
        _make_optimizer,
        MIN_RATE,
        MAX_RATE,
        SMOOTHING,
    )


@functools.partial(jax.jit, static_argnames="num_steps")
def _fixed_rate_losses(keys, data, learning_rates, num_steps):
    """[rates, seeds] capped validation losses after `num_steps` batches at each fixed rate."""

    def final_loss(key, learning_rate):
        params, _ = _digits.train(key, data, _make_optimizer(learning_rate), num_steps, BATCH_SIZE)
        return _digits.capped(_digits.validation_loss(params, data))

    per_seed = jax.vmap(final_loss, in_axes=(0, None))
    return jax.vmap(per_seed, in_axes=(None, 0))(keys, learning_rates)


def _loss_at(rate: float, rates: np.ndarray, losses: np.ndarray) -> float:
    """The median-over-seeds fixed-rate loss, interpolated in log rate."""
    return float(np.interp(np.log(rate), np.log(rates), np.median(losses, axis=1)))


def _plot(curves, suggestions, rates, fixed_losses, train_steps) -> Figure:
    figure = Figure(figsize=(12, 4.6))
    finder_axes, truth_axes = figure.subplots(1, 2, sharex=True)
    first_steps = int(curves[0].num_steps)
    finder_axes.plot(
        curves[0].learning_rates[:first_steps],
        curves[0].losses[:first_steps],
        color="tab:gray",
        alpha=0.5,
        label="batch loss (seed 0)",
    )
    for seed, curve in enumerate(curves):
        steps = int(curve.num_steps)
        finder_axes.plot(
            curve.learning_rates[:steps],
            curve.smoothed_losses[:steps],
            color="tab:blue",
            alpha=0.8,
            label=f"smoothed (β = {SMOOTHING}), one per seed" if seed == 0 else None,
        )
    finder_axes.set(
        xscale="log",
        yscale="log",
        xlabel="learning rate η (heavy ball, β = 0.9)",
        ylabel="training cross-entropy (nats)",
        title="LR finder: loss along the ramp η_t = η_min (η_max/η_min)^(t/T)",
    )
    truth_axes.plot(
        rates,
        np.median(fixed_losses, axis=1),
        marker="o",
        color="black",
        label=f"validation loss after {train_steps} steps at fixed η (median, range)",
    )
    truth_axes.fill_between(
        rates, fixed_losses.min(axis=1), fixed_losses.max(axis=1), color="black", alpha=0.15
    )
    for axes in (finder_axes, truth_axes):
        for value in suggestions["min_loss_over_ten"]:
            axes.axvline(value, color="tab:green", alpha=0.6)
        for value in suggestions["steepest"]:
            axes.axvline(value, color="tab:orange", alpha=0.6, linestyle="--")
    truth_axes.plot([], [], color="tab:green", label="suggestion: min-loss η / 10 (one per seed)")
    truth_axes.plot([], [], color="tab:orange", linestyle="--", label="suggestion: steepest")
    truth_axes.set(
        xscale="log",
        yscale="log",
        xlabel="learning rate η",
        ylabel="validation cross-entropy (nats)",
        title="Ground truth: train at each fixed η",
    )
    finder_axes.legend(fontsize=8)
    truth_axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def run(tiny: bool = False) -> StudyResult:
    size = TINY if tiny else FULL
    data = _digits.load()
    curves = [
        jax.device_get(_finder_curve(jax.random.PRNGKey(seed), data, size["finder_steps"]))
        for seed in range(size["finder_seeds"])
    ]
    read = [lr_finder.suggest_learning_rates(curve) for curve in curves]
    suggestions = {
        rule: [float(getattr(s, rule)) for s in read] for rule in ("min_loss_over_ten", "steepest")
    }
    rates = np.geomspace(1e-4, MAX_RATE, size["rates"])
    train_keys = jax.random.split(jax.random.PRNGKey(100), size["train_seeds"])
    fixed_losses = np.asarray(
        _fixed_rate_losses(train_keys, data, jnp.asarray(rates), size["train_steps"])
    )
    best_index = int(np.argmin(np.median(fixed_losses, axis=1)))
    best_rate, best_loss = float(rates[best_index]), float(np.median(fixed_losses[best_index]))
    achieved = {
        rule: [_loss_at(v, rates, fixed_losses) for v in values]
        for rule, values in suggestions.items()
    }
    spread = {rule: float(max(v) / min(v)) for rule, v in suggestions.items()}
    rule_text = {"min_loss_over_ten": "min-loss/10", "steepest": "steepest"}
    finding = (
        f"Best fixed rate {best_rate:.3g} (validation loss {best_loss:.3f}); "
        + "; ".join(
            f"{rule_text[rule]} suggests {np.median(values):.3g} (median over {len(values)} seeds, "
            f"max/min {spread[rule]:.1f}x), where training reaches {np.median(achieved[rule]):.3f}"
            for rule, values in suggestions.items()
        )
        + "."
    )
    figures = {
        "finder": {
            "min_rate": MIN_RATE,
            "max_rate": MAX_RATE,
            "steps": size["finder_steps"],
            "batch_size": BATCH_SIZE,
            "momentum": MOMENTUM,
            "smoothing": SMOOTHING,
        },
        "finder_steps_run": [int(c.num_steps) for c in curves],
        "suggestions": suggestions,
        "suggestion_spread_max_over_min": spread,
        "validation_loss_at_suggestion": achieved,
        "fixed_rates": rates.tolist(),
        "fixed_rate_validation_loss": fixed_losses.tolist(),
        "best_fixed_rate": best_rate,
        "best_fixed_rate_validation_loss": best_loss,
    }
    claim = (
        "13.1.1: a single run with an exponentially increasing rate finds the rate where the "
        "loss still decreases steeply without diverging, a good rate to train with."
    )
    return StudyResult(
        claim,
        finding,
        figures,
        _plot(curves, suggestions, rates, fixed_losses, size["train_steps"]),
    )

"""Book 13.1.2-13.2: learning-rate schedules and warmup on the digits MLP.

Five schedules from `core.schedules` with the same peak η₀ and length T = 700 batches of 64:
constant, step decay (γ = 0.1 every T/3, eq. 13.2), cosine to 0 (eq. 13.4), linear warmup over
T/10 then cosine (eq. 13.6 joined to 13.4) and SGDR (T₀ = 100, period doubling, restarts at 100
and 300, eq. 13.5), each driving heavy-ball SGD (β = 0.9). Every schedule is linear in η₀, so
it is built once with peak 1, tabulated over its T steps and scaled: the table is data, not
code, so one compiled run sweeps every schedule, peak and seed (vmapped). The study shows the
schedules, the training curves at one peak, and the
validation loss against η₀, where warmup's claimed benefit (13.2.1: no extreme updates early,
when the initialization is random) shows at the peaks where a constant rate degrades.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

from core import optim, schedules
from experiments.studies import _digits
from experiments.studies.common import StudyResult

MOMENTUM = 0.9
SHOWN_PEAK = 0.3  # the peak of the training-curve panel: near the best for every schedule
FULL = {"steps": 700, "seeds": 5, "peaks": np.geomspace(0.03, 3.0, 13)}
TINY = {"steps": 35, "seeds": 1, "peaks": np.asarray([0.03, SHOWN_PEAK])}


def unit_peak_schedules(num_steps: int) -> dict[str, optax.Schedule]:
    """The five schedules with peak 1 over `num_steps` steps (multiply by η₀)."""
    warmup_steps = max(num_steps // 10, 1)
    first_period = num_steps / 7  # periods T₀, 2T₀, 4T₀ end exactly at T
    return {
        "constant": schedules.constant(1.0),
        "step decay": schedules.step_decay(1.0, 0.1, -(-num_steps // 3)),
        "cosine": schedules.cosine_decay(1.0, num_steps),
        "warmup + cosine": schedules.with_linear_warmup(
            schedules.cosine_decay(1.0, num_steps - warmup_steps), warmup_steps
        ),
        "SGDR": schedules.cosine_with_warm_restarts(1.0, first_period, period_multiplier=2.0),
    }


def tabulate(schedule: optax.Schedule, num_steps: int) -> np.ndarray:
    """[num_steps] the schedule's values at steps 0..T−1."""
    return np.asarray(jax.vmap(schedule)(jnp.arange(num_steps)))


@jax.jit
def _sweep(keys, data, peaks, unit_tables):
    """Every run at once: unit_tables [S, T] (η_t / η₀ per schedule), peaks [P], keys [K].

    Returns:
      ([S, P, K] validation losses, [S, P, K, T] training batch losses).
    """

    def one_run(key, peak, unit_table):
        optimizer = optim.momentum(lambda step: peak * unit_table[step], MOMENTUM)
        params, train_losses = _digits.train(key, data, optimizer, unit_table.shape[0])
        return _digits.capped(_digits.validation_loss(params, data)), train_losses

    per_seed = jax.vmap(one_run, in_axes=(0, None, None))
    per_peak = jax.vmap(per_seed, in_axes=(None, 0, None))
    return jax.vmap(per_peak, in_axes=(None, None, 0))(keys, peaks, unit_tables)


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, values.shape[-1]))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _plot(unit, num_steps, peaks, validation, training) -> Figure:
    figure = Figure(figsize=(15, 4.6))
    schedule_axes, curve_axes, sweep_axes = figure.subplots(1, 3)
    steps = np.arange(num_steps)
    shown = int(np.argmin(np.abs(peaks - SHOWN_PEAK)))
    window = 25
    for name, schedule in unit.items():
        (line,) = schedule_axes.plot(steps, tabulate(schedule, num_steps), label=name)
        color = line.get_color()
        median_curve = np.median(training[name][shown], axis=0)
        smoothed = _running_mean(median_curve, window)
        curve_axes.plot(steps[len(steps) - len(smoothed) :], smoothed, color=color, label=name)
        sweep_axes.plot(
            peaks, np.median(validation[name], axis=1), marker="o", color=color, label=name
        )
    schedule_axes.set(
        xlabel="step t (batches of 64)", ylabel="η_t / η₀", title="Schedules (peak η₀ = 1)"
    )
    curve_axes.set(
        yscale="log",
        xlabel="step t",
        ylabel=f"training cross-entropy, mean of {window} batches (nats)",
        title=f"Training at η₀ = {peaks[shown]:.2g} (median of seeds)",
    )
    sweep_axes.set(
        xscale="log",
        yscale="log",
        xlabel="peak learning rate η₀ (heavy ball, β = 0.9)",
        ylabel=f"validation cross-entropy after {num_steps} steps (nats)",
        title="Validation loss against the peak rate",
    )
    for axes in (schedule_axes, curve_axes, sweep_axes):
        axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def run(tiny: bool = False) -> StudyResult:
    size = TINY if tiny else FULL
    data = _digits.load()
    peaks = size["peaks"]
    keys = jax.random.split(jax.random.PRNGKey(0), size["seeds"])
    unit = unit_peak_schedules(size["steps"])
    tables = np.stack([tabulate(schedule, size["steps"]) for schedule in unit.values()])
    losses, curves = jax.device_get(_sweep(keys, data, jnp.asarray(peaks), jnp.asarray(tables)))
    validation = dict(zip(unit, losses, strict=True))
    training = dict(zip(unit, curves, strict=True))
    median_validation = {name: np.median(v, axis=1) for name, v in validation.items()}
    best = {name: float(v.min()) for name, v in median_validation.items()}
    best_peak = {name: float(peaks[np.argmin(v)]) for name, v in median_validation.items()}
    decays = [name for name in unit if name not in ("constant", "warmup + cosine")]
    best_decay = min(decays, key=best.get)
    if best[best_decay] < 0.95 * best["constant"]:
        decay_text = f"decay ({best_decay}) lowers it from {best['constant']:.3f} to "
        decay_text += f"{best[best_decay]:.3f}"
    else:
        decay_text = f"no decay beats the constant rate's {best['constant']:.3f} by 5%"
    constant = median_validation["constant"]
    degraded = (constant > 2 * best["constant"]) & (constant < 0.9 * _digits.CHANCE_LOSS)
    at_high = {name: v[degraded] for name, v in median_validation.items()}
    warmup_wins = bool(degraded.any()) and all(
        np.all(at_high["warmup + cosine"] <= v) for v in at_high.values()
    )
    high_text = ", ".join(
        f"{name} " + "/".join(f"{loss:.3f}" for loss in losses) for name, losses in at_high.items()
    )
    finding = (
        "Best validation loss over η₀: "
        + ", ".join(f"{name} {best[name]:.3f} (η₀ {best_peak[name]:.2g})" for name in unit)
        + f"; {decay_text}. Where a constant rate degrades but still trains (η₀ = "
        + "/".join(f"{p:.2g}" for p in peaks[degraded])
        + f"), warmup {'has' if warmup_wins else 'does not have'} the lowest loss: {high_text}."
    )
    figures = {
        "steps": size["steps"],
        "seeds": size["seeds"],
        "momentum": MOMENTUM,
        "peaks": peaks.tolist(),
        "median_validation_loss": {name: v.tolist() for name, v in median_validation.items()},
        "best_validation_loss": best,
        "best_peak": best_peak,
        "degraded_constant_peaks": peaks[degraded].tolist(),
        "validation_loss_at_degraded_peaks": {n: v.tolist() for n, v in at_high.items()},
    }
    claim = (
        "13.1.2-13.2: decaying the rate (step, cosine, SGDR) after choosing a base rate helps, "
        "and linear warmup prevents extreme early updates, so a larger rate can be used."
    )
    return StudyResult(
        claim, finding, figures, _plot(unit, size["steps"], peaks, validation, training)
    )

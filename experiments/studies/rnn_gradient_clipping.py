"""Book 15.7.1 (with 8.5.1, eq. 8.34): gradient clipping rescues training with exploding gradients.

A tanh RNN whose W_hh is a random Gaussian matrix rescaled to spectral radius 2, past the
point where its gradients explode (see the `rnn_spectral_radius` study), learns a delayed copy
y^(t) = x^(t-2) of a scalar Gaussian sequence (many-to-many, squared error) by plain SGD with the
hand-written BPTT gradient (`core.rnn.train`). The same runs with and without
`core.optim.clip_by_global_norm` over a grid of learning rates, all in one vmapped scan.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

from core import mlp, optim, rnn
from core import rnn_gradient_flow as gradient_flow
from experiments.studies.common import StudyResult

COPY_DELAY = 2
SPECTRAL_RADIUS = 2.0
MAX_GRADIENT_NORM = 1.0  # τ of eq. 8.34
SHOWN_LEARNING_RATE = 0.1
FINAL_WINDOW = 0.1  # the final loss is the mean over the last 10% of the steps
DIVERGED_MARK = 300.0  # where a diverged run's final loss is drawn (above every finite one)


def _sizes(tiny: bool) -> dict:
    if tiny:
        return dict(hidden=8, length=20, batch=8, steps=60, learning_rates=(1e-3, 0.1))
    learning_rates = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)
    return dict(hidden=32, length=50, batch=32, steps=1000, learning_rates=learning_rates)


def delayed_copy_batch(key: jax.Array, batch: int, length: int) -> tuple[jax.Array, jax.Array]:
    """inputs [B, T, 1] ~ N(0, 1) and targets [B, T, 1] = inputs shifted by COPY_DELAY steps
    (zeros before)."""
    inputs = jax.random.normal(key, (batch, length, 1))
    targets = jnp.pad(inputs[:, :-COPY_DELAY], ((0, 0), (COPY_DELAY, 0), (0, 0)))
    return inputs, targets


def _train_all(params, sizes: dict, clip: bool, key: jax.Array) -> rnn.TrainingRun:
    """One run per learning rate, vmapped: losses and gradient norms are [num_rates, steps]."""
    sample_batch = functools.partial(
        delayed_copy_batch, batch=sizes["batch"], length=sizes["length"]
    )

    def train_at(learning_rate):
        optimizer = optim.sgd(learning_rate)
        if clip:
            optimizer = optax.chain(optim.clip_by_global_norm(MAX_GRADIENT_NORM), optimizer)
        return rnn.train(
            params, optimizer, sample_batch, key, sizes["steps"], rnn.TANH, mlp.IDENTITY_MSE
        )

    return jax.jit(jax.vmap(train_at))(jnp.asarray(sizes["learning_rates"]))


def _final_losses(per_step_losses: np.ndarray) -> np.ndarray:
    """[num_rates] mean loss over the last steps; NaN where a run diverged."""
    window = max(1, int(FINAL_WINDOW * per_step_losses.shape[1]))
    return np.mean(per_step_losses[:, -window:], axis=1)


def _first_non_finite(losses: np.ndarray) -> int | None:
    bad = np.nonzero(~np.isfinite(losses))[0]
    return int(bad[0]) if len(bad) else None


def _plot(sizes, runs: dict, shown: int, final: dict) -> Figure:
    figure = Figure(figsize=(17, 5.2))
    loss_axes, norm_axes, rate_axes = figure.subplots(1, 3)
    styles = {"no clipping": ("tab:red", "x"), "clipped": ("tab:blue", "o")}
    steps = np.arange(sizes["steps"])
    for name, run in runs.items():
        color, marker = styles[name]
        losses = run["losses"][shown]
        loss_axes.semilogy(steps, losses, color=color, label=name)
        diverged = _first_non_finite(losses)
        if diverged is not None:
            last = max(diverged - 1, 0)
            loss_axes.semilogy(
                [last],
                [min(losses[last], 1e30)],
                marker,
                color=color,
                markersize=12,
                label=f"{name}: non-finite from step {diverged}",
            )
        norm_axes.semilogy(steps, run["gradient_norms"][shown], color=color, label=name)
        rate_axes.loglog(
            sizes["learning_rates"], final[name], marker + "-", color=color, label=name
        )
        diverged_rates = np.asarray(sizes["learning_rates"])[~np.isfinite(final[name])]
        if len(diverged_rates):
            rate_axes.loglog(
                diverged_rates,
                np.full(len(diverged_rates), DIVERGED_MARK),
                "v",
                color=color,
                markersize=10,
                label=f"{name}: NaN (diverged)",
            )
    baseline = sizes["length"] - COPY_DELAY  # predicting 0: Σ_t E[x²] per sequence
    loss_axes.axhline(baseline, color="grey", linestyle=":", label="predict 0")
    loss_axes.set(
        ylim=(None, 1e6),
        xlabel="SGD step",
        ylabel="loss Σ_t (ŷ^(t) - y^(t))² per sequence",
        title=f"Training at η = {SHOWN_LEARNING_RATE}, tanh, ρ(W_hh) = {SPECTRAL_RADIUS}",
    )
    loss_axes.legend(fontsize=8)
    norm_axes.axhline(MAX_GRADIENT_NORM, color="k", linestyle=":", label="clip threshold τ = 1")
    norm_axes.set(
        xlabel="SGD step", ylabel="‖∇L‖₂ before clipping", title="Gradient norm (same runs)"
    )
    norm_axes.legend(fontsize=8)
    rate_axes.axhline(baseline, color="grey", linestyle=":", label="predict 0")
    rate_axes.set(
        xlabel="learning rate η",
        ylabel=f"final loss (mean of last {int(FINAL_WINDOW * 100)}% of steps)",
        title=f"Final loss after {sizes['steps']} steps against η",
    )
    rate_axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def run(tiny: bool = False) -> StudyResult:
    sizes = _sizes(tiny)
    params_key, matrix_key, data_key = jax.random.split(jax.random.key(0), 3)
    hidden = sizes["hidden"]
    params = rnn.init(params_key, 1, hidden, 1)
    gaussian = jax.random.normal(matrix_key, (hidden, hidden)) / np.sqrt(hidden)
    params = params._replace(W_hh=gradient_flow.with_spectral_radius(gaussian, SPECTRAL_RADIUS))
    runs = {}
    for name, clip in (("no clipping", False), ("clipped", True)):
        result = _train_all(params, sizes, clip, data_key)
        runs[name] = {
            "losses": np.asarray(result.losses),
            "gradient_norms": np.asarray(result.gradient_norms),
        }
    final = {name: _final_losses(run["losses"]) for name, run in runs.items()}
    shown = sizes["learning_rates"].index(SHOWN_LEARNING_RATE)

    def as_json(values):
        return [None if not np.isfinite(v) else float(v) for v in values]

    initial_loss = float(runs["clipped"]["losses"][shown, 0])
    figures = {
        "learning_rates": list(sizes["learning_rates"]),
        "initial_loss": initial_loss,
        "initial_gradient_norm": float(runs["clipped"]["gradient_norms"][shown, 0]),
        "final_loss": {name: as_json(values) for name, values in final.items()},
        "first_non_finite_step_at_shown_rate": {
            name: _first_non_finite(run["losses"][shown]) for name, run in runs.items()
        },
        "shown_learning_rate": SHOWN_LEARNING_RATE,
        "steps": sizes["steps"],
    }
    rates = np.asarray(sizes["learning_rates"])
    unclipped_finite = np.isfinite(final["no clipping"])
    best_unclipped = int(np.nanargmin(np.where(unclipped_finite, final["no clipping"], np.inf)))
    best_clipped = int(np.nanargmin(final["clipped"]))
    finding = (
        f"At η = {SHOWN_LEARNING_RATE} the first gradient has norm "
        f"{figures['initial_gradient_norm']:.3g}: without clipping the loss is non-finite from "
        f"step {figures['first_non_finite_step_at_shown_rate']['no clipping']}, with clipping "
        f"(τ = 1) it falls from {initial_loss:.3g} to {final['clipped'][shown]:.3g}. Unclipped "
        f"SGD stays finite only for η ≤ {rates[unclipped_finite].max():g} (best "
        f"{final['no clipping'][best_unclipped]:.3g} at η = {rates[best_unclipped]:g}); "
        f"clipped SGD stays finite at all {int(np.sum(np.isfinite(final['clipped'])))} of "
        f"{len(rates)} rates up to {rates[-1]:g} (best {final['clipped'][best_clipped]:.3g} "
        f"at η = {rates[best_clipped]:g}): clipping widens the range of stable learning rates."
    )
    return StudyResult(
        claim=(
            "Book 15.7.1: exploding gradients make updates massive so the loss diverges to NaN; "
            "clipping g ← τ g/‖g‖ when ‖g‖ > τ (8.34) keeps training stable."
        ),
        finding=finding,
        figures=figures,
        figure=_plot(sizes, runs, shown, final),
    )

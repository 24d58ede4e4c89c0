"""Book 13.3: grid search, random search and Bayesian optimization, trials to a target loss.

The book claims random search beats grid search in higher dimensions (13.3.2) and that Bayesian
optimization "needs fewer total trials" (13.3.3). The problem: tune the learning rate η
(log-uniform in [1e-3, 3]), the momentum β ([0, 0.99]) and the L2 weight decay λ (log-uniform in
[1e-6, 1e-1]) of heavy-ball SGD (`core.optim`) training the digits MLP (`_digits`) for 300
mini-batch steps, judged by the validation cross-entropy (diverged runs count as ln 10, the
loss of guessing). Each seed fixes the network's initialization and batch order, so the three
methods minimize the same function; the grid (3³ = 27 points, the largest within the budget of
40) is run in a seed-shuffled order, and Bayesian optimization (Matérn-5/2 GP on log loss,
Expected Improvement) starts from random search's first 10 points.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
from matplotlib.figure import Figure

from core import hparam_search, optim
from experiments.studies import _digits
from experiments.studies.common import StudyResult

SPACE = (
    hparam_search.Dimension("learning_rate", 1e-3, 3.0, log_scale=True),
    hparam_search.Dimension("momentum", 0.0, 0.99),
    hparam_search.Dimension("weight_decay", 1e-6, 1e-1, log_scale=True),
)
TARGET_LOSS = 0.06  # reached by about 2% of the box: a needle for a 40-trial budget
FULL = {
    "budget": 40,
    "seeds": 10,
    "train_steps": 300,
    "config": hparam_search.BayesianConfig(log_losses=True),
}
TINY = {
    "budget": 8,
    "seeds": 2,
    "train_steps": 20,
    "config": hparam_search.BayesianConfig(
        initial_trials=3,
        log_losses=True,
        num_candidates=64,
        num_local_candidates=16,
        num_refined=2,
        refine_steps=3,
        fit_restarts=2,
        fit_steps=10,
    ),
}
COLORS = {"grid": "tab:gray", "random": "tab:blue", "bayesian": "tab:red"}


@functools.partial(jax.jit, static_argnames="train_steps")
def _validation_loss(key, data, learning_rate, momentum, weight_decay, train_steps):
    """One trial: train with coupled L2 + heavy ball (eqs. 8.23, 8.9-8.10), capped val loss."""
    optimizer = optax.chain(
        optim.add_weight_decay(weight_decay), optim.momentum(learning_rate, momentum)
    )
    params, _ = _digits.train(key, data, optimizer, train_steps)
    return _digits.capped(_digits.validation_loss(params, data))


def trials_to_reach(best_so_far: np.ndarray, target: float) -> int | None:
    """The 1-based trial at which the best-so-far loss first reaches `target`, or None."""
    reached = np.flatnonzero(best_so_far <= target)
    return int(reached[0]) + 1 if reached.size else None


def _search_all(data, size) -> dict[str, list[hparam_search.SearchResult]]:
    results = {method: [] for method in hparam_search.METHODS}
    for seed in range(size["seeds"]):
        train_key = jax.random.PRNGKey(seed)

        def objective(hparams, train_key=train_key):
            return float(
                _validation_loss(train_key, data, **hparams, train_steps=size["train_steps"])
            )

        search_key = jax.random.fold_in(train_key, 1)
        for method in hparam_search.METHODS:
            results[method].append(
                hparam_search.minimize(
                    objective, SPACE, size["budget"], search_key, method, size["config"]
                )
            )
    return results


def _median_trials(per_seed: list[int | None]) -> float | None:
    """The median trials to target over seeds, counting a miss as infinite; None if > budget."""
    median = float(np.median([np.inf if t is None else t for t in per_seed]))
    return median if np.isfinite(median) else None


def _plot(results, trials, budget) -> Figure:
    figure = Figure(figsize=(15, 4.6))
    curves, counts, landscape = figure.subplots(1, 3)
    for method, runs in results.items():
        best = np.stack([run.best_so_far for run in runs])
        steps = np.arange(1, best.shape[1] + 1)
        low, median, high = np.quantile(best, [0.25, 0.5, 0.75], axis=0)
        curves.plot(steps, median, color=COLORS[method], label=f"{method} (median)")
        curves.fill_between(steps, low, high, color=COLORS[method], alpha=0.2)
    curves.axhline(TARGET_LOSS, color="black", linestyle="--", label=f"target {TARGET_LOSS}")
    curves.set(
        xlabel="trial",
        ylabel="best validation cross-entropy so far (nats)",
        yscale="log",
        title="Best-so-far loss: median and 25-75% over seeds",
    )
    curves.legend()

    for position, (method, per_seed) in enumerate(trials.items()):
        reached = [t for t in per_seed if t is not None]
        missed = len(per_seed) - len(reached)
        jitter = np.linspace(-0.15, 0.15, len(per_seed))
        counts.scatter(position + jitter[: len(reached)], reached, color=COLORS[method])
        if missed:
            counts.scatter(
                position + jitter[len(reached) :],
                [budget + 2] * missed,
                marker="x",
                color=COLORS[method],
            )
        median = _median_trials(per_seed)
        if median is not None:
            counts.hlines(median, position - 0.3, position + 0.3, color="black")
    counts.axhline(budget + 1, color="black", linewidth=0.5)
    counts.set_xticks(
        range(len(trials)),
        [f"{m}\n{sum(t is not None for t in v)}/{len(v)} reached" for m, v in trials.items()],
    )
    counts.set(
        ylabel="trials to reach the target",
        title=f"Trials to validation loss <= {TARGET_LOSS} (x: not within {budget}; bar: median)",
        ylim=(0, budget + 4),
    )

    for method in ("random", "grid", "bayesian"):
        values = np.concatenate([run.values for run in results[method]])
        losses = np.concatenate([run.losses for run in results[method]])
        effective_rate = values[:, 0] / (1.0 - values[:, 1])
        landscape.scatter(
            effective_rate, losses, s=10, alpha=0.5, color=COLORS[method], label=f"{method} trials"
        )
    landscape.axhline(TARGET_LOSS, color="black", linestyle="--")
    landscape.set(
        xscale="log",
        yscale="log",
        xlabel="effective learning rate η / (1 − β)",
        ylabel="validation cross-entropy (nats)",
        title="Every trial of every seed",
    )
    landscape.legend()
    figure.tight_layout()
    return figure


def run(tiny: bool = False) -> StudyResult:
    size = TINY if tiny else FULL
    results = _search_all(_digits.load(), size)
    trials = {
        method: [trials_to_reach(run.best_so_far, TARGET_LOSS) for run in runs]
        for method, runs in results.items()
    }
    medians = {method: _median_trials(per_seed) for method, per_seed in trials.items()}
    random_losses = np.concatenate([run.losses for run in results["random"]])
    box_fraction = float(np.mean(random_losses <= TARGET_LOSS))
    final_best = {
        method: float(np.median([run.best_so_far[-1] for run in runs]))
        for method, runs in results.items()
    }

    def summary(method):
        reached = sum(t is not None for t in trials[method])
        median = medians[method]
        median_text = f"median {median:g} trials" if median is not None else "median > budget"
        return f"{method} {median_text} ({reached}/{size['seeds']} seeds reached it)"

    finding = (
        f"To reach validation loss <= {TARGET_LOSS} within {size['budget']} trials: "
        + "; ".join(summary(m) for m in ("bayesian", "random", "grid"))
        + f". {box_fraction:.1%} of the box reaches the target (random trials of all seeds); "
        f"the {len(results['grid'][0].losses)}-point grid's median best is "
        f"{final_best['grid']:.3f}, as its levels miss the narrow valley of η/(1 − β)."
    )
    figures = {
        "target_validation_loss": TARGET_LOSS,
        "budget": size["budget"],
        "seeds": size["seeds"],
        "train_steps_per_trial": size["train_steps"],
        "space": [dim._asdict() for dim in SPACE],
        "trials_to_target_per_seed": trials,
        "median_trials_to_target": medians,
        "median_final_best_loss": final_best,
        "fraction_of_box_reaching_target": box_fraction,
        "median_best_so_far_curve": {
            method: np.median([run.best_so_far for run in runs], axis=0).tolist()
            for method, runs in results.items()
        },
    }
    claim = (
        "13.3: grid search explodes combinatorially, random search finds good regions faster, "
        "and Bayesian optimization with a Gaussian process needs fewer total trials."
    )
    return StudyResult(claim, finding, figures, _plot(results, trials, size["budget"]))

"""The learning-rate finder (book 13.1.1): train once with an exponentially growing rate.

Train for one pass over T batches while η_t = η_min (η_max/η_min)^(t/T) grows by a constant
factor per batch (eq. 13.1, `core.schedules.lr_finder_ramp`), record the loss against η, stop
when it diverges, and read a rate off the curve where "the loss is still decreasing steeply but
not yet diverging" (13.1.1, step 4). The book leaves the smoothing, the stop and the reading rule
open; this module fixes them as fastai's `LRFinder` and PyTorch Lightning's `lr_find` do:

- Pairing. The loss recorded at step t is the batch-t loss at θ_t, before the update that uses
  η_t, and is paired with η_t (the references' convention). The first loss that reflects η_t is
  one batch later, so the curve lags by one ramp factor (η_max/η_min)^(1/T), e.g. 1.20× for
  1e-7..10 over 100 batches: far below the precision of any reading rule.
- Smoothing. Batch losses are noisy; the curve is their exponential moving average
  s_t = β s_{t−1} + (1 − β) L_t, s_{−1} = 0, with Adam's bias correction ŝ_t = s_t / (1 − β^{t+1})
  (eqs. 8.18-8.19), β = 0.98 by default (fastai's and Lightning's value). The average lags the
  raw loss by about β/(1 − β) = 49 steps, i.e. 49 log10(η_max/η_min)/T decades of η: a decade
  for the 300-step, six-decade ramp of `experiments/studies/lr_finder`.
- Divergence stop. Training stops after the first step with ŝ_t > 4 min_{u<=t} ŝ_u or a
  non-finite loss (the references' threshold): past that point the curve only says "too large".
- Reading rules (`suggest_learning_rates`), both after skipping the first 10% of the ramp
  (fastai's choice), where the average rests on a few batches. "minimum over ten": the rate at
  the minimum of ŝ, divided by 10. At the minimum the rate is already as large as training
  tolerates (the loss turns up right after); a decade below lies on the descending part. It
  reads the position of the minimum of a smoothed curve, which batch noise moves little.
  "steepest": the rate where dŝ/d log η is most negative before the minimum, literally step
  4's "decreasing steeply"; a derivative amplifies noise. On the digits MLP
  (`experiments/studies/lr_finder`) both land within 2.5× of the best fixed rate, and without
  the skip "steepest" picked the moving average's start-up wiggle at η ≈ 1e-5 in 3 of 5 seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from core import schedules
from core.checks import check_shapes

LossFn = Callable[[Any, Any], jax.Array]
"""(params, batch) -> [] the mean loss of one batch."""


class LRFinderCurve(NamedTuple):
    """The loss-vs-learning-rate curve of one finder run; entries from `num_steps` on are NaN.

    learning_rates: [T] η_t of eq. 13.1.
    losses: [T] L_t, the raw batch loss at step t.
    smoothed_losses: [T] ŝ_t, the bias-corrected moving average of L_0..L_t.
    num_steps: [] the steps run: T, or the step after which the run diverged.
    """

    learning_rates: jax.Array
    losses: jax.Array
    smoothed_losses: jax.Array
    num_steps: jax.Array


class LRSuggestions(NamedTuple):
    """Rates read off a finder curve.

    min_loss: [] η at the minimum of the smoothed loss.
    min_loss_over_ten: [] min_loss / 10.
    steepest: [] η at the steepest descent of the smoothed loss before its minimum.
    """

    min_loss: jax.Array
    min_loss_over_ten: jax.Array
    steepest: jax.Array


class _FinderState(NamedTuple):
    step: jax.Array
    params: Any
    optimizer_state: Any
    moving_average: jax.Array
    best_smoothed: jax.Array
    diverged: jax.Array
    losses: jax.Array
    smoothed_losses: jax.Array


def _check_finder_options(smoothing: float, divergence_factor: float) -> None:
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if not divergence_factor > 1:
        raise ValueError(f"divergence_factor must exceed 1, got {divergence_factor!r}")


def run_lr_finder(
    loss_fn: LossFn,
    params: Any,
    batches: Any,
    make_optimizer: Callable[[optax.Schedule], optax.GradientTransformation],
    min_learning_rate: float = 1e-7,
    max_learning_rate: float = 10.0,
    smoothing: float = 0.98,
    divergence_factor: float = 4.0,
) -> LRFinderCurve:
    """Runs the learning-rate finder of 13.1.1: one training pass under the ramp of eq. 13.1.

    Step t takes batch t, records L_t = loss_fn(θ_t, batch_t) and its smoothed value ŝ_t, and
    updates θ with the optimizer at η_t; the run stops early on divergence (see the module
    docstring). A `lax.while_loop`: jit it around a closure over `loss_fn` and
    `make_optimizer`.

    Args:
      loss_fn: (params, batch) -> [] mean batch loss, differentiable in params.
      params: the initial parameters θ_0 (a pytree).
      batches: a pytree whose leaves have a leading axis T, one batch per step (e.g.
        {"inputs": [T, B, D], "labels": [T, B]}); T is the length of the ramp.
      make_optimizer: schedule -> optimizer, e.g. `lambda lr: core.optim.momentum(lr, 0.9)`;
        it receives the ramp η_t as its learning rate.
      min_learning_rate, max_learning_rate: η_min > 0 and η_max > η_min of eq. 13.1.
      smoothing: β in [0, 1) of the moving average (0: no smoothing).
      divergence_factor: stop once ŝ_t exceeds this multiple of the best ŝ so far (> 1).

    Returns:
      The `LRFinderCurve`.
    """
    _check_finder_options(smoothing, divergence_factor)
    leading_sizes = {
        jnp.shape(leaf)[0] if jnp.ndim(leaf) else 0 for leaf in jax.tree.leaves(batches)
    }
    if len(leading_sizes) != 1 or 0 in leading_sizes:
        raise ValueError(
            f"batches must be a pytree of arrays sharing a leading axis T >= 1, got leading sizes "
            f"{sorted(leading_sizes)}"
        )
    (num_batches,) = leading_sizes
    ramp = schedules.lr_finder_ramp(min_learning_rate, max_learning_rate, num_batches)
    optimizer = make_optimizer(ramp)
    learning_rates = ramp(jnp.arange(num_batches))
    nan_curve = jnp.full(num_batches, jnp.nan, learning_rates.dtype)

    def keep_going(state: _FinderState) -> jax.Array:
        return (state.step < num_batches) & ~state.diverged

    def finder_step(state: _FinderState) -> _FinderState:
        batch = jax.tree.map(lambda leaf: leaf[state.step], batches)
        loss, gradients = jax.value_and_grad(loss_fn)(state.params, batch)
        updates, optimizer_state = optimizer.update(gradients, state.optimizer_state, state.params)
        moving_average = smoothing * state.moving_average + (1.0 - smoothing) * loss
        smoothed = moving_average / (1.0 - smoothing ** (state.step + 1.0))  # cf. eq. 8.18
        best_smoothed = jnp.minimum(state.best_smoothed, smoothed)
        diverged = ~jnp.isfinite(smoothed) | (smoothed > divergence_factor * best_smoothed)
        return _FinderState(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            optimizer_state=optimizer_state,
            moving_average=moving_average,
            best_smoothed=best_smoothed,
            diverged=diverged,
            losses=state.losses.at[state.step].set(loss),
            smoothed_losses=state.smoothed_losses.at[state.step].set(smoothed),
        )

    initial = _FinderState(
        step=jnp.zeros([], jnp.int32),
        params=params,
        optimizer_state=optimizer.init(params),
        moving_average=jnp.zeros([], learning_rates.dtype),
        best_smoothed=jnp.full([], jnp.inf, learning_rates.dtype),
        diverged=jnp.zeros([], bool),
        losses=nan_curve,
        smoothed_losses=nan_curve,
    )
    final = jax.lax.while_loop(keep_going, finder_step, initial)
    return LRFinderCurve(learning_rates, final.losses, final.smoothed_losses, final.step)


def suggest_learning_rates(curve: LRFinderCurve, skip_start: float = 0.1) -> LRSuggestions:
    """Reads the "minimum over ten" and "steepest" rates off a finder curve (13.1.1, step 4).

    Both rules ignore the first `skip_start` fraction of the ramp (fastai's 10%): there the
    moving average rests on a few batches, and its first wiggles are steeper than the real
    descent (measured in `experiments/studies/lr_finder`). The slope is the central difference
    dŝ/d log η at the steps after the skipped ones and before the minimum of ŝ, so it reads only
    recorded values; if the minimum is the first step read, "steepest" is that step's rate.

    Args:
      curve: from `run_lr_finder`.
      skip_start: fraction of the T steps ignored at the start, in [0, 1). If the run stopped
        earlier, only its last recorded step is read.

    Returns:
      The `LRSuggestions`.
    """
    check_shapes(
        learning_rates=(curve.learning_rates, ("T",)),
        losses=(curve.losses, ("T",)),
        smoothed_losses=(curve.smoothed_losses, ("T",)),
    )
    if not 0 <= skip_start < 1:
        raise ValueError(f"skip_start must be in [0, 1), got {skip_start!r}")
    steps = jnp.arange(curve.learning_rates.shape[0])
    first_read = jnp.minimum(int(skip_start * steps.shape[0]), curve.num_steps - 1)
    recorded = (steps < curve.num_steps) & jnp.isfinite(curve.smoothed_losses)
    smoothed = jnp.where(recorded, curve.smoothed_losses, 0.0)  # 0: never read past the minimum
    minimum_index = jnp.argmin(jnp.where(recorded & (steps >= first_read), smoothed, jnp.inf))
    slopes = jnp.gradient(smoothed, jnp.log(curve.learning_rates))
    descending = (steps >= first_read) & (steps < minimum_index)
    steepest_index = jnp.where(
        minimum_index > first_read, jnp.argmin(jnp.where(descending, slopes, jnp.inf)), first_read
    )
    min_loss = curve.learning_rates[minimum_index]
    return LRSuggestions(min_loss, min_loss / 10.0, curve.learning_rates[steepest_index])

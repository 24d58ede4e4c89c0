"""Learning-rate and loss-weight schedules as optax schedules (step count -> value).

Book 8.1.3, 13.1-13.2, 17.19, 17.69: step decay (13.2), exponential decay (13.3), polynomial
decay η₀(1 + t)^(−α) (8.1.3), cosine decay (8.1.3, 13.4), cosine with warm restarts (13.5),
linear warmup alone (13.6), joined to another schedule, and measured in micro-batches under
gradient accumulation (13.7), the learning-rate finder's exponential ramp (13.1) and KL-weight
annealing (17.19 per step, 17.69 per epoch).

Every schedule is a pure function of the step that works on Python ints and traced integer
arrays alike, so it can be jitted and passed as `learning_rate` to `core.optim` or optax.
Schedules that move between two values are written as the interpolation (1 − f)·a + f·b, equal to
the book's a + f·(b − a) but exact at the ends: the value at t = 0, T_warm, T or a restart point
is the printed endpoint to the last bit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax


def _as_float(step) -> jax.Array:
    return jnp.asarray(step, dtype=jnp.result_type(float))


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")


def _interpolate(start, end, fraction):
    """(1 − f)·start + f·end: start at f = 0 and end at f = 1 exactly."""
    return (1.0 - fraction) * start + fraction * end


def _cosine_fraction(elapsed, period):
    """½(1 + cos(π t / T)): 1 at t = 0, 0 at t = T (the cosine factor of eqs. 13.4, 13.5)."""
    return 0.5 * (1.0 + jnp.cos(jnp.pi * elapsed / period))


def _warmup_fraction(step, warmup_steps: int):
    """min(t, T_warm) / T_warm, the progress of a linear ramp (eqs. 13.6, 17.19)."""
    return jnp.minimum(_as_float(step), warmup_steps) / warmup_steps


def constant(value: float) -> optax.Schedule:
    """η_t = η for every step."""
    return lambda step: jnp.full(jnp.shape(step), value, dtype=jnp.result_type(float))


def step_decay(init_value: float, decay_factor: float, step_size: int) -> optax.Schedule:
    """η_t = η₀ · γ^⌊t / S⌋ (book eq. 13.2, 8.1.3).

    Args:
      init_value: η₀ > 0.
      decay_factor: γ ∈ (0, 1), e.g. 0.1.
      step_size: S > 0, steps (or epochs) between drops.
    """
    _check_positive("init_value", init_value)
    if not 0 < decay_factor < 1:
        raise ValueError(f"decay_factor must be in (0, 1), got {decay_factor!r}")
    _check_positive("step_size", step_size)
    return lambda step: init_value * decay_factor ** jnp.floor(_as_float(step) / step_size)


def exponential_decay(init_value: float, decay_rate: float) -> optax.Schedule:
    """η_t = η₀ · exp(−λ t) (book eq. 13.3).

    Args:
      init_value: η₀ > 0.
      decay_rate: λ > 0.
    """
    _check_positive("init_value", init_value)
    _check_positive("decay_rate", decay_rate)
    return lambda step: init_value * jnp.exp(-decay_rate * _as_float(step))


def polynomial_decay(init_value: float, power: float) -> optax.Schedule:
    """η_t = η₀ (1 + t)^(−α) (book 8.1.3), which decays forever and never reaches 0.

    Not the family of `optax.polynomial_schedule`, (η₀ − η_end)(1 − t/T)^p + η_end, which ends
    at η_end after T steps.

    Args:
      init_value: η₀ > 0.
      power: α > 0 (the book states α ∈ (0, 1]).
    """
    _check_positive("init_value", init_value)
    _check_positive("power", power)
    return lambda step: init_value * (1.0 + _as_float(step)) ** (-power)


def cosine_decay(peak_value: float, decay_steps: int, min_value: float = 0.0) -> optax.Schedule:
    """η_t = η_min + ½(η_max − η_min)(1 + cos(π t / T)) for t ≤ T, η_min after (8.1.3, 13.4).

    Equals `optax.cosine_decay_schedule(peak_value, decay_steps, alpha=min_value / peak_value)`:
    optax gives the floor as a fraction α of the peak, the book as a value η_min.

    Args:
      peak_value: η_max (η₀ in 13.4) > 0, the value at t = 0.
      decay_steps: T > 0, the step at which η_min is reached.
      min_value: η_min >= 0, the value from t = T on.
    """
    _check_positive("peak_value", peak_value)
    _check_positive("decay_steps", decay_steps)
    _check_non_negative("min_value", min_value)

    def schedule(step):
        elapsed = jnp.minimum(_as_float(step), decay_steps)
        return _interpolate(min_value, peak_value, _cosine_fraction(elapsed, decay_steps))

    return schedule


def _restart_start(index, first_period: float, period_multiplier: float):
    """t_i = T₀ (1 + m + ... + m^(i−1)), the first step of restart i."""
    if period_multiplier == 1:
        return first_period * index
    return first_period * (period_multiplier**index - 1.0) / (period_multiplier - 1.0)


def _restart_index(elapsed, first_period: float, period_multiplier: float):
    """The restart i with t_i <= t < t_{i+1}; the logarithm's rounding is corrected by ±1."""
    if period_multiplier == 1:
        return jnp.floor(elapsed / first_period)
    index = jnp.floor(
        jnp.log1p(elapsed * (period_multiplier - 1.0) / first_period) / math.log(period_multiplier)
    )
    index = jnp.where(
        elapsed < _restart_start(index, first_period, period_multiplier), index - 1, index
    )
    return jnp.where(
        elapsed >= _restart_start(index + 1, first_period, period_multiplier), index + 1, index
    )


def cosine_with_warm_restarts(
    peak_value: float,
    first_period: float,
    min_value: float = 0.0,
    period_multiplier: float = 1.0,
    peak_decay: float = 1.0,
) -> optax.Schedule:
    """SGDR: η_t = η_min + ½(η₀ γ^i − η_min)(1 + cos(π (t − t_i) / T_i)) (book eq. 13.5).

    Restart i starts at t_i = T₀ + T₀m + ... + T₀m^(i−1) and lasts T_i = T₀ m^i steps; its peak,
    reached exactly at t = t_i, is η₀ γ^i. With m = 1 the periods are equal.

    Args:
      peak_value: η₀ > 0, the first peak.
      first_period: T₀ > 0, the length of the first cycle.
      min_value: η_min >= 0, the value each cycle decays towards.
      period_multiplier: m >= 1, T_{i+1} = m T_i.
      peak_decay: γ ∈ (0, 1], the peak of restart i is η₀ γ^i.
    """
    _check_positive("peak_value", peak_value)
    _check_positive("first_period", first_period)
    _check_non_negative("min_value", min_value)
    if not period_multiplier >= 1:
        raise ValueError(f"period_multiplier must be >= 1, got {period_multiplier!r}")
    if not 0 < peak_decay <= 1:
        raise ValueError(f"peak_decay must be in (0, 1], got {peak_decay!r}")

    def schedule(step):
        elapsed = _as_float(step)
        index = _restart_index(elapsed, first_period, period_multiplier)
        start = _restart_start(index, first_period, period_multiplier)
        period = first_period * period_multiplier**index
        peak = peak_value * peak_decay**index
        return _interpolate(min_value, peak, _cosine_fraction(elapsed - start, period))

    return schedule


def linear_warmup(init_value: float, peak_value: float, warmup_steps: int) -> optax.Schedule:
    """η_t = η_min + (η₀ − η_min) t / T_warm for t ≤ T_warm, η₀ after (book eq. 13.6).

    Equals `optax.linear_schedule(init_value, peak_value, warmup_steps)`.

    Args:
      init_value: η_min >= 0, the value at t = 0.
      peak_value: η₀, the value from t = T_warm on.
      warmup_steps: T_warm > 0.
    """
    _check_non_negative("init_value", init_value)
    _check_positive("warmup_steps", warmup_steps)
    return lambda step: _interpolate(init_value, peak_value, _warmup_fraction(step, warmup_steps))


def with_linear_warmup(
    schedule: optax.Schedule, warmup_steps: int, init_value: float = 0.0
) -> optax.Schedule:
    """Linear warmup from `init_value` to schedule(0) over T_warm steps, then schedule(t − T_warm).

    "After T_warm iterations, switch to standard schedule" (13.6): the joined schedule is
    continuous at T_warm. `with_linear_warmup(cosine_decay(η₀, T − T_warm, η_end), T_warm, η_init)`
    equals `optax.warmup_cosine_decay_schedule(η_init, η₀, T_warm, T, η_end)`, whose
    `decay_steps` T counts the warmup too.

    Args:
      schedule: the schedule that follows warmup, started at its own step 0.
      warmup_steps: T_warm > 0.
      init_value: η_min >= 0, the value at t = 0.
    """
    _check_non_negative("init_value", init_value)
    _check_positive("warmup_steps", warmup_steps)

    def joined(step):
        warming = _interpolate(init_value, schedule(0), _warmup_fraction(step, warmup_steps))
        return jnp.where(step < warmup_steps, warming, schedule(step - warmup_steps))

    return joined


def accumulated_linear_warmup(
    init_value: float, peak_value: float, warmup_updates: int, accumulation_steps: int
) -> optax.Schedule:
    """Warmup over micro-batches under gradient accumulation (book eq. 13.7).

    η_t = η_min + (η₀ − η_min) t / (k T_warm), where t counts micro-batches and each optimizer
    update accumulates k of them, so warmup spans k·T_warm micro-batches = T_warm updates.

    Which counter a schedule sees: `optax.MultiSteps(opt, every_k_schedule=k)` steps the inner
    optimizer once per k micro-batches, so a schedule inside `opt` is evaluated at the update
    count n = 0, 1, ... . The update applied after micro-batches nk, ..., nk + k − 1 uses
    `linear_warmup(η_min, η₀, T_warm)(n)`, which is this schedule at t = nk, the micro-batch
    count when that accumulation window began. Use this function where the counter is the
    micro-batch (e.g. for logging per micro-batch); inside MultiSteps use `linear_warmup`.

    Args:
      init_value: η_min >= 0.
      peak_value: η₀.
      warmup_updates: T_warm > 0, warmup length in optimizer updates.
      accumulation_steps: k > 0, micro-batches per update.
    """
    _check_positive("accumulation_steps", accumulation_steps)
    return linear_warmup(init_value, peak_value, accumulation_steps * warmup_updates)


def lr_finder_ramp(min_value: float, max_value: float, total_steps: int) -> optax.Schedule:
    """η_t = η_min (η_max / η_min)^(t / T), the learning-rate finder's ramp (book eq. 13.1).

    Written as η_min^(1 − t/T) η_max^(t/T), the same value, exact at t = 0 and t = T. Not
    clamped: the finder stops at t = T.

    Args:
      min_value: η_min > 0, e.g. 1e-5.
      max_value: η_max > η_min.
      total_steps: T > 0, the number of batches of the ramp.
    """
    _check_positive("min_value", min_value)
    _check_positive("total_steps", total_steps)
    if not max_value > min_value:
        raise ValueError(f"max_value must exceed min_value {min_value!r}, got {max_value!r}")

    def schedule(step):
        fraction = _as_float(step) / total_steps
        return min_value ** (1.0 - fraction) * max_value**fraction

    return schedule


def kl_weight_annealing(
    target_weight: float, warmup_steps: int, initial_weight: float = 0.0
) -> optax.Schedule:
    """β(t) = min(1, t / t_anneal) · β_target (book eq. 17.19; per epoch e, eq. 17.69).

    A linear warmup of the KL weight: with `initial_weight` β₀ it is
    β₀ + (β_target − β₀) min(1, t / t_anneal), which is 17.19 for β₀ = 0 (the default).

    Args:
      target_weight: β_target >= 0.
      warmup_steps: t_anneal (or e_warmup when the step is the epoch) > 0.
      initial_weight: β₀ >= 0, the weight at t = 0.
    """
    _check_non_negative("target_weight", target_weight)
    return linear_warmup(initial_weight, target_weight, warmup_steps)

"""Chapter 13: learning-rate selection, schedules and warmup.

Book 13.1-13.2 (eqs. 13.1-13.7): the LR finder's ramp, step/exponential/cosine decay, SGDR,
linear warmup and warmup under gradient accumulation, computed with `core.schedules` (and
`core.optim.sgd` inside `optax.MultiSteps` for 13.7). 13.3 (hyperparameter search) prints no
numbers.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import optax

from core import optim, schedules
from experiments.book.records import Record, ambiguous, check, claim


def _values(schedule, steps) -> list[float]:
    """The schedule at integer `steps`, evaluated as traced steps in one vmapped call."""
    return jax.vmap(schedule)(jnp.asarray(list(steps))).tolist()


def _lr_finder_records() -> list[Record]:
    min_value, max_value, total_steps = 1e-5, 1.0, 100
    ramp = schedules.lr_finder_ramp(min_value, max_value, total_steps)
    ratios = [float(ramp(t + 1) / ramp(t)) for t in range(total_steps)]
    spread = max(ratios) - min(ratios)
    return [
        *check(
            "13.1.1 eq. 13.1",
            "η at t = 0 (η_min)",
            "1e-5",
            float(ramp(0)),
            note="lr_finder_ramp(1e-5, 1, T=100) at t = 0",
        ),
        *claim(
            "13.1.1 eq. 13.1",
            "exponential ramp",
            "η increases exponentially at each batch from η_min to η_max over T batches",
            f"η_max = 1, T = 100: η_T = {float(ramp(total_steps))}, per-batch factor "
            f"{ratios[0]:.6f} (spread {spread:.1e}) = (η_max/η_min)^(1/T)",
            holds=float(ramp(total_steps)) == max_value
            and abs(ratios[0] - (max_value / min_value) ** (1 / total_steps)) < 1e-12
            and spread < 1e-12,
        ),
    ]


def _decay_records() -> list[Record]:
    step = schedules.step_decay(0.1, 0.1, 30)
    step_values = _values(step, (0, 29, 30, 60))
    exponential = schedules.exponential_decay(0.1, 0.05)
    factors = [float(exponential(t + 1) / exponential(t)) for t in (0, 10, 100)]
    cosine = schedules.cosine_decay(0.1, 1000, 1e-4)
    cosine_values = _values(cosine, range(0, 1001))
    monotone = all(a >= b for a, b in itertools.pairwise(cosine_values))
    return [
        *claim(
            "13.1.2 eq. 13.2",
            "step decay with γ = 0.1",
            "η_0 γ^⌊t/S⌋: η drops by γ every S epochs",
            f"η_0 = 0.1, S = 30: η at t = 0, 29, 30, 60 = {[f'{v:.6g}' for v in step_values]}",
            holds=step_values == [0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1**2],
        ),
        *claim(
            "13.1.2 eq. 13.3",
            "exponential decay",
            "η_0 e^(−λt) with λ > 0 the decay rate",
            f"λ = 0.05: η_(t+1)/η_t = {[round(f, 12) for f in factors]} = e^(−0.05) at every t",
            holds=all(abs(f - float(jnp.exp(-0.05))) < 1e-12 for f in factors),
        ),
        *claim(
            "13.1.2 eq. 13.4",
            "cosine annealing",
            "smoothly decreases from η_0 to η_min over T iterations",
            f"η_0 = 0.1, η_min = 1e-4, T = 1000: η(0) = {cosine_values[0]}, "
            f"η(T) = {cosine_values[-1]}, non-increasing on [0, T]: {monotone}",
            holds=cosine_values[0] == 0.1 and cosine_values[-1] == 1e-4 and monotone,
        ),
    ]


def _sgdr_records() -> list[Record]:
    peak, first_period, multiplier, peak_decay = 0.1, 10, 2.0, 0.5
    sgdr = schedules.cosine_with_warm_restarts(
        peak, first_period, 0.0, period_multiplier=multiplier, peak_decay=peak_decay
    )
    starts = (0, 10, 30, 70)  # t_i = 10 (2^i − 1)
    peaks = _values(sgdr, starts)
    before_restart = _values(sgdr, (9, 29, 69))
    return claim(
        "13.1.2 eq. 13.5",
        "SGDR restarts",
        "restart i starts at t_i with peak η_0 γ^i (decreasing max learning rate), period T_i",
        f"η_0 = 0.1, γ = 0.5, T_0 = 10, T_(i+1) = 2T_i: η(t_i) at t_i = {list(starts)} = "
        f"{peaks}; η one step before each restart = {[round(v, 6) for v in before_restart]}",
        holds=peaks == [peak * peak_decay**i for i in range(4)]
        and all(before < after for before, after in zip(before_restart, peaks[1:], strict=True)),
    )


def _warmup_records() -> list[Record]:
    init_value, peak_value, warmup_steps = 1e-6, 1e-3, 100
    warmup = schedules.linear_warmup(init_value, peak_value, warmup_steps)
    ends = _values(warmup, (0, warmup_steps, 2 * warmup_steps))
    midpoint = float(warmup(warmup_steps // 2))
    joined = schedules.with_linear_warmup(
        schedules.cosine_decay(peak_value, 900, 0.0), warmup_steps, init_value
    )
    return claim(
        "13.2.1 eq. 13.6",
        "linear warmup",
        "η rises linearly from η_min at t = 0 to η_0 at T_warm, then the standard schedule",
        f"η_min = 1e-6, η_0 = 1e-3, T_warm = 100: η(0), η(100), η(200) = {ends}, "
        f"η(50) = {midpoint:.6g}; joined to cosine: η(100) = {float(joined(warmup_steps))}",
        holds=ends == [init_value, peak_value, peak_value]
        and abs(midpoint - (init_value + peak_value) / 2) < 1e-15
        and float(joined(warmup_steps)) == peak_value,
    )


def _accumulated_updates(accumulation_steps: int, warmup_updates: int, num_updates: int):
    """Learning rates applied by MultiSteps(sgd(linear_warmup)) at each optimizer update."""
    inner = optim.sgd(schedules.linear_warmup(0.0, 1e-3, warmup_updates))
    optimizer = optax.MultiSteps(inner, every_k_schedule=accumulation_steps)
    state = optimizer.init(jnp.zeros(()))
    applied = []
    for micro_batch in range(accumulation_steps * num_updates):
        update, state = optimizer.update(jnp.ones(()), state)  # gradient 1: update = −η
        if micro_batch % accumulation_steps == accumulation_steps - 1:
            applied.append(-float(update))
    return applied


def _accumulation_records() -> list[Record]:
    accumulation_steps, warmup_updates = 4, 5
    applied = _accumulated_updates(accumulation_steps, warmup_updates, warmup_updates + 2)
    per_micro_batch = schedules.accumulated_linear_warmup(
        0.0, 1e-3, warmup_updates, accumulation_steps
    )
    window_starts = [float(per_micro_batch(n * accumulation_steps)) for n in range(len(applied))]
    window_ends = [
        float(per_micro_batch(n * accumulation_steps + accumulation_steps - 1))
        for n in range(len(applied))
    ]
    start_error = max(abs(a - b) for a, b in zip(applied, window_starts, strict=True))
    end_error = max(abs(a - b) for a, b in zip(applied, window_ends, strict=True))
    return [
        *claim(
            "13.2.2 eq. 13.7",
            "warmup under gradient accumulation",
            "warmup spans the accumulated steps: denominator k·T_warm micro-batches",
            f"k = 4, T_warm = 5 updates, MultiSteps(sgd(linear_warmup(0, 1e-3, 5))): applied "
            f"η per update = {[round(a, 6) for a in applied]}; peak first applied at update "
            f"{applied.index(max(applied))}, i.e. after k·T_warm = 20 micro-batches; max "
            f"|applied − 13.7 at t = n·k| = {start_error:.1e}",
            holds=start_error < 1e-15 and applied.index(max(applied)) == warmup_updates,
        ),
        *ambiguous(
            "13.2.2 eq. 13.7",
            "which micro-batch t sets the rate of update n",
            "t counts micro-batches",
            f"t = n·k (window start) reproduces the applied rates exactly; t = n·k + k − 1 "
            f"(window end) is off by up to {end_error:.2e}",
            "The book leaves open which micro-batch of an accumulation window t refers to. "
            "optax.MultiSteps evaluates an inner schedule at the update count n, so "
            "linear_warmup over T_warm updates inside MultiSteps equals 13.7 at t = n·k.",
        ),
    ]


def records() -> list[Record]:
    return [
        *_lr_finder_records(),
        *_decay_records(),
        *_sgdr_records(),
        *_warmup_records(),
        *_accumulation_records(),
    ]

"""Tests of core.schedules against optax's schedules and the book's closed forms, with the values
at t = 0, T_warm, T and the restart points asserted exactly."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import optim, schedules

STEPS = jnp.arange(0, 240)


def _values(schedule, steps=STEPS):
    """The schedule on traced integer steps (jitted and vmapped) as a numpy array."""
    return np.asarray(jax.jit(jax.vmap(schedule))(steps))


def _optax_values(schedule):
    """An optax schedule on the same steps given as floats: optax evaluates int32 steps in
    float32 even under x64, which would cap the comparison at float32 resolution."""
    return _values(schedule, STEPS.astype(float))


def test_constant_is_the_value_at_every_step():
    values = _values(schedules.constant(0.3))
    np.testing.assert_array_equal(values, np.full(len(STEPS), 0.3, dtype=values.dtype))


def test_step_decay_equals_optax_staircase_exponential_decay(x64):
    ours = _values(schedules.step_decay(0.5, 0.1, 30))
    reference = _optax_values(optax.exponential_decay(0.5, 30, 0.1, staircase=True))
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


def test_step_decay_drops_exactly_at_multiples_of_the_step_size(x64):
    schedule = schedules.step_decay(0.5, 0.1, 30)
    assert [float(schedule(t)) for t in (0, 29, 30, 59, 60)] == [
        0.5,
        0.5,
        0.5 * 0.1,
        0.5 * 0.1,
        0.5 * 0.1**2,
    ]


@given(decay_rate=st.floats(1e-3, 0.5), step=st.integers(0, 500))
def test_exponential_decay_is_init_times_exp_minus_rate_t(decay_rate, step):
    with jax.enable_x64(True):
        value = float(schedules.exponential_decay(2.0, decay_rate)(step))
    assert value == pytest.approx(2.0 * math.exp(-decay_rate * step), rel=1e-12)


def test_exponential_decay_equals_optax_exponential_decay_with_rate_exp_minus_lambda(x64):
    ours = _values(schedules.exponential_decay(1.0, 0.05))
    reference = _optax_values(optax.exponential_decay(1.0, 1, math.exp(-0.05)))
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


@given(power=st.floats(0.05, 1.0), step=st.integers(0, 1000))
def test_polynomial_decay_is_init_times_one_plus_t_to_minus_alpha(power, step):
    with jax.enable_x64(True):
        value = float(schedules.polynomial_decay(0.1, power)(step))
    assert value == pytest.approx(0.1 * (1 + step) ** -power, rel=1e-12)


def test_polynomial_decay_is_not_optax_polynomial_schedule(x64):
    # The book's family decays like t^−α forever; optax's reaches end_value at transition_steps.
    ours = schedules.polynomial_decay(1.0, 1.0)
    optax_polynomial = optax.polynomial_schedule(1.0, 0.0, power=1.0, transition_steps=100)
    assert float(ours(0)) == float(optax_polynomial(0)) == 1.0
    assert float(ours(1)) == 0.5  # 1 / (1 + 1)
    assert float(optax_polynomial(1)) == pytest.approx(0.99)  # linear: 1 − 1/100
    assert float(ours(100)) == pytest.approx(1 / 101, rel=1e-12)
    assert float(optax_polynomial(100)) == 0.0


@pytest.mark.parametrize("min_value", [0.0, 0.01])
def test_cosine_decay_equals_optax_cosine_decay_with_alpha_as_fraction_of_peak(x64, min_value):
    ours = _values(schedules.cosine_decay(0.5, 200, min_value))
    reference = _optax_values(optax.cosine_decay_schedule(0.5, 200, alpha=min_value / 0.5))
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-15)


def test_cosine_decay_is_peak_at_zero_midpoint_at_half_and_min_from_t_on(x64):
    schedule = schedules.cosine_decay(0.5, 200, 0.01)
    assert float(schedule(0)) == 0.5
    assert float(schedule(100)) == pytest.approx(0.255, rel=1e-12)  # (η_max + η_min) / 2
    assert float(schedule(200)) == 0.01
    assert float(schedule(1000)) == 0.01


def test_sgdr_equals_optax_sgdr_schedule_with_equal_periods_and_decaying_peaks(x64):
    ours = _values(schedules.cosine_with_warm_restarts(1.0, 50, 0.0, peak_decay=0.5))
    cycles = [
        dict(init_value=0.5**i, peak_value=0.5**i, warmup_steps=0, decay_steps=50, end_value=0.0)
        for i in range(5)
    ]
    np.testing.assert_allclose(ours, _optax_values(optax.sgdr_schedule(cycles)), atol=1e-12)


def test_sgdr_equals_optax_sgdr_schedule_with_doubling_periods(x64):
    ours = _values(schedules.cosine_with_warm_restarts(1.0, 10, 0.1, period_multiplier=2.0))
    cycles = [
        dict(init_value=1.0, peak_value=1.0, warmup_steps=0, decay_steps=10 * 2**i, end_value=0.1)
        for i in range(5)
    ]
    np.testing.assert_allclose(ours, _optax_values(optax.sgdr_schedule(cycles)), atol=1e-12)


@given(
    restart=st.integers(0, 12),
    multiplier=st.sampled_from([1.0, 2.0, 3.0, 1.5]),
    first_period=st.sampled_from([1, 7, 10]),
)
def test_sgdr_restart_i_starts_exactly_at_its_peak_eta0_gamma_i(restart, multiplier, first_period):
    peak_decay = 0.8
    with jax.enable_x64(True):
        schedule = schedules.cosine_with_warm_restarts(
            1.0, first_period, 0.0, period_multiplier=multiplier, peak_decay=peak_decay
        )
        start = sum(first_period * multiplier**j for j in range(restart))  # t_i
        value = float(jax.jit(schedule)(jnp.asarray(start)))
        just_before = float(jax.jit(schedule)(jnp.asarray(start - 1e-6)))
    assert value == pytest.approx(peak_decay**restart, rel=1e-12)
    if restart > 0:  # the end of the previous cycle is (almost) η_min
        assert just_before < 1e-6


def test_linear_warmup_equals_optax_linear_schedule_and_hits_its_ends_exactly(x64):
    schedule = schedules.linear_warmup(1e-4, 3e-2, 100)
    np.testing.assert_allclose(
        _values(schedule), _optax_values(optax.linear_schedule(1e-4, 3e-2, 100)), rtol=1e-12
    )
    assert float(schedule(0)) == 1e-4
    assert float(schedule(100)) == 3e-2
    assert float(schedule(150)) == 3e-2
    assert float(schedule(50)) == pytest.approx(1e-4 + (3e-2 - 1e-4) * 0.5, rel=1e-12)  # eq. 13.6


def test_warmup_joined_to_cosine_equals_optax_warmup_cosine_decay_schedule(x64):
    warmup, total = 20, 200
    ours = schedules.with_linear_warmup(schedules.cosine_decay(1.0, total - warmup, 0.05), warmup)
    reference = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, total, 0.05)
    np.testing.assert_allclose(_values(ours), _optax_values(reference), rtol=1e-12, atol=1e-15)
    assert float(ours(0)) == 0.0
    assert float(ours(warmup)) == 1.0
    assert float(ours(total)) == 0.05


def test_warmup_joined_to_step_decay_is_continuous_at_the_warmup_end(x64):
    joined = schedules.with_linear_warmup(schedules.step_decay(0.2, 0.5, 10), 5, init_value=0.02)
    values = [float(joined(t)) for t in range(0, 17)]
    np.testing.assert_allclose(values[:6], np.linspace(0.02, 0.2, 6), rtol=1e-12)
    assert values[5:15] == [0.2] * 10
    assert values[15:] == [0.1, 0.1]


@pytest.mark.parametrize(("accumulation_steps", "warmup_updates"), [(4, 3), (1, 5)])
def test_warmup_inside_multisteps_uses_the_book_rate_at_the_window_start(
    x64, accumulation_steps, warmup_updates
):
    """Eq. 13.7: MultiSteps evaluates an inner schedule at the update count n, so
    linear_warmup over T_warm updates gives, at update n, the book's rate at micro-batch n·k."""
    init_value, peak_value = 0.01, 0.1
    inner = optim.sgd(schedules.linear_warmup(init_value, peak_value, warmup_updates))
    optimizer = optax.MultiSteps(inner, every_k_schedule=accumulation_steps)
    per_micro_batch = schedules.accumulated_linear_warmup(
        init_value, peak_value, warmup_updates, accumulation_steps
    )
    state = optimizer.init(jnp.zeros(()))
    update_fn = jax.jit(optimizer.update)
    num_updates = warmup_updates + 2
    for micro_batch in range(accumulation_steps * num_updates):
        update, state = update_fn(jnp.ones(()), state)  # gradient 1: update = −η
        update_index, position = divmod(micro_batch, accumulation_steps)
        if position == accumulation_steps - 1:
            window_start = update_index * accumulation_steps
            assert float(update) == pytest.approx(-float(per_micro_batch(window_start)), 1e-12)
        else:
            assert float(update) == 0.0
    # Warmup ends after k·T_warm micro-batches = T_warm updates.
    assert float(per_micro_batch(accumulation_steps * warmup_updates)) == peak_value


def test_accumulated_warmup_at_the_window_end_is_not_the_applied_rate(x64):
    # The 13.7 formula read at the last micro-batch of window n is larger than MultiSteps' rate.
    per_micro_batch = schedules.accumulated_linear_warmup(0.0, 0.1, 3, 4)
    per_update = schedules.linear_warmup(0.0, 0.1, 3)
    assert float(per_update(1)) == pytest.approx(float(per_micro_batch(4)), rel=1e-12)
    assert float(per_micro_batch(7)) == pytest.approx(0.1 * 7 / 12, rel=1e-12)
    assert float(per_micro_batch(7)) > float(per_update(1))


def test_lr_finder_ramp_equals_optax_exponential_decay_with_growth_rate(x64):
    ours = _values(schedules.lr_finder_ramp(1e-5, 10.0, 100))
    reference = _optax_values(optax.exponential_decay(1e-5, 100, 1e6))
    np.testing.assert_allclose(ours, reference, rtol=1e-12)


def test_lr_finder_ramp_starts_at_min_and_ends_at_max_exactly(x64):
    ramp = schedules.lr_finder_ramp(1e-5, 10.0, 100)
    assert float(ramp(0)) == 1e-5
    assert float(ramp(100)) == 10.0
    assert float(ramp(50)) == pytest.approx(math.sqrt(1e-5 * 10.0), rel=1e-12)  # geometric mean


@given(step=st.integers(0, 30000))
def test_kl_annealing_is_min_one_t_over_t_anneal_times_target(step):
    with jax.enable_x64(True):
        value = float(schedules.kl_weight_annealing(10.0, 10000)(step))
    assert value == pytest.approx(min(1.0, step / 10000) * 10.0, rel=1e-12, abs=1e-15)


def test_kl_annealing_per_epoch_gives_half_at_epoch_one_of_twenty(x64):
    # Eq. 17.69 with e_warmup = 20, β_target = 10 (17.9.3): β(1) = 0.5, not the text's 0.1.
    beta = schedules.kl_weight_annealing(10.0, 20)
    assert [float(beta(e)) for e in (1, 10, 20, 21, 100)] == [0.5, 5.0, 10.0, 10.0, 10.0]


def test_kl_annealing_with_initial_weight_starts_there(x64):
    beta = schedules.kl_weight_annealing(10.0, 19, initial_weight=0.1)
    assert float(beta(0)) == 0.1
    assert float(beta(19)) == 10.0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: schedules.step_decay(0.1, 1.5, 10), "decay_factor"),
        (lambda: schedules.step_decay(0.1, 0.5, 0), "step_size"),
        (lambda: schedules.exponential_decay(0.1, -1.0), "decay_rate"),
        (lambda: schedules.polynomial_decay(0.1, 0.0), "power"),
        (lambda: schedules.cosine_decay(0.1, 0), "decay_steps"),
        (lambda: schedules.cosine_decay(0.1, 10, -0.1), "min_value"),
        (lambda: schedules.cosine_with_warm_restarts(0.1, 10, period_multiplier=0.5), "period"),
        (lambda: schedules.cosine_with_warm_restarts(0.1, 10, peak_decay=1.5), "peak_decay"),
        (lambda: schedules.linear_warmup(0.0, 0.1, 0), "warmup_steps"),
        (lambda: schedules.accumulated_linear_warmup(0.0, 0.1, 10, 0), "accumulation_steps"),
        (lambda: schedules.lr_finder_ramp(1e-2, 1e-3, 10), "max_value"),
        (lambda: schedules.kl_weight_annealing(-1.0, 10), "target_weight"),
    ],
)
def test_bad_schedule_arguments_raise_value_error_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()

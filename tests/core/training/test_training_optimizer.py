"""The run's optimizer from config.optim, checked against optax's own transformations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.training.config import default_config
from core.training.optimizer import (
    learning_rate_schedule,
    make_optimizer,
    parameter_group_labels,
    set_learning_rate,
    update_ema,
)

LEARNING_RATE = 1e-2


def _params():
    keys = jax.random.split(jax.random.key(0), 4)
    return {
        "encoder": {"kernel": jax.random.normal(keys[0], (3, 4)), "bias": jnp.zeros(4)},
        "head": {"kernel": jax.random.normal(keys[1], (4, 2)), "bias": jnp.ones(2)},
    }


def _gradients(steps: int):
    """Gradients whose scale varies over 3 orders of magnitude, so clipping acts on some."""
    params = _params()
    generator = np.random.default_rng(1)
    return [
        jax.tree.map(
            lambda p, s=scale: jnp.asarray(s * generator.standard_normal(p.shape), jnp.float32),
            params,
        )
        for scale in np.geomspace(0.01, 10.0, steps)
    ]


def _optim_config(**changes):
    optim = default_config().optim
    optim.learning_rate = LEARNING_RATE
    for key, value in changes.items():
        optim[key] = value
    return optim


def _run(optimizer, params, gradients, learning_rate=None):
    """The parameters and state after one update per gradient (at `learning_rate` if given)."""

    @jax.jit
    def step(params, state, gradient):
        if learning_rate is not None:
            state = set_learning_rate(state, learning_rate)
        updates, state = optimizer.update(gradient, state, params)
        return optax.apply_updates(params, updates), state

    state = optimizer.init(params)
    for gradient in gradients:
        params, state = step(params, state, gradient)
    return params, state


def test_optimizer_equals_optax_clip_then_adamw_with_eps_outside_the_root():
    optim = _optim_config(grad_clip_norm=1.0, weight_decay=1e-3)
    gradients = _gradients(6)
    ours, _ = _run(make_optimizer(optim), _params(), gradients, LEARNING_RATE)
    reference = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(LEARNING_RATE, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-3),
    )
    expected, _ = _run(reference, _params(), gradients)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), ours, expected
    )


def test_matrices_mask_decays_only_weight_matrices_like_optax_mask():
    optim = _optim_config(grad_clip_norm=0.0, weight_decay=0.1, weight_decay_mask="matrices")
    gradients = _gradients(3)
    ours, _ = _run(make_optimizer(optim), _params(), gradients, LEARNING_RATE)
    mask = jax.tree.map(lambda p: p.ndim >= 2, _params())
    reference = optax.adamw(LEARNING_RATE, eps=1e-8, weight_decay=0.1, mask=mask)
    expected, _ = _run(reference, _params(), gradients)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), ours, expected
    )


def test_parameter_group_factor_is_that_groups_learning_rate_and_no_other():
    """Book 17.58-17.59, 17.70: the encoder group at 0.1x, the head at the base rate. Without
    global clipping the groups are independent, so each must follow optax.adamw at its own rate
    run on that group alone."""
    optim = _optim_config(grad_clip_norm=0.0, param_group_lr={"encoder": 0.1})
    gradients = _gradients(4)
    ours, _ = _run(make_optimizer(optim), _params(), gradients, LEARNING_RATE)
    for group, rate in (("encoder", 0.1 * LEARNING_RATE), ("head", LEARNING_RATE)):
        reference = optax.adamw(rate, eps=1e-8, weight_decay=1e-4)
        expected, _ = _run(reference, _params()[group], [g[group] for g in gradients])
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
            ours[group],
            expected,
        )


def test_factor_zero_freezes_a_group_and_keeps_no_moments_for_it():
    optim = _optim_config(param_group_lr={"encoder": 0.0})
    params = _params()
    trained, state = _run(make_optimizer(optim), params, _gradients(3), LEARNING_RATE)
    jax.tree.map(np.testing.assert_array_equal, trained["encoder"], params["encoder"])
    assert not np.allclose(trained["head"]["kernel"], params["head"]["kernel"])
    moment_shapes = {leaf.shape for leaf in jax.tree.leaves(state) if leaf.ndim}
    assert (3, 4) not in moment_shapes and (4, 2) in moment_shapes


def test_longest_matching_prefix_labels_a_parameter():
    labels = parameter_group_labels(_params(), {"encoder": 0.1, "encoder/kernel": 0.5})
    assert labels == {
        "encoder": {"kernel": "encoder/kernel", "bias": "encoder"},
        "head": {"kernel": "default", "bias": "default"},
    }


def test_prefix_matching_no_parameter_is_an_error_listing_the_names():
    with pytest.raises(
        ValueError, match=r"\['backbone'\] match no parameter.*\['encoder', 'head'\]"
    ):
        parameter_group_labels(_params(), {"backbone": 0.1})
    with pytest.raises(ValueError, match="match no parameter"):  # "enc" is not a path prefix
        parameter_group_labels(_params(), {"enc": 0.1})


def test_set_learning_rate_scales_the_adamw_step():
    """Adam's direction does not depend on η (8.20-8.21), so the first step at 2η is exactly
    twice the step at η."""
    optimizer = make_optimizer(_optim_config())
    params, gradient = _params(), _gradients(1)[0]
    state = optimizer.init(params)
    first_step = jax.jit(
        lambda rate: optimizer.update(gradient, set_learning_rate(state, rate), params)[0]
    )
    steps = [first_step(rate) for rate in (LEARNING_RATE, 2 * LEARNING_RATE)]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, 2 * a, rtol=1e-6), *steps)
    assert set_learning_rate(state, 0.5).hyperparams["learning_rate"].dtype == jnp.float32


@pytest.mark.parametrize("warmup_steps", [0, 10])
def test_cosine_schedule_equals_optax_warmup_cosine_decay(warmup_steps):
    optim = _optim_config()
    optim.schedule.name = "cosine"
    optim.schedule.warmup_steps = warmup_steps
    optim.schedule.min_learning_rate = 1e-4
    schedule = learning_rate_schedule(optim, num_steps=50)
    steps = jnp.arange(60)
    if warmup_steps:
        expected = optax.warmup_cosine_decay_schedule(0.0, LEARNING_RATE, 10, 50, 1e-4)(steps)
    else:
        expected = optax.cosine_decay_schedule(LEARNING_RATE, 50, alpha=1e-2)(steps)
    np.testing.assert_allclose(schedule(steps), expected, rtol=1e-6, atol=1e-12)


def test_constant_schedule_with_warmup_is_a_linear_ramp_then_constant():
    optim = _optim_config()
    optim.schedule.warmup_steps = 4
    schedule = learning_rate_schedule(optim, num_steps=50)
    values = np.asarray(schedule(jnp.arange(8)))
    np.testing.assert_allclose(values, LEARNING_RATE * np.minimum(np.arange(8) / 4, 1), rtol=1e-6)


@given(
    decay=st.sampled_from([0.0, 0.5, 0.9, 0.999]),
    iterates=st.lists(
        st.floats(-10, 10, allow_nan=False, allow_subnormal=False), min_size=1, max_size=8
    ),
)
def test_ema_is_the_bias_corrected_weighted_average_of_the_iterates(decay, iterates):
    """ema_n = Σ_i (1 − β) β^(n−i) θ_i / (1 − β^n), whatever ema_0 was.

    Tolerance: float32 1 − β^n loses log2(1 / (1 − β)) bits to cancellation, a relative error
    up to 2^-24 / (1 − β) = 6e-5 at β = 0.999."""
    ema = jnp.asarray(123.0)
    for count, value in enumerate(iterates, start=1):
        ema = update_ema(ema, jnp.asarray(value, jnp.float32), decay, count)
    n = len(iterates)
    weights = (1 - decay) * decay ** (n - np.arange(1, n + 1)) / (1 - decay**n)
    expected = float(np.dot(weights, iterates))
    np.testing.assert_allclose(float(ema), expected, rtol=2e-4, atol=1e-5)

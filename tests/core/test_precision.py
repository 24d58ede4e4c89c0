"""Floating-point formats, loss scaling in fp16/bf16, and skipping steps on overflow."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import precision

FP16, BF16 = jnp.float16, jnp.bfloat16
SMALL = 1e-4  # a normal fp16 number whose square, 1e-8, is below fp16's rounding-to-0 point


def _small_gradient_loss(weights, activations):
    """1e-4 · (a · w) computed in the dtype of `activations`: ∂/∂w = 1e-4 · a ≈ 1e-8.

    weights: [3] float32 parameters; activations: [3] in the compute dtype.
    """
    prediction = jnp.dot(activations, weights.astype(activations.dtype))
    return SMALL * prediction


def _small_gradient(dtype, loss_scale):
    activations = jnp.full(3, SMALL, dtype)
    grad_fn = precision.scaled_value_and_grad(_small_gradient_loss)
    _, grads, grads_finite = grad_fn(jnp.float32(loss_scale), jnp.ones(3), activations)
    # What float32 arithmetic gives from the same rounded inputs: fp16(1e-4)² = 1.00033e-8.
    exact = np.float32(jnp.asarray(SMALL, dtype)) ** 2
    return grads, grads_finite, exact


def test_fp16_and_bf16_format_limits():
    assert precision.float_format(FP16) == precision.FloatFormat(
        bits=16,
        significand_bits=11,
        smallest_subnormal=2.0**-24,
        smallest_normal=2.0**-14,
        largest=65504.0,
        epsilon=2.0**-10,
        zero_rounding_bound=2.0**-25,
    )
    bf16 = precision.float_format(BF16)
    f32 = precision.float_format(jnp.float32)
    assert (bf16.smallest_normal, bf16.significand_bits, bf16.epsilon) == (2.0**-126, 8, 2.0**-7)
    assert bf16.smallest_normal == f32.smallest_normal  # same 8-bit exponent range as float32


def test_fp16_stores_1e_5_as_a_subnormal_and_rounds_to_zero_only_below_2_to_minus_25():
    # Book 11.3.2 says gradients of ~1e-5 underflow to zero in fp16: they do not.
    assert precision.round_to(1e-5, FP16) == 168 * 2.0**-24 == 1.0013580322265625e-05
    assert precision.is_subnormal(1e-5, FP16)
    assert not precision.is_subnormal(1e-3, FP16)
    bound = precision.float_format(FP16).zero_rounding_bound
    assert precision.round_to(bound, FP16) == 0.0  # the tie rounds to even, i.e. to 0
    assert precision.round_to(np.nextafter(bound, 1.0), FP16) == 2.0**-24
    assert precision.round_to(2.9e-8, FP16) == 0.0


def test_fp16_keeps_a_1e_5_gradient_unscaled_but_float32_subnormals_flush_on_this_cpu():
    # XLA:CPU computes fp16 in float32 and rounds to fp16: subnormal results are kept.
    grad = jax.jit(jax.grad(lambda w, a: jnp.dot(a, w)))(jnp.ones(2, FP16), jnp.full(2, 1e-5, FP16))
    np.testing.assert_array_equal(grad, np.full(2, 1.0013580322265625e-05, np.float16))
    # float32 results below float32's smallest normal, by contrast, are flushed to zero.
    float32_product = jax.jit(jnp.multiply)(jnp.float32(1e-20), jnp.float32(1e-20))
    assert float32_product == 0.0


def test_fp16_gradient_of_1e_8_is_lost_without_scaling_and_kept_with_scale_2_to_15():
    grads, grads_finite, _ = _small_gradient(FP16, 1.0)
    assert grads_finite
    np.testing.assert_array_equal(grads, np.zeros(3))
    grads, grads_finite, exact = _small_gradient(FP16, 2.0**15)
    assert grads_finite
    assert grads.dtype == jnp.float32
    # Two fp16 roundings in the backward pass (2^15·1e-4, then ·1e-4): relative error ≤ 2·2^-11.
    np.testing.assert_allclose(grads, np.full(3, exact), rtol=2 * 2.0**-11)


def test_loss_scale_2_to_16_overflows_the_fp16_backward_pass_and_is_reported():
    # 2^16 = 65536 > 65504, so the scaled cotangent entering the fp16 graph is inf.
    grads, grads_finite, _ = _small_gradient(FP16, 2.0**16)
    assert not grads_finite
    assert not np.all(np.isfinite(grads))


def test_bf16_keeps_a_1e_8_gradient_without_scaling_but_has_fewer_significant_bits():
    grads, grads_finite, exact = _small_gradient(BF16, 1.0)
    assert grads_finite
    np.testing.assert_allclose(grads, np.full(3, exact), rtol=2 * 2.0**-8)
    assert precision.round_to(1.0 + 2.0**-9, BF16) == 1.0
    assert precision.round_to(1.0 + 2.0**-9, FP16) == 1.0 + 2.0**-9


def _mlp_loss(params, inputs):
    hidden = jnp.tanh(inputs @ params["w1"])
    return jnp.mean(jnp.square(hidden @ params["w2"] - 1.0))


_scaled_mlp_grad = jax.jit(precision.scaled_value_and_grad(_mlp_loss))
_mlp_value_and_grad = jax.jit(jax.value_and_grad(_mlp_loss))


@given(
    inputs=hnp.arrays(np.float32, (4, 3), elements=st.floats(-2, 2, width=32)),
    exponent=st.integers(0, 24),
)
def test_power_of_two_loss_scale_leaves_float32_gradients_bitwise_unchanged(inputs, exponent):
    params = {"w1": jnp.linspace(-1.0, 1.0, 15).reshape(3, 5), "w2": jnp.linspace(0.5, -0.5, 5)}
    value, grads, grads_finite = _scaled_mlp_grad(jnp.float32(2.0**exponent), params, inputs)
    expected_value, expected = _mlp_value_and_grad(params, inputs)
    assert grads_finite
    np.testing.assert_array_equal(value, expected_value)
    for leaf, expected_leaf in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(leaf, expected_leaf)


def test_has_aux_returns_the_unscaled_loss_and_the_aux():
    def loss_with_aux(w):
        return jnp.sum(w**2), {"norm": jnp.linalg.norm(w)}

    (loss, aux), grads, _ = precision.scaled_value_and_grad(loss_with_aux, has_aux=True)(
        jnp.float32(1024.0), jnp.array([3.0, 4.0])
    )
    assert loss == 25.0
    assert aux["norm"] == 5.0
    np.testing.assert_array_equal(grads, [6.0, 8.0])


def test_all_finite_detects_inf_and_nan_in_any_leaf():
    tree = {"a": jnp.ones(3), "b": (jnp.zeros(2), jnp.arange(3))}
    assert precision.all_finite(tree)
    assert not precision.all_finite({**tree, "a": jnp.array([1.0, jnp.inf, 0.0])})
    assert not precision.all_finite({**tree, "b": (jnp.array([jnp.nan, 0.0]), jnp.arange(3))})


def test_dynamic_loss_scale_skips_shrinks_and_grows_after_the_streak():
    config = precision.DynamicScaleConfig(growth_interval=3)
    state = precision.init_dynamic_loss_scale(8.0)
    flags = [True, True, False, True, True, True, True, False, False]
    expected = [(8, 1), (8, 2), (4, 0), (4, 1), (4, 2), (8, 0), (8, 1), (4, 0), (2, 0)]
    update = jax.jit(precision.update_dynamic_loss_scale, static_argnums=2)
    for flag, (scale, good_steps) in zip(flags, expected, strict=True):
        state = update(state, jnp.asarray(flag), config)
        assert (float(state.scale), int(state.good_steps)) == (scale, good_steps)


def test_dynamic_loss_scale_stays_within_min_and_max():
    config = precision.DynamicScaleConfig(growth_interval=1, min_scale=1.0, max_scale=4.0)
    state = precision.init_dynamic_loss_scale(2.0)
    for _ in range(3):
        state = precision.update_dynamic_loss_scale(state, jnp.asarray(True), config)
    assert float(state.scale) == 4.0
    for _ in range(5):
        state = precision.update_dynamic_loss_scale(state, jnp.asarray(False), config)
    assert float(state.scale) == 1.0


def test_apply_updates_if_finite_matches_optax_apply_if_finite():
    optimizer = optax.adam(0.1)
    reference = optax.apply_if_finite(optax.adam(0.1), max_consecutive_errors=100)
    params = {"w": jnp.array([1.0, -2.0])}
    opt_state = optimizer.init(params)
    reference_params, reference_state = params, reference.init(params)
    step = jax.jit(precision.apply_updates_if_finite, static_argnums=0)
    gradient_sequence = [[0.5, 1.0], [jnp.inf, 1.0], [0.2, -0.3], [jnp.nan, 0.0], [1.0, 1.0]]
    for gradient in gradient_sequence:
        grads = {"w": jnp.array(gradient)}
        before = params
        params, opt_state = step(optimizer, grads, precision.all_finite(grads), params, opt_state)
        updates, reference_state = reference.update(grads, reference_state, reference_params)
        reference_params = optax.apply_updates(reference_params, updates)
        np.testing.assert_allclose(params["w"], reference_params["w"], rtol=1e-6)
        if not np.all(np.isfinite(gradient)):
            np.testing.assert_array_equal(params["w"], before["w"])
    np.testing.assert_array_equal(opt_state[0].count, 3)  # only the finite steps counted


def test_jitted_fp16_train_step_skips_the_overflowing_step_then_trains():
    optimizer = optax.sgd(1e6)  # large enough that a 1e-8 gradient moves the weights
    config = precision.DynamicScaleConfig(growth_interval=10)
    activations = jnp.full(3, SMALL, FP16)

    @jax.jit
    def train_step(params, opt_state, scale_state):
        grad_fn = precision.scaled_value_and_grad(_small_gradient_loss)
        _, grads, grads_finite = grad_fn(scale_state.scale, params, activations)
        params, opt_state = precision.apply_updates_if_finite(
            optimizer, grads, grads_finite, params, opt_state
        )
        return (
            params,
            opt_state,
            precision.update_dynamic_loss_scale(scale_state, grads_finite, config),
        )

    params = jnp.ones(3)
    state = (params, optimizer.init(params), precision.init_dynamic_loss_scale(2.0**16))
    state = train_step(*state)
    np.testing.assert_array_equal(state[0], params)  # overflow: skipped
    assert float(state[2].scale) == 2.0**15
    state = train_step(*state)
    np.testing.assert_allclose(state[0], 1.0 - 1e6 * 1.00033e-8, rtol=1e-4)
    assert int(state[2].good_steps) == 1


def test_policy_casts_floating_leaves_only():
    policy = precision.mixed_precision_policy(BF16)
    tree = {"w": jnp.ones(2), "step": jnp.arange(2), "mask": jnp.array([True, False])}
    cast = policy.cast_to_compute(tree)
    assert cast["w"].dtype == BF16
    assert cast["step"].dtype == tree["step"].dtype
    assert cast["mask"].dtype == jnp.bool_
    assert policy.cast_to_output(cast)["w"].dtype == jnp.float32
    assert policy.cast_to_param(cast)["w"].dtype == jnp.float32


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="compute_dtype must be a floating dtype, got int32"):
        precision.Policy(compute_dtype=jnp.int32)
    with pytest.raises(ValueError, match=r"backoff_factor must be in \(0, 1\)"):
        precision.DynamicScaleConfig(backoff_factor=1.5)
    with pytest.raises(ValueError, match="growth_interval must be >= 1"):
        precision.DynamicScaleConfig(growth_interval=0)
    with pytest.raises(ValueError, match=r"loss_scale must be a scalar, got shape \[2\]"):
        precision.scale_loss(jnp.float32(1.0), jnp.ones(2))

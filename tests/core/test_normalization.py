"""Normalization layers against flax.linen, numpy statistics and the identities between them."""

import flax.linen as nn
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import normalization

FEATURE_MAP_SHAPES = [(2, 3, 3, 6), (3, 5, 6)]  # [B, H, W, C] images, [B, T, C] sequences
VALUES = st.floats(-10.0, 10.0, allow_nan=False, width=32)


def _params(num_channels, seed=0):
    scale_key, bias_key = jax.random.split(jax.random.key(seed))
    scale = 1.0 + 0.5 * jax.random.normal(scale_key, (num_channels,))
    bias = jax.random.normal(bias_key, (num_channels,))
    return scale, bias


def _flax_params(scale, bias):
    return {"params": {"scale": scale, "bias": bias}}


def _numpy_normalize(x, axes, epsilon):
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)  # ddof=0: the biased variance of eq. 7.12
    return (x - mean) / np.sqrt(var + epsilon)


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 3, 6)])
def test_batch_norm_train_matches_flax_outputs_and_running_stats_over_three_steps(x64, shape):
    num_channels = shape[-1]
    scale, bias = _params(num_channels)
    momentum, epsilon = 0.9, 1e-5
    flax_bn = nn.BatchNorm(
        use_running_average=False, momentum=momentum, epsilon=epsilon, use_fast_variance=False
    )
    flax_stats = {"mean": jnp.zeros(num_channels), "var": jnp.ones(num_channels)}
    running = normalization.init_running_stats(num_channels, jnp.float64)
    for step in range(3):
        x = 3.0 + 2.0 * jax.random.normal(jax.random.key(step), shape, jnp.float64)
        y, running = normalization.batch_norm_train(
            x, scale, bias, running, momentum=momentum, epsilon=epsilon
        )
        expected, updated = flax_bn.apply(
            {**_flax_params(scale, bias), "batch_stats": flax_stats}, x, mutable=["batch_stats"]
        )
        flax_stats = updated["batch_stats"]
        np.testing.assert_allclose(y, expected, atol=1e-10)
        np.testing.assert_allclose(running.mean, flax_stats["mean"], atol=1e-12)
        np.testing.assert_allclose(running.var, flax_stats["var"], atol=1e-12)


def test_batch_norm_eval_matches_flax_with_running_average(x64):
    scale, bias = _params(6)
    running = normalization.RunningStats(
        jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float64), jnp.linspace(0.5, 2.0, 6, dtype=jnp.float64)
    )
    x = jax.random.normal(jax.random.key(1), (4, 3, 3, 6), jnp.float64)
    y = normalization.batch_norm_eval(x, scale, bias, running, epsilon=1e-3)
    variables = {**_flax_params(scale, bias), "batch_stats": running._asdict()}
    expected = nn.BatchNorm(use_running_average=True, epsilon=1e-3).apply(variables, x)
    np.testing.assert_allclose(y, expected, atol=1e-12)


def test_running_variance_accumulates_the_biased_batch_variance(x64):
    # eq. 14.4 with σ_B² of eq. 7.12 (divide by m_B), as flax; PyTorch would add m_B/(m_B-1) σ_B².
    x = jnp.array([[0.10], [0.26], [0.08], [0.22]], jnp.float64)  # book 7.4.2
    running = normalization.init_running_stats(1, jnp.float64)
    _, updated = normalization.batch_norm_train(x, jnp.ones(1), jnp.zeros(1), running, momentum=0.9)
    biased = np.var(np.asarray(x), ddof=0)
    np.testing.assert_allclose(updated.var, [0.9 * 1.0 + 0.1 * biased], rtol=1e-12)
    np.testing.assert_allclose(updated.mean, [0.1 * 0.165], rtol=1e-12)
    assert not np.isclose(updated.var[0], 0.9 + 0.1 * np.var(np.asarray(x), ddof=1))


def test_running_mean_of_a_constant_batch_mean_approaches_it_as_one_minus_alpha_to_the_n(x64):
    # Closed form of eq. 14.4 from μ_run = 0: after n steps μ_run = (1 - α^n) μ_B.
    x = jnp.array([[1.0, -2.0], [3.0, 4.0]], jnp.float64)  # μ_B = [2, 1]
    running = normalization.init_running_stats(2, jnp.float64)
    step = jax.jit(lambda r: normalization.batch_norm_train(x, jnp.ones(2), jnp.zeros(2), r)[1])
    for _ in range(10):
        running = step(running)
    np.testing.assert_allclose(running.mean, (1 - 0.9**10) * np.array([2.0, 1.0]), rtol=1e-12)


@given(x=hnp.arrays(np.float32, (3, 5, 8), elements=VALUES))
def test_layer_norm_matches_flax_layer_norm(x):
    scale, bias = _params(8)
    y = normalization.layer_norm(x, scale, bias, epsilon=1e-3)
    # flax's default E[x²] - E[x]² cancels catastrophically in float32 (e.g. a row of 7s with one
    # 6.8); its two-pass option is the same formula as eq. 14.5.
    flax_layer_norm = nn.LayerNorm(epsilon=1e-3, use_fast_variance=False)
    expected = flax_layer_norm.apply(_flax_params(scale, bias), x)
    np.testing.assert_allclose(y, expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize(("shape", "num_groups"), [((2, 3, 3, 6), 3), ((3, 5, 8), 4)])
def test_group_norm_matches_flax_group_norm_channels_last(x64, shape, num_groups):
    scale, bias = _params(shape[-1])
    x = 1.0 + 3.0 * jax.random.normal(jax.random.key(2), shape, jnp.float64)
    y = normalization.group_norm(x, scale, bias, num_groups=num_groups, epsilon=1e-5)
    flax_gn = nn.GroupNorm(num_groups=num_groups, epsilon=1e-5, use_fast_variance=False)
    np.testing.assert_allclose(y, flax_gn.apply(_flax_params(scale, bias), x), atol=1e-10)


@pytest.mark.parametrize("shape", FEATURE_MAP_SHAPES)
def test_instance_norm_matches_flax_instance_norm(x64, shape):
    scale, bias = _params(shape[-1])
    x = jax.random.normal(jax.random.key(3), shape, jnp.float64)
    y = normalization.instance_norm(x, scale, bias, epsilon=1e-5)
    flax_in = nn.InstanceNorm(epsilon=1e-5, use_fast_variance=False)
    np.testing.assert_allclose(y, flax_in.apply(_flax_params(scale, bias), x), atol=1e-10)


@given(x=hnp.arrays(np.float32, FEATURE_MAP_SHAPES[0], elements=VALUES))
def test_instance_norm_equals_group_norm_with_one_group_per_channel(x):
    scale, bias = _params(6)
    instance = normalization.instance_norm(x, scale, bias)
    grouped = normalization.group_norm(x, scale, bias, num_groups=6)
    np.testing.assert_allclose(instance, grouped, atol=1e-5, rtol=1e-5)


@given(x=hnp.arrays(np.float32, (4, 6), elements=VALUES))
def test_layer_norm_equals_group_norm_with_one_group_on_vectors(x):
    scale, bias = _params(6)
    layer = normalization.layer_norm(x, scale, bias)
    grouped = normalization.group_norm(x, scale, bias, num_groups=1)
    np.testing.assert_allclose(layer, grouped, atol=1e-5, rtol=1e-5)


def _standardizing_cases(x):
    """(name, y, x, axes) with γ = 1, β = 0; group norm viewed as [B, H, W, G, C/G]."""
    ones, zeros = jnp.ones(x.shape[-1]), jnp.zeros(x.shape[-1])
    running = normalization.init_running_stats(x.shape[-1], x.dtype)
    grouped_shape = (*x.shape[:-1], 2, x.shape[-1] // 2)
    grouped = normalization.group_norm(x, ones, zeros, num_groups=2).reshape(grouped_shape)
    return [
        ("batch", normalization.batch_norm_train(x, ones, zeros, running)[0], x, (0, 1, 2)),
        ("layer", normalization.layer_norm(x, ones, zeros), x, (3,)),
        ("instance", normalization.instance_norm(x, ones, zeros), x, (1, 2)),
        ("group", grouped, x.reshape(grouped_shape), (1, 2, 4)),
    ]


def test_each_method_standardizes_over_its_own_axes(x64):
    x = 5.0 + 2.0 * jax.random.normal(jax.random.key(4), (2, 3, 3, 6), jnp.float64)
    for name, y, inputs, axes in _standardizing_cases(x):
        np.testing.assert_allclose(y, _numpy_normalize(inputs, axes, 1e-5), atol=1e-12)
        np.testing.assert_allclose(np.mean(y, axis=axes), 0.0, atol=1e-12, err_msg=name)
        variance = np.var(np.asarray(inputs), axis=axes)
        np.testing.assert_allclose(  # var of ẑ is σ²/(σ² + ε), 1 up to ε
            np.var(y, axis=axes), variance / (variance + 1e-5), rtol=1e-10, err_msg=name
        )


def test_eval_mode_normalizes_each_sample_alone_and_train_mode_does_not():
    scale, bias = _params(4)
    running = normalization.RunningStats(jnp.array([0.5, -1.0, 2.0, 0.0]), jnp.full(4, 4.0))
    batch = jax.random.normal(jax.random.key(5), (8, 4))
    other_batch = batch.at[1:].set(100.0)
    evaluated = normalization.batch_norm_eval(batch, scale, bias, running)
    np.testing.assert_allclose(
        evaluated[0], normalization.batch_norm_eval(other_batch, scale, bias, running)[0]
    )
    expected = scale * (batch - running.mean) / np.sqrt(running.var + 1e-5) + bias
    np.testing.assert_allclose(evaluated, expected, rtol=1e-5, atol=1e-6)
    trained, _ = normalization.batch_norm_train(batch, scale, bias, running)
    trained_other, _ = normalization.batch_norm_train(other_batch, scale, bias, running)
    assert not np.allclose(trained[0], trained_other[0], atol=1e-2)


def test_gradients_are_finite_and_output_is_beta_for_constant_inputs():
    x = jnp.full((4, 3, 3, 6), 2.5)
    scale, bias = _params(6)
    running = normalization.init_running_stats(6)
    layers = {
        "batch": lambda x, s, b: normalization.batch_norm_train(x, s, b, running)[0],
        "layer": normalization.layer_norm,
        "group": lambda x, s, b: normalization.group_norm(x, s, b, num_groups=3),
        "instance": normalization.instance_norm,
    }
    weights = jax.random.normal(jax.random.key(6), x.shape)
    for name, layer in layers.items():
        np.testing.assert_allclose(layer(x, scale, bias), jnp.broadcast_to(bias, x.shape))
        grad_fn = jax.grad(lambda x, s, b, f=layer: jnp.sum(weights * f(x, s, b)), (0, 1, 2))
        grads = jax.jit(grad_fn)(x, scale, bias)
        for grad in grads:
            assert np.all(np.isfinite(grad)), name


def test_two_pass_variance_survives_a_large_mean_in_float32():
    x = (1e4 + jax.random.normal(jax.random.key(10), (256, 2))).astype(jnp.float32)
    _, var = normalization.moments(x, (0,))
    reference = np.var(np.asarray(x, np.float64), axis=0, keepdims=True)
    np.testing.assert_allclose(var, reference, rtol=1e-3)
    mean_of_squares_minus_square = np.mean(np.square(x), axis=0) - np.square(np.mean(x, axis=0))
    assert np.max(np.abs(mean_of_squares_minus_square - reference[0]) / reference[0]) > 0.1


def test_statistics_of_half_precision_inputs_are_computed_in_float32():
    x = (1000.0 + jnp.arange(16.0)).reshape(8, 2).astype(jnp.float16)
    mean, var = normalization.moments(x, (0,))
    assert mean.dtype == jnp.float32
    np.testing.assert_allclose(var, np.var(np.asarray(x, np.float64), axis=0, keepdims=True))


def test_flax_modules_share_variable_names_and_outputs_with_flax_linen():
    x = jax.random.normal(jax.random.key(7), (4, 3, 3, 6))
    pairs = [
        (normalization.LayerNorm(epsilon=1e-3), nn.LayerNorm(epsilon=1e-3), {}),
        (
            normalization.GroupNorm(num_groups=2, epsilon=1e-3),
            nn.GroupNorm(num_groups=2, epsilon=1e-3),
            {},
        ),
        (normalization.InstanceNorm(epsilon=1e-3), nn.InstanceNorm(epsilon=1e-3), {}),
        (normalization.BatchNorm(), nn.BatchNorm(use_running_average=True), {"train": False}),
    ]
    for ours, theirs, kwargs in pairs:
        variables = theirs.init(jax.random.key(8), x)
        variables = jax.tree.map(lambda v: v + 0.3, variables)  # γ, β, μ_run, σ²_run ≠ defaults
        assert jax.tree.structure(ours.init(jax.random.key(8), x, **kwargs)) == (
            jax.tree.structure(variables)
        )
        np.testing.assert_allclose(
            ours.apply(variables, x, **kwargs), theirs.apply(variables, x), atol=1e-4
        )


def test_batch_norm_module_updates_running_stats_only_when_training():
    x = 2.0 + jax.random.normal(jax.random.key(9), (16, 3))
    module = normalization.BatchNorm(momentum=0.8)
    variables = module.init(jax.random.key(0), x, train=True)
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], np.zeros(3))
    _, updated = module.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.2 * np.mean(x, axis=0), rtol=1e-5)
    _, unchanged = module.apply(variables, x, train=False, mutable=["batch_stats"])
    np.testing.assert_array_equal(unchanged["batch_stats"]["mean"], np.zeros(3))


def test_bad_inputs_raise_value_errors_naming_the_problem():
    x = jnp.ones((2, 4, 4, 6))
    ones, zeros = jnp.ones(6), jnp.zeros(6)
    with pytest.raises(ValueError, match="num_groups must be a positive divisor of the 6"):
        normalization.group_norm(x, ones, zeros, num_groups=4)
    with pytest.raises(ValueError, match=r"scale must have shape \[C\] with C=6"):
        normalization.layer_norm(x, jnp.ones(5), zeros)
    with pytest.raises(ValueError, match="x must have rank >= 3"):
        normalization.instance_norm(jnp.ones((2, 6)), ones, zeros)
    with pytest.raises(ValueError, match=r"running_var must have shape \[6\]"):
        running = normalization.RunningStats(jnp.zeros(6), jnp.ones(5))
        normalization.batch_norm_eval(x, ones, zeros, running)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        normalization.batch_norm_train(
            x, ones, zeros, normalization.init_running_stats(6), momentum=1.5
        )

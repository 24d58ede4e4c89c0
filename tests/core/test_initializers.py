"""Initializers against jax.nn.initializers, orthogonality, and the 50-layer ReLU depth study."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import initializers

KERNEL_SHAPES = [(64, 32), (3, 3, 16, 32), (5, 24, 40)]

# (ours, jax reference): the normal ones are the same construction, so equal sample for sample.
SAME_AS_JAX = [
    (initializers.he_normal(), jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")),
    (initializers.he_uniform(), jax.nn.initializers.variance_scaling(2.0, "fan_in", "uniform")),
    (initializers.xavier_normal(), jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal")),
    (initializers.xavier_uniform(), jax.nn.initializers.glorot_uniform()),
    (initializers.lecun_normal(), jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")),
]


@pytest.mark.parametrize("shape", KERNEL_SHAPES)
@pytest.mark.parametrize(
    ("ours", "reference"),
    SAME_AS_JAX,
    ids=["he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "lecun_normal"],
)
def test_variance_scaling_initializers_equal_jax_sample_for_sample(shape, ours, reference):
    key = jax.random.key(0)
    np.testing.assert_allclose(ours(key, shape), reference(key, shape), rtol=1e-6, atol=1e-7)


def test_fans_read_flax_kernel_and_conv_layouts():
    assert initializers.fans((64, 32)) == (64, 32)
    assert initializers.fans((3, 3, 16, 32)) == (9 * 16, 9 * 32)
    assert initializers.fans((32, 64), in_axis=-1, out_axis=-2) == (64, 32)  # book W [n_out, n_in]


def test_he_normal_uses_n_in_for_the_book_layout_w_out_by_in():
    # Book W^(ℓ) ∈ R^{n_ℓ × n_{ℓ-1}}: Var = 2 / n_{ℓ-1} = 2/1024, not 2/64.
    weights = initializers.he_normal(in_axis=-1, out_axis=-2)(jax.random.key(1), (64, 1024))
    reference = jax.nn.initializers.variance_scaling(
        2.0, "fan_in", "normal", in_axis=-1, out_axis=-2
    )(jax.random.key(1), (64, 1024))
    np.testing.assert_array_equal(weights, reference)
    # 65536 draws: the sample variance has relative standard error sqrt(2/65536) = 0.55%.
    np.testing.assert_allclose(np.var(weights), 2.0 / 1024, rtol=0.03)


def test_he_normal_has_the_variance_of_jax_truncated_he_normal_but_heavier_tails():
    key, shape = jax.random.key(2), (512, 512)
    ours = initializers.he_normal()(key, shape)
    truncated = jax.nn.initializers.he_normal()(key, shape)
    # 262144 draws: relative standard error of a sample variance sqrt(2/262144) = 0.28%.
    np.testing.assert_allclose(np.var(ours), 2.0 / 512, rtol=0.015)
    np.testing.assert_allclose(np.var(truncated), 2.0 / 512, rtol=0.015)
    truncated_limit = 2.0 * math.sqrt(2.0 / 512) / 0.87962566103423978
    assert np.max(np.abs(truncated)) <= truncated_limit
    assert np.max(np.abs(ours)) > truncated_limit  # P(|N| > 2.27σ) = 2.3% of 262144 draws


def test_uniform_initializers_stay_within_their_limits():
    key, shape = jax.random.key(3), (200, 100)
    he_limit = math.sqrt(6.0 / 200)
    xavier_limit = math.sqrt(6.0 / 300)
    assert np.max(np.abs(initializers.he_uniform()(key, shape))) <= he_limit
    assert np.max(np.abs(initializers.xavier_uniform()(key, shape))) <= xavier_limit


@pytest.mark.parametrize("shape", [*KERNEL_SHAPES, (8, 64)])
@pytest.mark.parametrize("column_axis", [-1, 0])
def test_orthogonal_equals_jax_orthogonal_and_is_orthonormal_times_gain(shape, column_axis):
    key = jax.random.key(4)
    weights = initializers.orthogonal(gain=1.5, column_axis=column_axis)(key, shape)
    reference = jax.nn.initializers.orthogonal(scale=1.5, column_axis=column_axis)(key, shape)
    np.testing.assert_allclose(weights, reference, atol=1e-6)
    matrix = np.moveaxis(np.asarray(weights), column_axis, -1).reshape(-1, shape[column_axis])
    gram = matrix.T @ matrix if matrix.shape[0] >= matrix.shape[1] else matrix @ matrix.T
    np.testing.assert_allclose(gram, 1.5**2 * np.eye(len(gram)), atol=1e-5)


def test_square_orthogonal_matrix_has_spectral_radius_equal_to_gain():
    # Book 15.7.2: the spectral radius sets the growth rate; orthogonal init fixes it at gain.
    weights = initializers.orthogonal(gain=0.9)(jax.random.key(5), (32, 32))
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(np.asarray(weights))), 0.9, rtol=1e-5)


def test_initializers_plug_into_flax_dense():
    x = jnp.ones((2, 16))
    ours = nn.Dense(8, kernel_init=initializers.he_normal()).init(jax.random.key(6), x)
    reference = nn.Dense(
        8, kernel_init=jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    ).init(jax.random.key(6), x)
    np.testing.assert_array_equal(ours["params"]["kernel"], reference["params"]["kernel"])


def test_depth_study_log_moments_equal_an_unrescaled_float64_forward_pass(x64):
    inputs = jax.random.normal(jax.random.key(7), (16, 32), jnp.float64)
    key, init = jax.random.key(8), initializers.normal(1.0)
    moments = initializers.relu_second_moments(key, inputs, init, 5)
    activations = inputs
    for layer, layer_key in enumerate(jax.random.split(key, 5)):
        preactivations = activations @ init(layer_key, (32, 32), jnp.float64)
        activations = np.maximum(preactivations, 0.0)
        np.testing.assert_allclose(
            moments.preactivation[layer], np.log10(np.mean(preactivations**2)), rtol=1e-12
        )
        np.testing.assert_allclose(
            moments.activation[layer], np.log10(np.mean(activations**2)), rtol=1e-12
        )


WIDTH, DEPTH = 256, 50
# Per layer, E[z_ℓ²]/E[z_{ℓ-1}²] = n Var[w] E[ReLU(z)²]/E[z²] = n Var[w] / 2 in expectation:
# 1 for He, 1/2 for std 1/sqrt(n), n/2 = 128 for std 1. At finite width the ratio fluctuates:
# for one input it is a mean of n iid terms ReLU(z_j)² / (E[z²]/2) with relative variance 5, so
# Var[ln ratio] ≈ 5/n per layer. Over the 49 steps from layer 1 to 50 at n = 256, log10 of the
# total He ratio has σ = sqrt(5·49/256)/ln 10 = 0.43 and drifts by about -σ²·ln(10)/2 = -0.2
# (over 200 seeds with a batch of 64 we measured mean -0.21, σ 0.43). The per-layer mean of the
# log10 ratios then has σ = 0.43/49 = 0.009, so ±0.05 is a > 5σ band for every init.
STUDY_CASES = [
    ("he", initializers.he_normal(), 0.0),
    ("std 1/sqrt(n)", initializers.lecun_normal(), math.log10(0.5)),
    ("std 1", initializers.normal(1.0), math.log10(WIDTH / 2)),
]


@pytest.mark.parametrize(
    ("name", "init", "log10_ratio_per_layer"), STUDY_CASES, ids=[case[0] for case in STUDY_CASES]
)
def test_relu_depth_study_per_layer_ratio_is_n_var_w_over_two(name, init, log10_ratio_per_layer):
    inputs = jax.random.normal(jax.random.key(9), (64, WIDTH))
    moments = initializers.relu_second_moments(jax.random.key(10), inputs, init, DEPTH)
    per_layer = np.diff(np.asarray(moments.preactivation)).mean()
    np.testing.assert_allclose(per_layer, log10_ratio_per_layer, atol=0.05, err_msg=name)
    total = moments.preactivation[-1] - moments.preactivation[0]
    if name == "he":
        assert abs(total) < 1.9  # drift 0.2 + 4σ = 1.9: He stays within a factor 10^1.9 < 80
    elif name == "std 1/sqrt(n)":
        assert total < -12  # 2^-49 ≈ 1.8e-15 expected: the signal vanishes
    else:
        assert total > 100  # 128^49 ≈ 1e103 expected: far past float32's 3.4e38


def test_bad_shapes_and_arguments_raise_value_errors():
    with pytest.raises(ValueError, match=r"shape must have rank >= 2.*\(10,\)"):
        initializers.he_normal()(jax.random.key(0), (10,))
    with pytest.raises(ValueError, match=r"shape must have rank >= 2"):
        initializers.orthogonal()(jax.random.key(0), (10,))
    with pytest.raises(ValueError, match=r"inputs must have shape \[B, n\]"):
        initializers.relu_second_moments(
            jax.random.key(0), jnp.ones(4), initializers.he_normal(), 3
        )

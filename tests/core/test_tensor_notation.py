"""Index-notation operations against explicit loops, numpy/lax references and the book's 12.7."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core import tensor_notation as tn

small_dims = st.sampled_from([1, 2, 3])


def random_array(draw, shape):
    # No subnormals: XLA on CPU flushes them to zero.
    elements = st.floats(-3, 3, width=32, allow_subnormal=False)
    return draw(arrays(np.float32, shape, elements=elements))


@given(data=st.data(), i=small_dims, k=small_dims, j=small_dims)
def test_matmul_and_matvec_sum_over_the_repeated_index(data, i, k, j):
    a, b, x = (random_array(data.draw, s) for s in [(i, k), (k, j), (k,)])
    expected_c = np.zeros((i, j), np.float64)
    expected_y = np.zeros(i, np.float64)
    for row, col, inner in itertools.product(range(i), range(j), range(k)):
        expected_c[row, col] += a[row, inner] * b[inner, col]
    for row, inner in itertools.product(range(i), range(k)):
        expected_y[row] += a[row, inner] * x[inner]
    np.testing.assert_allclose(tn.matmul(a, b), expected_c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.matvec(a, x), expected_y, rtol=1e-5, atol=1e-5)


@given(data=st.data(), batch=small_dims, m=small_dims, k=small_dims, n=small_dims)
def test_batched_matmul_is_one_matmul_per_batch_element(data, batch, m, k, n):
    a, b = random_array(data.draw, (batch, m, k)), random_array(data.draw, (batch, k, n))
    expected = np.stack([a[index].astype(np.float64) @ b[index] for index in range(batch)])
    np.testing.assert_allclose(tn.batched_matmul(a, b), expected, rtol=1e-5, atol=1e-5)


@given(data=st.data(), shape=st.sampled_from([(4,), (2, 4), (2, 3, 4)]))
def test_scale_last_axis_multiplies_every_row_by_gamma(data, shape):
    x, gamma = random_array(data.draw, shape), random_array(data.draw, (4,))
    expected = np.empty(shape, np.float32)
    for index in np.ndindex(shape):
        expected[index] = x[index] * gamma[index[-1]]
    # atol: a product can itself be subnormal, which XLA flushes to 0.
    np.testing.assert_allclose(tn.scale_last_axis(x, gamma), expected, rtol=1e-6, atol=1e-37)


@given(data=st.data(), lengths=st.sampled_from([(5, 1), (5, 3), (6, 6), (8, 3)]))
def test_correlate_valid_is_sum_w_s_x_t_plus_s_as_in_numpy_and_lax(data, lengths):
    length, kernel_length = lengths
    x, w = random_array(data.draw, (length,)), random_array(data.draw, (kernel_length,))
    expected = [
        sum(w[s] * x[t + s] for s in range(kernel_length))
        for t in range(length - kernel_length + 1)
    ]
    ours = tn.correlate_valid(x, w)
    lax_conv = jax.lax.conv_general_dilated(x[None, None], w[None, None], (1,), "VALID")[0, 0]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours, np.correlate(x, w, "valid"), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours, lax_conv, rtol=1e-5, atol=1e-5)
    # Signal-processing convolution flips the kernel.
    np.testing.assert_allclose(ours, np.convolve(x, w[::-1], "valid"), rtol=1e-5, atol=1e-5)


def test_y_ijkl_equals_x_kilj_is_transpose_1302_and_book_2031_is_its_inverse():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # axes (k, i, l, j)
    y = tn.permute(x, "kilj", "ijkl")
    assert y.shape == (3, 5, 2, 4)
    for k, i, l, j in np.ndindex(x.shape):
        assert y[i, j, k, l] == x[k, i, l, j]
    assert tn.transpose_axes("kilj", "ijkl") == (1, 3, 0, 2)
    np.testing.assert_array_equal(y, jnp.transpose(x, (1, 3, 0, 2)))
    assert jnp.transpose(x, (2, 0, 3, 1)).shape == (4, 2, 5, 3)  # the book's tuple: not Y
    assert tn.inverse_permutation((1, 3, 0, 2)) == (2, 0, 3, 1)
    np.testing.assert_array_equal(y, jnp.moveaxis(x, (0, 1, 2, 3), (2, 0, 3, 1)))


@given(permutation=st.permutations("abcd"), data=st.data())
def test_transpose_by_derived_axes_equals_einsum_permute_and_inverse_undoes_it(permutation, data):
    x = random_array(data.draw, (1, 2, 3, 4))
    output = "".join(permutation)
    axes = tn.transpose_axes("abcd", output)
    np.testing.assert_array_equal(tn.permute(x, "abcd", output), jnp.transpose(x, axes))
    np.testing.assert_array_equal(
        jnp.transpose(jnp.transpose(x, axes), tn.inverse_permutation(axes)), x
    )


@given(data=st.data(), shape=st.sampled_from([(1, 1, 1, 1), (2, 3, 2, 2), (2, 1, 3, 4)]))
def test_reshapes_are_row_major(data, shape):
    x = random_array(data.draw, shape)
    b, c, h, w = shape
    merged, flat, per_sample = (
        tn.merge_batch_channels(x),
        tn.flatten(x),
        tn.flatten(x, start_axis=1),
    )
    tokens = tn.feature_map_to_tokens(x)
    assert merged.shape == (b * c, h * w) and tokens.shape == (b, h * w, c)
    for bi, ci, hi, wi in np.ndindex(shape):
        assert merged[bi * c + ci, hi * w + wi] == x[bi, ci, hi, wi]
        assert flat[((bi * c + ci) * h + hi) * w + wi] == x[bi, ci, hi, wi]
        assert per_sample[bi, (ci * h + hi) * w + wi] == x[bi, ci, hi, wi]
        assert tokens[bi, hi * w + wi, ci] == x[bi, ci, hi, wi]


def test_plain_reshape_of_channel_first_map_is_not_the_token_sequence():
    feature_map = np.arange(4 * 2 * 2, dtype=np.float32).reshape(4, 2, 2)  # [C, H, W]
    tokens = tn.feature_map_to_tokens(feature_map)
    np.testing.assert_array_equal(tokens[0], feature_map[:, 0, 0])
    assert not np.array_equal(np.reshape(feature_map, (4, 4))[0], feature_map[:, 0, 0])


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"b must have shape \[K, J\] with K=3"):
        tn.matmul(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"x must have shape \[J\] with J=3"):
        tn.matvec(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match=r"gamma must have shape \[4\]"):
        tn.scale_last_axis(np.ones((2, 4)), np.ones(2))
    with pytest.raises(ValueError, match="kernel length 4 must not exceed x length 3"):
        tn.correlate_valid(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="must be a permutation of input_indices"):
        tn.permute(np.ones((2, 2)), "ij", "ik")
    with pytest.raises(ValueError, match="x must have rank 3"):
        tn.permute(np.ones((2, 2)), "ijk", "kji")
    with pytest.raises(ValueError, match="axes must be a permutation"):
        tn.inverse_permutation((0, 0, 1))
    with pytest.raises(ValueError, match="start_axis must be in"):
        tn.flatten(np.ones((2, 2)), start_axis=2)
    with pytest.raises(
        ValueError, match=r"feature_map must have shape \[..., C, H, W\] \(rank >= 3\)"
    ):
        tn.feature_map_to_tokens(np.ones((2, 2)))

"""Spatial-softmax keypoints against LeRobot's SpatialSoftmax (golden fixture) and the laws of an
expectation over a fixed grid."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import spatial_softmax
from experiments.parity import spatial_softmax as reference

FIXTURE = "tests/fixtures/parity/spatial_softmax.npz"
HEIGHT, WIDTH = 5, 7
soft_argmax = jax.jit(spatial_softmax.spatial_soft_argmax)


def _nhwc(array: np.ndarray) -> jax.Array:
    return jnp.asarray(np.transpose(array, (0, 2, 3, 1)))


def test_keypoints_match_lerobot_spatial_softmax_with_and_without_projection():
    fixture = np.load(FIXTURE)
    features = _nhwc(reference.reference_features())
    module = spatial_softmax.SpatialSoftmax(num_keypoints=reference.NUM_KEYPOINTS)
    params = spatial_softmax.spatial_softmax_params_from_lerobot(
        {**reference.reference_state_dict(), "pos_grid": np.zeros((35, 2), np.float32)}, module
    )
    projected = jax.jit(module.apply)({"params": params}, features)
    np.testing.assert_allclose(projected, fixture["projected/keypoints"], atol=1e-5)  # 3e-7
    channels = soft_argmax(features)
    np.testing.assert_allclose(channels, fixture["channels/keypoints"], atol=1e-5)  # 2e-7


def test_grid_is_row_major_with_x_along_the_width_and_y_along_the_height():
    grid = spatial_softmax.keypoint_grid(HEIGHT, WIDTH)
    assert grid.shape == (HEIGHT * WIDTH, 2)
    np.testing.assert_array_equal(grid[0], [-1.0, -1.0])  # top left
    np.testing.assert_array_equal(grid[WIDTH - 1], [1.0, -1.0])  # top right
    np.testing.assert_array_equal(grid[-1], [1.0, 1.0])  # bottom right
    row, column = 3, 2
    np.testing.assert_allclose(
        grid[row * WIDTH + column], [-1.0 + 2.0 * column / (WIDTH - 1), -1.0 + 2.0 * row / 4]
    )


@given(row=st.integers(0, HEIGHT - 1), column=st.integers(0, WIDTH - 1))
def test_a_dominant_peak_puts_the_keypoint_on_its_grid_point(row, column):
    feature_map = np.zeros((1, HEIGHT, WIDTH, 1), np.float32)
    feature_map[0, row, column, 0] = 50.0  # the other 34 positions weigh e^-50 together
    keypoint = soft_argmax(jnp.asarray(feature_map))[0, 0]
    expected = spatial_softmax.keypoint_grid(HEIGHT, WIDTH)[row * WIDTH + column]
    np.testing.assert_allclose(keypoint, expected, atol=1e-6)


@given(
    feature_map=hnp.arrays(
        np.float32,
        (2, HEIGHT, WIDTH, 3),
        elements=st.floats(-5, 5, width=32, allow_subnormal=False),
    ),
    shift=st.floats(-20, 20, width=32, allow_subnormal=False),
)
def test_keypoints_lie_in_the_square_and_ignore_a_constant_shift(feature_map, shift):
    keypoints = soft_argmax(jnp.asarray(feature_map))
    assert np.all(np.abs(keypoints) <= 1.0 + 1e-6)  # a convex combination of grid points
    shifted = soft_argmax(jnp.asarray(feature_map + shift))
    np.testing.assert_allclose(shifted, keypoints, atol=1e-5)  # x + shift rounds to ~2e-6


def test_a_flat_map_gives_the_grid_centre():
    keypoints = soft_argmax(jnp.zeros((1, HEIGHT, WIDTH, 2)))
    np.testing.assert_allclose(keypoints, 0.0, atol=1e-7)


def test_bad_inputs_and_weights_raise_with_names():
    with pytest.raises(ValueError, match=r"feature_map must have rank 4, got rank 3"):
        spatial_softmax.spatial_soft_argmax(jnp.zeros((HEIGHT, WIDTH, 2)))
    module = spatial_softmax.SpatialSoftmax(num_keypoints=4)
    state_dict = reference.reference_state_dict()  # 8 keypoints
    with pytest.raises(ValueError, match=r"nets\.weight of torch shape \[8, 16, 1, 1\]"):
        spatial_softmax.spatial_softmax_params_from_lerobot(state_dict, module)
    with pytest.raises(ValueError, match="without num_keypoints has no params"):
        spatial_softmax.spatial_softmax_params_from_lerobot(
            state_dict, spatial_softmax.SpatialSoftmax()
        )

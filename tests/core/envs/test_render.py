"""The rasterizer: closed-form signed distances, exact pixel colours, coverage, cameras."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.envs import render

RED = (1.0, 0.0, 0.0)
BLUE = (0.0, 0.0, 1.0)
rasterize = jax.jit(render.rasterize, static_argnums=(2, 3))
COORDINATE = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False)


def _uint8(color) -> np.ndarray:
    return np.round(np.asarray(color) * 255).astype(np.uint8)


@given(x=COORDINATE, y=COORDINATE, radius=st.sampled_from([0.05, 0.3, 1.0]))
def test_disc_signed_distance_is_distance_to_centre_minus_radius(x, y, radius):
    shapes = render.disc(jnp.array([0.1, -0.2]), radius, RED)
    distance = render.signed_distance(jnp.float32(x), jnp.float32(y), shapes)
    np.testing.assert_allclose(distance, [np.hypot(x - 0.1, y + 0.2) - radius], atol=2e-6)


@given(x=COORDINATE, y=COORDINATE)
def test_box_signed_distance_matches_the_closed_form(x, y):
    """Outside: Euclidean distance to the rectangle; inside: minus the distance to its edge."""
    half_size = np.array([0.4, 0.1])
    shapes = render.box(jnp.zeros(2), jnp.asarray(half_size), RED)
    distance = render.signed_distance(jnp.float32(x), jnp.float32(y), shapes)
    gap = np.abs([x, y]) - half_size
    expected = np.linalg.norm(np.maximum(gap, 0.0)) if np.any(gap > 0) else np.max(gap)
    np.testing.assert_allclose(distance, [expected], atol=2e-6)


@given(x=COORDINATE, y=COORDINATE)
def test_outline_is_the_band_of_width_w_around_the_boundary(x, y):
    ring = render.disc(jnp.zeros(2), 0.5, RED, outline_width=0.1)
    distance = render.signed_distance(jnp.float32(x), jnp.float32(y), ring)
    np.testing.assert_allclose(distance, [abs(np.hypot(x, y) - 0.5) - 0.05], atol=2e-6)


def test_disc_centre_pixel_has_its_colour_and_far_pixels_are_background():
    size = 32  # pixel size 1/16; the pixel (row 8, column 24) has its centre at (0.53125, 0.46875)
    centre = jnp.array([0.53125, 0.46875])
    image = np.asarray(rasterize(render.disc(centre, 0.1, RED), jnp.zeros(2), 1.0, size))
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[8, 24], _uint8(RED))
    np.testing.assert_array_equal(image[8, 23], _uint8(RED))  # 0.0625 from the centre: inside
    background = _uint8(render.BACKGROUND_COLOR)
    for row, column in [(0, 0), (31, 31), (8, 20), (12, 24)]:  # ≥ 0.25 from the centre
        np.testing.assert_array_equal(image[row, column], background)


def test_edge_pixel_blends_by_its_covered_fraction():
    """A box edge through a pixel centre covers half of it: colour = (background + red) / 2."""
    size = 32
    edge_x = -1.0 + 10.5 * 2 / size  # the centre of pixel column 10
    box = render.box(jnp.array([edge_x + 5.0, 0.0]), jnp.array([5.0, 5.0]), RED)
    image = np.asarray(rasterize(box, jnp.zeros(2), 1.0, size))
    expected = _uint8((np.asarray(render.BACKGROUND_COLOR) + np.asarray(RED)) / 2)
    np.testing.assert_array_equal(image[:, 10], np.broadcast_to(expected, (size, 3)))
    np.testing.assert_array_equal(image[:, 11], np.broadcast_to(_uint8(RED), (size, 3)))
    np.testing.assert_array_equal(
        image[:, 9], np.broadcast_to(_uint8(render.BACKGROUND_COLOR), (size, 3))
    )


def test_later_shapes_are_drawn_over_earlier_ones():
    shapes = render.stack(render.disc(jnp.zeros(2), 0.5, RED), render.disc(jnp.zeros(2), 0.2, BLUE))
    image = np.asarray(rasterize(shapes, jnp.zeros(2), 1.0, 32))
    np.testing.assert_array_equal(image[16, 16], _uint8(BLUE))  # centre: the blue disc on top
    np.testing.assert_array_equal(image[16, 20], _uint8(RED))  # 0.28 from the centre: red only


def test_camera_window_maps_row_zero_to_the_top_and_follows_the_agent():
    agent = jnp.array([0.6, -0.4])
    assert render.camera_window("top", agent)[1] == 1.0
    view_center, half_width = render.camera_window("wrist", agent)
    np.testing.assert_array_equal(view_center, agent)
    x, y = render.pixel_coordinates(view_center, half_width, 4)
    pixel = 2 * half_width / 4
    np.testing.assert_allclose(x[0], 0.6 + pixel * np.array([-1.5, -0.5, 0.5, 1.5]), atol=1e-6)
    np.testing.assert_allclose(y[:, 0], -0.4 + pixel * np.array([1.5, 0.5, -0.5, -1.5]), atol=1e-6)


@pytest.mark.parametrize(
    ("image_size", "cameras", "message"),
    [
        (16, ("top",), "image_size must be an int >= 32"),
        (64.0, ("top",), "image_size must be an int"),
        (64, ("side",), "cameras must be among"),
        (64, "top", "cameras must be a tuple"),
        (64, ("top", "top"), "must not repeat"),
    ],
)
def test_bad_camera_config_is_rejected_naming_the_value(image_size, cameras, message):
    with pytest.raises(ValueError, match=message):
        render.check_camera_config(image_size, cameras)


def test_unknown_camera_window_is_rejected():
    with pytest.raises(ValueError, match=r"camera must be one of .* got 'side'"):
        render.camera_window("side", jnp.zeros(2))

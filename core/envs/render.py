"""A vectorized 2-D rasterizer: the observation model's cameras, I_t^(c) ∈ R^{H×W×3} (eq. 16.5).

A scene is a stack of rounded rectangles drawn in order (painter's algorithm). One primitive
covers everything the tasks draw: a disc is a square of half-size r with corner radius r, a box
has corner radius 0, and an outline is the band |d| ≤ width/2 around the shape's boundary.
Each pixel's coverage comes from the exact signed distance d to the shape, evaluated at the pixel
centre, with a one-pixel linear ramp for anti-aliasing:

  coverage = clip(1/2 - d / pixel_size, 0, 1),
  colour   ← (1 - coverage) · colour + coverage · shape_colour.

All pixels of all shapes are computed at once (no loop over pixels); rendering is deterministic.

Cameras. A camera looks straight down at a square window of the world: "top" sees the whole
workspace [-1, 1]², "wrist" a window of half-width WRIST_HALF_WIDTH centred on the agent (a
wrist-mounted view, book 16.4's I^(wrist)). Row 0 of an image is the top of the window (largest y).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from core.envs.point_mass import WORKSPACE_HALF_WIDTH

CAMERAS = ("top", "wrist")
WRIST_HALF_WIDTH = 0.35
MIN_IMAGE_SIZE = 32
"""At 32 pixels the top camera's pixel is 1/16 world units: the agent disc (diameter 0.1) still
covers more than one pixel; below that objects vanish into the anti-aliasing ramp."""

BACKGROUND_COLOR = (0.25, 0.25, 0.28)
TABLE_COLOR = (0.93, 0.93, 0.9)


@flax.struct.dataclass
class Shapes:
    """N rounded rectangles, drawn in index order.

    center: [N, 2] world coordinates; half_size: [N, 2]; corner_radius: [N] (≤ min half_size);
    color: [N, 3] RGB in [0, 1]; outline_width: [N], 0 for a filled shape.
    """

    center: jax.Array
    half_size: jax.Array
    corner_radius: jax.Array
    color: jax.Array
    outline_width: jax.Array


def _shape(center, half_size, corner_radius, color, outline_width) -> Shapes:
    return Shapes(
        center=jnp.reshape(jnp.asarray(center, jnp.float32), (1, 2)),
        half_size=jnp.broadcast_to(jnp.asarray(half_size, jnp.float32), (1, 2)),
        corner_radius=jnp.reshape(jnp.asarray(corner_radius, jnp.float32), (1,)),
        color=jnp.reshape(jnp.asarray(color, jnp.float32), (1, 3)),
        outline_width=jnp.reshape(jnp.asarray(outline_width, jnp.float32), (1,)),
    )


def disc(center: jax.Array, radius: float, color, outline_width: float = 0.0) -> Shapes:
    """A disc (or a ring of the given width) of `radius` around center: [2]."""
    return _shape(center, radius, radius, color, outline_width)


def box(center: jax.Array, half_size, color, outline_width: float = 0.0) -> Shapes:
    """An axis-aligned box (or its outline) with half_size: [2] or a scalar."""
    return _shape(center, half_size, 0.0, color, outline_width)


def stack(*shapes: Shapes) -> Shapes:
    """The shapes of all arguments, drawn in argument order."""
    return jax.tree.map(lambda *parts: jnp.concatenate(parts), *shapes)


def table() -> Shapes:
    """The workspace [-1, 1]², drawn first in every scene."""
    return box(jnp.zeros(2), WORKSPACE_HALF_WIDTH, TABLE_COLOR)


def signed_distance(x: jax.Array, y: jax.Array, shapes: Shapes) -> jax.Array:
    """Signed distance of points to each shape (< 0 inside): -> [N, *broadcast(x, y).shape].

    x, y: world coordinates of the points, broadcastable against each other (a pixel grid is
    x: [1, W], y: [H, 1], so the two axes are computed separably).
    For a rounded box with centre c, half-size h and corner radius r, with q = |p - c| - (h - r):
    d = |max(q, 0)| + min(max(q_x, q_y), 0) - r, and |d| - w/2 for an outline of width w.
    """
    spatial = (1,) * max(np.ndim(x), np.ndim(y))

    def per_shape(values: jax.Array) -> jax.Array:  # [N] -> [N, 1, ...] against the points
        return values.reshape(-1, *spatial)

    corner_radius = per_shape(shapes.corner_radius)
    inner_half_size = shapes.half_size - shapes.corner_radius[:, None]
    q_x = jnp.abs(x - per_shape(shapes.center[:, 0])) - per_shape(inner_half_size[:, 0])
    q_y = jnp.abs(y - per_shape(shapes.center[:, 1])) - per_shape(inner_half_size[:, 1])
    outside = jnp.sqrt(jnp.maximum(q_x, 0.0) ** 2 + jnp.maximum(q_y, 0.0) ** 2)
    inside = jnp.minimum(jnp.maximum(q_x, q_y), 0.0)
    distance = outside + inside - corner_radius
    outline_width = per_shape(shapes.outline_width)
    return jnp.where(outline_width > 0, jnp.abs(distance) - outline_width / 2, distance)


def pixel_coordinates(
    view_center: jax.Array, half_width: float, size: int
) -> tuple[jax.Array, jax.Array]:
    """World x: [1, size] of the pixel columns and y: [size, 1] of the pixel rows of a square
    camera window (row 0 at the top, largest y)."""
    pixel_size = 2 * half_width / size
    offsets = (jnp.arange(size, dtype=jnp.float32) + 0.5) * pixel_size - half_width
    return (view_center[0] + offsets)[None, :], (view_center[1] - offsets)[:, None]


def rasterize(shapes: Shapes, view_center: jax.Array, half_width: float, size: int) -> jax.Array:
    """Draws shapes seen by a camera window -> uint8 [size, size, 3].

    view_center: [2] world point at the image centre; half_width: half the window's side.
    """
    pixel_size = 2 * half_width / size
    distance = signed_distance(*pixel_coordinates(view_center, half_width, size), shapes)
    coverage = jnp.clip(0.5 - distance / pixel_size, 0.0, 1.0)[..., None]
    image = jnp.broadcast_to(jnp.asarray(BACKGROUND_COLOR, jnp.float32), (size, size, 3))
    for index in range(shapes.color.shape[0]):
        image = (1 - coverage[index]) * image + coverage[index] * shapes.color[index]
    return jnp.round(image * 255).astype(jnp.uint8)


def camera_window(camera: str, agent_position: jax.Array) -> tuple[jax.Array, float]:
    """(view centre [2], half-width) of a named camera; the wrist camera follows the agent."""
    if camera == "top":
        return jnp.zeros(2, jnp.float32), WORKSPACE_HALF_WIDTH
    if camera == "wrist":
        return agent_position, WRIST_HALF_WIDTH
    raise ValueError(f"camera must be one of {CAMERAS}, got {camera!r}")


def check_camera_config(image_size: int, cameras: tuple[str, ...]) -> None:
    """Raises ValueError for an image size below MIN_IMAGE_SIZE or an unknown/repeated camera."""
    if not isinstance(cameras, tuple):
        raise ValueError(f"cameras must be a tuple of camera names, e.g. ('top',), got {cameras!r}")
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be an int >= {MIN_IMAGE_SIZE} pixels, got {image_size!r}"
        )
    for camera in cameras:
        if camera not in CAMERAS:
            raise ValueError(f"cameras must be among {CAMERAS}, got {camera!r}")
    if len(set(cameras)) != len(cameras):
        raise ValueError(f"cameras must not repeat, got {cameras}")

"""What the 2-D tabletop tasks share: static camera configuration and image observations.

Book 16.2.2, eqs. 16.4-16.5: the observation o_t = (I_t^(c) for each camera c, q_t). A task fixes
its image size, cameras and time limit at construction (they are static under `jit`), and draws
its scene as `render.Shapes`; this base turns the scene into one uint8 image per camera.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax

from core.envs import render
from core.envs.api import ArraySpec


@dataclasses.dataclass(frozen=True)
class TabletopEnv(abc.ABC):
    """Static configuration of a tabletop task.

    image_size: side of the square camera images in pixels (>= render.MIN_IMAGE_SIZE).
    cameras: names among render.CAMERAS; () gives state-only observations.
    max_episode_steps: the time limit in control steps.
    """

    image_size: int = 64
    cameras: tuple[str, ...] = ("top",)
    max_episode_steps: int = 100

    def __post_init__(self):
        render.check_camera_config(self.image_size, self.cameras)
        if not isinstance(self.max_episode_steps, int) or self.max_episode_steps < 1:
            raise ValueError(
                f"max_episode_steps must be a positive int, got {self.max_episode_steps!r}"
            )

    @abc.abstractmethod
    def scene(self, state: Any) -> render.Shapes:
        """The shapes that make up the world in `state`, in drawing order."""

    def render(self, state: Any, camera: str = "top") -> jax.Array:
        """The frame of one camera (any of render.CAMERAS): uint8 [image_size, image_size, 3]."""
        view_center, half_width = render.camera_window(camera, state.agent.position)
        return render.rasterize(self.scene(state), view_center, half_width, self.image_size)

    def images(self, state: Any) -> dict[str, jax.Array]:
        """{"observation.images.<camera>": uint8 [H, W, 3]} for the configured cameras."""
        return {
            f"observation.images.{camera}": self.render(state, camera) for camera in self.cameras
        }

    def image_specs(self) -> dict[str, ArraySpec]:
        shape = (self.image_size, self.image_size, 3)
        return {
            f"observation.images.{camera}": ArraySpec(shape, "uint8") for camera in self.cameras
        }

"""A point agent on the table: bounded position-delta control and exact planar geometry.

Book 16.2.2, eqs. 16.12-16.14: the action is a relative position change normalized to
[-1, 1] per axis, scaled by the largest step the actuator makes in one control period:
p_{t+1} = clip(p_t + max_step · a_t, workspace). The dynamics are exact (eq. 16.17 with no
noise), and the velocity reported to proprioception is the realized (p_{t+1} - p_t) · fps.
The world is the square [-1, 1]² with y pointing up.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

WORKSPACE_HALF_WIDTH = 1.0


@flax.struct.dataclass
class PointMass:
    """position: [2] in world units; velocity: [2] in world units per second."""

    position: jax.Array
    velocity: jax.Array

    @classmethod
    def at_rest(cls, position: jax.Array) -> PointMass:
        return cls(position=position, velocity=jnp.zeros_like(position))


def state_bounds(max_step: float, fps: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(low, high) of the proprioceptive state [x, y, vx, vy]: each velocity component is at
    most max_step · fps in magnitude, since each action component is at most 1."""
    speed = max_step * fps
    return (-WORKSPACE_HALF_WIDTH,) * 2 + (-speed,) * 2, (WORKSPACE_HALF_WIDTH,) * 2 + (speed,) * 2


def move(
    agent: PointMass, displacement_action: jax.Array, max_step: float, fps: int, radius: float
) -> PointMass:
    """Applies a normalized displacement action: [2] in [-1, 1]; the agent disc stays inside."""
    limit = WORKSPACE_HALF_WIDTH - radius
    position = jnp.clip(agent.position + max_step * displacement_action, -limit, limit)
    speed = max_step * fps  # the clip only removes float rounding beyond the bound
    velocity = jnp.clip((position - agent.position) * fps, -speed, speed)
    return PointMass(position=position, velocity=velocity)


def steer_toward(position: jax.Array, target: jax.Array, max_step: float) -> jax.Array:
    """The action that moves straight toward `target` at full speed and stops on it.

    Returns a displacement action [2] of norm ≤ 1: the step is along target - position, of
    length min(|target - position|, max_step), so the agent lands exactly on a reachable target.
    """
    offset = target - position
    distance = jnp.linalg.norm(offset)
    scale = jnp.minimum(1.0, max_step / jnp.maximum(distance, 1e-12))
    return offset * scale / max_step


def segment_point_distance(start: jax.Array, end: jax.Array, point: jax.Array) -> jax.Array:
    """Distance from `point` [2] to the segment [start, end] ([2] each): a swept-disc check."""
    direction = end - start
    length_squared = jnp.dot(direction, direction)
    fraction = jnp.clip(
        jnp.dot(point - start, direction) / jnp.maximum(length_squared, 1e-12), 0.0, 1.0
    )
    return jnp.linalg.norm(start + fraction * direction - point)

"""End-effector waypoint trajectories: orientations as quaternions, interpolated in time.

Book 16.6.1 (task-space actions (p, R) ∈ R^3 × SO(3), eq. 16.53; rotations as unit
quaternions, 4 numbers with |q| = 1) and 16.7.2 (smooth trajectories). A scripted arm moves
through waypoints (time step, position, orientation, gripper); between two of them the position
and the gripper move linearly and the orientation by spherical linear interpolation, which turns
at constant angular speed about one axis (a linear blend of quaternions, renormalized, would
not). Quaternions are (w, x, y, z), as MuJoCo stores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Waypoint(NamedTuple):
    """One arm's target at a time step: the position [3] (m) of the point it steers (an ALOHA
    arm's grasp point), its orientation [4] (unit quaternion w x y z) and the gripper opening
    (normalized: 0 closed, 1 open)."""

    time: int
    position: np.ndarray
    quaternion: np.ndarray
    gripper: float


def axis_angle_quaternion(axis: Sequence[float], degrees: float) -> np.ndarray:
    """[4] the unit quaternion (w x y z) of a rotation by `degrees` about `axis` [3]:
    (cos(θ/2), sin(θ/2) · axis / |axis|)."""
    axis = np.asarray(axis, np.float64)
    half_angle = np.deg2rad(degrees) / 2
    return np.concatenate([[np.cos(half_angle)], np.sin(half_angle) * axis / np.linalg.norm(axis)])


def quaternion_product(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """[4] the Hamilton product first ⊗ second (each [4], w x y z): the rotation `second`
    followed by `first`."""
    w1, x1, y1, z1 = np.asarray(first, np.float64)
    w2, x2, y2, z2 = np.asarray(second, np.float64)
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def quaternion_conjugate(quaternion: np.ndarray) -> np.ndarray:
    """[4] the conjugate (w, -x, -y, -z): the inverse rotation of a unit quaternion [4]."""
    return np.asarray(quaternion, np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def rotation_angle_degrees(first: np.ndarray, second: np.ndarray) -> float:
    """The angle between two orientations (unit quaternions [4]) in degrees: 2 arccos |q1 · q2|."""
    cosine = min(1.0, abs(float(np.dot(first, second))))
    return float(np.degrees(2.0 * np.arccos(cosine)))


def slerp(start: np.ndarray, end: np.ndarray, fraction: float) -> np.ndarray:
    """[4] spherical linear interpolation of unit quaternions [4] along the shorter arc:
    sin((1 - f) Ω) / sin Ω · q0 + sin(f Ω) / sin Ω · q1 with cos Ω = |q0 · q1|."""
    start = np.asarray(start, np.float64)
    end = np.asarray(end, np.float64)
    cosine = float(np.dot(start, end))
    if cosine < 0.0:  # q and -q are the same rotation: take the shorter way
        end, cosine = -end, -cosine
    if cosine > 1.0 - 1e-9:
        return start
    angle = np.arccos(cosine)
    return (np.sin((1.0 - fraction) * angle) * start + np.sin(fraction * angle) * end) / np.sin(
        angle
    )


class ArmTargets(NamedTuple):
    """An arm's targets over T steps: positions [T, 3], quaternions [T, 4], grippers [T] (or
    of one step, without the T axis)."""

    positions: np.ndarray
    quaternions: np.ndarray
    grippers: np.ndarray

    def at(self, step: int) -> ArmTargets:
        """The targets of one step."""
        return ArmTargets(*(field[step] for field in self))


def interpolate(waypoints: Sequence[Waypoint], times: np.ndarray) -> ArmTargets:
    """The arm's targets at times [T] within the waypoints' span: position and gripper linear
    between neighbouring waypoints, orientation by `slerp`."""
    knots = np.array([waypoint.time for waypoint in waypoints])
    if np.any(np.diff(knots) <= 0) or knots[0] != 0:
        raise ValueError(f"waypoint times must start at 0 and increase, got {knots.tolist()}")
    times = np.asarray(times)
    if times.min() < 0 or times.max() > knots[-1]:
        raise ValueError(f"times must lie in [0, {knots[-1]}], got [{times.min()}, {times.max()}]")
    segment = np.clip(np.searchsorted(knots, times, side="right") - 1, 0, len(knots) - 2)
    fraction = (times - knots[segment]) / (knots[segment + 1] - knots[segment])
    positions = np.stack([waypoint.position for waypoint in waypoints])
    grippers = np.array([waypoint.gripper for waypoint in waypoints])
    blend = fraction[:, None]
    quaternions = np.stack(
        [
            slerp(waypoints[i].quaternion, waypoints[i + 1].quaternion, f)
            for i, f in zip(segment, fraction, strict=True)
        ]
    )
    return ArmTargets(
        positions=positions[segment] * (1 - blend) + positions[segment + 1] * blend,
        quaternions=quaternions,
        grippers=grippers[segment] * (1 - fraction) + grippers[segment + 1] * fraction,
    )

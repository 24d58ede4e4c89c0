"""Waypoint trajectories: quaternion algebra against rotation matrices, slerp, interpolation."""

import numpy as np
import pytest

from core.envs.waypoints import (
    Waypoint,
    axis_angle_quaternion,
    interpolate,
    quaternion_conjugate,
    quaternion_product,
    rotation_angle_degrees,
    slerp,
)


def _rotate(quaternion, vector):
    """v' = q ⊗ (0, v) ⊗ q*."""
    pure = np.concatenate([[0.0], vector])
    return quaternion_product(
        quaternion_product(quaternion, pure), quaternion_conjugate(quaternion)
    )[1:]


def _rodrigues(axis, degrees):
    """The rotation matrix I + sin θ K + (1 - cos θ) K² of a unit axis."""
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    angle = np.deg2rad(degrees)
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


@pytest.mark.parametrize(("axis", "degrees"), [([0, 1, 0], -60), ([1, 0, 0], 90), ([1, 2, 3], 37)])
def test_quaternion_rotation_equals_the_rodrigues_matrix(axis, degrees):
    quaternion = axis_angle_quaternion(axis, degrees)
    assert np.linalg.norm(quaternion) == pytest.approx(1.0)
    vector = np.array([0.3, -1.0, 2.0])
    np.testing.assert_allclose(_rotate(quaternion, vector), _rodrigues(axis, degrees) @ vector)


def test_quaternion_product_composes_rotations_second_then_first():
    first, second = axis_angle_quaternion([0, 0, 1], 90), axis_angle_quaternion([1, 0, 0], 90)
    vector = np.array([0.0, 1.0, 0.0])
    composed = _rotate(quaternion_product(first, second), vector)
    np.testing.assert_allclose(composed, _rotate(first, _rotate(second, vector)), atol=1e-12)
    np.testing.assert_allclose(composed, [0.0, 0.0, 1.0], atol=1e-12)  # y -> z -> z


def test_slerp_goes_the_short_way_at_constant_angular_speed():
    start, end = axis_angle_quaternion([0, 1, 0], 0), axis_angle_quaternion([0, 1, 0], 60)
    np.testing.assert_allclose(slerp(start, end, 0.5), axis_angle_quaternion([0, 1, 0], 30))
    np.testing.assert_allclose(slerp(start, -end, 0.25), axis_angle_quaternion([0, 1, 0], 15))
    assert rotation_angle_degrees(start, slerp(start, end, 0.8)) == pytest.approx(48.0)


def test_interpolation_passes_through_the_waypoints_and_blends_between_them():
    level, rolled = axis_angle_quaternion([1, 0, 0], 0), axis_angle_quaternion([1, 0, 0], 90)
    waypoints = (
        Waypoint(0, np.zeros(3), level, 0.0),
        Waypoint(10, np.array([1.0, 2.0, 3.0]), rolled, 1.0),
        Waypoint(20, np.array([1.0, 2.0, 3.0]), rolled, 1.0),
    )
    targets = interpolate(waypoints, np.array([0, 5, 10, 15]))
    np.testing.assert_allclose(targets.positions[:3], [[0, 0, 0], [0.5, 1.0, 1.5], [1, 2, 3]])
    np.testing.assert_allclose(targets.grippers, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(targets.quaternions[1], axis_angle_quaternion([1, 0, 0], 45))
    np.testing.assert_allclose(targets.at(3).quaternions, rolled)
    with pytest.raises(ValueError, match=r"times must lie in \[0, 20\]"):
        interpolate(waypoints, np.array([21]))
    with pytest.raises(ValueError, match="waypoint times must start at 0 and increase"):
        interpolate(waypoints[1:], np.array([12]))

"""Point-agent kinematics: bounded moves, straight steering, the swept collision distance."""

import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from core.envs.point_mass import (
    PointMass,
    move,
    segment_point_distance,
    state_bounds,
    steer_toward,
)

COORDINATE = st.floats(-0.9, 0.9, allow_nan=False, allow_subnormal=False)
POINT = st.tuples(COORDINATE, COORDINATE)


@given(start=POINT, action=st.tuples(*[st.floats(-1, 1, allow_subnormal=False)] * 2))
def test_move_is_p_plus_max_step_times_a_clipped_to_the_workspace(start, action):
    agent = move(PointMass.at_rest(jnp.array(start)), jnp.array(action), 0.05, 10, 0.05)
    expected = np.clip(np.array(start) + 0.05 * np.array(action), -0.95, 0.95)
    np.testing.assert_allclose(agent.position, expected, atol=1e-6)
    np.testing.assert_allclose(agent.velocity, (expected - np.array(start)) * 10, atol=1e-5)
    low, high = state_bounds(0.05, 10)
    state = np.concatenate([agent.position, agent.velocity])
    assert np.all(state >= np.array(low)) and np.all(state <= np.array(high))


@given(position=POINT, target=POINT)
def test_steer_toward_moves_straight_at_full_speed_and_stops_on_the_target(position, target):
    position, target = np.array(position), np.array(target)
    action = np.asarray(steer_toward(jnp.array(position), jnp.array(target), 0.05))
    step = 0.05 * action
    distance = np.linalg.norm(target - position)
    assert np.linalg.norm(action) <= 1 + 1e-6
    if distance <= 0.05:
        np.testing.assert_allclose(position + step, target, atol=1e-6)
    else:
        np.testing.assert_allclose(np.linalg.norm(step), 0.05, rtol=1e-5)
        np.testing.assert_allclose(step / 0.05, (target - position) / distance, atol=1e-5)


@given(start=POINT, end=POINT, point=POINT)
def test_segment_point_distance_is_the_minimum_over_the_segment(start, end, point):
    """Against dense sampling of the segment (2001 points: error ≤ half the spacing)."""
    start, end, point = np.array(start), np.array(end), np.array(point)
    samples = start + np.linspace(0, 1, 2001)[:, None] * (end - start)
    brute_force = np.min(np.linalg.norm(samples - point, axis=1))
    distance = segment_point_distance(jnp.array(start), jnp.array(end), jnp.array(point))
    spacing = np.linalg.norm(end - start) / 2000
    assert brute_force - spacing / 2 - 1e-5 <= distance <= brute_force + 1e-5

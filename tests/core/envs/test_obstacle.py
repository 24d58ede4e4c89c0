"""Obstacle task: expert success, exact bimodality (book 16.3.3, 18.8.1), swept collisions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from expert_variants import FixedModeExpert, ModeAveragingPolicy

from core.envs.obstacle import (
    AGENT_RADIUS,
    OBSTACLE_RADIUS,
    ObstacleEnv,
    ObstacleExpert,
)
from core.envs.rollout import expert_rollouts

NUM_SEEDS = 200
TOUCH_DISTANCE = OBSTACLE_RADIUS + AGENT_RADIUS


@pytest.fixture(scope="module")
def env():
    return ObstacleEnv(cameras=())


def _keys(count):
    return jax.vmap(jax.random.key)(jnp.arange(count))


@pytest.fixture(scope="module")
def rollouts(env):
    return jax.device_get(expert_rollouts(env, ObstacleExpert(), _keys(NUM_SEEDS)))


def test_expert_succeeds_on_at_least_99_percent_of_200_seeds(rollouts):
    assert rollouts.succeeded.sum() >= 198
    # The sparse reward: exactly 1, on the last step of each successful episode.
    np.testing.assert_array_equal(rollouts.rewards.sum(axis=1), rollouts.succeeded)
    last_steps = rollouts.rewards[np.arange(NUM_SEEDS), rollouts.lengths - 1]
    np.testing.assert_array_equal(last_steps, rollouts.succeeded)


def test_expert_goes_left_or_right_with_probability_one_half(rollouts):
    """Binomial test: for 200 fair draws, |#left - 100| ≤ 3σ = 3·√50 ≈ 21 has probability
    0.997; a biased expert (p = 0.7: 140 expected) fails it."""
    left = np.sum(rollouts.plan.mode == 0)
    assert abs(left - NUM_SEEDS / 2) <= 3 * np.sqrt(NUM_SEEDS / 4)


def test_each_mode_passes_the_obstacle_on_its_own_side(rollouts):
    """Where the path is level with the obstacle centre, it is beside the obstacle on the side
    of its mode: x - o_x < -(R + r) for left, > R + r for right."""
    positions = rollouts.states.agent.position  # [N, T, 2]
    obstacle = rollouts.states.obstacle[:, 0]  # [N, 2]
    level = np.argmin(np.abs(positions[..., 1] - obstacle[:, None, 1]), axis=1)
    lateral = positions[np.arange(NUM_SEEDS), level, 0] - obstacle[:, 0]
    side = np.where(rollouts.plan.mode == 0, -1.0, 1.0)
    assert np.all(side * lateral > TOUCH_DISTANCE)


def test_average_of_a_left_and_a_right_path_runs_into_the_obstacle(env):
    """Book 16.3.3: averaging the two modes' trajectories (same start, goal and obstacle)
    gives a path that touches the obstacle, while each path alone keeps clear of it."""
    keys = _keys(20)
    left = expert_rollouts(env, FixedModeExpert(ObstacleExpert(), 0), keys)
    right = expert_rollouts(env, FixedModeExpert(ObstacleExpert(), 1), keys)
    assert np.all(left.succeeded) and np.all(right.succeeded)
    obstacle = np.asarray(left.states.obstacle[:, :1])  # [N, 1, 2]
    clearance = {
        name: np.min(np.linalg.norm(np.asarray(path) - obstacle, axis=-1), axis=1)
        for name, path in [
            ("left", left.states.agent.position),
            ("right", right.states.agent.position),
            ("average", (left.states.agent.position + right.states.agent.position) / 2),
        ]
    }
    assert np.all(clearance["left"] > TOUCH_DISTANCE)
    assert np.all(clearance["right"] > TOUCH_DISTANCE)
    assert np.all(clearance["average"] < TOUCH_DISTANCE)


def test_policy_averaging_the_modes_crashes_into_the_obstacle(env):
    """Book eq. 16.39: the mean of the left and right actions heads straight for the obstacle;
    every episode terminates early, without success."""
    crashes = expert_rollouts(env, ModeAveragingPolicy(ObstacleExpert()), _keys(20))
    assert not np.any(crashes.succeeded)
    assert np.all(crashes.lengths < env.max_episode_steps)


@pytest.mark.parametrize(
    ("start_offset", "action", "touches"),
    [
        ((0.0, -TOUCH_DISTANCE - 0.03), (0.0, 1.0), True),  # ends inside the touch distance
        ((0.0, -TOUCH_DISTANCE - 0.06), (0.0, 1.0), False),  # ends 0.01 short of it
        # Both ends 0.3504 from the centre, the middle of the step 0.3495: the swept test.
        ((-0.025, -TOUCH_DISTANCE + 0.0005), (1.0, 0.0), True),
    ],
)
def test_touching_the_obstacle_during_a_step_terminates_as_failure(
    env, start_offset, action, touches
):
    state, _ = env.reset(jax.random.key(0))
    start = state.obstacle + jnp.array(start_offset)
    state = state.replace(agent=state.agent.replace(position=start))
    _, _, reward, done, info = env.step(state, jnp.array(action))
    assert bool(info["terminated"]) == touches and bool(done) == touches
    assert not bool(info["success"]) and float(reward) == 0.0


def test_without_velocity_the_state_is_the_position_alone_and_the_rest_is_unchanged():
    with_velocity, without = (
        ObstacleEnv(cameras=()),
        ObstacleEnv(cameras=(), velocity_in_state=False),
    )
    assert without.spec.observation["observation.state"].shape == (2,)
    assert without.spec.observation["observation.state"].names == ("x", "y")
    state, _ = with_velocity.reset(jax.random.key(3))
    moved, *_ = with_velocity.step(state, jnp.array([0.5, 1.0]))
    full, position_only = with_velocity.observe(moved), without.observe(moved)
    np.testing.assert_allclose(full["observation.state"][2:], [0.25, 0.5], atol=1e-6)  # v = a·0.5
    np.testing.assert_array_equal(position_only["observation.state"], full["observation.state"][:2])
    np.testing.assert_array_equal(
        position_only["observation.environment_state"], full["observation.environment_state"]
    )

"""Pick and place: expert success, two strategies, and the gripper's grasp/release rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from expert_variants import ModeAveragingPolicy

from core.envs.pick_place import (
    FPS,
    GRIPPER_RATE,
    MAX_STEP,
    PickPlaceEnv,
    PickPlaceExpert,
    block_in_zones,
)
from core.envs.rollout import expert_rollouts

NUM_SEEDS = 200
CLOSE, OPEN, STAY = 1.0, -1.0, (0.0, 0.0)


@pytest.fixture(scope="module")
def env():
    return PickPlaceEnv(cameras=())


@pytest.fixture(scope="module")
def step(env):
    return jax.jit(env.step)


def _keys(count):
    return jax.vmap(jax.random.key)(jnp.arange(count))


@pytest.fixture(scope="module")
def rollouts(env):
    return jax.device_get(expert_rollouts(env, PickPlaceExpert(), _keys(NUM_SEEDS)))


def test_expert_succeeds_on_at_least_99_percent_of_200_seeds(rollouts):
    assert rollouts.succeeded.sum() >= 198
    np.testing.assert_array_equal(rollouts.rewards.sum(axis=1), rollouts.succeeded)


def test_expert_episodes_are_long_enough_for_action_chunks(rollouts):
    """About 90 steps (75-120 over 5000 seeds): several chunks of k = 20-50 actions each."""
    lengths = rollouts.lengths[rollouts.succeeded]
    assert 80 <= np.median(lengths) <= 100 and lengths.max() < 200


def test_expert_uses_both_zones_with_probability_one_half_and_ends_in_its_zone(rollouts):
    """Binomial test as for obstacle (|#left - 100| ≤ 3σ ≈ 21); the final block (the absorbing
    state) lies in the zone of the drawn mode."""
    modes = rollouts.plan.mode
    assert abs(np.sum(modes == 0) - NUM_SEEDS / 2) <= 3 * np.sqrt(NUM_SEEDS / 4)
    final = jax.tree.map(lambda leaf: leaf[:, -1], rollouts.states)
    in_zones = jax.vmap(block_in_zones)(final.block, final.zones)  # [N, 2]
    succeeded = rollouts.succeeded
    np.testing.assert_array_equal(in_zones[np.arange(NUM_SEEDS), modes][succeeded], True)
    np.testing.assert_array_equal(in_zones[np.arange(NUM_SEEDS), 1 - modes][succeeded], False)


def test_policy_averaging_the_two_zones_never_places_the_block(env):
    """The mean of carrying left and carrying right goes up between the zones: no success."""
    averaged = expert_rollouts(env, ModeAveragingPolicy(PickPlaceExpert()), _keys(20))
    assert not np.any(averaged.succeeded)


def _placed(env, offset):
    """A fresh state with the gripper at block + offset."""
    state, _ = env.reset(jax.random.key(1))
    return state.replace(agent=state.agent.replace(position=state.block + jnp.array(offset)))


def _run(step, state, moves_and_commands):
    for move, command in moves_and_commands:
        state, _, reward, _, info = step(state, jnp.array([*move, command]))
    return state, reward, info


def test_closing_on_the_block_grasps_it_once_the_opening_falls_below_one_half(env, step):
    state = _placed(env, (0.02, -0.01))
    for expected_holding in [False, False, True]:  # opening 0.8, 0.6, 0.4
        state, _, _ = _run(step, state, [(STAY, CLOSE)])
        assert bool(state.holding) == expected_holding
    np.testing.assert_allclose(state.opening, 1 - 3 * GRIPPER_RATE, atol=1e-6)


def test_a_held_block_moves_with_the_gripper_and_stays_when_released(env, step):
    state, _, _ = _run(step, _placed(env, (0.02, 0.0)), [(STAY, CLOSE)] * 3)
    offset = state.block - state.agent.position
    state, _, _ = _run(step, state, [((1.0, 0.0), CLOSE)] * 5)
    np.testing.assert_allclose(state.block - state.agent.position, offset, atol=1e-6)
    state, _, _ = _run(step, state, [(STAY, OPEN)] * 3)  # opening 0 -> 0.6: released
    assert not bool(state.holding)
    block = state.block
    state, _, _ = _run(step, state, [((1.0, 0.0), OPEN)] * 5)
    np.testing.assert_array_equal(state.block, block)
    np.testing.assert_allclose(
        state.agent.position - block, -offset + np.array([5 * MAX_STEP, 0]), atol=1e-6
    )


@pytest.mark.parametrize(
    "first_moves",
    [
        [(STAY, CLOSE)] * 5,  # closing 0.1 away from the block
        [(STAY, CLOSE)] * 5 + [((-1.0, 0.0), CLOSE)] * 5,  # closed first, then moved onto it
    ],
    ids=["misaligned", "already_closed"],
)
def test_closing_grasps_nothing_unless_aligned_while_closing(env, step, first_moves):
    state = _placed(env, (0.1, 0.0))
    block = state.block
    state, _, _ = _run(step, state, first_moves)
    assert not bool(state.holding)
    np.testing.assert_array_equal(state.block, block)


def test_success_needs_the_block_in_a_zone_released_with_the_gripper_open(env, step):
    state = _placed(env, (0.0, 0.0))
    state = state.replace(block=state.zones[1], agent=state.agent.replace(position=state.zones[1]))
    state, reward, info = _run(step, state, [(STAY, CLOSE)] * 3)  # grasped inside the zone
    assert bool(state.holding) and not bool(info["success"]) and float(reward) == 0.0
    state, reward, info = _run(step, state, [(STAY, OPEN)] * 2)  # released, opening 0.6 -> 0.8
    assert not bool(state.holding) and not bool(info["success"])
    state, reward, info = _run(step, state, [(STAY, OPEN)])  # opening 1.0 >= 0.9
    assert bool(info["success"]) and bool(info["terminated"]) and float(reward) == 1.0


def test_without_velocity_the_state_is_position_and_opening_and_the_rest_is_unchanged(env):
    without = PickPlaceEnv(cameras=(), velocity_in_state=False)
    spec = without.spec.observation["observation.state"]
    assert spec.shape == (3,) and spec.names == ("x", "y", "gripper_opening")
    state, _ = env.reset(jax.random.key(3))
    moved, *_ = env.step(state, jnp.array([0.5, 1.0, CLOSE]))
    full, reduced = env.observe(moved), without.observe(moved)
    speed = MAX_STEP * FPS
    np.testing.assert_allclose(full["observation.state"][2:4], [0.5 * speed, speed], atol=1e-6)
    np.testing.assert_array_equal(
        reduced["observation.state"], np.asarray(full["observation.state"])[[0, 1, 4]]
    )
    np.testing.assert_array_equal(
        reduced["observation.environment_state"], full["observation.environment_state"]
    )

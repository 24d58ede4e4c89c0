"""Closed-loop rollouts (core.evaluation.rollout): the obstacle expert, seen only through
normalized observations and driven through the controllers, must reproduce the expert: same
layouts per seed, the expert's action at every visited state, 100% success, the policy queried
exactly when the controller asks, absorbing done states, clipped actions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from evaluation_policies import (
    ConstantPolicy,
    ObstacleOraclePolicy,
    oracle_mode,
    oracle_normalizers,
)

from core.controllers import ChunkedController, TemporalEnsemblingController
from core.envs.api import ExpertPlan
from core.envs.obstacle import ObstacleEnv, ObstacleExpert
from core.evaluation import metrics
from core.evaluation.rollout import (
    check_policy_fits_task,
    episode_keys,
    expert_reference_rollouts,
    rollout,
)

SEEDS = np.arange(5000, 5008)
NUM_STEPS = 60  # the expert needs about 40 steps
CHUNK = 4
ENV = ObstacleEnv(cameras=())


def _rollout(policy, controller, num_steps=NUM_STEPS):
    normalizers = oracle_normalizers()
    variables = {"normalizers": normalizers}
    keys = episode_keys(SEEDS)
    result = rollout(
        ENV, policy, controller, variables, normalizers, keys, jax.random.key(0), num_steps
    )
    return jax.device_get(result)


@pytest.fixture(scope="module")
def chunked():
    """Chunks of 4 executed whole, with a 2-frame observation window."""
    policy = ObstacleOraclePolicy(action_horizon=CHUNK, observation_horizon=2)
    return _rollout(policy, ChunkedController(query_every=CHUNK))


@pytest.fixture(scope="module")
def ensembled():
    policy = ObstacleOraclePolicy(action_horizon=CHUNK)
    return _rollout(policy, TemporalEnsemblingController(decay=0.01, convention="act"))


@pytest.fixture(scope="module")
def expert():
    return jax.device_get(expert_reference_rollouts(ENV, ObstacleExpert(), episode_keys(SEEDS)))


@jax.jit
def _expert_actions_on_visited_states(rollouts):
    """[N, T, 2] what the expert (with the oracle's side) does in each state the policy visited."""
    states = jax.tree.map(lambda leaf: leaf[:, :-1], rollouts.states)
    modes = jax.vmap(oracle_mode)(_environment(rollouts))

    def act(mode, state):
        return ObstacleExpert().act(ExpertPlan(mode), state)

    return jax.vmap(jax.vmap(act, in_axes=(None, 0)))(modes, states)


def _environment(rollouts):
    """[N, 4] [goal, obstacle] of each episode."""
    return jnp.concatenate([rollouts.states.goal[:, 0], rollouts.states.obstacle[:, 0]], axis=1)


@pytest.mark.slow  # two rollout compilations (~3 s each on 2 shared cores) in the fixtures
@pytest.mark.parametrize("controller_fixture", ["chunked", "ensembled"])
def test_oracle_policy_reproduces_the_expert_through_normalization_and_the_controller(
    controller_fixture, request, expert
):
    rollouts = request.getfixturevalue(controller_fixture)
    assert rollouts.success[:, -1].all() and expert.success[:, -1].all()
    lengths = metrics.rollout_lengths(rollouts)
    executed = np.asarray(rollouts.actions)
    wanted = np.asarray(_expert_actions_on_visited_states(rollouts))
    for episode, length in enumerate(lengths):
        # float32 normalization round trips: ~1e-7 in the state, amplified by the via-point
        # steering near the targets; a wrong row, scale or offset is off by >= 1e-2
        np.testing.assert_allclose(executed[episode, :length], wanted[episode, :length], atol=1e-4)


def test_episode_seed_gives_the_expert_demonstration_layout(chunked, expert):
    """Seed s resets to the layout of the expert episode with seed s (core.envs.rollout), so
    evaluation seeds disjoint from the demonstration seeds are unseen layouts."""
    first = jax.tree.map(lambda leaf: leaf[:, 0], chunked.states)
    expert_first = jax.tree.map(lambda leaf: leaf[:, 0], expert.states)
    for leaf, expert_leaf in zip(
        jax.tree.leaves(first), jax.tree.leaves(expert_first), strict=True
    ):
        np.testing.assert_array_equal(leaf, expert_leaf)


def test_policy_is_queried_every_k_steps_in_lockstep_until_every_episode_has_ended(
    chunked, ensembled
):
    for rollouts, query_every in ((chunked, CHUNK), (ensembled, 1)):
        steps = np.arange(NUM_STEPS)
        running = steps < metrics.rollout_lengths(rollouts).max()  # then nothing is computed
        expected = (steps % query_every == 0) & running
        np.testing.assert_array_equal(
            rollouts.queried, np.broadcast_to(expected, (len(SEEDS), NUM_STEPS))
        )


def test_done_episodes_are_absorbing_and_stop_counting(chunked):
    lengths = metrics.rollout_lengths(chunked)
    assert (lengths < NUM_STEPS).all()
    positions = np.asarray(chunked.states.agent.position)
    for episode, length in enumerate(lengths):
        after_end = positions[episode, length:]
        np.testing.assert_array_equal(after_end, np.broadcast_to(after_end[0], after_end.shape))
        assert chunked.rewards[episode, length - 1] == 1.0
    np.testing.assert_array_equal(chunked.rewards.sum(axis=1), np.ones(len(SEEDS)))


def test_actions_beyond_the_bounds_are_clipped_to_them():
    """A normalized action of 50 un-normalizes to 0.2 + 0.9 · 50 = 45.2 per step: clipped to 1."""
    rollouts = _rollout(ConstantPolicy(50.0), ChunkedController(1), num_steps=3)
    np.testing.assert_array_equal(rollouts.actions, np.ones((len(SEEDS), 3, 2)))


def test_policy_reading_an_unobserved_feature_is_rejected():
    policy = ObstacleOraclePolicy(observation_keys=("observation.images.wrist",))
    with pytest.raises(ValueError, match=r"reads \['observation.images.wrist'\]"):
        check_policy_fits_task(policy, ENV.spec)

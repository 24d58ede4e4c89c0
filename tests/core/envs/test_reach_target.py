"""Reach target: the instruction decides success; ignoring it scores about 1/N."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.envs.api import ExpertPlan
from core.envs.point_mass import steer_toward
from core.envs.reach_target import (
    COLOR_NAMES,
    MAX_STEP,
    VOCABULARY,
    ReachTargetEnv,
    ReachTargetExpert,
    ReachTargetState,
    detokenize,
    tokenize,
)
from core.envs.rollout import expert_rollouts

NUM_SEEDS = 200
NUM_TARGETS = 3


@dataclasses.dataclass(frozen=True)
class GoToColor:
    """Goes to a target chosen without reading the instruction: a fixed colour, or the colour
    after the named one (always wrong)."""

    color: int | None
    mode_names: ClassVar[tuple[str, ...]] = ("blind",)

    def plan(self, key, state) -> ExpertPlan:
        return ExpertPlan(mode=jnp.zeros((), jnp.int32))

    def act(self, plan: ExpertPlan, state: ReachTargetState):
        color = (state.named + 1) % NUM_TARGETS if self.color is None else self.color
        return steer_toward(state.agent.position, state.targets[color], MAX_STEP)


@pytest.fixture(scope="module")
def env():
    return ReachTargetEnv(cameras=(), num_targets=NUM_TARGETS)


def _keys(count):
    return jax.vmap(jax.random.key)(jnp.arange(count))


def _binomial_bounds(count, probability):
    """count·p ± 3σ, σ = √(count·p·(1-p)): holds with probability 0.997."""
    sigma = np.sqrt(count * probability * (1 - probability))
    return count * probability - 3 * sigma, count * probability + 3 * sigma


def test_expert_succeeds_on_at_least_99_percent_of_200_seeds_and_every_colour_is_named(env):
    rollouts = jax.device_get(expert_rollouts(env, ReachTargetExpert(), _keys(NUM_SEEDS)))
    assert rollouts.succeeded.sum() >= 198
    named = np.bincount(rollouts.states.named[:, 0], minlength=NUM_TARGETS)
    low, high = _binomial_bounds(NUM_SEEDS, 1 / NUM_TARGETS)
    assert np.all((low <= named) & (named <= high)), named


def test_ignoring_the_instruction_succeeds_on_about_one_in_n_episodes(env):
    """Always going to the red target succeeds exactly when red is named: p = 1/3, so the
    success count over 200 seeds lies in 66.7 ± 20 (3σ)."""
    blind = jax.device_get(expert_rollouts(env, GoToColor(0), _keys(NUM_SEEDS)))
    low, high = _binomial_bounds(NUM_SEEDS, 1 / NUM_TARGETS)
    assert low <= blind.succeeded.sum() <= high
    np.testing.assert_array_equal(blind.succeeded, blind.states.named[:, 0] == 0)


def test_reaching_another_target_than_the_named_one_ends_the_episode_as_failure(env):
    wrong = expert_rollouts(env, GoToColor(None), _keys(20))
    assert not np.any(wrong.succeeded)
    assert np.all(wrong.lengths < env.max_episode_steps)  # terminated on touching it


def test_instruction_tokens_name_the_target_colour(env):
    state, obs = jax.jit(env.reset)(jax.random.key(11))
    text = env.instruction(state)
    assert text == f"go to the {COLOR_NAMES[int(state.named)]} target"
    assert detokenize(obs["observation.instruction"]) == text
    np.testing.assert_array_equal(obs["observation.instruction"], tokenize(text))
    assert env.spec.vocabulary == VOCABULARY


def test_unknown_instruction_word_and_bad_target_count_are_rejected():
    with pytest.raises(ValueError, match=r"must be in .* got \['purple'\]"):
        tokenize("go to the purple target")
    with pytest.raises(ValueError, match="num_targets must be 3 or 4, got 5"):
        ReachTargetEnv(num_targets=5)


def test_four_targets_give_four_colours_in_the_environment_state():
    env = ReachTargetEnv(cameras=(), num_targets=4)
    state, obs = jax.jit(env.reset)(jax.random.key(2))
    assert obs["observation.environment_state"].shape == (8,)
    assert env.spec.observation["observation.environment_state"].names[-2:] == (
        "yellow_x",
        "yellow_y",
    )
    separations = np.linalg.norm(state.targets[:, None] - state.targets[None], axis=-1)
    assert np.min(separations[np.triu_indices(4, 1)]) > 0.4  # distinct, well apart

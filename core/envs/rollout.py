"""Vectorized expert rollouts and their episodes: demonstrations D = {(o_t, a_t*)} (book 16.8.1).

`expert_rollouts` runs one episode per key with `vmap` over episodes and `lax.scan` over time,
for the task's full time limit (a done state is absorbing, see `core.envs.api`), keeping only the
small states; `episode` then renders the observations of one episode and cuts it at its end.
An episode's key is split into the environment's reset key and the expert's plan key, so
`jax.random.key(seed)` reproduces an episode exactly.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import numpy as np

from core.envs.api import Env, Expert, ExpertPlan

RENDER_BUCKET = 32


@flax.struct.dataclass
class ExpertRollouts:
    """N expert episodes padded to the time limit T.

    states: the state pytree with leading [N, T]: the state before each action.
    plan: the expert's plan per episode, mode [N].
    actions: [N, T, Da]; rewards: [N, T]; done: [N, T]; success: [N, T] after each action.
    """

    states: Any
    plan: ExpertPlan
    actions: jax.Array
    rewards: jax.Array
    done: jax.Array
    success: jax.Array

    def state(self, episode_index: int, step: int) -> Any:
        """The state of one episode before action `step`."""
        return jax.tree.map(lambda leaf: leaf[episode_index, step], self.states)

    @property
    def lengths(self) -> np.ndarray:
        """[N] steps up to and including the first done one (the last step counts if none is)."""
        done = np.asarray(self.done)
        return np.where(done.any(axis=1), done.argmax(axis=1) + 1, done.shape[1])

    @property
    def succeeded(self) -> np.ndarray:
        """[N] bool: the episode ended in success."""
        return np.asarray(self.success)[:, -1]


@functools.partial(jax.jit, static_argnums=(0, 1))
def expert_rollouts(env: Env, expert: Expert, keys: jax.Array) -> ExpertRollouts:
    """Rolls out `expert` in `env` for keys: [N] (one episode each) over the time limit."""

    def rollout(key: jax.Array) -> ExpertRollouts:
        reset_key, plan_key = jax.random.split(key)
        state, _ = env.reset(reset_key)
        plan = expert.plan(plan_key, state)

        def control_step(state, _):
            action = expert.act(plan, state)
            next_state, _, reward, done, info = env.step(state, action)
            return next_state, (state, action, reward, done, info["success"])

        _, (states, actions, rewards, done, success) = jax.lax.scan(
            control_step, state, length=env.spec.max_episode_steps
        )
        return ExpertRollouts(states, plan, actions, rewards, done, success)

    return jax.vmap(rollout)(keys)


@functools.partial(jax.jit, static_argnums=0)
def _observe_sequence(env: Env, states: Any) -> dict[str, jax.Array]:
    return jax.vmap(env.observe)(states)


def episode(env: Env, rollouts: ExpertRollouts, index: int) -> dict[str, np.ndarray]:
    """Episode `index` as numpy arrays of its length T_i, with LeRobot-style keys.

    The observation keys of `env.observe` ([T_i, ...]), "action" [T_i, Da], and per step
    "next.reward" float32, "next.done" bool and "next.success" bool, each [T_i]. Pass rollouts
    fetched to the host (`jax.device_get`) when extracting many episodes. Observations are
    rendered for the first T_i steps rounded up to a multiple of RENDER_BUCKET (one compilation
    per bucket, little wasted work).
    """
    length = int(rollouts.lengths[index])
    rendered = min(-(-length // RENDER_BUCKET) * RENDER_BUCKET, rollouts.actions.shape[1])
    states = jax.tree.map(lambda leaf: leaf[index, :rendered], rollouts.states)
    arrays = {
        **_observe_sequence(env, states),
        "action": rollouts.actions[index],
        "next.reward": rollouts.rewards[index],
        "next.done": rollouts.done[index],
        "next.success": rollouts.success[index],
    }
    return {key: np.asarray(value[:length]) for key, value in arrays.items()}

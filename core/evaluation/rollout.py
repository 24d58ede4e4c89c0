"""Closed-loop rollouts of a policy in a task: the policy acts on its own observations.

Book 16.8.1 (at deployment the policy visits its own state distribution, not the
demonstrator's: distribution shift and compounding errors) and 17.2.2 / 17.7 / 18.7 (the
execution controller between the policy's chunks and the robot).

One control step of the agent (`agent_step`) is shared by every way of stepping an
environment:

  o_t ──> observation window [B, To, ...] ──> prepare_batch (uint8 -> [0, 1], normalize)
      ──> policy.predict_chunk (only when the controller needs a chunk) ──> unnormalize
      ──> controller ──> clip to the action bounds (eq. 16.15) ──> a_t [B, Da]

`rollout` runs it for JAX-native tasks (`core.envs`): all episodes of a batch in lockstep, the
environment `vmap`ped over episodes and `lax.scan` over time, with `lax.cond` skipping the policy
call on steps where the controller executes a stored chunk, so each policy call is one batched
forward pass. Done states are absorbing (`core.envs.api`), so the scan runs a fixed number of
steps and finished episodes stop counting (the actions recorded after an episode's end are not
executed); once every episode of the batch has ended, the remaining steps compute nothing.

A host-stepped simulator (e.g. MuJoCo) reuses `start_agent`/`agent_step` jitted, steps on the
host, and fills the same `Rollouts` record, from which `core.evaluation.metrics` and
`core.evaluation.media` work unchanged.

Episode i of an evaluation is reset from `jax.random.key(seed_i)` split as `core.envs.rollout`
splits it, so seed s gives the layout of the expert demonstration with seed s: evaluation seeds
disjoint from the demonstration seeds give layouts never seen in training.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from core.controllers import Controller, push_observation, start_observation_history
from core.data.stats import prepare_batch
from core.envs.api import Env, EnvSpec, Expert, clip_action
from core.envs.rollout import expert_rollouts
from core.normalizers import AffineNormalizer
from core.policy import Policy, Variables

Normalizers = Mapping[str, AffineNormalizer]


@flax.struct.dataclass
class AgentState:
    """history: {key: [B, To, ...]} the policy's observation window; controller: its state."""

    history: dict[str, jax.Array]
    controller: Any


@flax.struct.dataclass
class Rollouts:
    """N episodes of T control steps (padded with absorbing steps after an episode ends).

    states: the environment state pytree, leading [N, T + 1]: before each step, then the last.
    actions: [N, T, Da] the actions sent to the environment (raw units, clipped); after an
      episode's end they are not executed, and 0 once every episode of its batch has ended.
    rewards: [N, T]; success, terminated, truncated: [N, T] bool, the info after each step.
    queried: [N, T] bool, the steps at which the policy was called (in lockstep: the same
      steps for every episode of a batch; none after all of them have ended).
    """

    states: Any
    actions: jax.Array
    rewards: jax.Array
    success: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    queried: jax.Array


def check_policy_fits_task(policy: Policy, spec: EnvSpec) -> None:
    """Raises ValueError unless the task provides every observation the policy reads."""
    missing = sorted(set(policy.observation_keys) - set(spec.observation))
    if missing:
        raise ValueError(
            f"the policy reads {missing}, which task {spec.name!r} does not observe; it "
            f"observes {sorted(spec.observation)}"
        )


def policy_observation(policy: Policy, observation: Mapping[str, jax.Array]) -> dict:
    """The keys of an environment observation {key: [B, ...]} that the policy reads."""
    return {key: observation[key] for key in policy.observation_keys}


def start_agent(
    policy: Policy, controller: Controller, observation: Mapping[str, jax.Array], action_dim: int
) -> AgentState:
    """The agent before step 0, from the first observations o_0: {key: [B, ...]} of B episodes."""
    window = start_observation_history(
        policy_observation(policy, observation), policy.observation_horizon
    )
    batch_size = next(iter(window.values())).shape[0]
    chunk_shape = (policy.action_horizon, action_dim)
    return AgentState(history=window, controller=controller.init(batch_size, chunk_shape))


def agent_step(
    policy: Policy,
    controller: Controller,
    spec: EnvSpec,
    variables: Variables,
    normalizers: Normalizers,
    state: AgentState,
    observation: Mapping[str, jax.Array],
    t: jax.Array,
    rng: jax.Array,
) -> tuple[AgentState, jax.Array, jax.Array]:
    """One control step of B episodes: observe o_t, maybe predict a chunk, act.

    Args:
      policy, controller, spec: static; spec gives the action bounds.
      variables: the policy's variables.
      normalizers: {feature: AffineNormalizer}; "action" un-normalizes the predicted chunk
        (absent: the policy predicts raw actions), observation features are normalized.
      state: the agent's state after step t - 1 (or `start_agent`'s).
      observation: {key: [B, ...]} o_t (at least the policy's keys).
      t: int32 [] the control step.
      rng: the key of this step's policy call (sampling policies draw from it).

    Returns:
      (state, action [B, Da] in raw units within the bounds, queried: bool [] the policy ran).
    """
    history = push_observation(state.history, policy_observation(policy, observation))
    action_normalizer = normalizers.get("action")

    def query(controller_state):
        chunk = policy.predict_chunk(variables, prepare_batch(history, normalizers), rng)
        if action_normalizer is not None:
            chunk = action_normalizer.unnormalize(chunk)
        return controller.update(controller_state, chunk, t)

    queried = controller.needs_query(state.controller, t)
    controller_state = jax.lax.cond(queried, query, lambda s: s, state.controller)
    action = jax.vmap(functools.partial(clip_action, spec))(controller.action(controller_state, t))
    return AgentState(history=history, controller=controller_state), action, queried


@functools.partial(jax.jit, static_argnames=("env", "policy", "controller", "num_steps"))
def rollout(
    env: Env,
    policy: Policy,
    controller: Controller,
    variables: Variables,
    normalizers: Normalizers,
    keys: jax.Array,
    rng: jax.Array,
    num_steps: int,
) -> Rollouts:
    """Rolls out B episodes in lockstep for num_steps control steps.

    Args:
      env: a JAX-native task environment (static).
      policy, controller: static.
      variables, normalizers: as in `agent_step`.
      keys: [B] episode keys, e.g. `jax.random.key(seed_i)`; each is split into the reset key
        and an unused key exactly as `core.envs.rollout.expert_rollouts` splits it.
      rng: the policy's randomness; step t uses fold_in(rng, t).
      num_steps: T, the scan length (episodes end earlier at the task's time limit).
    """
    reset_keys = jax.vmap(lambda key: jax.random.split(key)[0])(keys)
    env_states, observation = jax.vmap(env.reset)(reset_keys)
    agent = start_agent(policy, controller, observation, env.spec.action.shape[0])
    not_done = jnp.zeros(keys.shape, bool)
    start_info = {"success": not_done, "terminated": not_done, "truncated": not_done}

    def act_and_step(carry, t):
        env_states, observation, agent, _ = carry
        agent, action, queried = agent_step(
            policy,
            controller,
            env.spec,
            variables,
            normalizers,
            agent,
            observation,
            t,
            jax.random.fold_in(rng, t),
        )
        next_states, next_observation, reward, _, info = jax.vmap(env.step)(env_states, action)
        # carry only what the policy reads, so unused renders are compiled away
        carry = (next_states, policy_observation(policy, next_observation), agent, info)
        return carry, (env_states, action, reward, info, queried)

    def all_ended(carry, t):
        """Every episode is in its absorbing state: record it, compute nothing."""
        env_states, _, _, info = carry
        no_action = jnp.zeros((*keys.shape, *env.spec.action.shape), jnp.float32)
        no_reward = jnp.zeros(keys.shape, jnp.float32)
        return carry, (env_states, no_action, no_reward, info, jnp.zeros((), bool))

    def control_step(carry, t):
        info = carry[-1]
        running = ~jnp.all(info["terminated"] | info["truncated"])
        return jax.lax.cond(running, act_and_step, all_ended, carry, t)

    start = (env_states, policy_observation(policy, observation), agent, start_info)
    (final_states, *_), (states, actions, rewards, info, queried) = jax.lax.scan(
        control_step, start, jnp.arange(num_steps, dtype=jnp.int32)
    )
    states = jax.tree.map(
        lambda steps, last: jnp.concatenate([steps, last[None]]), states, final_states
    )

    def batch_first(x):
        return jnp.swapaxes(x, 0, 1)

    return Rollouts(
        states=jax.tree.map(batch_first, states),
        actions=batch_first(actions),
        rewards=batch_first(rewards),
        success=batch_first(info["success"]),
        terminated=batch_first(info["terminated"]),
        truncated=batch_first(info["truncated"]),
        queried=batch_first(jnp.broadcast_to(queried[:, None], rewards.shape)),
    )


def episode_keys(seeds: Sequence[int] | np.ndarray) -> jax.Array:
    """[N] keys jax.random.key(seed) of the given episode seeds."""
    return jax.vmap(jax.random.key)(jnp.asarray(np.asarray(seeds, np.int64)))


def concatenate_rollouts(parts: Sequence[Rollouts]) -> Rollouts:
    """Rollouts of consecutive episode batches (on the host) as one record of all episodes."""
    return jax.tree.map(lambda *leaves: np.concatenate(leaves), *parts)


@functools.partial(jax.jit, static_argnums=(0, 1))
def expert_reference_rollouts(env: Env, expert: Expert, keys: jax.Array) -> Rollouts:
    """The task's scripted expert on the same episodes (`core.envs.rollout.expert_rollouts`),
    as a `Rollouts` record over the task's time limit, for reference statistics.

    keys: [N] episode keys, as for `rollout`: the same key gives the same initial state. The
    expert decides from the privileged state at every step, so `queried` is all True. Needs the
    task's states to carry an `EpisodeStatus` in `.status`, as every `core.envs` task's do.
    """
    demonstrations = expert_rollouts(env, expert, keys)
    last = jax.tree.map(lambda leaf: leaf[:, -1], demonstrations.states)
    final_states, *_ = jax.vmap(env.step)(last, demonstrations.actions[:, -1])
    states = jax.tree.map(
        lambda steps, final: jnp.concatenate([steps, final[:, None]], axis=1),
        demonstrations.states,
        final_states,
    )
    status_after_step = jax.tree.map(lambda leaf: leaf[:, 1:], states.status)
    return Rollouts(
        states=states,
        actions=demonstrations.actions,
        rewards=demonstrations.rewards,
        success=status_after_step.success,
        terminated=status_after_step.terminated,
        truncated=status_after_step.truncated,
        queried=jnp.ones(demonstrations.rewards.shape, bool),
    )

"""Closed-loop rollouts in a host-stepped simulator (MuJoCo ALOHA): the same agent, a Python loop.

Book 16.8.1 (the policy visits its own state distribution), 17.2.2 / 17.7 (the execution
controller: chunks, temporal ensembling) and 17 (ACT's simulated ALOHA tasks, judged by
gym-aloha's success, reward 4).

A host-stepped environment (`registry.SIM_TASKS`, e.g. `core.envs.aloha`) implements the `Env`
API with numpy: `step` takes one episode's state, so N episodes are a list of N states, each
stepped on its own. The agent is the jitted one of `core.evaluation.rollout`: `start_agent`,
then at every control step one batched `agent_step` over the N episodes (observation window,
normalization, the policy's chunk when the controller asks for one, un-normalization,
controller, clipping), exactly as `rollout` runs it under `lax.scan`:

  for t in 0 .. T-1:
    if every episode has ended: record an absorbing step (no action, no call)
    agent, actions [N, Da], queried = agent_step(..., o_t [N, ...], t, fold_in(rng, t))
    for each episode i still running: s_i, o_i, r_i, info_i = env.step(s_i, actions[i])

An episode that has ended keeps its state, observation and info and earns reward 0 without
being stepped (the `Env` contract's absorbing done state, without paying for a render), so the
record is the `Rollouts` of the jitted path and `core.evaluation.metrics` and `media` apply
unchanged: on a JAX task stepped on the host the two paths agree (tests).

Episode i starts from `reset(split(key_i)[0])`, as `rollout` and the demonstrations split
their keys, so evaluation seeds disjoint from the demonstration seeds give unseen layouts.

Video: the jitted path re-renders stored states afterwards; here the frames of the first V
episodes are kept while the rollout runs (the observation's image of the camera when the
policy's environment renders it, else `env.render`), shrunk to thumbnails.

The expert reference (`host_expert_rollouts`) runs the task's scripted expert on the same
episodes through the same loop, its decisions made on the host from the privileged state.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import numpy as np
from PIL import Image

from core.controllers import Controller
from core.envs import registry
from core.envs.api import Env, EnvSpec, Expert
from core.evaluation.rollout import (
    AgentState,
    Normalizers,
    Rollouts,
    agent_step,
    policy_observation,
    start_agent,
)
from core.policy import Policy, Variables

IMAGE_PREFIX = "observation.images."


def is_host_stepped(env: Env) -> bool:
    """The task's environment steps on the host (numpy, e.g. MuJoCo) rather than under jit."""
    return env.spec.name in registry.SIM_TASKS


def stack_pytrees(items: Sequence[Any]) -> Any:
    """The pytrees items (e.g. N episodes' states or observations) stacked leaf by leaf along
    a new leading axis, as numpy arrays."""
    return jax.tree.map(lambda *leaves: np.stack(leaves), *items)


def reset_episodes(env: Env, keys: jax.Array) -> tuple[list[Any], list[dict]]:
    """(states, observations) of the episodes of keys: [N], each reset from split(key)[0]."""
    states, observations = [], []
    for key in keys:
        state, observation = env.reset(jax.random.split(key)[0])
        states.append(state)
        observations.append(observation)
    return states, observations


def thumbnail_size(height: int, width: int, longest_side: int) -> tuple[int, int]:
    """(height, width) scaled so that the longer side is at most longest_side pixels."""
    scale = min(1.0, longest_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def thumbnail(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """frame: uint8 [H, W, 3] resized (area-averaged) to size = (height, width)."""
    if frame.shape[:2] == tuple(size):
        return frame
    height, width = size
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BOX))


class HostAgent(Protocol):
    """Decides the actions of N episodes on the host; `carry` is its state between steps."""

    def start(self, keys: jax.Array, states: list, observation: dict) -> Any:
        """The carry before step 0, from the episode keys [N], states and stacked o_0."""
        ...

    def act(self, carry: Any, t: int, states: list, observation: dict) -> tuple[Any, Any, bool]:
        """(carry, actions [N, Da], queried) at step t from the states and stacked o_t."""
        ...


@functools.partial(jax.jit, static_argnums=(0, 1, 3))
def _start_agent(policy: Policy, controller: Controller, observation: dict, action_dim: int):
    return start_agent(policy, controller, observation, action_dim)


@functools.partial(
    jax.jit, static_argnames=("env", "policy", "controller"), donate_argnames=("agent",)
)
def _agent_step(
    env: Env,
    policy: Policy,
    controller: Controller,
    variables: Variables,
    normalizers: Normalizers,
    agent: AgentState,
    observation: dict,
    t: jax.Array,
    rng: jax.Array,
) -> tuple[AgentState, jax.Array, jax.Array]:
    """`agent_step` with the step's key fold_in(rng, t), as `rollout` draws it."""
    return agent_step(
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


@dataclasses.dataclass(frozen=True)
class PolicyAgent:
    """A policy with its controller as a `HostAgent`: the jitted `agent_step` of `rollout`."""

    env: Env
    policy: Policy
    controller: Controller
    variables: Variables
    normalizers: Normalizers
    rng: jax.Array

    def start(self, keys: jax.Array, states: list, observation: dict) -> AgentState:
        del keys, states
        action_dim = self.env.spec.action.shape[0]
        seen = policy_observation(self.policy, observation)
        return _start_agent(self.policy, self.controller, seen, action_dim)

    def act(self, carry: AgentState, t: int, states: list, observation: dict):
        del states
        agent, actions, queried = _agent_step(
            self.env,
            self.policy,
            self.controller,
            self.variables,
            self.normalizers,
            carry,
            policy_observation(self.policy, observation),
            np.int32(t),
            self.rng,
        )
        return agent, np.asarray(actions), bool(queried)


@dataclasses.dataclass(frozen=True)
class ExpertAgent:
    """The task's scripted expert as a `HostAgent`: plans from split(key)[1] and the reset
    state, then acts on each episode's privileged state (always `queried`)."""

    expert: Expert

    def start(self, keys: jax.Array, states: list, observation: dict) -> list:
        del observation
        return [
            self.expert.plan(jax.random.split(key)[1], state)
            for key, state in zip(keys, states, strict=True)
        ]

    def act(self, carry: list, t: int, states: list, observation: dict):
        del observation
        actions = [self.expert.act(plan, state) for plan, state in zip(carry, states, strict=True)]
        return carry, np.stack(actions).astype(np.float32), True


@dataclasses.dataclass(frozen=True)
class HostRollouts:
    """What `run_episodes` returns.

    rollouts: the `Rollouts` record of N episodes (numpy, leading [N, T + 1] / [N, T]).
    frames: uint8 [V, T + 1, h, w, 3] thumbnails of the first V episodes (frame t shows the
      state before step t), or None for V = 0.
    env_steps: the `env.step` calls made (running episodes only).
    env_seconds, agent_seconds: wall time in the environment (resets, steps and video frames)
      and in the agent (its start and every `act`).
    first_act_seconds: the wall time of the agent's first `act` (a jitted agent compiles then).
    """

    rollouts: Rollouts
    frames: np.ndarray | None
    env_steps: int
    env_seconds: float
    agent_seconds: float
    first_act_seconds: float


def _video_frame(env: Env, state: Any, observation: dict, camera: str, size: tuple[int, int]):
    """The thumbnail of the camera's frame: the observation's image when it has one."""
    image = observation.get(IMAGE_PREFIX + camera)
    frame = np.asarray(env.render(state, camera) if image is None else image)
    return thumbnail(frame, size)


def _video_size(spec: EnvSpec, camera: str, video_side: int) -> tuple[int, int]:
    height, width = spec.observation[IMAGE_PREFIX + camera].shape[:2]
    return thumbnail_size(height, width, video_side)


def step_running_episodes(
    env: Env, states: list, observations: list, info: list, actions: np.ndarray, running
) -> tuple[list, list, list, np.ndarray]:
    """One control step of the running episodes; the others keep their state, observation
    and info and earn 0 (absorbing).

    Args:
      states, observations, info: the N episodes' current ones.
      actions: [N, Da] the actions to execute.
      running: [N] bool, the episodes not yet ended.

    Returns:
      (states, observations, info, rewards [N]) after the step.
    """
    states, observations, info = list(states), list(observations), list(info)
    rewards = np.zeros(len(states), np.float32)
    for i in np.flatnonzero(running):
        states[i], observations[i], rewards[i], _, info[i] = env.step(states[i], actions[i])
    return states, observations, info, rewards


def _episodes_ended(info: list) -> np.ndarray:
    return np.array([bool(step["terminated"] or step["truncated"]) for step in info])


def _batch_first(steps: list) -> Any:
    """The per-step pytrees of N episodes stacked to leading [N, steps]."""
    return jax.tree.map(lambda leaf: np.swapaxes(leaf, 0, 1), stack_pytrees(steps))


def run_episodes(
    env: Env,
    agent: HostAgent,
    keys: jax.Array,
    num_steps: int,
    *,
    video_episodes: int = 0,
    video_side: int = 128,
) -> HostRollouts:
    """Rolls out N episodes in a host-stepped env (module docstring) for num_steps steps.

    Args:
      env: a host-stepped environment (numpy states).
      agent: decides the actions (`PolicyAgent`, `ExpertAgent`).
      keys: [N] episode keys, e.g. `jax.random.key(seed_i)`.
      num_steps: T >= 1 control steps (episodes end earlier at the task's time limit).
      video_episodes: V, the first episodes whose frames of the env's first camera are kept
        (0 <= V <= N).
      video_side: the longest side of a video thumbnail in pixels.

    Raises:
      ValueError for a bad num_steps or video_episodes, or video_episodes without a camera.
    """
    num_episodes = len(keys)
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if not 0 <= video_episodes <= num_episodes:
        raise ValueError(f"video_episodes must lie in 0..{num_episodes}, got {video_episodes!r}")
    if video_episodes and not env.spec.cameras:
        raise ValueError(f"task {env.spec.name!r} has no camera to film video_episodes from")
    start = time.perf_counter()
    states, observations = reset_episodes(env, keys)
    env_seconds = time.perf_counter() - start
    start = time.perf_counter()
    carry = agent.start(keys, states, stack_pytrees(observations))
    act_seconds = [time.perf_counter() - start]  # the start, then each act
    camera = env.spec.cameras[0] if video_episodes else None
    size = _video_size(env.spec, camera, video_side) if camera else None
    film = [
        [_video_frame(env, states[i], observations[i], camera, size)] for i in range(video_episodes)
    ]
    info = [{"success": False, "terminated": False, "truncated": False}] * num_episodes
    history = {"states": [stack_pytrees(states)], "actions": [], "rewards": [], "info": []}
    queried_steps, env_steps = [], 0
    for t in range(num_steps):
        running = ~_episodes_ended(info)
        if running.any():
            start = time.perf_counter()
            carry, actions, queried = agent.act(carry, t, states, stack_pytrees(observations))
            act_seconds.append(time.perf_counter() - start)
            start = time.perf_counter()
            states, observations, info, rewards = step_running_episodes(
                env, states, observations, info, actions, running
            )
            env_steps += int(running.sum())
        else:  # every episode has ended: record an absorbing step
            start = time.perf_counter()
            actions = np.zeros((num_episodes, *env.spec.action.shape), np.float32)
            rewards, queried = np.zeros(num_episodes, np.float32), False
        for i, frames in enumerate(film):  # an ended episode's picture stays
            if running[i]:
                frames.append(_video_frame(env, states[i], observations[i], camera, size))
            else:
                frames.append(frames[-1])
        env_seconds += time.perf_counter() - start
        history["states"].append(stack_pytrees(states))
        history["actions"].append(np.asarray(actions, np.float32))
        history["rewards"].append(rewards)
        history["info"].append(stack_pytrees(info))
        queried_steps.append(queried)

    info_by_step = _batch_first(history["info"])
    rollouts = Rollouts(
        states=_batch_first(history["states"]),
        actions=_batch_first(history["actions"]),
        rewards=_batch_first(history["rewards"]),
        success=info_by_step["success"].astype(bool),
        terminated=info_by_step["terminated"].astype(bool),
        truncated=info_by_step["truncated"].astype(bool),
        queried=np.broadcast_to(np.array(queried_steps)[None], (num_episodes, num_steps)),
    )
    return HostRollouts(
        rollouts=rollouts,
        frames=np.stack([np.stack(frames) for frames in film]) if film else None,
        env_steps=env_steps,
        env_seconds=env_seconds,
        agent_seconds=sum(act_seconds),
        first_act_seconds=act_seconds[1] if len(act_seconds) > 1 else 0.0,
    )


def host_rollout(
    env: Env,
    policy: Policy,
    controller: Controller,
    variables: Variables,
    normalizers: Normalizers,
    keys: jax.Array,
    rng: jax.Array,
    num_steps: int,
    *,
    video_episodes: int = 0,
    video_side: int = 128,
) -> HostRollouts:
    """The policy's closed-loop rollouts in a host-stepped env, recorded as `rollout` records
    them (its `first_act_seconds` includes the compilation of the agent step).

    Args:
      env: a host-stepped environment; hashable (a static argument of jit).
      policy, controller, variables, normalizers, rng, num_steps: as `rollout`.
      keys: [N] episode keys.
      video_episodes, video_side: as `run_episodes`.
    """
    agent = PolicyAgent(
        env, policy, controller, jax.device_put(variables), jax.device_put(normalizers), rng
    )
    return run_episodes(
        env, agent, keys, num_steps, video_episodes=video_episodes, video_side=video_side
    )


def host_expert_rollouts(env: Env, expert: Expert, keys: jax.Array, num_steps: int) -> Rollouts:
    """The scripted expert on the same episodes (keys: [N]) over num_steps, as a `Rollouts`
    record; rendering is turned off (`cameras=()`) where the env is a dataclass with cameras,
    since the expert reads the state only."""
    if dataclasses.is_dataclass(env) and "cameras" in {f.name for f in dataclasses.fields(env)}:
        env = dataclasses.replace(env, cameras=())
    return run_episodes(env, ExpertAgent(expert), keys, num_steps).rollouts

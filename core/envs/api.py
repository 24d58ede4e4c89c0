"""The functional environment API: a POMDP as pure functions over pytrees (book 16.2).

Book 16.2.1-16.2.2 (Definition 16.1): an environment holds the hidden state s_t (eq. 16.2), the
transition s_{t+1} = f(s_t, a_t) (eq. 16.17, deterministic here), the observation model
o_t = h(s_t) (eqs. 16.4, 16.19-16.20 without sensor noise) and a reward (eq. 16.21). Actions are
bounded (eqs. 16.14-16.15) and a gripper command lies in [-1, 1], < 0 open, > 0 close (16.54).

Contract of an `Env` (JAX-native tasks implement it with pure, jit- and vmap-able functions; a
host-side simulator may implement the same signatures with numpy):

  reset(key) -> (state, obs)
  step(state, action) -> (state, obs, reward, done, info)
  observe(state) -> obs                      o_t = h(s_t), what `reset`/`step` return
  render(state, camera) -> uint8 [H, W, 3]   one camera's frame
  instruction(state) -> str                  host side: the episode's task text

`state` and `obs` are pytrees of arrays; `obs` is a dict with LeRobot-style keys
("observation.state", "observation.images.<camera>", ...). `info` always holds three bool scalars:
"success", "terminated" (the episode reached a terminal state: success or failure) and
"truncated" (the time limit ran out first), as in gymnasium; done = terminated | truncated.
A done state is absorbing: stepping it returns it unchanged with done = True and reward 0, so a
batch of episodes can be rolled out for a fixed number of steps with `vmap` + `lax.scan`.
The reward is sparse: 1 on the step that succeeds, 0 otherwise.

Scripted experts are latent-variable policies (book 16.40, 16.63): `plan(key, state)` draws the
episode's demonstration mode z (e.g. pass left or right), `act(plan, state)` is a deterministic
function of the privileged state s_t and z.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from core.checks import check_shapes

Observation = dict[str, jax.Array]
StepResult = tuple[Any, Observation, jax.Array, jax.Array, dict[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """Shape, dtype, per-dimension names and optional bounds of one array.

    low/high: per-element bounds of a flat [D] array (e.g. action bounds, eq. 16.15), or None.
    """

    shape: tuple[int, ...]
    dtype: str
    names: tuple[str, ...] | None = None
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.names is not None and len(self.names) != self.shape[-1]:
            raise ValueError(
                f"names must name the {self.shape[-1]} entries of the last axis, got {self.names}"
            )
        for bound_name in ("low", "high"):
            bound = getattr(self, bound_name)
            if bound is not None and (len(self.shape) != 1 or len(bound) != self.shape[0]):
                raise ValueError(
                    f"{bound_name} must have one entry per element of shape {list(self.shape)}, "
                    f"got {bound}"
                )


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What a task observes, accepts and counts as success.

    name: the task name in the registry.
    robot_type: the embodiment, as LeRobot's info.json records it (e.g. "planar_point").
    observation: obs key -> spec; images are uint8 [H, W, 3], one key per camera.
    action: [Da] float32 with per-dimension bounds (eq. 16.15).
    gripper_dims: indices of gripper commands in the action, each in [-1, 1] (eq. 16.54).
    fps: control rate in steps per second.
    max_episode_steps: time limit; an episode still running after it is truncated.
    cameras: camera names, in the order of the image keys.
    success: the success metric in words.
    vocabulary: the instruction token vocabulary (id = position), or () without instructions.
    """

    name: str
    robot_type: str
    observation: Mapping[str, ArraySpec]
    action: ArraySpec
    gripper_dims: tuple[int, ...]
    fps: int
    max_episode_steps: int
    cameras: tuple[str, ...]
    success: str
    vocabulary: tuple[str, ...] = ()

    def features(self) -> dict[str, dict[str, Any]]:
        """Observation and action features in LeRobot's `info.json` convention."""
        features = {}
        for key, spec in {**self.observation, "action": self.action}.items():
            is_image = key.startswith("observation.images.")
            features[key] = {
                "dtype": "image" if is_image else spec.dtype,
                "shape": list(spec.shape),
                "names": ["height", "width", "channels"] if is_image else _names(spec),
            }
        return features


def _names(spec: ArraySpec) -> list[str] | None:
    return None if spec.names is None else list(spec.names)


class Env(Protocol):
    """The environment contract of this module's docstring."""

    @property
    def spec(self) -> EnvSpec: ...

    def reset(self, key: jax.Array) -> tuple[Any, Observation]: ...

    def step(self, state: Any, action: jax.Array) -> StepResult: ...

    def observe(self, state: Any) -> Observation: ...

    def render(self, state: Any, camera: str) -> jax.Array: ...

    def instruction(self, state: Any) -> str: ...


@flax.struct.dataclass
class ExpertPlan:
    """An expert's per-episode latent choice. mode: int32 [] index into `Expert.mode_names`."""

    mode: jax.Array


class Expert(Protocol):
    """A scripted demonstrator with privileged access to the state (see module docstring)."""

    mode_names: tuple[str, ...]

    def plan(self, key: jax.Array, state: Any) -> ExpertPlan: ...

    def act(self, plan: ExpertPlan, state: Any) -> jax.Array: ...


def uniform_mode_plan(key: jax.Array, num_modes: int) -> ExpertPlan:
    """Draws the demonstration mode uniformly: p(z = m) = 1/num_modes (the mixture of eq. 16.38)."""
    return ExpertPlan(mode=jax.random.randint(key, (), 0, num_modes, dtype=jnp.int32))


@flax.struct.dataclass
class EpisodeStatus:
    """Progress of one episode. time: int32 [] steps taken; the rest bool []."""

    time: jax.Array
    success: jax.Array
    terminated: jax.Array
    truncated: jax.Array

    @classmethod
    def start(cls) -> EpisodeStatus:
        false = jnp.zeros((), bool)
        return cls(time=jnp.zeros((), jnp.int32), success=false, terminated=false, truncated=false)

    @property
    def done(self) -> jax.Array:
        return self.terminated | self.truncated


def advance_status(
    status: EpisodeStatus, success: jax.Array, failure: jax.Array, max_episode_steps: int
) -> EpisodeStatus:
    """One step later: success or failure terminates; otherwise the time limit truncates."""
    time = status.time + 1
    terminated = success | failure
    return EpisodeStatus(
        time=time,
        success=success,
        terminated=terminated,
        truncated=(time >= max_episode_steps) & ~terminated,
    )


def clip_action(spec: EnvSpec, action: jax.Array) -> jax.Array:
    """Checks action: [Da] and clips it into the bounds A = Π_i [a_i^min, a_i^max] (eq. 16.15)."""
    check_shapes(action=(action, spec.action.shape))
    low = np.asarray(spec.action.low, np.float32)
    high = np.asarray(spec.action.high, np.float32)
    return jnp.clip(jnp.asarray(action, jnp.float32), low, high)


def finish_step(state: Any, next_state: Any, observe: Callable[[Any], Observation]) -> StepResult:
    """Assembles `step`'s result from the state before and after the transition.

    Both states carry an `EpisodeStatus` in `.status`. A state that was already done is
    absorbing: it is returned unchanged with reward 0.
    """
    was_done = state.status.done
    next_state = jax.tree.map(lambda old, new: jnp.where(was_done, old, new), state, next_state)
    status = next_state.status
    reward = (status.success & ~was_done).astype(jnp.float32)
    info = {
        "success": status.success,
        "terminated": status.terminated,
        "truncated": status.truncated,
    }
    return next_state, observe(next_state), reward, status.done, info

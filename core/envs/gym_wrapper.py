"""A `gymnasium.Env` over a functional environment, for single-episode, host-side use.

Book 16.2: the same POMDP as `core.envs.api`, behind gymnasium's stateful interface. Spaces come
from the `EnvSpec`: images are Box(0, 255, uint8), float vectors Box(low, high) (unbounded where
the spec gives no bounds), token ids Box(0, vocabulary size - 1, int32), the action
Box(low, high, float32). `terminated`/`truncated` are the functional env's `info` flags; the info
dict adds "success" and the episode's "instruction" text. `render()` returns the RGB frame of
`render_camera` (render mode "rgb_array"). reset(seed=s) seeds gymnasium's generator, which
draws the JAX key of the episode, so equal seeds give equal episodes.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from core.envs.api import ArraySpec, Env, Observation


def array_space(spec: ArraySpec) -> spaces.Box:
    """The gymnasium Box of an array spec."""
    dtype = np.dtype(spec.dtype)
    if dtype == np.uint8:
        return spaces.Box(0, 255, spec.shape, np.uint8)
    low = -np.inf if spec.low is None else np.array(spec.low, dtype)
    high = np.inf if spec.high is None else np.array(spec.high, dtype)
    return spaces.Box(low, high, spec.shape, dtype)


def _to_numpy(observation: Observation) -> dict[str, np.ndarray]:
    return {key: np.asarray(value) for key, value in observation.items()}


class GymEnv(gymnasium.Env):
    """gymnasium view of `env`: reset/step/render on one episode, jitted underneath."""

    def __init__(self, env: Env, render_mode: str | None = None, render_camera: str = "top"):
        spec = env.spec
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.env = env
        self.render_mode = render_mode
        self.render_camera = render_camera
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": spec.fps}
        self.observation_space = spaces.Dict(
            {key: array_space(array) for key, array in spec.observation.items()}
        )
        self.action_space = array_space(spec.action)
        self._reset = jax.jit(env.reset)
        self._step = jax.jit(env.step)
        self._render = jax.jit(env.render, static_argnums=1)
        self._state = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        key = jax.random.key(int(self.np_random.integers(2**31)))
        self._state, observation = self._reset(key)
        return _to_numpy(observation), {"instruction": self.env.instruction(self._state)}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        self._state, observation, reward, _, info = self._step(
            self._state, jnp.asarray(action, jnp.float32)
        )
        return (
            _to_numpy(observation),
            float(reward),
            bool(info["terminated"]),
            bool(info["truncated"]),
            {"success": bool(info["success"]), "instruction": self.env.instruction(self._state)},
        )

    def render(self) -> np.ndarray | None:
        """The current frame of `render_camera`: uint8 [H, W, 3] (None without a render mode)."""
        if self.render_mode is None or self._state is None:
            return None
        return np.asarray(self._render(self._state, self.render_camera))

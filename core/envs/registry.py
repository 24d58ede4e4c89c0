"""The task suite by name: each task's environment with its scripted expert.

  obstacle             reach a goal behind an obstacle; expert passes left or right (16.3.3,
                       18.8.1)
  pick_place           grasp a block, place it in either of two zones; gripper command (16.54)
  reach_target         go to the target a language instruction names (ch. 19)
  aloha_transfer_cube  MuJoCo ALOHA (ch. 17): hand a cube from the right arm to the left
  aloha_insertion      MuJoCo ALOHA (ch. 17): insert a peg into a socket held by the other arm

Each task's module docstring documents its world, action bounds, control rate, time limit and
success metric; `make(task).env.spec` holds the same as data. TASKS are the JAX-native tasks
(`jit`/`vmap`); SIM_TASKS are host-side MuJoCo simulations (`core.envs.aloha`, numpy, the `sim`
extra), imported on first use so that the JAX tasks work without MuJoCo.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from core.envs.api import Env, Expert
from core.envs.obstacle import ObstacleEnv, ObstacleExpert
from core.envs.pick_place import PickPlaceEnv, PickPlaceExpert
from core.envs.reach_target import ReachTargetEnv, ReachTargetExpert

TASKS = {
    "obstacle": (ObstacleEnv, ObstacleExpert),
    "pick_place": (PickPlaceEnv, PickPlaceExpert),
    "reach_target": (ReachTargetEnv, ReachTargetExpert),
}

SIM_TASKS = {
    "aloha_transfer_cube": (
        "core.envs.aloha:TransferCubeEnv",
        "core.envs.aloha_scripted:TransferCubeExpert",
    ),
    "aloha_insertion": ("core.envs.aloha:InsertionEnv", "core.envs.aloha_scripted:InsertionExpert"),
}
"""Host-side tasks: name -> ("module:class" of the environment, of the expert)."""


def task_names() -> list[str]:
    """Every task's name, JAX-native and host-side."""
    return sorted([*TASKS, *SIM_TASKS])


def _load(path: str) -> type:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def task_classes(task: str) -> tuple[type, type]:
    """(environment class, expert class) of a task; imports a host-side task's simulator.

    Raises:
      ValueError naming an unknown task; ModuleNotFoundError naming the `sim` extra when a
      host-side task's simulator is not installed.
    """
    if task in TASKS:
        return TASKS[task]
    if task in SIM_TASKS:
        env_path, expert_path = SIM_TASKS[task]
        return _load(env_path), _load(expert_path)
    raise ValueError(f"task must be one of {task_names()}, got {task!r}")


@dataclasses.dataclass(frozen=True)
class Task:
    """A task's environment and its scripted expert (both hashable, static under `jit`)."""

    env: Env
    expert: Expert


def make(task: str, **config: Any) -> Task:
    """Builds a task; `config` sets the environment's static fields.

    Common fields: image_size (pixels, default 64), cameras (tuple of "top"/"wrist", default
    ("top",)), max_episode_steps; reach_target also takes num_targets (3 or 4). The ALOHA tasks
    take image_size as (height, width) (default (480, 640)), cameras among their scene's
    (default ("top",)), shadows, antialiasing and terminate_on_success (`core.envs.aloha`).

    Raises:
      ValueError naming an unknown task, an unknown config field or a bad value.
    """
    env_class, expert_class = task_classes(task)
    fields = {field.name for field in dataclasses.fields(env_class)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ValueError(f"{task} has no config field(s) {unknown}; known: {sorted(fields)}")
    return Task(env=env_class(**config), expert=expert_class())

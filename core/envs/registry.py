"""The task suite by name: each task's environment with its scripted expert.

  obstacle      reach a goal behind an obstacle; expert passes left or right (16.3.3, 18.8.1)
  pick_place    grasp a block, place it in either of two zones; gripper command (16.54)
  reach_target  go to the target a language instruction names (ch. 19)

Each task's module docstring documents its world, action bounds, control rate, time limit and
success metric; `make(task).env.spec` holds the same as data.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Task:
    """A task's environment and its scripted expert (both hashable, static under `jit`)."""

    env: Env
    expert: Expert


def make(task: str, **config: Any) -> Task:
    """Builds a task; `config` sets the environment's static fields.

    Common fields: image_size (pixels, default 64), cameras (tuple of "top"/"wrist", default
    ("top",)), max_episode_steps; reach_target also takes num_targets (3 or 4).

    Raises:
      ValueError naming an unknown task, an unknown config field or a bad value.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    env_class, expert_class = TASKS[task]
    fields = {field.name for field in dataclasses.fields(env_class)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise ValueError(f"{task} has no config field(s) {unknown}; known: {sorted(fields)}")
    return Task(env=env_class(**config), expert=expert_class())

"""Scripted demonstrations on disk: roll out a task's expert and write the episodes.

Book 16.8.1: behavioural cloning learns from demonstrations D = {(o_t, a_t*)}; this builds D.

    python -m experiments.demos --task obstacle --episodes 200 --out data/obstacle \\
        [--seed 0 --image-size 64 --cameras top wrist --validation-fraction 0.1 --overwrite]
    python -m experiments.demos --task aloha_transfer_cube --episodes 50 \\
        --out data/aloha_transfer_cube [--image-size 480 640 --cameras top]

Episode i is the expert's rollout from `jax.random.key(seed + i)` (see `core.envs.rollout`).
Episodes the expert fails are dropped, and their seeds reported; the others are written with
`core.data.DatasetWriter` (LeRobot v3.0 layout, atomic). Besides the observations, "action" and
the per-step "next.reward", "next.done", "next.success", every frame records "expert.mode" (the
index of the expert's demonstration mode, e.g. 0 = left, 1 = right for obstacle; the names are
in the summary) and "expert.seed" (the episode's seed), so mode shares can be measured later.
The episode's task text is its instruction. Expert rollouts of the JAX tasks run
`ROLLOUT_BATCH` episodes at a time with `vmap` + `lax.scan`, so memory stays bounded for any
number of episodes. The MuJoCo ALOHA tasks (`registry.SIM_TASKS`, the `sim` extra) run one
episode at a time on the host (`core.envs.aloha_scripted.scripted_episode`), to the time limit
as ACT records them (their success, gym-aloha's reward 4, comes mid-handover); their
--image-size is height and width (default 480 640, the ACT paper's cameras).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from core.data.writer import DatasetWriter
from core.envs import registry
from core.envs.api import EnvSpec
from core.envs.rollout import episode, expert_rollouts

ROLLOUT_BATCH = 256
RUN_TO_TIME_LIMIT = {"terminate_on_success": False}
"""The host-side (ALOHA) environments' setting for demonstrations (module docstring)."""

EXTRA_FEATURES = {
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.done": {"dtype": "bool", "shape": [1], "names": None},
    "next.success": {"dtype": "bool", "shape": [1], "names": None},
    "expert.mode": {"dtype": "int64", "shape": [1], "names": None},
    "expert.seed": {"dtype": "int64", "shape": [1], "names": None},
}


def demo_features(spec: EnvSpec) -> dict[str, dict[str, Any]]:
    """The dataset features of a task's demonstrations: observations, action and extras."""
    return {**spec.features(), **EXTRA_FEATURES}


@dataclasses.dataclass(frozen=True)
class DemoSummary:
    """What `generate_demos` wrote: the dataset path, kept episodes, frames, the seeds of the
    dropped (failed) episodes, kept episodes per expert mode name, and the wall time."""

    path: Path
    episodes: int
    frames: int
    failed_seeds: tuple[int, ...]
    mode_counts: dict[str, int]
    seconds: float

    def text(self) -> str:
        modes = ", ".join(f"{name} {count}" for name, count in self.mode_counts.items())
        return (
            f"wrote {self.episodes} episodes ({self.frames} frames) to {self.path} in "
            f"{self.seconds:.1f} s; modes: {modes}; dropped {len(self.failed_seeds)} failed "
            f"expert episodes, seeds {list(self.failed_seeds)}"
        )


@dataclasses.dataclass(frozen=True)
class ExpertEpisode:
    """One expert rollout: its seed, whether it succeeded, and for a success the episode's
    arrays (`core.envs.rollout.episode`'s keys), demonstration mode and instruction."""

    seed: int
    succeeded: bool
    arrays: dict[str, np.ndarray] | None = None
    mode: int = 0
    instruction: str = ""


def jax_expert_episodes(suite: registry.Task, seeds: np.ndarray) -> Iterator[ExpertEpisode]:
    """A JAX task's expert episodes, rolled out ROLLOUT_BATCH at a time."""
    env, expert = suite.env, suite.expert
    for batch_start in range(0, len(seeds), ROLLOUT_BATCH):
        batch_seeds = seeds[0] + batch_start + np.arange(ROLLOUT_BATCH)
        keys = jax.vmap(jax.random.key)(jnp.asarray(batch_seeds))
        rollouts = jax.device_get(expert_rollouts(env, expert, keys))
        succeeded, modes = rollouts.succeeded, np.asarray(rollouts.plan.mode)
        for index in range(min(ROLLOUT_BATCH, len(seeds) - batch_start)):
            seed = int(batch_seeds[index])
            if not succeeded[index]:
                yield ExpertEpisode(seed, succeeded=False)
                continue
            yield ExpertEpisode(
                seed,
                succeeded=True,
                arrays=episode(env, rollouts, index),
                mode=int(modes[index]),
                instruction=env.instruction(rollouts.state(index, 0)),
            )


def host_expert_episodes(suite: registry.Task, seeds: np.ndarray) -> Iterator[ExpertEpisode]:
    """A host-side (MuJoCo) task's expert episodes, one at a time."""
    from core.envs.aloha_scripted import scripted_episode  # needs the `sim` extra

    for seed in seeds:
        rollout = scripted_episode(suite.env, suite.expert, jax.random.key(int(seed)))
        yield ExpertEpisode(
            int(seed),
            succeeded=rollout.succeeded,
            arrays=rollout.arrays if rollout.succeeded else None,
            mode=int(rollout.plan.mode),
            instruction=rollout.instruction,
        )


def generate_demos(
    task: str,
    num_episodes: int,
    out: str | Path,
    *,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    cameras: tuple[str, ...] = ("top",),
    validation_fraction: float = 0.1,
    overwrite: bool = False,
    progress: bool = True,
    env_options: Mapping[str, Any] | None = None,
) -> DemoSummary:
    """Rolls out `task`'s expert on seeds seed, ..., seed + num_episodes - 1 and writes the
    successful episodes to `out`. image_size: the task's (None: its default; an int for the JAX
    tasks, (height, width) for the ALOHA tasks); env_options: further fields of the task's
    environment (`registry.make`), e.g. {"velocity_in_state": False}.

    Raises:
      ValueError for a bad task, camera, image size or episode count; the writer's errors for
      an existing `out` (without `overwrite`) or when every episode failed.
    """
    if not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes must be a positive int, got {num_episodes!r}")
    start_time = time.perf_counter()
    host_side = task in registry.SIM_TASKS
    config = {
        "cameras": cameras,
        **(RUN_TO_TIME_LIMIT if host_side else {}),
        **(env_options or {}),
    }
    if image_size is not None:
        config["image_size"] = image_size
    suite = registry.make(task, **config)
    env, expert = suite.env, suite.expert
    spec = env.spec
    seeds = seed + np.arange(num_episodes)
    rollouts = (host_expert_episodes if host_side else jax_expert_episodes)(suite, seeds)
    failed_seeds, mode_counts, frames = [], np.zeros(len(expert.mode_names), np.int64), 0
    with (
        DatasetWriter(
            out,
            fps=spec.fps,
            features=demo_features(spec),
            robot_type=spec.robot_type,
            validation_fraction=validation_fraction,
            overwrite=overwrite,
        ) as writer,
        tqdm(total=num_episodes, desc=f"{task} demos", unit="episode", disable=not progress) as bar,
    ):
        for rollout in rollouts:
            bar.update()
            if not rollout.succeeded:
                failed_seeds.append(rollout.seed)
                continue
            arrays = dict(rollout.arrays)
            length = len(arrays["action"])
            arrays["expert.mode"] = np.full(length, rollout.mode, np.int64)
            arrays["expert.seed"] = np.full(length, rollout.seed, np.int64)
            writer.add_episode(arrays, task=rollout.instruction)
            mode_counts[rollout.mode] += 1
            frames += length
    return DemoSummary(
        path=Path(out),
        episodes=int(mode_counts.sum()),
        frames=frames,
        failed_seeds=tuple(failed_seeds),
        mode_counts=dict(zip(expert.mode_names, mode_counts.tolist(), strict=True)),
        seconds=time.perf_counter() - start_time,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.demos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--task", required=True, choices=registry.task_names())
    parser.add_argument("--episodes", type=int, required=True, help="episodes to roll out")
    parser.add_argument("--out", required=True, help="dataset directory to create")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        help="image side in pixels (JAX tasks, default 64) or height width (ALOHA tasks, "
        "default 480 640)",
    )
    parser.add_argument(
        "--cameras", nargs="+", default=["top"], help="top and/or wrist (ALOHA: the scene's)"
    )
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> DemoSummary:
    args = parse_args(argv)
    image_size = args.image_size
    if image_size is not None:  # one side for a square image, or height and width
        image_size = image_size[0] if len(image_size) == 1 else tuple(image_size)
    summary = generate_demos(
        args.task,
        args.episodes,
        args.out,
        seed=args.seed,
        image_size=image_size,
        cameras=tuple(args.cameras),
        validation_fraction=args.validation_fraction,
        overwrite=args.overwrite,
    )
    print(summary.text())
    return summary


if __name__ == "__main__":
    main()

"""Scripted demonstrations on disk: roll out a task's expert and write the episodes.

Book 16.8.1: behavioural cloning learns from demonstrations D = {(o_t, a_t*)}; this builds D.

    python -m experiments.demos --task obstacle --episodes 200 --out data/obstacle \\
        [--seed 0 --image-size 64 --cameras top wrist --validation-fraction 0.1 --overwrite]

Episode i is the expert's rollout from `jax.random.key(seed + i)` (see `core.envs.rollout`).
Episodes the expert fails are dropped, and their seeds reported; the others are written with
`core.data.DatasetWriter` (LeRobot v3.0 layout, atomic). Besides the observations, "action" and
the per-step "next.reward", "next.done", "next.success", every frame records "expert.mode" (the
index of the expert's demonstration mode, e.g. 0 = left, 1 = right for obstacle; the names are
in the summary) and "expert.seed" (the episode's seed), so mode shares can be measured later.
The episode's task text is its instruction. Expert rollouts run `ROLLOUT_BATCH` episodes at a
time with `vmap` + `lax.scan`, so memory stays bounded for any number of episodes.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
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


def generate_demos(
    task: str,
    num_episodes: int,
    out: str | Path,
    *,
    seed: int = 0,
    image_size: int = 64,
    cameras: tuple[str, ...] = ("top",),
    validation_fraction: float = 0.1,
    overwrite: bool = False,
    progress: bool = True,
) -> DemoSummary:
    """Rolls out `task`'s expert on seeds seed, ..., seed + num_episodes - 1 and writes the
    successful episodes to `out`.

    Raises:
      ValueError for a bad task, camera, image size or episode count; the writer's errors for
      an existing `out` (without `overwrite`) or when every episode failed.
    """
    if not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes must be a positive int, got {num_episodes!r}")
    start_time = time.perf_counter()
    suite = registry.make(task, image_size=image_size, cameras=cameras)
    env, expert = suite.env, suite.expert
    spec = env.spec
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
        for batch_start in range(0, num_episodes, ROLLOUT_BATCH):
            seeds = seed + batch_start + np.arange(ROLLOUT_BATCH)
            keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
            rollouts = jax.device_get(expert_rollouts(env, expert, keys))
            succeeded, modes = rollouts.succeeded, np.asarray(rollouts.plan.mode)
            for index in range(min(ROLLOUT_BATCH, num_episodes - batch_start)):
                bar.update()
                if not succeeded[index]:
                    failed_seeds.append(int(seeds[index]))
                    continue
                arrays = episode(env, rollouts, index)
                length = len(arrays["action"])
                arrays["expert.mode"] = np.full(length, modes[index], np.int64)
                arrays["expert.seed"] = np.full(length, seeds[index], np.int64)
                writer.add_episode(arrays, task=env.instruction(rollouts.state(index, 0)))
                mode_counts[modes[index]] += 1
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
    parser.add_argument("--task", required=True, choices=sorted(registry.TASKS))
    parser.add_argument("--episodes", type=int, required=True, help="episodes to roll out")
    parser.add_argument("--out", required=True, help="dataset directory to create")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--cameras", nargs="+", default=["top"], help="top and/or wrist")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> DemoSummary:
    args = parse_args(argv)
    summary = generate_demos(
        args.task,
        args.episodes,
        args.out,
        seed=args.seed,
        image_size=args.image_size,
        cameras=tuple(args.cameras),
        validation_fraction=args.validation_fraction,
        overwrite=args.overwrite,
    )
    print(summary.text())
    return summary


if __name__ == "__main__":
    main()

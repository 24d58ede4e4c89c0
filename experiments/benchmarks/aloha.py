"""The MuJoCo ALOHA tasks' speed, their scripted experts' success and the cost of demonstrations,
one command:

    python -m experiments.benchmarks.aloha [--tasks aloha_transfer_cube aloha_insertion]
        [--seeds 100] [--steps 200] [--demo-episodes 50] [--demo-image-size 480 640]
        [--frames-only]

For each task (`core.envs.aloha`, `core.envs.aloha_scripted`), on this machine:
  - env steps/s: `env.step` of one episode replaying the expert's actions for gym-aloha's
    object poses of seed 0 for `--steps` steps, observation included, for state-only
    observations, the top camera at 240x320 and at 480x640 (shadows and anti-aliasing off, the
    defaults) and at 480x640 with both on (gym-aloha's look); beside them gym-aloha's own
    `AlohaEnv.step` (three 480x640 cameras with shadows, GYM_ALOHA_STEPS steps) for reference;
  - expert: success over seeds 0, ..., `--seeds` - 1 after the replay in the joint-space scene
    (gym-aloha's reward 4 at some step), the failed seeds, the first successful step, and the
    seconds per episode (end-effector plan and replay, state only);
  - demos: the wall time and size on disk of `experiments.demos.generate_demos` writing
    `--demo-episodes` episodes with the top camera at `--demo-image-size` (rendering, PNG
    encoding and parquet writing included) into a temporary directory;
  - a frame: results/aloha/<task>.png, the top camera (what the demonstrations record) beside
    the angle camera, 240x320 each, at the step the expert's episode of seed 0 succeeds.
Results go to results/benchmarks/aloha.json (with the machine's load average, since the CPU
may be shared) and are printed. `--frames-only` renders the frames and stops.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

from core.envs import aloha, aloha_scripted, registry
from experiments.benchmarks.common import machine_info, write_results
from experiments.demos import generate_demos

RESULTS = Path("results/benchmarks/aloha.json")
FRAMES = Path("results/aloha")
FRAME_SIZE = (240, 320)
FRAME_CAMERAS = ("top", "angle")
OBSERVATION_CASES = {  # name -> env config
    "state_only": {"cameras": ()},
    "top_240x320": {"cameras": ("top",), "image_size": (240, 320)},
    "top_480x640": {"cameras": ("top",), "image_size": (480, 640)},
    "top_480x640_shadows_antialiasing": {
        "cameras": ("top",),
        "image_size": (480, 640),
        "shadows": True,
        "antialiasing": True,
    },
}
GYM_ALOHA_TASKS = {"aloha_transfer_cube": "transfer_cube", "aloha_insertion": "insertion"}
GYM_ALOHA_STEPS = 20


def steps_per_second(task: str, config: dict, actions: np.ndarray, object_poses) -> float:
    """Steps/s of `env.step` replaying actions [T, 14] from object_poses, after one warm step."""
    env = registry.make(task, terminate_on_success=False, **config).env
    state, _ = env.reset_with_objects(object_poses)
    env.step(state, actions[0])  # creates the OpenGL context
    start = time.perf_counter()
    for action in actions:
        state, *_ = env.step(state, action)
    seconds = time.perf_counter() - start
    env.close()
    return len(actions) / seconds


def gym_aloha_steps_per_second(task: str, actions: np.ndarray, seed: int) -> float:
    """Steps/s of gym-aloha's AlohaEnv (pixels and joint positions) replaying actions [T, 14]."""
    from gym_aloha.env import AlohaEnv

    env = AlohaEnv(task=GYM_ALOHA_TASKS[task], obs_type="pixels_agent_pos")
    env.reset(seed=seed)
    env.step(actions[0])
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return len(actions) / (time.perf_counter() - start)


def step_figures(task: str, num_steps: int) -> dict:
    """Steps/s of each observation case and of gym-aloha's env, all replaying the expert's
    actions for the objects gym-aloha places with seed 0."""
    object_poses = aloha.sample_object_poses(task, 0)
    scene = aloha_scripted.EndEffectorScene(task)
    actions = scene.joint_trajectory(object_poses, aloha.DEFAULT_MAX_EPISODE_STEPS)[:num_steps]
    figures = {
        name: steps_per_second(task, config, actions, object_poses)
        for name, config in OBSERVATION_CASES.items()
    }
    figures["gym_aloha_env"] = gym_aloha_steps_per_second(task, actions[:GYM_ALOHA_STEPS], 0)
    return figures


def expert_figures(task: str, num_seeds: int) -> dict:
    """Success of the expert's replayed demonstrations over seeds 0..num_seeds-1 (state only)."""
    suite = registry.make(task, cameras=())
    start = time.perf_counter()
    episodes = [
        aloha_scripted.scripted_episode(suite.env, suite.expert, jax.random.key(seed))
        for seed in range(num_seeds)
    ]
    seconds = time.perf_counter() - start
    succeeded = np.array([episode.succeeded for episode in episodes])
    first_success = [len(episode.stages) for episode in episodes if episode.succeeded]
    return {
        "seeds": num_seeds,
        "success_rate": float(succeeded.mean()),
        "failed_seeds": np.flatnonzero(~succeeded).tolist(),
        "first_success_step_mean": float(np.mean(first_success)) if first_success else None,
        "first_success_step_range": [min(first_success), max(first_success)]
        if first_success
        else None,
        "seconds_per_episode": seconds / num_seeds,
    }


def demo_figures(task: str, num_episodes: int, image_size: tuple[int, int], scratch: Path):
    summary = generate_demos(
        task, num_episodes, scratch / task, image_size=image_size, progress=False
    )
    size = sum(path.stat().st_size for path in (scratch / task).rglob("*") if path.is_file())
    return {
        "episodes_written": summary.episodes,
        "failed_seeds": list(summary.failed_seeds),
        "frames": summary.frames,
        "image_size": list(image_size),
        "seconds": summary.seconds,
        "seconds_per_episode": summary.seconds / num_episodes,
        "megabytes": size / 2**20,
    }


def render_frame(task: str, out_dir: Path) -> Path:
    """Writes out_dir/<task>.png: FRAME_CAMERAS side by side at the success of seed 0."""
    suite = registry.make(task, cameras=(), image_size=FRAME_SIZE)
    episode = aloha_scripted.scripted_episode(suite.env, suite.expert, jax.random.key(0))
    frames = [suite.env.render(episode.final_state, camera) for camera in FRAME_CAMERAS]
    suite.env.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{task}.png"
    Image.fromarray(np.concatenate(frames, axis=1)).save(path)
    return path


def print_table(results: dict) -> None:
    for task, result in results["tasks"].items():
        expert, steps, demos = result["expert"], result["steps_per_second"], result["demos"]
        print(
            f"\n{task}: expert success {expert['success_rate']:.0%} of {expert['seeds']} seeds "
            f"(failed {expert['failed_seeds']}; first success at step "
            f"{expert['first_success_step_mean']}); {expert['seconds_per_episode']:.2f} s per "
            "episode (plan and replay, state only)"
        )
        print("  env steps/s: " + ", ".join(f"{name} {value:.1f}" for name, value in steps.items()))
        print(
            f"  demos: {demos['episodes_written']} episodes at {demos['image_size']} in "
            f"{demos['seconds']:.0f} s ({demos['seconds_per_episode']:.1f} s per episode), "
            f"{demos['megabytes']:.0f} MB"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.aloha", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tasks", nargs="+", default=sorted(aloha.TASKS))
    parser.add_argument("--seeds", type=int, default=100, help="expert episodes")
    parser.add_argument("--steps", type=int, default=200, help="steps per timed replay (<= 400)")
    parser.add_argument("--demo-episodes", type=int, default=50)
    parser.add_argument("--demo-image-size", type=int, nargs=2, default=[480, 640])
    parser.add_argument("--frames-only", action="store_true", help="render the frames, stop")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if min(args.seeds, args.steps, args.demo_episodes) < 1 or args.steps > 400:
        parser.error("--seeds and --demo-episodes must be positive, --steps in [1, 400]")
    unknown = sorted(set(args.tasks) - set(aloha.TASKS))
    if unknown:
        parser.error(f"unknown tasks {unknown}; known: {sorted(aloha.TASKS)}")
    for task in args.tasks:
        print(f"wrote {render_frame(task, FRAMES)}")
    if args.frames_only:
        return {}
    scratch = Path(tempfile.mkdtemp(prefix="aloha_benchmark_"))
    try:
        tasks = {
            task: {
                "steps_per_second": step_figures(task, args.steps),
                "expert": expert_figures(task, args.seeds),
                "demos": demo_figures(
                    task, args.demo_episodes, tuple(args.demo_image_size), scratch
                ),
            }
            for task in args.tasks
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = {
        "machine": machine_info(
            mujoco=aloha.mujoco.__version__, mujoco_gl=os.environ.get("MUJOCO_GL")
        ),
        "tasks": tasks,
    }
    print_table(results)
    write_results(results, args.out)
    return results


if __name__ == "__main__":
    main()

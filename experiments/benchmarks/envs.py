"""The task suite's speed and its experts' quality, one command:

    python -m experiments.benchmarks.envs [--tasks obstacle pick_place reach_target]
        [--seeds 200] [--envs 256] [--steps 100] [--demo-episodes 200]

For each task (`core.envs.registry`), on this machine:
  - expert: success rate and demonstration-mode shares over `--seeds` seeds, and the time of one
    vectorized rollout of all of them (`core.envs.rollout.expert_rollouts`, state only: `vmap`
    over episodes, `lax.scan` over the time limit), compiled and warm;
  - env steps/s: `jax.vmap(env.step)` over `--envs` environments with random actions inside a
    jitted `lax.scan` of `--steps` steps, for state-only observations, one 64-pixel top camera
    and two 96-pixel cameras (top and wrist); the images are reduced to a checksum so that
    XLA cannot drop the rendering. Side by side: the single-episode gymnasium wrapper's steps/s
    (64-pixel top camera, a Python loop) and the ratio vmapped / gymnasium;
  - demo generation: the wall time of `experiments.demos.generate_demos` writing
    `--demo-episodes` episodes (64-pixel top camera) into a temporary directory, compilation,
    rendering, PNG encoding and parquet writing included.
The sampler's batch throughput is measured by `experiments.benchmarks.data_pipeline`.
Results go to results/benchmarks/envs.json (with the machine's load average, since the CPU
may be shared) and are printed as a table.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from core.envs import registry
from core.envs.gym_wrapper import GymEnv
from core.envs.rollout import expert_rollouts
from experiments.benchmarks.common import machine_info, write_results
from experiments.demos import generate_demos

RESULTS = Path("results/benchmarks/envs.json")
OBSERVATION_CASES = {  # name -> (image size, cameras)
    "state_only": (64, ()),
    "top_64px": (64, ("top",)),
    "top_wrist_96px": (96, ("top", "wrist")),
}
GYM_STEPS = 300


def _timed(run) -> tuple[float, object]:
    start = time.perf_counter()
    result = jax.block_until_ready(run())
    return time.perf_counter() - start, result


def expert_figures(task: str, num_seeds: int) -> dict:
    """Success rate, mode shares and rollout time of the expert over seeds 0..num_seeds-1."""
    suite = registry.make(task, cameras=())
    keys = jax.vmap(jax.random.key)(jnp.arange(num_seeds))
    cold_seconds, _ = _timed(lambda: expert_rollouts(suite.env, suite.expert, keys))
    warm_seconds, rollouts = _timed(lambda: expert_rollouts(suite.env, suite.expert, keys))
    modes = np.bincount(np.asarray(rollouts.plan.mode), minlength=len(suite.expert.mode_names))
    succeeded = rollouts.succeeded
    return {
        "seeds": num_seeds,
        "success_rate": float(succeeded.mean()),
        "failed_seeds": np.flatnonzero(~succeeded).tolist(),
        "mode_shares": dict(
            zip(suite.expert.mode_names, (modes / num_seeds).tolist(), strict=True)
        ),
        "mean_episode_steps": float(rollouts.lengths[succeeded].mean()),
        "rollout_seconds_with_compile": cold_seconds,
        "rollout_seconds": warm_seconds,
    }


def vmapped_steps_per_second(env, num_envs: int, num_steps: int) -> float:
    """Environment steps/s of jit(scan(vmap(step))) with random actions (warm, best of 3)."""
    spec = env.spec
    states, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), num_envs))
    actions = jax.random.uniform(
        jax.random.key(1),
        (num_steps, num_envs, *spec.action.shape),
        minval=np.array(spec.action.low),
        maxval=np.array(spec.action.high),
    )

    @jax.jit
    def run(states, actions):
        def control_step(carry, action_batch):
            states, checksum = carry
            states, obs, reward, _, _ = jax.vmap(env.step)(states, action_batch)
            pixels = sum(jnp.sum(obs[key], dtype=jnp.int32) for key in obs if "images" in key)
            return (states, checksum + pixels + jnp.sum(reward).astype(jnp.int32)), None

        return jax.lax.scan(control_step, (states, jnp.int32(0)), actions)[0]

    jax.block_until_ready(run(states, actions))
    best = min(_timed(lambda: run(states, actions))[0] for _ in range(3))
    return num_envs * num_steps / best


def gym_steps_per_second(env, num_steps: int) -> float:
    """Steps/s of the gymnasium wrapper in a Python loop (resetting at episode ends)."""
    gym_env = GymEnv(env)
    gym_env.reset(seed=0)
    gym_env.action_space.seed(0)
    actions = [gym_env.action_space.sample() for _ in range(num_steps + 1)]
    gym_env.step(actions[0])  # compiles
    start = time.perf_counter()
    for action in actions[1:]:
        _, _, terminated, truncated, _ = gym_env.step(action)
        if terminated or truncated:
            gym_env.reset()
    return num_steps / (time.perf_counter() - start)


def step_figures(task: str, num_envs: int, num_steps: int) -> dict:
    figures = {}
    for name, (image_size, cameras) in OBSERVATION_CASES.items():
        env = registry.make(task, image_size=image_size, cameras=cameras).env
        figures[f"vmap{num_envs}_{name}"] = vmapped_steps_per_second(env, num_envs, num_steps)
    gym_env = registry.make(task, image_size=64, cameras=("top",)).env
    figures["gym_top_64px"] = gym_steps_per_second(gym_env, GYM_STEPS)
    figures["vmap_over_gym_top_64px"] = (
        figures[f"vmap{num_envs}_top_64px"] / figures["gym_top_64px"]
    )
    return figures


def demo_figures(task: str, num_episodes: int, scratch: Path) -> dict:
    summary = generate_demos(task, num_episodes, scratch / task, progress=False)
    return {
        "episodes_written": summary.episodes,
        "frames": summary.frames,
        "seconds": summary.seconds,
        "episodes_per_second": summary.episodes / summary.seconds,
    }


def print_table(results: dict) -> None:
    for task, result in results["tasks"].items():
        expert, steps, demos = result["expert"], result["steps_per_second"], result["demos"]
        shares = ", ".join(f"{name} {share:.1%}" for name, share in expert["mode_shares"].items())
        print(
            f"\n{task}: expert success {expert['success_rate']:.1%} of {expert['seeds']} seeds "
            f"(modes: {shares}; {expert['mean_episode_steps']:.0f} steps per episode); rollout of "
            f"all seeds {expert['rollout_seconds'] * 1e3:.1f} ms warm, "
            f"{expert['rollout_seconds_with_compile']:.1f} s with compilation"
        )
        rates = ", ".join(
            f"{name} {value:,.0f}" for name, value in steps.items() if not name.startswith("vmap_")
        )
        print(f"  env steps/s: {rates}; vmapped/gym {steps['vmap_over_gym_top_64px']:,.0f}x")
        print(
            f"  demos: {demos['episodes_written']} episodes ({demos['frames']} frames) in "
            f"{demos['seconds']:.1f} s ({demos['episodes_per_second']:.1f} episodes/s)"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.envs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tasks", nargs="+", default=sorted(registry.TASKS))
    parser.add_argument("--seeds", type=int, default=200, help="expert episodes")
    parser.add_argument("--envs", type=int, default=256, help="environments stepped by vmap")
    parser.add_argument("--steps", type=int, default=100, help="steps per timed scan")
    parser.add_argument("--demo-episodes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if min(args.seeds, args.envs, args.steps, args.demo_episodes) < 1:
        parser.error("--seeds, --envs, --steps and --demo-episodes must be positive")
    unknown = sorted(set(args.tasks) - set(registry.TASKS))
    if unknown:
        parser.error(f"unknown tasks {unknown}; known: {sorted(registry.TASKS)}")
    scratch = Path(tempfile.mkdtemp(prefix="env_benchmark_"))
    try:
        tasks = {
            task: {
                "expert": expert_figures(task, args.seeds),
                "steps_per_second": step_figures(task, args.envs, args.steps),
                "demos": demo_figures(task, args.demo_episodes, scratch),
            }
            for task in args.tasks
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results = {
        "machine": machine_info(jax=jax.__version__),
        "tasks": tasks,
    }
    print_table(results)
    write_results(results, args.out)
    return results


if __name__ == "__main__":
    main()

"""Closed-loop evaluation of a policy in a task: rollouts, statistics, media and `eval.json`.

Book 16.8 (a cloned policy is judged by its closed-loop success, which regression to the mean,
eq. 16.39, and a unimodal Gaussian, eq. 16.62, lose on multimodal demonstrations), 17.2.2, 17.7
and 18.7 (the execution controller).

`evaluate` rolls out `eval.episodes` episodes with seeds eval.seed, eval.seed + 1, ... (checked
disjoint from the demonstration seeds), in batches of at most EPISODES_PER_BATCH episodes so
memory stays bounded, and runs the task's scripted expert on the same seeds as a reference.
JAX-native tasks roll out under jit (`core.evaluation.rollout`); host-stepped simulators (the
MuJoCo ALOHA tasks) step in a Python loop around the same jitted agent step
(`core.evaluation.host_rollout`), which films the video episodes while it runs. It writes to
`out_dir`:

  eval.json         the statistics of `core.evaluation.metrics` for the policy and the expert,
                    the settings, the timing (compile and rollout seconds)
  rollouts.gif      a grid of the first eval.video_episodes episodes (0 turns it off)
  trajectories.png  for the 2-D tasks: the expert's and the policy's trajectories over the scene,
                    coloured by mode (bimodal tasks) or outcome
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from core.controllers import Controller, make_controller
from core.envs import render
from core.envs.api import Env
from core.envs.registry import Task
from core.envs.tabletop import TabletopEnv
from core.evaluation import host_rollout, media, metrics
from core.evaluation.rollout import (
    Normalizers,
    Rollouts,
    check_policy_fits_task,
    concatenate_rollouts,
    episode_keys,
    expert_reference_rollouts,
    rollout,
)
from core.policy import Policy, Variables

EPISODES_PER_BATCH = 256
VIDEO_TILE_SIZE = 128
"""Pixels per episode in the video grid (2-D tasks are re-rendered at this size)."""
PLOT_BACKGROUND_SIZE = 512
EVAL_FIELDS = ("episodes", "seed", "controller", "video_episodes", "max_steps")
DEFAULT_VIDEO_EPISODES = 16


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """A validated `eval` config: episodes N, first seed, controller config, video episodes V,
    and num_steps, the control steps per episode (max_steps, or the task's time limit)."""

    episodes: int
    seed: int
    controller: dict[str, Any]
    video_episodes: int
    num_steps: int


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def eval_settings(eval_config: Mapping[str, Any], time_limit: int) -> EvalSettings:
    """Validates an `eval` config block (see EVAL_FIELDS) for a task with the given time limit.

    Fields: episodes (>= 1), seed (>= 0), controller (see `core.controllers.make_controller`),
    video_episodes (>= 0, default DEFAULT_VIDEO_EPISODES, at most episodes), max_steps (>= 1, or
    None / 0 for the task's time limit).

    Raises:
      ValueError naming an unknown or missing field or a bad value.
    """
    unknown = sorted(set(eval_config) - set(EVAL_FIELDS))
    if unknown:
        raise ValueError(f"eval config has unknown field(s) {unknown}; known: {EVAL_FIELDS}")
    missing = [field for field in ("episodes", "seed", "controller") if field not in eval_config]
    if missing:
        raise ValueError(f"eval config lacks the field(s) {missing}")
    episodes, seed = eval_config["episodes"], eval_config["seed"]
    video_episodes = eval_config.get("video_episodes", DEFAULT_VIDEO_EPISODES)
    max_steps = eval_config.get("max_steps") or time_limit
    if not _is_int(episodes) or episodes < 1:
        raise ValueError(f"eval.episodes must be a positive int, got {episodes!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"eval.seed must be a non-negative int, got {seed!r}")
    if not _is_int(video_episodes) or video_episodes < 0:
        raise ValueError(f"eval.video_episodes must be a non-negative int, got {video_episodes!r}")
    if not _is_int(max_steps) or max_steps < 1:
        raise ValueError(f"eval.max_steps must be a positive int (or 0/None), got {max_steps!r}")
    return EvalSettings(
        episodes=int(episodes),
        seed=int(seed),
        controller=dict(eval_config["controller"]),
        video_episodes=min(int(video_episodes), int(episodes)),
        num_steps=int(max_steps),
    )


def evaluation_seeds(
    first_seed: int, episodes: int, training_seeds: Sequence[int] | None = None
) -> np.ndarray:
    """[episodes] int64 seeds first_seed, first_seed + 1, ...

    Raises:
      ValueError if any of them is a training (demonstration) seed: seed s resets the task to
      the layout of the demonstration with seed s.
    """
    seeds = np.arange(first_seed, first_seed + episodes, dtype=np.int64)
    if training_seeds is not None:
        shared = np.intersect1d(seeds, np.asarray(training_seeds, np.int64))
        if shared.size:
            raise ValueError(
                f"evaluation seeds {first_seed}..{first_seed + episodes - 1} include "
                f"{shared.size} training seed(s) (first {int(shared[0])}); set eval.seed beyond "
                f"the demonstration seeds"
            )
    return seeds


def episode_batches(seeds: np.ndarray, episodes_per_batch: int) -> list[np.ndarray]:
    """Splits seeds into equal batches of at most episodes_per_batch (one compiled shape); the
    last is padded by repeating its last seed (padded episodes are discarded)."""
    if not _is_int(episodes_per_batch) or episodes_per_batch < 1:
        raise ValueError(f"episodes_per_batch must be a positive int, got {episodes_per_batch!r}")
    num_batches = -(-len(seeds) // episodes_per_batch)
    batch_size = -(-len(seeds) // num_batches)
    padded = np.concatenate([seeds, np.repeat(seeds[-1:], num_batches * batch_size - len(seeds))])
    return list(padded.reshape(num_batches, batch_size))


def _first_episodes(rollouts: Rollouts, count: int) -> Rollouts:
    return jax.tree.map(lambda leaf: leaf[:count], rollouts)


def _tabletop_at(env: Env, image_size: int) -> TabletopEnv | None:
    """The 2-D tabletop task rendered at image_size pixels, or None for other tasks."""
    if not isinstance(env, TabletopEnv):
        return None
    return dataclasses.replace(env, image_size=image_size)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _render_episodes(env: Env, camera: str, states: Any) -> jax.Array:
    """[V, T + 1, H, W, 3] uint8 frames of the states [V, T + 1] (one episode at a time)."""
    render_episode = jax.vmap(lambda state: env.render(state, camera))
    return jax.lax.map(render_episode, states)


def _rendered_frames(env: Env, rollouts: Rollouts, video_episodes: int) -> np.ndarray | None:
    """[V, T + 1, H, W, 3] frames of a JAX-native task's first V episodes, re-rendered from
    their states (the 2-D tasks at VIDEO_TILE_SIZE), or None for a task without cameras."""
    video_env = _tabletop_at(env, VIDEO_TILE_SIZE)
    if video_env is not None:
        camera = "top"
    elif env.spec.cameras:
        video_env, camera = env, env.spec.cameras[0]
    else:
        return None
    shown = jax.device_get(_first_episodes(rollouts, video_episodes))
    return np.asarray(_render_episodes(video_env, camera, shown.states))


def _write_video(frames: np.ndarray, rollouts: Rollouts, fps: float, path: Path) -> Path:
    """The grid of the V episodes of frames [V, T + 1, H, W, 3], framed by their outcomes."""
    shown = _first_episodes(rollouts, len(frames))
    lengths, outcomes = metrics.rollout_lengths(shown), metrics.episode_outcomes(shown)
    return media.write_gif(media.video_grid(frames, lengths, outcomes), path, fps=fps)


def _trajectory_panel(title: str, rollouts: Rollouts, task_name: str) -> media.TrajectoryPanel:
    modes = metrics.episode_modes(task_name, rollouts.states)
    if modes is None:
        labels, names = metrics.episode_outcomes(rollouts), metrics.OUTCOMES
    else:
        labels, names = modes, metrics.MODE_CLASSIFIERS[task_name][0]
    return media.TrajectoryPanel(
        title=title,
        positions=np.asarray(rollouts.states.agent.position),
        lengths=metrics.rollout_lengths(rollouts),
        labels=np.asarray(labels),
        label_names=names,
    )


def _success_text(statistics: dict) -> str:
    low, high = statistics["success_ci95"]
    return f"success {statistics['success_rate']:.0%} [{low:.0%}, {high:.0%}]"


def _write_trajectory_plot(
    env: Env, policy_label: str, rollouts: Rollouts, expert: Rollouts, results: dict, path: Path
) -> Path | None:
    plot_env = _tabletop_at(env, PLOT_BACKGROUND_SIZE)
    if plot_env is None:
        return None
    first_state = jax.tree.map(lambda leaf: leaf[:1, :1], rollouts.states)  # [1, 1]
    background = np.asarray(_render_episodes(plot_env, "top", first_state))[0, 0]
    view_center, half_width = render.camera_window("top", first_state.agent.position[0, 0])
    x, y = np.asarray(view_center)
    extent = (x - half_width, x + half_width, y - half_width, y + half_width)
    name = env.spec.name
    panels = [
        _trajectory_panel(f"{name}, expert: {_success_text(results['expert'])}", expert, name),
        _trajectory_panel(f"{name}, {policy_label}: {_success_text(results)}", rollouts, name),
    ]
    return media.plot_trajectories(panels, background, extent, path)


@dataclasses.dataclass(frozen=True)
class EvaluatedEpisodes:
    """The policy's and the expert's rollouts of the evaluation episodes (numpy), the video
    frames filmed during the rollout (host-stepped tasks) or None, and the timing record."""

    rollouts: Rollouts
    expert: Rollouts
    frames: np.ndarray | None
    timing: dict[str, float]


def _jax_episodes(
    task: Task,
    policy: Policy,
    controller: Controller,
    variables: Variables,
    normalizers: Normalizers,
    batches: list[np.ndarray],
    rng: jax.Array,
    settings: EvalSettings,
) -> EvaluatedEpisodes:
    """A JAX-native task: each batch of seeds in one compiled `rollout`; the expert likewise."""
    env = task.env
    start = time.perf_counter()
    compiled = rollout.lower(
        env,
        policy,
        controller,
        variables,
        normalizers,
        episode_keys(batches[0]),
        rng,
        settings.num_steps,
    ).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    parts = [
        jax.device_get(
            compiled(variables, normalizers, episode_keys(seeds), jax.random.fold_in(rng, index))
        )
        for index, seeds in enumerate(batches)
    ]
    rollout_seconds = time.perf_counter() - start
    expert = [
        jax.device_get(expert_reference_rollouts(env, task.expert, episode_keys(seeds)))
        for seeds in batches
    ]
    return EvaluatedEpisodes(
        rollouts=_first_episodes(concatenate_rollouts(parts), settings.episodes),
        expert=_first_episodes(concatenate_rollouts(expert), settings.episodes),
        frames=None,
        timing={
            "compile_seconds": compile_seconds,
            "rollout_seconds": rollout_seconds,
            "episodes_per_second": settings.episodes / rollout_seconds,
        },
    )


def _host_episodes(
    task: Task,
    policy: Policy,
    controller: Controller,
    variables: Variables,
    normalizers: Normalizers,
    batches: list[np.ndarray],
    rng: jax.Array,
    settings: EvalSettings,
) -> EvaluatedEpisodes:
    """A host-stepped task: each batch of seeds through `host_rollout`, filming the first
    video_episodes episodes; the expert on the same seeds without rendering. The timing's
    compile_seconds is the first agent step's wall time (compilation included)."""
    env = task.env
    start = time.perf_counter()
    parts, frames, env_steps, env_seconds, first_act_seconds = [], [], 0, 0.0, 0.0
    for index, seeds in enumerate(batches):
        filmed = min(len(seeds), max(0, settings.video_episodes - index * len(batches[0])))
        part = host_rollout.host_rollout(
            env,
            policy,
            controller,
            variables,
            normalizers,
            episode_keys(seeds),
            jax.random.fold_in(rng, index),
            settings.num_steps,
            video_episodes=filmed,
            video_side=VIDEO_TILE_SIZE,
        )
        parts.append(part.rollouts)
        frames += [] if part.frames is None else list(part.frames)
        env_steps += part.env_steps
        env_seconds += part.env_seconds
        first_act_seconds = first_act_seconds or part.first_act_seconds
    rollout_seconds = time.perf_counter() - start - first_act_seconds
    start = time.perf_counter()
    expert = [
        host_rollout.host_expert_rollouts(env, task.expert, episode_keys(seeds), settings.num_steps)
        for seeds in batches
    ]
    return EvaluatedEpisodes(
        rollouts=_first_episodes(concatenate_rollouts(parts), settings.episodes),
        expert=_first_episodes(concatenate_rollouts(expert), settings.episodes),
        frames=np.stack(frames) if frames else None,
        timing={
            "compile_seconds": first_act_seconds,
            "rollout_seconds": rollout_seconds,
            "episodes_per_second": settings.episodes / rollout_seconds,
            "env_steps_per_second": env_steps / rollout_seconds,
            "env_seconds": env_seconds,
            "expert_seconds": time.perf_counter() - start,
        },
    )


def evaluate(
    policy: Policy,
    variables: Variables,
    normalizers: Normalizers,
    task: Task,
    eval_config: Mapping[str, Any],
    rng: jax.Array,
    out_dir: str | Path,
    *,
    training_seeds: Sequence[int] | None = None,
    policy_label: str | None = None,
    run_info: Mapping[str, Any] | None = None,
    episodes_per_batch: int = EPISODES_PER_BATCH,
) -> dict:
    """Evaluates a policy in closed loop and writes eval.json, the video and the plot.

    Args:
      policy: the policy (core.policy.Policy); its observation keys must be observed by the task.
      variables: its variables (e.g. the EMA weights).
      normalizers: {feature: AffineNormalizer} of the training data (observations, "action").
      task: `core.envs.registry.make(...)`'s task (environment and scripted expert).
      eval_config: the config's `eval` block (see `eval_settings`).
      rng: key of the policy's own randomness (sampling policies).
      out_dir: where the files go (created).
      training_seeds: the demonstration seeds, which the evaluation seeds must avoid.
      policy_label: the policy's name in the plot and eval.json (default: its class name).
      run_info: JSON-ready fields recorded in eval.json as they are (e.g. the checkpoint step).
      episodes_per_batch: the most episodes rolled out at once (bounds memory).

    Returns:
      The dict written to eval.json: the statistics of `core.evaluation.metrics` (success_rate,
      success_ci95, episodes, mean_length, mean_return, outcome_shares, mode_shares for bimodal
      tasks), "expert" (the same for the scripted expert on the same seeds), the settings,
      "policy_calls_per_episode", "timing", "files" and the run_info fields.
    """
    env = task.env
    settings = eval_settings(eval_config, env.spec.max_episode_steps)
    controller = make_controller(settings.controller)
    check_policy_fits_task(policy, env.spec)
    seeds = evaluation_seeds(settings.seed, settings.episodes, training_seeds)
    batches = episode_batches(seeds, episodes_per_batch)
    policy_label = policy_label or type(policy).__name__

    run_episodes = _host_episodes if host_rollout.is_host_stepped(env) else _jax_episodes
    episodes = run_episodes(
        task, policy, controller, variables, normalizers, batches, rng, settings
    )
    rollouts, expert = episodes.rollouts, episodes.expert

    results = {
        "task": env.spec.name,
        "policy": policy_label,
        **(run_info or {}),
        **metrics.episode_statistics(rollouts, env.spec.name),
        "expert": metrics.episode_statistics(expert, env.spec.name),
        "seeds": [int(seeds[0]), int(seeds[-1])],
        "max_steps": settings.num_steps,
        "controller": settings.controller,
        "policy_calls_per_episode": float(np.asarray(rollouts.queried).sum(axis=1).mean()),
        "timing": episodes.timing,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"eval": out_dir / "eval.json"}
    frames = episodes.frames
    if frames is None and settings.video_episodes:
        frames = _rendered_frames(env, rollouts, settings.video_episodes)
    if frames is not None:
        files["video"] = _write_video(frames, rollouts, env.spec.fps, out_dir / "rollouts.gif")
    plot = _write_trajectory_plot(
        env, policy_label, rollouts, expert, results, out_dir / "trajectories.png"
    )
    if plot is not None:
        files["trajectories"] = plot
    results["files"] = {kind: str(path) for kind, path in files.items()}
    files["eval"].write_text(json.dumps(results, indent=2) + "\n")
    return results


def _shares_text(shares: dict[str, float]) -> str:
    return ", ".join(f"{name} {share:.0%}" for name, share in shares.items())


def summary_text(results: dict) -> str:
    """A few lines for the terminal: success with its interval, modes, the expert, the files."""
    low, high = results["success_ci95"]
    expert = results["expert"]
    timing = results["timing"]
    lines = [
        f"{results['task']} / {results['policy']}: success {results['success_rate']:.1%} "
        f"({results['successes']}/{results['episodes']}), 95% CI [{low:.1%}, {high:.1%}]; "
        f"mean length {results['mean_length']:.1f} steps, mean return {results['mean_return']:.2f}",
    ]
    if "mode_shares" in results:
        lines.append(
            f"modes: {_shares_text(results['mode_shares'])} "
            f"(expert: {_shares_text(expert['mode_shares'])})"
        )
    lines.append(
        f"expert on the same seeds: success {expert['success_rate']:.1%}; rollouts: "
        f"{results['episodes']} episodes in {timing['rollout_seconds']:.1f} s "
        f"(+ {timing['compile_seconds']:.1f} s compile)"
        + (
            f", {timing['env_steps_per_second']:.1f} environment steps/s on the host"
            if "env_steps_per_second" in timing
            else ""
        )
    )
    lines.extend(f"{kind}: {path}" for kind, path in results["files"].items())
    return "\n".join(lines)

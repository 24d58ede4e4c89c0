"""Evaluate a trained policy in closed loop from its run directory.

    python -m experiments.evaluate --workdir runs/<name> [--episodes 200] \\
        [--checkpoint best|latest|<step>] [--video_episodes 16] \\
        [--controller.name=temporal_ensembling --controller.decay=0.01 ...]

Book 16.8 (closed-loop success is what judges a cloned policy), 17.2.2, 17.7 and 18.7 (the
execution controller, which may be changed here without retraining).

Restores the checkpoint (`core.training.checkpoint.restore`: config, EMA or plain weights,
normalizer statistics), rebuilds the task and the policy from the run's config
(`experiments.policies`), and runs `core.evaluation.evaluate` with the run's `eval` settings,
overridden by the flags given. Evaluation seeds start at the config's eval.seed and are checked
against the demonstration seeds of the run's dataset (from its "expert.seed" feature; from
data.demo_seed and data.num_demos when the dataset is gone). Writes <workdir>/eval/eval.json,
rollouts.gif and trajectories.png, and prints a summary.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from core import evaluation
from core.controllers import CONTROLLER_NAMES
from core.data.lerobot import LeRobotReader
from core.data.stats import make_normalizers
from core.temporal_ensembling import CONVENTIONS
from core.training import checkpoint
from experiments import policies
from experiments.train import EVAL_DIR, demonstration_seeds, make_task

CONTROLLER_FIELDS = ("name", "query_every", "decay", "convention")
"""The fields of the run's eval.controller that --controller.<field> overrides."""


def parse_checkpoint(which: str) -> str | int:
    """ "best", "latest" or a step number from the --checkpoint flag."""
    if which in ("best", "latest"):
        return which
    if which.isdigit():
        return int(which)
    raise ValueError(f'--checkpoint must be "best", "latest" or a step number, got {which!r}')


def training_seeds(config: ml_collections.ConfigDict) -> np.ndarray:
    """The seeds of the run's demonstrations, which evaluation must avoid."""
    path = Path(config.data.path)
    if path.exists():
        with LeRobotReader(path) as reader:
            seeds = demonstration_seeds(reader)
        if seeds is not None:
            return seeds
    first = config.data.demo_seed
    return np.arange(first, first + config.data.num_demos)


def eval_config_with(
    eval_config: ml_collections.ConfigDict,
    *,
    episodes: int | None = None,
    video_episodes: int | None = None,
    controller: Mapping[str, Any] | None = None,
) -> ml_collections.ConfigDict:
    """A copy of the run's `eval` block with the given settings replaced (None keeps them)."""
    updated = ml_collections.ConfigDict(eval_config.to_dict())
    if episodes is not None:
        updated.episodes = episodes
    if video_episodes is not None:
        updated.video_episodes = video_episodes
    for field, value in (controller or {}).items():
        if field not in CONTROLLER_FIELDS:
            raise ValueError(f"unknown controller field {field!r}; known: {CONTROLLER_FIELDS}")
        updated.controller[field] = value
    return updated


def evaluate_workdir(
    workdir: str | Path,
    *,
    which: str | int = "best",
    episodes: int | None = None,
    video_episodes: int | None = None,
    controller: Mapping[str, Any] | None = None,
) -> dict:
    """Evaluates checkpoint `which` of the run in `workdir`; results in <workdir>/eval/.

    Args:
      workdir: the run's directory (config.json, checkpoints/).
      which: "best", "latest" or a step.
      episodes, video_episodes: override the run's eval settings (None keeps them).
      controller: controller fields to override, e.g. {"name": "temporal_ensembling"}.

    Returns:
      `core.evaluation.evaluate`'s results, with "workdir" and "checkpoint_step".
    """
    workdir = Path(workdir)
    restored = checkpoint.restore(workdir, which)
    config = restored.config
    eval_config = eval_config_with(
        config.eval, episodes=episodes, video_episodes=video_episodes, controller=controller
    )
    task = make_task(config)
    policy = policies.make_policy(config.policy, task.env.spec.features())
    normalizers = make_normalizers(restored.normalizer_stats, dict(config.data.normalization))
    return evaluation.evaluate(
        policy,
        restored.variables,
        normalizers,
        task,
        eval_config,
        jax.random.key(eval_config.seed),
        workdir / EVAL_DIR,
        training_seeds=training_seeds(config),
        policy_label=f"{workdir.name} (step {restored.step})",
        run_info={"workdir": str(workdir), "checkpoint_step": restored.step},
    )


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The launcher's flags (defined on demand, so importing this module defines none)."""
    flags.DEFINE_string("workdir", None, "run directory (runs/<name>)", flag_values=flag_values)
    flags.DEFINE_string(
        "checkpoint", "best", 'checkpoint: "best", "latest" or a step', flag_values=flag_values
    )
    flags.DEFINE_integer(
        "episodes", None, "episodes (default: the run's eval.episodes)", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "video_episodes",
        None,
        "episodes in the video grid (default: the run's eval.video_episodes; 0: no video)",
        flag_values=flag_values,
    )
    # one flag per field, so absl rejects unknown fields and bad values with a clear message
    controller = "override the run's eval.controller."
    flags.DEFINE_enum(
        "controller.name", None, CONTROLLER_NAMES, controller + "name", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "controller.query_every", None, controller + "query_every", flag_values=flag_values
    )
    flags.DEFINE_float("controller.decay", None, controller + "decay", flag_values=flag_values)
    flags.DEFINE_enum(
        "controller.convention",
        None,
        CONVENTIONS,
        controller + "convention",
        flag_values=flag_values,
    )
    flags.mark_flag_as_required("workdir", flag_values=flag_values)
    flags.register_validator(
        "checkpoint",
        lambda which: which in ("best", "latest") or which.isdigit(),
        message='--checkpoint must be "best", "latest" or a step number',
        flag_values=flag_values,
    )


def controller_overrides(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
    """{field: value} of the --controller.<field> flags given on the command line."""
    given = {field: flag_values[f"controller.{field}"].value for field in CONTROLLER_FIELDS}
    return {field: value for field, value in given.items() if value is not None}


def main(argv: Sequence[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    settings = flags.FLAGS
    try:
        results = evaluate_workdir(
            settings.workdir,
            which=parse_checkpoint(settings.checkpoint),
            episodes=settings.episodes,
            video_episodes=settings.video_episodes,
            controller=controller_overrides(settings),
        )
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"FATAL {error}")
    print(evaluation.summary_text(results))


if __name__ == "__main__":
    define_flags()
    app.run(main)

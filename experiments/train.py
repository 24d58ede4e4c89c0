"""Train a policy from an experiment config, then evaluate its best checkpoint in closed loop.

    python -m experiments.train --config experiments/configs/<name>.py --workdir runs/<name> \\
        [--config.optim.learning_rate=3e-4 ...] [--baseline <config>.py[:variant]] \\
        [--distributed ...]

Book 16.8 (learning a policy from demonstrations), 14.1.3 (normalization statistics from the
training episodes only), 17.10 / 18.7 (the training procedures).

What it does, in `train_and_evaluate(config, workdir)`:
  1. validates the config (core.training.config) and records it in workdir/config.json; a
     workdir that already holds a run is resumed from its latest checkpoint, and refused if
     the config changed in a way that would change what is learned;
  2. opens the dataset at config.data.path, generating it first with the task's scripted
     expert (experiments.demos) if it is missing;
  3. splits episodes into train/validation (the dataset's stored split), builds the
     normalizers from the TRAIN statistics, builds the policy (experiments.policies);
  4. trains (core.training.loop.fit): metrics.jsonl and TensorBoard events in the workdir,
     validation loss, checkpoints in workdir/checkpoints (latest N + best);
  5. restores the best checkpoint and evaluates it in closed loop (core.evaluation), writing
     workdir/eval/ (eval.json, videos, trajectory plots), and prints the success rate;
  6. with --baseline, does 1-5 for the baseline config in workdir/baseline and prints both
     success rates, one line each (the quickstart: ACT beside BC).

SIGTERM or Ctrl-C saves a checkpoint and exits (status 143 / 130); the same command resumes.
Several hosts: see core.training.sharding (flags --distributed, --coordinator_address,
--num_processes, --process_id).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from jax.experimental import multihost_utils
from ml_collections import config_flags

from core import evaluation
from core.data.lerobot import LeRobotReader
from core.data.sampler import ChunkSampler
from core.data.splits import split_episodes
from core.data.stats import make_normalizers, training_stats
from core.envs import registry
from core.policy import Policy
from core.training import checkpoint, sharding
from core.training.config import (
    CONFIG_FILE,
    ConfigError,
    check_resumable,
    flatten,
    load_config_module,
    plain,
    save_config,
    validate_config,
)
from core.training.loop import TrainingInterrupted, fit
from core.training.step import NonFiniteError
from experiments import policies
from experiments.demos import generate_demos

EVAL_DIR = "eval"
BASELINE_DIR = "baseline"
CONFIG_OVERRIDE = "--config."
DEMO_SEED_FEATURE = "expert.seed"
"""The per-frame seed of a scripted demonstration (experiments.demos)."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The opened dataset, its episode split, the statistics of its training episodes and the
    seeds of its demonstrations (None when the dataset does not record them)."""

    reader: LeRobotReader
    train_episodes: np.ndarray
    validation_episodes: np.ndarray
    stats: dict
    demo_seeds: np.ndarray | None


def demonstration_seeds(reader: LeRobotReader) -> np.ndarray | None:
    """The distinct seeds of the dataset's scripted demonstrations, which evaluation avoids."""
    if DEMO_SEED_FEATURE not in reader.features:
        return None
    seeds = reader.read(DEMO_SEED_FEATURE, np.arange(reader.num_frames))
    return np.unique(seeds)


def open_dataset(config: ml_collections.ConfigDict) -> Dataset:
    """Opens config.data.path, generating it first (on process 0) if it does not exist.

    The split is the dataset's own (recorded when it was written, with
    data.validation_fraction if this run generated it); a dataset without one is split here.
    """
    path = Path(config.data.path)
    if not path.exists():
        env_options = {
            key: value
            for key, value in config.task.items()
            if key not in ("name", "image_size", "cameras")
        }
        if jax.process_index() == 0:
            print(
                f"{path} not found: generating {config.data.num_demos} {config.task.name} "
                f"demonstrations (seeds from {config.data.demo_seed}) with the scripted expert"
            )
            summary = generate_demos(
                config.task.name,
                config.data.num_demos,
                path,
                seed=config.data.demo_seed,
                image_size=config.task.image_size,
                cameras=tuple(config.task.cameras),
                validation_fraction=config.data.validation_fraction,
                env_options=env_options,
            )
            print(summary.text())
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("dataset generated")
    reader = LeRobotReader(path)
    splits = reader.splits
    if "train" not in splits:
        splits = split_episodes(reader.num_episodes, config.data.validation_fraction, config.seed)
    train = splits["train"]
    validation = splits.get("validation", np.zeros(0, np.int64))
    return Dataset(
        reader, train, validation, training_stats(reader, train), demonstration_seeds(reader)
    )


def make_samplers(
    config: ml_collections.ConfigDict, dataset: Dataset, policy: Policy
) -> tuple[ChunkSampler, ChunkSampler | None]:
    """This process's samplers of the train and validation episodes (None: no validation)."""
    options = dict(
        batch_size=config.data.batch_size,
        observation_horizon=policy.observation_horizon,
        action_horizon=policy.action_horizon,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        observation_keys=policy.observation_keys,
    )
    train = ChunkSampler(dataset.reader, dataset.train_episodes, seed=config.seed, **options)
    if config.train.validate_every == 0 or len(dataset.validation_episodes) == 0:
        return train, None
    validation = ChunkSampler(
        dataset.reader, dataset.validation_episodes, seed=config.seed, **options
    )
    return train, validation


def make_task(config: ml_collections.ConfigDict) -> registry.Task:
    """The task of config.task (its fields other than the name configure the environment)."""
    fields = {key: value for key, value in config.task.items() if key != "name"}
    fields["cameras"] = tuple(fields["cameras"])
    return registry.make(config.task.name, **fields)


def prepare_workdir(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Records the config, or checks it against the run already in the workdir."""
    if (workdir / CONFIG_FILE).exists():
        check_resumable(workdir, config)
    if jax.process_index() == 0:
        save_config(config, workdir)


def evaluate_best(
    workdir: Path, policy: Policy, evaluate: Callable[..., dict], demo_seeds: np.ndarray | None
) -> dict:
    """Closed-loop evaluation of the run's best checkpoint, on seeds disjoint from the
    demonstrations'; results in workdir/eval/."""
    restored = checkpoint.restore(workdir, "best")
    config = restored.config
    normalizers = make_normalizers(restored.normalizer_stats, dict(config.data.normalization))
    return evaluate(
        policy,
        restored.variables,
        normalizers,
        make_task(config),
        config.eval,
        jax.random.key(config.eval.seed),
        workdir / EVAL_DIR,
        training_seeds=demo_seeds,
    )


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    make_policy: Callable[..., Any] = policies.make_policy,
    evaluate: Callable[..., dict] = evaluation.evaluate,
    progress: bool = True,
) -> dict:
    """Trains (or resumes) the run of `config` in `workdir`, then evaluates its best checkpoint.

    Args:
      config: an experiment config (core.training.config).
      workdir: the run's directory.
      make_policy: policy config, dataset features -> Policy (the method registry).
      evaluate: the closed-loop evaluator (core.evaluation.evaluate's signature).
      progress: show the progress bar.

    Returns:
      {"train": the final step, best step, last metrics, compile time and steps/s,
       "eval": the evaluation results (process 0; None on the others)}.

    Raises:
      core.training.config.ConfigError for an invalid config or one that conflicts with the
      workdir's run; core.training.step.NonFiniteError; core.training.loop.TrainingInterrupted.
    """
    validate_config(config)
    workdir = Path(workdir)
    prepare_workdir(config, workdir)
    dataset = open_dataset(config)
    with dataset.reader:
        policy = make_policy(config.policy, dataset.reader.features)
        train_sampler, validation_sampler = make_samplers(config, dataset, policy)
        summary = fit(
            config,
            workdir,
            policy,
            train_sampler,
            validation_sampler,
            dataset.stats,
            progress=progress,
        )
    results = None
    if jax.process_index() == 0:
        results = evaluate_best(workdir, policy, evaluate, dataset.demo_seeds)
        print(f"best checkpoint: step {summary.best_step}\n{evaluation.summary_text(results)}")
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("evaluation finished")  # the others wait for it
    return {"train": dataclasses.asdict(summary), "eval": results}


def comparison_text(results: dict, baseline: dict) -> str:
    """Two lines, the policy's and the baseline's success with its 95% interval and modes."""
    lines = []
    for label, run in (("policy", results), ("baseline", baseline)):
        low, high = run["success_ci95"]
        modes = ", ".join(
            f"{mode} {share:.0%}" for mode, share in run.get("mode_shares", {}).items()
        )
        lines.append(
            f"{label:>8} {run['policy']}: success {run['success_rate']:.1%} "
            f"[{low:.1%}, {high:.1%}]" + (f"; {modes}" if modes else "")
        )
    return "\n".join(lines)


def unknown_overrides(config: ml_collections.ConfigDict, names: Iterable[str]) -> list[str]:
    """The dotted override keys (e.g. "optim.lr" of --config.optim.lr=...) that name no field
    of `config`, each with the keys that exist at the deepest level it got right."""
    leaves = flatten(plain(config))
    valid = set(leaves) | {prefix for path in leaves for prefix in _prefixes(path)}
    unknown = []
    for name in names:
        if name in valid:
            continue
        parent = name.rpartition(".")[0]
        while parent and parent not in valid:
            parent = parent.rpartition(".")[0]
        children = sorted(
            {
                path.removeprefix(f"{parent}.").split(".")[0]
                for path in valid
                if not parent or path.startswith(f"{parent}.")
            }
        )
        where = f"config.{parent}" if parent else "config"
        unknown.append(f"{name} ({where} has: {', '.join(children)})")
    return unknown


def _prefixes(path: str) -> list[str]:
    """The proper prefixes of a dotted key: "a.b.c" -> ["a", "a.b"]."""
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def define_flags(
    flag_values: flags.FlagValues = flags.FLAGS, argv: Sequence[str] | None = None
) -> None:
    """The launcher's flags, defined on demand so that importing this module defines none.

    argv: the command line whose --config.<key> overrides to accept (default sys.argv).
    """
    config_flags.DEFINE_config_file(
        "config",
        None,
        "experiment config module (experiments/configs/<name>.py)",
        flag_values=flag_values,
        lock_config=True,
        sys_argv=None if argv is None else list(argv),
    )
    config_flags.DEFINE_config_file(
        "baseline",
        None,
        "optional baseline config, trained and evaluated after --config in <workdir>/baseline; "
        "the run ends with both success rates (the quickstart's BC)",
        flag_values=flag_values,
        lock_config=True,
        sys_argv=None if argv is None else list(argv),
    )
    flags.DEFINE_string("workdir", None, "run directory (runs/<name>)", flag_values=flag_values)
    flags.DEFINE_bool(
        "distributed",
        False,
        "connect to the other processes (jax.distributed.initialize)",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "host:port of process 0 (with --distributed)",
        flag_values=flag_values,
    )
    flags.DEFINE_integer("num_processes", None, "number of processes", flag_values=flag_values)
    flags.DEFINE_integer("process_id", None, "this process's index", flag_values=flag_values)
    flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Parses the command line; an override naming no config key exits with a clear message
    (ml_collections would raise a bare KeyError)."""
    try:
        return flag_values(argv)
    except (KeyError, AttributeError) as error:
        config_path = next(
            (arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")), None
        )
        names = [
            arg[len(CONFIG_OVERRIDE) :].split("=", 1)[0]
            for arg in argv
            if arg.startswith(CONFIG_OVERRIDE)
        ]
        unknown = unknown_overrides(load_config_module(config_path), names) if config_path else []
        message = "; ".join(unknown) if unknown else str(error)
        print(f"FATAL unknown config override: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: Sequence[str]) -> None:
    del argv
    settings = flags.FLAGS
    if not settings["verbosity"].present:  # orbax logs every step of a save at INFO
        logging.set_verbosity(logging.WARNING)
    if settings.distributed:
        sharding.initialize_multihost(
            settings.coordinator_address, settings.num_processes, settings.process_id
        )
    try:
        results = train_and_evaluate(settings.config, settings.workdir)
        if settings.baseline is not None:
            workdir = Path(settings.workdir) / BASELINE_DIR
            baseline = train_and_evaluate(settings.baseline, workdir)
            if results["eval"] is not None:
                print(comparison_text(results["eval"], baseline["eval"]))
    except ConfigError as error:
        print(f"FATAL {error}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteError as error:
        print(f"FATAL {error}", file=sys.stderr)
        sys.exit(1)
    except TrainingInterrupted as interruption:
        print(interruption, file=sys.stderr)
        sys.exit(128 + interruption.signal_number)  # the shell's convention: 143, or 130


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=parse_flags)

"""Experiment configs: the shared layout, its validation, and config.json in the workdir.

Book 16.8, 17.10, 18.7: a training run is fixed by its data, policy, optimizer and schedule;
everything else (logging cadence, evaluation) may change without changing what is learned.

An experiment config is an `ml_collections.ConfigDict` with the sections of `default_config()`:

  seed       int, the run's seed (parameter init, sample order, dropout keys)
  task       name (core.envs.registry), image_size (pixels: an int for the square cameras of
             the JAX tasks, a (height, width) pair for ALOHA's), cameras; any other field of the
             task's environment (e.g. max_episode_steps) may be added and is passed to
             `registry.make`
  data       path, num_demos, demo_seed (used to generate the dataset when path is missing),
             validation_fraction, normalization ((feature, mode) pairs, see below), batch_size
             (global), prefetch (batches prepared ahead in background threads)
  policy     name (experiments.policies), observation_horizon, action_horizon, plus the
             method's own fields (the method's factory validates those)
  optim      learning_rate, weight_decay, weight_decay_mask, b1, b2, eps, grad_clip_norm,
             schedule {name, warmup_steps, min_learning_rate}, param_group_lr {prefix: factor},
             ema_decay, loss_scaling (see core.training.optimizer)
  train      num_steps, log_every, validate_every, validation_batches, checkpoint_every,
             keep_checkpoints, best_metric
  eval       episodes, seed, controller {name, query_every, decay, convention},
             video_episodes, max_steps (None: the task's time limit)

`data.normalization` is a tuple of (feature, mode) pairs, e.g.
(("observation.state", "mean_std"), ("action", "min_max")), not a dict: ConfigDict refuses
dotted keys such as "observation.state". `dict(config.data.normalization)` is the mapping
`core.data.stats.make_normalizers` takes.

`validate_config` rejects unknown keys, missing keys, wrong types and out-of-range values,
listing every problem with its full key. Config modules start from `default_config()` and set
what they change, so a typo such as `config.optim.lr = 3e-4` fails loudly instead of being
ignored.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from ml_collections import config_dict

from core.data.stats import NORMALIZATION_MODES
from core.envs import registry

CONFIG_FILE = "config.json"
SCHEDULES = ("constant", "cosine")
LOSS_SCALING = ("off", "dynamic")
WEIGHT_DECAY_MASKS = ("all", "matrices")
IMAGE_SIZE_FORMS = "an int >= 1 (square images) or a (height, width) pair of ints >= 1"
REQUIRED = ("task.name", "data.path", "policy.name")
"""Keys without a usable default: every config module sets them."""

NULLABLE = ("eval.max_steps",)
"""Keys whose None is a setting: eval.max_steps None is the task's time limit."""

FREE_SECTIONS = ("policy", "optim.param_group_lr")
"""Sections whose extra keys are not known here: the method's fields and parameter prefixes."""

RESUMABLE_KEYS = (
    "train.log_every",
    "train.validate_every",
    "train.validation_batches",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "data.prefetch",
    "eval.",
)
"""Keys (or key prefixes ending in ".") that may change when a run resumes: they change how
the run is observed, not what it learns. train.num_steps may change too when the learning-rate
schedule does not depend on it (the constant schedule)."""


class ConfigError(ValueError):
    """An invalid config, or one that conflicts with the run already in the workdir."""


def default_config() -> ml_collections.ConfigDict:
    """The full config layout with defaults; `REQUIRED` keys are None placeholders.

    Defaults follow the reference implementations where the book gives none: AdamW with
    β = (0.9, 0.999), ε = 1e-8 outside the root and weight decay 1e-4 on every parameter (ACT,
    LeRobot), gradient clipping at norm 10 (LeRobot), validation on 10% of the episodes.
    """
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = ml_collections.ConfigDict(
        {
            "name": config_dict.placeholder(str),
            # an int or a (height, width) pair: typed `object`, so both assign and override
            "image_size": config_dict.FieldReference(64, field_type=object),
            "cameras": ("top",),
        }
    )
    config.data = ml_collections.ConfigDict(
        {
            "path": config_dict.placeholder(str),
            "num_demos": 200,
            "demo_seed": 0,
            "validation_fraction": 0.1,
            "normalization": (("observation.state", "mean_std"), ("action", "min_max")),
            "batch_size": 64,
            "prefetch": 2,
        }
    )
    config.policy = ml_collections.ConfigDict(
        {"name": config_dict.placeholder(str), "observation_horizon": 1, "action_horizon": 1}
    )
    config.optim = ml_collections.ConfigDict(
        {
            "learning_rate": 1e-4,
            "weight_decay": 1e-4,
            "weight_decay_mask": "all",
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "grad_clip_norm": 10.0,
            "schedule": {"name": "constant", "warmup_steps": 0, "min_learning_rate": 0.0},
            "param_group_lr": ml_collections.ConfigDict(),
            "ema_decay": 0.0,
            "loss_scaling": "off",
        }
    )
    config.train = ml_collections.ConfigDict(
        {
            "num_steps": 1000,
            "log_every": 50,
            "validate_every": 250,
            "validation_batches": 4,
            "checkpoint_every": 500,
            "keep_checkpoints": 2,
            "best_metric": "val/loss",
        }
    )
    config.eval = ml_collections.ConfigDict(
        {
            "episodes": 50,
            "seed": 1_000_000,
            "controller": {
                "name": "chunked",
                "query_every": 1,
                "decay": 0.01,
                "convention": "act",
            },
            "video_episodes": 8,
            "max_steps": config_dict.placeholder(int),
        }
    )
    return config


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim.schedule.name": "cosine", ...}: the leaves of a (nested) config by dotted key.

    Empty sections (e.g. no parameter groups) have no leaves and do not appear.
    """
    leaves = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            leaves.update(flatten(value, f"{path}."))
        else:
            leaves[path] = value
    return leaves


def plain(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as JSON-compatible nested dicts (tuples become lists), as config.json holds it."""
    return json.loads(config.to_json())


def _leaf_types(schema: ml_collections.ConfigDict, prefix: str = "") -> dict[str, type]:
    """The declared type of every leaf of `schema` (placeholders keep theirs)."""
    types = {}
    for key in schema:
        value = schema[key]
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            types.update(_leaf_types(value, f"{path}."))
        else:
            types[path] = schema.get_type(key)
    return types


def _type_problem(path: str, value: Any, expected: type) -> str | None:
    """Why `value` is not of the declared type, or None. ints pass for floats, bools never
    pass for numbers, any sequence passes for a tuple."""
    if value is None:
        return None if path in REQUIRED or path in NULLABLE else f"{path}: must be set"
    if expected is float and isinstance(value, int | float) and not isinstance(value, bool):
        return None
    if expected is tuple and isinstance(value, list | tuple):
        return None
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return None
    return f"{path}: must be {expected.__name__}, got {type(value).__name__} {value!r}"


def _known_extra_keys(path: str, config: Mapping[str, Any]) -> bool:
    """Extra keys allowed beyond the schema: method fields, parameter prefixes, env fields."""
    if any(path.startswith(f"{section}.") for section in FREE_SECTIONS):
        return True
    task = config.get("task", {}).get("name")
    if path.startswith("task.") and task in registry.task_names():
        env_class, _ = registry.task_classes(task)
        return path.removeprefix("task.") in {field.name for field in dataclasses.fields(env_class)}
    return False


def _structure_problems(config: Mapping[str, Any]) -> list[str]:
    expected = _leaf_types(default_config())
    actual = flatten(config)
    problems = []
    for path in sorted(set(actual) - set(expected)):
        if not _known_extra_keys(path, config):
            section, _, _ = path.rpartition(".")
            known = sorted(key for key in expected if key.rpartition(".")[0] == section)
            problems.append(f"{path}: unknown key (known keys here: {', '.join(known)})")
    for path in sorted(set(expected) - set(actual)):
        if not any(path.startswith(f"{section}.") for section in FREE_SECTIONS):
            problems.append(f"{path}: missing")
    for path in sorted(set(expected) & set(actual)):
        problem = _type_problem(path, actual[path], expected[path])
        if problem:
            problems.append(problem)
    for path in REQUIRED:
        if path in actual and actual[path] is None:
            problems.append(f"{path}: must be set (no default)")
    return problems


def _range_problems(config: Mapping[str, Any]) -> list[str]:
    """Value checks, run once the structure and types are right."""
    flat = flatten(config)
    problems = []

    def require(condition: bool, path: str, requirement: str) -> None:
        if not condition:
            problems.append(f"{path}: must be {requirement}, got {flat[path]!r}")

    for path in (
        "data.num_demos",
        "data.batch_size",
        "policy.observation_horizon",
        "policy.action_horizon",
        "train.num_steps",
        "train.log_every",
        "train.validation_batches",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "eval.episodes",
    ):
        require(flat[path] >= 1, path, ">= 1")
    for path in (
        "data.prefetch",
        "optim.weight_decay",
        "optim.eps",
        "optim.grad_clip_norm",
        "optim.schedule.warmup_steps",
        "optim.schedule.min_learning_rate",
        "train.validate_every",
        "eval.video_episodes",
    ):
        require(flat[path] >= 0, path, ">= 0")
    require(_is_image_size(flat["task.image_size"]), "task.image_size", IMAGE_SIZE_FORMS)
    tasks = registry.task_names()
    require(flat["task.name"] in tasks, "task.name", f"one of {tasks}")
    cameras = flat["task.cameras"]
    require(
        len(cameras) >= 1 and all(isinstance(camera, str) for camera in cameras),
        "task.cameras",
        "a non-empty tuple of camera names",
    )
    require(0.0 <= flat["data.validation_fraction"] < 1.0, "data.validation_fraction", "in [0, 1)")
    require(flat["optim.learning_rate"] > 0, "optim.learning_rate", "> 0")
    for path in ("optim.b1", "optim.b2", "optim.ema_decay"):
        require(0.0 <= flat[path] < 1.0, path, "in [0, 1)")
    require(flat["optim.schedule.name"] in SCHEDULES, "optim.schedule.name", f"one of {SCHEDULES}")
    require(
        flat["optim.loss_scaling"] in LOSS_SCALING, "optim.loss_scaling", f"one of {LOSS_SCALING}"
    )
    require(
        flat["optim.weight_decay_mask"] in WEIGHT_DECAY_MASKS,
        "optim.weight_decay_mask",
        f"one of {WEIGHT_DECAY_MASKS}",
    )
    require(
        flat["optim.schedule.warmup_steps"] < flat["train.num_steps"],
        "optim.schedule.warmup_steps",
        f"< train.num_steps = {flat['train.num_steps']}",
    )
    require(
        flat["optim.schedule.min_learning_rate"] <= flat["optim.learning_rate"],
        "optim.schedule.min_learning_rate",
        "<= optim.learning_rate",
    )
    for prefix, factor in config["optim"]["param_group_lr"].items():
        path = f"optim.param_group_lr.{prefix}"
        if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 0:
            problems.append(f"{path}: must be a learning-rate factor >= 0, got {factor!r}")
    require(
        flat["train.best_metric"].startswith("val/"),
        "train.best_metric",
        'a validation metric "val/<name>" (minimized)',
    )
    if flat["eval.max_steps"] is not None:
        require(flat["eval.max_steps"] >= 1, "eval.max_steps", ">= 1 or None")
    problems += _normalization_problems(config["data"]["normalization"])
    problems += _seed_problems(flat)
    return problems


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_image_size(image_size: Any) -> bool:
    """An int >= 1 (square images), or a (height, width) pair of them (IMAGE_SIZE_FORMS)."""
    if isinstance(image_size, list | tuple):
        return len(image_size) == 2 and all(_is_positive_int(side) for side in image_size)
    return _is_positive_int(image_size)


def _normalization_problems(normalization: Sequence) -> list[str]:
    problems = []
    features = []
    for entry in normalization:
        if not (isinstance(entry, list | tuple) and len(entry) == 2):
            problems.append(f"data.normalization: entries must be (feature, mode), got {entry!r}")
            continue
        feature, mode = entry
        features.append(feature)
        if mode not in NORMALIZATION_MODES:
            problems.append(
                f"data.normalization: mode of {feature!r} must be one of "
                f"{NORMALIZATION_MODES}, got {mode!r}"
            )
    repeated = sorted({f for f in features if features.count(f) > 1})
    if repeated:
        problems.append(f"data.normalization: features {repeated} appear more than once")
    return problems


def _seed_problems(flat: Mapping[str, Any]) -> list[str]:
    """Evaluation episodes must not replay the demonstrations' initial states."""
    demos = range(flat["data.demo_seed"], flat["data.demo_seed"] + flat["data.num_demos"])
    evaluation = range(flat["eval.seed"], flat["eval.seed"] + flat["eval.episodes"])
    if demos.start < evaluation.stop and evaluation.start < demos.stop:
        return [
            f"eval.seed: evaluation seeds {evaluation.start}..{evaluation.stop - 1} overlap the "
            f"demonstration seeds {demos.start}..{demos.stop - 1}; use disjoint seeds"
        ]
    return []


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks the layout, types and values of an experiment config.

    Raises:
      ConfigError (a ValueError) listing every problem, one per line, each naming its full
      key, e.g. "optim.lr: unknown key (known keys here: optim.b1, ...)".
    """
    values = plain(config)
    problems = _structure_problems(values)
    if not problems:
        problems = _range_problems(values)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _tuples(value: Any) -> Any:
    """JSON lists back to tuples, recursively (configs hold tuples, JSON only lists)."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    return value


def config_from_dict(values: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A ConfigDict from plain values (e.g. a config.json), typed like `default_config()`.

    Lists become tuples, placeholders keep their declared types (so command-line overrides of
    a loaded config still type-check), and sections gain the extra keys present in `values`.
    """
    config = default_config()

    def assign(target: ml_collections.ConfigDict, source: Mapping[str, Any]) -> None:
        for key, value in source.items():
            if isinstance(value, Mapping) and isinstance(
                target.get(key), ml_collections.ConfigDict
            ):
                assign(target[key], value)
            else:
                target[key] = _tuples(value)

    assign(config, values)
    return config


def save_config(config: ml_collections.ConfigDict, workdir: str | Path) -> Path:
    """Writes `workdir/config.json` atomically (a temporary file renamed into place)."""
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(plain(config), indent=2) + "\n")
    os.replace(temporary, path)
    return path


def load_config(path: str | Path) -> ml_collections.ConfigDict:
    """Reads a config.json (a workdir's, or a file path) back into a typed ConfigDict."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a valid config file ({error})") from error
    return config_from_dict(values)


def resume_conflicts(saved: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> list:
    """The keys whose change would make a resumed run differ from an uninterrupted one.

    Returns:
      ["optim.learning_rate: 0.0001 -> 0.0003", ...], empty when the run may resume.
    """
    before, after = flatten(plain(saved)), flatten(plain(config))
    constant_schedule = after.get("optim.schedule.name") == "constant"
    conflicts = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, "<absent>"), after.get(path, "<absent>")
        if old == new or any(path.startswith(key) for key in RESUMABLE_KEYS):
            continue
        if path == "train.num_steps" and constant_schedule:
            continue
        conflicts.append(f"{path}: {old!r} -> {new!r}")
    return conflicts


def check_resumable(workdir: str | Path, config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError if `workdir` holds a run whose config differs in keys that matter."""
    conflicts = resume_conflicts(load_config(workdir), config)
    if conflicts:
        raise ConfigError(
            f"{Path(workdir) / CONFIG_FILE} records a different run; resuming it with this config "
            "would not reproduce it. Changed:\n  "
            + "\n  ".join(conflicts)
            + "\nUse a new --workdir, or set these keys back."
        )


def load_config_module(path: str | Path) -> ml_collections.ConfigDict:
    """`get_config()` of a config module file (experiments/configs/<name>.py)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"config_module_{path.stem}", path)
    if spec is None or not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} defines no get_config()")
    return module.get_config()

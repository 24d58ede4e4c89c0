"""Every experiment config validates, builds its policy for its task's data, documents its launch
command; and the quickstart, shrunk to its tiny variant, runs the README's path end to end."""

import importlib.util
import json
from pathlib import Path

import pytest

from core.training.config import validate_config
from experiments import train
from experiments.demos import demo_features
from experiments.policies import make_policy

CONFIG_DIR = Path(__file__).resolve().parents[2] / "experiments" / "configs"
CONFIG_FILES = sorted(
    path for path in CONFIG_DIR.glob("*.py") if not path.name.startswith("_")
)  # "_" modules hold what configs share
VARIANTS = ("full", "tiny")


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configs_of_this_issue_exist():
    names = {path.stem for path in CONFIG_FILES}
    expected = {f"bc_{net}_{head}_obstacle" for net in ("mlp", "cnn") for head in ("mse", "nll")}
    assert expected | {"quickstart"} <= names


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.stem)
def test_config_validates_and_builds_a_policy_its_task_can_feed(path, variant):
    config = _module(path).get_config(variant)
    validate_config(config)
    task = train.make_task(config)
    features = demo_features(task.env.spec)
    policy = make_policy(config.policy, features)
    assert set(policy.observation_keys) <= set(task.env.spec.observation)
    assert policy.observation_horizon == config.policy.observation_horizon
    assert policy.action_horizon == config.policy.action_horizon
    normalized = {feature for feature, _ in config.data.normalization}
    assert normalized <= set(features)
    assert "action" in normalized  # the policy predicts normalized actions
    hash(policy)  # static under jit


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.stem)
def test_config_docstring_gives_its_launch_command_expected_result_and_runtime(path):
    doc = _module(path).get_config.__doc__
    assert f"--config experiments/configs/{path.name}" in doc
    assert "Expected" in doc and "Runtime" in doc


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.stem)
def test_an_unknown_variant_is_rejected_naming_it(path):
    with pytest.raises(ValueError, match=r"variant must be one of .* got 'huge'"):
        _module(path).get_config("huge")


@pytest.mark.slow  # ~10-20 s: generates 10 demonstrations, trains 20 steps, evaluates 8 episodes
def test_tiny_quickstart_generates_data_trains_and_evaluates_from_scratch(tmp_path, capsys):
    config = _module(CONFIG_DIR / "quickstart.py").get_config("tiny")
    config.data.path = str(tmp_path / "data" / "obstacle_tiny")
    results = train.train_and_evaluate(config, tmp_path / "run", progress=False)

    assert results["train"]["step"] == config.train.num_steps
    evaluated = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())
    assert evaluated == results["eval"]
    assert evaluated["episodes"] == config.eval.episodes
    low, high = evaluated["success_ci95"]
    assert 0.0 <= low <= evaluated["success_rate"] <= high <= 1.0
    assert set(evaluated["mode_shares"]) >= {"left", "right", "collided"}
    for kind in ("video", "trajectories"):
        assert Path(evaluated["files"][kind]).is_file()
    printed = capsys.readouterr().out
    assert "not found: generating 10 obstacle demonstrations" in printed
    assert "success" in printed and "trajectories.png" in printed

"""The ACT configs on the JAX tasks (experiments/configs/act_obstacle.py, act_pick_place.py) and
the quickstart: every variant validates and builds an ACT policy reading what it should, the
quickstart's BC baseline reads the same observations and is printed beside ACT, and a tiny
variant trains a few steps and evaluates end to end."""

import importlib.util
import json
from pathlib import Path

import pytest

from core.training.config import validate_config
from experiments import train
from experiments.configs import _act_tasks
from experiments.demos import demo_features
from experiments.policies import make_policy

CONFIG_DIR = Path(__file__).resolve().parents[2] / "experiments" / "configs"
TASKS = {"act_obstacle": "obstacle", "act_pick_place": "pick_place"}
"""Config name -> its task."""


def _get_config(name: str, variant: str):
    spec = importlib.util.spec_from_file_location(f"config_{name}", CONFIG_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def _policy(config):
    return make_policy(config.policy, demo_features(train.make_task(config).env.spec))


@pytest.mark.parametrize("variant", _act_tasks.VARIANTS)
@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_variant_validates_and_builds_an_act_policy_on_its_task(name, variant):
    config = _get_config(name, variant)
    validate_config(config)
    assert config.task.name == TASKS[name]
    policy = _policy(config)
    states = ("observation.state", "observation.environment_state")
    cameras = ("observation.images.top",) if variant == "full" else ()
    assert policy.observation_keys == (*states, *cameras)
    assert policy.network.chunk_size == config.policy.action_horizon
    assert config.eval.seed >= config.data.demo_seed + config.data.num_demos


@pytest.mark.parametrize("name", sorted(TASKS))
def test_full_variant_keeps_the_original_loss_and_controller(name):
    config = _get_config(name, "full")
    policy = _policy(config)
    assert (policy.reconstruction_loss, policy.inference_latent) == ("l1", "zero")
    assert policy.kl_weight == _act_tasks.RECIPES[TASKS[name]].kl_weight
    assert (policy.network.num_decoder_layers, policy.network.pre_norm) == (1, False)
    controller = config.eval.controller
    assert (controller.name, controller.decay, controller.convention) == (
        "temporal_ensembling",
        0.01,
        "act",
    )
    assert config.eval.episodes >= 200


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_robot_state_leaves_out_the_velocity_a_cloned_policy_would_copy(name):
    config = _get_config(name, "state")
    state = train.make_task(config).env.spec.observation["observation.state"]
    assert not {"vx", "vy"} & set(state.names) and {"x", "y"} <= set(state.names)
    assert config.data.path.endswith("_no_velocity")  # not the default datasets, which have it


def test_chunk_is_shorter_than_the_expert_episode_and_longer_on_the_longer_task():
    obstacle, pick_place = _act_tasks.RECIPES["obstacle"], _act_tasks.RECIPES["pick_place"]
    assert obstacle.chunk_size < 40 and pick_place.chunk_size < 75  # the experts' lengths
    assert pick_place.chunk_size > obstacle.chunk_size


@pytest.mark.parametrize(
    ("task", "variant", "named"),
    [("nowhere", "full", "nowhere"), ("obstacle", "huge", "huge")],
    ids=["task", "variant"],
)
def test_unknown_task_or_variant_is_rejected_naming_it(task, variant, named):
    with pytest.raises(ValueError, match=rf"must be one of .* got '{named}'"):
        _act_tasks.act_task_config(task, variant)


@pytest.mark.slow  # ~10 s: 10 demonstrations, 20 steps, 4 episodes of 30 steps
def test_tiny_pick_place_trains_and_evaluates_end_to_end(tmp_path):
    config = _get_config("act_pick_place", "tiny")
    config.data.path = str(tmp_path / "data" / "pick_place_tiny")
    results = train.train_and_evaluate(config, tmp_path / "run", progress=False)

    assert results["train"]["step"] == config.train.num_steps
    evaluated = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())
    assert evaluated == results["eval"]
    assert evaluated["episodes"] == config.eval.episodes and evaluated["policy"] == "ACTPolicy"
    assert evaluated["controller"]["name"] == "temporal_ensembling"
    assert set(evaluated["mode_shares"]) == {"left_zone", "right_zone", "neither"}
    assert sum(evaluated["mode_shares"].values()) == pytest.approx(1.0)
    assert evaluated["mean_length"] == config.eval.max_steps  # 30 steps place no block


def test_quickstart_trains_state_only_act_beside_bc_on_the_same_observations():
    act, bc = _get_config("quickstart", "full"), _get_config("quickstart", "bc")
    assert (act.policy.name, act.policy.cameras, bc.policy.name) == ("act", (), "bc_mlp")
    assert act.task == bc.task and act.data.path == bc.data.path
    assert _get_config("quickstart", "bc_tiny").data.path == act.data.path + "_tiny"
    validate_config(bc)


def test_comparison_text_puts_the_policy_and_the_baseline_one_line_each():
    def run(policy, rate, low, high, left):
        shares = {"left": left, "right": rate - left, "collided": 1 - rate, "other": 0.0}
        return {
            "policy": policy,
            "success_rate": rate,
            "success_ci95": (low, high),
            "mode_shares": shares,
        }

    text = train.comparison_text(
        run("ACTPolicy", 1.0, 0.981, 1.0, 0.57), run("MLP", 0.6, 0.53, 0.67, 0.6)
    )
    assert text.splitlines() == [
        "  policy ACTPolicy: success 100.0% [98.1%, 100.0%]; "
        "left 57%, right 43%, collided 0%, other 0%",
        "baseline MLP: success 60.0% [53.0%, 67.0%]; left 60%, right 0%, collided 40%, other 0%",
    ]

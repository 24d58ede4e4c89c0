"""The ACT configs on ALOHA (experiments/configs/act_aloha_*.py): the original recipe in the full
variant (the parameter count of LeRobot's ACT, the backbone's learning-rate group, 2000 epochs
in steps), a reduced CPU variant, all validating and building their policy; no training."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from core.training.config import validate_config
from core.training.optimizer import parameter_group_labels
from experiments.configs import _act_aloha
from experiments.policies import make_policy

CONFIG_DIR = Path(__file__).resolve().parents[2] / "experiments" / "configs"
CONFIG_NAMES = ("act_aloha_transfer_cube", "act_aloha_insertion")
LEROBOT_ACT_PARAMETERS = 51_613_582
"""Trainable parameters of LeRobot 0.4.4's ACTPolicy with its defaults (ResNet-18, d_model 512,
4 + 1 layers, 4 CVAE-encoder layers, chunk 100) for a 14-dim state and action and one camera."""
RESNET18_TRAINABLE_PARAMETERS = 11_166_912
"""torchvision's ResNet-18 up to layer4: 11 689 512 parameters, less the classifier (513 000)
and the 9 600 affine parameters of the batch norms, frozen here."""


def _get_config(name: str, variant: str):
    spec = importlib.util.spec_from_file_location(f"config_{name}", CONFIG_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def _features(config) -> dict:
    """The dataset features the config's task records (core.envs.aloha's spec, one camera)."""
    height, width = config.task.image_size
    return {
        "observation.state": {"dtype": "float32", "shape": [14], "names": None},
        "observation.images.top": {"dtype": "image", "shape": [height, width, 3], "names": None},
        "action": {"dtype": "float32", "shape": [14], "names": None},
    }


def _parameter_shapes(config):
    policy = make_policy(config.policy, _features(config))
    height, width = config.task.image_size
    batch = {
        "observation.state": jax.ShapeDtypeStruct((1, 1, 14), jnp.float32),
        "observation.images.top": jax.ShapeDtypeStruct((1, 1, height, width, 3), jnp.float32),
    }
    return policy, jax.eval_shape(policy.init, jax.random.key(0), batch)["params"]


def _count(shapes) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(shapes))


@pytest.mark.parametrize("variant", _act_aloha.VARIANTS)
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_variant_validates_and_builds_an_act_policy_for_its_features(name, variant):
    config = _get_config(name, variant)
    validate_config(config)
    assert config.task.name == name.removeprefix("act_")
    policy = make_policy(config.policy, _features(config))
    assert policy.observation_keys == ("observation.state", "observation.images.top")
    assert policy.action_horizon == config.policy.action_horizon
    assert config.eval.seed >= config.data.demo_seed + config.data.num_demos


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_full_variant_is_the_original_recipe(name):
    config = _get_config(name, "full")
    assert config.task.image_size == (480, 640) and config.task.cameras == ("top",)
    assert (config.data.num_demos, config.data.batch_size) == (50, 8)
    assert config.data.validation_fraction == 0.2  # the original's train_ratio 0.8
    network = make_policy(config.policy, _features(config)).network
    assert (network.model_dim, network.num_heads, network.ffn_dim) == (512, 8, 3200)
    assert (network.num_encoder_layers, network.num_decoder_layers) == (4, 1)
    assert (network.num_cvae_encoder_layers, network.latent_dim, network.chunk_size) == (4, 32, 100)
    assert (network.dropout_rate, network.pre_norm) == (0.1, False)
    assert config.policy.kl_weight == 10.0 and config.policy.reconstruction_loss == "l1"
    assert (config.optim.learning_rate, config.optim.weight_decay) == (1e-5, 1e-4)
    assert config.optim.param_group_lr.to_dict() == {_act_aloha.BACKBONE: 1.0}  # backbone 1e-5
    assert config.optim.schedule.name == "constant"
    # 2000 epochs of one batch per 8 of the 40 training episodes
    assert config.train.num_steps == _act_aloha.original_num_steps() == 2000 * 5
    controller = config.eval.controller
    assert (controller.name, controller.decay, controller.convention) == (
        "temporal_ensembling",
        0.01,
        "act",
    )


def test_full_network_has_lerobots_parameter_count_and_the_backbone_its_own_group():
    config = _get_config("act_aloha_transfer_cube", "full")
    _, shapes = _parameter_shapes(config)
    assert _count(shapes) == LEROBOT_ACT_PARAMETERS
    labels = parameter_group_labels(shapes, dict(config.optim.param_group_lr))
    grouped = [
        leaf.size
        for leaf, label in zip(jax.tree.leaves(shapes), jax.tree.leaves(labels), strict=True)
        if label == _act_aloha.BACKBONE
    ]
    assert sum(grouped) == RESNET18_TRAINABLE_PARAMETERS


def test_cpu_variant_shrinks_resolution_and_width_but_keeps_the_act_recipe():
    full = _get_config("act_aloha_transfer_cube", "full")
    cpu = _get_config("act_aloha_transfer_cube", "cpu")
    assert cpu.task.image_size == (120, 160)
    assert cpu.data.path == "data/aloha_transfer_cube_120x160"
    assert (cpu.policy.model_dim, cpu.policy.ffn_dim) == (256, 1024)
    for key in ("action_horizon", "kl_weight", "num_encoder_layers", "num_decoder_layers"):
        assert cpu.policy[key] == full.policy[key]
    assert cpu.data.batch_size == full.data.batch_size
    assert cpu.eval.controller.to_dict() == full.eval.controller.to_dict()
    assert cpu.optim.schedule.warmup_steps < cpu.train.num_steps
    _, shapes = _parameter_shapes(cpu)
    assert _count(shapes) < LEROBOT_ACT_PARAMETERS / 2


def test_unknown_task_or_variant_is_rejected_naming_it():
    with pytest.raises(ValueError, match=r"variant must be one of .* got 'huge'"):
        _get_config("act_aloha_insertion", "huge")
    with pytest.raises(ValueError, match=r"task must be one of .* got 'obstacle'"):
        _act_aloha.act_aloha_config("obstacle", "full")


@pytest.mark.sim
@pytest.mark.parametrize("variant", ("cpu", "tiny"))
def test_features_match_what_the_aloha_task_records(variant):
    pytest.importorskip("core.envs.aloha", reason="needs the `sim` extra (MuJoCo)")
    from experiments import train
    from experiments.demos import demo_features

    config = _get_config("act_aloha_transfer_cube", variant)
    recorded = demo_features(train.make_task(config).env.spec)
    for key, feature in _features(config).items():
        assert recorded[key]["shape"] == feature["shape"]

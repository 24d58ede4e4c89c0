"""ResNet-18 against torchvision's resnet18 (golden fixture), its feature-map sizes and parameter
counts, FrozenBatchNorm2d's formula, and the converter's errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import conv_arithmetic, resnet
from experiments.parity import resnet as reference

FIXTURE = "tests/fixtures/parity/resnet.npz"
TORCHVISION_RESNET18_PARAMS_WITHOUT_FC = 11_689_512 - (512 * 1000 + 1000)
TORCHVISION_RESNET34_PARAMS_WITHOUT_FC = 21_797_672 - (512 * 1000 + 1000)


def _nhwc(array: np.ndarray) -> np.ndarray:
    return np.transpose(array, (0, 2, 3, 1))


@pytest.mark.parametrize("norm", resnet.NORMS)
def test_layer4_matches_torchvision_resnet18_to_1e5_of_the_output_scale(norm):
    fixture = np.load(FIXTURE)
    variables = resnet.resnet_variables_from_torchvision(reference.reference_state_dict(norm), norm)
    images = jnp.asarray(_nhwc(reference.reference_images()))
    features = jax.jit(resnet.ResNet(norm).apply)(variables, images)
    expected = _nhwc(fixture[f"{norm}/layer4"])
    assert features.shape == expected.shape == (2, 2, 3, 512)
    # Error relative to the largest output magnitude (max-norm); measured 7e-7 / 1.5e-6.
    relative_error = np.abs(features - expected).max() / np.abs(expected).max()
    assert relative_error < 1e-5


@pytest.mark.parametrize(
    ("size", "layer4_size"),
    [(84, 3), (224, 7)],  # book 16.4.1 prints 7×7 for 84 px (and 4 blocks per stage)
)
def test_every_stage_has_the_conv_arithmetic_size_3x3_at_84_px_and_7x7_at_224(size, layer4_size):
    model = resnet.ResNet("group_norm")
    images = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    variables = resnet.resnet_variable_shapes("group_norm")
    stages = jax.eval_shape(
        lambda v, x: model.apply(v, x, method=resnet.ResNet.feature_stages), variables, images
    )
    expected = conv_arithmetic.resnet_stage_shapes(size, size)
    assert tuple(shape.name for shape in expected) == resnet.STAGE_NAMES
    assert set(stages) == set(resnet.STAGE_NAMES)
    for shape in expected:
        assert stages[shape.name].shape == (2, shape.height, shape.width, shape.channels)
    assert stages["layer4"].shape == (2, layer4_size, layer4_size, 512)


def _count(tree) -> int:
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize(
    ("blocks", "torchvision_count"),
    [
        (conv_arithmetic.RESNET18_BLOCKS, TORCHVISION_RESNET18_PARAMS_WITHOUT_FC),
        (conv_arithmetic.RESNET34_BLOCKS, TORCHVISION_RESNET34_PARAMS_WITHOUT_FC),
    ],
)
def test_parameter_counts_equal_torchvision_without_the_fc_head(blocks, torchvision_count):
    group_norm = resnet.resnet_variable_shapes("group_norm", blocks)
    assert _count(group_norm) == torchvision_count
    frozen = resnet.resnet_variable_shapes("frozen_batch_norm", blocks)
    # Frozen batch norm holds γ, β, μ, σ² (equal sizes) outside "params": only convs train.
    norm_affine = _count(frozen["batch_stats"]) // 2
    assert _count(frozen["params"]) + norm_affine == torchvision_count
    assert not any("norm" in key for key in frozen["params"])


def test_frozen_batch_norm_is_torchvisions_folded_formula(x64):
    # FrozenBatchNorm2d: scale = w·rsqrt(rv + eps), bias = b - rm·scale, y = x·scale + bias.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 3, 6))
    weight, bias, mean = rng.standard_normal((3, 6))
    var = np.exp(rng.standard_normal(6))
    variables = {"batch_stats": {"scale": weight, "bias": bias, "mean": mean, "var": var}}
    y = jax.jit(resnet.FrozenBatchNorm().apply)(variables, x)
    folded_scale = weight / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(y, x * folded_scale + (bias - mean * folded_scale), atol=1e-12)


def test_basic_block_adds_a_projection_shortcut_when_channels_change_at_stride_1():
    images = jax.ShapeDtypeStruct((1, 5, 5, 16), jnp.float32)

    def param_names(features):
        block = resnet.BasicBlock(features=features, stride=1, norm="group_norm")
        return set(jax.eval_shape(block.init, jax.random.key(0), images)["params"])

    assert {"downsample_conv", "downsample_norm"} <= param_names(32)
    assert "downsample_conv" not in param_names(16)


def test_converter_accepts_imagenet_style_checkpoints_under_a_prefix():
    state_dict = reference.reference_state_dict("frozen_batch_norm")
    # torchvision's BatchNorm2d checkpoints carry step counters; LeRobot nests the backbone.
    prefixed = {f"model.backbone.{k}": v for k, v in state_dict.items()}
    prefixed["model.backbone.bn1.num_batches_tracked"] = np.array(7)
    prefixed["model.transformer.weight"] = np.zeros(3)
    variables = resnet.resnet_variables_from_torchvision(prefixed, prefix="model.backbone.")
    np.testing.assert_array_equal(
        variables["params"]["layer2_0"]["downsample_conv"]["kernel"][0, 0],
        state_dict["layer2.0.downsample.0.weight"][:, :, 0, 0].T,
    )
    np.testing.assert_array_equal(
        variables["batch_stats"]["layer3_1"]["norm2"]["var"], state_dict["layer3.1.bn2.running_var"]
    )


def test_converter_errors_name_the_key_and_shapes():
    state_dict = reference.reference_state_dict("frozen_batch_norm")
    missing = {k: v for k, v in state_dict.items() if k != "layer2.0.downsample.0.weight"}
    with pytest.raises(ValueError, match=r"missing keys: layer2\.0\.downsample\.0\.weight"):
        resnet.resnet_variables_from_torchvision(missing)
    wrong_shape = {**state_dict, "conv1.weight": np.zeros((64, 4, 7, 7), np.float32)}
    with pytest.raises(
        ValueError, match=r"conv1\.weight of torch shape \[64, 4, 7, 7\] .* expects \[7, 7, 3, 64\]"
    ):
        resnet.resnet_variables_from_torchvision(wrong_shape)
    with pytest.raises(ValueError, match=r"unexpected keys: bn1\.running_mean"):
        resnet.resnet_variables_from_torchvision(state_dict, norm="group_norm")


def test_unknown_norm_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"norm must be one of .* got 'batch_norm'"):
        resnet.resnet_variable_shapes("batch_norm")


def test_sequential_backbone_names_map_to_torchvision_names():
    numbered = {
        "encoder.backbone.0.weight": np.zeros(1),
        "encoder.backbone.1.bias": np.zeros(2),
        "encoder.backbone.7.1.conv2.weight": np.zeros(3),
        "encoder.pool.nets.weight": np.zeros(4),
    }
    renamed = resnet.torchvision_names_from_sequential(numbered, "encoder.backbone.")
    assert {name: value.size for name, value in renamed.items()} == {
        "conv1.weight": 1,
        "bn1.bias": 2,
        "layer4.1.conv2.weight": 3,
    }
    with pytest.raises(ValueError, match=r"'backbone\.8\.weight' is not a child"):
        resnet.torchvision_names_from_sequential({"backbone.8.weight": np.zeros(1)}, "backbone.")

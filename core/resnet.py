"""Book 16.4 and 20.2.1: the ResNet-18 vision backbone, torchvision's topology, channels last.

The backbone of ACT and Diffusion Policy is torchvision's `resnet18` without its average pool and
classifier: conv1 7×7/2 (pad 3) -> norm -> ReLU -> max-pool 3×3/2 (pad 1) -> layer1..layer4 of
two BasicBlocks each (64, 128, 256, 512 channels; the first block of layer2-4 has stride 2 and a
1×1/2 conv + norm shortcut). It returns the layer4 feature map [B, H', W', 512]: 3×3 at 84 px
and 7×7 at 224 px (the book's 16.4.1 table prints 7×7 for 84 px; `core.conv_arithmetic` has the
sizes of every stage). `blocks_per_stage=RESNET34_BLOCKS` gives ResNet-34.

Normalization, one of `NORMS`:
- "frozen_batch_norm" (ACT, DETR): torchvision's FrozenBatchNorm2d, batch norm with running
  statistics and affine fixed, y = (x - μ)/√(σ² + ε)·γ + β with ε = 1e-5 (book eq. 14.4's
  evaluation mode, `core.normalization.batch_norm_eval`). Its four vectors live in the
  "batch_stats" collection, so an optimizer over "params" never changes them, as torch keeps
  them in buffers.
- "group_norm" (Diffusion Policy): GroupNorm(C // 16 groups, ε = 1e-5) with trainable γ, β
  (book eq. 14.7, `core.normalization.GroupNorm`).

Parameter names follow torchvision's with the norm layers called `norm*`: conv1, norm1,
layer1_0/{conv1, norm1, conv2, norm2, downsample_conv, downsample_norm}, ...
`resnet_variables_from_torchvision` converts a torchvision state dict (e.g. ImageNet weights
read with `core.torch_weights.read_state_dict`) into these variables. Initialization is
torchvision's: He-normal conv kernels over fan_out, γ = 1, β = 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core import normalization
from core.checks import check_rank
from core.conv_arithmetic import BASIC_BLOCK_WIDTHS, RESNET18_BLOCKS
from core.torch_weights import (
    KeyRule,
    conv_kernel_from_torch,
    convert_state_dict,
    variable_paths,
)

NORMS = ("frozen_batch_norm", "group_norm")
FROZEN_COLLECTION = "batch_stats"
"""The collection of the frozen batch-norm vectors (scale, bias, mean, var)."""
NORM_EPSILON = 1e-5
"""ε of torchvision's FrozenBatchNorm2d and of torch's GroupNorm."""
GROUP_NORM_CHANNELS_PER_GROUP = 16
"""Diffusion Policy replaces BatchNorm2d(C) by GroupNorm(C // 16, C)."""
STAGE_NAMES = ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4")

_conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
"""torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), N(0, 2/(k·k·C_out))."""


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


class FrozenBatchNorm(nn.Module):
    """torchvision's FrozenBatchNorm2d, channels last: scale, bias, mean, var never trained.

    All four are variables of the "batch_stats" collection (γ = 1, β = 0, μ = 0, σ² = 1 at
    init, so an untrained layer is the identity up to ε).
    """

    epsilon: float = NORM_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, ..., C] -> [B, ..., C]."""
        channel_shape = (x.shape[-1],)
        scale = self.variable(FROZEN_COLLECTION, "scale", jnp.ones, channel_shape)
        bias = self.variable(FROZEN_COLLECTION, "bias", jnp.zeros, channel_shape)
        mean = self.variable(FROZEN_COLLECTION, "mean", jnp.zeros, channel_shape)
        var = self.variable(FROZEN_COLLECTION, "var", jnp.ones, channel_shape)
        running = normalization.RunningStats(mean.value, var.value)
        return normalization.batch_norm_eval(
            x, scale.value, bias.value, running, epsilon=self.epsilon
        )


def _make_norm(norm: str, num_channels: int, name: str) -> nn.Module:
    if norm == "frozen_batch_norm":
        return FrozenBatchNorm(name=name)
    return normalization.GroupNorm(
        num_groups=num_channels // GROUP_NORM_CHANNELS_PER_GROUP, epsilon=NORM_EPSILON, name=name
    )


def _make_conv(features: int, kernel_size: int, stride: int, name: str) -> nn.Conv:
    """A bias-free conv with torchvision's padding: k // 2 (3 for 7×7, 1 for 3×3, 0 for 1×1)."""
    padding = kernel_size // 2
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=False,
        kernel_init=_conv_kernel_init,
        name=name,
    )


class BasicBlock(nn.Module):
    """Two 3×3 convs with norm and ReLU, plus the identity (or 1×1 conv + norm) shortcut.

    relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x)), torchvision's BasicBlock; the
    shortcut is a 1×1/stride conv + norm when the stride or the channel count changes.
    """

    features: int
    stride: int = 1
    norm: str = "frozen_batch_norm"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, H, W, C_in] -> [B, H', W', features], H' = ⌊(H - 1)/stride⌋ + 1."""
        _check_norm(self.norm)
        y = _make_conv(self.features, 3, self.stride, "conv1")(x)
        y = nn.relu(_make_norm(self.norm, self.features, "norm1")(y))
        y = _make_conv(self.features, 3, 1, "conv2")(y)
        y = _make_norm(self.norm, self.features, "norm2")(y)
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = _make_conv(self.features, 1, self.stride, "downsample_conv")(x)
            shortcut = _make_norm(self.norm, self.features, "downsample_norm")(shortcut)
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """ResNet-18 (default) or ResNet-34 without pooling and classifier, channels last.

    Attributes:
      norm: "frozen_batch_norm" or "group_norm" (see the module docstring).
      blocks_per_stage: BasicBlocks in layer1..layer4, `RESNET18_BLOCKS` or `RESNET34_BLOCKS`.
    """

    norm: str = "frozen_batch_norm"
    blocks_per_stage: Sequence[int] = RESNET18_BLOCKS

    def setup(self):
        _check_norm(self.norm)
        if len(self.blocks_per_stage) != 4 or min(self.blocks_per_stage) < 1:
            raise ValueError(
                f"blocks_per_stage must be 4 positive counts, got {tuple(self.blocks_per_stage)}"
            )
        self.conv1 = _make_conv(BASIC_BLOCK_WIDTHS[0], 7, 2, "conv1")
        self.norm1 = _make_norm(self.norm, BASIC_BLOCK_WIDTHS[0], "norm1")
        stages = [
            [
                BasicBlock(width, 2 if stage > 0 and block == 0 else 1, self.norm)
                for block in range(num_blocks)
            ]
            for stage, (num_blocks, width) in enumerate(
                zip(self.blocks_per_stage, BASIC_BLOCK_WIDTHS, strict=True)
            )
        ]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def feature_stages(self, images: jax.Array) -> dict[str, jax.Array]:
        """Every stage's output, named as in torchvision and `core.conv_arithmetic`.

        Args:
          images: [B, H, W, C] images (C = 3 for RGB), already normalized as the weights
            expect (ImageNet mean and std for torchvision's pretrained weights).

        Returns:
          {"conv1": [B, H/2, W/2, 64] (after norm and ReLU), "maxpool": [B, H/4, W/4, 64],
          "layer1": [.., 64], "layer2": [.., 128], "layer3": [.., 256], "layer4": [.., 512]},
          sizes rounded as `core.conv_arithmetic.resnet_stage_shapes` gives them.
        """
        check_rank("images", images, 4)
        x = nn.relu(self.norm1(self.conv1(images)))
        stages = {"conv1": x}
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        stages["maxpool"] = x
        for name, blocks in zip(
            STAGE_NAMES[2:], (self.layer1, self.layer2, self.layer3, self.layer4), strict=True
        ):
            for block in blocks:
                x = block(x)
            stages[name] = x
        return stages

    def __call__(self, images: jax.Array) -> jax.Array:
        """images: [B, H, W, C] -> the layer4 feature map [B, H', W', 512]."""
        return self.feature_stages(images)["layer4"]


_TORCH_MODULE_NAMES = {
    "norm1": "bn1",
    "norm2": "bn2",
    "downsample_conv": "downsample.0",
    "downsample_norm": "downsample.1",
}
_TORCH_VARIABLE_NAMES = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def _torchvision_name(path: Sequence[str]) -> str:
    """("params", "layer2_0", "downsample_conv", "kernel") -> "layer2.0.downsample.0.weight"."""
    *modules, variable = path[1:]
    torch_modules = [_TORCH_MODULE_NAMES.get(m, m.replace("_", ".")) for m in modules]
    return ".".join([*torch_modules, _TORCH_VARIABLE_NAMES[variable]])


TORCHVISION_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
"""torchvision's ResNet children in order: `nn.Sequential(*resnet.children())[:-2]` numbers them."""


def torchvision_names_from_sequential(
    state_dict: Mapping[str, np.ndarray], prefix: str = ""
) -> dict[str, np.ndarray]:
    """torchvision names for a backbone kept as `nn.Sequential(*children()[:-2])`.

    Diffusion Policy (LeRobot's DiffusionRgbEncoder) stores its ResNet-18 that way: "0.weight"
    is conv1.weight, "1.*" bn1 (a GroupNorm there), "4.0.conv1.weight" layer1.0.conv1.weight.

    Args:
      state_dict: {name: array}.
      prefix: the Sequential's prefix, e.g. "diffusion.rgb_encoder.backbone.".

    Returns:
      The entries under `prefix`, renamed to torchvision's names (without the prefix).
    """
    renamed = {}
    for name, value in state_dict.items():
        if not name.startswith(prefix):
            continue
        index, _, rest = name[len(prefix) :].partition(".")
        if not index.isdigit() or int(index) >= len(TORCHVISION_CHILDREN):
            raise ValueError(f"{name!r} is not a child of a ResNet kept as nn.Sequential")
        renamed[f"{TORCHVISION_CHILDREN[int(index)]}.{rest}"] = value
    return renamed


def _is_unused_torchvision_key(name: str) -> bool:
    """The classifier head (fc.*) and BatchNorm2d's step counters are not part of the model."""
    return name.startswith("fc.") or name.endswith("num_batches_tracked")


def resnet_variable_shapes(
    norm: str = "frozen_batch_norm", blocks_per_stage: Sequence[int] = RESNET18_BLOCKS
) -> dict:
    """The shapes of a ResNet's variables ({"params": ..., "batch_stats": ...}), no compute."""
    model = ResNet(norm=norm, blocks_per_stage=tuple(blocks_per_stage))
    example = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)  # shapes do not depend on H, W
    return jax.eval_shape(model.init, jax.random.key(0), example)


def resnet_variables_from_torchvision(
    state_dict: Mapping[str, np.ndarray],
    norm: str = "frozen_batch_norm",
    blocks_per_stage: Sequence[int] = RESNET18_BLOCKS,
    *,
    prefix: str = "",
) -> dict:
    """Flax variables of `ResNet(norm, blocks_per_stage)` from a torchvision state dict.

    Conv weights [O, I, kh, kw] become HWIO kernels; norm weight/bias become scale/bias (and
    running_mean/var become mean/var for frozen batch norm). The classifier `fc.*` and
    `num_batches_tracked` entries are ignored, so torchvision's ImageNet checkpoints load as
    they are; a batch-norm checkpoint does not load into the group-norm model (its running
    statistics are reported as unexpected).

    Args:
      state_dict: {torchvision name: array} (e.g. "layer1.0.conv1.weight"), numpy arrays.
      norm: the model's normalization, one of `NORMS`.
      blocks_per_stage: `RESNET18_BLOCKS` or `RESNET34_BLOCKS`.
      prefix: the backbone's prefix in a larger state dict, e.g. "model.backbone." in a
        LeRobot ACT checkpoint (for Diffusion Policy's numbered backbone, rename the entries
        with `torchvision_names_from_sequential` first).

    Returns:
      {"params": ..., "batch_stats": ...} (no "batch_stats" for group norm), numpy float32.

    Raises:
      ValueError naming missing or unexpected keys, or a key whose shape does not fit.
    """
    _check_norm(norm)
    expected = resnet_variable_shapes(norm, blocks_per_stage)
    rules = [
        KeyRule(
            _torchvision_name(path),
            path,
            conv_kernel_from_torch if path[-1] == "kernel" else np.asarray,
        )
        for path in variable_paths(expected)
    ]
    return convert_state_dict(
        state_dict, rules, expected, prefix=prefix, is_ignored=_is_unused_torchvision_key
    )

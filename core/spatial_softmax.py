"""Book 16.4 and 18.5: spatial-softmax keypoints, Diffusion Policy's image pooling.

A feature map F [H, W, K] becomes K keypoints, the expected image coordinates of each channel
under a softmax over its H·W positions (the "spatial soft argmax" of Levine, Finn et al.; LeRobot's
SpatialSoftmax, a port of robomimic's):

  p_k(h, w) = exp F[h, w, k] / Σ_{h', w'} exp F[h', w', k],
  keypoint_k = Σ_{h, w} p_k(h, w) · (x_w, y_h),

on the grid x_w = linspace(-1, 1, W)[w] (left to right), y_h = linspace(-1, 1, H)[h] (top to
bottom), built in float64 with numpy and rounded to float32 as LeRobot does (its comment:
torch.linspace rounds differently and costs pretrained policies success rate). An optional 1×1
convolution first maps the C channels to K keypoint channels. The output is [B, K, 2] with (x, y)
last, which Diffusion Policy flattens to 2K features.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core.checks import check_rank
from core.numerics import softmax
from core.torch_weights import (
    KeyRule,
    convert_state_dict,
    entry_shape,
    torch_default_bias_init,
    torch_default_kernel_init,
)


def keypoint_grid(height: int, width: int) -> np.ndarray:
    """[H·W, 2] coordinates (x, y) in [-1, 1] of the positions of an H×W map, row-major.

    Row h·W + w holds (linspace(-1, 1, W)[w], linspace(-1, 1, H)[h]).
    """
    if height < 1 or width < 1:
        raise ValueError(f"the feature map must be at least 1×1, got {height}×{width}")
    x, y = np.meshgrid(np.linspace(-1.0, 1.0, width), np.linspace(-1.0, 1.0, height))
    return np.stack([x.reshape(-1), y.reshape(-1)], axis=-1).astype(np.float32)


def spatial_soft_argmax(feature_map: jax.Array) -> jax.Array:
    """Expected (x, y) of each channel under its softmax over positions.

    Args:
      feature_map: [B, H, W, K] logits of K keypoint channels.

    Returns:
      [B, K, 2] keypoints (x, y) in [-1, 1].
    """
    check_rank("feature_map", feature_map, 4)
    batch, height, width, channels = feature_map.shape
    logits = feature_map.reshape(batch, height * width, channels)
    attention = softmax(logits, axis=1)  # p_k(h, w), one distribution per keypoint
    grid = jnp.asarray(keypoint_grid(height, width), feature_map.dtype)
    return jnp.einsum("bnk,nc->bkc", attention, grid)


class SpatialSoftmax(nn.Module):
    """[optional 1×1 conv to K channels] -> spatial soft argmax: [B, H, W, C] -> [B, K, 2].

    Attributes:
      num_keypoints: K; None keeps the C input channels as keypoints (no projection).

    Params (with num_keypoints): keypoint_projection {kernel [C, K], bias [K]}, the 1×1 conv as
    a Dense layer over channels, with PyTorch's default Conv2d initialization.
    """

    num_keypoints: int | None = None

    @nn.compact
    def __call__(self, feature_map: jax.Array) -> jax.Array:
        """feature_map: [B, H, W, C] -> keypoints [B, K, 2] (K = C without projection)."""
        check_rank("feature_map", feature_map, 4)
        if self.num_keypoints is not None:
            if self.num_keypoints < 1:
                raise ValueError(f"num_keypoints must be >= 1 or None, got {self.num_keypoints}")
            feature_map = nn.Dense(
                self.num_keypoints,
                kernel_init=torch_default_kernel_init,
                bias_init=torch_default_bias_init(feature_map.shape[-1]),
                name="keypoint_projection",
            )(feature_map)
        return spatial_soft_argmax(feature_map)


_PROJECTION = ("params", "keypoint_projection")


def _pointwise_kernel_from_torch(weight: np.ndarray) -> np.ndarray:
    """A 1×1 Conv2d weight [K, C, 1, 1] as a Dense kernel [C, K]."""
    if weight.ndim != 4 or weight.shape[2:] != (1, 1):
        raise ValueError(f"expected a 1×1 conv weight [K, C, 1, 1], got {list(weight.shape)}")
    return weight[:, :, 0, 0].T


def spatial_softmax_params_from_lerobot(
    state_dict: Mapping[str, np.ndarray], module: SpatialSoftmax, *, prefix: str = ""
) -> dict:
    """Params of `module` from LeRobot's SpatialSoftmax: `nets.weight` [K, C, 1, 1], `nets.bias`.

    Its `pos_grid` buffer is ignored: the grid is recomputed from the feature map's size.

    Args:
      state_dict: {name: array}.
      module: a SpatialSoftmax with num_keypoints set.
      prefix: e.g. "diffusion.rgb_encoder.pool." in a LeRobot Diffusion Policy checkpoint.

    Raises:
      ValueError naming a missing, unexpected or misshapen key.
    """
    if module.num_keypoints is None:
        raise ValueError("a SpatialSoftmax without num_keypoints has no params to convert")
    in_channels = entry_shape(state_dict, f"{prefix}nets.weight")[1]
    example = jax.ShapeDtypeStruct((1, 3, 3, in_channels), jnp.float32)
    expected = jax.eval_shape(module.init, jax.random.key(0), example)
    rules = [
        KeyRule("nets.weight", (*_PROJECTION, "kernel"), _pointwise_kernel_from_torch),
        KeyRule("nets.bias", (*_PROJECTION, "bias")),
    ]
    return convert_state_dict(
        state_dict, rules, expected, prefix=prefix, is_ignored=lambda name: name == "pos_grid"
    )["params"]

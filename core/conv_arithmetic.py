"""Book 16.4.1, 19.3 (eq. 19.5), 20.2.1: output sizes of convolutions, pooling, ResNets and ViTs.

Exact integer arithmetic for asserting the shapes of vision backbones without running them:

- a convolution or pooling window of size k, stride s, padding p_lo + p_hi and dilation d maps
  n positions to floor((n + p_lo + p_hi - d(k - 1) - 1) / s) + 1 (PyTorch's Conv2d/MaxPool2d
  with ceil_mode=False, `lax.conv_general_dilated` and flax's Conv/max_pool with explicit
  padding);
- the ResNets with BasicBlocks (torchvision's ResNet-18/34): conv1 7×7/2 pad 3, max-pool 3×3/2
  pad 1, then four stages of BasicBlocks (two 3×3 pad-1 convs each); the first block of stages
  2-4 has stride 2 (in its first conv and its 1×1 downsampling shortcut, which give the same
  size);
- a Vision Transformer cuts an H×W image into (H/P)·(W/P) patches of P×P (eq. 19.5).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

RESNET18_BLOCKS = (2, 2, 2, 2)
"""BasicBlocks per stage of ResNet-18: 1 + 2·8 convs + 1 fc = 18 weight layers."""
RESNET34_BLOCKS = (3, 4, 6, 3)
"""BasicBlocks per stage of ResNet-34: 1 + 2·16 convs + 1 fc = 34 weight layers."""
BASIC_BLOCK_WIDTHS = (64, 128, 256, 512)
"""Output channels of the four stages of ResNet-18/34."""


class FeatureShape(NamedTuple):
    """The output of one layer: its name (torchvision's) and its H, W and channel count."""

    name: str
    height: int
    width: int
    channels: int


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def conv_output_size(
    input_size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int = 1,
) -> int:
    """Positions along one axis after a convolution or pooling window.

    out = floor((n + p_lo + p_hi - d(k - 1) - 1) / s) + 1.

    Args:
      input_size: n, positions along the axis.
      kernel_size: k.
      stride: s.
      padding: p on both sides, or (p_lo, p_hi).
      dilation: d; the window spans d(k - 1) + 1 positions.

    Raises:
      ValueError for non-integer or out-of-range arguments, or a window larger than the padded
      input (no output position).
    """
    pad_low, pad_high = (padding, padding) if isinstance(padding, int) else tuple(padding)
    _check_int("input_size", input_size, 1)
    _check_int("kernel_size", kernel_size, 1)
    _check_int("stride", stride, 1)
    _check_int("padding", pad_low, 0)
    _check_int("padding", pad_high, 0)
    _check_int("dilation", dilation, 1)
    padded = input_size + pad_low + pad_high
    span = dilation * (kernel_size - 1) + 1
    if span > padded:
        raise ValueError(
            f"a window spanning {span} positions does not fit in {input_size} positions padded "
            f"to {padded}"
        )
    return (padded - span) // stride + 1


def _basic_block_output_size(input_size: int, stride: int) -> int:
    """A BasicBlock: 3×3/stride pad 1, then 3×3/1 pad 1 (the shortcut has the same size)."""
    return conv_output_size(conv_output_size(input_size, 3, stride, 1), 3, 1, 1)


def resnet_block_shapes(
    height: int,
    width: int,
    blocks_per_stage: Sequence[int] = RESNET18_BLOCKS,
    stage_widths: Sequence[int] = BASIC_BLOCK_WIDTHS,
) -> tuple[FeatureShape, ...]:
    """Output shapes of conv1, maxpool and every BasicBlock ("layer2.0", ...) of a ResNet.

    Args:
      height, width: input image size in pixels.
      blocks_per_stage: BasicBlocks in each stage, `RESNET18_BLOCKS` or `RESNET34_BLOCKS`.
      stage_widths: output channels of each stage.

    Returns:
      FeatureShapes in forward order, channels-last sizes (H, W, C).
    """
    if len(blocks_per_stage) != len(stage_widths):
        raise ValueError(
            f"blocks_per_stage {tuple(blocks_per_stage)} and stage_widths {tuple(stage_widths)} "
            "must have one entry per stage"
        )
    for num_blocks in blocks_per_stage:
        _check_int("blocks_per_stage entries", num_blocks, 1)
    stem_channels = stage_widths[0]
    size = (conv_output_size(height, 7, 2, 3), conv_output_size(width, 7, 2, 3))
    shapes = [FeatureShape("conv1", *size, stem_channels)]
    size = tuple(conv_output_size(n, 3, 2, 1) for n in size)
    shapes.append(FeatureShape("maxpool", *size, stem_channels))
    for stage, (num_blocks, channels) in enumerate(
        zip(blocks_per_stage, stage_widths, strict=True), start=1
    ):
        for block in range(num_blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            size = tuple(_basic_block_output_size(n, stride) for n in size)
            shapes.append(FeatureShape(f"layer{stage}.{block}", *size, channels))
    return tuple(shapes)


def resnet_stage_shapes(
    height: int,
    width: int,
    blocks_per_stage: Sequence[int] = RESNET18_BLOCKS,
    stage_widths: Sequence[int] = BASIC_BLOCK_WIDTHS,
) -> tuple[FeatureShape, ...]:
    """Output shapes of conv1, maxpool, layer1, ..., layer4 (the last block of each stage).

    For a 224×224 input: 112, 56, 56, 28, 14, 7; for 84×84: 42, 21, 21, 11, 6, 3. The number
    of blocks per stage does not change the sizes, only the depth.
    """
    blocks = resnet_block_shapes(height, width, blocks_per_stage, stage_widths)
    stem, stages = blocks[:2], blocks[2:]
    stage_ends = itertools.accumulate(blocks_per_stage)
    last_blocks = [
        stages[end - 1]._replace(name=f"layer{stage}")
        for stage, end in enumerate(stage_ends, start=1)
    ]
    return (*stem, *last_blocks)


def patch_grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    """(H/P, W/P): rows and columns of non-overlapping P×P patches (book 19.3).

    Raises:
      ValueError unless P divides both H and W (a ViT does not pad or drop pixels).
    """
    _check_int("height", height, 1)
    _check_int("width", width, 1)
    _check_int("patch_size", patch_size, 1)
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"patch_size {patch_size} must divide the image size {height}×{width} "
            f"(remainders {height % patch_size} and {width % patch_size})"
        )
    return height // patch_size, width // patch_size


def num_patches(height: int, width: int, patch_size: int) -> int:
    """N_p = (H/P)·(W/P) (book eq. 19.5): 196 for 224×224 images and 16×16 patches."""
    rows, columns = patch_grid(height, width, patch_size)
    return rows * columns

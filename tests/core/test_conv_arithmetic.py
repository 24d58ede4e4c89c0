"""Output-size arithmetic against the shapes lax and flax produce (eval_shape: no FLOPs)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import conv_arithmetic as ca


def lax_conv_output_size(size, kernel, stride, padding, dilation):
    inputs = jax.ShapeDtypeStruct((1, 1, size), jnp.float32)
    kernels = jax.ShapeDtypeStruct((1, 1, kernel), jnp.float32)
    output = jax.eval_shape(
        lambda x, w: jax.lax.conv_general_dilated(
            x, w, (stride,), [padding], rhs_dilation=(dilation,)
        ),
        inputs,
        kernels,
    )
    return output.shape[-1]


@given(
    size=st.integers(1, 64),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 4),
    padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    dilation=st.integers(1, 3),
)
def test_conv_output_size_equals_lax_conv_general_dilated(size, kernel, stride, padding, dilation):
    if dilation * (kernel - 1) + 1 > size + sum(padding):
        with pytest.raises(ValueError, match="does not fit"):
            ca.conv_output_size(size, kernel, stride, padding, dilation)
        return
    expected = lax_conv_output_size(size, kernel, stride, padding, dilation)
    assert ca.conv_output_size(size, kernel, stride, padding, dilation) == expected


@given(size=st.integers(3, 64), window=st.integers(1, 3), stride=st.integers(1, 3))
def test_pool_output_size_equals_flax_max_pool_and_avg_pool(size, window, stride):
    padding = window // 2
    inputs = jax.ShapeDtypeStruct((1, size, size + 1, 2), jnp.float32)
    kwargs = dict(window_shape=(window, window), strides=(stride, stride))
    kwargs["padding"] = ((padding, padding), (padding, padding))
    for pool in (nn.max_pool, nn.avg_pool):
        output = jax.eval_shape(lambda x, pool=pool: pool(x, **kwargs), inputs)
        assert output.shape[1:3] == (
            ca.conv_output_size(size, window, stride, padding),
            ca.conv_output_size(size + 1, window, stride, padding),
        )


class BasicBlock(nn.Module):
    """Shape model of torchvision's BasicBlock: the residual sum fails if the sizes differ."""

    channels: int
    stride: int

    @nn.compact
    def __call__(self, x):
        strides = (self.stride, self.stride)
        y = nn.Conv(self.channels, (3, 3), strides=strides, padding=1)(x)
        y = nn.Conv(self.channels, (3, 3), padding=1)(y)
        if self.stride != 1 or x.shape[-1] != self.channels:
            x = nn.Conv(self.channels, (1, 1), strides=strides, padding=0)(x)
        return x + y


class ResNetFeatures(nn.Module):
    """Shape model of torchvision's ResNet without pooling/fc; returns every block's output."""

    blocks_per_stage: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        outputs = []
        x = nn.Conv(64, (7, 7), strides=(2, 2), padding=3)(x)
        outputs.append(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        outputs.append(x)
        for stage, (num_blocks, channels) in enumerate(
            zip(self.blocks_per_stage, ca.BASIC_BLOCK_WIDTHS, strict=True)
        ):
            for block in range(num_blocks):
                x = BasicBlock(channels, 2 if stage > 0 and block == 0 else 1)(x)
                outputs.append(x)
        return outputs


@pytest.mark.parametrize("size", [(84, 84), (224, 224), (96, 128), (33, 47), (480, 640)])
@pytest.mark.parametrize("blocks", [ca.RESNET18_BLOCKS, ca.RESNET34_BLOCKS], ids=["r18", "r34"])
def test_resnet_block_shapes_equal_a_flax_resnet_traced_by_eval_shape(size, blocks):
    images = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
    model = ResNetFeatures(blocks)
    traced, _ = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x), images)
    ours = ca.resnet_block_shapes(*size, blocks_per_stage=blocks)
    assert [s.shape[1:] for s in traced] == [(s.height, s.width, s.channels) for s in ours]


def test_resnet18_stage_sizes_at_224_and_84_pixels():
    def sizes(pixels):
        return [(s.name, s.height, s.channels) for s in ca.resnet_stage_shapes(pixels, pixels)]

    names = ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    channels = [64, 64, 64, 128, 256, 512]
    assert sizes(224) == list(zip(names, [112, 56, 56, 28, 14, 7], channels, strict=True))
    assert sizes(84) == list(zip(names, [42, 21, 21, 11, 6, 3], channels, strict=True))


def test_resnet18_has_two_basic_blocks_per_stage_and_18_weight_layers():
    blocks = ca.resnet_block_shapes(224, 224)[2:]
    assert [b.name for b in blocks if b.name.startswith("layer1.")] == ["layer1.0", "layer1.1"]
    assert 1 + 2 * len(blocks) + 1 == 18
    assert 1 + 2 * len(ca.resnet_block_shapes(224, 224, ca.RESNET34_BLOCKS)[2:]) + 1 == 34


@given(
    patch=st.sampled_from([2, 4, 8, 14, 16, 32]),
    rows=st.integers(1, 8),
    columns=st.integers(1, 8),
)
def test_patch_grid_equals_flax_patch_embedding_conv(patch, rows, columns):
    images = jax.ShapeDtypeStruct((1, rows * patch, columns * patch, 3), jnp.float32)
    embed = nn.Conv(8, (patch, patch), strides=(patch, patch), padding="VALID")
    output, _ = jax.eval_shape(lambda x: embed.init_with_output(jax.random.key(0), x), images)
    assert ca.patch_grid(rows * patch, columns * patch, patch) == output.shape[1:3]
    assert ca.num_patches(rows * patch, columns * patch, patch) == rows * columns


def test_vit_b16_at_224_pixels_has_196_patches():
    assert ca.patch_grid(224, 224, 16) == (14, 14)
    assert ca.num_patches(224, 224, 16) == 196


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="patch_size 15 must divide the image size 224×224"):
        ca.patch_grid(224, 224, 15)
    with pytest.raises(ValueError, match="stride must be an integer >= 1, got 0"):
        ca.conv_output_size(10, 3, stride=0)
    with pytest.raises(ValueError, match=r"kernel_size must be an integer >= 1, got 2\.0"):
        ca.conv_output_size(10, 2.0)
    with pytest.raises(ValueError, match="padding must be an integer >= 0, got -1"):
        ca.conv_output_size(10, 3, padding=(1, -1))
    with pytest.raises(ValueError, match="one entry per stage"):
        ca.resnet_block_shapes(224, 224, blocks_per_stage=(2, 2, 2))

"""Chapter 16: observation dimensions, ResNet-18 feature-map sizes and visual token counts.

Book 16.2.2 (eqs. 16.9-16.10), 16.4.1 (both tables, eqs. 16.42-16.43) and 16.4.2 (eqs.
16.44-16.47). Sizes come from arrays built as `jax.ShapeDtypeStruct`s, feature-map sizes from
`core.conv_arithmetic` (checked against flax's Conv/max_pool in its tests), and tokens from
`core.tensor_notation.feature_map_to_tokens` traced with `jax.eval_shape`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core import conv_arithmetic, tensor_notation
from experiments.book.records import Record, ambiguous, check, claim

NUM_CAMERAS, IMAGE_SIZE, JOINTS, WRENCH_DIM = 2, 84, 7, 6  # book 16.10
STAGE_NAMES = ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _observation(image_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """o_t of eq. 16.4: two RGB cameras, joint angles, joint velocities, force/torque."""
    return {
        "images": jax.ShapeDtypeStruct((NUM_CAMERAS, image_size, image_size, 3), jnp.float32),
        "joint_angles": jax.ShapeDtypeStruct((JOINTS,), jnp.float32),
        "joint_velocities": jax.ShapeDtypeStruct((JOINTS,), jnp.float32),
        "force_torque": jax.ShapeDtypeStruct((WRENCH_DIM,), jnp.float32),
    }


def _observation_dimension_records() -> list[Record]:
    observation = _observation(IMAGE_SIZE)
    pixels = observation["images"].size
    proprioception = sum(part.size for name, part in observation.items() if name != "images")
    total = pixels + proprioception
    return [
        *check(
            "16.2.2 eq. 16.10",
            "camera dimensions 2 × (84 × 84 × 3)",
            "42258",
            pixels,
            why=f"2 × 84 × 84 × 3 = {pixels:,} (84 × 84 × 3 = 21,168); 42,258 is an "
            "arithmetic slip",
        ),
        *check(
            "16.2.2 eq. 16.10",
            "proprioceptive dimensions 7 + 7 + 6",
            "20",
            proprioception,
            note="joint angles, joint velocities, force/torque",
        ),
        *check(
            "16.2.2 eq. 16.10",
            "dim(O) (printed ≈ 42k)",
            "42000",
            total,
            rel_tol=0.02,
            note=f"{pixels:,} + {proprioception} = {total:,} ≈ 42k",
        ),
    ]


def _backbone_table_records() -> list[Record]:
    """The first table of 16.4.1 (output dim and spatial size of backbones)."""
    resnet18_84 = conv_arithmetic.resnet_stage_shapes(IMAGE_SIZE, IMAGE_SIZE)[-1]
    resnet18_224 = conv_arithmetic.resnet_stage_shapes(224, 224)[-1]
    resnet34_224 = conv_arithmetic.resnet_stage_shapes(
        224, 224, blocks_per_stage=conv_arithmetic.RESNET34_BLOCKS
    )[-1]
    vit_b16 = conv_arithmetic.patch_grid(224, 224, 16)
    vit_b32 = conv_arithmetic.patch_grid(224, 224, 32)
    return [
        *check(
            "16.4.1 table 1",
            "ResNet-18 (no avg pool) output channels",
            "512",
            resnet18_84.channels,
            note="core.conv_arithmetic.resnet_stage_shapes, layer4",
        ),
        *check(
            "16.4.1 table 1",
            "ResNet-18 spatial size at 84 px input",
            ["7", "7"],
            [resnet18_84.height, resnet18_84.width],
            why=f"at 84 px layer4 is {resnet18_84.height}×{resnet18_84.width} (as the book's "
            f"own second table says); {resnet18_224.height}×{resnet18_224.width} is the size at "
            "224 px",
        ),
        *check(
            "16.4.1 table 1",
            "ResNet-34 output channels and spatial size",
            ["512", "7", "7"],
            [resnet34_224.channels, resnet34_224.height, resnet34_224.width],
            note="at 224 px input (the row gives no size); the stages are those of ResNet-18, "
            "with (3, 4, 6, 3) BasicBlocks",
        ),
        *ambiguous(
            "16.4.1 table 1",
            "ViT-Base grid of patch tokens (printed 7×7)",
            "7×7",
            f"ViT-B/16: {vit_b16[0]}×{vit_b16[1]}; ViT-B/32: {vit_b32[0]}×{vit_b32[1]} (224 px)",
            "depends on the unstated patch size: 7×7 is ViT-B/32 at 224 px; the common "
            "ViT-B/16 (also 19.3's P = 16) gives 14×14 = 196 tokens",
        ),
    ]


def _resnet18_84px_records() -> list[Record]:
    """The second table of 16.4.1: ResNet-18 on 84×84 input."""
    stages = conv_arithmetic.resnet_stage_shapes(IMAGE_SIZE, IMAGE_SIZE)
    printed = {
        "conv1": ("42", "64"),
        "maxpool": ("21", "64"),
        "layer1": ("21", "64"),
        "layer2": ("11", "128"),
        "layer3": ("6", "256"),
        "layer4": ("3", "512"),
    }
    out = []
    for stage in stages:
        size, channels = printed[stage.name]
        out += check(
            "16.4.1 table 2",
            f"{stage.name} output: H, W, channels",
            [size, size, channels],
            [stage.height, stage.width, stage.channels],
            note="core.conv_arithmetic.resnet_stage_shapes(84, 84)",
        )
    blocks = conv_arithmetic.resnet_block_shapes(IMAGE_SIZE, IMAGE_SIZE)[2:]
    per_stage = [
        sum(block.name.startswith(f"layer{stage}.") for block in blocks) for stage in range(1, 5)
    ]
    weight_layers = 1 + 2 * len(blocks) + 1  # conv1, two convs per BasicBlock, fc
    out += claim(
        "16.4.1 table 2",
        "blocks per stage of ResNet-18",
        "layer1-layer4 have 4 blocks each",
        f"ResNet-18 has {per_stage} BasicBlocks: 1 + 2·{len(blocks)} + 1 = {weight_layers} "
        "weight layers",
        holds=per_stage == [4, 4, 4, 4],
        why=f"ResNet-18 has {per_stage} BasicBlocks per stage (4 per stage would be 34 weight "
        "layers); the sizes are unaffected",
    )
    return out


def _token_records() -> list[Record]:
    layer4 = conv_arithmetic.resnet_stage_shapes(IMAGE_SIZE, IMAGE_SIZE)[-1]
    features = jax.ShapeDtypeStruct(
        (NUM_CAMERAS, layer4.channels, layer4.height, layer4.width), jnp.float32
    )  # per sample, eq. 16.43 without B
    per_camera = jax.eval_shape(tensor_notation.feature_map_to_tokens, features)
    both = jax.eval_shape(
        lambda f: jnp.concatenate(list(tensor_notation.feature_map_to_tokens(f)), axis=0),
        features,
    )
    feature_map = np.arange(layer4.channels * layer4.height * layer4.width, dtype=np.float32)
    feature_map = feature_map.reshape(layer4.channels, layer4.height, layer4.width)
    literal_reshape = np.reshape(feature_map, (layer4.height * layer4.width, layer4.channels))
    tokens = np.asarray(tensor_notation.feature_map_to_tokens(feature_map))
    # feature_map holds its own row-major index, so value // (H'·W') is the channel.
    mixed_channels = np.unique(literal_reshape[0] // (layer4.height * layer4.width))
    return [
        *check(
            "16.4.1 eq. 16.43",
            "F per sample: cameras × C × H' × W'",
            ["2", "512", "3", "3"],
            features.shape,
            note="ResNet-18 layer4 at 84 px from core.conv_arithmetic",
        ),
        *check(
            "16.4.2 eqs. 16.45-16.46",
            "tokens per camera",
            ["9", "512"],
            per_camera.shape[1:],
            note="feature_map_to_tokens traced by jax.eval_shape",
        ),
        *check(
            "16.4.2 eq. 16.47",
            "tokens of both cameras",
            ["18", "512"],
            both.shape,
            note="concatenation of the two cameras' tokens under jax.eval_shape",
        ),
        *claim(
            "16.4.2 eq. 16.44",
            "Reshape(F, (H'W', C_out)) of F ∈ R^{C×H'×W'}",
            "reshaping the feature map to (H'W', C_out) gives the visual tokens",
            f"a literal row-major reshape's token 0 holds values of channels "
            f"{int(mixed_channels[0])}-{int(mixed_channels[-1])}; position (0, 0)'s token is "
            f"F[:, 0, 0]; equal to the tokens: {bool(np.array_equal(literal_reshape, tokens))}",
            holds=bool(np.array_equal(literal_reshape, tokens)),
            why="the shapes match but a row-major reshape of a channel-first [C, H', W'] map "
            "mixes channels and positions; the tokens are reshape(F, (C, H'W'))ᵀ (a plain "
            "reshape is right only for a channels-last [H', W', C] map)",
        ),
    ]


def records() -> list[Record]:
    return [
        *_observation_dimension_records(),
        *_backbone_table_records(),
        *_resnet18_84px_records(),
        *_token_records(),
    ]

"""Chapters 16 and 20: compute costs of ACT and its vision backbones, counted exactly.

Book 20.3.1 (the FLOPs breakdown of ACT at 224 px) and 16.4.1 (the MACs column of the backbone
table). Every count comes from `core.tracer` on the real blocks: the chapter-20 network
`ch20_shapes.WalkthroughACT` (ResNet-18 ×2 cameras, 4-layer post-norm encoder d 512 / 8 heads /
d_ffn 3200, one decoder layer over 100 queries, batch 8), core.resnet's ResNet-18/34 and a
ViT-Base built from core.vit and core.transformer. Counting is exact from the jaxpr, 2 FLOPs per
multiply-add (a MAC count is half); matmuls and convolutions only unless said otherwise, as the
book counts. The traced model's full table: `python -m experiments.book.chapters.ch20_flops`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from core import resnet, tracer, transformer, vit
from core.conv_arithmetic import RESNET34_BLOCKS
from experiments.book.chapters.ch20_shapes import (
    ACT_DIM_BIMANUAL,
    ACT_LAYER,
    BATCH,
    NUM_CAMERAS,
    walkthrough_trace,
)
from experiments.book.records import Record, check, claim

GIGA, MEGA = 1e9, 1e6
VIT_BASE_LAYER = transformer.TransformerLayerConfig(
    model_dim=768,
    num_heads=12,
    ffn_dim=3072,
    dropout_rate=0.0,
    activation="gelu",
    pre_norm=True,
    layer_norm_epsilon=1e-6,
)  # ViT-Base (Dosovitskiy et al. 2021): 12 pre-norm GELU layers, d 768, 12 heads, MLP 3072


class ViTBase(nn.Module):
    """ViT-Base without its classifier: patch embedding with [CLS], 12 layers, final LayerNorm."""

    patch_size: int

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        """images [B, H, W, 3] -> tokens [B, 1 + (H/P)(W/P), 768]."""
        tokens = vit.PatchEmbedding(
            self.patch_size, VIT_BASE_LAYER.model_dim, use_class_token=True, name="patch_embedding"
        )(images)
        encoder = transformer.TransformerEncoder(
            VIT_BASE_LAYER, 12, final_norm=True, name="encoder"
        )
        return encoder(tokens, deterministic=True)


def _abstract_variables(model: nn.Module, images: jax.ShapeDtypeStruct):
    return jax.eval_shape(model.init, jax.random.key(0), images)


@functools.cache
def backbone_macs(name: str, image_size: int) -> float:
    """Multiply-adds of one image through `name` ("resnet18", "resnet34", "vit_b16", "vit_b32")."""
    models = {
        "resnet18": resnet.ResNet(),
        "resnet34": resnet.ResNet(blocks_per_stage=RESNET34_BLOCKS),
        "vit_b16": ViTBase(16),
        "vit_b32": ViTBase(32),
    }
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    model = models[name]
    trace = tracer.trace_module(model, _abstract_variables(model, images), images)
    return trace.total.matmul_flops / 2


def _resnet18_xla_gflops() -> float:
    """XLA's compiled count for one 224 px image through ResNet-18 (the tracer's cross-check)."""
    images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    model = resnet.ResNet()
    return tracer.xla_flops(model.apply, _abstract_variables(model, images), images) / GIGA


def _per_sample(stage: tracer.Stage) -> float:
    return stage.counts.matmul_flops / BATCH


def _encoder_layer_costs() -> dict[str, float]:
    """FLOPs per sample of one encoder layer and its parts, from the 224 px trace."""
    trace = walkthrough_trace(224, ACT_DIM_BIMANUAL)
    layer = "encoder/layers_0"
    projections = sum(
        _per_sample(trace.stage(f"{layer}/self_attention/{name}"))
        for name in ("query", "key", "value", "out")
    )
    return {
        "layer": _per_sample(trace.stage(layer)),
        "attention": _per_sample(trace.stage(f"{layer}/self_attention")) - projections,
        "projections": projections,
        "feed_forward": _per_sample(trace.stage(f"{layer}/feed_forward")),
        "tokens": trace.stage("encoder").input_shapes[0][1],
    }


def _walkthrough_records() -> list[Record]:
    """Book 20.3.1: ResNet-18, the encoder layer by layer, and the share of vision."""
    trace = walkthrough_trace(224, ACT_DIM_BIMANUAL)
    per_image = trace.stage("camera_tokens/backbone").counts.matmul_flops / (BATCH * NUM_CAMERAS)
    costs = _encoder_layer_costs()
    tokens, width, ffn = costs["tokens"], ACT_LAYER.model_dim, ACT_LAYER.ffn_dim
    encoder = _per_sample(trace.stage("encoder"))
    total = _per_sample(trace.stage("(root)"))
    vision = 2 * per_image
    parts = {
        "ResNet-18 ×2": vision,
        "1×1 projection": _per_sample(trace.stage("camera_tokens/input_projection")),
        "encoder": encoder,
        "decoder (1 layer)": _per_sample(trace.stage("decoder")),
        "heads and token projections": total
        - _per_sample(trace.stage("camera_tokens"))
        - encoder
        - _per_sample(trace.stage("decoder")),
    }
    breakdown = ", ".join(f"{name} {flops / GIGA:.3g}" for name, flops in parts.items())
    mac_reading = (
        f"1.8 G is the multiply-accumulate count ({per_image / 2 / GIGA:.3g} GMACs at 224 px); "
        f"at 2 FLOPs per MAC ResNet-18 costs {per_image / GIGA:.3g} GFLOPs per image"
    )
    layer_formula = (
        f"per layer and sample: attention 4N²d = {costs['attention'] / MEGA:.4g} M + Q, K, V, O "
        f"projections 8Nd² = {costs['projections'] / MEGA:.4g} M + feed-forward "
        f"4N·d·d_ffn = {costs['feed_forward'] / MEGA:.4g} M (d_ffn = {ffn})"
    )
    return [
        *check(
            "20.3.1",
            "ResNet-18 GFLOPs per 224 px image",
            "1.8",
            per_image / GIGA,
            why=mac_reading + f"; XLA's compiled cost analysis says {_resnet18_xla_gflops():.3g} "
            "G because it skips the taps that fall on zero padding",
        ),
        *check(
            "20.3.1",
            "ResNet-18 GFLOPs for 2 images",
            "3.6",
            vision / GIGA,
            why=mac_reading + f"; two images are {vision / GIGA:.3g} GFLOPs",
        ),
        *check(
            "20.3.1",
            "encoder tokens N",
            "100",
            tokens,
            note="[latent (the book's CLS), joints, 2 × 49 visual], traced",
        ),
        *check(
            "20.3.1",
            "self-attention 4N²d MFLOPs per layer (N = 100, d = 512)",
            "20",
            costs["attention"] / MEGA,
            rel_tol=0.05,
            note=f"QKᵀ and weights·V traced: {costs['attention'] / MEGA:.4g} M = "
            f"4·{tokens}²·{width} exactly",
        ),
        *check(
            "20.3.1",
            "MLP MFLOPs per layer (printed as 8Nd²)",
            "200",
            costs["feed_forward"] / MEGA,
            why=f"the MLP has width d_ffn = {ffn} (20.1): 2 matmuls of 2·N·d·d_ffn = "
            f"{costs['feed_forward'] / MEGA:.4g} MFLOPs; 8Nd² = {costs['projections'] / MEGA:.4g} "
            "M is what the Q, K, V, O projections cost",
        ),
        *claim(
            "20.3.1",
            "parts of an encoder layer",
            "self-attention 4N²d + MLP 8Nd²",
            layer_formula,
            holds=abs(costs["layer"] - (4 * tokens**2 * width + 8 * tokens * width**2)) < 1,
            why="the breakdown leaves out the Q, K, V, O projections and sizes the MLP as "
            "d_ffn = 2d; " + layer_formula,
        ),
        *check(
            "20.3.1",
            "GFLOPs per encoder layer",
            "0.22",
            costs["layer"] / GIGA,
            why=f"{costs['layer'] / GIGA:.4g} GFLOPs per layer and sample: the sum of the parts "
            "above, 3 of which the book leaves out or undercounts",
        ),
        *check(
            "20.3.1",
            "GFLOPs of the 4-layer encoder",
            "0.9",
            encoder / GIGA,
            why=f"4 × {costs['layer'] / GIGA:.4g} = {encoder / GIGA:.3g} GFLOPs per sample",
        ),
        *check(
            "20.3.1",
            "share of the vision backbone in the forward FLOPs (%)",
            "80",
            100 * vision / total,
            rel_tol=0.05,
            why=f"ResNet-18 ×2 is {100 * vision / total:.0f}% of the {total / GIGA:.3g} GFLOPs "
            f"per sample ({breakdown}); {100 * vision / (vision + encoder):.0f}% of vision + "
            "encoder alone. The book's 80% = 3.6/(3.6 + 0.9) pairs a MAC count with an "
            "undercounted encoder",
        ),
    ]


def _backbone_table_records() -> list[Record]:
    """Book 16.4.1, first table: the "Comp. Cost (MACs)" column."""
    resnet18_84, resnet18_224 = backbone_macs("resnet18", 84), backbone_macs("resnet18", 224)
    vit_b16, vit_b32 = backbone_macs("vit_b16", 224), backbone_macs("vit_b32", 224)
    return [
        *check(
            "16.4.1 table 1",
            "ResNet-18 MACs (billions) at 84 px",
            "1.8",
            resnet18_84 / GIGA,
            why=f"at 84 px (layer4 3×3) ResNet-18 costs {resnet18_84 / GIGA:.3g} G MACs; 1.8 G "
            f"({resnet18_224 / GIGA:.3g}) is its cost at 224 px, where layer4 is 7×7",
        ),
        *check(
            "16.4.1 table 1",
            "ResNet-34 MACs (billions) at 224 px",
            "3.6",
            backbone_macs("resnet34", 224) / GIGA,
            note="(3, 4, 6, 3) BasicBlocks, traced through core.resnet",
        ),
        *check(
            "16.4.1 table 1",
            "ViT-Base MACs (billions) at 224 px",
            "8",
            vit_b16 / GIGA,
            why=f"ViT-B/16 (196 patches + CLS) costs {vit_b16 / GIGA:.3g} G MACs and ViT-B/32 "
            f"(the table's 7×7 grid) {vit_b32 / GIGA:.3g} G; neither is 8 G",
        ),
    ]


def records() -> list[Record]:
    return [*_walkthrough_records(), *_backbone_table_records()]


if __name__ == "__main__":
    print(walkthrough_trace(224, ACT_DIM_BIMANUAL).table(max_depth=3))

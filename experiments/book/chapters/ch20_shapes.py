"""Chapters 17 and 20: token counts and tensor shapes through ACT, traced through the real blocks.

Book 17.4-17.5 (eqs. 17.22-17.48, the CVAE encoder and decoder at 84 px) and 20.1-20.4 (eqs.
20.1-20.11 and the summary table, at 224 px). `WalkthroughACT` assembles ACT's inference network
from the core blocks at the book's chapter-20 sizes (core.resnet, core.position_encoding,
core.transformer), and `core.tracer` traces it abstractly (`jax.make_jaxpr` over
`jax.ShapeDtypeStruct`s: nothing is allocated or computed), giving every stage's input and output
shapes. Where the book builds a tensor ACT does not have (17.4.1's CVAE input with image tokens,
17.5.1's repeated latent), it is built as the book says under `jax.eval_shape`, with the traced
token counts. Chapter 20's FLOPs are in `ch20_flops`, from the same trace.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from core import attention, position_encoding, resnet, tracer, transformer
from core.checks import check_shapes
from experiments.book.records import Record, ambiguous, check

BATCH, NUM_CAMERAS, CHUNK, LATENT_DIM = 8, 2, 100, 32  # book 20.1
ACT_LAYER = transformer.TransformerLayerConfig(
    model_dim=512, num_heads=8, ffn_dim=3200, dropout_rate=0.0
)  # 20.1: d_model 512, 8 heads, d_ffn 3200; post-norm ReLU (ACT's defaults)
ACT_DIM_BIMANUAL, ACT_DIM_ONE_ARM = 14, 7  # D of chapter 20 and of eq. 17.45
TRACED = "traced through the core blocks (core.tracer)"


class CameraTokens(nn.Module):
    """Every camera through one shared ResNet-18 (frozen batch norm) to layer4, then a 1×1 conv
    to d_model, with DETR's 2D sine embedding of each camera's H'×W' grid (book 16.4.2, 20.2.1).

    [B, cams, H, W, 3] -> (tokens [B, cams·H'·W', d], positions [cams·H'·W', d]), camera-major
    and row-major within a camera, as LeRobot's ACT lays them out.
    """

    model_dim: int

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        batch, cameras = images.shape[:2]
        features = resnet.ResNet(name="backbone")(images.reshape(-1, *images.shape[2:]))
        features = nn.Conv(self.model_dim, (1, 1), name="input_projection")(features)
        height, width = features.shape[1:3]
        positions = position_encoding.sine_position_embedding_2d(height, width, self.model_dim)
        positions = jnp.tile(positions.reshape(-1, self.model_dim), (cameras, 1))
        return features.reshape(batch, -1, self.model_dim), positions  # eqs. 20.3-20.4


class WalkthroughACT(nn.Module):
    """ACT's inference network (LeRobot's `ACT.forward` without the CVAE encoder) from the core
    blocks: encoder tokens [latent, joints, camera tokens] with learned positions for the first
    two and DETR's 2D sine embedding per camera; post-norm encoder layers; a decoder over
    `chunk_size` zero queries with learned query positions, ending in a LayerNorm; a linear
    action head. One decoder layer, LeRobot's default (the original ACT configures 7 but, by a
    bug, uses only the first).
    """

    action_dim: int
    chunk_size: int = CHUNK
    num_encoder_layers: int = 4
    num_decoder_layers: int = 1
    layer: transformer.TransformerLayerConfig = ACT_LAYER

    @nn.compact
    def __call__(self, images: jax.Array, joints: jax.Array, latent: jax.Array) -> jax.Array:
        """images [B, cams, H, W, 3], joints [B, D], latent [B, d_z] -> actions [B, k, D]."""
        check_shapes(
            images=(images, ("B", None, None, None, 3)),
            joints=(joints, ("B", self.action_dim)),
            latent=(latent, ("B", None)),
        )
        model_dim = self.layer.model_dim
        visual, visual_positions = CameraTokens(model_dim, name="camera_tokens")(images)
        latent_token = nn.Dense(model_dim, name="latent_projection")(latent)
        joint_token = nn.Dense(model_dim, name="joint_projection")(joints)
        tokens = jnp.concatenate([latent_token[:, None], joint_token[:, None], visual], axis=1)
        token_positions = position_encoding.LearnedPositionEmbedding(
            2, model_dim, name="token_positions"
        )()
        positions = jnp.concatenate([token_positions, visual_positions])[None]
        memory = transformer.TransformerEncoder(
            self.layer, self.num_encoder_layers, name="encoder"
        )(tokens, pos=positions, deterministic=True)
        query_positions = position_encoding.LearnedPositionEmbedding(
            self.chunk_size, model_dim, name="query_positions"
        )()[None]
        queries = jnp.zeros((tokens.shape[0], self.chunk_size, model_dim), tokens.dtype)
        decoded = transformer.TransformerDecoder(
            self.layer, self.num_decoder_layers, final_norm=True, name="decoder"
        )(queries, memory, query_pos=query_positions, memory_pos=positions, deterministic=True)
        return nn.Dense(self.action_dim, name="action_head")(decoded)  # book eq. 20.11


def _struct(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


@functools.cache
def walkthrough_trace(image_size: int, action_dim: int, batch: int = BATCH) -> tracer.ModuleTrace:
    """The stages of `WalkthroughACT` on `batch` samples of 2 cameras at `image_size` px."""
    model = WalkthroughACT(action_dim)
    inputs = (
        _struct(batch, NUM_CAMERAS, image_size, image_size, 3),
        _struct(batch, action_dim),
        _struct(batch, LATENT_DIM),
    )
    variables = jax.eval_shape(model.init, jax.random.key(0), *inputs)
    return tracer.trace_module(model, variables, *inputs)


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Our channels-last [..., H, W, C] in the book's layout [..., C, H, W]."""
    return (*shape[:-3], shape[-1], *shape[-3:-1])


def _shape_check(section: str, quantity: str, printed: list[str], shape, note: str):
    """One record per printed dimension; `shape` drops the axes the book writes as symbols."""
    return check(section, quantity, printed, list(shape), note=note)


def _attention_map(queries: jax.ShapeDtypeStruct, keys: jax.ShapeDtypeStruct):
    """softmax(QKᵀ/√d_k) per head, [B, H, N_q, N_k] (core.attention, eqs. 17.32, 17.43)."""
    heads = ACT_LAYER.num_heads
    return jax.eval_shape(
        lambda q, k: attention.attention_weights(
            attention.split_heads(q, heads), attention.split_heads(k, heads)
        ),
        queries,
        keys,
    )


def _encoder_records_84px() -> list[Record]:
    """Book 17.4.1: the CVAE encoder's input [CLS; prop; 18 visual; k actions] (as the book
    builds it), run through a real 4-layer encoder."""
    visual = walkthrough_trace(84, ACT_DIM_ONE_ARM).stage("camera_tokens").output_shapes[0]
    num_visual = visual[1]
    action_projection = nn.Dense(ACT_LAYER.model_dim)
    actions = _struct(BATCH, CHUNK, ACT_DIM_ONE_ARM)
    action_tokens = jax.eval_shape(
        lambda a: action_projection.init_with_output(jax.random.key(0), a)[0], actions
    )  # eq. 17.20
    single_token = _struct(BATCH, 1, ACT_LAYER.model_dim)
    encoder_input = jax.eval_shape(
        lambda *parts: jnp.concatenate(parts, axis=1),
        single_token,  # CLS
        single_token,  # proprioception
        _struct(*visual),
        action_tokens,
    )  # eq. 17.22
    encoder = transformer.TransformerEncoder(ACT_LAYER, 4)
    variables = jax.eval_shape(
        functools.partial(encoder.init, deterministic=True), jax.random.key(0), encoder_input
    )
    encoder_trace = tracer.trace_module(encoder, variables, encoder_input, deterministic=True)
    encoder_output = encoder_trace.stage("(root)")
    scores = _attention_map(encoder_input, encoder_input)
    length = encoder_input.shape[1]
    why = (
        f"[CLS; prop; {num_visual} visual; {CHUNK} actions] is 1 + 1 + {num_visual} + {CHUNK} "
        f"= {length} tokens, not 128"
    )
    return [
        *check(
            "17.4.1",
            "visual tokens N_vis (2 cameras, 84 px)",
            "18",
            num_visual,
            note=f"2 × 3 × 3 ResNet-18 layer4 positions, {TRACED}",
        ),
        *check(
            "17.4.1 eq. 17.23",
            "H_input shape (B = 8, k = 100, N_vis = 18, d_model = 512)",
            ["8", "128", "512"],
            list(encoder_input.shape),
            why=why + f" (ACT's own CVAE encoder sees no image tokens: [CLS; joints; actions] "
            f"= {CHUNK + 2})",
        ),
        *check(
            "17.4.1 eq. 17.26",
            "H_output shape [B, ·, ·] (a Transformer keeps its input's shape)",
            ["128", "512"],
            list(encoder_output.output_shapes[0][1:]),
            why=why + "; traced through a 4-layer core.transformer.TransformerEncoder",
        ),
        *check(
            "17.4.1 eq. 17.28",
            "tokens averaged by mean pooling (1/128, i = 0..127)",
            "128",
            length,
            why=why + f"; the mean is 1/{length} Σ_{{i=0}}^{{{length - 1}}}",
        ),
        *check(
            "17.4.2 eq. 17.32",
            "encoder attention map shape [B, ·, ·]",
            ["128", "128"],
            list(scores.shape[2:]),
            why=why + f"; QKᵀ is [8, {length}, {length}] per head (core.attention)",
        ),
    ]


def _decoder_records_84px() -> list[Record]:
    """Book 17.5.1: the decoder's latent, queries, K/V and outputs (the book's construction)."""
    trace = walkthrough_trace(84, ACT_DIM_ONE_ARM)
    visual = _struct(*trace.stage("camera_tokens").output_shapes[0])
    latent_token = _struct(*trace.stage("latent_projection").output_shapes[0])  # eq. 17.35
    repeated = jax.eval_shape(lambda z: jnp.repeat(z[:, None], CHUNK, axis=1), latent_token)
    queries = _struct(*trace.stage("query_positions").output_shapes[0])  # eq. 17.37
    conditioning = jax.eval_shape(
        lambda vis, z: jnp.concatenate([vis, z[:, None]], axis=1), visual, latent_token
    )  # eq. 17.38
    queries = jax.eval_shape(lambda q: jnp.broadcast_to(q, (BATCH, *q.shape)), queries)
    scores = _attention_map(queries, conditioning)
    cross = trace.stage("decoder/layers_0/cross_attention")
    act_memory = cross.input_shapes[1][1]
    actions = trace.stage("action_head").output_shapes[0]
    note = "traced with jax.eval_shape"
    memory_note = (
        f"18 visual tokens + 1 latent token, as the book builds K_cond; ACT's decoder attends to "
        f"the encoder output over [latent; joints; 18 visual] = {act_memory} tokens (traced)"
    )
    return [
        *_shape_check(
            "17.5.1 eq. 17.35", "z_embed [B, ·]", ["512"], latent_token.shape[1:], TRACED
        ),
        *_shape_check(
            "17.5.1 eq. 17.36", "z_tilde [B, ·, ·]", ["100", "512"], repeated.shape[1:], note
        ),
        *_shape_check(
            "17.5.1 eq. 17.38",
            "K_cond = [Tokens_vis; z_embed] [B, ·, ·]",
            ["19", "512"],
            conditioning.shape[1:],
            memory_note,
        ),
        *_shape_check(
            "17.5.1 eq. 17.43",
            "Q_pos K_condᵀ [B, ·, ·]",
            ["100", "19"],
            scores.shape[2:],
            "per head (core.attention); " + memory_note,
        ),
        *_shape_check(
            "17.5.1 eq. 17.44",
            "Attn_cross [B, ·, ·]",
            ["100", "512"],
            cross.output_shapes[0][1:],
            TRACED,
        ),
        *_shape_check("17.5.1 eq. 17.45", "Â (D = 7) [B, ·, ·]", ["100", "7"], actions[1:], TRACED),
        *check(
            "17.5.2 eq. 17.48",
            "d_k = d_model / H for H = 8",
            "64",
            attention.head_dim(ACT_LAYER.model_dim, ACT_LAYER.num_heads),
            note="[8, 100, 512] split into 8 heads (core.attention.head_dim)",
        ),
    ]


def walkthrough_shapes_224px() -> dict[str, tuple[int, ...]]:
    """Book 20.2: every tensor of the forward pass at 224 px, B = 8, D = 14, from the trace."""
    trace = walkthrough_trace(224, ACT_DIM_BIMANUAL)
    images, joints, latent = trace.stage("(root)").input_shapes
    layer4 = trace.stage("camera_tokens/backbone").output_shapes[0]
    encoder = trace.stage("encoder")
    decoder = trace.stage("decoder")
    return {
        "I": _channels_first(images),
        "features": _channels_first(layer4),
        "tokens": (layer4[0], layer4[1] * layer4[2], layer4[3]),
        "F_vis": trace.stage("camera_tokens").output_shapes[0],
        "q": joints,
        "X_enc": encoder.input_shapes[0],
        "H_enc": encoder.output_shapes[0],
        "z": latent,
        "Q_dec": decoder.input_shapes[0],
        "K, V": decoder.input_shapes[1],
        "cross": trace.stage("decoder/layers_0/cross_attention").output_shapes[0],
        "A_hat": trace.stage("action_head").output_shapes[0],
    }


def _walkthrough_records() -> list[Record]:
    shapes = walkthrough_shapes_224px()
    length = shapes["X_enc"][1]
    # (section, quantity, tensor, printed dims, leading axes the book writes as symbols)
    equations = [
        ("20.2.1 eq. 20.1", "I [B, ·, ·, ·, ·]", "I", ["2", "3", "224", "224"], 1),
        ("20.2.1 eq. 20.2", "layer4 output [B·2, C, H', W']", "features", ["512", "7", "7"], 1),
        ("20.2.1 eq. 20.3", "Tokens_vis [B·2, H'W', C]", "tokens", ["49", "512"], 1),
        ("20.2.1 eq. 20.4", "F_vis", "F_vis", ["8", "98", "512"], 0),
        ("20.2.2 eq. 20.5", "X_enc = [CLS, Prop, Vis_1..98]", "X_enc", ["8", "100", "512"], 0),
        ("20.2.2 eq. 20.6", "H_enc", "H_enc", ["8", "100", "512"], 0),
        ("20.2.3 eq. 20.7", "z", "z", ["8", "32"], 0),
        ("20.2.4 eq. 20.8", "Q_dec [B, ·, ·]", "Q_dec", ["100", "512"], 1),
        ("20.2.4 eq. 20.10", "cross-attention output", "cross", ["8", "100", "512"], 0),
        ("20.2.4 eq. 20.11", "Â (D = 14)", "A_hat", ["8", "100", "14"], 0),
    ]
    table = [  # (row, tensor, printed shape, the traced stage that consumes or makes it)
        ("Input Images", "I", ["8", "2", "3", "224", "224"], "(root)"),
        ("CNN Feats", "F_vis", ["8", "98", "512"], "camera_tokens"),
        ("Joint State", "q", ["8", "14"], "joint_projection"),
        ("Encoder Input", "X_enc", ["8", "100", "512"], "encoder"),
        ("Latent", "z", ["8", "32"], "latent_projection"),
        ("Decoder Query", "Q_dec", ["8", "100", "512"], "decoder"),
        ("Output Actions", "A_hat", ["8", "100", "14"], "action_head"),
    ]
    layout_note = f"{TRACED}; images and feature maps in the book's channels-first layout"
    out = check(
        "20.2.2",
        "encoder sequence length 1 + 1 + 98",
        "100",
        length,
        note="CLS (in ACT: the latent token) + proprioception + 2 × 7 × 7 visual tokens at 224 px",
    )
    for section, quantity, key, printed, symbolic in equations:
        out += _shape_check(section, quantity, printed, shapes[key][symbolic:], layout_note)
    out += ambiguous(
        "20.2.4 eq. 20.9",
        "K, V = Concat(H_enc, Project(z)) shape",
        "(8, 101, 512)",
        str(shapes["K, V"]),
        "the book's own construction (z appended to H_enc) gives 101 tokens; ACT puts the "
        "latent token first in the ENCODER input (the book's 'CLS' slot, as 20.2.4 itself "
        "suspects), so the decoder attends to H_enc alone: [8, 100, 512] (traced)",
    )
    trace = walkthrough_trace(224, ACT_DIM_BIMANUAL)
    for row, key, printed, stage in table:
        note = f"{layout_note}; {_stage_summary(trace.stage(stage))}"
        out += _shape_check("20.4 table", row, printed, shapes[key], note)
    return out


def _stage_summary(stage: tracer.Stage) -> str:
    """One row of the tracer's table, e.g. "stage encoder (TransformerEncoder): 17.3 M params,
    28.3 GFLOPs per batch of 8"."""
    params = tracer.format_count(stage.param_count)
    flops = tracer.format_count(stage.counts.matmul_flops)
    return (
        f"stage {stage.name} ({stage.module}): {params} params, {flops}FLOPs per batch of {BATCH}"
    )


def records() -> list[Record]:
    return [*_encoder_records_84px(), *_decoder_records_84px(), *_walkthrough_records()]

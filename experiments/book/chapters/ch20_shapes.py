"""Chapters 17 and 20: token counts and tensor shapes through ACT, traced through act.model.

Book 17.4-17.5 (eqs. 17.22-17.48, the CVAE encoder and decoder at 84 px) and 20.1-20.4 (eqs.
20.1-20.11 and the summary table, at 224 px). The model is `act.model.ACT` at the book's
chapter-20 sizes (LeRobot's defaults: d_model 512, 8 heads, d_ffn 3200, 4 + 1 layers, a 4-layer
CVAE encoder, d_z 32, k = 100), two cameras; `core.tracer` traces its training forward pass
(`ACT.reconstruct`: CVAE encoder, reparameterized z, decoder) abstractly (`jax.make_jaxpr` over
`jax.ShapeDtypeStruct`s: nothing is allocated or computed), giving every stage's input and
output shapes. Where the book builds a tensor ACT does not have (17.4.1's CVAE input with image
tokens, 17.5.1's repeated latent), it is built as the book says under `jax.eval_shape`, with the
traced token counts. Chapter 20's FLOPs and parameter counts are in `ch20_flops`, from the same
trace.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from act.model import ACT, ACTConfig
from core import attention, tracer, transformer
from experiments.book.records import Record, ambiguous, check

BATCH, NUM_CAMERAS, CHUNK, LATENT_DIM = 8, 2, 100, 32  # book 20.1
ACT_DIM_BIMANUAL, ACT_DIM_ONE_ARM = 14, 7  # D of chapter 20 and of eq. 17.45
TRACED = "traced through act.model.ACT (core.tracer)"
DECODER = "cvae_decoder"
"""The decoder's stages are named under this prefix, e.g. "cvae_decoder/encoder"."""


def act_config(action_dim: int) -> ACTConfig:
    """The chapter-20 configuration: ACT's defaults (20.1), D = action_dim."""
    return ACTConfig(action_dim=action_dim, chunk_size=CHUNK, latent_dim=LATENT_DIM)


def _struct(*shape: int, dtype=jnp.float32) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype)


def walkthrough_inputs(image_size: int, action_dim: int, batch: int = BATCH) -> tuple:
    """ACT.reconstruct's positional inputs: actions, padding, ε, two cameras, joint state q."""
    return (
        _struct(batch, CHUNK, action_dim),
        _struct(batch, CHUNK, dtype=jnp.bool_),
        _struct(batch, LATENT_DIM),
        _struct(batch, NUM_CAMERAS, image_size, image_size, 3),
        _struct(batch, action_dim),
    )


@functools.cache
def walkthrough_trace(image_size: int, action_dim: int, batch: int = BATCH) -> tracer.ModuleTrace:
    """The stages of ACT's training forward pass on `batch` samples of 2 cameras at
    `image_size` px (the root stage is "(root).reconstruct")."""
    model = ACT(act_config(action_dim))
    inputs = walkthrough_inputs(image_size, action_dim, batch)
    init = functools.partial(model.init, deterministic=True, method=ACT.reconstruct)
    variables = jax.eval_shape(init, jax.random.key(0), *inputs)
    return tracer.trace_module(
        model, variables, *inputs, method=ACT.reconstruct, deterministic=True
    )


ACT_LAYER = act_config(ACT_DIM_BIMANUAL).layer
"""The transformer layers' configuration (20.1: d_model 512, 8 heads, d_ffn 3200)."""


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
    trace = walkthrough_trace(84, ACT_DIM_ONE_ARM)
    visual = trace.stage(f"{DECODER}/camera_tokens").output_shapes[0]
    num_visual = visual[1]
    act_cvae_length = trace.stage("cvae_encoder/encoder").input_shapes[0][1]
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
            f"= {act_cvae_length}, traced)",
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
    visual = _struct(*trace.stage(f"{DECODER}/camera_tokens").output_shapes[0])
    latent_token = _struct(*trace.stage(f"{DECODER}/latent_projection").output_shapes[0])
    repeated = jax.eval_shape(lambda z: jnp.repeat(z[:, None], CHUNK, axis=1), latent_token)
    queries = _struct(*trace.stage(f"{DECODER}/query_positions").output_shapes[0])  # eq. 17.37
    conditioning = jax.eval_shape(
        lambda vis, z: jnp.concatenate([vis, z[:, None]], axis=1), visual, latent_token
    )  # eq. 17.38
    queries = jax.eval_shape(lambda q: jnp.broadcast_to(q, (BATCH, *q.shape)), queries)
    scores = _attention_map(queries, conditioning)
    cross = trace.stage(f"{DECODER}/decoder/layers_0/cross_attention")
    act_memory = cross.input_shapes[1][1]
    actions = trace.stage(f"{DECODER}/action_head").output_shapes[0]
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


ROOT = "(root).reconstruct"


def walkthrough_shapes_224px() -> dict[str, tuple[int, ...]]:
    """Book 20.2: every tensor of the training forward pass at 224 px, B = 8, D = 14, from the
    trace (the inference pass is the same without the CVAE encoder, with z = 0)."""
    trace = walkthrough_trace(224, ACT_DIM_BIMANUAL)
    actions, _, _, images, joints = trace.stage(ROOT).input_shapes
    layer4 = trace.stage(f"{DECODER}/camera_tokens/backbone").output_shapes[0]
    cvae_encoder = trace.stage("cvae_encoder")
    encoder = trace.stage(f"{DECODER}/encoder")
    decoder = trace.stage(f"{DECODER}/decoder")
    return {
        "I": _channels_first(images),
        "features": _channels_first(layer4),
        "tokens": (layer4[0], layer4[1] * layer4[2], layer4[3]),
        "F_vis": trace.stage(f"{DECODER}/camera_tokens").output_shapes[0],
        "q": joints,
        "X_enc": encoder.input_shapes[0],
        "H_enc": encoder.output_shapes[0],
        "a": actions,
        "X_cvae": trace.stage("cvae_encoder/encoder").input_shapes[0],
        "mu": cvae_encoder.output_shapes[0],
        "log_var": cvae_encoder.output_shapes[1],
        "z": trace.stage(f"{DECODER}/latent_projection").input_shapes[0],
        "Q_dec": decoder.input_shapes[0],
        "K, V": decoder.input_shapes[1],
        "cross": trace.stage(f"{DECODER}/decoder/layers_0/cross_attention").output_shapes[0],
        "A_hat": trace.stage(f"{DECODER}/action_head").output_shapes[0],
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
        ("20.2.3", "true actions a_{t:t+k}", "a", ["8", "100", "14"], 0),
        ("20.2.3", "CVAE encoder output μ", "mu", ["8", "32"], 0),
        ("20.2.3", "CVAE encoder output σ (ACT: log σ²)", "log_var", ["8", "32"], 0),
        ("20.2.3 eq. 20.7", "z", "z", ["8", "32"], 0),
        ("20.2.4 eq. 20.8", "Q_dec [B, ·, ·]", "Q_dec", ["100", "512"], 1),
        ("20.2.4 eq. 20.10", "cross-attention output", "cross", ["8", "100", "512"], 0),
        ("20.2.4 eq. 20.11", "Â (D = 14)", "A_hat", ["8", "100", "14"], 0),
    ]
    table = [  # (row, tensor, printed shape, the traced stage that consumes or makes it)
        ("Input Images", "I", ["8", "2", "3", "224", "224"], f"{DECODER}/camera_tokens"),
        ("CNN Feats", "F_vis", ["8", "98", "512"], f"{DECODER}/camera_tokens"),
        ("Joint State", "q", ["8", "14"], f"{DECODER}/state_projection"),
        ("Encoder Input", "X_enc", ["8", "100", "512"], f"{DECODER}/encoder"),
        ("Latent", "z", ["8", "32"], f"{DECODER}/latent_projection"),
        ("Decoder Query", "Q_dec", ["8", "100", "512"], f"{DECODER}/decoder"),
        ("Output Actions", "A_hat", ["8", "100", "14"], f"{DECODER}/action_head"),
    ]
    layout_note = f"{TRACED}; images and feature maps in the book's channels-first layout"
    out = check(
        "20.2.2",
        "encoder sequence length 1 + 1 + 98",
        "100",
        length,
        note="CLS (in ACT: the latent token) + proprioception + 2 × 7 × 7 visual tokens at 224 px",
    )
    out += check(
        "20.2.3",
        "CVAE encoder tokens [CLS, q, a_1..a_100] (ACT's BERT-like encoding)",
        "102",
        shapes["X_cvae"][1],
        note=f"the [CLS] token, the joint state and one token per action, {TRACED}; the book "
        "leaves the count implicit (1 + 1 + k)",
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

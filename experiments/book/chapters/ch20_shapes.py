"""Chapters 17 and 20: token counts and tensor shapes through ACT's encoder and decoder.

Book 17.4-17.5 (eqs. 17.22-17.48, the CVAE encoder and decoder at 84 px) and 20.1-20.4 (eqs.
20.1-20.11 and the summary table, at 224 px). Every shape is traced: the token arrays are
`jax.ShapeDtypeStruct`s that are concatenated, projected and attended over under
`jax.eval_shape` (the operations a model performs, without computing anything), with the
ResNet-18 feature-map size from `core.conv_arithmetic` and tokens from
`core.tensor_notation.feature_map_to_tokens`. FLOP counts (20.3) come with the building blocks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from core import conv_arithmetic, numerics, tensor_notation
from experiments.book.records import Record, check

BATCH, NUM_CAMERAS, CHUNK, LATENT_DIM, D_MODEL, NUM_HEADS = 8, 2, 100, 32, 512, 8  # 20.1
ACT_DIM_BIMANUAL, ACT_DIM_ONE_ARM = 14, 7  # D of chapter 20 and of eq. 17.45


def _struct(*shape: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _linear(inputs: jax.Array, weights: jax.Array) -> jax.Array:
    """[..., d_in] @ [d_in, d_out]."""
    return jnp.einsum("...i,io->...o", inputs, weights)


def _attention_scores(queries: jax.Array, keys: jax.Array) -> jax.Array:
    """QKᵀ/√d_k: [B, N_q, d] and [B, N_k, d] -> [B, N_q, N_k] (eqs. 17.32, 17.43)."""
    scale = 1.0 / math.sqrt(queries.shape[-1])
    return tensor_notation.batched_matmul(queries, jnp.swapaxes(keys, 1, 2)) * scale


def _attention(queries: jax.Array, keys: jax.Array, values: jax.Array) -> jax.Array:
    """softmax(QKᵀ/√d_k) V: [B, N_q, d] (eqs. 17.42, 20.10)."""
    weights = numerics.softmax(_attention_scores(queries, keys), axis=-1)
    return tensor_notation.batched_matmul(weights, values)


def _visual_tokens(image_size: int) -> jax.ShapeDtypeStruct:
    """[B, cameras · H'W', C]: ResNet-18 layer4 maps of every camera, flattened to tokens."""
    layer4 = conv_arithmetic.resnet_stage_shapes(image_size, image_size)[-1]
    features = _struct(BATCH * NUM_CAMERAS, layer4.channels, layer4.height, layer4.width)
    tokens = jax.eval_shape(tensor_notation.feature_map_to_tokens, features)
    return jax.eval_shape(lambda t: jnp.reshape(t, (BATCH, -1, t.shape[-1])), tokens)


def _shape_check(section: str, quantity: str, printed: list[str], shape, note: str):
    """One record per printed dimension; `shape` drops the axes the book writes as symbols."""
    return check(section, quantity, printed, list(shape), note=note)


def _encoder_records_84px() -> list[Record]:
    """Book 17.4.1: the CVAE encoder's input [CLS; prop; 18 visual; k actions]."""
    visual = _visual_tokens(84)
    num_visual = visual.shape[1]
    actions = _struct(BATCH, CHUNK, ACT_DIM_ONE_ARM)
    action_weights = _struct(ACT_DIM_ONE_ARM, D_MODEL)
    action_tokens = jax.eval_shape(_linear, actions, action_weights)  # eq. 17.20
    cls_token, prop_token = _struct(BATCH, 1, D_MODEL), _struct(BATCH, 1, D_MODEL)
    encoder_input = jax.eval_shape(
        lambda *parts: jnp.concatenate(parts, axis=1),
        cls_token,
        prop_token,
        visual,
        action_tokens,
    )  # eq. 17.22
    scores = jax.eval_shape(_attention_scores, encoder_input, encoder_input)
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
            note="2 × 3 × 3 ResNet-18 layer4 positions",
        ),
        *check(
            "17.4.1 eq. 17.23",
            "H_input shape (B = 8, k = 100, N_vis = 18, d_model = 512)",
            ["8", "128", "512"],
            list(encoder_input.shape),
            why=why,
        ),
        *check(
            "17.4.1 eq. 17.26",
            "H_output shape [B, ·, ·] (a Transformer keeps its input's shape)",
            ["128", "512"],
            list(encoder_input.shape[1:]),
            why=why,
        ),
        *check(
            "17.4.1 eq. 17.28",
            "tokens averaged by mean pooling (1/128, i = 0..127)",
            "128",
            length,
            why=why + "; the mean is 1/120 Σ_{i=0}^{119}",
        ),
        *check(
            "17.4.2 eq. 17.32",
            "encoder attention map shape [B, ·, ·]",
            ["128", "128"],
            list(scores.shape[1:]),
            why=why + f"; QKᵀ is [8, {length}, {length}]",
        ),
    ]


def _decoder_records_84px() -> list[Record]:
    """Book 17.5.1: the decoder's latent, queries, K/V and outputs."""
    visual = _visual_tokens(84)
    latent, latent_weights = _struct(BATCH, LATENT_DIM), _struct(LATENT_DIM, D_MODEL)
    latent_token = jax.eval_shape(_linear, latent, latent_weights)  # eq. 17.35
    repeated = jax.eval_shape(lambda z: jnp.repeat(z[:, None], CHUNK, axis=1), latent_token)
    queries = _struct(BATCH, CHUNK, D_MODEL)  # eq. 17.37
    conditioning = jax.eval_shape(
        lambda vis, z: jnp.concatenate([vis, z[:, None]], axis=1), visual, latent_token
    )  # eq. 17.38
    scores = jax.eval_shape(_attention_scores, queries, conditioning)
    cross = jax.eval_shape(_attention, queries, conditioning, conditioning)
    actions = jax.eval_shape(_linear, cross, _struct(D_MODEL, ACT_DIM_ONE_ARM))
    heads = jax.eval_shape(lambda q: jnp.reshape(q, (*q.shape[:-1], NUM_HEADS, -1)), queries)
    note = "traced with jax.eval_shape"
    return [
        *_shape_check("17.5.1 eq. 17.35", "z_embed [B, ·]", ["512"], latent_token.shape[1:], note),
        *_shape_check(
            "17.5.1 eq. 17.36", "z_tilde [B, ·, ·]", ["100", "512"], repeated.shape[1:], note
        ),
        *_shape_check(
            "17.5.1 eq. 17.38",
            "K_cond = [Tokens_vis; z_embed] [B, ·, ·]",
            ["19", "512"],
            conditioning.shape[1:],
            "18 visual tokens + 1 latent token",
        ),
        *_shape_check(
            "17.5.1 eq. 17.43", "Q_pos K_condᵀ [B, ·, ·]", ["100", "19"], scores.shape[1:], note
        ),
        *_shape_check(
            "17.5.1 eq. 17.44", "Attn_cross [B, ·, ·]", ["100", "512"], cross.shape[1:], note
        ),
        *_shape_check(
            "17.5.1 eq. 17.45", "Â (D = 7) [B, ·, ·]", ["100", "7"], actions.shape[1:], note
        ),
        *check(
            "17.5.2 eq. 17.48",
            "d_k = d_model / H for H = 8",
            "64",
            heads.shape[-1],
            note="[8, 100, 512] split into 8 heads",
        ),
    ]


def _walkthrough_shapes_224px() -> dict[str, jax.ShapeDtypeStruct]:
    """Book 20.2: every tensor of the forward pass at 224 px, B = 8, D = 14."""
    images = _struct(BATCH, NUM_CAMERAS, 3, 224, 224)  # eq. 20.1
    layer4 = conv_arithmetic.resnet_stage_shapes(224, 224)[-1]
    features = _struct(BATCH * NUM_CAMERAS, layer4.channels, layer4.height, layer4.width)
    joints = _struct(BATCH, ACT_DIM_BIMANUAL)
    prop_token = jax.eval_shape(
        lambda q, w: _linear(q, w)[:, None], joints, _struct(ACT_DIM_BIMANUAL, D_MODEL)
    )
    visual = _visual_tokens(224)
    encoder_input = jax.eval_shape(
        lambda *parts: jnp.concatenate(parts, axis=1),
        _struct(BATCH, 1, D_MODEL),
        prop_token,
        visual,
    )  # eq. 20.5
    mean, std = _struct(BATCH, LATENT_DIM), _struct(BATCH, LATENT_DIM)
    latent = jax.eval_shape(lambda m, s, e: m + s * e, mean, std, _struct(BATCH, LATENT_DIM))
    queries = jax.eval_shape(
        lambda p: jnp.broadcast_to(p, (BATCH, *p.shape)), _struct(CHUNK, D_MODEL)
    )  # eq. 20.8
    keys = jax.eval_shape(
        lambda h, z, w: jnp.concatenate([h, _linear(z, w)[:, None]], axis=1),
        encoder_input,
        latent,
        _struct(LATENT_DIM, D_MODEL),
    )  # eq. 20.9
    cross = jax.eval_shape(_attention, queries, keys, keys)
    actions = jax.eval_shape(_linear, cross, _struct(D_MODEL, ACT_DIM_BIMANUAL))
    return {
        "I": images,
        "features": features,
        "tokens": jax.eval_shape(tensor_notation.feature_map_to_tokens, features),
        "F_vis": visual,
        "q": joints,
        "X_enc": encoder_input,
        "z": latent,
        "Q_dec": queries,
        "K, V": keys,
        "cross": cross,
        "A_hat": actions,
    }


def _walkthrough_records() -> list[Record]:
    shapes = _walkthrough_shapes_224px()
    note = "traced with jax.eval_shape"
    length = shapes["X_enc"].shape[1]
    # (section, quantity, tensor, printed dims, leading axes the book writes as symbols)
    equations = [
        ("20.2.1 eq. 20.1", "I [B, ·, ·, ·, ·]", "I", ["2", "3", "224", "224"], 1),
        ("20.2.1 eq. 20.2", "layer4 output [B·2, C, H', W']", "features", ["512", "7", "7"], 1),
        ("20.2.1 eq. 20.3", "Tokens_vis [B·2, H'W', C]", "tokens", ["49", "512"], 1),
        ("20.2.1 eq. 20.4", "F_vis", "F_vis", ["8", "98", "512"], 0),
        ("20.2.2 eq. 20.5", "X_enc = [CLS, Prop, Vis_1..98]", "X_enc", ["8", "100", "512"], 0),
        ("20.2.3 eq. 20.7", "z", "z", ["8", "32"], 0),
        ("20.2.4 eq. 20.8", "Q_dec [B, ·, ·]", "Q_dec", ["100", "512"], 1),
        ("20.2.4 eq. 20.9", "K, V = [H_enc; Project(z)]", "K, V", ["8", "101", "512"], 0),
        ("20.2.4 eq. 20.10", "cross-attention output", "cross", ["8", "100", "512"], 0),
        ("20.2.4 eq. 20.11", "Â (D = 14)", "A_hat", ["8", "100", "14"], 0),
    ]
    table = [
        ("Input Images", "I", ["8", "2", "3", "224", "224"]),
        ("CNN Feats", "F_vis", ["8", "98", "512"]),
        ("Joint State", "q", ["8", "14"]),
        ("Encoder Input", "X_enc", ["8", "100", "512"]),
        ("Latent", "z", ["8", "32"]),
        ("Decoder Query", "Q_dec", ["8", "100", "512"]),
        ("Output Actions", "A_hat", ["8", "100", "14"]),
    ]
    out = check(
        "20.2.2",
        "encoder sequence length 1 + 1 + 98",
        "100",
        length,
        note="CLS + proprioception + 2 × 7 × 7 visual tokens at 224 px",
    )
    for section, quantity, key, printed, symbolic in equations:
        out += _shape_check(section, quantity, printed, shapes[key].shape[symbolic:], note)
    for stage, key, printed in table:
        out += _shape_check("20.4 table", stage, printed, shapes[key].shape, note)
    return out


def records() -> list[Record]:
    return [*_encoder_records_84px(), *_decoder_records_84px(), *_walkthrough_records()]

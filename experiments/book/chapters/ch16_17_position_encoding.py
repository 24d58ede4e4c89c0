"""Chapters 16, 17 and 19: position encodings, the attention block and its masks, the KV cache.

Book 16.4.2 (eq. 16.49), 17.4.1 (eq. 17.21), 17.4.2 (eq. 17.33), 17.5.1 (eqs. 17.40-17.41),
17.5.2 (eq. 17.48), 19.5 (eq. 19.12) and 19.9 (eq. 19.18). Every value comes from
`core.position_encoding`, `core.attention` and `core.transformer`, which match LeRobot's ACT
and torch.nn to 1e-6 (encodings) and 1e-5 (layers) in tests/core.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core import attention, position_encoding, transformer
from experiments.book.records import Record, ambiguous, check, claim

D_MODEL, NUM_HEADS, CHUNK = 512, 8, 100  # book 17.4-17.5
FEATURE_MAP = 3  # ResNet-18 layer4 at 84 px (16.4.1)
SMALL = transformer.TransformerLayerConfig(model_dim=32, num_heads=4, ffn_dim=64, dropout_rate=0.0)
SEQUENCE_LENGTH = 6


def _book_sum_16_49(h: float, d: int = D_MODEL) -> float:
    """Eq. 16.49 as printed: Σ_i sin(h / 10000^{2i/d}) + cos(h / 10000^{(2i+1)/d}), a scalar."""
    exponents = np.arange(d) / d
    terms = np.where(np.arange(d) % 2 == 0, np.sin(h / 10000.0**exponents), 0.0)
    terms += np.where(np.arange(d) % 2 == 1, np.cos(h / 10000.0**exponents), 0.0)
    return float(np.sum(terms))


def _position_encoding_records() -> list[Record]:
    grid = np.asarray(position_encoding.sine_position_embedding_2d(FEATURE_MAP, FEATURE_MAP, 512))
    vectors = grid.reshape(-1, D_MODEL)
    distinct_ours = len({tuple(np.round(v, 6)) for v in vectors})
    cells = [(h, w) for h in range(1, FEATURE_MAP + 1) for w in range(1, FEATURE_MAP + 1)]
    distinct_book = len({round(_book_sum_16_49(h), 9) for h, _ in cells})
    table = np.asarray(position_encoding.sinusoidal_table(1 + 1 + CHUNK, D_MODEL), np.float64)
    positions = np.arange(table.shape[0])
    printed_cosine = np.cos(positions / 10000.0 ** (1 / D_MODEL))
    return [
        *claim(
            "16.4.2 eq. 16.49",
            "2D encoding e_(h,w) of a 3 × 3 feature map (d = 512)",
            "e_(h,w) = sin(h/10000^{0/512}) + cos(h/10000^{1/512}) + ... encodes both h and w",
            f"the printed sum is a scalar of h alone: {distinct_book} distinct values over the 9 "
            f"cells; DETR/ACT's embedding gives {distinct_ours} distinct 512-vectors",
            holds=distinct_book == len(cells),
            why="DETR/ACT concatenate a 256-channel row encoding and a 256-channel column "
            "encoding, e = [enc(h); enc(w)], each with sin and cos interleaved, and scale h, w "
            "to (0, 2π] (2π h / (H + 1e-6)); a sum collapses the vector to one number",
        ),
        *claim(
            "16.4.2 eq. 16.49",
            "frequency of the first cosine channel",
            "cos(h / 10000^{1/512}): channel 1 has its own exponent",
            "ACT's table (create_sinusoidal_pos_embedding): channel 1 = cos(p / 10000^{0/512}) "
            f"= cos(p); max |PE[:, 1] - cos(p / 10000^(1/512))| = "
            f"{np.max(np.abs(table[:, 1] - printed_cosine)):.1e}",
            holds=bool(np.allclose(table[:, 1], printed_cosine, atol=1e-6)),
            why="sin and cos come in pairs sharing a frequency: PE[p, 2i] = sin(p / "
            "10000^{2i/d}), PE[p, 2i+1] = cos(p / 10000^{2i/d}) ('Attention is all you need')",
        ),
        *check(
            "17.4.1 eq. 17.21",
            "e_i^pos size (d_model) of ACT's CVAE-encoder positions",
            "512",
            table.shape[1],
            note=f"a fixed sinusoidal table for the {table.shape[0]} tokens [CLS; state; 100 "
            "actions], core.position_encoding.sinusoidal_table (= LeRobot's)",
        ),
    ]


def _random_tokens(seed: int, length: int) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (1, length, SMALL.model_dim), jnp.float32)


def _jit_apply(module):
    return jax.jit(module.apply, static_argnames=("deterministic", "method"))


def _attention_block_records() -> list[Record]:
    tokens = _random_tokens(1, SEQUENCE_LENGTH)
    layer = transformer.TransformerEncoderLayer(SMALL)
    attention_module = attention.MultiHeadAttention(SMALL.model_dim, SMALL.num_heads)
    params = jax.jit(layer.init, static_argnames="deterministic")(
        jax.random.key(0), tokens, deterministic=True
    )["params"]

    @jax.jit
    def layer_and_literal_17_33(tokens):
        ours = layer.apply({"params": params}, tokens, deterministic=True)
        attended = attention_module.apply(
            {"params": params["self_attention"]}, tokens, deterministic=True
        )
        feed_forward = transformer.FeedForward(SMALL).apply(
            {"params": params["feed_forward"]}, attended, deterministic=True
        )
        return ours, attended + feed_forward  # eq. 17.33 read as Attn·V + FFN(Attn·V)

    ours, literal = layer_and_literal_17_33(tokens)
    difference = float(jnp.max(jnp.abs(ours - literal)))
    decoder_queries = _random_tokens(2, CHUNK)
    zeros = jnp.zeros_like(decoder_queries)  # ACT's decoder input
    self_attention = _jit_apply(attention_module)(
        {"params": params["self_attention"]},
        zeros + decoder_queries,
        zeros + decoder_queries,
        zeros,
        deterministic=True,
    )  # q = k = tgt + query_pos, v = tgt
    spread = float(jnp.max(jnp.abs(self_attention - self_attention[:, :1])))
    return [
        *ambiguous(
            "17.4.2 eq. 17.33",
            "encoder block H^(ℓ) = Attn·V + FFN(·)",
            "Attn·V + FFN(·)",
            f"max |layer - (Attn·V + FFN(Attn·V))| = {difference:.2f} on a random input",
            "the block ACT and DETR use (post-norm, = torch's TransformerEncoderLayer to 1e-5) "
            "is H' = LN(H + Attn(H)), H^(ℓ) = LN(H' + FFN(H')): residual sums and LayerNorms "
            "that the printed formula leaves out",
        ),
        *claim(
            "17.5.1 eqs. 17.40-17.41",
            "values of the decoder self-attention",
            "Attn_self = softmax(Q_pos Q_posᵀ/√d_k) Q_pos: the position queries are the values",
            "ACT/DETR wiring q = k = tgt + query_pos, v = tgt with ACT's tgt = 0: the output is "
            f"the same at all {CHUNK} positions (max spread {spread:.1e})",
            holds=spread > 1e-6,
            why="position embeddings enter queries and keys only; the values are the decoder "
            "stream (zeros in ACT's first layer), so there the self-attention output is the "
            "constant b_V W_O + b_O",
        ),
        *check(
            "17.5.2 eq. 17.48",
            "d_k = d_model / H of MultiHeadAttention(512, 8)",
            "64",
            attention.head_dim(D_MODEL, NUM_HEADS),
            note="core.attention.head_dim, the per-head size the module splits into",
        ),
    ]


def _causal_records() -> list[Record]:
    mask = np.asarray(attention.causal_mask(5)[0, 0])
    additive = np.where(np.arange(5)[None, :] <= np.arange(5)[:, None], 0.0, -np.inf)
    module = attention.MultiHeadAttention(SMALL.model_dim, SMALL.num_heads)
    tokens = _random_tokens(3, SEQUENCE_LENGTH)
    params = jax.jit(module.init, static_argnames="deterministic")(
        jax.random.key(4), tokens, deterministic=True
    )
    apply = _jit_apply(module)
    causal = attention.causal_mask(SEQUENCE_LENGTH)
    full = apply(params, tokens, mask=causal, deterministic=True)
    cache = attention.init_kv_cache(1, SEQUENCE_LENGTH, SMALL.num_heads, 8)
    steps = []
    for position in range(SEQUENCE_LENGTH):
        token = tokens[:, position : position + 1]
        output, cache = apply(params, token, cache=cache, deterministic=True, method="decode")
        steps.append(output)
    cached_error = float(jnp.max(jnp.abs(jnp.concatenate(steps, axis=1) - full)))
    return [
        *claim(
            "19.5 eq. 19.12",
            "causal mask M",
            "M_ij = 0 if j ≤ i, -∞ otherwise",
            "core.attention.causal_mask(5) (True = may attend) is exactly M == 0",
            holds=bool(np.array_equal(mask, additive == 0)),
        ),
        *claim(
            "19.9 eq. 19.18",
            "KV-cache decoding",
            "attending to Cache_t ∪ {(k_t, v_t)} at each step reproduces the full model",
            f"{SEQUENCE_LENGTH} single-token steps through a KV cache vs one causal pass: max "
            f"|difference| {cached_error:.1e} (float32)",
            holds=cached_error < 1e-5,
        ),
    ]


def records() -> list[Record]:
    return [*_position_encoding_records(), *_attention_block_records(), *_causal_records()]

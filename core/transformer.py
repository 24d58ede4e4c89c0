"""Transformer encoder and decoder layers and stacks, post-norm (DETR/ACT) or pre-norm.

Book 17.4.2 (eqs. 17.31-17.33, the encoder block), 17.5.1-17.5.2 (eqs. 17.40-17.48, the decoder
block with self- and cross-attention) and 19.5 (eq. 19.9, a stack of causal blocks).

Each sublayer (self-attention, cross-attention, feed-forward) adds its output back to its input
with dropout on the output. Post-norm (DETR, ACT, torch's default) normalizes after the sum,
x <- LN(x + Dropout(sublayer(x))); pre-norm (torch's norm_first, GPT) normalizes the sublayer
input, x <- x + Dropout(sublayer(LN(x))), and a pre-norm stack ends with one more LayerNorm. The
book's eq. 17.33, H = Attn·V + FFN(·), leaves out the residual sums and the norms.

Position embeddings are added to queries and keys, never to values, at every layer, as DETR and
ACT do: encoder self-attention q = k = x + pos, v = x; decoder self-attention q = k = tgt +
query_pos, v = tgt; cross-attention q = tgt + query_pos, k = memory + memory_pos, v = memory
(with pre-norm, x and tgt are the normalized sublayer inputs).

Masks follow `core.attention`: boolean, True = may attend, broadcastable to [B, H, Tq, Tk]
(`attention.causal_mask`, `attention.key_padding_mask`, `attention.combine_masks`).

A causal decoder-only model (GPT, the VLA of 19.5) is a `TransformerEncoder` with a causal mask;
its `decode` runs it token by token over per-layer KV caches.

PyTorch weights. `encoder_layer_params_from_torch` and `decoder_layer_params_from_torch` read
torch's `nn.TransformerEncoderLayer`/`nn.TransformerDecoderLayer` state dicts, which LeRobot's
`ACTEncoderLayer`/`ACTDecoderLayer` share name for name (`self_attn`, `multihead_attn`,
`linear1`, `linear2`, `norm1..3`); the stack converters read `nn.TransformerEncoder`/`Decoder`
and LeRobot's `ACTEncoder`/`ACTDecoder` (`layers.<i>.`, `norm.`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from core import attention, initializers, normalization, regularization, torch_weights
from core.attention import KVCache
from core.checks import check_shapes
from core.torch_weights import KeyRule

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact erf form, as torch's "gelu"
}


@dataclasses.dataclass(frozen=True)
class TransformerLayerConfig:
    """Sizes and options of a transformer layer; the defaults are ACT's (LeRobot ACTConfig).

    Attributes:
      model_dim: d_model, the token size.
      num_heads: H; d_k = model_dim / H (book eq. 17.48).
      ffn_dim: hidden size of the feed-forward network.
      dropout_rate: dropout on attention weights, the feed-forward hidden layer and each
        sublayer output (torch's single `dropout`).
      activation: "relu" or "gelu" (exact).
      pre_norm: False for post-norm (DETR/ACT, torch's default), True for pre-norm.
      layer_norm_epsilon: ε of every LayerNorm.
      dtype: computation dtype of the matmuls (e.g. jnp.bfloat16, accumulated in float32; the
        residual stream and LayerNorms stay float32); None keeps the inputs'.
    """

    model_dim: int = 512
    num_heads: int = 8
    ffn_dim: int = 3200
    dropout_rate: float = 0.1
    activation: str = "relu"
    pre_norm: bool = False
    layer_norm_epsilon: float = 1e-5
    dtype: Any = None

    def __post_init__(self):
        attention.head_dim(self.model_dim, self.num_heads)
        if self.ffn_dim < 1:
            raise ValueError(f"ffn_dim must be positive, got {self.ffn_dim}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )


def _with_position(tokens: jax.Array, position: jax.Array | None) -> jax.Array:
    return tokens if position is None else tokens + position


def _check_tokens(config: TransformerLayerConfig, **named: tuple[Any, tuple]) -> None:
    """Checks token arrays [B, T, D] and their position embeddings [B|1, T, D]."""
    arrays = {name: value for name, value in named.items() if value[0] is not None}
    for name, (array, _) in arrays.items():
        if array.shape[-1] != config.model_dim:
            raise ValueError(
                f"{name} must have model_dim = {config.model_dim} features, got shape "
                f"{list(array.shape)}"
            )
    check_shapes(**arrays)


class FeedForward(nn.Module):
    """Position-wise feed-forward network Dense(ffn_dim) -> activation -> dropout -> Dense.

    Params `hidden` and `output` (torch's `linear1`, `linear2`); kernels xavier-uniform and
    biases as torch.nn.Linear, the init of ACT/DETR.
    """

    config: TransformerLayerConfig

    def _dense(self, features: int, fan_in: int, name: str) -> nn.Dense:
        return nn.Dense(
            features,
            dtype=self.config.dtype,
            kernel_init=initializers.xavier_uniform(),
            bias_init=torch_weights.torch_default_bias_init(fan_in),
            dot_general=attention.float32_accumulating_dot_general,
            name=name,
        )

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        """x: [..., model_dim] -> [..., model_dim]."""
        config = self.config
        hidden = self._dense(config.ffn_dim, config.model_dim, "hidden")(x)
        hidden = _dropout(self, ACTIVATIONS[config.activation](hidden), deterministic)
        return self._dense(config.model_dim, config.ffn_dim, "output")(hidden)


def _dropout(module: nn.Module, x: jax.Array, deterministic: bool) -> jax.Array:
    rate = module.config.dropout_rate
    rng = attention.dropout_rng(module, rate, deterministic)
    return x if rng is None else regularization.dropout(rng, x, rate, train=True)


class _ResidualLayer(nn.Module):
    """Shared residual wiring of the encoder and decoder layers (pre- or post-norm)."""

    config: TransformerLayerConfig

    def _attention(self) -> attention.MultiHeadAttention:
        return attention.MultiHeadAttention(
            self.config.model_dim,
            self.config.num_heads,
            dropout_rate=self.config.dropout_rate,
            dtype=self.config.dtype,
        )

    def _norm(self) -> normalization.LayerNorm:
        return normalization.LayerNorm(epsilon=self.config.layer_norm_epsilon)

    def _sublayer_input(self, x: jax.Array, norm: nn.Module) -> jax.Array:
        return norm(x) if self.config.pre_norm else x

    def _sublayer_output(self, x, update, norm: nn.Module, deterministic: bool) -> jax.Array:
        x = x + _dropout(self, update, deterministic)
        return x if self.config.pre_norm else norm(x)

    def _feed_forward_sublayer(self, x: jax.Array, deterministic: bool) -> jax.Array:
        hidden = self._sublayer_input(x, self.feed_forward_norm)
        update = self.feed_forward(hidden, deterministic=deterministic)
        return self._sublayer_output(x, update, self.feed_forward_norm, deterministic)


class TransformerEncoderLayer(_ResidualLayer):
    """Self-attention and feed-forward sublayers (torch's nn.TransformerEncoderLayer, ACT's
    ACTEncoderLayer); book eqs. 17.31-17.33.

    Params: `self_attention` (MultiHeadAttention), `self_attention_norm`, `feed_forward`,
    `feed_forward_norm` (torch: self_attn, norm1, linear1/linear2, norm2).
    """

    def setup(self):
        self.self_attention = self._attention()
        self.self_attention_norm = self._norm()
        self.feed_forward = FeedForward(self.config)
        self.feed_forward_norm = self._norm()

    def __call__(
        self,
        x: jax.Array,
        *,
        pos: jax.Array | None = None,
        mask: jax.Array | None = None,
        deterministic: bool,
    ) -> jax.Array:
        """Args:
          x: [B, T, D] tokens.
          pos: optional [B|1, T, D] position embedding added to queries and keys.
          mask: optional boolean, broadcastable to [B, H, T, T]; True = may attend.
          deterministic: False applies dropout (the "dropout" rng stream).

        Returns:
          [B, T, D].
        """
        _check_tokens(self.config, x=(x, ("B", "T", None)), pos=(pos, (None, "T", None)))
        hidden = self._sublayer_input(x, self.self_attention_norm)
        query_key = _with_position(hidden, pos)
        update = self.self_attention(
            query_key, query_key, hidden, mask=mask, deterministic=deterministic
        )
        x = self._sublayer_output(x, update, self.self_attention_norm, deterministic)
        return self._feed_forward_sublayer(x, deterministic)

    def decode(
        self,
        x: jax.Array,
        *,
        cache: KVCache,
        pos: jax.Array | None = None,
        mask: jax.Array | None = None,
        deterministic: bool,
    ) -> tuple[jax.Array, KVCache]:
        """The layer applied causally to T_new new tokens over a KV cache of the earlier ones.

        Args:
          x: [B, T_new, D] new tokens.
          cache: the self-attention cache of this layer (H heads of D/H features).
          pos: optional [B|1, T_new, D] position embeddings of the new tokens.
          mask: optional mask over the cache slots replacing the causal default
            (see `attention.kv_cache_mask`).
          deterministic: False applies dropout.

        Returns:
          ([B, T_new, D], the updated cache).
        """
        _check_tokens(self.config, x=(x, ("B", "T", None)), pos=(pos, (None, "T", None)))
        hidden = self._sublayer_input(x, self.self_attention_norm)
        query_key = _with_position(hidden, pos)
        update, cache = self.self_attention.decode(
            query_key, query_key, hidden, cache=cache, mask=mask, deterministic=deterministic
        )
        x = self._sublayer_output(x, update, self.self_attention_norm, deterministic)
        return self._feed_forward_sublayer(x, deterministic), cache


class TransformerDecoderLayer(_ResidualLayer):
    """Self-attention, cross-attention and feed-forward sublayers (torch's
    nn.TransformerDecoderLayer, ACT's ACTDecoderLayer); book eqs. 17.40-17.47.

    Params: `self_attention`, `self_attention_norm`, `cross_attention`, `cross_attention_norm`,
    `feed_forward`, `feed_forward_norm` (torch: self_attn, norm1, multihead_attn, norm2,
    linear1/linear2, norm3).
    """

    def setup(self):
        self.self_attention = self._attention()
        self.self_attention_norm = self._norm()
        self.cross_attention = self._attention()
        self.cross_attention_norm = self._norm()
        self.feed_forward = FeedForward(self.config)
        self.feed_forward_norm = self._norm()

    def __call__(
        self,
        x: jax.Array,
        memory: jax.Array,
        *,
        query_pos: jax.Array | None = None,
        memory_pos: jax.Array | None = None,
        self_mask: jax.Array | None = None,
        cross_mask: jax.Array | None = None,
        deterministic: bool,
    ) -> jax.Array:
        """Args:
          x: [B, Tq, D] decoder tokens (tgt; ACT starts from zeros).
          memory: [B, Tk, D] encoder output attended to.
          query_pos: optional [B|1, Tq, D] added to the decoder queries and self-attention keys.
          memory_pos: optional [B|1, Tk, D] added to the cross-attention keys.
          self_mask: optional boolean, broadcastable to [B, H, Tq, Tq].
          cross_mask: optional boolean, broadcastable to [B, H, Tq, Tk] (e.g. memory padding).
          deterministic: False applies dropout (the "dropout" rng stream).

        Returns:
          [B, Tq, D].
        """
        _check_tokens(
            self.config,
            x=(x, ("B", "Tq", None)),
            memory=(memory, ("B", "Tk", None)),
            query_pos=(query_pos, (None, "Tq", None)),
            memory_pos=(memory_pos, (None, "Tk", None)),
        )
        hidden = self._sublayer_input(x, self.self_attention_norm)
        query_key = _with_position(hidden, query_pos)
        update = self.self_attention(
            query_key, query_key, hidden, mask=self_mask, deterministic=deterministic
        )  # book eq. 17.40, with values from the decoder stream
        x = self._sublayer_output(x, update, self.self_attention_norm, deterministic)
        hidden = self._sublayer_input(x, self.cross_attention_norm)
        update = self.cross_attention(
            _with_position(hidden, query_pos),
            _with_position(memory, memory_pos),
            memory,
            mask=cross_mask,
            deterministic=deterministic,
        )  # book eq. 17.42
        x = self._sublayer_output(x, update, self.cross_attention_norm, deterministic)
        return self._feed_forward_sublayer(x, deterministic)


class _Stack(nn.Module):
    """`num_layers` layers of `layer_type`, then an optional final LayerNorm."""

    config: TransformerLayerConfig
    num_layers: int
    final_norm: bool = False
    layer_type: ClassVar[type[nn.Module]]

    def setup(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be positive, got {self.num_layers}")
        self.layers = [self.layer_type(self.config) for _ in range(self.num_layers)]
        if self.final_norm:
            self.final_layer_norm = normalization.LayerNorm(self.config.layer_norm_epsilon)

    def _finish(self, x: jax.Array) -> jax.Array:
        return self.final_layer_norm(x) if self.final_norm else x


class TransformerEncoder(_Stack):
    """`num_layers` encoder layers, then an optional final LayerNorm (`final_layer_norm`).

    LeRobot's ACTEncoder has the final norm only with pre_norm; torch's nn.TransformerEncoder
    has it when given `norm`. Params `layers_0` .. `layers_{L-1}` and `final_layer_norm`.
    """

    layer_type = TransformerEncoderLayer

    def __call__(
        self,
        x: jax.Array,
        *,
        pos: jax.Array | None = None,
        mask: jax.Array | None = None,
        deterministic: bool,
    ) -> jax.Array:
        """x: [B, T, D]; pos: [B|1, T, D] or None; mask: [B|1, H|1, T, T] or None -> [B, T, D].

        The same position embedding and mask are used at every layer (book eq. 17.25).
        """
        for layer in self.layers:
            x = layer(x, pos=pos, mask=mask, deterministic=deterministic)
        return self._finish(x)

    def decode(
        self,
        x: jax.Array,
        *,
        caches: tuple[KVCache, ...],
        pos: jax.Array | None = None,
        mask: jax.Array | None = None,
        deterministic: bool,
    ) -> tuple[jax.Array, tuple[KVCache, ...]]:
        """Causal incremental decoding (eq. 19.18): x [B, T_new, D] new tokens, one KV cache per
        layer -> ([B, T_new, D], updated caches). Equals `__call__` with a causal mask."""
        if len(caches) != self.num_layers:
            raise ValueError(
                f"caches must hold one cache per layer ({self.num_layers}), got {len(caches)}"
            )
        new_caches = []
        for layer, cache in zip(self.layers, caches, strict=True):
            x, cache = layer.decode(x, cache=cache, pos=pos, mask=mask, deterministic=deterministic)
            new_caches.append(cache)
        return self._finish(x), tuple(new_caches)


class TransformerDecoder(_Stack):
    """`num_layers` decoder layers, then an optional final LayerNorm (`final_layer_norm`).

    LeRobot's ACTDecoder always ends with the final norm (post-norm too); torch's
    nn.TransformerDecoder when given `norm`.
    """

    layer_type = TransformerDecoderLayer

    def __call__(
        self,
        x: jax.Array,
        memory: jax.Array,
        *,
        query_pos: jax.Array | None = None,
        memory_pos: jax.Array | None = None,
        self_mask: jax.Array | None = None,
        cross_mask: jax.Array | None = None,
        deterministic: bool,
    ) -> jax.Array:
        """Arguments as `TransformerDecoderLayer`, shared by every layer; returns [B, Tq, D]."""
        for layer in self.layers:
            x = layer(
                x,
                memory,
                query_pos=query_pos,
                memory_pos=memory_pos,
                self_mask=self_mask,
                cross_mask=cross_mask,
                deterministic=deterministic,
            )
        return self._finish(x)


def init_caches(
    config: TransformerLayerConfig,
    num_layers: int,
    batch_size: int,
    max_length: int,
    dtype=jnp.float32,
) -> tuple[KVCache, ...]:
    """Empty KV caches of `max_length` slots, one per layer of a causal `TransformerEncoder`."""
    head_size = attention.head_dim(config.model_dim, config.num_heads)
    return tuple(
        attention.init_kv_cache(batch_size, max_length, config.num_heads, head_size, dtype=dtype)
        for _ in range(num_layers)
    )


def _layer_norm_rules(torch_prefix: str, path: tuple[str, ...]) -> list[KeyRule]:
    return [
        KeyRule(f"{torch_prefix}weight", (*path, "scale")),
        KeyRule(f"{torch_prefix}bias", (*path, "bias")),
    ]


def _layer_rules(torch_prefix: str, path: tuple[str, ...], kind: str) -> list[KeyRule]:
    """The torch names of one encoder or decoder layer mapped onto our params."""
    attention_names = {"self_attention": "self_attn"}
    norm_names = {"self_attention_norm": "norm1", "feed_forward_norm": "norm2"}
    if kind == "decoder":
        attention_names["cross_attention"] = "multihead_attn"
        norm_names = {
            "self_attention_norm": "norm1",
            "cross_attention_norm": "norm2",
            "feed_forward_norm": "norm3",
        }
    rules = []
    for ours, theirs in attention_names.items():
        rules += attention.multi_head_attention_rules(f"{torch_prefix}{theirs}.", (*path, ours))
    for ours, theirs in (("hidden", "linear1"), ("output", "linear2")):
        rules += [
            KeyRule(
                f"{torch_prefix}{theirs}.weight",
                (*path, "feed_forward", ours, "kernel"),
                torch_weights.linear_kernel_from_torch,
            ),
            KeyRule(f"{torch_prefix}{theirs}.bias", (*path, "feed_forward", ours, "bias")),
        ]
    for ours, theirs in norm_names.items():
        rules += _layer_norm_rules(f"{torch_prefix}{theirs}.", (*path, ours))
    return rules


def _expected_params(module: nn.Module, num_inputs: int, model_dim: int) -> Any:
    tokens = jax.ShapeDtypeStruct((1, 1, model_dim), jnp.float32)
    init = functools.partial(module.init, deterministic=True)
    return jax.eval_shape(init, jax.random.key(0), *[tokens] * num_inputs)["params"]


def _layer_params_from_torch(state_dict, module, kind: str, prefix: str) -> dict[str, Any]:
    expected = _expected_params(module, 1 if kind == "encoder" else 2, module.config.model_dim)
    rules = _layer_rules("", (), kind)
    return torch_weights.convert_state_dict(state_dict, rules, expected, prefix=prefix)


def encoder_layer_params_from_torch(
    state_dict: Mapping[str, Any], config: TransformerLayerConfig, prefix: str = ""
) -> dict[str, Any]:
    """torch nn.TransformerEncoderLayer / LeRobot ACTEncoderLayer state dict -> layer params.

    Args:
      state_dict: name -> array, e.g. from `core.torch_weights.read_state_dict`.
      config: the layer's config (sizes are checked against it).
      prefix: the layer's prefix in a larger state dict, e.g. "model.encoder.layers.0.".

    Raises:
      ValueError naming the key on a missing entry, a shape that does not fit `config`, or an
      entry under `prefix` with no place in the layer.
    """
    module = TransformerEncoderLayer(config)
    return _layer_params_from_torch(state_dict, module, "encoder", prefix)


def decoder_layer_params_from_torch(
    state_dict: Mapping[str, Any], config: TransformerLayerConfig, prefix: str = ""
) -> dict[str, Any]:
    """torch nn.TransformerDecoderLayer / LeRobot ACTDecoderLayer state dict -> layer params;
    arguments and errors as `encoder_layer_params_from_torch`."""
    module = TransformerDecoderLayer(config)
    return _layer_params_from_torch(state_dict, module, "decoder", prefix)


def _stack_params_from_torch(state_dict, stack, kind: str, prefix: str) -> dict[str, Any]:
    rules = []
    for index in range(stack.num_layers):
        rules += _layer_rules(f"layers.{index}.", (f"layers_{index}",), kind)
    if stack.final_norm:
        rules += _layer_norm_rules("norm.", ("final_layer_norm",))
    expected = _expected_params(stack, 1 if kind == "encoder" else 2, stack.config.model_dim)
    return torch_weights.convert_state_dict(state_dict, rules, expected, prefix=prefix)


def encoder_params_from_torch(
    state_dict: Mapping[str, Any], encoder: TransformerEncoder, prefix: str = ""
) -> dict[str, Any]:
    """torch nn.TransformerEncoder / LeRobot ACTEncoder state dict -> params of `encoder`.

    Reads `layers.<i>.` for each of encoder.num_layers layers and `norm.` when
    encoder.final_norm; a missing or extra layer or norm is an error naming the keys.
    """
    return _stack_params_from_torch(state_dict, encoder, "encoder", prefix)


def decoder_params_from_torch(
    state_dict: Mapping[str, Any], decoder: TransformerDecoder, prefix: str = ""
) -> dict[str, Any]:
    """torch nn.TransformerDecoder / LeRobot ACTDecoder state dict -> params of `decoder`."""
    return _stack_params_from_torch(state_dict, decoder, "decoder", prefix)

"""Attention: scaled dot-product and multi-head attention, boolean masks and a KV cache.

Book 17.4.2 (eqs. 17.31-17.33, self-attention in the ACT encoder), 17.5.2 (eqs. 17.46-17.48,
multi-head attention), 19.5 (eq. 19.12, the causal mask) and 19.9 (eq. 19.18, the KV cache).

Layout. Batch first, heads second to last, as `jax.nn.dot_product_attention` and flax use:
query [B, Tq, H, Dh], key [B, Tk, H, Dh], value [B, Tk, H, Dv] -> output [B, Tq, H, Dv]. A
projection to H heads of size Dh = E / H is a reshape of the last axis (`split_heads`).

Masks. Boolean, True = the query may attend to the key (the convention of flax and jax), rank 4
and broadcastable to [B, H, Tq, Tk]; the builders below return exactly that. PyTorch's boolean
`attn_mask` and `key_padding_mask` mean the opposite (True = masked): pass `~torch_mask` here.
The book's additive mask M of eq. 19.12 (0 or -∞) is `jnp.where(mask, 0, -inf)`.

A fully masked row (a query allowed to see no key, e.g. a padding query over padding keys) has
no softmax: an additive -∞ mask makes it 0/0 = NaN (PyTorch's MultiheadAttention returns NaN
there). Here its attention weights are defined as all zeros, so its output is zero and its
gradients are zero, never NaN.

Precision. Scores QKᵀ/√Dh, the softmax and the attention weights are at least float32 whatever
the input dtype (bfloat16 inputs are multiplied with float32 accumulation); the output has the
dtype of the values.

KV cache (eq. 19.18). For incremental decoding the keys and values of past tokens live in
fixed-size arrays with a write index (`KVCache`), passed in and returned (pure functions, no
mutable collections), so a whole decoding loop runs inside `jax.lax.scan` or `fori_loop`.
Step-by-step decoding through the cache equals recomputing the full sequence with a causal mask.

PyTorch weights. `multi_head_attention_params_from_torch` converts the state-dict entries of a
`torch.nn.MultiheadAttention` (packed `in_proj_weight` [3E, E] or separate `q/k/v_proj_weight`
when kdim/vdim differ) into this module's params, through `core.torch_weights` (which reads
weight files and checks every name and shape); `multi_head_attention_rules` is the name mapping
the transformer converters reuse.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core import initializers, numerics, regularization, torch_weights
from core.checks import check_rank, check_shapes
from core.torch_weights import KeyRule

MASKED_SCORE = float(np.finfo(np.float32).min)
"""The score a masked (query, key) pair gets before the softmax: exp underflows to exactly 0."""


def _check_mask(mask, target_shape: tuple[int, ...]) -> None:
    """Raises ValueError unless `mask` is a boolean rank-4 array broadcastable to target_shape."""
    if mask.dtype != jnp.bool_:
        raise ValueError(
            f"mask must be boolean (True = may attend), got dtype {mask.dtype}; for an additive "
            "mask M use M == 0"
        )
    check_rank("mask", mask, 4)
    fits = all(m in (1, t) for m, t in zip(mask.shape, target_shape, strict=True))
    if not fits:
        raise ValueError(
            f"mask must broadcast to [B, H, Tq, Tk] = {list(target_shape)} (each axis 1 or "
            f"equal), got {list(mask.shape)}"
        )


def attention_weights(query: jax.Array, key: jax.Array, mask: jax.Array | None = None):
    """softmax(Q Kᵀ / √d_k) per head, masked; book eqs. 17.32 and 17.47.

    Args:
      query: [B, Tq, H, Dh] queries.
      key: [B, Tk, H, Dh] keys.
      mask: optional boolean, broadcastable to [B, H, Tq, Tk]; True = may attend.

    Returns:
      [B, H, Tq, Tk] weights in float32 (float64 for float64 inputs); each row sums to 1, or is
      all zeros if fully masked.
    """
    bound = check_shapes(query=(query, ("B", "Tq", "H", "Dh")), key=(key, ("B", "Tk", "H", "Dh")))
    score_dtype = jnp.promote_types(jnp.result_type(query, key), jnp.float32)
    scores = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=score_dtype)
    scores = scores / math.sqrt(bound["Dh"])  # book eq. 17.32, d_k = Dh (eq. 17.48)
    if mask is None:
        return numerics.softmax(scores, axis=-1)
    _check_mask(mask, (bound["B"], bound["H"], bound["Tq"], bound["Tk"]))
    weights = numerics.softmax(jnp.where(mask, scores, MASKED_SCORE), axis=-1)
    row_has_key = jnp.any(mask, axis=-1, keepdims=True)
    return jnp.where(row_has_key, weights, 0.0)  # a fully masked row attends to nothing


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array | None = None,
    *,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
) -> jax.Array:
    """Scaled dot-product attention softmax(Q Kᵀ / √d_k) V per head; book eqs. 17.32, 17.47.

    Args:
      query: [B, Tq, H, Dh] queries.
      key: [B, Tk, H, Dh] keys.
      value: [B, Tk, H, Dv] values.
      mask: optional boolean, broadcastable to [B, H, Tq, Tk]; True = may attend. A fully masked
        query row outputs zeros.
      dropout_rate: drop probability of each attention weight (inverted dropout on the weights
        after the softmax, as PyTorch's MultiheadAttention applies it).
      dropout_rng: key for the dropout mask; None means no dropout (evaluation).

    Returns:
      [B, Tq, H, Dv] in the dtype of `value`.
    """
    check_shapes(key=(key, ("B", "Tk", "H", None)), value=(value, ("B", "Tk", "H", None)))
    weights = attention_weights(query, key, mask)
    if dropout_rng is not None and dropout_rate > 0.0:
        weights = regularization.dropout(dropout_rng, weights, dropout_rate, train=True)
    output = jnp.einsum(
        "bhqk,bkhd->bqhd", weights.astype(value.dtype), value, preferred_element_type=weights.dtype
    )
    return output.astype(value.dtype)


def causal_mask(num_queries: int, num_keys: int | None = None, *, offset=0) -> jax.Array:
    """Query i may attend to key j iff j <= offset + i; book eq. 19.12 (M_ij = 0 iff j <= i).

    Args:
      num_queries: Tq.
      num_keys: Tk; defaults to Tq.
      offset: absolute position of query 0 (an int, a traced scalar, or [B] per example): the
        number of tokens before the queries, e.g. the length of a KV cache before appending.

    Returns:
      [1 or B, 1, Tq, Tk] boolean.
    """
    num_keys = num_queries if num_keys is None else num_keys
    check_rank("offset", offset, (0, 1))
    offset = jnp.reshape(jnp.asarray(offset), (-1, 1, 1, 1))
    query_positions = offset + jnp.arange(num_queries)[:, None]
    return jnp.arange(num_keys)[None, :] <= query_positions


def key_padding_mask(is_pad: jax.Array) -> jax.Array:
    """Masks padding keys: True where the key is real.

    Args:
      is_pad: [B, Tk] boolean, True at padding (the convention of LeRobot's `action_is_pad` and
        of PyTorch's `key_padding_mask`).

    Returns:
      [B, 1, 1, Tk] boolean.
    """
    check_shapes(is_pad=(is_pad, ("B", "Tk")))
    return ~jnp.asarray(is_pad, jnp.bool_)[:, None, None, :]


def segment_mask(query_segment_ids: jax.Array, key_segment_ids: jax.Array | None = None):
    """Block-diagonal mask: a query attends only to keys of its own segment (packed sequences).

    Args:
      query_segment_ids: [B, Tq] integer segment of each query.
      key_segment_ids: [B, Tk] integer segment of each key; defaults to the query ids.

    Returns:
      [B, 1, Tq, Tk] boolean.
    """
    key_segment_ids = query_segment_ids if key_segment_ids is None else key_segment_ids
    check_shapes(
        query_segment_ids=(query_segment_ids, ("B", None)),
        key_segment_ids=(key_segment_ids, ("B", None)),
    )
    return (query_segment_ids[:, :, None] == key_segment_ids[:, None, :])[:, None]


def block_causal_mask(block_ids: jax.Array) -> jax.Array:
    """Causal over blocks, bidirectional within a block: key j visible to query i iff
    block_ids[j] <= block_ids[i].

    Block ids 0, 1, 2, ... give the causal mask of eq. 19.12; all zeros give full attention;
    [0, 0, 0, 1, 2, 3] gives a prefix-LM (a bidirectional image-and-instruction prefix, then
    causal action tokens, as VLAs decode).

    Args:
      block_ids: [B, T] non-decreasing integer block index of each token.

    Returns:
      [B, 1, T, T] boolean.
    """
    check_shapes(block_ids=(block_ids, ("B", "T")))
    return (block_ids[:, None, :] <= block_ids[:, :, None])[:, None]


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
    """Logical AND of boolean rank-4 masks (None entries are skipped; all None gives None).

    Raises:
      ValueError naming the shapes when the masks do not broadcast together.
    """
    present = [mask for mask in masks if mask is not None]
    if not present:
        return None
    for index, mask in enumerate(present):
        check_rank(f"masks[{index}]", mask, 4)
    try:
        jnp.broadcast_shapes(*(mask.shape for mask in present))
    except ValueError as error:
        shapes = [list(mask.shape) for mask in present]
        raise ValueError(f"masks must broadcast together, got shapes {shapes}") from error
    combined = present[0]
    for mask in present[1:]:
        combined = jnp.logical_and(combined, mask)
    return combined


def head_dim(model_dim: int, num_heads: int) -> int:
    """d_k = d_model / H, book eq. 17.48; raises ValueError unless H divides d_model."""
    if num_heads < 1 or model_dim % num_heads != 0:
        raise ValueError(
            f"num_heads must be a positive divisor of the model dimension {model_dim}, "
            f"got {num_heads}"
        )
    return model_dim // num_heads


def split_heads(x: jax.Array, num_heads: int) -> jax.Array:
    """[B, T, E] -> [B, T, H, E/H]: head h holds features h·E/H ... (h+1)·E/H - 1 (17.48)."""
    check_rank("x", x, 3)
    return x.reshape(*x.shape[:2], num_heads, head_dim(x.shape[-1], num_heads))


def merge_heads(x: jax.Array) -> jax.Array:
    """[B, T, H, Dh] -> [B, T, H·Dh]: Concat(head_1, ..., head_H) of eq. 17.46."""
    check_rank("x", x, 4)
    return x.reshape(*x.shape[:2], -1)


class KVCache(NamedTuple):
    """Keys and values of the tokens decoded so far (book eq. 19.18), in fixed-size arrays.

    keys: [B, L, H, Dh] slots 0 .. length-1 hold the keys of past tokens; the rest are unused.
    values: [B, L, H, Dv] the values, same slots.
    length: [] int32, the number of filled slots (the write index).
    """

    keys: jax.Array
    values: jax.Array
    length: jax.Array


def init_kv_cache(
    batch_size: int,
    max_length: int,
    num_heads: int,
    key_head_dim: int,
    value_head_dim: int | None = None,
    dtype=jnp.float32,
) -> KVCache:
    """An empty cache of L = max_length slots."""
    value_head_dim = key_head_dim if value_head_dim is None else value_head_dim
    return KVCache(
        keys=jnp.zeros((batch_size, max_length, num_heads, key_head_dim), dtype),
        values=jnp.zeros((batch_size, max_length, num_heads, value_head_dim), dtype),
        length=jnp.zeros((), jnp.int32),
    )


def append_to_kv_cache(cache: KVCache, keys: jax.Array, values: jax.Array) -> KVCache:
    """Writes the keys and values of T_new tokens at slots length .. length+T_new-1.

    Args:
      cache: the cache before these tokens.
      keys: [B, T_new, H, Dh] keys of the new tokens.
      values: [B, T_new, H, Dv] their values.

    Returns:
      The cache with length + T_new filled slots. Writing past the L slots raises ValueError
      when the length is known (outside jit); under jit the caller must keep
      length + T_new <= L (XLA would clamp the write position).
    """
    num_slots = cache.keys.shape[1]
    check_shapes(
        cache_keys=(cache.keys, ("B", num_slots, "H", "Dh")),
        cache_values=(cache.values, ("B", num_slots, "H", "Dv")),
        keys=(keys, ("B", None, "H", "Dh")),
        values=(values, ("B", keys.shape[1], "H", "Dv")),
    )
    num_new = keys.shape[1]
    if not isinstance(cache.length, jax.core.Tracer) and int(cache.length) + num_new > num_slots:
        raise ValueError(
            f"the KV cache holds {num_slots} slots, {int(cache.length)} are filled: cannot append "
            f"{num_new} more tokens"
        )
    return KVCache(
        keys=jax.lax.dynamic_update_slice_in_dim(
            cache.keys, keys.astype(cache.keys.dtype), cache.length, axis=1
        ),
        values=jax.lax.dynamic_update_slice_in_dim(
            cache.values, values.astype(cache.values.dtype), cache.length, axis=1
        ),
        length=cache.length + num_new,
    )


def kv_cache_mask(cache: KVCache, num_new: int, mask: jax.Array | None = None) -> jax.Array:
    """The mask of T_new queries appended to `cache` (before appending) over its L slots.

    Args:
      cache: the cache before the new tokens; query i sits at position cache.length + i.
      num_new: T_new.
      mask: optional boolean [B|1, H|1, T_new|1, L|1] replacing the causal default (e.g. a
        bidirectional prefix); slots past the new length stay masked either way.

    Returns:
      [B|1, 1|H, T_new, L] boolean: causal over the filled slots by default.
    """
    num_slots = cache.keys.shape[1]
    if mask is None:
        return causal_mask(num_new, num_slots, offset=cache.length)
    filled = (jnp.arange(num_slots) < cache.length + num_new)[None, None, None, :]
    return combine_masks(mask, filled)


def dropout_rng(module: nn.Module, rate: float, deterministic: bool) -> jax.Array | None:
    """A key from `module`'s "dropout" stream when dropout is active, else None."""
    return None if deterministic or rate == 0.0 else module.make_rng("dropout")


def float32_accumulating_dot_general(lhs, rhs, dimension_numbers, precision=None):
    """`lax.dot_general` accumulating in at least float32, for nn.Dense(dot_general=...).

    bfloat16 inputs multiplied with float32 accumulation and output run ~2x faster than float32
    on this CPU (and keep float32 sums); plain bfloat16 output is slower than float32.
    """
    accumulation = jnp.promote_types(jnp.result_type(lhs, rhs), jnp.float32)
    return jax.lax.dot_general(
        lhs, rhs, dimension_numbers, precision=precision, preferred_element_type=accumulation
    )


def packed_projection_init(num_packed: int = 3) -> initializers.Initializer:
    """Xavier-uniform of one slice of a packed [E_in, num_packed·E] kernel.

    PyTorch's MultiheadAttention draws W_Q, W_K, W_V as one xavier-uniform `in_proj_weight`
    [3E, E] (bound √(6 / 4E)); each [E_in, E] projection initialized with this has exactly that
    distribution.
    """
    packed = initializers.xavier_uniform()

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        fan_in, features = shape
        return packed(key, (fan_in, num_packed * features), dtype)[:, :features]

    return init


class MultiHeadAttention(nn.Module):
    """Multi-head attention, book eqs. 17.46-17.48: Concat(head_1..head_H) W_O.

    Params: `query`, `key`, `value` and `out` Dense layers with bias (W_Q, W_K, W_V [E_in, E]
    and W_O [E, E] as kernels). Initialized as PyTorch's MultiheadAttention in ACT/DETR: W_Q,
    W_K, W_V xavier-uniform as one packed matrix, W_O xavier-uniform, biases zero.

    Attributes:
      model_dim: E = H · d_k, the projection and output size (torch's `embed_dim`).
      num_heads: H.
      dropout_rate: dropout on the attention weights, active when `deterministic` is False
        (uses the "dropout" rng stream).
      dtype: computation dtype (e.g. jnp.bfloat16: projections multiply in bfloat16 and
        accumulate in float32; q, k, v and the output are stored in it); None keeps the inputs'.
      param_dtype: dtype of the params.
    """

    model_dim: int
    num_heads: int
    dropout_rate: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32
    projection_kernel_init: Callable = packed_projection_init(3)
    out_kernel_init: Callable = initializers.xavier_uniform()

    def setup(self):
        head_dim(self.model_dim, self.num_heads)

        def dense(kernel_init):
            return nn.Dense(
                self.model_dim,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=kernel_init,
                bias_init=nn.initializers.zeros,
                dot_general=float32_accumulating_dot_general,
            )

        self.query = dense(self.projection_kernel_init)
        self.key = dense(self.projection_kernel_init)
        self.value = dense(self.projection_kernel_init)
        self.out = dense(self.out_kernel_init)

    def _project(self, query_inputs, key_inputs, value_inputs):
        key_inputs = query_inputs if key_inputs is None else key_inputs
        value_inputs = key_inputs if value_inputs is None else value_inputs
        check_shapes(
            query_inputs=(query_inputs, ("B", None, None)),
            key_inputs=(key_inputs, ("B", "Tk", None)),
            value_inputs=(value_inputs, ("B", "Tk", None)),
        )
        return tuple(
            split_heads(self._in_compute_dtype(dense(inputs)), self.num_heads)
            for dense, inputs in (
                (self.query, query_inputs),
                (self.key, key_inputs),
                (self.value, value_inputs),
            )
        )  # book eq. 17.31 / 17.48

    def _in_compute_dtype(self, x: jax.Array) -> jax.Array:
        return x if self.dtype is None else x.astype(self.dtype)

    def _attend(self, query, key, value, mask, deterministic: bool) -> jax.Array:
        heads = dot_product_attention(
            query,
            key,
            value,
            mask,
            dropout_rate=self.dropout_rate,
            dropout_rng=dropout_rng(self, self.dropout_rate, deterministic),
        )
        return self._in_compute_dtype(self.out(merge_heads(heads)))  # book eq. 17.46

    def __call__(
        self,
        query_inputs: jax.Array,
        key_inputs: jax.Array | None = None,
        value_inputs: jax.Array | None = None,
        *,
        mask: jax.Array | None = None,
        deterministic: bool,
    ) -> jax.Array:
        """Self-attention (only `query_inputs`) or cross-attention.

        Args:
          query_inputs: [B, Tq, E_q] tokens the queries are projected from.
          key_inputs: [B, Tk, E_k] tokens the keys are projected from; default query_inputs.
          value_inputs: [B, Tk, E_v] tokens the values are projected from; default key_inputs.
          mask: optional boolean, broadcastable to [B, H, Tq, Tk]; True = may attend.
          deterministic: False applies attention-weight dropout.

        Returns:
          [B, Tq, E].
        """
        query, key, value = self._project(query_inputs, key_inputs, value_inputs)
        return self._attend(query, key, value, mask, deterministic)

    def decode(
        self,
        query_inputs: jax.Array,
        key_inputs: jax.Array | None = None,
        value_inputs: jax.Array | None = None,
        *,
        cache: KVCache,
        mask: jax.Array | None = None,
        deterministic: bool,
    ) -> tuple[jax.Array, KVCache]:
        """Self-attention of T_new new tokens over the cached ones and themselves (eq. 19.18).

        Args:
          query_inputs: [B, T_new, E_q] the new tokens (queries).
          key_inputs: [B, T_new, E_k] their key inputs; default query_inputs.
          value_inputs: [B, T_new, E_v] their value inputs; default key_inputs.
          cache: keys and values of the earlier tokens, H heads of E/H features.
          mask: optional boolean [B|1, H|1, T_new|1, L|1] over the cache slots, replacing the
            causal default (see `kv_cache_mask`).
          deterministic: False applies attention-weight dropout.

        Returns:
          ([B, T_new, E] outputs, the cache with the new tokens appended).
        """
        num_new = query_inputs.shape[1]
        if key_inputs is not None and key_inputs.shape[1] != num_new:
            raise ValueError(
                f"key_inputs must hold the same {num_new} new tokens as query_inputs, got shape "
                f"{list(key_inputs.shape)}"
            )
        query, key, value = self._project(query_inputs, key_inputs, value_inputs)
        cache_mask = kv_cache_mask(cache, query.shape[1], mask)
        cache = append_to_kv_cache(cache, key, value)
        output = self._attend(query, cache.keys, cache.values, cache_mask, deterministic)
        return output, cache


def _packed_part(array: np.ndarray, index: int) -> np.ndarray:
    """The index-th third of a packed [3E, ...] entry (q, k, v), as a flax kernel or bias."""
    array = np.asarray(array)
    size = array.shape[0] // 3
    part = array[index * size : (index + 1) * size]
    return torch_weights.linear_kernel_from_torch(part) if part.ndim == 2 else part


def multi_head_attention_rules(
    torch_prefix: str = "", path: tuple[str, ...] = (), *, packed: bool = True
) -> list[KeyRule]:
    """Where a torch.nn.MultiheadAttention's entries go in `MultiHeadAttention` params.

    Args:
      torch_prefix: the attention's name prefix in the state dict, e.g. "self_attn.".
      path: the attention's path in our params, e.g. ("self_attention",).
      packed: True for `in_proj_weight` [3E, E] (kdim = vdim = E); False for separate
        `q_proj_weight` [E, E], `k_proj_weight` [E, kdim], `v_proj_weight` [E, vdim].
    """
    rules = []
    for index, name in enumerate(("query", "key", "value")):
        packed_part = functools.partial(_packed_part, index=index)
        if packed:
            weight = KeyRule(f"{torch_prefix}in_proj_weight", (*path, name, "kernel"), packed_part)
        else:
            weight = KeyRule(
                f"{torch_prefix}{name[0]}_proj_weight",
                (*path, name, "kernel"),
                torch_weights.linear_kernel_from_torch,
            )
        bias = KeyRule(f"{torch_prefix}in_proj_bias", (*path, name, "bias"), packed_part)
        rules += [weight, bias]
    out_kernel = KeyRule(
        f"{torch_prefix}out_proj.weight",
        (*path, "out", "kernel"),
        torch_weights.linear_kernel_from_torch,
    )
    return [*rules, out_kernel, KeyRule(f"{torch_prefix}out_proj.bias", (*path, "out", "bias"))]


def multi_head_attention_params_from_torch(
    state_dict: Mapping[str, Any],
    module: MultiHeadAttention,
    prefix: str = "",
    *,
    key_input_dim: int | None = None,
    value_input_dim: int | None = None,
) -> dict[str, Any]:
    """torch.nn.MultiheadAttention state-dict entries -> params of `module`.

    Reads `in_proj_weight` [3E, E] (or `q_proj_weight` [E, E], `k_proj_weight` [E, kdim],
    `v_proj_weight` [E, vdim] when kdim/vdim differ from E), `in_proj_bias` [3E],
    `out_proj.weight` [E, E] and `out_proj.bias` [E].

    Args:
      state_dict: name -> array, e.g. from `core.torch_weights.read_state_dict`.
      module: the MultiHeadAttention to load (E = module.model_dim).
      prefix: the attention's prefix in a larger state dict, e.g. "layers.0.self_attn.".
      key_input_dim: kdim, the size of the key inputs; default E.
      value_input_dim: vdim, the size of the value inputs; default kdim.

    Returns:
      {"query", "key", "value", "out": {"kernel", "bias"}}, to use as {"params": ...}.

    Raises:
      ValueError naming the key on a missing entry, a shape that does not fit the module, or
      an entry under `prefix` with no place in it (e.g. `bias_k` of add_bias_kv).
    """
    key_input_dim = module.model_dim if key_input_dim is None else key_input_dim
    value_input_dim = key_input_dim if value_input_dim is None else value_input_dim
    inputs = [
        jax.ShapeDtypeStruct((1, 1, size), jnp.float32)
        for size in (module.model_dim, key_input_dim, value_input_dim)
    ]
    expected = jax.eval_shape(
        functools.partial(module.init, deterministic=True), jax.random.key(0), *inputs
    )["params"]
    packed = prefix + "in_proj_weight" in state_dict
    rules = multi_head_attention_rules(packed=packed)
    return torch_weights.convert_state_dict(state_dict, rules, expected, prefix=prefix)

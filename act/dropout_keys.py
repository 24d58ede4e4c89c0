"""A fast counter-based random-bit generator for dropout masks, as a JAX PRNG implementation.

Book 7.4 and 8.3 (dropout, eqs. 7.17 and 8.27-8.28: a fresh Bernoulli(1 - p) mask per unit
and per step) and 17.10 (ACT trains with dropout 0.1 in every transformer layer).

A full-size ACT train step at batch 8 draws ~21 M dropout bits (the CVAE encoder's 102 tokens
× 4 layers dominate). With JAX's default threefry-2x32 (20 rounds per pair of words) they cost
as much as a third of the step on this CPU; XLA's RngBitGenerator ("rbg" keys) is slower
still here. This generator hashes the element's index instead: bits = fmix32(fmix32(i·φ + k₀)
⊕ k₁), with MurmurHash3's 32-bit finalizer fmix32 (full avalanche: each input bit flips each
output bit with probability ~1/2) and (k₀, k₁) the key. It is elementwise integer arithmetic
that XLA fuses into the dropout itself, ~10x cheaper than threefry per bit. It is a hash, not a
cryptographic generator: good enough for dropout masks (the keep rate, the independence of
neighbouring units and of successive keys are tested), not meant for sampling in general.

Key derivation (split, fold_in, seeding) is threefry's on the same (2,) uint32 key data, so
flax's per-layer `make_rng("dropout")` keys stay independent; only the bulk bits are hashed.
`dropout_key(key)` rewraps a threefry key's data as a key of this implementation; code that
draws dropout masks (core.regularization.dropout through jax.random.bernoulli) needs no change.
"""

from __future__ import annotations

import math

import jax
import jax.extend.random as jex_random
import jax.numpy as jnp

GOLDEN_RATIO_32 = 0x9E3779B9
"""⌊2³² / φ⌋: spreads consecutive indices over the 32-bit words before hashing."""
BIT_WIDTHS = (8, 16, 32)


def fmix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's finalizer: a bijection of uint32 with full avalanche. x: uint32, any shape."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def hashed_bits(key_data: jax.Array, bit_width: int, shape: tuple[int, ...]) -> jax.Array:
    """fmix32(fmix32(i·φ + k₀) ⊕ k₁) for the row-major index i of each element, reduced to its
    top `bit_width` bits.

    Args:
      key_data: [2] uint32 (k₀, k₁).
      bit_width: 8, 16 or 32.
      shape: the output shape; at most 2³² elements.

    Returns:
      [*shape] uint8, uint16 or uint32.
    """
    if bit_width not in BIT_WIDTHS:
        raise ValueError(f"bit_width must be one of {BIT_WIDTHS}, got {bit_width}")
    size = math.prod(shape)
    if size > 2**32:
        raise ValueError(f"at most 2^32 elements can be drawn at once, got shape {shape}")
    index = jax.lax.iota(jnp.uint32, size)
    bits = fmix32(fmix32(index * jnp.uint32(GOLDEN_RATIO_32) + key_data[0]) ^ key_data[1])
    bits = (bits >> (32 - bit_width)).astype(jnp.dtype(f"uint{bit_width}"))
    return bits.reshape(shape)


def _threefry_key(key_data: jax.Array) -> jax.Array:
    return jax.random.wrap_key_data(key_data, impl="threefry2x32")


def _seed(seed: jax.Array) -> jax.Array:
    return jax.random.key_data(jax.random.key(seed, impl="threefry2x32"))


def _split(key_data: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.key_data(jax.random.split(_threefry_key(key_data), shape))


def _fold_in(key_data: jax.Array, data: jax.Array) -> jax.Array:
    return jax.random.key_data(jax.random.fold_in(_threefry_key(key_data), data))


HASH_PRNG = jex_random.define_prng_impl(
    key_shape=(2,),
    seed=_seed,
    split=_split,
    random_bits=hashed_bits,
    fold_in=_fold_in,
    name="fmix32_hash",
    tag="fmh",
)
"""The JAX PRNG implementation: threefry's key derivation, hashed bulk bits."""


def dropout_key(key: jax.Array) -> jax.Array:
    """A key of `HASH_PRNG` with the data of `key` (a threefry key, typed or raw uint32[2])."""
    data = key if jnp.issubdtype(key.dtype, jnp.unsignedinteger) else jax.random.key_data(key)
    return jax.random.wrap_key_data(data, impl=HASH_PRNG)

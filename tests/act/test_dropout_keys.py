"""The hashed dropout bits (act.dropout_keys): MurmurHash3's finalizer against a pure-Python
reference, and the statistics a dropout mask needs (book eqs. 7.17, 8.27): the keep rate
1 - p, unbiased bits, independent neighbours and independent keys, reproducible per key."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from act.dropout_keys import HASH_PRNG, dropout_key, fmix32, hashed_bits
from core import regularization

SIZE = 1_000_000
SIGMAS = 5.0  # tolerances below are 5 standard errors of the estimated statistic


def _python_fmix32(value: int) -> int:
    mask = 0xFFFFFFFF
    value ^= value >> 16
    value = (value * 0x85EBCA6B) & mask
    value ^= value >> 13
    value = (value * 0xC2B2AE35) & mask
    return value ^ (value >> 16)


def test_fmix32_is_murmur3s_finalizer_and_the_bits_hash_the_index():
    values = np.array([0, 1, 2, 0xDEADBEEF, 0xFFFFFFFF], np.uint32)
    expected = [_python_fmix32(int(v)) for v in values]
    np.testing.assert_array_equal(fmix32(jnp.asarray(values)), np.array(expected, np.uint32))
    key_data = np.array([123, 456], np.uint32)
    bits = hashed_bits(jnp.asarray(key_data), 32, (2, 3))
    expected = [
        _python_fmix32(_python_fmix32((i * 0x9E3779B9 + 123) & 0xFFFFFFFF) ^ 456) for i in range(6)
    ]
    np.testing.assert_array_equal(bits, np.array(expected, np.uint32).reshape(2, 3))
    np.testing.assert_array_equal(
        hashed_bits(jnp.asarray(key_data), 8, (6,)), bits.reshape(-1) >> 24
    )


def test_every_bit_is_one_half_of_the_time():
    bits = np.asarray(jax.random.bits(dropout_key(jax.random.key(0)), (SIZE,), jnp.uint32))
    frequencies = np.unpackbits(bits.view(np.uint8)).reshape(SIZE, 32).mean(axis=0)
    assert np.abs(frequencies - 0.5).max() < SIGMAS * 0.5 / np.sqrt(SIZE)


def test_dropout_keeps_one_minus_p_with_independent_neighbours_and_keys():
    rate = 0.1
    key = dropout_key(jax.random.key(1))
    ones = jnp.ones((SIZE,))
    kept = np.asarray(regularization.dropout(key, ones, rate, train=True) > 0, np.float64)
    standard_error = np.sqrt(rate * (1 - rate) / SIZE)
    assert abs(kept.mean() - (1 - rate)) < SIGMAS * standard_error
    neighbours = np.corrcoef(kept[:-1], kept[1:])[0, 1]
    other_key = jax.random.fold_in(key, 1)
    other = np.asarray(regularization.dropout(other_key, ones, rate, train=True) > 0, np.float64)
    across_keys = np.corrcoef(kept, other)[0, 1]
    assert abs(neighbours) < SIGMAS / np.sqrt(SIZE) and abs(across_keys) < SIGMAS / np.sqrt(SIZE)
    again = np.asarray(regularization.dropout(key, ones, rate, train=True) > 0, np.float64)
    np.testing.assert_array_equal(again, kept)


def test_keys_derive_like_threefry_and_flax_layers_get_their_own_masks():
    key = jax.random.key(2)
    hashed = dropout_key(key)
    assert jax.random.key_impl(hashed) == HASH_PRNG
    np.testing.assert_array_equal(
        jax.random.key_data(jax.random.fold_in(hashed, 3)),
        jax.random.key_data(jax.random.fold_in(key, 3)),
    )
    np.testing.assert_array_equal(
        jax.random.key_data(jax.random.split(hashed, 2)),
        jax.random.key_data(jax.random.split(key, 2)),
    )

    class TwoDropouts(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dropout(0.5, deterministic=False)(x), nn.Dropout(0.5, deterministic=False)(x)

    first, second = TwoDropouts().apply({}, jnp.ones(64), rngs={"dropout": hashed})
    assert np.any(np.asarray(first) != np.asarray(second))


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="bit_width must be one of"):
        hashed_bits(jnp.zeros(2, jnp.uint32), 64, (3,))

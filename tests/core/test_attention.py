"""Attention (book 17.4.2, 17.5.2, 19.5, 19.9) against explicit loops, jax.nn, torch and itself.

References: a float64 numpy loop over (batch, head, query) rows; `jax.nn.dot_product_attention`;
golden outputs of torch.nn.MultiheadAttention (tests/fixtures/parity/attention.npz, written by
`python -m experiments.parity --only attention`); full recomputation for the KV cache.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core import attention, regularization
from experiments.parity import attention as reference
from experiments.parity.common import FIXTURE_DIR

FIXTURE = np.load(f"{FIXTURE_DIR}/attention.npz")
PARITY_TOLERANCE = 1e-5  # float32 layers against torch
# Jitted once per shape: one compilation per test instead of one per primitive.
attend = jax.jit(attention.dot_product_attention, static_argnames="dropout_rate")
attention_weights = jax.jit(attention.attention_weights)
# [B, Tq, Tk, H, Dh, Dv] and mask shapes broadcastable to [B, H, Tq, Tk]
SHAPES = [(2, 3, 5, 2, 4, 3), (1, 4, 4, 3, 2, 2)]
MASK_PATTERNS = [lambda b, h, q, k: (b, h, q, k), lambda b, h, q, k: (b, 1, 1, k),
                 lambda b, h, q, k: (1, 1, q, k), lambda b, h, q, k: (b, 1, q, 1)]  # fmt: skip


def normal_arrays(seed, *shapes):
    """Standard normal float32 arrays from numpy (no jax.random compilation in the tests)."""
    generator = np.random.default_rng(seed)
    return [generator.standard_normal(shape).astype(np.float32) for shape in shapes]


def grid_arrays(shape):
    """Entries on a 1e-2 grid in [-3, 3] (no subnormals, which XLA flushes to zero)."""
    elements = st.integers(-300, 300).map(lambda n: n / 100)
    return hnp.arrays(np.float64, shape, elements=elements)


def loop_attention(query, key, value, mask):
    """softmax(q·k/√d) v for every (b, h, i) row separately, in float64; masked rows are 0."""
    batch, num_queries, num_heads, depth = query.shape
    mask = np.broadcast_to(mask, (batch, num_heads, num_queries, key.shape[1]))
    output = np.zeros((batch, num_queries, num_heads, value.shape[-1]))
    for b in range(batch):
        for h in range(num_heads):
            for i in range(num_queries):
                allowed = np.flatnonzero(mask[b, h, i])
                if allowed.size == 0:
                    continue
                scores = np.array([query[b, i, h] @ key[b, j, h] for j in allowed])
                weights = np.exp(scores / math.sqrt(depth) - np.max(scores / math.sqrt(depth)))
                weights /= weights.sum()
                output[b, i, h] = sum(
                    w * value[b, j, h] for w, j in zip(weights, allowed, strict=True)
                )
    return output


@st.composite
def attention_inputs(draw):
    batch, num_queries, num_keys, heads, depth, value_depth = draw(st.sampled_from(SHAPES))
    mask_shape = draw(st.sampled_from(MASK_PATTERNS))(batch, heads, num_queries, num_keys)
    return (
        draw(grid_arrays((batch, num_queries, heads, depth))),
        draw(grid_arrays((batch, num_keys, heads, depth))),
        draw(grid_arrays((batch, num_keys, heads, value_depth))),
        draw(hnp.arrays(np.bool_, mask_shape)),
    )


@given(inputs=attention_inputs())
def test_attention_equals_a_row_by_row_softmax_loop_with_masked_rows_zero(x64, inputs):
    query, key, value, mask = inputs
    output = attend(query, key, value, jnp.asarray(mask))
    np.testing.assert_allclose(output, loop_attention(query, key, value, mask), atol=1e-12)


@given(inputs=attention_inputs())
def test_attention_weight_rows_sum_to_one_or_to_zero_when_fully_masked(inputs):
    query, key, _, mask = inputs
    weights = attention_weights(query.astype(np.float32), key.astype(np.float32), mask)
    full_mask = np.broadcast_to(mask, weights.shape)
    np.testing.assert_allclose(weights.sum(-1), full_mask.any(-1).astype(np.float32), atol=1e-6)
    assert np.all(np.asarray(weights)[~full_mask] == 0.0)


def test_attention_matches_jax_nn_dot_product_attention_with_a_padding_mask():
    query, key, value = normal_arrays(0, *[(2, 5, 4, 8)] * 3)
    is_pad = jnp.array([[False] * 5, [False, False, False, True, True]])
    mask = attention.combine_masks(attention.causal_mask(5), attention.key_padding_mask(is_pad))
    expected = jax.jit(jax.nn.dot_product_attention)(query, key, value, mask=mask)
    actual = attend(query, key, value, mask)
    np.testing.assert_allclose(actual, expected, atol=1e-6)


def test_fully_masked_row_outputs_zeros_with_finite_gradients_and_leaves_other_rows_alone():
    query, key, value = normal_arrays(1, *[(1, 3, 2, 4)] * 3)
    mask = jnp.ones((1, 1, 3, 3), bool).at[0, 0, 1].set(False)  # query 1 sees no key

    def loss(q, k, v):
        return jnp.sum(attention.dot_product_attention(q, k, v, mask) ** 2)

    output = attend(query, key, value, mask)
    gradients = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(query, key, value)
    assert np.all(np.asarray(output[:, 1]) == 0.0)
    assert all(np.all(np.isfinite(g)) for g in gradients)
    assert np.all(np.asarray(gradients[0][:, 1]) == 0.0)  # the masked query gets no gradient
    unmasked = attend(query, key, value)
    np.testing.assert_allclose(output[:, [0, 2]], unmasked[:, [0, 2]], atol=1e-6)


def test_bfloat16_attention_computes_weights_in_float32_and_stays_near_float32():
    query, key, value = normal_arrays(2, *[(2, 6, 2, 16)] * 3)
    mask = attention.causal_mask(6)
    half = [x.astype(jnp.bfloat16) for x in (query, key, value)]
    assert attention_weights(*half[:2], mask).dtype == jnp.float32
    output = attend(*half, mask)
    assert output.dtype == jnp.bfloat16
    # Inputs rounded to bf16 (relative 2^-9) move unit-scale outputs by ~1e-2 at most.
    expected = attend(query, key, value, mask)
    np.testing.assert_allclose(output.astype(jnp.float32), expected, atol=3e-2)


def test_attention_weight_dropout_is_inverted_dropout_of_the_weights_with_that_key():
    query, key, value = normal_arrays(3, *[(2, 4, 2, 8)] * 3)
    rate = 0.25

    @jax.jit
    def with_and_without_dropout(dropout_rng):
        output = attention.dot_product_attention(
            query, key, value, dropout_rate=rate, dropout_rng=dropout_rng
        )
        weights = attention.attention_weights(query, key)
        dropped = regularization.dropout(dropout_rng, weights, rate, train=True)
        expected = jnp.einsum("bhqk,bkhd->bqhd", dropped, value)
        return output, expected, attention.dot_product_attention(query, key, value)

    output, expected, without = with_and_without_dropout(jax.random.key(3))
    np.testing.assert_allclose(output, expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(output, without)


def test_causal_mask_is_eq_19_12_and_offset_shifts_the_queries():
    np.testing.assert_array_equal(attention.causal_mask(4)[0, 0], np.tril(np.ones((4, 4), bool)))
    shifted = attention.causal_mask(2, 5, offset=jnp.array([1, 3]))  # per-example offsets
    np.testing.assert_array_equal(shifted[0, 0], np.tril(np.ones((2, 5), bool), k=1))
    np.testing.assert_array_equal(shifted[1, 0], np.tril(np.ones((2, 5), bool), k=3))


def test_block_causal_mask_gives_causal_full_and_prefix_lm_masks():
    causal = attention.block_causal_mask(jnp.arange(5)[None])
    np.testing.assert_array_equal(causal, attention.causal_mask(5))
    assert np.all(np.asarray(attention.block_causal_mask(jnp.zeros((1, 5), int))))
    prefix_lm = np.asarray(attention.block_causal_mask(jnp.array([[0, 0, 0, 1, 2]]))[0, 0])
    expected = np.tril(np.ones((5, 5), bool))
    expected[:3, :3] = True  # the prefix is bidirectional
    np.testing.assert_array_equal(prefix_lm, expected)


def test_segment_and_key_padding_masks_against_explicit_comparisons():
    segments = jnp.array([[0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(
        attention.segment_mask(segments)[0, 0], np.equal.outer([0, 0, 1, 1, 1], [0, 0, 1, 1, 1])
    )
    is_pad = jnp.array([[False, True, False]])
    np.testing.assert_array_equal(attention.key_padding_mask(is_pad), [[[[True, False, True]]]])


def test_combine_masks_is_a_broadcast_logical_and_that_skips_none():
    padding = attention.key_padding_mask(jnp.array([[False, False, True]] * 2))
    combined = attention.combine_masks(None, attention.causal_mask(3), padding)
    expected = np.tril(np.ones((3, 3), bool))[None, None] & np.array([True, True, False])
    np.testing.assert_array_equal(combined, np.broadcast_to(expected, (2, 1, 3, 3)))
    assert attention.combine_masks(None, None) is None
    with pytest.raises(ValueError, match=r"broadcast together.*\[1, 1, 3, 3\], \[1, 1, 4, 4\]"):
        attention.combine_masks(attention.causal_mask(3), attention.causal_mask(4))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (jnp.ones((2, 5, 7), bool), r"mask must have rank 4"),
        (jnp.ones((2, 1, 4, 7), bool), r"\[B, H, Tq, Tk\] = \[2, 3, 5, 7\].*got \[2, 1, 4, 7\]"),
        (jnp.zeros((2, 1, 5, 7)), r"mask must be boolean"),
    ],
)
def test_masks_of_the_wrong_shape_or_dtype_are_rejected_with_the_shapes(mask, message):
    query, key = jnp.zeros((2, 5, 3, 4)), jnp.zeros((2, 7, 3, 4))
    with pytest.raises(ValueError, match=message):
        attend(query, key, key, mask)


def test_mismatched_query_key_value_shapes_name_the_argument():
    with pytest.raises(ValueError, match=r"key must have shape \[B, Tk, H, Dh\] with Dh=4"):
        attention.attention_weights(jnp.zeros((2, 5, 3, 4)), jnp.zeros((2, 7, 3, 6)))
    with pytest.raises(ValueError, match=r"value must have shape \[B, Tk, H, \*\] with Tk=7"):
        attention.dot_product_attention(
            jnp.zeros((2, 5, 3, 4)), jnp.zeros((2, 7, 3, 4)), jnp.zeros((2, 6, 3, 4))
        )


def test_head_dim_is_eq_17_48_and_rejects_non_divisors():
    assert attention.head_dim(512, 8) == 64
    x = jnp.arange(2 * 3 * 12.0).reshape(2, 3, 12)
    np.testing.assert_array_equal(attention.merge_heads(attention.split_heads(x, 4)), x)
    with pytest.raises(ValueError, match=r"num_heads must be a positive divisor of .* 512, got 7"):
        attention.head_dim(512, 7)


def _mha(model_dim=reference.EMBED_DIM, num_heads=reference.NUM_HEADS, **kwargs):
    return attention.MultiHeadAttention(model_dim, num_heads, **kwargs)


def jit_apply(module):
    return jax.jit(module.apply, static_argnames=("deterministic", "method"))


def _reference_params(case):
    kdim, vdim, *_ = reference.CASES[case]
    return attention.multi_head_attention_params_from_torch(
        reference.state_dict(case), _mha(), key_input_dim=kdim, value_input_dim=vdim
    )


def _reference_mask(case):
    _, _, num_queries, num_keys, causal = reference.CASES[case]
    causal_part = attention.causal_mask(num_queries, num_keys) if causal else None
    return attention.combine_masks(
        causal_part, attention.key_padding_mask(reference.is_pad(num_keys))
    )


@pytest.mark.parametrize("case", list(reference.CASES))
def test_multi_head_attention_matches_torch_multihead_attention(case):
    inputs = reference.inputs(case)
    output = jit_apply(_mha())(
        {"params": _reference_params(case)},
        inputs["query"],
        inputs["key"],
        inputs["value"],
        mask=_reference_mask(case),
        deterministic=True,
    )
    np.testing.assert_allclose(output, FIXTURE[f"{case}/output"], atol=PARITY_TOLERANCE)


@pytest.mark.parametrize("case", list(reference.CASES))
def test_per_head_attention_weights_match_torch(case):
    params, inputs = _reference_params(case), reference.inputs(case)

    def project(name, role):
        projected = inputs[role] @ params[name]["kernel"] + params[name]["bias"]
        return attention.split_heads(jnp.asarray(projected), reference.NUM_HEADS)

    weights = attention.attention_weights(
        project("query", "query"), project("key", "key"), _reference_mask(case)
    )
    np.testing.assert_allclose(weights, FIXTURE[f"{case}/weights"], atol=PARITY_TOLERANCE)


def test_bfloat16_multi_head_attention_stays_near_the_float32_torch_output():
    inputs = reference.inputs("cross")
    output = jit_apply(_mha(dtype=jnp.bfloat16))(
        {"params": _reference_params("cross")},
        inputs["query"],
        inputs["key"],
        inputs["value"],
        mask=_reference_mask("cross"),
        deterministic=True,
    )
    assert output.dtype == jnp.bfloat16
    # Four bf16 matmuls in a row, each rounding inputs to 8 significant bits (2^-9 relative):
    # ~1e-2 on unit-scale outputs (measured 7e-3).
    np.testing.assert_allclose(output.astype(jnp.float32), FIXTURE["cross/output"], atol=3e-2)


def test_multi_head_attention_dropout_needs_deterministic_false_and_follows_the_key():
    module = _mha(dropout_rate=0.3)
    (x,) = normal_arrays(4, (2, 5, reference.EMBED_DIM))
    params = {"params": _reference_params("self")}
    apply = jit_apply(module)

    def run(seed):
        return apply(params, x, deterministic=False, rngs={"dropout": jax.random.key(seed)})

    evaluation = apply(params, x, deterministic=True)
    np.testing.assert_array_equal(run(0), run(0))
    assert not np.allclose(run(0), run(1))
    assert not np.allclose(run(0), evaluation)


def test_packed_projection_init_draws_from_torchs_xavier_bound_of_the_packed_matrix():
    init = attention.packed_projection_init(3)
    kernel = init(jax.random.key(6), (256, 256))
    bound = math.sqrt(6.0 / (256 + 3 * 256))  # xavier_uniform_ on in_proj_weight [768, 256]
    assert np.max(np.abs(kernel)) <= bound
    # Var U(-a, a) = a²/3; 65536 draws give a relative standard error of ~0.5 %.
    np.testing.assert_allclose(np.var(kernel), bound**2 / 3, rtol=0.03)


@functools.cache
def _causal_setup():
    (tokens,) = normal_arrays(7, (2, 6, reference.EMBED_DIM))
    return _mha(), {"params": _reference_params("self")}, tokens


def _empty_cache(batch=2, slots=8):
    return attention.init_kv_cache(batch, slots, reference.NUM_HEADS, 4)


def test_kv_cache_decoding_token_by_token_in_lax_scan_equals_full_causal_attention():
    module, params, tokens = _causal_setup()
    full = jit_apply(module)(params, tokens, mask=attention.causal_mask(6), deterministic=True)

    @jax.jit
    def decode_all(params, tokens):
        def step(cache, token):
            output, cache = module.apply(
                params, token[:, None], cache=cache, deterministic=True, method="decode"
            )
            return cache, output[:, 0]

        cache, outputs = jax.lax.scan(step, _empty_cache(), jnp.swapaxes(tokens, 0, 1))
        return jnp.swapaxes(outputs, 0, 1), cache.length

    outputs, length = decode_all(params, tokens)
    np.testing.assert_allclose(outputs, full, atol=1e-5)
    assert int(length) == 6


def test_kv_cache_prefill_of_a_bidirectional_prefix_then_steps_equals_a_prefix_lm_mask():
    module, params, tokens = _causal_setup()
    block_ids = jnp.array([[0, 0, 0, 1, 2, 3]] * 2)
    apply = jit_apply(module)
    full = apply(params, tokens, mask=attention.block_causal_mask(block_ids), deterministic=True)
    prefix_mask = jnp.ones((1, 1, 3, 8), bool)  # the prefix sees itself both ways
    prefix, cache = apply(
        params, tokens[:, :3], cache=_empty_cache(), mask=prefix_mask, deterministic=True,
        method="decode",
    )  # fmt: skip
    outputs = [prefix]
    for position in range(3, 6):
        output, cache = apply(
            params, tokens[:, position : position + 1], cache=cache, deterministic=True,
            method="decode",
        )  # fmt: skip
        outputs.append(output)
    np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), full, atol=1e-5)


def test_kv_cache_refuses_to_write_past_its_slots_when_the_length_is_known():
    cache = _empty_cache(slots=4)._replace(length=jnp.int32(3))
    new = jnp.zeros((2, 2, reference.NUM_HEADS, 4))
    with pytest.raises(ValueError, match="holds 4 slots, 3 are filled: cannot append 2"):
        attention.append_to_kv_cache(cache, new, new)


def test_cached_decoding_rejects_key_inputs_of_another_length():
    module, params, tokens = _causal_setup()
    with pytest.raises(
        ValueError, match=r"same 1 new tokens as query_inputs, got shape \[2, 2, 16\]"
    ):
        module.apply(
            params, tokens[:, :1], tokens[:, :2], cache=_empty_cache(), deterministic=True,
            method="decode",
        )  # fmt: skip


def test_torch_converter_names_missing_misshapen_and_unexpected_entries():
    state = reference.state_dict("self")
    without_bias = {k: v for k, v in state.items() if k != "out_proj.bias"}
    with pytest.raises(ValueError, match=r"missing keys: out_proj\.bias"):
        attention.multi_head_attention_params_from_torch(without_bias, _mha())
    extra = {**state, "bias_k": np.zeros((1, 1, 16), np.float32)}
    with pytest.raises(ValueError, match="unexpected keys: bias_k"):
        attention.multi_head_attention_params_from_torch(extra, _mha())
    with pytest.raises(ValueError, match=r"in_proj_weight of torch shape \[48, 16\].*\[32, 32\]"):
        attention.multi_head_attention_params_from_torch(state, _mha(32))


def test_torch_converter_reads_an_attention_inside_a_larger_state_dict_by_prefix():
    state = {f"model.attn.{k}": v for k, v in reference.state_dict("self").items()}
    state["model.other.weight"] = np.zeros(3, np.float32)
    params = attention.multi_head_attention_params_from_torch(state, _mha(), prefix="model.attn.")
    np.testing.assert_array_equal(
        params["value"]["bias"], reference.state_dict("self")["in_proj_bias"][32:]
    )

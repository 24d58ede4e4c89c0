"""Transformer layers (book 17.4-17.5, 19.5) against torch's and LeRobot's layers and themselves.

References: golden outputs of torch nn.TransformerEncoderLayer/DecoderLayer (post- and pre-norm,
relu and gelu) and LeRobot's ACTEncoder/ACTDecoder with position embeddings
(tests/fixtures/parity/transformer.npz, from `python -m experiments.parity --only transformer`),
loaded through our converters; full causal recomputation for KV-cache decoding.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core import attention, transformer
from experiments.parity import transformer as reference
from experiments.parity.common import FIXTURE_DIR

FIXTURE = np.load(f"{FIXTURE_DIR}/transformer.npz")
PARITY_TOLERANCE = 1e-5  # float32 layers against torch


def _config(pre_norm=False, activation="relu", dropout_rate=0.0, **kwargs):
    return transformer.TransformerLayerConfig(
        reference.MODEL_DIM,
        reference.NUM_HEADS,
        reference.FFN_DIM,
        dropout_rate=dropout_rate,
        activation=activation,
        pre_norm=pre_norm,
        **kwargs,
    )


def jit_apply(module):
    return jax.jit(module.apply, static_argnames=("deterministic", "method"))


def _source_padding_mask():
    return attention.key_padding_mask(reference.source_is_pad())


def _run_torch_case(case, config):
    kind = reference.TORCH_CASES[case][0]
    inputs, state = reference.inputs(case), reference.state_dict(case)
    if kind == "encoder":
        params = transformer.encoder_layer_params_from_torch(state, config)
        return jit_apply(transformer.TransformerEncoderLayer(config))(
            {"params": params}, inputs["source"], mask=_source_padding_mask(), deterministic=True
        )
    params = transformer.decoder_layer_params_from_torch(state, config)
    return jit_apply(transformer.TransformerDecoderLayer(config))(
        {"params": params},
        inputs["target"],
        inputs["source"],
        self_mask=attention.causal_mask(reference.TARGET_LENGTH),
        cross_mask=_source_padding_mask(),
        deterministic=True,
    )


@pytest.mark.parametrize("case", list(reference.TORCH_CASES))
def test_layers_match_torch_transformer_layers(case):
    _, norm_first, activation = reference.TORCH_CASES[case]
    output = _run_torch_case(case, _config(norm_first, activation))
    np.testing.assert_allclose(output, FIXTURE[f"{case}/output"], atol=PARITY_TOLERANCE)


def _act_stack(case):
    kind, pre_norm = reference.ACT_CASES[case]
    config = _config(pre_norm)
    if kind == "encoder":  # LeRobot's ACTEncoder has a final norm only with pre_norm
        stack = transformer.TransformerEncoder(config, reference.ACT_LAYERS, final_norm=pre_norm)
        params = transformer.encoder_params_from_torch(reference.state_dict(case), stack)
    else:  # ACTDecoder always ends with a LayerNorm
        stack = transformer.TransformerDecoder(config, reference.ACT_LAYERS, final_norm=True)
        params = transformer.decoder_params_from_torch(reference.state_dict(case), stack)
    return stack, {"params": params}


@pytest.mark.parametrize("case", list(reference.ACT_CASES))
def test_stacks_match_lerobot_act_encoder_and_decoder_with_position_embeddings(case):
    stack, params = _act_stack(case)
    inputs = reference.inputs(case)
    if reference.ACT_CASES[case][0] == "encoder":
        output = jit_apply(stack)(
            params,
            inputs["source"],
            pos=inputs["source_pos"],
            mask=_source_padding_mask(),
            deterministic=True,
        )
    else:
        output = jit_apply(stack)(
            params,
            inputs["target"],
            inputs["source"],
            query_pos=inputs["target_pos"],
            memory_pos=inputs["source_pos"],
            deterministic=True,
        )
    np.testing.assert_allclose(output, FIXTURE[f"{case}/output"], atol=PARITY_TOLERANCE)


def test_dropout_changes_the_output_and_is_reproducible_under_the_same_key():
    case = "torch_encoder_post_relu"
    config = _config(dropout_rate=0.1)
    layer = transformer.TransformerEncoderLayer(config)
    state = reference.state_dict(case)
    params = {"params": transformer.encoder_layer_params_from_torch(state, config)}
    source = reference.inputs(case)["source"]

    @jax.jit
    def train_output(key):
        return layer.apply(params, source, deterministic=False, rngs={"dropout": key})

    first, repeated = train_output(jax.random.key(0)), train_output(jax.random.key(0))
    other = train_output(jax.random.key(1))
    evaluation = jit_apply(layer)(params, source, deterministic=True)
    np.testing.assert_array_equal(first, repeated)
    assert not np.allclose(first, other)
    assert not np.allclose(first, evaluation)


def test_bfloat16_layer_stays_near_the_float32_torch_output():
    case = "torch_encoder_post_gelu"
    output = _run_torch_case(case, _config(activation="gelu", dtype=jnp.bfloat16))
    # Six bf16 matmuls (inputs rounded to 8 significant bits, 2^-9 relative, sums in float32)
    # move the O(1) post-norm outputs by ~1e-2 (measured 1.0e-2).
    np.testing.assert_allclose(output.astype(jnp.float32), FIXTURE[f"{case}/output"], atol=5e-2)


def test_causal_kv_cache_decoding_of_a_pre_norm_stack_equals_the_full_causal_pass():
    encoder, params = _act_stack("act_encoder_pre")
    inputs = reference.inputs("act_encoder_pre")
    tokens, positions = inputs["source"], inputs["source_pos"]
    length = reference.SOURCE_LENGTH
    full = jit_apply(encoder)(
        params, tokens, pos=positions, mask=attention.causal_mask(length), deterministic=True
    )

    @jax.jit
    def decode(params):
        def step(caches, token_and_position):
            token, position = token_and_position
            output, caches = encoder.apply(
                params, token[:, None], caches=caches, pos=position[None, None],
                deterministic=True, method="decode",
            )  # fmt: skip
            return caches, output[:, 0]

        caches = transformer.init_caches(encoder.config, encoder.num_layers, 2, 8)
        _, outputs = jax.lax.scan(step, caches, (jnp.swapaxes(tokens, 0, 1), positions[0]))
        return jnp.swapaxes(outputs, 0, 1)

    np.testing.assert_allclose(decode(params), full, atol=1e-5)


def test_feed_forward_init_is_acts_xavier_kernels_and_torch_linear_biases():
    config = transformer.TransformerLayerConfig(model_dim=64, num_heads=4, ffn_dim=256)
    feed_forward = transformer.FeedForward(config)
    init = jax.jit(feed_forward.init, static_argnames="deterministic")
    params = init(jax.random.key(0), jnp.zeros((1, 1, 64)), deterministic=True)["params"]
    for name, fan_in, fan_out in (("hidden", 64, 256), ("output", 256, 64)):
        kernel, bias = params[name]["kernel"], params[name]["bias"]
        assert np.max(np.abs(kernel)) <= np.sqrt(6 / (fan_in + fan_out))  # xavier_uniform_
        assert np.max(np.abs(kernel)) > 0.9 * np.sqrt(6 / (fan_in + fan_out))
        assert np.max(np.abs(bias)) <= 1 / np.sqrt(fan_in)  # nn.Linear's U(±1/√fan_in)
        assert np.max(np.abs(bias)) > 0.5 / np.sqrt(fan_in)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"activation": "swish"}, r"activation must be one of \['gelu', 'relu'\], got 'swish'"),
        ({"num_heads": 5}, r"num_heads must be a positive divisor of the model dimension 16"),
        ({"dropout_rate": 1.0}, r"dropout_rate must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_configs_are_rejected_naming_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        transformer.TransformerLayerConfig(**{"model_dim": 16, "num_heads": 4, **options})


def test_tokens_and_position_embeddings_of_the_wrong_shape_are_rejected():
    layer = transformer.TransformerEncoderLayer(_config())
    tokens = jnp.zeros((2, 6, reference.MODEL_DIM))
    with pytest.raises(ValueError, match=r"x must have model_dim = 16 features, got shape"):
        layer.init(jax.random.key(0), jnp.zeros((2, 6, 8)), deterministic=True)
    with pytest.raises(ValueError, match=r"pos must have shape \[\*, T, \*\] with T=6"):
        layer.init(jax.random.key(0), tokens, pos=jnp.zeros((1, 5, 16)), deterministic=True)


def test_torch_converters_name_missing_misshapen_and_unexpected_entries():
    state = reference.state_dict("torch_encoder_post_relu")
    missing = {k: v for k, v in state.items() if k != "norm2.weight"}
    with pytest.raises(ValueError, match=r"missing keys: norm2\.weight"):
        transformer.encoder_layer_params_from_torch(missing, _config())
    wider = transformer.TransformerLayerConfig(16, 4, ffn_dim=64, dropout_rate=0.0)
    with pytest.raises(ValueError, match=r"linear1\.weight of torch shape \[32, 16\]"):
        transformer.encoder_layer_params_from_torch(state, wider)
    act_state = reference.state_dict("act_encoder_post")
    one_layer = transformer.TransformerEncoder(_config(), 1)
    with pytest.raises(ValueError, match=r"unexpected keys: layers\.1\."):
        transformer.encoder_params_from_torch(act_state, one_layer)


def test_stack_converter_reads_a_decoder_inside_a_larger_state_dict_by_prefix():
    state = {f"model.decoder.{k}": v for k, v in reference.state_dict("act_decoder_post").items()}
    state["model.action_head.weight"] = np.zeros((14, 16), np.float32)
    decoder = transformer.TransformerDecoder(_config(), reference.ACT_LAYERS, final_norm=True)
    params = transformer.decoder_params_from_torch(state, decoder, prefix="model.decoder.")
    np.testing.assert_array_equal(
        params["layers_1"]["cross_attention_norm"]["scale"],
        state["model.decoder.layers.1.norm2.weight"],
    )

"""The temporal U-Net blocks against LeRobot and torch (golden fixture), the transposed convolution
against its scatter definition and as the adjoint of the convolution, and the converters."""

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import conv1d, torch_weights
from experiments.parity import conv1d as reference

FIXTURE = "tests/fixtures/parity/conv1d.npz"
# (kernel_size, stride, padding, horizon): the U-Net's own and a few torch-legal others.
CONV_CONFIGS = [(3, 2, 1, 8), (3, 2, 1, 7), (4, 2, 1, 5), (5, 1, 2, 6), (3, 3, 0, 7), (1, 1, 0, 4)]
VALUES = st.floats(-3, 3, width=32, allow_subnormal=False)


@pytest.fixture(scope="module")
def fixture():
    return dict(np.load(FIXTURE))


def _ntc(array: np.ndarray) -> jax.Array:
    """torch's [B, C, T] as our [B, T, C]."""
    return jnp.asarray(np.transpose(array, (0, 2, 1)))


def _residual_block(name: str) -> conv1d.ConditionalResidualBlock1d:
    config = reference.RESIDUAL_BLOCKS[name]
    return conv1d.ConditionalResidualBlock1d(
        features=config["out_channels"],
        kernel_size=config["kernel_size"],
        num_groups=config["n_groups"],
        use_film_scale=config["use_film_scale_modulation"],
    )


def _run_residual_block(name: str, params) -> jax.Array:
    config = reference.RESIDUAL_BLOCKS[name]
    x = _ntc(reference.sequence(name, config["in_channels"], reference.HORIZON))
    condition = jnp.asarray(reference.condition(name, config["cond_dim"]))
    return jax.jit(_residual_block(name).apply)({"params": params}, x, condition)


def test_conv1d_block_matches_lerobot(fixture):
    config = reference.CONV_BLOCK
    block = conv1d.Conv1dBlock(config["out_channels"], config["kernel_size"], config["n_groups"])
    params = conv1d.conv1d_block_params_from_lerobot(reference.conv_block_state_dict(), block)
    x = _ntc(reference.sequence("conv_block", config["inp_channels"], reference.HORIZON))
    output = jax.jit(block.apply)({"params": params}, x)
    np.testing.assert_allclose(output, _ntc(fixture["conv_block/output"]), atol=1e-5)  # 5e-7


@pytest.mark.parametrize("name", list(reference.RESIDUAL_BLOCKS))
def test_conditional_residual_block_matches_lerobot(fixture, name):
    params = conv1d.residual_block_params_from_lerobot(
        reference.residual_block_state_dict(name), _residual_block(name)
    )
    output = _run_residual_block(name, params)
    np.testing.assert_allclose(output, _ntc(fixture[f"{name}/output"]), atol=1e-5)  # 1e-6


@pytest.mark.parametrize(
    ("name", "horizon", "output_horizon"),
    [("downsample", 8, 4), ("downsample", 7, 4), ("upsample", 4, 8), ("upsample", 3, 6)],
)
def test_down_and_upsampling_match_torch_conv1d_and_conv_transpose1d(
    fixture, name, horizon, output_horizon
):
    channels = reference.RESAMPLE_CHANNELS
    if name == "downsample":
        module = conv1d.Downsample1d(channels)
        convert = conv1d.conv1d_params_from_torch
    else:
        module = conv1d.Upsample1d(channels)
        convert = conv1d.conv_transpose1d_params_from_torch
    params = convert(reference.resample_state_dict(name), module)
    x = _ntc(reference.sequence(f"{name}_{horizon}", channels, horizon))
    output = jax.jit(module.apply)({"params": params}, x)
    assert output.shape == (reference.BATCH, output_horizon, channels)
    np.testing.assert_allclose(output, _ntc(fixture[f"{name}/output_{horizon}"]), atol=1e-5)


@pytest.mark.parametrize("file_kind", ["pth", "safetensors"])
def test_a_saved_lerobot_block_reads_converts_and_reproduces_its_outputs(
    tmp_path, fixture, file_kind
):
    path = tmp_path / f"block.{file_kind}"
    path.write_bytes(fixture[f"residual_scale/{file_kind}_bytes"].tobytes())
    state_dict = torch_weights.read_state_dict(path)
    params = conv1d.residual_block_params_from_lerobot(
        state_dict, _residual_block("residual_scale")
    )
    output = _run_residual_block("residual_scale", params)
    np.testing.assert_allclose(output, _ntc(fixture["residual_scale/output"]), atol=1e-5)


def _scatter_transpose_conv(x, kernel, stride, padding):
    """torch's definition: input step t adds x[t] W[k] to output step t·s + k - p."""
    batch, horizon, _ = x.shape
    kernel_size, _, out_channels = kernel.shape
    full = np.zeros((batch, (horizon - 1) * stride + kernel_size, out_channels))
    for t in range(horizon):
        for k in range(kernel_size):
            full[:, t * stride + k] += x[:, t] @ kernel[k]
    return full[:, padding : full.shape[1] - padding]


def _sliding_conv(x, kernel, stride, padding):
    """Cross-correlation of the zero-padded input: y[t] = Σ_k x[t·s + k - p] W[k]."""
    kernel_size = kernel.shape[0]
    padded = np.pad(x, ((0, 0), (padding, padding), (0, 0)))
    length = (padded.shape[1] - kernel_size) // stride + 1
    return np.stack(
        [
            sum(padded[:, t * stride + k] @ kernel[k] for k in range(kernel_size))
            for t in range(length)
        ],
        axis=1,
    )


@st.composite
def _conv_case(draw):
    kernel_size, stride, padding, horizon = draw(st.sampled_from(CONV_CONFIGS))
    x = draw(hnp.arrays(np.float32, (2, horizon, 3), elements=VALUES))
    kernel = draw(hnp.arrays(np.float32, (kernel_size, 3, 4), elements=VALUES))
    return x, kernel, stride, padding


@given(case=_conv_case())
def test_conv1d_and_conv_transpose1d_follow_their_torch_definitions(case):
    x, kernel, stride, padding = case
    y = conv1d.conv1d(x, kernel, stride=stride, padding=padding)
    np.testing.assert_allclose(y, _sliding_conv(x, kernel, stride, padding), atol=1e-4)
    z = conv1d.conv_transpose1d(x, kernel, stride=stride, padding=padding)
    assert z.shape[1] == (x.shape[1] - 1) * stride - 2 * padding + kernel.shape[0]
    np.testing.assert_allclose(z, _scatter_transpose_conv(x, kernel, stride, padding), atol=1e-4)


@given(case=_conv_case())
def test_conv_transpose1d_is_the_adjoint_of_conv1d(case):
    # <conv(x; W), y> = <x, convT(y; Wᵀ)> when the lengths round-trip: convT is conv's VJP.
    x, kernel, stride, padding = case
    output, vjp = jax.vjp(lambda v: conv1d.conv1d(v, kernel, stride=stride, padding=padding), x)
    cotangent = np.random.default_rng(0).standard_normal(output.shape).astype(np.float32)
    (input_cotangent,) = vjp(cotangent)
    transposed = conv1d.conv_transpose1d(
        cotangent, np.swapaxes(kernel, 1, 2), stride=stride, padding=padding
    )
    kept = min(transposed.shape[1], x.shape[1])  # convT drops the last (T + 2p - K) mod s steps
    np.testing.assert_allclose(transposed[:, :kept], input_cotangent[:, :kept], atol=1e-4)


@pytest.mark.parametrize("horizon", [1, 2, 7, 16])
def test_downsample_halves_and_upsample_doubles_the_horizon(horizon):
    x = jax.ShapeDtypeStruct((1, horizon, 8), jnp.float32)
    for module, expected in (
        (conv1d.Downsample1d(8), -(-horizon // 2)),
        (conv1d.Upsample1d(8), 2 * horizon),
    ):
        variables = jax.eval_shape(module.init, jax.random.key(0), x)
        assert jax.eval_shape(module.apply, variables, x).shape == (1, expected, 8)


def test_default_initialization_is_pytorchs_uniform_bounds():
    # Conv1d: U(±1/√(C_in·K)); ConvTranspose1d: U(±1/√(C_out·K)), torch's fan of weight.size(1).
    x = jnp.zeros((1, 4, 64))
    for module, bound in (
        (conv1d.Conv1d(32, 3), 1 / np.sqrt(64 * 3)),
        (conv1d.ConvTranspose1d(32, 4), 1 / np.sqrt(32 * 4)),
    ):
        params = jax.jit(module.init)(jax.random.key(0), x)["params"]
        for values in (np.asarray(params["kernel"]), np.asarray(params["bias"])):
            assert np.abs(values).max() <= bound
            assert np.abs(values).max() > 0.85 * bound  # ≥ 32 draws reach the edge


def test_converters_take_a_prefix_and_name_the_key_that_does_not_fit():
    state_dict = reference.residual_block_state_dict("residual_scale")
    unet = {f"unet.down_modules.0.0.{k}": v for k, v in state_dict.items()}
    unet["unet.final_conv.1.weight"] = np.zeros((2, 16, 1), np.float32)
    params = conv1d.residual_block_params_from_lerobot(
        unet, _residual_block("residual_scale"), prefix="unet.down_modules.0.0."
    )
    np.testing.assert_array_equal(
        params["film"]["projection"]["kernel"], state_dict["cond_encoder.1.weight"].T
    )
    bias_only = _residual_block("residual_bias")  # expects a [16, 10] FiLM projection
    with pytest.raises(
        ValueError,
        match=r"cond_encoder\.1\.weight of torch shape \[32, 10\] .* expects \[10, 16\]",
    ):
        conv1d.residual_block_params_from_lerobot(state_dict, bias_only)
    with pytest.raises(ValueError, match=r"state dict has no key 'conv1\.block\.0\.weight'"):
        conv1d.residual_block_params_from_lerobot(unet, bias_only)


def test_bad_shapes_and_configs_raise_with_names():
    with pytest.raises(ValueError, match=r"kernel must have shape \[K, C_in, C_out\] with C_in=3"):
        conv1d.conv1d(jnp.zeros((1, 5, 3)), jnp.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match="padding <= K - 1 = 3, got stride 2 and padding 4"):
        conv1d.conv_transpose1d(jnp.zeros((1, 5, 3)), jnp.zeros((4, 3, 2)), stride=2, padding=4)
    block = conv1d.ConditionalResidualBlock1d(features=16, kernel_size=4)
    x, condition = jax.ShapeDtypeStruct((1, 8, 16), jnp.float32), jnp.zeros((1, 3))
    with pytest.raises(ValueError, match=r"kernel_size must be odd .* got 4"):
        jax.eval_shape(block.init, jax.random.key(0), x, condition)

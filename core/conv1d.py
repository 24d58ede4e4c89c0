"""Book 18.5.1: the 1D convolution blocks of Diffusion Policy's temporal U-Net, channels last.

The conditional U-Net of Diffusion Policy (Chi et al.; LeRobot's DiffusionConditionalUnet1d)
runs over the action horizon T with the action dimensions as channels. Its parts, with
PyTorch's exact semantics on [B, T, C] arrays (torch uses [B, C, T]):

- `conv1d`/`Conv1d`: cross-correlation with stride and symmetric zero padding p,
  T' = ⌊(T + 2p - K)/s⌋ + 1 (`core.conv_arithmetic.conv_output_size`).
- `conv_transpose1d`/`ConvTranspose1d`: torch's ConvTranspose1d, T' = (T - 1)s - 2p + K: each
  input step scatters K taps s apart and p steps are cropped at both ends. It equals a
  stride-1 convolution with the flipped kernel of the input dilated by s (s - 1 zeros between
  steps) and padded by K - 1 - p.
- `Downsample1d` (Conv1d K3 s2 p1: T -> ⌈T/2⌉) and `Upsample1d` (ConvTranspose1d K4 s2 p1:
  T -> 2T), the U-Net's resolution changes.
- `Conv1dBlock`: Conv1d (padding K // 2) -> GroupNorm(n_groups) -> Mish.
- `ConditionalResidualBlock1d`: Conv1dBlock -> FiLM by the condition (book eq. 18.6,
  `core.film`) -> Conv1dBlock, plus the input (through a 1×1 Conv1d when the channel count
  changes).

Mish(x) = x·tanh(softplus(x)) is `jax.nn.mish`. Convolutions start from PyTorch's default
initialization. Converters take LeRobot's state-dict names (`block.0.weight`, `cond_encoder.1.*`,
`residual_conv.*`) and plain torch Conv1d/ConvTranspose1d ones; the `prefix` argument selects a
block inside a whole U-Net state dict (e.g. "unet.down_modules.0.1.").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core import normalization
from core.checks import check_shapes
from core.conv_arithmetic import conv_output_size
from core.film import FiLM
from core.torch_weights import (
    KeyRule,
    conv_kernel_from_torch,
    conv_transpose_kernel_from_torch,
    convert_state_dict,
    entry_shape,
    linear_kernel_from_torch,
    torch_default_bias_init,
    torch_default_kernel_init,
    variable_paths,
)


def _check_conv_arguments(x, kernel, bias) -> dict[str, int]:
    named = {"x": (x, ("B", "T", "C_in")), "kernel": (kernel, ("K", "C_in", "C_out"))}
    if bias is not None:
        named["bias"] = (bias, ("C_out",))
    return check_shapes(**named)


def _add_bias(y: jax.Array, bias: jax.Array | None) -> jax.Array:
    return y if bias is None else y + bias


def _unfold(x: jax.Array, kernel_size: int, stride: int, output_length: int) -> jax.Array:
    """[B, T, C] -> [B, T', K·C]: row t holds x[t·s], ..., x[t·s + K - 1] (im2col)."""
    span = stride * (output_length - 1) + 1
    taps = [x[:, k : k + span : stride] for k in range(kernel_size)]
    return jnp.concatenate(taps, axis=-1)


def conv1d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
) -> jax.Array:
    """torch.nn.functional.conv1d on channels-last arrays.

    y[t] = Σ_k x_pad[t·s + k] W[k]: the K taps of every output step side by side (im2col) times
    the kernel as one [K·C_in, C_out] matrix. (XLA's CPU convolution takes seconds instead of
    milliseconds once the output is shorter than the kernel, as in the U-Net's middle blocks:
    2048 channels, T = 4, K = 5.)

    Args:
      x: [B, T, C_in].
      kernel: [K, C_in, C_out] (torch's [C_out, C_in, K] transposed).
      bias: [C_out] or None.
      stride: s.
      padding: p zeros on both ends.

    Returns:
      [B, ⌊(T + 2p - K)/s⌋ + 1, C_out].
    """
    sizes = _check_conv_arguments(x, kernel, bias)
    kernel_size, in_channels = sizes["K"], sizes["C_in"]
    output_length = conv_output_size(sizes["T"], kernel_size, stride, padding)
    padded = jnp.pad(x, ((0, 0), (padding, padding), (0, 0)))
    columns = _unfold(padded, kernel_size, stride, output_length)
    y = columns @ kernel.reshape(kernel_size * in_channels, sizes["C_out"])
    return _add_bias(y, bias)


def _dilate(x: jax.Array, stride: int) -> jax.Array:
    """[B, T, C] -> [B, (T - 1)s + 1, C] with s - 1 zero steps between consecutive steps."""
    batch, length, channels = x.shape
    gaps = jnp.zeros((batch, length, stride - 1, channels), x.dtype)
    interleaved = jnp.concatenate([x[:, :, None], gaps], axis=2)
    return interleaved.reshape(batch, length * stride, channels)[:, : (length - 1) * stride + 1]


def conv_transpose1d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    stride: int = 1,
    padding: int = 0,
) -> jax.Array:
    """torch.nn.functional.conv_transpose1d on channels-last arrays (output_padding 0).

    y[t'] = Σ_{t, k: t·s + k - p = t'} x[t] W[k], computed as the stride-1 `conv1d` of the
    s-dilated input, padded by K - 1 - p, with the kernel flipped in time.

    Args:
      x: [B, T, C_in].
      kernel: [K, C_in, C_out] (torch's [C_in, C_out, K] transposed).
      bias: [C_out] or None.
      stride: s.
      padding: p in [0, K - 1], steps cropped at both ends of the full output.

    Returns:
      [B, (T - 1)s - 2p + K, C_out].
    """
    sizes = _check_conv_arguments(x, kernel, bias)
    kernel_size = sizes["K"]
    if stride < 1 or not 0 <= padding <= kernel_size - 1:
        raise ValueError(
            f"conv_transpose1d needs stride >= 1 and 0 <= padding <= K - 1 = {kernel_size - 1}, "
            f"got stride {stride} and padding {padding}"
        )
    flipped = jnp.flip(kernel, axis=0)
    return conv1d(_dilate(x, stride), flipped, bias, padding=kernel_size - 1 - padding)


class Conv1d(nn.Module):
    """torch.nn.Conv1d(C_in, features, kernel_size, stride, padding), channels last.

    Params: kernel [K, C_in, features], bias [features], PyTorch's default initialization.
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, T, C_in] -> [B, ⌊(T + 2p - K)/s⌋ + 1, features]."""
        fan_in = self.kernel_size * x.shape[-1]
        shape = (self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", torch_default_kernel_init, shape)
        bias = self.param("bias", torch_default_bias_init(fan_in), (self.features,))
        return conv1d(x, kernel, bias, stride=self.stride, padding=self.padding)


class ConvTranspose1d(nn.Module):
    """torch.nn.ConvTranspose1d(C_in, features, kernel_size, stride, padding), channels last.

    Params: kernel [K, C_in, features], bias [features]. PyTorch initializes a transposed conv
    from the fan of its weight's second axis, features·K, for both (hence "fan_out" here).
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, T, C_in] -> [B, (T - 1)s - 2p + K, features]."""
        torch_fan_in = self.kernel_size * self.features
        kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")
        shape = (self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", kernel_init, shape)
        bias = self.param("bias", torch_default_bias_init(torch_fan_in), (self.features,))
        return conv_transpose1d(x, kernel, bias, stride=self.stride, padding=self.padding)


class Downsample1d(Conv1d):
    """The U-Net's downsampling: Conv1d K3 s2 p1, T -> ⌈T/2⌉."""

    kernel_size: int = 3
    stride: int = 2
    padding: int = 1


class Upsample1d(ConvTranspose1d):
    """The U-Net's upsampling: ConvTranspose1d K4 s2 p1, T -> 2T."""

    kernel_size: int = 4
    stride: int = 2
    padding: int = 1


class Conv1dBlock(nn.Module):
    """Conv1d (padding K // 2) -> GroupNorm(num_groups) -> Mish: LeRobot's DiffusionConv1dBlock.

    Params: conv {kernel, bias}, norm {scale, bias}.
    """

    features: int
    kernel_size: int = 3
    num_groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [B, T, C_in] -> [B, T', features] (T' = T for odd K, T + 1 for even K)."""
        y = Conv1d(self.features, self.kernel_size, padding=self.kernel_size // 2, name="conv")(x)
        y = normalization.GroupNorm(num_groups=self.num_groups, name="norm")(y)
        return jax.nn.mish(y)


class ConditionalResidualBlock1d(nn.Module):
    """LeRobot's DiffusionConditionalResidualBlock1d, channels last.

    out = conv2(FiLM(conv1(x), condition)) + residual(x), with residual the identity when
    C_in = features and a 1×1 Conv1d otherwise.

    Attributes:
      features: output channels.
      kernel_size: K of both Conv1dBlocks (odd, so the horizon is kept).
      num_groups: GroupNorm groups of both Conv1dBlocks.
      use_film_scale: FiLM with scale and bias (True) or bias only (False). The block's default
        in LeRobot is False; its DiffusionConfig turns it on (use_film_scale_modulation=True).

    Params: conv1, film/projection, conv2 and, when channels change, residual_conv.
    """

    features: int
    kernel_size: int = 3
    num_groups: int = 8
    use_film_scale: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, condition: jax.Array) -> jax.Array:
        """x: [B, T, C_in]; condition: [B, D] (e.g. step embedding + observation features).

        Returns:
          [B, T, features].
        """
        check_shapes(x=(x, ("B", None, None)), condition=(condition, ("B", None)))
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd so the block keeps the horizon, got {self.kernel_size}"
            )
        y = Conv1dBlock(self.features, self.kernel_size, self.num_groups, name="conv1")(x)
        y = FiLM(use_scale=self.use_film_scale, name="film")(y, condition)
        y = Conv1dBlock(self.features, self.kernel_size, self.num_groups, name="conv2")(y)
        residual = x
        if x.shape[-1] != self.features:
            residual = Conv1d(self.features, 1, name="residual_conv")(x)
        return y + residual


# ---------------------------------------------------------------------------------------------
# Converters from PyTorch / LeRobot state dicts.

_EXAMPLE_HORIZON = 8  # parameter shapes do not depend on T
_LEROBOT_MODULE_NAMES = {
    "conv": "block.0",
    "norm": "block.1",
    "film": "cond_encoder",
    "projection": "1",  # cond_encoder = Sequential(Mish, Linear)
}
_LEROBOT_VARIABLE_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias"}


def _lerobot_name(path: Sequence[str]) -> str:
    """("params", "conv1", "norm", "scale") -> "conv1.block.1.weight", and so on."""
    *modules, variable = path[1:]
    torch_modules = [_LEROBOT_MODULE_NAMES.get(module, module) for module in modules]
    return ".".join([*torch_modules, _LEROBOT_VARIABLE_NAMES[variable]])


def _convert(
    state_dict: Mapping[str, np.ndarray],
    module: nn.Module,
    example_inputs: Sequence[jax.ShapeDtypeStruct],
    prefix: str,
    kernel_from_torch,
) -> dict:
    """Rules from the module's own variables: LeRobot names, kernels via `kernel_from_torch`
    (the FiLM projection's via the Linear layout)."""
    expected = jax.eval_shape(module.init, jax.random.key(0), *example_inputs)

    def transform(path):
        if path[-1] != "kernel":
            return np.asarray
        return linear_kernel_from_torch if "projection" in path else kernel_from_torch

    rules = [
        KeyRule(_lerobot_name(path), path, transform(path)) for path in variable_paths(expected)
    ]
    return convert_state_dict(state_dict, rules, expected, prefix=prefix)["params"]


def _sequence(channels: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((1, _EXAMPLE_HORIZON, channels), jnp.float32)


def conv1d_params_from_torch(
    state_dict: Mapping[str, np.ndarray], conv: Conv1d, *, prefix: str = ""
) -> dict:
    """Params of `conv` (a Conv1d or Downsample1d) from a torch Conv1d's weight [O, I, K], bias.

    Raises:
      ValueError naming a missing, unexpected or misshapen key.
    """
    in_channels = entry_shape(state_dict, f"{prefix}weight")[1]
    return _convert(state_dict, conv, [_sequence(in_channels)], prefix, conv_kernel_from_torch)


def conv_transpose1d_params_from_torch(
    state_dict: Mapping[str, np.ndarray], conv: ConvTranspose1d, *, prefix: str = ""
) -> dict:
    """Params of `conv` (a ConvTranspose1d or Upsample1d) from a torch ConvTranspose1d's
    weight [I, O, K] and bias."""
    in_channels = entry_shape(state_dict, f"{prefix}weight")[0]
    return _convert(
        state_dict, conv, [_sequence(in_channels)], prefix, conv_transpose_kernel_from_torch
    )


def conv1d_block_params_from_lerobot(
    state_dict: Mapping[str, np.ndarray], block: Conv1dBlock, *, prefix: str = ""
) -> dict:
    """Params of `block` from LeRobot's DiffusionConv1dBlock (block.0 conv, block.1 GroupNorm)."""
    in_channels = entry_shape(state_dict, f"{prefix}block.0.weight")[1]
    return _convert(state_dict, block, [_sequence(in_channels)], prefix, conv_kernel_from_torch)


def residual_block_params_from_lerobot(
    state_dict: Mapping[str, np.ndarray], block: ConditionalResidualBlock1d, *, prefix: str = ""
) -> dict:
    """Params of `block` from LeRobot's DiffusionConditionalResidualBlock1d.

    Names: conv1.block.{0,1}.*, cond_encoder.1.{weight [C or 2C, D], bias}, conv2.block.{0,1}.*
    and residual_conv.* when the channel count changes.
    """
    in_channels = entry_shape(state_dict, f"{prefix}conv1.block.0.weight")[1]
    condition_dim = entry_shape(state_dict, f"{prefix}cond_encoder.1.weight")[1]
    condition = jax.ShapeDtypeStruct((1, condition_dim), jnp.float32)
    return _convert(
        state_dict, block, [_sequence(in_channels), condition], prefix, conv_kernel_from_torch
    )

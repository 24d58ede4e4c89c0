"""Normalization layers: batch, layer, group and instance norm as pure functions.

Book 7.4, 8.4.4, 14.2-14.5: batch normalization (eqs. 7.11-7.14 = 8.30-8.33 = 14.3) with the
running averages used at inference (eq. 14.4), layer normalization (14.5-14.6), group
normalization (14.7) and instance normalization (14.8).

All four share one computation: a biased mean and variance over some axes (7.11-7.12), the
standardization (7.13) and a per-channel scale and shift (7.14). They differ only in the axes
the statistics are taken over, for a channels-last input x: [B, ..., C]:

  batch norm     every axis but C: one (μ, σ²) per channel, shared by the batch
  layer norm     the last axis C: one (μ, σ²) per position of each sample
  group norm     the spatial axes and the C/G channels of a group: one per (sample, group)
  instance norm  the spatial axes: one per (sample, channel)

Statistics are computed in at least float32 (as flax does), so half-precision inputs do not
lose the mean and variance to rounding; the output has the result dtype of x and the params.

Running averages (eq. 14.4) follow the book's convention μ_run <- α μ_run + (1 - α) μ_B with
α = `momentum` the weight of the OLD average (α ≈ 0.9 or 0.99). flax.linen.BatchNorm uses the
same convention (its default momentum is 0.99); PyTorch's `momentum` is the weight of the NEW
batch, so PyTorch's default momentum=0.1 is α = 0.9 here. The running variance accumulates the
BIASED batch variance σ_B² of eq. 7.12 (divide by m_B), as the book writes and as flax does;
PyTorch accumulates the unbiased m_B/(m_B - 1) σ_B² instead, so its running variances differ
from ours by that factor.

The flax modules at the end hold the parameters (`scale` γ, `bias` β) and, for batch norm, the
`batch_stats` collection (`mean`, `var`), under the same names as flax.linen's modules, so their
variables are interchangeable; they only call the pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from core.checks import check_shapes


class RunningStats(NamedTuple):
    """Running averages of batch norm (eq. 14.4), used in evaluation mode.

    mean: [C] running mean μ_run of each channel.
    var: [C] running (biased) variance σ²_run of each channel.
    """

    mean: jax.Array
    var: jax.Array


def init_running_stats(num_channels: int, dtype=jnp.float32) -> RunningStats:
    """Running statistics before training: mean 0, variance 1 (so eval mode is the identity)."""
    return RunningStats(jnp.zeros((num_channels,), dtype), jnp.ones((num_channels,), dtype))


def _statistics_dtype(x: jax.Array):
    return jnp.promote_types(x.dtype, jnp.float32)


def moments(x: jax.Array, axes: Sequence[int]) -> tuple[jax.Array, jax.Array]:
    """Biased mean and variance over `axes`, kept as size-1 axes so they broadcast against x.

    Book eqs. 7.11-7.12 (and 14.5, 14.7, 14.8 for other axes): σ² = (1/m) Σ (x - μ)², the
    two-pass form, computed in at least float32.

    Args:
      x: [...] any array.
      axes: the axes to reduce over.

    Returns:
      (mean, var), each shaped like x with the reduced axes of size 1.
    """
    x = x.astype(_statistics_dtype(x))
    mean = jnp.mean(x, axis=tuple(axes), keepdims=True)  # book eq. 7.11
    var = jnp.mean(jnp.square(x - mean), axis=tuple(axes), keepdims=True)  # book eq. 7.12
    return mean, var


def standardize(x: jax.Array, mean: jax.Array, var: jax.Array, epsilon: float) -> jax.Array:
    """(x - μ) / sqrt(σ² + ε), book eq. 7.13; ε > 0 keeps constant inputs finite."""
    x = x.astype(_statistics_dtype(x))
    return (x - mean) / jnp.sqrt(var + epsilon)


def scale_and_shift(normalized: jax.Array, scale: jax.Array, bias: jax.Array, dtype) -> jax.Array:
    """y = γ ẑ + β, book eq. 7.14; γ, β are per channel and broadcast against ẑ; in `dtype`."""
    return (scale * normalized + bias).astype(dtype)


def _check_min_rank(name: str, array, min_rank: int) -> None:
    if jnp.ndim(array) < min_rank:
        raise ValueError(
            f"{name} must have rank >= {min_rank}, got rank {jnp.ndim(array)} "
            f"(shape {jnp.shape(array)})"
        )


def _check_channel_params(x, scale, bias) -> int:
    pattern = (None,) * (jnp.ndim(x) - 1) + ("C",)
    bound = check_shapes(x=(x, pattern), scale=(scale, ("C",)), bias=(bias, ("C",)))
    return bound["C"]


def _normalized_output(x, mean, var, scale, bias, epsilon: float) -> jax.Array:
    """Eqs. 7.13-7.14 in the result dtype of x and the params; all arguments broadcast."""
    normalized = standardize(x, mean, var, epsilon)
    return scale_and_shift(normalized, scale, bias, jnp.result_type(x, scale, bias))


def _normalize_over(
    x: jax.Array, axes: Sequence[int], scale: jax.Array, bias: jax.Array, epsilon: float
) -> jax.Array:
    mean, var = moments(x, axes)
    return _normalized_output(x, mean, var, scale, bias, epsilon)


def batch_axes(ndim: int) -> tuple[int, ...]:
    """Axes batch norm reduces over for a [B, ..., C] input: all but the channel axis."""
    return tuple(range(ndim - 1))


def spatial_axes(ndim: int) -> tuple[int, ...]:
    """Spatial (or temporal) axes of a [B, ..., C] input: all but the first and the last."""
    return tuple(range(1, ndim - 1))


def update_running_stats(
    running: RunningStats, batch_mean: jax.Array, batch_var: jax.Array, momentum: float
) -> RunningStats:
    """μ_run <- α μ_run + (1 - α) μ_B and the same for σ², book eq. 14.4 (α = momentum).

    Args:
      running: running statistics, [C] each.
      batch_mean: [C] batch mean μ_B.
      batch_var: [C] biased batch variance σ_B².
      momentum: α in [0, 1], the weight of the old average (PyTorch's momentum is 1 - α).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1] (book α), got {momentum}")
    return RunningStats(
        momentum * running.mean + (1.0 - momentum) * batch_mean,
        momentum * running.var + (1.0 - momentum) * batch_var,
    )


def _check_running(running: RunningStats, num_channels: int) -> None:
    check_shapes(
        running_mean=(running.mean, (num_channels,)), running_var=(running.var, (num_channels,))
    )


def batch_norm_train(
    x: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    running: RunningStats,
    *,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
) -> tuple[jax.Array, RunningStats]:
    """Batch norm in training mode: batch statistics, and the updated running averages.

    Book eqs. 7.11-7.14 (8.30-8.33): μ_B and the biased σ_B² of each channel over the batch and
    all spatial positions; eq. 14.4 folds them into the running averages.

    Args:
      x: [B, ..., C] pre-activations, channels last.
      scale: [C] γ.
      bias: [C] β.
      running: running statistics, [C] each.
      momentum: α of eq. 14.4, the weight of the old running average.
      epsilon: ε of eq. 7.13.

    Returns:
      (y, new_running): y [B, ..., C] normalized output; new_running the updated averages.
    """
    _check_min_rank("x", x, 2)
    num_channels = _check_channel_params(x, scale, bias)
    _check_running(running, num_channels)
    mean, var = moments(x, batch_axes(x.ndim))
    y = _normalized_output(x, mean, var, scale, bias, epsilon)
    new_running = update_running_stats(
        running, mean.reshape(num_channels), var.reshape(num_channels), momentum
    )
    return y, new_running


def batch_norm_eval(
    x: jax.Array,
    scale: jax.Array,
    bias: jax.Array,
    running: RunningStats,
    *,
    epsilon: float = 1e-5,
) -> jax.Array:
    """Batch norm in evaluation mode: the running averages replace the batch statistics.

    Book 8.4.4 / 14.2.1: each sample is normalized independently of the rest of the batch. With
    frozen `running`, `scale` and `bias` this is also the frozen batch norm of pretrained
    backbones.

    Args:
      x: [B, ..., C] pre-activations, channels last.
      scale: [C] γ.
      bias: [C] β.
      running: running statistics, [C] each.
      epsilon: ε of eq. 7.13.

    Returns:
      y: [B, ..., C].
    """
    _check_min_rank("x", x, 2)
    num_channels = _check_channel_params(x, scale, bias)
    _check_running(running, num_channels)
    return _normalized_output(x, running.mean, running.var, scale, bias, epsilon)


def layer_norm(
    x: jax.Array, scale: jax.Array, bias: jax.Array, *, epsilon: float = 1e-5
) -> jax.Array:
    """Layer norm over the feature (last) axis, book eqs. 14.5-14.6.

    Statistics are per sample (and per position of a sequence), never across the batch.

    Args:
      x: [..., C] features, e.g. [B, C] or [B, T, C].
      scale: [C] per-feature γ.
      bias: [C] per-feature β.
      epsilon: ε.

    Returns:
      y: [..., C].
    """
    _check_min_rank("x", x, 1)
    _check_channel_params(x, scale, bias)
    return _normalize_over(x, (x.ndim - 1,), scale, bias, epsilon)


def group_norm(
    x: jax.Array, scale: jax.Array, bias: jax.Array, *, num_groups: int, epsilon: float = 1e-5
) -> jax.Array:
    """Group norm, book eq. 14.7: statistics per sample over each group of C/G channels and all
    spatial (or temporal) positions, S/G = (C/G)·H·W values per group.

    Args:
      x: [B, ..., C] channels last, e.g. [B, H, W, C] images or [B, T, C] sequences.
      scale: [C] per-channel γ.
      bias: [C] per-channel β.
      num_groups: G, must divide C. G = 1 is layer norm over all of (..., C); G = C is instance
        norm.
      epsilon: ε.

    Returns:
      y: [B, ..., C].
    """
    _check_min_rank("x", x, 2)
    num_channels = _check_channel_params(x, scale, bias)
    if num_groups < 1 or num_channels % num_groups != 0:
        raise ValueError(
            f"num_groups must be a positive divisor of the {num_channels} channels of x, "
            f"got {num_groups}"
        )
    group_shape = (num_groups, num_channels // num_groups)
    grouped = x.reshape(*x.shape[:-1], *group_shape)
    axes = (*spatial_axes(x.ndim), grouped.ndim - 1)  # positions and the channels of a group
    mean, var = moments(grouped, axes)
    y = _normalized_output(
        grouped, mean, var, scale.reshape(group_shape), bias.reshape(group_shape), epsilon
    )
    return y.reshape(x.shape)


def instance_norm(
    x: jax.Array, scale: jax.Array, bias: jax.Array, *, epsilon: float = 1e-5
) -> jax.Array:
    """Instance norm, book eq. 14.8: each channel of each sample over its spatial positions.

    Args:
      x: [B, ..., C] with at least one spatial axis, e.g. [B, H, W, C].
      scale: [C] per-channel γ.
      bias: [C] per-channel β.
      epsilon: ε.

    Returns:
      y: [B, ..., C].
    """
    _check_min_rank("x", x, 3)
    _check_channel_params(x, scale, bias)
    return _normalize_over(x, spatial_axes(x.ndim), scale, bias, epsilon)


def _channel_params(module: nn.Module, num_channels: int) -> tuple[jax.Array, jax.Array]:
    scale = module.param("scale", nn.initializers.ones, (num_channels,), module.param_dtype)
    bias = module.param("bias", nn.initializers.zeros, (num_channels,), module.param_dtype)
    return scale, bias


class BatchNorm(nn.Module):
    """Batch norm layer: params `scale`, `bias`; collection `batch_stats` with `mean`, `var`.

    Call with `train=True` and `mutable=["batch_stats"]` to normalize with batch statistics and
    update the running averages; `train=False` uses the running averages.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        num_channels = x.shape[-1]
        scale, bias = _channel_params(self, num_channels)
        initial = init_running_stats(num_channels)
        running_mean = self.variable("batch_stats", "mean", lambda: initial.mean)
        running_var = self.variable("batch_stats", "var", lambda: initial.var)
        running = RunningStats(running_mean.value, running_var.value)
        if not train:
            return batch_norm_eval(x, scale, bias, running, epsilon=self.epsilon)
        y, new_running = batch_norm_train(
            x, scale, bias, running, momentum=self.momentum, epsilon=self.epsilon
        )
        if not self.is_initializing():
            running_mean.value, running_var.value = new_running
        return y


class LayerNorm(nn.Module):
    """Layer norm layer over the last axis: params `scale`, `bias` of size C."""

    epsilon: float = 1e-5
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale, bias = _channel_params(self, x.shape[-1])
        return layer_norm(x, scale, bias, epsilon=self.epsilon)


class GroupNorm(nn.Module):
    """Group norm layer for channels-last inputs: params `scale`, `bias` of size C."""

    num_groups: int
    epsilon: float = 1e-5
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale, bias = _channel_params(self, x.shape[-1])
        return group_norm(x, scale, bias, num_groups=self.num_groups, epsilon=self.epsilon)


class InstanceNorm(nn.Module):
    """Instance norm layer for channels-last inputs: params `scale`, `bias` of size C."""

    epsilon: float = 1e-5
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale, bias = _channel_params(self, x.shape[-1])
        return instance_norm(x, scale, bias, epsilon=self.epsilon)

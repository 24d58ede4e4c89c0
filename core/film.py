"""Book 18.5.1 (eq. 18.6): FiLM, feature-wise linear modulation of a feature map by a condition.

FiLM(h; γ, β) = γ(e) ⊙ h + β(e): a condition e (Diffusion Policy: the diffusion-step embedding
concatenated with the observation features) is mapped to one scale γ and one bias β per channel
of h. As in Diffusion Policy (Chi et al.; LeRobot's DiffusionConditionalResidualBlock1d) the map
is Mish -> Linear, whose output is read as [γ; β] (2C values, γ first) or, without scale
modulation (LeRobot's default), as β alone (C values): h + β(e). γ multiplies h directly (not
1 + γ), as in the reference.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from core.checks import check_rank, check_shapes
from core.torch_weights import torch_default_bias_init, torch_default_kernel_init


def film(features: jax.Array, scale: jax.Array | None, bias: jax.Array) -> jax.Array:
    """γ ⊙ h + β per channel, book eq. 18.6; without a scale, h + β.

    Args:
      features: [B, ..., C] feature map h (e.g. [B, T, C] for a temporal U-Net).
      scale: [B, C] per-channel γ, or None for bias-only modulation.
      bias: [B, C] per-channel β.

    Returns:
      [B, ..., C].
    """
    if jnp.ndim(features) < 2:
        raise ValueError(f"features must be [B, ..., C], got shape {jnp.shape(features)}")
    channel_pattern = ("B",) + (None,) * (features.ndim - 2) + ("C",)
    named = {"features": (features, channel_pattern), "bias": (bias, ("B", "C"))}
    if scale is not None:
        named["scale"] = (scale, ("B", "C"))
    check_shapes(**named)
    broadcast_shape = (bias.shape[0],) + (1,) * (features.ndim - 2) + (bias.shape[1],)
    modulated = features if scale is None else scale.reshape(broadcast_shape) * features
    return modulated + bias.reshape(broadcast_shape)  # book eq. 18.6


class FiLM(nn.Module):
    """Modulates h by a condition: Mish -> Dense -> (γ, β) -> γ ⊙ h + β (or h + β).

    Attributes:
      use_scale: also predict γ (Diffusion Policy's `use_film_scale_modulation`); False gives
        the bias-only modulation h + β(e).

    The Dense layer ("projection") has PyTorch's default initialization, like nn.Linear.
    """

    use_scale: bool = False

    @nn.compact
    def __call__(self, features: jax.Array, condition: jax.Array) -> jax.Array:
        """features: [B, ..., C] h; condition: [B, D] e. Returns [B, ..., C]."""
        check_rank("condition", condition, 2)
        num_channels, condition_dim = features.shape[-1], condition.shape[-1]
        projection = nn.Dense(
            2 * num_channels if self.use_scale else num_channels,
            kernel_init=torch_default_kernel_init,
            bias_init=torch_default_bias_init(condition_dim),
            name="projection",
        )
        modulation = projection(jax.nn.mish(condition))
        if self.use_scale:
            scale, bias = jnp.split(modulation, 2, axis=-1)
            return film(features, scale, bias)
        return film(features, None, modulation)

"""Position encodings: 1D sinusoidal tables, the DETR 2D sine embedding, learned embeddings.

Book 16.4.2 (eqs. 16.48-16.49, positions of visual tokens), 17.4.1 (eq. 17.21, positions of
action tokens), 17.5.1 (eq. 17.37, learned decoder queries), 18.5.2 (sinusoidal embedding of
the diffusion step) and 19.3 (eq. 19.6, learned patch positions).

1D sinusoidal. "Attention is all you need" and ACT's `create_sinusoidal_pos_embedding` are the
same table, sine and cosine interleaved over channel pairs that share a frequency:
PE[p, 2i] = sin(p / 10000^{2i/d}), PE[p, 2i+1] = cos(p / 10000^{2i/d}) (`sinusoidal_table`).
The diffusion-step embedding of Diffusion Policy (LeRobot's `DiffusionSinusoidalPosEmb`,
tensor2tensor's timing signal) differs in two ways: all sines first, then all cosines, and
frequencies 10000^{-i/(d/2-1)}, i = 0..d/2-1, so its slowest frequency is exactly 1/10000
(`sinusoidal_timestep_embedding`).

2D sine (DETR; ACT's `ACTSinusoidalPositionEmbedding2d`). Row and column indices 1..H and 1..W
are scaled to (0, 2π] (divided by H + ε and W + ε, ε = 1e-6), each encoded with d/2 channels
of interleaved sin/cos at frequencies temperature^{-2⌊j/2⌋/(d/2)}, and the two halves are
CONCATENATED, rows first: e(h, w) = [enc_y(h), enc_x(w)] ∈ R^d. The book's eq. 16.49 writes a
sum of sine and cosine terms of h alone, which is neither. Output is channels-last [H, W, d]
(our feature maps are [B, H, W, C]); flattened row-major it lines up with the tokens
`feature_map.reshape(B, H·W, C)`. LeRobot builds it with dimension = d_model / 2 per axis.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from core import torch_weights
from core.checks import check_rank

DETR_EPSILON = 1e-6  # added to the last index before normalizing, as DETR and ACT do


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")


def _interleaved_sinusoids(
    positions: np.ndarray, dim: int, temperature: float = 10000.0
) -> np.ndarray:
    """[N] positions -> [N, dim] in float64: channel j is sin (j even) or cos (j odd) of
    position / temperature^{2⌊j/2⌋/dim}."""
    angles = positions[:, None] / np.power(temperature, 2 * (np.arange(dim) // 2) / dim)
    return np.where(np.arange(dim) % 2 == 0, np.sin(angles), np.cos(angles))


def sinusoidal_table(num_positions: int, dim: int) -> jax.Array:
    """ACT's (and "Attention is all you need"'s) interleaved sinusoidal table; eq. 17.21's e_pos.

    PE[p, 2i] = sin(p / 10000^{2i/d}), PE[p, 2i+1] = cos(p / 10000^{2i/d}). Computed in float64
    and rounded to float32, as ACT builds it with numpy.

    Args:
      num_positions: T, positions 0 .. T-1.
      dim: d, any positive size (odd d ends with a sine channel).

    Returns:
      [T, d] float32.
    """
    _check_positive("num_positions", num_positions)
    _check_positive("dim", dim)
    return jnp.asarray(_interleaved_sinusoids(np.arange(num_positions), dim), jnp.float32)


def sinusoidal_timestep_embedding(timesteps: jax.Array, dim: int) -> jax.Array:
    """Diffusion Policy's step embedding: [sin(t ω_i) ..., cos(t ω_i) ...], ω_i =
    10000^{-i/(d/2-1)} (LeRobot's DiffusionSinusoidalPosEmb); book 18.5.2.

    Args:
      timesteps: [B] diffusion steps k (integer or float; may be traced).
      dim: d, even and at least 4.

    Returns:
      [B, d] float32; the first d/2 channels are sines, the last d/2 cosines.
    """
    if dim < 4 or dim % 2 != 0:
        raise ValueError(f"dim must be even and at least 4, got {dim}")
    check_rank("timesteps", timesteps, 1)
    half = dim // 2
    frequencies = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(10000.0) / (half - 1)))
    angles = jnp.asarray(timesteps, jnp.float32)[:, None] * frequencies[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def sine_position_embedding_2d(
    height: int, width: int, dim: int, *, temperature: float = 10000.0, normalize: bool = True
) -> jax.Array:
    """DETR's 2D sine embedding, as LeRobot's ACTSinusoidalPositionEmbedding2d(dim // 2).

    Rows and columns are indexed 1..H and 1..W; with `normalize` (DETR's setting for ACT) they
    are scaled to (0, 2π] as 2π i / (H + 1e-6). Each axis gets d/2 interleaved sin/cos channels;
    the row half comes first (book 16.4.2; not the sum of eq. 16.49). Computed in float64 and
    rounded to float32 (LeRobot computes in float32: the two differ by < 1e-6).

    Args:
      height: H of the feature map.
      width: W of the feature map.
      dim: d, the token size; a multiple of 4.
      temperature: base of the geometric frequency progression.
      normalize: scale the indices to (0, 2π].

    Returns:
      [H, W, d] float32, channels last.
    """
    _check_positive("height", height)
    _check_positive("width", width)
    if dim < 4 or dim % 4 != 0:
        raise ValueError(
            f"dim must be a positive multiple of 4 (sin/cos pairs per axis), got {dim}"
        )
    rows, columns = np.arange(1.0, height + 1), np.arange(1.0, width + 1)
    if normalize:
        rows = rows / (height + DETR_EPSILON) * (2 * math.pi)
        columns = columns / (width + DETR_EPSILON) * (2 * math.pi)
    half = dim // 2
    row_part = _interleaved_sinusoids(rows, half, temperature)  # [H, d/2]
    column_part = _interleaved_sinusoids(columns, half, temperature)  # [W, d/2]
    embedding = np.concatenate(
        [
            np.broadcast_to(row_part[:, None, :], (height, width, half)),
            np.broadcast_to(column_part[None, :, :], (height, width, half)),
        ],
        axis=-1,
    )
    return jnp.asarray(embedding, jnp.float32)


class LearnedPositionEmbedding(nn.Module):
    """A learned table of position vectors e_i (book eqs. 16.48, 17.37, 19.6).

    Param `embedding` [T, d], initialized N(0, 1) as torch.nn.Embedding (ACT's decoder queries
    and 1D encoder positions). Calling the module returns the whole table.
    """

    num_positions: int
    features: int
    embedding_init: nn.initializers.Initializer = nn.initializers.normal(1.0)

    @nn.compact
    def __call__(self) -> jax.Array:
        """Returns the [T, d] table."""
        _check_positive("num_positions", self.num_positions)
        _check_positive("features", self.features)
        return self.param("embedding", self.embedding_init, (self.num_positions, self.features))


def learned_position_embedding_params_from_torch(
    state_dict, module: LearnedPositionEmbedding, prefix: str = ""
) -> dict[str, np.ndarray]:
    """torch.nn.Embedding (`weight` [T, d]) -> params of `module`.

    Raises ValueError naming the key when it is missing, not [T, d], or joined by other entries
    under `prefix`.
    """
    expected = jax.eval_shape(module.init, jax.random.key(0))["params"]
    rules = [torch_weights.KeyRule("weight", ("embedding",))]
    return torch_weights.convert_state_dict(state_dict, rules, expected, prefix=prefix)

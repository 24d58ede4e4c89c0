"""Book 19.2 and 19.7 (eqs. 19.2-19.4, 19.16): action tokenization by uniform per-dimension bins.

Each action dimension d with bounds [a_min^(d), a_max^(d)] is cut into N_bins equal bins of
width Δ^(d) = (a_max^(d) - a_min^(d)) / N_bins (eq. 19.4); `discretize` maps a value to its bin
(eq. 19.2, clipped to [0, N_bins - 1], so a_max falls in the last bin) and `bin_centers` maps a
bin back to its center (eq. 19.16). The reconstruction error is at most Δ/2 and, for values
spread uniformly over a bin, Δ/4 on average.

Token layouts, for a model whose action tokens start at `offset` in its vocabulary (eq. 19.1):
- "per_dimension" (the book's eq. 19.3): bin k of dimension d is token offset + d·N_bins + k;
  D·N_bins action tokens (1792 for D = 7, N_bins = 256), and a token names its dimension.
- "shared" (RT-2): every dimension uses the same N_bins tokens, offset + k; N_bins action
  tokens (256), and the dimension is the token's position within the D-token action.
Arrays are [..., D], batch axes first; bins and token ids are int32.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from core.checks import check_shapes

Layout = Literal["per_dimension", "shared"]
LAYOUTS: tuple[Layout, ...] = ("per_dimension", "shared")


def _check_num_bins(num_bins: int) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be an integer >= 1, got {num_bins!r}")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def _check_has_action_axis(name: str, array) -> None:
    if np.ndim(array) < 1:
        raise ValueError(
            f"{name} must have shape [..., D] (rank >= 1), got {list(np.shape(array))}"
        )


def _check_bounds(name: str, array, low, high) -> None:
    """array: [..., D]; low, high: [D] with low < high wherever the values are known."""
    _check_has_action_axis(name, array)
    action_dim = np.shape(array)[-1]
    check_shapes(low=(low, (action_dim,)), high=(high, (action_dim,)))
    concrete = not isinstance(low, jax.core.Tracer) and not isinstance(high, jax.core.Tracer)
    if concrete and not np.all(np.asarray(low) < np.asarray(high)):
        raise ValueError(f"low must be < high in every dimension, got low={low}, high={high}")


def bin_width(low: jax.Array, high: jax.Array, num_bins: int) -> jax.Array:
    """Δ = (a_max - a_min) / N_bins per dimension (book eq. 19.4).

    Args:
      low, high: [D] bounds a_min, a_max of each action dimension.
      num_bins: N_bins.

    Returns:
      [D] bin widths.
    """
    _check_num_bins(num_bins)
    _check_bounds("low", low, low, high)
    return (jnp.asarray(high) - jnp.asarray(low)) / num_bins


def discretize(actions: jax.Array, low: jax.Array, high: jax.Array, num_bins: int) -> jax.Array:
    """φ(x) = clip(floor((x - a_min) / (a_max - a_min) · N_bins), 0, N_bins - 1) (eq. 19.2).

    Values outside [a_min, a_max] go to the first or last bin; x = a_max goes to the last bin.
    A value within rounding error of an inner bin edge may land on either side of it (XLA
    divides by a broadcast divisor as a product with its reciprocal).

    Args:
      actions: [..., D] continuous actions.
      low, high: [D] bounds of each dimension.
      num_bins: N_bins, a Python int (static under jit).

    Returns:
      [..., D] int32 bin indices in [0, N_bins - 1].
    """
    _check_num_bins(num_bins)
    _check_bounds("actions", actions, low, high)
    fraction = (actions - low) / (jnp.asarray(high) - low)
    bins = jnp.floor(fraction * num_bins)
    return jnp.clip(bins, 0, num_bins - 1).astype(jnp.int32)


def bin_centers(bins: jax.Array, low: jax.Array, high: jax.Array, num_bins: int) -> jax.Array:
    """â = a_min + (k + 0.5) · (a_max - a_min) / N_bins (book eq. 19.16).

    Args:
      bins: [..., D] integer bin indices k.
      low, high: [D] bounds of each dimension.
      num_bins: N_bins.

    Returns:
      [..., D] bin centers, floating point.
    """
    _check_num_bins(num_bins)
    _check_bounds("bins", bins, low, high)
    return low + (bins + 0.5) * bin_width(low, high, num_bins)


def action_vocabulary_size(action_dim: int, num_bins: int, layout: Layout = "per_dimension") -> int:
    """|V_action|: D·N_bins for the book's layout (eq. 19.3), N_bins for RT-2's shared bins."""
    _check_num_bins(num_bins)
    _check_layout(layout)
    if isinstance(action_dim, bool) or not isinstance(action_dim, int) or action_dim < 1:
        raise ValueError(f"action_dim must be an integer >= 1, got {action_dim!r}")
    return action_dim * num_bins if layout == "per_dimension" else num_bins


def _dimension_offsets(action_dim: int, num_bins: int, layout: Layout) -> jax.Array:
    """[D] first token of each dimension's bins, relative to the action-token offset."""
    if layout == "shared":
        return jnp.zeros(action_dim, jnp.int32)
    return jnp.arange(action_dim, dtype=jnp.int32) * num_bins


def bins_to_token_ids(
    bins: jax.Array, num_bins: int, layout: Layout = "per_dimension", offset: int = 0
) -> jax.Array:
    """Token ids of bins: offset + d·N_bins + k ("per_dimension") or offset + k ("shared").

    Args:
      bins: [..., D] int bin indices in [0, N_bins - 1].
      num_bins: N_bins.
      layout: "per_dimension" (book eq. 19.3) or "shared" (RT-2).
      offset: id of the first action token in the model's vocabulary.

    Returns:
      [..., D] int32 token ids.
    """
    _check_num_bins(num_bins)
    _check_layout(layout)
    _check_has_action_axis("bins", bins)
    dimension_offsets = _dimension_offsets(np.shape(bins)[-1], num_bins, layout)
    return (offset + dimension_offsets + bins).astype(jnp.int32)


def token_ids_to_bins(
    token_ids: jax.Array, num_bins: int, layout: Layout = "per_dimension", offset: int = 0
) -> jax.Array:
    """The inverse of `bins_to_token_ids` for the D tokens of one action.

    Ids that are not action tokens of their position's dimension (which constrained decoding,
    book 19.7, rules out) give bins outside [0, N_bins - 1]; they are not clipped.

    Args:
      token_ids: [..., D] int token ids, position d holding dimension d's token.

    Returns:
      [..., D] int32 bin indices.
    """
    _check_num_bins(num_bins)
    _check_layout(layout)
    _check_has_action_axis("token_ids", token_ids)
    dimension_offsets = _dimension_offsets(np.shape(token_ids)[-1], num_bins, layout)
    return (token_ids - offset - dimension_offsets).astype(jnp.int32)

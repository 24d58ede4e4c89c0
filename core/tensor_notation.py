"""Book 12.1-12.3 (and 16.44): tensor operations in index notation, each one einsum or reshape.

Each function states its index expression; a repeated index is summed (Einstein's convention,
book 12.1.2). Reshapes are row-major (C order, the numpy/JAX/PyTorch default): the last axis
varies fastest, so flattening [H, W] puts element (h, w) at h·W + w.

Permutation conventions (book 12.3.2). `jnp.transpose(x, axes)` (PyTorch's `permute`) builds
Y with Y's axis a equal to X's axis axes[a]. For Y_ijkl = X_kilj, Y's axes (i, j, k, l) are X's
axes (1, 3, 0, 2), so axes = (1, 3, 0, 2); the book's (2, 0, 3, 1) is its inverse, which is
the *destination* of each X axis, i.e. `jnp.moveaxis(x, (0, 1, 2, 3), (2, 0, 3, 1))`.
`transpose_axes` derives the axes from the index strings, so no one has to do this by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from core.checks import check_rank, check_shapes


def _check_min_rank(name: str, array, min_rank: int, pattern: str) -> None:
    if np.ndim(array) < min_rank:
        raise ValueError(
            f"{name} must have shape {pattern} (rank >= {min_rank}), got {list(np.shape(array))}"
        )


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """C_ij = A_ik B_kj (book eq. 12.1).

    Args:
      a: [I, K]; b: [K, J].

    Returns:
      [I, J].
    """
    check_shapes(a=(a, ("I", "K")), b=(b, ("K", "J")))
    return jnp.einsum("ik,kj->ij", a, b)


def matvec(weights: jax.Array, x: jax.Array) -> jax.Array:
    """y_i = W_ij x_j (book eq. 12.2).

    Args:
      weights: [I, J]; x: [J].

    Returns:
      [I].
    """
    check_shapes(weights=(weights, ("I", "J")), x=(x, ("J",)))
    return jnp.einsum("ij,j->i", weights, x)


def correlate_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """y_t = w_s x_{t+s}, t = 0..T-S (book eq. 12.3): 1D 'valid' correlation, stride 1.

    This is cross-correlation, which is what deep-learning 'convolution' layers compute
    (`jnp.correlate(x, w, 'valid')`, `lax.conv_general_dilated`); the convolution of signal
    processing flips the kernel, y_t = Σ_s w_s x_{t+S-1-s}.

    Args:
      x: [T] input sequence; kernel: [S] filter, S <= T.

    Returns:
      [T - S + 1].
    """
    sizes = check_shapes(x=(x, ("T",)), kernel=(kernel, ("S",)))
    if sizes["S"] > sizes["T"]:
        raise ValueError(f"kernel length {sizes['S']} must not exceed x length {sizes['T']}")
    num_outputs = sizes["T"] - sizes["S"] + 1
    windows = x[jnp.arange(num_outputs)[:, None] + jnp.arange(sizes["S"])[None, :]]  # x_{t+s}
    return jnp.einsum("ts,s->t", windows, kernel)


def batched_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """C_bmn = A_bmk B_bkn (book eq. 12.4).

    Args:
      a: [B, M, K]; b: [B, K, N].

    Returns:
      [B, M, N].
    """
    check_shapes(a=(a, ("B", "M", "K")), b=(b, ("B", "K", "N")))
    return jnp.einsum("bmk,bkn->bmn", a, b)


def scale_last_axis(x: jax.Array, gamma: jax.Array) -> jax.Array:
    """Y_...n = X_...n γ_n (book eq. 12.5): γ broadcast over all leading axes (book 12.2.1).

    Args:
      x: [..., N]; gamma: [N], e.g. a layer-norm gain.

    Returns:
      [..., N].
    """
    _check_min_rank("x", x, 1, "[..., N]")
    check_shapes(gamma=(gamma, (np.shape(x)[-1],)))
    return jnp.einsum("...n,n->...n", x, gamma)


def _check_indices(name: str, indices: str) -> None:
    if len(set(indices)) != len(indices) or not indices.isalpha():
        raise ValueError(f"{name} must be distinct letters, one per axis, got {indices!r}")


def _check_permutation(input_indices: str, output_indices: str) -> None:
    _check_indices("input_indices", input_indices)
    _check_indices("output_indices", output_indices)
    if sorted(input_indices) != sorted(output_indices):
        raise ValueError(
            f"output_indices {output_indices!r} must be a permutation of input_indices "
            f"{input_indices!r}"
        )


def permute(x: jax.Array, input_indices: str, output_indices: str) -> jax.Array:
    """Y_{output_indices} = X_{input_indices}, e.g. Y_ijkl = X_kilj (book eqs. 12.7-12.8).

    Args:
      x: an array with one axis per letter of `input_indices`.
      input_indices: names of x's axes, e.g. "kilj".
      output_indices: the same letters in the order of the result's axes, e.g. "ijkl".

    Returns:
      x with its axes reordered.
    """
    _check_permutation(input_indices, output_indices)
    check_rank("x", x, len(input_indices))
    return jnp.einsum(f"{input_indices}->{output_indices}", x)


def transpose_axes(input_indices: str, output_indices: str) -> tuple[int, ...]:
    """The `axes` for which `jnp.transpose(x, axes)` equals `permute(x, input, output)`.

    axes[a] is the position in `input_indices` of the a-th output index: "kilj" -> "ijkl" gives
    (1, 3, 0, 2).
    """
    _check_permutation(input_indices, output_indices)
    return tuple(input_indices.index(index) for index in output_indices)


def inverse_permutation(axes: Sequence[int]) -> tuple[int, ...]:
    """The axes q with transpose(transpose(x, axes), q) = x, i.e. q[axes[a]] = a."""
    if sorted(axes) != list(range(len(axes))):
        raise ValueError(f"axes must be a permutation of 0..{len(axes) - 1}, got {tuple(axes)}")
    inverse = [0] * len(axes)
    for position, axis in enumerate(axes):
        inverse[axis] = position
    return tuple(inverse)


def merge_batch_channels(x: jax.Array) -> jax.Array:
    """[B, C, H, W] -> [B·C, H·W], row-major: X'[b·C + c, h·W + w] = X[b, c, h, w] (eq. 12.6)."""
    sizes = check_shapes(x=(x, ("B", "C", "H", "W")))
    return jnp.reshape(x, (sizes["B"] * sizes["C"], sizes["H"] * sizes["W"]))


def flatten(x: jax.Array, start_axis: int = 0) -> jax.Array:
    """Merges the axes from `start_axis` on into one, row-major (book eq. 12.9).

    start_axis=0 is the book's vec(X) ∈ R^{B·C·H·W}; the input of a fully connected layer after
    a convolution keeps the batch, start_axis=1: [B, C, H, W] -> [B, C·H·W].

    Args:
      x: any array of rank >= 1.
      start_axis: first merged axis, 0 <= start_axis < rank.
    """
    rank = np.ndim(x)
    if not 0 <= start_axis < rank:
        raise ValueError(
            f"start_axis must be in [0, {rank}) for x of rank {rank}, got {start_axis}"
        )
    shape = np.shape(x)
    return jnp.reshape(x, (*shape[:start_axis], math.prod(shape[start_axis:])))


def feature_map_to_tokens(feature_map: jax.Array) -> jax.Array:
    """Channel-first feature maps to token sequences: [..., C, H, W] -> [..., H·W, C] (eq. 16.44).

    Token h·W + w is the channel vector F[..., :, h, w]. This is a flatten of (H, W) followed by
    a transpose; a plain reshape of [C, H, W] to [H·W, C] would mix channels and positions. (For
    channels-last maps [..., H, W, C] the plain reshape is right.)

    Args:
      feature_map: [..., C, H, W].

    Returns:
      [..., H·W, C].
    """
    _check_min_rank("feature_map", feature_map, 3, "[..., C, H, W]")
    *leading, height, width = np.shape(feature_map)
    spatial_flat = jnp.reshape(feature_map, (*leading, height * width))  # [..., C, H·W]
    return jnp.swapaxes(spatial_flat, -1, -2)

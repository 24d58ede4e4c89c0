"""Weight initializers: He (Kaiming), Xavier (Glorot) and orthogonal, and a depth study.

Book 11.2.1-11.2.2 (eq. 11.6) and 15.7.2. He initialization draws w ~ N(0, 2/n_{ℓ-1}) (11.6), so
that for ReLU layers E[z^(ℓ)²] ≈ E[z^(ℓ-1)²]: half of a symmetric z is zeroed by ReLU, and the
factor 2 restores the second moment. Xavier uses 2/(n_in + n_out), suited to sigmoid/tanh.
Orthogonal matrices have every singular value equal to the gain, so their spectral radius is
the gain (15.7.2).

Every initializer is a flax/jax initializer `init(key, shape, dtype) -> array`.

Fan-in convention. flax's Dense kernel is [n_in, n_out] (y = x W) and a conv kernel is
[..., n_in, n_out]: the defaults in_axis=-2, out_axis=-1 read those, and any remaining axes (the
receptive field) multiply both fans, as in `jax.nn.initializers`. The book's W^(ℓ) is
[n_ℓ, n_{ℓ-1}] = [n_out, n_in] (z = W a): pass in_axis=-1, out_axis=-2 for that layout.

He and Xavier come in the plain normal and uniform families, the distributions the book and the
original papers use. `jax.nn.initializers.he_normal` and `glorot_normal` default to a
*truncated* normal (rescaled to the same variance); ours are untruncated, equal sample for
sample to `variance_scaling(..., "normal")`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def _check_kernel_shape(shape: Sequence[int]) -> None:
    if len(shape) < 2:
        raise ValueError(
            f"shape must have rank >= 2 (a weight matrix or kernel), got {tuple(shape)}"
        )


def fans(shape: Sequence[int], in_axis: int = -2, out_axis: int = -1) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight array: n_in and n_out times the receptive field size.

    Args:
      shape: weight shape, e.g. [n_in, n_out] (flax Dense) or [kh, kw, n_in, n_out] (conv).
      in_axis: axis of the input units.
      out_axis: axis of the output units.
    """
    _check_kernel_shape(shape)
    receptive_field = math.prod(shape) // (shape[in_axis] * shape[out_axis])
    return shape[in_axis] * receptive_field, shape[out_axis] * receptive_field


def he_variance(fan_in: int) -> float:
    """Var[w] = 2 / n_{ℓ-1}, book eq. 11.6."""
    return 2.0 / fan_in


def xavier_variance(fan_in: int, fan_out: int) -> float:
    """Var[w] = 2 / (n_in + n_out) (Glorot and Bengio)."""
    return 2.0 / (fan_in + fan_out)


def lecun_variance(fan_in: int) -> float:
    """Var[w] = 1 / n_in: preserves E[z²] for linear (or tanh near 0) layers, not for ReLU."""
    return 1.0 / fan_in


def _normal(variance: Callable[[int, int], float], in_axis: int, out_axis: int) -> Initializer:
    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        std = math.sqrt(variance(*fans(shape, in_axis, out_axis)))
        return std * jax.random.normal(key, shape, dtype)

    return init


def _uniform(variance: Callable[[int, int], float], in_axis: int, out_axis: int) -> Initializer:
    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        limit = math.sqrt(3.0 * variance(*fans(shape, in_axis, out_axis)))  # Var U(-a, a) = a²/3
        return limit * jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0)

    return init


def he_normal(in_axis: int = -2, out_axis: int = -1) -> Initializer:
    """w ~ N(0, 2/fan_in), book eq. 11.6."""
    return _normal(lambda fan_in, _: he_variance(fan_in), in_axis, out_axis)


def he_uniform(in_axis: int = -2, out_axis: int = -1) -> Initializer:
    """w ~ U(-sqrt(6/fan_in), sqrt(6/fan_in)): the variance 2/fan_in of eq. 11.6."""
    return _uniform(lambda fan_in, _: he_variance(fan_in), in_axis, out_axis)


def xavier_normal(in_axis: int = -2, out_axis: int = -1) -> Initializer:
    """w ~ N(0, 2/(fan_in + fan_out))."""
    return _normal(xavier_variance, in_axis, out_axis)


def xavier_uniform(in_axis: int = -2, out_axis: int = -1) -> Initializer:
    """w ~ U(-sqrt(6/(fan_in + fan_out)), +sqrt(6/(fan_in + fan_out)))."""
    return _uniform(xavier_variance, in_axis, out_axis)


def lecun_normal(in_axis: int = -2, out_axis: int = -1) -> Initializer:
    """w ~ N(0, 1/fan_in): std 1/sqrt(n), the scale that is too small for ReLU by sqrt(2)."""
    return _normal(lambda fan_in, _: lecun_variance(fan_in), in_axis, out_axis)


def normal(std: float) -> Initializer:
    """w ~ N(0, std²) whatever the width: the unscaled initialization."""
    return _normal(lambda fan_in, fan_out: std**2, in_axis=-2, out_axis=-1)


def orthogonal(gain: float = 1.0, column_axis: int = -1) -> Initializer:
    """Haar-random (semi-)orthogonal matrices times `gain` (book 15.7.2).

    The weight is viewed as a matrix [n_rows, n_cols] with n_cols = shape[column_axis] and the
    other axes flattened into rows. If n_rows >= n_cols the columns are orthonormal (times gain),
    otherwise the rows are. A square orthogonal matrix has every singular value and every
    eigenvalue modulus equal to `gain`, so its spectral radius is `gain`.

    Construction: the QR factorization of a standard normal matrix, with the signs of the
    columns of Q fixed by the signs of diag(R) so that Q is uniformly (Haar) distributed.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        _check_kernel_shape(shape)
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        tall_shape = (max(n_rows, n_cols), min(n_rows, n_cols))
        q, r = jnp.linalg.qr(jax.random.normal(key, tall_shape, dtype))
        q = q * jnp.sign(jnp.diagonal(r))
        matrix = q if n_rows >= n_cols else q.T
        row_axes_shape = list(shape)
        del row_axes_shape[column_axis]
        columns_last = matrix.reshape(*row_axes_shape, n_cols)
        return gain * jnp.moveaxis(columns_last, -1, column_axis)

    return init


class SecondMoments(NamedTuple):
    """Per-layer log10 mean squares of a deep ReLU network (book 11.2.1-11.2.2).

    preactivation: [L] log10 E[z^(ℓ)²], ℓ = 1..L (the quantity of the book's claim after 11.6).
    activation: [L] log10 E[a^(ℓ)²] with a^(ℓ) = ReLU(z^(ℓ)).
    """

    preactivation: jax.Array
    activation: jax.Array


def _log10_mean_square(values: jax.Array) -> jax.Array:
    return jnp.log10(jnp.mean(jnp.square(values)))


def _unit_mean_square(values: jax.Array) -> jax.Array:
    """values / sqrt(E[values²]); all-zero values stay zero."""
    mean_square = jnp.mean(jnp.square(values))
    return values / jnp.sqrt(jnp.where(mean_square > 0, mean_square, 1.0))


def relu_second_moments(
    key: jax.Array, inputs: jax.Array, weight_init: Initializer, depth: int
) -> SecondMoments:
    """Second moments of z^(ℓ) = a^(ℓ-1) W^(ℓ), a^(ℓ) = ReLU(z^(ℓ)) through `depth` square layers.

    The weights W^(ℓ) [n, n] are drawn by `weight_init` (flax layout, zero biases). To follow
    scales that vanish or explode by hundreds of orders of magnitude, the activations are
    rescaled to unit mean square after each layer and the scale is carried as a logarithm:
    a bias-free ReLU layer is positively homogeneous (ReLU(c z) = c ReLU(z) for c > 0), so
    rescaling its input rescales every later second moment by the same factor. A layer whose
    activations are all exactly zero gives log10 0 = -inf from there on.

    Args:
      key: PRNG key for the weights.
      inputs: [B, n] input activations a^(0).
      weight_init: initializer called as weight_init(key, (n, n), inputs.dtype).
      depth: number of layers L.

    Returns:
      SecondMoments with [L] log10 mean squares over the batch and the units.
    """
    if jnp.ndim(inputs) != 2:
        raise ValueError(f"inputs must have shape [B, n], got {list(jnp.shape(inputs))}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    width = inputs.shape[-1]

    def layer(carry, layer_key):
        unit_activations, log10_scale = carry  # a^(ℓ-1) = 10^(log10_scale / 2) unit_activations
        weights = weight_init(layer_key, (width, width), inputs.dtype)
        preactivations = unit_activations @ weights
        activations = jax.nn.relu(preactivations)
        log10_preactivation = log10_scale + _log10_mean_square(preactivations)
        log10_activation = log10_scale + _log10_mean_square(activations)
        carry = (_unit_mean_square(activations), log10_activation)
        return carry, (log10_preactivation, log10_activation)

    start = (_unit_mean_square(inputs), _log10_mean_square(inputs))
    _, (preactivation, activation) = jax.lax.scan(layer, start, jax.random.split(key, depth))
    return SecondMoments(preactivation, activation)

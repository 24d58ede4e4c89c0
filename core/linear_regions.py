"""Counting the linear regions of a ReLU network: exactly along a line, from below on a plane.

Book 9.2.2. A ReLU network is piecewise affine: inside a set of inputs on which every hidden
unit keeps its sign (an *activation region*, one per activation pattern), each pre-activation
is an affine function of the input, so the set is a convex polytope cut out by linear
inequalities. Hence along a line each activation pattern occupies one interval, and on a plane
one convex cell: counting patterns counts regions. (Two neighbouring regions can carry the same
affine map, e.g. when the unit that switches feeds only dead units; the count of activation
regions, Hanin and Rolnick's, bounds the count of affine pieces from above.)

Along a segment x(t) = x_a + t (x_b − x_a), t ∈ [0, 1], the count is exact: process the hidden
layers in order, keeping the sorted breakpoints found so far. Between two consecutive
breakpoints the patterns of the earlier layers are constant, so each pre-activation of the
current layer is affine in t there; being continuous, it is the chord between its values at the
two breakpoints, and it changes sign inside the interval exactly when those values have opposite
signs, at t* = t_a + (t_b − t_a) z_a / (z_a − z_b). Each such zero is a pattern change. No
sampling is involved; the breakpoints live in a fixed-size array so the search runs under jit.

On a 2D slice the count of distinct patterns over a grid is only a lower bound: a region smaller
than the grid spacing can be missed.

Networks are `core.mlp` parameters (column-stacked W^(l): [n_l, n_{l-1}]) with ReLU hidden
layers and an affine output layer; inputs here are batch-first.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from core import mlp
from core.checks import check_shapes


class LineRegions(NamedTuple):
    """The activation regions along a segment.

    count: the number of regions (intervals of constant activation pattern).
    breakpoints: [count − 1] the sorted t ∈ (0, 1) where the pattern changes.
    """

    count: int
    breakpoints: np.ndarray


def random_relu_network(
    key: jax.Array, sizes: Sequence[int], bias_std: float = 0.1, dtype=float
) -> mlp.Params:
    """A random ReLU network: He-normal weights N(0, 2/n_{l-1}) (eq. 11.6), biases N(0, σ_b²).

    Nonzero biases matter: with zero biases every region is a cone from the origin.

    Args:
      key: a `jax.random` key.
      sizes: (n_0, n_1, ..., n_L): input size, hidden widths, output size.
      bias_std: σ_b >= 0.
      dtype: of the parameters; the default `float` is float32, or float64 under x64.
    """
    if not bias_std >= 0:
        raise ValueError(f"bias_std must be non-negative, got {bias_std!r}")
    weight_key, bias_key = jax.random.split(key)
    layers = mlp.init(weight_key, sizes, mlp.HE_NORMAL, dtype)
    bias_keys = jax.random.split(bias_key, len(layers))
    return [
        mlp.Layer(layer.W, bias_std * jax.random.normal(k, layer.b.shape, dtype))
        for layer, k in zip(layers, bias_keys, strict=True)
    ]


def sawtooth_network(depth: int, dtype=float) -> mlp.Params:
    """Telgarsky's sawtooth: L layers of 2 ReLU units computing the tent map g composed L times.

    g(x) = 2 relu(x) − 4 relu(x − ½) maps [0, 1] onto itself with one fold, so g^L has 2^L
    affine pieces on [0, 1] with only 2L hidden units: the "folding" by which depth can multiply
    regions (book 9.2.2). A one-hidden-layer network needs 2^L − 1 units for as many pieces.

    Args:
      depth: L >= 1 hidden layers.

    Returns:
      Layers of sizes (1, 2, ..., 2, 1).
    """
    if not (isinstance(depth, int) and depth >= 1):
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    fold_input = jnp.array([[1.0], [1.0]], dtype)  # both units read the same scalar
    fold_output = jnp.array([[2.0, -4.0]], dtype)  # g = 2 relu(·) − 4 relu(· − ½)
    kinks = jnp.array([0.0, -0.5], dtype)
    layers = [mlp.Layer(fold_input, kinks)]
    layers += [mlp.Layer(fold_input @ fold_output, kinks) for _ in range(depth - 1)]
    return [*layers, mlp.Layer(fold_output, jnp.zeros(1, dtype))]


def hidden_preactivations(params: Sequence[mlp.Layer], inputs: jax.Array) -> list[jax.Array]:
    """Z^(l) of every hidden layer (eq. 5.16), batch-first.

    Args:
      params: L + 1 layers (L hidden ReLU layers, one affine output layer).
      inputs: [P, n_0] points.

    Returns:
      L arrays, element l − 1 is [P, n_l].
    """
    check_shapes(inputs=(inputs, (None, mlp.layer_sizes(params)[0])))
    cache = mlp.forward(params, inputs.T, mlp.RELU, mlp.IDENTITY_MSE)
    return [z.T for z in cache.Z[:-1]]


def activation_patterns(params: Sequence[mlp.Layer], inputs: jax.Array) -> jax.Array:
    """The activation pattern of each point: which hidden units are active (z > 0).

    Args:
      params: L + 1 layers.
      inputs: [P, n_0] points.

    Returns:
      [P, U] booleans, U = n_1 + ... + n_L hidden units.
    """
    return jnp.concatenate([z > 0 for z in hidden_preactivations(params, inputs)], axis=1)


def _segment_points(start: jax.Array, end: jax.Array, t: jax.Array) -> jax.Array:
    """x(t) = x_a + t (x_b − x_a): [K] -> [K, d]."""
    return start + t[:, None] * (end - start)


@functools.partial(jax.jit, static_argnames="max_breakpoints")
def _line_breakpoints(params, start, end, max_breakpoints: int):
    """Sorted knots 0, t_1, ..., 1 padded with +inf to `max_breakpoints` + 2, and the number
    of knots found (more than the array holds means it overflowed)."""
    capacity = max_breakpoints + 2
    knots = jnp.full(capacity, jnp.inf, start.dtype).at[:2].set(jnp.array([0.0, 1.0]))
    num_knots = jnp.array(2)
    for layer in range(len(params) - 1):
        valid = jnp.isfinite(knots)
        points = _segment_points(start, end, jnp.where(valid, knots, 1.0))
        z = hidden_preactivations(params, points)[layer]  # [capacity, n_l]
        z_a, z_b = z[:-1], z[1:]
        t_a, t_b = knots[:-1, None], knots[1:, None]
        in_interval = (valid[:-1] & valid[1:])[:, None]
        crosses = in_interval & (z_a * z_b < 0)
        # the chord's zero; the denominator is nonzero wherever it crosses:
        fraction = z_a / jnp.where(crosses, z_a - z_b, 1.0)
        zeros = jnp.where(crosses, t_a + (t_b - t_a) * fraction, jnp.inf)
        num_knots = num_knots + jnp.sum(crosses)
        knots = jnp.sort(jnp.concatenate([knots, zeros.ravel()]))[:capacity]
    return knots, num_knots


def count_regions_on_line(
    params: Sequence[mlp.Layer],
    start: jax.Array,
    end: jax.Array,
    max_breakpoints: int = 1024,
) -> LineRegions:
    """The exact number of activation regions met by the segment from `start` to `end` (9.2.2).

    Args:
      params: L + 1 layers (ReLU hidden layers, affine output).
      start, end: [n_0] the segment's end points x_a and x_b.
      max_breakpoints: the size of the breakpoint array; a ValueError asks for more if the
        segment crosses more boundaries.

    Returns:
      The `LineRegions`: their count and the breakpoints t ∈ (0, 1).
    """
    input_size = mlp.layer_sizes(params)[0]
    check_shapes(start=(start, (input_size,)), end=(end, (input_size,)))
    if len(params) < 2:
        raise ValueError(f"params must hold a hidden layer and an output layer, got {len(params)}")
    if not (isinstance(max_breakpoints, int) and max_breakpoints >= 1):
        raise ValueError(f"max_breakpoints must be a positive int, got {max_breakpoints!r}")
    knots, num_knots = _line_breakpoints(list(params), start, end, max_breakpoints)
    if int(num_knots) > max_breakpoints + 2:
        raise ValueError(
            f"the segment crosses {int(num_knots) - 2} or more boundaries, more than "
            f"max_breakpoints={max_breakpoints}: pass a larger max_breakpoints"
        )
    knots = np.asarray(knots[: int(num_knots)])
    distinct = knots[np.concatenate([[True], np.diff(knots) > 0])]  # units switching together
    return LineRegions(count=len(distinct) - 1, breakpoints=distinct[1:-1])


def plane_pattern_ids(
    params: Sequence[mlp.Layer],
    origin: jax.Array,
    basis: jax.Array,
    extent: float,
    resolution: int,
) -> np.ndarray:
    """Labels each point of a grid on a 2D slice with the index of its activation pattern.

    The slice is x(s, u) = origin + s basis[0] + u basis[1] with s, u on `resolution` evenly
    spaced values in [−extent, extent]. The number of distinct labels (`labels.max() + 1`) is a
    lower bound on the number of regions meeting the square: regions narrower than the grid
    spacing 2·extent / (resolution − 1) can fall between the points.

    Args:
      params: L + 1 layers.
      origin: [n_0] the slice's centre.
      basis: [2, n_0] its two directions.
      extent: half the side of the square, > 0.
      resolution: grid points per side, >= 2.

    Returns:
      [resolution, resolution] int labels in 0..(number of patterns − 1), rows along basis[1].
    """
    input_size = mlp.layer_sizes(params)[0]
    check_shapes(origin=(origin, (input_size,)), basis=(basis, (2, input_size)))
    if not extent > 0:
        raise ValueError(f"extent must be positive, got {extent!r}")
    if not (isinstance(resolution, int) and resolution >= 2):
        raise ValueError(f"resolution must be an int >= 2, got {resolution!r}")
    axis = jnp.linspace(-extent, extent, resolution, dtype=origin.dtype)
    s, u = jnp.meshgrid(axis, axis)  # [R, R]: s varies along columns, u along rows
    points = origin + s.reshape(-1, 1) * basis[0] + u.reshape(-1, 1) * basis[1]
    patterns = np.packbits(np.asarray(activation_patterns(params, points)), axis=1)
    _, labels = np.unique(patterns, axis=0, return_inverse=True)
    return labels.reshape(resolution, resolution)

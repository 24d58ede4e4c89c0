"""Data normalizers fit on training data: z-score, min-max and quantile.

Book 14.1 (eqs. 14.1-14.2, 14.1.3) and 16.14: statistics are computed on the TRAINING data
only and the same frozen transformation is applied to validation and test data. Each normalizer
is a per-feature affine map y = (x - offset) / scale sending an interval of the training data to
a target interval:

  z-score (14.1)     [μ - σ, μ + σ] -> [-1, 1]: y = (x - μ)/σ, σ the population std (1/n)
  min-max (14.2)     [min, max]     -> [0, 1], or [-1, 1], the normalized action range of
                                       robot policies (16.14)
  quantile           [q_lo, q_hi]   -> [-1, 1], clipped to [-1, 1]: robust to outliers

Constant features. A feature whose spread (σ, or half the width of its interval) is at most
`min_spread` would divide by ~0; such a feature gets unit scale and its training value is mapped
to the center of the target interval (0 for z-score and [-1, 1], 0.5 for [0, 1]): it is centered
and left unscaled, so inputs stay finite and the map stays invertible.

`unnormalize` is the exact inverse of `normalize` (up to float rounding; for the quantile
normalizer, on [-1, 1], the range of its outputs). Statistics are plain arrays: `to_dict` gives
numpy arrays for a checkpoint, `from_dict` loads them back.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Axes = int | Sequence[int]


@flax.struct.dataclass
class AffineNormalizer:
    """y = (x - offset) / scale per feature, optionally clipped to `output_clip`.

    offset: [F...] the value mapped to 0 (μ for z-score).
    scale: [F...] the data spread per output unit (σ for z-score); positive.
    output_clip: (low, high) bounds of normalized values, or None.
    The statistics' shape [F...] is the trailing shape of the data they apply to.
    """

    offset: jax.Array
    scale: jax.Array
    output_clip: tuple[float, float] | None = flax.struct.field(pytree_node=False, default=None)

    def _check_features(self, name: str, array) -> None:
        feature_shape = tuple(np.shape(self.offset))
        shape = tuple(np.shape(array))
        leading = len(shape) - len(feature_shape)
        if leading < 0 or shape[leading:] != feature_shape:
            raise ValueError(
                f"{name} must have shape [..., {', '.join(map(str, feature_shape))}] "
                f"(the feature shape of the fitted statistics), got {list(shape)}"
            )

    def normalize(self, x: jax.Array) -> jax.Array:
        """x: [..., F...] raw data -> normalized data of the same shape."""
        self._check_features("x", x)
        normalized = (x - self.offset) / self.scale
        if self.output_clip is None:
            return normalized
        return jnp.clip(normalized, *self.output_clip)

    def unnormalize(self, y: jax.Array) -> jax.Array:
        """y: [..., F...] normalized data -> raw data: the inverse of `normalize`."""
        self._check_features("y", y)
        return y * self.scale + self.offset

    def to_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays, for checkpoints."""
        state = {"offset": np.asarray(self.offset), "scale": np.asarray(self.scale)}
        if self.output_clip is not None:
            state["output_clip"] = np.asarray(self.output_clip, np.float64)
        return state

    @classmethod
    def from_dict(cls, state: dict[str, np.ndarray]) -> AffineNormalizer:
        """Inverse of `to_dict`."""
        output_clip = state.get("output_clip")
        if output_clip is not None:
            output_clip = (float(output_clip[0]), float(output_clip[1]))
        return cls(jnp.asarray(state["offset"]), jnp.asarray(state["scale"]), output_clip)


def _sample_axes(train: jax.Array, axis: Axes) -> tuple[int, ...]:
    """The reduced axes; they must be the leading ones so statistics broadcast over them."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    ndim = jnp.ndim(train)
    in_range = all(-ndim <= a < ndim for a in axes)
    sample_axes = tuple(sorted({a % ndim for a in axes})) if in_range else ()
    if not 0 < len(axes) < ndim or sample_axes != tuple(range(len(axes))):
        raise ValueError(
            f"axis must be the leading sample axes of train (0, ..., k-1) with at least one "
            f"feature axis left, got axis={axis} for train of shape {list(jnp.shape(train))}"
        )
    return sample_axes


def affine_from_interval(
    data_center: jax.Array,
    data_half_width: jax.Array,
    target: tuple[float, float],
    min_spread: float,
    output_clip: tuple[float, float] | None = None,
) -> AffineNormalizer:
    """The affine map sending [center ± half_width] onto `target`; constant features unscaled.

    The common core of every fit below, public so that normalizers can also be rebuilt from
    stored statistics (e.g. a dataset's `stats.json`) without the training data.

    Args:
      data_center, data_half_width: [...] per-feature center and half-width of the data range.
      target: the (low, high) interval the data range maps onto.
      min_spread: features with half-width <= min_spread are centered and left unscaled.
      output_clip: optional (low, high) applied to normalized outputs.
    """
    target_low, target_high = target
    if not target_low < target_high:
        raise ValueError(f"target must be an interval (low, high) with low < high, got {target}")
    if min_spread < 0:
        raise ValueError(f"min_spread must be >= 0, got {min_spread}")
    target_center = (target_low + target_high) / 2
    target_half_width = (target_high - target_low) / 2
    constant = data_half_width <= min_spread
    scale = jnp.where(constant, 1.0, data_half_width / target_half_width)
    offset = data_center - scale * target_center
    return AffineNormalizer(offset, scale, output_clip)


def fit_zscore(train: jax.Array, axis: Axes = 0, *, min_spread: float = 1e-8) -> AffineNormalizer:
    """z-score x' = (x - μ)/σ, book eq. 14.1, with the population σ = sqrt((1/n) Σ (x - μ)²).

    Args:
      train: [N, ..., F...] training data; statistics over the leading `axis` axes.
      axis: the sample axes (leading), e.g. 0 for [N, D], (0, 1) for [N, T, D] chunks.
      min_spread: features with σ <= min_spread are centered and left unscaled.
    """
    axes = _sample_axes(train, axis)
    mean = jnp.mean(train, axis=axes)
    std = jnp.std(train, axis=axes)  # ddof=0: the population σ printed under eq. 14.1
    return affine_from_interval(mean, std, (-1.0, 1.0), min_spread)


def fit_minmax(
    train: jax.Array,
    axis: Axes = 0,
    *,
    target: tuple[float, float] = (0.0, 1.0),
    min_spread: float = 1e-8,
) -> AffineNormalizer:
    """Min-max scaling of [min, max] onto `target`, book eq. 14.2 for target (0, 1).

    Use target (-1, 1) for actions (book 16.14). Test data outside the training range land
    outside `target`: the map is not clipped.

    Args:
      train: [N, ..., F...] training data; statistics over the leading `axis` axes.
      axis: the sample axes (leading).
      target: the interval [min, max] is mapped onto.
      min_spread: features with (max - min)/2 <= min_spread are centered and left unscaled.
    """
    axes = _sample_axes(train, axis)
    low, high = jnp.min(train, axis=axes), jnp.max(train, axis=axes)
    return affine_from_interval((low + high) / 2, (high - low) / 2, target, min_spread)


def fit_quantile(
    train: jax.Array,
    axis: Axes = 0,
    *,
    quantiles: tuple[float, float] = (0.01, 0.99),
    min_spread: float = 1e-8,
) -> AffineNormalizer:
    """Maps the [q_lo, q_hi] quantiles of the training data onto [-1, 1] and clips to [-1, 1].

    A few outliers move the min and max, not the 1% and 99% quantiles, so the bulk of the data
    keeps its resolution; outliers are clipped to ±1.

    Args:
      train: [N, ..., F...] training data; statistics over the leading `axis` axes.
      axis: the sample axes (leading).
      quantiles: (q_lo, q_hi) with 0 <= q_lo < q_hi <= 1 (linear interpolation, as numpy).
      min_spread: features with (q_hi - q_lo)/2 <= min_spread are centered and left unscaled.
    """
    q_low, q_high = quantiles
    if not 0.0 <= q_low < q_high <= 1.0:
        raise ValueError(f"quantiles must satisfy 0 <= q_lo < q_hi <= 1, got {quantiles}")
    axes = _sample_axes(train, axis)
    low, high = jnp.quantile(train, jnp.asarray(quantiles), axis=axes)
    return affine_from_interval(
        (low + high) / 2, (high - low) / 2, (-1.0, 1.0), min_spread, (-1.0, 1.0)
    )

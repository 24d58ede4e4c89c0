"""Random-features regression fit by minimum-norm least squares: the model of double descent.

Book 9.5 (9.5.2-9.5.3). A random-features model draws a feature map φ: R^d → R^p once and
trains only the linear read-out, f(x) = φ(x)ᵀ c. Fit by the minimum-norm least-squares solution
c = Φ⁺ y (`core.least_squares.minimum_norm_solution`), it is the linear model the book's
"sketch of one explanation route" analyses: below the interpolation threshold p = n it is
ordinary least squares, above it the minimum-norm interpolant, and at p = n the smallest singular
value of the [n, p] feature matrix Φ is near zero, so ‖c‖ and the test error peak.

Two feature maps, p features each:
- "relu": φ_k(x) = max(0, w_kᵀx + b_k) / √p, w_k ~ N(0, I/d), b_k ~ N(0, 1) (a random
  one-hidden-layer ReLU network, eq. 9.1, with frozen first layer);
- "fourier": φ_k(x) = √(2/p) cos(w_kᵀx + b_k), w_k ~ N(0, I), b_k ~ U[0, 2π) (Rahimi and
  Recht's random Fourier features of the Gaussian kernel exp(−‖x − x'‖² / 2)).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from core import activations, least_squares
from core.checks import check_shapes

FEATURE_KINDS = ("relu", "fourier")


class RandomFeatures(NamedTuple):
    """A drawn feature map: weights: [p, d] the w_k as rows; offsets: [p] the b_k."""

    weights: jax.Array
    offsets: jax.Array


class RandomFeaturesModel(NamedTuple):
    """A fitted model f(x) = φ(x)ᵀ c: features: the map φ; coefficients: c: [p]."""

    features: RandomFeatures
    coefficients: jax.Array


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")


def init_random_features(
    key: jax.Array, input_dim: int, num_features: int, kind: str = "relu", dtype=float
) -> RandomFeatures:
    """Draws the feature map φ: R^d → R^p of the given kind (see the module docstring).

    Args:
      key: a `jax.random` key.
      input_dim: d >= 1.
      num_features: p >= 1.
      kind: "relu" or "fourier".
      dtype: of the draws; the default `float` is float32, or float64 under x64.
    """
    _check_kind(kind)
    for name, value in (("input_dim", input_dim), ("num_features", num_features)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    weight_key, offset_key = jax.random.split(key)
    normal = jax.random.normal(weight_key, (num_features, input_dim), dtype)
    if kind == "relu":
        weights = normal / jnp.sqrt(input_dim)
        offsets = jax.random.normal(offset_key, (num_features,), dtype)
    else:
        weights = normal
        offsets = jax.random.uniform(offset_key, (num_features,), dtype, 0.0, 2.0 * jnp.pi)
    return RandomFeatures(weights=weights, offsets=offsets)


def random_features(features: RandomFeatures, inputs: jax.Array, kind: str = "relu") -> jax.Array:
    """Φ = φ(X): the feature matrix of a batch of inputs.

    Args:
      features: the drawn map, weights [p, d], offsets [p].
      inputs: X: [m, d].
      kind: the kind the map was drawn for.

    Returns:
      [m, p] one row φ(x_i) per input.
    """
    _check_kind(kind)
    check_shapes(
        weights=(features.weights, ("p", "d")),
        offsets=(features.offsets, ("p",)),
        inputs=(inputs, (None, "d")),
    )
    num_features = features.weights.shape[0]
    projections = inputs @ features.weights.T + features.offsets
    if kind == "relu":
        return activations.relu(projections) / jnp.sqrt(num_features)
    return jnp.sqrt(2.0 / num_features) * jnp.cos(projections)


def first_features(features: RandomFeatures, num_features: int) -> RandomFeatures:
    """The map made of the first p' of the drawn features: nested maps share their draws.

    Args:
      features: weights [p, d], offsets [p].
      num_features: p', 1 <= p' <= p.
    """
    available = features.weights.shape[0]
    if not (isinstance(num_features, int) and 1 <= num_features <= available):
        raise ValueError(f"num_features must be an int in [1, {available}], got {num_features!r}")
    return RandomFeatures(features.weights[:num_features], features.offsets[:num_features])


def fit_random_features(
    features: RandomFeatures, inputs: jax.Array, targets: jax.Array, kind: str = "relu"
) -> RandomFeaturesModel:
    """Fits c = Φ⁺ y, the minimum-norm least-squares read-out of a drawn feature map (9.5.3).

    Args:
      features: the map φ, weights [p, d], offsets [p] (from `init_random_features` or
        `first_features`).
      inputs: X: [n, d] training inputs.
      targets: y: [n] training targets.
      kind: the kind the map was drawn for.

    Returns:
      The fitted model; with p >= n (and Φ of full row rank) it interpolates the training set.
    """
    check_shapes(inputs=(inputs, ("n", None)), targets=(targets, ("n",)))
    design = random_features(features, inputs, kind)
    return RandomFeaturesModel(features, least_squares.minimum_norm_solution(design, targets))


def predict(model: RandomFeaturesModel, inputs: jax.Array, kind: str = "relu") -> jax.Array:
    """f(x) = φ(x)ᵀ c for a batch of inputs.

    Args:
      model: a fitted model.
      inputs: X: [m, d].
      kind: the kind the model was fitted with.

    Returns:
      [m] predictions.
    """
    return random_features(model.features, inputs, kind) @ model.coefficients

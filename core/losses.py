"""Book ch. 4, 11.1 (eq. 11.5), 16.3.2 (eqs. 16.32-16.33), 17.3.3 (eqs. 17.13-17.18): losses.

Reductions are explicit in the names and shapes:
- elementwise losses return their inputs' shape (`squared_error`, `absolute_error`,
  `huber_loss`, `binary_cross_entropy*`);
- per-sample losses reduce the last (feature or class) axis, [..., K] -> [...]
  (`sum_squared_error`, `categorical_cross_entropy*`, `gaussian_nll`, `kl_to_standard_normal`);
- dataset losses average per-sample losses over the batch (`mean_squared_error`, book eq. 4.3),
  or average elementwise losses over the valid entries (`masked_mean`, e.g. over the non-padded
  actions of an action chunk).

Classification losses take logits and work in log space (book 11.1), so they stay finite at
|z| = 1000; `binary_cross_entropy` from probabilities is the literal eq. 4.5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from core.checks import check_same_shape, check_shapes
from core.numerics import log_softmax


def _check_feature_axis(name: str, array) -> None:
    if np.ndim(array) < 1:
        raise ValueError(
            f"{name} must have shape [..., K] (rank >= 1), got {list(np.shape(array))}"
        )


def squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """(ŷ - y)² elementwise, the summand of book eq. 4.2.

    Args:
      predictions, targets: same shape, any.
    """
    check_same_shape(predictions=predictions, targets=targets)
    return jnp.square(predictions - targets)


def absolute_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """|ŷ - y| elementwise: the L1 (MAE) loss before reduction, ACT's reconstruction loss.

    Args:
      predictions, targets: same shape, any.
    """
    check_same_shape(predictions=predictions, targets=targets)
    return jnp.abs(predictions - targets)


def sum_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-sample ||ŷ - y||² = Σ_k (ŷ_k - y_k)² (book eq. 4.2); gradient 2(ŷ - y) (eq. 4.4).

    Args:
      predictions, targets: [..., K], K outputs per sample.

    Returns:
      [...] one loss per sample.
    """
    _check_feature_axis("predictions", predictions)
    return jnp.sum(squared_error(predictions, targets), axis=-1)


def half_sum_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-sample ½||ŷ - y||², the scaled variant of book eq. 4.2; gradient ŷ - y.

    Equals `optax.l2_loss` summed over the last axis.

    Args:
      predictions, targets: [..., K], K outputs per sample.

    Returns:
      [...] one loss per sample.
    """
    return 0.5 * sum_squared_error(predictions, targets)


def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """(1/m) Σ_i ||ŷ_i - y_i||²: sum over outputs, mean over the batch (book eq. 4.3).

    Note the book's MSE sums over the K outputs; the mean over every element (as in eq. 17.15)
    is `jnp.mean(squared_error(...))` (or `masked_mean` over padded data), K times smaller.

    Args:
      predictions, targets: [B, K].

    Returns:
      [] scalar loss.
    """
    check_shapes(predictions=(predictions, ("B", "K")), targets=(targets, ("B", "K")))
    return jnp.mean(sum_squared_error(predictions, targets))


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `values` over the entries where `mask` is true (e.g. non-padded actions).

    `mask` covers the leading axes of `values` and is broadcast over the rest: with values
    [B, k, D] and mask [B, k], each valid action contributes its D entries. An all-false mask
    gives 0 (there is nothing to average, and no gradient flows).

    Args:
      values: [*mask_shape, *rest] elementwise losses.
      mask: [*mask_shape] booleans, true where an entry counts.

    Returns:
      [] Σ mask·values / (number of valid entries).
    """
    mask_shape = np.shape(mask)
    if np.shape(values)[: len(mask_shape)] != mask_shape:
        raise ValueError(
            f"mask must have the leading shape of values {list(np.shape(values))}, "
            f"got {list(mask_shape)}"
        )
    if jnp.result_type(mask) != jnp.bool_:
        raise ValueError(f"mask must be boolean, got dtype {jnp.result_type(mask)}")
    trailing_size = int(np.prod(np.shape(values)[len(mask_shape) :]))
    broadcast_mask = jnp.reshape(mask, mask_shape + (1,) * (np.ndim(values) - len(mask_shape)))
    total = jnp.sum(jnp.where(broadcast_mask, values, 0.0))
    count = jnp.sum(mask) * trailing_size
    return total / jnp.maximum(count, 1)


def _check_delta(delta: float) -> None:
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")


def huber_loss(predictions: jax.Array, targets: jax.Array, delta: float = 1.0) -> jax.Array:
    """Huber loss elementwise (book eq. 4.19): ½r² for |r| <= δ, δ(|r| - δ/2) beyond, r = y - ŷ.

    Quadratic near the target, linear (robust to outliers) far from it; equals
    `optax.huber_loss`.

    Args:
      predictions, targets: same shape, any.
      delta: the threshold δ > 0 between the two regimes, a Python float (static under jit).
    """
    _check_delta(delta)
    absolute_residual = absolute_error(predictions, targets)
    quadratic = 0.5 * jnp.square(absolute_residual)
    linear = delta * (absolute_residual - 0.5 * delta)
    return jnp.where(absolute_residual <= delta, quadratic, linear)


def huber_loss_derivative(
    predictions: jax.Array, targets: jax.Array, delta: float = 1.0
) -> jax.Array:
    """∂Huber/∂ŷ elementwise (book eq. 4.20): ŷ - y for |y - ŷ| <= δ, δ sign(ŷ - y) beyond.

    Equivalently clip(ŷ - y, -δ, δ).

    Args:
      predictions, targets: same shape, any.
      delta: the threshold δ > 0, a Python float.
    """
    _check_delta(delta)
    check_same_shape(predictions=predictions, targets=targets)
    residual = predictions - targets
    return jnp.where(jnp.abs(residual) <= delta, residual, delta * jnp.sign(residual))


def binary_cross_entropy(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """-[y log ŷ + (1 - y) log(1 - ŷ)] elementwise from probabilities (book eq. 4.5).

    Literal: log(0) = -inf is not clipped, so a saturated ŷ gives an infinite loss; prefer
    `binary_cross_entropy_with_logits`. Terms with a zero label weight count as 0 (0 log 0 = 0).

    Args:
      probs: predicted P(y = 1) in [0, 1], any shape.
      labels: targets in [0, 1] (hard or soft), probs' shape.
    """
    check_same_shape(probs=probs, labels=labels)
    return -(xlogy(labels, probs) + xlogy(1.0 - labels, 1.0 - probs))


def binary_cross_entropy_with_logits(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """BCE of ŷ = σ(z) from the logit, stable: softplus(z) - y z elementwise (eqs. 4.5, 4.8).

    From -log σ(z) = softplus(-z) and -log(1 - σ(z)) = softplus(z): no exponential of a large
    number is formed, so |z| = 1000 stays finite, and ∂/∂z = σ(z) - y (eq. 4.8).

    Args:
      logits: z, any shape.
      labels: targets in [0, 1] (hard or soft), logits' shape.
    """
    check_same_shape(logits=logits, labels=labels)
    return jnp.logaddexp(0.0, logits) - labels * logits


def categorical_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-Σ_k y_k log softmax(z)_k per sample, in log space (book eqs. 4.10, 11.5).

    ∂/∂z = softmax(z) - y when Σ_k y_k = 1 (eq. 4.18).

    Args:
      logits: [..., K] class logits.
      labels: [..., K] one-hot (or any probability vectors) over the K classes.

    Returns:
      [...] one loss per sample.
    """
    _check_feature_axis("logits", logits)
    check_same_shape(logits=logits, labels=labels)
    return -jnp.sum(labels * log_softmax(logits, axis=-1), axis=-1)


def categorical_cross_entropy_integer_labels(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log softmax(z)_y per sample for class indices y (book eq. 11.5 with a one-hot y).

    Args:
      logits: [..., K] class logits.
      labels: [...] integer class indices in [0, K).

    Returns:
      [...] one loss per sample.
    """
    _check_feature_axis("logits", logits)
    if np.shape(labels) != np.shape(logits)[:-1]:
        raise ValueError(
            f"labels must have shape {list(np.shape(logits)[:-1])} (logits without the class "
            f"axis), got {list(np.shape(labels))}"
        )
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise ValueError(f"labels must be integer class indices, got {jnp.result_type(labels)}")
    log_probs = log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


def gaussian_nll(targets: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """-log N(a; μ, diag(σ²)) per sample, parameterized by log σ (book eqs. 16.32-16.33).

    = (n/2) log 2π + Σ_i [log σ_i + (a_i - μ_i)² / (2σ_i²)]. Taking log σ keeps σ > 0
    without a constraint; with σ = 1 it is ½||a - μ||² + (n/2) log 2π (see eq. 17.15).

    Args:
      targets: [..., n] observed actions a.
      mean: [..., n] predicted means μ.
      log_std: [..., n] predicted log standard deviations log σ.

    Returns:
      [...] one negative log-likelihood per sample.
    """
    _check_feature_axis("targets", targets)
    check_same_shape(targets=targets, mean=mean, log_std=log_std)
    inverse_variance = jnp.exp(-2.0 * log_std)
    per_dimension = log_std + 0.5 * squared_error(targets, mean) * inverse_variance
    return 0.5 * np.shape(targets)[-1] * jnp.log(2.0 * jnp.pi) + jnp.sum(per_dimension, axis=-1)


def kl_to_standard_normal(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(μ, diag σ²) || N(0, I)) = ½ Σ_j (μ_j² + σ_j² - log σ_j² - 1) (book eq. 17.18).

    Parameterized by log σ² (a CVAE encoder's output), summed over the latent axis. Gradients:
    ∂/∂μ_j = μ_j (eq. 17.56), ∂/∂σ_j² = ½(1 - 1/σ_j²) (eq. 17.57).

    Args:
      mean: [..., d_z] posterior means μ.
      log_var: [..., d_z] posterior log variances log σ².

    Returns:
      [...] one KL divergence per sample.
    """
    _check_feature_axis("mean", mean)
    check_same_shape(mean=mean, log_var=log_var)
    return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(log_var) - log_var - 1.0, axis=-1)

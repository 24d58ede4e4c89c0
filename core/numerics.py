"""Book 11.1: numerically stable softmax, log-sum-exp and log-softmax by max subtraction.

The naive forms exponentiate the logits directly and overflow once a logit passes the largest
finite exponent (about 88.7 in float32 and 709.8 in float64): e^1000 is inf in both, and
inf / inf is nan. Subtracting the maximum logit first (book eq. 11.1) leaves every exponent
<= 0, so nothing overflows and the largest term is exactly e^0 = 1; the maximum cancels
mathematically (book eq. 11.3). The naive forms are kept to demonstrate the failure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _check_axis(name: str, array, axis: int) -> None:
    """Raises ValueError unless `axis` is a valid axis of `array` (rank >= 1)."""
    rank = np.ndim(array)
    if not -rank <= axis < rank:
        raise ValueError(
            f"{name} must have an axis {axis} to normalize over, got shape {list(np.shape(array))}"
        )


def _exp_normalize(logits: jax.Array, axis: int) -> jax.Array:
    """e^{x_i} / Σ_j e^{x_j} over `axis`, exponentiating its argument as given."""
    exponentials = jnp.exp(logits)
    return exponentials / jnp.sum(exponentials, axis=axis, keepdims=True)


def _log_sum_exp(logits: jax.Array, axis: int) -> jax.Array:
    """log Σ_j e^{x_j} over `axis` (kept as size 1), exponentiating its argument as given."""
    return jnp.log(jnp.sum(jnp.exp(logits), axis=axis, keepdims=True))


def _shift_by_max(logits: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    """Returns (z - max z, max z) with the max kept as a size-1 axis (book eq. 11.1).

    The maximum is a constant shift that cancels (eq. 11.3), so no gradient flows through it.
    A non-finite maximum (a slice of all -inf logits, i.e. fully masked) is replaced by 0 so the
    shift does not turn -inf - (-inf) into nan.
    """
    maximum = jax.lax.stop_gradient(jnp.max(logits, axis=axis, keepdims=True))
    maximum = jnp.where(jnp.isfinite(maximum), maximum, 0.0)
    return logits - maximum, maximum


def naive_softmax(logits: jax.Array, axis: int = -1) -> jax.Array:
    """e^{z_i} / Σ_j e^{z_j} computed literally (book eq. 3.20): nan once a logit overflows.

    Args:
      logits: [..., K, ...] logits; normalized over `axis`.
    """
    _check_axis("logits", logits, axis)
    return _exp_normalize(logits, axis)


def naive_logsumexp(logits: jax.Array, axis: int = -1) -> jax.Array:
    """log Σ_j e^{z_j} computed literally: inf once a logit overflows.

    Args:
      logits: [..., K, ...] logits; reduced over `axis`.
    """
    _check_axis("logits", logits, axis)
    return jnp.squeeze(_log_sum_exp(logits, axis), axis=axis)


def softmax(logits: jax.Array, axis: int = -1) -> jax.Array:
    """Stable softmax: e^{z'_i} / Σ_j e^{z'_j} with z' = z - max z (book eqs. 11.1-11.3).

    Args:
      logits: [..., K, ...] logits; normalized over `axis`.

    Returns:
      Probabilities, logits' shape, summing to 1 over `axis`.
    """
    _check_axis("logits", logits, axis)
    shifted, _ = _shift_by_max(logits, axis)
    return _exp_normalize(shifted, axis)  # book eq. 11.2


def logsumexp(logits: jax.Array, axis: int = -1) -> jax.Array:
    """Stable log Σ_j e^{z_j} = max z + log Σ_j e^{z_j - max z} (book eqs. 11.1, 11.4).

    Args:
      logits: [..., K, ...] logits; reduced over `axis`.

    Returns:
      logits' shape without `axis`.
    """
    _check_axis("logits", logits, axis)
    shifted, maximum = _shift_by_max(logits, axis)
    return jnp.squeeze(maximum + _log_sum_exp(shifted, axis), axis=axis)


def log_softmax(logits: jax.Array, axis: int = -1) -> jax.Array:
    """Stable log p_i = z'_i - logsumexp(z') with z' = z - max z (book eq. 11.4).

    Args:
      logits: [..., K, ...] logits; normalized over `axis`.

    Returns:
      Log-probabilities, logits' shape.
    """
    _check_axis("logits", logits, axis)
    shifted, _ = _shift_by_max(logits, axis)
    return shifted - _log_sum_exp(shifted, axis)  # book eq. 11.4

"""Temporal-ensembling weights: averaging the overlapping chunk predictions of one action.

Book 17.7 (eqs. 17.60-17.62), with 17.2.2 and 17.7.1. When a chunk of k actions is predicted at
every step, the action of step t is predicted by the chunks of steps t − τ for ages
τ = 0, ..., min(t, k − 1), and the executed action is their weighted average (17.60, 17.62).

Predictions are always stacked by AGE: row τ holds the prediction of the chunk made τ steps ago
(row 0 the most recent). Two weightings exist:

- "book" (17.61): w_τ = exp(−λ τ), so the most recent prediction weighs most (λ = 0.1 in 17.7.2).
- "act", the original ACT implementation (Zhao et al. 2023): w_i = exp(−m i) with i counting the
  available predictions from the OLDEST (w_0 is the oldest's weight, m = 0.01), so the oldest
  prediction weighs most. With n available predictions the prediction of age τ has i = n − 1 − τ.

After normalization (17.62) the "act" weights are ∝ exp(+m τ): the conventions differ exactly
by the sign of the decay on the age.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from core.checks import check_rank, check_shapes

Convention = Literal["book", "act"]
CONVENTIONS: tuple[Convention, ...] = ("book", "act")
ACT_DECAY = 0.01
"""m of the original ACT implementation."""
BOOK_DECAY = 0.1
"""λ of the book's example (17.7.2)."""


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def _check_decay(decay: float) -> None:
    if not decay >= 0:
        raise ValueError(f"decay must be non-negative, got {decay!r}")


def _masked_weights(valid: jax.Array, decay: float, convention: Convention) -> jax.Array:
    """Unnormalized weights of the valid ages, 0 elsewhere (book eq. 17.61 or ACT's).

    valid: [K] bool, row τ available. For "act" the index i of an available prediction is the
    number of available predictions older than it, so the oldest available one has i = 0.
    """
    if convention == "book":
        index = jnp.arange(valid.shape[0])  # eq. 17.61: the age τ
    else:
        index = jnp.cumsum(valid[::-1])[::-1] - valid  # available predictions older than τ
    return jnp.where(valid, jnp.exp(-decay * index), 0.0)


def _normalized(weights: jax.Array) -> jax.Array:
    """w_τ / Z with Z = Σ_τ w_τ (book eq. 17.62)."""
    return weights / jnp.sum(weights)


def temporal_ensemble_weights(
    num_predictions: int,
    decay: float,
    convention: Convention = "book",
    *,
    normalize: bool = True,
) -> jax.Array:
    """The weights of `num_predictions` predictions of one action, ordered by age.

    Args:
      num_predictions: n >= 1, the number of overlapping chunks predicting the action.
      decay: λ (book, e.g. BOOK_DECAY = 0.1) or m (ACT, ACT_DECAY = 0.01) >= 0.
      convention: "book" (most recent weighs most) or "act" (oldest weighs most).
      normalize: divide by their sum (eq. 17.62); False gives the raw w of eq. 17.61.

    Returns:
      [n] weights; entry τ belongs to the prediction of age τ (0 = most recent).
    """
    _check_convention(convention)
    _check_decay(decay)
    if num_predictions < 1:
        raise ValueError(f"num_predictions must be >= 1, got {num_predictions!r}")
    weights = _masked_weights(jnp.ones(num_predictions, dtype=bool), decay, convention)
    return _normalized(weights) if normalize else weights


def available_predictions(step: jax.Array, chunk_size: int) -> jax.Array:
    """Which ages have a prediction for the action of step t: τ <= t (17.2.2, 17.7.1).

    With a chunk predicted at every step from t = 0, the action of step t is predicted by the
    chunks of steps t − τ >= 0 with τ < k: min(t + 1, k) predictions, k at steady state.

    Args:
      step: t >= 0, scalar int (may be traced).
      chunk_size: k >= 1.

    Returns:
      [k] bool, entry τ True when the chunk of step t − τ exists.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    check_rank("step", step, 0)
    return jnp.arange(chunk_size) <= step


def ensemble(
    predictions: jax.Array,
    valid: jax.Array,
    decay: float,
    convention: Convention = "book",
) -> jax.Array:
    """The executed action a_t^final: weighted average of the valid predictions (eqs. 17.60, 17.62).

    Args:
      predictions: [K, D], row τ the action predicted for this step by the chunk of age τ.
      valid: [K] bool, rows that hold a prediction (e.g. `available_predictions`); at least one
        must be True, otherwise the result is NaN.
      decay: λ (book, e.g. BOOK_DECAY = 0.1) or m (ACT, ACT_DECAY = 0.01) >= 0.
      convention: "book" or "act", see the module docstring.

    Returns:
      [D] the ensembled action.
    """
    _check_convention(convention)
    _check_decay(decay)
    check_shapes(predictions=(predictions, ("K", "D")), valid=(valid, ("K",)))
    valid = jnp.asarray(valid, dtype=bool)
    weights = _normalized(_masked_weights(valid, decay, convention))
    safe_predictions = jnp.where(valid[:, None], predictions, 0.0)  # invalid rows may hold NaN
    return jnp.einsum("k,kd->d", weights.astype(predictions.dtype), safe_predictions)

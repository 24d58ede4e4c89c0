"""Book 7.2, 7.5, 8.4.1-8.4.3: weight penalties (L2, L1) and dropout.

Penalties. The book writes the L2 penalty two ways: λ Σ_ℓ ||W^(ℓ)||_F² in 7.2 (eq. 7.4,
gradient 2λW, eq. 7.7) and (λ/2) Σ_ℓ ||W^(ℓ)||_F² in 8.4.1 (eq. 8.22, gradient λW, eq. 8.23);
`l2_penalty` is the first and `half_l2_penalty` the second, so the same λ means a penalty twice
as strong in chapter 7 as in chapter 8. Only weights are penalized, never biases (7.2.2: "weights
only"): every penalty takes `weights`, a pytree whose every leaf is penalized, and
`weight_leaves(params, mask)` picks them from a parameter tree with an explicit mask (by default
`core.optim.weight_matrix_mask`: leaves of rank >= 2, i.e. dense and convolution kernels, not
bias or normalization vectors). The optimizers' `add_weight_decay` and `add_l1_subgradient`
are the same gradients applied inside an optax chain.

Dropout. p is the drop probability and q = 1 - p the keep probability; the mask is
m ~ Bernoulli(q) elementwise (eqs. 7.17, 8.27), drawn from an explicit key. Non-inverted dropout
multiplies by m in training (eq. 7.18) and by q at test time (eq. 7.19); inverted dropout divides
by q in training (eq. 8.28) so that E[ã | a] = a (eq. 8.29) and the test-time layer is the
identity. `dropout` is the inverted form with a train/eval switch, the usual layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from core.checks import check_same_shape
from core.optim import Mask, l1_subgradient, weight_matrix_mask

PyTree = Any


def weight_leaves(params: PyTree, mask: Mask = weight_matrix_mask) -> list[jax.Array]:
    """The leaves of `params` that `mask` selects, in tree order: what the penalties act on.

    Args:
      params: a parameter pytree.
      mask: a pytree of Python bools shaped like `params`, or a function params -> such a
        pytree; the default `core.optim.weight_matrix_mask` selects leaves of rank >= 2
        (kernels) and leaves biases and normalization scales out, as the book does. It is the
        mask the optimizers' weight decay uses, so a penalty and a decay select the same leaves.

    Shapes are static, so the selection is fixed under jit, and `jax.grad` of a penalty of
    `weight_leaves(params)` is zero on the unselected leaves.
    """
    selected = mask(params) if callable(mask) else mask
    leaves = jax.tree_util.tree_leaves(params)
    chosen = jax.tree_util.tree_leaves(selected)
    if len(chosen) != len(leaves):
        raise ValueError(
            f"mask must have one bool per leaf of params ({len(leaves)}), got {len(chosen)}"
        )
    return [leaf for leaf, keep in zip(leaves, chosen, strict=True) if keep]


def squared_frobenius_norm(matrix: jax.Array) -> jax.Array:
    """||W||_F² = Σ_i Σ_j W_ij² (book eq. 7.5); any shape, summed over every entry."""
    return jnp.sum(jnp.square(matrix))


def _sum_over_leaves(leaf_values: PyTree) -> jax.Array:
    return sum(jax.tree_util.tree_leaves(leaf_values), start=jnp.zeros(()))


def _check_strength(strength: float) -> None:
    if not strength >= 0:
        raise ValueError(f"strength must be non-negative, got {strength}")


def l2_penalty(weights: PyTree, strength: float) -> jax.Array:
    """λ Σ_ℓ ||W^(ℓ)||_F² (book eq. 7.4); gradient 2λW (eq. 7.7, `l2_penalty_gradient`).

    Args:
      weights: pytree of weight arrays, every leaf penalized (see `weight_leaves`).
      strength: λ >= 0, a Python float (static under jit).
    """
    _check_strength(strength)
    return strength * _sum_over_leaves(jax.tree_util.tree_map(squared_frobenius_norm, weights))


def half_l2_penalty(weights: PyTree, strength: float) -> jax.Array:
    """(λ/2) Σ_ℓ ||W^(ℓ)||_F² (book eq. 8.22); gradient λW (eq. 8.23): SGD decay by (1 - ηλ)."""
    return 0.5 * l2_penalty(weights, strength)


def l2_penalty_gradient(weights: PyTree, strength: float) -> PyTree:
    """∇_W of `l2_penalty`: 2λW per leaf (book eq. 7.7); weights' structure."""
    _check_strength(strength)
    return jax.tree_util.tree_map(lambda weight: 2.0 * strength * weight, weights)


def half_l2_penalty_gradient(weights: PyTree, strength: float) -> PyTree:
    """∇_W of `half_l2_penalty`: λW per leaf (book eq. 8.23); weights' structure."""
    return jax.tree_util.tree_map(lambda grad: 0.5 * grad, l2_penalty_gradient(weights, strength))


def l1_penalty(weights: PyTree, strength: float) -> jax.Array:
    """λ Σ_ℓ Σ_ij |W_ij^(ℓ)| (book eq. 8.25).

    Args:
      weights: pytree of weight arrays, every leaf penalized (see `weight_leaves`).
      strength: λ >= 0, a Python float (static under jit).
    """
    _check_strength(strength)
    absolute_sums = jax.tree_util.tree_map(lambda weight: jnp.sum(jnp.abs(weight)), weights)
    return strength * _sum_over_leaves(absolute_sums)


def l1_penalty_subgradient(weights: PyTree, strength: float, at_zero: float = 0.0) -> PyTree:
    """A subgradient of `l1_penalty`: λ sign(W_ij), and λ·s where W_ij = 0 (book eq. 8.26).

    Args:
      weights: pytree of weight arrays.
      strength: λ >= 0, a Python float (static under jit).
      at_zero: the subgradient s ∈ [-1, 1] of |w| chosen at w = 0, a Python float. The default
        0 is the minimum-norm choice; `jax.grad(jnp.abs)(0.0)` is 1 instead.

    Returns:
      weights' structure.
    """
    _check_strength(strength)
    if not -1.0 <= at_zero <= 1.0:
        raise ValueError(f"at_zero must be a subgradient of |w| at 0, in [-1, 1], got {at_zero}")
    return jax.tree_util.tree_map(
        lambda weight: strength * l1_subgradient(weight, at_zero), weights
    )


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate (the drop probability p) must be in [0, 1), got {rate}")


def dropout_mask(key: jax.Array, shape: Sequence[int], rate: float) -> jax.Array:
    """m ~ Bernoulli(1 - p) i.i.d. (book eqs. 7.17, 8.27): True keeps a unit.

    Args:
      key: a `jax.random` key.
      shape: the activations' shape.
      rate: the drop probability p in [0, 1), a Python float.

    Returns:
      [*shape] booleans.
    """
    _check_rate(rate)
    return jax.random.bernoulli(key, 1.0 - rate, tuple(shape))


def non_inverted_dropout(activations: jax.Array, mask: jax.Array) -> jax.Array:
    """Training-time h ⊙ m without rescaling (book eq. 7.18); E = (1 - p)h.

    Args:
      activations: h, any shape.
      mask: boolean keep mask m, activations' shape (see `dropout_mask`).
    """
    check_same_shape(activations=activations, mask=mask)
    return jnp.where(mask, activations, jnp.zeros_like(activations))


def non_inverted_dropout_at_test(activations: jax.Array, rate: float) -> jax.Array:
    """Test-time (1 - p)h (book eq. 7.19), matching the training-time expectation."""
    _check_rate(rate)
    return (1.0 - rate) * activations


def inverted_dropout(activations: jax.Array, mask: jax.Array, rate: float) -> jax.Array:
    """Training-time (1/q)(m ⊙ a), q = 1 - p (book eq. 8.28); E[ã | a] = a (eq. 8.29).

    Args:
      activations: a, any shape.
      mask: boolean keep mask m, activations' shape (see `dropout_mask`).
      rate: the drop probability p in [0, 1) the mask was drawn with.
    """
    _check_rate(rate)
    return non_inverted_dropout(activations, mask) / (1.0 - rate)


def dropout(
    key: jax.Array | None, activations: jax.Array, rate: float, *, train: bool
) -> jax.Array:
    """Inverted dropout as a layer: eq. 8.28 with a fresh mask in training, identity in eval.

    Args:
      key: a `jax.random` key for the mask; unused (may be None) when `train` is False.
      activations: a, any shape.
      rate: the drop probability p in [0, 1), a Python float.
      train: a Python bool; False returns `activations` unchanged (no test-time scaling needed).
    """
    _check_rate(rate)
    if not train:
        return activations
    if key is None:
        raise ValueError("key must be a jax.random key when train is True")
    return inverted_dropout(activations, dropout_mask(key, np.shape(activations), rate), rate)

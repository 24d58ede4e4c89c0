"""Book 3.3 (eqs. 3.14-3.22), 5.5, 6.43 and 10.12: activation functions and their derivatives.

Sigmoid, tanh and ReLU with the closed-form derivatives that hand-written backprop uses
(chapter 5), and softmax with its Jacobian diag(p) - p pᵀ and the vector-Jacobian product
J^T p̄ that reverse mode computes without forming J. Softmax is the stable one of
`core.numerics` (book 11.1).

ReLU at 0. ReLU is not differentiable at 0; the book allows any subgradient in [0, 1] (eq. 3.19)
and uses 0 in its worked examples (eq. 6.43). `relu_derivative` takes the value at 0 as an
explicit argument, default 0. Autodiff picks its own value: `jax.grad` of `jnp.maximum(0, z)`
gives 0.5 at z = 0 (ties split the gradient), of `jax.nn.relu` gives 0; `relu` here is written
so that `jax.grad(relu)(0.0) == relu_derivative(0.0) == 0`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core.checks import check_same_shape
from core.numerics import softmax

__all__ = [
    "relu",
    "relu_derivative",
    "sigmoid",
    "sigmoid_derivative",
    "softmax",
    "softmax_jacobian",
    "softmax_vjp",
    "tanh",
    "tanh_derivative",
]


def sigmoid(z: jax.Array) -> jax.Array:
    """σ(z) = 1 / (1 + e^{-z}) elementwise (book eq. 3.14).

    Computed by `jax.nn.sigmoid` (the logistic primitive), which neither overflows nor loses the
    tails: the literal formula's gradient is inf/inf = nan at z = -1000.
    """
    return jax.nn.sigmoid(z)


def sigmoid_derivative(z: jax.Array) -> jax.Array:
    """σ'(z) = σ(z)(1 - σ(z)) elementwise (book eq. 3.15); at most 1/4, attained at z = 0.

    Args:
      z: pre-activations, any shape.
    """
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh(z: jax.Array) -> jax.Array:
    """tanh(z) = (e^z - e^{-z}) / (e^z + e^{-z}) elementwise (book eq. 3.16)."""
    return jnp.tanh(z)


def tanh_derivative(z: jax.Array) -> jax.Array:
    """tanh'(z) = 1 - tanh²(z) elementwise (book eq. 3.17); at most 1, attained at z = 0.

    Args:
      z: pre-activations, any shape.
    """
    return 1.0 - jnp.square(tanh(z))


def relu(z: jax.Array) -> jax.Array:
    """ReLU(z) = max(0, z) elementwise (book eq. 3.18).

    Written as `where(z > 0, z, 0)`, so `jax.grad` gives 0 at z = 0, the book's convention
    (eq. 6.43) and `relu_derivative`'s default.
    """
    return jnp.where(z > 0, z, jnp.zeros_like(z))


def relu_derivative(z: jax.Array, at_zero: float = 0.0) -> jax.Array:
    """ReLU'(z): 1 for z > 0, 0 for z < 0 and `at_zero` at z = 0 (book eqs. 3.19, 6.43).

    Args:
      z: pre-activations, any shape.
      at_zero: the subgradient chosen at z = 0, a Python float in [0, 1] (eq. 3.19); the
        default 0 is the book's choice in eq. 6.43.
    """
    if not 0.0 <= at_zero <= 1.0:
        raise ValueError(f"at_zero must be a subgradient of ReLU at 0, in [0, 1], got {at_zero}")
    return jnp.where(z > 0, 1.0, jnp.where(z < 0, 0.0, at_zero)).astype(jnp.result_type(z, 1.0))


def _check_has_class_axis(probs) -> None:
    if np.ndim(probs) < 1:
        raise ValueError(f"probs must have shape [..., K] (rank >= 1), got {list(np.shape(probs))}")


def softmax_jacobian(probs: jax.Array) -> jax.Array:
    """∂p/∂z = diag(p) - p pᵀ, i.e. J_ij = p_i (δ_ij - p_j) (book eqs. 3.21-3.22, 4.13).

    Args:
      probs: [..., K] softmax probabilities p = softmax(z) over the last axis.

    Returns:
      [..., K, K] Jacobians, J[..., i, j] = ∂p_i/∂z_j.
    """
    _check_has_class_axis(probs)
    diagonal = probs[..., :, None] * jnp.eye(probs.shape[-1], dtype=probs.dtype)
    return diagonal - probs[..., :, None] * probs[..., None, :]


def softmax_vjp(probs: jax.Array, probs_cotangent: jax.Array) -> jax.Array:
    """z̄ = Jᵀ p̄ = p ⊙ (p̄ - ⟨p̄, p⟩), the softmax backward pass without forming J (eq. 10.12).

    Costs O(K) per vector instead of the O(K²) of `softmax_jacobian`; J is symmetric, so Jᵀ p̄
    is also J p̄.

    Args:
      probs: [..., K] softmax probabilities p = softmax(z) over the last axis.
      probs_cotangent: [..., K] p̄ = ∂L/∂p, the gradient arriving from above.

    Returns:
      [..., K] z̄ = ∂L/∂z.
    """
    _check_has_class_axis(probs)
    check_same_shape(probs=probs, probs_cotangent=probs_cotangent)
    inner = jnp.sum(probs_cotangent * probs, axis=-1, keepdims=True)
    return probs * (probs_cotangent - inner)

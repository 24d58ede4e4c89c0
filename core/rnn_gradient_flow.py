"""Book 15.5 and 15.7.2: how the gradient flows back through time in a vanilla RNN.

∂h^(T)/∂h^(k) is a product of step Jacobians diag(σ'_h(z_h^(j))) W_hh (eqs. 15.23-15.26); its
norm against T - k shows whether gradients vanish or explode. The book ties that to the spectral
radius ρ(W_hh) = max |λ_i| (15.5.2, 15.7.2); `with_spectral_radius` rescales a matrix to a given
ρ for such experiments. ρ governs the asymptotic rate of ‖W^n‖ (Gelfand: ‖W^n‖^{1/n} → ρ), not
its size at finite n: a non-normal W with ρ < 1 can have ‖W^n‖ far above 1 first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from core.checks import check_shapes
from core.rnn import TANH, RecurrentActivation


def spectral_radius(matrix: jax.Array) -> jax.Array:
    """ρ(W) = max |λ_i(W)|, the largest eigenvalue modulus (book 15.5.2); CPU only (eigvals).

    Args:
      matrix: [n, n].
    """
    check_shapes(matrix=(matrix, ("n", "n")))
    return jnp.max(jnp.abs(jnp.linalg.eigvals(matrix)))


def with_spectral_radius(matrix: jax.Array, radius: float) -> jax.Array:
    """W · ρ / ρ(W): the matrix rescaled to spectral radius `radius` (eigenvectors unchanged).

    Args:
      matrix: [n, n] with ρ(W) > 0.
      radius: the new spectral radius ρ >= 0.
    """
    return matrix * (radius / spectral_radius(matrix)).astype(matrix.dtype)


def step_jacobians(
    W_hh: jax.Array, hidden: jax.Array, activation: RecurrentActivation = TANH
) -> jax.Array:
    """∂h^(t)/∂h^(t-1) = diag(σ'_h(z_h^(t))) W_hh for t = 1..T (book eqs. 15.25-15.26).

    Args:
      W_hh: [d_h, d_h].
      hidden: [T, d_h] the hidden states h^(1..T) of one sequence.

    Returns:
      [T, d_h, d_h], element t - 1 is ∂h^(t)/∂h^(t-1).
    """
    check_shapes(W_hh=(W_hh, ("d_h", "d_h")), hidden=(hidden, (None, "d_h")))
    return activation.derivative_from_output(hidden)[:, :, None] * W_hh


def final_state_jacobians(
    W_hh: jax.Array, hidden: jax.Array, activation: RecurrentActivation = TANH
) -> jax.Array:
    """∂h^(T)/∂h^(k) = Π_{j=k+1}^T ∂h^(j)/∂h^(j-1) for k = 0..T (book eqs. 15.23-15.24).

    Accumulated from the end, P_T = I and P_{k} = P_{k+1} diag(σ'_h(z_h^(k+1))) W_hh, in one
    reverse scan.

    Args:
      W_hh: [d_h, d_h].
      hidden: [T, d_h] the hidden states h^(1..T) of one sequence.

    Returns:
      [T + 1, d_h, d_h], element k is ∂h^(T)/∂h^(k) (the identity at k = T).
    """
    jacobians = step_jacobians(W_hh, hidden, activation)
    identity = jnp.eye(W_hh.shape[0], dtype=jacobians.dtype)

    def step(product, jacobian):
        product = product @ jacobian  # eq. 15.24
        return product, product

    _, products = jax.lax.scan(step, identity, jacobians, reverse=True)
    return jnp.concatenate([products, identity[None]])

"""Least squares, its minimum-norm solution, and gradient descent's implicit bias towards it.

Book 9.4.4 (implicit regularization) and 9.5.3 (the minimum-norm interpolant behind double
descent). For a design A: [n, p] and targets y: [n], the least-squares risk (eq. 9.10 with the
loss ½(ŷ − y)²) is

  R̂(w) = (1 / 2n) ‖A w − y‖²,   ∇R̂(w) = (1/n) Aᵀ (A w − y).

When p > n (underdetermined) infinitely many w interpolate; the one of least Euclidean norm is
w⁺ = A⁺ y (A⁺ the Moore-Penrose pseudo-inverse). Every gradient lies in the row space of A, so
gradient descent never changes the start's component in the null space of A: from w_0 it
converges (for a step size below 2/L) to

  w_∞ = A⁺ y + (I − A⁺ A) w_0,

which is w⁺ exactly when w_0 = 0 (or w_0 lies in the row space). That is the book's claim in
9.4.4, and its limit: "initialized at zero" is doing the work.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from core import losses, optim
from core.checks import check_shapes


def _check_problem(design: jax.Array, targets: jax.Array) -> dict[str, int]:
    return check_shapes(design=(design, ("n", "p")), targets=(targets, ("n",)))


def least_squares_risk(weights: jax.Array, design: jax.Array, targets: jax.Array) -> jax.Array:
    """R̂(w) = (1 / 2n) ‖A w − y‖², the empirical risk of eq. 9.10 with ℓ = ½(ŷ − y)².

    Args:
      weights: w: [p].
      design: A: [n, p], one sample's features per row.
      targets: y: [n].

    Returns:
      [] the risk.
    """
    _check_problem(design, targets)
    check_shapes(design=(design, (None, "p")), weights=(weights, ("p",)))
    return 0.5 * jnp.mean(losses.squared_error(design @ weights, targets))


def minimum_norm_solution(design: jax.Array, targets: jax.Array) -> jax.Array:
    """w⁺ = A⁺ y: the least-squares solution of least Euclidean norm (book 9.4.4, 9.5.3).

    For p > n and A of full row rank it interpolates (A w⁺ = y); for p <= n it is the ordinary
    least-squares fit.

    Args:
      design: A: [n, p].
      targets: y: [n].

    Returns:
      [p] the minimum-norm solution.
    """
    _check_problem(design, targets)
    return jnp.linalg.pinv(design) @ targets


def null_space_projection(design: jax.Array, vector: jax.Array) -> jax.Array:
    """(I − A⁺A) v: the component of v that A does not see, which gradient descent keeps.

    Args:
      design: A: [n, p].
      vector: v: [p].

    Returns:
      [p] the projection of v onto the null space of A.
    """
    check_shapes(design=(design, ("n", "p")), vector=(vector, ("p",)))
    return vector - jnp.linalg.pinv(design) @ (design @ vector)


def gradient_descent_limit(design: jax.Array, targets: jax.Array, start: jax.Array) -> jax.Array:
    """w_∞ = A⁺ y + (I − A⁺A) w_0: where gradient descent on R̂ from w_0 converges (9.4.4).

    Args:
      design: A: [n, p].
      targets: y: [n].
      start: w_0: [p].

    Returns:
      [p] the limit; equal to `minimum_norm_solution` when w_0 = 0.
    """
    _check_problem(design, targets)
    return minimum_norm_solution(design, targets) + null_space_projection(design, start)


def smoothness(design: jax.Array) -> jax.Array:
    """L = λ_max(AᵀA) / n, the Lipschitz constant of ∇R̂; gradient descent converges for η < 2/L.

    Args:
      design: A: [n, p].

    Returns:
      [] L, from the largest singular value s_max of A as s_max² / n.
    """
    check_shapes(design=(design, ("n", "p")))
    largest_singular_value = jnp.linalg.norm(design, ord=2)
    return largest_singular_value**2 / design.shape[0]


@functools.partial(jax.jit, static_argnames="num_steps")
def _gradient_descent_iterates(design, targets, start, learning_rate, num_steps: int):
    """[T + 1, p] iterates of `gradient_descent`, the steps in one compiled `lax.scan`."""
    optimizer = optim.sgd(learning_rate)
    risk_gradient = jax.grad(least_squares_risk)

    def step(carry, _):
        weights, optimizer_state = carry
        updates, optimizer_state = optimizer.update(
            risk_gradient(weights, design, targets), optimizer_state
        )
        weights = optax.apply_updates(weights, updates)
        return (weights, optimizer_state), weights

    _, iterates = jax.lax.scan(step, (start, optimizer.init(start)), length=num_steps)
    return jnp.concatenate([start[None], iterates])


def gradient_descent(
    design: jax.Array,
    targets: jax.Array,
    start: jax.Array,
    learning_rate: float,
    num_steps: int,
) -> jax.Array:
    """Full-batch gradient descent w_{t+1} = w_t − η ∇R̂(w_t) (book eq. 8.5) on least squares.

    The gradient comes from `jax.grad` of `least_squares_risk` and the step from `core.optim.sgd`;
    the steps run in a jitted `lax.scan` (one compilation per shape and T).

    Args:
      design: A: [n, p].
      targets: y: [n].
      start: w_0: [p] (zeros for the book's claim in 9.4.4).
      learning_rate: η in (0, 2/L), see `smoothness`.
      num_steps: T >= 1.

    Returns:
      [T + 1, p] the iterates w_0, ..., w_T.
    """
    _check_problem(design, targets)
    check_shapes(design=(design, (None, "p")), start=(start, ("p",)))
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    return _gradient_descent_iterates(design, targets, start, learning_rate, num_steps)

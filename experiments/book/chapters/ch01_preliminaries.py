"""Chapter 1: mathematical preliminaries, the chain rule, gradients and matrix-calculus identities.

Book 1.1.4 (eqs. 1.13-1.14), 1.2.1 (eq. 1.18), 1.2.2 (eqs. 1.22-1.24) and 1.2.3 (the four
identities, eq. 1.26). Every derivative is taken by `jax.grad` of the function as the book
defines it and compared with the book's closed form.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core import losses, regularization
from experiments.book.records import Record, check, claim

TOLERANCE = 1e-12  # float64 agreement of autodiff and a closed form
SAMPLE_POINTS = (-2.0, -0.5, 0.3, 1.0, 1.7)


def _random_arrays(*shapes: tuple[int, ...]) -> list[jax.Array]:
    keys = jax.random.split(jax.random.key(0), len(shapes))
    return [jax.random.normal(key, shape) for key, shape in zip(keys, shapes, strict=True)]


def _max_difference(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def _agreement_claim(
    section, quantity, book_claim, autodiff, closed_form, note: str = ""
) -> list[Record]:
    """A claim that an autodiff result equals the book's closed form, up to float64 rounding."""
    difference = _max_difference(autodiff, closed_form)
    return claim(
        section,
        quantity,
        book_claim,
        f"jax.grad agrees with the closed form: max |difference| = {difference:.1e}",
        holds=difference < TOLERANCE,
        note=note,
    )


def _matrix_identity_records() -> list[Record]:
    A, B = _random_arrays((3, 4), (4, 2))
    product_transposed = _max_difference((A @ B).T, B.T @ A.T)
    frobenius_gap = abs(float(regularization.squared_frobenius_norm(A)) - float(jnp.trace(A.T @ A)))
    return [
        *claim(
            "1.1.4 eq. 1.13",
            "transpose of a product",
            "(AB)ᵀ = BᵀAᵀ",
            f"random A [3, 4], B [4, 2]: max |(AB)ᵀ - BᵀAᵀ| = {product_transposed:.1e}",
            holds=product_transposed < TOLERANCE,
        ),
        *claim(
            "1.1.4 eq. 1.14",
            "Frobenius norm",
            "||A||_F² = Σ a_ij² = trace(AᵀA)",
            f"core.regularization.squared_frobenius_norm vs trace: |difference| = "
            f"{frobenius_gap:.1e}",
            holds=frobenius_gap < TOLERANCE,
        ),
    ]


def _chain_rule_records() -> list[Record]:
    points = jnp.asarray(SAMPLE_POINTS)
    autodiff = jax.vmap(jax.grad(lambda x: jnp.sin(x**2)))(points)
    return _agreement_claim(
        "1.2.1 eq. 1.18",
        "d/dx sin(x²)",
        "d/dx sin(x²) = 2x cos(x²)",
        autodiff,
        2.0 * points * jnp.cos(points**2),
    )


def _quadratic(point: jax.Array) -> jax.Array:
    x, y = point
    return x**2 + x * y + 3.0 * y**2  # book 1.2.2: f(x, y) = x² + xy + 3y²


def _gradient_example_records() -> list[Record]:
    gradient = jax.grad(_quadratic)(jnp.array([1.0, 2.0]))
    (points,) = _random_arrays((5, 2))
    autodiff = jax.vmap(jax.grad(_quadratic))(points)
    x, y = points[:, 0], points[:, 1]
    return [
        *_agreement_claim(
            "1.2.2 eqs. 1.22-1.23",
            "∇f of f = x² + xy + 3y²",
            "∂f/∂x = 2x + y, ∂f/∂y = x + 6y",
            autodiff,
            jnp.stack([2.0 * x + y, x + 6.0 * y], axis=-1),
        ),
        *check(
            "1.2.2 eq. 1.24",
            "∇f at (1, 2)",
            ["4", "13"],
            gradient,
            note="jax.grad of f(x, y) = x² + xy + 3y²",
        ),
    ]


def _matrix_calculus_records() -> list[Record]:
    a, x, y = _random_arrays((4,), (4,), (3,))
    A, B, W = _random_arrays((4, 4), (3, 4), (3, 4))
    linear = jax.grad(lambda v: a @ v)(x)
    quadratic = jax.grad(lambda v: v @ A @ v)(x)
    symmetric = A + A.T
    quadratic_symmetric = jax.grad(lambda v: v @ symmetric @ v)(x)
    trace_gradient = jax.grad(lambda M: jnp.trace(M.T @ B))(jnp.zeros((3, 4)))
    # Identity 4 / eq. 1.26: L = ½||y - Wx||², the scaled squared error of eq. 4.2.
    least_squares = jax.grad(lambda M: losses.half_sum_squared_error(M @ x, y))(W)
    return [
        *_agreement_claim("1.2.3 identity 1", "∂(aᵀx)/∂x", "∂(aᵀx)/∂x = a", linear, a),
        *_agreement_claim(
            "1.2.3 identity 2",
            "∂(xᵀAx)/∂x",
            "∂(xᵀAx)/∂x = (A + Aᵀ)x",
            quadratic,
            (A + A.T) @ x,
        ),
        *_agreement_claim(
            "1.2.3 identity 2",
            "∂(xᵀAx)/∂x, A symmetric",
            "= 2Ax if A is symmetric",
            quadratic_symmetric,
            2.0 * symmetric @ x,
        ),
        *_agreement_claim(
            "1.2.3 identity 3", "∂ trace(AᵀB)/∂A", "∂ trace(AᵀB)/∂A = B", trace_gradient, B
        ),
        *_agreement_claim(
            "1.2.3 eq. 1.26",
            "∂/∂W ½||y - Wx||²",
            "∂L/∂W = (Wx - y)xᵀ",
            least_squares,
            np.outer(W @ x - y, x),
            note="by jax.grad of core.losses.half_sum_squared_error(Wx, y); the book's "
            "heading writes L(x), but the derivative is taken in W",
        ),
    ]


def records() -> list[Record]:
    return [
        *_matrix_identity_records(),
        *_chain_rule_records(),
        *_gradient_example_records(),
        *_matrix_calculus_records(),
    ]

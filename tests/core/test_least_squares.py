"""Least squares, the minimum-norm solution and gradient descent's implicit bias (book 9.4.4)."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import least_squares

x64_property = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    max_examples=10,
)
SEEDS = st.integers(0, 2**32 - 1)
NUM_SAMPLES, NUM_PARAMETERS = 6, 15  # underdetermined: p > n


def underdetermined_problem(seed: int):
    rng = np.random.default_rng(seed)
    design = jnp.asarray(rng.normal(size=(NUM_SAMPLES, NUM_PARAMETERS)))
    targets = jnp.asarray(rng.normal(size=NUM_SAMPLES))
    start = jnp.asarray(rng.normal(size=NUM_PARAMETERS))
    return design, targets, start


@x64_property
@given(seed=SEEDS)
def test_gradient_descent_from_zero_converges_to_the_pseudo_inverse_solution(x64, seed):
    design, targets, _ = underdetermined_problem(seed)
    step_size = 1.0 / float(least_squares.smoothness(design))
    iterates = least_squares.gradient_descent(
        design, targets, jnp.zeros(NUM_PARAMETERS), step_size, 3000
    )
    pseudo_inverse_solution = np.linalg.pinv(np.asarray(design)) @ np.asarray(targets)
    assert np.linalg.norm(iterates[-1] - pseudo_inverse_solution) < 1e-6


@x64_property
@given(seed=SEEDS)
def test_gradient_descent_keeps_the_null_space_component_of_its_start(x64, seed):
    """From w_0 ≠ 0, GD ends at A⁺y + (I − A⁺A)w_0, at distance ‖(I − A⁺A)w_0‖ from A⁺y."""
    design, targets, start = underdetermined_problem(seed)
    step_size = 1.0 / float(least_squares.smoothness(design))
    final = least_squares.gradient_descent(design, targets, start, step_size, 3000)[-1]
    pinv = np.linalg.pinv(np.asarray(design))
    null_component = start - pinv @ (np.asarray(design) @ start)
    np.testing.assert_allclose(final, pinv @ targets + null_component, atol=1e-8)
    np.testing.assert_allclose(
        least_squares.gradient_descent_limit(design, targets, start),
        pinv @ targets + null_component,
        atol=1e-10,
    )
    assert np.linalg.norm(final - pinv @ targets) == pytest.approx(
        np.linalg.norm(null_component), rel=1e-8
    )


def test_gradient_descent_steps_are_w_minus_eta_over_n_a_transpose_residual(x64):
    """Each iterate against the explicit update w ← w − (η/n) Aᵀ(Aw − y), in a Python loop."""
    design, targets, start = underdetermined_problem(0)
    step_size = 0.05
    iterates = least_squares.gradient_descent(design, targets, start, step_size, 5)
    expected = np.asarray(start)
    A, y = np.asarray(design), np.asarray(targets)
    for iterate in iterates:
        np.testing.assert_allclose(iterate, expected, rtol=1e-12, atol=1e-12)
        expected = expected - step_size / NUM_SAMPLES * A.T @ (A @ expected - y)


def test_minimum_norm_solution_is_the_interpolant_in_the_row_space(x64):
    """For full row rank: w⁺ = Aᵀ(AAᵀ)⁻¹y, which fits the data and lies in the row space."""
    design, targets, _ = underdetermined_problem(1)
    A, y = np.asarray(design), np.asarray(targets)
    solution = least_squares.minimum_norm_solution(design, targets)
    np.testing.assert_allclose(solution, A.T @ np.linalg.solve(A @ A.T, y), atol=1e-12)
    np.testing.assert_allclose(A @ solution, y, atol=1e-12)


def test_minimum_norm_solution_is_ordinary_least_squares_when_overdetermined(x64):
    rng = np.random.default_rng(2)
    tall, y = rng.normal(size=(15, 6)), rng.normal(size=15)
    np.testing.assert_allclose(
        least_squares.minimum_norm_solution(jnp.asarray(tall), jnp.asarray(y)),
        np.linalg.solve(tall.T @ tall, tall.T @ y),
        atol=1e-12,
    )


def test_null_space_projection_is_annihilated_by_the_design_and_idempotent(x64):
    design, _, start = underdetermined_problem(3)
    projected = least_squares.null_space_projection(design, start)
    np.testing.assert_allclose(design @ projected, 0.0, atol=1e-12)
    np.testing.assert_allclose(
        least_squares.null_space_projection(design, projected), projected, atol=1e-12
    )


def test_smoothness_is_the_largest_eigenvalue_of_the_hessian(x64):
    design, _, _ = underdetermined_problem(4)
    hessian = np.asarray(design).T @ np.asarray(design) / NUM_SAMPLES
    assert float(least_squares.smoothness(design)) == pytest.approx(
        np.linalg.eigvalsh(hessian)[-1], rel=1e-12
    )


def test_risk_is_half_the_mean_squared_residual():
    design, targets, start = underdetermined_problem(5)
    residual = np.asarray(design) @ np.asarray(start) - np.asarray(targets)
    assert float(least_squares.least_squares_risk(start, design, targets)) == pytest.approx(
        0.5 * np.mean(residual**2), rel=1e-5
    )


def test_shape_and_option_errors_name_the_argument():
    design, targets, start = underdetermined_problem(6)
    with pytest.raises(ValueError, match="targets"):
        least_squares.minimum_norm_solution(design, targets[:-1])
    with pytest.raises(ValueError, match="start"):
        least_squares.gradient_descent(design, targets, start[:-1], 0.1, 3)
    with pytest.raises(ValueError, match="num_steps"):
        least_squares.gradient_descent(design, targets, start, 0.1, 0)
    with pytest.raises(ValueError, match="learning_rate"):
        least_squares.gradient_descent(design, targets, start, -0.1, 3)
    with pytest.raises(ValueError, match="vector"):
        least_squares.null_space_projection(design, start[:3])

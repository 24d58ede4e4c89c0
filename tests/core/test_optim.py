"""Tests of core.optim against optax built-ins, explicit loops of the book's recursions and
closed forms; where the book's form differs from optax's default the difference is pinned."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import optim

NUM_STEPS = 30


def _problem(seed: int):
    """A random smooth non-quadratic loss over a weight matrix and a bias, and initial params."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    curvature = {
        "w": jax.random.uniform(keys[0], (3, 2), minval=0.5, maxval=2.0),
        "b": jax.random.uniform(keys[1], (2,), minval=0.5, maxval=2.0),
    }
    target = {"w": jax.random.normal(keys[2], (3, 2)), "b": jax.random.normal(keys[3], (2,))}

    def loss(params):
        return sum(
            jnp.sum(0.5 * c * (p - t) ** 2 + 0.1 * jnp.cos(p))
            for c, p, t in zip(
                jax.tree.leaves(curvature),
                jax.tree.leaves(params),
                jax.tree.leaves(target),
                strict=True,
            )
        )

    params = jax.tree.map(lambda t: t + 1.0, target)
    return loss, params


def _run(optimizer, loss, params, num_steps=NUM_STEPS):
    """Applies `num_steps` updates with the gradient of `loss` (one jitted step function);
    returns (params, state)."""

    @jax.jit
    def step(params, state):
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    state = optimizer.init(params)
    for _ in range(num_steps):
        params, state = step(params, state)
    return params, state


def _max_difference(tree_a, tree_b) -> float:
    return max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b), strict=True)
    )


def _single_update(optimizer, gradient, params):
    updates, _ = optimizer.update(gradient, optimizer.init(params), params)
    return updates


@given(
    learning_rate=st.floats(1e-3, 1.0),
    gradient=st.lists(st.floats(-10, 10), min_size=3, max_size=3),
)
def test_sgd_update_is_minus_learning_rate_times_gradient(learning_rate, gradient):
    with jax.enable_x64(True):
        gradient = jnp.asarray(gradient)
        updates = _single_update(optim.sgd(learning_rate), gradient, jnp.zeros(3))
        np.testing.assert_allclose(updates, -learning_rate * gradient, rtol=1e-12, atol=1e-15)


def test_sgd_evaluates_a_schedule_at_the_update_count():
    schedule = optax.linear_schedule(1.0, 0.0, 4)  # 1, 0.75, 0.5, ...
    optimizer = optim.sgd(schedule)
    state = optimizer.init(jnp.zeros(()))
    steps = []
    for _ in range(3):
        updates, state = optimizer.update(jnp.ones(()), state)
        steps.append(float(updates))
    assert steps == [-1.0, -0.75, -0.5]


@pytest.mark.parametrize("learning_rate", [0.05, optax.cosine_decay_schedule(0.1, NUM_STEPS)])
def test_momentum_equals_optax_sgd_with_momentum_over_many_steps(x64, learning_rate):
    loss, params = _problem(0)
    ours, _ = _run(optim.momentum(learning_rate, beta=0.9), loss, params)
    reference, _ = _run(optax.sgd(learning_rate, momentum=0.9), loss, params)
    assert _max_difference(ours, reference) < 1e-12


def test_momentum_velocity_equals_the_unrolled_sum_of_eq_8_11(x64):
    beta = 0.8
    gradients = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    transformation = optim.trace_velocity(beta)
    state = transformation.init(jnp.zeros(4))
    for gradient in gradients:
        _, state = transformation.update(gradient, state)
    steps = len(gradients)
    unrolled = sum(beta ** (steps - 1 - k) * gradients[k] for k in range(steps))
    np.testing.assert_allclose(state.velocity, unrolled, rtol=1e-12)


def _plus_scaled(tree, scale, other):
    """tree + scale · other, leaf by leaf."""
    return jax.tree.map(lambda a, b: a + scale * b, tree, other)


def _book_nesterov(loss, params, learning_rate, beta, num_steps):
    """Eqs. 8.12-8.13 as printed: the gradient at θ_t − η_t β v_t. Returns (θ_T, v_T)."""
    velocity = jax.tree.map(jnp.zeros_like, params)
    for step in range(num_steps):
        step_size = optim.learning_rate_at(learning_rate, jnp.asarray(step))
        gradient = jax.grad(loss)(_plus_scaled(params, -step_size * beta, velocity))
        velocity = _plus_scaled(gradient, beta, velocity)
        params = _plus_scaled(params, -step_size, velocity)
    return params, velocity


def _inverse_time(step):
    """A decreasing schedule computed in the default float (optax's cast int32 steps to f32)."""
    return 0.1 / (1.0 + 0.2 * step)


@pytest.mark.parametrize("learning_rate", [0.05, _inverse_time])
def test_nesterov_optimizes_the_lookahead_point_of_the_book_recursion(x64, learning_rate):
    beta = 0.9
    loss, params = _problem(2)
    book_iterate, book_velocity = _book_nesterov(loss, params, learning_rate, beta, NUM_STEPS)
    lookahead, state = _run(optim.nesterov(learning_rate, beta), loss, params)
    final_step_size = optim.learning_rate_at(learning_rate, jnp.asarray(NUM_STEPS))
    book_lookahead = _plus_scaled(book_iterate, -final_step_size * beta, book_velocity)
    assert _max_difference(lookahead, book_lookahead) < 1e-12
    recovered = optim.nesterov_iterate_from_lookahead(lookahead, state, learning_rate, beta)
    assert _max_difference(recovered, book_iterate) < 1e-12


def test_optax_nesterov_iterates_are_the_books_lookahead_points_not_its_iterates(x64):
    beta, learning_rate = 0.9, 0.05
    loss, params = _problem(3)
    book_iterate, _ = _book_nesterov(loss, params, learning_rate, beta, NUM_STEPS)
    ours, _ = _run(optim.nesterov(learning_rate, beta), loss, params)
    optax_iterate, _ = _run(optax.sgd(learning_rate, momentum=beta, nesterov=True), loss, params)
    assert _max_difference(ours, optax_iterate) < 1e-12
    # Without the change of variables the iterates differ by η β v_t.
    assert _max_difference(optax_iterate, book_iterate) > 1e-3


def test_rmsprop_equals_optax_rmsprop_whose_default_also_puts_eps_in_the_root(x64):
    loss, params = _problem(4)
    ours, _ = _run(optim.rmsprop(0.01, decay=0.9, eps=1e-8), loss, params)
    reference, _ = _run(optax.rmsprop(0.01, decay=0.9, eps=1e-8), loss, params)
    assert _max_difference(ours, reference) < 1e-12


def test_rmsprop_eps_inside_the_root_damps_a_small_gradient_step(x64):
    # First step: v = (1 − β₂) g², so the step is η g / sqrt((1 − β₂) g² + ε) (eq. 8.15).
    gradient, eps, decay, learning_rate = 1e-4, 1e-8, 0.9, 1.0
    inside = _single_update(optim.rmsprop(learning_rate, decay, eps), jnp.array(gradient), 0.0)
    outside = _single_update(
        optim.rmsprop(learning_rate, decay, eps, eps_in_sqrt=False), jnp.array(gradient), 0.0
    )
    second_moment = (1 - decay) * gradient**2
    assert float(inside) == pytest.approx(-gradient / math.sqrt(second_moment + eps), rel=1e-12)
    assert float(outside) == pytest.approx(-gradient / (math.sqrt(second_moment) + eps), rel=1e-12)
    assert float(inside) == pytest.approx(-1 / math.sqrt(1.1), rel=1e-12)  # ≈ −0.9535
    assert float(outside) == pytest.approx(-3.1613, rel=1e-4)  # ≈ 1/sqrt(0.1), 3.3× larger


def test_adam_equals_optax_adam_with_eps_root(x64):
    loss, params = _problem(5)
    ours, _ = _run(optim.adam(0.01, eps=1e-8), loss, params)
    reference, _ = _run(optax.adam(0.01, eps=0.0, eps_root=1e-8), loss, params)
    assert _max_difference(ours, reference) < 1e-12


def test_adam_with_eps_outside_the_root_equals_optax_default_adam(x64):
    loss, params = _problem(6)
    ours, _ = _run(optim.adam(0.01, eps=1e-8, eps_in_sqrt=False), loss, params)
    reference, _ = _run(optax.adam(0.01, eps=1e-8), loss, params)
    assert _max_difference(ours, reference) < 1e-12


@given(gradient=st.floats(1e-6, 10.0), sign=st.sampled_from([-1.0, 1.0]))
def test_adam_first_update_is_minus_lr_sign_over_sqrt_one_plus_eps_over_g_squared(gradient, sign):
    # m̂₁ = g and v̂₁ = g², so the first step is −η g / sqrt(g² + ε) = −η sign(g) / sqrt(1 + ε/g²).
    learning_rate, eps = 0.1, 1e-8
    with jax.enable_x64(True):
        update = _single_update(optim.adam(learning_rate, eps=eps), jnp.array(sign * gradient), 0.0)
    expected = -learning_rate * sign / math.sqrt(1.0 + eps / gradient**2)
    assert float(update) == pytest.approx(expected, rel=1e-12)


def test_adam_eps_inside_the_root_differs_from_optax_default_on_a_small_gradient(x64):
    # |g| = 1e-4 = sqrt(ε): the book's step is η/√2, optax's default (ε outside) ≈ η.
    gradient = jnp.array(1e-4)
    book = _single_update(optim.adam(1.0), gradient, 0.0)
    optax_default = _single_update(optax.adam(1.0), gradient, 0.0)
    assert float(book) == pytest.approx(-1 / math.sqrt(2), rel=1e-12)
    assert float(optax_default) == pytest.approx(-1e-4 / (1e-4 + 1e-8), rel=1e-12)
    assert float(book - optax_default) == pytest.approx(0.2928, abs=1e-4)


def test_adamw_equals_optax_adamw_with_eps_mapping_and_mask(x64):
    loss, params = _problem(7)
    ours, _ = _run(optim.adamw(0.01, weight_decay=0.1), loss, params)
    reference, _ = _run(
        optax.adamw(0.01, eps=0.0, eps_root=1e-8, weight_decay=0.1, mask=optim.weight_matrix_mask),
        loss,
        params,
    )
    assert _max_difference(ours, reference) < 1e-12


def test_adamw_first_step_shrinks_weights_by_one_minus_lr_decay_and_leaves_biases(x64):
    learning_rate, weight_decay = 0.1, 0.5
    params = {"w": jnp.array([[2.0, -1.0]]), "b": jnp.array([3.0])}
    gradient = {"w": jnp.array([[0.5, 0.25]]), "b": jnp.array([-2.0])}
    optimizer = optim.adamw(learning_rate, weight_decay=weight_decay)
    updates = _single_update(optimizer, gradient, params)
    new = optax.apply_updates(params, updates)
    adam_step = jax.tree.map(lambda g: learning_rate * g / jnp.sqrt(g**2 + 1e-8), gradient)
    np.testing.assert_allclose(
        new["w"], (1 - learning_rate * weight_decay) * params["w"] - adam_step["w"], rtol=1e-12
    )  # eq. 8.21
    np.testing.assert_allclose(new["b"], params["b"] - adam_step["b"], rtol=1e-12)


def test_coupled_l2_with_sgd_is_the_shrinkage_of_eq_8_24(x64):
    learning_rate, weight_decay = 0.1, 0.01
    params = {"w": jnp.array([[0.7, 0.8, 0.9]]), "b": jnp.array([0.5])}
    gradient = {"w": jnp.array([[0.0289, 0.0425, 0.0568]]), "b": jnp.array([0.1])}
    optimizer = optax.chain(optim.add_weight_decay(weight_decay), optim.sgd(learning_rate))
    new = optax.apply_updates(params, _single_update(optimizer, gradient, params))
    shrunk = (1 - learning_rate * weight_decay) * params["w"] - learning_rate * gradient["w"]
    np.testing.assert_allclose(new["w"], shrunk, rtol=1e-12)
    np.testing.assert_allclose(new["b"], params["b"] - learning_rate * gradient["b"], rtol=1e-12)


def test_coupled_l2_equals_the_optimizer_on_the_gradient_of_the_penalized_loss(x64):
    weight_decay = 0.05
    loss, params = _problem(8)

    def penalized(params):  # eq. 8.22 over the weight matrix only
        return loss(params) + 0.5 * weight_decay * jnp.sum(params["w"] ** 2)

    coupled = optax.chain(optim.add_weight_decay(weight_decay), optim.adam(0.01))
    ours, _ = _run(coupled, loss, params)
    reference, _ = _run(optim.adam(0.01), penalized, params)
    assert _max_difference(ours, reference) < 1e-12


def test_decoupled_adamw_differs_from_adam_with_l2_penalty(x64):
    weight_decay = 0.1
    loss, params = _problem(9)
    decoupled, _ = _run(optim.adamw(0.01, weight_decay=weight_decay), loss, params)
    coupled, _ = _run(
        optax.chain(optim.add_weight_decay(weight_decay), optim.adam(0.01)), loss, params
    )
    assert _max_difference(decoupled, coupled) > 1e-3
    # The loss is separable by leaf and biases are not decayed, so their paths coincide.
    assert _max_difference(decoupled["b"], coupled["b"]) < 1e-12


@given(scale=st.floats(1e-3, 3.0), sign=st.sampled_from([-1.0, 1.0]))
def test_l1_subgradient_matches_jax_grad_of_abs_away_from_zero(scale, sign):
    with jax.enable_x64(True):
        params = sign * scale * jnp.array([0.5, -1.0, 2.0])
        expected = jax.vmap(jax.grad(jnp.abs))(params)
        np.testing.assert_array_equal(optim.l1_subgradient(params), expected)


@pytest.mark.parametrize("subgradient_at_zero", [-1.0, 0.0, 0.3, 1.0])
def test_l1_subgradient_at_zero_is_the_chosen_s(subgradient_at_zero):
    params = {"w": jnp.array([[0.0, 2.0], [-3.0, 0.0]]), "b": jnp.array([0.0])}
    transformation = optim.add_l1_subgradient(0.5, subgradient_at_zero=subgradient_at_zero)
    updates = _single_update(transformation, jax.tree.map(jnp.zeros_like, params), params)
    s = subgradient_at_zero
    np.testing.assert_array_equal(updates["w"], 0.5 * jnp.array([[s, 1.0], [-1.0, s]]))
    np.testing.assert_array_equal(updates["b"], jnp.zeros(1))  # biases are not penalized


def test_jax_grad_of_abs_at_zero_is_one_not_the_default_zero():
    assert float(jax.grad(jnp.abs)(0.0)) == 1.0
    assert float(optim.l1_subgradient(jnp.array(0.0))) == 0.0
    assert float(optim.l1_subgradient(jnp.array(0.0), subgradient_at_zero=1.0)) == 1.0


@given(scale=st.sampled_from([0.0, 1e-3, 0.5, 1.0, 2.0, 100.0]))
def test_clip_by_global_norm_equals_optax_and_bounds_the_norm(scale):
    max_norm = 1.0
    gradient = {"w": scale * jnp.array([[3.0, -4.0]]), "b": scale * jnp.array([12.0])}  # ‖·‖=13s
    ours = _single_update(optim.clip_by_global_norm(max_norm), gradient, None)
    reference = _single_update(optax.clip_by_global_norm(max_norm), gradient, None)
    assert _max_difference(ours, reference) < 1e-6
    expected_norm = min(13.0 * scale, max_norm)  # eq. 8.34: ‖g‖ min(1, τ/‖g‖)
    assert float(optim.global_norm(ours)) == pytest.approx(expected_norm, rel=1e-6)


def test_global_norm_equals_optax_global_norm():
    _, params = _problem(10)
    assert float(optim.global_norm(params)) == pytest.approx(float(optax.tree.norm(params)))


def test_per_group_learning_rates_by_multi_transform_equal_separate_runs(x64):
    # 17.58-17.59 (α_enc, α_dec) and 17.70 (α_backbone = 0.1 α_decoder) as optax.multi_transform.
    loss, params = _problem(12)
    labels = {"w": "decoder", "b": "backbone"}
    grouped = optax.multi_transform(
        {"decoder": optim.adam(1e-2), "backbone": optim.adam(1e-3)}, labels
    )
    ours, _ = _run(grouped, loss, params)
    decoder_only, _ = _run(optim.adam(1e-2), loss, params)
    backbone_only, _ = _run(optim.adam(1e-3), loss, params)
    np.testing.assert_allclose(ours["w"], decoder_only["w"], rtol=1e-12)  # the loss is separable
    np.testing.assert_allclose(ours["b"], backbone_only["b"], rtol=1e-12)


def test_inject_hyperparams_sets_the_learning_rate_inside_jit(x64):
    optimizer = optax.inject_hyperparams(optim.adam)(learning_rate=0.1)
    params = jnp.array([1.0, -2.0])
    state = optimizer.init(params)
    state.hyperparams["learning_rate"] = jnp.asarray(0.02)
    updates, _ = jax.jit(optimizer.update)(jnp.array([0.5, 0.5]), state, params)
    reference, _ = optim.adam(0.02).update(jnp.array([0.5, 0.5]), optim.adam(0.02).init(params))
    np.testing.assert_allclose(updates, reference, rtol=1e-12)


@pytest.mark.parametrize(
    "optimizer",
    [
        optim.sgd(0.3),
        optim.momentum(0.1, 0.9),
        optim.nesterov(0.1, 0.9),
        optim.rmsprop(0.01),
        optim.adam(0.05),
    ],
    ids=["sgd", "momentum", "nesterov", "rmsprop", "adam"],
)
def test_optimizer_converges_to_the_minimum_of_a_quadratic(optimizer):
    curvature = jnp.array([1.0, 3.0])
    minimum = jnp.array([1.0, -2.0])

    def loss(params):
        return 0.5 * jnp.sum(curvature * (params - minimum) ** 2)

    final, _ = _run(optimizer, loss, jnp.zeros(2), num_steps=400)
    np.testing.assert_allclose(final, minimum, atol=2e-2)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: optim.sgd(0.0), "learning_rate"),
        (lambda: optim.sgd(-0.1), "learning_rate"),
        (lambda: optim.momentum(0.1, beta=1.0), "beta"),
        (lambda: optim.nesterov(0.1, beta=-0.1), "beta"),
        (lambda: optim.adam(0.1, b2=1.0), "b2"),
        (lambda: optim.rmsprop(0.1, eps=-1.0), "eps"),
        (lambda: optim.adamw(0.1, weight_decay=-1.0), "weight_decay"),
        (lambda: optim.add_l1_subgradient(0.1, subgradient_at_zero=2.0), "subgradient_at_zero"),
        (lambda: optim.clip_by_global_norm(0.0), "max_norm"),
    ],
)
def test_bad_hyperparameters_raise_value_error_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_weight_decay_without_params_raises_value_error():
    transformation = optim.add_weight_decay(0.1)
    with pytest.raises(ValueError, match="needs params"):
        transformation.update({"w": jnp.ones((2, 2))}, transformation.init(None))


def test_gradient_of_the_wrong_shape_raises_value_error_naming_the_leaf():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    optimizer = optim.adam(0.1)
    wrong = {"w": jnp.ones((3, 2)), "b": jnp.ones(1)}
    with pytest.raises(ValueError, match=r"updates\['b'\]"):
        optimizer.update(wrong, optimizer.init(params), params)
    decay = optim.add_weight_decay(0.1)
    with pytest.raises(ValueError, match=r"params\['b'\]"):
        decay.update(wrong, decay.init(params), params)

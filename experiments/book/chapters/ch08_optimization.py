"""Chapter 8: optimization (SGD, momentum, Nesterov, Adam/AdamW, L2/L1, clipping).

Book 8.1-8.5.1: the printed defaults and the claims code can check, computed with
`core.optim` and `core.schedules`. Dropout (8.4.3) and batch norm (8.4.4) are reported with
chapter 7's modules.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import optax

from core import optim, schedules
from experiments.book.records import Record, ambiguous, check, claim

NARROW_VALLEY_CURVATURES = (1.0, 25.0)


def _run(optimizer, loss, params, num_steps):
    """Applies `num_steps` gradient updates; returns the final (params, state)."""
    state = optimizer.init(params)
    for _ in range(num_steps):
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _default(function, argument: str):
    return inspect.signature(function).parameters[argument].default


def _schedule_records() -> list[Record]:
    step = schedules.step_decay(1.0, 0.5, 10)
    cosine = schedules.cosine_decay(1.0, 100, 0.01)
    step_values = [float(step(t)) for t in (0, 9, 10, 19, 20)]
    cosine_ends = (float(cosine(0)), float(cosine(100)))
    return [
        *claim(
            "8.1.3",
            "step decay η₀ γ^⌊t/T⌋",
            "constant for T steps, then multiplied by γ",
            f"η₀=1, γ=0.5, T=10: η at t=0,9,10,19,20 = {step_values}",
            holds=step_values == [1.0, 1.0, 0.5, 0.5, 0.25],
        ),
        *claim(
            "8.1.3",
            "cosine decay endpoints",
            "η_0 = η_max and η_T = η_min",
            f"η_max=1, η_min=0.01, T=100: η_0={cosine_ends[0]}, η_T={cosine_ends[1]}",
            holds=cosine_ends == (1.0, 0.01),
        ),
    ]


def _descent_inequality_records() -> list[Record]:
    """Eq. 8.8 on a random smooth quadratic with L = λ_max(H), for random g and η."""
    keys = jax.random.split(jax.random.PRNGKey(8), 4)
    factor = jax.random.normal(keys[0], (5, 5))
    hessian = factor @ factor.T + 0.1 * jnp.eye(5)
    smoothness = float(jnp.linalg.eigvalsh(hessian)[-1])

    def loss(params):
        return 0.5 * params @ hessian @ params

    params_batch = jax.random.normal(keys[1], (200, 5))
    gradient_batch = jax.random.normal(keys[2], (200, 5))
    step_sizes = jax.random.uniform(keys[3], (200,), maxval=2.0 / smoothness)
    slack = []
    for params, gradient, step_size in zip(params_batch, gradient_batch, step_sizes, strict=True):
        optimizer = optim.sgd(float(step_size))
        next_params = optax.apply_updates(
            params, optimizer.update(gradient, optimizer.init(params))[0]
        )
        bound = (
            loss(params)
            - step_size * jax.grad(loss)(params) @ gradient
            + 0.5 * smoothness * step_size**2 * gradient @ gradient
        )
        slack.append(float(bound - loss(next_params)))
    full_step = optim.sgd(1.0 / smoothness)
    params = params_batch[0]
    decreased, _ = _run(full_step, loss, params, 1)
    return [
        *claim(
            "8.1.4 eq. 8.8",
            "descent inequality",
            "L(θ_{t+1}) ≤ L(θ_t) − η⟨∇L, g⟩ + Lη²/2 ‖g‖² for L-smooth L",
            f"200 random (θ, g, η) on a 5-d quadratic: min slack {min(slack):.3g}",
            holds=min(slack) >= -1e-12,
        ),
        *claim(
            "8.1.4",
            "deterministic descent",
            "with g = ∇L and small η the loss decreases",
            f"η = 1/L: L {float(loss(params)):.4f} -> {float(loss(decreased)):.4f}",
            holds=bool(loss(decreased) < loss(params)),
        ),
    ]


def _momentum_records() -> list[Record]:
    beta = 0.9
    gradients = jax.random.normal(jax.random.PRNGKey(11), (8, 3))
    velocity_trace = optim.trace_velocity(beta)
    state = velocity_trace.init(jnp.zeros(3))
    for gradient in gradients:
        _, state = velocity_trace.update(gradient, state)
    steps = len(gradients)
    unrolled = sum(beta ** (steps - 1 - k) * gradients[k] for k in range(steps))
    unrolling_error = float(jnp.max(jnp.abs(state.velocity - unrolled)))
    return [
        *check(
            "8.2.1 eq. 8.10",
            "momentum coefficient β (often)",
            "0.9",
            _default(optim.momentum, "beta"),
            note="default of core.optim.momentum",
        ),
        *claim(
            "8.2.1 eq. 8.11",
            "unrolled velocity",
            "v_t = Σ_{k<t} β^{t−1−k} g_k (v_0 = 0)",
            f"8 random gradients, recursion 8.9 vs the sum: max difference {unrolling_error:.1e}",
            holds=unrolling_error < 1e-12,
        ),
    ]


def _narrow_valley_amplitude(use_nesterov: bool, learning_rate: float, beta: float) -> float:
    """Largest |θ| along the steep axis of 0.5 (θ₁² + 25 θ₂²) over steps 20-100 (book iterate)."""
    curvatures = jnp.asarray(NARROW_VALLEY_CURVATURES)

    def loss(params):
        return 0.5 * jnp.sum(curvatures * params**2)

    if use_nesterov:
        optimizer = optim.nesterov(learning_rate, beta)
    else:
        optimizer = optim.momentum(learning_rate, beta)
    params = jnp.ones(2)
    state = optimizer.init(params)
    steep_coordinates = []
    for _ in range(100):
        updates, state = optimizer.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        iterate = (
            optim.nesterov_iterate_from_lookahead(params, state, learning_rate, beta)
            if use_nesterov
            else params
        )
        steep_coordinates.append(float(iterate[1]))
    return max(abs(x) for x in steep_coordinates[20:])


def _nesterov_records() -> list[Record]:
    learning_rate, beta = 0.01, 0.9
    heavy_ball = _narrow_valley_amplitude(False, learning_rate, beta)
    nesterov = _narrow_valley_amplitude(True, learning_rate, beta)

    def loss(params):
        return 0.5 * jnp.sum(jnp.asarray(NARROW_VALLEY_CURVATURES) * params**2)

    lookahead, state = _run(optim.nesterov(0.05, beta), loss, jnp.ones(2), 10)
    framework, _ = _run(optax.sgd(0.05, momentum=beta, nesterov=True), loss, jnp.ones(2), 10)
    book_iterate = optim.nesterov_iterate_from_lookahead(lookahead, state, 0.05, beta)
    return [
        *claim(
            "8.2.2 eqs. 8.12-8.13",
            "Nesterov vs heavy ball in a narrow valley",
            "the look-ahead gradient can reduce oscillations compared to (8.10)",
            f"0.5(θ₁² + 25θ₂²), η=0.01, β=0.9, steps 20-100: max |θ₂| heavy ball "
            f"{heavy_ball:.3g}, Nesterov {nesterov:.3g}",
            holds=nesterov < heavy_ball,
        ),
        *ambiguous(
            "8.2.2 eqs. 8.12-8.13",
            "Nesterov iterate after 10 steps, θ₁ (η=0.05, β=0.9)",
            "θ_t of 8.13",
            f"book θ_t = {float(book_iterate[0]):.6f}; optax/PyTorch nesterov iterate = "
            f"{float(framework[0]):.6f} = our look-ahead φ_t {float(lookahead[0]):.6f}",
            "Frameworks implement 8.12-8.13 in the variable φ_t = θ_t − η β v_t (the look-ahead "
            "point); the trajectories are the same under this change of variables, but a "
            "framework's reported parameters are φ_t, not the book's θ_t.",
        ),
    ]


def _adam_records() -> list[Record]:
    small_gradient = jnp.array(1e-4)
    first_steps = {}
    for inside in (True, False):
        optimizer = optim.adam(1.0, eps_in_sqrt=inside)
        updates, _ = optimizer.update(small_gradient, optimizer.init(jnp.zeros(())))
        first_steps[inside] = float(-updates)
    return [
        *check("8.3.2 eq. 8.20", "Adam default β₁", "0.9", _default(optim.adam, "b1")),
        *check("8.3.2 eq. 8.20", "Adam default β₂", "0.999", _default(optim.adam, "b2")),
        *check("8.3.2 eq. 8.20", "Adam default ε", "1e-8", _default(optim.adam, "eps")),
        *ambiguous(
            "8.3.2 eq. 8.20 vs 17.58",
            "Adam first step / η for |g| = 1e-4, ε = 1e-8",
            "m̂/sqrt(v̂ + ε) (8.20); m/(sqrt(v) + ε) (17.58)",
            f"ε inside the root {first_steps[True]:.4f}; outside {first_steps[False]:.4f}",
            "8.15/8.20 put ε inside the square root, 17.58 (like the Adam paper, PyTorch and "
            "optax's default eps) outside; with the printed default ε = 1e-8 the inside form "
            "acts like ε_outside ≈ 1e-4: Adam's first step is η/sqrt(1 + ε/g²), 1/√2 of η at "
            "|g| = 1e-4 and ≈ η|g|/1e-4 below. "
            "17.58 also omits the bias-correction hats of 8.18-8.19. core.optim.adam takes "
            "eps_in_sqrt to choose.",
        ),
    ]


def _weight_decay_records() -> list[Record]:
    learning_rate, weight_decay = 0.1, 0.01
    weights = jnp.array([[0.7, 0.8, 0.9]])
    gradient = jnp.array([[0.0289, 0.0425, 0.0568]])
    coupled_sgd = optax.chain(optim.add_weight_decay(weight_decay), optim.sgd(learning_rate))
    updates, _ = coupled_sgd.update(gradient, coupled_sgd.init(weights), weights)
    shrunk = optax.apply_updates(weights, updates)
    shrinkage_error = float(
        jnp.max(
            jnp.abs(
                shrunk - ((1 - learning_rate * weight_decay) * weights - learning_rate * gradient)
            )
        )
    )
    zero_gradient_updates, _ = coupled_sgd.update(
        jnp.zeros_like(weights), coupled_sgd.init(weights), weights
    )
    factor = float((optax.apply_updates(weights, zero_gradient_updates) / weights)[0, 0])

    params = jnp.array([[1.0, -2.0]])
    adam_gradient = jnp.array([[0.1, 0.1]])
    decoupled = optim.adamw(0.01, weight_decay=0.1)
    coupled = optax.chain(optim.add_weight_decay(0.1), optim.adam(0.01))
    decoupled_step, _ = decoupled.update(adam_gradient, decoupled.init(params), params)
    coupled_step, _ = coupled.update(adam_gradient, coupled.init(params), params)
    return [
        *claim(
            "8.3.3 eq. 8.21",
            "decoupled vs coupled decay under Adam",
            "adding λθ to the gradient differs from decoupled weight decay for adaptive methods",
            f"θ = [1, −2], g = [0.1, 0.1], λ = 0.1, η = 0.01, first step: AdamW "
            f"{[round(float(u), 6) for u in decoupled_step[0]]}, Adam + L2 "
            f"{[round(float(u), 6) for u in coupled_step[0]]}",
            holds=bool(jnp.max(jnp.abs(decoupled_step - coupled_step)) > 1e-6),
        ),
        *claim(
            "8.4.1 eq. 8.24",
            "SGD with the L2 gradient 8.23",
            "W ← (1 − η_t λ) W − η_t ∇L: weights shrink by (1 − η_t λ) each step",
            f"η = 0.1, λ = 0.01: W_new/W = {factor} with ∇L = 0; with the 7.3 gradient, "
            f"max |W_new − (8.24)| = {shrinkage_error:.1e}",
            holds=abs(factor - (1 - learning_rate * weight_decay)) < 1e-15
            and shrinkage_error < 1e-15,
        ),
    ]


def _l1_records() -> list[Record]:
    candidates = (-1.0, -0.5, 0.0, 0.5, 1.0)
    grid = jnp.linspace(-3.0, 3.0, 61)
    subgradients_at_zero = [
        float(optim.l1_subgradient(jnp.array(0.0), subgradient_at_zero=s)) for s in candidates
    ]
    inequality_holds = all(bool(jnp.all(jnp.abs(grid) >= s * grid)) for s in subgradients_at_zero)

    targets = jnp.array([0.05, -0.03, 0.5, -2.0])
    l1_weight, learning_rate = 0.1, 0.1

    def loss(params):
        return 0.5 * jnp.sum((params - targets) ** 2)

    def penalize_all(params):
        return True

    optimizer = optax.chain(
        optim.add_l1_subgradient(l1_weight, mask=penalize_all), optim.sgd(learning_rate)
    )
    final, _ = _run(optimizer, loss, jnp.ones(4), 200)
    zero_at_minimum = jnp.abs(targets) <= l1_weight  # soft threshold: minimizer is 0 there
    exact_zeros = int(jnp.sum(final[zero_at_minimum] == 0.0))
    return [
        *claim(
            "8.4.2 eq. 8.26",
            "subgradient of |W| at 0",
            "any s ∈ [−1, 1] is a subgradient at W = 0",
            f"|w| >= s·w on a grid for s = {subgradients_at_zero}; core.optim uses s = 0 by "
            f"default (jax.grad(abs)(0) = {float(jax.grad(jnp.abs)(0.0))})",
            holds=inequality_holds,
        ),
        *ambiguous(
            "8.4.2",
            "exact zeros from L1 by subgradient descent (8.26)",
            "L1 tends to produce sparse solutions (many parameters exactly zero)",
            f"0.5‖θ − a‖² + 0.1‖θ‖₁, a = {targets.tolist()}: the minimizer has "
            f"{int(jnp.sum(zero_at_minimum))} zeros; after 200 subgradient steps (η = 0.1) "
            f"{exact_zeros} of them are exactly 0: {[round(float(x), 5) for x in final]}",
            "True of the minimizer of 8.25, not of the 8.26 subgradient iterates, which "
            "oscillate within about ηλ of 0; exact zeros need a proximal (soft-threshold) step.",
        ),
    ]


def _clipping_records() -> list[Record]:
    max_norm = 1.0
    clipper = optim.clip_by_global_norm(max_norm)
    facts = []
    holds = True
    for scale in (0.1, 10.0):
        gradient = {"w": scale * jnp.array([[3.0, 4.0]]), "b": scale * jnp.array([12.0])}
        clipped, _ = clipper.update(gradient, clipper.init(gradient))
        norm_before, norm_after = (
            float(optim.global_norm(gradient)),
            float(optim.global_norm(clipped)),
        )
        cosine = float(optax.tree.vdot(gradient, clipped) / (norm_before * norm_after))
        holds &= abs(norm_after - min(norm_before, max_norm)) < 1e-12 and abs(cosine - 1) < 1e-12
        facts.append(f"‖g‖ {norm_before:g} -> {norm_after:g} (cos {cosine:.12f})")
    return claim(
        "8.5.1 eq. 8.34 (= 11.7)",
        "clipping by global norm",
        "g·min(1, τ/‖g‖) has norm min(‖g‖, τ) and the direction of g",
        "τ = 1: " + "; ".join(facts),
        holds=holds,
    )


def records() -> list[Record]:
    return [
        *_schedule_records(),
        *_descent_inequality_records(),
        *_momentum_records(),
        *_nesterov_records(),
        *_adam_records(),
        *_weight_decay_records(),
        *_l1_records(),
        *_clipping_records(),
    ]

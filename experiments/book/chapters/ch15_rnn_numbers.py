"""Chapter 15: vanishing and exploding gradients and BPTT memory, computed by the RNN library.

Book 15.5.2 (tanh's derivative bound; "ρ < 1 ⇒ ‖W_hh‖^(t-k) → 0"), 15.6.2 (0.5^100), 15.6.3
(BPTT memory), 15.7.1 (an SGD step with an exploding gradient, and clipping) and 15.7.2
(ρ^100). The gradients through 100 steps are Jacobian products ∂h^(T)/∂h^(k) of actual
networks (`core.rnn_gradient_flow.final_state_jacobians`, eqs. 15.23-15.26): a one-unit tanh
RNN held at the state where tanh' = 1/2, and linear RNNs with W_hh = ρ·(orthogonal). The
memory is the size of the hidden states `core.rnn.forward_columns` stores for BPTT, read from
its output shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from core import activations, optim, rnn
from core import rnn_gradient_flow as gradient_flow
from experiments.book.records import Record, check, claim

NUM_STEPS = 100  # book 15.6.2 and 15.7.2
SEQUENCE_LENGTH, HIDDEN_DIM, BATCH = 1000, 512, 32  # book 15.6.3
LEARNING_RATE = 0.001  # book 15.7.1
NON_NORMAL_SIZE = 8  # the counterexample to 15.5.2: 0.9 I + ones on the superdiagonal


def _tanh_derivative_records() -> list[Record]:
    grid = jnp.linspace(-10.0, 10.0, 20001)  # step 1e-3, contains z = 0
    derivative = activations.tanh_derivative(grid)
    at_maximum = float(grid[jnp.argmax(derivative)])
    return [
        *claim(
            "15.5.2",
            "bound on tanh'",
            "|σ'_h(z)| ≤ 1 for all z (tanh)",
            f"max of core.activations.tanh_derivative on [-10, 10] = {float(derivative.max())}",
            holds=bool(jnp.all(jnp.abs(derivative) <= 1.0)),
        ),
        *check(
            "15.5.2",
            "maximum of tanh'(z), attained at z = 0 (printed 1/4)",
            "0.25",
            derivative.max(),
            why=f"tanh'(0) = 1 - tanh²(0) = 1 is the maximum (grid argmax z = {at_maximum:.0f}); "
            f"1/4 is the sigmoid's maximum σ'(0) = {float(activations.sigmoid_derivative(0.0))}",
        ),
    ]


def _final_state_gradient(params: rnn.RNNParams, inputs, activation, initial_hidden) -> jax.Array:
    """‖∂h^(T)/∂h^(0)‖₂ of one sequence: inputs [T, d_x], initial_hidden [d_h]."""
    hidden = rnn.forward(params, inputs[None], activation, initial_hidden[None])[0]
    return jnp.linalg.norm(
        gradient_flow.final_state_jacobians(params.W_hh, hidden, activation)[0], 2
    )


def _vanishing_records() -> list[Record]:
    # One tanh unit with W_hh = W_xh = 1, b = 0, started at h* = 1/√2 and fed the constant input
    # x = artanh(h*) - h*, stays at h*: z = artanh(h*) at every step, and tanh'(z) = 1 - h*² = 1/2.
    fixed_point = jnp.sqrt(0.5)
    one = jnp.ones((1, 1))
    params = rnn.RNNParams(W_hh=one, W_xh=one, b_h=jnp.zeros(1), W_hy=one, b_y=jnp.zeros(1))
    inputs = jnp.full((NUM_STEPS, 1), jnp.arctanh(fixed_point) - fixed_point)
    gradient = _final_state_gradient(params, inputs, rnn.TANH, jnp.full(1, fixed_point))
    return check(
        "15.6.2",
        "gradient magnitude after 100 steps with |σ'| = 0.5 (printed 10^-30)",
        "1e-30",
        gradient,
        note=f"∂h^(100)/∂h^(0) of a 1-unit tanh RNN held at h = 1/√2, where tanh' = 1/2: "
        f"core.rnn_gradient_flow.final_state_jacobians gives {float(gradient):.3e} = 0.5^100, "
        "of order 10^-30",
    )


def _stored_state_bytes(batch: int) -> int:
    """Bytes of H^(1..T) that `core.rnn.forward_columns` keeps for BPTT, float32."""

    def float32(*shape: int) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(shape, jnp.float32)

    size = HIDDEN_DIM  # one input and one output unit: their sizes do not change H
    params = rnn.RNNParams(
        float32(size, size), float32(size, 1), float32(size), float32(1, size), float32(1)
    )
    inputs = float32(SEQUENCE_LENGTH, 1, batch)
    hidden = jax.eval_shape(rnn.forward_columns, params, inputs).hidden
    return int(np.prod(hidden.shape)) * hidden.dtype.itemsize


def _memory_records() -> list[Record]:
    per_sequence, per_batch = _stored_state_bytes(1), _stored_state_bytes(BATCH)
    note = (
        "bytes of the hidden states H^(1..T) [1000, 512, {m}] float32 that "
        "core.rnn.forward_columns stores for BPTT (decimal MB; {mib} MiB)"
    )
    return [
        *check(
            "15.6.3",
            "hidden states of one sequence, T = 1000, d_h = 512, float32 (MB)",
            "2.048",
            per_sequence / 1e6,
            note=note.format(m=1, mib=f"{per_sequence / 2**20:.3f}"),
        ),
        *check(
            "15.6.3",
            "hidden states of a batch of 32 (MB)",
            "65.5",
            per_batch / 1e6,
            note=note.format(m=BATCH, mib=f"{per_batch / 2**20:.1f}"),
        ),
    ]


def _exploding_update_records() -> list[Record]:
    optimizer = optim.sgd(LEARNING_RATE)
    out = []
    for name, gradient, printed in [("exploding", 1e8, "100000"), ("normal", 1.0, "0.001")]:
        gradient = jnp.asarray(gradient)
        update, _ = optimizer.update(gradient, optimizer.init(gradient), gradient)
        out += check(
            "15.7.1",
            f"|weight update| for gradient {float(gradient):g}, learning rate 0.001 ({name})",
            printed,
            jnp.abs(update),
            note="core.optim.sgd update -η g",
        )
    max_norm = 1.0
    clipped = optax.chain(optim.clip_by_global_norm(max_norm), optim.sgd(LEARNING_RATE))
    gradient = jnp.asarray(1e8)
    update, _ = clipped.update(gradient, clipped.init(gradient), gradient)
    out += claim(
        "15.7.1",
        "gradient clipping g ← θ g/‖g‖ if ‖g‖ > θ",
        "clipping stops the massive update",
        f"gradient 1e8, θ = {max_norm:g}, η = 0.001: clipped update "
        f"{float(jnp.abs(update)):g} (= η θ) instead of 100000",
        holds=bool(jnp.isclose(jnp.abs(update), LEARNING_RATE * max_norm)),
        note="core.optim.clip_by_global_norm then core.optim.sgd",
    )
    return out


def _linear_rnn_gradient(radius: float) -> jax.Array:
    """‖∂h^(100)/∂h^(0)‖₂ of a linear RNN with W_hh = ρ·Q, Q orthogonal: every singular value
    of W_hh^100 is ρ^100, so this is the gain along any direction, eigenvectors included."""
    params = rnn.init(jax.random.key(0), 1, 4, 1, spectral_radius=radius)
    inputs = jnp.zeros((NUM_STEPS, 1))
    return _final_state_gradient(params, inputs, rnn.LINEAR, jnp.zeros(4))


def _spectral_radius_records() -> list[Record]:
    vanishing = float(_linear_rnn_gradient(0.9))
    critical = _linear_rnn_gradient(1.0)
    exploding = _linear_rnn_gradient(1.1)
    note = "‖∂h^(100)/∂h^(0)‖₂ of a linear RNN with W_hh = ρ·(orthogonal), core.rnn_gradient_flow"
    return [
        *claim(
            "15.7.2",
            "gradient after 100 steps, ρ = 0.9",
            "0.9^100 ≈ 0 (vanishing)",
            f"0.9^100 = {vanishing:.3e}: not 0, but {1 / vanishing:,.0f} times smaller",
            holds=vanishing < 1e-4,
            note=f"{note}; '≈ 0' stands for 2.7e-5",
        ),
        *check(
            "15.7.2",
            "gradient after 100 steps, ρ = 1.0 (printed ≈ 1)",
            "1",
            critical,
            rel_tol=1e-9,
            note=f"{note}: {float(critical):.15f} (an orthogonal matrix, to rounding)",
        ),
        *check(
            "15.7.2",
            "gradient after 100 steps, ρ = 1.1 (printed ≈ 14000)",
            "14000",
            exploding,
            rel_tol=0.05,
            note=f"{note}: 1.1^100 = {float(exploding):.1f}",
        ),
    ]


def _non_normal_records() -> list[Record]:
    size = NON_NORMAL_SIZE
    matrix = 0.9 * jnp.eye(size) + jnp.eye(size, k=1)
    radius = float(gradient_flow.spectral_radius(matrix))
    norm = float(jnp.linalg.norm(matrix, 2))
    num_powers = 400
    products = gradient_flow.final_state_jacobians(
        matrix, jnp.zeros((num_powers, size)), rnn.LINEAR
    )
    power_norms = jnp.linalg.norm(products, 2, axis=(-2, -1))[::-1]  # ‖W^n‖₂, n = 0..400
    peak = int(jnp.argmax(power_norms))
    return claim(
        "15.5.2",
        "vanishing condition",
        "if ρ < 1, then ‖W_hh‖^(t-k) → 0 as t - k → ∞",
        f"W = 0.9 I + superdiagonal ones ({size}×{size}): ρ = {radius:.3f}, ‖W‖₂ = {norm:.3f}, so "
        f"‖W‖₂^n → ∞; ‖W^n‖₂, the Jacobian product of a linear RNN, rises to "
        f"{float(power_norms[peak]):.3g} at n = {peak} and is {float(power_norms[-1]):.2g} at "
        f"n = {num_powers}",
        holds=radius < 1.0 and norm < 1.0,
        why="ρ < 1 makes ‖W^n‖ → 0 eventually (Gelfand), not ‖W‖^n: a non-normal W with ρ < 1 "
        "can have ‖W‖ > 1, and its powers, the gradient of a linear RNN through n steps, can "
        "grow by orders of magnitude first; ‖W‖ < 1 is the sufficient condition",
    )


def records() -> list[Record]:
    return [
        *_tanh_derivative_records(),
        *_non_normal_records(),
        *_vanishing_records(),
        *_memory_records(),
        *_exploding_update_records(),
        *_spectral_radius_records(),
    ]

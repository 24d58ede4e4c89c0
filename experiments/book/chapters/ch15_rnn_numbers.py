"""Chapter 15: the RNN chapter's arithmetic of vanishing/exploding gradients and BPTT memory.

Book 15.5.2 (tanh's derivative bound), 15.6.2 (0.5^100), 15.6.3 (BPTT memory), 15.7.1 (an SGD
step with an exploding gradient) and 15.7.2 (ρ^100). Derivatives come from
`core.activations`, the products through 100 steps from `core.autodiff`'s reverse mode on a
chain h_t = ρ h_{t-1} (a linear RNN with scalar W_hh = ρ, whose ∂h_T/∂h_0 is the product of
eq. 15.24), memory from array shapes, the update from `core.optim.sgd`. The RNN experiments
themselves belong to the sequence-model issue.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from core import activations, autodiff, optim
from experiments.book.records import Record, check, claim

NUM_STEPS = 100  # book 15.6.2 and 15.7.2
SEQUENCE_LENGTH, HIDDEN_DIM, BATCH = 1000, 512, 32  # book 15.6.3
LEARNING_RATE = 0.001  # book 15.7.1


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


def _chain_gradient(factor: float, num_steps: int) -> jax.Array:
    """∂h_T/∂h_0 for h_t = factor · h_{t-1}, by one reverse sweep over the T-step chain."""
    graph = {"h0": autodiff.leaf()}
    for step in range(1, num_steps + 1):
        graph[f"h{step}"] = autodiff.apply(autodiff.scale(factor), f"h{step - 1}")
    values = autodiff.evaluate(graph, {"h0": 1.0})
    return autodiff.reverse_mode(graph, values, {f"h{num_steps}": 1.0}).adjoints["h0"]


def _vanishing_records() -> list[Record]:
    # The pre-activation where tanh'(z) = 1/2: 1 - tanh²(z) = 1/2, z = artanh(1/√2).
    half_slope_point = jnp.arctanh(jnp.sqrt(0.5))
    factors = activations.tanh_derivative(jnp.full(NUM_STEPS, half_slope_point))
    product = jnp.prod(factors)
    return check(
        "15.6.2",
        "gradient magnitude after 100 steps with |σ'| = 0.5 (printed 10^-30)",
        "1e-30",
        product,
        note=f"product of 100 factors tanh'(artanh(1/√2)) = {float(factors[0]):.6f}: "
        f"0.5^100 = {float(product):.3e}, of order 10^-30",
    )


def _memory_records() -> list[Record]:
    states = jax.ShapeDtypeStruct((SEQUENCE_LENGTH, HIDDEN_DIM), jnp.float32)
    batch_states = jax.ShapeDtypeStruct((BATCH, SEQUENCE_LENGTH, HIDDEN_DIM), jnp.float32)
    per_sequence = states.size * states.dtype.itemsize
    per_batch = batch_states.size * batch_states.dtype.itemsize
    return [
        *check(
            "15.6.3",
            "hidden states of one sequence, T = 1000, d_h = 512, float32 (MB)",
            "2.048",
            per_sequence / 1e6,
            note=f"{per_sequence:,} bytes of a [1000, 512] float32 array (decimal MB; "
            f"{per_sequence / 2**20:.3f} MiB)",
        ),
        *check(
            "15.6.3",
            "hidden states of a batch of 32 (MB)",
            "65.5",
            per_batch / 1e6,
            note=f"{per_batch:,} bytes of a [32, 1000, 512] float32 array (decimal MB; "
            f"{per_batch / 2**20:.1f} MiB)",
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
    return out


def _spectral_radius_records() -> list[Record]:
    vanishing = float(_chain_gradient(0.9, NUM_STEPS))
    critical = _chain_gradient(1.0, NUM_STEPS)
    exploding = _chain_gradient(1.1, NUM_STEPS)
    note = "∂h_100/∂h_0 of h_t = ρ h_{t-1} by core.autodiff.reverse_mode"
    return [
        *claim(
            "15.7.2",
            "gradient after 100 steps, ρ = 0.9",
            "0.9^100 ≈ 0 (vanishing)",
            f"0.9^100 = {vanishing:.3e}: not 0, but {1 / vanishing:,.0f} times smaller",
            holds=vanishing < 1e-4,
            note=f"{note}; '≈ 0' stands for 2.7e-5",
        ),
        *check("15.7.2", "gradient after 100 steps, ρ = 1.0", "1", critical, note=note),
        *check(
            "15.7.2",
            "gradient after 100 steps, ρ = 1.1 (printed ≈ 14000)",
            "14000",
            exploding,
            rel_tol=0.05,
            note=f"{note}: 1.1^100 = {float(exploding):.1f}",
        ),
    ]


def records() -> list[Record]:
    return [
        *_tanh_derivative_records(),
        *_vanishing_records(),
        *_memory_records(),
        *_exploding_update_records(),
        *_spectral_radius_records(),
    ]

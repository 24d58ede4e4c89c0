"""Chapter 7.3: momentum, the two-step example on the layer-2 weights.

Book 7.3.2 (eqs. 7.8-7.13): β = 0.9, η = 0.1, v_0 = 0, W_0 = [0.7, 0.8, 0.9] and the stated
gradients g_1, g_2, run through `core.optim.momentum` (eqs. 7.9-7.10 = 8.9-8.10).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from core import optim
from experiments.book.records import Record, check

BETA = 0.9
LEARNING_RATE = 0.1
INITIAL_WEIGHTS = (0.7, 0.8, 0.9)
GRADIENT_1 = (0.0289, 0.0425, 0.0568)  # the Chapter 6 batch gradient, as stated in 7.3.2
GRADIENT_2 = (0.0215, 0.0318, 0.0425)  # "suppose the new gradient is", as stated


def _momentum_steps():
    """Two momentum steps; returns the velocities, weights and β v_1 (the first term of v_2)."""
    optimizer = optim.momentum(LEARNING_RATE, beta=BETA)
    weights = [jnp.asarray(INITIAL_WEIGHTS)]
    velocities = []
    state = optimizer.init(weights[0])
    for gradient in (GRADIENT_1, GRADIENT_2):
        updates, state = optimizer.update(jnp.asarray(gradient), state, weights[-1])
        weights.append(optax.apply_updates(weights[-1], updates))
        velocities.append(optax.tree.get(state, "velocity"))
    velocity_trace = optim.trace_velocity(BETA)
    decayed_velocity, _ = velocity_trace.update(
        jnp.zeros(3), optim.VelocityState(velocity=velocities[0])
    )  # β v_1 + 0
    return velocities, weights, decayed_velocity


def _exact(values) -> str:
    return ", ".join(f"{float(v):.5f}" for v in values)


def records() -> list[Record]:
    velocities, weights, decayed_velocity = _momentum_steps()
    out = []
    out += check(
        "7.3.2 eq. 7.8",
        "v_1 = β·0 + g_1",
        ["0.0289", "0.0425", "0.0568"],
        velocities[0],
        note="core.optim.momentum velocity after step 1",
    )
    out += check(
        "7.3.2 eq. 7.10",
        "W_1 = W_0 − η v_1",
        ["0.6971", "0.7958", "0.8943"],
        weights[1],
        note=f"exact {_exact(weights[1])}",
    )
    out += check(
        "7.3.2 eq. 7.12",
        "β v_1",
        ["0.0260", "0.0383", "0.0511"],
        decayed_velocity,
        note=f"exact {_exact(decayed_velocity)}; printed rounded",
    )
    out += check(
        "7.3.2 eq. 7.12",
        "v_2 = β v_1 + g_2",
        ["0.0475", "0.0701", "0.0936"],
        velocities[1],
        note=f"exact {_exact(velocities[1])}",
    )
    slips = (
        "0.6971 − 0.1·0.0475 = 0.6924; the printed value is 0.0005 too low",
        "0.7958 − 0.1·0.0701 = 0.7888; the printed value is 0.0002 too high",
        "0.8943 − 0.1·0.0936 = 0.8849; the printed value is 0.0091 too low, near subtracting "
        "0.1 v_2 twice (0.8756)",
    )
    for index, (printed, slip) in enumerate(
        zip(("0.6919", "0.7890", "0.8758"), slips, strict=True)
    ):
        out += check(
            "7.3.2 eq. 7.13",
            f"W_2[{index}] = W_1 − η v_2",
            printed,
            weights[2][index],
            why=f"{float(weights[2][index]):.5f}; even from the printed W_1 and v_2, {slip} "
            "(arithmetic slip in the last subtraction)",
        )
    return out

"""Chapter 7.1 and 7.6: the learning rate on the chapter-6 network, and vectorized processing.

7.1.1 scales the stated layer-2 gradient by η (eqs. 7.1-7.2, numbered twice in the book), 7.1.2
prints a loss curve said to come from "the earlier draft", recomputed here by full-batch gradient
descent on the chapter-6 network with `core.mlp.train_full_batch` and `core.optim.sgd`; 7.6 is
the column-stacked forward pass Z = W X + b 1ᵀ against a loop over samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core import mlp, optim
from experiments.book.chapters.ch06_worked_network import (
    BOOK_AVERAGED_W2_GRADIENT,
    book_network,
    printed,
)
from experiments.book.records import Record, check, claim

CURVE_ITERATIONS = (0, 1, 5)
BOOK_CURVE = ("0.6160", "0.5847", "0.5172")  # book eq. 7.3
CURVE_LEARNING_RATE = 0.1  # the chapter-6 step size
LEARNING_RATE_GRID = np.arange(0.005, 1.0, 0.005)


def _sgd_update(gradient: jax.Array, learning_rate: float) -> jax.Array:
    """ΔW = -η g, the update `core.optim.sgd` adds to the parameters (eq. 7.1)."""
    optimizer = optim.sgd(learning_rate)
    update, _ = optimizer.update(gradient, optimizer.init(gradient))
    return update


def _update_records() -> list[Record]:
    params, inputs, targets = book_network()
    correct_gradient = mlp.backward(params, mlp.forward(params, inputs), targets)[1].W[0]
    stated_gradient = jnp.asarray(printed(BOOK_AVERAGED_W2_GRADIENT))
    out = check(
        "7.1.1 (eq. 7.2, first)",
        "the chapter-6 batch gradient ∂L/∂W^(2) as stated",
        BOOK_AVERAGED_W2_GRADIENT,
        correct_gradient,
        why=(
            "the correct batch gradient of the ch. 6 network is "
            f"{np.round(np.asarray(correct_gradient), 5).tolist()}; the stated one is eq. 6.56's "
            "erratum (not reproducible, see chapter 6)"
        ),
    )
    updates = {}
    for section, learning_rate, book_update in (
        ("7.1.1 (eq. 7.1, second)", 0.1, ("-0.00289", "-0.00425", "-0.00568")),
        ("7.1.1 (eq. 7.2, second)", 0.5, ("-0.01445", "-0.02125", "-0.02840")),
    ):
        updates[learning_rate] = _sgd_update(stated_gradient, learning_rate)
        correct_update = _sgd_update(correct_gradient, learning_rate)
        out += check(
            section,
            f"ΔW^(2) = -η g for η = {learning_rate}, g as stated",
            book_update,
            updates[learning_rate],
            note=(
                "core.optim.sgd on the stated gradient; with the correct batch gradient "
                f"ΔW^(2) = {np.round(np.asarray(correct_update), 6).tolist()}"
            ),
        )
    ratio = updates[0.5] / updates[0.1]
    out += claim(
        "7.1.1",
        "the update is linear in η",
        "the update magnitude depends linearly on η",
        f"ΔW(η = 0.5) / ΔW(η = 0.1) = {np.round(np.asarray(ratio), 12).tolist()}",
        holds=bool(jnp.allclose(ratio, 5.0, rtol=1e-12)),
    )
    return out


def _curve(learning_rate) -> jax.Array:
    """Batch losses L_t, t = 0..5, of full-batch gradient descent from the ch. 6 parameters.

    `learning_rate` may be traced (a constant schedule), so that a grid of rates is one vmap.
    """
    params, inputs, targets = book_network()
    _, losses = mlp.train_full_batch(
        params, inputs, targets, optim.sgd(lambda step: learning_rate), max(CURVE_ITERATIONS)
    )
    return losses


def _loss_curve_records() -> list[Record]:
    losses = _curve(CURVE_LEARNING_RATE)[jnp.asarray(CURVE_ITERATIONS)]
    book = printed(BOOK_CURVE)
    grid_losses = jax.vmap(_curve)(jnp.asarray(LEARNING_RATE_GRID))[:, CURVE_ITERATIONS[1:]]
    misfit = jnp.max(jnp.abs(grid_losses - book[1:]), axis=1)
    best = int(jnp.argmin(misfit))
    best_rate = LEARNING_RATE_GRID[best]
    best_values = np.round(np.asarray(grid_losses[best]), 4).tolist()
    cause = (
        f"full-batch GD with η = {CURVE_LEARNING_RATE} from the ch. 6 network gives "
        f"L_0, L_1, L_5 = {np.round(np.asarray(losses), 4).tolist()}; no constant η reproduces "
        f"the printed curve (best on a 0.005 grid: η = {best_rate:.3f} gives L_1, L_5 = "
        f"{best_values}, off by {float(misfit[best]):.4f}), and L_0 = 0.6160 is not the "
        "network's loss either: the curve is from another network ('the earlier draft'), "
        "not reproducible"
    )
    return check(
        "7.1.2 (eq. 7.3)",
        "batch loss L_t at t = 0, 1, 5",
        BOOK_CURVE,
        losses,
        why=cause,
    )


def _vectorization_records() -> list[Record]:
    params, inputs, _ = book_network()
    batched = mlp.forward(params, inputs)
    per_sample = [mlp.forward(params, inputs[:, i : i + 1]) for i in range(inputs.shape[1])]
    difference = max(
        float(jnp.max(jnp.abs(batched_array - jnp.concatenate(sample_arrays, axis=1))))
        for batched_array, *sample_arrays in zip(
            batched.Z + batched.A, *(cache.Z + cache.A for cache in per_sample), strict=True
        )
    )
    return claim(
        "7.6 (eqs. 7.19-7.21)",
        "vectorized forward pass",
        "Z = W X + b 1ᵀ, A = σ(Z) computes all m samples in parallel",
        "the column-stacked forward pass of the ch. 6 network on X [2, 4] equals the 4 "
        "single-sample passes column by column, every Z and A "
        f"(largest difference {difference:.1e})",
        holds=difference < 1e-15,
    )


def records() -> list[Record]:
    return [*_update_records(), *_loss_curve_records(), *_vectorization_records()]

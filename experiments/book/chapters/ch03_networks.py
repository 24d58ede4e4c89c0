"""Chapter 3: feedforward networks, parameter count, linear collapse, vanishing gradients.

Eq. 3.11 counted on the book's two networks (the 2→2→1 of 3.4 and the 2→3→1 of chapter 6),
eq. 3.13's collapse of a linear network to one affine map, and the vanishing products of
sigmoid slopes of eq. 3.23, all with `core.mlp`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core import mlp
from experiments.book.chapters.ch06_worked_network import book_network
from experiments.book.records import Record, claim

DEPTHS = (2, 5, 10, 20, 30)
WIDTH = 16


def _initialized_size(params: mlp.Params) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def _parameter_count_records() -> list[Record]:
    tiny = mlp.init(jax.random.key(0), (2, 2, 1))
    chapter6, _, _ = book_network()
    out = []
    for section, name, sizes, params in (
        ("3.4", "the 2→2→1 network", (2, 2, 1), tiny),
        ("6.1-6.2", "the 2→3→1 network of ch. 6", mlp.layer_sizes(chapter6), chapter6),
    ):
        formula = mlp.parameter_count(sizes)
        out += claim(
            f"eq. 3.11 ({section})",
            f"#θ of {name}",
            "#θ = Σ_ℓ n_ℓ (n_{ℓ-1} + 1)",
            f"formula {formula}; arrays of the network hold {_initialized_size(params)} numbers",
            holds=formula == _initialized_size(params),
        )
    return out


def _linear_collapse_records() -> list[Record]:
    params_key, bias_key, inputs_key = jax.random.split(jax.random.key(1), 3)
    params = mlp.init(params_key, (3, 5, 4, 2))
    params = [  # nonzero biases, so that b_eff is exercised
        mlp.Layer(layer.W, jax.random.normal(key, layer.b.shape))
        for layer, key in zip(params, jax.random.split(bias_key, len(params)), strict=True)
    ]
    inputs = jax.random.normal(inputs_key, (3, 7))
    network = mlp.forward(params, inputs, mlp.IDENTITY, mlp.IDENTITY_MSE).A[-1]
    effective = mlp.collapse_linear(params)
    affine = effective.W @ inputs + effective.b[:, None]
    difference = float(jnp.max(jnp.abs(network - affine)))
    return claim(
        "eqs. 3.12-3.13",
        "a linear network is one affine map",
        "with σ(z) = z the network is f(x) = W_eff x + b_eff",
        "a random 3-5-4-2 linear network equals W_eff x + b_eff with W_eff = W3 W2 W1, "
        f"b_eff = W3(W2 b1 + b2) + b3 on 7 inputs (largest difference {difference:.1e})",
        holds=difference < 1e-12,
    )


def _first_to_last_delta_ratio(hidden: mlp.Activation, weight_init, depth: int) -> float:
    """‖Δ^(1)‖ / ‖Δ^(L)‖ of a depth-L, width-16 network on a random batch (eq. 5.32)."""
    params_key, inputs_key, labels_key = jax.random.split(jax.random.key(depth), 3)
    params = mlp.init(params_key, (WIDTH,) * depth + (1,), weight_init)
    inputs = jax.random.normal(inputs_key, (WIDTH, 8))
    targets = jax.random.bernoulli(labels_key, 0.5, (1, 8)).astype(inputs.dtype)
    cache = mlp.forward(params, inputs, hidden)
    deltas = mlp.backpropagate(
        params, cache, mlp.SIGMOID_BCE.output_delta(cache.A[-1], targets), hidden
    )
    return float(jnp.linalg.norm(deltas[0]) / jnp.linalg.norm(deltas[-1]))


def _vanishing_gradient_records() -> list[Record]:
    sigmoid = np.array(
        [_first_to_last_delta_ratio(mlp.SIGMOID, mlp.XAVIER_NORMAL, L) for L in DEPTHS]
    )
    relu = np.array([_first_to_last_delta_ratio(mlp.RELU, mlp.HE_NORMAL, L) for L in DEPTHS])
    listed = ", ".join(f"L={L}: {r:.1e}" for L, r in zip(DEPTHS, sigmoid, strict=True))
    relu_listed = ", ".join(f"{r:.2f}" for r in relu)
    return claim(
        "eq. 3.23",
        "products of sigmoid slopes vanish with depth",
        "∏_ℓ σ'(z^(ℓ)) tends to 0 as L grows (in many regimes)",
        f"‖Δ^(1)‖ / ‖Δ^(L)‖ of Xavier-initialized width-{WIDTH} sigmoid networks: {listed} "
        f"(about 1/4 per layer); He-initialized ReLU networks of the same depths: {relu_listed}",
        holds=bool(np.all(np.diff(sigmoid) < 0) and sigmoid[-1] < 1e-15),
    )


def records() -> list[Record]:
    return [
        *_parameter_count_records(),
        *_linear_collapse_records(),
        *_vanishing_gradient_records(),
    ]

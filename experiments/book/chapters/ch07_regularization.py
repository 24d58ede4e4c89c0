"""Chapter 7.2, 7.5 and 8.4: L2 and L1 penalties and dropout on the chapter-6 network.

Book 7.2 (eqs. 7.4-7.8: the penalty of the chapter-6 weights, λ = 0.01), 7.5 (eqs. 7.16-7.19:
dropout on sample 1's hidden activation with the book's mask m = [1, 0, 1]), and the penalty
and dropout statements of 8.4.1-8.4.3 (eqs. 8.22-8.23, 8.26, 8.28-8.29). Penalties come from
`core.regularization`, the network and its batch loss from `core.mlp`.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from core import mlp, regularization
from experiments.book.records import Record, check, claim

TOLERANCE = 1e-12  # float64 agreement of two computations of the same quantity

# The chapter-6 network and data (eqs. 6.2-6.4), column-stacked: one sample per column.
W1 = ((0.1, 0.2), (0.3, 0.4), (0.5, 0.6))
B1 = (0.01, 0.02, 0.03)
W2 = ((0.7, 0.8, 0.9),)
B2 = (0.1,)
INPUTS = ((0.5, 0.9, 0.1, 0.8), (0.2, 0.8, 0.3, 0.9))
LABELS = ((0.0, 1.0, 0.0, 1.0),)

L2_STRENGTH = 0.01  # λ of 7.2.2
BOOK_BATCH_LOSS = 0.616  # "if L = 0.616" (7.2.2), the chapter-6 batch loss as the book states it
DROP_RATE = 0.5  # p of 7.5.1
BOOK_MASK = (True, False, True)  # "suppose the sampled mask is m = [1, 0, 1]" (eq. 7.16)


def _network() -> list[mlp.Layer]:
    return [
        mlp.Layer(jnp.asarray(W1), jnp.asarray(B1)),
        mlp.Layer(jnp.asarray(W2), jnp.asarray(B2)),
    ]


def _entry_squares(weight: jax.Array) -> jax.Array:
    """The summands of ||W||_F² (eq. 7.5): the squared norm of each entry, row-major."""
    return jax.vmap(regularization.squared_frobenius_norm)(weight.reshape(-1))


def _bias_gradients_vanish(params: list[mlp.Layer]) -> bool:
    """Whether the penalty of `weight_leaves(params)` leaves the biases alone (zero gradient)."""
    gradient = jax.grad(
        lambda p: regularization.l2_penalty(regularization.weight_leaves(p), L2_STRENGTH)
    )(params)
    return all(bool(jnp.all(layer.b == 0.0)) for layer in gradient)


def _l2_records() -> list[Record]:
    params = _network()
    weights = regularization.weight_leaves(params)  # W^(1), W^(2); the biases are left out
    first, second = weights
    penalty = regularization.l2_penalty(weights, L2_STRENGTH)
    exact_batch_loss = mlp.batch_loss(params, jnp.asarray(INPUTS), jnp.asarray(LABELS))
    shapes = [tuple(w.shape) for w in weights]
    return [
        *claim(
            "7.2.2 eq. 7.6",
            "penalized parameters",
            "the penalty sums over the weights only (no biases)",
            f"core.regularization.weight_leaves selects the leaves of shapes {shapes}; the "
            "penalty's gradient on b^(1), b^(2) is 0",
            holds=_bias_gradients_vanish(params),
        ),
        *check(
            "7.2.2",
            "W^(1) entries squared",
            ["0.01", "0.04", "0.09", "0.16", "0.25", "0.36"],
            _entry_squares(first),
        ),
        *check("7.2.2", "||W^(1)||_F²", "0.91", regularization.squared_frobenius_norm(first)),
        *check("7.2.2", "W^(2) entries squared", ["0.49", "0.64", "0.81"], _entry_squares(second)),
        *check("7.2.2", "||W^(2)||_F²", "1.94", regularization.squared_frobenius_norm(second)),
        *check(
            "7.2.2",
            "||W^(1)||_F² + ||W^(2)||_F²",
            "2.85",
            regularization.l2_penalty(weights, 1.0),
            note="core.regularization.l2_penalty with λ = 1",
        ),
        *check(
            "7.2.2",
            "λ Σ ||W||_F², λ = 0.01 (eq. 7.4)",
            "0.0285",
            penalty,
            note="core.regularization.l2_penalty (eq. 7.4 scaling: λ, not λ/2)",
        ),
        *check(
            "7.2.2",
            "L, the chapter-6 batch loss",
            "0.616",
            exact_batch_loss,
            note=f"core.mlp.batch_loss of the chapter-6 network: {float(exact_batch_loss):.6f} "
            "(rounds to 0.617; within one unit of the printed digit)",
        ),
        *check(
            "7.2.2 eq. 7.7",
            "L_reg = L + penalty",
            "0.6445",
            BOOK_BATCH_LOSS + penalty,
            note=f"from the book's L = 0.616; with the exact chapter-6 batch loss "
            f"{float(exact_batch_loss):.5f} (core.mlp.batch_loss) L_reg = "
            f"{float(exact_batch_loss + penalty):.5f}",
        ),
    ]


def _max_difference(a, b) -> float:
    return max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def _penalty_gradient_records() -> list[Record]:
    weights = regularization.weight_leaves(_network())
    full = jax.grad(regularization.l2_penalty)(weights, L2_STRENGTH)
    half = jax.grad(regularization.half_l2_penalty)(weights, L2_STRENGTH)
    full_gap = _max_difference(full, [2.0 * L2_STRENGTH * w for w in weights])
    half_gap = _max_difference(half, [L2_STRENGTH * w for w in weights])
    sparse = [jnp.array([[0.5, 0.0, -0.2]])]
    l1_away_from_zero = _max_difference(
        jax.grad(regularization.l1_penalty)(sparse, L2_STRENGTH)[0][0, ::2],
        regularization.l1_penalty_subgradient(sparse, L2_STRENGTH)[0][0, ::2],
    )
    return [
        *claim(
            "7.2.3 eq. 7.7",
            "∇_W of λ Σ ||W||_F²",
            "∇_W L_reg = ∇_W L + 2λW",
            f"jax.grad of core.regularization.l2_penalty vs 2λW: max |difference| {full_gap:.1e}",
            holds=full_gap < TOLERANCE,
            note="7.4's penalty λ Σ||W||² has gradient 2λW; 8.22-8.23 write (λ/2) Σ||W||² with "
            "gradient λW: the same λ is a twice stronger penalty in ch. 7 than in ch. 8",
        ),
        *claim(
            "8.4.1 eqs. 8.22-8.23",
            "∇_W of (λ/2) Σ ||W||_F²",
            "∇_W L_reg = ∇_W L + λW",
            f"jax.grad of core.regularization.half_l2_penalty vs λW: max |difference| "
            f"{half_gap:.1e}",
            holds=half_gap < TOLERANCE,
        ),
        *claim(
            "8.4.2 eq. 8.26",
            "∂|W_ij| for W_ij ≠ 0",
            "sign(W_ij) where W_ij ≠ 0; any s ∈ [-1, 1] at 0",
            f"λ·sign(W) (core.regularization.l1_penalty_subgradient) = jax.grad of l1_penalty "
            f"away from 0 (max |difference| {l1_away_from_zero:.1e}); at 0 jax.grad picks s = 1, "
            "our default s = 0",
            holds=l1_away_from_zero < TOLERANCE,
        ),
    ]


def _sample_one_hidden_activation() -> jax.Array:
    """a^(1) of sample 1, [0.10, 0.25, 0.40] (eq. 6.16), by the chapter-6 forward pass."""
    cache = mlp.forward(_network(), jnp.asarray(INPUTS))
    return cache.A[1][:, 0]


def _dropout_example_records() -> list[Record]:
    hidden = _sample_one_hidden_activation()
    mask = jnp.asarray(BOOK_MASK)
    dropped = regularization.non_inverted_dropout(hidden, mask)
    output_layer = _network()[1]
    preactivation = mlp.forward([output_layer], dropped[:, None]).Z[-1][0, 0]
    return [
        *check(
            "7.5.1",
            "h^(1) (sample 1's layer-1 activation)",
            ["0.10", "0.25", "0.40"],
            hidden,
            note="core.mlp.forward of the chapter-6 network",
        ),
        *check(
            "7.5.1 eq. 7.17",
            "h_drop = h ⊙ m, m = [1, 0, 1]",
            ["0.10", "0", "0.40"],
            dropped,
            note="core.regularization.non_inverted_dropout with the book's mask",
        ),
        *check(
            "7.5.1 eq. 7.18",
            "summands W^(2)_j h_drop_j",
            ["0.07", "0", "0.36"],
            output_layer.W[0] * dropped,
            note="the terms of the output layer's dot product",
        ),
        *check(
            "7.5.1 eq. 7.18",
            "z_drop = W^(2) h_drop + b^(2)",
            "0.53",
            preactivation,
            note="core.mlp.forward of the output layer on h_drop",
        ),
    ]


def _exact_expectation(dropout_of_mask, shape: int, rate: float) -> jax.Array:
    """E over every mask m ∈ {0, 1}^shape, each weighted by its Bernoulli(1 - p) probability."""
    expectation = 0.0
    for bits in itertools.product((False, True), repeat=shape):
        mask = jnp.asarray(bits)
        kept = int(mask.sum())
        probability = (1.0 - rate) ** kept * rate ** (shape - kept)
        expectation = expectation + probability * dropout_of_mask(mask)
    return expectation


def _dropout_expectation_records() -> list[Record]:
    hidden = _sample_one_hidden_activation()
    size = hidden.shape[0]
    non_inverted = _exact_expectation(
        lambda m: regularization.non_inverted_dropout(hidden, m), size, DROP_RATE
    )
    inverted = _exact_expectation(
        lambda m: regularization.inverted_dropout(hidden, m, DROP_RATE), size, DROP_RATE
    )
    test_time = regularization.non_inverted_dropout_at_test(hidden, DROP_RATE)
    non_inverted_gap = float(jnp.max(jnp.abs(non_inverted - test_time)))
    inverted_gap = float(jnp.max(jnp.abs(inverted - hidden)))
    return [
        *claim(
            "7.5.2 eq. 7.19",
            "test-time scaling (1 - p)h",
            "scaling by (1 - p) at test time matches the expected training activation",
            f"exact E[h ⊙ m] over all 8 masks (p = 0.5) vs (1 - p)h = {test_time.tolist()}: "
            f"max |difference| {non_inverted_gap:.1e}",
            holds=non_inverted_gap < TOLERANCE,
        ),
        *claim(
            "8.4.3 eqs. 8.28-8.29",
            "inverted dropout expectation",
            "E[(1/q)(m ⊙ a) | a] = a, no test-time scaling",
            f"exact E over all 8 masks (p = 0.5) of core.regularization.inverted_dropout vs a: "
            f"max |difference| {inverted_gap:.1e}",
            holds=inverted_gap < TOLERANCE,
        ),
    ]


def records() -> list[Record]:
    return [
        *_l2_records(),
        *_penalty_gradient_records(),
        *_dropout_example_records(),
        *_dropout_expectation_records(),
    ]

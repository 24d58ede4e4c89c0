"""Chapter 5: backpropagation, the delta recursion and the 1/m of the mini-batch (5.2-5.5).

The vectorized equations 5.17-5.24 checked against `jax.grad` on the chapter-6 network (sigmoid
+ BCE) and on a random softmax + CCE network: 5.17 defines Δ as the gradient of the batch MEAN,
5.20 divides by m again, and 5.23-5.24 write Δ^(L) = Ŷ - Y, which is the gradient of the SUM.
`core.mlp` propagates the per-sample deltas of 5.23 and divides by m once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from core import activations, mlp
from experiments.book.chapters.ch06_worked_network import book_network
from experiments.book.records import Record, claim


def _softmax_problem() -> tuple[mlp.Params, jax.Array, jax.Array]:
    """A random 4 -> 6 -> 3 ReLU network with softmax output and 5 one-hot labelled samples."""
    params_key, inputs_key, labels_key = jax.random.split(jax.random.key(5), 3)
    params = mlp.init(params_key, (4, 6, 3))
    inputs = jax.random.normal(inputs_key, (4, 5))
    targets = jax.nn.one_hot(jax.random.randint(labels_key, (5,), 0, 3), 3, axis=0)
    return params, inputs, targets


def _mean_loss_delta(cache: mlp.Cache, targets: jax.Array, head: mlp.OutputHead) -> jax.Array:
    """Δ^(L) = ∂L_batch/∂Z^(L) by autodiff, the definition of eq. 5.17."""
    return jax.grad(lambda logits: jnp.mean(head.per_sample_loss(logits, targets)))(cache.Z[-1])


def _max_difference(first, second) -> float:
    """The largest absolute difference between two pytrees of the same structure."""
    differences = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), first, second)
    return float(max(jax.tree.leaves(differences)))


def _rounded(array) -> list:
    return np.round(np.asarray(array), 4).tolist()


def _output_delta_records(
    section: str, problem, head: mlp.OutputHead, name: str, head_label: str
) -> list[Record]:
    """Eq. 5.23 or 5.24: Ŷ - Y against 5.17's Δ and against the gradient of the summed loss."""
    params, inputs, targets = problem
    cache = mlp.forward(params, inputs, mlp.RELU, head)
    batch_size = inputs.shape[1]
    prediction_minus_target = head.output_delta(cache.A[-1], targets)
    mean_delta = _mean_loss_delta(cache, targets, head)
    summed_delta = jax.grad(lambda logits: jnp.sum(head.per_sample_loss(logits, targets)))(
        cache.Z[-1]
    )
    scaled_difference = _max_difference(prediction_minus_target, batch_size * mean_delta)
    out = claim(
        section,
        f"Δ^(L) = {name} under 5.17's definition Δ = ∂L_batch/∂Z",
        f"Δ^(L) = {name} ({head_label})",
        f"on a batch of m = {batch_size}: {name} = m·∂L_batch/∂Z^(L) "
        f"(largest |{name} - m Δ| = {scaled_difference:.1e}); 5.17's Δ is {name} divided by m",
        holds=bool(jnp.allclose(prediction_minus_target, mean_delta)),
        why=(
            f"{name} is ∂(Σ_i L^(i))/∂Z^(L), the per-sample deltas as columns; 5.17's Δ of the "
            f"batch-mean loss is ({name})/m. {name} is consistent with 5.20's 1/m only as the "
            "gradient of the sum, which is how core.mlp reads it"
        ),
    )
    out += claim(
        section,
        f"{name} is the gradient of the summed loss",
        "δ^(L) = ŷ - y per sample (eqs. 5.28, 5.31)",
        f"{name} equals jax.grad of Σ_i L^(i) w.r.t. Z^(L) "
        f"(largest difference {_max_difference(prediction_minus_target, summed_delta):.1e})",
        holds=bool(jnp.allclose(prediction_minus_target, summed_delta, rtol=1e-12, atol=1e-14)),
    )
    return out


def _double_division_records(problem) -> list[Record]:
    """Eqs. 5.17 + 5.20 divide by m twice; 5.23 + 5.20 (core.mlp) divide once."""
    params, inputs, targets = problem
    cache = mlp.forward(params, inputs)
    batch_size = inputs.shape[1]
    autodiff = jax.grad(mlp.batch_loss)(params, inputs, targets)
    book_reading = mlp.gradients_from_deltas(
        mlp.backpropagate(params, cache, _mean_loss_delta(cache, targets, mlp.SIGMOID_BCE)), cache
    )
    ours = mlp.backward(params, cache, targets)
    ratio = float(book_reading[1].b[0] / autodiff[1].b[0])
    out = claim(
        "eqs. 5.17, 5.20",
        "the 1/m of the batch mean",
        "Δ^(ℓ) = ∂L_batch/∂Z^(ℓ) (5.17) and ∂L_batch/∂W^(ℓ) = (1/m) Δ^(ℓ) A^(ℓ-1)ᵀ (5.20)",
        f"on the ch. 6 batch (m = {batch_size}) this gives ∂/∂W^(2) = "
        f"{_rounded(book_reading[1].W[0])}, jax.grad gives {_rounded(autodiff[1].W[0])}: "
        f"ratio {ratio:.4f} = 1/m",
        holds=_max_difference(book_reading, autodiff) < 1e-12,
        why=(
            "5.17's Δ already carries the 1/m of the mean, so 5.20-5.21 divide by m a second "
            "time; correct: Δ A^(ℓ-1)ᵀ with 5.17's Δ, or (1/m) D A^(ℓ-1)ᵀ with the per-sample "
            "deltas D = Ŷ - Y of 5.23 (core.mlp.backward)"
        ),
    )
    out += claim(
        "eqs. 5.19-5.21, 5.23",
        "5.20 with 5.23's per-sample deltas",
        "∂L_batch/∂W^(ℓ) = (1/m) Δ^(ℓ) A^(ℓ-1)ᵀ with Δ^(L) = Ŷ - Y",
        f"core.mlp.backward equals jax.grad of the batch-mean loss on the ch. 6 network "
        f"(largest difference {_max_difference(ours, autodiff):.1e})",
        holds=_max_difference(ours, autodiff) < 1e-12,
    )
    return out


def _batch_average_records(problem) -> list[Record]:
    """Eqs. 5.13-5.14: the batch gradient is the mean of the per-sample gradients."""
    params, inputs, targets = problem
    cache = mlp.forward(params, inputs)
    deltas = mlp.backpropagate(params, cache, mlp.SIGMOID_BCE.output_delta(cache.A[-1], targets))
    per_sample = mlp.per_sample_gradients(deltas, cache)
    averaged = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_sample)
    single_sample = [
        jax.grad(mlp.batch_loss)(params, inputs[:, i : i + 1], targets[:, i : i + 1])
        for i in range(inputs.shape[1])
    ]
    stacked = jax.tree.map(lambda *gs: jnp.stack(gs), *single_sample)
    autodiff = jax.grad(mlp.batch_loss)(params, inputs, targets)
    return claim(
        "eqs. 5.10-5.14",
        "per-sample gradients and their mean",
        "∂L/∂W = δ aᵀ, ∂L/∂b = δ per sample (5.11-5.12); the batch gradient is their mean",
        "δ^(ℓ),(i) a^(ℓ-1),(i)ᵀ equals jax.grad of L^(i) alone for each of the 4 ch. 6 samples "
        f"(largest difference {_max_difference(per_sample, stacked):.1e}), and their mean "
        f"equals jax.grad of L_batch ({_max_difference(averaged, autodiff):.1e})",
        holds=_max_difference(per_sample, stacked) < 1e-12
        and _max_difference(averaged, autodiff) < 1e-12,
    )


def _deep_recursion_records() -> list[Record]:
    """Eq. 5.19 through several hidden layers (tanh) against autodiff."""
    params_key, inputs_key, labels_key = jax.random.split(jax.random.key(6), 3)
    params = mlp.init(params_key, (3, 5, 4, 4, 2), mlp.XAVIER_NORMAL)
    inputs = jax.random.normal(inputs_key, (3, 6))
    targets = jax.random.bernoulli(labels_key, 0.5, (2, 6)).astype(inputs.dtype)
    cache = mlp.forward(params, inputs, mlp.TANH)
    ours = mlp.backward(params, cache, targets, mlp.TANH)
    autodiff = jax.grad(mlp.batch_loss)(params, inputs, targets, mlp.TANH)
    return claim(
        "eqs. 5.7, 5.19",
        "the delta recursion",
        "Δ^(ℓ) = (W^(ℓ+1))ᵀ Δ^(ℓ+1) ⊙ σ'(Z^(ℓ)), ℓ = L-1..1",
        "on a random 3-5-4-4-2 tanh network with sigmoid + BCE outputs the recursion's "
        f"gradients equal jax.grad (largest difference {_max_difference(ours, autodiff):.1e})",
        holds=_max_difference(ours, autodiff) < 1e-12,
    )


def _sigmoid_slope_records() -> list[Record]:
    """Eq. 5.32's premise σ'(z) <= 1/4, on a fine grid, attained at z = 0."""
    grid = jnp.linspace(-20.0, 20.0, 400_001)
    slopes = activations.sigmoid_derivative(grid)
    peak = int(jnp.argmax(slopes))
    return claim(
        "5.5 (eq. 5.32)",
        "sigmoid slope bound",
        "σ'(z) <= 1/4 for all z",
        f"max σ'(z) over z in [-20, 20] (step 1e-4) = {float(slopes[peak]):.10f} at "
        f"z = {float(grid[peak]):.4f}; σ' = σ(1 - σ) <= 1/4 since s(1 - s) peaks at s = 1/2",
        holds=bool(jnp.all(slopes <= 0.25)) and float(slopes[peak]) == 0.25,
    )


def records() -> list[Record]:
    binary = book_network()
    return [
        *_double_division_records(binary),
        *_output_delta_records("eq. 5.23", binary, mlp.SIGMOID_BCE, "Ŷ - Y", "sigmoid + BCE"),
        *_output_delta_records(
            "eq. 5.24", _softmax_problem(), mlp.SOFTMAX_CCE, "P - Y", "softmax + CCE"
        ),
        *_batch_average_records(binary),
        *_deep_recursion_records(),
        *_sigmoid_slope_records(),
    ]

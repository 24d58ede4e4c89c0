"""Chapter 4: loss functions and their gradients (MSE, BCE, softmax + CCE, Huber).

Book 4.2-4.5 (eqs. 4.4, 4.7, 4.8, 4.13, 4.17-4.18, 4.19-4.20). The chapter prints formulas,
not numbers; each printed gradient is checked against `jax.grad` of the `core.losses` function
on a fixed example (logits z = [2, 1, 0.1] with class 1 true, BCE/MSE/Huber on three outputs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from core import activations, losses
from experiments.book.records import Record, claim

TOLERANCE = 1e-12  # float64 agreement of autodiff and a closed form

LOGITS = (2.0, 1.0, 0.1)
ONE_HOT_LABEL = (1.0, 0.0, 0.0)
PREDICTIONS = (0.5, -1.2, 2.0)  # regression outputs ŷ
TARGETS = (1.0, 0.0, 1.5)  # regression targets y; residuals -0.5, -1.2, 0.5
PROBABILITIES = (0.2, 0.6, 0.9)  # BCE predictions ŷ ∈ (0, 1)
BINARY_LABELS = (0.0, 1.0, 1.0)
HUBER_DELTA = 1.0  # one residual (-1.2) beyond δ, two within


def _max_difference(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


def _gradient_claim(section, quantity, book_claim, autodiff, closed_form, why="") -> list[Record]:
    difference = _max_difference(autodiff, closed_form)
    return claim(
        section,
        quantity,
        book_claim,
        f"autodiff vs the printed form: max |difference| = {difference:.3g}",
        holds=difference < TOLERANCE,
        why=why,
    )


def _regression_records() -> list[Record]:
    predictions, targets = jnp.asarray(PREDICTIONS), jnp.asarray(TARGETS)
    squared = jax.grad(losses.sum_squared_error)(predictions, targets)
    half_squared = jax.grad(losses.half_sum_squared_error)(predictions, targets)
    return [
        *_gradient_claim(
            "4.2.2 eq. 4.4",
            "∇ŷ ||ŷ - y||²",
            "∇ŷ ℓ_MSE = 2(ŷ - y)",
            squared,
            2.0 * (predictions - targets),
        ),
        *_gradient_claim(
            "4.2.2",
            "∇ŷ ½||ŷ - y||²",
            "for the scaled loss the gradient is ŷ - y",
            half_squared,
            predictions - targets,
        ),
    ]


def _huber_records() -> list[Record]:
    predictions, targets = jnp.asarray(PREDICTIONS), jnp.asarray(TARGETS)
    huber_value = losses.huber_loss(predictions, targets, HUBER_DELTA)
    huber_gradient = jax.grad(lambda p: losses.huber_loss(p, targets, HUBER_DELTA).sum())(
        predictions
    )
    huber_gap = _max_difference(
        huber_value, optax.huber_loss(predictions, targets, delta=HUBER_DELTA)
    )
    return [
        *claim(
            "4.5 eq. 4.19",
            "Huber loss",
            "½(y - ŷ)² for |y - ŷ| <= δ, δ(|y - ŷ| - δ/2) beyond",
            f"core.losses.huber_loss = optax.huber_loss (max |difference| {huber_gap:.1e})",
            holds=huber_gap < TOLERANCE,
        ),
        *_gradient_claim(
            "4.5 eq. 4.20",
            "∂ Huber / ∂ŷ",
            "ŷ - y for |y - ŷ| <= δ, δ sign(ŷ - y) beyond",
            huber_gradient,
            losses.huber_loss_derivative(predictions, targets, HUBER_DELTA),
        ),
    ]


def _binary_records() -> list[Record]:
    probs, labels = jnp.asarray(PROBABILITIES), jnp.asarray(BINARY_LABELS)
    logits = jnp.log(probs / (1.0 - probs))  # σ^{-1}(ŷ), so that σ(z) = ŷ
    probability_gradient = jax.grad(lambda p: losses.binary_cross_entropy(p, labels).sum())(probs)
    logit_gradient = jax.grad(lambda z: losses.binary_cross_entropy_with_logits(z, labels).sum())(
        logits
    )
    return [
        *_gradient_claim(
            "4.3.2 eq. 4.7",
            "∂BCE/∂ŷ",
            "-(y/ŷ - (1 - y)/(1 - ŷ)) = (ŷ - y)/(ŷ(1 - ŷ))",
            probability_gradient,
            (probs - labels) / (probs * (1.0 - probs)),
        ),
        *_gradient_claim(
            "4.3.3 eq. 4.8",
            "∂BCE/∂z with ŷ = σ(z)",
            "ŷ - y (sigmoid + BCE cancel)",
            logit_gradient,
            activations.sigmoid(logits) - labels,
        ),
    ]


def _softmax_records() -> list[Record]:
    logits, labels = jnp.asarray(LOGITS), jnp.asarray(ONE_HOT_LABEL)
    probs = activations.softmax(logits)
    logit_gradient = jax.grad(losses.categorical_cross_entropy)(logits, labels)
    # The printed middle step of eq. 4.17, evaluated as printed: -y_j + p_j·1 + (p_j - y_j).
    printed_middle_step = -labels + probs * 1.0 + (probs - labels)
    return [
        *_gradient_claim(
            "4.4.2 eqs. 4.12-4.13",
            "softmax Jacobian",
            "∂p/∂z = diag(p) - ppᵀ",
            jax.jacobian(activations.softmax)(logits),
            activations.softmax_jacobian(probs),
        ),
        *_gradient_claim(
            "4.4.3 eq. 4.17",
            "middle step of ∂ℓ_CCE/∂z_j",
            "-y_j + p_j·1 + (p_j - y_j) = p_j - y_j",
            logit_gradient,
            printed_middle_step,
            why="the middle expression sums to 2(p_j - y_j): -y_j + p_j·1 is already p_j - y_j "
            "(from eq. 4.16 with Σ y_i = 1), the extra '+ (p_j - y_j)' is a stray term; the "
            "final p_j - y_j is right",
        ),
        *_gradient_claim(
            "4.4.3 eqs. 4.17-4.18",
            "∇z ℓ_CCE(softmax(z), y)",
            "p - y (softmax + CCE cancel)",
            logit_gradient,
            probs - labels,
        ),
    ]


def records() -> list[Record]:
    return [
        *_regression_records(),
        *_binary_records(),
        *_softmax_records(),
        *_huber_records(),
    ]

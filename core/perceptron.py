"""Book 2.1-2.4: the perceptron, its geometry, its learning algorithm and its mistake bound.

Score z = wᵀx + b (eq. 2.1) with the two label conventions: {0, 1} with step (eq. 2.2) and
{-1, +1} with sign (eq. 2.9), related by y± = 2y₀₁ - 1. The signed distance to the decision
hyperplane (eqs. 2.7-2.8), the learning algorithm (eqs. 2.10-2.12) with or without a learned
bias, and the margin γ, radius R and mistake bound (R/γ)² of eqs. 2.13-2.15.

The bound as printed does not hold when a bias is learned. The book's proof runs on augmented
vectors x̃ = [x, 1], w̃ = [w, b] ("up to the bias/augmentation convention"), but the theorem
states R = max ||x|| on the raw inputs and γ normalized by ||w*|| only. Corrected statement
(Novikoff's theorem on the augmented vectors): starting from w = 0, b = 0, for any separator
(w*, b*) with γ̃ = min_i y_i (w*ᵀx_i + b*) / ||[w*, b*]|| > 0 and R̃ = max_i ||[x_i, 1]||,

    M <= (R̃ / γ̃)²,

for every learning rate η > 0. Without a learned bias (b = b* = 0) the printed (R/γ)² is
correct. Counterexample to the printed bound with a bias: the 1-D points x = 4 (y = +1) and
x = 8 (y = -1) are separated by w* = -1/2, b* = 3 with (2.13) tight, so γ = 2 and R = 8, and
no separator does better (γ <= half the gap = 2), hence (R/γ)² <= 16 for every separator; the
perceptron makes M = 53 mistakes. The augmented bound is 65 · 9.25 = 601.25.

Points are batch-first here, `points: [m, d]` (the perceptron chapter works one vector at a
time); `core.mlp` uses the book's column-stacked convention of chapters 3-6.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from core.checks import check_shapes


def _check_separator(weights, bias, points) -> None:
    check_shapes(weights=(weights, ("d",)), bias=(bias, ()), points=(points, (None, "d")))


def score(weights: jax.Array, bias: jax.Array, points: jax.Array) -> jax.Array:
    """z(x) = wᵀx + b for every point (book eq. 2.1).

    Args:
      weights: [d] normal vector w.
      bias: [] offset b.
      points: [m, d] inputs x_i as rows.

    Returns:
      [m] scores.
    """
    _check_separator(weights, bias, points)
    return jnp.asarray(points) @ jnp.asarray(weights) + bias


def predict_binary(weights: jax.Array, bias: jax.Array, points: jax.Array) -> jax.Array:
    """ŷ = step(wᵀx + b) in {0, 1}, with step(0) = 1 (book eq. 2.2).

    Args:
      weights: [d]; bias: []; points: [m, d].

    Returns:
      [m] labels in {0, 1}, in the scores' dtype.
    """
    scores = score(weights, bias, points)
    return jnp.where(scores >= 0, 1.0, 0.0).astype(scores.dtype)


def to_signed_labels(binary_labels: jax.Array) -> jax.Array:
    """Maps {0, 1} labels to {-1, +1}: y± = 2y₀₁ - 1 (the conversion between eqs. 2.2 and 2.9)."""
    return 2 * binary_labels - 1


def predict_signed(weights: jax.Array, bias: jax.Array, points: jax.Array) -> jax.Array:
    """ŷ = sign(wᵀx + b) in {-1, +1} (book eq. 2.9), with sign(0) = +1 as step(0) = 1 in 2.2.

    With this tie rule predict_signed = to_signed_labels(predict_binary) exactly.

    Args:
      weights: [d]; bias: []; points: [m, d].

    Returns:
      [m] labels in {-1, +1}, in the scores' dtype.
    """
    return to_signed_labels(predict_binary(weights, bias, points))


def signed_distance(weights: jax.Array, bias: jax.Array, points: jax.Array) -> jax.Array:
    """d(x, H) = (wᵀx + b) / ||w|| to H = {x : wᵀx + b = 0}, w ≠ 0 (book eqs. 2.7-2.8).

    Positive on the side w points to (H+), negative on H-; |d| is the Euclidean distance to H.

    Args:
      weights: [d] nonzero normal vector w.
      bias: [] offset b.
      points: [m, d].

    Returns:
      [m] signed distances.
    """
    return score(weights, bias, points) / jnp.linalg.norm(weights)


def augment(points: jax.Array) -> jax.Array:
    """x̃ = [x, 1], which absorbs the bias into the weights: w̃ᵀx̃ = wᵀx + b (book 2.3.2).

    Args:
      points: [m, d].

    Returns:
      [m, d + 1].
    """
    check_shapes(points=(points, (None, None)))
    return jnp.concatenate([points, jnp.ones_like(points[:, :1])], axis=1)


def random_separable_dataset(
    key: jax.Array, num_points: int, dim: int, *, gap: float = 0.2, with_bias: bool = True
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """A linearly separable dataset with a known separator (w*, b*), to exercise eq. 2.15.

    w* ~ N(0, I), b* ~ N(0, 1) (or 0 without bias); points uniform in [-1, 1]^d labelled by
    sign(w*ᵀx + b*) (eq. 2.9), then each moved by y_i·gap along the unit normal w*/||w*||, which
    raises y_i(w*ᵀx_i + b*) by gap·||w*||: every point is at least `gap` from the boundary.

    Args:
      key: a `jax.random` key.
      num_points: m; dim: d.
      gap: the smallest distance of a point to the separator's hyperplane.
      with_bias: whether b* is drawn (else the hyperplane passes through the origin).

    Returns:
      (w*: [d], b*: [], points: [m, d], labels: [m] in {-1, +1}).
    """
    weights_key, bias_key, points_key = jax.random.split(key, 3)
    weights = jax.random.normal(weights_key, (dim,))
    bias = jax.random.normal(bias_key, ()) if with_bias else jnp.zeros([])
    points = jax.random.uniform(points_key, (num_points, dim), minval=-1.0, maxval=1.0)
    labels = predict_signed(weights, bias, points)
    points = points + gap * labels[:, None] * weights / jnp.linalg.norm(weights)
    return weights, bias, points, labels


class PerceptronFit(NamedTuple):
    """The result of `train`.

    weights: [d] learned w; bias: [] learned b (0 when no bias is learned); mistakes: [] the
    number M of updates made (eq. 2.10 held); epochs: [] passes over the data, the last one
    mistake-free if converged; converged: [] whether a pass made no mistake.
    """

    weights: jax.Array
    bias: jax.Array
    mistakes: jax.Array
    epochs: jax.Array
    converged: jax.Array


def _epoch(weights: jax.Array, points: jax.Array, labels: jax.Array, learning_rate: jax.Array):
    """One pass in data order: update on every i with y_i w̃ᵀx̃_i <= 0 (book eqs. 2.10-2.12).

    Returns the new weights and the number of updates made in the pass.
    """

    def visit(weights, point_and_label):
        point, label = point_and_label
        mistake = label * (point @ weights) <= 0  # book eq. 2.10
        step = jnp.where(mistake, learning_rate * label, 0.0)
        return weights + step * point, mistake.astype(jnp.int32)  # book eqs. 2.11-2.12

    weights, mistakes = jax.lax.scan(visit, weights, (points, labels))
    return weights, jnp.sum(mistakes, dtype=jnp.int32)


def train(
    points: jax.Array,
    labels: jax.Array,
    *,
    learning_rate: float = 1.0,
    learn_bias: bool = True,
    max_epochs: int = 1000,
) -> PerceptronFit:
    """The perceptron learning algorithm from w = 0, b = 0 (book eqs. 2.10-2.12).

    Cycles through the data in order and updates on every mistake, y_i(wᵀx_i + b) <= 0 (a
    point on the boundary counts as a mistake), until a pass makes none or `max_epochs` passes
    are done. With `learn_bias` the update runs on x̃ = [x, 1], w̃ = [w, b], which is exactly
    eqs. 2.11 and 2.12.

    jit: the loop over epochs is a `lax.while_loop` and the pass over samples a `lax.scan`, so
    the whole run compiles to one XLA loop (the stopping test depends on data, which
    `while_loop` handles); `learn_bias` and `max_epochs` are static.

    Args:
      points: [m, d] inputs x_i as rows.
      labels: [m] labels y_i in {-1, +1} (use `to_signed_labels` for {0, 1}).
      learning_rate: η > 0. From w = 0 every iterate is η times the η = 1 iterate, so the
        mistakes and the predictions do not depend on η (scaling invariance, eq. 2.6). In
        floating point this is exact for powers of 2; another η can round a tie (a score of
        exactly 0, a mistake) to either side and change the count.
      learn_bias: whether b is learned (eq. 2.12) or fixed at 0.
      max_epochs: the most passes over the data.

    Returns:
      A `PerceptronFit`.
    """
    check_shapes(points=(points, ("m", "d")), labels=(labels, ("m",)))
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
    return _train(points, labels, jnp.asarray(learning_rate), learn_bias, max_epochs)


@functools.partial(jax.jit, static_argnames=("learn_bias", "max_epochs"))
def _train(points, labels, learning_rate, learn_bias: bool, max_epochs: int) -> PerceptronFit:
    points = points.astype(jnp.result_type(points, 1.0))  # integer data still learns a float w
    inputs = augment(points) if learn_bias else points
    labels = labels.astype(inputs.dtype)
    learning_rate = learning_rate.astype(inputs.dtype)

    def not_done(state):
        _, _, epochs, last_epoch_mistakes = state
        return (epochs < max_epochs) & (last_epoch_mistakes > 0)

    def run_epoch(state):
        weights, mistakes, epochs, _ = state
        weights, epoch_mistakes = _epoch(weights, inputs, labels, learning_rate)
        return weights, mistakes + epoch_mistakes, epochs + 1, epoch_mistakes

    zero = jnp.zeros([], jnp.int32)
    start = (jnp.zeros(inputs.shape[1], inputs.dtype), zero, zero, jnp.ones([], jnp.int32))
    weights, mistakes, epochs, last_epoch_mistakes = jax.lax.while_loop(not_done, run_epoch, start)
    bias = weights[-1] if learn_bias else jnp.zeros([], inputs.dtype)
    weights = weights[:-1] if learn_bias else weights
    return PerceptronFit(weights, bias, mistakes, epochs, last_epoch_mistakes == 0)


def margin(weights: jax.Array, bias: jax.Array, points: jax.Array, labels: jax.Array) -> jax.Array:
    """γ = min_i y_i (wᵀx_i + b) / ||w|| (book eq. 2.14): the smallest signed distance.

    Under (2.13), y_i(wᵀx_i + b) >= 1 for all i, this is at least 1/||w||.

    Args:
      weights: [d] separator w*; bias: [] b*; points: [m, d]; labels: [m] in {-1, +1}.

    Returns:
      [] the margin (negative if (w, b) misclassifies a point).
    """
    check_shapes(points=(points, ("m", None)), labels=(labels, ("m",)))
    return jnp.min(labels * signed_distance(weights, bias, points))


def radius(points: jax.Array) -> jax.Array:
    """R = max_i ||x_i|| (book 2.4.1).

    Args:
      points: [m, d].
    """
    check_shapes(points=(points, (None, None)))
    return jnp.max(jnp.linalg.norm(points, axis=1))


def mistake_bound(radius: jax.Array, margin: jax.Array) -> jax.Array:
    """(R/γ)², Novikoff's bound on the perceptron's mistakes (book eq. 2.15)."""
    return jnp.square(radius / margin)


def printed_mistake_bound(
    weights: jax.Array, bias: jax.Array, points: jax.Array, labels: jax.Array
) -> jax.Array:
    """(R/γ)² as the book states it: R on the raw x, γ normalized by ||w*|| (eqs. 2.14-2.15).

    Valid without a learned bias (b* = 0); with one it can fail (see the module docstring).

    Args:
      weights: [d] separator w*; bias: [] b*; points: [m, d]; labels: [m] in {-1, +1}.
    """
    return mistake_bound(radius(points), margin(weights, bias, points, labels))


def augmented_mistake_bound(
    weights: jax.Array, bias: jax.Array, points: jax.Array, labels: jax.Array
) -> jax.Array:
    """(R̃/γ̃)² on x̃ = [x, 1] and w̃* = [w*, b*]: the bound that holds with a learned bias.

    Args:
      weights: [d] separator w*; bias: [] b*; points: [m, d]; labels: [m] in {-1, +1}.
    """
    _check_separator(weights, bias, points)
    augmented_points = augment(points)
    augmented_weights = jnp.append(weights, bias)
    augmented_margin = margin(augmented_weights, jnp.zeros_like(bias), augmented_points, labels)
    return mistake_bound(radius(augmented_points), augmented_margin)

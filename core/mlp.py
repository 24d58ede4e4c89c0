"""Book 3.1-3.3, 5.1-5.6, 6.3-6.10: a feedforward network with hand-written backpropagation.

The book's column-stacked convention throughout: a batch of m inputs is X = A^(0) ∈ R^{n_0×m}
(one sample per column), layer l has W^(l) ∈ R^{n_l×n_{l-1}} and b^(l) ∈ R^{n_l}, and the
forward pass is Z^(l) = W^(l) A^(l-1) + b^(l) 1ᵀ, A^(l) = σ^(l)(Z^(l)) (eqs. 3.7-3.8, 5.16).
Parameters are a list of `Layer(W, b)` (a pytree for `jax.grad` and optax), so the book's
chapter 6 matrices load as printed.

The output layer is one of the paired heads whose output delta is simple: sigmoid + BCE and
softmax + CCE give δ^(L) = ŷ - y (eqs. 5.28, 5.31), identity + MSE (eq. 4.2) gives 2(ŷ - y)
(eq. 4.4). Losses are computed from the logits Z^(L) with `core.losses` (stable in log space).

The 1/m of the batch mean, exactly once. `backpropagate` carries the per-sample deltas stacked
as columns, D^(l) = [δ^(l),(1) ... δ^(l),(m)] = ∂(Σ_i L^(i))/∂Z^(l), which is what eqs. 5.23-5.24
write (Δ^(L) = Ŷ - Y) and what the delta recursion 5.19 propagates; eqs. 5.20-5.21 then divide
by m once: ∂L_batch/∂W^(l) = (1/m) D^(l) A^(l-1)ᵀ (= eq. 5.13). The book's eq. 5.17 instead
defines Δ^(l) = ∂L_batch/∂Z^(l) = D^(l)/m, the gradient of the batch MEAN; combined with 5.20's
1/m this divides by m twice (a gradient m times too small), and 5.23's Ŷ - Y is not 5.17's Δ.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from core import activations, initializers, losses
from core.checks import check_same_shape, check_shapes


class Layer(NamedTuple):
    """One affine layer: W: [n_l, n_{l-1}] weights W^(l); b: [n_l] biases b^(l) (eq. 3.3)."""

    W: jax.Array
    b: jax.Array


Params = list[Layer]


class Activation(NamedTuple):
    """A hidden-layer nonlinearity σ and its derivative σ' for the delta recursion (eq. 5.19)."""

    function: Callable[[jax.Array], jax.Array]
    derivative: Callable[[jax.Array], jax.Array]


def _identity(z: jax.Array) -> jax.Array:
    return z


def _identity_derivative(z: jax.Array) -> jax.Array:
    return jnp.ones_like(z)


RELU = Activation(activations.relu, activations.relu_derivative)  # eqs. 3.18-3.19, 6.43
SIGMOID = Activation(activations.sigmoid, activations.sigmoid_derivative)  # eqs. 3.14-3.15
TANH = Activation(activations.tanh, activations.tanh_derivative)  # eqs. 3.16-3.17
IDENTITY = Activation(_identity, _identity_derivative)  # the linear network of eq. 3.12


class OutputHead(NamedTuple):
    """An output activation paired with its loss, column-stacked ([K, m] = outputs × samples).

    activation: Z^(L) -> A^(L) = Ŷ.
    per_sample_loss: (Z^(L), Y) -> [m] losses L^(i), computed from the logits.
    output_delta: (Ŷ, Y) -> [K, m] per-sample output deltas ∂L^(i)/∂z^(L),(i) as columns.
    """

    activation: Callable[[jax.Array], jax.Array]
    per_sample_loss: Callable[[jax.Array, jax.Array], jax.Array]
    output_delta: Callable[[jax.Array, jax.Array], jax.Array]


def _sum_of_binary_cross_entropies(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Σ_k BCE(σ(z_k), y_k) per column (eqs. 4.5, 6.9): K independent binary outputs."""
    return jnp.sum(losses.binary_cross_entropy_with_logits(logits, targets), axis=0)


def _softmax_over_classes(logits: jax.Array) -> jax.Array:
    """Softmax down each column, the class axis of [K, m] (eq. 3.20)."""
    return activations.softmax(logits, axis=0)


def _categorical_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """-Σ_k y_k log softmax(z)_k per column (eq. 4.10)."""
    return losses.categorical_cross_entropy(logits.T, targets.T)


def _sum_squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """||ŷ - y||² per column (eq. 4.2)."""
    return losses.sum_squared_error(outputs.T, targets.T)


def _prediction_minus_target(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Ŷ - Y, the output delta of sigmoid + BCE and softmax + CCE (eqs. 5.23-5.24, 5.28, 5.31)."""
    return outputs - targets


def _squared_error_delta(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """2(Ŷ - Y), the output delta of identity + MSE (eq. 4.4)."""
    return 2.0 * (outputs - targets)


SIGMOID_BCE = OutputHead(
    activations.sigmoid, _sum_of_binary_cross_entropies, _prediction_minus_target
)
SOFTMAX_CCE = OutputHead(
    _softmax_over_classes, _categorical_cross_entropy, _prediction_minus_target
)
IDENTITY_MSE = OutputHead(_identity, _sum_squared_error, _squared_error_delta)


class Cache(NamedTuple):
    """What the forward pass keeps for the backward pass (eq. 5.16).

    Z: L arrays, Z[l - 1] = Z^(l): [n_l, m] pre-activations of layer l = 1..L.
    A: L + 1 arrays, A[l] = A^(l): [n_l, m] activations of layer l = 0..L; A[0] = X and
      A[L] = Ŷ.
    """

    Z: tuple[jax.Array, ...]
    A: tuple[jax.Array, ...]


def _check_network(
    params: Sequence[Layer], inputs: jax.Array | None = None, targets: jax.Array | None = None
) -> None:
    """Raises ValueError unless the layers chain and X: [n_0, m], Y: [n_L, m] fit (eq. 5.15)."""
    if len(params) < 1:
        raise ValueError("params must hold at least one layer")
    named = {} if inputs is None else {"inputs": (inputs, ("n0", "m"))}
    for index, layer in enumerate(params):
        named[f"params[{index}].W"] = (layer.W, (f"n{index + 1}", f"n{index}"))
        named[f"params[{index}].b"] = (layer.b, (f"n{index + 1}",))
    if targets is not None:
        named["targets"] = (targets, (f"n{len(params)}", "m"))
    check_shapes(**named)


def layer_sizes(params: Sequence[Layer]) -> tuple[int, ...]:
    """(n_0, n_1, ..., n_L) of a network's parameters."""
    return (params[0].W.shape[1], *(layer.W.shape[0] for layer in params))


def parameter_count(sizes: Sequence[int]) -> int:
    """#θ = Σ_l n_l (n_{l-1} + 1) (book eq. 3.11).

    Args:
      sizes: (n_0, n_1, ..., n_L), the input size then every layer's width.
    """
    _check_layer_sizes(sizes)
    return sum(width * (fan_in + 1) for fan_in, width in itertools.pairwise(sizes))


def _check_layer_sizes(sizes: Sequence[int]) -> None:
    if len(sizes) < 2 or any(int(n) != n or n < 1 for n in sizes):
        raise ValueError(
            f"layer sizes must be at least two positive integers (n_0, ..., n_L), got {sizes}"
        )


# W^(l) is [n_l, n_{l-1}] = [fan_out, fan_in]: the transpose of flax's kernel layout.
HE_NORMAL = initializers.he_normal(in_axis=-1, out_axis=-2)
XAVIER_NORMAL = initializers.xavier_normal(in_axis=-1, out_axis=-2)


def init(
    key: jax.Array,
    sizes: Sequence[int],
    weight_init: initializers.Initializer = HE_NORMAL,
    dtype=float,
) -> Params:
    """Random parameters for any depth: W^(l) drawn by `weight_init`, b^(l) = 0.

    `HE_NORMAL` draws W^(l)_{jk} ~ N(0, 2/n_{l-1}) (book eq. 11.6), which keeps E[z²] constant
    through ReLU layers; `XAVIER_NORMAL` draws N(0, 2/(n_{l-1} + n_l)), which balances the
    forward and backward variances of sigmoid/tanh layers (book 11.2.2).

    Args:
      key: a `jax.random` key.
      sizes: (n_0, n_1, ..., n_L).
      weight_init: a `core.initializers` initializer for the [n_l, n_{l-1}] layout.
      dtype: of the parameters; the default `float` is float32, or float64 under x64.

    Returns:
      L layers, W^(l): [n_l, n_{l-1}], b^(l): [n_l].
    """
    _check_layer_sizes(sizes)
    layer_keys = jax.random.split(key, len(sizes) - 1)
    return [
        Layer(W=weight_init(layer_key, (width, fan_in), dtype), b=jnp.zeros(width, dtype))
        for layer_key, (fan_in, width) in zip(layer_keys, itertools.pairwise(sizes), strict=True)
    ]


def forward(
    params: Sequence[Layer],
    inputs: jax.Array,
    hidden: Activation = RELU,
    head: OutputHead = SIGMOID_BCE,
) -> Cache:
    """The vectorized forward pass Z^(l) = W^(l) A^(l-1) + b^(l) 1ᵀ, A^(l) = σ(Z^(l)) (eq. 5.16).

    Args:
      params: L layers, W^(l): [n_l, n_{l-1}], b^(l): [n_l].
      inputs: X = A^(0): [n_0, m], one sample per column (eq. 3.6).
      hidden: the activation of layers 1..L-1.
      head: the output activation (with its loss) of layer L.

    Returns:
      The `Cache` of every Z^(l) and A^(l); its A[-1] is Ŷ: [n_L, m].
    """
    _check_network(params, inputs)
    preactivations, layer_outputs = [], [inputs]
    for index, layer in enumerate(params):
        z = layer.W @ layer_outputs[-1] + layer.b[:, None]  # book eqs. 3.7, 5.16
        is_output = index == len(params) - 1
        preactivations.append(z)
        layer_outputs.append(head.activation(z) if is_output else hidden.function(z))
    return Cache(tuple(preactivations), tuple(layer_outputs))


def per_sample_losses(
    params: Sequence[Layer],
    inputs: jax.Array,
    targets: jax.Array,
    hidden: Activation = RELU,
    head: OutputHead = SIGMOID_BCE,
) -> jax.Array:
    """L^(i) for every sample (e.g. BCE, book eq. 6.9).

    Args:
      params: L layers; inputs: X [n_0, m]; targets: Y [n_L, m] (labels, one-hot columns or
        regression targets, as the head expects).

    Returns:
      [m] per-sample losses.
    """
    _check_network(params, inputs, targets)
    return head.per_sample_loss(forward(params, inputs, hidden, head).Z[-1], targets)


def batch_loss(
    params: Sequence[Layer],
    inputs: jax.Array,
    targets: jax.Array,
    hidden: Activation = RELU,
    head: OutputHead = SIGMOID_BCE,
) -> jax.Array:
    """L_batch = (1/m) Σ_i L^(i), the empirical risk (book eqs. 4.1, 6.10).

    Args:
      params: L layers; inputs: X [n_0, m]; targets: Y [n_L, m].

    Returns:
      [] the batch-mean loss.
    """
    return jnp.mean(per_sample_losses(params, inputs, targets, hidden, head))


def backpropagate(
    params: Sequence[Layer],
    cache: Cache,
    output_delta: jax.Array,
    hidden: Activation = RELU,
) -> list[jax.Array]:
    """The delta recursion D^(l) = (W^(l+1))ᵀ D^(l+1) ⊙ σ'(Z^(l)), l = L-1..1 (eqs. 5.7, 5.19).

    Linear in the output delta: given the per-sample deltas Ŷ - Y it returns the per-sample
    deltas of every layer; given (Ŷ - Y)/m (eq. 5.17's batch-mean Δ) it returns those / m.

    Args:
      params: L layers.
      cache: the forward pass of `params`.
      output_delta: [n_L, m] the output layer's deltas, one column per sample.
      hidden: the hidden activation the forward pass used.

    Returns:
      L arrays, element l - 1 is D^(l): [n_l, m].
    """
    check_same_shape(outputs=cache.A[-1], output_delta=output_delta)
    deltas = [output_delta]
    for layer, z in zip(params[:0:-1], cache.Z[-2::-1], strict=True):
        deltas.append((layer.W.T @ deltas[-1]) * hidden.derivative(z))  # book eq. 5.19
    return deltas[::-1]


def gradients_from_deltas(deltas: Sequence[jax.Array], cache: Cache) -> Params:
    """∂L_batch/∂W^(l) = (1/m) D^(l) A^(l-1)ᵀ, ∂L_batch/∂b^(l) = (1/m) D^(l) 1 (eqs. 5.20-5.21).

    With D^(l) the per-sample deltas (columns), this is the mean of the per-sample gradients
    (eqs. 5.13-5.14).

    Args:
      deltas: L arrays D^(l): [n_l, m], as returned by `backpropagate`.
      cache: the forward pass, for A^(l-1).

    Returns:
      The batch-mean gradient, one `Layer` per layer.
    """
    batch_size = deltas[0].shape[1]
    return [
        Layer(W=delta @ previous.T / batch_size, b=jnp.sum(delta, axis=1) / batch_size)
        for delta, previous in zip(deltas, cache.A[:-1], strict=True)
    ]


def per_sample_gradients(deltas: Sequence[jax.Array], cache: Cache) -> Params:
    """∂L^(i)/∂W^(l) = δ^(l),(i) (a^(l-1),(i))ᵀ and ∂L^(i)/∂b^(l) = δ^(l),(i) (eqs. 5.11-5.12).

    The single-example gradients of eqs. 6.38-6.42 for every sample at once.

    Args:
      deltas: L arrays D^(l): [n_l, m] of per-sample deltas, as returned by `backpropagate`.
      cache: the forward pass, for A^(l-1).

    Returns:
      One `Layer` per layer with a leading sample axis: W: [m, n_l, n_{l-1}], b: [m, n_l].
    """
    return [
        Layer(W=jnp.einsum("jm,km->mjk", delta, previous), b=delta.T)
        for delta, previous in zip(deltas, cache.A[:-1], strict=True)
    ]


def backward(
    params: Sequence[Layer],
    cache: Cache,
    targets: jax.Array,
    hidden: Activation = RELU,
    head: OutputHead = SIGMOID_BCE,
) -> Params:
    """Hand-written backprop: the gradient of the batch-mean loss (book 5.3.3, eqs. 5.18-5.24).

    Output deltas from the head (Ŷ - Y for the cross-entropies), the delta recursion (5.19),
    then eqs. 5.20-5.21 with the 1/m applied once; equals `jax.grad(batch_loss)`.

    Args:
      params: L layers.
      cache: `forward(params, X, hidden, head)`.
      targets: Y [n_L, m].
      hidden, head: as in the forward pass.

    Returns:
      ∂L_batch/∂θ, one `Layer` per layer.
    """
    _check_network(params, cache.A[0], targets)
    output_delta = head.output_delta(cache.A[-1], targets)  # book eqs. 5.23-5.24
    return gradients_from_deltas(backpropagate(params, cache, output_delta, hidden), cache)


def collapse_linear(params: Sequence[Layer]) -> Layer:
    """The single affine map W_eff x + b_eff of a network without nonlinearities (eqs. 3.12-3.13).

    W_eff = W^(L)···W^(1) and b_eff = W^(L)(···(W^(2) b^(1) + b^(2))···) + b^(L).

    Args:
      params: L layers.

    Returns:
      Layer(W_eff: [n_L, n_0], b_eff: [n_L]).
    """
    _check_network(params)
    effective = params[0]
    for layer in params[1:]:
        effective = Layer(W=layer.W @ effective.W, b=layer.W @ effective.b + layer.b)
    return effective


def train_full_batch(
    params: Sequence[Layer],
    inputs: jax.Array,
    targets: jax.Array,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    hidden: Activation = RELU,
    head: OutputHead = SIGMOID_BCE,
) -> tuple[Params, jax.Array]:
    """Full-batch gradient descent with the hand-written gradient (book 5.6, 6.10, 7.1.2).

    Each step: forward pass, `backward`, `optimizer.update`, `optax.apply_updates`; the steps
    run in a `lax.scan`.

    Args:
      params: the initial layers.
      inputs: X [n_0, m]; targets: Y [n_L, m].
      optimizer: e.g. `core.optim.sgd(η)` for θ ← θ - η ∇L_batch (eq. 6.57).
      num_steps: the number of updates T.
      hidden, head: the network's activations.

    Returns:
      (the parameters after T steps, [T + 1] batch losses L_0, ..., L_T).
    """
    _check_network(params, inputs, targets)

    def step(carry, _):
        params, optimizer_state = carry
        cache = forward(params, inputs, hidden, head)
        loss = jnp.mean(head.per_sample_loss(cache.Z[-1], targets))
        gradients = backward(params, cache, targets, hidden, head)
        updates, optimizer_state = optimizer.update(gradients, optimizer_state, params)
        return (optax.apply_updates(params, updates), optimizer_state), loss

    params = list(params)
    (params, _), losses_before_steps = jax.lax.scan(
        step, (params, optimizer.init(params)), length=num_steps
    )
    final_loss = batch_loss(params, inputs, targets, hidden, head)
    return params, jnp.append(losses_before_steps, final_loss)

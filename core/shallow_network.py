"""The one-hidden-layer network of the universal approximation theorem, in two parameterizations.

Book 9.1 (eqs. 9.1-9.3) and 9.3.3. Batch-first: inputs X: [B, d], outputs [B].

  "standard":  f_N(x) = Σ_j a_j σ(w_jᵀx + b_j)                        (eq. 9.1)
               with w_j ~ N(0, I/d), b_j ~ N(0, 1), a_j ~ N(0, 1/N);
  "ntk":       f_N(x) = (1/√N) Σ_j a_j σ(w_jᵀx / √d + b_j)
               with w_j ~ N(0, I), b_j ~ N(0, 1), a_j ~ N(0, 1).

Both draw the same random function at initialization; they differ in training. In the NTK
parameterization (Jacot et al.) the 1/√N sits outside the parameters, so the gradient with
respect to each parameter is O(1/√N): under a width-independent learning rate each parameter
moves by O(1/√N), the network stays close to its first-order Taylor model (eq. 9.8,
`core.linearization`), and the kernel ∇f ∇fᵀ stays put. In the standard parameterization the
same learning rate moves the output weights by O(1) each.

`train_regression` fits any model (params, X) -> [B] to targets by full-batch steps of an optax
optimizer on the mean squared error, so the network and its Taylor model train identically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from core import activations, losses
from core.checks import check_shapes

PARAMETERIZATIONS = ("standard", "ntk")


class ShallowParams(NamedTuple):
    """input_weights: [N, d] the w_j as rows; biases: [N] the b_j; output_weights: [N] the a_j."""

    input_weights: jax.Array
    biases: jax.Array
    output_weights: jax.Array


def _check_parameterization(parameterization: str) -> None:
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
        )


def init(
    key: jax.Array, input_dim: int, width: int, parameterization: str = "standard", dtype=float
) -> ShallowParams:
    """Random parameters of a width-N network (the distributions in the module docstring).

    Args:
      key: a `jax.random` key.
      input_dim: d >= 1.
      width: N >= 1 hidden units.
      parameterization: "standard" (eq. 9.1 as printed) or "ntk".
      dtype: of the parameters; the default `float` is float32, or float64 under x64.
    """
    _check_parameterization(parameterization)
    for name, value in (("input_dim", input_dim), ("width", width)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    weight_key, bias_key, output_key = jax.random.split(key, 3)
    input_weights = jax.random.normal(weight_key, (width, input_dim), dtype)
    output_weights = jax.random.normal(output_key, (width,), dtype)
    if parameterization == "standard":
        input_weights = input_weights / math.sqrt(input_dim)
        output_weights = output_weights / math.sqrt(width)
    return ShallowParams(
        input_weights, jax.random.normal(bias_key, (width,), dtype), output_weights
    )


def apply(
    params: ShallowParams,
    inputs: jax.Array,
    parameterization: str = "standard",
    activation: Callable[[jax.Array], jax.Array] = activations.relu,
) -> jax.Array:
    """f_N(x) = Σ_j a_j σ(w_jᵀx + b_j) (book eq. 9.1), or its NTK-scaled form.

    Args:
      params: input_weights [N, d], biases [N], output_weights [N].
      inputs: X: [B, d].
      parameterization: "standard" or "ntk".
      activation: σ, elementwise (a non-polynomial one for eq. 9.2 to hold).

    Returns:
      [B] the network's outputs.
    """
    _check_parameterization(parameterization)
    check_shapes(
        input_weights=(params.input_weights, ("N", "d")),
        biases=(params.biases, ("N",)),
        output_weights=(params.output_weights, ("N",)),
        inputs=(inputs, (None, "d")),
    )
    width, input_dim = params.input_weights.shape
    input_scale, output_scale = 1.0, 1.0
    if parameterization == "ntk":
        input_scale, output_scale = 1.0 / math.sqrt(input_dim), 1.0 / math.sqrt(width)
    hidden = activation(input_scale * inputs @ params.input_weights.T + params.biases)  # [B, N]
    return output_scale * hidden @ params.output_weights  # book eq. 9.1


def regression_loss(
    model: Callable[[Any, jax.Array], jax.Array], params: Any, inputs: jax.Array, targets: jax.Array
) -> jax.Array:
    """(1/B) Σ_i (f(x_i) − y_i)² (book eq. 4.3 with one output).

    Args:
      model: (params, X [B, d]) -> [B].
      params: the model's parameters (any pytree).
      inputs: X: [B, d].
      targets: y: [B].
    """
    predictions = model(params, inputs)
    check_shapes(predictions=(predictions, ("B",)), targets=(targets, ("B",)))
    return losses.mean_squared_error(predictions[:, None], targets[:, None])


def train_regression(
    model: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    inputs: jax.Array,
    targets: jax.Array,
    optimizer: optax.GradientTransformation,
    num_steps: int,
) -> tuple[Any, jax.Array]:
    """Full-batch training on the mean squared error, the steps in a `lax.scan` (book 8.1).

    Args:
      model: (params, X [B, d]) -> [B], e.g. `functools.partial(apply, parameterization="ntk")`
        or a `core.linearization.taylor_model`.
      params: the initial parameters (any pytree).
      inputs: X: [B, d].
      targets: y: [B].
      optimizer: e.g. `core.optim.sgd(η)` (gradient descent) or `core.optim.adam(η)`.
      num_steps: T >= 1.

    Returns:
      (the parameters after T steps, [T + 1] losses at steps 0..T).
    """
    check_shapes(inputs=(inputs, ("B", None)), targets=(targets, ("B",)))
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    loss_and_gradient = jax.value_and_grad(regression_loss, argnums=1)

    def step(carry, _):
        params, optimizer_state = carry
        loss, gradients = loss_and_gradient(model, params, inputs, targets)
        updates, optimizer_state = optimizer.update(gradients, optimizer_state, params)
        return (optax.apply_updates(params, updates), optimizer_state), loss

    (params, _), losses_before_steps = jax.lax.scan(
        step, (params, optimizer.init(params)), length=num_steps
    )
    final_loss = regression_loss(model, params, inputs, targets)
    return params, jnp.append(losses_before_steps, final_loss)


def sup_norm_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """max_i |f_N(x_i) − f(x_i)|: eq. 9.2's sup-norm over a grid (a lower bound on the sup over
    K, tight as the grid refines).

    Args:
      predictions, targets: [P] values on the same grid.
    """
    check_shapes(predictions=(predictions, ("P",)), targets=(targets, ("P",)))
    return jnp.max(jnp.abs(predictions - targets))

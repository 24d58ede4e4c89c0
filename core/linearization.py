"""The first-order Taylor model of a network around its initialization, and distances to it.

Book 9.3.3 (eq. 9.8). For a model f(θ, x) and initial parameters θ_0,

  f_lin(θ, x) = f(θ_0, x) + ∇_θ f(θ_0, x)ᵀ (θ − θ_0),

affine in θ (a kernel model with the tangent kernel ∇f(θ_0, x)ᵀ∇f(θ_0, x') at θ_0). The
product ∇_θ f(θ_0, x)ᵀ (θ − θ_0) is one forward-mode pass, `jax.jvp`, without forming the
gradient. The book's argument needs this model to stay accurate during training; how accurate it
stays is measured relative to how far training moved the function, ‖f(θ_T) − f_lin(θ_T)‖ /
‖f(θ_T) − f(θ_0)‖: the share of the learned change that the Taylor model misses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from core.checks import check_same_shape

Model = Callable[[Any, jax.Array], jax.Array]


def taylor_model(model: Model, initial_params: Any) -> Model:
    """f_lin(θ, x) = f(θ_0, x) + ∇_θ f(θ_0, x)ᵀ (θ − θ_0) (book eq. 9.8), via `jax.jvp`.

    Args:
      model: f: (params, X [B, d]) -> [B, ...].
      initial_params: θ_0, the expansion point (any pytree).

    Returns:
      f_lin with the same signature as `model`; it can be trained like it (its parameters are
      θ, of the same structure as θ_0).
    """

    def linearized(params: Any, inputs: jax.Array) -> jax.Array:
        displacement = optax.tree.sub(params, initial_params)
        outputs, change = jax.jvp(
            lambda p: model(p, inputs), (initial_params,), (displacement,)
        )  # book eq. 9.8
        return outputs + change

    return linearized


def relative_distance(
    outputs: jax.Array, other_outputs: jax.Array, initial_outputs: jax.Array
) -> jax.Array:
    """‖f − g‖ / ‖f − f_0‖: the distance between two models' outputs, relative to how far the
    first moved from its initialization.

    Args:
      outputs: f on held-out inputs, any shape.
      other_outputs: g on the same inputs, same shape (e.g. the Taylor model's).
      initial_outputs: f_0, the first model at initialization, same shape.
    """
    check_same_shape(outputs=outputs, other_outputs=other_outputs, initial_outputs=initial_outputs)
    return jnp.linalg.norm(outputs - other_outputs) / jnp.linalg.norm(outputs - initial_outputs)


def relative_parameter_change(params: Any, initial_params: Any) -> jax.Array:
    """‖θ − θ_0‖ / ‖θ_0‖ over all leaves: how far training moved the parameters.

    Args:
      params, initial_params: pytrees of the same structure.
    """
    jax.tree.map(lambda a, b: check_same_shape(params=a, initial_params=b), params, initial_params)
    return optax.tree.norm(optax.tree.sub(params, initial_params)) / optax.tree.norm(initial_params)

"""The train state: everything a training step reads and writes, as one pytree.

Book 8.2 (an iterate θ_t and the optimizer's state), 11.3.1 (the dynamic loss scale of mixed
precision) and the EMA weights of `core.training.optimizer`. Being a single pytree, the state
is donated into the jitted step, sharded as a whole and checkpointed as a whole; a run's
randomness is not in it: step t draws from fold_in(rng, t), so a resumed run needs only t.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from core.policy import Batch, Policy, Variables
from core.precision import DynamicLossScale, init_dynamic_loss_scale


@flax.struct.dataclass
class TrainState:
    """step: [] int32, updates made so far (t); params: the trained collection
    variables["params"]; constants: the policy's other collections (e.g. frozen batch
    statistics), never updated; opt_state: the optimizer's state; ema_params: the EMA of params,
    or None when off; loss_scale: the dynamic loss scale, or None when off."""

    step: jax.Array
    params: Any
    constants: dict[str, Any]
    opt_state: optax.OptState
    ema_params: Any = None
    loss_scale: DynamicLossScale | None = None

    def variables(self, *, use_ema: bool = True) -> Variables:
        """The policy's variables: {"params": EMA params (if kept and use_ema) or params,
        plus the constant collections}."""
        params = self.params if self.ema_params is None or not use_ema else self.ema_params
        return {"params": params, **self.constants}


def create_train_state(
    policy: Policy,
    optimizer: optax.GradientTransformation,
    rng: jax.Array,
    example_batch: Batch,
    *,
    ema: bool,
    dynamic_loss_scale: bool,
) -> TrainState:
    """The state at step 0: the policy's initial variables and a fresh optimizer state.

    Args:
      policy: the method (core.policy.Policy).
      optimizer: from `core.training.optimizer.make_optimizer`.
      rng: the initialization key.
      example_batch: a prepared batch (core.data.stats.prepare_batch) giving the shapes.
      ema: keep an EMA of the parameters (it starts equal to them).
      dynamic_loss_scale: keep a dynamic loss scale (core.precision, book 11.3.1).
    """
    variables = dict(policy.init(rng, example_batch))
    if "params" not in variables:
        raise ValueError(
            f"policy.init must return a 'params' collection, got collections {sorted(variables)}"
        )
    params = variables.pop("params")
    return TrainState(
        step=jnp.zeros([], jnp.int32),
        params=params,
        constants=variables,
        opt_state=optimizer.init(params),
        ema_params=jax.tree.map(jnp.copy, params) if ema else None,
        loss_scale=init_dynamic_loss_scale() if dynamic_loss_scale else None,
    )

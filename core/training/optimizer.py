"""The optimizer of a training run, built from `config.optim`: clipping, AdamW, schedule,
parameter groups, and an exponential moving average of the weights.

Book 8.21 (AdamW), 8.34 (clipping by global norm), 13.4 and 13.6 (cosine decay, linear
warmup), 17.6.3 and 17.9.4 (parameter groups with their own learning rates, eqs. 17.58-17.59;
a fine-tuned backbone at 0.1x the decoder's rate, eq. 17.70; a frozen backbone).

The update, in order: g ← clip(g, τ) over all parameters jointly (8.34), then for each
parameter group with factor m: AdamW with learning rate m·η_t (8.21); m = 0 freezes the group.

Conventions, and why:
- ε outside the square root, m̂ / (sqrt(v̂) + ε) (eq. 17.58; optax's `eps`, PyTorch's AdamW).
  The book's chapter 8 puts it inside (8.20); the reference ACT and Diffusion Policy
  hyper-parameters (ε = 1e-8) were tuned with PyTorch's placement, and the two differ where
  v̂ is small (at v̂ = 1e-12: 1e-6 + 1e-8 vs sqrt(1e-12 + 1e-8) = 1e-4).
- Weight decay on every parameter by default ("all"), as PyTorch's AdamW applies it in ACT,
  LeRobot and Diffusion Policy; "matrices" restricts it to weight matrices and kernels, the
  book's penalty over W^(ℓ) (8.22).
- The learning rate η_t is a function of the TRAIN STEP t, set into the optimizer state before
  each update (`set_learning_rate`, optax's inject_hyperparams): a step skipped by dynamic loss
  scaling still advances the schedule, as PyTorch's `scheduler.step()` does under GradScaler,
  and the logged rate is exactly the applied one.
- EMA of the weights (Polyak averaging, used by Diffusion Policy) with bias correction, as for
  Adam's moments (8.18): after n updates it is the weighted average
  Σ_i (1 − β) β^(n−i) θ_i / (1 − β^n) of the iterates θ_1..θ_n, so early EMA weights are not
  dominated by the random initialization. (Diffusion Policy instead ramps the decay up,
  β_n = 1 − (1 + n)^(−3/4), capped.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from core import optim, schedules
from core.training.config import SCHEDULES, WEIGHT_DECAY_MASKS

DEFAULT_GROUP = "default"
"""The label of parameters that match no prefix of `param_group_lr` (factor 1)."""


def learning_rate_schedule(
    optim_config: ml_collections.ConfigDict, num_steps: int
) -> optax.Schedule:
    """η_t of the train step t from `optim.learning_rate` and `optim.schedule`.

    constant: η_t = η (after warmup).
    cosine: η_t decays from η to `min_learning_rate` over the steps after warmup (eq. 13.4).
    warmup_steps > 0 prepends a linear ramp from 0 to η (eq. 13.6).
    """
    schedule_config = optim_config.schedule
    peak = float(optim_config.learning_rate)
    warmup_steps = int(schedule_config.warmup_steps)
    if schedule_config.name == "constant":
        schedule = schedules.constant(peak)
    elif schedule_config.name == "cosine":
        schedule = schedules.cosine_decay(
            peak, num_steps - warmup_steps, float(schedule_config.min_learning_rate)
        )
    else:
        raise ValueError(
            f"optim.schedule.name must be one of {SCHEDULES}, got {schedule_config.name!r}"
        )
    if warmup_steps == 0:
        return schedule
    return schedules.with_linear_warmup(schedule, warmup_steps)


def parameter_path(path: tuple) -> str:
    """A parameter's key path joined by "/", e.g. "encoder/layers_0/kernel"."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def parameter_group_labels(params: Any, param_group_lr: Mapping[str, float]) -> Any:
    """Each leaf's group: the longest prefix of `param_group_lr` matching its path, else
    "default". A prefix matches a path equal to it or continuing with "/".

    Raises:
      ValueError naming any prefix that matches no parameter (a typo would otherwise leave
      its group silently at the base learning rate).
    """
    paths = [parameter_path(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]

    def group(path: str) -> str:
        matches = [p for p in param_group_lr if path == p or path.startswith(f"{p}/")]
        return max(matches, key=len) if matches else DEFAULT_GROUP

    unused = sorted(p for p in param_group_lr if not any(group(path) == p for path in paths))
    if unused:
        top_level = sorted({path.split("/")[0] for path in paths})
        raise ValueError(
            f"optim.param_group_lr: prefixes {unused} match no parameter (or only parameters "
            f"a longer prefix claims); top-level parameter names: {top_level}"
        )
    return jax.tree_util.tree_map_with_path(lambda path, _: group(parameter_path(path)), params)


def _weight_decay_mask(name: str):
    if name == "all":
        return lambda params: jax.tree.map(lambda _: True, params)
    if name == "matrices":
        return optim.weight_matrix_mask
    raise ValueError(f"optim.weight_decay_mask must be one of {WEIGHT_DECAY_MASKS}, got {name!r}")


def make_optimizer(optim_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """clip (8.34) then AdamW per parameter group (8.21, 17.58-17.59, 17.70).

    The learning rate is a hyper-parameter of the returned transformation's state: set it for
    each step with `set_learning_rate(opt_state, schedule(step))` before `update`.
    """
    group_factors = {DEFAULT_GROUP: 1.0, **dict(optim_config.param_group_lr)}
    decay_mask = _weight_decay_mask(optim_config.weight_decay_mask)

    def group_update(learning_rate: jax.Array, factor: float) -> optax.GradientTransformation:
        if factor == 0:
            return optax.set_to_zero()  # a frozen group (17.9.4): no update, no moments
        return optim.adamw(
            learning_rate * factor,
            b1=optim_config.b1,
            b2=optim_config.b2,
            eps=optim_config.eps,
            weight_decay=optim_config.weight_decay,
            mask=decay_mask,
            eps_in_sqrt=False,
        )

    def at_learning_rate(learning_rate: jax.Array) -> optax.GradientTransformation:
        groups = optax.multi_transform(
            {label: group_update(learning_rate, f) for label, f in group_factors.items()},
            lambda params: parameter_group_labels(params, optim_config.param_group_lr),
        )
        if optim_config.grad_clip_norm == 0:
            return groups
        return optax.chain(optim.clip_by_global_norm(optim_config.grad_clip_norm), groups)

    return optax.inject_hyperparams(at_learning_rate)(learning_rate=optim_config.learning_rate)


def set_learning_rate(opt_state: optax.InjectHyperparamsState, learning_rate) -> Any:
    """The optimizer state of `make_optimizer` with its learning rate set to `learning_rate`."""
    current = opt_state.hyperparams["learning_rate"]
    learning_rate = jnp.asarray(learning_rate, current.dtype)
    return opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": learning_rate})


def update_ema(ema_params: Any, params: Any, decay: float, count: jax.Array) -> Any:
    """The bias-corrected EMA after its `count`-th update (count >= 1).

    ema_n = r_n ema_{n−1} + w_n θ_n with w_n = (1 − β) / (1 − β^n), r_n = (β − β^n) / (1 − β^n)
    = 1 − w_n, which keeps ema_n = Σ_{i≤n} (1 − β) β^(n−i) θ_i / (1 − β^n) (cf. Adam's bias
    correction, eq. 8.18). Written so that r_1 = 0 and w_1 = 1 exactly: the first update
    replaces whatever ema_0 was.

    Args:
      ema_params, params: pytrees of the same structure.
      decay: β in [0, 1).
      count: [] int, n.
    """
    decay = jnp.float32(decay)
    decay_power = decay ** jnp.asarray(count)  # β^n, exact at n = 1 (an integer power)
    retained = (decay - decay_power) / (1.0 - decay_power)
    weight = (1.0 - decay) / (1.0 - decay_power)
    return jax.tree.map(
        lambda average, value: (retained * average + weight * value).astype(average.dtype),
        ema_params,
        params,
    )

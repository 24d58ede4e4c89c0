"""The training step and the validation step: pure functions of (state, batch, rng), jitted
over a data-parallel mesh with the state donated.

Book 7.2 and 8.2 (one mini-batch update θ_{t+1} = θ_t − η_t · direction), 8.34 (clipping),
11.3.1 (dynamic loss scaling: skip the update and halve the scale when gradients overflow),
11.4 (a NaN or inf, once in the weights, spreads: stop at the step that produced it).

Randomness: step t uses fold_in(rng, t) of the run's key, so the key sequence needs no state
and a resumed run draws the same keys. Batches arrive raw (uint8 images, unnormalized states
and actions) and are prepared inside the step (`core.data.stats.prepare_batch`).

Metrics of a train step, each a float32 scalar: "loss", the policy's own metrics, "grad_norm"
(‖g‖₂ of the unclipped gradient), "learning_rate" (η_t applied), and with dynamic loss
scaling "loss_scale" (the scale used) and "skipped" (1 if the update was skipped).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from core import optim
from core.checks import check_rank
from core.data.stats import prepare_batch
from core.normalizers import AffineNormalizer
from core.policy import Batch, Metrics, Policy
from core.precision import (
    DynamicScaleConfig,
    apply_updates_if_finite,
    scaled_value_and_grad,
    update_dynamic_loss_scale,
)
from core.training import sharding
from core.training.optimizer import set_learning_rate, update_ema
from core.training.state import TrainState

STEP_METRICS = ("loss", "grad_norm", "learning_rate", "loss_scale", "skipped")
"""Metric names the step itself reports; a policy's metrics must use other names."""

Normalizers = Mapping[str, AffineNormalizer]
TrainStep = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]
EvalStep = Callable[[TrainState, Batch, jax.Array], Metrics]


class NonFiniteError(FloatingPointError):
    """A NaN or inf in the loss or the gradients stopped the run."""


def _policy_loss(
    policy: Policy, params, constants, batch: Batch, rng: jax.Array, step: jax.Array
) -> tuple[jax.Array, Metrics]:
    """policy.loss with its outputs checked: a scalar loss and scalar metrics with free names."""
    loss, metrics = policy.loss({"params": params, **constants}, batch, rng, step)
    check_rank("loss", loss, 0)
    for name, value in metrics.items():
        check_rank(f"metrics[{name!r}]", value, 0)
    clashes = sorted(set(metrics) & set(STEP_METRICS))
    if clashes:
        raise ValueError(f"policy metrics {clashes} clash with the step's own {STEP_METRICS}")
    return loss, metrics


def train_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    *,
    policy: Policy,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    normalizers: Normalizers,
    ema_decay: float,
    loss_scale_config: DynamicScaleConfig,
) -> tuple[TrainState, Metrics]:
    """One update on a global batch.

    Args:
      state: the train state at step t.
      batch: the sampler's raw batch (core.policy's convention, batch-first, [B, ...]).
      rng: the run's key; this step uses fold_in(rng, t).
      policy: the method.
      optimizer: from `core.training.optimizer.make_optimizer`.
      schedule: η_t as a function of t.
      normalizers: feature -> normalizer, applied by `prepare_batch`.
      ema_decay: β of the weight EMA (used when the state keeps one).
      loss_scale_config: growth/backoff of the dynamic loss scale (used when the state has one).

    Returns:
      (the state at step t + 1, metrics of this step).
    """
    step_rng = jax.random.fold_in(rng, state.step)
    prepared = prepare_batch(batch, normalizers)
    learning_rate = schedule(state.step)
    opt_state = set_learning_rate(state.opt_state, learning_rate)
    loss_fn = functools.partial(
        _policy_loss,
        policy,
        constants=state.constants,
        batch=prepared,
        rng=step_rng,
        step=state.step,
    )
    extra_metrics = {}
    if state.loss_scale is None:
        (loss, policy_metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        loss_scale = None
    else:
        (loss, policy_metrics), grads, grads_finite = scaled_value_and_grad(loss_fn, has_aux=True)(
            state.loss_scale.scale, state.params
        )
        finite = grads_finite & jnp.isfinite(loss)
        params, opt_state = apply_updates_if_finite(
            optimizer, grads, finite, state.params, opt_state
        )
        loss_scale = update_dynamic_loss_scale(state.loss_scale, finite, loss_scale_config)
        extra_metrics = {"loss_scale": state.loss_scale.scale, "skipped": ~finite}
    ema_params = state.ema_params
    if ema_params is not None:
        ema_params = update_ema(ema_params, params, ema_decay, state.step + 1)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        ema_params=ema_params,
        loss_scale=loss_scale,
    )
    metrics = {
        "loss": loss,
        **policy_metrics,
        "grad_norm": optim.global_norm(grads),
        "learning_rate": learning_rate,
        **extra_metrics,
    }
    return new_state, {name: jnp.asarray(value, jnp.float32) for name, value in metrics.items()}


def eval_step(
    state: TrainState, batch: Batch, rng: jax.Array, *, policy: Policy, normalizers: Normalizers
) -> Metrics:
    """The loss and the policy's metrics on a (validation) batch, with the weights that will be
    evaluated (the EMA when kept); `rng` is used as given, so a fixed key makes it repeatable."""
    variables = state.variables()
    params = variables.pop("params")
    loss, metrics = _policy_loss(
        policy, params, variables, prepare_batch(batch, normalizers), rng, state.step
    )
    return {"loss": loss, **metrics}


def _host_constants(normalizers: Normalizers) -> Normalizers:
    """Normalizer statistics as numpy arrays: constants of the jitted step on any device set."""
    return {key: jax.tree.map(np.asarray, normalizer) for key, normalizer in normalizers.items()}


def jit_train_step(
    policy: Policy,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    normalizers: Normalizers,
    mesh: Mesh,
    *,
    ema_decay: float = 0.0,
    loss_scale_config: DynamicScaleConfig | None = None,
) -> TrainStep:
    """`train_step` jitted over `mesh`: state replicated and donated, batch split on "data".

    ema_decay and loss_scale_config (default `DynamicScaleConfig()`) act only when the state
    keeps an EMA or a loss scale.
    """
    step = functools.partial(
        train_step,
        policy=policy,
        optimizer=optimizer,
        schedule=schedule,
        normalizers=_host_constants(normalizers),
        ema_decay=ema_decay,
        loss_scale_config=loss_scale_config or DynamicScaleConfig(),
    )
    replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    return jax.jit(
        step,
        in_shardings=(replicated, split, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def jit_eval_step(policy: Policy, normalizers: Normalizers, mesh: Mesh) -> EvalStep:
    """`eval_step` jitted over `mesh` (the state is read, not donated)."""
    step = functools.partial(eval_step, policy=policy, normalizers=_host_constants(normalizers))
    replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
    return jax.jit(step, in_shardings=(replicated, split, replicated), out_shardings=replicated)


def non_finite_problem(
    step: int, metrics: Mapping[str, float], min_loss_scale: float = DynamicScaleConfig.min_scale
) -> str | None:
    """Why training must stop after `step` (1-based count of updates), or None.

    Without loss scaling any non-finite metric stops the run. With dynamic loss scaling a
    non-finite step was skipped and the scale lowered, which is the mechanism working; only a
    skip at the minimum scale stops it (the overflow is not a matter of scale).

    Args:
      metrics: the host values of one train step's metrics.
    """
    order = dict.fromkeys(["loss", *sorted(set(metrics) - set(STEP_METRICS)), *STEP_METRICS])
    non_finite = [n for n in order if n in metrics and not math.isfinite(metrics[n])]
    if not non_finite:
        return None
    details = ", ".join(f"{name} = {metrics[name]}" for name in non_finite)
    if "skipped" not in metrics:
        return (
            f"non-finite {non_finite[0]} at step {step} ({details}). Lower the learning rate, "
            "check the data's normalization, or enable optim.loss_scaling='dynamic' for 16-bit "
            "compute."
        )
    if metrics["skipped"] and metrics["loss_scale"] <= min_loss_scale:
        return (
            f"non-finite {non_finite[0]} at step {step} ({details}) even at the minimum loss "
            f"scale {min_loss_scale}: not an fp16 overflow."
        )
    return None

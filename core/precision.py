"""Mixed precision: dtype policies, floating-point formats, static and dynamic loss scaling.

Book 11.3 (eq. 11.8): run the forward pass and loss in a 16-bit format, multiply the loss by
L_scale before backpropagation so that small gradients stay representable, then divide the
gradients by L_scale and update float32 weights.

What fp16 actually loses (book 11.3.2 says "range roughly [6e-5, 6e4]" and that gradients of
~1e-5 underflow to zero). 6.1e-5 = 2^-14 is the smallest NORMAL fp16 number; below it come
subnormals down to 2^-24 ≈ 5.96e-8 with fewer significant bits (fp16(1e-5) = 1.0014e-5). A
value rounds to 0 only at or below 2^-25 ≈ 2.98e-8. On this CPU, XLA computes fp16 operations
in float32 and rounds the result to fp16, so subnormal fp16 results are kept (float32
subnormals, by contrast, are flushed to zero). A gradient is therefore lost when a backward
product falls to ~3e-8 or below, e.g. 1e-4 · 1e-4. bf16 has float32's exponent range (no
underflow at 1e-8) but 8 significant bits instead of fp16's 11, so it needs no loss scaling but
rounds more coarsely.

A jitted train step with dynamic loss scaling (skip the step on overflow instead of stopping):

    loss, grads, grads_finite = scaled_value_and_grad(loss_fn)(scale_state.scale, params, batch)
    params, opt_state = apply_updates_if_finite(optimizer, grads, grads_finite, params, opt_state)
    scale_state = update_dynamic_loss_scale(scale_state, grads_finite, scale_config)

A static loss scale is the same with a constant `scale` and no update.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def _check_floating(name: str, dtype) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating dtype, got {dtype}")
    return dtype


class FloatFormat(NamedTuple):
    """Limits of a floating-point format (IEEE-style, with subnormals).

    bits: total width. significand_bits: precision including the implicit leading bit.
    smallest_subnormal: least positive value. smallest_normal: least positive value with full
    precision. largest: greatest finite value. epsilon: spacing of the numbers just above 1.
    zero_rounding_bound: magnitudes at or below it round to 0, half the smallest subnormal (the
    tie rounds to the even neighbour, 0).
    """

    bits: int
    significand_bits: int
    smallest_subnormal: float
    smallest_normal: float
    largest: float
    epsilon: float
    zero_rounding_bound: float


def float_format(dtype) -> FloatFormat:
    """The limits of `dtype` (e.g. jnp.float16, jnp.bfloat16, jnp.float32)."""
    info = jnp.finfo(_check_floating("dtype", dtype))
    return FloatFormat(
        bits=info.bits,
        significand_bits=info.nmant + 1,
        smallest_subnormal=float(info.smallest_subnormal),
        smallest_normal=float(info.smallest_normal),
        largest=float(info.max),
        epsilon=float(info.eps),
        zero_rounding_bound=float(info.smallest_subnormal) / 2,
    )


def round_to(value: float, dtype) -> float:
    """The value `dtype` stores for `value` (round to nearest even), as a Python float."""
    return float(jnp.asarray(value, _check_floating("dtype", dtype)))


def is_subnormal(value: float, dtype) -> bool:
    """Whether `value` is stored in `dtype` as a nonzero subnormal (reduced precision)."""
    stored = abs(round_to(value, dtype))
    return 0.0 < stored < float_format(dtype).smallest_normal


def cast_floating(tree: PyTree, dtype) -> PyTree:
    """Casts every floating-point leaf of `tree` to `dtype`; integer and bool leaves are kept."""
    dtype = _check_floating("dtype", dtype)

    def cast(leaf):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            return jnp.asarray(leaf).astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


@dataclasses.dataclass(frozen=True)
class Policy:
    """Which dtype parameters are stored in, computation runs in, and outputs are returned in.

    Mixed precision (book 11.3.1) keeps float32 parameters (the update is in float32), computes
    in fp16 or bf16, and returns float32 outputs (loss, logits) for the loss and metrics.
    """

    param_dtype: Any = jnp.float32
    compute_dtype: Any = jnp.float32
    output_dtype: Any = jnp.float32

    def __post_init__(self):
        for field in dataclasses.fields(self):
            object.__setattr__(
                self, field.name, _check_floating(field.name, getattr(self, field.name))
            )

    def cast_to_param(self, tree: PyTree) -> PyTree:
        return cast_floating(tree, self.param_dtype)

    def cast_to_compute(self, tree: PyTree) -> PyTree:
        return cast_floating(tree, self.compute_dtype)

    def cast_to_output(self, tree: PyTree) -> PyTree:
        return cast_floating(tree, self.output_dtype)


def mixed_precision_policy(compute_dtype) -> Policy:
    """float32 parameters and outputs, `compute_dtype` (fp16 or bf16) computation."""
    return Policy(jnp.float32, compute_dtype, jnp.float32)


def all_finite(tree: PyTree) -> jax.Array:
    """Scalar bool: no leaf of `tree` contains an inf or a NaN."""
    finite = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return functools.reduce(jnp.logical_and, finite, jnp.asarray(True))


def _check_scale(loss_scale) -> None:
    if jnp.ndim(loss_scale) != 0:
        raise ValueError(f"loss_scale must be a scalar, got shape {list(jnp.shape(loss_scale))}")


def scale_loss(loss: jax.Array, loss_scale: jax.Array) -> jax.Array:
    """L̂ = L_scale · L, book eq. 11.8, in float32 (at least) whatever the loss dtype."""
    _check_scale(loss_scale)
    return loss * jnp.asarray(loss_scale, jnp.promote_types(jnp.result_type(loss), jnp.float32))


def unscale_grads(grads: PyTree, loss_scale: jax.Array) -> PyTree:
    """Gradients of L̂ divided by L_scale (book 11.3.1 step 5), in float32 (at least).

    Dividing in float32 keeps the true small gradients that fp16 could not hold.
    """
    _check_scale(loss_scale)

    def unscale(grad):
        grad = grad.astype(jnp.promote_types(grad.dtype, jnp.float32))
        return grad / jnp.asarray(loss_scale, grad.dtype)

    return jax.tree.map(unscale, grads)


def scaled_value_and_grad(
    loss_fn: Callable[..., Any], *, has_aux: bool = False
) -> Callable[..., tuple[Any, PyTree, jax.Array]]:
    """Like jax.value_and_grad (w.r.t. the first argument), through a scaled loss.

    Returns a function `(loss_scale, params, *args) -> (value, grads, grads_finite)`:
    backpropagates L_scale · loss_fn(params, *args) (eq. 11.8), returns the unscaled value (or
    (value, aux) with has_aux), the unscaled float32 gradients, and whether they are all
    finite. A loss scale too large for the compute dtype makes grads_finite False: skip the
    update and lower the scale (`apply_updates_if_finite`, `update_dynamic_loss_scale`).
    """

    def scaled(params, loss_scale, *args):
        output = loss_fn(params, *args)
        loss = output[0] if has_aux else output
        return scale_loss(loss, loss_scale), output

    def value_and_grad(loss_scale, params, *args):
        grad_fn = jax.grad(scaled, has_aux=True)
        scaled_grads, output = grad_fn(params, loss_scale, *args)
        grads = unscale_grads(scaled_grads, loss_scale)
        return output, grads, all_finite(grads)

    return value_and_grad


def select_if_finite(grads_finite: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    """`new` where the gradients were finite, else `old` (the skipped step), leaf by leaf."""
    return jax.tree.map(lambda n, o: jnp.where(grads_finite, n, o), new, old)


def apply_updates_if_finite(
    optimizer: optax.GradientTransformation,
    grads: PyTree,
    grads_finite: jax.Array,
    params: PyTree,
    opt_state: PyTree,
) -> tuple[PyTree, PyTree]:
    """One optimizer step, skipped (params and optimizer state unchanged) on inf/NaN gradients.

    Same effect as `optax.apply_if_finite(optimizer, max_consecutive_errors=∞)`, but decided by
    the caller's `grads_finite` (from `scaled_value_and_grad`) and with the optimizer state left
    as is, so it can be stacked with any optax optimizer in a jitted train step.
    """
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    return select_if_finite(grads_finite, (new_params, new_opt_state), (params, opt_state))


class DynamicLossScale(NamedTuple):
    """State of dynamic loss scaling: scale: [] float32 L_scale; good_steps: [] int32 number of
    consecutive finite steps since the last change of scale."""

    scale: jax.Array
    good_steps: jax.Array


@dataclasses.dataclass(frozen=True)
class DynamicScaleConfig:
    """On overflow, scale *= backoff_factor; after growth_interval finite steps in a row,
    scale *= growth_factor; the scale is kept within [min_scale, max_scale]."""

    growth_interval: int = 2000
    growth_factor: float = 2.0
    backoff_factor: float = 0.5
    min_scale: float = 1.0
    max_scale: float = 2.0**24

    def __post_init__(self):
        if self.growth_interval < 1:
            raise ValueError(f"growth_interval must be >= 1, got {self.growth_interval}")
        if self.growth_factor <= 1.0:
            raise ValueError(f"growth_factor must be > 1, got {self.growth_factor}")
        if not 0.0 < self.backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must be in (0, 1), got {self.backoff_factor}")
        if not 0.0 < self.min_scale <= self.max_scale:
            raise ValueError(
                f"need 0 < min_scale <= max_scale, got {self.min_scale} and {self.max_scale}"
            )


def init_dynamic_loss_scale(initial_scale: float = 2.0**15) -> DynamicLossScale:
    """Starting state; the default 2^15 is the book's example (11.3.1) and the largest power of
    two that fp16 can hold (2^16 > 65504 overflows)."""
    if initial_scale <= 0:
        raise ValueError(f"initial_scale must be positive, got {initial_scale}")
    return DynamicLossScale(jnp.asarray(initial_scale, jnp.float32), jnp.zeros((), jnp.int32))


def update_dynamic_loss_scale(
    state: DynamicLossScale, grads_finite: jax.Array, config: DynamicScaleConfig
) -> DynamicLossScale:
    """Shrinks the scale after an overflow, grows it after `growth_interval` finite steps."""
    good_steps = jnp.where(grads_finite, state.good_steps + 1, 0)
    grow = good_steps >= config.growth_interval
    factor = jnp.where(
        grads_finite, jnp.where(grow, config.growth_factor, 1.0), config.backoff_factor
    )
    scale = jnp.clip(state.scale * factor, config.min_scale, config.max_scale)
    return DynamicLossScale(scale.astype(state.scale.dtype), jnp.where(grow, 0, good_steps))

"""Optimizers as optax gradient transformations, written from the book's update rules.

Book 7.3, 8.1-8.5.1, 17.6.3: SGD (8.5), heavy-ball momentum (8.9-8.10), Nesterov momentum in
the look-ahead form (8.12-8.13), RMSProp (8.14-8.15), Adam (8.16-8.20), AdamW (8.21), the L2
penalty gradient (8.22-8.24), the L1 subgradient (8.25-8.26) and clipping by global norm (8.34).

Every optimizer is an `optax.GradientTransformation`: `update` returns what `optax.apply_updates`
adds to the parameters, i.e. the step already scaled by the learning rate and negated. A
learning rate is a positive float or an optax schedule (step count -> value) evaluated at the
number of updates made so far, as in optax; arrays work too (`optax.inject_hyperparams`), and
only Python numbers are range-checked. Per-group learning rates (17.58-17.59, 17.70) are
`optax.multi_transform` over these.

Two conventions follow the book where it differs from optax's defaults:
- ε sits inside the square root, g / sqrt(v + ε) (eqs. 8.15, 8.20), as optax's
  `eps_root`; `eps_in_sqrt=False` gives g / (sqrt(v) + ε) as in eq. 17.58 and optax's `eps`.
- Nesterov momentum is the look-ahead form 8.12-8.13; see `nesterov` for how a transformation
  that only sees the gradient at its own parameters realizes it.

Weight decay and the L1 subgradient act on the leaves chosen by a mask: a pytree of Python
bools shaped like the parameters, or a function params -> such a pytree. The default,
`weight_matrix_mask`, selects leaves with ndim >= 2 (weight matrices and kernels) and leaves
biases and normalization scales alone, as the book's penalties sum over W^(ℓ) only (8.22, 8.25).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from core.checks import check_same_shape

LearningRate = float | optax.Schedule
Mask = Any | Callable[[Any], Any]


class StepCountState(NamedTuple):
    """count: number of updates made so far, the step t at which a schedule is evaluated."""

    count: jax.Array


class VelocityState(NamedTuple):
    """velocity: v_t of eqs. 8.9 / 8.12, one array per parameter leaf."""

    velocity: Any


class NesterovState(NamedTuple):
    """count: updates made so far (t); velocity: v_t of eq. 8.12."""

    count: jax.Array
    velocity: Any


class SecondMomentState(NamedTuple):
    """second_moment: v_t of eq. 8.14, the moving average of squared gradients."""

    second_moment: Any


class AdamState(NamedTuple):
    """count: updates made so far (t); first_moment: m_t (8.16); second_moment: v_t (8.17)."""

    count: jax.Array
    first_moment: Any
    second_moment: Any


def _is_python_number(value: Any) -> bool:
    """Hyperparameters given as Python numbers are checked; arrays (e.g. from
    `optax.inject_hyperparams`, possibly traced) are taken as given."""
    return isinstance(value, numbers.Real)


def _check_range(name: str, value: float, low: float, high: float, *, high_open: bool) -> None:
    if not _is_python_number(value):
        return
    upper_ok = value < high if high_open else value <= high
    if not (low <= value and upper_ok):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must be in [{low}, {high}{bracket}, got {value!r}")


def _check_learning_rate(learning_rate: LearningRate) -> None:
    if not _is_python_number(learning_rate):
        return
    if not learning_rate > 0.0:
        raise ValueError(
            f"learning_rate must be a positive float or an optax schedule, got {learning_rate!r}"
        )


def _check_same_leaf_shapes(reference_name: str, reference: Any, updates: Any) -> None:
    """Raises ValueError naming the leaf where `updates` and `reference` shapes differ."""
    jax.tree_util.tree_map_with_path(
        lambda path, ref, upd: check_same_shape(
            **{
                f"{reference_name}{jax.tree_util.keystr(path)}": ref,
                f"updates{jax.tree_util.keystr(path)}": upd,
            }
        ),
        reference,
        updates,
    )


def _require_params(params: Any, transformation: str) -> None:
    if params is None:
        raise ValueError(f"{transformation} needs params: call update(updates, state, params)")


def _moving_average(average: jax.Array, value: jax.Array, decay: float) -> jax.Array:
    """β a + (1 − β) x, the moment updates of eqs. 8.14, 8.16 and 8.17."""
    return decay * average + (1.0 - decay) * value


def _next_velocity(velocity: Any, gradients: Any, beta: float) -> Any:
    """v_{t+1} = β v_t + g_t over a pytree (book eqs. 8.9, 8.12)."""
    return jax.tree.map(lambda v, g: beta * v + g, velocity, gradients)


def _bias_corrected(moment: jax.Array, decay: float, count: jax.Array) -> jax.Array:
    """m / (1 − β^{t+1}) with count = t + 1 (book eqs. 8.18-8.19)."""
    return moment / (1.0 - decay ** count.astype(moment.dtype))


def _rms_scaled(direction: jax.Array, second_moment: jax.Array, eps: float, eps_in_sqrt: bool):
    """direction / sqrt(v + ε) (book eqs. 8.15, 8.20) or direction / (sqrt(v) + ε) (eq. 17.58)."""
    if eps_in_sqrt:
        return direction / jnp.sqrt(second_moment + eps)
    return direction / (jnp.sqrt(second_moment) + eps)


def _resolve_mask(mask: Mask, params: Any) -> Any:
    return mask(params) if callable(mask) else mask


def weight_matrix_mask(params: Any) -> Any:
    """The default decay mask: True for leaves with ndim >= 2 (weights), False for biases."""
    return jax.tree.map(lambda leaf: jnp.ndim(leaf) >= 2, params)


def learning_rate_at(learning_rate: LearningRate, step: jax.Array) -> jax.Array:
    """η_t: the learning rate at step t (book eq. 8.2), for a float or a schedule."""
    if callable(learning_rate):
        return jnp.asarray(learning_rate(step))
    return jnp.asarray(learning_rate)


def scale_by_negative_learning_rate(learning_rate: LearningRate) -> optax.GradientTransformation:
    """Maps a direction d_t to the parameter change −η_t d_t (the last factor of eqs. 8.5-8.21)."""
    _check_learning_rate(learning_rate)

    def init_fn(params):
        del params
        return StepCountState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        step_size = learning_rate_at(learning_rate, state.count)
        updates = jax.tree.map(lambda d: (-step_size * d).astype(d.dtype), updates)
        return updates, StepCountState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(learning_rate: LearningRate) -> optax.GradientTransformation:
    """Plain (mini-batch) SGD: θ_{t+1} = θ_t − η_t g_t (book eq. 8.5).

    Args:
      learning_rate: η_t, a positive float or an optax schedule of the step count.
    """
    return scale_by_negative_learning_rate(learning_rate)


def trace_velocity(beta: float = 0.9) -> optax.GradientTransformation:
    """Heavy-ball velocity v_{t+1} = β v_t + g_t with v_0 = 0 (book eq. 8.9); outputs v_{t+1}.

    Args:
      beta: momentum coefficient β in [0, 1).
    """
    _check_range("beta", beta, 0.0, 1.0, high_open=True)

    def init_fn(params):
        return VelocityState(velocity=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        _check_same_leaf_shapes("velocity", state.velocity, updates)
        velocity = _next_velocity(state.velocity, updates, beta)  # eq. 8.9
        return velocity, VelocityState(velocity=velocity)

    return optax.GradientTransformation(init_fn, update_fn)


def momentum(learning_rate: LearningRate, beta: float = 0.9) -> optax.GradientTransformation:
    """Heavy-ball momentum: v_{t+1} = β v_t + g_t, θ_{t+1} = θ_t − η_t v_{t+1} (eqs. 8.9-8.10).

    Equals `optax.sgd(learning_rate, momentum=beta)`.

    Args:
      learning_rate: η_t, a positive float or an optax schedule of the step count.
      beta: momentum coefficient β in [0, 1); the book's usual value 0.9 is the default.
    """
    return optax.chain(trace_velocity(beta), scale_by_negative_learning_rate(learning_rate))


def nesterov(learning_rate: LearningRate, beta: float = 0.9) -> optax.GradientTransformation:
    """Nesterov momentum in the book's look-ahead form (eqs. 8.12-8.13), by a change of variables.

    The book evaluates the gradient at the look-ahead point θ_t − η_t β v_t:
      v_{t+1} = β v_t + ∇L(θ_t − η_t β v_t),   θ_{t+1} = θ_t − η_t v_{t+1}.
    A gradient transformation only receives the gradient at the parameters it optimizes, so the
    optimized variable here is the look-ahead point φ_t = θ_t − η_t β v_t itself (φ_0 = θ_0, as
    v_0 = 0). The caller passes g_t = ∇L(φ_t), and substituting 8.13 into φ_{t+1} gives
      φ_{t+1} = φ_t − η_t g_t − η_{t+1} β v_{t+1},
    exact for any schedule η_t. For a constant η this is φ_{t+1} = φ_t − η (g_t + β v_{t+1}),
    the form of `optax.sgd(η, momentum=β, nesterov=True)` (and PyTorch's), whose iterates are
    therefore the book's look-ahead points, not its θ_t. Recover θ_t with
    `nesterov_iterate_from_lookahead`.

    Args:
      learning_rate: η_t, a positive float or an optax schedule of the step count.
      beta: momentum coefficient β in [0, 1).
    """
    _check_learning_rate(learning_rate)
    _check_range("beta", beta, 0.0, 1.0, high_open=True)

    def init_fn(params):
        return NesterovState(count=jnp.zeros([], jnp.int32), velocity=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        _check_same_leaf_shapes("velocity", state.velocity, updates)
        step_size = learning_rate_at(learning_rate, state.count)
        next_step_size = learning_rate_at(learning_rate, state.count + 1)
        velocity = _next_velocity(state.velocity, updates, beta)  # eq. 8.12
        lookahead_change = jax.tree.map(
            lambda g, v: (-step_size * g - next_step_size * beta * v).astype(g.dtype),
            updates,
            velocity,
        )
        new_state = NesterovState(count=optax.safe_increment(state.count), velocity=velocity)
        return lookahead_change, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def nesterov_iterate_from_lookahead(
    lookahead_params: Any, state: NesterovState, learning_rate: LearningRate, beta: float = 0.9
) -> Any:
    """The book's iterate θ_t = φ_t + η_t β v_t from the look-ahead point φ_t that `nesterov`
    optimizes (inverse of the change of variables in `nesterov`, eq. 8.12).

    Args:
      lookahead_params: φ_t, the parameters `nesterov` produced.
      state: the `NesterovState` after the same updates (holds t and v_t).
      learning_rate, beta: the values `nesterov` was built with.
    """
    _check_same_leaf_shapes("lookahead_params", lookahead_params, state.velocity)
    step_size = learning_rate_at(learning_rate, state.count)
    return jax.tree.map(lambda p, v: p + step_size * beta * v, lookahead_params, state.velocity)


def scale_by_rms(
    decay: float = 0.9, eps: float = 1e-8, *, eps_in_sqrt: bool = True
) -> optax.GradientTransformation:
    """RMSProp direction g_t / sqrt(v_{t+1} + ε), v_{t+1} = β₂ v_t + (1 − β₂) g_t² (8.14-8.15).

    Args:
      decay: β₂ in [0, 1), the decay of the squared-gradient average.
      eps: ε >= 0, inside the square root as printed (8.15) unless `eps_in_sqrt=False`.
      eps_in_sqrt: False gives g_t / (sqrt(v_{t+1}) + ε) instead.
    """
    _check_range("decay", decay, 0.0, 1.0, high_open=True)
    _check_range("eps", eps, 0.0, float("inf"), high_open=False)

    def init_fn(params):
        return SecondMomentState(second_moment=optax.tree.zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        _check_same_leaf_shapes("second_moment", state.second_moment, updates)
        second_moment = jax.tree.map(
            lambda v, g: _moving_average(v, g * g, decay), state.second_moment, updates
        )  # eq. 8.14
        directions = jax.tree.map(
            lambda g, v: _rms_scaled(g, v, eps, eps_in_sqrt), updates, second_moment
        )  # eq. 8.15
        return directions, SecondMomentState(second_moment=second_moment)

    return optax.GradientTransformation(init_fn, update_fn)


def rmsprop(
    learning_rate: LearningRate, decay: float = 0.9, eps: float = 1e-8, *, eps_in_sqrt: bool = True
) -> optax.GradientTransformation:
    """RMSProp: θ_{t+1} = θ_t − η_t g_t / sqrt(v_{t+1} + ε) (book eqs. 8.14-8.15).

    The book gives no defaults for RMSProp; β₂ = 0.9 and ε = 1e-8 are optax's and PyTorch's.
    Equals `optax.rmsprop(learning_rate, decay, eps)` (whose default also puts ε in the root).
    """
    return optax.chain(
        scale_by_rms(decay, eps, eps_in_sqrt=eps_in_sqrt),
        scale_by_negative_learning_rate(learning_rate),
    )


def scale_by_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, *, eps_in_sqrt: bool = True
) -> optax.GradientTransformation:
    """Adam direction m̂_{t+1} / sqrt(v̂_{t+1} + ε) with bias-corrected moments (eqs. 8.16-8.20).

    Args:
      b1: β₁ in [0, 1), decay of the gradient average m (8.16).
      b2: β₂ in [0, 1), decay of the squared-gradient average v (8.17).
      eps: ε >= 0, inside the square root as printed (8.20) unless `eps_in_sqrt=False`.
      eps_in_sqrt: False gives m̂ / (sqrt(v̂) + ε), the original Adam paper's, eq. 17.58's and
        optax's `eps` placement.
    """
    _check_range("b1", b1, 0.0, 1.0, high_open=True)
    _check_range("b2", b2, 0.0, 1.0, high_open=True)
    _check_range("eps", eps, 0.0, float("inf"), high_open=False)

    def init_fn(params):
        return AdamState(
            count=jnp.zeros([], jnp.int32),
            first_moment=optax.tree.zeros_like(params),
            second_moment=optax.tree.zeros_like(params),
        )

    def update_fn(updates, state, params=None):
        del params
        _check_same_leaf_shapes("first_moment", state.first_moment, updates)
        count = optax.safe_increment(state.count)  # t + 1
        first_moment = jax.tree.map(
            lambda m, g: _moving_average(m, g, b1), state.first_moment, updates
        )  # eq. 8.16
        second_moment = jax.tree.map(
            lambda v, g: _moving_average(v, g * g, b2), state.second_moment, updates
        )  # eq. 8.17
        directions = jax.tree.map(
            lambda m, v: _rms_scaled(
                _bias_corrected(m, b1, count),  # eq. 8.18
                _bias_corrected(v, b2, count),  # eq. 8.19
                eps,
                eps_in_sqrt,
            ),
            first_moment,
            second_moment,
        )  # eq. 8.20
        return directions, AdamState(count, first_moment, second_moment)

    return optax.GradientTransformation(init_fn, update_fn)


def adam(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_in_sqrt: bool = True,
) -> optax.GradientTransformation:
    """Adam: θ_{t+1} = θ_t − η_t m̂_{t+1} / sqrt(v̂_{t+1} + ε) (book eqs. 8.16-8.20).

    Defaults are the book's (β₁ = 0.9, β₂ = 0.999, ε = 1e-8). With ε inside the root this equals
    `optax.adam(learning_rate, b1, b2, eps=0, eps_root=ε)`; `eps_in_sqrt=False` equals
    `optax.adam(learning_rate, b1, b2, eps=ε)`.
    """
    return optax.chain(
        scale_by_adam(b1, b2, eps, eps_in_sqrt=eps_in_sqrt),
        scale_by_negative_learning_rate(learning_rate),
    )


def _add_penalty_gradient(
    penalty_gradient: Callable[[jax.Array], jax.Array], mask: Mask, name: str
) -> optax.GradientTransformation:
    """Adds penalty_gradient(θ) to the updates of the masked leaves (shared by L2 and L1)."""

    def update_fn(updates, state, params=None):
        _require_params(params, name)
        _check_same_leaf_shapes("params", params, updates)
        selected = _resolve_mask(mask, params)
        updates = jax.tree.map(
            lambda u, p, chosen: u + penalty_gradient(p).astype(u.dtype) if chosen else u,
            updates,
            params,
            selected,
        )
        return updates, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def add_weight_decay(
    weight_decay: float, mask: Mask = weight_matrix_mask
) -> optax.GradientTransformation:
    """Adds λθ to the updates of the masked leaves: the gradient of (λ/2)‖W‖_F² (eq. 8.23).

    Where it sits in a chain decides what it is. Before an optimizer it is the coupled L2
    penalty (8.22-8.23); with SGD that is the shrinkage W ← (1 − η_t λ) W − η_t ∇L (8.24), but
    an adaptive method rescales λθ with the gradient. Between an adaptive direction and the
    learning rate it is decoupled weight decay, θ ← (1 − η_t λ) θ − η_t · direction (8.21).

    Args:
      weight_decay: λ >= 0.
      mask: which leaves decay (pytree of bools or params -> pytree); default weights only.
    """
    _check_range("weight_decay", weight_decay, 0.0, float("inf"), high_open=False)
    return _add_penalty_gradient(lambda p: weight_decay * p, mask, "add_weight_decay")


def l1_subgradient(param: jax.Array, subgradient_at_zero: float = 0.0) -> jax.Array:
    """A subgradient of |W_ij| (eq. 8.26): sign(W_ij) where W_ij ≠ 0, s ∈ [-1, 1] where 0.

    Args:
      param: W, any shape.
      subgradient_at_zero: the s chosen at W_ij = 0. The default 0 is the minimal-norm
        subgradient; note `jax.grad(jnp.abs)(0.0)` is 1.
    """
    return jnp.where(param == 0, jnp.asarray(subgradient_at_zero, param.dtype), jnp.sign(param))


def add_l1_subgradient(
    l1_weight: float, mask: Mask = weight_matrix_mask, subgradient_at_zero: float = 0.0
) -> optax.GradientTransformation:
    """Adds λ · ∂|θ| to the updates of the masked leaves, the subgradient of eq. 8.25 (8.26).

    Args:
      l1_weight: λ >= 0.
      mask: which leaves are penalized (pytree of bools or params -> pytree); default weights.
      subgradient_at_zero: s ∈ [-1, 1] used where a parameter is exactly 0.
    """
    _check_range("l1_weight", l1_weight, 0.0, float("inf"), high_open=False)
    _check_range("subgradient_at_zero", subgradient_at_zero, -1.0, 1.0, high_open=False)
    return _add_penalty_gradient(
        lambda p: l1_weight * l1_subgradient(p, subgradient_at_zero), mask, "add_l1_subgradient"
    )


def adamw(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    mask: Mask = weight_matrix_mask,
    *,
    eps_in_sqrt: bool = True,
) -> optax.GradientTransformation:
    """AdamW: θ_{t+1} = (1 − η_t λ) θ_t − η_t m̂_{t+1} / sqrt(v̂_{t+1} + ε) (book eq. 8.21).

    The decay is decoupled: λθ is added after Adam's rescaling, so it is not divided by
    sqrt(v̂ + ε) (unlike `optax.chain(add_weight_decay(λ), adam(η))`, the coupled L2 form).
    Equals `optax.adamw(learning_rate, b1, b2, eps=0, eps_root=eps, weight_decay, mask)`.

    Args:
      weight_decay: λ >= 0 (the book gives no default; 1e-4 is optax's and ACT's).
      mask: which leaves decay (pytree of bools or params -> pytree); default weights only.
    """
    return optax.chain(
        scale_by_adam(b1, b2, eps, eps_in_sqrt=eps_in_sqrt),
        add_weight_decay(weight_decay, mask),
        scale_by_negative_learning_rate(learning_rate),
    )


def global_norm(tree: Any) -> jax.Array:
    """‖g‖₂ over all leaves of a pytree, as if they were one flat vector."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """g ← g · min(1, τ / ‖g‖₂) over all leaves jointly (book eq. 8.34, 11.7).

    Computed as τ / max(‖g‖₂, τ), which is the same factor and stays finite at g = 0.

    Args:
      max_norm: τ > 0.
    """
    if _is_python_number(max_norm) and not max_norm > 0.0:
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")

    def update_fn(updates, state, params=None):
        del params
        factor = max_norm / jnp.maximum(global_norm(updates), max_norm)
        return jax.tree.map(lambda g: (g * factor).astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)

"""Book 15.1-15.4 and 15.6.3: the vanilla recurrent network and backpropagation through time.

The forward pass (eqs. 15.2-15.9) runs as one `lax.scan` over time in the book's column-stacked
convention: the m sequences of a batch are the columns of H^(t) ∈ R^{d_h×m} (eq. 15.1), and a
whole sequence of them is stacked along a leading time axis, inputs [T, d_x, m]. `forward`,
`sequence_loss` and `bptt` are the batch-first ([B, T, D]) entry points; they transpose to the
column layout and back, so both conventions run the same code.

`bptt` is backpropagation through time written by hand (eqs. 15.12-15.22): one reverse scan of
the delta recursion 15.16, then the parameter gradients as sums over time (15.18-15.22). It
equals `jax.grad(sequence_loss)`. With a truncation window τ the sequence is cut into windows of
τ steps (t = 1..τ, τ+1..2τ, ...): the forward state carries across the cuts but the gradient
does not, i.e. the term W_hhᵀ δ_h^(t+1) of eq. 15.16 is dropped wherever t is a multiple of τ.
That is `jax.grad` of the loss with h^(t) wrapped in `stop_gradient` as it enters step t + 1 for
t = τ, 2τ, ... (the usual "detach every τ steps"); weights still get the terms δ_h^(t+1) h^(t)ᵀ.
It equals the sum of full-BPTT gradients of the windows run one after another, each started
from the previous window's last state (`initial_hidden`): streamed that way, only τ states are
in memory at a time, the saving 15.6.3 proposes; `bptt` itself keeps the whole sequence.

Only the hidden states H^(1..T) are stored for the backward pass (book 15.6.3's T·d_h·m
numbers): σ'_h(z) is recomputed from h = σ_h(z), which tanh (1 - h²), ReLU (1 where h > 0) and
the identity allow. The Jacobian products of 15.5 that decide whether gradients vanish or explode
are in `core.rnn_gradient_flow`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from core import activations, initializers, mlp, optim
from core.checks import check_rank, check_shapes

Task = Literal["many_to_many", "many_to_one"]
TASKS: tuple[Task, ...] = ("many_to_many", "many_to_one")


class RNNParams(NamedTuple):
    """The parameters every time step shares (book 15.2.2), in the layout of eqs. 15.2-15.4.

    W_hh: [d_h, d_h] hidden-to-hidden; W_xh: [d_h, d_x] input-to-hidden; b_h: [d_h];
    W_hy: [d_y, d_h] hidden-to-output; b_y: [d_y].
    """

    W_hh: jax.Array
    W_xh: jax.Array
    b_h: jax.Array
    W_hy: jax.Array
    b_y: jax.Array


class RecurrentActivation(NamedTuple):
    """σ_h (eq. 15.3) and its derivative written as a function of the output h = σ_h(z)."""

    function: Callable[[jax.Array], jax.Array]
    derivative_from_output: Callable[[jax.Array], jax.Array]


def _tanh_derivative_from_output(hidden: jax.Array) -> jax.Array:
    """tanh'(z) = 1 - tanh²(z) = 1 - h² (eq. 3.17)."""
    return 1.0 - jnp.square(hidden)


def _identity(z: jax.Array) -> jax.Array:
    return z


TANH = RecurrentActivation(activations.tanh, _tanh_derivative_from_output)
# h = ReLU(z) > 0 exactly where z > 0, so ReLU'(h) = ReLU'(z) (with the book's ReLU'(0) = 0).
RELU = RecurrentActivation(activations.relu, activations.relu_derivative)
LINEAR = RecurrentActivation(_identity, jnp.ones_like)


class Cache(NamedTuple):
    """What the forward pass stores for BPTT, column-stacked.

    initial_hidden: [d_h, m] H^(0) (zero unless given, book 15.1.2).
    hidden: [T, d_h, m], hidden[t - 1] = H^(t) (eq. 15.7).
    """

    initial_hidden: jax.Array
    hidden: jax.Array


class BPTTResult(NamedTuple):
    """loss: [] L; gradients: ∂L/∂θ; hidden_deltas: δ_h^(t) = ∂L/∂z_h^(t) (eq. 15.16) as
    [T, d_h, m] (columns) or [B, T, d_h] (batch-first)."""

    loss: jax.Array
    gradients: RNNParams
    hidden_deltas: jax.Array


def _check_params(params: RNNParams) -> dict[str, int]:
    return check_shapes(
        W_hh=(params.W_hh, ("d_h", "d_h")),
        W_xh=(params.W_xh, ("d_h", "d_x")),
        b_h=(params.b_h, ("d_h",)),
        W_hy=(params.W_hy, ("d_y", "d_h")),
        b_y=(params.b_y, ("d_y",)),
    )


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _check_truncation_window(truncation_window: int | None) -> None:
    if truncation_window is not None and (
        not isinstance(truncation_window, int | np.integer) or truncation_window < 1
    ):
        raise ValueError(
            f"truncation_window must be None (full BPTT) or an int >= 1, got {truncation_window!r}"
        )


def _check_columns(params, inputs, targets=None, initial_hidden=None, task="many_to_many") -> None:
    dims = _check_params(params)
    named = {"inputs": (inputs, ("T", dims["d_x"], "m"))}
    if targets is not None:
        _check_task(task)
        pattern = ("T", dims["d_y"], "m") if task == "many_to_many" else (dims["d_y"], "m")
        named["targets"] = (targets, pattern)
    if initial_hidden is not None:
        named["initial_hidden"] = (initial_hidden, (dims["d_h"], "m"))
    if check_shapes(**named)["T"] < 1:
        raise ValueError(f"inputs must hold at least one time step, got shape {inputs.shape}")


def init(
    key: jax.Array,
    input_dim: int,
    hidden_dim: int,
    output_dim: int,
    spectral_radius: float = 1.0,
    dtype=float,
) -> RNNParams:
    """W_hh orthogonal with every eigenvalue of modulus `spectral_radius` (book 15.7.2), W_xh and
    W_hy Xavier-normal (11.2.2), biases zero.

    Args:
      key: a `jax.random` key.
      input_dim, hidden_dim, output_dim: d_x, d_h, d_y.
      spectral_radius: ρ(W_hh) > 0.
      dtype: of the parameters; the default `float` is float32, or float64 under x64.
    """
    sizes = {"input_dim": input_dim, "hidden_dim": hidden_dim, "output_dim": output_dim}
    for name, size in sizes.items():
        if size < 1:
            raise ValueError(f"{name} must be >= 1, got {size}")
    if not spectral_radius > 0:
        raise ValueError(f"spectral_radius must be positive, got {spectral_radius}")
    recurrent_key, input_key, output_key = jax.random.split(key, 3)
    return RNNParams(
        W_hh=initializers.orthogonal(spectral_radius)(recurrent_key, (hidden_dim,) * 2, dtype),
        W_xh=mlp.XAVIER_NORMAL(input_key, (hidden_dim, input_dim), dtype),
        b_h=jnp.zeros(hidden_dim, dtype),
        W_hy=mlp.XAVIER_NORMAL(output_key, (output_dim, hidden_dim), dtype),
        b_y=jnp.zeros(output_dim, dtype),
    )


def forward_columns(
    params: RNNParams,
    inputs: jax.Array,
    activation: RecurrentActivation = TANH,
    initial_hidden: jax.Array | None = None,
) -> Cache:
    """H^(t) = σ_h(W_hh H^(t-1) + W_xh X^(t) + b_h 1ᵀ), t = 1..T (book eqs. 15.6-15.7).

    W_xh X^(t) + b_h 1ᵀ has no recurrence, so it is one matmul over all t before the scan.

    Args:
      params: the shared parameters.
      inputs: [T, d_x, m], inputs[t - 1] = X^(t), one sequence per column.
      activation: σ_h.
      initial_hidden: [d_h, m] H^(0); zeros if None.
    """
    _check_columns(params, inputs, initial_hidden=initial_hidden)
    if initial_hidden is None:
        initial_hidden = jnp.zeros((params.W_hh.shape[0], inputs.shape[-1]), inputs.dtype)
    input_terms = jnp.einsum("hx,txm->thm", params.W_xh, inputs) + params.b_h[:, None]

    def step(previous_hidden, input_term):
        hidden = activation.function(params.W_hh @ previous_hidden + input_term)  # 15.6-15.7
        return hidden, hidden

    _, hidden = jax.lax.scan(step, initial_hidden, input_terms)
    return Cache(initial_hidden, hidden)


def output_logits_columns(params: RNNParams, hidden: jax.Array) -> jax.Array:
    """Z_y^(t) = W_hy H^(t) + b_y 1ᵀ for every t (book eq. 15.8); σ_y (15.9) is the head's.

    Args:
      hidden: [T, d_h, m] hidden states.

    Returns:
      [T, d_y, m] output logits.
    """
    return jnp.einsum("yh,thm->tym", params.W_hy, hidden) + params.b_y[:, None]


def _scored_steps(params, hidden, targets, task):
    """The steps that carry a loss: (hidden [S, d_h, m], logits [S, d_y, m], targets [S, d_y, m])
    with S = T (many-to-many) or 1, the last step (many-to-one, book 15.1.3)."""
    if task == "many_to_one":
        hidden, targets = hidden[-1:], targets[None]
    return hidden, output_logits_columns(params, hidden), targets


def _batch_loss(head: mlp.OutputHead, logits: jax.Array, targets: jax.Array) -> jax.Array:
    """(1/m) Σ_i Σ_t L^(t),(i): eq. 15.11 per sequence, averaged over the m columns."""
    per_step_and_sample = jax.vmap(head.per_sample_loss)(logits, targets)  # [S, m]
    return jnp.sum(per_step_and_sample) / logits.shape[-1]


def sequence_loss_columns(
    params: RNNParams,
    inputs: jax.Array,
    targets: jax.Array,
    activation: RecurrentActivation = TANH,
    head: mlp.OutputHead = mlp.SOFTMAX_CCE,
    task: Task = "many_to_many",
    initial_hidden: jax.Array | None = None,
) -> jax.Array:
    """L = Σ_t L^(t) (book eq. 15.11) per sequence, averaged over the batch.

    Args:
      params: the shared parameters.
      inputs: [T, d_x, m].
      targets: [T, d_y, m] (many-to-many) or [d_y, m] (many-to-one: only ŷ^(T) is scored), in
        the form `head` expects (one-hot columns for softmax + CCE).
      activation: σ_h; head: σ_y and ℓ from `core.mlp` (SOFTMAX_CCE, SIGMOID_BCE, IDENTITY_MSE).
      task: "many_to_many" or "many_to_one".
      initial_hidden: [d_h, m] H^(0); zeros if None.

    Returns:
      [] the batch-mean loss.
    """
    _check_columns(params, inputs, targets, initial_hidden, task)
    cache = forward_columns(params, inputs, activation, initial_hidden)
    _, logits, step_targets = _scored_steps(params, cache.hidden, targets, task)
    return _batch_loss(head, logits, step_targets)


def _keeps_recurrent_gradient(sequence_length: int, truncation_window: int | None) -> jax.Array:
    """[T] 1 where W_hhᵀ δ_h^(t+1) flows into step t, 0 where t is a multiple of τ."""
    if truncation_window is None:
        return jnp.ones(sequence_length)
    steps = jnp.arange(1, sequence_length + 1)
    return (steps % truncation_window != 0).astype(float)


def bptt_columns(
    params: RNNParams,
    inputs: jax.Array,
    targets: jax.Array,
    activation: RecurrentActivation = TANH,
    head: mlp.OutputHead = mlp.SOFTMAX_CCE,
    task: Task = "many_to_many",
    initial_hidden: jax.Array | None = None,
    truncation_window: int | None = None,
) -> BPTTResult:
    """Backpropagation through time by hand (book eqs. 15.12-15.22), column-stacked.

    δ_y^(t) = ∂L/∂z_y^(t) comes from the head (Ŷ - Y for softmax + CCE) divided by m, as L is a
    batch mean; then, from t = T down to 1,
      δ_h^(t) = (W_hyᵀ δ_y^(t) + W_hhᵀ δ_h^(t+1)) ⊙ σ'_h(z_h^(t))   (15.14-15.16, δ_h^(T+1) = 0),
    and each gradient sums its per-step terms over time and the batch columns (15.18-15.22).
    With `truncation_window` τ the W_hhᵀ δ_h^(t+1) term is dropped at t = τ, 2τ, ... (see the
    module docstring).

    Args:
      params, inputs, targets, activation, head, task, initial_hidden: as `sequence_loss_columns`.
      truncation_window: τ >= 1, or None for full BPTT.

    Returns:
      BPTTResult with hidden_deltas [T, d_h, m].
    """
    _check_columns(params, inputs, targets, initial_hidden, task)
    _check_truncation_window(truncation_window)
    cache = forward_columns(params, inputs, activation, initial_hidden)
    scored_hidden, logits, step_targets = _scored_steps(params, cache.hidden, targets, task)
    batch_size = inputs.shape[-1]
    output_deltas = head.output_delta(jax.vmap(head.activation)(logits), step_targets) / batch_size
    from_outputs = jnp.einsum("yh,sym->shm", params.W_hy, output_deltas)  # eq. 15.14
    if task == "many_to_one":
        from_outputs = jnp.zeros_like(cache.hidden).at[-1].set(from_outputs[0])
    keeps = _keeps_recurrent_gradient(inputs.shape[0], truncation_window).astype(inputs.dtype)
    derivatives = activation.derivative_from_output(cache.hidden)

    def step(next_delta, per_step):
        from_output, derivative, keep = per_step
        delta = (from_output + keep * (params.W_hh.T @ next_delta)) * derivative  # eq. 15.16
        return delta, delta

    _, deltas = jax.lax.scan(
        step,
        jnp.zeros_like(cache.initial_hidden),
        (from_outputs, derivatives, keeps),
        reverse=True,
    )
    previous_hidden = jnp.concatenate([cache.initial_hidden[None], cache.hidden[:-1]])
    gradients = RNNParams(
        W_hh=jnp.einsum("tim,tjm->ij", deltas, previous_hidden),  # eq. 15.18
        W_xh=jnp.einsum("tim,tjm->ij", deltas, inputs),  # eq. 15.19
        b_h=jnp.sum(deltas, axis=(0, 2)),  # eq. 15.21
        W_hy=jnp.einsum("sym,shm->yh", output_deltas, scored_hidden),  # eq. 15.20
        b_y=jnp.sum(output_deltas, axis=(0, 2)),  # eq. 15.22
    )
    return BPTTResult(_batch_loss(head, logits, step_targets), gradients, deltas)


def to_columns(sequences: jax.Array) -> jax.Array:
    """[B, T, D] batch-first sequences -> [T, D, B], the column-stacked layout."""
    check_rank("sequences", sequences, 3)
    return jnp.transpose(sequences, (1, 2, 0))


def to_batch_first(columns: jax.Array) -> jax.Array:
    """[T, D, B] column-stacked sequences -> [B, T, D]."""
    check_rank("columns", columns, 3)
    return jnp.transpose(columns, (2, 0, 1))


def _check_batch_first(params, inputs, targets=None, initial_hidden=None, task="many_to_many"):
    dims = _check_params(params)
    named = {"inputs": (inputs, ("B", "T", dims["d_x"]))}
    if targets is not None:
        _check_task(task)
        pattern = ("B", "T", dims["d_y"]) if task == "many_to_many" else ("B", dims["d_y"])
        named["targets"] = (targets, pattern)
    if initial_hidden is not None:
        named["initial_hidden"] = (initial_hidden, ("B", dims["d_h"]))
    check_shapes(**named)


def _columns_of(targets: jax.Array, initial_hidden: jax.Array | None, task: Task):
    targets = to_columns(targets) if task == "many_to_many" else targets.T
    return targets, None if initial_hidden is None else initial_hidden.T


def forward(
    params: RNNParams,
    inputs: jax.Array,
    activation: RecurrentActivation = TANH,
    initial_hidden: jax.Array | None = None,
) -> jax.Array:
    """Batch-first forward pass (book eqs. 15.2-15.3 for every sequence of the batch).

    Args:
      inputs: [B, T, d_x]; initial_hidden: [B, d_h] h^(0), zeros if None.

    Returns:
      [B, T, d_h] hidden states h^(1..T).
    """
    _check_batch_first(params, inputs, initial_hidden=initial_hidden)
    initial_columns = None if initial_hidden is None else initial_hidden.T
    cache = forward_columns(params, to_columns(inputs), activation, initial_columns)
    return to_batch_first(cache.hidden)


def output_logits(params: RNNParams, hidden: jax.Array) -> jax.Array:
    """z_y^(t) = W_hy h^(t) + b_y (book eq. 15.4), batch-first: [B, T, d_h] -> [B, T, d_y]."""
    check_shapes(hidden=(hidden, ("B", "T", params.W_hh.shape[0])))
    return to_batch_first(output_logits_columns(params, to_columns(hidden)))


def sequence_loss(
    params: RNNParams,
    inputs: jax.Array,
    targets: jax.Array,
    activation: RecurrentActivation = TANH,
    head: mlp.OutputHead = mlp.SOFTMAX_CCE,
    task: Task = "many_to_many",
    initial_hidden: jax.Array | None = None,
) -> jax.Array:
    """Batch-first `sequence_loss_columns`: inputs [B, T, d_x], targets [B, T, d_y] or [B, d_y],
    initial_hidden [B, d_h] or None."""
    _check_batch_first(params, inputs, targets, initial_hidden, task)
    target_columns, initial_columns = _columns_of(targets, initial_hidden, task)
    return sequence_loss_columns(
        params, to_columns(inputs), target_columns, activation, head, task, initial_columns
    )


def bptt(
    params: RNNParams,
    inputs: jax.Array,
    targets: jax.Array,
    activation: RecurrentActivation = TANH,
    head: mlp.OutputHead = mlp.SOFTMAX_CCE,
    task: Task = "many_to_many",
    initial_hidden: jax.Array | None = None,
    truncation_window: int | None = None,
) -> BPTTResult:
    """Batch-first `bptt_columns`: inputs [B, T, d_x], targets [B, T, d_y] or [B, d_y],
    initial_hidden [B, d_h] or None; hidden_deltas come back as [B, T, d_h]."""
    _check_batch_first(params, inputs, targets, initial_hidden, task)
    target_columns, initial_columns = _columns_of(targets, initial_hidden, task)
    result = bptt_columns(
        params,
        to_columns(inputs),
        target_columns,
        activation,
        head,
        task,
        initial_columns,
        truncation_window,
    )
    return result._replace(hidden_deltas=to_batch_first(result.hidden_deltas))


class TrainingRun(NamedTuple):
    """params: after the last step; losses: [N] the loss at each step; gradient_norms: [N]
    ‖∇L‖₂ over all parameters at each step, before any clipping the optimizer does."""

    params: RNNParams
    losses: jax.Array
    gradient_norms: jax.Array


def train(
    params: RNNParams,
    optimizer: optax.GradientTransformation,
    sample_batch: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    key: jax.Array,
    num_steps: int,
    activation: RecurrentActivation = TANH,
    head: mlp.OutputHead = mlp.SOFTMAX_CCE,
    task: Task = "many_to_many",
    truncation_window: int | None = None,
) -> TrainingRun:
    """Mini-batch training with the hand-written gradient `bptt`, the steps in one `lax.scan`.

    Args:
      params: the initial parameters.
      optimizer: e.g. `optax.chain(core.optim.clip_by_global_norm(1.0), core.optim.sgd(0.1))`
        for clipped SGD (book 15.7.1).
      sample_batch: key -> (inputs [B, T, d_x], targets), a fresh batch; traced, so jax only.
      key: the run's `jax.random` key; step s draws its batch with `fold_in(key, s)`.
      num_steps: number of updates N >= 1.
      activation, head, task, truncation_window: as in `bptt`.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")

    def step(carry, step_index):
        params, optimizer_state = carry
        inputs, targets = sample_batch(jax.random.fold_in(key, step_index))
        result = bptt(
            params, inputs, targets, activation, head, task, truncation_window=truncation_window
        )
        updates, optimizer_state = optimizer.update(result.gradients, optimizer_state, params)
        params = optax.apply_updates(params, updates)
        return (params, optimizer_state), (result.loss, optim.global_norm(result.gradients))

    (params, _), (losses, gradient_norms) = jax.lax.scan(
        step, (params, optimizer.init(params)), jnp.arange(num_steps)
    )
    return TrainingRun(params, losses, gradient_norms)

"""Execution controllers: from predicted action chunks to one action per control step.

Book 17.2 and 17.2.2 (a policy predicts a chunk A_t = [a_t, ..., a_{t+k-1}], eq. 17.1, and
chunks made at successive steps overlap), 17.7 (temporal ensembling, eqs. 17.60-17.62) and
18.7 Algorithm 2, line 8 (execute the first M steps of a sampled chunk, then re-plan: receding
horizon).

A controller is a small state machine over arrays, pure and jit/vmap/scan-friendly. All episodes
of a batch step in lockstep, so the decision to query the policy is one scalar for the batch and
`lax.cond` can skip the policy call on the steps where no episode needs a new chunk:

  state = controller.init(batch_size, chunk_shape)       # before step 0
  for t = 0, 1, ...:
    if controller.needs_query(state, t):                 # scalar bool
      state = controller.update(state, chunk, t)         # chunk: [B, k, D] predicted from o_t
    action = controller.action(state, t)                 # [B, D], executed at step t

Two controllers:
- `ChunkedController(query_every=n)`: query at t = 0, n, 2n, ... and execute rows 0..n-1 of each
  chunk in order. n = k executes whole chunks open loop (ACT without ensembling, 17.2); n < k is
  receding-horizon control (Diffusion Policy executes the first M = n steps, 18.7).
- `TemporalEnsemblingController(decay, convention)`: query at every step and execute the weighted
  average of every chunk's prediction for step t (eq. 17.60), in the book's or the original ACT's
  weighting (`core.temporal_ensembling`).

Row 0 of a chunk is the action of the step it is predicted at (the chunk sampler's convention,
`core.data.sampler`). Diffusion Policy's reference code predicts from the first step of its
observation window, t − To + 1, and executes rows To − 1 .. To + M − 2: the same actions.

Policies that look at To > 1 past observations get them from an observation history
(`start_observation_history`, `push_observation`), which repeats the first frame at the start of
an episode exactly as the chunk sampler pads training windows (`core.data.sampler`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import flax.struct
import jax
import jax.numpy as jnp

from core import temporal_ensembling
from core.checks import check_rank, check_shapes

CONTROLLER_NAMES = ("chunked", "temporal_ensembling")


def _check_chunk_shape(chunk_shape: tuple[int, int]) -> tuple[int, int]:
    if len(chunk_shape) != 2 or min(chunk_shape) < 1:
        raise ValueError(
            f"chunk_shape must be (k, D) with k, D >= 1 (chunk length, action dimension), got "
            f"{tuple(chunk_shape)}"
        )
    return int(chunk_shape[0]), int(chunk_shape[1])


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


class Controller(Protocol):
    """The execution-controller state machine of the module docstring.

    `t` is the control step, an int32 scalar (traced inside `lax.scan`).
    """

    def init(self, batch_size: int, chunk_shape: tuple[int, int]) -> Any:
        """The state before step 0 for B = batch_size episodes and chunks of shape (k, D)."""
        ...

    def needs_query(self, state: Any, t: jax.Array) -> jax.Array:
        """bool []: a new chunk must be predicted (from o_t) before acting at step t."""
        ...

    def update(self, state: Any, chunk: jax.Array, t: jax.Array) -> Any:
        """The state after receiving chunk: [B, k, D], predicted at step t."""
        ...

    def action(self, state: Any, t: jax.Array) -> jax.Array:
        """[B, D] the action executed at step t."""
        ...


@flax.struct.dataclass
class ChunkedState:
    """chunk: [B, k, D] the latest chunk; query_step: int32 [] the step it was predicted at."""

    chunk: jax.Array
    query_step: jax.Array


@dataclasses.dataclass(frozen=True)
class ChunkedController:
    """Executes rows 0..n-1 of a chunk predicted every n = query_every steps.

    query_every: n >= 1, at most the chunk length k. n = k: whole chunks (17.2); n < k: receding
    horizon, the first M = n steps of each chunk (18.7, Algorithm 2 line 8).
    """

    query_every: int

    def __post_init__(self):
        if not isinstance(self.query_every, int) or self.query_every < 1:
            raise ValueError(f"query_every must be a positive int, got {self.query_every!r}")

    def init(self, batch_size: int, chunk_shape: tuple[int, int]) -> ChunkedState:
        _check_batch_size(batch_size)
        chunk_length, action_dim = _check_chunk_shape(chunk_shape)
        if self.query_every > chunk_length:
            raise ValueError(
                f"query_every must be at most the chunk length k = {chunk_length} (a chunk holds "
                f"only k actions), got {self.query_every}"
            )
        return ChunkedState(
            chunk=jnp.zeros((batch_size, chunk_length, action_dim), jnp.float32),
            # as if the previous chunk ran out just before step 0: the first query is at t = 0
            query_step=jnp.asarray(-self.query_every, jnp.int32),
        )

    def needs_query(self, state: ChunkedState, t: jax.Array) -> jax.Array:
        return t - state.query_step >= self.query_every

    def update(self, state: ChunkedState, chunk: jax.Array, t: jax.Array) -> ChunkedState:
        check_shapes(chunk=(chunk, state.chunk.shape))
        return ChunkedState(
            chunk=jnp.asarray(chunk, state.chunk.dtype), query_step=jnp.asarray(t, jnp.int32)
        )

    def action(self, state: ChunkedState, t: jax.Array) -> jax.Array:
        """Row t - query_step of the latest chunk: a_t of A_{query_step} (eq. 17.1)."""
        return jax.lax.dynamic_index_in_dim(state.chunk, t - state.query_step, 1, keepdims=False)


@flax.struct.dataclass
class TemporalEnsemblingState:
    """recent_chunks: [B, k, k, D] the chunks of the last k steps in a ring buffer: slot s holds
    the chunk predicted at the latest step t with t mod k = s."""

    recent_chunks: jax.Array


@dataclasses.dataclass(frozen=True)
class TemporalEnsemblingController:
    """Queries every step and executes the weighted average of the overlapping predictions.

    At step t the chunk of step t - τ predicts a_t in its row τ, for the ages τ = 0..min(t, k-1)
    (17.2.2, 17.7.1); the executed action is their average with the weights of `convention`
    (eqs. 17.60-17.62, `core.temporal_ensembling.ensemble`).

    decay: λ of the book (e.g. temporal_ensembling.BOOK_DECAY = 0.1) or m of ACT
      (temporal_ensembling.ACT_DECAY = 0.01), >= 0.
    convention: "book" (the most recent prediction weighs most, eq. 17.61) or "act" (the oldest
      weighs most, the original ACT implementation).

    Memory: the ring buffer holds B·k²·D numbers (k = 100, D = 14, B = 64: 36 MB in float32).
    """

    decay: float
    convention: temporal_ensembling.Convention = "book"

    def __post_init__(self):
        if self.convention not in temporal_ensembling.CONVENTIONS:
            raise ValueError(
                f"convention must be one of {temporal_ensembling.CONVENTIONS}, got "
                f"{self.convention!r}"
            )
        if not (isinstance(self.decay, int | float) and self.decay >= 0):
            raise ValueError(f"decay must be a non-negative number, got {self.decay!r}")

    def init(self, batch_size: int, chunk_shape: tuple[int, int]) -> TemporalEnsemblingState:
        _check_batch_size(batch_size)
        chunk_length, action_dim = _check_chunk_shape(chunk_shape)
        shape = (batch_size, chunk_length, chunk_length, action_dim)
        return TemporalEnsemblingState(recent_chunks=jnp.zeros(shape, jnp.float32))

    def needs_query(self, state: TemporalEnsemblingState, t: jax.Array) -> jax.Array:
        return jnp.ones((), bool)

    def update(
        self, state: TemporalEnsemblingState, chunk: jax.Array, t: jax.Array
    ) -> TemporalEnsemblingState:
        batch_size, chunk_length, _, action_dim = state.recent_chunks.shape
        check_shapes(chunk=(chunk, (batch_size, chunk_length, action_dim)))
        slot = t % chunk_length
        recent_chunks = state.recent_chunks.at[:, slot].set(chunk.astype(jnp.float32))
        return TemporalEnsemblingState(recent_chunks=recent_chunks)

    def predictions_by_age(self, state: TemporalEnsemblingState, t: jax.Array) -> jax.Array:
        """[B, k, D]: row τ is a_t as predicted by the chunk of step t - τ (valid for τ <= t)."""
        chunk_length = state.recent_chunks.shape[1]
        ages = jnp.arange(chunk_length)
        return state.recent_chunks[:, (t - ages) % chunk_length, ages]

    def action(self, state: TemporalEnsemblingState, t: jax.Array) -> jax.Array:
        """a_t^final of eq. 17.60 per episode."""
        chunk_length = state.recent_chunks.shape[1]
        valid = temporal_ensembling.available_predictions(t, chunk_length)
        return jax.vmap(temporal_ensembling.ensemble, in_axes=(0, None, None, None))(
            self.predictions_by_age(state, t), valid, self.decay, self.convention
        )


def make_controller(config: Mapping[str, Any]) -> ChunkedController | TemporalEnsemblingController:
    """The controller an evaluation config names (the `eval.controller` block of a config).

    config: {"name": "chunked", "query_every": n} or {"name": "temporal_ensembling", "decay": λ,
      "convention": "book"|"act"}; fields the named controller does not use are ignored.

    Raises:
      ValueError naming an unknown controller, a missing field or a bad value.
    """
    name = config.get("name")
    fields = {"chunked": ("query_every",), "temporal_ensembling": ("decay", "convention")}
    if name not in fields:
        raise ValueError(f"controller name must be one of {CONTROLLER_NAMES}, got {name!r}")
    missing = [field for field in fields[name] if config.get(field) is None]
    if missing:
        raise ValueError(f"the {name!r} controller needs the field(s) {missing}")
    if name == "chunked":
        return ChunkedController(query_every=config["query_every"])
    return TemporalEnsemblingController(decay=config["decay"], convention=config["convention"])


def start_observation_history(
    observation: Mapping[str, jax.Array], horizon: int
) -> dict[str, jax.Array]:
    """The observation window at the start of an episode: the first frame repeated To times.

    Args:
      observation: {key: [B, ...]} the first observation o_0 of each episode.
      horizon: To >= 1.

    Returns:
      {key: [B, To, ...]}, every window frame equal to o_0 (the sampler's padding, 18.2).
    """
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    history = {}
    for key, frame in observation.items():
        check_rank(key, frame, range(1, 8))
        history[key] = jnp.repeat(jnp.asarray(frame)[:, None], horizon, axis=1)
    return history


def push_observation(
    history: Mapping[str, jax.Array], observation: Mapping[str, jax.Array]
) -> dict[str, jax.Array]:
    """The window one step later: drops the oldest frame and appends o_t.

    Args:
      history: {key: [B, To, ...]} frames t-To .. t-1.
      observation: {key: [B, ...]} the newest frame o_t, the same keys.

    Returns:
      {key: [B, To, ...]} frames t-To+1 .. t.
    """
    if set(history) != set(observation):
        raise ValueError(
            f"observation must have the history's keys {sorted(history)}, got {sorted(observation)}"
        )
    pushed = {}
    for key, window in history.items():
        frame = observation[key]
        check_shapes(**{key: (frame, (window.shape[0], *window.shape[2:]))})
        pushed[key] = jnp.concatenate([window[:, 1:], frame[:, None].astype(window.dtype)], axis=1)
    return pushed

"""The policy interface every method implements, so one train loop and one evaluator serve all.

Book 16.8 (a policy is learned from demonstrations D = {(o, a*)}), 17.2 (it predicts a chunk
of k actions from the current observation window) and 17.7 / 18.6 / 19.7 (an execution
controller turns chunks into one action per control step).

A policy is a frozen, hashable object holding architecture and hyper-parameters only (it can
be a static argument of `jax.jit`); everything learned lives in `variables`, a pytree. All
methods are pure functions of their arguments. Only `variables["params"]` is trained; other
collections (e.g. the frozen batch statistics of a pretrained backbone) are constants, and
`loss` never mutates state.

Batches follow `core.data.sampler` (batch-first, already passed through
`core.data.stats.prepare_batch`, i.e. float images in [0, 1] and normalized features):

  observation.state          [B, To, Ds]
  observation.images.<cam>   [B, To, H, W, 3]   one key per camera (LeRobot's convention)
  observation.instruction    [B, L] int32       token ids, for language-conditioned tasks
  action                     [B, k, Da]         normalized
  action_is_pad              [B, k] bool        steps past the episode end, masked out of losses

`predict_chunk` sees the same observation keys (without action/action_is_pad) and returns
normalized actions; un-normalizing and executing them is the evaluator's and the controller's
job, so a policy never sees raw units.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import jax

Batch = Mapping[str, jax.Array]
Variables = Any  # a pytree: {"params": ..., and e.g. "batch_stats": ...}
Metrics = dict[str, jax.Array]


class Policy(Protocol):
    """What the train loop and the evaluator need from a method (BC, ACT, Diffusion, VLA).

    Attributes:
      observation_horizon: To, the number of past observations a sample carries.
      action_horizon: k, the length of the predicted action chunk.
      observation_keys: the batch keys the policy reads (e.g. ("observation.state",)); the
        data pipeline loads only these.
    """

    observation_horizon: int
    action_horizon: int
    observation_keys: tuple[str, ...]

    def init(self, rng: jax.Array, batch: Batch) -> Variables:
        """Initial variables, shaped by an example batch."""
        ...

    def loss(
        self, variables: Variables, batch: Batch, rng: jax.Array, step: jax.Array
    ) -> tuple[jax.Array, Metrics]:
        """Scalar training loss and named metrics (each a scalar), e.g. {"l1": ..., "kl": ...}.

        `rng` drives dropout and latent sampling; `step` drives schedules inside the loss
        (e.g. KL-weight annealing, book 17.19). Deterministic given (variables, batch, rng, step).
        """
        ...

    def predict_chunk(self, variables: Variables, observation: Batch, rng: jax.Array) -> jax.Array:
        """[B, k, Da] normalized action chunk for a batch of observation windows (eval mode)."""
        ...

"""The chunk sampler: batches of observation windows and future action chunks.

Book 17.2 (ACT predicts the chunk a_{t:t+k-1} from o_t) and 18.2 (Diffusion Policy conditions
on the To most recent observations o_{t-To+1:t}). A sample is a frame t of a training episode of
length T:

  observation.<key>  [To, ...]  frames t-To+1 .. t; indices before 0 repeat frame 0
  action             [k, Da]    actions t .. t+k-1; indices past T-1 repeat action T-1 and are
                                flagged in action_is_pad [k] (bool), so losses can mask them
  task_index         []         index into reader.tasks (the episode's instruction)

Padding repeats the edge frame, as LeRobot's delta-timestamp queries do (the original ACT
zero-pads actions instead; with the loss masked by action_is_pad the two train identically).
Every sampled episode must be at least as long as the observation window and as the action
chunk (T >= max(To, k)); a shorter one, whose every sample would be mostly padding, is an error
naming it (leave it out, or shorten the horizons).
Batches stack samples batch-first: observation.state [B, To, Ds], observation.images.<cam>
[B, To, H, W, 3] uint8 (`core.data.stats.prepare_batch` makes them float in the step),
action [B, k, Da], action_is_pad [B, k], task_index [B].

Order. Every frame of the sampled episodes is one sample; epoch e visits them in the order of
a permutation drawn from numpy's PCG64 seeded with (seed, e), cut into global batches of
`batch_size` (the remainder is dropped). Batch number s is thus a pure function of s, which
gives, without extra machinery:
  - determinism: the same (seed, s) gives the same batch on any machine;
  - sharding: process p of P takes rows [p B/P, (p+1) B/P) of each global batch: disjoint,
    and together exactly the global batch (feed them to `jax.make_array_from_process_local_data`);
  - checkpointable iteration: the iterator state is {"step": s} plus the settings it depends on;
    restoring it resumes the identical sequence, prefetching or not.
A small index sampler is all this needs, so we write it rather than depend on grain.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from core.data.reader import EpisodeReader

OBSERVATION_PREFIX = "observation."


class ChunkSampler:
    """Samples (observation window, action chunk) batches from a set of episodes.

    Args:
      reader: the dataset.
      episodes: indices of the episodes to sample from (e.g. reader.splits["train"]).
      batch_size: the GLOBAL batch size B (over all processes).
      observation_horizon: To >= 1 past observations per sample.
      action_horizon: k >= 1 future actions per sample.
      seed: seed of the sample order.
      process_index, process_count: this process's shard of each global batch.
      observation_keys: features returned as observations; default every "observation.*".
      action_key: the action feature.
    """

    def __init__(
        self,
        reader: EpisodeReader,
        episodes: Sequence[int],
        *,
        batch_size: int,
        observation_horizon: int,
        action_horizon: int,
        seed: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        observation_keys: Sequence[str] | None = None,
        action_key: str = "action",
    ):
        if observation_horizon < 1 or action_horizon < 1:
            raise ValueError(
                f"observation_horizon and action_horizon must be >= 1, got "
                f"{observation_horizon} and {action_horizon}"
            )
        if not 0 <= process_index < process_count:
            raise ValueError(
                f"process_index must be in 0..process_count-1, got {process_index} of "
                f"{process_count}"
            )
        if batch_size < 1 or batch_size % process_count:
            raise ValueError(
                f"batch_size must be a positive multiple of process_count={process_count}, "
                f"got {batch_size}"
            )
        episodes = np.asarray(episodes, np.int64).reshape(-1)
        if episodes.size == 0:
            raise ValueError("episodes must name at least one episode")
        if len(np.unique(episodes)) != episodes.size:
            raise ValueError("episodes must not repeat")
        if not (episodes.min() >= 0 and episodes.max() < reader.num_episodes):
            raise ValueError(f"episodes must lie in 0..{reader.num_episodes - 1}")
        if observation_keys is None:
            observation_keys = [k for k in reader.features if k.startswith(OBSERVATION_PREFIX)]
        unknown = sorted(set([*observation_keys, action_key]) - set(reader.features))
        if unknown:
            raise ValueError(f"{reader.source}: no features {unknown}; has {list(reader.features)}")
        window = max(observation_horizon, action_horizon)
        lengths = reader.episode_lengths[episodes]
        if np.any(lengths < window):
            short = episodes[np.argmin(lengths)]
            raise ValueError(
                f"{reader.source}: episode {short} has {lengths.min()} frames, fewer than the "
                f"window max(observation_horizon, action_horizon) = {window}; shorten the "
                "horizons or leave such episodes out"
            )
        self.reader = reader
        self.episodes = episodes
        self.batch_size = batch_size
        self.observation_horizon = observation_horizon
        self.action_horizon = action_horizon
        self.seed = seed
        self.process_index = process_index
        self.process_count = process_count
        self.observation_keys = list(observation_keys)
        self.action_key = action_key
        self._sample_episode = np.repeat(episodes, lengths)
        self._sample_time = np.concatenate([np.arange(n) for n in lengths])
        self.batches_per_epoch = len(self._sample_episode) // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the episodes hold {len(self._sample_episode)} frames, fewer than one batch "
                f"of {batch_size}"
            )
        self._permutations: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def num_samples(self) -> int:
        """Frames of the sampled episodes: the samples of one epoch (before dropping)."""
        return len(self._sample_episode)

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.process_count

    def _permutation(self, epoch: int) -> np.ndarray:
        """The sample order of an epoch; the two latest are kept (prefetch crosses epochs)."""
        with self._lock:
            permutation = self._permutations.get(epoch)
            if permutation is None:
                generator = np.random.default_rng([self.seed, epoch])
                permutation = generator.permutation(self.num_samples)
                self._permutations[epoch] = permutation
                if len(self._permutations) > 2:  # evict the oldest other than this one
                    del self._permutations[min(e for e in self._permutations if e != epoch)]
            return permutation

    def sample_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(episode [B_local], frame t [B_local]) of this process's part of batch `step`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, batch_in_epoch = divmod(step, self.batches_per_epoch)
        start = batch_in_epoch * self.batch_size + self.process_index * self.local_batch_size
        samples = self._permutation(epoch)[start : start + self.local_batch_size]
        return self._sample_episode[samples], self._sample_time[samples]

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's part of global batch number `step` (a pure function of step)."""
        episodes, times = self.sample_indices(step)
        starts = self.reader.episode_starts[episodes][:, None]
        lengths = self.reader.episode_lengths[episodes][:, None]
        observation_times = times[:, None] + np.arange(1 - self.observation_horizon, 1)
        observation_rows = starts + np.maximum(observation_times, 0)  # repeat frame 0
        action_times = times[:, None] + np.arange(self.action_horizon)
        action_rows = starts + np.minimum(action_times, lengths - 1)  # repeat the last action
        batch = {}
        for key in self.observation_keys:
            frames = self.reader.read(key, observation_rows.reshape(-1))
            batch[key] = frames.reshape(*observation_rows.shape, *frames.shape[1:])
        actions = self.reader.read(self.action_key, action_rows.reshape(-1))
        batch["action"] = actions.reshape(*action_rows.shape, *actions.shape[1:])
        batch["action_is_pad"] = action_times >= lengths
        batch["task_index"] = self.reader.episode_task_index[episodes].astype(np.int32)
        return batch

    def iterator(self, state: dict | None = None, *, prefetch: int = 0) -> BatchIterator:
        """An endless iterator over batches, from the start or from a saved `state`."""
        return BatchIterator(self, state=state, prefetch=prefetch)


class BatchIterator(Iterator[dict]):
    """Iterates a sampler's batches; its state is a small dict that resumes it exactly.

    prefetch > 0 prepares that many upcoming batches in background threads; batches still come
    out in step order and the state counts only batches handed out, so prefetching changes
    neither the sequence nor what a checkpoint resumes.
    """

    def __init__(self, sampler: ChunkSampler, *, state: dict | None = None, prefetch: int = 0):
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.sampler = sampler
        self.step = 0
        self._prefetch = prefetch
        self._pool = ThreadPoolExecutor(max_workers=prefetch) if prefetch else None
        self._pending: collections.deque[tuple[int, Future]] = collections.deque()
        if state is not None:
            self.set_state(state)

    def get_state(self) -> dict[str, int]:
        """{"step": next batch number, plus the settings the sequence depends on}."""
        return {
            "step": self.step,
            "seed": self.sampler.seed,
            "batch_size": self.sampler.batch_size,
            "num_samples": self.sampler.num_samples,
        }

    def set_state(self, state: dict) -> None:
        """Resumes from `get_state()`'s dict; the sampler's settings must match it."""
        missing = sorted({"step", "seed", "batch_size", "num_samples"} - set(state))
        if missing:
            raise ValueError(f"iterator state lacks {missing}")
        current = self.get_state()
        for name in ("seed", "batch_size", "num_samples"):
            if int(state[name]) != current[name]:
                raise ValueError(
                    f"iterator state has {name}={state[name]}, this sampler {current[name]}"
                )
        self.step = int(state["step"])
        self._discard_pending()

    def _discard_pending(self) -> None:
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()

    def __next__(self) -> dict[str, np.ndarray]:
        if self._pool is None:
            batch = self.sampler.batch(self.step)
        else:
            next_unscheduled = self._pending[-1][0] + 1 if self._pending else self.step
            while len(self._pending) < self._prefetch + 1:
                future = self._pool.submit(self.sampler.batch, next_unscheduled)
                self._pending.append((next_unscheduled, future))
                next_unscheduled += 1
            _, future = self._pending.popleft()
            batch = future.result()
        self.step += 1
        return batch

    def close(self) -> None:
        """Stops the prefetch threads."""
        self._discard_pending()
        if self._pool is not None:
            self._pool.shutdown()

"""The common read interface of episode datasets.

Book 16.3: a dataset is a set of episodes of per-step observations and actions. Every reader
(`core.data.lerobot.LeRobotReader` for our own and LeRobot datasets,
`core.data.hdf5_act.ACTHDF5Reader` for ACT's HDF5 files) exposes the same small interface: the
feature specification, fps, episode lengths, the instruction of each episode, stored statistics
and splits, and `read(key, rows)`, which returns the frames at global frame indices (episode e
occupies rows episode_starts[e] .. episode_starts[e] + episode_lengths[e] - 1).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import numpy as np

from core.checks import check_rank
from core.data import format as fmt
from core.data.stats import FeatureStats


class EpisodeReader(abc.ABC):
    """The common read interface of episode datasets.

    Attributes:
      features: {key: {"dtype", "shape", "names"}} of the per-frame data (no bookkeeping).
      fps: control rate in frames per second.
      episode_lengths: [E] int64 frames per episode.
      episode_starts: [E] int64 global index of each episode's first frame.
      tasks: the distinct task texts; episode_task_index: [E] int64 index into `tasks`.
      stats: stored statistics {feature: {statistic: array}} or None.
      stats_split: the split the stored statistics were computed on ("train"), or None when
        unknown (LeRobot's own datasets summarize all episodes).
      splits: stored {split name: episode indices}, possibly empty.
    """

    def __init__(
        self,
        *,
        source: str,
        features: Mapping[str, Mapping],
        fps: float,
        episode_lengths: np.ndarray,
        tasks: list[str],
        episode_task_index: np.ndarray,
        stats: dict[str, FeatureStats] | None = None,
        stats_split: str | None = None,
        splits: dict[str, np.ndarray] | None = None,
    ):
        self.source = source
        self.features = fmt.validate_features(features, source=source)
        self.fps = float(fps)
        self.episode_lengths = np.asarray(episode_lengths, np.int64)
        if self.episode_lengths.size == 0:
            raise ValueError(f"{source}: the dataset contains no episodes")
        if np.any(self.episode_lengths < 1):
            empty = np.flatnonzero(self.episode_lengths < 1).tolist()
            raise ValueError(f"{source}: episodes {empty} have no frames")
        self.episode_starts = np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]])
        self.tasks = list(tasks)
        self.episode_task_index = np.asarray(episode_task_index, np.int64)
        self.stats = stats
        self.stats_split = stats_split
        self.splits = splits or {}

    @property
    def num_episodes(self) -> int:
        """E, the number of episodes."""
        return len(self.episode_lengths)

    @property
    def num_frames(self) -> int:
        """Frames of all episodes together."""
        return int(self.episode_lengths.sum())

    @property
    def camera_keys(self) -> list[str]:
        """The image features, in specification order."""
        return [key for key, spec in self.features.items() if fmt.is_image(spec)]

    def _check_episode(self, episode: int) -> int:
        if not 0 <= episode < self.num_episodes:
            raise ValueError(f"episode must be in 0..{self.num_episodes - 1}, got {episode}")
        return int(episode)

    def instruction(self, episode: int) -> str:
        """The task / natural-language instruction of an episode."""
        return self.tasks[self.episode_task_index[self._check_episode(episode)]]

    def episode_rows(self, episode: int) -> np.ndarray:
        """[T] int64 global frame indices of an episode."""
        episode = self._check_episode(episode)
        start = self.episode_starts[episode]
        return np.arange(start, start + self.episode_lengths[episode], dtype=np.int64)

    def read(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Frames of one feature at global frame indices.

        Args:
          key: a feature key, e.g. "observation.state" or "observation.images.top".
          rows: [N] int global frame indices (any order, repeats allowed).

        Returns:
          [N, *shape] array of the feature's dtype (images uint8 [N, H, W, 3]).
        """
        if key not in self.features:
            raise ValueError(f"{self.source}: no feature {key!r}; features: {list(self.features)}")
        rows = np.asarray(rows, np.int64)
        check_rank("rows", rows, 1)
        if rows.size and not (rows.min() >= 0 and rows.max() < self.num_frames):
            raise ValueError(
                f"rows must lie in 0..{self.num_frames - 1}, got {rows.min()}..{rows.max()}"
            )
        return self._read(key, rows)

    @abc.abstractmethod
    def _read(self, key: str, rows: np.ndarray) -> np.ndarray:
        """`read` after its argument checks."""

    def episode(self, episode: int) -> dict[str, np.ndarray]:
        """Every feature of one episode: {key: [T, *shape]} (loads its images)."""
        rows = self.episode_rows(episode)
        return {key: self.read(key, rows) for key in self.features}

    @abc.abstractmethod
    def close(self) -> None:
        """Releases open files."""

    def __enter__(self) -> EpisodeReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

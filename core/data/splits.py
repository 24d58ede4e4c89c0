"""Train/validation split by episode.

Book 14.1.3: statistics (and everything else learned) come from the training data only. The
split is by EPISODE, never by frame: frames of one episode are strongly correlated, so a frame
split would leak near-copies of training frames into validation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

SPLIT_NAMES = ("train", "validation")


def split_episodes(
    num_episodes: int, validation_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """A seeded random split of episodes 0..E-1 into train and validation.

    round(validation_fraction * E) episodes go to validation, at least one episode stays in
    train. The same (num_episodes, validation_fraction, seed) always gives the same split.

    Returns:
      {"train": [E_train] int64, "validation": [E_val] int64}, each sorted ascending.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    num_validation = min(round(validation_fraction * num_episodes), num_episodes - 1)
    order = np.random.default_rng(seed).permutation(num_episodes)
    return {
        "train": np.sort(order[num_validation:]).astype(np.int64),
        "validation": np.sort(order[:num_validation]).astype(np.int64),
    }


def parse_splits(splits: Mapping[str, object], num_episodes: int, *, source: str) -> dict:
    """Splits as stored in `info.json`: LeRobot's "start:stop" ranges or lists of episodes.

    Returns:
      {split name: sorted int64 episode indices}.

    Raises:
      ValueError naming `source` and the split if an entry is malformed or out of range.
    """
    parsed = {}
    for name, entry in splits.items():
        if isinstance(entry, str):
            start, _, stop = entry.partition(":")
            if not (start.isdigit() and stop.isdigit()):
                raise ValueError(f"{source}: split {name!r} must be 'start:stop', got {entry!r}")
            episodes = np.arange(int(start), int(stop), dtype=np.int64)
        else:
            episodes = np.sort(np.asarray(entry, dtype=np.int64).reshape(-1))
        if episodes.size and not (episodes[0] >= 0 and episodes[-1] < num_episodes):
            raise ValueError(
                f"{source}: split {name!r} names episodes outside 0..{num_episodes - 1}"
            )
        parsed[name] = episodes
    return parsed

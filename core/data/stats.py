"""Normalization statistics of a dataset, computed on its training split, and normalizers.

Book 14.1 (eqs. 14.1-14.2) and 14.1.3: the statistics of the TRAINING episodes define one frozen
affine map per feature, applied unchanged to validation data and at deployment; 16.14: actions
are normalized for learning and unnormalized before they reach the robot.

Statistics follow LeRobot's `meta/stats.json`: per feature min, max, mean, std (population,
1/n), count and the quantiles q01, q10, q50, q90, q99 (linear interpolation, as numpy). Vector
features get arrays of their shape [D]; image features get per-channel statistics of the pixel
values on the [0, 1] scale, shape [3, 1, 1], computed exactly from 256-bin histograms so they
stream over episodes.

Images stay uint8 on disk and in the sampler's batches (4x less memory and host-to-device
traffic); `prepare_batch`, called inside the jitted step, turns them into float32 in [0, 1] and
normalizes states and actions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from core.data.format import is_image
from core.normalizers import AffineNormalizer, affine_from_interval

if TYPE_CHECKING:
    from core.data.reader import EpisodeReader

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
PIXEL_LEVELS = 256
NORMALIZATION_MODES = ("mean_std", "min_max", "quantile")

FeatureStats = dict[str, np.ndarray]


def array_statistics(values: np.ndarray) -> FeatureStats:
    """values: [N, D] samples of one feature -> statistics, each [D] (count [1])."""
    if np.ndim(values) != 2 or len(values) == 0:
        raise ValueError(f"values must have shape [N, D] with N >= 1, got {np.shape(values)}")
    values = np.asarray(values, np.float64)
    stats = {
        "min": values.min(axis=0),
        "max": values.max(axis=0),
        "mean": values.mean(axis=0),
        "std": values.std(axis=0),  # population std (ddof=0), book eq. 14.1
        "count": np.array([len(values)], np.int64),
    }
    levels = np.quantile(values, list(QUANTILES.values()), axis=0)
    stats.update(zip(QUANTILES, levels, strict=True))
    return stats


def image_histogram(images: np.ndarray) -> np.ndarray:
    """images: [N, H, W, 3] uint8 -> [3, 256] int64 per-channel counts of each pixel value."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    channels = images.reshape(-1, 3)
    return np.stack([np.bincount(channels[:, c], minlength=PIXEL_LEVELS) for c in range(3)]).astype(
        np.int64
    )


def _histogram_quantile(cumulative: np.ndarray, total: int, level: float) -> float:
    """The `level` quantile (numpy's linear rule) of integer values 0..255 with counts."""
    position = level * (total - 1)
    below = int(np.floor(position))
    # the k-th smallest value (0-based) is the first v with cumulative[v] > k
    low = np.searchsorted(cumulative, below, side="right")
    high = np.searchsorted(cumulative, min(below + 1, total - 1), side="right")
    return low + (position - below) * (high - low)


def histogram_statistics(histogram: np.ndarray, num_frames: int) -> FeatureStats:
    """histogram: [3, 256] pixel counts of `num_frames` images -> statistics on [0, 1].

    Exactly the statistics of the pixel values / 255 per channel (quantiles by numpy's linear
    rule), each of shape [3, 1, 1] as LeRobot stores image statistics.
    """
    levels = np.arange(PIXEL_LEVELS, dtype=np.float64)
    counts = histogram.astype(np.float64)
    total = int(histogram[0].sum())
    mean = counts @ levels / total
    variance = (counts * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
    present = histogram > 0
    per_channel = {
        "min": np.argmax(present, axis=1).astype(np.float64),
        "max": (PIXEL_LEVELS - 1 - np.argmax(present[:, ::-1], axis=1)).astype(np.float64),
        "mean": mean,
        "std": np.sqrt(variance),
    }
    cumulative = np.cumsum(histogram, axis=1)
    for name, level in QUANTILES.items():
        per_channel[name] = np.array(
            [_histogram_quantile(cumulative[c], total, level) for c in range(3)]
        )
    stats = {
        name: (value / (PIXEL_LEVELS - 1))[:, None, None] for name, value in per_channel.items()
    }
    stats["count"] = np.array([num_frames], np.int64)
    return stats


def compute_stats(
    reader: EpisodeReader,
    episodes: Sequence[int],
    keys: Sequence[str] | None = None,
) -> dict[str, FeatureStats]:
    """Statistics of the given (training) episodes; images stream one episode at a time.

    Args:
      reader: the dataset.
      episodes: the episode indices to summarize, e.g. the training split.
      keys: features to summarize; default every non-image feature (images decode every
        frame, so ask for them explicitly).
    """
    episodes = np.asarray(episodes, np.int64).reshape(-1)
    if episodes.size == 0:
        raise ValueError("episodes must name at least one episode")
    features = reader.features
    if keys is None:
        keys = [key for key, spec in features.items() if not is_image(spec)]
    unknown = sorted(set(keys) - set(features))
    if unknown:
        raise ValueError(f"keys {unknown} are not features of the dataset {sorted(features)}")
    stats = {}
    for key in keys:
        if is_image(features[key]):
            histogram = sum(
                image_histogram(reader.read(key, reader.episode_rows(e))) for e in episodes
            )
            num_frames = int(reader.episode_lengths[episodes].sum())
            stats[key] = histogram_statistics(histogram, num_frames)
        else:
            rows = np.concatenate([reader.episode_rows(e) for e in episodes])
            stats[key] = array_statistics(reader.read(key, rows))
    return stats


def training_stats(reader: EpisodeReader, train_episodes: Sequence[int]) -> dict:
    """The statistics of exactly the training episodes (book 14.1.3).

    The stored statistics when they were computed on these episodes (our writer's, with its
    split), otherwise computed now: LeRobot's own statistics cover every episode, and ACT's
    HDF5 files store none.
    """
    train_episodes = np.sort(np.asarray(train_episodes, np.int64).reshape(-1))
    stored_train = reader.splits.get("train")
    if (
        reader.stats is not None
        and reader.stats_split == "train"
        and stored_train is not None
        and np.array_equal(stored_train, train_episodes)
    ):
        return reader.stats
    return compute_stats(reader, train_episodes)


def write_stats(path: Path, stats: Mapping[str, FeatureStats]) -> None:
    """Writes statistics as LeRobot's `meta/stats.json` (nested lists)."""
    serial = {
        key: {name: np.asarray(v).tolist() for name, v in s.items()} for key, s in stats.items()
    }
    Path(path).write_text(json.dumps(serial, indent=4))


def read_stats(path: Path) -> dict[str, FeatureStats]:
    """Reads `meta/stats.json` back into numpy arrays.

    Raises:
      ValueError naming the file if it is not valid JSON of {feature: {statistic: list}}.
    """
    try:
        serial = json.loads(Path(path).read_text())
        return {key: {name: np.asarray(v) for name, v in s.items()} for key, s in serial.items()}
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a valid statistics file ({error})") from error


def _required(stats: FeatureStats, names: Sequence[str], key: str) -> list[np.ndarray]:
    missing = [name for name in names if name not in stats]
    if missing:
        raise ValueError(f"statistics of {key!r} lack {missing}, present: {sorted(stats)}")
    return [np.asarray(stats[name], np.float64) for name in names]


def normalizer_from_stats(
    stats: FeatureStats, mode: str, *, key: str = "feature", min_spread: float = 1e-8
) -> AffineNormalizer:
    """The frozen affine normalizer of one feature (book 14.1), from its statistics.

    Modes:
      mean_std  (x - mean) / std, book eq. 14.1.
      min_max   [min, max] -> [-1, 1], book eq. 14.2 with the action range of 16.14.
      quantile  [q01, q99] -> [-1, 1], clipped: robust to outliers.
    Features with a spread <= min_spread are centered and left unscaled (core.normalizers).
    """
    if mode == "mean_std":
        center, half_width = _required(stats, ("mean", "std"), key)
        return affine_from_interval(center, half_width, (-1.0, 1.0), min_spread)
    if mode == "min_max":
        low, high = _required(stats, ("min", "max"), key)
        return affine_from_interval((low + high) / 2, (high - low) / 2, (-1.0, 1.0), min_spread)
    if mode == "quantile":
        low, high = _required(stats, ("q01", "q99"), key)
        clip = (-1.0, 1.0)
        return affine_from_interval((low + high) / 2, (high - low) / 2, clip, min_spread, clip)
    raise ValueError(f"unknown normalization mode {mode!r} for {key!r}: {NORMALIZATION_MODES}")


def make_normalizers(
    stats: Mapping[str, FeatureStats], modes: Mapping[str, str]
) -> dict[str, AffineNormalizer]:
    """Normalizers for the features named in `modes`, e.g. {"observation.state": "mean_std",
    "action": "min_max"}; features not named stay raw."""
    missing = sorted(set(modes) - set(stats))
    if missing:
        raise ValueError(f"no statistics for {missing}; statistics exist for {sorted(stats)}")
    return {key: normalizer_from_stats(stats[key], mode, key=key) for key, mode in modes.items()}


def prepare_batch(
    batch: Mapping[str, jnp.ndarray], normalizers: Mapping[str, AffineNormalizer]
) -> dict[str, jnp.ndarray]:
    """The model's view of a sampler batch: uint8 images -> float32 in [0, 1], normalized
    features. Pure and jit-able: call it inside the jitted train/eval step.

    batch: the sampler's dict, e.g. observation.state [B, To, Ds], observation.images.<cam>
      [B, To, H, W, 3] uint8, action [B, k, Da], action_is_pad [B, k].
    """
    prepared = {}
    for key, value in batch.items():
        if jnp.asarray(value).dtype == jnp.uint8:
            prepared[key] = jnp.asarray(value, jnp.float32) / 255.0
        elif key in normalizers:
            prepared[key] = normalizers[key].normalize(jnp.asarray(value, jnp.float32))
        else:
            prepared[key] = value
    return prepared

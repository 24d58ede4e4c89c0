"""Writing episodes into the on-disk dataset format, atomically.

Book 16.3: demonstrations are stored as episodes of observations and actions. The layout is
LeRobot v3.0 (documented in `core.data.format`). Usage:

    with DatasetWriter("data/obstacle", fps=10, features=features, robot_type="point_mass") as w:
        for episode, instruction in demonstrations:
            w.add_episode(episode, task=instruction)

An episode is a dict of numpy arrays with the same leading length T: one entry per feature,
e.g. "observation.state" float32 [T, Ds], "observation.images.top" uint8 [T, H, W, 3],
"action" float32 [T, Da], "next.reward" float32 [T] or [T, 1].

Atomicity: everything is written into a hidden sibling directory `.<name>.incomplete-<id>` and
renamed to `<name>` only after the last file (meta/info.json) is written. Leaving the `with`
block by an exception deletes the temporary directory; a killed process leaves only the hidden
directory, which no reader opens (it has no meta/info.json at the dataset path).

On finalize the writer splits the episodes into train/validation (`core.data.splits`), records
the split in info.json and computes meta/stats.json on the TRAINING episodes only (book 14.1.3).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.data import format as fmt
from core.data.splits import split_episodes
from core.data.stats import array_statistics, histogram_statistics, image_histogram, write_stats

ROW_GROUP_FRAMES = 32
"""Frames per parquet row group: the unit a reader loads to fetch one frame."""


def _checked_array(key: str, spec: Mapping, value, length: int | None) -> np.ndarray:
    """An episode entry as a [T, *shape] array of the feature's dtype, or a ValueError."""
    array = np.asarray(value)
    shape = spec["shape"]
    if spec["shape"] == [1] and array.ndim == 1:
        array = array[:, None]
    expected = ["T", *shape]
    if array.ndim != len(expected) or list(array.shape[1:]) != shape or array.shape[0] == 0:
        raise ValueError(
            f"episode[{key!r}] must have shape {expected} with T >= 1, got {list(array.shape)}"
        )
    if length is not None and array.shape[0] != length:
        raise ValueError(
            f"episode[{key!r}] has {array.shape[0]} steps, the episode's other entries {length}"
        )
    if fmt.is_image(spec):
        if array.dtype != np.uint8:
            raise ValueError(f"episode[{key!r}] must be uint8 images, got dtype {array.dtype}")
        return array
    target = np.dtype(spec["dtype"])
    if not np.can_cast(array.dtype, target, casting="same_kind"):
        raise ValueError(f"episode[{key!r}] has dtype {array.dtype}, feature dtype is {target}")
    array = array.astype(target, copy=False)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"episode[{key!r}] contains NaN or infinite values")
    return array


class DatasetWriter:
    """Writes episodes into a new dataset directory; finalizes atomically on success.

    Args:
      root: the dataset directory to create; must not exist unless `overwrite`.
      fps: control rate in frames per second (timestamps are frame_index / fps).
      features: the feature specification (`core.data.format`), without bookkeeping columns.
      robot_type: free text stored in info.json (e.g. the task suite's robot).
      validation_fraction: share of episodes held out for validation (split by episode).
      split_seed: seed of the train/validation split.
      overwrite: replace an existing dataset at `root` (only once the new one is complete).
      data_file_size_mb: a new data file is started when the current one reaches this size.
      encode_threads: threads encoding PNG frames.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fps: float,
        features: Mapping[str, Mapping],
        robot_type: str | None = None,
        validation_fraction: float = 0.1,
        split_seed: int = 0,
        overwrite: bool = False,
        data_file_size_mb: float = 100.0,
        encode_threads: int = 2,
    ):
        self.root = Path(root)
        if self.root.exists() and not overwrite:
            raise FileExistsError(f"{self.root} exists; pass overwrite=True to replace it")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if not 0.0 <= validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
        if encode_threads < 1:
            raise ValueError(f"encode_threads must be >= 1, got {encode_threads}")
        self.fps = fps
        self.features = fmt.validate_features(features, source="features")
        self.robot_type = robot_type
        self.validation_fraction = validation_fraction
        self.split_seed = split_seed
        self.overwrite = overwrite
        self.data_file_bytes = data_file_size_mb * 2**20
        all_features = {**self.features, **fmt.BOOKKEEPING_FEATURES}
        self._schema = pa.schema(
            [pa.field(key, fmt.arrow_type(spec)) for key, spec in all_features.items()],
            metadata=fmt.huggingface_schema_metadata(all_features),
        )
        self._temporary = self.root.with_name(f".{self.root.name}.incomplete-{uuid.uuid4().hex}")
        self._temporary.mkdir(parents=True)
        self._encoder = ThreadPoolExecutor(max_workers=encode_threads)
        self._file_writer: pq.ParquetWriter | None = None
        self._file_number = -1  # running number of the current data file
        self._file_bytes = 0.0
        self._episodes: list[dict] = []
        self._tasks: dict[str, int] = {}
        self._numeric: dict[str, list[np.ndarray]] = {
            k: [] for k, s in self.features.items() if not fmt.is_image(s)
        }
        self._histograms: dict[str, list[np.ndarray]] = {
            k: [] for k, s in self.features.items() if fmt.is_image(s)
        }
        self._closed = False

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.finalize()
        else:
            self.abort()

    @property
    def num_episodes(self) -> int:
        """Episodes added so far."""
        return len(self._episodes)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the writer of {self.root} is already finalized or aborted")

    def _episode_columns(self, episode: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self.features) - set(episode))
        extra = sorted(set(episode) - set(self.features))
        if missing or extra:
            raise ValueError(
                f"episode keys must match the features: missing {missing}, unexpected {extra}"
            )
        columns, length = {}, None
        for key, spec in self.features.items():
            columns[key] = _checked_array(key, spec, episode[key], length)
            length = len(columns[key])
        return columns

    def _arrow_column(self, key: str, array: np.ndarray) -> pa.Array:
        spec = self.features[key]
        if fmt.is_image(spec):
            encoded = list(self._encoder.map(fmt.encode_png, array))
            paths = [f"frame-{i:06d}.png" for i in range(len(array))]
            return pa.StructArray.from_arrays(
                [pa.array(encoded, pa.binary()), pa.array(paths, pa.string())],
                fields=list(fmt.IMAGE_ARROW_TYPE),
            )
        values = pa.array(array.reshape(-1), fmt.VECTOR_DTYPES[spec["dtype"]])
        size = spec["shape"][0]
        return values if size == 1 else pa.FixedSizeListArray.from_arrays(values, size)

    def _start_data_file(self) -> None:
        if self._file_writer is not None:
            self._file_writer.close()
        self._file_number += 1
        chunk_index, file_index = divmod(self._file_number, fmt.CHUNKS_SIZE)
        path = fmt.data_file_path(self._temporary, chunk_index, file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file_writer = pq.ParquetWriter(path, self._schema, compression="snappy")
        self._file_bytes = 0.0

    def add_episode(self, episode: Mapping[str, np.ndarray], task: str) -> int:
        """Appends one episode; returns its index.

        Args:
          episode: {feature key: [T, *shape] array}, every feature present, same T.
          task: the episode's task / natural-language instruction.
        """
        self._check_open()
        if not isinstance(task, str) or not task:
            raise ValueError(f"task must be a non-empty string, got {task!r}")
        columns = self._episode_columns(episode)
        length = len(next(iter(columns.values())))
        episode_index = len(self._episodes)
        first_frame = sum(e["length"] for e in self._episodes)
        task_index = self._tasks.setdefault(task, len(self._tasks))
        frame_index = np.arange(length, dtype=np.int64)
        bookkeeping = {
            "timestamp": pa.array((frame_index / self.fps).astype(np.float32)),
            "frame_index": pa.array(frame_index),
            "episode_index": pa.array(np.full(length, episode_index, np.int64)),
            "index": pa.array(first_frame + frame_index),
            "task_index": pa.array(np.full(length, task_index, np.int64)),
        }
        arrays = [self._arrow_column(key, columns[key]) for key in self.features]
        table = pa.Table.from_arrays([*arrays, *bookkeeping.values()], schema=self._schema)
        if self._file_writer is None or self._file_bytes >= self.data_file_bytes:
            self._start_data_file()
        self._file_writer.write_table(table, row_group_size=ROW_GROUP_FRAMES)
        self._file_bytes += table.nbytes
        chunk_index, file_index = divmod(self._file_number, fmt.CHUNKS_SIZE)
        self._episodes.append(
            {
                "episode_index": episode_index,
                "tasks": [task],
                "length": length,
                "data/chunk_index": chunk_index,
                "data/file_index": file_index,
                "dataset_from_index": first_frame,
                "dataset_to_index": first_frame + length,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
            }
        )
        for key in self._numeric:
            self._numeric[key].append(columns[key])
        for key in self._histograms:
            self._histograms[key].append(image_histogram(columns[key]))
        return episode_index

    def _training_stats(self, train: np.ndarray) -> dict:
        stats = {}
        for key, per_episode in self._numeric.items():
            values = np.concatenate([per_episode[e] for e in train])
            stats[key] = array_statistics(values)
        num_frames = sum(self._episodes[e]["length"] for e in train)
        for key, per_episode in self._histograms.items():
            stats[key] = histogram_statistics(sum(per_episode[e] for e in train), num_frames)
        return stats

    def _write_metadata(self) -> None:
        meta = self._temporary / "meta"
        episodes_path = self._temporary / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(self._episodes), episodes_path)
        tasks = pa.table(
            {
                "task_index": pa.array(list(self._tasks.values()), pa.int64()),
                fmt.TASK_TEXT_COLUMN: pa.array(list(self._tasks), pa.string()),
            }
        )
        pq.write_table(
            tasks.replace_schema_metadata(fmt.tasks_schema_metadata()), meta / "tasks.parquet"
        )
        splits = split_episodes(len(self._episodes), self.validation_fraction, self.split_seed)
        write_stats(self._temporary / fmt.STATS_PATH, self._training_stats(splits["train"]))
        total_frames = sum(e["length"] for e in self._episodes)
        info = {
            "codebase_version": fmt.CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self._episodes),
            "total_frames": total_frames,
            "total_tasks": len(self._tasks),
            "chunks_size": fmt.CHUNKS_SIZE,
            "data_files_size_in_mb": self.data_file_bytes / 2**20,
            "video_files_size_in_mb": 200,
            "fps": self.fps,
            "splits": {name: episodes.tolist() for name, episodes in splits.items()},
            "stats_split": "train",
            "data_path": fmt.DATA_PATH,
            "video_path": None,
            "features": {**self.features, **fmt.BOOKKEEPING_FEATURES},
        }
        (self._temporary / fmt.INFO_PATH).write_text(json.dumps(info, indent=4))

    def finalize(self) -> Path:
        """Writes the metadata and moves the dataset into place; returns its path."""
        self._check_open()
        try:
            if not self._episodes:
                raise ValueError(f"no episodes were added: refusing to write an empty {self.root}")
            self._file_writer.close()
            self._file_writer = None
            self._write_metadata()
            if self.root.exists():
                if not self.overwrite:
                    raise FileExistsError(f"{self.root} appeared while writing; not replaced")
                previous = self.root.with_name(f".{self.root.name}.replaced-{uuid.uuid4().hex}")
                os.replace(self.root, previous)
                os.replace(self._temporary, self.root)
                shutil.rmtree(previous)
            else:
                os.replace(self._temporary, self.root)
        except BaseException:
            self.abort()
            raise
        self._close()
        return self.root

    def _close(self) -> None:
        self._closed = True
        self._encoder.shutdown()

    def abort(self) -> None:
        """Discards everything written; `root` is left untouched."""
        if self._file_writer is not None:
            self._file_writer.close()
            self._file_writer = None
        shutil.rmtree(self._temporary, ignore_errors=True)
        self._close()

"""Reading LeRobot v3.0 datasets (image mode): our demonstrations and LeRobot's own datasets.

Book 16.3. `LeRobotReader` reads the layout documented in `core.data.format`. It verifies the
dataset when opened (metadata, every data file's footer and columns, the first frame of each
camera) and streams on read: vector features are read one column of one data file at a time,
images one parquet row group (32 frames) at a time, and only the requested frames are decoded.
Encoded row groups, columns and decoded frames share one least-recently-used cache of bounded
size, so a dataset larger than memory works, and one that fits is decoded only once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.data import format as fmt
from core.data.cache import ByteBoundedCache
from core.data.reader import EpisodeReader
from core.data.splits import parse_splits
from core.data.stats import read_stats

EPISODE_COLUMNS = (
    "episode_index",
    "tasks",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
)


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: not a complete dataset (an interrupted write leaves none)"
        )
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def _open_parquet(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path}: not a readable parquet file ({error})") from error


def _read_columns(path: Path, columns: tuple[str, ...]) -> dict[str, list]:
    """Whole columns of a small (metadata) parquet file as Python lists."""
    with _open_parquet(path) as parquet:
        missing = [c for c in columns if c not in parquet.schema_arrow.names]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        try:
            return parquet.read(columns=list(columns)).to_pydict()
        except (pa.ArrowException, OSError) as error:
            raise ValueError(f"{path}: unreadable ({error})") from error


def _column_matches(column_type: pa.DataType, spec: Mapping) -> bool:
    expected = fmt.arrow_type(spec)
    if fmt.is_image(spec):
        return pa.types.is_struct(column_type) and column_type.get_field_index("bytes") >= 0
    if pa.types.is_fixed_size_list(expected):
        return (
            pa.types.is_fixed_size_list(column_type)
            and column_type.list_size == expected.list_size
            and column_type.value_type == expected.value_type
        )
    return column_type == expected


class _DataFile:
    """One data parquet file: its first global frame and row-group boundaries."""

    def __init__(self, path: Path, first_row: int, num_rows: int, features: Mapping):
        self.path = path
        self.parquet = _open_parquet(path)
        self.first_row = first_row
        metadata = self.parquet.metadata
        if metadata.num_rows != num_rows:
            raise ValueError(
                f"{path}: holds {metadata.num_rows} frames, the episode metadata {num_rows}"
            )
        schema = self.parquet.schema_arrow
        for key, spec in features.items():
            if key not in schema.names:
                raise ValueError(f"{path}: feature {key!r} has no column")
            if not _column_matches(schema.field(key).type, spec):
                raise ValueError(
                    f"{path}: column {key!r} has type {schema.field(key).type}, feature spec "
                    f"{spec['dtype']} {spec['shape']}"
                )
        group_rows = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(group_rows)]).astype(np.int64)
        self._lock = threading.Lock()

    def read(self, key: str, group: int | None = None) -> pa.ChunkedArray:
        """One column of the whole file, or of one row group; one thread at a time."""
        where = f"column {key!r}" if group is None else f"row group {group} of {key!r}"
        try:
            with self._lock:
                table = (
                    self.parquet.read(columns=[key])
                    if group is None
                    else self.parquet.read_row_group(group, columns=[key])
                )
        except (pa.ArrowException, OSError) as error:
            raise ValueError(f"{self.path}: {where} unreadable ({error})") from error
        return table.column(key)


def _decode_frame(data: bytes | None, spec: Mapping, where: str) -> np.ndarray:
    """One stored frame -> [H, W, 3] uint8, checked against the feature's shape."""
    if data is None:
        raise ValueError(f"{where}: no image bytes")
    image = fmt.decode_image(data, where=where)
    if list(image.shape) != spec["shape"]:
        raise ValueError(f"{where}: image of shape {list(image.shape)}, spec {spec['shape']}")
    return image


class LeRobotReader(EpisodeReader):
    """Reads a LeRobot v3.0 dataset (image mode) from local disk, streaming.

    An episode's instruction is the first of its tasks (LeRobot allows several per episode;
    our writer records one).

    Args:
      root: the dataset directory (holding meta/ and data/).
      cache_mb: bound on the memory holding read columns, encoded row groups and decoded
        frames.
    """

    def __init__(self, root: str | Path, *, cache_mb: float = 256.0):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such dataset directory")
        info_path = self.root / fmt.INFO_PATH
        info = _load_json(info_path)
        required = ("codebase_version", "fps", "features", "data_path", "total_episodes")
        missing = [key for key in required if key not in info]
        if missing:
            raise ValueError(f"{info_path}: missing keys {missing}")
        if info["codebase_version"] != fmt.CODEBASE_VERSION:
            raise ValueError(
                f"{info_path}: codebase_version {info['codebase_version']!r} is not supported, "
                f"expected {fmt.CODEBASE_VERSION!r} (convert older datasets with LeRobot)"
            )
        features = {k: v for k, v in info["features"].items() if k not in fmt.BOOKKEEPING_FEATURES}
        videos = [key for key, spec in features.items() if spec.get("dtype") == "video"]
        if videos:
            raise ValueError(
                f"{info_path}: video features {videos} are not supported (lossy mp4); "
                "record or convert the dataset in image mode (use_videos=False)"
            )
        tasks = self._read_tasks()
        episodes = self._read_episodes()
        lengths = np.asarray(episodes["length"], np.int64)
        self._check_episodes(episodes, lengths, info, info_path)
        task_numbers = {text: number for number, text in enumerate(tasks)}
        unknown = sorted({t[0] for t in episodes["tasks"] if t and t[0] not in task_numbers})
        if unknown or any(not t for t in episodes["tasks"]):
            raise ValueError(
                f"{self.root / fmt.EPISODES_DIR}: episodes name unknown tasks {unknown}"
            )
        stats_path = self.root / fmt.STATS_PATH
        super().__init__(
            source=str(info_path),
            features=features,
            fps=info["fps"],
            episode_lengths=lengths,
            tasks=tasks,
            episode_task_index=np.array([task_numbers[t[0]] for t in episodes["tasks"]]),
            stats=read_stats(stats_path) if stats_path.is_file() else None,
            stats_split=info.get("stats_split"),
            splits=parse_splits(info.get("splits", {}), len(lengths), source=str(info_path)),
        )
        self._open_data_files(info["data_path"], episodes)
        self._cache = ByteBoundedCache(int(cache_mb * 2**20))
        for key in self.camera_keys:  # a wrongly sized or undecodable camera fails now
            self.read(key, np.array([0]))

    @property
    def cached_bytes(self) -> int:
        """Bytes of columns, row groups and frames currently held in memory (<= cache_mb)."""
        return self._cache.bytes

    def _read_tasks(self) -> list[str]:
        path = self.root / fmt.TASKS_PATH
        with _open_parquet(path) as parquet:
            names = parquet.schema_arrow.names
        text_column = next((c for c in (fmt.TASK_TEXT_COLUMN, "task") if c in names), None)
        if text_column is None:
            raise ValueError(f"{path}: no task text column ({fmt.TASK_TEXT_COLUMN!r} or 'task')")
        table = _read_columns(path, ("task_index", text_column))
        order = np.argsort(table["task_index"])
        if not np.array_equal(np.asarray(table["task_index"])[order], np.arange(len(order))):
            raise ValueError(f"{path}: task_index must be 0..{len(order) - 1}")
        return [table[text_column][i] for i in order]

    def _read_episodes(self) -> dict[str, list]:
        directory = self.root / fmt.EPISODES_DIR
        paths = sorted(directory.glob("*/*.parquet"))
        if not paths:
            raise FileNotFoundError(f"{directory}: no episode metadata files")
        parts = [_read_columns(path, EPISODE_COLUMNS) for path in paths]
        episodes = {
            column: [v for part in parts for v in part[column]] for column in EPISODE_COLUMNS
        }
        order = np.argsort(episodes["episode_index"], kind="stable")
        return {column: [values[i] for i in order] for column, values in episodes.items()}

    def _check_episodes(self, episodes: dict, lengths: np.ndarray, info: dict, info_path) -> None:
        where = self.root / fmt.EPISODES_DIR
        if lengths.size == 0:
            raise ValueError(f"{where}: the dataset contains no episodes")
        if not np.array_equal(episodes["episode_index"], np.arange(len(lengths))):
            raise ValueError(f"{where}: episode_index must be 0..{len(lengths) - 1}")
        if len(lengths) != info["total_episodes"]:
            raise ValueError(
                f"{info_path}: total_episodes is {info['total_episodes']}, {where} lists "
                f"{len(lengths)} episodes"
            )
        starts = np.asarray(episodes["dataset_from_index"], np.int64)
        stops = np.asarray(episodes["dataset_to_index"], np.int64)
        bad = np.flatnonzero(stops - starts != lengths)
        if bad.size:
            raise ValueError(
                f"{where}: episode {bad[0]} has length {lengths[bad[0]]} but frames "
                f"[{starts[bad[0]]}, {stops[bad[0]]})"
            )
        if starts[0] != 0 or np.any(starts[1:] != stops[:-1]):
            raise ValueError(f"{where}: episodes' frame ranges are not contiguous from 0")

    def _open_data_files(self, data_path: str, episodes: dict) -> None:
        locations = list(
            zip(episodes["data/chunk_index"], episodes["data/file_index"], strict=True)
        )
        self._files: list[_DataFile] = []
        self._episode_file = np.empty(self.num_episodes, np.int64)
        for location in dict.fromkeys(locations):
            members = np.flatnonzero([loc == location for loc in locations])
            if np.any(np.diff(members) != 1):
                raise ValueError(f"{data_path} {location}: its episodes are not consecutive")
            chunk_index, file_index = location
            path = self.root / data_path.format(chunk_index=chunk_index, file_index=file_index)
            first_row = int(self.episode_starts[members[0]])
            num_rows = int(self.episode_lengths[members].sum())
            self._episode_file[members] = len(self._files)
            self._files.append(_DataFile(path, first_row, num_rows, self.features))

    def _column(self, file_number: int, key: str) -> np.ndarray:
        """A vector feature's whole column in one data file: [rows, D] (small, read at once)."""
        data_file = self._files[file_number]
        spec = self.features[key]

        def load():
            column = data_file.read(key).combine_chunks()
            values = column.flatten() if pa.types.is_fixed_size_list(column.type) else column
            array = values.to_numpy(zero_copy_only=False).reshape(-1, *spec["shape"])
            array = array.astype(spec["dtype"], copy=False)
            return array, array.nbytes

        return self._cache.get((file_number, key), load)

    def _frame(self, file_number: int, file_row: int, key: str) -> np.ndarray:
        """One decoded camera frame, [H, W, 3] uint8."""
        data_file = self._files[file_number]
        group = int(np.searchsorted(data_file.group_starts, file_row, side="right") - 1)

        def load_group():
            encoded = data_file.read(key, group).combine_chunks().field("bytes")
            return encoded, encoded.nbytes

        def load_frame():
            encoded = self._cache.get((file_number, key, "group", group), load_group)
            data = encoded[file_row - data_file.group_starts[group]].as_py()
            where = f"{data_file.path}: {key!r} frame {data_file.first_row + file_row}"
            frame = _decode_frame(data, self.features[key], where)
            return frame, frame.nbytes

        return self._cache.get((file_number, key, "frame", file_row), load_frame)

    def _read(self, key: str, rows: np.ndarray) -> np.ndarray:
        spec = self.features[key]
        image = fmt.is_image(spec)
        output = np.empty((len(rows), *spec["shape"]), np.uint8 if image else spec["dtype"])
        episodes = np.searchsorted(self.episode_starts, rows, side="right") - 1
        file_numbers = self._episode_file[episodes]
        for file_number in np.unique(file_numbers):
            data_file = self._files[file_number]
            in_file = np.flatnonzero(file_numbers == file_number)
            file_rows = rows[in_file] - data_file.first_row
            if image:
                for out, file_row in zip(in_file, file_rows, strict=True):
                    output[out] = self._frame(int(file_number), int(file_row), key)
            else:
                output[in_file] = self._column(int(file_number), key)[file_rows]
        return output

    def close(self) -> None:
        for data_file in self._files:
            data_file.parquet.close()

"""The on-disk episode dataset: the LeRobot v3.0 layout, and its feature specification.

Book 16.3: a demonstration is a trajectory of observations o_t and actions a_t; a dataset is a
set of such episodes. We store them in the layout LeRobot 0.4 (codebase "v3.0") writes in image
mode, so one reader serves our demonstrations and LeRobot datasets, LeRobot loads ours, and
anyone can read them with pyarrow and PIL alone:

  <root>/
    meta/info.json          codebase_version "v3.0", fps, robot_type, features (below),
                            total_episodes, total_frames, total_tasks, chunks_size,
                            data_path (a format string, below), video_path null,
                            splits {"train": [episode indices], "validation": [...]} and
                            stats_split "train" (ours: meta/stats.json covers that split)
    meta/stats.json         {feature: {min, max, mean, std, count, q01, q10, q50, q90, q99}},
                            nested lists; image statistics per channel on the [0, 1] scale,
                            shape [3, 1, 1]
    meta/tasks.parquet      one row per task: task_index (int64) and the task text in the
                            pandas index column "__index_level_0__", rows in task_index order
    meta/episodes/chunk-000/file-000.parquet
                            one row per episode: episode_index, tasks (list<string>), length,
                            data/chunk_index, data/file_index, dataset_from_index,
                            dataset_to_index (global frame range [from, to)),
                            meta/episodes/chunk_index, meta/episodes/file_index
                            (LeRobot adds per-episode "stats/..." columns; we write none, and
                            LeRobot's loader does not need them)
    data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet
                            one row per frame, episodes in order, an episode never split
                            across files, row groups of 32 frames (what a reader loads to
                            fetch one frame); a file holds up to ~`data_file_size_mb` and a
                            chunk folder up to `chunks_size` files. Columns:
                              <vector feature>   fixed_size_list<float32/...>[D]
                              <scalar feature>   (shape [1]) a plain float32/int64/bool column
                              <image feature>    struct<bytes: binary (PNG), path: string>
                              timestamp float32 (frame_index / fps), frame_index int64,
                              episode_index int64, index int64 (global frame index),
                              task_index int64

Features follow LeRobot's `info.json` convention, one entry per per-frame array:
  {"observation.state": {"dtype": "float32", "shape": [Ds], "names": [...]},
   "observation.images.top": {"dtype": "image", "shape": [H, W, 3],
                              "names": ["height", "width", "channels"]},
   "action": {"dtype": "float32", "shape": [Da], "names": [...]}}
dtypes: float32, float64, int32, int64, bool (shape [D] or [1]) and image (uint8 [H, W, 3]
stored as lossless PNG). The bookkeeping columns (timestamp, frame_index, episode_index, index,
task_index) are added by the writer. Video features (LeRobot's lossy mp4 mode) are not written
and are rejected by our reader.

A dataset is complete exactly when `meta/info.json` exists at its root: the writer builds it in
a hidden temporary sibling directory and renames it into place as its last step.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
CHUNKS_SIZE = 1000
TASK_TEXT_COLUMN = "__index_level_0__"
IMAGE_NAMES = ["height", "width", "channels"]

VECTOR_DTYPES = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
}
IMAGE_DTYPE = "image"
IMAGE_ARROW_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

BOOKKEEPING_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


def is_image(spec: Mapping) -> bool:
    """Whether a feature spec describes camera frames (uint8 [H, W, 3])."""
    return spec["dtype"] == IMAGE_DTYPE


def validate_features(features: Mapping[str, Mapping], *, source: str) -> dict[str, dict]:
    """Checks a feature specification and returns a normalized copy (shapes as int lists).

    Args:
      features: {key: {"dtype", "shape", "names"}} for the per-frame data arrays, without the
        bookkeeping columns.
      source: where the specification comes from (a file or "features"), named in errors.

    Raises:
      ValueError naming the source, the key and the bad entry.
    """
    if not features:
        raise ValueError(f"{source}: the feature specification is empty")
    checked = {}
    for key, spec in features.items():
        where = f"{source}: feature {key!r}"
        if "/" in key:
            raise ValueError(f"{where}: names may not contain '/' (LeRobot reserves it)")
        if key in BOOKKEEPING_FEATURES:
            raise ValueError(f"{where} is a bookkeeping column the writer adds itself")
        missing = {"dtype", "shape"} - set(spec)
        if missing:
            raise ValueError(f"{where} lacks the entries {sorted(missing)}")
        dtype = spec["dtype"]
        shape = spec["shape"]
        if not (
            isinstance(shape, list | tuple)
            and shape
            and all(isinstance(d, int | np.integer) and d > 0 for d in shape)
        ):
            raise ValueError(f"{where}: shape must be a list of positive ints, got {shape!r}")
        shape = [int(d) for d in shape]
        if dtype == IMAGE_DTYPE:
            if len(shape) != 3 or shape[2] != 3:
                raise ValueError(f"{where}: an image has shape [H, W, 3], got {shape}")
        elif dtype in VECTOR_DTYPES:
            if len(shape) != 1:
                raise ValueError(f"{where}: a {dtype} feature has shape [D], got {shape}")
        else:
            known = sorted([*VECTOR_DTYPES, IMAGE_DTYPE])
            raise ValueError(f"{where}: unsupported dtype {dtype!r}, expected one of {known}")
        names = spec.get("names")
        checked[key] = {"dtype": dtype, "shape": shape, "names": names}
    return checked


def arrow_type(spec: Mapping) -> pa.DataType:
    """The parquet column type of a feature: scalar for shape [1], fixed-size list otherwise."""
    if is_image(spec):
        return IMAGE_ARROW_TYPE
    element = VECTOR_DTYPES[spec["dtype"]]
    (size,) = spec["shape"]
    return element if size == 1 else pa.list_(element, size)


def _huggingface_feature(spec: Mapping) -> dict:
    if is_image(spec):
        return {"_type": "Image"}
    value = {"dtype": spec["dtype"], "_type": "Value"}
    (size,) = spec["shape"]
    return value if size == 1 else {"feature": value, "length": size, "_type": "List"}


def huggingface_schema_metadata(features: Mapping[str, Mapping]) -> dict[bytes, bytes]:
    """The parquet schema metadata Hugging Face `datasets` uses to decode columns (images)."""
    described = {key: _huggingface_feature(spec) for key, spec in features.items()}
    return {b"huggingface": json.dumps({"info": {"features": described}}).encode()}


def tasks_schema_metadata() -> dict[bytes, bytes]:
    """pandas metadata marking the task text column as the index, as LeRobot writes it."""
    pandas_metadata = {
        "index_columns": [TASK_TEXT_COLUMN],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": TASK_TEXT_COLUMN,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
    }
    return {b"pandas": json.dumps(pandas_metadata).encode()}


def data_file_path(root: Path, chunk_index: int, file_index: int) -> Path:
    """The path of a data parquet file (`DATA_PATH` filled in)."""
    return root / DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """image: [H, W, 3] uint8 -> PNG bytes (lossless; level 1 as LeRobot's image writer)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def decode_image(data: bytes, *, where: str) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, ...) -> [H, W, 3] uint8 RGB.

    Raises:
      ValueError naming `where` (file, key and row) if the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{where}: the image bytes do not decode ({error})") from error

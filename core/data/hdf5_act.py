"""Reading ACT-style HDF5 episodes (the original ACT / ALOHA recording format).

Book 17 trains ACT on demonstrations recorded this way. A directory holds one file per episode,
`episode_<i>.hdf5` (ordered by i), laid out as ACT's `record_sim_episodes.py` writes it:

  /observations/qpos            [T, Dq] joint positions (float32 in sim, float64 on ALOHA)
  /observations/qvel            [T, Dq] joint velocities (optional)
  /observations/effort          [T, Dq] joint efforts (optional, real ALOHA)
  /observations/images/<cam>    [T, H, W, 3] uint8 RGB, possibly with an HDF5 filter (gzip)
  /action                       [T, Da] commanded joint positions
  attribute "sim"               True for simulated episodes

ALOHA's recorder can instead store each frame JPEG-encoded by OpenCV (root attribute
`compress` True): image datasets are then [T, L] uint8 zero-padded JPEG bytes. OpenCV encodes
the array as if its channels were BGR, so the decoded JPEG's channels are reversed back to give
the array that was recorded, exactly as `cv2.imdecode` returns it.

Keys map to ours: qpos -> observation.state, qvel -> observation.velocity, effort ->
observation.effort, images/<cam> -> observation.images.<cam>, action -> action, all vectors as
float32. The files carry no instruction: every episode gets the `task` text given to the reader.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np

from core.data import format as fmt
from core.data.reader import EpisodeReader

EPISODE_FILE = re.compile(r"episode_(\d+)\.hdf5")
KEY_MAP = {
    "/observations/qpos": "observation.state",
    "/observations/qvel": "observation.velocity",
    "/observations/effort": "observation.effort",
    "/action": "action",
}
REQUIRED_KEYS = ("/observations/qpos", "/action")
IMAGES_GROUP = "/observations/images"


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 file ({error})") from error


def _decode_jpeg(data: np.ndarray, *, where: str) -> np.ndarray:
    """Zero-padded OpenCV JPEG bytes -> the recorded [H, W, 3] uint8 array (cv2.imdecode)."""
    return fmt.decode_image(data.tobytes(), where=where)[..., ::-1]


def _inspect(path: Path) -> tuple[dict, int, bool]:
    """{our key: (HDF5 key, feature spec)}, the episode length and JPEG flag of one file."""
    with _open(path) as root:
        missing = [key for key in REQUIRED_KEYS if key not in root]
        if missing:
            raise ValueError(f"{path}: missing datasets {missing}")
        compressed = bool(root.attrs.get("compress", False))
        length = root["/observations/qpos"].shape[0]
        features = {}
        hdf5_keys = [k for k in KEY_MAP if k in root]
        cameras = sorted(root[IMAGES_GROUP]) if IMAGES_GROUP in root else []
        hdf5_keys += [f"{IMAGES_GROUP}/{camera}" for camera in cameras]
        for hdf5_key in hdf5_keys:
            dataset = root[hdf5_key]
            if dataset.shape[0] != length:
                raise ValueError(
                    f"{path}: {hdf5_key} has {dataset.shape[0]} steps, /observations/qpos {length}"
                )
            if hdf5_key in KEY_MAP:
                if dataset.ndim != 2:
                    raise ValueError(f"{path}: {hdf5_key} must be [T, D], got {dataset.shape}")
                spec = {"dtype": "float32", "shape": [dataset.shape[1]], "names": None}
                features[KEY_MAP[hdf5_key]] = (hdf5_key, spec)
                continue
            if dataset.dtype != np.uint8:
                raise ValueError(f"{path}: {hdf5_key} must be uint8, got {dataset.dtype}")
            if compressed and dataset.ndim == 2:
                shape = list(_decode_jpeg(dataset[0], where=f"{path}: {hdf5_key}[0]").shape)
            elif not compressed and dataset.ndim == 4 and dataset.shape[3] == 3:
                shape = list(dataset.shape[1:])
            else:
                expected = "[T, L] JPEG bytes" if compressed else "[T, H, W, 3]"
                raise ValueError(f"{path}: {hdf5_key} must be {expected}, got {dataset.shape}")
            camera = hdf5_key.rsplit("/", 1)[1]
            spec = {"dtype": "image", "shape": shape, "names": fmt.IMAGE_NAMES}
            features[f"observation.images.{camera}"] = (hdf5_key, spec)
    return features, length, compressed


class ACTHDF5Reader(EpisodeReader):
    """Reads a directory of ACT-style `episode_<i>.hdf5` files.

    Args:
      directory: the folder holding the episode files.
      fps: control rate (ACT's simulated tasks and ALOHA run at 50 Hz).
      task: the instruction of every episode; default the directory name.
      max_open_files: HDF5 files kept open at once.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        fps: float = 50.0,
        task: str | None = None,
        max_open_files: int = 32,
    ):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"{self.directory}: no such directory")
        numbered = []
        for path in self.directory.iterdir():
            match = EPISODE_FILE.fullmatch(path.name)
            if match:
                numbered.append((int(match.group(1)), path))
        if not numbered:
            raise FileNotFoundError(f"{self.directory}: no episode_<i>.hdf5 files")
        self.paths = [path for _, path in sorted(numbered)]
        features, lengths = None, []
        for path in self.paths:
            file_features, length, compressed = _inspect(path)
            if features is not None and (file_features, compressed) != (features, self.compressed):
                raise ValueError(
                    f"{path}: keys, shapes or JPEG compression ({file_features}, compress="
                    f"{compressed}) differ from {self.paths[0]}'s ({features}, compress="
                    f"{self.compressed})"
                )
            features, self.compressed = file_features, compressed
            lengths.append(length)
        super().__init__(
            source=str(self.directory),
            features={key: spec for key, (_, spec) in features.items()},
            fps=fps,
            episode_lengths=np.array(lengths),
            tasks=[task or self.directory.name],
            episode_task_index=np.zeros(len(lengths), np.int64),
        )
        self._hdf5_keys = {key: hdf5_key for key, (hdf5_key, _) in features.items()}
        self._max_open_files = max_open_files
        self._open_files: OrderedDict[int, h5py.File] = OrderedDict()
        self._lock = threading.Lock()

    def _file(self, episode: int) -> h5py.File:
        """The open file of an episode (the caller holds the lock)."""
        if episode in self._open_files:
            self._open_files.move_to_end(episode)
        else:
            self._open_files[episode] = _open(self.paths[episode])
            if len(self._open_files) > self._max_open_files:
                _, oldest = self._open_files.popitem(last=False)
                oldest.close()
        return self._open_files[episode]

    def _read(self, key: str, rows: np.ndarray) -> np.ndarray:
        spec = self.features[key]
        image = fmt.is_image(spec)
        output = np.empty((len(rows), *spec["shape"]), np.uint8 if image else np.float32)
        hdf5_key = self._hdf5_keys[key]
        episodes = np.searchsorted(self.episode_starts, rows, side="right") - 1
        for episode in np.unique(episodes):
            selected = np.flatnonzero(episodes == episode)
            steps = rows[selected] - self.episode_starts[episode]
            unique_steps, inverse = np.unique(steps, return_inverse=True)
            path = self.paths[episode]
            try:
                with self._lock:  # h5py serializes reads anyway; the file must stay open
                    values = self._file(int(episode))[hdf5_key][unique_steps]
            except (OSError, KeyError) as error:
                raise ValueError(f"{path}: {hdf5_key} unreadable ({error})") from error
            if image and self.compressed:
                values = np.stack(
                    [
                        _decode_jpeg(frame, where=f"{path}: {hdf5_key}[{step}]")
                        for frame, step in zip(values, unique_steps, strict=True)
                    ]
                )
            if values.shape[1:] != output.shape[1:]:
                raise ValueError(f"{path}: {hdf5_key} frames of shape {values.shape[1:]}")
            output[selected] = values[inverse]
        return output

    def close(self) -> None:
        with self._lock:
            for handle in self._open_files.values():
                handle.close()
            self._open_files.clear()

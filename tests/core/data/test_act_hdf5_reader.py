"""ACTHDF5Reader on files h5py writes in the layout of ACT's record_sim_episodes.py."""

import io

import h5py
import numpy as np
import pytest
from PIL import Image

from core.data.hdf5_act import ACTHDF5Reader
from core.data.sampler import ChunkSampler

CAMERAS = ("top", "angle")
IMAGE_SHAPE = (6, 10, 3)


def write_act_episode(path, length, generator, *, gzip=False, cameras=CAMERAS, qvel=True):
    """One episode as ACT writes it: float32 datasets by default, one chunk per frame."""
    episode = {
        "qpos": generator.standard_normal((length, 14)).astype(np.float32),
        "qvel": generator.standard_normal((length, 14)).astype(np.float32),
        "action": generator.standard_normal((length, 14)).astype(np.float32),
        "images": {
            c: generator.integers(0, 256, (length, *IMAGE_SHAPE), np.uint8) for c in cameras
        },
    }
    compression = {"compression": "gzip", "compression_opts": 2} if gzip else {}
    with h5py.File(path, "w", rdcc_nbytes=1024**2 * 2) as root:
        root.attrs["sim"] = True
        observations = root.create_group("observations")
        images = observations.create_group("images")
        for camera in cameras:
            images.create_dataset(
                camera,
                (length, *IMAGE_SHAPE),
                dtype="uint8",
                chunks=(1, *IMAGE_SHAPE),
                **compression,
            )
            root[f"/observations/images/{camera}"][...] = episode["images"][camera]
        observations.create_dataset("qpos", (length, 14), dtype="f4")  # ACT's implicit default
        if qvel:
            observations.create_dataset("qvel", (length, 14), dtype="f4")
        root.create_dataset("action", (length, 14), dtype="f4")
        root["/observations/qpos"][...] = episode["qpos"]
        if qvel:
            root["/observations/qvel"][...] = episode["qvel"]
        root["/action"][...] = episode["action"]
    return episode


@pytest.fixture
def act_directory(tmp_path):
    generator = np.random.default_rng(0)
    directory = tmp_path / "sim_transfer_cube_scripted"
    directory.mkdir()
    lengths = {0: 7, 1: 5, 2: 9, 10: 6}  # episode_10 sorts after episode_2
    episodes = [
        write_act_episode(directory / f"episode_{i}.hdf5", n, generator, gzip=i == 2)
        for i, n in lengths.items()
    ]
    return directory, episodes


def test_act_episodes_map_to_our_keys_exactly_in_numeric_file_order(act_directory):
    directory, episodes = act_directory
    with ACTHDF5Reader(directory) as reader:
        np.testing.assert_array_equal(reader.episode_lengths, [7, 5, 9, 6])
        assert reader.instruction(3) == "sim_transfer_cube_scripted"
        assert reader.fps == 50.0
        assert sorted(reader.features) == [
            "action",
            "observation.images.angle",
            "observation.images.top",
            "observation.state",
            "observation.velocity",
        ]
        for index, episode in enumerate(episodes):
            read = reader.episode(index)
            np.testing.assert_array_equal(read["observation.state"], episode["qpos"])
            np.testing.assert_array_equal(read["observation.velocity"], episode["qvel"])
            np.testing.assert_array_equal(read["action"], episode["action"])
            for camera in CAMERAS:
                np.testing.assert_array_equal(
                    read[f"observation.images.{camera}"], episode["images"][camera]
                )


def test_act_reader_serves_the_chunk_sampler(act_directory):
    directory, episodes = act_directory
    reader = ACTHDF5Reader(directory)
    sampler = ChunkSampler(
        reader, [0, 1, 2, 3], batch_size=4, observation_horizon=1, action_horizon=5
    )
    batch = sampler.batch(0)
    episode_ids, times = sampler.sample_indices(0)
    for row, (e, t) in enumerate(zip(episode_ids, times, strict=True)):
        expected = episodes[e]["images"]["top"][t]
        np.testing.assert_array_equal(batch["observation.images.top"][row, 0], expected)


def _encode_with_opencv(frame):
    cv2 = pytest.importorskip("cv2")
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]


def _encode_like_opencv_with_pil(frame):
    # OpenCV reads the array's channels as B, G, R: the JPEG holds the reversed channels
    buffer = io.BytesIO()
    Image.fromarray(frame[..., ::-1]).save(buffer, format="JPEG", quality=95)
    return np.frombuffer(buffer.getvalue(), np.uint8)


@pytest.mark.parametrize("encode", [_encode_with_opencv, _encode_like_opencv_with_pil])
def test_act_jpeg_episodes_decode_to_the_recorded_array(tmp_path, encode):
    # ALOHA's compressed layout: [T, L] zero-padded JPEG bytes, root attribute compress=True
    length = 4
    ramp = np.linspace(0, 255, IMAGE_SHAPE[1])
    smooth = np.stack([np.tile(ramp, (IMAGE_SHAPE[0], 1)) * s for s in (1.0, 0.5, 0.1)], -1)
    noise = np.random.default_rng(1).normal(0, 2, (length, *IMAGE_SHAPE))
    frames = np.clip(smooth[None] + noise, 0, 255).astype(np.uint8)
    encoded = [encode(frame) for frame in frames]
    padded = np.zeros((length, max(len(e) for e in encoded) + 7), np.uint8)
    for t, data in enumerate(encoded):
        padded[t, : len(data)] = data
    with h5py.File(tmp_path / "episode_0.hdf5", "w") as root:
        root.attrs["sim"] = False
        root.attrs["compress"] = True
        root.create_dataset("/observations/qpos", data=np.zeros((length, 14)))
        root.create_dataset("/action", data=np.zeros((length, 14)))
        root.create_dataset("/observations/images/cam_high", data=padded)
        root.create_dataset("compress_len", data=[[len(e) for e in encoded]])
    with ACTHDF5Reader(tmp_path) as reader:
        assert reader.features["observation.images.cam_high"]["shape"] == list(IMAGE_SHAPE)
        read = reader.read("observation.images.cam_high", np.arange(length))
    # JPEG (chroma subsampled, noisy 6x10 frames) is off by a few levels; swapped channels
    # would be off by about a hundred
    assert np.abs(read.astype(int) - frames).mean() < 5.0
    assert np.abs(read[..., ::-1].astype(int) - frames).mean() > 50.0


def test_inconsistent_lengths_name_the_file_and_dataset(tmp_path):
    write_act_episode(tmp_path / "episode_0.hdf5", 5, np.random.default_rng(2))
    with h5py.File(tmp_path / "episode_0.hdf5", "a") as root:
        del root["/action"]
        root.create_dataset("/action", data=np.zeros((4, 14), np.float32))
    with pytest.raises(ValueError, match=r"episode_0\.hdf5: /action has 4 steps"):
        ACTHDF5Reader(tmp_path)


def test_missing_dataset_names_the_file_and_key(tmp_path):
    write_act_episode(tmp_path / "episode_0.hdf5", 5, np.random.default_rng(3))
    with h5py.File(tmp_path / "episode_0.hdf5", "a") as root:
        del root["/action"]
    with pytest.raises(ValueError, match=r"episode_0\.hdf5: missing datasets \['/action'\]"):
        ACTHDF5Reader(tmp_path)


def test_files_with_different_cameras_are_rejected(tmp_path):
    generator = np.random.default_rng(4)
    write_act_episode(tmp_path / "episode_0.hdf5", 5, generator)
    write_act_episode(tmp_path / "episode_1.hdf5", 5, generator, cameras=("top",))
    with pytest.raises(ValueError, match=r"episode_1\.hdf5: keys, shapes"):
        ACTHDF5Reader(tmp_path)


def test_corrupt_or_absent_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no episode_<i>\.hdf5 files"):
        ACTHDF5Reader(tmp_path)
    (tmp_path / "episode_0.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"episode_0\.hdf5: not a readable HDF5 file"):
        ACTHDF5Reader(tmp_path)

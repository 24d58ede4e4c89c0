"""Live check against LeRobot (runs where lerobot is installed, e.g. the parity venv):

    PYTHONPATH=. /work/parity-venv/bin/python -m pytest tests/core/data/test_lerobot_compat.py

LeRobot's own `LeRobotDataset` loads what our writer wrote (image mode) and returns the same
frames, tasks, and, through its delta-timestamp queries, the same observation windows, action
chunks and padding flags as our ChunkSampler.
"""

import importlib.util

import numpy as np
import pytest
from dataset_builders import FPS, make_episode, write_dataset

from core.data.lerobot import LeRobotReader
from core.data.sampler import ChunkSampler
from experiments.parity.common import import_torchvision

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lerobot") is None, reason="needs lerobot (the parity venv)"
)

OBSERVATION_HORIZON = 2
ACTION_HORIZON = 5


def test_lerobot_loads_our_dataset_and_agrees_with_our_sampler(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # LeRobot's Arrow cache; no network
    import_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, _, tasks = dataset
    delta_timestamps = {
        "observation.state": [-i / FPS for i in reversed(range(OBSERVATION_HORIZON))],
        "observation.images.front": [-i / FPS for i in reversed(range(OBSERVATION_HORIZON))],
        "action": [j / FPS for j in range(ACTION_HORIZON)],
    }
    theirs = LeRobotDataset("local/ours", root=root, delta_timestamps=delta_timestamps)
    reader = LeRobotReader(root)
    episodes = np.arange(reader.num_episodes)
    sampler = ChunkSampler(
        reader,
        episodes,
        batch_size=reader.num_frames,  # one batch: every frame of every episode
        observation_horizon=OBSERVATION_HORIZON,
        action_horizon=ACTION_HORIZON,
    )
    ours = sampler.batch(0)
    assert len(theirs) == reader.num_frames and theirs.num_episodes == reader.num_episodes
    for row, (e, t) in enumerate(zip(*sampler.sample_indices(0), strict=True)):
        item = theirs[int(reader.episode_starts[e] + t)]
        assert item["task"] == tasks[e]
        np.testing.assert_array_equal(item["action"].numpy(), ours["action"][row])
        np.testing.assert_array_equal(item["action_is_pad"].numpy(), ours["action_is_pad"][row])
        np.testing.assert_array_equal(
            item["observation.state"].numpy(), ours["observation.state"][row]
        )
        images = np.round(item["observation.images.front"].numpy() * 255).astype(np.uint8)
        np.testing.assert_array_equal(
            images.transpose(0, 2, 3, 1), ours["observation.images.front"][row]
        )


def test_lerobot_reads_a_dataset_spread_over_several_data_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    generator = np.random.default_rng(0)
    episodes = [make_episode(generator, length) for length in (4, 6, 5)]
    root = write_dataset(tmp_path / "d", episodes, ["a", "b", "a"], data_file_size_mb=1e-6)
    assert len(list((root / "data/chunk-000").iterdir())) == 3
    theirs = LeRobotDataset("local/rolled", root=root)
    actions = np.concatenate([e["action"] for e in episodes])
    np.testing.assert_array_equal(
        np.stack([theirs[i]["action"].numpy() for i in range(15)]), actions
    )
    assert [theirs[i]["task"] for i in (0, 4, 10)] == ["a", "b", "a"]

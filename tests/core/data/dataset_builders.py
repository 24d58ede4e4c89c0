"""Builders shared by the dataset tests: small random episodes and datasets written from them."""

from pathlib import Path

import numpy as np

from core.data.writer import DatasetWriter

LEROBOT_FIXTURE = Path(__file__).parents[2] / "fixtures" / "lerobot_tiny"
"""Written by LeRobot itself: `python -m experiments.parity.lerobot_dataset`."""

FPS = 20
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
    "observation.images.front": {
        "dtype": "image",
        "shape": [6, 8, 3],
        "names": ["height", "width", "channels"],
    },
    "observation.images.wrist": {
        "dtype": "image",
        "shape": [4, 5, 3],
        "names": ["height", "width", "channels"],
    },
    "action": {"dtype": "float32", "shape": [2], "names": ["vx", "vy"]},
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
    "next.success": {"dtype": "bool", "shape": [1], "names": None},
}
LENGTHS = (7, 12, 5, 9, 6, 10)
TASKS = ("go to the red target", "go to the blue target", "go to the red target")


def make_episode(generator: np.random.Generator, length: int, offset: float = 0.0) -> dict:
    """One random episode of the FEATURES layout; `offset` shifts its state and action."""
    return {
        "observation.state": (generator.standard_normal((length, 3)) + offset).astype(np.float32),
        "observation.images.front": generator.integers(0, 256, (length, 6, 8, 3), np.uint8),
        "observation.images.wrist": generator.integers(0, 256, (length, 4, 5, 3), np.uint8),
        "action": (generator.uniform(-1, 1, (length, 2)) + offset).astype(np.float32),
        "next.reward": generator.uniform(0, 1, length).astype(np.float32),
        "next.success": np.arange(length) == length - 1,
    }


def write_dataset(root, episodes, tasks, **writer_options):
    with DatasetWriter(root, fps=FPS, features=FEATURES, **writer_options) as writer:
        for episode, task in zip(episodes, tasks, strict=True):
            writer.add_episode(episode, task=task)
    return root

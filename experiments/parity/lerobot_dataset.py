"""Writes the tiny LeRobot-format fixture dataset with LeRobot's own writer (`parity` extra).

    PYTHONPATH=. /work/parity-venv/bin/python -m experiments.parity.lerobot_dataset

Rolls `fixture_episodes()` (seeded, importable without LeRobot) through lerobot 0.4.4's
`LeRobotDataset.create / add_frame / save_episode / finalize` in image mode and puts the result
in `tests/fixtures/lerobot_tiny/` (~70 KB). The tests read it with `core.data.LeRobotReader`
and compare against `fixture_episodes()` exactly, and LeRobot's stored statistics against ours.

Scalar (shape [1]) features are left out: lerobot 0.4.4 cannot write them beside numpy 2.4
(`datasets` calls float() on the [1]-shaped array add_frame insists on).

A dataset directory, not arrays: this module has `main()` instead of the `generate()` of the
other parity scripts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from experiments.parity.common import import_torchvision

FIXTURE_DIR = Path("tests/fixtures/lerobot_tiny")
FPS = 10
IMAGE_SHAPE = (12, 16, 3)
EPISODE_LENGTHS = (6, 9, 5)
TASKS = ("go to the red target", "go to the blue target", "go to the red target")
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": (4,), "names": ["x", "y", "vx", "vy"]},
    "observation.images.top": {
        "dtype": "image",
        "shape": IMAGE_SHAPE,
        "names": ["height", "width", "channels"],
    },
    "action": {"dtype": "float32", "shape": (3,), "names": ["ax", "ay", "gripper"]},
}


def fixture_episodes() -> list[tuple[dict[str, np.ndarray], str]]:
    """The fixture's episodes as ({feature: [T, *shape]}, task), from a fixed seed."""
    generator = np.random.default_rng(20260401)
    episodes = []
    for length, task in zip(EPISODE_LENGTHS, TASKS, strict=True):
        episode = {
            "observation.state": generator.standard_normal((length, 4)).astype(np.float32),
            "observation.images.top": generator.integers(
                0, 256, (length, *IMAGE_SHAPE), dtype=np.uint8
            ),
            "action": generator.uniform(-1, 1, (length, 3)).astype(np.float32),
        }
        episodes.append((episode, task))
    return episodes


def write_with_lerobot(root: Path) -> None:
    """Writes `fixture_episodes()` to `root` with LeRobot's dataset writer (image mode)."""
    import_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset.create(
        "local/lerobot_tiny", fps=FPS, features=FEATURES, root=root, use_videos=False
    )
    for episode, task in fixture_episodes():
        for t in range(len(episode["action"])):
            dataset.add_frame({**{key: value[t] for key, value in episode.items()}, "task": task})
        dataset.save_episode()
    dataset.finalize()


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["HF_HOME"] = str(Path(scratch) / "hf")  # LeRobot caches here: no network
        staging = Path(scratch) / "lerobot_tiny"
        write_with_lerobot(staging)
        shutil.rmtree(FIXTURE_DIR, ignore_errors=True)
        shutil.copytree(staging, FIXTURE_DIR)
    size_kb = sum(f.stat().st_size for f in FIXTURE_DIR.rglob("*") if f.is_file()) / 1024
    print(f"lerobot_dataset: {FIXTURE_DIR} ({size_kb:.0f} KiB)")


if __name__ == "__main__":
    main()

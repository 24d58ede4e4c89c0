"""The dataset tests' shared fixture: a small dataset written once per test module."""

import numpy as np
import pytest
from dataset_builders import LENGTHS, TASKS, make_episode, write_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(root, episodes, tasks) of a 6-episode dataset with a 2-episode validation split."""
    generator = np.random.default_rng(0)
    episodes = [make_episode(generator, length) for length in LENGTHS]
    tasks = [TASKS[i % len(TASKS)] for i in range(len(LENGTHS))]
    root = tmp_path_factory.mktemp("data") / "demos"
    write_dataset(root, episodes, tasks, validation_fraction=1 / 3, split_seed=3)
    return root, episodes, tasks

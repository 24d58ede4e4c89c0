"""Train/validation split by episode: a seeded partition, and LeRobot's stored split formats."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.data.splits import parse_splits, split_episodes


@given(
    num_episodes=st.integers(1, 300),
    validation_fraction=st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 0.99]),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_a_seeded_partition_with_the_requested_share(
    num_episodes, validation_fraction, seed
):
    split = split_episodes(num_episodes, validation_fraction, seed)
    train, validation = split["train"], split["validation"]
    assert np.intersect1d(train, validation).size == 0
    np.testing.assert_array_equal(np.union1d(train, validation), np.arange(num_episodes))
    expected = min(round(validation_fraction * num_episodes), num_episodes - 1)
    assert len(validation) == expected and len(train) >= 1
    again = split_episodes(num_episodes, validation_fraction, seed)
    np.testing.assert_array_equal(again["validation"], validation)


def test_different_seeds_hold_out_different_episodes():
    held_out = {tuple(split_episodes(100, 0.1, seed)["validation"]) for seed in range(5)}
    assert len(held_out) == 5


def test_bad_split_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\), got 1.0"):
        split_episodes(10, 1.0, 0)
    with pytest.raises(ValueError, match="num_episodes must be >= 1, got 0"):
        split_episodes(0, 0.1, 0)


def test_parse_splits_reads_lerobot_ranges_and_episode_lists():
    parsed = parse_splits({"train": "0:4", "validation": [6, 4]}, 7, source="info.json")
    np.testing.assert_array_equal(parsed["train"], [0, 1, 2, 3])
    np.testing.assert_array_equal(parsed["validation"], [4, 6])
    with pytest.raises(ValueError, match=r"split 'train' names episodes outside 0\.\.6"):
        parse_splits({"train": "0:8"}, 7, source="info.json")
    with pytest.raises(ValueError, match="split 'test' must be 'start:stop', got '0-3'"):
        parse_splits({"test": "0-3"}, 7, source="info.json")

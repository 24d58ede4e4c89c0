"""The BC-modes study's pieces: the one-mode control dataset is exactly the source's episodes of
that mode, and the summary table reports what the evaluations measured."""

import numpy as np
import pytest

from core.data.lerobot import LeRobotReader
from core.data.writer import DatasetWriter
from experiments import bc_modes

FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [4], "names": None},
    "action": {"dtype": "float32", "shape": [2], "names": None},
    "expert.mode": {"dtype": "int64", "shape": [1], "names": None},
    "expert.seed": {"dtype": "int64", "shape": [1], "names": None},
}
MODES = (0, 1, 0, 1, 0, 0)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "bimodal"
    generator = np.random.default_rng(0)
    with DatasetWriter(root, fps=10, features=FEATURES) as writer:
        for seed, mode in enumerate(MODES):
            length = 3 + seed
            writer.add_episode(
                {
                    "observation.state": generator.normal(size=(length, 4)).astype(np.float32),
                    "action": generator.normal(size=(length, 2)).astype(np.float32),
                    "expert.mode": np.full(length, mode, np.int64),
                    "expert.seed": np.full(length, seed, np.int64),
                },
                task=f"episode {seed}",
            )
    return root


def test_the_mode_subset_holds_exactly_the_episodes_of_that_mode_in_order(source, tmp_path):
    subset = bc_modes.write_mode_subset(source, 0, tmp_path / "left", robot_type="planar_point")
    kept = [index for index, mode in enumerate(MODES) if mode == 0]
    with LeRobotReader(source) as full, LeRobotReader(subset) as reader:
        assert reader.num_episodes == len(kept)
        assert sorted(np.concatenate(list(reader.splits.values())).tolist()) == [0, 1, 2, 3]
        for copy_index, source_index in enumerate(kept):
            assert reader.instruction(copy_index) == f"episode {source_index}"
            for key in FEATURES:
                np.testing.assert_array_equal(
                    reader.read(key, reader.episode_rows(copy_index)),
                    full.read(key, full.episode_rows(source_index)),
                    err_msg=key,
                )


def test_a_mode_without_episodes_or_a_dataset_without_modes_is_an_error(source, tmp_path):
    with pytest.raises(ValueError, match="no episode of expert mode 2"):
        bc_modes.write_mode_subset(source, 2, tmp_path / "none", robot_type="planar_point")
    plain = tmp_path / "plain"
    with DatasetWriter(plain, fps=10, features={"action": FEATURES["action"]}) as writer:
        writer.add_episode({"action": np.zeros((3, 2), np.float32)}, task="no modes")
    with pytest.raises(ValueError, match=r"records no 'expert\.mode'"):
        bc_modes.write_mode_subset(plain, 0, tmp_path / "out", robot_type="planar_point")


def test_the_table_reports_success_interval_mode_shares_and_training_speed():
    results = {
        "success_rate": 0.09,
        "success_ci95": [0.058, 0.138],
        "mode_shares": {"left": 0.095, "right": 0.0, "collided": 0.905, "other": 0.0},
        "mean_length": 17.91,
        "episodes": 200,
        "files": {"trajectories": "runs/x/eval/trajectories.png"},
    }
    trained = {"compile_seconds": 2.7, "steps_per_second": 795.6}
    resumed = {"compile_seconds": None, "steps_per_second": None}
    rows = [
        bc_modes.table_row("bc_mlp_mse", "mean", results, trained),
        bc_modes.table_row("bc_mlp_nll", "sampled", results, resumed),
    ]
    lines = bc_modes.markdown_table(rows).splitlines()
    assert lines[0].split("|")[1:-1] == [
        " run ",
        " actions ",
        " success [95% CI] ",
        " left ",
        " right ",
        " collided ",
        " other ",
        " mean length ",
        " train steps/s ",
    ]
    assert lines[2] == (
        "| bc_mlp_mse | mean | 9.0% [5.8%, 13.8%] | 9.5% | 0.0% | 90.5% | 0.0% | 17.9 | 796 |"
    )
    assert lines[3].endswith("| 17.9 | (trained before) |")

"""LeRobotReader: the fixture LeRobot itself wrote, streaming, and clear errors on bad files."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dataset_builders import FEATURES, LEROBOT_FIXTURE, make_episode, write_dataset

from core.data.lerobot import LeRobotReader
from core.data.stats import compute_stats
from core.data.writer import ROW_GROUP_FRAMES
from experiments.parity.lerobot_dataset import FPS, TASKS, fixture_episodes


def test_reads_the_dataset_lerobot_wrote_exactly():
    expected = fixture_episodes()
    with LeRobotReader(LEROBOT_FIXTURE) as reader:
        assert reader.fps == FPS and reader.num_episodes == len(expected)
        assert [reader.instruction(e) for e in range(reader.num_episodes)] == list(TASKS)
        assert reader.camera_keys == ["observation.images.top"]
        for index, (episode, _) in enumerate(expected):
            read = reader.episode(index)
            assert read.keys() == episode.keys()
            for key, array in episode.items():
                assert read[key].dtype == array.dtype
                np.testing.assert_array_equal(read[key], array, err_msg=key)


def test_our_statistics_match_the_ones_lerobot_stored():
    # LeRobot aggregates per-episode statistics (pooled variance); ours see all frames at once
    with LeRobotReader(LEROBOT_FIXTURE) as reader:
        ours = compute_stats(reader, range(reader.num_episodes))
        for key in ("observation.state", "action"):
            for name in ("min", "max", "mean", "std", "count"):
                np.testing.assert_allclose(
                    ours[key][name], reader.stats[key][name], rtol=1e-6, atol=1e-7, err_msg=name
                )
        assert reader.stats_split is None  # LeRobot's statistics cover every episode


def test_reading_is_random_access_in_any_order_with_repeats(dataset):
    root, episodes, _ = dataset
    frames = np.concatenate([e["observation.images.wrist"] for e in episodes])
    rows = np.array([30, 0, 30, 48, 7, 7, 1])
    with LeRobotReader(root) as reader:
        np.testing.assert_array_equal(reader.read("observation.images.wrist", rows), frames[rows])


def test_reader_streams_row_groups_within_a_bounded_cache(tmp_path):
    generator = np.random.default_rng(0)
    episodes = [make_episode(generator, 3 * ROW_GROUP_FRAMES) for _ in range(3)]
    root = write_dataset(tmp_path / "d", episodes, ["t"] * 3)
    key = "observation.images.front"
    frames = pq.read_table(root / DATA_FILE, columns=[key]).column(key).combine_chunks()
    file_bytes = frames.field("bytes").nbytes  # 9 row groups of this camera
    with LeRobotReader(root) as reader:
        reader.read(key, np.array([5 * ROW_GROUP_FRAMES + 1]))
        # opening checked frame 0 of each camera; this read added one row group of 9
        assert reader.cached_bytes < 3 * file_bytes / 9
    cache_mb = 2.5 * file_bytes / 9 / 2**20
    with LeRobotReader(root, cache_mb=cache_mb) as reader:
        for index in range(reader.num_episodes):
            np.testing.assert_array_equal(reader.episode(index)[key], episodes[index][key])
            assert reader.cached_bytes <= cache_mb * 2**20


@pytest.fixture
def copy(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset[0], root)
    return root


DATA_FILE = "data/chunk-000/file-000.parquet"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"


def _edit_info(root, **changes):
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, **changes}))


def _drop_info_key(root, key):
    info = json.loads((root / "meta/info.json").read_text())
    del info[key]
    (root / "meta/info.json").write_text(json.dumps(info))


def _rewrite_parquet(path, edit):
    table = pq.read_table(path)
    pq.write_table(edit(table), path)


def _drop_state_column(table):
    return table.drop_columns(["observation.state"])


def _wrong_episode_length(table):
    lengths = table.column("length").to_numpy().copy()
    lengths[1] += 1
    return table.set_column(table.schema.get_field_index("length"), "length", pa.array(lengths))


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda r: (r / "meta/info.json").unlink(), FileNotFoundError, "info.json is missing"),
        (lambda r: (r / "meta/info.json").write_text("{"), ValueError, "info.json: not valid"),
        (lambda r: _edit_info(r, features={}), ValueError, "feature specification is empty"),
        (lambda r: _drop_info_key(r, "fps"), ValueError, r"info.json: missing keys \['fps'\]"),
        (lambda r: _edit_info(r, total_episodes=7), ValueError, "total_episodes is 7"),
        (lambda r: _edit_info(r, codebase_version="v2.1"), ValueError, "'v2.1' is not supported"),
        (lambda r: (r / DATA_FILE).unlink(), FileNotFoundError, "file-000.parquet is missing"),
        (
            lambda r: (r / DATA_FILE).write_bytes((r / DATA_FILE).read_bytes()[:-100]),
            ValueError,
            "file-000.parquet: not a readable parquet",
        ),
        (
            lambda r: _rewrite_parquet(r / DATA_FILE, _drop_state_column),
            ValueError,
            "feature 'observation.state' has no column",
        ),
        (
            lambda r: _rewrite_parquet(r / EPISODES_FILE, _wrong_episode_length),
            ValueError,
            "episode 1 has length 13",
        ),
        (lambda r: (r / "meta/tasks.parquet").unlink(), FileNotFoundError, "tasks.parquet"),
        (lambda r: shutil.rmtree(r / "meta/episodes"), FileNotFoundError, "no episode metadata"),
    ],
    ids=[
        "no_info",
        "corrupt_info",
        "no_features",
        "no_fps",
        "episode_count",
        "version",
        "no_data_file",
        "truncated_data_file",
        "missing_column",
        "length_mismatch",
        "no_tasks",
        "no_episodes_meta",
    ],
)
def test_damaged_datasets_fail_on_open_naming_file_and_key(copy, damage, error, message):
    damage(copy)
    with pytest.raises(error, match=message):
        LeRobotReader(copy)


def _mismatched_camera(features):
    features["observation.images.front"] = {
        **FEATURES["observation.images.front"],
        "shape": [8, 6, 3],
    }
    return features


def test_images_of_the_wrong_size_fail_on_open(copy):
    info = json.loads((copy / "meta/info.json").read_text())
    _edit_info(copy, features=_mismatched_camera(info["features"]))
    with pytest.raises(ValueError, match=r"'observation.images.front' frame 0: image of shape"):
        LeRobotReader(copy)


def test_corrupt_image_bytes_fail_naming_file_key_and_frame(copy):
    def corrupt_frame_3(table):
        column = table.column("observation.images.front").combine_chunks()
        encoded = column.field("bytes").to_pylist()
        encoded[3] = b"not a png"
        images = pa.StructArray.from_arrays(
            [pa.array(encoded), column.field("path")], ["bytes", "path"]
        )
        index = table.schema.get_field_index("observation.images.front")
        return table.set_column(index, "observation.images.front", images)

    _rewrite_parquet(copy / DATA_FILE, corrupt_frame_3)
    with LeRobotReader(copy) as reader, pytest.raises(ValueError, match="frame 3: the image bytes"):
        reader.read("observation.images.front", np.array([2, 3]))


def test_video_datasets_are_rejected_with_a_way_out(copy):
    info = json.loads((copy / "meta/info.json").read_text())
    info["features"]["observation.images.front"]["dtype"] = "video"
    _edit_info(copy, features=info["features"])
    with pytest.raises(ValueError, match="use_videos=False"):
        LeRobotReader(copy)


def test_reading_an_unknown_key_or_row_names_it(dataset):
    with LeRobotReader(dataset[0]) as reader:
        with pytest.raises(ValueError, match=r"no feature 'observation\.depth'"):
            reader.read("observation.depth", np.array([0]))
        with pytest.raises(ValueError, match=r"rows must lie in 0\.\.48"):
            reader.read("action", np.array([49]))

"""DatasetWriter: exact round trip, a layout readable without our code, atomic writes, bad input."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
from dataset_builders import FEATURES, FPS, LENGTHS, make_episode, write_dataset
from PIL import Image

from core.data.lerobot import LeRobotReader
from core.data.splits import split_episodes
from core.data.stats import array_statistics, histogram_statistics, image_histogram
from core.data.writer import DatasetWriter


def test_round_trip_returns_every_array_instruction_and_metadata_exactly(dataset):
    root, episodes, tasks = dataset
    with LeRobotReader(root) as reader:
        assert reader.fps == FPS
        assert reader.features == FEATURES
        np.testing.assert_array_equal(reader.episode_lengths, LENGTHS)
        for index, (episode, task) in enumerate(zip(episodes, tasks, strict=True)):
            assert reader.instruction(index) == task
            read = reader.episode(index)
            for key, array in episode.items():
                expected = array[:, None] if FEATURES[key]["shape"] == [1] else array
                assert read[key].dtype == expected.dtype, key
                np.testing.assert_array_equal(read[key], expected, err_msg=key)
        assert reader.tasks == list(dict.fromkeys(tasks))


def test_layout_is_readable_with_pyarrow_and_pil_alone(dataset):
    root, episodes, _ = dataset
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_frames"] == sum(LENGTHS)
    data_file = root / info["data_path"].format(chunk_index=0, file_index=0)
    table = pq.read_table(data_file)
    episode_rows = np.flatnonzero(table.column("episode_index").to_numpy() == 1)
    frame_index = table.column("frame_index").to_numpy()[episode_rows]
    np.testing.assert_array_equal(frame_index, np.arange(LENGTHS[1]))
    png = table.column("observation.images.front")[int(episode_rows[4])]["bytes"].as_py()
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(png))), episodes[1]["observation.images.front"][4]
    )
    states = np.stack(table.column("observation.state").to_pylist())[episode_rows]
    np.testing.assert_array_equal(states, episodes[1]["observation.state"])
    timestamps = table.column("timestamp").to_numpy()[episode_rows]
    np.testing.assert_allclose(timestamps, np.arange(LENGTHS[1]) / FPS, rtol=1e-6)


def test_split_is_recorded_and_stats_cover_only_the_training_episodes(tmp_path):
    generator = np.random.default_rng(1)
    split = split_episodes(6, 1 / 3, seed=7)
    # validation episodes sit 100 units away: any leak into the statistics moves them
    episodes = [
        make_episode(generator, 8, offset=100.0 * (i in split["validation"])) for i in range(6)
    ]
    root = write_dataset(
        tmp_path / "d", episodes, ["t"] * 6, validation_fraction=1 / 3, split_seed=7
    )
    with LeRobotReader(root) as reader:
        np.testing.assert_array_equal(reader.splits["train"], split["train"])
        np.testing.assert_array_equal(reader.splits["validation"], split["validation"])
        assert reader.stats_split == "train"
        train = [episodes[i] for i in split["train"]]
        for key in ("observation.state", "action"):
            expected = array_statistics(np.concatenate([e[key] for e in train]))
            for name, value in expected.items():
                np.testing.assert_allclose(reader.stats[key][name], value, rtol=1e-6, err_msg=name)
        assert reader.stats["action"]["max"].max() < 2.0  # the +100 episodes are excluded
        images = np.concatenate([e["observation.images.front"] for e in train])
        expected = histogram_statistics(image_histogram(images), len(images))
        for name in ("mean", "std", "min", "q50", "q99"):
            np.testing.assert_allclose(
                reader.stats["observation.images.front"][name], expected[name]
            )


def test_exception_inside_the_with_block_leaves_nothing_behind(tmp_path):
    generator = np.random.default_rng(2)
    with pytest.raises(RuntimeError, match="simulated failure"):  # noqa: SIM117
        with DatasetWriter(tmp_path / "d", fps=FPS, features=FEATURES) as writer:
            writer.add_episode(make_episode(generator, 4), task="t")
            raise RuntimeError("simulated failure")
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from dataset_builders import FEATURES, make_episode
    from core.data.writer import DatasetWriter
    generator = np.random.default_rng(0)
    writer = DatasetWriter({root!r}, fps=10, features=FEATURES)
    for _ in range(3):
        writer.add_episode(make_episode(generator, 5), task="t")
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_killed_writer_never_leaves_a_dataset_that_opens(tmp_path):
    root = tmp_path / "d"
    script = KILLED_WRITER.format(tests=os.path.dirname(__file__), root=str(root))
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert not root.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".d.incomplete-")
    with pytest.raises(FileNotFoundError, match="no such dataset"):
        LeRobotReader(root)


def test_overwrite_replaces_only_once_the_new_dataset_is_complete(tmp_path):
    generator = np.random.default_rng(3)
    root = write_dataset(tmp_path / "d", [make_episode(generator, 4)], ["old"])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        DatasetWriter(root, fps=FPS, features=FEATURES)
    with (
        pytest.raises(RuntimeError),
        DatasetWriter(root, fps=FPS, features=FEATURES, overwrite=True),
    ):
        raise RuntimeError
    assert LeRobotReader(root).instruction(0) == "old"
    write_dataset(root, [make_episode(generator, 4)], ["new"], overwrite=True)
    assert LeRobotReader(root).instruction(0) == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_data_files_roll_over_at_the_size_limit_and_read_back(tmp_path):
    generator = np.random.default_rng(4)
    episodes = [make_episode(generator, 6) for _ in range(4)]
    root = write_dataset(tmp_path / "d", episodes, ["t"] * 4, data_file_size_mb=1e-6)
    assert len(list((root / "data/chunk-000").iterdir())) == 4
    with LeRobotReader(root) as reader:
        for index, episode in enumerate(episodes):
            np.testing.assert_array_equal(reader.episode(index)["action"], episode["action"])


def _bad(episode, **changes):
    return {**episode, **changes}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: {k: v for k, v in e.items() if k != "action"}, r"missing \['action'\]"),
        (lambda e: _bad(e, extra=e["action"]), r"unexpected \['extra'\]"),
        (lambda e: _bad(e, action=e["action"][:-1]), r"episode\['action'\] has 3 steps"),
        (lambda e: _bad(e, action=e["action"][:, :1]), r"episode\['action'\] must have shape"),
        (
            lambda e: _bad(e, **{"observation.images.front": e["observation.images.front"] / 1}),
            "must be uint8",
        ),
        (lambda e: _bad(e, action=np.full((4, 2), np.nan, np.float32)), "NaN"),
        (lambda e: _bad(e, action=np.zeros((4, 2), complex)), "dtype complex128"),
    ],
    ids=["missing", "extra", "length", "shape", "image_dtype", "nan", "dtype"],
)
def test_bad_episodes_are_rejected_naming_the_key(tmp_path, change, message):
    episode = make_episode(np.random.default_rng(5), 4)
    with DatasetWriter(tmp_path / "d", fps=FPS, features=FEATURES) as writer:
        with pytest.raises(ValueError, match=message):
            writer.add_episode(change(episode), task="t")
        writer.add_episode(episode, task="t")  # the writer is still usable


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"a": {"dtype": "float16", "shape": [2]}}, "unsupported dtype 'float16'"),
        ({"a": {"dtype": "image", "shape": [4, 4]}}, r"image has shape \[H, W, 3\]"),
        ({"a": {"dtype": "float32", "shape": [0]}}, "positive ints"),
        ({"a/b": {"dtype": "float32", "shape": [2]}}, "may not contain '/'"),
        ({"index": {"dtype": "int64", "shape": [1]}}, "bookkeeping"),
        ({"a": {"dtype": "float32"}}, r"lacks the entries \['shape'\]"),
        ({}, "empty"),
    ],
)
def test_bad_feature_specifications_are_rejected(tmp_path, features, message):
    with pytest.raises(ValueError, match=message):
        DatasetWriter(tmp_path / "d", fps=FPS, features=features)
    assert not (tmp_path / "d").exists()


def test_an_empty_dataset_is_never_written(tmp_path):
    with pytest.raises(ValueError, match="no episodes"):  # noqa: SIM117
        with DatasetWriter(tmp_path / "d", fps=FPS, features=FEATURES):
            pass
    assert list(tmp_path.iterdir()) == []

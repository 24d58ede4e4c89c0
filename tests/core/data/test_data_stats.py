"""Dataset statistics (book 14.1.3) and the normalizers and batch preparation built on them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dataset_builders import LEROBOT_FIXTURE
from hypothesis import given
from hypothesis import strategies as st

from core import normalizers
from core.data.lerobot import LeRobotReader
from core.data.stats import (
    array_statistics,
    compute_stats,
    histogram_statistics,
    image_histogram,
    make_normalizers,
    normalizer_from_stats,
    prepare_batch,
    read_stats,
    training_stats,
    write_stats,
)


def test_array_statistics_of_0_to_100_have_closed_forms():
    values = np.arange(101, dtype=np.float64)[:, None]
    stats = array_statistics(values)
    assert stats["mean"] == 50.0 and stats["min"] == 0.0 and stats["max"] == 100.0
    np.testing.assert_allclose(stats["std"], np.sqrt((101**2 - 1) / 12))  # population std
    for name, expected in {"q01": 1.0, "q10": 10.0, "q50": 50.0, "q90": 90.0, "q99": 99.0}.items():
        np.testing.assert_allclose(stats[name], expected, err_msg=name)
    assert stats["count"].tolist() == [101]


@given(
    shape=st.sampled_from([(1, 1, 1, 3), (3, 5, 4, 3), (2, 16, 16, 3)]),
    seed=st.integers(0, 2**31 - 1),
    levels=st.sampled_from([2, 17, 256]),
)
def test_histogram_statistics_equal_numpy_on_the_pixels_over_255(shape, seed, levels):
    images = np.random.default_rng(seed).integers(0, levels, shape).astype(np.uint8)
    stats = histogram_statistics(image_histogram(images), num_frames=shape[0])
    pixels = images.reshape(-1, 3).astype(np.float64) / 255
    expected = {
        "mean": pixels.mean(0),
        "std": pixels.std(0),
        "min": pixels.min(0),
        "max": pixels.max(0),
        **dict(
            zip(
                ["q01", "q10", "q50", "q90", "q99"],
                np.quantile(pixels, [0.01, 0.1, 0.5, 0.9, 0.99], 0),
                strict=True,
            )
        ),
    }
    for name, value in expected.items():
        assert stats[name].shape == (3, 1, 1)
        np.testing.assert_allclose(stats[name][:, 0, 0], value, atol=1e-12, err_msg=name)


def test_compute_stats_on_the_train_split_equals_the_stats_the_writer_stored(dataset):
    with LeRobotReader(dataset[0]) as reader:
        train = reader.splits["train"]
        keys = ["observation.state", "action", "next.reward", "observation.images.front"]
        computed = compute_stats(reader, train, keys)
        for key in keys:
            for name, value in reader.stats[key].items():
                np.testing.assert_allclose(computed[key][name], value, rtol=1e-6, err_msg=key)
        everything = compute_stats(reader, range(reader.num_episodes), ["action"])
        assert not np.allclose(everything["action"]["mean"], computed["action"]["mean"])
        with pytest.raises(ValueError, match=r"keys \['velocity'\] are not features"):
            compute_stats(reader, train, ["velocity"])


def test_training_stats_are_the_stored_ones_only_when_they_cover_exactly_the_train_split(dataset):
    with LeRobotReader(dataset[0]) as reader:
        assert training_stats(reader, reader.splits["train"]) is reader.stats
        subset = reader.splits["train"][:2]
        recomputed = training_stats(reader, subset)
        rows = np.concatenate([reader.episode_rows(e) for e in subset])
        expected = reader.read("action", rows).mean(0)
        np.testing.assert_allclose(recomputed["action"]["mean"], expected, rtol=1e-6)
    with LeRobotReader(LEROBOT_FIXTURE) as reader:  # LeRobot's statistics cover every episode
        recomputed = training_stats(reader, reader.splits["train"])
        assert recomputed is not reader.stats
        np.testing.assert_allclose(recomputed["action"]["std"], reader.stats["action"]["std"])


@pytest.mark.parametrize(
    ("mode", "fit"),
    [
        ("mean_std", lambda x: normalizers.fit_zscore(x)),
        ("min_max", lambda x: normalizers.fit_minmax(x, target=(-1.0, 1.0))),
        ("quantile", lambda x: normalizers.fit_quantile(x, quantiles=(0.01, 0.99))),
    ],
)
def test_normalizer_from_stats_equals_the_normalizer_fit_on_the_data(x64, mode, fit):
    data = np.random.default_rng(0).standard_normal((500, 4)) * [1, 10, 0.1, 3] + [0, 5, -2, 1]
    data[:, 3] = 1.5  # a constant feature: centered, left unscaled
    from_stats = normalizer_from_stats(array_statistics(data), mode)
    from_data = fit(jnp.asarray(data))
    probe = np.random.default_rng(1).standard_normal((7, 4)) * 5
    np.testing.assert_allclose(from_stats.normalize(probe), from_data.normalize(probe), rtol=1e-6)


@given(
    mode=st.sampled_from(["mean_std", "min_max", "quantile"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_unnormalize_inverts_normalize(mode, seed):
    generator = np.random.default_rng(seed)
    data = generator.standard_normal((200, 3)) * generator.uniform(0.1, 10, 3)
    stats = array_statistics(data)
    normalizer = normalizer_from_stats(stats, mode)
    # the quantile normalizer clips: it is invertible on [q01, q99]
    probe = np.clip(data[:20], stats["q01"], stats["q99"]).astype(np.float32)
    round_trip = normalizer.unnormalize(normalizer.normalize(probe))
    np.testing.assert_allclose(round_trip, probe, rtol=1e-5, atol=1e-5)


def test_prepare_batch_scales_images_normalizes_features_and_keeps_masks():
    generator = np.random.default_rng(2)
    actions = generator.standard_normal((50, 2)) * 3 + 1
    action_normalizers = make_normalizers(
        {"action": array_statistics(actions)}, {"action": "mean_std"}
    )
    batch = {
        "observation.images.top": generator.integers(0, 256, (2, 1, 4, 4, 3), np.uint8),
        "observation.state": generator.standard_normal((2, 1, 3)).astype(np.float32),
        "action": actions[:6].reshape(2, 3, 2).astype(np.float32),
        "action_is_pad": np.array([[False, False, True], [False, True, True]]),
    }
    prepared = jax.jit(prepare_batch)(batch, action_normalizers)
    images = prepared["observation.images.top"]
    assert images.dtype == jnp.float32
    np.testing.assert_allclose(images, batch["observation.images.top"] / 255.0, rtol=1e-6)
    expected = (batch["action"] - actions.mean(0)) / actions.std(0)
    np.testing.assert_allclose(prepared["action"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(prepared["observation.state"], batch["observation.state"])
    np.testing.assert_array_equal(prepared["action_is_pad"], batch["action_is_pad"])


def test_statistics_survive_the_json_round_trip(tmp_path):
    stats = {"action": array_statistics(np.random.default_rng(3).standard_normal((10, 2)))}
    write_stats(tmp_path / "stats.json", stats)
    loaded = read_stats(tmp_path / "stats.json")
    for name, value in stats["action"].items():
        np.testing.assert_array_equal(loaded["action"][name], value)
    (tmp_path / "stats.json").write_text("[1, 2")
    with pytest.raises(ValueError, match=r"stats\.json: not a valid statistics file"):
        read_stats(tmp_path / "stats.json")


def test_bad_modes_and_missing_statistics_are_named():
    stats = {"action": array_statistics(np.zeros((3, 2)))}
    with pytest.raises(ValueError, match="unknown normalization mode 'zscore' for 'action'"):
        make_normalizers(stats, {"action": "zscore"})
    with pytest.raises(ValueError, match=r"no statistics for \['observation.state'\]"):
        make_normalizers(stats, {"observation.state": "mean_std"})
    with pytest.raises(ValueError, match=r"lack \['q01', 'q99'\]"):
        normalizer_from_stats({"mean": np.zeros(2)}, "quantile", key="action")

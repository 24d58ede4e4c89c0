"""ChunkSampler (book 17.2, 18.2): windows, padding, epochs, shards and exact resumption."""

import numpy as np
import pytest
from dataset_builders import LENGTHS

from core.data.lerobot import LeRobotReader
from core.data.sampler import ChunkSampler

OBSERVATION_HORIZON = 3
ACTION_HORIZON = 4


@pytest.fixture(scope="module")
def reader(dataset):
    with LeRobotReader(dataset[0]) as reader:
        yield reader


def make_sampler(reader, batch_size=8, **options):
    return ChunkSampler(
        reader,
        options.pop("episodes", reader.splits["train"]),
        batch_size=batch_size,
        observation_horizon=options.pop("observation_horizon", OBSERVATION_HORIZON),
        action_horizon=options.pop("action_horizon", ACTION_HORIZON),
        **options,
    )


def expected_sample(episode, t, observation_horizon, action_horizon):
    """The window of frame t by the definition: clamp indices into the episode, flag the pad."""
    length = len(episode["action"])
    past = [max(t - i, 0) for i in reversed(range(observation_horizon))]
    future = [min(t + j, length - 1) for j in range(action_horizon)]
    sample = {key: episode[key][past] for key in episode if key.startswith("observation.")}
    sample["action"] = episode["action"][future]
    sample["action_is_pad"] = np.array([t + j >= length for j in range(action_horizon)])
    return sample


@pytest.mark.parametrize(("observation_horizon", "action_horizon"), [(1, 1), (3, 4), (5, 5)])
def test_every_sample_is_its_frames_observation_window_and_action_chunk(
    dataset, reader, observation_horizon, action_horizon
):
    _, episodes, _ = dataset
    sampler = make_sampler(
        reader, observation_horizon=observation_horizon, action_horizon=action_horizon
    )
    for step in (0, 1, 5):
        batch = sampler.batch(step)
        assert batch["observation.images.front"].shape == (8, observation_horizon, 6, 8, 3)
        assert batch["action"].shape == (8, action_horizon, 2)
        for row, (e, t) in enumerate(zip(*sampler.sample_indices(step), strict=True)):
            expected = expected_sample(episodes[e], int(t), observation_horizon, action_horizon)
            for key, value in expected.items():
                np.testing.assert_array_equal(batch[key][row], value, err_msg=f"{key} {e} {t}")
            assert batch["task_index"][row] == reader.episode_task_index[e]


def test_chunks_at_the_episode_end_repeat_the_last_action_and_are_flagged(dataset, reader):
    _, episodes, _ = dataset
    sampler = make_sampler(reader, batch_size=sampler_size(reader))
    batch = sampler.batch(0)  # the whole epoch: every frame once
    episode_ids, times = sampler.sample_indices(0)
    for e in reader.splits["train"]:
        last = np.flatnonzero((episode_ids == e) & (times == LENGTHS[e] - 1))[0]
        np.testing.assert_array_equal(batch["action_is_pad"][last], [False, True, True, True])
        np.testing.assert_array_equal(
            batch["action"][last], np.repeat(episodes[e]["action"][-1:], 4, 0)
        )
        first = np.flatnonzero((episode_ids == e) & (times == 0))[0]
        frames = batch["observation.images.wrist"][first]
        np.testing.assert_array_equal(
            frames, np.repeat(episodes[e]["observation.images.wrist"][:1], 3, 0)
        )
        assert not batch["action_is_pad"][first].any()


def sampler_size(reader):
    return int(reader.episode_lengths[reader.splits["train"]].sum())


def test_an_epoch_visits_every_training_frame_once_and_no_validation_frame(reader):
    sampler = make_sampler(reader, batch_size=4)
    assert sampler.batches_per_epoch == sampler_size(reader) // 4
    visited = [
        (int(e), int(t))
        for step in range(sampler.batches_per_epoch)
        for e, t in zip(*sampler.sample_indices(step), strict=True)
    ]
    training = {(int(e), t) for e in reader.splits["train"] for t in range(LENGTHS[e])}
    assert len(set(visited)) == len(visited) == 4 * sampler.batches_per_epoch
    assert set(visited) <= training  # only the dropped remainder (< one batch) is missing
    assert len(training - set(visited)) < 4


def test_order_is_a_function_of_seed_and_epoch(reader):
    first, again, other = (make_sampler(reader, seed=s) for s in (0, 0, 1))
    epoch = first.batches_per_epoch
    for step in (0, 3, epoch + 1):
        np.testing.assert_array_equal(first.batch(step)["action"], again.batch(step)["action"])
    assert not np.array_equal(first.sample_indices(0)[1], other.sample_indices(0)[1])
    assert not np.array_equal(first.sample_indices(0)[1], first.sample_indices(epoch)[1])


def test_revisiting_epochs_in_any_order_gives_the_same_batches(reader):
    # Validation loops jump back to epoch 0 after reading later epochs; the permutation
    # cache (two epochs) must never evict the epoch it is serving.
    sampler = ChunkSampler(
        reader,
        reader.splits["train"],
        batch_size=len(reader.splits["train"]) * 4,
        observation_horizon=1,
        action_horizon=2,
        seed=3,
    )
    steps = [0, sampler.batches_per_epoch, 2 * sampler.batches_per_epoch, 0, 1]
    first = [sampler.batch(step)["action"] for step in steps]
    again = [sampler.batch(step)["action"] for step in reversed(steps)][::-1]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("process_count", [2, 3])
def test_process_shards_are_disjoint_and_make_up_the_global_batch(reader, process_count):
    whole = make_sampler(reader, batch_size=6)
    shards = [
        make_sampler(reader, batch_size=6, process_index=p, process_count=process_count)
        for p in range(process_count)
    ]
    for step in (0, 7):
        parts = [np.stack(s.sample_indices(step), axis=1) for s in shards]
        assert all(len(p) == 6 // process_count for p in parts)
        np.testing.assert_array_equal(
            np.concatenate(parts), np.stack(whole.sample_indices(step), 1)
        )


@pytest.mark.parametrize("prefetch", [0, 2])
def test_restoring_the_iterator_state_continues_the_exact_sequence(reader, prefetch):
    sampler = make_sampler(reader, batch_size=4)
    epoch = sampler.batches_per_epoch
    iterator = sampler.iterator(prefetch=prefetch)
    for _ in range(epoch - 1):  # the next batches cross into the second epoch
        next(iterator)
    state = iterator.get_state()
    continued = [next(iterator) for _ in range(3)]
    iterator.close()
    resumed_iterator = make_sampler(reader, batch_size=4).iterator(dict(state), prefetch=prefetch)
    resumed = [next(resumed_iterator) for _ in range(3)]
    resumed_iterator.close()
    assert state["step"] == epoch - 1
    for a, b in zip(continued, resumed, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_state_from_another_sampler_is_refused(reader):
    state = make_sampler(reader, seed=1).iterator().get_state()
    with pytest.raises(ValueError, match="iterator state has seed=1, this sampler 0"):
        make_sampler(reader, seed=0).iterator(state)
    with pytest.raises(ValueError, match=r"iterator state lacks \['num_samples'\]"):
        make_sampler(reader).iterator({"step": 0, "seed": 0, "batch_size": 8})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"observation_horizon": 0}, "must be >= 1, got 0 and 4"),
        ({"action_horizon": 0}, "must be >= 1, got 3 and 0"),
        (
            {"action_horizon": 6, "episodes": [0, 2]},
            "episode 2 has 5 frames, fewer than the window",
        ),
        ({"observation_horizon": 6, "episodes": [2, 0]}, r"window max\(observation_horizon"),
        ({"batch_size": 5, "process_count": 2}, "positive multiple of process_count=2"),
        ({"process_index": 2, "process_count": 2}, "process_index must be in"),
        ({"episodes": []}, "at least one episode"),
        ({"episodes": [0, 0]}, "must not repeat"),
        ({"episodes": [6]}, r"episodes must lie in 0\.\.5"),
        ({"batch_size": 100, "episodes": [0]}, "hold 7 frames, fewer than one batch of 100"),
        ({"observation_keys": ["observation.depth"]}, r"no features \['observation.depth'\]"),
    ],
    ids=[
        "to",
        "k",
        "chunk_window",
        "observation_window",
        "shards",
        "process",
        "empty",
        "repeat",
        "range",
        "batch",
        "key",
    ],
)
def test_bad_sampler_settings_are_rejected_with_the_bad_value(reader, options, message):
    with pytest.raises(ValueError, match=message):
        make_sampler(reader, **options)

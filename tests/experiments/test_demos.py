"""The demonstrations CLI end to end: expert rollouts written through core.data and read back."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.data.lerobot import LeRobotReader
from core.envs import registry
from core.envs.obstacle import ObstacleEnv, ObstacleExpert
from experiments import demos


def test_cli_writes_reproducible_episodes_that_the_dataset_reader_reads_back(tmp_path):
    out = tmp_path / "reach"
    argv = ["--task", "reach_target", "--episodes", "3", "--out", str(out), "--seed", "7"]
    summary = demos.main([*argv, "--image-size", "32", "--cameras", "top", "wrist"])
    assert summary.episodes == 3 and summary.failed_seeds == ()
    env = registry.make("reach_target", image_size=32, cameras=("top", "wrist")).env
    with LeRobotReader(out) as reader:
        assert reader.num_episodes == 3 and reader.fps == env.spec.fps
        assert set(reader.features) == set(demos.demo_features(env.spec))
        assert int(reader.episode_lengths.sum()) == summary.frames
        for index in range(3):
            episode = reader.episode(index)
            # Episode i is the rollout of seed 7 + i: its first observation is reset's.
            reset_key, _ = jax.random.split(jax.random.key(7 + index))
            state, obs = jax.jit(env.reset)(reset_key)
            for key, value in obs.items():
                np.testing.assert_array_equal(episode[key][0], value, err_msg=key)
            assert reader.instruction(index) == env.instruction(state)
            np.testing.assert_array_equal(episode["expert.seed"].ravel(), 7 + index)
            success = episode["next.success"].ravel()
            assert success[-1] and not success[:-1].any()
            np.testing.assert_array_equal(episode["next.done"].ravel(), success)
            np.testing.assert_array_equal(episode["next.reward"].ravel(), success)


@dataclasses.dataclass(frozen=True)
class StallingExpert:
    """The obstacle expert, except that it stands still in the modes listed in `stall_modes`."""

    stall_modes: tuple[int, ...]
    mode_names: ClassVar[tuple[str, ...]] = ObstacleExpert.mode_names

    def plan(self, key, state):
        return ObstacleExpert().plan(key, state)

    def act(self, plan, state):
        stalls = jnp.isin(plan.mode, jnp.array(self.stall_modes))
        return jnp.where(stalls, 0.0, ObstacleExpert().act(plan, state))


def _right_seeds(seeds):
    """The seeds whose obstacle episode the expert plans to pass on the right (mode 1)."""

    def plan_key(seed):
        return jax.random.split(jax.random.key(seed))[1]

    return tuple(seed for seed in seeds if ObstacleExpert().plan(plan_key(seed), None).mode == 1)


@pytest.fixture
def stalling_on_the_right(monkeypatch):
    """The obstacle task with an expert that fails every right-mode episode."""
    monkeypatch.setitem(registry.TASKS, "obstacle", (ObstacleEnv, lambda: StallingExpert((1,))))


@pytest.mark.usefixtures("stalling_on_the_right")
def test_failed_expert_episodes_are_dropped_and_their_seeds_reported(tmp_path):
    out = tmp_path / "obstacle"
    summary = demos.generate_demos("obstacle", 8, out, seed=20, image_size=32, progress=False)
    right_seeds = _right_seeds(range(20, 28))
    assert 0 < len(right_seeds) < 8  # both modes occur among these seeds
    assert summary.failed_seeds == right_seeds
    assert summary.mode_counts == {"left": 8 - len(right_seeds), "right": 0}
    with LeRobotReader(out) as reader:
        assert reader.num_episodes == 8 - len(right_seeds)
        kept_seeds = [
            int(reader.episode(i)["expert.seed"][0, 0]) for i in range(reader.num_episodes)
        ]
        recorded_modes = [
            int(reader.episode(i)["expert.mode"][0, 0]) for i in range(reader.num_episodes)
        ]
    assert sorted(set(kept_seeds) | set(right_seeds)) == list(range(20, 28))
    assert recorded_modes == [0] * reader.num_episodes


@pytest.mark.usefixtures("stalling_on_the_right")
def test_when_every_episode_fails_no_dataset_is_left_behind(tmp_path):
    seed = _right_seeds(range(20, 28))[0]
    with pytest.raises(ValueError, match="no episodes were added"):
        demos.generate_demos("obstacle", 1, tmp_path / "none", seed=seed, image_size=32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (["--task", "fly"], SystemExit, None),
        (["--task", "obstacle", "--episodes", "0"], ValueError, "num_episodes must be a positive"),
        (["--task", "obstacle", "--cameras", "side"], ValueError, "cameras must be among"),
        (
            ["--task", "obstacle", "--image-size", "8"],
            ValueError,
            "image_size must be an int >= 32",
        ),
    ],
)
def test_bad_arguments_fail_clearly_before_anything_is_written(tmp_path, arguments, error, message):
    defaults = {"--episodes": "1", "--out": str(tmp_path / "out")}
    for flag, value in defaults.items():
        if flag not in arguments:
            arguments = [*arguments, flag, value]
    with pytest.raises(error, match=message):
        demos.main(arguments)
    assert list(tmp_path.iterdir()) == []

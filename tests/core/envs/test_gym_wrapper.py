"""The gymnasium wrapper: passes gymnasium's env checker, seeds, flags and frames."""

import warnings

import jax
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from core.envs import registry
from core.envs.gym_wrapper import GymEnv


@pytest.fixture(scope="module", params=sorted(registry.TASKS))
def gym_env(request):
    env = registry.make(request.param, image_size=32, cameras=("top", "wrist")).env
    return GymEnv(env, render_mode="rgb_array")


def test_passes_gymnasium_env_checker_without_warnings(gym_env):
    """The one warning left says render modes other than the constructed one are not tried,
    since the env is not registered with gymnasium.make."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gym_env, skip_render_check=False)
    messages = [str(warning.message) for warning in caught]
    assert all("alternative render modes" in message for message in messages), messages


def test_equal_seeds_give_equal_episodes_and_render_is_the_top_camera(gym_env):
    first, info = gym_env.reset(seed=5)
    action = gym_env.action_space.sample()
    after_first = gym_env.step(action)
    second, _ = gym_env.reset(seed=5)
    after_second = gym_env.step(action)
    jax.tree.map(np.testing.assert_array_equal, (first, after_first), (second, after_second))
    assert isinstance(info["instruction"], str) and info["instruction"]
    frame = gym_env.render()
    assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, after_second[0]["observation.images.top"])


def test_time_limit_is_reported_as_truncation_not_termination():
    gym_env = GymEnv(registry.make("obstacle", cameras=(), max_episode_steps=2).env)
    gym_env.reset(seed=0)
    zero = np.zeros(2, np.float32)
    assert gym_env.step(zero)[2:4] == (False, False)
    _, reward, terminated, truncated, info = gym_env.step(zero)
    assert (reward, terminated, truncated, info["success"]) == (0.0, False, True, False)
    assert gym_env.render() is None  # no render mode


def test_bad_render_mode_and_step_before_reset_are_rejected():
    env = registry.make("obstacle", cameras=()).env
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array', got 'human'"):
        GymEnv(env, render_mode="human")
    with pytest.raises(RuntimeError, match="call reset"):
        GymEnv(env).step(np.zeros(2, np.float32))

"""The functional environment contract, for every task: spec shapes, jit/vmap, determinism,
bounded actions, gymnasium's termination/truncation flags and absorbing done states."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.data import format as data_format
from core.envs import registry


@dataclasses.dataclass(frozen=True)
class JittedEnv:
    env: object
    reset: object
    step: object


@pytest.fixture(scope="module", params=sorted(registry.TASKS))
def task(request):
    env = registry.make(request.param, image_size=32, cameras=("top", "wrist")).env
    return JittedEnv(env, jax.jit(env.reset), jax.jit(env.step))


def _assert_trees_equal(first, second):
    jax.tree.map(np.testing.assert_array_equal, first, second)


def _random_actions(key, spec, shape=()):
    low, high = np.array(spec.action.low), np.array(spec.action.high)
    return jax.random.uniform(key, (*shape, *spec.action.shape), minval=low, maxval=high)


def test_observations_match_the_spec_and_reset_is_a_function_of_the_key(task):
    spec = task.env.spec
    state, obs = task.reset(jax.random.key(3))
    assert set(obs) == set(spec.observation)
    for key, array_spec in spec.observation.items():
        assert obs[key].shape == array_spec.shape, key
        assert obs[key].dtype == np.dtype(array_spec.dtype), key
        if array_spec.low is not None:
            assert np.all(obs[key] >= np.array(array_spec.low)), key
            assert np.all(obs[key] <= np.array(array_spec.high)), key
    _assert_trees_equal(task.reset(jax.random.key(3)), (state, obs))
    other_state, _ = task.reset(jax.random.key(4))
    assert not np.array_equal(state.agent.position, other_state.agent.position)


def test_step_returns_a_scalar_reward_done_and_gymnasium_flags(task):
    state, _ = task.reset(jax.random.key(0))
    action = _random_actions(jax.random.key(1), task.env.spec)
    next_state, _, reward, done, info = task.step(state, action)
    assert reward.shape == () and reward.dtype == jnp.float32
    assert done.shape == () and done.dtype == jnp.bool_
    assert set(info) == {"success", "terminated", "truncated"}
    assert bool(done) == bool(info["terminated"] | info["truncated"])
    assert int(next_state.status.time) == 1


def test_vmapped_step_equals_one_env_at_a_time(task):
    num_envs = 3
    keys = jax.random.split(jax.random.key(5), num_envs)
    actions = _random_actions(jax.random.key(6), task.env.spec, (num_envs,))
    states = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[task.reset(k)[0] for k in keys])
    batched = jax.jit(jax.vmap(task.env.step))(states, actions)
    for index in range(num_envs):
        single = task.step(jax.tree.map(lambda leaf, i=index: leaf[i], states), actions[index])
        jax.tree.map(
            lambda b, s, i=index: np.testing.assert_allclose(b[i], s, atol=1e-6), batched, single
        )


def test_actions_outside_the_bounds_are_clipped_to_them(task):
    spec = task.env.spec
    state, _ = task.reset(jax.random.key(7))
    direction = jnp.where(jnp.arange(spec.action.shape[0]) % 2 == 0, 1.0, -1.0)
    _assert_trees_equal(task.step(state, 7.0 * direction), task.step(state, direction))


def test_action_of_the_wrong_shape_is_rejected_naming_it(task):
    state, _ = task.reset(jax.random.key(0))
    wrong = jnp.zeros((2, *task.env.spec.action.shape))
    with pytest.raises(ValueError, match="action must have shape"):
        task.env.step(state, wrong)


def test_time_limit_truncates_and_a_done_state_is_absorbing(task):
    """Zero actions never terminate (the agent stays put), so the time limit truncates."""
    state, _ = task.reset(jax.random.key(8))
    zero = jnp.zeros(task.env.spec.action.shape)
    for step in range(task.env.spec.max_episode_steps):
        state, obs, reward, done, info = task.step(state, zero)
        assert bool(done) == (step == task.env.spec.max_episode_steps - 1)
    assert bool(info["truncated"]) and not bool(info["terminated"] | info["success"])
    after, obs_after, reward, done, info = task.step(state, jnp.ones(task.env.spec.action.shape))
    _assert_trees_equal((after, obs_after), (state, obs))
    assert float(reward) == 0.0 and bool(done) and bool(info["truncated"])


def test_spec_features_are_a_valid_lerobot_feature_specification(task):
    spec = task.env.spec
    features = data_format.validate_features(spec.features(), source=spec.name)
    assert list(features) == [*spec.observation, "action"]
    for camera in spec.cameras:
        assert features[f"observation.images.{camera}"] == {
            "dtype": "image",
            "shape": [32, 32, 3],
            "names": ["height", "width", "channels"],
        }
    assert features["action"]["shape"] == list(spec.action.shape)
    assert all(-1.0 <= spec.action.low[d] < spec.action.high[d] <= 1.0 for d in spec.gripper_dims)


def test_registry_rejects_unknown_tasks_fields_and_bad_values():
    with pytest.raises(ValueError, match=r"task must be one of .* got 'fly'"):
        registry.make("fly")
    with pytest.raises(ValueError, match=r"has no config field\(s\) \['colour'\]"):
        registry.make("obstacle", colour="red")
    with pytest.raises(ValueError, match="max_episode_steps must be a positive int, got 0"):
        registry.make("pick_place", max_episode_steps=0)
    with pytest.raises(ValueError, match="image_size must be an int >= 32 pixels, got 8"):
        registry.make("reach_target", image_size=8)

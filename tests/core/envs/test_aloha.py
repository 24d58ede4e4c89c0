"""The MuJoCo ALOHA tasks: the adapter against gym-aloha, the scripted experts, the demo format."""

import importlib
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

pytestmark = pytest.mark.sim

# The adapter first: it picks the headless OpenGL backend before MuJoCo is first imported.
aloha = pytest.importorskip("core.envs.aloha", reason="needs the `sim` extra (MuJoCo)")
pytest.importorskip("mujoco")

from gym_aloha import constants as gym_aloha_constants  # noqa: E402
from gym_aloha import utils as gym_aloha_utils  # noqa: E402
from gym_aloha.env import AlohaEnv as GymAlohaEnv  # noqa: E402

from core.data.lerobot import LeRobotReader  # noqa: E402
from core.envs import aloha_scripted, registry  # noqa: E402
from core.envs.waypoints import interpolate, rotation_angle_degrees  # noqa: E402
from experiments import demos  # noqa: E402

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
SMALL_IMAGE = (48, 64)
TASKS = ("aloha_transfer_cube", "aloha_insertion")
GYM_ALOHA_TASKS = {"aloha_transfer_cube": "transfer_cube", "aloha_insertion": "insertion"}


@pytest.fixture(scope="module")
def transfer_env():
    env = registry.make("aloha_transfer_cube", cameras=("top",), image_size=SMALL_IMAGE).env
    yield env
    env.close()


def test_spec_has_aloha_layout_14_dims_50_hz_400_steps_and_the_actuator_ranges(transfer_env):
    spec = transfer_env.spec
    assert spec.action.shape == (14,) and spec.action.names == tuple(gym_aloha_constants.ACTIONS)
    assert spec.observation["observation.state"].shape == (14,)
    assert spec.observation["observation.environment_state"].shape == (7,)
    assert spec.observation["observation.images.top"].shape == (*SMALL_IMAGE, 3)
    assert [key for key in spec.observation if "images" in key] == ["observation.images.top"]
    assert (spec.fps, spec.max_episode_steps, spec.gripper_dims) == (50, 400, (6, 13))
    # Waist and shoulder ranges of vx300s in gym-aloha's scene XML; grippers normalized.
    assert spec.action.low[:2] == (-3.14158, -1.85005)
    assert spec.action.high[:2] == (3.14158, 1.25664)
    assert (spec.action.low[6], spec.action.high[6]) == (0.0, 1.0)
    insertion = registry.make("aloha_insertion", cameras=()).env.spec
    assert insertion.observation["observation.environment_state"].shape == (14,)
    assert not [key for key in insertion.observation if "images" in key]


def test_reset_draws_object_poses_with_gym_alohas_sampler_and_repeats_for_a_key(transfer_env):
    key = jax.random.key(11)
    state, observation = transfer_env.reset(key)
    cube = aloha.object_poses(state, "aloha_transfer_cube")
    np.testing.assert_array_equal(cube, gym_aloha_utils.sample_box_pose(aloha.layout_seed(key)))
    assert 0.0 <= cube[0] <= 0.2 and 0.4 <= cube[1] <= 0.6 and cube[2] == 0.05
    np.testing.assert_array_equal(observation["observation.environment_state"], np.float32(cube))
    np.testing.assert_allclose(
        observation["observation.state"][:6], gym_aloha_constants.START_ARM_POSE[:6], atol=1e-6
    )
    again, observation_again = transfer_env.reset(key)
    np.testing.assert_array_equal(again.physics, state.physics)
    for name, value in observation.items():
        np.testing.assert_array_equal(observation_again[name], value, err_msg=name)
    other, _ = transfer_env.reset(jax.random.key(12))
    assert not np.array_equal(aloha.object_poses(other, "aloha_transfer_cube"), cube)


@pytest.mark.parametrize("task", TASKS)
def test_transitions_and_rewards_equal_gym_alohas_env_bit_for_bit(task):
    seed, rng = 5, np.random.default_rng(0)
    reference = GymAlohaEnv(task=GYM_ALOHA_TASKS[task], obs_type="pixels_agent_pos")
    reference_observation, _ = reference.reset(seed=seed)
    env = registry.make(task, cameras=()).env
    state, observation = env.reset_with_objects(aloha.sample_object_poses(task, seed))
    np.testing.assert_array_equal(
        observation["observation.state"], reference_observation["agent_pos"].astype(np.float32)
    )
    for _ in range(3):
        action = observation["observation.state"] + rng.normal(0.0, 0.1, 14)
        reference_observation, reference_reward, *_ = reference.step(action)
        state, observation, *_ = env.step(state, action)
        np.testing.assert_array_equal(env._physics.data.qpos, reference._env.physics.data.qpos)
        assert state.stage == reference_reward
    reference.close()


def test_step_depends_only_on_its_arguments_so_one_env_steps_many_episodes():
    env = registry.make("aloha_transfer_cube", cameras=()).env
    first, observation = env.reset(jax.random.key(1))
    second, _ = env.reset(jax.random.key(2))
    action = observation["observation.state"] + 0.05
    sequential = env.step(env.step(first, action)[0], action)[0]
    interleaved = env.step(first, action)[0]
    env.step(second, action)  # another episode in between
    interleaved = env.step(interleaved, action)[0]
    np.testing.assert_array_equal(interleaved.physics, sequential.physics)
    assert not np.array_equal(sequential.physics, first.physics)


def test_time_limit_truncates_and_a_done_state_is_absorbing():
    env = registry.make("aloha_insertion", cameras=(), max_episode_steps=2).env
    state, observation = env.reset(jax.random.key(0))
    hold = observation["observation.state"]
    state, _, reward, done, info = env.step(state, hold)
    assert not done and reward == 0
    state, _, reward, done, info = env.step(state, hold)
    assert done and info["truncated"] and not info["terminated"] and not info["success"]
    after, _, reward, done, _ = env.step(state, hold + 0.3)
    assert done and reward == 0 and after is state


def test_renders_only_the_configured_camera_at_the_configured_size(transfer_env):
    state, observation = transfer_env.reset(jax.random.key(3))
    image = observation["observation.images.top"]
    assert image.shape == (*SMALL_IMAGE, 3) and image.dtype == np.uint8
    red = (image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)
    assert 0 < red.sum() < 0.05 * red.size  # the cube is in view and small
    np.testing.assert_array_equal(transfer_env.render(state, "top"), image)
    assert transfer_env.render(state, "angle").shape == (*SMALL_IMAGE, 3)
    shadowed = registry.make(
        "aloha_transfer_cube", cameras=("top",), image_size=SMALL_IMAGE, shadows=True
    ).env
    assert not np.array_equal(shadowed.observe(state)["observation.images.top"], image)
    shadowed.close()


def test_bad_configs_actions_and_tasks_fail_clearly(transfer_env):
    state, _ = transfer_env.reset(jax.random.key(0))
    with pytest.raises(ValueError, match=r"action must have shape \[14\].*got \[7\]"):
        transfer_env.step(state, np.zeros(7))
    with pytest.raises(ValueError, match="action must be finite"):
        transfer_env.step(state, np.full(14, np.nan))
    with pytest.raises(ValueError, match=r"cameras must be among the scene's .*\['wrist'\]"):
        registry.make("aloha_transfer_cube", cameras=("wrist",))
    with pytest.raises(ValueError, match="camera must be one of"):
        transfer_env.render(state, "side")
    with pytest.raises(ValueError, match=r"image_size must be a \(height, width\) tuple"):
        registry.make("aloha_insertion", image_size=64)
    with pytest.raises(ValueError, match=r"has no config field\(s\) \['colour'\]"):
        registry.make("aloha_insertion", colour="red")
    with pytest.raises(ValueError, match=r"task must be one of \[.*'aloha_insertion'.*got 'aloha'"):
        registry.make("aloha")
    with pytest.raises(ValueError, match=r"object_poses must have shape \[14\]"):
        registry.make("aloha_insertion", cameras=()).env.reset_with_objects(np.zeros(7))


def test_a_rendering_failure_names_mujoco_gl_and_what_to_install(monkeypatch):
    def no_context(*args, **kwargs):
        raise RuntimeError("Cannot initialize a EGL device display")

    env = registry.make("aloha_transfer_cube", cameras=(), image_size=SMALL_IMAGE).env
    state, _ = env.reset(jax.random.key(0))
    monkeypatch.setattr(aloha.mujoco, "Renderer", no_context)
    with pytest.raises(RuntimeError, match=r"MUJOCO_GL='egl'.*libegl1.*MUJOCO_GL=osmesa"):
        env.render(state, "top")


def test_a_missing_simulator_names_the_sim_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "core.envs.aloha")
    monkeypatch.setitem(sys.modules, "gym_aloha", None)
    with pytest.raises(ModuleNotFoundError, match=r"sim` extra .*pip install -e '\.\[sim\]'"):
        importlib.import_module("core.envs.aloha")


def test_the_jax_tasks_work_without_mujoco_and_the_aloha_tasks_name_the_sim_extra():
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in ("mujoco", "gym_aloha"))
    script = f"""
import sys
{blocked}
from core.envs import registry
registry.make("obstacle", cameras=())
assert "aloha_insertion" in registry.task_names()
try:
    registry.make("aloha_insertion")
except ModuleNotFoundError as error:
    print(error)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "pip install -e '.[sim]'" in result.stdout


def _orientation_lag_degrees(weld_torquescale: float) -> float:
    """Largest angle between the right gripper's plan and its grasp point over the approach."""
    object_poses = aloha.sample_object_poses("aloha_transfer_cube", 0)
    scene = aloha_scripted.EndEffectorScene("aloha_transfer_cube", weld_torquescale)
    plans = aloha_scripted.transfer_cube_plan(object_poses, scene.reset(object_poses), 400)
    times = np.arange(1, 121)
    left, right = interpolate(plans.left, times), interpolate(plans.right, times)
    lag = 0.0
    for step in range(len(times)):
        scene.step(left.at(step), right.at(step))
        _, quaternion = scene.grasp_pose(1)
        lag = max(lag, rotation_angle_degrees(quaternion, right.quaternions[step]))
    return lag


def test_the_weld_fix_keeps_the_gripper_within_a_degree_of_its_planned_orientation():
    assert _orientation_lag_degrees(aloha_scripted.WELD_TORQUESCALE) < 1.5
    assert _orientation_lag_degrees(1.0) > 20.0  # MuJoCo 3 with gym-aloha's scene as shipped


def test_scripted_transfer_grasps_lifts_and_hands_over_the_cube():
    suite = registry.make("aloha_transfer_cube", cameras=())
    episode = aloha_scripted.scripted_episode(suite.env, suite.expert, jax.random.key(0))
    stages = episode.stages
    # gym-aloha's stages: 1 the right gripper touches the cube, 2 ... off the table (lifted),
    # 4 the left gripper touches it off the table.
    lifted = int(np.argmax(stages == 2))
    assert 0 < lifted < 160
    heights = episode.arrays["observation.environment_state"][:, 2]
    assert np.all(heights[lifted + 50 :] > 0.1)  # the cube left the table (it rests at 0.02)
    assert episode.succeeded and stages[-1] == 4
    # Success ends the episode: one reward of 1 on its last step.
    np.testing.assert_array_equal(episode.arrays["next.reward"].nonzero()[0], [len(stages) - 1])
    assert episode.arrays["next.done"][-1] and not episode.arrays["next.done"][:-1].any()
    np.testing.assert_array_equal(
        episode.arrays["action"], episode.plan.joint_actions[: len(stages)]
    )


def test_scripted_insertion_touches_the_pin():
    suite = registry.make("aloha_insertion", cameras=())
    episode = aloha_scripted.scripted_episode(suite.env, suite.expert, jax.random.key(0))
    assert episode.succeeded and episode.stages[-1] == 4


def test_recorded_demonstrations_read_back_with_images_state_and_actions(tmp_path):
    out = tmp_path / "transfer"
    summary = demos.generate_demos(
        "aloha_transfer_cube", 1, out, seed=3, image_size=SMALL_IMAGE, progress=False
    )
    assert summary.episodes == 1 and summary.frames == 400 and summary.failed_seeds == ()
    suite = registry.make("aloha_transfer_cube", cameras=("top",), image_size=SMALL_IMAGE)
    reset_key, plan_key = jax.random.split(jax.random.key(3))
    state, observation = suite.env.reset(reset_key)
    plan = suite.expert.plan(plan_key, state)
    with LeRobotReader(out) as reader:
        assert reader.num_episodes == 1 and reader.fps == 50
        assert reader.instruction(0) == suite.env.instruction(state)
        episode = reader.episode(0)
    assert episode["observation.images.top"].shape == (400, *SMALL_IMAGE, 3)
    for key, value in observation.items():
        np.testing.assert_array_equal(episode[key][0], value, err_msg=key)
    np.testing.assert_array_equal(episode["action"], plan.joint_actions)
    # Demonstrations run to the time limit: success comes mid-handover and stays.
    success = episode["next.success"].ravel()
    assert success.any() and success[success.argmax() :].all()
    np.testing.assert_array_equal(episode["next.done"].ravel().nonzero()[0], [399])
    np.testing.assert_array_equal(episode["expert.seed"].ravel(), 3)

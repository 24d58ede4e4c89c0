"""Host-stepped rollouts (core.evaluation.host_rollout): on a JAX task stepped one episode at a
time on the host, the record equals the jitted `rollout`'s; on MuJoCo ALOHA, a policy that
replays the scripted expert's plan succeeds through `evaluate`'s host path exactly as the
expert does, and the video is filmed while it runs."""

import dataclasses
import functools
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from evaluation_policies import ObstacleOraclePolicy, oracle_normalizers
from PIL import Image

from core.controllers import ChunkedController, TemporalEnsemblingController
from core.envs import registry
from core.envs.api import EnvSpec
from core.envs.obstacle import ObstacleEnv, ObstacleExpert
from core.evaluation import evaluate, metrics
from core.evaluation.host_rollout import (
    host_expert_rollouts,
    host_rollout,
    is_host_stepped,
    thumbnail,
    thumbnail_size,
)
from core.evaluation.rollout import episode_keys, expert_reference_rollouts, rollout

SEEDS = np.arange(5000, 5006)
NUM_STEPS = 50  # the obstacle expert needs about 40
CHUNK = 4
JAX_ENV = ObstacleEnv(cameras=())


@functools.partial(jax.jit, static_argnums=0)
def _reset(env, key):
    return env.reset(key)


@functools.partial(jax.jit, static_argnums=0)
def _step(env, state, action):
    return env.step(state, action)


@dataclasses.dataclass(frozen=True)
class HostSteppedTask:
    """A JAX task behind numpy, one episode per call, as a host simulator presents itself."""

    env: ObstacleEnv

    @property
    def spec(self) -> EnvSpec:
        return self.env.spec

    def reset(self, key) -> tuple[Any, dict]:
        return jax.device_get(_reset(self.env, key))

    def step(self, state, action):
        return jax.device_get(_step(self.env, state, jnp.asarray(action)))


def _assert_same_rollouts(host, jitted):
    for field in ("success", "terminated", "truncated", "queried"):
        np.testing.assert_array_equal(getattr(host, field), getattr(jitted, field), err_msg=field)
    np.testing.assert_allclose(host.actions, jitted.actions, atol=1e-6)
    np.testing.assert_allclose(host.rewards, jitted.rewards)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, atol=1e-6), host.states, jitted.states
    )


@pytest.mark.parametrize(
    ("controller", "observation_horizon"),
    [
        pytest.param(
            ChunkedController(query_every=CHUNK),
            2,
            marks=pytest.mark.slow(reason="compiles the scan and the host step: ~5-9 s"),
        ),
        (TemporalEnsemblingController(decay=0.01, convention="act"), 1),
    ],
    ids=["chunked", "temporal_ensembling"],
)
def test_host_loop_records_the_same_rollouts_as_the_jitted_scan(controller, observation_horizon):
    policy = ObstacleOraclePolicy(action_horizon=CHUNK, observation_horizon=observation_horizon)
    normalizers = oracle_normalizers()
    variables = {"normalizers": normalizers}
    keys, rng = episode_keys(SEEDS), jax.random.key(0)
    jitted = jax.device_get(
        rollout(JAX_ENV, policy, controller, variables, normalizers, keys, rng, NUM_STEPS)
    )
    host = host_rollout(
        HostSteppedTask(JAX_ENV), policy, controller, variables, normalizers, keys, rng, NUM_STEPS
    )
    _assert_same_rollouts(host.rollouts, jitted)
    assert jitted.success[:, -1].all()  # the oracle reaches every goal ...
    assert not jitted.queried[:, -1].any()  # ... before the last step: absorbing steps recorded
    lengths = (~(jitted.terminated | jitted.truncated)).sum(axis=1) + 1
    assert host.env_steps == lengths.sum()  # ended episodes are not stepped
    assert host.frames is None


def test_host_expert_reference_has_the_jitted_references_outcomes_and_statistics():
    keys = episode_keys(SEEDS)
    jitted = jax.device_get(expert_reference_rollouts(JAX_ENV, ObstacleExpert(), keys))
    host = host_expert_rollouts(
        HostSteppedTask(JAX_ENV), ObstacleExpert(), keys, JAX_ENV.spec.max_episode_steps
    )
    # after every episode has ended the jitted reference keeps acting on absorbing states,
    # the host loop stops: the outcomes, rewards and statistics are the same
    for field in ("success", "terminated", "truncated", "rewards"):
        np.testing.assert_array_equal(getattr(host, field), getattr(jitted, field), err_msg=field)
    statistics = metrics.episode_statistics(host, "obstacle")
    assert statistics == metrics.episode_statistics(jitted, "obstacle")
    assert statistics["success_rate"] == 1.0
    assert set(statistics["mode_shares"]) >= {"left", "right"}


def test_thumbnails_keep_the_aspect_ratio_and_average_pixels():
    assert thumbnail_size(480, 640, 128) == (96, 128)
    assert thumbnail_size(48, 64, 128) == (48, 64)  # never enlarged
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[:2, :2] = 200  # one bright quadrant
    np.testing.assert_array_equal(thumbnail(frame, (2, 2))[..., 0], [[200, 0], [0, 0]])
    np.testing.assert_array_equal(thumbnail(frame, (1, 1))[..., 0], [[50]])


@dataclasses.dataclass(frozen=True)
class ReplayPolicy:
    """Predicts, at the first step, a whole episode's planned joint trajectory: the scripted
    expert's, stored per episode (batch row) in its variables {"chunks": [B, T, 14]}."""

    action_horizon: int
    observation_horizon: int = 1
    observation_keys: tuple[str, ...] = ("observation.state",)

    def predict_chunk(self, variables, observation, rng):
        return variables["chunks"]


@pytest.mark.sim
@pytest.mark.slow(reason="two MuJoCo episodes through the policy and the expert: ~10 s")
def test_replaying_the_scripted_plan_through_the_host_path_transfers_the_cube(tmp_path):
    pytest.importorskip("core.envs.aloha", reason="needs the `sim` extra (MuJoCo)")
    task = registry.make("aloha_transfer_cube", cameras=("top",), image_size=(48, 64))
    assert is_host_stepped(task.env) and not is_host_stepped(JAX_ENV)
    seeds = (2_000_000, 2_000_001)
    plans = []
    for seed in seeds:
        reset_key, plan_key = jax.random.split(jax.random.key(seed))
        state, _ = task.env.reset(reset_key)
        plans.append(task.expert.plan(plan_key, state).joint_actions)
    chunks = np.stack(plans)  # [2, 400, 14]
    num_steps = chunks.shape[1]
    eval_config = {
        "episodes": 2,
        "seed": seeds[0],
        "controller": {"name": "chunked", "query_every": num_steps},
        "video_episodes": 2,
    }
    results = evaluate(
        ReplayPolicy(action_horizon=num_steps),
        {"chunks": chunks},
        {},
        task,
        eval_config,
        jax.random.key(0),
        tmp_path,
        training_seeds=range(50),
    )

    assert results["success_rate"] == 1.0 and results["episodes"] == 2
    expert = results["expert"]
    assert expert["success_rate"] == 1.0
    # the same actions from the same states: the policy's episodes are the expert's
    assert results["mean_length"] == expert["mean_length"] < num_steps  # success ends them
    assert results["policy_calls_per_episode"] == 1.0  # one chunk, executed open loop
    assert json.loads((tmp_path / "eval.json").read_text()) == results
    with Image.open(tmp_path / "rollouts.gif") as gif:
        assert gif.size == (2 * (64 + 6), 48 + 6)  # two 48x64 tiles with 3-px borders
        # until the longer episode has ended, plus its last state
        assert results["mean_length"] < gif.n_frames <= num_steps
    assert results["timing"]["env_steps_per_second"] > 0

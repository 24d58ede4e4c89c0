"""Evaluation metrics (core.evaluation.metrics): the Wilson interval against published values
and its defining quadratic, episode lengths of absorbing episodes, outcome and mode
classification of hand-built obstacle and pick-and-place episodes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.envs.api import EpisodeStatus
from core.envs.obstacle import ObstacleState
from core.envs.pick_place import PickPlaceState
from core.envs.point_mass import PointMass
from core.evaluation import metrics
from core.evaluation.rollout import Rollouts


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        (0, 10, (0.0, 0.2775)),  # Newcombe (1998), Stat. Med. 17:857, Table I, method 3
        (10, 10, (0.7225, 1.0)),
        (5, 10, (0.2366, 0.7634)),
        (81, 263, (0.2553, 0.3662)),  # Newcombe's example 81/263
    ],
)
def test_wilson_interval_matches_published_values(successes, trials, expected):
    np.testing.assert_allclose(metrics.wilson_interval(successes, trials), expected, atol=1e-4)


@given(trials=st.integers(1, 500), data=st.data())
def test_wilson_endpoints_solve_the_score_test_equality(trials, data):
    """The interval is {p : (p̂ - p)² <= z² p (1 - p) / n}: its finite endpoints are the roots
    of (1 + z²/n) p² - (2 p̂ + z²/n) p + p̂² = 0, computed here by numpy.roots."""
    successes = data.draw(st.integers(0, trials))
    rate, z = successes / trials, metrics.Z_95
    low, high = metrics.wilson_interval(successes, trials)
    roots = np.sort(np.roots([1 + z**2 / trials, -(2 * rate + z**2 / trials), rate**2]).real)
    np.testing.assert_allclose([low, high], np.clip(roots, 0.0, 1.0), atol=1e-12)
    assert low <= rate <= high


@pytest.mark.parametrize(("successes", "trials"), [(-1, 10), (11, 10), (0, 0), (1, 2.5)], ids=str)
def test_wilson_interval_rejects_impossible_counts(successes, trials):
    with pytest.raises(ValueError, match=r"successes|trials"):
        metrics.wilson_interval(successes, trials)


def test_episode_length_counts_up_to_the_first_done_step_or_the_whole_horizon():
    done = np.array(
        [
            [False, False, True, True, True],
            [True, True, True, True, True],
            [False, False, False, False, False],
        ]
    )
    np.testing.assert_array_equal(metrics.episode_lengths(done), [3, 1, 5])


def _status(steps: int, *, end=None, success=False, failure=False, truncated=False):
    """[steps] statuses of an episode that ends (absorbing) at entry `end` (default: the last)."""
    ended = np.arange(steps) >= (steps - 1 if end is None else end)
    return EpisodeStatus(
        time=jnp.arange(steps),
        success=jnp.asarray(ended & success),
        terminated=jnp.asarray(ended & (success | failure)),
        truncated=jnp.asarray(ended & truncated),
    )


def _obstacle_episode(xs, ys, **outcome) -> ObstacleState:
    """States [T + 1] of an episode through the positions (xs, ys), obstacle at (0.02, 0)."""
    positions = jnp.stack([jnp.asarray(xs, float), jnp.asarray(ys, float)], axis=-1)
    steps = len(xs)
    return ObstacleState(
        agent=PointMass.at_rest(positions),
        goal=jnp.tile(jnp.array([0.0, 0.8]), (steps, 1)),
        obstacle=jnp.tile(jnp.array([0.02, 0.0]), (steps, 1)),
        status=_status(steps, **outcome),
    )


@pytest.mark.parametrize(
    ("xs", "ys", "outcome", "mode"),
    [
        ([0.0, -0.5, -0.6, 0.0], [-0.8, -0.3, 0.0, 0.8], {"success": True}, "left"),
        ([0.0, 0.5, 0.62, 0.0], [-0.8, -0.3, 0.01, 0.8], {"success": True}, "right"),
        ([0.0, 0.5, 0.6, 0.4], [-0.8, -0.3, 0.05, 0.3], {"truncated": True}, "right"),
        ([0.0, 0.0, 0.0, 0.0], [-0.8, -0.6, -0.4, -0.33], {"failure": True}, "collided"),
        ([0.0, -0.55, -0.6, -0.3], [-0.8, -0.3, 0.2, 0.3], {"failure": True}, "collided"),
        ([0.0, 0.1, 0.0, 0.1], [-0.8, -0.7, -0.8, -0.7], {"truncated": True}, "other"),
    ],
    ids=["left", "right", "right-timeout", "straight-collided", "left-collided", "stalled"],
)
def test_obstacle_mode_is_the_side_at_the_obstacle_level_unless_it_collided(xs, ys, outcome, mode):
    names, classify = metrics.MODE_CLASSIFIERS["obstacle"]
    assert names[int(classify(_obstacle_episode(xs, ys, **outcome)))] == mode


@pytest.mark.parametrize(
    ("block", "mode"),
    [((-0.55, 0.55), "left_zone"), ((0.6, 0.5), "right_zone"), ((0.0, 0.55), "neither")],
)
def test_pick_place_mode_is_the_zone_holding_the_block_at_the_end(block, mode):
    steps = 3
    blocks = jnp.array([[0.0, -0.3], [0.0, 0.0], block])
    state = PickPlaceState(
        agent=PointMass.at_rest(blocks),
        opening=jnp.ones(steps),
        holding=jnp.zeros(steps, bool),
        block=blocks,
        zones=jnp.tile(jnp.array([[-0.55, 0.55], [0.55, 0.55]]), (steps, 1, 1)),
        status=_status(steps),
    )
    names, classify = metrics.MODE_CLASSIFIERS["pick_place"]
    assert names[int(classify(state))] == mode


def test_episode_statistics_of_hand_built_episodes():
    """Three obstacle episodes of at most 3 steps: a left success in 3, a collision in 2 (the
    absorbing state repeats), a timeout after 3 on the right."""
    episodes = [
        _obstacle_episode([0.0, -0.5, -0.6, -0.1], [-0.8, -0.3, 0.0, 0.75], success=True),
        _obstacle_episode([0.0, 0.0, 0.0, 0.0], [-0.8, -0.4, -0.33, -0.33], end=2, failure=True),
        _obstacle_episode([0.0, 0.5, 0.6, 0.6], [-0.8, -0.3, 0.1, 0.2], truncated=True),
    ]
    states = jax.tree.map(lambda *leaves: jnp.stack(leaves), *episodes)  # [3, 4]
    after_step = jax.tree.map(lambda leaf: np.asarray(leaf)[:, 1:], states.status)
    success = after_step.success
    rollouts = Rollouts(
        states=states,
        actions=np.zeros((3, 3, 2)),
        rewards=(success & ~np.asarray(states.status.success)[:, :-1]).astype(np.float32),
        success=success,
        terminated=after_step.terminated,
        truncated=after_step.truncated,
        queried=np.ones((3, 3), bool),
    )
    statistics = metrics.episode_statistics(rollouts, "obstacle")
    assert statistics["episodes"] == 3 and statistics["successes"] == 1
    assert statistics["success_rate"] == pytest.approx(1 / 3)
    assert statistics["success_ci95"] == pytest.approx(list(metrics.wilson_interval(1, 3)))
    assert statistics["mean_length"] == pytest.approx((3 + 2 + 3) / 3)
    assert statistics["mean_return"] == pytest.approx(1 / 3)
    third = pytest.approx(1 / 3)
    assert statistics["outcome_shares"] == {"success": third, "failure": third, "timeout": third}
    assert statistics["mode_shares"] == {
        "left": third,
        "right": third,
        "collided": third,
        "other": 0.0,
    }


def test_tasks_without_modes_get_no_mode_shares():
    assert metrics.episode_modes("reach_target", states=None) is None

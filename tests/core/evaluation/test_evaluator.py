"""`core.evaluation.evaluate` end to end: a policy that averages the obstacle's two modes (book
16.3.3, eq. 16.39) is reported as colliding, beside the expert's two modes on the same seeds;
eval.json, the video and the plot are written; seeds avoid the demonstration seeds; the eval
config is validated."""

import json

import jax
import numpy as np
import pytest
from evaluation_policies import ObstacleOraclePolicy, oracle_normalizers
from PIL import Image

from core.envs import registry
from core.evaluation import evaluate, evaluator, metrics, summary_text

EVAL_CONFIG = {
    "episodes": 12,
    "seed": 1_000,
    "controller": {"name": "chunked", "query_every": 1, "decay": 0.01, "convention": "act"},
    "video_episodes": 4,
    "max_steps": None,
}


@pytest.fixture(scope="module")
def averaging_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("eval")
    normalizers = oracle_normalizers()
    results = evaluate(
        ObstacleOraclePolicy(average_modes=True),
        {"normalizers": normalizers},
        normalizers,
        registry.make("obstacle", cameras=()),
        EVAL_CONFIG,
        jax.random.key(0),
        out_dir,
        training_seeds=range(0, 200),
        policy_label="mode-averaging oracle",
        episodes_per_batch=5,  # 3 batches of 4 episodes
    )
    return results, out_dir


@pytest.mark.slow  # compiles the policy rollout and the expert reference (~8 s on 2 cores)
def test_mode_averaging_policy_collides_while_the_expert_splits_left_and_right(averaging_run):
    results, _ = averaging_run
    assert results["success_rate"] == 0.0 and results["episodes"] == 12
    assert results["success_ci95"] == list(metrics.wilson_interval(0, 12))
    assert results["mode_shares"]["collided"] == 1.0
    assert results["outcome_shares"]["failure"] == 1.0
    expert = results["expert"]
    assert expert["success_rate"] == 1.0
    assert expert["mode_shares"]["left"] + expert["mode_shares"]["right"] == 1.0
    assert 0 < expert["mode_shares"]["left"] < 1  # both modes among 12 fair draws (p = 0.9995)
    assert results["seeds"] == [1_000, 1_011]
    # query_every 1: a call at every step of an episode (and of the others still running in its
    # batch), none once all episodes of the batch have collided (~15 steps, limit 100)
    assert results["mean_length"] <= results["policy_calls_per_episode"] < 30
    assert "collided 100%" in summary_text(results)


def test_eval_json_video_and_plot_are_written(averaging_run):
    results, out_dir = averaging_run
    assert json.loads((out_dir / "eval.json").read_text()) == results
    assert results["files"] == {
        "eval": str(out_dir / "eval.json"),
        "video": str(out_dir / "rollouts.gif"),
        "trajectories": str(out_dir / "trajectories.png"),
    }
    with Image.open(out_dir / "rollouts.gif") as gif:
        tile = evaluator.VIDEO_TILE_SIZE + 2 * 3
        assert gif.size == (2 * tile, 2 * tile)  # 4 episodes on a 2 x 2 grid
        # the longest of the first 4 collisions (about 10 steps straight up), plus the last state
        assert 5 < gif.n_frames < 20
    with Image.open(out_dir / "trajectories.png") as plot:
        assert plot.size[0] > 1.5 * plot.size[1]  # expert and policy side by side


def test_evaluation_seeds_that_reach_into_the_demonstration_seeds_are_rejected():
    with pytest.raises(ValueError, match="include 5 training seed"):
        evaluator.evaluation_seeds(195, 10, training_seeds=range(0, 200))
    np.testing.assert_array_equal(
        evaluator.evaluation_seeds(200, 3, training_seeds=range(0, 200)), [200, 201, 202]
    )


def test_episode_batches_are_equal_in_size_and_pad_by_repeating_the_last_seed():
    seeds = np.arange(10, 21)  # 11 seeds, at most 4 per batch -> 3 batches of 4
    batches = evaluator.episode_batches(seeds, 4)
    assert [len(batch) for batch in batches] == [4, 4, 4]
    np.testing.assert_array_equal(np.concatenate(batches)[:11], seeds)
    assert batches[-1][-1] == 20


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"episode": 3}, r"unknown field\(s\) \['episode'\]"),
        ({"episodes": 0}, "eval.episodes must be a positive int"),
        ({"episodes": True}, "eval.episodes must be a positive int"),
        ({"seed": -1}, "eval.seed must be a non-negative int"),
        ({"video_episodes": 1.5}, "eval.video_episodes"),
        ({"max_steps": -5}, "eval.max_steps"),
    ],
)
def test_eval_settings_reject_unknown_fields_and_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        evaluator.eval_settings({**EVAL_CONFIG, **change}, time_limit=100)


def test_eval_settings_default_to_the_time_limit_and_cap_the_video_at_the_episodes():
    settings = evaluator.eval_settings({**EVAL_CONFIG, "video_episodes": 50}, time_limit=80)
    assert settings.num_steps == 80 and settings.video_episodes == 12

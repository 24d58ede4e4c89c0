"""`python -m experiments.evaluate`: restores a (tiny) trained run, rebuilds its policy, applies
the command line's overrides and writes <workdir>/eval/; flags reject unknown controller fields
and bad values; evaluation avoids the run's demonstration seeds."""

import json

import pytest
from absl import flags

from core.training.config import default_config, validate_config
from core.training.loop import fit
from experiments import evaluate, policies, train

NUM_DEMOS = 6


def _tiny_config(root):
    config = default_config()
    config.task.name = "obstacle"
    config.task.image_size = 32
    config.data.path = str(root / "data")
    config.data.num_demos = NUM_DEMOS
    config.data.normalization = (
        ("observation.state", "mean_std"),
        ("observation.environment_state", "mean_std"),
        ("action", "min_max"),
    )
    config.data.batch_size = 16
    config.data.prefetch = 0
    config.policy.name = "bc_mlp"
    config.policy.head = "mse"
    config.policy.hidden_sizes = (16,)
    config.policy.state_keys = ("observation.state", "observation.environment_state")
    config.train.num_steps = 4
    config.train.log_every = 2
    config.train.validate_every = 0
    config.train.checkpoint_every = 2
    config.eval.seed = 10_000
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run trained for 4 steps on 6 generated demonstrations (checkpoints at steps 2, 4)."""
    root = tmp_path_factory.mktemp("run")
    config = _tiny_config(root)
    validate_config(config)
    workdir = root / "run"
    train.prepare_workdir(config, workdir)
    dataset = train.open_dataset(config)
    policy = policies.make_policy(config.policy, dataset.reader.features)
    sampler, _ = train.make_samplers(config, dataset, policy)
    fit(config, workdir, policy, sampler, None, dataset.stats, progress=False)
    dataset.reader.close()
    return config, workdir


@pytest.mark.slow  # generates demos, trains 4 steps, compiles the rollouts (~12 s on 2 cores)
def test_evaluate_workdir_restores_the_run_and_applies_the_overrides(run):
    config, workdir = run
    results = evaluate.evaluate_workdir(
        workdir,
        which="latest",
        episodes=6,
        video_episodes=2,
        controller={"name": "temporal_ensembling", "convention": "book"},
    )
    assert json.loads((workdir / "eval" / "eval.json").read_text()) == results
    assert results["checkpoint_step"] == 4 and results["episodes"] == 6
    assert results["controller"] == {
        "name": "temporal_ensembling",
        "convention": "book",
        "decay": config.eval.controller.decay,  # kept from the run's config
        "query_every": config.eval.controller.query_every,
    }
    assert results["seeds"] == [10_000, 10_005]
    assert {"eval", "video", "trajectories"} <= set(results["files"])
    assert results["expert"]["success_rate"] == 1.0


def test_training_seeds_are_the_datasets_demonstration_seeds(run, tmp_path):
    config, _ = run
    assert evaluate.training_seeds(config).tolist() == list(range(NUM_DEMOS))
    moved = _tiny_config(tmp_path)  # no dataset there: the config's seed range
    moved.data.demo_seed = 50
    assert evaluate.training_seeds(moved).tolist() == list(range(50, 50 + NUM_DEMOS))


def _parsed(*arguments):
    flag_values = flags.FlagValues()
    evaluate.define_flags(flag_values)
    flag_values(["evaluate", "--workdir=runs/x", *arguments])
    return flag_values


def test_controller_flags_override_only_the_fields_given():
    flag_values = _parsed("--controller.name=temporal_ensembling", "--controller.decay=0.1")
    assert evaluate.controller_overrides(flag_values) == {
        "name": "temporal_ensembling",
        "decay": 0.1,
    }
    assert evaluate.controller_overrides(_parsed()) == {}
    assert evaluate.parse_checkpoint(_parsed("--checkpoint=1200").checkpoint) == 1200


@pytest.mark.parametrize(
    ("argument", "error"),
    [
        ("--controller.horizon=3", flags.UnrecognizedFlagError),
        ("--controller.query_every=abc", flags.IllegalFlagValueError),
        ("--controller.convention=lerobot", flags.IllegalFlagValueError),
        ("--checkpoint=newest", flags.IllegalFlagValueError),
    ],
)
def test_unknown_controller_fields_and_bad_values_are_rejected(argument, error):
    with pytest.raises(error):
        _parsed(argument)


def test_eval_config_overrides_reject_unknown_controller_fields():
    with pytest.raises(ValueError, match="unknown controller field 'horizon'"):
        evaluate.eval_config_with(default_config().eval, controller={"horizon": 3})

"""The policy registry: config -> policy, for a ConfigDict or a plain mapping (as restored from
config.json, with lists), loud on unknown names and options, and lazy in what it imports."""

import subprocess
import sys

import ml_collections
import pytest

from core.bc import BCPolicy
from experiments import policies

FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [4], "names": None},
    "observation.images.top": {"dtype": "image", "shape": [32, 32, 3], "names": None},
    "action": {"dtype": "float32", "shape": [2], "names": None},
}


def test_a_config_dict_and_its_json_form_build_the_same_hashable_policy():
    config = ml_collections.ConfigDict(
        {"name": "bc_cnn", "head": "gaussian_nll", "hidden_sizes": (64, 64), "action_horizon": 3}
    )
    policy = policies.make_policy(config, FEATURES)
    from_json = policies.make_policy({**config.to_dict(), "hidden_sizes": [64, 64]}, FEATURES)
    assert isinstance(policy, BCPolicy) and policy == from_json
    assert hash(policy) == hash(from_json)
    assert policy.image_keys == ("observation.images.top",) and policy.action_horizon == 3


def test_bc_mlp_reads_the_state_only():
    policy = policies.make_policy({"name": "bc_mlp"}, FEATURES)
    assert policy.observation_keys == ("observation.state",)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"head": "mse"}, "needs a name"),
        (
            {"name": "bc_transformer"},
            r"unknown policy 'bc_transformer'; known: \[.*'bc_cnn', 'bc_mlp'",
        ),
        ({"name": "bc_mlp", "num_keypoints": 8}, r"bc_mlp has no option\(s\) \['num_keypoints'\]"),
    ],
)
def test_bad_policy_configs_are_rejected_naming_the_problem(config, message):
    with pytest.raises(ValueError, match=message):
        policies.make_policy(config, FEATURES)


def test_every_registered_factory_resolves_to_a_policy_with_its_defaults():
    for name in policies.POLICIES:
        policy = policies.make_policy({"name": name}, FEATURES)
        for attribute in ("init", "loss", "predict_chunk", "observation_keys"):
            assert hasattr(policy, attribute), (name, attribute)


def test_importing_the_registry_imports_no_method():
    probe = "import sys, experiments.policies; print('core.bc' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

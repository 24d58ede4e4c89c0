"""Experiment-config layout: validation, config.json round trips, resume compatibility."""

import json

import pytest

from core.training import config as config_lib
from tests.core.training.toys import toy_config


@pytest.fixture
def config(tmp_path):
    return toy_config(tmp_path / "data")


def test_complete_config_validates(config):
    config_lib.validate_config(config)


def test_default_config_names_its_required_keys():
    with pytest.raises(ValueError) as error:
        config_lib.validate_config(config_lib.default_config())
    for key in config_lib.REQUIRED:
        assert f"{key}: must be set (no default)" in str(error.value)


def test_unknown_key_is_rejected_with_its_full_name_and_the_known_keys(config):
    config.optim.lr = 3e-4
    with pytest.raises(ValueError, match=r"optim\.lr: unknown key \(known keys here: .*optim\.b1"):
        config_lib.validate_config(config)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("batch_size", 64.0, r"data\.batch_size: must be int, got float 64\.0"),
        ("path", 3, r"data\.path: must be str, got int 3"),
        ("num_demos", True, r"data\.num_demos: must be int, got bool True"),
    ],
)
def test_wrong_type_is_rejected_naming_key_and_type(config, key, value, message):
    del config.data[key]
    config.data[key] = value  # a fresh field: ConfigDict itself would refuse the type change
    with pytest.raises(ValueError, match=message):
        config_lib.validate_config(config)


def test_int_is_accepted_for_float_fields(config):
    del config.optim.weight_decay
    config.optim.weight_decay = 0  # a fresh int field (assigning keeps the float type)
    config_lib.validate_config(config)


def test_missing_key_is_reported(config):
    del config.train["best_metric"]
    with pytest.raises(ValueError, match=r"train\.best_metric: missing"):
        config_lib.validate_config(config)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("optim.ema_decay", 1.0, r"optim\.ema_decay: must be in \[0, 1\)"),
        ("optim.schedule.name", "linear", r"optim\.schedule\.name: must be one of"),
        ("optim.loss_scaling", "static", r"optim\.loss_scaling: must be one of"),
        ("optim.schedule.warmup_steps", 20, r"warmup_steps: must be < train\.num_steps = 20"),
        ("data.normalization", (("action", "zscore"),), r"mode of 'action' must be one of"),
        ("train.best_metric", "loss", r'train\.best_metric: must be a validation metric "val/'),
        ("eval.seed", 150, r"eval\.seed: evaluation seeds 150\.\.199 overlap the demonstration"),
        ("data.batch_size", 0, r"data\.batch_size: must be >= 1, got 0"),
    ],
)
def test_bad_value_is_rejected_naming_key_and_requirement(config, path, value, message):
    section, _, key = path.rpartition(".")
    config_section = config
    for part in section.split("."):
        config_section = config_section[part]
    config_section[key] = value
    with pytest.raises(ValueError, match=message):
        config_lib.validate_config(config)


def test_task_accepts_environment_fields_and_rejects_others(config):
    config.task.max_episode_steps = 50  # a field of ObstacleEnv
    config_lib.validate_config(config)
    config.task.num_obstacles = 2
    with pytest.raises(ValueError, match=r"task\.num_obstacles: unknown key"):
        config_lib.validate_config(config)


@pytest.mark.parametrize("image_size", [64, (240, 320), [240, 320]])
def test_image_size_is_a_side_or_a_height_width_pair(config, image_size):
    config.task.image_size = image_size
    config_lib.validate_config(config)
    restored = config_lib.config_from_dict(config_lib.plain(config))
    assert restored.task.image_size == (tuple(image_size) if image_size != 64 else 64)


@pytest.mark.parametrize("image_size", [0, (240,), (240, 0), (240.0, 320), True, "64"])
def test_bad_image_size_is_rejected_naming_both_forms(config, image_size):
    config.task.image_size = image_size
    with pytest.raises(
        ValueError, match=r"task\.image_size: must be an int >= 1 .* \(height, width\)"
    ):
        config_lib.validate_config(config)


def test_policy_and_parameter_groups_take_free_keys(config):
    config.policy.hidden_sizes = (64, 64)
    config.optim.param_group_lr = {"encoder": 0.1}
    config_lib.validate_config(config)
    config.optim.param_group_lr = {"encoder": -0.1}
    with pytest.raises(
        ValueError, match=r"param_group_lr\.encoder: must be a learning-rate factor"
    ):
        config_lib.validate_config(config)


def test_config_json_round_trip_restores_values_tuples_and_placeholder_types(config, tmp_path):
    config.policy.hidden_sizes = (64, 64)
    config.optim.param_group_lr = {"encoder": 0.1}
    path = config_lib.save_config(config, tmp_path / "run")
    loaded = config_lib.load_config(tmp_path / "run")
    assert config_lib.plain(loaded) == config_lib.plain(config) == json.loads(path.read_text())
    assert loaded.task.cameras == ("top",)
    assert loaded.policy.hidden_sizes == (64, 64)
    assert loaded.data.normalization[0] == ("observation.state", "mean_std")
    loaded.eval.max_steps = 40  # the placeholder kept its type: an int is accepted
    with pytest.raises(TypeError):
        loaded.eval.max_steps = "forty"
    config_lib.validate_config(loaded)


def test_resume_conflicts_list_what_changes_learning_and_ignore_observation(config):
    changed = config_lib.config_from_dict(config_lib.plain(config))
    changed.train.log_every = 1
    changed.train.checkpoint_every = 3
    changed.eval.episodes = 500
    changed.train.num_steps = 40  # the constant schedule does not depend on it
    assert config_lib.resume_conflicts(config, changed) == []
    changed.optim.learning_rate = 3e-4
    changed.policy.hidden_sizes = (8,)
    assert config_lib.resume_conflicts(config, changed) == [
        "optim.learning_rate: 0.01 -> 0.0003",
        "policy.hidden_sizes: '<absent>' -> [8]",
    ]


def test_num_steps_matters_for_resume_under_a_cosine_schedule(config):
    config.optim.schedule.name = "cosine"
    longer = config_lib.config_from_dict(config_lib.plain(config))
    longer.train.num_steps = 40
    assert config_lib.resume_conflicts(config, longer) == ["train.num_steps: 20 -> 40"]


def test_check_resumable_refuses_a_changed_run(config, tmp_path):
    config_lib.save_config(config, tmp_path)
    config.data.batch_size = 16
    with pytest.raises(ValueError, match=r"data\.batch_size: 8 -> 16\n.*new --workdir"):
        config_lib.check_resumable(tmp_path, config)

"""LeRobot ACT checkpoints (book 17, 20) load into act.model and reproduce LeRobot's outputs.

Golden outputs from `experiments/parity/act.py` (LeRobot 0.4.4's ACTPolicy, seeded weights
rebuilt here without torch): the eval-mode chunk of `predict_action_chunk` and the training
forward (dropout 0, pinned ε) with its loss terms, for a two-camera post-norm model and a
state-only pre-norm one with three decoder layers; the latter also as the files LeRobot's
`save_pretrained` wrote. Then the converter's errors and the config and controller mapping.
"""

import functools
import json

import jax
import numpy as np
import pytest

from act import convert
from act.model import ACT
from act.policy import masked_reconstruction_loss, mean_kl_divergence
from core import position_encoding, resnet
from experiments.parity import act as reference
from experiments.parity import resnet as resnet_reference
from experiments.parity.common import FIXTURE_DIR

TOLERANCE = 1e-4  # the bar on |ours - LeRobot|; measured ~2e-6 (float32 roundoff)
FIXTURE = np.load(f"{FIXTURE_DIR}/act.npz")


def lerobot_config(case: str) -> dict:
    """The config.json LeRobot writes for a parity case (the fields the converter reads)."""
    features = {
        "observation.state": {"type": "STATE", "shape": [reference.STATE_DIM]},
        "observation.environment_state": {
            "type": "ENV",
            "shape": [reference.ENVIRONMENT_STATE_DIM],
        },
    }
    for key in reference.image_keys(case):
        shape = [3, reference.IMAGE_HEIGHT, reference.IMAGE_WIDTH]
        features[key] = {"type": "VISUAL", "shape": shape}
    options = reference.CASES[case]
    return {
        "type": "act",
        "input_features": features,
        "output_features": {"action": {"type": "ACTION", "shape": [reference.ACTION_DIM]}},
        **reference.SIZES,
        "pre_norm": options["pre_norm"],
        "n_decoder_layers": options["n_decoder_layers"],
    }


@functools.cache
def _converted(case: str):
    policy = convert.policy_from_lerobot_config(lerobot_config(case))
    return policy, convert.act_variables_from_lerobot(reference.lerobot_state_dict(case), policy)


def _observation(case: str) -> dict:
    """The parity inputs in our layout: one-frame windows, channels-last images in [0, 1]."""
    return {
        key: (np.moveaxis(array, 1, -1) if array.ndim == 4 else array)[:, None]
        for key, array in reference.inputs(case).items()
        if key.startswith("observation.")
    }


@functools.cache
def _outputs(case: str) -> dict:
    """predict_chunk and the training forward (no dropout, LeRobot's ε), in one compilation."""
    policy, variables = _converted(case)
    inputs = reference.inputs(case)

    @jax.jit
    def run(variables, observation):
        network_inputs = policy.network_inputs(observation)
        predicted, mean, log_var = policy.module.apply(
            variables,
            inputs["action"],
            inputs["action_is_pad"],
            inputs["latent_noise"],
            **network_inputs,
            deterministic=True,
            method=ACT.reconstruct,
        )
        chunk = policy.predict_chunk(variables, observation, jax.random.key(0))
        return {"chunk": chunk, "predicted": predicted, "mean": mean, "log_var": log_var}

    return run(variables, _observation(case))


@pytest.mark.parametrize("case", list(reference.CASES))
def test_predict_chunk_equals_lerobots_predict_action_chunk(case):
    expected = FIXTURE[f"{case}/predict_action_chunk"]
    np.testing.assert_allclose(_outputs(case)["chunk"], expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("case", list(reference.CASES))
def test_training_forward_equals_lerobots_with_the_same_noise(case):
    outputs = _outputs(case)
    for ours, theirs in (("predicted", "actions_hat"), ("mean", "mu"), ("log_var", "log_sigma_x2")):
        expected = FIXTURE[f"{case}/train/{theirs}"]
        np.testing.assert_allclose(outputs[ours], expected, rtol=0, atol=TOLERANCE, err_msg=ours)


@pytest.mark.parametrize("case", list(reference.CASES))
def test_loss_terms_equal_lerobots_up_to_its_padding_reduction(case):
    """KL identical; LeRobot's L1 divides the masked sum by all B·k·D entries, ours by the
    valid ones, so theirs = ours × (valid fraction); loss = L1 + 10 KL in LeRobot."""
    outputs, inputs = _outputs(case), reference.inputs(case)
    is_pad = inputs["action_is_pad"]
    l1 = masked_reconstruction_loss(outputs["predicted"], inputs["action"], is_pad, "l1")
    kl = mean_kl_divergence(outputs["mean"], outputs["log_var"])
    valid_fraction = 1.0 - is_pad.mean()
    np.testing.assert_allclose(l1 * valid_fraction, FIXTURE[f"{case}/train/l1_loss"], rtol=1e-5)
    np.testing.assert_allclose(kl, FIXTURE[f"{case}/train/kld_loss"], rtol=1e-5)
    lerobot_loss = FIXTURE[f"{case}/train/l1_loss"] + 10.0 * FIXTURE[f"{case}/train/kld_loss"]
    np.testing.assert_allclose(FIXTURE[f"{case}/train/loss"], lerobot_loss, rtol=1e-6)


def test_a_save_pretrained_directory_loads_with_its_config_and_controller(tmp_path):
    for name in ("model.safetensors", "config.json"):
        (tmp_path / name).write_bytes(FIXTURE[f"state/checkpoint/{name}"].tobytes())
    checkpoint = convert.load_lerobot_checkpoint(tmp_path)
    policy, variables = _converted("state")
    assert checkpoint.policy == policy
    assert checkpoint.controller == {
        "name": "chunked",
        "query_every": reference.SIZES["chunk_size"],
    }
    jax.tree.map(np.testing.assert_array_equal, checkpoint.variables, variables)
    explicit = convert.load_lerobot_checkpoint(tmp_path / "model.safetensors", policy)
    jax.tree.map(np.testing.assert_array_equal, explicit.variables, variables)


def test_the_converted_variables_hold_every_entry_of_the_state_dict():
    """Each LeRobot entry lands somewhere: the converted variables have exactly as many
    numbers as the state dict (the CVAE encoder, both stacks and the backbone included)."""
    for case in reference.CASES:
        state_dict = reference.lerobot_state_dict(case)
        _, variables = _converted(case)
        assert sum(np.size(v) for v in jax.tree.leaves(variables)) == sum(
            np.size(v) for v in state_dict.values()
        )


def _state_case_dict() -> dict:
    return dict(reference.lerobot_state_dict("state"))


def _table(length: int = 12) -> np.ndarray:
    return np.asarray(position_encoding.sinusoidal_table(length, reference.SIZES["dim_model"]))


MISFITS = {  # id: (change to the state dict, expected message)
    "missing_leaf": (
        lambda sd: sd.pop("model.action_head.bias"),
        r"missing keys: model.action_head.bias",
    ),
    "missing_decoder_layer_entry": (
        lambda sd: sd.pop("model.decoder.layers.2.norm3.weight"),
        r"missing keys: model.decoder.layers.2.norm3.weight",
    ),
    "unexpected_leaf": (
        lambda sd: sd.update({"model.extra_head.weight": np.zeros(3)}),
        r"unexpected keys: model.extra_head.weight",
    ),
    "extra_decoder_layer": (
        lambda sd: sd.update({"model.decoder.layers.3.norm1.weight": np.zeros(16)}),
        r"unexpected keys: model.decoder.layers.3.norm1.weight",
    ),
    "outside_the_model": (
        lambda sd: sd.update({"optimizer.step": np.zeros(1)}),
        r"unexpected keys: \['optimizer.step'\]",
    ),
    "shape": (
        lambda sd: sd.update({"model.action_head.weight": np.zeros((7, 16))}),
        r"model.action_head.weight of torch shape \[7, 16\] converts to \[16, 7\]",
    ),
    "sinusoidal_values": (
        lambda sd: sd.update({"model.vae_encoder_pos_enc": _table()[None] + 1e-3}),
        "differs from the sinusoidal table by up to 1.00e-03",
    ),
    "sinusoidal_shape": (
        lambda sd: sd.update({"model.vae_encoder_pos_enc": _table(11)[None]}),
        r"vae_encoder_pos_enc has shape \[1, 11, 16\], expected \[1, 12, 16\]",
    ),
}


@pytest.mark.parametrize(("change", "message"), list(MISFITS.values()), ids=list(MISFITS))
def test_the_converter_rejects_misfits_naming_the_keys(change, message):
    state_dict = _state_case_dict()
    change(state_dict)
    policy, _ = _converted("state")
    with pytest.raises(ValueError, match=message):
        convert.act_variables_from_lerobot(state_dict, policy)


def test_the_sinusoidal_buffer_and_old_normalization_buffers_are_checked_and_ignored():
    state_dict = _state_case_dict()
    state_dict["model.vae_encoder_pos_enc"] = _table()[None]
    state_dict["normalize_inputs.buffer_observation_state.mean"] = np.zeros(14, np.float32)
    policy, variables = _converted("state")
    converted = convert.act_variables_from_lerobot(state_dict, policy)
    jax.tree.map(np.testing.assert_array_equal, converted, variables)


def test_the_config_maps_onto_the_architecture_and_the_inputs():
    policy = convert.policy_from_lerobot_config(lerobot_config("cameras"))
    network = policy.network
    assert (network.model_dim, network.num_heads, network.ffn_dim) == (16, 4, 32)
    assert (network.num_encoder_layers, network.num_decoder_layers) == (2, 1)
    assert (network.num_cvae_encoder_layers, network.latent_dim, network.chunk_size) == (2, 8, 10)
    assert (network.action_dim, network.pre_norm, network.use_cvae) == (14, False, True)
    assert policy.state_key == "observation.state"
    assert policy.environment_state_key == "observation.environment_state"
    assert policy.image_keys == ("observation.images.top", "observation.images.wrist")
    assert policy.kl_weight == 10.0 and policy.reconstruction_loss == "l1"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"type": "diffusion"}, "not an ACT config"),
        ({"n_obs_steps": 2}, "one observation step"),
        ({"replace_final_stride_with_dilation": True}, "dilated final stage"),
        ({"feedforward_activation": "glu"}, "activation must be one of"),
        ({"output_features": {}}, "lack 'action'"),
    ],
)
def test_the_config_reader_rejects_what_it_cannot_build(override, message):
    with pytest.raises(ValueError, match=message):
        convert.policy_from_lerobot_config({**lerobot_config("state"), **override})


@pytest.mark.parametrize(
    ("fields", "controller"),
    [
        ({"n_action_steps": 50}, {"name": "chunked", "query_every": 50}),
        (
            {"temporal_ensemble_coeff": 0.01},
            {"name": "temporal_ensembling", "decay": 0.01, "convention": "act"},
        ),
        (
            {"temporal_ensemble_coeff": -0.1},
            {"name": "temporal_ensembling", "decay": 0.1, "convention": "book"},
        ),
    ],
)
def test_lerobots_execution_settings_map_onto_our_controllers(fields, controller):
    assert convert.controller_from_lerobot_config(fields) == controller


def test_a_weight_file_without_config_needs_the_policy(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(FIXTURE["state/checkpoint/model.safetensors"].tobytes())
    with pytest.raises(ValueError, match=r"no config\.json beside"):
        convert.load_lerobot_checkpoint(path)
    config = json.loads(FIXTURE["state/checkpoint/config.json"].tobytes())
    checkpoint = convert.load_lerobot_checkpoint(path, convert.policy_from_lerobot_config(config))
    assert checkpoint.controller is None
    jax.tree.map(np.testing.assert_array_equal, checkpoint.variables, _converted("state")[1])


def test_a_torchvision_backbone_replaces_only_the_backbone():
    policy, variables = _converted("cameras")
    state_dict = resnet_reference.reference_state_dict("frozen_batch_norm")
    updated = convert.with_pretrained_backbone(variables, state_dict, policy)
    expected = resnet.resnet_variables_from_torchvision(state_dict)
    for collection in ("params", "batch_stats"):
        backbone = updated[collection]["cvae_decoder"]["camera_tokens"]["backbone"]
        jax.tree.map(np.testing.assert_array_equal, backbone, expected[collection])
    untouched = updated["params"]["cvae_decoder"]["encoder"]
    jax.tree.map(
        np.testing.assert_array_equal, untouched, variables["params"]["cvae_decoder"]["encoder"]
    )
    original = variables["params"]["cvae_decoder"]["camera_tokens"]["backbone"]["conv1"]["kernel"]
    assert not np.array_equal(original, expected["params"]["conv1"]["kernel"])  # not mutated
    with pytest.raises(ValueError, match="no cameras"):
        state_policy, state_variables = _converted("state")
        convert.with_pretrained_backbone(state_variables, state_dict, state_policy)

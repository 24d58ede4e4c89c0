"""LeRobot ACT checkpoints -> `act.policy.ACTPolicy` and its variables, without PyTorch.

Book 17 and 20: the network of `act.model` is LeRobot's `ACT` (0.4.x) module for module, so a
trained LeRobot policy (`model.safetensors` with the `config.json` beside it, as
`ACTPolicy.save_pretrained` writes them) runs here unchanged. Every state-dict entry is either
mapped onto our variables or explicitly ignored, and anything else is an error naming the keys:

  model.backbone.*                       cvae_decoder/camera_tokens/backbone (params and the
                                         frozen statistics in "batch_stats")
  model.encoder.*, model.decoder.*       cvae_decoder/encoder, cvae_decoder/decoder
  model.vae_encoder.*                    cvae_encoder/encoder
  model.vae_encoder_cls_embed            cvae_encoder/cls_token
  model.vae_encoder_robot_state_input_proj, _action_input_proj, _latent_output_proj
                                         cvae_encoder/state_projection, action_projection,
                                         latent_head
  model.encoder_latent_input_proj, _robot_state_input_proj, _env_state_input_proj
                                         cvae_decoder/latent_projection, state_projection,
                                         environment_state_projection
  model.encoder_img_feat_input_proj      cvae_decoder/camera_tokens/projection (1×1 conv)
  model.encoder_1d_feature_pos_embed     cvae_decoder/token_positions
  model.decoder_pos_embed                cvae_decoder/query_positions
  model.action_head                      cvae_decoder/action_head
  model.vae_encoder_pos_enc              not a parameter (the fixed sinusoidal table, eq.
                                         17.21): checked equal to ours, then ignored
  normalize_inputs.*, normalize_targets.*, unnormalize_outputs.*
                                         ignored: the normalization statistics of LeRobot
                                         < 0.4 checkpoints belong to the data pipeline

Linear weights [out, in] become kernels [in, out], conv weights OIHW become HWIO
(`core.torch_weights`). The config maps onto `ACTConfig` (dim_model -> model_dim, n_heads,
dim_feedforward -> ffn_dim, n_encoder_layers, n_decoder_layers, n_vae_encoder_layers ->
num_cvae_encoder_layers, use_vae -> use_cvae, latent_dim, chunk_size, dropout,
feedforward_activation, pre_norm, vision_backbone) and the policy's inputs (observation.state,
observation.environment_state and the VISUAL features in their order); temporal_ensemble_coeff
and n_action_steps become the evaluation controller (`core.controllers`).

`with_pretrained_backbone` puts torchvision's ImageNet ResNet weights (from a local file) into
freshly initialized variables, the starting point of the original and of LeRobot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from act.model import VISION_BACKBONES, ACTConfig
from act.policy import ACTPolicy
from core import position_encoding, resnet, transformer
from core.policy import Variables
from core.torch_weights import (
    KeyRule,
    check_tree_shapes,
    conv_kernel_from_torch,
    convert_state_dict,
    entry_shape,
    linear_kernel_from_torch,
    read_state_dict,
)

MODEL_PREFIX = "model."
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FEATURE = "observation.state"
ENVIRONMENT_STATE_FEATURE = "observation.environment_state"
LEGACY_NORMALIZATION_PREFIXES = ("normalize_inputs.", "normalize_targets.", "unnormalize_outputs.")
SINUSOIDAL_TABLE_ENTRY = "vae_encoder_pos_enc"
SINUSOIDAL_TABLE_TOLERANCE = 1e-5
"""LeRobot rounds the float64 table to float32 as we do; this only allows other roundings."""

_LINEAR_LAYERS = {  # LeRobot name (under "model.") -> our path under "params"
    "vae_encoder_robot_state_input_proj": ("cvae_encoder", "state_projection"),
    "vae_encoder_action_input_proj": ("cvae_encoder", "action_projection"),
    "vae_encoder_latent_output_proj": ("cvae_encoder", "latent_head"),
    "encoder_latent_input_proj": ("cvae_decoder", "latent_projection"),
    "encoder_robot_state_input_proj": ("cvae_decoder", "state_projection"),
    "encoder_env_state_input_proj": ("cvae_decoder", "environment_state_projection"),
    "action_head": ("cvae_decoder", "action_head"),
}
_EMBEDDINGS = {
    "vae_encoder_cls_embed.weight": ("cvae_encoder", "cls_token"),
    "encoder_1d_feature_pos_embed.weight": ("cvae_decoder", "token_positions", "embedding"),
    "decoder_pos_embed.weight": ("cvae_decoder", "query_positions", "embedding"),
}
_IMAGE_PROJECTION = ("encoder_img_feat_input_proj", ("cvae_decoder", "camera_tokens", "projection"))
_BACKBONE_PATH = ("cvae_decoder", "camera_tokens", "backbone")
"""Under every collection: "params" (convolutions) and "batch_stats" (frozen statistics)."""


_CONFIG_FIELDS = {  # LeRobot ACTConfig field -> act.model.ACTConfig field
    "chunk_size": "chunk_size",
    "latent_dim": "latent_dim",
    "dim_model": "model_dim",
    "n_heads": "num_heads",
    "dim_feedforward": "ffn_dim",
    "dropout": "dropout_rate",
    "feedforward_activation": "activation",
    "pre_norm": "pre_norm",
    "n_encoder_layers": "num_encoder_layers",
    "n_decoder_layers": "num_decoder_layers",
    "n_vae_encoder_layers": "num_cvae_encoder_layers",
    "use_vae": "use_cvae",
    "vision_backbone": "vision_backbone",
}


def _required(config: Mapping[str, Any], name: str) -> Any:
    if name not in config:
        raise ValueError(f"the LeRobot config lacks {name!r}; it has {sorted(config)}")
    return config[name]


def policy_from_lerobot_config(config: Mapping[str, Any]) -> ACTPolicy:
    """The `ACTPolicy` of a LeRobot ACT `config.json` (a parsed mapping).

    Architecture fields missing from the mapping take LeRobot's defaults (which are
    `ACTConfig`'s); the features are required.

    Raises:
      ValueError for another policy type, more than one observation step, a dilated backbone,
      an unsupported backbone or activation, or missing features.
    """
    if config.get("type", "act") != "act":
        raise ValueError(f"not an ACT config: type is {config['type']!r}")
    if config.get("n_obs_steps", 1) != 1:
        raise ValueError(f"ACT reads one observation step, the config has {config['n_obs_steps']}")
    if config.get("replace_final_stride_with_dilation", False):
        raise ValueError("a backbone with a dilated final stage is not supported")
    inputs = _required(config, "input_features")
    outputs = _required(config, "output_features")
    if "action" not in outputs:
        raise ValueError(f"the config's output_features lack 'action': {sorted(outputs)}")
    image_keys = tuple(key for key, feature in inputs.items() if feature.get("type") == "VISUAL")
    fields = {ours: config[theirs] for theirs, ours in _CONFIG_FIELDS.items() if theirs in config}
    network = ACTConfig(action_dim=int(outputs["action"]["shape"][-1]), **fields)
    return ACTPolicy(
        network=network,
        state_key=STATE_FEATURE if STATE_FEATURE in inputs else None,
        environment_state_key=(
            ENVIRONMENT_STATE_FEATURE if ENVIRONMENT_STATE_FEATURE in inputs else None
        ),
        image_keys=image_keys,
        kl_weight=float(config.get("kl_weight", 10.0)),
    )


def controller_from_lerobot_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation controller (`core.controllers.make_controller`) of a LeRobot ACT config.

    temporal_ensemble_coeff m (LeRobot's w_i = exp(-m i), w_0 the oldest prediction) gives
    temporal ensembling in the original's convention with decay m; a negative m weighs the
    newest prediction most, which is the book's convention with λ = -m (the normalized weights
    are ∝ exp(m τ) by age τ either way). Without it, chunks run open loop for n_action_steps.
    """
    coefficient = config.get("temporal_ensemble_coeff")
    if coefficient is None:
        return {"name": "chunked", "query_every": int(config.get("n_action_steps", 100))}
    if coefficient >= 0:
        return {"name": "temporal_ensembling", "decay": float(coefficient), "convention": "act"}
    return {"name": "temporal_ensembling", "decay": -float(coefficient), "convention": "book"}


def _linear_rules(torch_name: str, path: tuple[str, ...]) -> list[KeyRule]:
    return [
        KeyRule(f"{torch_name}.weight", ("params", *path, "kernel"), linear_kernel_from_torch),
        KeyRule(f"{torch_name}.bias", ("params", *path, "bias")),
    ]


def _has_path(tree: Any, path: tuple[str, ...]) -> bool:
    for part in path:
        if not isinstance(tree, Mapping) or part not in tree:
            return False
        tree = tree[part]
    return True


def _subtree(tree: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _copy_dicts(tree: Any) -> Any:
    """A copy of the nested mappings of `tree` as dicts (the leaves are shared)."""
    if isinstance(tree, Mapping):
        return {key: _copy_dicts(value) for key, value in tree.items()}
    return tree


def _insert(tree: dict, path: tuple[str, ...], subtree: Any) -> None:
    """Merges `subtree` into `tree` at `path` (dicts merge key by key)."""
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    if isinstance(subtree, Mapping) and isinstance(tree.get(path[-1]), dict):
        for key, value in subtree.items():
            _insert(tree[path[-1]], (key,), value)
    else:
        tree[path[-1]] = subtree


def _example_batch(policy: ACTPolicy, state_dict: Mapping[str, np.ndarray]) -> dict:
    """An abstract one-sample batch with the state sizes the checkpoint was trained on."""
    batch = {}
    vectors = {
        policy.state_key: "encoder_robot_state_input_proj.weight",
        policy.environment_state_key: "encoder_env_state_input_proj.weight",
    }
    for key, projection in vectors.items():
        if key is not None:
            size = entry_shape(state_dict, MODEL_PREFIX + projection)[-1]
            batch[key] = jax.ShapeDtypeStruct((1, 1, size), jnp.float32)
    for key in policy.image_keys:  # parameter shapes do not depend on the image size
        batch[key] = jax.ShapeDtypeStruct((1, 1, 32, 32, 3), jnp.float32)
    return batch


def _check_sinusoidal_table(state_dict: Mapping[str, np.ndarray], policy: ACTPolicy) -> None:
    name = MODEL_PREFIX + SINUSOIDAL_TABLE_ENTRY
    if name not in state_dict:
        return
    network = policy.network
    length = 1 + (policy.state_key is not None) + network.chunk_size
    table = np.asarray(position_encoding.sinusoidal_table(length, network.model_dim))[None]
    stored = np.asarray(state_dict[name])
    if stored.shape != table.shape:
        raise ValueError(
            f"{name} has shape {list(stored.shape)}, expected {list(table.shape)} for "
            f"[CLS, state, {network.chunk_size} actions] at d_model {network.model_dim}"
        )
    error = float(np.max(np.abs(stored - table)))
    if error > SINUSOIDAL_TABLE_TOLERANCE:
        raise ValueError(f"{name} differs from the sinusoidal table by up to {error:.2e}")


def _block_variables(state_dict: Mapping[str, np.ndarray], policy: ACTPolicy) -> dict:
    """{LeRobot prefix: (our path, variables)} of the backbone and the transformer stacks,
    converted by core's block converters."""
    network = policy.network
    layer, final_norm = network.layer, network.pre_norm
    stacks = {
        "encoder.": (
            ("params", "cvae_decoder", "encoder"),
            transformer.TransformerEncoder(layer, network.num_encoder_layers, final_norm),
            transformer.encoder_params_from_torch,
        ),
        "decoder.": (
            ("params", "cvae_decoder", "decoder"),
            transformer.TransformerDecoder(layer, network.num_decoder_layers, True),
            transformer.decoder_params_from_torch,
        ),
    }
    if network.use_cvae:
        stacks["vae_encoder."] = (
            ("params", "cvae_encoder", "encoder"),
            transformer.TransformerEncoder(layer, network.num_cvae_encoder_layers, final_norm),
            transformer.encoder_params_from_torch,
        )
    blocks = {
        prefix: (path, convert(state_dict, stack, prefix=MODEL_PREFIX + prefix))
        for prefix, (path, stack, convert) in stacks.items()
    }
    if policy.image_keys:
        blocks["backbone."] = (
            _BACKBONE_PATH,
            resnet.resnet_variables_from_torchvision(
                state_dict,
                "frozen_batch_norm",
                VISION_BACKBONES[network.vision_backbone],
                prefix=MODEL_PREFIX + "backbone.",
            ),
        )
    return blocks


def _leaf_rules(expected: Any) -> list[KeyRule]:
    """Rules of the linear layers, embeddings and image projection the model has."""
    rules = [rule for name, path in _LINEAR_LAYERS.items() for rule in _linear_rules(name, path)]
    rules += [KeyRule(name, ("params", *path)) for name, path in _EMBEDDINGS.items()]
    projection_name, projection_path = _IMAGE_PROJECTION
    rules += [
        KeyRule(
            f"{projection_name}.weight",
            ("params", *projection_path, "kernel"),
            conv_kernel_from_torch,
        ),
        KeyRule(f"{projection_name}.bias", ("params", *projection_path, "bias")),
    ]
    return [rule for rule in rules if _has_path(expected, rule.path)]


def _check_outside_model(state_dict: Mapping[str, np.ndarray]) -> None:
    unexpected = [
        name
        for name in state_dict
        if not name.startswith(MODEL_PREFIX) and not name.startswith(LEGACY_NORMALIZATION_PREFIXES)
    ]
    if unexpected:
        raise ValueError(f"state dict does not fit the model: unexpected keys: {unexpected}")


def act_variables_from_lerobot(
    state_dict: Mapping[str, np.ndarray], policy: ACTPolicy
) -> Variables:
    """Our variables from a LeRobot ACTPolicy state dict (`policy.state_dict()` or
    model.safetensors read with `core.torch_weights.read_state_dict`).

    Args:
      state_dict: {LeRobot name: array}.
      policy: the architecture and inputs the checkpoint was trained with (e.g. from
        `policy_from_lerobot_config`).

    Returns:
      {"params": ..., "batch_stats": ...} (no "batch_stats" without cameras), numpy float32.

    Raises:
      ValueError naming missing and unexpected keys, or each entry whose shape does not fit.
    """
    _check_outside_model(state_dict)
    _check_sinusoidal_table(state_dict, policy)
    expected = jax.eval_shape(policy.init, jax.random.key(0), _example_batch(policy, state_dict))
    blocks = _block_variables(state_dict, policy)
    rules = _leaf_rules(expected)
    leaf_expected: dict = {}
    for rule in rules:
        _insert(leaf_expected, rule.path, _subtree(expected, rule.path))
    block_prefixes = tuple(blocks)
    variables = convert_state_dict(
        state_dict,
        rules,
        leaf_expected,
        prefix=MODEL_PREFIX,
        is_ignored=lambda name: name.startswith(block_prefixes) or name == SINUSOIDAL_TABLE_ENTRY,
    )
    for path, block in blocks.values():
        if path == _BACKBONE_PATH:
            for collection, collection_variables in block.items():
                _insert(variables, (collection, *path), collection_variables)
        else:
            _insert(variables, path, block)
    check_tree_shapes(variables, expected, name="converted variables")
    return variables


def with_pretrained_backbone(
    variables: Variables, state_dict: Mapping[str, np.ndarray], policy: ACTPolicy
) -> Variables:
    """`variables` with the camera backbone replaced by torchvision ImageNet weights.

    The original ACT and LeRobot start from torchvision's ImageNet ResNet-18 (book 17.9.4);
    nothing is downloaded here, so pass the state dict of a local weight file (e.g.
    resnet18-f37072fd.pth read with `core.torch_weights.read_state_dict`).

    Args:
      variables: the policy's variables, e.g. from `policy.init`.
      state_dict: torchvision's {name: array} for policy.network.vision_backbone (the
        classifier and the batch-norm step counters are ignored).
      policy: the policy the variables belong to (with cameras).

    Returns:
      New variables; the backbone's convolutions under "params" and its frozen statistics
      under "batch_stats" come from `state_dict`, everything else is unchanged.
    """
    if not policy.image_keys:
        raise ValueError("this policy has no cameras, hence no backbone")
    backbone = resnet.resnet_variables_from_torchvision(
        state_dict, "frozen_batch_norm", VISION_BACKBONES[policy.network.vision_backbone]
    )
    updated = _copy_dicts(variables)
    for collection, collection_variables in backbone.items():
        check_tree_shapes(
            collection_variables,
            _subtree(variables[collection], _BACKBONE_PATH),
            name=f"backbone {collection}",
        )
        _insert(updated, (collection, *_BACKBONE_PATH), collection_variables)
    return updated


class LeRobotCheckpoint(NamedTuple):
    """A loaded checkpoint: the policy, its variables and, when the config is known, the
    evaluation controller config (None otherwise)."""

    policy: ACTPolicy
    variables: Variables
    controller: dict[str, Any] | None


def load_lerobot_checkpoint(path: str | Path, policy: ACTPolicy | None = None) -> LeRobotCheckpoint:
    """Loads a LeRobot ACT checkpoint saved by `ACTPolicy.save_pretrained`.

    Args:
      path: the checkpoint directory (model.safetensors and config.json), or the weight file
        itself (.safetensors or a torch .pth state dict), with config.json beside it if any.
      policy: the architecture, when there is no config.json (it overrides one if given).

    Raises:
      ValueError when there is neither config.json nor `policy`, or when the weights do not
      fit (see `act_variables_from_lerobot`); core.torch_weights.WeightFileError for an
      unreadable file.
    """
    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    config_path = weights.parent / CONFIG_FILE
    config = json.loads(config_path.read_text()) if config_path.is_file() else None
    if policy is None:
        if config is None:
            raise ValueError(
                f"no {CONFIG_FILE} beside {weights}: pass the policy (its architecture) explicitly"
            )
        policy = policy_from_lerobot_config(config)
    variables = act_variables_from_lerobot(read_state_dict(weights), policy)
    controller = None if config is None else controller_from_lerobot_config(config)
    return LeRobotCheckpoint(policy, variables, controller)

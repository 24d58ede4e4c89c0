"""Golden outputs of LeRobot's ACTPolicy (0.4.4) for act.model, act.policy and act.convert.

Two small but complete configurations (every token type and both norm placements):

  cameras   robot state (14), environment state (5) and two cameras at 84×64 (layer4 3×2),
            action 14, post-norm, d_model 16, 4 heads, feed-forward 32, 2 encoder layers, 1
            decoder layer, 2 CVAE-encoder layers, d_z 8, k 10, the real ResNet-18 backbone.
  state     robot state and environment state only, pre-norm (final encoder LayerNorms), the
            same sizes, 3 decoder layers.

Weights are seeded from LeRobot's state-dict names and shapes (`lerobot_state_dict_shapes`,
numpy only; the reference loads them with a strict layout check), inputs from
`common.seeded_array`, so the JAX tests rebuild both without torch. Images are drawn in [0, 1]
and given to LeRobot normalized with the ImageNet statistics (`act.policy.normalize_images`'s
arithmetic in numpy), as LeRobot's preprocessor with use_imagenet_stats does; states and
actions are already normalized.

Outputs per case: `predict_action_chunk` in eval mode (z = 0), and the training-mode forward
with dropout 0 and the reparameterization noise pinned to a seeded ε (torch.randn_like
replaced during the call): the predicted chunk, μ, log σ² and LeRobot's l1_loss, kld_loss and
loss, on a batch whose second sample has padded steps. The `state` case also stores the bytes
of its `save_pretrained` directory (model.safetensors, config.json), which the tests load
through `act.convert.load_lerobot_checkpoint`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np

from experiments.parity.common import import_torchvision, seeded_array
from experiments.parity.resnet import torchvision_state_dict_shapes
from experiments.parity.torch_weights import seeded_state_dict

BATCH, STATE_DIM, ENVIRONMENT_STATE_DIM, ACTION_DIM = 2, 14, 5, 14
IMAGE_HEIGHT, IMAGE_WIDTH = 84, 64
PADDED_STEPS = 3  # the last steps of the second sample are past its episode end
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZES = {
    "dim_model": 16,
    "n_heads": 4,
    "dim_feedforward": 32,
    "n_encoder_layers": 2,
    "n_vae_encoder_layers": 2,
    "latent_dim": 8,
    "chunk_size": 10,
}
CASES = {
    "cameras": {"cameras": ("top", "wrist"), "pre_norm": False, "n_decoder_layers": 1},
    "state": {"cameras": (), "pre_norm": True, "n_decoder_layers": 3},
}
SINUSOIDAL_TABLE = "model.vae_encoder_pos_enc"
"""A buffer of LeRobot's state dict, not a weight: taken from the reference model itself."""


def _attention_shapes(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}in_proj_weight": (3 * dim, dim),
        f"{prefix}in_proj_bias": (3 * dim,),
        f"{prefix}out_proj.weight": (dim, dim),
        f"{prefix}out_proj.bias": (dim,),
    }


def _linear_shapes(prefix: str, outputs: int, inputs: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (outputs, inputs), f"{prefix}.bias": (outputs,)}


def _norm_shapes(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (dim,), f"{prefix}.bias": (dim,)}


def _stack_shapes(prefix: str, layers: int, decoder: bool, final_norm: bool) -> dict:
    """ACTEncoder / ACTDecoder: layers.<i>.{self_attn, (multihead_attn), linear1, linear2,
    norm1..}, and norm.* when the stack ends with a LayerNorm."""
    dim, ffn = SIZES["dim_model"], SIZES["dim_feedforward"]
    shapes = {}
    for index in range(layers):
        layer = f"{prefix}layers.{index}."
        shapes |= _attention_shapes(f"{layer}self_attn.", dim)
        if decoder:
            shapes |= _attention_shapes(f"{layer}multihead_attn.", dim)
        shapes |= _linear_shapes(f"{layer}linear1", ffn, dim)
        shapes |= _linear_shapes(f"{layer}linear2", dim, ffn)
        for norm in range(1, 4 if decoder else 3):
            shapes |= _norm_shapes(f"{layer}norm{norm}", dim)
    if final_norm:
        shapes |= _norm_shapes(f"{prefix}norm", dim)
    return shapes


def lerobot_state_dict_shapes(case: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of LeRobot's ACTPolicy state dict for `case`, without the sinusoidal
    table buffer."""
    options = CASES[case]
    dim, latent, chunk = SIZES["dim_model"], SIZES["latent_dim"], SIZES["chunk_size"]
    pre_norm = options["pre_norm"]
    shapes = {"model.vae_encoder_cls_embed.weight": (1, dim)}
    shapes |= _linear_shapes("model.vae_encoder_robot_state_input_proj", dim, STATE_DIM)
    shapes |= _linear_shapes("model.vae_encoder_action_input_proj", dim, ACTION_DIM)
    shapes |= _linear_shapes("model.vae_encoder_latent_output_proj", 2 * latent, dim)
    shapes |= _stack_shapes("model.vae_encoder.", SIZES["n_vae_encoder_layers"], False, pre_norm)
    if options["cameras"]:
        backbone = torchvision_state_dict_shapes("frozen_batch_norm")
        shapes |= {
            f"model.backbone.{name}": shape
            for name, shape in backbone.items()
            if not name.startswith("fc.")
        }
        shapes["model.encoder_img_feat_input_proj.weight"] = (dim, 512, 1, 1)
        shapes["model.encoder_img_feat_input_proj.bias"] = (dim,)
    shapes |= _stack_shapes("model.encoder.", SIZES["n_encoder_layers"], False, pre_norm)
    shapes |= _stack_shapes("model.decoder.", options["n_decoder_layers"], True, True)
    shapes |= _linear_shapes("model.encoder_robot_state_input_proj", dim, STATE_DIM)
    shapes |= _linear_shapes("model.encoder_env_state_input_proj", dim, ENVIRONMENT_STATE_DIM)
    shapes |= _linear_shapes("model.encoder_latent_input_proj", dim, latent)
    shapes["model.encoder_1d_feature_pos_embed.weight"] = (3, dim)  # latent, state, env state
    shapes["model.decoder_pos_embed.weight"] = (chunk, dim)
    shapes |= _linear_shapes("model.action_head", ACTION_DIM, dim)
    return shapes


def lerobot_state_dict(case: str) -> dict[str, np.ndarray]:
    """The seeded weights of `case` (everything but the sinusoidal table buffer)."""
    return seeded_state_dict(f"act/{case}", lerobot_state_dict_shapes(case))


def image_keys(case: str) -> tuple[str, ...]:
    return tuple(f"observation.images.{camera}" for camera in CASES[case]["cameras"])


def inputs(case: str) -> dict[str, np.ndarray]:
    """One batch, LeRobot's layout (no time axis): state [B, 14], environment state [B, 5],
    images [B, 3, H, W] in [0, 1] (one key per camera), action [B, k, 14], action_is_pad
    [B, k], and the reparameterization noise ε [B, d_z]."""
    arrays = {
        "observation.state": seeded_array(f"act/{case}/state", (BATCH, STATE_DIM)),
        "observation.environment_state": seeded_array(
            f"act/{case}/environment_state", (BATCH, ENVIRONMENT_STATE_DIM)
        ),
        "action": seeded_array(f"act/{case}/action", (BATCH, SIZES["chunk_size"], ACTION_DIM)),
        "latent_noise": seeded_array(f"act/{case}/latent_noise", (BATCH, SIZES["latent_dim"])),
    }
    for key in image_keys(case):
        logits = seeded_array(f"act/{case}/{key}", (BATCH, 3, IMAGE_HEIGHT, IMAGE_WIDTH))
        arrays[key] = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    is_pad = np.zeros((BATCH, SIZES["chunk_size"]), bool)
    is_pad[1, -PADDED_STEPS:] = True
    arrays["action_is_pad"] = is_pad
    return arrays


def normalized_images(images: np.ndarray) -> np.ndarray:
    """[B, 3, H, W] in [0, 1] -> ImageNet-normalized, channels first."""
    return (images - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]


def _lerobot_policy(case: str, dropout: float):
    import_torchvision()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    features = {
        "observation.state": PolicyFeature(FeatureType.STATE, (STATE_DIM,)),
        "observation.environment_state": PolicyFeature(FeatureType.ENV, (ENVIRONMENT_STATE_DIM,)),
    }
    for key in image_keys(case):
        features[key] = PolicyFeature(FeatureType.VISUAL, (3, IMAGE_HEIGHT, IMAGE_WIDTH))
    options = CASES[case]
    config = ACTConfig(
        input_features=features,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        pretrained_backbone_weights=None,
        n_action_steps=SIZES["chunk_size"],
        pre_norm=options["pre_norm"],
        n_decoder_layers=options["n_decoder_layers"],
        dropout=dropout,
        **SIZES,
    )
    return ACTPolicy(config)


def _load(policy, case: str) -> None:
    import torch

    own = policy.state_dict()
    weights = {**lerobot_state_dict(case), SINUSOIDAL_TABLE: own[SINUSOIDAL_TABLE].numpy()}
    expected = {name: tuple(value.shape) for name, value in own.items()}
    ours = {name: array.shape for name, array in weights.items()}
    if expected != ours:
        raise ValueError(f"state dict layout differs from LeRobot's: {ours} vs {expected}")
    policy.load_state_dict({name: torch.from_numpy(array) for name, array in weights.items()})


def _torch_batch(case: str) -> dict:
    import torch

    batch = {}
    for key, array in inputs(case).items():
        if key.startswith("observation.images."):
            array = normalized_images(array)
        batch[key] = torch.from_numpy(array)
    return batch


def _training_forward(case: str) -> dict[str, np.ndarray]:
    """Train mode, dropout 0, ε pinned: the model's outputs and LeRobot's loss terms."""
    import torch
    from lerobot.policies.act import modeling_act

    policy = _lerobot_policy(case, dropout=0.0)
    _load(policy, case)
    policy.train()
    batch = _torch_batch(case)
    noise = batch.pop("latent_noise")
    with torch.no_grad(), mock.patch.object(modeling_act.torch, "randn_like", lambda _: noise):
        model_batch = dict(batch)
        if image_keys(case):  # LeRobot's ACTPolicy.forward adds the camera list only then
            model_batch["observation.images"] = [batch[key] for key in image_keys(case)]
        actions_hat, (mu, log_sigma_x2) = policy.model(model_batch)
        loss, terms = policy.forward(batch)
    return {
        "train/actions_hat": actions_hat.numpy(),
        "train/mu": mu.numpy(),
        "train/log_sigma_x2": log_sigma_x2.numpy(),
        "train/l1_loss": np.float32(terms["l1_loss"]),
        "train/kld_loss": np.float32(terms["kld_loss"]),
        "train/loss": loss.numpy(),
    }


def _checkpoint_bytes(policy) -> dict[str, np.ndarray]:
    """The files of `save_pretrained` as uint8 arrays (the config with sorted keys)."""
    with tempfile.TemporaryDirectory() as directory:
        policy.save_pretrained(directory)
        weights = Path(directory, "model.safetensors").read_bytes()
        config = json.loads(Path(directory, "config.json").read_text())
    return {
        "checkpoint/model.safetensors": np.frombuffer(weights, np.uint8),
        "checkpoint/config.json": np.frombuffer(json.dumps(config).encode(), np.uint8),
    }


def reference_outputs(case: str) -> dict[str, np.ndarray]:
    """Everything the fixture holds for one case (keys without the case prefix)."""
    import torch

    policy = _lerobot_policy(case, dropout=0.1)  # LeRobot's default; off in eval mode
    _load(policy, case)
    batch = _torch_batch(case)
    observation = {key: value for key, value in batch.items() if key.startswith("observation.")}
    with torch.no_grad():
        outputs = {"predict_action_chunk": policy.predict_action_chunk(observation).numpy()}
    outputs |= _training_forward(case)
    if not CASES[case]["cameras"]:
        outputs |= _checkpoint_bytes(policy)
    return outputs


def generate() -> dict[str, np.ndarray]:
    return {
        f"{case}/{name}": array for case in CASES for name, array in reference_outputs(case).items()
    }

"""LeRobot's Diffusion Policy U-Net blocks and torch's Conv1d/ConvTranspose1d on seeded weights.

References: `DiffusionConv1dBlock` (Conv1d -> GroupNorm -> Mish), three
`DiffusionConditionalResidualBlock1d`s (FiLM bias-only and with scale, both with a 1×1 residual
conv, and one with the identity residual), the U-Net's downsampling `nn.Conv1d(C, C, 3, 2, 1)`
at even and odd horizons, and its upsampling `nn.ConvTranspose1d(C, C, 4, 2, 1)`. Inputs are in
torch's [B, C, T] layout. The scale-modulated block's state dict is also saved as a `torch.save`
and a `.safetensors` file (bytes in the fixture), for the end-to-end test of reading a weight
file, converting it and running the block.
"""

from __future__ import annotations

import io

import numpy as np

from experiments.parity.common import import_torchvision, seeded_array
from experiments.parity.torch_weights import seeded_state_dict

BATCH = 2
CONV_BLOCK = {"inp_channels": 6, "out_channels": 16, "kernel_size": 5, "n_groups": 8}
RESIDUAL_BLOCKS = {
    "residual_bias": {
        "in_channels": 6,
        "out_channels": 16,
        "cond_dim": 10,
        "kernel_size": 5,
        "n_groups": 8,
        "use_film_scale_modulation": False,
    },
    "residual_scale": {
        "in_channels": 6,
        "out_channels": 16,
        "cond_dim": 10,
        "kernel_size": 5,
        "n_groups": 8,
        "use_film_scale_modulation": True,
    },
    "residual_identity": {
        "in_channels": 16,
        "out_channels": 16,
        "cond_dim": 10,
        "kernel_size": 3,
        "n_groups": 4,
        "use_film_scale_modulation": True,
    },
}
HORIZON = 8
RESAMPLE_CHANNELS = 16
DOWNSAMPLE_HORIZONS = (8, 7)
UPSAMPLE_HORIZONS = (4, 3)


def _conv_block_shapes(prefix: str, in_channels: int, out_channels: int, kernel_size: int):
    return {
        f"{prefix}block.0.weight": (out_channels, in_channels, kernel_size),
        f"{prefix}block.0.bias": (out_channels,),
        f"{prefix}block.1.weight": (out_channels,),
        f"{prefix}block.1.bias": (out_channels,),
    }


def conv_block_state_dict() -> dict[str, np.ndarray]:
    c = CONV_BLOCK
    shapes = _conv_block_shapes("", c["inp_channels"], c["out_channels"], c["kernel_size"])
    return seeded_state_dict("conv1d/conv_block", shapes)


def residual_block_state_dict(name: str) -> dict[str, np.ndarray]:
    """LeRobot's names and shapes for the residual block RESIDUAL_BLOCKS[name], seeded."""
    c = RESIDUAL_BLOCKS[name]
    cin, cout, k = c["in_channels"], c["out_channels"], c["kernel_size"]
    condition_channels = 2 * cout if c["use_film_scale_modulation"] else cout
    shapes = {
        **_conv_block_shapes("conv1.", cin, cout, k),
        "cond_encoder.1.weight": (condition_channels, c["cond_dim"]),
        "cond_encoder.1.bias": (condition_channels,),
        **_conv_block_shapes("conv2.", cout, cout, k),
    }
    if cin != cout:
        shapes.update({"residual_conv.weight": (cout, cin, 1), "residual_conv.bias": (cout,)})
    return seeded_state_dict(f"conv1d/{name}", shapes)


def resample_state_dict(name: str) -> dict[str, np.ndarray]:
    """ "downsample" (Conv1d weight [O, I, 3]) or "upsample" (ConvTranspose1d weight [I, O, 4])."""
    kernel_size = {"downsample": 3, "upsample": 4}[name]
    shapes = {
        "weight": (RESAMPLE_CHANNELS, RESAMPLE_CHANNELS, kernel_size),
        "bias": (RESAMPLE_CHANNELS,),
    }
    return seeded_state_dict(f"conv1d/{name}", shapes)


def sequence(name: str, channels: int, horizon: int) -> np.ndarray:
    """[B, C, T] float32 input."""
    return seeded_array(f"conv1d/{name}/x", (BATCH, channels, horizon))


def condition(name: str, condition_dim: int) -> np.ndarray:
    """[B, D] float32 condition."""
    return seeded_array(f"conv1d/{name}/condition", (BATCH, condition_dim))


def _load(module, state_dict):
    import torch

    module.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
    return module.eval()


def build_references() -> dict:
    """The torch/LeRobot modules, by fixture name, loaded with the seeded weights."""
    import torch

    import_torchvision()
    from lerobot.policies.diffusion.modeling_diffusion import (
        DiffusionConditionalResidualBlock1d,
        DiffusionConv1dBlock,
    )

    c = RESAMPLE_CHANNELS
    modules = {
        "conv_block": _load(DiffusionConv1dBlock(**CONV_BLOCK), conv_block_state_dict()),
        "downsample": _load(torch.nn.Conv1d(c, c, 3, 2, 1), resample_state_dict("downsample")),
        "upsample": _load(torch.nn.ConvTranspose1d(c, c, 4, 2, 1), resample_state_dict("upsample")),
    }
    for name, config in RESIDUAL_BLOCKS.items():
        block = DiffusionConditionalResidualBlock1d(**config)
        modules[name] = _load(block, residual_block_state_dict(name))
    return modules


def generate() -> dict[str, np.ndarray]:
    import torch
    from safetensors.torch import save as save_safetensors

    modules = build_references()
    outputs = {}
    with torch.no_grad():
        x = sequence("conv_block", CONV_BLOCK["inp_channels"], HORIZON)
        outputs["conv_block/output"] = modules["conv_block"](torch.from_numpy(x)).numpy()
        for name, config in RESIDUAL_BLOCKS.items():
            x = torch.from_numpy(sequence(name, config["in_channels"], HORIZON))
            cond = torch.from_numpy(condition(name, config["cond_dim"]))
            outputs[f"{name}/output"] = modules[name](x, cond).numpy()
        for name, horizons in (
            ("downsample", DOWNSAMPLE_HORIZONS),
            ("upsample", UPSAMPLE_HORIZONS),
        ):
            for horizon in horizons:
                x = torch.from_numpy(sequence(f"{name}_{horizon}", RESAMPLE_CHANNELS, horizon))
                outputs[f"{name}/output_{horizon}"] = modules[name](x).numpy()
    state = modules["residual_scale"].state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    outputs["residual_scale/pth_bytes"] = np.frombuffer(buffer.getvalue(), np.uint8)
    outputs["residual_scale/safetensors_bytes"] = np.frombuffer(save_safetensors(state), np.uint8)
    return outputs

"""torchvision's resnet18 truncated at layer4, with FrozenBatchNorm2d and with GroupNorm(C // 16).

The frozen-batch-norm model is ACT's backbone (LeRobot builds it with
`norm_layer=FrozenBatchNorm2d` and reads layer4 through IntermediateLayerGetter); the group-norm
one is Diffusion Policy's (BatchNorm2d replaced by GroupNorm(C // 16, C)). Weights, including
non-trivial running statistics and the unused fc head, are seeded from torchvision's names and
shapes, which `torchvision_state_dict_shapes` lists with numpy alone (the reference run loads
them with strict=True, so a wrong name or shape fails there). The input is a non-square
2×3×64×96 image batch (layer4: 2×3).
"""

from __future__ import annotations

import numpy as np

from experiments.parity.common import import_torchvision, seeded_array
from experiments.parity.torch_weights import seeded_state_dict

NORMS = ("frozen_batch_norm", "group_norm")
IMAGE_SHAPE = (2, 3, 64, 96)  # [B, C, H, W], torch layout
_WIDTHS = (64, 128, 256, 512)
_NUM_CLASSES = 1000


def _norm_shapes(name: str, channels: int, norm: str) -> dict[str, tuple[int, ...]]:
    names = ("weight", "bias", "running_mean", "running_var")
    if norm == "group_norm":
        names = names[:2]
    return {f"{name}.{entry}": (channels,) for entry in names}


def torchvision_state_dict_shapes(norm: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of torchvision's resnet18 state dict with the given norm layer."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **_norm_shapes("bn1", 64, norm)}
    in_channels = 64
    for stage, width in enumerate(_WIDTHS, start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (width, in_channels, 3, 3)
            shapes.update(_norm_shapes(f"{prefix}.bn1", width, norm))
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            shapes.update(_norm_shapes(f"{prefix}.bn2", width, norm))
            if in_channels != width:
                shapes[f"{prefix}.downsample.0.weight"] = (width, in_channels, 1, 1)
                shapes.update(_norm_shapes(f"{prefix}.downsample.1", width, norm))
            in_channels = width
    shapes["fc.weight"] = (_NUM_CLASSES, 512)
    shapes["fc.bias"] = (_NUM_CLASSES,)
    return shapes


def reference_state_dict(norm: str) -> dict[str, np.ndarray]:
    return seeded_state_dict(f"resnet18/{norm}", torchvision_state_dict_shapes(norm))


def reference_images() -> np.ndarray:
    """[B, C, H, W] float32 inputs."""
    return seeded_array("resnet18/images", IMAGE_SHAPE)


def build_torchvision_resnet18(norm: str, state_dict: dict[str, np.ndarray]):
    """torchvision's resnet18 with the given norm layer and weights, in eval mode."""
    import torch

    torchvision = import_torchvision()
    from torchvision.ops.misc import FrozenBatchNorm2d

    norm_layers = {
        "frozen_batch_norm": FrozenBatchNorm2d,
        "group_norm": lambda channels: torch.nn.GroupNorm(channels // 16, channels),
    }
    model = torchvision.models.resnet18(weights=None, norm_layer=norm_layers[norm])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
    return model.eval()


def torchvision_stages(model, images: np.ndarray) -> dict[str, np.ndarray]:
    """conv1 (after bn1 and relu), maxpool and layer1..layer4 outputs, [B, C, H, W]."""
    import torch
    from torchvision.models._utils import IntermediateLayerGetter

    stages = {"relu": "conv1", "maxpool": "maxpool"}
    stages.update({f"layer{i}": f"layer{i}" for i in range(1, 5)})
    getter = IntermediateLayerGetter(model, return_layers=stages)
    with torch.no_grad():
        return {name: out.numpy() for name, out in getter(torch.from_numpy(images)).items()}


def generate() -> dict[str, np.ndarray]:
    images = reference_images()
    outputs = {}
    for norm in NORMS:
        model = build_torchvision_resnet18(norm, reference_state_dict(norm))
        outputs[f"{norm}/layer4"] = torchvision_stages(model, images)["layer4"]
    return outputs

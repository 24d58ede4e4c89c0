"""LeRobot's SpatialSoftmax (Diffusion Policy's keypoint pooling), with and without projection.

A non-square 2×16×5×7 feature map (so the x/y grid order and the row-major flattening are both
exercised), scaled by 2 so each softmax is peaked but not one-hot; 8 keypoints through the 1×1
conv (`nets`), and the 16 channels used directly (num_kp=None).
"""

from __future__ import annotations

import numpy as np

from experiments.parity.common import import_torchvision, seeded_array
from experiments.parity.torch_weights import seeded_state_dict

FEATURE_SHAPE = (2, 16, 5, 7)  # [B, C, H, W], torch layout
NUM_KEYPOINTS = 8


def reference_state_dict() -> dict[str, np.ndarray]:
    channels = FEATURE_SHAPE[1]
    shapes = {"nets.weight": (NUM_KEYPOINTS, channels, 1, 1), "nets.bias": (NUM_KEYPOINTS,)}
    return seeded_state_dict("spatial_softmax", shapes)


def reference_features() -> np.ndarray:
    """[B, C, H, W] float32 feature maps."""
    return seeded_array("spatial_softmax/features", FEATURE_SHAPE, 2.0)


def build_lerobot_spatial_softmax(num_keypoints: int | None):
    """LeRobot's SpatialSoftmax for FEATURE_SHAPE, with the seeded 1×1 conv when projecting."""
    import torch

    import_torchvision()
    from lerobot.policies.diffusion.modeling_diffusion import SpatialSoftmax

    module = SpatialSoftmax(FEATURE_SHAPE[1:], num_kp=num_keypoints)
    if num_keypoints is not None:
        weights = {k: torch.from_numpy(v) for k, v in reference_state_dict().items()}
        module.load_state_dict({**weights, "pos_grid": module.pos_grid}, strict=True)
    return module.eval()


def generate() -> dict[str, np.ndarray]:
    import torch

    features = torch.from_numpy(reference_features())
    outputs = {}
    with torch.no_grad():
        for name, num_keypoints in (("projected", NUM_KEYPOINTS), ("channels", None)):
            outputs[f"{name}/keypoints"] = build_lerobot_spatial_softmax(num_keypoints)(
                features
            ).numpy()
    return outputs

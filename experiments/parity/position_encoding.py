"""Golden position encodings of LeRobot's ACT and Diffusion Policy for core.position_encoding.

Book 16.4.2 and 17.4.1. `create_sinusoidal_pos_embedding` (ACT's 1D table; an odd dimension too),
`ACTSinusoidalPositionEmbedding2d` on ACT's 3x3 (84 px) feature map at d_model 512 and on a 7x7
(224 px) map at a smaller size, and Diffusion Policy's `DiffusionSinusoidalPosEmb` at its default
128 channels. The 2D embeddings are stored channels-last, [H, W, C], as ours are.
"""

from __future__ import annotations

import numpy as np

from experiments.parity.common import import_torchvision

TABLE_CASES = {"table_act_vae": (102, 64), "table_odd": (9, 7)}  # (num_positions, dim)
GRID_CASES = {"grid_3x3": (3, 3, 512), "grid_7x7": (7, 7, 64)}  # (H, W, d_model)
TIMESTEPS = np.array([0, 1, 7, 50, 99], np.int64)
TIMESTEP_DIM = 128


def generate() -> dict[str, np.ndarray]:
    import torch

    import_torchvision()
    from lerobot.policies.act.modeling_act import (
        ACTSinusoidalPositionEmbedding2d,
        create_sinusoidal_pos_embedding,
    )
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionSinusoidalPosEmb

    outputs = {}
    for case, (num_positions, dim) in TABLE_CASES.items():
        outputs[case] = create_sinusoidal_pos_embedding(num_positions, dim).numpy()
    for case, (height, width, dim) in GRID_CASES.items():
        feature_map = torch.zeros(1, dim, height, width)
        embedding = ACTSinusoidalPositionEmbedding2d(dim // 2)(feature_map)  # [1, d, H, W]
        outputs[case] = embedding[0].permute(1, 2, 0).numpy()
    with torch.no_grad():
        steps = DiffusionSinusoidalPosEmb(TIMESTEP_DIM)(torch.from_numpy(TIMESTEPS))
    outputs["timestep_embedding"] = steps.numpy()
    return outputs

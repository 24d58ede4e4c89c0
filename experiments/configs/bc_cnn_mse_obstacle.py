"""Book 16.8.1 with 16.4: behavioral cloning with an MSE loss, a small CNN on the top camera, on
obstacle."""

import ml_collections

from experiments.configs._bc_obstacle import bc_obstacle_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """Behavioral cloning by regression to the mean (eq. 16.39) from 64-px images of obstacle.

    python -m experiments.train --config experiments/configs/bc_cnn_mse_obstacle.py \\
        --workdir runs/bc_cnn_mse_obstacle

    A patchify conv stem (16 ch, 4×4/4), a 3×3 conv (32 ch), 32 spatial-softmax keypoints
    and the agent state into an MLP (256, 256); 3000 AdamW steps at batch 64. Expected: the
    averaged action drives straight into the obstacle: measured success 0.0% [0%, 1.9%],
    collided 100%. Runtime on the shared 2-core CPU: 50-80 steps/s, ~1 min end to end.

    variant "tiny": a seconds-long smoke test (experiments.configs).
    """
    return bc_obstacle_config("bc_cnn", "mse", variant)

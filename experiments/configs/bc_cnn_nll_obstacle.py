"""Book 16.8.2 with 16.4: behavioral cloning with a diagonal-Gaussian NLL, a small CNN on the top
camera, on obstacle."""

import ml_collections

from experiments.configs._bc_obstacle import bc_obstacle_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """Behavioral cloning with a diagonal-Gaussian head (eq. 16.62) from 64-px images of obstacle.

    python -m experiments.train --config experiments/configs/bc_cnn_nll_obstacle.py \\
        --workdir runs/bc_cnn_nll_obstacle

    The CNN of bc_cnn_mse_obstacle with the Gaussian head of bc_mlp_nll_obstacle. Expected:
    the mean averages the modes: measured success 0.0% [0%, 1.9%], collided 100%; sampled
    actions (`--config.policy.sample_actions=True`): 8.0% [5.0%, 12.6%], collided 72%.
    Runtime: 50-80 steps/s, ~1 min end to end.

    variant "tiny": a seconds-long smoke test (experiments.configs).
    """
    return bc_obstacle_config("bc_cnn", "gaussian_nll", variant)

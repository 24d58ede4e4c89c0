"""Book 16.8.1, eq. 16.39: behavioral cloning with an MSE loss, an MLP on the state, on obstacle."""

import ml_collections

from experiments.configs._bc_obstacle import bc_obstacle_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """Behavioral cloning by regression to the mean (eq. 16.39) on the bimodal obstacle task.

    python -m experiments.train --config experiments/configs/bc_mlp_mse_obstacle.py \\
        --workdir runs/bc_mlp_mse_obstacle

    Trains an MLP (256, 256, ReLU) on the agent and environment state to predict the next
    action, 3000 AdamW steps at batch 256, then evaluates 200 episodes. Expected (book 16.3.3):
    the average of "pass left" and "pass right" is "go straight", so most episodes end on the
    obstacle: measured success 9.0% [5.8%, 13.8%], modes left 9.5%, right 0%, collided 90.5%
    (`python -m experiments.bc_modes`). Runtime on the shared 2-core CPU: 550-800 steps/s,
    ~25 s end to end with the dataset present (+ ~10 s to generate it).

    variant "tiny": a seconds-long smoke test (experiments.configs).
    """
    return bc_obstacle_config("bc_mlp", "mse", variant)

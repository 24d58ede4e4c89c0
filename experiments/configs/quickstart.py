"""The README's first command: learn to reach a goal around an obstacle from 200 demonstrations,
and see behavioral cloning average the two ways around it (book 16.3.3, 16.8.1)."""

import ml_collections

from experiments.configs._bc_obstacle import bc_obstacle_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """Quickstart: behavioral cloning (MLP, MSE) on obstacle, trained and evaluated from scratch.

    pip install -e . && python -m experiments.train --config experiments/configs/quickstart.py \\
        --workdir runs/quickstart

    Generates 200 scripted demonstrations in data/obstacle if missing (the expert passes the
    obstacle on the left or the right at random), trains the best of the four BC baselines
    (experiments.bc_modes; the same as bc_mlp_mse_obstacle) for 3000 steps, evaluates its best
    checkpoint on 200 new layouts and prints the success rate with its 95% interval, the mode
    shares and where runs/quickstart/eval/ holds eval.json, rollouts.gif and trajectories.png.
    Expected: success ~9% [6%, 14%], ~90% of the episodes ending on the obstacle: regression to
    the mean of "left" and "right" goes straight ahead, the failure that ACT, Diffusion Policy
    and VLAs (chapters 17-19) address. Runtime on the shared 2-core CPU: ~25 s wall (~15 s of
    CPU) from scratch, the dataset generation included.

    variant "tiny": a seconds-long smoke test (experiments.configs).
    """
    return bc_obstacle_config("bc_mlp", "mse", variant)

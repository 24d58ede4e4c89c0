"""Book 16.8.2, eq. 16.62: behavioral cloning with a diagonal-Gaussian NLL, an MLP on the state,
on obstacle."""

import ml_collections

from experiments.configs._bc_obstacle import bc_obstacle_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """Behavioral cloning with a diagonal-Gaussian head (eq. 16.62) on the bimodal obstacle task.

    python -m experiments.train --config experiments/configs/bc_mlp_nll_obstacle.py \\
        --workdir runs/bc_mlp_nll_obstacle

    The MLP of bc_mlp_mse_obstacle with a second output, σ(o) = 0.01 + softplus(s(o)), trained
    by the Gaussian negative log-likelihood; the evaluation executes the mean μ(o)
    (`--config.policy.sample_actions=True` samples N(μ, σ²) instead). Expected: one Gaussian
    cannot hold two modes; its mean averages them like MSE: measured success 6.0%
    [3.5%, 10.2%], collided 85%; sampling spreads the episodes over both sides but rarely
    reaches the goal (8.0% [5.0%, 12.6%], collided 60%). Runtime: 650-700 steps/s, ~25 s.

    variant "tiny": a seconds-long smoke test (experiments.configs).
    """
    return bc_obstacle_config("bc_mlp", "gaussian_nll", variant)

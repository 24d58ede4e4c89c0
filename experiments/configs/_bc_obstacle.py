"""What the behavioral-cloning configs on `obstacle` share (book 16.8.1, 16.3.3); not a config.

The task: reach the goal behind an obstacle; the 200 expert demonstrations pass it on the left
or on the right with probability 1/2 each (`core.envs.obstacle`). The policies see one
observation (To = 1) and predict one action (k = 1), classic BC; the MLP reads the agent state
[x, y, vx, vy] and the environment state [goal, obstacle] (mean-std normalized), the CNN the
64-px top camera and the agent state. Actions are min-max normalized to [-1, 1]. AdamW with
a cosine schedule; evaluation on 200 episodes whose seeds (from 1 000 000) are disjoint from
the demonstrations' (0..199), one policy query per control step.
"""

from __future__ import annotations

import ml_collections

from core.training.config import default_config

VARIANTS = ("full", "tiny")
POLICIES = {
    "bc_mlp": {"hidden_sizes": (256, 256)},
    "bc_cnn": {"hidden_sizes": (256, 256), "conv_channels": (16, 32), "num_keypoints": 32},
}
BATCH_SIZES = {"bc_mlp": 256, "bc_cnn": 64}
"""The CNN's batch is smaller: per sample its step costs ~40x the MLP's on this CPU (~78 steps/s
at batch 64 against ~800 at batch 256)."""
VALIDATION_BATCHES = {"bc_mlp": 3, "bc_cnn": 8}
"""The 20 validation episodes hold ~790 frames: 3 batches of 256, 12 of 64."""


def bc_obstacle_config(policy_name: str, head: str, variant: str) -> ml_collections.ConfigDict:
    """The config of BC policy `policy_name` ("bc_mlp" | "bc_cnn") with `head` ("mse" |
    "gaussian_nll") on obstacle; `variant` "tiny" shrinks data, network, steps and evaluation
    to a seconds-long smoke test (its data path is data/obstacle_tiny).

    Raises:
      ValueError naming an unknown policy or variant.
    """
    if policy_name not in POLICIES:
        raise ValueError(f"policy_name must be one of {sorted(POLICIES)}, got {policy_name!r}")
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS}, got {variant!r}")
    config = default_config()
    config.task.name = "obstacle"
    config.task.image_size = 64
    config.task.cameras = ("top",)

    config.data.path = "data/obstacle"
    config.data.num_demos = 200
    config.data.demo_seed = 0
    config.data.normalization = (
        ("observation.state", "mean_std"),
        ("observation.environment_state", "mean_std"),
        ("action", "min_max"),
    )
    config.data.batch_size = BATCH_SIZES[policy_name]

    config.policy.name = policy_name
    config.policy.head = head
    if head == "gaussian_nll":
        config.policy.min_std = 0.01
        config.policy.sample_actions = False
    for field, value in POLICIES[policy_name].items():
        config.policy[field] = value

    config.optim.learning_rate = 1e-3
    config.optim.weight_decay = 1e-4
    config.optim.schedule.name = "cosine"
    config.optim.schedule.warmup_steps = 100

    config.train.num_steps = 3000
    config.train.log_every = 100
    config.train.validate_every = 500
    config.train.validation_batches = VALIDATION_BATCHES[policy_name]
    config.train.checkpoint_every = 1000

    config.eval.episodes = 200
    config.eval.seed = 1_000_000
    config.eval.controller.name = "chunked"
    config.eval.controller.query_every = 1
    config.eval.video_episodes = 16

    if variant == "tiny":
        config.data.path = "data/obstacle_tiny"
        config.data.num_demos = 10
        config.data.validation_fraction = 0.2
        config.data.batch_size = 16
        config.policy.hidden_sizes = (32,)
        if policy_name == "bc_cnn":
            config.policy.conv_channels = (4, 8)
            config.policy.num_keypoints = 4
        config.optim.schedule.warmup_steps = 2
        config.train.num_steps = 20
        config.train.log_every = 5
        config.train.validate_every = 10
        config.train.validation_batches = 1
        config.train.checkpoint_every = 10
        config.eval.episodes = 8
        config.eval.video_episodes = 2
    return config

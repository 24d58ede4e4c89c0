"""What the ACT configs on the JAX tasks (`obstacle`, `pick_place`) share (book 17); not a config.

The original ACT recipe (experiments/configs/_act_aloha.py) shrunk to tasks of 40-120 steps
seen by a 64-px top camera: the same CVAE (L1 reconstruction + β KL, β = 10, one decoder layer,
post-norm, ResNet-18 with frozen batch norm on the images), a narrower and shallower
transformer, a chunk k matched to the task's length, and a learning rate for a backbone that
starts from random weights (no ImageNet weights offline). States and actions are normalized by
mean and std, as in the original; the environment state (goal, obstacle, block, zones) enters
as its own token, as the images do.

Variants:
  "full"   the top camera + the robot state + the environment state (the issue's "images")
  "state"  no camera: the robot and environment states only (the quickstart's: ~10x faster)
  "tiny"   a seconds-long smoke test of the wiring (10 demonstrations, 20 steps)

Evaluation: 200 episodes on seeds from 1 000 000 (disjoint from the demonstrations' 0..199),
z = 0 and temporal ensembling with the original's weights exp(-m i), m = 0.01 (oldest first);
`python -m experiments.evaluate --controller.name=...` compares the other controllers.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from core.training.config import default_config

VARIANTS = ("full", "state", "tiny")


@dataclasses.dataclass(frozen=True)
class TaskRecipe:
    """What differs between the tasks: the chunk k (about a third to a quarter of an expert
    episode) and the training length of each variant."""

    chunk_size: int
    image_steps: int
    state_steps: int


RECIPES = {
    "obstacle": TaskRecipe(chunk_size=10, image_steps=3000, state_steps=3000),
    "pick_place": TaskRecipe(chunk_size=20, image_steps=4000, state_steps=4000),
}
NETWORK = {
    "model_dim": 128,
    "num_heads": 4,
    "ffn_dim": 512,
    "dropout_rate": 0.1,
    "num_encoder_layers": 2,
    "num_decoder_layers": 1,
    "num_cvae_encoder_layers": 2,
    "latent_dim": 16,
    "vision_backbone": "resnet18",
}
TINY_NETWORK = {
    "model_dim": 32,
    "num_heads": 2,
    "ffn_dim": 64,
    "num_encoder_layers": 1,
    "num_cvae_encoder_layers": 1,
    "latent_dim": 4,
}
LEARNING_RATE = 1e-3
WARMUP_STEPS = 200
BATCH_SIZE = 64


def act_task_config(task: str, variant: str) -> ml_collections.ConfigDict:
    """The config of ACT on JAX task `task` ("obstacle" | "pick_place") in `variant` ("full" |
    "state" | "tiny", module docstring); data in data/<task> (tiny: data/<task>_tiny).

    Raises:
      ValueError naming an unknown task or variant.
    """
    if task not in RECIPES:
        raise ValueError(f"task must be one of {sorted(RECIPES)}, got {task!r}")
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS}, got {variant!r}")
    recipe = RECIPES[task]
    config = default_config()
    config.task.name = task
    config.task.image_size = 64
    config.task.cameras = ("top",)

    config.data.path = f"data/{task}"
    config.data.num_demos = 200
    config.data.demo_seed = 0
    config.data.normalization = (
        ("observation.state", "mean_std"),
        ("observation.environment_state", "mean_std"),
        ("action", "mean_std"),
    )
    config.data.batch_size = BATCH_SIZE

    config.policy.name = "act"
    config.policy.observation_horizon = 1
    config.policy.action_horizon = recipe.chunk_size
    config.policy.cameras = ("top",) if variant != "state" else ()
    config.policy.environment_state_key = "observation.environment_state"
    config.policy.reconstruction_loss = "l1"
    config.policy.kl_weight = 10.0
    config.policy.inference_latent = "zero"
    for field, value in NETWORK.items():
        config.policy[field] = value

    config.optim.learning_rate = LEARNING_RATE
    config.optim.weight_decay = 1e-4
    config.optim.schedule.name = "cosine"
    config.optim.schedule.warmup_steps = WARMUP_STEPS
    config.optim.schedule.min_learning_rate = LEARNING_RATE / 10

    config.train.num_steps = recipe.state_steps if variant == "state" else recipe.image_steps
    config.train.log_every = 100
    config.train.validate_every = 500
    config.train.validation_batches = 4
    config.train.checkpoint_every = 500

    config.eval.episodes = 200
    config.eval.seed = 1_000_000
    config.eval.controller.name = "temporal_ensembling"
    config.eval.controller.decay = 0.01
    config.eval.controller.convention = "act"
    config.eval.video_episodes = 16

    if variant == "tiny":
        config.data.path = f"data/{task}_tiny"
        config.data.num_demos = 10
        config.data.validation_fraction = 0.2
        config.data.batch_size = 8
        config.policy.action_horizon = 4
        for field, value in TINY_NETWORK.items():
            config.policy[field] = value
        config.optim.schedule.warmup_steps = 2
        config.train.num_steps = 20
        config.train.log_every = 5
        config.train.validate_every = 10
        config.train.validation_batches = 1
        config.train.checkpoint_every = 10
        config.eval.episodes = 4
        config.eval.video_episodes = 2
        config.eval.max_steps = 30
    return config

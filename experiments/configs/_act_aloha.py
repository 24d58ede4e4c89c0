"""What the ACT configs on the simulated ALOHA tasks share (book 17, 20); not a config.

The original ACT recipe (Zhao et al. 2023, `imitate_episodes.py` and the paper's appendix),
which LeRobot's ACT defaults repeat:

  data     50 scripted demonstrations of 400 steps, 20% held out for validation (the
           original's train_ratio 0.8), state and action normalized by mean and std;
  cameras  the top camera at 480x640; images enter in [0, 1] and the policy applies the
           ImageNet statistics (`act.policy`);
  network  ResNet-18 (frozen batch norm), d_model 512, 8 heads, feed-forward 3200, dropout
           0.1, post-norm, 4 encoder layers, 4 CVAE-encoder layers, d_z 32, chunk k = 100, and
           ONE decoder layer: the original builds 7 but keeps only the first layer's output
           (`hs = transformer(...)[0]` over the intermediate outputs), so layers 2-7 never
           affect an action (`act.model`);
  loss     L1 reconstruction + β KL with β = 10;
  optim    AdamW, lr 1e-5 for the transformer and for the backbone, weight decay 1e-4, batch
           8, constant schedule; gradients clipped at norm 10 (LeRobot's default; the
           original does not clip);
  steps    2000 epochs of the original, whose epoch is one batch per 8 training episodes:
           2000 · ceil(40 / 8) = 10 000 steps; the checkpoint with the lowest validation loss
           is evaluated, as the original does;
  eval     50 episodes (the paper's count) of at most 400 steps, success = gym-aloha's reward
           4, z = 0, temporal ensembling with the original's weights exp(-m i), m = 0.01, the
           oldest prediction weighted most.

Variants: "full" (the above: a GPU run), "cpu" (a reduced resolution and model for this 2-core
CPU, see CPU), "tiny" (a seconds-long smoke test of the wiring).
"""

from __future__ import annotations

import math

import ml_collections

from core.training.config import default_config

VARIANTS = ("full", "cpu", "tiny")
TASKS = ("aloha_transfer_cube", "aloha_insertion")
NUM_DEMOS = 50
VALIDATION_FRACTION = 0.2
BATCH_SIZE = 8
ORIGINAL_EPOCHS = 2000
BACKBONE = "cvae_decoder/camera_tokens/backbone"
"""The ResNet's parameter path (`act.model`): its learning-rate group."""
FULL_IMAGE_SIZE = (480, 640)
FULL_NETWORK = {
    "model_dim": 512,
    "num_heads": 8,
    "ffn_dim": 3200,
    "dropout_rate": 0.1,
    "num_encoder_layers": 4,
    "num_decoder_layers": 1,
    "num_cvae_encoder_layers": 4,
    "latent_dim": 32,
    "vision_backbone": "resnet18",
}

CPU_IMAGE_SIZE = (120, 160)
CPU_NETWORK = {**FULL_NETWORK, "model_dim": 256, "ffn_dim": 1024, "compute_dtype": "bfloat16"}
CPU_LEARNING_RATE = 1e-4
CPU_WARMUP_STEPS = 500
CPU_NUM_STEPS = 6000
CPU_EVAL_EPISODES = 50
"""CPU: a quarter of the resolution per side (the layer4 map is 4x5, 20 image tokens; the 4 cm
cube spans ~3 pixels), half the width (d_model 256, feed-forward 1024) with bfloat16 matmuls,
the same depth, chunk, loss, batch and controller. The backbone trains from scratch (no
ImageNet weights offline) in fewer steps than the original's 10 000, so the learning rate is
10x the original's, with a 500-step warmup and a cosine decay."""


def original_num_steps(num_demos: int = NUM_DEMOS) -> int:
    """Gradient steps of the original's 2000 epochs: one batch per BATCH_SIZE training
    episodes (its dataset yields one random window per episode), the last batch partial."""
    train_episodes = num_demos - round(VALIDATION_FRACTION * num_demos)
    return ORIGINAL_EPOCHS * math.ceil(train_episodes / BATCH_SIZE)


def act_aloha_config(task: str, variant: str) -> ml_collections.ConfigDict:
    """The config of ACT on ALOHA `task` ("aloha_transfer_cube" | "aloha_insertion") in
    `variant` ("full" | "cpu" | "tiny", module docstring); data in data/<task>[_<size>].

    Raises:
      ValueError naming an unknown task or variant.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS}, got {variant!r}")
    config = default_config()
    config.task.name = task
    config.task.image_size = FULL_IMAGE_SIZE
    config.task.cameras = ("top",)

    config.data.path = f"data/{task}"
    config.data.num_demos = NUM_DEMOS
    config.data.demo_seed = 0
    config.data.validation_fraction = VALIDATION_FRACTION
    config.data.normalization = (("observation.state", "mean_std"), ("action", "mean_std"))
    config.data.batch_size = BATCH_SIZE

    config.policy.name = "act"
    config.policy.observation_horizon = 1
    config.policy.action_horizon = 100
    config.policy.cameras = ("top",)
    config.policy.reconstruction_loss = "l1"
    config.policy.kl_weight = 10.0
    config.policy.inference_latent = "zero"
    for field, value in FULL_NETWORK.items():
        config.policy[field] = value

    config.optim.learning_rate = 1e-5
    config.optim.weight_decay = 1e-4
    config.optim.param_group_lr = {BACKBONE: 1.0}  # backbone lr 1e-5 = 1.0 x lr
    config.optim.schedule.name = "constant"

    config.train.num_steps = original_num_steps()
    config.train.log_every = 100
    config.train.validate_every = 1000
    config.train.validation_batches = 10
    config.train.checkpoint_every = 1000

    config.eval.episodes = 50
    config.eval.seed = 1_000_000
    config.eval.controller.name = "temporal_ensembling"
    config.eval.controller.decay = 0.01
    config.eval.controller.convention = "act"
    config.eval.video_episodes = 8

    if variant == "cpu":
        side = "x".join(str(side) for side in CPU_IMAGE_SIZE)
        config.task.image_size = CPU_IMAGE_SIZE
        config.data.path = f"data/{task}_{side}"
        for field, value in CPU_NETWORK.items():
            config.policy[field] = value
        config.optim.learning_rate = CPU_LEARNING_RATE
        config.optim.schedule.name = "cosine"
        config.optim.schedule.warmup_steps = CPU_WARMUP_STEPS
        config.optim.schedule.min_learning_rate = CPU_LEARNING_RATE / 10
        config.train.num_steps = CPU_NUM_STEPS
        config.train.validate_every = 500
        config.train.checkpoint_every = 500
        config.eval.episodes = CPU_EVAL_EPISODES
    if variant == "tiny":
        config.task.image_size = (48, 64)
        config.data.path = f"data/{task}_tiny"
        config.data.num_demos = 2
        config.data.validation_fraction = 0.5
        config.data.batch_size = 2
        config.policy.action_horizon = 10
        config.policy.model_dim = 32
        config.policy.num_heads = 2
        config.policy.ffn_dim = 64
        config.policy.num_encoder_layers = 1
        config.policy.num_cvae_encoder_layers = 1
        config.policy.latent_dim = 4
        config.train.num_steps = 4
        config.train.log_every = 2
        config.train.validate_every = 2
        config.train.validation_batches = 1
        config.train.checkpoint_every = 2
        config.eval.episodes = 1
        config.eval.video_episodes = 1
        config.eval.max_steps = 20
    return config

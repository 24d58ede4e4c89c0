"""The README's first command: learn to reach a goal around an obstacle from 200 demonstrations
with ACT, beside behavioral cloning, which averages the two ways around it (book 16.3.3,
16.8.1, 17)."""

import ml_collections

from experiments.configs._act_tasks import act_task_config
from experiments.configs._bc_obstacle import bc_obstacle_config

VARIANTS = ("full", "bc", "tiny", "bc_tiny")


def bc_baseline_config(variant: str) -> ml_collections.ConfigDict:
    """BC (MLP, MSE) reading exactly what the quickstart's ACT reads: the data and environment
    of ACT's config in `variant` ("full" | "tiny"), the rest of bc_mlp_mse_obstacle."""
    act = act_task_config("obstacle", "state" if variant == "full" else variant)
    config = bc_obstacle_config("bc_mlp", "mse", variant)
    config.task = act.task
    config.data.path = act.data.path
    return config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """Quickstart: ACT (state only) on obstacle, trained and evaluated from scratch, then the
    BC baseline on the same data beside it.

    pip install -e . && python -m experiments.train --config experiments/configs/quickstart.py \\
        --baseline experiments/configs/quickstart.py:bc --workdir runs/quickstart

    Generates 200 scripted demonstrations in data/obstacle_no_velocity if missing (the expert
    passes the obstacle on the left or the right at random; the agent state is its position,
    without the velocity that lets a cloned policy copy its previous action), trains ACT
    (experiments/configs/_act_tasks.py, variant "state": d_model 128, 2 + 1 layers, chunk 10,
    L1 + 0.01 KL) for 3000 steps and evaluates it on 200 new layouts with z = 0 and temporal
    ensembling (m = 0.01); then trains and evaluates BC (MLP, MSE; variant "bc") in
    runs/quickstart/baseline, and ends with both success rates and mode shares. Expected
    (measured):
      policy ACTPolicy: success 99.0% [96.4%, 99.7%]; left 48%, right 51%, collided 1%
    baseline BCPolicy: success 68.5% [61.8%, 74.5%]; left 38%, right 34%, collided 28%
    BC, regressing to the mean of the two sides where they are equally likely, drives into the
    obstacle in 28% of the episodes (90% when it also sees the velocity: bc_mlp_mse_obstacle).
    Runtime on the 2-core CPU: 1 min 26 s end to end (dataset 4 s, ACT ~50 steps/s, BC
    ~15 s); 2 min 36 s while another training job shared the cores.

    variant "bc": the baseline alone; "tiny", "bc_tiny": seconds-long smoke tests.
    """
    if variant not in VARIANTS:
        raise ValueError(f"config variant must be one of {VARIANTS}, got {variant!r}")
    if variant.startswith("bc"):
        return bc_baseline_config(variant.removeprefix("bc").removeprefix("_") or "full")
    return act_task_config("obstacle", "state" if variant == "full" else variant)

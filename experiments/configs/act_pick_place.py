"""ACT on pick_place (book 16.6.2, 17.1, 17.7): chunked actions grasp a block and carry it to
either of two zones, a task long enough (~90 steps) for chunking to matter."""

import ml_collections

from experiments.configs._act_tasks import act_task_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """ACT on pick_place from 200 demonstrations that use the left or right zone at random.

    Images (variant "full"): python -m experiments.train \\
        --config experiments/configs/act_pick_place.py --workdir runs/act_pick_place
    State only (variant "state"): python -m experiments.train \\
        --config experiments/configs/act_pick_place.py:state --workdir runs/act_pick_place_state

    Generates data/pick_place_no_velocity if missing (state [x, y, opening]: with the velocity
    ACT copied its previous action and drove past the zones, 66.5% [59.7%, 72.7%]). Trains ACT
    (experiments/configs/_act_tasks.py: d_model 128, 2 + 1 layers, chunk k = 20, L1 + 10 KL,
    AdamW lr 1e-3 cosine, batch 64, 4000 steps), evaluates 200 new layouts, z = 0, temporal
    ensembling m = 0.01. Expected (state, measured): success 99.0% [96.4%, 99.7%], left zone
    58%, right zone 41%, mean length 90.7 steps (the expert's ~90). Runtime on the shared
    2-core CPU (state): ~6-11 steps/s, ~10 min end to end while another job ran.
    Images: as act_obstacle's, not run here; not measured.

    variant "tiny": a seconds-long smoke test (state only).
    """
    return act_task_config("pick_place", variant)

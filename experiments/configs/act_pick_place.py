"""ACT on pick_place (book 17.2, 17.7): chunked actions carry the block to one of two zones."""

import ml_collections

from experiments.configs._act_tasks import act_task_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """ACT on pick_place from 200 demonstrations.

    python -m experiments.train --config experiments/configs/act_pick_place.py --workdir \\
        runs/act_pick_place

    Expected: (measured) Runtime: (measured)

    variant "state": no camera; variant "tiny": a seconds-long smoke test.
    """
    return act_task_config("pick_place", variant)

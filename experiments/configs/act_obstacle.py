"""ACT on obstacle (book 17.7, 17.8): action chunks from a CVAE commit to one way around the
obstacle, where behavioral cloning averages the two into a collision."""

import ml_collections

from experiments.configs._act_tasks import act_task_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """ACT on obstacle from 200 demonstrations passing left or right.

    python -m experiments.train --config experiments/configs/act_obstacle.py --workdir \\
        runs/act_obstacle

    Expected: (measured) Runtime: (measured)

    variant "state": no camera; variant "tiny": a seconds-long smoke test.
    """
    return act_task_config("obstacle", variant)

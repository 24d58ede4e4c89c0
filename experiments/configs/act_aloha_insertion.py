"""ACT on simulated ALOHA insertion (book 17, 20): the original recipe on 50 scripted
demonstrations, judged by gym-aloha's success (reward 4) with temporal ensembling."""

import ml_collections

from experiments.configs._act_aloha import act_aloha_config


def get_config(variant: str = "full") -> ml_collections.ConfigDict:
    """ACT on aloha_insertion: each arm grasps its part, and they push the peg into the socket.

    Full (GPU): pip install -e '.[sim]' && python -m experiments.train \\
        --config experiments/configs/act_aloha_insertion.py --workdir runs/act_insertion

    Generates 50 scripted demonstrations at 480x640 in data/aloha_insertion if missing, trains
    the original ACT (experiments/configs/_act_aloha.py: ResNet-18, d_model 512, 4 encoder + 1
    decoder layers, chunk 100, kl weight 10, AdamW lr 1e-5 with the backbone at 1e-5, batch 8,
    10 000 steps = the original's 2000 epochs) and evaluates the best checkpoint on 50 new
    layouts with temporal ensembling (m = 0.01).
    Expected: ~50% success, the ACT paper's figure for insertion from scripted data (Zhao et
    al. 2023, Table 1; 20% from human data). Runtime: a few hours on one GPU; not feasible on
    this 2-core CPU.

    CPU variant (`:cpu`): the reduced transfer-cube recipe (120x160, d_model 256, 6000 steps;
    data/aloha_insertion_120x160); not run here: the transfer-cube run used this CPU's budget.
    Runtime: like transfer cube's, about an hour on the unshared 2-core CPU.

    variant "tiny": a seconds-long smoke test of the wiring (2 demonstrations at 48x64).
    """
    return act_aloha_config("aloha_insertion", variant)

"""Experiment configs: one module per experiment, each with `get_config()` returning an
`ml_collections.ConfigDict` in the layout of `core.training.config`. Launch one by path:

    python -m experiments.train --config experiments/configs/<name>.py --workdir runs/<name>

  quickstart            the README's first command: ACT (state only) on obstacle, then the
                        BC (MLP, MSE) baseline beside it (--baseline ...:bc), ~2.5 min
  act_obstacle          book 17: ACT on obstacle and on pick_place (images, or ":state")
  act_pick_place
  bc_mlp_mse_obstacle   book 16.8.1 baselines on the bimodal obstacle task (16.3.3): an MLP
  bc_mlp_nll_obstacle   on the state or a small CNN on the top camera, with an MSE (eq. 16.39)
  bc_cnn_mse_obstacle   or a diagonal-Gaussian NLL (eq. 16.62) head
  bc_cnn_nll_obstacle

Modules whose name starts with "_" hold what several configs share; they are not configs.
Each config takes an optional variant argument, `get_config("tiny")` (on the command line:
`--config experiments/configs/<name>.py:tiny`), a seconds-long run for smoke tests.
"""

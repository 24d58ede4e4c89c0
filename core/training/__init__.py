"""Training infrastructure shared by every method: one train step, one loop.

config      the experiment-config layout, its validation, config.json in the workdir
state       `TrainState`: step, params, constants, optimizer state, EMA, loss scale
optimizer   clipping + AdamW per parameter group + schedule + weight EMA, from config.optim
step        the pure, jitted `train_step` / `eval_step`; non-finite detection
sharding    the data-parallel mesh, global batches, multi-host initialization
checkpoint  orbax checkpoints (keep last N + best), `restore(workdir)`, stop on SIGTERM
logs        TensorBoard events, metrics.jsonl, the progress bar
loop        `fit`: the training loop with validation, checkpoints and exact resumption
"""

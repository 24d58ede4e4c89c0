"""Subprocess workers of the training tests: each needs its own JAX device setup, fixed by
XLA_FLAGS before jax is imported (and, for several processes, jax.distributed initialized
before the first computation), so it runs as a script with the repository root on PYTHONPATH.

  python tests/core/training/workers.py sharded OUT.npz
      Needs 8 devices. Runs the toy train step for STEPS steps on a mesh of 8 devices and on a
      mesh of 1 device from the same state and batches; saves both final parameter sets (and
      EMAs) and the error message of an indivisible batch.
  python tests/core/training/workers.py train CONFIG.json WORKDIR [--process-id I
          --num-processes N --port P]
      `train_and_evaluate` of the toy policy with the stand-in evaluator, optionally as
      process I of N connected through 127.0.0.1:P.
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from core.data.stats import array_statistics, make_normalizers
from core.training import sharding
from core.training.config import load_config
from core.training.loop import TrainingInterrupted
from core.training.optimizer import learning_rate_schedule, make_optimizer
from core.training.state import create_train_state
from core.training.step import jit_train_step
from experiments.train import train_and_evaluate
from tests.core.training import toys

STEPS = 4
BATCH_SIZE = 16


def sharded(out: str) -> None:
    assert jax.device_count() == 8, jax.devices()
    config = toys.toy_config("unused")
    config.optim.param_group_lr = {"encoder": 0.1}
    config.optim.ema_decay = 0.9
    policy = toys.TanhPolicy()
    generator = np.random.default_rng(0)
    batches = [
        {
            "observation.state": generator.standard_normal(
                (BATCH_SIZE, 2, toys.STATE_DIM), np.float32
            ),
            "action": generator.standard_normal((BATCH_SIZE, 3, toys.ACTION_DIM), np.float32),
            "action_is_pad": generator.random((BATCH_SIZE, 3)) < 0.2,
        }
        for _ in range(STEPS)
    ]
    stats = {
        "observation.state": array_statistics(generator.standard_normal((64, toys.STATE_DIM))),
        "action": array_statistics(generator.standard_normal((64, toys.ACTION_DIM))),
    }
    normalizers = make_normalizers(stats, dict(config.data.normalization))
    optimizer = make_optimizer(config.optim)
    schedule = learning_rate_schedule(config.optim, config.train.num_steps)
    rng = jax.random.key(7)
    results = {}
    for name, devices in (("sharded", jax.devices()), ("single", jax.devices()[:1])):
        mesh = sharding.data_parallel_mesh(devices)
        state = create_train_state(
            policy, optimizer, jax.random.key(0), batches[0], ema=True, dynamic_loss_scale=False
        )
        state = jax.device_put(state, sharding.replicated(mesh))
        step = jit_train_step(policy, optimizer, schedule, normalizers, mesh, ema_decay=0.9)
        for batch in batches:
            state, _ = step(state, sharding.global_batch(batch, mesh), rng)
        for prefix, tree in (("params", state.params), ("ema", state.ema_params)):
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
                results[f"{name}/{prefix}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    mesh = sharding.data_parallel_mesh()
    try:
        sharding.global_batch({"action": np.zeros((12, 2), np.float32)}, mesh)
    except ValueError as error:
        results["indivisible_error"] = np.asarray(str(error))
    np.savez(out, **results)


def train(config_path: str, workdir: str, process_id, num_processes, port) -> None:
    if num_processes:
        sharding.initialize_multihost(
            f"127.0.0.1:{port}", num_processes, process_id, timeout_seconds=60
        )
    try:
        train_and_evaluate(
            load_config(config_path),
            workdir,
            make_policy=toys.make_toy_policy,
            evaluate=toys.fake_evaluate,
            progress=False,
        )
    except TrainingInterrupted as interruption:
        sys.exit(128 + interruption.signal_number)  # as experiments.train.main


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("sharded").add_argument("out")
    training = commands.add_parser("train")
    training.add_argument("config")
    training.add_argument("workdir")
    training.add_argument("--process-id", type=int)
    training.add_argument("--num-processes", type=int)
    training.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    if args.command == "sharded":
        sharded(args.out)
    else:
        train(args.config, args.workdir, args.process_id, args.num_processes, args.port)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Train-step speed: compile time, step time and steps/s of the shared train step, beside a bare
jax.grad + optax.adamw step of the same policy, the host's batch time and the whole loop.

    python -m experiments.benchmarks.train_step [--configs experiments/configs/<name>.py ...]
        [--steps 300] [--loop-steps 1000]

For each config (default: the BC MLP and BC CNN baselines on obstacle; the dataset at
config.data.path is generated first if missing), on a real batch of the config's batch size:
  - compile: seconds to lower and compile `core.training.step.jit_train_step`;
  - step: milliseconds per step of the compiled step (state donated), and steps/s;
  - bare step: the same policy loss under jax.value_and_grad + optax.adamw, without what the
    shared step adds (batch preparation, clipping, parameter groups, the injected learning
    rate, EMA when on, metrics); the ratio step / bare step is the infrastructure's cost;
  - host batch: milliseconds for the sampler to assemble a batch and make it a device array;
  - loop: steps/s of `core.training.loop.fit` over --loop-steps steps (data prefetch, logging,
    the final checkpoint), compile excluded.
Results go to results/benchmarks/train_step.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from core.data.stats import make_normalizers, prepare_batch
from core.training import sharding
from core.training.config import load_config_module, validate_config
from core.training.loop import fit
from core.training.optimizer import learning_rate_schedule, make_optimizer
from core.training.state import create_train_state
from core.training.step import jit_train_step
from experiments import policies
from experiments.train import make_samplers, open_dataset

RESULTS = Path("results/benchmarks/train_step.json")
DEFAULT_CONFIGS = (
    "experiments/configs/bc_mlp_mse_obstacle.py",
    "experiments/configs/bc_cnn_mse_obstacle.py",
)


WARMUP_CALLS = 2
"""Untimed calls first: a jitted function fed its own outputs may compile once more."""


def seconds_per_call(function, calls: int) -> float:
    """Wall seconds per call of `function()` (which returns something to block on)."""
    for _ in range(WARMUP_CALLS):
        jax.block_until_ready(function())
    start = time.perf_counter()
    for _ in range(calls - 1):
        function()
    jax.block_until_ready(function())
    return (time.perf_counter() - start) / calls


def bare_step(policy, normalizers, optim_config):
    """value_and_grad of the policy loss and optax.adamw: the step without infrastructure."""
    optimizer = optax.adamw(
        optim_config.learning_rate,
        b1=optim_config.b1,
        b2=optim_config.b2,
        eps=optim_config.eps,
        weight_decay=optim_config.weight_decay,
    )

    def step(params, opt_state, constants, batch, rng):
        def loss(p):
            prepared = prepare_batch(batch, normalizers)
            return policy.loss({"params": p, **constants}, prepared, rng, 0)[0]

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return optimizer, jax.jit(step, donate_argnums=(0, 1))


def benchmark_config(path: str, steps: int, loop_steps: int) -> dict:
    config = load_config_module(path)
    validate_config(config)
    dataset = open_dataset(config)
    policy = policies.make_policy(config.policy, dataset.reader.features)
    train_sampler, _ = make_samplers(config, dataset, policy)
    normalizers = make_normalizers(dataset.stats, dict(config.data.normalization))
    mesh = sharding.data_parallel_mesh()
    batch = sharding.global_batch(train_sampler.batch(0), mesh)
    optimizer = make_optimizer(config.optim)
    schedule = learning_rate_schedule(config.optim, config.train.num_steps)
    rng = jax.random.key(0)
    state = create_train_state(
        policy,
        optimizer,
        rng,
        prepare_batch(batch, normalizers),
        ema=config.optim.ema_decay > 0,
        dynamic_loss_scale=config.optim.loss_scaling == "dynamic",
    )
    train_step = jit_train_step(
        policy, optimizer, schedule, normalizers, mesh, ema_decay=config.optim.ema_decay
    )
    start = time.perf_counter()
    compiled = train_step.lower(state, batch, rng).compile()
    compile_seconds = time.perf_counter() - start

    def run_step():
        nonlocal state
        state, metrics = compiled(state, batch, rng)
        return metrics

    step_seconds = seconds_per_call(run_step, steps)

    bare_optimizer, bare = bare_step(policy, normalizers, config.optim)
    params = jax.tree.map(jnp.copy, state.params)
    bare_state = [params, bare_optimizer.init(params)]

    def run_bare_step():
        bare_state[0], bare_state[1], value = bare(*bare_state, state.constants, batch, rng)
        return value

    bare_seconds = seconds_per_call(run_bare_step, steps)
    host_batch_seconds = seconds_per_call(
        lambda: sharding.global_batch(train_sampler.batch(1), mesh), steps
    )

    loop_config = config.copy_and_resolve_references()
    loop_config.train.num_steps = loop_steps
    loop_config.train.log_every = max(1, loop_steps // 10)
    loop_config.train.checkpoint_every = loop_steps
    loop_config.train.validate_every = 0
    with tempfile.TemporaryDirectory(prefix="train_step_") as workdir:
        summary = fit(
            loop_config, workdir, policy, train_sampler, None, dataset.stats, progress=False
        )
    dataset.reader.close()
    parameters = sum(leaf.size for leaf in jax.tree.leaves(state.params))
    return {
        "config": path,
        "policy": config.policy.name,
        "parameters": int(parameters),
        "batch_size": config.data.batch_size,
        "devices": jax.device_count(),
        "compile_seconds": compile_seconds,
        "step_ms": 1e3 * step_seconds,
        "steps_per_second": 1.0 / step_seconds,
        "bare_step_ms": 1e3 * bare_seconds,
        "step_over_bare_step": step_seconds / bare_seconds,
        "host_batch_ms": 1e3 * host_batch_seconds,
        "loop_steps_per_second": summary.steps_per_second,
        "loop_compile_seconds": summary.compile_seconds,
    }


def print_table(results: list[dict]) -> None:
    header = (
        f"{'policy':8} {'params':>8} {'batch':>5} {'compile s':>9} {'step ms':>8} "
        f"{'steps/s':>8} {'bare ms':>8} {'ratio':>6} {'batch ms':>8} {'loop steps/s':>12}"
    )
    print(header)
    for r in results:
        print(
            f"{r['policy']:8} {r['parameters']:8d} {r['batch_size']:5d} "
            f"{r['compile_seconds']:9.2f} {r['step_ms']:8.3f} {r['steps_per_second']:8.0f} "
            f"{r['bare_step_ms']:8.3f} {r['step_over_bare_step']:6.2f} "
            f"{r['host_batch_ms']:8.3f} {r['loop_steps_per_second']:12.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--steps", type=int, default=300, help="timed calls per measurement")
    parser.add_argument("--loop-steps", type=int, default=1000, help="steps of the loop run")
    args = parser.parse_args()
    results = [benchmark_config(path, args.steps, args.loop_steps) for path in args.configs]
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"machine": platform.processor() or platform.machine(), "results": results}, indent=2
        )
        + "\n"
    )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()

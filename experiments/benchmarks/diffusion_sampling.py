"""Sampling loops of Diffusion Policy: one `lax.scan` against a Python loop over jitted steps.

    python -m experiments.benchmarks.diffusion_sampling [--runs 20]

A 100-step DDPM and a 10-step DDIM loop (cosine schedule, K = 100, clipping on: LeRobot's
Diffusion Policy settings) with a small denoiser: an MLP (2 hidden layers of 256, Mish) over a
flattened action chunk [B, 16, 2] and a 64-dim sinusoidal step embedding. Three ways to run a
loop, at batch 1 (one action chunk, the control loop's case) and 64:

  scan         `core.diffusion_samplers.sample` under one `jax.jit`: the whole loop is one call;
  loop_fused   a Python loop calling one jitted function per step (denoiser + step + noise);
  loop         a Python loop calling the jitted denoiser and the jitted scheduler step
               separately, as diffusers' `for t in timesteps: unet(...); scheduler.step(...)`.

Each reports the median and the minimum of `--runs` timed calls after a first call, whose time
(compilation included) is reported too; "× scan" is the ratio of medians. Results go to
results/benchmarks/diffusion_sampling.json and are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

from core import diffusion_samplers, diffusion_schedules, position_encoding

RESULTS = Path("results/benchmarks/diffusion_sampling.json")
HORIZON, ACTION_DIM, HIDDEN, STEP_EMBEDDING = 16, 2, 256, 64
NUM_TRAIN_TIMESTEPS = 100
SAMPLERS = {
    "ddpm_100": diffusion_samplers.DDPMSampler(num_inference_steps=100),
    "ddim_10": diffusion_samplers.DDIMSampler(num_inference_steps=10),
}
BATCH_SIZES = (1, 64)


class MLPDenoiser(nn.Module):
    """ε̂(x_t, t): [B, T, D] noisy chunks and [B] steps -> [B, T, D]."""

    @nn.compact
    def __call__(self, noisy: jax.Array, timesteps: jax.Array) -> jax.Array:
        step = position_encoding.sinusoidal_timestep_embedding(timesteps, STEP_EMBEDDING)
        hidden = jnp.concatenate([noisy.reshape(noisy.shape[0], -1), step], axis=-1)
        for _ in range(2):
            hidden = jax.nn.mish(nn.Dense(HIDDEN)(hidden))
        return nn.Dense(HORIZON * ACTION_DIM)(hidden).reshape(noisy.shape)


def _timed(run, runs: int) -> dict[str, float]:
    """The first call (compile included), then the median and the fastest of `runs` calls, in ms.

    On a machine shared with other jobs the median moves with the load; the minimum is the
    closest to the uncontended time.
    """
    milliseconds = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        run()
        milliseconds.append(1000.0 * (time.perf_counter() - start))
    first, steady = milliseconds[0], milliseconds[1:]
    return {"compile_ms": first, "ms": statistics.median(steady), "min_ms": min(steady)}


def _loops(params, schedule, sampler, shape, key):
    """The three ways to run one sampling loop, as zero-argument callables."""
    model = MLPDenoiser()
    step_function = (
        diffusion_samplers.ddim_step
        if isinstance(sampler, diffusion_samplers.DDIMSampler)
        else diffusion_samplers.ddpm_step
    )
    timesteps, prev_timesteps = diffusion_samplers.timestep_pairs(NUM_TRAIN_TIMESTEPS, sampler)
    initial_key, steps_key = jax.random.split(key)
    initial = jax.random.normal(initial_key, shape)

    @jax.jit
    def scan(params, key):
        denoise_fn = lambda x, t: model.apply(params, x, t)  # noqa: E731
        return diffusion_samplers.sample(denoise_fn, schedule, sampler, shape, key)

    @jax.jit
    def fused_step(params, sample, index, t, prev_t):
        output = model.apply(params, sample, jnp.full((shape[0],), t))
        noise = diffusion_samplers.step_noise(steps_key, index, shape)
        return step_function(schedule, sampler, output, t, prev_t, sample, noise).prev_sample

    denoise = jax.jit(lambda params, x, t: model.apply(params, x, jnp.full((shape[0],), t)))
    noise = jax.jit(lambda index: diffusion_samplers.step_noise(steps_key, index, shape))
    step = jax.jit(step_function, static_argnums=1)
    pairs = list(
        zip(range(len(timesteps)), timesteps.tolist(), prev_timesteps.tolist(), strict=True)
    )

    def loop_fused():
        sample = initial
        for index, t, prev_t in pairs:
            sample = fused_step(params, sample, index, t, prev_t)
        return sample.block_until_ready()

    def loop():
        sample = initial
        for index, t, prev_t in pairs:
            output = denoise(params, sample, t)
            sample = step(schedule, sampler, output, t, prev_t, sample, noise(index)).prev_sample
        return sample.block_until_ready()

    return {
        "scan": lambda: scan(params, key).block_until_ready(),
        "loop_fused": loop_fused,
        "loop": loop,
    }


def run(runs: int) -> dict[str, dict[str, float]]:
    schedule = diffusion_schedules.make_noise_schedule("squaredcos_cap_v2", NUM_TRAIN_TIMESTEPS)
    key = jax.random.key(0)
    results = {}
    for batch in BATCH_SIZES:
        shape = (batch, HORIZON, ACTION_DIM)
        params = MLPDenoiser().init(key, jnp.zeros(shape), jnp.zeros((batch,), jnp.int32))
        for name, sampler in SAMPLERS.items():
            timings = {
                mode: _timed(loop_run, runs)
                for mode, loop_run in _loops(params, schedule, sampler, shape, key).items()
            }
            for timing in timings.values():
                timing["ratio_to_scan"] = timing["ms"] / timings["scan"]["ms"]
            results[f"{name}/batch{batch}"] = timings
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    results = run(args.runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": args.runs, "results": results}, indent=1) + "\n")
    print(f"{'loop':<16} {'mode':<11} {'median ms':>9} {'× scan':>7} {'min ms':>8} {'first ms':>9}")
    for loop_name, timings in results.items():
        for mode, timing in timings.items():
            print(
                f"{loop_name:<16} {mode:<11} {timing['ms']:9.2f} {timing['ratio_to_scan']:7.2f} "
                f"{timing['min_ms']:8.2f} {timing['compile_ms']:9.0f}"
            )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

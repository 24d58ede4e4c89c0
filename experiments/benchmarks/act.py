"""ACT's train step and inference latency against LeRobot's ACT, side by side on this CPU.

    python -m experiments.benchmarks.act [--rounds 10] [--threads 1]
        [--torch-python /work/parity-venv/bin/python]

One configuration for both: LeRobot's default ACT (d_model 512, 8 heads, feed-forward 3200, 4
encoder, 1 decoder and 4 CVAE-encoder layers, d_z 32, k = 100, dropout 0.1, ResNet-18 with
frozen batch norm) for a 14-dimensional robot state and action and one 84×84 camera.

  train step  batch 8: forward with the CVAE encoder and dropout, backward, gradient clipping
              at norm 10 and AdamW (lr 1e-5, weight decay 1e-4). Ours is the training loop's
              own step (`core.training.step.jit_train_step`: uint8 images prepared inside,
              state donated), in float32 and with bfloat16 matmuls (float32 accumulation),
              with the default hashed dropout bits (`act.dropout_keys`), and in float32 with
              threefry bits and without dropout, to show what the masks cost. LeRobot's is
              `policy.forward(batch)`, `loss.backward()`, `clip_grad_norm_`, `AdamW.step()`.
  inference   batch 1, z = 0: our jitted `predict_chunk` (float32 and bfloat16) against
              `predict_action_chunk` under `torch.no_grad()`.

Paired rounds. Other jobs share this machine and its two vCPUs (hyperthreads of one core), so
the speed available to a process changes from second to second, and even its CPU time grows
when the sibling thread is busy. Each round therefore times every case once, ours and
LeRobot's (a worker subprocess, `--torch-python`, driven over a pipe) back to back, and the
ratio LeRobot / ours is taken within each round (> 1: ours faster); the table gives the median
of the per-round ratios, and the median and minimum wall times (on a loaded machine the
minimum is the least disturbed). Compile times are those of our jitted functions. The train
step's matmul FLOPs (forward and backward, `core.tracer.count_ops` over the step's jaxpr) over
its minimum time give its throughput, reported as a fraction of this CPU's matmul peak, timed in
every round too (2048² float32 matmuls; bfloat16 inputs with float32 accumulation for the
bfloat16 step) and taken at its fastest. `--threads 1` runs both single-threaded (XLA's and
torch's intra-op pools). Results go to results/benchmarks/act.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from experiments.benchmarks.vision_blocks import SINGLE_THREAD_XLA_FLAGS

RESULTS = Path("results/benchmarks/act.json")
BATCH, STATE_DIM, ACTION_DIM, IMAGE_SIZE, CHUNK = 8, 14, 14, 84, 100
LEARNING_RATE, WEIGHT_DECAY, GRAD_CLIP_NORM = 1e-5, 1e-4, 10.0
CAMERA = "observation.images.top"
TRAIN_VARIANTS = {  # name: (compute_dtype, dropout_rate, dropout_bits)
    "float32": ("float32", 0.1, "hash"),
    "float32_threefry_dropout": ("float32", 0.1, "threefry"),
    "float32_no_dropout": ("float32", 0.0, "hash"),
    "bfloat16": ("bfloat16", 0.1, "hash"),
}
INFERENCE_VARIANTS = ("float32", "bfloat16")
PEAK_MATRIX_SIZE = 2048
TASKS = ("train_step", "inference", "matmul_peak")
LEROBOT_TASKS = ("train_step", "inference")


def timed(run: Callable[[], object]) -> dict[str, float]:
    """Wall and process-CPU milliseconds of one call of `run`."""
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    run()
    return {
        "wall": 1000.0 * (time.perf_counter() - wall_start),
        "cpu": 1000.0 * (time.process_time() - cpu_start),
    }


def _batch(batch_size: int) -> dict:
    """A batch in the sampler's form: uint8 images, normalized float state and actions."""
    import numpy as np

    rng = np.random.default_rng(0)
    is_pad = np.zeros((batch_size, CHUNK), bool)
    is_pad[-1, 60:] = True
    return {
        "observation.state": rng.normal(size=(batch_size, 1, STATE_DIM)).astype(np.float32),
        CAMERA: rng.integers(0, 256, (batch_size, 1, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
        "action": rng.normal(size=(batch_size, CHUNK, ACTION_DIM)).astype(np.float32),
        "action_is_pad": is_pad,
    }


def _policy(compute_dtype: str, dropout_rate: float = 0.1, dropout_bits: str = "hash"):
    from act.model import ACTConfig
    from act.policy import ACTPolicy

    network = ACTConfig(
        action_dim=ACTION_DIM,
        chunk_size=CHUNK,
        dropout_rate=dropout_rate,
        compute_dtype=compute_dtype,
    )
    return ACTPolicy(network, image_keys=(CAMERA,), dropout_bits=dropout_bits)


def _optimizer():
    from core.training import config as training_config
    from core.training.optimizer import make_optimizer

    optim = training_config.default_config().optim
    optim.learning_rate, optim.weight_decay = LEARNING_RATE, WEIGHT_DECAY
    optim.grad_clip_norm = GRAD_CLIP_NORM
    return make_optimizer(optim)


class OurCase:
    """A compiled function of ours and how to call it once; `stats` holds the compile time
    and, for train steps, the matmul FLOPs of one step."""

    def __init__(self, run: Callable[[], None], stats: dict[str, float]):
        self.run = run
        self.stats = stats


def _seconds(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def train_step_case(compute_dtype: str, dropout_rate: float, dropout_bits: str) -> OurCase:
    """Our jitted train step on a fixed batch, its state carried from call to call."""
    import functools

    import jax

    from core import schedules, tracer
    from core.data.stats import prepare_batch
    from core.precision import DynamicScaleConfig
    from core.training import sharding
    from core.training import step as training_step
    from core.training.state import create_train_state

    policy = _policy(compute_dtype, dropout_rate, dropout_bits)
    optimizer, schedule = _optimizer(), schedules.constant(LEARNING_RATE)
    batch = _batch(BATCH)
    initialize = jax.jit(
        lambda key: create_train_state(
            policy, optimizer, key, prepare_batch(batch, {}), ema=False, dynamic_loss_scale=False
        )
    )
    state = {"value": initialize(jax.random.key(0))}
    rng = jax.random.key(1)
    mesh = sharding.data_parallel_mesh(jax.devices()[:1])
    train = training_step.jit_train_step(policy, optimizer, schedule, {}, mesh)
    compile_seconds, compiled = _seconds(lambda: train.lower(state["value"], batch, rng).compile())
    step = functools.partial(
        training_step.train_step,
        policy=policy,
        optimizer=optimizer,
        schedule=schedule,
        normalizers={},
        ema_decay=0.0,
        loss_scale_config=DynamicScaleConfig(),
    )
    flops = tracer.count_ops(step, state["value"], batch, rng).matmul_flops

    def run():
        state["value"], metrics = compiled(state["value"], batch, rng)
        jax.block_until_ready(metrics)

    run()  # warm-up
    return OurCase(run, {"compile_seconds": compile_seconds, "matmul_flops": flops})


def inference_case(compute_dtype: str) -> OurCase:
    """Our jitted predict_chunk at batch 1."""
    import jax

    from core.data.stats import prepare_batch

    policy = _policy(compute_dtype)
    observation = {
        key: value
        for key, value in prepare_batch(_batch(1), {}).items()
        if key.startswith("observation.")
    }
    variables = jax.jit(policy.init)(jax.random.key(0), observation)
    rng = jax.random.key(1)
    compile_seconds, compiled = _seconds(
        lambda: jax.jit(policy.predict_chunk).lower(variables, observation, rng).compile()
    )

    def run():
        compiled(variables, observation, rng).block_until_ready()

    run()  # warm-up
    return OurCase(run, {"compile_seconds": compile_seconds})


def matmul_peak_cases() -> dict[str, OurCase]:
    """One 2048² matmul in float32 and in bfloat16 with float32 accumulation."""
    import jax
    import jax.numpy as jnp

    size = PEAK_MATRIX_SIZE
    cases = {}
    for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
        matrix = jax.random.normal(jax.random.key(0), (size, size)).astype(dtype)
        multiply = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))

        def run(multiply=multiply, matrix=matrix):
            multiply(matrix, matrix).block_until_ready()

        run()  # warm-up
        cases[f"matmul_peak/{name}"] = OurCase(run, {"matmul_flops": 2 * size**3})
    return cases


def lerobot_cases(threads: int | None) -> dict[str, Callable[[], None]]:
    """LeRobot's ACTPolicy: a train step at batch 8 and predict_action_chunk at batch 1."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from experiments.parity.common import import_torchvision

    import_torchvision()
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    config = ACTConfig(
        input_features={
            "observation.state": PolicyFeature(FeatureType.STATE, (STATE_DIM,)),
            CAMERA: PolicyFeature(FeatureType.VISUAL, (3, IMAGE_SIZE, IMAGE_SIZE)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        pretrained_backbone_weights=None,
        chunk_size=CHUNK,
        n_action_steps=CHUNK,
    )
    policy = ACTPolicy(config)
    optimizer = torch.optim.AdamW(
        policy.get_optim_params(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY
    )
    batch = {}
    for key, value in _batch(BATCH).items():
        tensor = torch.from_numpy(value)
        if key == CAMERA:
            tensor = tensor[:, 0].permute(0, 3, 1, 2).float() / 255.0
        elif key.startswith("observation."):
            tensor = tensor[:, 0]
        batch[key] = tensor
    observation = {key: batch[key][:1] for key in ("observation.state", CAMERA)}

    def train_step():
        policy.train()
        loss, _ = policy.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), GRAD_CLIP_NORM)
        optimizer.step()

    def inference():
        with torch.no_grad():
            policy.predict_action_chunk(observation)

    train_step(), inference()  # warm-up
    return {"train_step": train_step, "inference": inference}


def serve_lerobot(threads: int | None) -> None:
    """The worker: reads a task name per line from stdin, runs it once, prints its timing."""
    cases = lerobot_cases(threads)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(timed(cases[line.strip()])), flush=True)


class LeRobotWorker:
    """LeRobot in a subprocess of another interpreter, timed one call at a time."""

    def __init__(self, python: str, threads: int | None):
        command = [python, "-m", "experiments.benchmarks.act", "--lerobot-worker"]
        command += ["--threads", str(threads)] if threads else []
        environment = {**os.environ, "PYTHONPATH": str(Path.cwd())}
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=environment,
        )
        self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the LeRobot worker exited with code {self.process.wait()}")
        return json.loads(line)

    def time(self, task: str) -> dict[str, float]:
        self.process.stdin.write(task + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def paired_rounds(
    ours: dict[str, OurCase], lerobot: LeRobotWorker | None, rounds: int
) -> dict[str, list[dict[str, float]]]:
    """Each round times every case once, LeRobot's task right after ours."""
    samples = {name: [] for name in ours}
    for _ in range(rounds):
        for task in TASKS:
            for name, case in ours.items():
                if name.startswith(task):
                    samples[name].append(timed(case.run))
            if lerobot is not None and task in LEROBOT_TASKS:
                samples.setdefault(f"{task}/lerobot", []).append(lerobot.time(task))
    return samples


def peak_flops(samples: dict) -> dict[str, float]:
    """This CPU's matmul FLOP/s in float32 and bfloat16: the fastest of the rounds."""
    size = PEAK_MATRIX_SIZE
    return {
        name.split("/")[1]: 2 * size**3 / (min(timing["wall"] for timing in timings) / 1000)
        for name, timings in samples.items()
        if name.startswith("matmul_peak/")
    }


def summary(samples: dict, ours: dict[str, OurCase]) -> dict:
    """Per case: wall median and minimum (ms), our compile time, the median per-round ratio
    LeRobot / ours, and for train steps the throughput and its fraction of the peak."""
    peaks = peak_flops(samples)
    rows = {}
    for name, timings in samples.items():
        if name.startswith("matmul_peak/"):
            continue
        wall = [timing["wall"] for timing in timings]
        row = {"median_ms": statistics.median(wall), "min_ms": min(wall)}
        task = name.split("/")[0]
        lerobot = samples.get(f"{task}/lerobot")
        if name in ours:
            row |= ours[name].stats
            if lerobot:
                ratios = [a["wall"] / b["wall"] for a, b in zip(lerobot, timings, strict=True)]
                row["lerobot_over_ours"] = statistics.median(ratios)
        if name.startswith("train_step/ours"):
            throughput = row["matmul_flops"] / (row["min_ms"] / 1000)
            peak = peaks["bfloat16" if "bfloat16" in name else "float32"]
            row |= {"gflops_per_second": throughput / 1e9, "fraction_of_peak": throughput / peak}
        rows[name] = row
    return rows


def table(rows: dict) -> list[str]:
    lines = [
        f"{'case':<34}{'median ms':>11}{'min ms':>9}{'LeRobot/ours':>14}{'compile s':>11}"
        f"{'GFLOP/s':>9}{'of peak':>9}"
    ]
    for name, row in rows.items():
        cells = [f"{name:<34}{row['median_ms']:>11.1f}{row['min_ms']:>9.1f}"]
        ratio = row.get("lerobot_over_ours")
        cells.append(f"{ratio:>14.2f}" if ratio else " " * 14)
        compile_seconds = row.get("compile_seconds")
        cells.append(f"{compile_seconds:>11.1f}" if compile_seconds else " " * 11)
        if "gflops_per_second" in row:
            cells.append(f"{row['gflops_per_second']:>9.0f}{row['fraction_of_peak']:>9.0%}")
        lines.append("".join(cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, choices=[1], help="single-threaded runs")
    parser.add_argument("--torch-python", help="an interpreter with torch and lerobot")
    parser.add_argument("--lerobot-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lerobot_worker:
        serve_lerobot(args.threads)
        return
    if args.threads:  # before jax is imported
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_XLA_FLAGS}"
    load_before = os.getloadavg()
    ours = {f"train_step/ours_{name}": train_step_case(*v) for name, v in TRAIN_VARIANTS.items()}
    ours |= {f"inference/ours_{dtype}": inference_case(dtype) for dtype in INFERENCE_VARIANTS}
    ours |= matmul_peak_cases()
    lerobot = LeRobotWorker(args.torch_python, args.threads) if args.torch_python else None
    samples = paired_rounds(ours, lerobot, args.rounds)
    if lerobot is not None:
        lerobot.close()
    peaks = peak_flops(samples)
    rows = summary(samples, ours)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": {
            "batch": BATCH,
            "state_dim": STATE_DIM,
            "action_dim": ACTION_DIM,
            "image_size": IMAGE_SIZE,
            "chunk_size": CHUNK,
            "rounds": args.rounds,
            "threads": args.threads or "library default",
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "matmul_peak_flops": peaks,
        "summary": rows,
        "samples_ms": samples,
    }
    RESULTS.write_text(json.dumps(payload, indent=2))
    print("\n".join(table(rows)))
    peak_text = ", ".join(f"{name} {flops / 1e9:.0f}" for name, flops in peaks.items())
    print(f"matmul peak GFLOP/s: {peak_text}")
    print(f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; written to {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())

"""Forward time of the ResNet-18 backbone and of Diffusion Policy's conditional residual blocks.

    python -m experiments.benchmarks.vision_blocks [--runs 20] [--threads 1]
        [--torch-python /work/parity-venv/bin/python]

ResNet-18 to layer4 (`core.resnet.ResNet`) with frozen batch norm (ACT) at 84×84 and 224×224
and with group norm (Diffusion Policy) at 84×84, batch 1 and 8; and two
`ConditionalResidualBlock1d`s at LeRobot's default Diffusion Policy sizes (kernel 5, 8 groups,
FiLM with scale, condition 260 = 128 step + 2·(64 + 2) observation features, batch 8): the
U-Net's first block (2 -> 512 channels, horizon 16) and a middle one (2048 -> 2048, horizon 4).
Ours run jitted in float32, after a warm-up call, the median and minimum of `--runs` timed
calls. With
--torch-python (an interpreter with torch, torchvision and lerobot, e.g. the parity venv) the
same blocks run in PyTorch under `torch.no_grad()` in a subprocess (torchvision's resnet18 with
FrozenBatchNorm2d or GroupNorm(C // 16), LeRobot's DiffusionConditionalResidualBlock1d), and
the table gives ours / torch. `--threads 1` runs both single-threaded (XLA's and torch's
intra-op pools): on a shared machine torch's spinning OpenMP threads slow it down 10-30× when
the cores are oversubscribed, which dwarfs the difference between implementations. Results go to
results/benchmarks/vision_blocks.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path("results/benchmarks/vision_blocks.json")
RESNET_CASES = [  # (norm, image size, batch)
    ("frozen_batch_norm", 84, 1),
    ("frozen_batch_norm", 84, 8),
    ("frozen_batch_norm", 224, 1),
    ("frozen_batch_norm", 224, 8),
    ("group_norm", 84, 1),
    ("group_norm", 84, 8),
]
RESIDUAL_CASES = {"first": (2, 512, 16), "middle": (2048, 2048, 4)}  # (C_in, C_out, horizon)
RESIDUAL_BATCH, CONDITION_DIM, KERNEL_SIZE, NUM_GROUPS = 8, 260, 5, 8
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def milliseconds(run, runs: int) -> dict[str, float]:
    """Median and minimum wall time of `run()` over `runs` calls after a warm-up call, in ms.

    On a shared machine the minimum is the least disturbed figure.
    """
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(1000.0 * (time.perf_counter() - start))
    return {"median": statistics.median(times), "min": min(times)}


def resnet_case_name(norm: str, size: int, batch: int) -> str:
    return f"resnet18_{norm}/{size}px_batch{batch}"


def residual_case_name(name: str) -> str:
    c_in, c_out, horizon = RESIDUAL_CASES[name]
    return f"residual_block_{name}/{c_in}to{c_out}_T{horizon}_batch{RESIDUAL_BATCH}"


def jax_timings(runs: int) -> dict[str, dict[str, float]]:
    """Our ResNet-18 and residual blocks, jitted, float32."""
    import jax

    from core import conv1d, resnet

    key = jax.random.key(0)
    timings = {}
    for norm, size, batch in RESNET_CASES:
        model = resnet.ResNet(norm)
        images = jax.random.normal(key, (batch, size, size, 3))
        variables = jax.jit(model.init)(key, images)
        forward = jax.jit(model.apply)
        timings[f"{resnet_case_name(norm, size, batch)}/ours"] = milliseconds(
            lambda f=forward, v=variables, x=images: f(v, x).block_until_ready(), runs
        )
    for name, (c_in, c_out, horizon) in RESIDUAL_CASES.items():
        block = conv1d.ConditionalResidualBlock1d(c_out, KERNEL_SIZE, NUM_GROUPS, True)
        x = jax.random.normal(key, (RESIDUAL_BATCH, horizon, c_in))
        condition = jax.random.normal(key, (RESIDUAL_BATCH, CONDITION_DIM))
        variables = jax.jit(block.init)(key, x, condition)
        forward = jax.jit(block.apply)
        timings[f"{residual_case_name(name)}/ours"] = milliseconds(
            lambda f=forward, v=variables, x=x, c=condition: f(v, x, c).block_until_ready(), runs
        )
    return timings


def torch_timings(runs: int, threads: int | None) -> dict[str, dict[str, float]]:
    """torchvision's resnet18 (truncated at layer4) and LeRobot's residual blocks."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from experiments.parity.common import import_torchvision

    torchvision = import_torchvision()
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionConditionalResidualBlock1d
    from torchvision.ops.misc import FrozenBatchNorm2d

    norm_layers = {
        "frozen_batch_norm": FrozenBatchNorm2d,
        "group_norm": lambda channels: torch.nn.GroupNorm(channels // 16, channels),
    }
    timings = {}
    with torch.no_grad():
        for norm, size, batch in RESNET_CASES:
            model = torchvision.models.resnet18(weights=None, norm_layer=norm_layers[norm])
            backbone = torch.nn.Sequential(*list(model.children())[:-2]).eval()
            images = torch.randn(batch, 3, size, size)
            timings[f"{resnet_case_name(norm, size, batch)}/torch"] = milliseconds(
                lambda b=backbone, x=images: b(x), runs
            )
        for name, (c_in, c_out, horizon) in RESIDUAL_CASES.items():
            block = DiffusionConditionalResidualBlock1d(
                c_in, c_out, CONDITION_DIM, KERNEL_SIZE, NUM_GROUPS, True
            ).eval()
            x = torch.randn(RESIDUAL_BATCH, c_in, horizon)
            condition = torch.randn(RESIDUAL_BATCH, CONDITION_DIM)
            timings[f"{residual_case_name(name)}/torch"] = milliseconds(
                lambda b=block, x=x, c=condition: b(x, c), runs
            )
    return timings


def run_torch_subprocess(
    python: str, runs: int, threads: int | None
) -> dict[str, dict[str, float]]:
    command = [python, "-m", "experiments.benchmarks.vision_blocks", "--torch-only"]
    command += ["--runs", str(runs)] + (["--threads", str(threads)] if threads else [])
    environment = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(timings: dict[str, dict[str, float]]) -> list[str]:
    cases = list(dict.fromkeys(name.rsplit("/", 1)[0] for name in timings))
    lines = [
        f"{'block':<45}{'ours median':>12}{'min':>8}{'torch median':>13}{'min':>8}"
        f"{'ours/torch median':>18}{'min':>6}"
    ]
    for case in cases:
        ours, theirs = timings[f"{case}/ours"], timings.get(f"{case}/torch")
        line = f"{case:<45}{ours['median']:>12.2f}{ours['min']:>8.2f}"
        if theirs:
            line += f"{theirs['median']:>13.2f}{theirs['min']:>8.2f}"
            line += f"{ours['median'] / theirs['median']:>18.2f}{ours['min'] / theirs['min']:>6.2f}"
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, choices=[1], help="single-threaded runs")
    parser.add_argument("--torch-python", help="an interpreter with torch and lerobot")
    parser.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_only:
        print(json.dumps(torch_timings(args.runs, args.threads)))
        return
    if args.threads:  # before jax is imported
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_XLA_FLAGS}"
    timings = jax_timings(args.runs)
    if args.torch_python:
        timings |= run_torch_subprocess(args.torch_python, args.runs, args.threads)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": {
            "resnet_cases": RESNET_CASES,
            "residual_cases": RESIDUAL_CASES,
            "residual_batch": RESIDUAL_BATCH,
            "condition_dim": CONDITION_DIM,
            "runs": args.runs,
            "threads": args.threads or "library default",
        },
        "load_average": os.getloadavg(),
        "milliseconds": timings,
    }
    RESULTS.write_text(json.dumps(payload, indent=2))
    print("\n".join(table(timings)))
    print(f"load average {os.getloadavg()[0]:.1f}; written to {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())

"""Data pipeline throughput: writing episodes, opening datasets, and the chunk sampler's batches.

    python -m experiments.benchmarks.data_pipeline [--tasks obstacle pick_place reach_target]
        [--episodes 200] [--batches 100] [--lerobot-python /work/parity-venv/bin/python]

For each task it uses the demonstrations in data/<task> (written first by
`experiments.demos.generate_demos` if missing, and that time is reported) and measures, on this
machine:
  - writer: frames/s re-writing every episode with `DatasetWriter` (PNG encoding included);
  - open: seconds for `LeRobotReader` to open and verify the dataset;
  - sampler: batches/s of `ChunkSampler` (batch 64) for an ACT-like window (To=1, k=16) and a
    Diffusion-Policy-like one (To=2, k=16): the first epoch (every frame decoded once), a warm
    epoch (decoded frames cached), prefetch 0/1/2 threads, state only (no images), and
    streaming through a 16 MB cache (every frame decoded again, as for a dataset that does not
    fit in memory);
  - with --lerobot-python (an interpreter with lerobot, e.g. the parity venv): LeRobot's own
    `LeRobotDataset.__getitem__` with the same delta timestamps on the same dataset, and the
    ratio of our samples/s to LeRobot's.
Results go to results/benchmarks/data_pipeline.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from core.data.lerobot import LeRobotReader
from core.data.sampler import ChunkSampler
from core.data.writer import DatasetWriter
from experiments.benchmarks.common import machine_info, write_results

RESULTS = Path("results/benchmarks/data_pipeline.json")
BATCH_SIZE = 64
WINDOWS = {"act": (1, 16), "diffusion": (2, 16)}  # (observation_horizon To, action_horizon k)
STREAMING_CACHE_MB = 16.0


def ensure_demos(task: str, root: Path, episodes: int) -> float | None:
    """Writes `episodes` expert demonstrations of `task` to `root` unless it exists.

    Returns the generation time in seconds, or None if the dataset was already there.
    """
    if root.exists():
        return None
    from experiments.demos import generate_demos  # the task suite: only when demos are missing

    return generate_demos(task, episodes, root, progress=False).seconds


def writer_frames_per_second(reader: LeRobotReader) -> float:
    """Frames/s of `DatasetWriter` re-writing every episode of `reader` (PNG encoding included)."""
    episodes = [reader.episode(e) for e in range(reader.num_episodes)]
    with tempfile.TemporaryDirectory(prefix="data_pipeline_") as scratch:
        start = time.perf_counter()
        with DatasetWriter(
            Path(scratch) / "rewrite", fps=reader.fps, features=reader.features
        ) as writer:
            for index, episode in enumerate(episodes):
                writer.add_episode(episode, task=reader.instruction(index))
        return reader.num_frames / (time.perf_counter() - start)


def batches_per_second(sampler: ChunkSampler, num_batches: int, *, prefetch: int = 0) -> float:
    """Batches/s of the first `num_batches` batches of `sampler`."""
    iterator = sampler.iterator(prefetch=prefetch)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    iterator.close()
    return num_batches / elapsed


def make_sampler(reader: LeRobotReader, window: tuple[int, int], **options) -> ChunkSampler:
    """A batch-64 sampler over the training split with window (To, k)."""
    observation_horizon, action_horizon = window
    return ChunkSampler(
        reader,
        reader.splits["train"],
        batch_size=BATCH_SIZE,
        observation_horizon=observation_horizon,
        action_horizon=action_horizon,
        **options,
    )


def sampler_figures(root: Path, num_batches: int) -> dict:
    """The sampler's throughput in batches/s for each window and mode (see the module doc)."""
    figures = {}
    for window_name, window in WINDOWS.items():
        with LeRobotReader(root) as reader:
            sampler = make_sampler(reader, window)
            epoch = sampler.batches_per_epoch
            first_epoch = batches_per_second(sampler, epoch)
            warm = {p: batches_per_second(sampler, num_batches, prefetch=p) for p in (0, 1, 2)}
            state_sampler = make_sampler(reader, window, observation_keys=["observation.state"])
            state_only = batches_per_second(state_sampler, num_batches)
        with LeRobotReader(root, cache_mb=STREAMING_CACHE_MB) as streaming_reader:
            streaming = batches_per_second(make_sampler(streaming_reader, window), num_batches)
        figures[window_name] = {
            "observation_horizon": window[0],
            "action_horizon": window[1],
            "batches_per_epoch": epoch,
            "first_epoch": first_epoch,
            "warm": warm[0],
            "warm_prefetch_1": warm[1],
            "warm_prefetch_2": warm[2],
            "state_only": state_only,
            f"streaming_{STREAMING_CACHE_MB:g}mb_cache": streaming,
        }
    return figures


LEROBOT_WORKER = """
import json, os, sys, tempfile, time
import numpy as np
os.environ["HF_HOME"] = tempfile.mkdtemp()
from experiments.parity.common import import_torchvision
import_torchvision()
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root, observation_horizon, action_horizon, num_samples = sys.argv[1:5]
observation_horizon, action_horizon = int(observation_horizon), int(action_horizon)
info = json.load(open(os.path.join(root, "meta", "info.json")))
fps = info["fps"]
past = [-i / fps for i in reversed(range(observation_horizon))]
deltas = {k: past for k in info["features"] if k.startswith("observation.")}
deltas["action"] = [j / fps for j in range(action_horizon)]
start = time.perf_counter()
dataset = LeRobotDataset("local/benchmark", root=root, delta_timestamps=deltas)
load_seconds = time.perf_counter() - start
indices = np.random.default_rng(0).integers(0, len(dataset), int(num_samples))
dataset[int(indices[0])]
start = time.perf_counter()
for index in indices:
    dataset[int(index)]
rate = len(indices) / (time.perf_counter() - start)
print(json.dumps({"samples_per_second": rate, "load_seconds": load_seconds}))
"""


def lerobot_figures(python: str, root: Path, num_samples: int) -> dict:
    """LeRobot's `__getitem__` samples/s for each window, run by the interpreter `python`."""
    figures = {}
    environment = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    for window_name, (observation_horizon, action_horizon) in WINDOWS.items():
        arguments = [str(root), str(observation_horizon), str(action_horizon), str(num_samples)]
        process = subprocess.run(
            [python, "-c", LEROBOT_WORKER, *arguments],
            capture_output=True,
            text=True,
            env=environment,
            check=True,
        )
        figures[window_name] = json.loads(process.stdout.strip().splitlines()[-1])
    return figures


def benchmark_task(task: str, args: argparse.Namespace) -> dict:
    root = args.data_root / task
    generation_seconds = ensure_demos(task, root, args.episodes)
    start = time.perf_counter()
    with LeRobotReader(root) as reader:
        open_seconds = time.perf_counter() - start
        result = {
            "dataset": str(root),
            "episodes": reader.num_episodes,
            "frames": reader.num_frames,
            "cameras": {key: reader.features[key]["shape"] for key in reader.camera_keys},
            "megabytes_on_disk": sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
            / 2**20,
            "demo_generation_seconds": generation_seconds,
            "open_seconds": open_seconds,
            "writer_frames_per_second": writer_frames_per_second(reader),
        }
    result["sampler_batches_per_second"] = sampler_figures(root, args.batches)
    if args.lerobot_python:
        lerobot = lerobot_figures(args.lerobot_python, root, args.lerobot_samples)
        for window_name, figures in lerobot.items():
            ours = result["sampler_batches_per_second"][window_name]
            figures["ours_first_epoch_over_lerobot"] = (
                ours["first_epoch"] * BATCH_SIZE / figures["samples_per_second"]
            )
            figures["ours_warm_over_lerobot"] = (
                ours["warm"] * BATCH_SIZE / figures["samples_per_second"]
            )
        result["lerobot"] = lerobot
    return result


def print_table(results: dict) -> None:
    for task, result in results["tasks"].items():
        print(
            f"\n{task}: {result['episodes']} episodes, {result['frames']} frames, cameras "
            f"{result['cameras']}, {result['megabytes_on_disk']:.1f} MB; open "
            f"{result['open_seconds'] * 1e3:.0f} ms; writer "
            f"{result['writer_frames_per_second']:.0f} frames/s"
        )
        if result["demo_generation_seconds"] is not None:
            print(
                f"  demo generation (experiments.demos): {result['demo_generation_seconds']:.1f} s"
            )
        for window_name, figures in result["sampler_batches_per_second"].items():
            rates = ", ".join(
                f"{name} {value:.0f}"
                for name, value in figures.items()
                if name not in ("observation_horizon", "action_horizon", "batches_per_epoch")
            )
            print(f"  {window_name} (batch {BATCH_SIZE}) batches/s: {rates}")
            if "lerobot" in result:
                lerobot = result["lerobot"][window_name]
                print(
                    f"    LeRobot __getitem__ {lerobot['samples_per_second']:.0f} samples/s; "
                    f"ours/LeRobot first epoch {lerobot['ours_first_epoch_over_lerobot']:.1f}x, "
                    f"warm {lerobot['ours_warm_over_lerobot']:.1f}x"
                )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.benchmarks.data_pipeline", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tasks", nargs="+", default=["obstacle", "pick_place", "reach_target"])
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--episodes", type=int, default=200, help="demos to write if missing")
    parser.add_argument("--batches", type=int, default=100, help="batches per warm measurement")
    parser.add_argument("--lerobot-python", help="an interpreter with lerobot installed")
    parser.add_argument("--lerobot-samples", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.batches < 1 or args.episodes < 1 or args.lerobot_samples < 1:
        parser.error("--batches, --episodes and --lerobot-samples must be positive")
    tasks = {task: benchmark_task(task, args) for task in args.tasks}
    results = {
        "machine": machine_info(),
        "batch_size": BATCH_SIZE,
        "tasks": tasks,
    }
    print_table(results)
    write_results(results, args.out)
    return results


if __name__ == "__main__":
    main()

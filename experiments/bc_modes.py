"""Book 16.3.3 and 16.8: what behavioral cloning does with bimodal demonstrations, measured.

    python -m experiments.bc_modes [--episodes 200] [--runs runs/bc_modes] [--out results/bc_modes]

On `obstacle` the expert passes the obstacle on the left or on the right with probability 1/2
(eq. 16.38 with M = 2). The book predicts that regression to the mean (eq. 16.39) steers between
the modes, into the obstacle, and that a diagonal Gaussian (eq. 16.62) cannot represent two modes
either. This trains the four baselines of experiments/configs (an MLP on the state or a small CNN
on the top camera, with an MSE or a Gaussian NLL head) with `experiments.train`, evaluates each
in closed loop on `--episodes` episodes (seeds disjoint from the demonstrations'), evaluates the
Gaussian heads a second time sampling a ~ N(μ, σ²) instead of executing μ, and runs one control:
the MLP with the MSE head trained only on the demonstrations that pass on the left (one mode),
which separates what multimodality costs from what BC loses otherwise (distribution shift,
compounding errors, 16.8.1).

Writes to --out: summary.md (the table for the README), summary.json, and trajectories.png (the
closed-loop trajectories of every run over the scene, coloured left / right / collided). Each
run's own workdir (--runs/<name>) keeps its checkpoints, eval/eval.json, video and plot; a
finished run is not retrained when the command is repeated. Runtime on the shared 2-core CPU:
~3 min (~2 min of CPU), the two CNN runs most of it. Results: see the configs' docstrings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from core import evaluation
from core.data.lerobot import LeRobotReader
from core.data.stats import make_normalizers
from core.data.writer import DatasetWriter
from core.training import checkpoint
from core.training.config import load_config_module
from experiments import train
from experiments.policies import make_policy

CONFIG_DIR = Path(__file__).parent / "configs"
SAMPLED_EVAL_DIR = "eval_sampled"
CONTROL_MODE = 0
"""The mode the unimodal control keeps: 0, passing on the left (`ObstacleExpert.mode_names`)."""
MODE_FEATURE = "expert.mode"


@dataclasses.dataclass(frozen=True)
class Run:
    """One measured run: its name, config module, and whether it trains on one mode only."""

    name: str
    config_module: str
    one_mode_only: bool = False


RUNS = (
    Run("bc_mlp_mse", "bc_mlp_mse_obstacle"),
    Run("bc_mlp_nll", "bc_mlp_nll_obstacle"),
    Run("bc_cnn_mse", "bc_cnn_mse_obstacle"),
    Run("bc_cnn_nll", "bc_cnn_nll_obstacle"),
    Run("bc_mlp_mse_left_demos_only", "bc_mlp_mse_obstacle", one_mode_only=True),
)


def write_mode_subset(source: str | Path, mode: int, out: str | Path, robot_type: str) -> Path:
    """Copies the episodes of `source` whose expert mode is `mode` to a new dataset at `out`.

    The copy has its own train/validation split and training statistics (the writer's); its
    episodes keep their "expert.seed", so evaluation seeds stay disjoint from them.

    Raises:
      ValueError if `source` does not record expert modes or has no episode of `mode`.
    """
    with LeRobotReader(source) as reader:
        if MODE_FEATURE not in reader.features:
            raise ValueError(
                f"{source} records no {MODE_FEATURE!r}; it has {list(reader.features)}"
            )
        first_modes = reader.read(MODE_FEATURE, reader.episode_starts).reshape(-1)
        episodes = np.flatnonzero(first_modes == mode)
        if episodes.size == 0:
            raise ValueError(f"{source} has no episode of expert mode {mode}")
        with DatasetWriter(
            out, fps=reader.fps, features=reader.features, robot_type=robot_type
        ) as writer:
            for episode in episodes:
                rows = reader.episode_rows(episode)
                arrays = {key: reader.read(key, rows) for key in reader.features}
                writer.add_episode(arrays, task=reader.instruction(episode))
    return Path(out)


def run_config(run: Run, episodes: int) -> ml_collections.ConfigDict:
    """The run's config with `episodes` evaluation episodes (the control's data not yet set)."""
    config = load_config_module(CONFIG_DIR / f"{run.config_module}.py")
    config.eval.episodes = episodes
    return config


def one_mode_dataset(config: ml_collections.ConfigDict) -> str:
    """The path of the control's dataset, the CONTROL_MODE episodes of config.data.path; it is
    written first if missing (and the full dataset generated first if that is missing)."""
    path = f"{config.data.path}_mode{CONTROL_MODE}"
    if not Path(path).exists():
        train.open_dataset(config).reader.close()
        robot_type = train.make_task(config).env.spec.robot_type
        write_mode_subset(config.data.path, CONTROL_MODE, path, robot_type)
        print(f"wrote the one-mode control dataset {path}")
    return path


def evaluate_sampling(workdir: Path, label: str) -> dict:
    """Closed-loop evaluation of a Gaussian-head run's best checkpoint that samples its actions
    a ~ N(μ, σ²) (`sample_actions`) instead of executing μ; results in workdir/eval_sampled."""
    restored = checkpoint.restore(workdir, "best")
    config = restored.config
    with LeRobotReader(config.data.path) as reader:
        sampling_config = {**config.policy.to_dict(), "sample_actions": True}
        policy = make_policy(sampling_config, reader.features)
        seeds = train.demonstration_seeds(reader)
    return evaluation.evaluate(
        policy,
        restored.variables,
        make_normalizers(restored.normalizer_stats, dict(config.data.normalization)),
        train.make_task(config),
        config.eval,
        jax.random.key(config.eval.seed),
        workdir / SAMPLED_EVAL_DIR,
        training_seeds=seeds,
        policy_label=label,
    )


def table_row(name: str, actions: str, results: dict, training: dict) -> dict:
    """The summary of one evaluation (success with its interval, mode shares, mean length) and
    of its run's training (compile seconds, steps per second)."""
    return {
        "run": name,
        "actions": actions,
        "success_rate": results["success_rate"],
        "success_ci95": results["success_ci95"],
        "mode_shares": results["mode_shares"],
        "mean_length": results["mean_length"],
        "episodes": results["episodes"],
        "trajectories": results["files"]["trajectories"],
        "train_compile_seconds": training["compile_seconds"],
        "train_steps_per_second": training["steps_per_second"],
    }


def _rate_text(steps_per_second: float | None) -> str:
    """Steps per second, or why there is no figure (the run was already trained)."""
    return "(trained before)" if steps_per_second is None else f"{steps_per_second:.0f}"


def markdown_table(rows: Sequence[dict]) -> str:
    """The rows as a Markdown table (percentages), as the README shows them."""
    mode_names = list(rows[0]["mode_shares"])
    header = ["run", "actions", "success [95% CI]", *mode_names, "mean length", "train steps/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        low, high = row["success_ci95"]
        cells = [
            row["run"],
            row["actions"],
            f"{row['success_rate']:.1%} [{low:.1%}, {high:.1%}]",
            *(f"{row['mode_shares'][name]:.1%}" for name in mode_names),
            f"{row['mean_length']:.1f}",
            _rate_text(row["train_steps_per_second"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def trajectory_figure(rows: Sequence[dict], path: Path, columns: int = 4) -> Path:
    """One figure of every run's closed-loop trajectories, next to the expert's.

    Cuts the evaluator's trajectory plots (two equal panels, expert | policy, over the same
    seeds) into halves: the expert's panel once, then each run's policy panel, titled by run.
    """
    images = [np.asarray(Image.open(row["trajectories"])) for row in rows]
    half = images[0].shape[1] // 2
    tiles = [("expert demonstrator", images[0][:, :half])]
    tiles += [
        (f"{row['run']} ({row['actions']})", image[:, half:])
        for row, image in zip(rows, images, strict=True)
    ]
    grid_rows = -(-len(tiles) // columns)
    figure = Figure(figsize=(3.6 * columns, 4.1 * grid_rows), layout="constrained")
    axes = figure.subplots(grid_rows, columns, squeeze=False).ravel()
    for axis in axes:
        axis.axis("off")
    for axis, (title, tile) in zip(axes, tiles, strict=False):
        axis.imshow(tile, interpolation="antialiased")
        axis.set_title(title, fontsize=10)
    figure.savefig(path, dpi=90)
    return path


def measure(episodes: int, runs_dir: Path, out_dir: Path) -> list[dict]:
    """Trains and evaluates every run of RUNS (module docstring); writes the summary files."""
    rows = []
    for run in RUNS:
        config = run_config(run, episodes)
        if run.one_mode_only:
            config.data.path = one_mode_dataset(config)
            config.train.validation_batches = 1  # ~11 validation episodes: one batch of 256
        print(f"\n== {run.name}: {run.config_module} on {config.data.path}")
        workdir = runs_dir / run.name
        outcome = train.train_and_evaluate(config, workdir)
        rows.append(table_row(run.name, "mean", outcome["eval"], outcome["train"]))
        if config.policy.head == "gaussian_nll":
            sampled = evaluate_sampling(workdir, f"{run.name} (sampled)")
            print(evaluation.summary_text(sampled))
            rows.append(table_row(run.name, "sampled", sampled, outcome["train"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown_table(rows)
    (out_dir / "summary.md").write_text(table)
    plot = trajectory_figure(rows, out_dir / "trajectories.png")
    print(f"\n{table}\nsummary: {out_dir / 'summary.md'}\ntrajectories: {plot}")
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bc_modes", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes per run")
    parser.add_argument("--runs", type=Path, default=Path("runs/bc_modes"), help="run workdirs")
    parser.add_argument("--out", type=Path, default=Path("results/bc_modes"), help="summary dir")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    return measure(args.episodes, args.runs, args.out)


if __name__ == "__main__":
    main()

"""How ACT executes its chunks: one trained run evaluated under every inference latent and
execution controller, as a markdown table (book 17.5.1, 17.7, 17.8).

    python -m experiments.act_results --workdir runs/act_obstacle_state [--episodes 200]

Book 17.5.1 (eq. 17.34): at inference z = 0 (the prior's mean, the original's choice) or
z ~ N(0, I); 17.7: plain chunked execution, querying every n steps; 17.8: temporal ensembling,
the book's convention (the most recent chunk weighted highest) and the original ACT's (the
oldest weighted highest, exp(-m i), m = 0.01; over a chunk of k = 10 the weights span only
e^(-0.09) to 1, so the two conventions nearly coincide). On a bimodal task the question is
which modes each combination uses, and whether fresh latents under ensembling mix the modes
mid-episode (collisions, shorter episodes). Writes results/act/<run>/summary.md and
summary.json, and each evaluation's eval.json, video and plot in
results/act/<run>/<latent>_<controller>/.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
from absl import app, flags, logging

from core import evaluation
from core.data.stats import make_normalizers
from core.training import checkpoint
from experiments import policies
from experiments.evaluate import eval_config_with, training_seeds
from experiments.train import make_task

RESULTS_DIR = Path("results/act")
LATENTS = ("zero", "prior_sample")
ENSEMBLE_DECAY = 0.01
CONTROLLERS = ("chunked_1", "chunked_half_k", "chunked_k", "ensemble_book", "ensemble_act")


def controller_settings(chunk_size: int) -> dict[str, dict]:
    """Label -> controller fields (`core.controllers`) for a policy with chunk size k: chunked
    execution querying every 1, k/2 and k steps (book 17.7), and temporal ensembling with
    m = 0.01 in the book's convention (newest weighted most) and the original's (oldest)."""
    return {
        "chunked_1": {"name": "chunked", "query_every": 1},
        "chunked_half_k": {"name": "chunked", "query_every": max(1, chunk_size // 2)},
        "chunked_k": {"name": "chunked", "query_every": chunk_size},
        "ensemble_book": {
            "name": "temporal_ensembling",
            "decay": ENSEMBLE_DECAY,
            "convention": "book",
        },
        "ensemble_act": {
            "name": "temporal_ensembling",
            "decay": ENSEMBLE_DECAY,
            "convention": "act",
        },
    }


def evaluate_grid(
    workdir: str | Path,
    out_dir: str | Path,
    *,
    episodes: int,
    latents: Sequence[str] = LATENTS,
    controllers: Sequence[str] = CONTROLLERS,
) -> list[dict]:
    """Evaluates the best checkpoint of the ACT run in `workdir` under each latent (LATENTS)
    and controller (CONTROLLERS); one row per pair: {latent, controller, the controller's
    fields, results (`core.evaluation.evaluate`'s)}."""
    restored = checkpoint.restore(workdir, "best")
    config = restored.config
    task = make_task(config)
    normalizers = make_normalizers(restored.normalizer_stats, dict(config.data.normalization))
    seeds = training_seeds(config)
    rows = []
    for latent in latents:
        policy_config = {**config.policy.to_dict(), "inference_latent": latent}
        policy = policies.make_policy(policy_config, task.env.spec.features())
        for label in controllers:
            settings = controller_settings(policy.action_horizon)[label]
            eval_config = eval_config_with(config.eval, episodes=episodes, controller=settings)
            results = evaluation.evaluate(
                policy,
                restored.variables,
                normalizers,
                task,
                eval_config,
                jax.random.key(eval_config.seed),
                Path(out_dir) / f"{latent}_{label}",
                training_seeds=seeds,
                policy_label=f"ACT z={latent}, {label}",
            )
            rows.append({"latent": latent, "controller": label, **settings, "results": results})
    return rows


def summary_markdown(rows: Sequence[Mapping], run: str) -> str:
    """The table: success with its 95% interval, mode shares and mean length per row."""
    modes = list(rows[0]["results"].get("mode_shares", {}))
    header = ["latent", "controller", "success [95% CI]", *modes, "mean length"]
    lines = [
        f"# ACT execution on {rows[0]['results']['task']} ({run})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        results = row["results"]
        low, high = results["success_ci95"]
        controller = row["controller"]
        if row["name"] == "chunked":
            controller += f" (n = {row['query_every']})"
        else:
            controller += f" (m = {row['decay']})"
        cells = [
            row["latent"],
            controller,
            f"{results['success_rate']:.1%} [{low:.1%}, {high:.1%}]",
        ]
        shares = [f"{results['mode_shares'][mode]:.1%}" for mode in modes]
        lines.append("| " + " | ".join([*cells, *shares, f"{results['mean_length']:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def write_summary(rows: Sequence[Mapping], out_dir: str | Path, run: str) -> Path:
    """Writes summary.md and summary.json in `out_dir`; returns the markdown's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(list(rows), indent=2, default=str) + "\n")
    path = out_dir / "summary.md"
    path.write_text(summary_markdown(rows, run))
    return path


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """The launcher's flags (defined on demand, so importing this module defines none)."""
    flags.DEFINE_string("workdir", None, "ACT run directory (runs/<name>)", flag_values=flag_values)
    flags.DEFINE_integer("episodes", 200, "episodes per evaluation", flag_values=flag_values)
    flags.mark_flag_as_required("workdir", flag_values=flag_values)


def main(argv: Sequence[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    workdir = Path(flags.FLAGS.workdir)
    out_dir = RESULTS_DIR / workdir.name
    rows = evaluate_grid(workdir, out_dir, episodes=flags.FLAGS.episodes)
    path = write_summary(rows, out_dir, workdir.name)
    print(path.read_text() + f"\nwritten to {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)

"""Stand-ins for the training tests: a tiny policy, a tiny dataset and a config over them.

Importable as `tests.core.training.toys` from the tests and from the subprocess workers.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from core.data.writer import DatasetWriter
from core.losses import masked_mean, squared_error
from core.training.config import default_config

STATE_DIM, ACTION_DIM = 4, 2  # shaped like the obstacle task, so its evaluator can run
FEATURES = {
    "observation.state": {
        "dtype": "float32",
        "shape": [STATE_DIM],
        "names": ["x", "y", "vx", "vy"],
    },
    "action": {"dtype": "float32", "shape": [ACTION_DIM], "names": ["vx", "vy"]},
}


@dataclasses.dataclass(frozen=True)
class TanhPolicy:
    """a_chunk = W2 tanh(W1 (s ⊙ scale + noise) + b1) + b2 over the flattened state window.

    Two parameter groups ("encoder", "head") for per-group learning rates, a constant
    collection ("batch_stats": the input scale) that must never change, and Gaussian input
    noise drawn from the loss's key, so the trajectory depends on every key being right.
    """

    observation_horizon: int = 2
    action_horizon: int = 3
    hidden: int = 8
    input_noise: float = 0.1
    observation_keys: tuple[str, ...] = ("observation.state",)

    def init(self, rng, batch):
        inputs = self.observation_horizon * STATE_DIM
        outputs = self.action_horizon * ACTION_DIM
        encoder_rng, head_rng = jax.random.split(rng)
        return {
            "params": {
                "encoder": {
                    "kernel": jax.random.normal(encoder_rng, (inputs, self.hidden)) / inputs**0.5,
                    "bias": jnp.zeros(self.hidden),
                },
                "head": {
                    "kernel": jax.random.normal(head_rng, (self.hidden, outputs))
                    / self.hidden**0.5,
                    "bias": jnp.zeros(outputs),
                },
            },
            "batch_stats": {"input_scale": jnp.full(inputs, 0.5)},
        }

    def _chunk(self, variables, observation, noise_rng=None):
        states = observation["observation.state"]
        inputs = states.reshape(states.shape[0], -1) * variables["batch_stats"]["input_scale"]
        if noise_rng is not None:
            inputs = inputs + self.input_noise * jax.random.normal(noise_rng, inputs.shape)
        params = variables["params"]
        hidden = jnp.tanh(inputs @ params["encoder"]["kernel"] + params["encoder"]["bias"])
        actions = hidden @ params["head"]["kernel"] + params["head"]["bias"]
        return actions.reshape(states.shape[0], self.action_horizon, ACTION_DIM)

    def loss(self, variables, batch, rng, step):
        del step
        predicted = self._chunk(variables, batch, rng)
        mse = masked_mean(squared_error(predicted, batch["action"]), ~batch["action_is_pad"])
        return mse, {"mse": mse}

    def predict_chunk(self, variables, observation, rng):
        del rng
        return self._chunk(variables, observation)


def make_toy_policy(policy_config: ml_collections.ConfigDict, features) -> TanhPolicy:
    """The `experiments.policies.make_policy` stand-in."""
    assert features["observation.state"]["shape"] == [STATE_DIM]
    return TanhPolicy(policy_config.observation_horizon, policy_config.action_horizon)


def write_toy_dataset(root: Path, *, episodes: int = 8, length: int = 12, seed: int = 0) -> Path:
    """Episodes whose actions are a noisy linear function of the state; 2 of 8 validate."""
    generator = np.random.default_rng(seed)
    mixing = generator.standard_normal((STATE_DIM, ACTION_DIM))
    with DatasetWriter(root, fps=10, features=FEATURES, validation_fraction=0.25) as writer:
        for _ in range(episodes):
            states = generator.standard_normal((length, STATE_DIM)).astype(np.float32)
            noise = 0.05 * generator.standard_normal((length, ACTION_DIM))
            writer.add_episode(
                {
                    "observation.state": states,
                    "action": (states @ mixing + noise).astype(np.float32),
                },
                task="toy",
            )
    return root


def toy_config(data_path: Path) -> ml_collections.ConfigDict:
    """20 steps of batch 8 on the toy dataset: logs every 5, validates and saves every 10."""
    config = default_config()
    config.task.name = "obstacle"
    config.data.path = str(data_path)
    config.data.batch_size = 8
    config.data.prefetch = 0
    config.data.normalization = (("observation.state", "mean_std"), ("action", "min_max"))
    config.policy.name = "toy_tanh"
    config.policy.observation_horizon = 2
    config.policy.action_horizon = 3
    config.optim.learning_rate = 1e-2
    config.train.num_steps = 20
    config.train.log_every = 5
    config.train.validate_every = 10
    config.train.validation_batches = 2
    config.train.checkpoint_every = 10
    config.train.keep_checkpoints = 1
    return config


def params_checksum(variables) -> float:
    """Σ of every parameter: a fingerprint of which weights an evaluator received."""
    return float(sum(jnp.sum(leaf) for leaf in jax.tree.leaves(variables["params"])))


def fake_evaluate(
    policy, variables, normalizers, task, eval_config, rng, out_dir, *, training_seeds=None
) -> dict:
    """The `core.evaluation.evaluate` stand-in: no rollouts; writes eval.json with the fields
    the launcher prints and what it was given (a checksum of the weights, the seeds to avoid)."""
    del rng
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "task": task.env.spec.name,
        "policy": type(policy).__name__,
        "episodes": eval_config.episodes,
        "successes": 0,
        "success_rate": 0.0,
        "success_ci95": [0.0, 1.0],
        "mean_length": 0.0,
        "mean_return": 0.0,
        "expert": {"success_rate": 1.0},
        "timing": {"rollout_seconds": 0.0, "compile_seconds": 0.0},
        "files": {"eval": str(out_dir / "eval.json")},
        "params_checksum": params_checksum(variables),
        "normalized_features": sorted(normalizers),
        "training_seeds": None if training_seeds is None else np.asarray(training_seeds).tolist(),
    }
    (out_dir / "eval.json").write_text(json.dumps(results))
    return results

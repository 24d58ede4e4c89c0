"""The training loop: logs, validation and checkpoint cadence, and stopping on NaN or inf."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from core.data.lerobot import LeRobotReader
from core.data.sampler import ChunkSampler
from core.data.stats import training_stats
from core.training import checkpoint
from core.training.config import save_config
from core.training.logs import read_metrics
from core.training.loop import fit
from core.training.step import NonFiniteError
from tests.core.training.toys import TanhPolicy, toy_config, write_toy_dataset

NAN_STEP = 6
"""The 0-based step whose loss the NaN policy poisons: the update counted as step 7."""


@dataclasses.dataclass(frozen=True)
class NanAtStepPolicy(TanhPolicy):
    """The toy policy with a NaN loss at step NAN_STEP only."""

    def loss(self, variables, batch, rng, step):
        loss, metrics = super().loss(variables, batch, rng, step)
        poison = jnp.where(step == NAN_STEP, jnp.nan, 1.0)
        return loss * poison, metrics


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(reader, train sampler, validation sampler, training statistics) of the toy dataset."""
    reader = LeRobotReader(write_toy_dataset(tmp_path_factory.mktemp("data") / "toy"))
    options = dict(batch_size=8, observation_horizon=2, action_horizon=3, seed=0)
    train = ChunkSampler(reader, reader.splits["train"], **options)
    validation = ChunkSampler(reader, reader.splits["validation"], **options)
    return reader, train, validation, training_stats(reader, reader.splits["train"])


def _fit(config, workdir, policy, data):
    _, train, validation, stats = data
    return fit(config, workdir, policy, train, validation, stats, progress=False)


def test_logs_validation_and_checkpoints_follow_the_cadence(tmp_path, data):
    config = toy_config(tmp_path)
    config.train.num_steps = 12
    config.train.log_every = 4
    config.train.validate_every = 6
    config.train.checkpoint_every = 8
    config.train.keep_checkpoints = 5
    summary = _fit(config, tmp_path, TanhPolicy(), data)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records if "train/loss" in r] == [4, 8, 12]
    assert [r["step"] for r in records if "val/loss" in r] == [6, 8, 12]  # and at each save
    assert sorted(int(p.name) for p in (tmp_path / checkpoint.CHECKPOINT_DIR).iterdir()) == [8, 12]
    validation = {r["step"]: r["val/loss"] for r in records if "val/loss" in r}
    assert summary.step == 12
    assert summary.best_step == min((8, 12), key=validation.get)
    assert summary.compile_seconds > 0 and summary.steps_per_second > 0
    assert set(records[0]) >= {"train/loss", "train/mse", "train/grad_norm", "train/learning_rate"}


def test_a_nan_loss_stops_the_run_naming_the_step_and_metric(tmp_path, data):
    config = toy_config(tmp_path)
    with pytest.raises(
        NonFiniteError, match=rf"non-finite loss at step {NAN_STEP + 1} \(loss = nan"
    ):
        _fit(config, tmp_path, NanAtStepPolicy(), data)
    assert not (tmp_path / checkpoint.CHECKPOINT_DIR).exists() or not any(
        (tmp_path / checkpoint.CHECKPOINT_DIR).iterdir()
    )  # no checkpoint of NaN weights


def test_under_dynamic_loss_scaling_a_nan_step_is_skipped_and_the_run_finishes(tmp_path, data):
    config = toy_config(tmp_path)
    config.optim.loss_scaling = "dynamic"
    summary = _fit(config, tmp_path, NanAtStepPolicy(), data)
    assert summary.step == config.train.num_steps
    skipped = {r["step"]: r["train/skipped"] for r in read_metrics(tmp_path) if "train/loss" in r}
    assert skipped == {5: 0.0, 10: 0.2, 15: 0.0, 20: 0.0}  # one of steps 6..10 was skipped
    save_config(config, tmp_path)
    restored = checkpoint.restore(tmp_path, "latest")
    assert all(jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(restored.variables))

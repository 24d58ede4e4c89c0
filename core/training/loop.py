"""The training loop every method shares: steps, logs, validation, checkpoints, resumption.

Book 17.10 and 18.7 (the training algorithms of ACT and Diffusion Policy: sample a batch,
take a gradient step, repeat), 14.1.3 (validation data never shapes the normalizers),
11.4 (stop on non-finite values).

Step t (0-based) takes batch t of the sampler and key fold_in(rng, t); after it the state's
step is t + 1, which is the step number logs and checkpoints use. Everything that decides the
parameters after n steps, the initial state, batch t and key t, is a function of the config,
so a run restored from the checkpoint of step s and continued reproduces the uninterrupted run.

At step n the loop, in order: logs the mean train metrics since the last log (every
`log_every` steps), stopping with `NonFiniteError` if a step produced a NaN or inf; computes
the validation metrics (every `validate_every` steps and at every checkpoint); saves a
checkpoint (every `checkpoint_every` steps, at the end, and when asked to stop).
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from core.data.sampler import ChunkSampler
from core.data.stats import make_normalizers, prepare_batch
from core.policy import Policy
from core.training import checkpoint, sharding
from core.training.logs import RunLog
from core.training.optimizer import learning_rate_schedule, make_optimizer
from core.training.state import TrainState, create_train_state
from core.training.step import (
    NonFiniteError,
    jit_eval_step,
    jit_train_step,
    non_finite_problem,
)


class TrainingInterrupted(Exception):
    """The run was asked to stop by signal `signal_number` (SIGTERM, or SIGINT from Ctrl-C) and
    saved a checkpoint at `step` first."""

    def __init__(self, step: int, workdir: Path, signal_number: int):
        super().__init__(
            f"stopped at step {step} ({signal.Signals(signal_number).name}); checkpoint saved in "
            f"{workdir}. Run the same command again to resume."
        )
        self.step = step
        self.signal_number = signal_number


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """What a finished `fit` reports.

    step: the final step. best_step: the checkpoint with the lowest validation metric.
    last_metrics: the last logged train and validation metrics. compile_seconds: the first
    step's wall time (compilation included), None if no step ran. steps_per_second: the mean
    rate of the later steps, None if fewer than two ran.
    """

    step: int
    best_step: int
    last_metrics: dict[str, float]
    compile_seconds: float | None
    steps_per_second: float | None


def _run_keys(seed: int, mesh: Mesh) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(init, train, validation) keys from the seed, as arrays replicated over the mesh."""
    split = jax.jit(
        lambda: tuple(jax.random.split(jax.random.key(seed), 3)),
        out_shardings=sharding.replicated(mesh),
    )
    return split()


def _initializer(
    policy: Policy,
    optimizer,
    normalizers,
    example: Mapping[str, np.ndarray],
    *,
    ema: bool,
    dynamic_loss_scale: bool,
):
    """A function of the init key building the step-0 state from an example batch's shapes."""
    shapes = {
        key: ((1, *np.shape(value)[1:]), np.asarray(value).dtype) for key, value in example.items()
    }

    def initialize(init_rng: jax.Array) -> TrainState:
        batch = {key: jnp.zeros(shape, dtype) for key, (shape, dtype) in shapes.items()}
        return create_train_state(
            policy,
            optimizer,
            init_rng,
            prepare_batch(batch, normalizers),
            ema=ema,
            dynamic_loss_scale=dynamic_loss_scale,
        )

    return initialize


def _initial_state(
    manager, initialize, init_rng: jax.Array, mesh: Mesh
) -> tuple[TrainState, dict | None]:
    """(state, data iterator state) to start from: the latest checkpoint's, restored replicated
    over `mesh`, or the initial state and None when there is no checkpoint."""
    replicated = sharding.replicated(mesh)
    latest = manager.latest_step()
    if latest is None:
        return jax.jit(initialize, out_shardings=replicated)(init_rng), None
    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=replicated),
        jax.eval_shape(initialize, init_rng),
    )
    return checkpoint.restore_train_state(manager, latest, abstract)


def _mean_metrics(history: list[dict[str, np.ndarray]], prefix: str) -> dict[str, float]:
    """Each metric's mean over the steps where it was finite (a step that dynamic loss scaling
    skipped has an inf or NaN loss; "skipped" counts those), in float64."""
    means = {}
    for name in history[0]:
        values = np.asarray([metrics[name] for metrics in history], np.float64)
        finite = values[np.isfinite(values)]
        means[f"{prefix}{name}"] = float(finite.mean()) if finite.size else float("nan")
    return means


class _PendingMetrics:
    """Train-step metrics since the last log, kept on device until logged (no per-step host
    sync), and the wall-clock rate of the steps (the compiling first step excluded)."""

    def __init__(self):
        self.pending: list[tuple[int, dict[str, jax.Array]]] = []
        self.clock = time.perf_counter()
        self.untimed = 0
        self.timed_steps = 0
        self.timed_seconds = 0.0

    def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
        self.pending.append((step, metrics))

    def exclude_from_timing(self) -> float:
        """Waits for the pending steps, leaves them out of the rate; returns their seconds."""
        jax.block_until_ready(self.pending[-1][1])
        seconds = time.perf_counter() - self.clock
        self.untimed = len(self.pending)
        self.restart_clock()
        return seconds

    def restart_clock(self) -> None:
        self.clock = time.perf_counter()

    def flush(self) -> dict[str, float]:
        """The mean metrics since the last flush and their steps/s.

        Raises:
          NonFiniteError naming the first step and metric that was not finite.
        """
        steps, values = zip(*self.pending, strict=True)
        values = jax.device_get(list(values))
        for step, metrics in zip(steps, values, strict=True):
            problem = non_finite_problem(step, {k: float(v) for k, v in metrics.items()})
            if problem:
                raise NonFiniteError(f"training stopped: {problem}")
        summary = _mean_metrics(values, "train/")
        elapsed = time.perf_counter() - self.clock
        timed = len(values) - self.untimed
        if timed:
            summary["train/steps_per_second"] = timed / elapsed
            self.timed_steps += timed
            self.timed_seconds += elapsed
        self.pending.clear()
        self.untimed = 0
        self.restart_clock()
        return summary


def fit(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    policy: Policy,
    train_sampler: ChunkSampler,
    validation_sampler: ChunkSampler | None,
    normalizer_stats: Mapping[str, Mapping[str, np.ndarray]],
    *,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> TrainSummary:
    """Trains `policy` for config.train.num_steps steps, resuming from the latest checkpoint
    in `workdir` if there is one.

    Args:
      config: a validated experiment config (core.training.config).
      workdir: where checkpoints and logs go.
      policy: the method.
      train_sampler: this process's sampler of the training episodes (batch_size global).
      validation_sampler: the same over the validation episodes, or None (no validation: the
        best checkpoint is then the latest).
      normalizer_stats: the training statistics the normalizers are built from.
      mesh: the data-parallel mesh; default every device.
      progress: show the progress bar.

    Raises:
      NonFiniteError: a step produced a NaN or inf (see core.training.step).
      TrainingInterrupted: SIGTERM or Ctrl-C; a checkpoint was saved first.
    """
    workdir = Path(workdir)
    mesh = mesh or sharding.data_parallel_mesh()
    train = config.train
    validating = validation_sampler is not None and train.validate_every > 0
    normalizers = make_normalizers(normalizer_stats, dict(config.data.normalization))
    schedule = learning_rate_schedule(config.optim, train.num_steps)
    optimizer = make_optimizer(config.optim)
    init_rng, train_rng, validation_rng = _run_keys(config.seed, mesh)
    validation_keys = [
        jax.random.fold_in(validation_rng, i) for i in range(train.validation_batches)
    ]
    initialize = _initializer(
        policy,
        optimizer,
        normalizers,
        train_sampler.batch(0),
        ema=config.optim.ema_decay > 0,
        dynamic_loss_scale=config.optim.loss_scaling == "dynamic",
    )
    train_step = jit_train_step(
        policy,
        optimizer,
        schedule,
        normalizers,
        mesh,
        ema_decay=config.optim.ema_decay,
    )
    eval_step = jit_eval_step(policy, normalizers, mesh)
    manager = checkpoint.checkpoint_manager(
        workdir,
        keep=train.keep_checkpoints,
        best_metric=train.best_metric if validating else None,
    )
    state, iterator_state = _initial_state(manager, initialize, init_rng, mesh)
    start = int(jax.device_get(state.step))

    def validate() -> dict[str, float]:
        values = [
            eval_step(state, sharding.global_batch(validation_sampler.batch(i), mesh), key)
            for i, key in enumerate(validation_keys)
        ]
        return _mean_metrics(jax.device_get(values), "val/")

    def save(metrics: dict[str, float] | None) -> None:
        checkpoint.save_checkpoint(
            manager,
            state,
            iterator_state=iterator.get_state(),
            normalizer_stats=normalizer_stats,
            config=config,
            metrics=metrics,
        )

    iterator = train_sampler.iterator(iterator_state, prefetch=config.data.prefetch)
    pending = _PendingMetrics()
    last_metrics: dict[str, float] = {}
    compile_seconds = None
    try:
        with (
            RunLog(
                workdir,
                start_step=start,
                total_steps=train.num_steps,
                enabled=jax.process_index() == 0,
                progress=progress,
            ) as log,
            checkpoint.StopRequest() as stop,
        ):
            if start:
                log.message(f"resumed from the checkpoint of step {start} in {workdir}")
            for step in range(start + 1, train.num_steps + 1):
                batch = sharding.global_batch(next(iterator), mesh)
                state, metrics = train_step(state, batch, train_rng)
                pending.add(step, metrics)
                if compile_seconds is None:
                    compile_seconds = pending.exclude_from_timing()
                log.advance(step)
                stopping = stop.requested(step)
                saving = step % train.checkpoint_every == 0 or step == train.num_steps or stopping
                if step % train.log_every == 0 or saving:
                    interval = pending.flush()
                    last_metrics.update(interval)
                    log.write(step, interval)
                    log.advance(step, interval["train/loss"])
                validation = None
                if validating and (step % train.validate_every == 0 or saving):
                    validation = validate()
                    last_metrics.update(validation)
                    log.write(step, validation)
                if saving:
                    save(validation)
                if validation is not None or saving:
                    pending.restart_clock()  # steps/s measures training alone
                if stopping:
                    raise TrainingInterrupted(step, workdir, stop.received or signal.SIGTERM)
        manager.wait_until_finished()
        best_step = manager.best_step()
    finally:
        manager.wait_until_finished()
        manager.close()
        iterator.close()
    return TrainSummary(
        step=max(start, train.num_steps),
        best_step=best_step,
        last_metrics=last_metrics,
        compile_seconds=compile_seconds,
        steps_per_second=(
            pending.timed_steps / pending.timed_seconds if pending.timed_steps else None
        ),
    )

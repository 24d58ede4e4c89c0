"""Checkpoints of a run: everything needed to resume it exactly or to evaluate it.

Book 14.1.3 (the normalization statistics belong to the trained model: the same frozen map is
applied at deployment) and the design's resume contract: a run killed at any point and
restarted reproduces the uninterrupted run.

`workdir/checkpoints/<step>/` (an orbax `CheckpointManager`) holds four items:
  state             the TrainState (step, params, constants, optimizer state, EMA, loss scale)
  data_iterator     the training batch iterator's state (core.data.sampler), {"step", ...}
  normalizer_stats  the training statistics {feature: {statistic: list}} the normalizers use
  config            the run's config
and the validation metrics of that step. Kept: the latest `keep` checkpoints and the best one by
`best_metric` (minimized). Orbax writes a checkpoint into a temporary directory and renames it
when complete, so a run killed while saving leaves the previous checkpoints intact.

`restore(workdir, which)` is what evaluation needs: config, variables (the EMA weights when the
run keeps them), normalizer statistics and the step, without knowing the policy.

`StopRequest` turns SIGTERM (a scheduler's preemption notice) and Ctrl-C into "save a
checkpoint and stop" at the next step boundary.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import AnyPreservationPolicy, BestN, LatestN

from core.training.config import load_config, plain
from core.training.state import TrainState

CHECKPOINT_DIR = "checkpoints"
Stats = dict[str, dict[str, np.ndarray]]


def checkpoint_manager(
    workdir: str | Path, *, keep: int, best_metric: str | None, writing: bool = True
) -> ocp.CheckpointManager:
    """The manager of `workdir/checkpoints`: keeps the latest `keep` and the best by
    `best_metric` (minimized; checkpoints saved without metrics count only as latest; None:
    no validation, the latest `keep` only).

    writing=True: the training run's manager, used by every process together.
    writing=False: a reader for this process alone (nothing is created or cleaned up, and no
    other process takes part), e.g. process 0 restoring the best weights for evaluation.
    """
    policies = [LatestN(n=keep)]
    if best_metric is not None:
        policies.append(
            BestN(
                get_metric_fn=lambda metrics: metrics[best_metric],
                reverse=True,  # BestN keeps the last n in sorted order: descending, the smallest
                n=1,
                keep_checkpoints_without_metrics=False,
            )
        )
    this_process = jax.process_index()
    options = ocp.CheckpointManagerOptions(
        best_fn=None if best_metric is None else lambda metrics: metrics[best_metric],
        best_mode="min",
        preservation_policy=AnyPreservationPolicy(policies),
        create=writing,
        cleanup_tmp_directories=writing,  # the unfinished save of a killed run
        multiprocessing_options=(
            ocp.options.MultiprocessingOptions()
            if writing
            else ocp.options.MultiprocessingOptions(
                primary_host=this_process,
                active_processes={this_process},
                barrier_sync_key_prefix=f"reader{this_process}",
            )
        ),
    )
    return ocp.CheckpointManager(
        Path(workdir).absolute() / CHECKPOINT_DIR,
        options=options,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "data_iterator": ocp.JsonCheckpointHandler(),
            "normalizer_stats": ocp.JsonCheckpointHandler(),
            "config": ocp.JsonCheckpointHandler(),
        },
    )


def stats_to_json(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, list]]:
    """{feature: {statistic: array}} as nested lists (Python floats round-trip JSON exactly)."""
    return {
        key: {name: np.asarray(v).tolist() for name, v in s.items()} for key, s in stats.items()
    }


def stats_from_json(serial: Mapping[str, Mapping[str, list]]) -> Stats:
    """The inverse of `stats_to_json`."""
    return {key: {name: np.asarray(v) for name, v in s.items()} for key, s in serial.items()}


def save_checkpoint(
    manager: ocp.CheckpointManager,
    state: TrainState,
    *,
    iterator_state: Mapping[str, int],
    normalizer_stats: Mapping[str, Mapping[str, Any]],
    config: ml_collections.ConfigDict,
    metrics: Mapping[str, float] | None,
) -> None:
    """Saves a checkpoint at the state's step (asynchronously: the arrays are copied to the
    host before this returns, so the state may be donated right after)."""
    step = int(jax.device_get(state.step))
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data_iterator=ocp.args.JsonSave(dict(iterator_state)),
            normalizer_stats=ocp.args.JsonSave(stats_to_json(normalizer_stats)),
            config=ocp.args.JsonSave(plain(config)),
        ),
        metrics=None if metrics is None else {k: float(v) for k, v in metrics.items()},
        force=True,
    )


def restore_train_state(
    manager: ocp.CheckpointManager, step: int, abstract_state: TrainState
) -> tuple[TrainState, dict[str, int]]:
    """(the train state, the data iterator's state) of checkpoint `step`.

    Args:
      abstract_state: `jax.eval_shape` of the state with the target shardings, e.g.
        replicated over the mesh of this run (which may differ from the saving run's).
    """
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data_iterator=ocp.args.JsonRestore(),
        ),
    )
    return restored["state"], restored["data_iterator"]


@dataclasses.dataclass(frozen=True)
class Restored:
    """What evaluation needs from a run: its config, the policy's variables ({"params": the
    EMA weights when kept, else the weights, plus constant collections}), the normalizer
    statistics {feature: {statistic: array}} and the step of the checkpoint."""

    config: ml_collections.ConfigDict
    variables: dict[str, Any]
    normalizer_stats: Stats
    step: int


def resolve_step(manager: ocp.CheckpointManager, which: str | int) -> int:
    """The checkpoint step that "best", "latest" or an explicit step names."""
    steps = manager.all_steps()
    if not steps:
        raise FileNotFoundError(f"{manager.directory}: no checkpoints")
    if which == "latest":
        return manager.latest_step()
    if which == "best":
        best = manager.best_step()
        return manager.latest_step() if best is None else best  # no metrics: the latest
    if isinstance(which, int) and not isinstance(which, bool):
        if which not in steps:
            raise ValueError(f"{manager.directory}: no checkpoint at step {which}; have {steps}")
        return which
    raise ValueError(f'which must be "best", "latest" or a step, got {which!r}')


def _single_device_target(metadata: Any) -> Any:
    """Shapes and dtypes of a saved tree, placed on this process's first device (a run saved
    on a mesh of 8 devices restores on 1)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device), metadata
    )


def restore(workdir: str | Path, which: str | int = "best") -> Restored:
    """The config, evaluation variables, normalizer statistics and step of a run's checkpoint.

    Args:
      workdir: the run's directory (holding config.json and checkpoints/).
      which: "best" (lowest config.train.best_metric; the latest if none was recorded),
        "latest", or a step number.
    """
    config = load_config(workdir)
    manager = checkpoint_manager(
        workdir,
        keep=config.train.keep_checkpoints,
        best_metric=config.train.best_metric,
        writing=False,
    )
    try:
        step = resolve_step(manager, which)
        state_metadata = manager.item_metadata(step)["state"]
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_single_device_target(state_metadata)),
                normalizer_stats=ocp.args.JsonRestore(),
            ),
        )
    finally:
        manager.close()
    state = restored["state"]
    params = state["params"] if state["ema_params"] is None else state["ema_params"]
    return Restored(
        config=config,
        variables={"params": params, **state["constants"]},
        normalizer_stats=stats_from_json(restored["normalizer_stats"]),
        step=step,
    )


class StopRequest:
    """Turns SIGTERM and SIGINT into a request to checkpoint and stop at a step boundary.

    One process: a handler records the signal (a second Ctrl-C interrupts at once). Several
    processes: they must stop at the same step, so the request comes from JAX's preemption
    sync point (the distributed runtime listens for SIGTERM and agrees on a step), and Ctrl-C
    keeps its default meaning. Handlers are installed only from the main thread and restored
    on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame) -> None:
        del frame
        self.received = number
        signal.signal(signal.SIGINT, self._previous.get(signal.SIGINT, signal.default_int_handler))

    def requested(self, step: int) -> bool:
        """Whether to checkpoint and stop after `step` (call it at every step)."""
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.received is not None

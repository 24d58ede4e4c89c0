"""Checkpoints: what is kept, what `restore` returns, and stopping on SIGTERM."""

import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from core.training import checkpoint
from core.training.config import save_config
from core.training.optimizer import make_optimizer
from core.training.state import TrainState, create_train_state
from tests.core.training.toys import TanhPolicy, toy_config

STATS = {
    "observation.state": {"mean": np.array([0.1, -0.2, 1 / 3, 2.5e-7]), "count": np.array([40])},
    "action": {"min": np.array([-1.0, -0.5]), "max": np.array([1.0, 0.7])},
}
VALIDATION_LOSSES = {1: 0.5, 2: 0.1, 3: 0.7, 4: 0.9, 5: 0.8}


def _state(step: int, *, ema: bool) -> TrainState:
    config = toy_config("unused")
    batch = {"observation.state": jnp.zeros((1, 2, 4))}
    state = create_train_state(
        TanhPolicy(),
        make_optimizer(config.optim),
        jax.random.key(step),
        batch,
        ema=ema,
        dynamic_loss_scale=False,
    )
    ema_params = jax.tree.map(lambda p: p + 1.0, state.params) if ema else None
    return state.replace(step=jnp.asarray(step, jnp.int32), ema_params=ema_params)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A workdir with checkpoints at steps 1..5 (validation losses VALIDATION_LOSSES, keep=2)."""
    workdir = tmp_path_factory.mktemp("run")
    config = toy_config(workdir / "data")
    config.train.keep_checkpoints = 2
    save_config(config, workdir)
    manager = checkpoint.checkpoint_manager(workdir, keep=2, best_metric="val/loss")
    states = {}
    for step, loss in VALIDATION_LOSSES.items():
        states[step] = _state(step, ema=True)
        checkpoint.save_checkpoint(
            manager,
            states[step],
            iterator_state={"step": step, "seed": 0, "batch_size": 8, "num_samples": 96},
            normalizer_stats=STATS,
            config=config,
            metrics={"val/loss": loss},
        )
    manager.wait_until_finished()
    manager.close()
    return workdir, config, states


def test_keeps_the_latest_n_and_the_best(run):
    workdir, *_ = run
    steps = sorted(int(path.name) for path in (workdir / checkpoint.CHECKPOINT_DIR).iterdir())
    assert steps == [2, 4, 5]  # best (val/loss 0.1) and the latest two


@pytest.mark.parametrize(("which", "step"), [("best", 2), ("latest", 5), (4, 4)])
def test_restore_returns_config_ema_variables_stats_and_step(run, which, step):
    workdir, config, states = run
    restored = checkpoint.restore(workdir, which)
    assert restored.step == step
    assert restored.config.to_dict() == config.to_dict()
    expected = {"params": states[step].ema_params, **states[step].constants}
    jax.tree.map(np.testing.assert_array_equal, restored.variables, expected)
    assert restored.normalizer_stats.keys() == STATS.keys()
    for key, stats in STATS.items():
        for name, value in stats.items():
            np.testing.assert_array_equal(restored.normalizer_stats[key][name], value)


def test_restore_of_a_missing_step_names_the_available_ones(run):
    workdir, *_ = run
    with pytest.raises(ValueError, match=r"no checkpoint at step 3; have \[2, 4, 5\]"):
        checkpoint.restore(workdir, 3)
    with pytest.raises(ValueError, match="which must be"):
        checkpoint.restore(workdir, "first")


def test_restore_without_ema_returns_the_trained_params(tmp_path):
    config = toy_config(tmp_path / "data")
    save_config(config, tmp_path)
    manager = checkpoint.checkpoint_manager(tmp_path, keep=1, best_metric="val/loss")
    state = _state(7, ema=False)
    checkpoint.save_checkpoint(
        manager,
        state,
        iterator_state={"step": 7},
        normalizer_stats=STATS,
        config=config,
        metrics=None,
    )
    manager.wait_until_finished()
    restored = checkpoint.restore(tmp_path, "best")  # no metrics recorded: the latest
    assert restored.step == 7
    jax.tree.map(np.testing.assert_array_equal, restored.variables["params"], state.params)
    abstract = jax.eval_shape(lambda: state)
    train_state, iterator_state = checkpoint.restore_train_state(manager, 7, abstract)
    jax.tree.map(np.testing.assert_array_equal, train_state, state)
    assert iterator_state == {"step": 7}
    manager.close()


def test_stop_request_turns_sigterm_into_a_request_and_restores_the_handler():
    previous = signal.getsignal(signal.SIGTERM)
    with checkpoint.StopRequest() as stop:
        assert not stop.requested(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested(2)
        assert stop.received == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous

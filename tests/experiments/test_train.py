"""The launcher: a run's files, evaluation of the best checkpoint, exact resumption after
SIGKILL and SIGTERM, dataset generation, and command-line overrides."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from absl import flags

from core.training import checkpoint
from core.training.config import CONFIG_FILE, plain, save_config
from core.training.logs import METRICS_FILE, read_metrics
from experiments import train
from tests.core.training import toys

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "core" / "training" / "workers.py"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return toys.write_toy_dataset(tmp_path_factory.mktemp("data") / "toy")


def _train(config, workdir, evaluate=toys.fake_evaluate):
    return train.train_and_evaluate(
        config, workdir, make_policy=toys.make_toy_policy, evaluate=evaluate, progress=False
    )


def test_a_run_writes_its_files_and_evaluates_its_best_checkpoint(dataset, tmp_path, capsys):
    config = toys.toy_config(dataset)
    config.train.keep_checkpoints = 1
    results = _train(config, tmp_path)

    assert json.loads((tmp_path / CONFIG_FILE).read_text()) == plain(config)
    assert [r["step"] for r in read_metrics(tmp_path) if "train/loss" in r] == [5, 10, 15, 20]
    assert [r["step"] for r in read_metrics(tmp_path) if "val/loss" in r] == [10, 20]
    assert list(tmp_path.glob("events.out.tfevents.*"))
    best = results["train"]["best_step"]
    validation = {r["step"]: r["val/loss"] for r in read_metrics(tmp_path) if "val/loss" in r}
    assert best == min(validation, key=validation.get)
    assert sorted({best, 20}) == sorted(
        int(p.name) for p in (tmp_path / checkpoint.CHECKPOINT_DIR).iterdir()
    )
    evaluated = json.loads((tmp_path / train.EVAL_DIR / "eval.json").read_text())
    restored = checkpoint.restore(tmp_path, "best")
    assert evaluated["params_checksum"] == toys.params_checksum(restored.variables)
    assert evaluated["normalized_features"] == ["action", "observation.state"]
    assert results["eval"] == evaluated
    assert f"best checkpoint: step {best}" in capsys.readouterr().out

    # run again: the run is complete, nothing trains, the best checkpoint is evaluated again
    again = _train(config, tmp_path)
    assert again["train"]["step"] == 20 and again["train"]["compile_seconds"] is None
    config.optim.learning_rate = 3e-4
    with pytest.raises(ValueError, match=r"optim\.learning_rate: 0\.01 -> 0\.0003"):
        _train(config, tmp_path)


def test_a_missing_dataset_is_generated_from_the_config(dataset, tmp_path, monkeypatch):
    calls = []

    def generate(task, num_demos, path, **options):
        calls.append((task, num_demos, options))
        toys.write_toy_dataset(Path(path))
        return type("Summary", (), {"text": lambda self: "wrote the toy dataset"})()

    monkeypatch.setattr(train, "generate_demos", generate)
    config = toys.toy_config(tmp_path / "generated")
    config.data.num_demos, config.data.demo_seed = 7, 3
    opened = train.open_dataset(config)
    assert calls == [
        (
            "obstacle",
            7,
            {
                "seed": 3,
                "image_size": 64,
                "cameras": ("top",),
                "validation_fraction": 0.1,
                "env_options": {},  # the task's other fields (none here)
            },
        )
    ]
    assert opened.reader.num_episodes == 8 and len(opened.validation_episodes) == 2
    assert opened.demo_seeds is None  # the toy dataset records no expert seeds


@pytest.mark.slow  # the real evaluator compiles a closed-loop rollout (~4 s)
def test_the_production_evaluator_runs_on_the_best_checkpoint(dataset, tmp_path):
    config = toys.toy_config(dataset)
    config.train.num_steps = 10
    config.eval.episodes = 2
    config.eval.video_episodes = 1
    results = train.train_and_evaluate(
        config, tmp_path, make_policy=toys.make_toy_policy, progress=False
    )
    assert results["eval"]["episodes"] == 2
    assert 0.0 <= results["eval"]["success_rate"] <= 1.0
    for path in results["eval"]["files"].values():
        assert Path(path).is_file()


def _full_checkpoint(workdir: Path, step: int) -> tuple[dict, dict]:
    """(train state as nested dicts, data iterator state) of a checkpoint, nothing dropped."""
    manager = checkpoint.checkpoint_manager(workdir, keep=1, best_metric=None, writing=False)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), data_iterator=ocp.args.JsonRestore()
        ),
    )
    manager.close()
    return jax.device_get(restored["state"]), restored["data_iterator"]


def _start_worker(config_path: Path, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), "train", str(config_path), str(workdir)],
        env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_logged_step(worker: subprocess.Popen, workdir: Path, step: int) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            pytest.fail(
                f"the run exited early ({worker.returncode}):\n{worker.stderr.read()[-3000:]}"
            )
        records = read_metrics(workdir) if (workdir / METRICS_FILE).exists() else []
        if any(record["step"] >= step for record in records):
            return
        time.sleep(0.05)
    worker.kill()
    pytest.fail(f"the run did not log step {step} within 180 s")


@pytest.mark.slow  # two training subprocesses (~4 s each) and two short in-process runs
def test_a_run_killed_and_stopped_resumes_to_the_uninterrupted_runs_state_bitwise(
    dataset, tmp_path
):
    """SIGKILL (no warning: resume from the last periodic checkpoint), then SIGTERM (save at
    once and exit 143), then run to the end: the train state, including the optimizer state,
    the EMA and the data iterator's position, equals the run that was never interrupted."""
    config = toys.toy_config(dataset)
    config.train.num_steps = 10**6  # constant schedule: num_steps may change on resume
    config.train.checkpoint_every = 10
    config.train.keep_checkpoints = 2
    config.data.prefetch = 2
    config.optim.ema_decay = 0.9
    config.optim.param_group_lr = {"encoder": 0.1}
    config_path = save_config(config, tmp_path / "config")
    run = tmp_path / "run"

    killed = _start_worker(config_path, run)
    _wait_for_logged_step(killed, run, 25)
    killed.kill()
    killed.communicate()
    killed_at = checkpoint.resolve_step(
        checkpoint.checkpoint_manager(run, keep=2, best_metric=None, writing=False), "latest"
    )
    logged_before_resume = max(record["step"] for record in read_metrics(run))

    stopped = _start_worker(config_path, run)
    _wait_for_logged_step(stopped, run, logged_before_resume + 10)
    stopped.send_signal(signal.SIGTERM)
    _, errors = stopped.communicate(timeout=120)
    assert stopped.returncode == 143, errors[-3000:]
    stopped_at = max(int(p.name) for p in (run / checkpoint.CHECKPOINT_DIR).iterdir())
    assert stopped_at > logged_before_resume > killed_at >= 10  # a save may have been unfinished
    _, iterator_state = _full_checkpoint(run, stopped_at)
    assert iterator_state["step"] == stopped_at  # the batches handed out, prefetch or not

    config.train.num_steps = stopped_at + 7
    resumed = _train(config, run)
    uninterrupted = _train(config, tmp_path / "uninterrupted")
    final = config.train.num_steps
    resumed_state, resumed_iterator = _full_checkpoint(run, final)
    expected_state, expected_iterator = _full_checkpoint(tmp_path / "uninterrupted", final)
    assert resumed_iterator == expected_iterator
    jax.tree.map(np.testing.assert_array_equal, resumed_state, expected_state)
    assert resumed["eval"]["params_checksum"] == uninterrupted["eval"]["params_checksum"]


@pytest.fixture
def config_module(tmp_path):
    path = tmp_path / "toy_config.py"
    path.write_text(
        "from core.training.config import default_config\n\n\n"
        "def get_config():\n"
        "    config = default_config()\n"
        "    config.task.name = 'obstacle'\n"
        "    config.data.path = 'data/obstacle'\n"
        "    config.policy.name = 'bc_mlp'\n"
        "    return config\n"
    )
    return path


def _parse(argv):
    argv = ["train", *argv]
    flag_values = flags.FlagValues()
    train.define_flags(flag_values, argv)
    train.parse_flags(argv, flag_values)
    return flag_values


def test_command_line_overrides_reach_the_config(config_module):
    parsed = _parse(
        [
            f"--config={config_module}",
            "--workdir=runs/x",
            "--config.optim.learning_rate=3e-4",
            "--config.task.cameras=('top', 'wrist')",
            "--config.eval.max_steps=50",
        ]
    )
    assert parsed.config.optim.learning_rate == 3e-4
    assert parsed.config.task.cameras == ("top", "wrist")
    assert parsed.config.eval.max_steps == 50
    assert parsed.workdir == "runs/x"


def test_an_unknown_override_exits_naming_it_and_the_known_keys(config_module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse([f"--config={config_module}", "--workdir=x", "--config.optim.lr=3e-4"])
    assert exit_info.value.code == 2
    assert "unknown config override: optim.lr (config.optim has: b1, b2," in capsys.readouterr().err


def test_an_override_of_the_wrong_type_is_rejected(config_module):
    with pytest.raises(flags.IllegalFlagValueError, match="could not convert string to float"):
        _parse([f"--config={config_module}", "--workdir=x", "--config.optim.learning_rate=fast"])


def test_unknown_overrides_name_the_key_and_its_siblings(dataset):
    config = toys.toy_config(dataset)
    assert train.unknown_overrides(config, ["optim.learning_rate", "train"]) == []
    (optim_message, root_message, deep_message) = train.unknown_overrides(
        config, ["optim.lr", "optimizer.lr", "optim.schedule.kind"]
    )
    assert optim_message.startswith("optim.lr (config.optim has: b1, b2, ema_decay, eps,")
    assert root_message.startswith("optimizer.lr (config has: data, eval, optim, policy,")
    assert deep_message == (
        "optim.schedule.kind (config.optim.schedule has: min_learning_rate, name, warmup_steps)"
    )
